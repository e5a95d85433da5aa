"""The conformance matrix: one readable entry per configuration.

Every entry is a :class:`Config`: an optimizer, its constructor options, a dtype, the
parameter-group layout, the gradient source and the number of steps. Every configuration
runs on the same five parameters, which cover the shapes that matter: 0-d, 1-d, 2-d,
size 0, and a non-contiguous 2-d view into a larger array.

The option lists cover every option alone and crossed where options interact, and at
least every configuration torch 2.13's own optimizer tests use for these optimizers
(``torch/testing/_internal/common_optimizers.py``: default, non-default lr, tensor lr,
weight decay, momentum, dampening, nesterov, maximize, amsgrad, ...).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Config", "DTYPES", "OBJECTIVES", "SHAPES", "configs", "optimizer_names"]

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


def _fmt(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return f"array({v.item()!r}, {v.dtype})"
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
}

_TABLE = {
    "SGD": (_SGD_ALONE, _sgd_crossed, _SGD_GROUPS),
    "Adam": (_ADAM_ALONE, _adam_crossed, _ADAM_GROUPS),
    "AdamW": (_ADAMW_ALONE, _adamw_crossed, _ADAMW_GROUPS),
}


def optimizer_names() -> list[str]:
    """Optimizers the matrix covers."""
    return list(_TABLE)


def configs(optimizers: list[str] | None = None, dtypes: tuple[str, ...] = DTYPES, steps: int = 50) -> list[Config]:
    """Every configuration of the matrix, for the given optimizers (default: all) and dtypes.

    Duplicates (an option set listed alone and again among the crossings) appear once.
    The Rosenbrock objective is real-valued only; it runs in the real dtypes.
    """
    out: list[Config] = []
    seen: set[str] = set()
    for name in optimizers or optimizer_names():
        alone, crossed, groups = _TABLE[name]
        entries: list[tuple[dict[str, Any], tuple[dict[str, Any], ...], str]] = []
        entries += [(o, (), "fixed") for o in alone]
        entries += [(o, (), "fixed") for o in crossed()]
        entries.append(({}, tuple(groups), "fixed"))
        entries.append(({}, tuple(groups), "quadratic"))
        entries += [(o, (), objective) for objective, o in _FEEDBACK.get(name, [])]
        for dtype in dtypes:
            for options, grp, objective in entries:
                if objective == "rosenbrock" and dtype.startswith("complex"):
                    continue
                cfg = Config(name, dict(options), dtype, grp, objective, steps)
                if cfg.id in seen:
                    continue
                seen.add(cfg.id)
                out.append(cfg)
    return out
