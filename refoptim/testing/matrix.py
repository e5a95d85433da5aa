"""The conformance matrix: one readable entry per configuration.

Every entry is a :class:`Config`: an optimizer, its constructor options, a dtype, the
parameter-group layout, the gradient source and the number of steps. Every configuration
runs on the same five parameters, which cover the shapes that matter: 0-d, 1-d, 2-d,
size 0, and a non-contiguous 2-d view into a larger array.

The option lists cover every option alone and crossed where options interact, and at
least every configuration torch 2.13's own optimizer tests use for these optimizers
(``torch/testing/_internal/common_optimizers.py``: default, non-default lr, tensor lr,
weight decay, momentum, dampening, nesterov, maximize, amsgrad, ...; for ASGD, ``t0`` and
``lambd`` chosen so that averaging starts inside the run; for RAdam, enough steps for the
rectified update, which starts at step 6 for every beta2 >= 0.85).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..registry import OPTIMIZERS, _lr_array  # noqa: F401  (_lr_array: refoptim.testing.inputs uses it)

__all__ = ["Config", "DTYPES", "IMPLEMENTATION_FLAGS", "OBJECTIVES", "SHAPES", "configs", "constructor_defaults", "optimizer_names"]

DTYPES = ("float32", "float64", "complex64")
"""Dtypes every configuration runs in."""

SHAPES: tuple[Any, ...] = ((), (5,), (3, 4), (0,), "view")
"""The parameters of every configuration; ``"view"`` is a (3, 4) non-contiguous view
(every other row, four inner columns) of a (6, 9) array."""

OBJECTIVES = ("fixed", "quadratic", "rosenbrock")
"""The gradient sources, a fixed seeded sequence or an objective with feedback (the gradient
depends on the current parameters; both sides evaluate it with identical NumPy code)."""


@dataclass(frozen=True)
class Config:
    """One conformance configuration."""

    optimizer: str
    options: dict[str, Any] = field(default_factory=dict)
    dtype: str = "float32"
    groups: tuple[dict[str, Any], ...] = ()
    objective: str = "fixed"
    steps: int = 50
    seed: int = 0

    @property
    def label(self) -> str:
        """The configuration as a reader writes it (options, groups, objective)."""
        parts = [f"{k}={_fmt(v)}" for k, v in self.options.items()]
        text = ", ".join(parts) if parts else "defaults"
        if self.groups:
            text += " | groups: " + "; ".join(
                "{" + ", ".join(f"{k}={_fmt(v)}" for k, v in g.items()) + "}" for g in self.groups
            )
        if self.objective != "fixed":
            text += f" | {self.objective}"
        return text

    @property
    def id(self) -> str:
        """The pytest id (optimizer, dtype and label)."""
        return f"{self.optimizer}-{self.dtype}-{self.label}"

    @property
    def short_id(self) -> str:
        """A short name of this configuration for tables and ``--only``: the optimizer in
        lower case and six hex digits of the SHA-256 of :attr:`id` (``adam-3f2a9c``).

        The same on every run and machine (:attr:`id` is built from ``repr`` of the
        options); unique over :func:`configs` (``tests/test_table.py`` checks it). It
        names a configuration, not a number of steps: ``--steps`` keeps it."""
        digest = hashlib.sha256(self.id.encode("utf-8")).hexdigest()[:6]
        return f"{self.optimizer.lower()}-{digest}"

    @property
    def brief_label(self) -> str:
        """:attr:`label` without the options that equal the constructor's defaults (and
        without the implementation flags ``foreach``, ``fused``, ``capturable``,
        ``differentiable``): ``"maximize=True"`` for SGD's
        ``lr=0.001, momentum=0.0, ..., maximize=True``; ``"defaults"`` when nothing
        differs. Groups and the objective are written as :attr:`label` writes them.

        An array lr or beta never equals a float default, and ``False`` never equals
        ``0``. Two entries of the matrix that spell the same options differently (one
        alone, one among the crossings with every default written out) have the same
        brief label: they run the same optimizer (``tests/test_table.py`` lists them)."""
        defaults = _constructor_defaults(self.optimizer)
        parts = [
            f"{k}={_brief(v)}"
            for k, v in self.options.items()
            if k not in IMPLEMENTATION_FLAGS and not (k in defaults and _same_value(v, defaults[k]))
        ]
        text = ", ".join(parts)
        if self.groups:
            text += (" | " if text else "") + "groups: " + "; ".join(
                "{" + ", ".join(f"{k}={_brief(v)}" for k, v in g.items()) + "}" for g in self.groups
            )
        text = text or "defaults"
        if self.objective != "fixed":
            text += f" | {self.objective}"
        return text


IMPLEMENTATION_FLAGS = frozenset({"foreach", "fused", "capturable", "differentiable"})
"""The constructor flags that pick one of torch's implementations, left out of
:attr:`Config.brief_label`, of :func:`constructor_defaults`, of the options
:func:`refoptim.testing.compare` passes a candidate and of the golden corpus's manifest."""


def constructor_defaults(optimizer: str) -> dict[str, Any]:
    """torch's constructor keywords of ``optimizer`` with their defaults (refoptim's class
    signature, which mirrors torch's), without :data:`IMPLEMENTATION_FLAGS`: a new dict."""
    return dict(_constructor_defaults(optimizer))


@functools.lru_cache(maxsize=None)
def _constructor_defaults(optimizer: str) -> dict[str, Any]:
    from .inputs import refoptim_class

    signature = inspect.signature(refoptim_class(optimizer).__init__)
    return {
        name: p.default
        for name, p in signature.parameters.items()
        if name not in IMPLEMENTATION_FLAGS and p.default is not inspect.Parameter.empty
    }


def _same_value(value: Any, default: Any) -> bool:
    """``value`` equals ``default`` as the constructor sees it: an array never equals a
    Python number, a bool equals only a bool, tuples element by element."""
    if isinstance(value, np.ndarray) or isinstance(default, np.ndarray):
        return False
    if isinstance(value, (tuple, list)) or isinstance(default, (tuple, list)):
        return (
            isinstance(value, (tuple, list))
            and isinstance(default, (tuple, list))
            and len(value) == len(default)
            and all(_same_value(v, d) for v, d in zip(value, default))
        )
    if isinstance(value, bool) != isinstance(default, bool):
        return False
    if value is None or default is None:
        return value is default
    try:
        return bool(value == default)
    except (TypeError, ValueError):
        return False


def _fmt(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return f"array({v.item()!r}, {v.dtype})"
    return repr(v)


def _brief(v: Any) -> str:
    """``v`` for :attr:`Config.brief_label`: a 0-d array as ``array(0.01, float32)`` (its
    shortest repr in its own dtype), tuples element by element, anything else ``repr``."""
    if isinstance(v, np.ndarray):
        return f"array({str(v[()])}, {v.dtype})"
    if isinstance(v, tuple):
        return "(" + ", ".join(_brief(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    return repr(v)


# ============================================================================ the entries
# Every optimizer's configurations are its entry's ``matrix`` in :mod:`refoptim.registry`
# (the elementwise optimizers' option sets; the others name their extension module).

_ORDER = ("SGD", "Adam", "AdamW", "Adagrad", "Adadelta", "Adamax", "ASGD", "NAdam", "RAdam", "RMSprop", "Rprop")
"""The order of the elementwise optimizers in the matrix from before the registry, kept so
that :func:`configs` lists the configurations as it always did (the CLI's report, a golden
corpus's manifest and ``configs()[i]`` follow it). Frozen: an elementwise optimizer
registered later comes after these, in the registry's (lineage) order."""

_ELEMENTWISE = sorted(
    (info for info in OPTIMIZERS if info.elementwise),
    key=lambda info: (info.name not in _ORDER, _ORDER.index(info.name) if info.name in _ORDER else 0),
)

_TABLE = {info.name: (info.matrix["alone"], info.matrix["crossed"], info.matrix["groups"]) for info in _ELEMENTWISE}
"""Per elementwise optimizer: its option sets alone, the function returning its crossed
option sets, and its per-group options."""

_FEEDBACK = {info.name: info.matrix["feedback"] for info in _ELEMENTWISE}
"""Per elementwise optimizer: the ``(objective, options)`` pairs of the objectives with
feedback."""

_MIN_STEPS = {info.name: info.matrix["min_steps"] for info in _ELEMENTWISE if "min_steps" in info.matrix}
"""Steps an optimizer's configurations need to cross a threshold inside the algorithm:
torch's own ASGD entry ``{"t0": 100}`` starts averaging at step 103 (ASGD: 120)."""


EXTENSIONS: dict[str, str] = {
    info.name: info.matrix["extension"] for info in sorted(OPTIMIZERS, key=lambda info: info.name) if not info.elementwise
}
"""Optimizers that are not elementwise (by name: Adafactor, LBFGS, Muon, SparseAdam),
whose configurations and runner live in their own
module ``refoptim.testing.conformance_<module>``: LBFGS (closures, line search, one flat
vector), SparseAdam (sparse gradients), Adafactor (factored second moments), Muon (2-D
parameters, Newton–Schulz in bfloat16). Each such module has ``configs(optimizers,
dtypes, steps) -> list[Config]`` and ``run_config(cfg) -> Result``; a module's ``configs``
may also return configurations of other optimizers under one of its own ``OBJECTIVES``
(the sparse module adds SGD and Adagrad with sparse gradients). The ``configs`` functions
live in the torch-free :mod:`refoptim.testing.inputs` (``EXTENSION_CONFIGS``), so
:func:`configs` needs no torch."""

_EXTENSION_OBJECTIVES = {"sparse": "sparse"}
"""Objectives (gradient sources) owned by an extension module, whatever the optimizer."""


def _extension_module(name: str) -> Any:
    import importlib

    return importlib.import_module(f"refoptim.testing.conformance_{name}")


def extension_for(cfg: Config) -> Any:
    """The harness module that runs ``cfg``, or ``None`` for the elementwise runner."""
    if cfg.objective in _EXTENSION_OBJECTIVES:
        return _extension_module(_EXTENSION_OBJECTIVES[cfg.objective])
    if cfg.optimizer in EXTENSIONS:
        return _extension_module(EXTENSIONS[cfg.optimizer])
    return None


def _available_extensions() -> dict[str, str]:
    """The extensions whose harness module exists (all of them once issue 4 is complete)."""
    import importlib.util

    return {
        name: module
        for name, module in EXTENSIONS.items()
        if importlib.util.find_spec(f"refoptim.testing.conformance_{module}") is not None
    }


def optimizer_names() -> list[str]:
    """Optimizers the matrix covers."""
    return list(_TABLE) + list(_available_extensions())


def configs(optimizers: list[str] | None = None, dtypes: tuple[str, ...] = DTYPES, steps: int = 50) -> list[Config]:
    """Every configuration of the matrix, for the given optimizers (default: all) and dtypes.

    Duplicates (an option set listed alone and again among the crossings) appear once.
    ``steps`` is raised to an optimizer's ``_MIN_STEPS`` where it needs more.
    The Rosenbrock objective is real-valued only; it runs in the real dtypes.
    """
    out: list[Config] = []
    seen: set[str] = set()
    names = list(optimizers or optimizer_names())
    for name in names:
        if name not in _TABLE:
            continue
        alone, crossed, groups = _TABLE[name]
        entries: list[tuple[dict[str, Any], tuple[dict[str, Any], ...], str]] = []
        entries += [(o, (), "fixed") for o in alone]
        entries += [(o, (), "fixed") for o in crossed()]
        entries.append(({}, tuple(groups), "fixed"))
        entries.append(({}, tuple(groups), "quadratic"))
        entries += [(o, (), objective) for objective, o in _FEEDBACK.get(name, [])]
        n_steps = max(steps, _MIN_STEPS.get(name, 0))
        for dtype in dtypes:
            for options, grp, objective in entries:
                if objective == "rosenbrock" and dtype.startswith("complex"):
                    continue
                cfg = Config(name, dict(options), dtype, grp, objective, n_steps)
                if cfg.id in seen:
                    continue
                seen.add(cfg.id)
                out.append(cfg)
    # the extensions' configurations come from the torch-free module, not their harnesses
    from .inputs import EXTENSION_CONFIGS

    for module in dict.fromkeys(_available_extensions().values()):
        for cfg in EXTENSION_CONFIGS[module](names, dtypes, steps):
            if cfg.id not in seen:
                seen.add(cfg.id)
                out.append(cfg)
    return out
