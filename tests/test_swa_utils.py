"""refoptim.swa_utils without torch: validation messages (torch 2.13's, written out),
hand-checked SWALR sequences, averaging values and n_averaged counting."""


import numpy as np
import pytest

import refoptim
from refoptim import swa_utils as su


def _opt(n_groups=1, lr=0.1):
    return refoptim.SGD([{"params": [refoptim.Parameter(np.zeros(2))]} for _ in range(n_groups)], lr=lr)


def _lrs(opt):
    return [g["lr"] for g in opt.param_groups]


@pytest.mark.parametrize("kwargs, msg", [
    ({"swa_lr": 0.1, "anneal_strategy": "exp"}, "anneal_strategy must be one of 'cos' or 'linear', instead got exp"),
    ({"swa_lr": 0.1, "anneal_epochs": -1}, "anneal_epochs must be equal or greater than 0, got -1"),
    ({"swa_lr": 0.1, "anneal_epochs": 2.0}, "anneal_epochs must be equal or greater than 0, got 2.0"),
    ({"swa_lr": [0.1, 0.2]}, ("swa_lr must have the same length as optimizer.param_groups. "
                              "swa_lr has 2 values, param_groups has 1.")),
])
def test_swalr_validation(kwargs, msg):
    with pytest.raises(ValueError) as e:
        su.SWALR(_opt(), **kwargs)
    assert str(e.value) == msg


@pytest.mark.parametrize("fn", [su.get_ema_avg_fn, su.get_ema_multi_avg_fn])
@pytest.mark.parametrize("decay", [-0.1, 1.5])
def test_decay_validation(fn, decay):
    with pytest.raises(ValueError) as e:
        fn(decay)
    assert str(e.value) == f"Invalid decay value {decay} provided. Please provide a value in [0,1] range."


def test_averaged_model_rejects_both_fns():
    with pytest.raises(AssertionError, match="Only one of avg_fn and multi_avg_fn should be provided"):
        su.AveragedModel([refoptim.Parameter(np.zeros(2))], avg_fn=su.get_swa_avg_fn(),
                         multi_avg_fn=su.get_swa_multi_avg_fn())


def test_swalr_linear_hand_checked():
    opt = _opt(lr=1.0)
    s = su.SWALR(opt, swa_lr=0.0, anneal_epochs=4, anneal_strategy="linear")
    seq = [_lrs(opt)[0]]
    for _ in range(6):
        opt.step(); s.step(); seq.append(_lrs(opt)[0])
    assert seq == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0, 0.0, 0.0], abs=1e-15)
    assert opt.param_groups[0]["swa_lr"] == 0.0


def test_swalr_cos_hand_checked():
    opt = _opt(lr=1.0)
    s = su.SWALR(opt, swa_lr=0.0, anneal_epochs=2)
    seq = [_lrs(opt)[0]]
    for _ in range(3):
        opt.step(); s.step(); seq.append(_lrs(opt)[0])
    # alpha(1/2) = (1 - cos(pi/2)) / 2 = 1/2, alpha(1) = 1
    assert seq == pytest.approx([1.0, 0.5, 0.0, 0.0], abs=1e-15)


def test_swalr_zero_anneal_epochs_jumps_to_swa_lr():
    opt = _opt(2, lr=0.5)
    su.SWALR(opt, swa_lr=[0.01, 0.02], anneal_epochs=0)
    assert _lrs(opt) == [0.01, 0.02]


def test_swalr_get_lr_outside_step_warns_and_state_dict():
    opt = _opt()
    s = su.SWALR(opt, swa_lr=0.05, anneal_epochs=3, anneal_strategy="linear")
    with pytest.warns(UserWarning, match=r"please use `get_last_lr\(\)`"):
        s.get_lr()
    sd = s.state_dict()
    assert "optimizer" not in sd and "anneal_func" not in sd and sd["_anneal_strategy"] == "linear"
    s2 = su.SWALR(_opt(), swa_lr=0.05)
    s2.load_state_dict(sd)
    assert s2.anneal_func is su.SWALR._linear_anneal and s2.anneal_epochs == 3


def test_n_averaged_counting_and_first_copy():
    w = refoptim.Parameter(np.array([1.0, 2.0]))
    avg = su.AveragedModel([w])
    assert avg.n_averaged.dtype == np.int64 and avg.n_averaged.shape == () and int(avg.n_averaged) == 0
    assert avg.params[0] is not w and avg.params[0].data is not w.data
    assert avg.module is avg.params
    vals = [[1.0, 2.0], [3.0, 4.0], [5.0, 0.0], [-1.0, 6.0]]
    for k, v in enumerate(vals):
        w.data[...] = v
        avg.update_parameters([w])
        assert int(avg.n_averaged) == k + 1
        np.testing.assert_allclose(avg.params[0].data, np.mean(vals[:k + 1], axis=0), rtol=1e-15)
    np.testing.assert_array_equal(w.data, [-1.0, 6.0])  # source untouched


def test_ema_hand_checked():
    w = refoptim.Parameter(np.array([0.0]))
    avg = su.AveragedModel([w], multi_avg_fn=su.get_ema_multi_avg_fn(0.5))
    for v in (4.0, 8.0, 0.0):
        w.data[...] = v
        avg.update_parameters([w])
    # 4 (copy) -> 0.5*4 + 0.5*8 = 6 -> 0.5*6 + 0 = 3
    assert avg.params[0].data.tolist() == [3.0]
    avg2 = su.AveragedModel([refoptim.Parameter(np.array([4.0]))], avg_fn=su.get_ema_avg_fn(0.5))
    avg2.update_parameters([np.array([4.0])])
    avg2.update_parameters([np.array([8.0])])
    assert avg2.params[0].data.tolist() == [6.0]


def test_swa_multi_weight_rounds_through_float32_for_array_count():
    a = [np.array([0.0])]
    su.get_swa_multi_avg_fn()(a, [np.array([1.0])], np.asarray(2, dtype=np.int64))
    assert a[0][0] == float(np.float32(1 / 3)) != 1 / 3
    b = [np.array([0.0])]
    su.get_swa_multi_avg_fn()(b, [np.array([1.0])], 2)
    assert b[0][0] == 1 / 3


def test_swa_avg_fn_keeps_float32():
    r = su.get_swa_avg_fn()(np.ones(3, np.float32), np.zeros(3, np.float32), np.asarray(3, np.int64))
    assert r.dtype == np.float32 and r.tolist() == [0.75] * 3


def test_public_names_have_docstrings():
    for name in su.__all__:
        assert getattr(su, name).__doc__
    assert ".. math::" in su.SWALR.__doc__
