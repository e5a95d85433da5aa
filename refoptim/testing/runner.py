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
from typing import Any

import numpy as np
import torch

from .._backend import assign
from . import backends
from .inputs import Gradients
from .matrix import SHAPES, Config, extension_for
from .metrics import relative_error, ulp_error, update_ulp_error
from .results import Result, Spread
from .torch_kernels import torch_fuses, unfused_primitives
from .torch_adapter import (
    build_refoptim,
    build_twin,
    from_torch,
    initial_values,
    numpy_state_dict,
    to_torch,
)

__all__ = ["Result", "Spread", "run_config"]


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
    gradients = Gradients(cfg, values)
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
            p.data = assign(p.data, b.from_numpy(value))  # in place; rebound where immutable
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
            ours, theirs = b.to_numpy(fp.data), from_torch(tp)
            err = ulp_error(ours, theirs, *operands)
            if err > result.param_ulp:
                result.param_ulp, result.param_where = err, f"step {step + 1}, param {SHAPES[i]}"
            err = update_ulp_error(ours, theirs, t_before[i])
            if err > result.update_ulp:
                result.update_ulp, result.update_where = err, f"step {step + 1}, param {SHAPES[i]}"
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
        result.trajectory_by_step.append(
            max(relative_error(b.to_numpy(fp.data), from_torch(tp)) for fp, tp in zip(free.params, twin.params))
        )

    result.trajectory = max(
        relative_error(b.to_numpy(fp.data), from_torch(tp)) for fp, tp in zip(free.params, twin.params)
    )
    result.structure_errors += _group_key_errors(twin.optimizer, free.optimizer)
    result.seconds = time.perf_counter() - start
    return result
