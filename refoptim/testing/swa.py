"""swa_utils against torch: SWALR's lrs ``==`` torch's at every step, and the SWA and EMA
averages of :class:`refoptim.swa_utils.AveragedModel` bitwise equal to torch's
``AveragedModel`` over 20 updates. Needs torch. Used by
``conformance/test_swa_utils_vs_torch.py`` and by ``python -m refoptim conformance``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.optim.swa_utils as tswa

import refoptim
import refoptim.swa_utils as rswa

from .inputs import (
    AVERAGING_SETUPS,
    AVERAGING_UPDATES,
    SWALR_CASES,
    SWALR_STEPS,
    averaging_kwargs,
)
from .inputs import SWA_GROUP_LRS as LRS
from .inputs import SWALR_SWA_LRS as SWA_LRS

__all__ = ["AVERAGING", "SWALR_CASES", "run_averaging", "run_swalr"]

# The cases (SWALR_CASES, the lrs, the step counts) live in the torch-free module
# refoptim.testing.inputs, imported above.


def _pair(n_groups: int) -> tuple[Any, Any]:
    tgroups = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": LRS[i]} for i in range(n_groups)]
    rgroups = [{"params": [refoptim.Parameter(np.zeros(2))], "lr": LRS[i]} for i in range(n_groups)]
    return torch.optim.SGD(tgroups, lr=0.1), refoptim.SGD(rgroups, lr=0.1)


def _lrs(opt: Any) -> list[float]:
    return [g["lr"] for g in opt.param_groups]


def run_swalr(strategy: str, anneal_epochs: int, n_groups: int, swa_as_list: bool) -> str:
    """One SWALR case over :data:`SWALR_STEPS` steps; the first difference, or ``""``."""
    topt, ropt = _pair(n_groups)
    swa = SWA_LRS[:n_groups] if swa_as_list else 0.02
    ts = tswa.SWALR(topt, swa, anneal_epochs=anneal_epochs, anneal_strategy=strategy)
    rs = rswa.SWALR(ropt, swa, anneal_epochs=anneal_epochs, anneal_strategy=strategy)
    if _lrs(ropt) != _lrs(topt):
        return f"at construction: lrs {_lrs(ropt)} != torch's {_lrs(topt)}"
    for step in range(SWALR_STEPS):
        topt.step()
        ropt.step()
        ts.step()
        rs.step()
        if _lrs(ropt) != _lrs(topt):
            return f"step {step + 1}: lrs {_lrs(ropt)} != torch's {_lrs(topt)}"
        if rs.get_last_lr() != ts.get_last_lr():
            return f"step {step + 1}: get_last_lr {rs.get_last_lr()} != torch's {ts.get_last_lr()}"
        if [g["swa_lr"] for g in ropt.param_groups] != [g["swa_lr"] for g in topt.param_groups]:
            return f"step {step + 1}: swa_lr differs"
    return ""


AVERAGING: dict[str, tuple[Any, Any]] = {
    name: (lambda name=name: averaging_kwargs(name, tswa), lambda name=name: averaging_kwargs(name, rswa))
    for name in AVERAGING_SETUPS
}
"""Averaging setups by name, each the torch and refoptim keyword arguments of AveragedModel."""


def _trajectory(dtype: Any, n: int = AVERAGING_UPDATES, shapes: tuple = ((7,), (3, 4), ())) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(1234)
    base = [rng.standard_normal(s).astype(dtype) for s in shapes]
    out = []
    for _ in range(n):
        base = [b + rng.standard_normal(b.shape).astype(dtype) * dtype(0.1) for b in base]
        out.append([np.array(b, copy=True) for b in base])
    return out


def _torch_model(arrays: list[np.ndarray]) -> Any:
    m = torch.nn.Module()
    for i, a in enumerate(arrays):
        m.register_parameter(f"p{i}", torch.nn.Parameter(torch.from_numpy(np.array(a, copy=True))))
    return m


def run_averaging(name: str, dtype: Any) -> str:
    """Averaging setup ``name`` over :data:`AVERAGING_UPDATES` updates in ``dtype``: every
    averaged parameter bitwise equal to torch's and ``n_averaged`` equal after each update;
    the first difference, or ``""``."""
    traj = _trajectory(dtype)
    tkw, rkw = AVERAGING[name]
    tmodel = _torch_model(traj[0])
    tavg = tswa.AveragedModel(tmodel, **tkw())
    rparams = [refoptim.Parameter(np.array(a, copy=True)) for a in traj[0]]
    ravg = rswa.AveragedModel(rparams, **rkw())
    for step, arrays in enumerate(traj):
        with torch.no_grad():
            for tp, a in zip(tmodel.parameters(), arrays):
                tp.copy_(torch.from_numpy(a))
        for rp, a in zip(rparams, arrays):
            rp.data[...] = a
        tavg.update_parameters(tmodel)
        ravg.update_parameters(rparams)
        if not int(ravg.n_averaged) == int(tavg.n_averaged) == step + 1:
            return f"update {step + 1}: n_averaged {int(ravg.n_averaged)} != torch's {int(tavg.n_averaged)}"
        if ravg.n_averaged.dtype != np.int64 or ravg.n_averaged.shape != ():
            return f"update {step + 1}: n_averaged is {ravg.n_averaged.dtype}{list(ravg.n_averaged.shape)}, not int64[]"
        for i, (tp, rp) in enumerate(zip(tavg.module.parameters(), ravg.params)):
            t = tp.detach().numpy()
            if rp.data.dtype != t.dtype or rp.data.tobytes() != t.tobytes():
                return f"update {step + 1}, param {i}: not bitwise equal to torch's"
    return ""
