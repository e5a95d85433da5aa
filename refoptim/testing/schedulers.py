"""Schedulers against torch: the same scheduler on a torch optimizer and on its refoptim
twin, stepped together; every group's lr (and cycled momentum / ``betas``), ``initial_lr``,
``get_last_lr()``, ``last_epoch``, and the warnings and errors of each step must be equal
with ``==``. Needs torch. Used by ``conformance/test_lr_scheduler_vs_torch.py`` and by
``python -m refoptim conformance``.
"""

import warnings

import numpy as np
import torch
import torch.optim.lr_scheduler as tls

import refoptim
import refoptim.lr_scheduler as rls

from .inputs import SCHEDULER_CONFIGS as CONFIGS
from .inputs import SCHEDULER_DEFAULT_STEPS, Scale
from .inputs import SCHEDULER_LRS as LRS
from .inputs import SCHEDULER_STEPS as STEPS

__all__ = ["CONFIGS", "STEPS", "Scale", "run", "run_named"]


def _pair(n_groups, kind="sgd", lrs=LRS):
    """A torch optimizer and its refoptim twin with identical param_groups."""
    tgroups = [{"params": [torch.zeros(3, dtype=torch.float64, requires_grad=True)], "lr": lrs[i]}
               for i in range(n_groups)]
    rgroups = [{"params": [refoptim.Parameter(np.zeros(3))], "lr": lrs[i]} for i in range(n_groups)]
    for g in tgroups:
        g["params"][0].grad = torch.full((3,), 0.5, dtype=torch.float64)
    for g in rgroups:
        g["params"][0].grad = np.full((3,), 0.5)
    if kind == "sgd":
        return (torch.optim.SGD(tgroups, lr=0.1, momentum=0.9, foreach=False),
                refoptim.SGD(rgroups, lr=0.1, momentum=0.9))
    if kind == "adam":
        return torch.optim.Adam(tgroups, lr=0.1, foreach=False), refoptim.Adam(rgroups, lr=0.1)
    raise ValueError(kind)


def _check(topt, ropt, tsch, rsch, where):
    assert len(topt.param_groups) == len(ropt.param_groups)
    for i, (tg, rg) in enumerate(zip(topt.param_groups, ropt.param_groups)):
        assert tg["lr"] == rg["lr"], (where, i, tg["lr"], rg["lr"])
        assert type(tg["lr"]) is type(rg["lr"]), (where, i)
        for key in ("momentum", "initial_lr", "max_lr", "min_lr", "max_momentum", "base_momentum"):
            if key in tg or key in rg:
                assert tg[key] == rg[key], (where, i, key, tg[key], rg[key])
        if "betas" in tg:
            assert tuple(tg["betas"]) == tuple(rg["betas"]), (where, i, tg["betas"], rg["betas"])
    for ts, rs in zip(tsch, rsch):
        assert ts.get_last_lr() == rs.get_last_lr(), (where, ts.get_last_lr(), rs.get_last_lr())
        assert getattr(ts, "last_epoch", None) == getattr(rs, "last_epoch", None), where


def _as_list(s):
    return list(s) if isinstance(s, (list, tuple)) else [s]


def _run(factory, n_groups, steps, kind="sgd", metrics=None, resume_at=None):
    topt, ropt = _pair(n_groups, kind)
    tsch = _as_list(factory(tls, topt))
    rsch = _as_list(factory(rls, ropt))
    _check(topt, ropt, tsch, rsch, "init")
    for t in range(steps):
        topt.step()
        ropt.step()
        for ts, rs in zip(tsch, rsch):
            args = () if metrics is None else (metrics[t],)
            tw, terr = _catch(lambda ts=ts, args=args: ts.step(*args))
            rw, rerr = _catch(lambda rs=rs, args=args: rs.step(*args))
            assert tw == rw and terr == rerr, (t, tw, rw, terr, rerr)
        _check(topt, ropt, tsch, rsch, t)
        if resume_at == t:
            # checkpoint both sides; rebuild optimizer + scheduler, then load (torch's recipe)
            t_osd, r_osd = topt.state_dict(), ropt.state_dict()
            t_ssd = [s.state_dict() for s in tsch]
            r_ssd = [s.state_dict() for s in rsch]
            topt, ropt = _pair(n_groups, kind)
            tsch = _as_list(factory(tls, topt))
            rsch = _as_list(factory(rls, ropt))
            topt.load_state_dict(t_osd)
            ropt.load_state_dict(r_osd)
            for s, sd in zip(tsch, t_ssd):
                s.load_state_dict(sd)
            for s, sd in zip(rsch, r_ssd):
                s.load_state_dict(sd)
            _check(topt, ropt, tsch, rsch, f"resumed {t}")
    return steps


# Scale, CONFIGS and STEPS live in the torch-free module refoptim.testing.inputs (imported above).


def _catch(fn):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        try:
            fn()
            err = None
        except Exception as e:  # noqa: BLE001
            err = (type(e), str(e))
    return [(x.category, str(x.message)) for x in w], err


def run_named(name: str, n_groups: int) -> tuple[int, str]:
    """Run configuration ``name`` of :data:`CONFIGS` with ``n_groups`` parameter groups.

    Returns ``(steps, "")`` when every step is equal to torch's, else ``(steps, reason)``.
    """
    steps = STEPS.get(name, SCHEDULER_DEFAULT_STEPS)
    try:
        _run(CONFIGS[name], n_groups, steps)
    except AssertionError as exc:
        return steps, f"differs from torch: {exc}"
    return steps, ""


run = _run
