"""swa_utils against torch: SWALR's lrs ``==`` torch's at every step, and the SWA and EMA
averages of :class:`refoptim.swa_utils.AveragedModel` bitwise equal to torch's
``AveragedModel`` over 20 updates. Needs torch. Used by
``conformance/test_swa_utils_vs_torch.py`` and by ``python -m refoptim conformance``.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch
import torch.optim.swa_utils as tswa

import refoptim
import refoptim.swa_utils as rswa

__all__ = ["AVERAGING", "SWALR_CASES", "run_averaging", "run_swalr"]

LRS = [0.1, 0.05, 0.3]
SWA_LRS = [0.01, 0.2, 0.003]
SWALR_STEPS = 40
AVERAGING_UPDATES = 20

SWALR_CASES: list[tuple[str, int, int, bool]] = list(
    itertools.product(["cos", "linear"], [0, 1, 3, 10, 25], [1, 2, 3], [False, True])
)
"""(anneal_strategy, anneal_epochs, groups, swa_lr given per group) for every SWALR case."""


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
    "swa-default": (dict, dict),
    "swa-multi": (lambda: {"multi_avg_fn": tswa.get_swa_multi_avg_fn()},
                  lambda: {"multi_avg_fn": rswa.get_swa_multi_avg_fn()}),
    "swa-single": (lambda: {"avg_fn": tswa.get_swa_avg_fn()}, lambda: {"avg_fn": rswa.get_swa_avg_fn()}),
    "ema-multi": (lambda: {"multi_avg_fn": tswa.get_ema_multi_avg_fn()},
                  lambda: {"multi_avg_fn": rswa.get_ema_multi_avg_fn()}),
    "ema-multi-0.9": (lambda: {"multi_avg_fn": tswa.get_ema_multi_avg_fn(0.9)},
                      lambda: {"multi_avg_fn": rswa.get_ema_multi_avg_fn(0.9)}),
    "ema-multi-0.3": (lambda: {"multi_avg_fn": tswa.get_ema_multi_avg_fn(0.3)},
                      lambda: {"multi_avg_fn": rswa.get_ema_multi_avg_fn(0.3)}),
    "ema-single": (lambda: {"avg_fn": tswa.get_ema_avg_fn()}, lambda: {"avg_fn": rswa.get_ema_avg_fn()}),
    "ema-single-0.9": (lambda: {"avg_fn": tswa.get_ema_avg_fn(0.9)}, lambda: {"avg_fn": rswa.get_ema_avg_fn(0.9)}),
}
"""Averaging setups by name: the torch and refoptim keyword arguments of AveragedModel."""


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
