"""Run one configuration against torch: the teacher-forced one-step error of the
parameter and every state entry at every step, the state layout, and the free-running
trajectory error. Needs torch.

By default refoptim runs on NumPy and torch on the CPU with ``foreach=False``. The
elementwise optimizers' configurations can also run refoptim on another backend of
:mod:`refoptim.testing.backends` (its arrays cross to NumPy at the boundary; every figure is
measured on NumPy copies) and torch on CUDA and/or on its multi-tensor (``foreach=True``)
path; the other harnesses (``matrix.EXTENSIONS``) always run on NumPy against torch CPU
``foreach=False``, and their :class:`Result` says so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from . import backends, thresholds
from .matrix import SHAPES, Config, extension_for
from .metrics import relative_error, ulp_error
from .torch_kernels import torch_fuses, unfused_primitives
from .torch_adapter import (
    NUMPY_DTYPES,
    build_refoptim,
    build_twin,
    from_torch,
    initial_values,
    numpy_state_dict,
    to_torch,
)

__all__ = ["Result", "Spread", "run_config"]


@dataclass
class Spread:
    """torch against itself with only its summation order changed ("torch's twin"),
    measured in the same run and with the same figures as refoptim against torch.

    Some configurations' outcomes depend on the order in which torch's CPU kernels sum
    (MKL's dot product picks its blocking per CPU; L-BFGS amplifies a last-bit difference
    of a dot product into different iteration counts), so torch's own results move with
    the machine. A harness that can re-run torch with another, equally valid order
    (``conformance_lbfgs.torch_reduction_order``) measures how far torch moves: that is
    the spread a miss of refoptim is judged against (:attr:`Result.verdict`).
    """

    orders: str = ""
    """The other orders the twin ran (several: the figures are the worst of them)."""
    param_rel: float = 0.0
    state_rel: float = 0.0
    trajectory: float = 0.0
    counter_errors: list[str] = field(default_factory=list)
    """Where the twin's iteration counters (and the history lengths that follow them)
    differ from torch's: teacher-forced steps and free-running."""
    seconds: float = 0.0

    def worst(self, other: Spread) -> Spread:
        """The spread of both twins' orders: the worst of each figure."""
        return Spread(
            orders=", ".join(o for o in (self.orders, other.orders) if o),
            param_rel=max(self.param_rel, other.param_rel),
            state_rel=max(self.state_rel, other.state_rel),
            trajectory=max(self.trajectory, other.trajectory),
            counter_errors=self.counter_errors + other.counter_errors,
            seconds=self.seconds + other.seconds,
        )

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "orders": self.orders,
            "param": self.param_rel,
            "state": self.state_rel,
            "trajectory": self.trajectory,
            "counter_errors": list(self.counter_errors),
            "seconds": self.seconds,
        }


@dataclass
class Result:
    """What one configuration measured, and whether it meets the thresholds."""

    config: Config
    param_ulp: float = 0.0
    param_where: str = ""
    state_ulp: float = 0.0
    state_where: str = ""
    trajectory: float = 0.0
    structure_errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    backend: str = "numpy"
    torch_device: str = "cpu"
    torch_foreach: bool = False
    skipped: str = ""
    counter_errors: list[str] = field(default_factory=list)
    """Iteration counters that differ from torch's (LBFGS's ``n_iter`` and ``func_evals``,
    and the history lengths that follow them): decisions taken on rounded values, which a
    summation order can flip. Kept apart from :attr:`structure_errors` (the state layout,
    which no order changes) so that torch's twin can be held against them."""
    unfused: Result | None = None
    """The same configuration measured again with torch's two-operation rounding of
    ``lerp``, ``add(alpha=)`` and ``addcmul`` (:mod:`refoptim.testing.torch_kernels`), when
    refoptim missed a threshold on a machine whose torch kernels do not fuse them
    (``ATEN_CPU_CAPABILITY=default``, CPUs without AVX2)."""
    twin: Spread | None = None
    """torch against itself with another summation order (:class:`Spread`), when the
    harness measured it: for a configuration of ``thresholds.SENSITIVITY`` always, for
    any other one of a harness that has a twin when refoptim misses a threshold."""

    @property
    def passed(self) -> bool:
        """True when every figure meets its threshold and the state layout and the
        iteration counters match torch's."""
        return not self.misses

    @property
    def misses(self) -> list[str]:
        """The figures that miss their threshold: ``"structure"``, ``"counters"``,
        ``"param"``, ``"state"``, ``"trajectory"``."""
        limit = self.limit
        out = []
        if self.structure_errors:
            out.append("structure")
        if self.counter_errors:
            out.append("counters")
        if self.param_ulp > limit:
            out.append("param")
        if self.state_ulp > limit:
            out.append("state")
        if self.trajectory > self.trajectory_limit:
            out.append("trajectory")
        return out

    @property
    def limit(self) -> float:
        """The one-step threshold of this configuration (in :attr:`unit`)."""
        return thresholds.one_step_limit(self.config.optimizer, self.config.dtype)[0]

    @property
    def trajectory_limit(self) -> float:
        """The free-running threshold of this configuration (relative)."""
        return thresholds.trajectory_rel(self.config.dtype, self.config.optimizer)

    @property
    def unit(self) -> str:
        """The unit of ``param_ulp``/``state_ulp``: ``"ULP"``, or ``"rel"`` (relative
        error) for the optimizers that are not elementwise."""
        return thresholds.one_step_limit(self.config.optimizer, self.config.dtype)[1]

    @property
    def known(self) -> str | None:
        """The recorded reason when this configuration is a known deviation, else None."""
        return thresholds.KNOWN_DEVIATIONS.get(self.config.id)

    @property
    def gating(self) -> bool:
        """False for the configurations of ``thresholds.SENSITIVITY``: reported in the
        sensitivity section beside torch's twin, never failing the run."""
        return self.config.id not in thresholds.SENSITIVITY

    @property
    def verdict(self) -> str:
        """The figures' judgement, before the lists of ``thresholds``: ``pass`` (every
        threshold met), ``sensitive`` (refoptim misses, and torch's twin misses every
        threshold refoptim misses, as :func:`thresholds.within_spread` decides: torch's
        own result moves that far on this machine; or refoptim re-run with this machine's
        unfused torch kernels, :attr:`unfused`, meets every threshold), or ``fail``."""
        misses = self.misses
        if not misses:
            return "pass"
        if self.unfused is not None and self.unfused.passed and "structure" not in misses:
            return "sensitive"
        twin = self.twin
        if twin is None or "structure" in misses:
            return "fail"
        covered = {
            "counters": bool(twin.counter_errors),
            "param": thresholds.within_spread(self.param_ulp, twin.param_rel, self.limit),
            "state": thresholds.within_spread(self.state_ulp, twin.state_rel, self.limit),
            "trajectory": thresholds.within_spread(self.trajectory, twin.trajectory, self.trajectory_limit),
        }
        return "sensitive" if all(covered[m] for m in misses) else "fail"

    @property
    def status(self) -> str:
        """What the run makes of this configuration:

        - ``pass``: every threshold met;
        - ``sensitive``: misses, but torch against itself with another summation order
          misses the same way on this machine (:attr:`verdict`); does not fail the run;
        - ``fail``: misses where torch's twin does not (or where no twin runs): fails the run;
        - ``known``: a listed deviation (``thresholds.KNOWN_DEVIATIONS``) that misses;
        - ``known-not-seen``: a listed deviation that meets every threshold on this
          machine (torch's CPU results move with the machine: MKL's sqrt and reduction
          orders); reported, does not fail the run. The deviations were measured on NumPy
          against torch CPU ``foreach=False``; on other sides one that passes is a plain
          ``pass``;
        - ``sensitivity``: a configuration of ``thresholds.SENSITIVITY``, reported with its
          :attr:`verdict` beside torch's twin, never failing the run;
        - ``skipped``: torch's requested path rejects the configuration (:attr:`skipped`).
        """
        if self.skipped:
            return "skipped"
        if not self.gating:
            return "sensitivity"
        verdict = self.verdict
        if self.known is None:
            return verdict
        if verdict != "pass":
            return "known"
        default_sides = (self.backend, self.torch_device, self.torch_foreach) == ("numpy", "cpu", False)
        return "known-not-seen" if default_sides else "pass"

    @property
    def fails_run(self) -> bool:
        """True when this configuration fails the conformance run (status ``fail``)."""
        return self.status == "fail"

    @property
    def reason(self) -> str:
        """Why the configuration misses a threshold, or an empty string."""
        out = list(self.structure_errors) + list(self.counter_errors)
        limit, unit = self.limit, self.unit
        if self.param_ulp > limit:
            out.append(f"param one-step {self.param_ulp:.3g} {unit} > {limit:g} at {self.param_where}")
        if self.state_ulp > limit:
            out.append(f"state one-step {self.state_ulp:.3g} {unit} > {limit:g} at {self.state_where}")
        traj_limit = self.trajectory_limit
        if self.trajectory > traj_limit:
            out.append(f"trajectory {self.trajectory:.3g} > {traj_limit:g}")
        return "; ".join(out)

    @property
    def twin_text(self) -> str:
        """What torch's own spread showed, in a line: the re-run with this machine's unfused
        torch kernels (:attr:`unfused`) and torch's twin's figures (empty when neither ran)."""
        parts = []
        if self.unfused is not None:
            u = self.unfused
            verdict = "meets every threshold" if u.passed else "still misses: " + u.reason
            parts.append(
                f"torch's kernels here round lerp/add(alpha)/addcmul in two operations (no FMA, as with "
                f"ATEN_CPU_CAPABILITY=default); refoptim with that rounding {verdict} (param {u.param_ulp:.3g}, "
                f"state {u.state_ulp:.3g}, trajectory {u.trajectory:.2g})"
            )
        t = self.twin
        if t is not None:
            counters = f"; counters differ ({t.counter_errors[0]})" if t.counter_errors else ""
            parts.append(
                f"torch's twin ({t.orders}): param {t.param_rel:.2g}, state {t.state_rel:.2g}, "
                f"trajectory {t.trajectory:.2g}{counters}"
            )
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "optimizer": self.config.optimizer,
            "configuration": self.config.label,
            "dtype": self.config.dtype,
            "steps": self.config.steps,
            "unit": self.unit,
            "param_ulp": self.param_ulp,
            "param_where": self.param_where,
            "state_ulp": self.state_ulp,
            "state_where": self.state_where,
            "trajectory": self.trajectory,
            "passed": self.passed,
            "status": self.status,
            "verdict": self.verdict,
            "gating": self.gating,
            "reason": self.reason,
            "known_reason": self.known,
            "sensitivity_reason": thresholds.SENSITIVITY.get(self.config.id),
            "counter_errors": list(self.counter_errors),
            "twin": None if self.twin is None else self.twin.as_dict(),
            "unfused_rerun": None if self.unfused is None else {
                "param": self.unfused.param_ulp,
                "state": self.unfused.state_ulp,
                "trajectory": self.unfused.trajectory,
                "passed": self.unfused.passed,
            },
            "seconds": self.seconds,
            "backend": self.backend,
            "torch_device": self.torch_device,
            "torch_foreach": self.torch_foreach,
            "skipped": self.skipped,
        }


# ----------------------------------------------------------------------- gradients
def _has_grad(step: int, index: int) -> bool:
    """Parameter 2 (the 2-d one) gets no gradient for its first three steps and every
    seventh step after: its state starts late and its step count lags, as in torch."""
    return not (index == 2 and (step < 3 or step % 7 == 0))


class _Gradients:
    """The gradient source of a configuration; both sides evaluate it with NumPy."""

    def __init__(self, cfg: Config, values: list[np.ndarray]) -> None:
        self.cfg = cfg
        dtype = NUMPY_DTYPES[cfg.dtype]
        rng = np.random.default_rng(cfg.seed + 1)
        complex_ = np.dtype(dtype).kind == "c"

        def normal(shape: tuple) -> np.ndarray:
            x = rng.standard_normal(shape)
            if complex_:
                x = x + 1j * rng.standard_normal(shape)
            return np.asarray(x, dtype=dtype)

        shapes = [v.shape for v in values]
        if cfg.objective == "fixed":
            # Per-parameter scales from 1e-3 to 10, so small and large gradients both occur.
            scales = [10.0 ** rng.uniform(-3, 1) for _ in shapes]
            self.sequence = [[normal(s) * dtype(c) for s, c in zip(shapes, scales)] for _ in range(cfg.steps)]
        elif cfg.objective == "quadratic":
            # f = sum a/2 |x - c|^2 with curvatures a from 0.1 to 10 (ill-conditioned).
            self.curvature = [np.asarray(10.0 ** rng.uniform(-1, 1, s), dtype=dtype) for s in shapes]
            self.center = [normal(s) for s in shapes]

    def __call__(self, step: int, params: list[np.ndarray]) -> list[np.ndarray | None]:
        if self.cfg.objective == "fixed":
            grads = [g.copy() for g in self.sequence[step]]
        elif self.cfg.objective == "quadratic":
            grads = [a * (x - c) for a, x, c in zip(self.curvature, params, self.center)]
        else:
            grads = [_rosenbrock_grad(x) for x in params]
        return [g if _has_grad(step, i) else None for i, g in enumerate(grads)]


def _rosenbrock_grad(x: np.ndarray) -> np.ndarray:
    """Gradient of sum_i 100 (x[i+1] - x[i]^2)^2 + (1 - x[i])^2 over the flattened array."""
    flat = np.ascontiguousarray(x).reshape(-1)
    g = np.zeros_like(flat)
    if flat.size >= 2:
        xi, xn = flat[:-1], flat[1:]
        t = xn - xi * xi
        g[:-1] += -400 * xi * t - 2 * (1 - xi)
        g[1:] += 200 * t
    elif flat.size == 1:
        g += 2 * (flat - 1)
    return g.reshape(x.shape)


# ----------------------------------------------------------------------- comparison
def _layout_errors(where: str, ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """State keys, dtypes and shapes must be torch's."""
    errors = []
    if set(ours) != set(theirs):
        errors.append(f"{where}: state keys {sorted(ours)} != torch's {sorted(theirs)}")
        return errors
    for key, t in theirs.items():
        o = ours[key]
        if isinstance(t, torch.Tensor):
            o_np = _as_numpy(o)
            if o_np.dtype != from_torch(t).dtype or o_np.shape != tuple(t.shape):
                errors.append(
                    f"{where}: state[{key!r}] is {o_np.dtype}{list(o_np.shape)}, "
                    f"torch's {from_torch(t).dtype}{list(t.shape)}"
                )
    return errors


def _as_numpy(x: Any) -> np.ndarray:
    """``x`` as NumPy: an array of any registered backend copied (CuPy from the device),
    anything else through ``np.asarray``."""
    try:
        return backends.to_numpy(x)
    except TypeError:
        return np.asarray(x)


def _group_key_errors(torch_optimizer: Any, refoptim_optimizer: Any) -> list[str]:
    """``param_groups`` keys in ``state_dict()`` must be torch's."""
    t_groups = torch_optimizer.state_dict()["param_groups"]
    r_groups = refoptim_optimizer.state_dict()["param_groups"]
    return [
        f"param_groups[{gi}] keys {sorted(rg)} != torch's {sorted(tg)}"
        for gi, (tg, rg) in enumerate(zip(t_groups, r_groups))
        if set(tg) != set(rg)
    ]


def run_config(cfg: Config, backend: str = "numpy", torch_device: str = "cpu", torch_foreach: bool = False) -> Result:
    """Run one configuration: torch twin, teacher-forced refoptim, free-running refoptim.

    ``backend`` (a name of :mod:`refoptim.testing.backends`) is the array library of the
    refoptim side; ``torch_device`` (``"cpu"``, ``"cuda"``) and ``torch_foreach`` choose the
    torch side. A configuration that torch's ``foreach=True`` path rejects (a tensor ``lr``
    without ``capturable``, ...) comes back with :attr:`Result.skipped` set.

    Configurations of the optimizers that are not elementwise (and sparse gradients) go to
    their own harness, ``refoptim.testing.conformance_<module>`` (see ``matrix.EXTENSIONS``),
    which always runs refoptim on NumPy against torch on the CPU with ``foreach=False``;
    their results say so (``backend="numpy"``, ``torch_device="cpu"``, ``torch_foreach=False``).
    """
    result = _run(cfg, backend, torch_device, torch_foreach)
    if (
        (backend, torch_device, torch_foreach) == ("numpy", "cpu", False)
        and result.verdict == "fail"
        and not result.structure_errors
        and not torch_fuses()
    ):
        # torch's kernels on this machine round lerp/add(alpha)/addcmul in two operations:
        # measure refoptim again with that rounding (torch_kernels module docstring).
        with unfused_primitives():
            result.unfused = _run(cfg, backend, torch_device, torch_foreach)
    return result


def _run(cfg: Config, backend: str, torch_device: str, torch_foreach: bool) -> Result:
    """:func:`run_config` without the re-run with torch's unfused kernels."""
    module = extension_for(cfg)
    if module is not None:
        return module.run_config(cfg)
    b = backends.require_backend(backend)
    start = time.perf_counter()
    result = Result(cfg, backend=backend, torch_device=torch_device, torch_foreach=torch_foreach)
    values = initial_values(cfg)
    try:
        twin = build_twin(cfg, values, torch_device, torch_foreach)
    except (RuntimeError, TypeError, ValueError) as exc:
        if not torch_foreach:
            raise
        result.skipped = f"torch's foreach=True path rejects it: {type(exc).__name__}: {exc}"
        return result
    forced = build_refoptim(cfg, values, backend)
    free = build_refoptim(cfg, values, backend)
    gradients = _Gradients(cfg, values)
    # state_dict ids run over the groups in order; the i-th parameter's id:
    state_id = {id(p): k for k, p in enumerate(p for g in twin.optimizer.param_groups for p in g["params"])}
    state_id = [state_id[id(p)] for p in twin.params]

    for step in range(cfg.steps):
        t_before = [from_torch(p) for p in twin.params]
        t_state_before = numpy_state_dict(twin.optimizer.state_dict())
        grads = gradients(step, t_before)

        # Teacher forcing: refoptim starts this step from torch's parameters and state,
        # copied as they are (load_state_dict would cast them, as torch's does), as arrays
        # of refoptim's backend.
        for i, (p, value) in enumerate(zip(forced.params, t_before)):
            p.data[...] = b.from_numpy(value)
            entry = t_state_before["state"].get(state_id[i])
            if entry:
                forced.optimizer.state[p] = {k: b.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in entry.items()}
            else:
                forced.optimizer.state.pop(p, None)

        for tp, fp, g in zip(twin.params, forced.params, grads):
            tp.grad = None if g is None else to_torch(g).to(tp.device)
            fp.grad = None if g is None else b.from_numpy(g)
        try:
            twin.optimizer.step()
        except (RuntimeError, TypeError, ValueError) as exc:
            if not torch_foreach:
                raise
            result.skipped = f"torch's foreach=True path rejects it: {type(exc).__name__}: {exc}"
            result.seconds = time.perf_counter() - start
            return result
        forced.optimizer.step()

        t_state = twin.optimizer.state_dict()["state"]
        r_state = forced.optimizer.state_dict()["state"]
        for i, (tp, fp, g) in enumerate(zip(twin.params, forced.params, grads)):
            operands = [t_before[i]] + ([g] if g is not None else [])
            err = ulp_error(b.to_numpy(fp.data), from_torch(tp), *operands)
            if err > result.param_ulp:
                result.param_ulp, result.param_where = err, f"step {step + 1}, param {SHAPES[i]}"
            t_entry = t_state.get(state_id[i], {})
            r_entry = r_state.get(state_id[i], {})
            if step == 0 or step == cfg.steps - 1:
                result.structure_errors += _layout_errors(f"step {step + 1}, param {SHAPES[i]}", r_entry, t_entry)
            before_entry = t_state_before["state"].get(state_id[i], {})
            for key, t_val in t_entry.items():
                if not isinstance(t_val, torch.Tensor) or key not in r_entry:
                    continue
                ops = [before_entry[key]] if key in before_entry else []
                if g is not None:
                    ops.append(g)
                err = ulp_error(_as_numpy(r_entry[key]), from_torch(t_val), *ops)
                if err > result.state_ulp:
                    result.state_ulp, result.state_where = err, f"step {step + 1}, param {SHAPES[i]}, {key}"

        # Free running: refoptim on its own parameters and gradients.
        f_grads = gradients(step, [b.to_numpy(p.data) for p in free.params])
        for fp, g in zip(free.params, f_grads):
            fp.grad = None if g is None else b.from_numpy(g)
        free.optimizer.step()

    result.trajectory = max(
        relative_error(b.to_numpy(fp.data), from_torch(tp)) for fp, tp in zip(free.params, twin.params)
    )
    result.structure_errors += _group_key_errors(twin.optimizer, free.optimizer)
    result.seconds = time.perf_counter() - start
    return result
