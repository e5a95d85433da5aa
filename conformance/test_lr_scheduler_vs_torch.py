"""refoptim.lr_scheduler against torch 2.13: every lr (and cycled momentum) equal with ``==``
at every step, for every scheduler, composites, resume from state_dict and step(epoch)."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.optim.lr_scheduler as tls

import refoptim
import refoptim.lr_scheduler as rls
from refoptim.testing.schedulers import CONFIGS, STEPS, Scale, _as_list, _catch, _check, _pair, _run  # noqa: F401

CHECKED = {"steps": 0}


@pytest.mark.parametrize("n_groups", [1, 2, 3])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_sequence_matches_torch(name, n_groups):
    CHECKED["steps"] += _run(CONFIGS[name], n_groups, STEPS.get(name, 120))


@pytest.mark.parametrize("name", ["CyclicLR-tri", "CyclicLR-exp", "CyclicLR-tri-updown", "OneCycleLR",
                                  "OneCycleLR-3ph", "OneCycleLR-mom-lists"])
@pytest.mark.parametrize("n_groups", [1, 3])
def test_betas_cycling_matches_torch(name, n_groups):
    _run(CONFIGS[name], n_groups, STEPS.get(name, 80), kind="adam")


@pytest.mark.parametrize("name", sorted(set(CONFIGS) - {"LambdaLR-fn", "LambdaLR-floor", "LambdaLR-list",
                                                        "Sequential-Multi-Lambda", "CyclicLR-custom"}))
def test_resume_from_state_dict(name):
    steps = STEPS.get(name, 60)
    _run(CONFIGS[name], 2, steps, resume_at=steps // 2 - 1)


def test_resume_with_last_epoch():
    """Rebuild a closed-form-consistent scheduler with last_epoch=k on both sides."""
    for make in (lambda ns, o, le: ns.StepLR(o, 4, 0.5, last_epoch=le),
                 lambda ns, o, le: ns.ExponentialLR(o, 0.9, last_epoch=le),
                 lambda ns, o, le: ns.CosineAnnealingLR(o, 10, 0.001, last_epoch=le),
                 lambda ns, o, le: ns.OneCycleLR(o, 0.1, total_steps=40, last_epoch=le),
                 lambda ns, o, le: ns.CyclicLR(o, 0.01, 0.1, 5, last_epoch=le),
                 lambda ns, o, le: ns.CosineAnnealingWarmRestarts(o, 3, 2, last_epoch=le)):
        topt, ropt = _pair(2)
        tsch, rsch = make(tls, topt, -1), make(rls, ropt, -1)
        for _ in range(13):
            topt.step(); ropt.step(); tsch.step(); rsch.step()
        tsch, rsch = make(tls, topt, 13), make(rls, ropt, 13)
        _check(topt, ropt, [tsch], [rsch], "last_epoch=13")
        for t in range(20):
            topt.step(); ropt.step(); tsch.step(); rsch.step()
            _check(topt, ropt, [tsch], [rsch], t)


def _metrics(seed, n, mode):
    rng = np.random.default_rng(seed)
    base = np.concatenate([np.linspace(1.0, 0.5, n // 4), np.full(n - n // 4, 0.5)])
    m = base + rng.normal(0, 0.02, n) * (seed % 3)
    if seed % 2:
        m = np.round(m, 2)  # plateaus with exact ties
    return list(-m if mode == "max" else m)


@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize("threshold_mode", ["rel", "abs"])
@pytest.mark.parametrize("variant", range(4))
def test_reduce_lr_on_plateau_matches_torch(mode, threshold_mode, variant):
    n_groups = 1 + variant % 3
    kw = [{},
          {"factor": 0.5, "patience": 2, "cooldown": 3, "threshold": 1e-2},
          {"factor": 0.3, "patience": 0, "min_lr": [0.01, 0.001, 0.02][:n_groups], "threshold": 0.05},
          {"factor": 0.9, "patience": 1, "cooldown": 1, "min_lr": 0.04, "eps": 1e-3, "threshold": 0.0}][variant]
    n = 150
    _run(lambda ns, o: ns.ReduceLROnPlateau(o, mode=mode, threshold_mode=threshold_mode, **kw),
         n_groups, n, metrics=_metrics(variant, n, mode), resume_at=70)


CLOSED = ["StepLR-3", "StepLR-7-0.7", "MultiStepLR", "MultiStepLR-rep", "ConstantLR-0.3-17", "LinearLR-0.1-1-23",
          "ExponentialLR", "PolynomialLR-2-40", "CosineAnnealingLR-7-eta", "LambdaLR-fn", "MultiplicativeLR",
          "CyclicLR-tri2", "OneCycleLR", "CAWR-3-2", "CAWR-5"]


@pytest.mark.parametrize("name", CLOSED)
def test_deprecated_step_epoch(name):
    """step(epoch) at scattered epochs (closed forms; get_lr where none): same values, same warnings."""
    topt, ropt = _pair(2)
    tsch, rsch = CONFIGS[name](tls, topt), CONFIGS[name](rls, ropt)
    epochs = [1, 2, 5, 3, 17, 17, 40, 0, 23, 99, 8, 60]
    if name.startswith("CAWR"):
        epochs += [0.5, 1.25, 7.75, 3.1, 22.9, 45.5]
    for e in epochs:
        topt.step(); ropt.step()
        tw, terr = _catch(lambda e=e: tsch.step(e))
        rw, rerr = _catch(lambda e=e: rsch.step(e))
        assert tw == rw
        assert terr == rerr
        _check(topt, ropt, [tsch], [rsch], e)


def test_cawr_fractional_epochs():
    for t0, tm in [(5, 1), (3, 2), (2, 3), (10, 2)]:
        topt, ropt = _pair(3)
        tsch = tls.CosineAnnealingWarmRestarts(topt, T_0=t0, T_mult=tm, eta_min=1e-4)
        rsch = rls.CosineAnnealingWarmRestarts(ropt, T_0=t0, T_mult=tm, eta_min=1e-4)
        iters = 7
        for epoch in range(25):
            for i in range(iters):
                e = epoch + i / iters
                topt.step(); ropt.step()
                tsch.step(e); rsch.step(e)
                _check(topt, ropt, [tsch], [rsch], e)


def test_one_cycle_error_past_last_step():
    for kind in ("sgd", "adam"):
        topt, ropt = _pair(1, kind)
        tsch = tls.OneCycleLR(topt, max_lr=0.1, total_steps=10)
        rsch = rls.OneCycleLR(ropt, max_lr=0.1, total_steps=10)
        for _ in range(10):
            topt.step(); ropt.step(); tsch.step(); rsch.step()
            _check(topt, ropt, [tsch], [rsch], "")
        with pytest.raises(ValueError) as te:
            tsch.step()
        with pytest.raises(ValueError) as re_:
            rsch.step()
        assert str(te.value) == str(re_.value) == "Tried to step 11 times. The specified number of total steps is 10"


def test_warning_when_scheduler_steps_first():
    topt, ropt = _pair(1)
    tsch, rsch = tls.StepLR(topt, 2), rls.StepLR(ropt, 2)
    tw, _ = _catch(tsch.step)
    rw, _ = _catch(rsch.step)
    assert tw == rw and len(rw) == 1 and "before `optimizer.step()`" in rw[0][1]
    # in the right order: no warning
    topt, ropt = _pair(1)
    tsch, rsch = tls.StepLR(topt, 2), rls.StepLR(ropt, 2)
    topt.step(); ropt.step()
    tw, _ = _catch(tsch.step)
    rw, _ = _catch(rsch.step)
    assert tw == rw == []


def test_state_dict_keys_match_torch():
    for name in sorted(CONFIGS):
        topt, ropt = _pair(2)
        tsch, rsch = CONFIGS[name](tls, topt), CONFIGS[name](rls, ropt)
        for ts, rs in zip(_as_list(tsch), _as_list(rsch)):
            tsd, rsd = ts.state_dict(), rs.state_dict()
            assert list(tsd) == list(rsd), name
    topt, ropt = _pair(2)
    tsd = tls.ReduceLROnPlateau(topt).state_dict()
    rsd = rls.ReduceLROnPlateau(ropt).state_dict()
    assert list(tsd) == list(rsd)
    assert {k: v for k, v in tsd.items()} == {k: v for k, v in rsd.items()}


def test_docs_example_steplr():
    """torch docs: lr = 0.05 for epochs < 30, 0.005 for 30 <= epoch < 60, 0.0005 for 60 <= epoch < 90."""
    topt, ropt = _pair(1, lrs=[0.05])
    tsch, rsch = tls.StepLR(topt, step_size=30, gamma=0.1), rls.StepLR(ropt, step_size=30, gamma=0.1)
    for epoch in range(100):
        assert ropt.param_groups[0]["lr"] == topt.param_groups[0]["lr"]
        expected = 0.05 * 0.1 ** (epoch // 30)
        assert math.isclose(ropt.param_groups[0]["lr"], expected, rel_tol=1e-12)
        topt.step(); ropt.step(); tsch.step(); rsch.step()
    assert rsch.get_last_lr() == tsch.get_last_lr()


def test_docs_example_sequential():
    """torch docs: lr = 0.1*base for 20 epochs (ConstantLR), then ExponentialLR(0.9)."""
    topt, ropt = _pair(1, lrs=[1.0])
    for ns, o in ((tls, topt), (rls, ropt)):
        s1 = ns.ConstantLR(o, factor=0.1, total_iters=20)
        s2 = ns.ExponentialLR(o, gamma=0.9)
        o.sched = ns.SequentialLR(o, schedulers=[s1, s2], milestones=[20])
    seq = []
    for epoch in range(60):
        assert ropt.param_groups[0]["lr"] == topt.param_groups[0]["lr"]
        seq.append(ropt.param_groups[0]["lr"])
        topt.step(); ropt.step(); topt.sched.step(); ropt.sched.step()
    assert seq[:20] == [0.1] * 20
    assert seq[20] == 1.0 and math.isclose(seq[21], 0.9) and math.isclose(seq[30], 0.9 ** 10)


def test_array_lr_matches_torch_tensor_lr():
    """An lr that is a 0-d array is written in place like torch's tensor lr (fill_)."""
    for make in (lambda ns, o: ns.StepLR(o, 3, 0.5), lambda ns, o: ns.CosineAnnealingLR(o, 10),
                 lambda ns, o: ns.ExponentialLR(o, 0.9)):
        tp = torch.zeros(2, dtype=torch.float64, requires_grad=True)
        tp.grad = torch.zeros(2, dtype=torch.float64)
        rp = refoptim.Parameter(np.zeros(2))
        rp.grad = np.zeros(2)
        topt = torch.optim.SGD([tp], lr=torch.tensor(0.1, dtype=torch.float64), foreach=False)
        ropt = refoptim.SGD([rp], lr=np.asarray(0.1))
        tsch, rsch = make(tls, topt), make(rls, ropt)
        rlr = ropt.param_groups[0]["lr"]
        for _ in range(25):
            topt.step(); ropt.step(); tsch.step(); rsch.step()
            assert float(topt.param_groups[0]["lr"]) == float(ropt.param_groups[0]["lr"])
            assert float(tsch.get_last_lr()[0]) == float(rsch.get_last_lr()[0])
        assert ropt.param_groups[0]["lr"] is rlr  # written in place
        assert rsch.get_last_lr()[0] is not rlr  # a copy
