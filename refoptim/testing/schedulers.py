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

__all__ = ["CONFIGS", "STEPS", "run", "run_named"]

LRS = [0.1, 0.05, 0.3]


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


class Scale:
    """A callable object (its state is saved by state_dict)."""

    def __init__(self, k):
        self.k = k

    def __call__(self, epoch):
        return self.k ** epoch


CONFIGS = {
    "LambdaLR-fn": lambda ns, o: ns.LambdaLR(o, lambda e: 0.95 ** e),
    "LambdaLR-floor": lambda ns, o: ns.LambdaLR(o, lambda e: 1.0 / (1 + e // 7)),
    "LambdaLR-obj": lambda ns, o: ns.LambdaLR(o, Scale(0.97)),
    "LambdaLR-list": lambda ns, o: ns.LambdaLR(o, [(lambda e, j=j: (0.9 + 0.03 * j) ** e)
                                                   for j in range(len(o.param_groups))]),
    "MultiplicativeLR": lambda ns, o: ns.MultiplicativeLR(o, lambda e: 0.95),
    "MultiplicativeLR-var": lambda ns, o: ns.MultiplicativeLR(o, lambda e: 1.0 - 0.01 * (e % 5)),
    "StepLR-3": lambda ns, o: ns.StepLR(o, step_size=3),
    "StepLR-7-0.7": lambda ns, o: ns.StepLR(o, step_size=7, gamma=0.7),
    "StepLR-1-0.99": lambda ns, o: ns.StepLR(o, step_size=1, gamma=0.99),
    "MultiStepLR": lambda ns, o: ns.MultiStepLR(o, milestones=[5, 12, 30], gamma=0.3),
    "MultiStepLR-rep": lambda ns, o: ns.MultiStepLR(o, milestones=[30, 8, 8, 50], gamma=0.7),
    "ConstantLR": lambda ns, o: ns.ConstantLR(o),
    "ConstantLR-0.3-17": lambda ns, o: ns.ConstantLR(o, factor=0.3, total_iters=17),
    "ConstantLR-1": lambda ns, o: ns.ConstantLR(o, factor=1.0, total_iters=4),
    "LinearLR": lambda ns, o: ns.LinearLR(o),
    "LinearLR-0.1-1-23": lambda ns, o: ns.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=23),
    "LinearLR-down": lambda ns, o: ns.LinearLR(o, start_factor=1.0, end_factor=0.05, total_iters=37),
    "ExponentialLR": lambda ns, o: ns.ExponentialLR(o, gamma=0.93),
    "ExponentialLR-1.01": lambda ns, o: ns.ExponentialLR(o, gamma=1.01),
    "PolynomialLR": lambda ns, o: ns.PolynomialLR(o),
    "PolynomialLR-2-40": lambda ns, o: ns.PolynomialLR(o, total_iters=40, power=2.0),
    "PolynomialLR-0.5-13": lambda ns, o: ns.PolynomialLR(o, total_iters=13, power=0.5),
    "CosineAnnealingLR-10": lambda ns, o: ns.CosineAnnealingLR(o, T_max=10),
    "CosineAnnealingLR-7-eta": lambda ns, o: ns.CosineAnnealingLR(o, T_max=7, eta_min=0.001),
    "CosineAnnealingLR-1": lambda ns, o: ns.CosineAnnealingLR(o, T_max=1, eta_min=0.01),
    "CAWR-5": lambda ns, o: ns.CosineAnnealingWarmRestarts(o, T_0=5),
    "CAWR-3-2": lambda ns, o: ns.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2, eta_min=1e-3),
    "CAWR-2-3": lambda ns, o: ns.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=3, eta_min=0),
    "CyclicLR-tri": lambda ns, o: ns.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=7),
    "CyclicLR-tri-updown": lambda ns, o: ns.CyclicLR(o, base_lr=0.001, max_lr=0.2, step_size_up=4,
                                                     step_size_down=9, base_momentum=0.7, max_momentum=0.95),
    "CyclicLR-tri2": lambda ns, o: ns.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=5, mode="triangular2"),
    "CyclicLR-exp": lambda ns, o: ns.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=6, mode="exp_range",
                                              gamma=0.98),
    "CyclicLR-custom": lambda ns, o: ns.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=5,
                                                 scale_fn=lambda x: 1.0 / (1.0 + 0.1 * x), scale_mode="iterations"),
    "CyclicLR-custom-cycle": lambda ns, o: ns.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=5,
                                                       scale_fn=Scale(0.8)),
    "CyclicLR-nomom": lambda ns, o: ns.CyclicLR(o, base_lr=0.02, max_lr=0.3, step_size_up=3,
                                                cycle_momentum=False),
    "CyclicLR-lists": lambda ns, o: ns.CyclicLR(o, base_lr=[0.01 * (i + 1) for i in range(len(o.param_groups))],
                                                max_lr=[0.1 * (i + 1) for i in range(len(o.param_groups))],
                                                step_size_up=8),
    "OneCycleLR": lambda ns, o: ns.OneCycleLR(o, max_lr=0.1, total_steps=100),
    "OneCycleLR-lin": lambda ns, o: ns.OneCycleLR(o, max_lr=0.5, total_steps=77, anneal_strategy="linear",
                                                  pct_start=0.25),
    "OneCycleLR-3ph": lambda ns, o: ns.OneCycleLR(o, max_lr=0.2, epochs=10, steps_per_epoch=9, three_phase=True),
    "OneCycleLR-3ph-lin": lambda ns, o: ns.OneCycleLR(o, max_lr=0.2, total_steps=64, three_phase=True,
                                                      anneal_strategy="linear", div_factor=10.0,
                                                      final_div_factor=100.0),
    "OneCycleLR-nomom-lists": lambda ns, o: ns.OneCycleLR(
        o, max_lr=[0.1 * (i + 1) for i in range(len(o.param_groups))], total_steps=50, cycle_momentum=False),
    "OneCycleLR-mom-lists": lambda ns, o: ns.OneCycleLR(
        o, max_lr=0.3, total_steps=60, base_momentum=[0.8, 0.7, 0.6][:len(o.param_groups)],
        max_momentum=[0.9, 0.95, 0.99][:len(o.param_groups)]),
    # composites
    "chainable-Const+Exp": lambda ns, o: [ns.ConstantLR(o, factor=0.1, total_iters=5), ns.ExponentialLR(o, 0.9)],
    "chainable-Linear+Cos": lambda ns, o: [ns.LinearLR(o, start_factor=0.2, total_iters=10),
                                           ns.CosineAnnealingLR(o, T_max=15)],
    "chainable-Step+MultiStep+Poly": lambda ns, o: [ns.StepLR(o, 4, 0.8), ns.MultiStepLR(o, [10, 20]),
                                                    ns.PolynomialLR(o, total_iters=30, power=1.5)],
    "Chained": lambda ns, o: ns.ChainedScheduler([ns.ConstantLR(o, factor=0.1, total_iters=2),
                                                  ns.ExponentialLR(o, gamma=0.9)]),
    "Chained-opt": lambda ns, o: ns.ChainedScheduler([ns.LinearLR(o, 0.5, 1.0, 7), ns.StepLR(o, 5, 0.5)],
                                                     optimizer=o),
    "Sequential": lambda ns, o: ns.SequentialLR(o, [ns.ConstantLR(o, factor=0.1, total_iters=2),
                                                    ns.ExponentialLR(o, gamma=0.9)], milestones=[2]),
    "Sequential-3": lambda ns, o: ns.SequentialLR(o, [ns.LinearLR(o, 0.1, 1.0, 10), ns.CosineAnnealingLR(o, 20),
                                                      ns.StepLR(o, 5, 0.5)], milestones=[10, 30]),
    "Sequential-nested": lambda ns, o: ns.SequentialLR(o, [
        ns.ChainedScheduler([ns.ConstantLR(o, 0.5, 3), ns.ExponentialLR(o, 0.95)]),
        ns.PolynomialLR(o, total_iters=15, power=2.0)], milestones=[8]),
    "Sequential-Multi-Lambda": lambda ns, o: ns.SequentialLR(o, [
        ns.MultiStepLR(o, [3, 6]), ns.LambdaLR(o, lambda e: 0.9 ** e)], milestones=[12]),
}
STEPS = {"OneCycleLR": 100, "OneCycleLR-lin": 77, "OneCycleLR-3ph": 90, "OneCycleLR-3ph-lin": 64,
         "OneCycleLR-nomom-lists": 50, "OneCycleLR-mom-lists": 60}


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
    steps = STEPS.get(name, 120)
    try:
        _run(CONFIGS[name], n_groups, steps)
    except AssertionError as exc:
        return steps, f"differs from torch: {exc}"
    return steps, ""


run = _run
