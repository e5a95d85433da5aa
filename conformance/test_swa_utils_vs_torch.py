"""refoptim.swa_utils against torch 2.13: SWALR lrs equal (``==``) to torch's at every step,
and SWA/EMA averages of float32/float64 parameters bitwise equal to torch's over 20 updates."""

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.optim.lr_scheduler as tls
import torch.optim.swa_utils as tswa

import refoptim
import refoptim.lr_scheduler as rls
import refoptim.swa_utils as rswa

LRS = [0.1, 0.05, 0.3]
SWA_LRS = [0.01, 0.2, 0.003]


def _pair(n_groups):
    tgroups = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": LRS[i]} for i in range(n_groups)]
    rgroups = [{"params": [refoptim.Parameter(np.zeros(2))], "lr": LRS[i]} for i in range(n_groups)]
    return torch.optim.SGD(tgroups, lr=0.1), refoptim.SGD(rgroups, lr=0.1)


def _lrs(opt):
    return [g["lr"] for g in opt.param_groups]


@pytest.mark.parametrize("strategy", ["cos", "linear"])
@pytest.mark.parametrize("anneal_epochs", [0, 1, 3, 10, 25])
@pytest.mark.parametrize("n_groups", [1, 2, 3])
@pytest.mark.parametrize("swa_as_list", [False, True])
def test_swalr_sequence_matches_torch(strategy, anneal_epochs, n_groups, swa_as_list):
    topt, ropt = _pair(n_groups)
    swa = SWA_LRS[:n_groups] if swa_as_list else 0.02
    ts = tswa.SWALR(topt, swa, anneal_epochs=anneal_epochs, anneal_strategy=strategy)
    rs = rswa.SWALR(ropt, swa, anneal_epochs=anneal_epochs, anneal_strategy=strategy)
    assert _lrs(ropt) == _lrs(topt)
    for step in range(40):
        topt.step(); ropt.step()
        ts.step(); rs.step()
        assert _lrs(ropt) == _lrs(topt), (step, _lrs(ropt), _lrs(topt))
        assert rs.get_last_lr() == ts.get_last_lr()
        assert [g["swa_lr"] for g in ropt.param_groups] == [g["swa_lr"] for g in topt.param_groups]


@pytest.mark.parametrize("strategy", ["cos", "linear"])
@pytest.mark.parametrize("n_groups", [1, 3])
@pytest.mark.parametrize("first", ["cosine", "multiplicative", "step"])
def test_swalr_after_another_scheduler(strategy, n_groups, first):
    topt, ropt = _pair(n_groups)
    if first == "cosine":
        t1, r1 = tls.CosineAnnealingLR(topt, T_max=30), rls.CosineAnnealingLR(ropt, T_max=30)
    elif first == "multiplicative":
        t1, r1 = tls.MultiplicativeLR(topt, lambda e: 0.9), rls.MultiplicativeLR(ropt, lambda e: 0.9)
    else:
        t1, r1 = tls.StepLR(topt, 4, 0.5), rls.StepLR(ropt, 4, 0.5)
    swa_start = 12
    ts = rs = None
    for i in range(40):
        topt.step(); ropt.step()
        if i > swa_start:
            if ts is None:
                ts = tswa.SWALR(topt, swa_lr=0.05, anneal_epochs=7, anneal_strategy=strategy)
                rs = rswa.SWALR(ropt, swa_lr=0.05, anneal_epochs=7, anneal_strategy=strategy)
                assert _lrs(ropt) == _lrs(topt)
            ts.step(); rs.step()
        else:
            t1.step(); r1.step()
        assert _lrs(ropt) == _lrs(topt), (i, _lrs(ropt), _lrs(topt))


def test_swalr_state_dict_and_get_lr_warning_match_torch():
    topt, ropt = _pair(2)
    ts = tswa.SWALR(topt, [0.01, 0.02], anneal_epochs=5, anneal_strategy="linear")
    rs = rswa.SWALR(ropt, [0.01, 0.02], anneal_epochs=5, anneal_strategy="linear")
    for _ in range(3):
        topt.step(); ropt.step(); ts.step(); rs.step()
    tsd, rsd = ts.state_dict(), rs.state_dict()
    assert set(tsd) == set(rsd)
    for k in ("anneal_epochs", "_anneal_strategy", "last_epoch", "_step_count", "base_lrs", "_last_lr"):
        assert rsd[k] == tsd[k], k
    with warnings.catch_warnings(record=True) as tw:
        warnings.simplefilter("always")
        tv = ts.get_lr()
    with warnings.catch_warnings(record=True) as rw:
        warnings.simplefilter("always")
        rv = rs.get_lr()
    assert rv == tv
    assert [str(w.message) for w in rw] == [str(w.message) for w in tw]


@pytest.mark.parametrize("anneal_strategy, anneal_epochs, swa_lr", [
    ("exp", 10, 0.1), ("cos", -1, 0.1), ("cos", 2.0, 0.1), ("cos", 10, [0.1, 0.2]),
])
def test_swalr_validation_matches_torch(anneal_strategy, anneal_epochs, swa_lr):
    topt, ropt = _pair(1)
    with pytest.raises(Exception) as te:
        tswa.SWALR(topt, swa_lr, anneal_epochs=anneal_epochs, anneal_strategy=anneal_strategy)
    with pytest.raises(type(te.value)) as re_:
        rswa.SWALR(ropt, swa_lr, anneal_epochs=anneal_epochs, anneal_strategy=anneal_strategy)
    assert str(re_.value) == str(te.value)


def _trajectory(dtype, n=20, shapes=((7,), (3, 4), ())):
    rng = np.random.default_rng(1234)
    base = [rng.standard_normal(s).astype(dtype) for s in shapes]
    out = []
    for _ in range(n):
        base = [b + rng.standard_normal(b.shape).astype(dtype) * dtype(0.1) for b in base]
        out.append([np.array(b, copy=True) for b in base])
    return out


def _torch_model(arrays):
    m = torch.nn.Module()
    for i, a in enumerate(arrays):
        m.register_parameter(f"p{i}", torch.nn.Parameter(torch.from_numpy(np.array(a, copy=True))))
    return m


AVG = {
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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(AVG))
def test_averaging_bitwise_equal_to_torch(name, dtype):
    traj = _trajectory(dtype)
    tkw, rkw = AVG[name]
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
        assert int(ravg.n_averaged) == int(tavg.n_averaged) == step + 1
        assert ravg.n_averaged.dtype == np.int64 and ravg.n_averaged.shape == ()
        for i, (tp, rp) in enumerate(zip(tavg.module.parameters(), ravg.params)):
            t = tp.detach().numpy()
            assert rp.data.dtype == t.dtype
            np.testing.assert_array_equal(rp.data, t, err_msg=f"{name} step {step} param {i}")
            assert rp.data.tobytes() == t.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 2, 6, 9, 99])
def test_functions_direct_with_int_and_array_num_averaged(dtype, n):
    rng = np.random.default_rng(n)
    a = rng.standard_normal(50).astype(dtype)
    c = rng.standard_normal(50).astype(dtype)
    for num in (n, np.asarray(n, dtype=np.int64)):
        tnum = num if isinstance(num, int) else torch.tensor(n, dtype=torch.long)
        # single-param functions
        for tf, rf in ((tswa.get_swa_avg_fn(), rswa.get_swa_avg_fn()),
                       (tswa.get_ema_avg_fn(0.7), rswa.get_ema_avg_fn(0.7))):
            t = tf(torch.from_numpy(a.copy()), torch.from_numpy(c.copy()), tnum).numpy()
            r = rf(a.copy(), c.copy(), num)
            assert r.dtype == t.dtype
            assert r.tobytes() == t.tobytes()
        # multi-param functions
        for tf, rf in ((tswa.get_swa_multi_avg_fn(), rswa.get_swa_multi_avg_fn()),
                       (tswa.get_ema_multi_avg_fn(0.7), rswa.get_ema_multi_avg_fn(0.7))):
            tl = [torch.from_numpy(a.copy())]
            tf(tl, [torch.from_numpy(c.copy())], tnum)
            rl = [a.copy()]
            out = rf(rl, [c.copy()], num)
            assert out[0] is rl[0]
            assert rl[0].tobytes() == tl[0].numpy().tobytes()
