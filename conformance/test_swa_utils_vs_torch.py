"""refoptim.swa_utils against torch 2.13: SWALR lrs equal (``==``) to torch's at every step,
and SWA/EMA averages of float32/float64 parameters bitwise equal to torch's over 20 updates."""

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.optim.lr_scheduler as tls
import torch.optim.swa_utils as tswa

import refoptim.lr_scheduler as rls
import refoptim.swa_utils as rswa
from refoptim.testing.swa import (
    AVERAGING,
    SWALR_CASES,
    _lrs,
    _pair,
    run_averaging,
    run_swalr,
)


@pytest.mark.parametrize("case", SWALR_CASES, ids=lambda c: "-".join(map(str, c)))
def test_swalr_sequence_matches_torch(case):
    assert run_swalr(*case) == ""


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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(AVERAGING))
def test_averaging_bitwise_equal_to_torch(name, dtype):
    assert run_averaging(name, dtype) == ""


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
