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
import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Config", "DTYPES", "IMPLEMENTATION_FLAGS", "OBJECTIVES", "SHAPES", "configs", "constructor_defaults", "optimizer_names"]

DTYPES = ("float32", "float64", "complex64")
"""Dtypes every configuration runs in."""

SHAPES: tuple[Any, ...] = ((), (5,), (3, 4), (0,), "view")
"""The parameters of every configuration; ``"view"`` is a (3, 4) non-contiguous view
(every other row, four inner columns) of a (6, 9) array."""

OBJECTIVES = ("fixed", "quadratic", "rosenbrock")
"""Gradient sources: a fixed seeded sequence, or an objective with feedback (the gradient
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
        """The configuration as a reader writes it: options, groups, objective."""
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
        """A pytest id: optimizer, dtype and label."""
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
"""Constructor flags that pick one of torch's implementations: left out of
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


def _lr_array(value: float) -> np.ndarray:
    """A 0-d float32 lr, as ``torch.tensor(value)`` makes it."""
    return np.asarray(value, dtype=np.float32)


# --------------------------------------------------------------------------- SGD
_SGD_ALONE: list[dict[str, Any]] = [
    {},
    {"lr": 1e-2},
    {"lr": _lr_array(1e-3)},
    {"weight_decay": 0.5},
    {"momentum": 0.9},
    {"momentum": 0.9, "dampening": 0.5},
    {"momentum": 0.9, "nesterov": True},
    {"maximize": True},
    {"lr": _lr_array(1e-2), "momentum": 0.9, "weight_decay": 0.1},
]


def _sgd_crossed() -> list[dict[str, Any]]:
    out = []
    for momentum, dampening, nesterov, weight_decay, maximize in itertools.product(
        (0.0, 0.9), (0.0, 0.5), (False, True), (0.0, 0.1), (False, True)
    ):
        if nesterov and (momentum <= 0 or dampening != 0):
            continue
        if momentum == 0 and dampening != 0:
            continue  # dampening acts only through momentum
        out.append(
            {
                "lr": 1e-2,
                "momentum": momentum,
                "dampening": dampening,
                "nesterov": nesterov,
                "weight_decay": weight_decay,
                "maximize": maximize,
            }
        )
    return out


_SGD_GROUPS = (
    {"lr": 1e-2, "momentum": 0.9},
    {"lr": 5e-3, "momentum": 0.5, "dampening": 0.3, "weight_decay": 0.1},
    {"lr": 2e-2, "nesterov": True, "momentum": 0.8, "maximize": True},
)

# --------------------------------------------------------------------------- Adam, AdamW
_ADAM_ALONE: list[dict[str, Any]] = [
    {},
    {"lr": 1e-2},
    {"lr": _lr_array(1e-3)},
    {"lr": _lr_array(1e-2), "weight_decay": 0.1, "decoupled_weight_decay": True},
    {"weight_decay": 0.1},
    {"weight_decay": 0.1, "maximize": True},
    {"weight_decay": 0.1, "amsgrad": True},
    {"maximize": True},
    {"amsgrad": True},
    {"decoupled_weight_decay": True, "weight_decay": 0.1},
    {"betas": (0.8, 0.99), "eps": 1e-6},
    {"eps": 0.1},
]


def _adam_crossed(decoupled_choices: tuple[bool, ...] = (False, True)) -> list[dict[str, Any]]:
    out = []
    for weight_decay, maximize, amsgrad, decoupled in itertools.product(
        (0.0, 0.1), (False, True), (False, True), decoupled_choices
    ):
        options = {"lr": 1e-2, "weight_decay": weight_decay, "maximize": maximize, "amsgrad": amsgrad}
        if decoupled:
            options["decoupled_weight_decay"] = True
        out.append(options)
    return out


_ADAM_GROUPS = (
    {"lr": 1e-2},
    {"lr": 3e-3, "weight_decay": 0.1, "amsgrad": True},
    {"lr": 2e-2, "betas": (0.5, 0.9), "maximize": True},
)

_ADAMW_ALONE: list[dict[str, Any]] = [
    {},
    {"lr": 1e-2},
    {"lr": _lr_array(1e-3)},
    {"weight_decay": 0.5},
    {"amsgrad": True},
    {"maximize": True},
    {"weight_decay": 0.0},
]


def _adamw_crossed() -> list[dict[str, Any]]:
    return [
        {"lr": 1e-2, "weight_decay": wd, "maximize": mx, "amsgrad": am}
        for wd, mx, am in itertools.product((0.0, 0.1), (False, True), (False, True))
    ]


_ADAMW_GROUPS = (
    {"lr": 1e-2, "weight_decay": 0.1},
    {"lr": 3e-3, "weight_decay": 0.0, "amsgrad": True},
)

# --------------------------------------------------------------------------- Adagrad
_ADAGRAD_ALONE: list[dict[str, Any]] = [
    # torch's optim_inputs_func_adagrad
    {},
    {"weight_decay": 0.1},
    {"weight_decay": 0.1, "maximize": True},
    {"lr": 0.1},
    {"initial_accumulator_value": 0.1, "weight_decay": 0.1},
    {"lr": 0.1, "lr_decay": 0.5, "weight_decay": 0.1},
    {"lr": _lr_array(1e-3)},
    # every option alone
    {"lr_decay": 0.01},
    {"initial_accumulator_value": 0.5},
    {"eps": 1e-3},
    {"maximize": True},
    {"lr": _lr_array(1e-1), "lr_decay": 0.1},
]


def _adagrad_crossed() -> list[dict[str, Any]]:
    return [
        {
            "lr": 0.1,
            "lr_decay": lr_decay,
            "initial_accumulator_value": initial,
            "weight_decay": weight_decay,
            "maximize": maximize,
        }
        for lr_decay, initial, weight_decay, maximize in itertools.product(
            (0.0, 0.1), (0.0, 0.1), (0.0, 0.1), (False, True)
        )
    ]


# The per-group initial_accumulator_value is ignored by torch (the constructor's value,
# here the default 0, fills every group's sum): these groups check that quirk too.
_ADAGRAD_GROUPS = (
    {"lr": 0.1, "initial_accumulator_value": 0.5},
    {"lr": 0.05, "lr_decay": 0.1, "weight_decay": 0.1},
    {"lr": 0.2, "eps": 1e-3, "maximize": True},
)

# --------------------------------------------------------------------------- Adadelta
_ADADELTA_ALONE: list[dict[str, Any]] = [
    # torch's optim_inputs_func_adadelta (CPU part)
    {},
    {"lr": 0.01},
    {"weight_decay": 0.1},
    {"maximize": True},
    {"weight_decay": 0.1, "maximize": True},
    {"rho": 0.95, "weight_decay": 0.9},
    # every option alone, tensor lr, edge rho
    {"rho": 0.5},
    {"rho": 1.0},
    {"rho": 0.0},
    {"eps": 1e-3},
    {"lr": _lr_array(1e-1)},
    {"lr": _lr_array(1e-3), "weight_decay": 0.1},
]


def _adadelta_crossed() -> list[dict[str, Any]]:
    return [
        {"lr": 0.5, "rho": rho, "weight_decay": weight_decay, "maximize": maximize}
        for rho, weight_decay, maximize in itertools.product((0.5, 0.9), (0.0, 0.1), (False, True))
    ]


_ADADELTA_GROUPS = (
    {"lr": 1.0},
    {"lr": 0.5, "rho": 0.5, "weight_decay": 0.1},
    {"lr": 0.1, "rho": 0.95, "eps": 1e-4, "maximize": True},
)

# --------------------------------------------------------------------------- Adamax
_ADAMAX_ALONE: list[dict[str, Any]] = [
    # torch's optim_inputs_func_adamax (CPU part)
    {},
    {"lr": 0.1},
    {"weight_decay": 0.1},
    {"maximize": True},
    {"weight_decay": 0.1, "maximize": True},
    # every option alone, tensor lr
    {"betas": (0.8, 0.99)},
    {"betas": (0.0, 0.0)},
    {"eps": 0.1},
    {"lr": _lr_array(1e-3)},
    {"lr": _lr_array(1e-2), "weight_decay": 0.9, "maximize": True},
    # 0-d float32 betas (torch computes 1 - beta1**t in float32; unchecked by Adamax)
    {"betas": (_lr_array(0.9), _lr_array(0.999))},
    {"lr": _lr_array(1e-2), "betas": (_lr_array(0.8), _lr_array(0.99)), "weight_decay": 0.1},
]


def _adamax_crossed() -> list[dict[str, Any]]:
    return [
        {"lr": 1e-2, "betas": betas, "weight_decay": weight_decay, "maximize": maximize}
        for betas, weight_decay, maximize in itertools.product(
            ((0.9, 0.999), (0.5, 0.9)), (0.0, 0.1), (False, True)
        )
    ]


_ADAMAX_GROUPS = (
    {"lr": 1e-2},
    {"lr": 3e-3, "weight_decay": 0.1, "betas": (0.5, 0.9)},
    {"lr": 2e-2, "eps": 1e-3, "maximize": True},
)

# --------------------------------------------------------------------------- ASGD
_ASGD_ALONE: list[dict[str, Any]] = [
    # torch's optim_inputs_func_asgd (CPU part)
    {},
    {"lambd": 0.1},
    {"lr": 0.02},
    {"t0": 100},
    {"maximize": True},
    {"weight_decay": 0.1},
    {"weight_decay": 0.1, "maximize": True},
    # every option alone (averaging inside the run), tensor lr
    {"t0": 10},
    {"alpha": 0.5, "lambd": 0.1},
    {"alpha": 1.0, "lambd": 0.1},
    {"lr": _lr_array(1e-2)},
    {"lr": _lr_array(2e-2), "lambd": 0.1, "t0": 10, "weight_decay": 0.1, "maximize": True},
    {"lr": _lr_array(2e-2), "lambd": 0.1, "alpha": 0.5, "t0": 10},
    {"lr": _lr_array(2e-2), "lambd": 0.1, "alpha": 3.0, "t0": 10},
]


def _asgd_crossed() -> list[dict[str, Any]]:
    return [
        {"lr": 0.02, "t0": t0, "lambd": lambd, "weight_decay": weight_decay, "maximize": maximize}
        for t0, lambd, weight_decay, maximize in itertools.product(
            (10, 20.5), (1e-4, 0.1), (0.0, 0.1), (False, True)
        )
    ]


_ASGD_GROUPS = (
    {"lr": 0.02, "t0": 10},
    {"lr": 0.01, "lambd": 0.1, "t0": 20.5, "weight_decay": 0.1},
    {"lr": 0.05, "alpha": 0.5, "t0": 5, "maximize": True},
)

# --------------------------------------------------------------------------- NAdam
_NADAM_ALONE: list[dict[str, Any]] = [
    {},
    {"lr": 1e-3},
    {"lr": 1e-2},
    {"lr": _lr_array(1e-3)},
    {"momentum_decay": 6e-3},
    {"momentum_decay": 0.0},
    {"weight_decay": 0.1},
    {"weight_decay": 0.1, "momentum_decay": 6e-3},
    {"weight_decay": 0.1, "momentum_decay": 6e-3, "decoupled_weight_decay": True},
    {"weight_decay": 0.1, "maximize": True},
    {"maximize": True},
    {"decoupled_weight_decay": True},
    {"betas": (0.8, 0.99), "eps": 1e-6},
    {"eps": 0.1},
    # torch's CUDA configurations, without capturable
    {"weight_decay": 0.9, "momentum_decay": 6e-3},
    {"weight_decay": 0.9, "momentum_decay": 6e-3, "decoupled_weight_decay": True},
    {"lr": _lr_array(1e-3), "weight_decay": 0.9, "momentum_decay": 6e-3, "decoupled_weight_decay": True},
    {"lr": _lr_array(1e-2), "weight_decay": 0.1},
]


def _nadam_crossed() -> list[dict[str, Any]]:
    out = []
    for weight_decay, maximize, decoupled, momentum_decay in itertools.product(
        (0.0, 0.1), (False, True), (False, True), (4e-3, 6e-3)
    ):
        out.append(
            {
                "lr": 1e-2,
                "weight_decay": weight_decay,
                "maximize": maximize,
                "decoupled_weight_decay": decoupled,
                "momentum_decay": momentum_decay,
            }
        )
    return out


_NADAM_GROUPS = (
    {"lr": 1e-2},
    {"lr": 3e-3, "weight_decay": 0.1, "momentum_decay": 6e-3},
    {"lr": 2e-2, "betas": (0.5, 0.9), "maximize": True, "weight_decay": 0.1, "decoupled_weight_decay": True},
)

# --------------------------------------------------------------------------- RAdam
# rho_t > 5 first at step 6 for every beta2 >= 0.85; (0.9, 0.7) switches at step 10,
# (0.9, 0.6) never (rho_inf = 4).
_RADAM_ALONE: list[dict[str, Any]] = [
    {},
    {"lr": 2e-3},
    {"lr": 1e-2},
    {"lr": _lr_array(1e-3)},
    {"eps": 1e-6},
    {"eps": 0.1},
    {"weight_decay": 0.1},
    {"weight_decay": 0.1, "decoupled_weight_decay": True},
    {"weight_decay": 0.1, "maximize": True},
    {"maximize": True},
    {"decoupled_weight_decay": True},
    {"betas": (0.8, 0.9)},
    {"betas": (0.9, 0.7)},
    {"betas": (0.9, 0.6)},
    # torch's CUDA configuration, without capturable
    {"lr": _lr_array(1e-3), "weight_decay": 0.1, "decoupled_weight_decay": True},
    {"lr": _lr_array(1e-2), "weight_decay": 0.1},
]


def _radam_crossed() -> list[dict[str, Any]]:
    return [
        {"lr": 1e-2, "weight_decay": wd, "maximize": mx, "decoupled_weight_decay": dec}
        for wd, mx, dec in itertools.product((0.0, 0.1), (False, True), (False, True))
    ]


_RADAM_GROUPS = (
    {"lr": 1e-2},
    {"lr": 3e-3, "weight_decay": 0.1, "decoupled_weight_decay": True},
    {"lr": 2e-2, "betas": (0.5, 0.9), "maximize": True, "weight_decay": 0.05},
)

# --------------------------------------------------------------------------- RMSprop
_RMSPROP_ALONE: list[dict[str, Any]] = [
    {},
    {"lr": 1e-3},
    {"lr": _lr_array(1e-3)},
    {"weight_decay": 0.1},
    {"maximize": True},
    {"weight_decay": 0.1, "centered": True},
    {"maximize": True, "weight_decay": 0.1},
    {"weight_decay": 0.1, "centered": True, "momentum": 0.1},
    {"weight_decay": 0.1, "centered": True, "momentum": 0.1, "maximize": True},
    {"centered": True},
    {"momentum": 0.9},
    {"alpha": 0.9},
    {"alpha": 0.0},
    {"eps": 0.1},
    {"lr": _lr_array(1e-3), "momentum": 0.9},
    {"lr": _lr_array(1e-2), "centered": True, "weight_decay": 0.1},
]


def _rmsprop_crossed() -> list[dict[str, Any]]:
    return [
        {"lr": 1e-2, "centered": c, "momentum": m, "weight_decay": wd, "maximize": mx}
        for c, m, wd, mx in itertools.product((False, True), (0.0, 0.9), (0.0, 0.1), (False, True))
    ]


_RMSPROP_GROUPS = (
    {"lr": 1e-2},
    {"lr": 3e-3, "centered": True, "momentum": 0.5},
    {"lr": 1e-3, "alpha": 0.9, "weight_decay": 0.1, "maximize": True},
)

# --------------------------------------------------------------------------- Rprop
_RPROP_ALONE: list[dict[str, Any]] = [
    {},
    {"lr": 2e-4},
    {"lr": _lr_array(1e-3)},
    {"etas": (0.5, 1.5)},
    {"etas": (0.1, 3.0)},
    {"step_sizes": (2e-6, 100)},
    {"step_sizes": (1e-3, 0.02)},
    {"step_sizes": (0.1, 0.01)},  # min > max: every step size becomes max
    {"maximize": True},
]


def _rprop_crossed() -> list[dict[str, Any]]:
    return [
        {"lr": 1e-2, "etas": etas, "step_sizes": sizes, "maximize": mx}
        for etas, sizes, mx in itertools.product(
            ((0.5, 1.2), (0.3, 1.5)), ((1e-6, 50), (1e-3, 0.02)), (False, True)
        )
    ]


_RPROP_GROUPS = (
    {"lr": 1e-2},
    {"lr": 1e-3, "etas": (0.3, 1.5)},
    {"lr": 2e-2, "step_sizes": (1e-4, 1.0), "maximize": True},
)

# Feedback objectives: per optimizer, the options they run with.
_FEEDBACK = {
    "SGD": [
        ("quadratic", {"lr": 1e-2, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
        ("quadratic", {"lr": 1e-2, "momentum": 0.9, "dampening": 0.1}),
        ("rosenbrock", {"lr": 1e-4, "momentum": 0.9}),
    ],
    "Adam": [
        ("quadratic", {"lr": 1e-2}),
        ("quadratic", {"lr": 1e-2, "amsgrad": True, "weight_decay": 0.1}),
        ("rosenbrock", {"lr": 1e-3, "amsgrad": True}),
    ],
    "AdamW": [
        ("quadratic", {"lr": 1e-2}),
        ("rosenbrock", {"lr": 1e-3, "weight_decay": 0.1}),
    ],
    "Adagrad": [
        ("quadratic", {"lr": 0.1, "lr_decay": 0.01, "initial_accumulator_value": 0.1}),
        ("quadratic", {"lr": 0.1, "weight_decay": 0.1}),
        ("rosenbrock", {"lr": 1e-2}),
    ],
    "Adadelta": [
        ("quadratic", {"lr": 1.0}),
        ("quadratic", {"lr": 0.5, "rho": 0.5, "weight_decay": 0.1}),
        ("rosenbrock", {"lr": 0.1, "rho": 0.95}),
    ],
    "Adamax": [
        ("quadratic", {"lr": 1e-2}),
        ("quadratic", {"lr": 2e-2, "weight_decay": 0.1, "betas": (0.5, 0.9)}),
        ("rosenbrock", {"lr": 1e-3}),
    ],
    "ASGD": [
        ("quadratic", {"lr": 0.05, "t0": 10, "lambd": 0.1}),
        ("quadratic", {"lr": 0.02, "t0": 20.5, "weight_decay": 0.1}),
        ("rosenbrock", {"lr": 1e-4, "t0": 10}),
    ],
    "NAdam": [
        ("quadratic", {"lr": 1e-2}),
        ("quadratic", {"lr": 1e-2, "weight_decay": 0.1, "decoupled_weight_decay": True}),
        ("rosenbrock", {"lr": 1e-3}),
    ],
    "RAdam": [
        ("quadratic", {"lr": 1e-2}),
        ("quadratic", {"lr": 1e-2, "weight_decay": 0.1}),
        ("rosenbrock", {"lr": 1e-3}),
    ],
    "RMSprop": [
        ("quadratic", {"lr": 1e-2, "centered": True, "momentum": 0.9}),
        ("quadratic", {"lr": 1e-3}),
        ("rosenbrock", {"lr": 1e-4, "momentum": 0.9}),
    ],
    "Rprop": [
        ("quadratic", {}),
        ("rosenbrock", {"lr": 1e-3}),
    ],
}

_TABLE = {
    "SGD": (_SGD_ALONE, _sgd_crossed, _SGD_GROUPS),
    "Adam": (_ADAM_ALONE, _adam_crossed, _ADAM_GROUPS),
    "AdamW": (_ADAMW_ALONE, _adamw_crossed, _ADAMW_GROUPS),
    "Adagrad": (_ADAGRAD_ALONE, _adagrad_crossed, _ADAGRAD_GROUPS),
    "Adadelta": (_ADADELTA_ALONE, _adadelta_crossed, _ADADELTA_GROUPS),
    "Adamax": (_ADAMAX_ALONE, _adamax_crossed, _ADAMAX_GROUPS),
    "ASGD": (_ASGD_ALONE, _asgd_crossed, _ASGD_GROUPS),
    "NAdam": (_NADAM_ALONE, _nadam_crossed, _NADAM_GROUPS),
    "RAdam": (_RADAM_ALONE, _radam_crossed, _RADAM_GROUPS),
    "RMSprop": (_RMSPROP_ALONE, _rmsprop_crossed, _RMSPROP_GROUPS),
    "Rprop": (_RPROP_ALONE, _rprop_crossed, _RPROP_GROUPS),
}

_MIN_STEPS = {"ASGD": 120}
"""Steps an optimizer's configurations need to cross a threshold inside the algorithm:
torch's own ASGD entry ``{"t0": 100}`` starts averaging at step 103."""


EXTENSIONS: dict[str, str] = {
    "Adafactor": "adafactor",
    "LBFGS": "lbfgs",
    "Muon": "muon",
    "SparseAdam": "sparse",
}
"""Optimizers that are not elementwise, whose configurations and runner live in their own
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
