"""Muon against live torch 2.13: the configurations and the harness (an ``EXTENSIONS`` module).

Muon takes 2-D parameters only, so its configurations run on their own five matrices:
``(3, 4)`` (wide), ``(4, 3)`` (tall: torch orthogonalizes the transpose), ``(5, 5)``,
``(1, 6)`` (a single row) and ``"view"``, a non-contiguous ``(3, 4)`` view (every other row,
four inner columns) of a ``(6, 9)`` array.

Figures of one teacher-forced step (refoptim starts from torch's parameters and state):

* **parameter** (unit ``rel``): ``max|ours - torch| / max|torch_after - before|``, the
  difference relative to the size of the step torch took. torch's update is a bfloat16
  matrix, so a faithful emulation differs from it by whole bfloat16 units of the update
  where a rounding inside Newton–Schulz went the other way (matrix products accumulate in a
  different order): the figure says how large that is against the update, which is what
  ``thresholds.ONE_STEP_REL["Muon"]`` (``2**-8``, one bfloat16 rounding) bounds. Relative
  to the parameter itself it would be smaller by the ratio of step to parameter (``lr``).
* **momentum_buffer**: elementwise (``lerp``) in the parameter's dtype, so it is measured
  in ULP too (:func:`refoptim.testing.metrics.ulp_error`; expected 0) and reported to
  :class:`Result` in its unit, ``rel`` (:func:`refoptim.testing.metrics.step_relative_error`).

The free-running trajectory is the maximum relative error of the parameters after all steps.
Each :class:`Result` also carries ``bit_identical`` (parameter elements equal to torch's bit
for bit over all teacher-forced steps, and the total) and ``state_ulp_max`` (the buffer's
worst figure in ULP).
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import numpy as np
import torch

from ..muon import Muon
from .matrix import Config, _lr_array
from .metrics import relative_error, step_relative_error, ulp_error
from .runner import Result, _group_key_errors, _layout_errors
from .torch_adapter import _groups, from_torch, refoptim_params, to_torch, torch_options

__all__ = ["SHAPES", "configs", "initial_values", "run_config", "update_relative_error"]

SHAPES: tuple[Any, ...] = ((3, 4), (4, 3), (5, 5), (1, 6), "view")

LARGE_SHAPES: tuple[Any, ...] = ((24, 40), (64, 48))
"""The parameters of the ``"large"`` objective (a fixed gradient sequence): matrices whose
products sum enough terms that NumPy's BLAS order and torch's differ, so a few elements
round to the neighbouring bfloat16 (a known deviation, see thresholds.KNOWN_DEVIATIONS)."""


def _shapes(cfg: Config) -> tuple[Any, ...]:
    return LARGE_SHAPES if cfg.objective == "large" else SHAPES
"""The parameters of every Muon configuration (all 2-D)."""

DTYPES = ("float32", "float64")
_NP = {"float32": np.float32, "float64": np.float64}
_TORCH = {"float32": torch.float32, "float64": torch.float64}


_ALONE: list[dict[str, Any]] = [
    {},
    {"lr": 1e-2},
    {"lr": _lr_array(2e-2)},
    {"weight_decay": 0.0},
    {"weight_decay": 0.5},
    {"momentum": 0.9},
    {"momentum": 0.0},
    {"nesterov": False},
    {"ns_coefficients": (2.0, -1.5, 0.5)},
    {"eps": 1e-3},
    {"eps": 10.0},  # larger than the norm: the division by eps path
    {"ns_steps": 1},
    {"ns_steps": 0},
    {"ns_steps": 10},
    {"adjust_lr_fn": "original"},
    {"adjust_lr_fn": "match_rms_adamw"},
]


def _crossed() -> list[dict[str, Any]]:
    return [
        {"lr": 2e-2, "nesterov": nesterov, "adjust_lr_fn": fn, "weight_decay": wd, "momentum": mom}
        for nesterov, fn, wd, mom in itertools.product(
            (True, False), (None, "match_rms_adamw"), (0.0, 0.1), (0.9, 0.95)
        )
    ]


_GROUPS = (
    {"lr": 2e-2},
    {"lr": 1e-2, "weight_decay": 0.0, "nesterov": False, "adjust_lr_fn": "match_rms_adamw"},
    {"lr": 5e-2, "momentum": 0.8, "ns_steps": 3, "eps": 1e-3},
)

_FEEDBACK: list[dict[str, Any]] = [
    {"lr": 2e-2},
    {"lr": 5e-2, "adjust_lr_fn": "match_rms_adamw", "weight_decay": 0.01},
    {"lr": 2e-2, "nesterov": False, "momentum": 0.9},
]


def configs(optimizers: list[str] | None, dtypes: tuple[str, ...], steps: int) -> list[Config]:
    """Muon's configurations in the requested real dtypes (float32, float64): every option
    alone, crossings of nesterov x adjust_lr_fn x weight_decay x momentum, three groups,
    and the quadratic objective (with feedback)."""
    if optimizers is not None and "Muon" not in optimizers:
        return []
    entries: list[tuple[dict[str, Any], tuple[dict[str, Any], ...], str]] = []
    entries += [(o, (), "fixed") for o in _ALONE + _crossed()]
    entries += [({}, _GROUPS, "fixed"), ({}, _GROUPS, "quadratic")]
    entries += [(o, (), "quadratic") for o in _FEEDBACK]
    entries += [({"lr": 2e-2}, (), "large")]
    out, seen = [], set()
    for dtype in dtypes:
        if dtype not in DTYPES:
            continue
        for options, groups, objective in entries:
            # the large matrices' known deviation first shows at step 44: they always run 50
            n_steps = max(steps, 50) if objective == "large" else steps
            cfg = Config("Muon", dict(options), dtype, groups, objective, n_steps)
            if cfg.id not in seen:
                seen.add(cfg.id)
                out.append(cfg)
    return out


# ----------------------------------------------------------------------- building
def initial_values(cfg: Config) -> list[np.ndarray]:
    """The initial matrices of a configuration, from its seed."""
    rng = np.random.default_rng(cfg.seed)
    return [
        np.asarray(rng.standard_normal((3, 4) if s == "view" else s), dtype=_NP[cfg.dtype]) for s in _shapes(cfg)
    ]


def _build_refoptim(cfg: Config, values: list[np.ndarray]) -> tuple[list[Any], Muon]:
    params = refoptim_params(_shapes(cfg), values)
    return params, Muon(_groups(cfg, params), **cfg.options)


def _build_torch(cfg: Config, values: list[np.ndarray]) -> tuple[list[torch.Tensor], Any]:
    params = []
    for shape, value in zip(_shapes(cfg), values):
        if shape == "view":
            t = torch.zeros((6, 9), dtype=_TORCH[cfg.dtype])[::2, 1:5]
            with torch.no_grad():
                t.copy_(to_torch(value))
            t.requires_grad_(True)
        else:
            t = to_torch(value).requires_grad_(True)
        params.append(t)
    return params, torch.optim.Muon(_groups(cfg, params, torch_options), **torch_options(cfg.options))


class _Gradients:
    """A seeded gradient sequence, or the quadratic's gradient ``a * (x - c)``."""

    def __init__(self, cfg: Config, values: list[np.ndarray]) -> None:
        self.cfg = cfg
        dtype = _NP[cfg.dtype]
        rng = np.random.default_rng(cfg.seed + 1)
        shapes = [v.shape for v in values]
        if cfg.objective in ("fixed", "large"):
            scales = [10.0 ** rng.uniform(-3, 1) for _ in shapes]
            self.sequence = [
                [np.asarray(rng.standard_normal(s) * c, dtype=dtype) for s, c in zip(shapes, scales)]
                for _ in range(cfg.steps)
            ]
        else:
            self.curvature = [np.asarray(10.0 ** rng.uniform(-1, 1, s), dtype=dtype) for s in shapes]
            self.center = [np.asarray(rng.standard_normal(s), dtype=dtype) for s in shapes]

    def __call__(self, step: int, params: list[np.ndarray]) -> list[np.ndarray | None]:
        if self.cfg.objective in ("fixed", "large"):
            grads = [g.copy() for g in self.sequence[step]]
        else:
            grads = [a * (x - c) for a, x, c in zip(self.curvature, params, self.center)]
        # The (5, 5) matrix skips its first two steps and every fifth: its buffer starts late.
        return [None if i == 2 and (step < 2 or step % 5 == 0) else g for i, g in enumerate(grads)]


def update_relative_error(ours: Any, theirs: Any, before: Any) -> float:
    """``max|ours - theirs| / max|theirs - before|``: the one-step difference relative to
    the size of torch's step (absolute when torch did not move). NaN against NaN agrees."""
    a, b, p = (np.asarray(v, dtype=np.float64) for v in (ours, theirs, before))
    equal = (a == b) | (np.isnan(a) & np.isnan(b))
    if np.all(equal):
        return 0.0
    diff = np.where(equal, 0.0, np.abs(a - b))
    if not np.all(np.isfinite(diff)):
        return float("inf")
    scale = float(np.max(np.abs(b - p)))
    worst = float(np.max(diff))
    return worst / scale if scale > 0 else worst


def _where(step: int, i: int, cfg: Config | None = None) -> str:
    return f"step {step + 1}, param {(SHAPES if cfg is None else _shapes(cfg))[i]}"


def run_config(cfg: Config) -> Result:
    """Run one Muon configuration: torch twin, teacher-forced refoptim, free-running refoptim."""
    start = time.perf_counter()
    result = Result(cfg)
    values = initial_values(cfg)
    t_params, t_opt = _build_torch(cfg, values)
    f_params, f_opt = _build_refoptim(cfg, values)
    r_params, r_opt = _build_refoptim(cfg, values)
    gradients = _Gradients(cfg, values)
    identical = total = 0
    state_ulp_max = 0.0

    for step in range(cfg.steps):
        before = [from_torch(p) for p in t_params]
        t_bufs = [
            from_torch(t_opt.state[p]["momentum_buffer"]) if "momentum_buffer" in t_opt.state.get(p, {}) else None
            for p in t_params
        ]
        grads = gradients(step, before)
        for fp, value, buf in zip(f_params, before, t_bufs):
            fp.data[...] = value
            if buf is None:
                f_opt.state.pop(fp, None)
            else:
                f_opt.state[fp] = {"momentum_buffer": buf.copy()}
        for tp, fp, g in zip(t_params, f_params, grads):
            tp.grad = None if g is None else to_torch(g)
            fp.grad = None if g is None else g.copy()
        t_opt.step()
        f_opt.step()

        for i, (tp, fp, g) in enumerate(zip(t_params, f_params, grads)):
            theirs, ours = from_torch(tp), np.asarray(fp.data)
            identical += int(np.sum((theirs == ours) & (np.signbit(theirs) == np.signbit(ours))))
            total += theirs.size
            err = update_relative_error(ours, theirs, before[i])
            if err > result.param_ulp:
                result.param_ulp, result.param_where = err, _where(step, i, cfg)
            t_state, r_state = t_opt.state.get(tp, {}), f_opt.state.get(fp, {})
            if step == 0 or step == cfg.steps - 1:
                result.structure_errors += _layout_errors(_where(step, i, cfg), r_state, t_state)
            if "momentum_buffer" in t_state and "momentum_buffer" in r_state:
                t_buf, r_buf = from_torch(t_state["momentum_buffer"]), np.asarray(r_state["momentum_buffer"])
                ops = [b for b in (t_bufs[i], g) if b is not None]
                ulp = ulp_error(r_buf, t_buf, *ops)
                state_ulp_max = max(state_ulp_max, ulp)
                rel = step_relative_error(r_buf, t_buf, *ops)
                if rel > result.state_ulp or (ulp > 0 and not result.state_where):
                    result.state_ulp = rel
                    result.state_where = f"{_where(step, i, cfg)}, momentum_buffer ({ulp:g} ULP)"

        f_grads = gradients(step, [np.asarray(p.data) for p in r_params])
        for rp, g in zip(r_params, f_grads):
            rp.grad = g
        r_opt.step()

    result.trajectory = max(relative_error(np.asarray(rp.data), from_torch(tp)) for rp, tp in zip(r_params, t_params))
    result.structure_errors += _group_key_errors(t_opt, r_opt)
    result.bit_identical = (identical, total)  # type: ignore[attr-defined]
    result.state_ulp_max = state_ulp_max  # type: ignore[attr-defined]
    result.seconds = time.perf_counter() - start
    return result
