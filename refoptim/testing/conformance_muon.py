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

With torch's AVX2 kernels the small matrices are bit-identical; with other kernels
(``ATEN_CPU_CAPABILITY=default``, other CPUs) a few bfloat16 roundings inside Newton–Schulz
go the other way and the figures jump to about 1e-2 of the update. So where refoptim
misses a threshold, **torch's twin** runs (:func:`measure_twin`): torch again with its
bfloat16 reductions in other orders (:func:`torch_ns_order`), measured the same way; a miss
the twin shows as well is torch's own spread on this machine (``Result.verdict``).
Each :class:`Result` also carries ``bit_identical`` (parameter elements equal to torch's bit
for bit over all teacher-forced steps, and the total) and ``state_ulp_max`` (the buffer's
worst figure in ULP).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from ..muon import Muon
from .inputs import MUON_DTYPES as DTYPES  # noqa: F401 (kept importable from here)
from .inputs import MUON_LARGE_SHAPES as LARGE_SHAPES  # noqa: F401 (kept importable from here)
from .inputs import MUON_SHAPES as SHAPES
from .inputs import muon_configs as configs
from .inputs import muon_shapes as _shapes
from .matrix import Config
from .metrics import relative_error, step_relative_error, ulp_error
from .runner import Result, Spread, _group_key_errors, _layout_errors
from .torch_adapter import _groups, from_torch, refoptim_params, to_torch, torch_options

__all__ = [
    "SHAPES",
    "TWIN_ORDERS",
    "configs",
    "initial_values",
    "measure_twin",
    "run_config",
    "torch_ns_order",
    "update_relative_error",
]

# The configurations (shapes, option lists, ``configs``) live in the torch-free module
# refoptim.testing.inputs, imported above under their old names.

_NP = {"float32": np.float32, "float64": np.float64}
_TORCH = {"float32": torch.float32, "float64": torch.float64}


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
    if not result.passed and (result.known is None or not result.gating):
        # One order at a time, until the twin's spread covers refoptim's miss (a twin run
        # costs two torch runs per order): the figures are the worst of the orders run.
        for order in TWIN_ORDERS:
            twin = measure_twin(cfg, (order,))
            result.twin = twin if result.twin is None else result.twin.worst(twin)
            if result.verdict == "sensitive":
                break
    result.seconds = time.perf_counter() - start
    return result


# ----------------------------------------------------------------------- torch's twin
TWIN_ORDERS = ("accurate", "unfused", "reversed")
"""The orders torch's twin runs its bfloat16 Newton–Schulz iteration in
(:func:`torch_ns_order`). A bfloat16 rounding that another order flips is a rare event (a
float32 sum within a few units of a bfloat16 tie), so :func:`run_config` tries them in
turn, until one covers refoptim's miss; the figures are the worst of those run."""


@contextlib.contextmanager
def torch_ns_order(order: str) -> Iterator[None]:
    """Run torch's Muon with the reductions of its bfloat16 Newton–Schulz iteration
    (``X.norm()``, ``X @ X.T``, ``torch.addmm``) computed in another, equally valid way;
    every call on other dtypes is torch's own:

    - ``"reversed"``: torch's kernels on the inner dimension reversed;
    - ``"accurate"``: in float64 (scalars rounded to float32 first, as torch's bfloat16
      kernels take them), rounded to bfloat16 once;
    - ``"unfused"``: ``addmm``'s ``beta * C + alpha * (A @ B)`` in float32 with the product
      and the sum rounded separately (no fused multiply-add), then to bfloat16.

    Not thread-safe (it patches ``torch.Tensor`` and ``torch.addmm``).
    """
    if order not in TWIN_ORDERS:
        raise ValueError(f"unknown order {order!r}; expected one of {TWIN_ORDERS}")
    cls = torch.Tensor
    saved = {name: cls.__dict__.get(name) for name in ("__matmul__", "norm")}
    matmul, norm, addmm = cls.__matmul__, cls.norm, torch.addmm
    bf16 = torch.bfloat16

    def f32(v: float) -> float:
        return float(torch.tensor(v, dtype=torch.float32))

    def other_matmul(a: torch.Tensor, b: Any) -> Any:
        if a.dtype != bf16 or not isinstance(b, torch.Tensor) or a.dim() != 2 or b.dim() != 2:
            return matmul(a, b)
        if order == "reversed":
            return matmul(a.flip(1), b.flip(0))
        return matmul(a.double(), b.double()).to(bf16)

    def other_addmm(c: torch.Tensor, a: torch.Tensor, b: torch.Tensor, *, beta: float = 1, alpha: float = 1, **kw: Any) -> Any:
        if c.dtype != bf16 or kw:
            return addmm(c, a, b, beta=beta, alpha=alpha, **kw)
        if order == "reversed":
            return addmm(c, a.flip(1), b.flip(0), beta=beta, alpha=alpha)
        if order == "accurate":
            prod = matmul(a.double(), b.double())
            return (f32(beta) * c.double() + f32(alpha) * prod).to(bf16)
        prod = matmul(a.float(), b.float())
        return (c.float() * f32(beta) + prod * f32(alpha)).to(bf16)

    def other_norm(x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if x.dtype != bf16 or args or kwargs:
            return norm(x, *args, **kwargs)
        if order == "reversed":
            return norm(x.reshape(-1).flip(0))
        return norm(x.double()).to(bf16)

    cls.__matmul__, cls.norm, torch.addmm = other_matmul, other_norm, other_addmm
    try:
        yield
    finally:
        torch.addmm = addmm
        for name, value in saved.items():
            if value is None:
                delattr(cls, name)
            else:
                setattr(cls, name, value)


def measure_twin(cfg: Config, orders: tuple[str, ...] = TWIN_ORDERS) -> Spread:
    """torch against itself with its Newton–Schulz reductions in other orders
    (:func:`torch_ns_order`), measured as :func:`run_config` measures refoptim: the
    teacher-forced one-step figures of the parameters (relative to torch's update) and of
    the momentum buffers, and the free-running trajectory; the worst over ``orders``."""
    start = time.perf_counter()
    spread = Spread(orders=", ".join(orders))
    values = initial_values(cfg)
    gradients = _Gradients(cfg, values)
    t_params, t_opt = _build_torch(cfg, values)
    forced = {o: _build_torch(cfg, values) for o in orders}
    free = {o: _build_torch(cfg, values) for o in orders}
    for step in range(cfg.steps):
        before = [from_torch(p) for p in t_params]
        bufs = [t_opt.state.get(p, {}).get("momentum_buffer") for p in t_params]
        bufs = [None if b is None else b.clone() for b in bufs]
        grads = gradients(step, before)
        for tp, g in zip(t_params, grads):
            tp.grad = None if g is None else to_torch(g)
        t_opt.step()
        for o in orders:
            params, opt = forced[o]
            with torch.no_grad():
                for p, value, buf, g in zip(params, before, bufs, grads):
                    p.copy_(to_torch(value))
                    p.grad = None if g is None else to_torch(g)
                    if buf is None:
                        opt.state.pop(p, None)
                    else:
                        opt.state[p] = {"momentum_buffer": buf.clone()}
            f_params, f_opt = free[o]
            f_grads = gradients(step, [from_torch(p) for p in f_params])
            for p, g in zip(f_params, f_grads):
                p.grad = None if g is None else to_torch(g)
            with torch_ns_order(o):
                opt.step()
                f_opt.step()
            for i, (tp, p, g) in enumerate(zip(t_params, params, grads)):
                spread.param_rel = max(spread.param_rel, update_relative_error(from_torch(p), from_torch(tp), before[i]))
                t_buf = t_opt.state.get(tp, {}).get("momentum_buffer")
                buf = opt.state.get(p, {}).get("momentum_buffer")
                if t_buf is not None and buf is not None:
                    ops = [from_torch(b) for b in (bufs[i],) if b is not None] + ([g] if g is not None else [])
                    spread.state_rel = max(spread.state_rel, step_relative_error(from_torch(buf), from_torch(t_buf), *ops))
    for o in orders:
        f_params, _ = free[o]
        spread.trajectory = max(
            spread.trajectory, *(relative_error(from_torch(p), from_torch(tp)) for p, tp in zip(f_params, t_params))
        )
    spread.seconds = time.perf_counter() - start
    return spread
