r"""The registry of optimizers: one declarative entry per optimizer, as torch's
``OptimizerInfo`` is for its tests.

Everything that lists optimizers is derived from :data:`OPTIMIZERS`: the exports of
:mod:`refoptim` and :mod:`refoptim.functional`, the conformance matrix
(:mod:`refoptim.testing.matrix`), the benchmark's list (``python -m refoptim bench``, :mod:`!refoptim.bench`), the test
parametrisations, the index of the manual's optimizer pages and the parity tables. A test
(``tests/test_registry.py``) fails when a registered optimizer lacks its module, its class,
its functional rule, its page or its matrix entry, or when a hand-written table disagrees
with the registry.

The entries are in lineage order, the order of the manual: SGD, then what each descendant
adds over its ancestor (momentum and Nesterov live in SGD), Adagrad, RMSprop and Adadelta,
Adam, then Adam's variants, then the rest. Adding an optimizer means its module, its entry
here and its page: see ``CONTRIBUTING.md``.

This module imports no optimizer: :attr:`OptimizerInfo.cls` imports the class when asked.
"""

from __future__ import annotations

import importlib
import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["OPTIMIZERS", "TORCH_SOURCE_ROOT", "OptimizerInfo", "Paper", "get", "names"]

TORCH_SOURCE_ROOT = "https://github.com/pytorch/pytorch/blob/v2.13.0/"
"""The address of torch 2.13's sources on GitHub; an entry's ``torch_source`` is a path
under it."""


@dataclass(frozen=True)
class Paper:
    """A reference: who and what (``citation``) and where to read it (``url``: arXiv, DOI,
    or the author's page where there is no paper)."""

    citation: str
    url: str


@dataclass(frozen=True)
class OptimizerInfo:
    """One optimizer: what it is, where it lives and how it is tested, benchmarked and
    documented.

    Attributes:
        name: the class name, as in ``torch.optim``.
        module: the module under :mod:`refoptim` that holds the class and its rule.
        summary: what it does, in a few words (the manual's index).
        state: the state each parameter keeps, in reStructuredText (the manual's index).
        parent: the optimizer it extends in the lineage (``None`` for a root).
        lineage: one sentence: what it adds over ``parent``, and why.
        papers: the papers it follows, first the one that introduced it.
        torch_source: the path of torch's implementation under :data:`refoptim.registry.TORCH_SOURCE_ROOT`.
        elementwise: its rule acts on each element on its own, so the base may run it
            piece by piece (``refoptim/_fastpath.py``), and the elementwise conformance
            matrix and :func:`refoptim.testing.compare` cover it.
        sparse: its ``step`` accepts a :class:`refoptim.SparseGrad` (torch's SGD, Adagrad,
            SparseAdam).
        bench: the options ``python -m refoptim bench`` runs it with (``None``: not benchmarked).
        bench_default: benchmarked when no optimizer is named.
        matrix: its conformance configurations: for an elementwise optimizer a dict with
            ``alone`` (option sets), ``crossed`` (a function returning more option sets),
            ``groups`` (per-group options), ``feedback`` (``(objective, options)`` pairs)
            and optionally ``min_steps``; for the others ``{"extension": <module>}``, the
            harness ``refoptim.testing.conformance_<module>``.
    """

    name: str
    module: str
    summary: str
    state: str
    parent: str | None
    lineage: str
    papers: tuple[Paper, ...]
    torch_source: str
    elementwise: bool
    sparse: bool = False
    bench: dict[str, Any] | None = None
    bench_default: bool = False
    matrix: dict[str, Any] = field(default_factory=dict)

    @property
    def cls(self) -> type:
        """The class (imported on first use)."""
        return getattr(importlib.import_module(f"refoptim.{self.module}"), self.name)

    @property
    def rules(self) -> tuple[str, str]:
        """The names of its ``(init, step)`` functions in :mod:`refoptim.functional`:
        ``<module>_init`` and ``<module>_step``, defined in its module."""
        return (f"{self.module}_init", f"{self.module}_step")

    @property
    def page(self) -> str:
        """The manual's page, relative to ``docs/``."""
        return f"optimizers/{self.module}"

    @property
    def torch_url(self) -> str:
        """torch 2.13's implementation, on GitHub."""
        return TORCH_SOURCE_ROOT + self.torch_source


# ============================================================================ conformance matrix
# The configurations of each elementwise optimizer (its entry's ``matrix``), which
# refoptim.testing.matrix turns into Configs: every option alone (_<NAME>_ALONE), options
# crossed where they interact (_<name>_crossed), one parameter-group layout
# (_<NAME>_GROUPS, run on the fixed gradients and on the quadratic) and the options of the
# objectives with feedback (_<NAME>_FEEDBACK). What they cover: that module's docstring.


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

_SGD_FEEDBACK: list[tuple[str, dict[str, Any]]] = [
    ("quadratic", {"lr": 1e-2, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("quadratic", {"lr": 1e-2, "momentum": 0.9, "dampening": 0.1}),
    ("rosenbrock", {"lr": 1e-4, "momentum": 0.9}),
]


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

_ADAGRAD_FEEDBACK: list[tuple[str, dict[str, Any]]] = [
    ("quadratic", {"lr": 0.1, "lr_decay": 0.01, "initial_accumulator_value": 0.1}),
    ("quadratic", {"lr": 0.1, "weight_decay": 0.1}),
    ("rosenbrock", {"lr": 1e-2}),
]


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

_RMSPROP_FEEDBACK: list[tuple[str, dict[str, Any]]] = [
    ("quadratic", {"lr": 1e-2, "centered": True, "momentum": 0.9}),
    ("quadratic", {"lr": 1e-3}),
    ("rosenbrock", {"lr": 1e-4, "momentum": 0.9}),
]


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

_ADADELTA_FEEDBACK: list[tuple[str, dict[str, Any]]] = [
    ("quadratic", {"lr": 1.0}),
    ("quadratic", {"lr": 0.5, "rho": 0.5, "weight_decay": 0.1}),
    ("rosenbrock", {"lr": 0.1, "rho": 0.95}),
]


# --------------------------------------------------------------------------- Adam
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

_ADAM_FEEDBACK: list[tuple[str, dict[str, Any]]] = [
    ("quadratic", {"lr": 1e-2}),
    ("quadratic", {"lr": 1e-2, "amsgrad": True, "weight_decay": 0.1}),
    ("rosenbrock", {"lr": 1e-3, "amsgrad": True}),
]


# --------------------------------------------------------------------------- AdamW
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

_ADAMW_FEEDBACK: list[tuple[str, dict[str, Any]]] = [
    ("quadratic", {"lr": 1e-2}),
    ("rosenbrock", {"lr": 1e-3, "weight_decay": 0.1}),
]


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

_ADAMAX_FEEDBACK: list[tuple[str, dict[str, Any]]] = [
    ("quadratic", {"lr": 1e-2}),
    ("quadratic", {"lr": 2e-2, "weight_decay": 0.1, "betas": (0.5, 0.9)}),
    ("rosenbrock", {"lr": 1e-3}),
]


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

_NADAM_FEEDBACK: list[tuple[str, dict[str, Any]]] = [
    ("quadratic", {"lr": 1e-2}),
    ("quadratic", {"lr": 1e-2, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("rosenbrock", {"lr": 1e-3}),
]


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

_RADAM_FEEDBACK: list[tuple[str, dict[str, Any]]] = [
    ("quadratic", {"lr": 1e-2}),
    ("quadratic", {"lr": 1e-2, "weight_decay": 0.1}),
    ("rosenbrock", {"lr": 1e-3}),
]


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

_ASGD_FEEDBACK: list[tuple[str, dict[str, Any]]] = [
    ("quadratic", {"lr": 0.05, "t0": 10, "lambd": 0.1}),
    ("quadratic", {"lr": 0.02, "t0": 20.5, "weight_decay": 0.1}),
    ("rosenbrock", {"lr": 1e-4, "t0": 10}),
]


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

_RPROP_FEEDBACK: list[tuple[str, dict[str, Any]]] = [
    ("quadratic", {}),
    ("rosenbrock", {"lr": 1e-3}),
]

# ============================================================================ the registry
_ADAM_PAPER = Paper("Kingma & Ba, Adam: A Method for Stochastic Optimization, ICLR 2015", "https://arxiv.org/abs/1412.6980")

OPTIMIZERS: tuple[OptimizerInfo, ...] = (
    OptimizerInfo(
        name="SGD",
        module="sgd",
        summary="gradient descent, momentum, Nesterov, dampening",
        state="``momentum_buffer`` (with momentum)",
        parent=None,
        lineage=(
            "The root: step against the gradient. Momentum (Polyak's heavy ball) averages past "
            "gradients so that steps keep going along consistent directions and cancel across "
            "oscillating ones; Nesterov's variant looks ahead along the momentum."
        ),
        papers=(
            Paper("Robbins & Monro, A Stochastic Approximation Method, 1951", "https://doi.org/10.1214/aoms/1177729586"),
            Paper(
                "Sutskever, Martens, Dahl & Hinton, On the importance of initialization and momentum in deep learning, ICML 2013",
                "https://proceedings.mlr.press/v28/sutskever13.html",
            ),
        ),
        torch_source="torch/optim/sgd.py",
        elementwise=True,
        sparse=True,
        bench={"lr": 0.01, "momentum": 0.9},
        bench_default=True,
        matrix={
            "alone": _SGD_ALONE,
            "crossed": _sgd_crossed,
            "groups": _SGD_GROUPS,
            "feedback": _SGD_FEEDBACK,
        },
    ),
    OptimizerInfo(
        name="Adagrad",
        module="adagrad",
        summary="steps scaled by the summed squared gradients; sparse gradients",
        state="``step``, ``sum`` (from construction)",
        parent="SGD",
        lineage=(
            "One step size per coordinate: each is divided by the root of that coordinate's summed "
            "squared gradients, so rare features get large steps; the sum only grows, so steps only shrink."
        ),
        papers=(
            Paper(
                "Duchi, Hazan & Singer, Adaptive Subgradient Methods for Online Learning and Stochastic Optimization, JMLR 2011",
                "https://jmlr.org/papers/v12/duchi11a.html",
            ),
        ),
        torch_source="torch/optim/adagrad.py",
        elementwise=True,
        sparse=True,
        bench={"lr": 1e-2},
        bench_default=True,
        matrix={
            "alone": _ADAGRAD_ALONE,
            "crossed": _adagrad_crossed,
            "groups": _ADAGRAD_GROUPS,
            "feedback": _ADAGRAD_FEEDBACK,
        },
    ),
    OptimizerInfo(
        name="RMSprop",
        module="rmsprop",
        summary="steps scaled by a running RMS; centered; momentum",
        state="``step``, ``square_avg`` (, ``momentum_buffer``, ``grad_avg``)",
        parent="Adagrad",
        lineage=(
            "Adagrad's sum replaced by an exponential moving average of squared gradients, so the "
            "step size forgets old gradients and no longer decays to zero."
        ),
        papers=(
            Paper(
                "Hinton, Srivastava & Swersky, Neural Networks for Machine Learning, lecture 6e, 2012",
                "https://www.cs.toronto.edu/~tijmen/csc321/slides/lecture_slides_lec6.pdf",
            ),
            Paper("Graves, Generating Sequences With Recurrent Neural Networks, 2013 (centered)", "https://arxiv.org/abs/1308.0850"),
        ),
        torch_source="torch/optim/rmsprop.py",
        elementwise=True,
        bench={"lr": 1e-3},
        bench_default=True,
        matrix={
            "alone": _RMSPROP_ALONE,
            "crossed": _rmsprop_crossed,
            "groups": _RMSPROP_GROUPS,
            "feedback": _RMSPROP_FEEDBACK,
        },
    ),
    OptimizerInfo(
        name="Adadelta",
        module="adadelta",
        summary="ratio of two running RMS, of updates and of gradients",
        state="``step``, ``square_avg``, ``acc_delta``",
        parent="Adagrad",
        lineage=(
            "Also fixes Adagrad's ever-shrinking steps with a running average, and gives the update "
            "the units of the parameter: the RMS of past updates over the RMS of gradients."
        ),
        papers=(Paper("Zeiler, ADADELTA: An Adaptive Learning Rate Method, 2012", "https://arxiv.org/abs/1212.5701"),),
        torch_source="torch/optim/adadelta.py",
        elementwise=True,
        bench={},
        matrix={
            "alone": _ADADELTA_ALONE,
            "crossed": _adadelta_crossed,
            "groups": _ADADELTA_GROUPS,
            "feedback": _ADADELTA_FEEDBACK,
        },
    ),
    OptimizerInfo(
        name="Adam",
        module="adam",
        summary="first and second moments, bias-corrected; AMSGrad; decoupled decay",
        state="``step``, ``exp_avg``, ``exp_avg_sq`` (, ``max_exp_avg_sq``)",
        parent="RMSprop",
        lineage=(
            "RMSprop's running second moment plus a running first moment (momentum), both "
            "bias-corrected so that the first steps are not shrunk towards their zero start."
        ),
        papers=(
            _ADAM_PAPER,
            Paper("Reddi, Kale & Kumar, On the Convergence of Adam and Beyond, ICLR 2018 (AMSGrad)", "https://openreview.net/forum?id=ryQu7f-RZ"),
        ),
        torch_source="torch/optim/adam.py",
        elementwise=True,
        bench={"lr": 1e-3},
        bench_default=True,
        matrix={
            "alone": _ADAM_ALONE,
            "crossed": _adam_crossed,
            "groups": _ADAM_GROUPS,
            "feedback": _ADAM_FEEDBACK,
        },
    ),
    OptimizerInfo(
        name="AdamW",
        module="adamw",
        summary="Adam with decoupled weight decay (default 1e-2)",
        state="as Adam",
        parent="Adam",
        lineage=(
            "Weight decay taken out of the gradient and applied to the parameter directly: with "
            "Adam's L2 term the decay is divided by the root of the second moment, so weights with "
            "large gradients are barely decayed."
        ),
        papers=(Paper("Loshchilov & Hutter, Decoupled Weight Decay Regularization, ICLR 2019", "https://arxiv.org/abs/1711.05101"),),
        torch_source="torch/optim/adamw.py",
        elementwise=True,
        bench={"lr": 1e-3},
        bench_default=True,
        matrix={
            "alone": _ADAMW_ALONE,
            "crossed": _adamw_crossed,
            "groups": _ADAMW_GROUPS,
            "feedback": _ADAMW_FEEDBACK,
        },
    ),
    OptimizerInfo(
        name="Adamax",
        module="adamax",
        summary="Adam with an infinity norm",
        state="``step``, ``exp_avg``, ``exp_inf``",
        parent="Adam",
        lineage=(
            "Adam's second moment (an L2 norm of past gradients) replaced by an exponentially "
            "weighted infinity norm, a running maximum that needs no bias correction."
        ),
        papers=(_ADAM_PAPER,),
        torch_source="torch/optim/adamax.py",
        elementwise=True,
        bench={},
        matrix={
            "alone": _ADAMAX_ALONE,
            "crossed": _adamax_crossed,
            "groups": _ADAMAX_GROUPS,
            "feedback": _ADAMAX_FEEDBACK,
        },
    ),
    OptimizerInfo(
        name="NAdam",
        module="nadam",
        summary="Adam with Nesterov momentum and a momentum schedule; NAdamW",
        state="``step``, ``mu_product``, ``exp_avg``, ``exp_avg_sq``",
        parent="Adam",
        lineage="Adam's momentum made Nesterov's: the step looks ahead along the next momentum, with a warm-up schedule for it.",
        papers=(Paper("Dozat, Incorporating Nesterov Momentum into Adam, ICLR 2016 workshop", "https://openreview.net/forum?id=OM0jvwB8jIp57ZJjtNEZ"),),
        torch_source="torch/optim/nadam.py",
        elementwise=True,
        bench={},
        matrix={
            "alone": _NADAM_ALONE,
            "crossed": _nadam_crossed,
            "groups": _NADAM_GROUPS,
            "feedback": _NADAM_FEEDBACK,
        },
    ),
    OptimizerInfo(
        name="RAdam",
        module="radam",
        summary="Adam rectified once the variance estimate is reliable",
        state="``step``, ``exp_avg``, ``exp_avg_sq``",
        parent="Adam",
        lineage=(
            "Adam without a warm-up: while the second moment rests on too few gradients, it takes "
            "plain momentum steps, then scales Adam's step by a rectification term."
        ),
        papers=(
            Paper("Liu et al., On the Variance of the Adaptive Learning Rate and Beyond, ICLR 2020", "https://arxiv.org/abs/1908.03265"),
        ),
        torch_source="torch/optim/radam.py",
        elementwise=True,
        bench={},
        matrix={
            "alone": _RADAM_ALONE,
            "crossed": _radam_crossed,
            "groups": _RADAM_GROUPS,
            "feedback": _RADAM_FEEDBACK,
        },
    ),
    OptimizerInfo(
        name="ASGD",
        module="asgd",
        summary="SGD with a decaying step and an average of the iterates",
        state="``step``, ``eta``, ``mu``, ``ax``",
        parent="SGD",
        lineage="SGD with a decaying step size that also keeps the running average of its iterates, which converges faster than the iterates themselves.",
        papers=(
            Paper(
                "Polyak & Juditsky, Acceleration of Stochastic Approximation by Averaging, SIAM J. Control Optim. 1992",
                "https://doi.org/10.1137/0330046",
            ),
        ),
        torch_source="torch/optim/asgd.py",
        elementwise=True,
        bench={},
        matrix={
            "alone": _ASGD_ALONE,
            "crossed": _asgd_crossed,
            "groups": _ASGD_GROUPS,
            "feedback": _ASGD_FEEDBACK,
            # torch's own ASGD entry {"t0": 100} starts averaging at step 103
            "min_steps": 120,
        },
    ),
    OptimizerInfo(
        name="Rprop",
        module="rprop",
        summary="per-element step sizes driven by gradient signs",
        state="``step``, ``prev``, ``step_size``",
        parent="SGD",
        lineage="Only the sign of the gradient is used: each element's step size grows while the sign holds and shrinks when it flips (full-batch training).",
        papers=(
            Paper(
                "Riedmiller & Braun, A Direct Adaptive Method for Faster Backpropagation Learning: The RPROP Algorithm, ICNN 1993",
                "https://doi.org/10.1109/ICNN.1993.298623",
            ),
        ),
        torch_source="torch/optim/rprop.py",
        elementwise=True,
        bench={},
        matrix={
            "alone": _RPROP_ALONE,
            "crossed": _rprop_crossed,
            "groups": _RPROP_GROUPS,
            "feedback": _RPROP_FEEDBACK,
        },
    ),
    OptimizerInfo(
        name="SparseAdam",
        module="sparse_adam",
        summary="Adam on the rows a sparse gradient names",
        state="``step`` (an int), ``exp_avg``, ``exp_avg_sq``",
        parent="Adam",
        lineage="Adam for embeddings: only the rows a sparse gradient names have their moments and values updated.",
        papers=(_ADAM_PAPER,),
        torch_source="torch/optim/sparse_adam.py",
        elementwise=False,
        sparse=True,
        matrix={"extension": "sparse"},
    ),
    OptimizerInfo(
        name="Adafactor",
        module="adafactor",
        summary="factored second moments, relative step sizes",
        state="``step``, ``row_var`` and ``col_var``, or ``variance``",
        parent="Adam",
        lineage="Adam's second moment of a matrix stored as its row and column sums, memory O(n+m) for O(nm), with a step size relative to the parameter's scale.",
        papers=(
            Paper("Shazeer & Stern, Adafactor: Adaptive Learning Rates with Sublinear Memory Cost, ICML 2018", "https://arxiv.org/abs/1804.04235"),
        ),
        torch_source="torch/optim/_adafactor.py",
        elementwise=False,
        matrix={"extension": "adafactor"},
    ),
    OptimizerInfo(
        name="Muon",
        module="muon",
        summary="momentum orthogonalized by Newton–Schulz (2-D parameters)",
        state="``momentum_buffer``",
        parent="SGD",
        lineage="SGD's momentum of a weight matrix replaced by its nearest semi-orthogonal matrix (a few Newton–Schulz iterations), so every direction of the update gets the same size.",
        papers=(
            Paper("Jordan et al., Muon: An optimizer for hidden layers in neural networks, 2024", "https://kellerjordan.github.io/posts/muon/"),
            Paper("Liu et al., Muon is Scalable for LLM Training, 2025 (match_rms_adamw)", "https://arxiv.org/abs/2502.16982"),
        ),
        torch_source="torch/optim/_muon.py",
        elementwise=False,
        matrix={"extension": "muon"},
    ),
    OptimizerInfo(
        name="LBFGS",
        module="lbfgs",
        summary="limited-memory BFGS with a closure, optional strong-Wolfe line search",
        state="global, on the first parameter",
        parent=None,
        lineage=(
            "A quasi-Newton method, not a descendant of SGD: it re-evaluates the loss through a "
            "closure and builds a curvature model from the last few steps and gradient changes."
        ),
        papers=(
            Paper(
                "Liu & Nocedal, On the limited memory BFGS method for large scale optimization, Math. Programming 1989",
                "https://doi.org/10.1007/BF01589116",
            ),
            Paper("Nocedal & Wright, Numerical Optimization, 2nd ed., Springer 2006 (Algorithms 7.4, 3.5, 3.6)", "https://doi.org/10.1007/978-0-387-40065-5"),
        ),
        torch_source="torch/optim/lbfgs.py",
        elementwise=False,
        matrix={"extension": "lbfgs"},
    ),
)
"""Every optimizer of torch 2.13, in lineage order (the manual's order)."""

_BY_NAME = {info.name: info for info in OPTIMIZERS}


def get(name: str) -> OptimizerInfo:
    """The entry of the optimizer called ``name`` (``KeyError`` naming the known ones)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no optimizer {name!r} is registered; known: {', '.join(_BY_NAME)}") from None


def names(*, elementwise: bool | None = None, sparse: bool | None = None) -> tuple[str, ...]:
    """The registered names, in lineage order; ``elementwise``/``sparse``: only those whose
    flag has that value."""
    return tuple(
        i.name
        for i in OPTIMIZERS
        if (elementwise is None or i.elementwise == elementwise) and (sparse is None or i.sparse == sparse)
    )
