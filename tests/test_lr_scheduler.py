"""refoptim.lr_scheduler without torch: validation (torch 2.13's types and messages, written
out here), state_dict contents, warnings, initial_lr handling and hand-checkable sequences."""

import math
import re
import warnings

import numpy as np
import pytest

import refoptim
from refoptim import lr_scheduler as ls

OPT_FIRST = "Detected call of `lr_scheduler.step()` before `optimizer.step()`."


def _opt(n_groups=1, lr=0.1, kind="sgd", xp=None):
    mk = (lambda: refoptim.Parameter(xp.zeros(2))) if xp is not None else (lambda: refoptim.Parameter(np.zeros(2)))
    groups = [{"params": [mk()]} for _ in range(n_groups)]
    if kind == "sgd":
        return refoptim.SGD(groups, lr=lr, momentum=0.9)
    if kind == "adam":
        return refoptim.Adam(groups, lr=lr)
    return refoptim.SGD(groups, lr=lr)  # no momentum default? SGD always has 'momentum'


def _lrs(opt):
    return [g["lr"] for g in opt.param_groups]


def _drive(opt, sched, n):
    out = [_lrs(opt)[0]]
    for _ in range(n):
        opt.step()
        sched.step()
        out.append(_lrs(opt)[0])
    return out


# ------------------------------------------------------------------ validation (torch's messages)
@pytest.mark.parametrize("make, exc, msg", [
    (lambda o: ls.StepLR(object(), 3), TypeError, "object is not an Optimizer"),
    (lambda o: ls.ReduceLROnPlateau(object()), TypeError, "object is not an Optimizer"),
    (lambda o: ls.CyclicLR(object(), 0.1, 1.0), TypeError, "object is not an Optimizer"),
    (lambda o: ls.OneCycleLR(object(), 0.1, 10), TypeError, "object is not an Optimizer"),
    (lambda o: ls.LambdaLR(o, [lambda e: 1.0, lambda e: 1.0]), ValueError, "Expected 1 lr_lambdas, but got 2"),
    (lambda o: ls.MultiplicativeLR(o, 0.5), TypeError, "lr_lambda should be a function, but got float"),
    (lambda o: ls.ConstantLR(o, factor=1.5), ValueError,
     "Constant multiplicative factor expected to be between 0 and 1."),
    (lambda o: ls.LinearLR(o, start_factor=0), ValueError,
     "Starting multiplicative factor expected to be greater than 0 and less or equal to 1."),
    (lambda o: ls.LinearLR(o, end_factor=1.5), ValueError,
     "Ending multiplicative factor expected to be between 0 and 1."),
    (lambda o: ls.SequentialLR(o, [], []), ValueError,
     "SequentialLR expects at least one scheduler, but got no scheduler."),
    (lambda o: ls.SequentialLR(o, [ls.StepLR(o, 2), ls.StepLR(o, 3)], []), ValueError,
     ("Sequential Schedulers expects number of schedulers provided to be one more than the number of milestone "
     "points, but got number of schedulers 2 and the number of milestones to be equal to 0")),
    (lambda o: ls.SequentialLR(o, [ls.ReduceLROnPlateau(o)], []), ValueError,
     ("SequentialLR does not support `ReduceLROnPlateau` scheduler as it requires additional kwargs to be "
     "specified when calling `step`, but got one at index 0 in the given schedulers sequence.")),
    (lambda o: ls.SequentialLR(o, [object()], []), TypeError,
     "SequentialLR at index 0 should have `optimizer` as its attribute."),
    (lambda o: ls.ChainedScheduler([]), ValueError,
     "ChainedScheduler expects at least one scheduler to be chained, but got no scheduler."),
    (lambda o: ls.ChainedScheduler([ls.ReduceLROnPlateau(o)]), ValueError,
     ("ChainedScheduler does not support `ReduceLROnPlateau` scheduler as it requires additional kwargs to be "
     "specified when calling `step`, but got one at index 0 in the given schedulers sequence.")),
    (lambda o: ls.ReduceLROnPlateau(o, factor=1.0), ValueError, "Factor should be < 1.0."),
    (lambda o: ls.ReduceLROnPlateau(o, mode="mid"), ValueError, "mode mid is unknown!"),
    (lambda o: ls.ReduceLROnPlateau(o, threshold_mode="x"), ValueError, "threshold mode x is unknown!"),
    (lambda o: ls.ReduceLROnPlateau(o, min_lr=[0.1, 0.2]), ValueError, "expected 1 min_lrs, got 2"),
    (lambda o: ls.CyclicLR(o, 0.1, 1.0, mode="square"), ValueError, "mode is invalid and scale_fn is None"),
    (lambda o: ls.CyclicLR(o, [0.1, 0.2], 1.0), ValueError,
     "base_lr must have the same length as optimizer.param_groups. base_lr has 2 values, param_groups has 1."),
    (lambda o: ls.CosineAnnealingWarmRestarts(o, T_0=0), ValueError, "Expected positive integer T_0, but got 0"),
    (lambda o: ls.CosineAnnealingWarmRestarts(o, T_0=2.0), ValueError, "Expected positive integer T_0, but got 2.0"),
    (lambda o: ls.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=0), ValueError,
     "Expected integer T_mult >= 1, but got 0"),
    (lambda o: ls.CosineAnnealingWarmRestarts(o, T_0=2, eta_min="0"), ValueError,
     "Expected float or int eta_min, but got 0 of type <class 'str'>"),
    (lambda o: ls.CosineAnnealingWarmRestarts(o, T_0=2).step(-1), ValueError, "Expected non-negative epoch, but got -1"),
    (lambda o: ls.OneCycleLR(o, 0.1), ValueError, "You must define either total_steps OR (epochs AND steps_per_epoch)"),
    (lambda o: ls.OneCycleLR(o, 0.1, total_steps=0), ValueError, "Expected positive integer total_steps, but got 0"),
    (lambda o: ls.OneCycleLR(o, 0.1, epochs=0, steps_per_epoch=3), ValueError,
     "Expected positive integer epochs, but got 0"),
    (lambda o: ls.OneCycleLR(o, 0.1, epochs=2, steps_per_epoch=1.5), ValueError,
     "Expected positive integer steps_per_epoch, but got 1.5"),
    (lambda o: ls.OneCycleLR(o, 0.1, 10, pct_start=1), ValueError,
     "Expected float between 0 and 1 pct_start, but got 1"),
    (lambda o: ls.OneCycleLR(o, 0.1, 10, anneal_strategy="exp"), ValueError,
     "anneal_strategy must be one of 'cos' or 'linear', instead got exp"),
])
def test_validation_messages(make, exc, msg):
    with pytest.raises(exc, match="^" + re.escape(msg) + "$"):
        make(_opt())


def test_cycle_momentum_needs_momentum_or_betas():
    opt = refoptim.Adagrad([refoptim.Parameter(np.zeros(2))], lr=0.1)
    msg = "optimizer must support momentum or beta1 with `cycle_momentum` option enabled"
    with pytest.raises(ValueError, match=re.escape(msg)):
        ls.CyclicLR(opt, 0.01, 0.1)
    with pytest.raises(ValueError, match=re.escape(msg)):
        ls.OneCycleLR(opt, 0.1, 10)
    ls.CyclicLR(opt, 0.01, 0.1, cycle_momentum=False)  # fine without


def test_schedulers_of_another_optimizer_are_refused():
    o1, o2 = _opt(), _opt()
    with pytest.raises(ValueError, match="expects all schedulers to belong to the same optimizer"):
        ls.SequentialLR(o1, [ls.StepLR(o2, 2)], [])
    with pytest.raises(ValueError, match="expects all schedulers to belong to the same optimizer"):
        ls.ChainedScheduler([ls.StepLR(o1, 2), ls.StepLR(o2, 2)])


def test_one_cycle_error_past_last_step():
    opt = _opt()
    s = ls.OneCycleLR(opt, 0.1, total_steps=3)
    _drive(opt, s, 3)
    with pytest.raises(ValueError, match=r"^Tried to step 4 times\. The specified number of total steps is 3$"):
        s.step()


# ------------------------------------------------------------------ initial_lr, resume, get_last_lr
def test_initial_lr_set_once_and_base_lrs():
    opt = _opt(2, lr=0.2)
    opt.param_groups[1]["lr"] = 0.4
    s = ls.StepLR(opt, 2)
    assert [g["initial_lr"] for g in opt.param_groups] == [0.2, 0.4] == s.base_lrs
    opt.param_groups[0]["lr"] = 1.0
    s2 = ls.ExponentialLR(opt, 0.5)  # setdefault: an existing initial_lr is kept
    assert s2.base_lrs == [0.2, 0.4]


def test_resume_without_initial_lr_raises_keyerror():
    opt = _opt(2)
    with pytest.raises(KeyError) as e:
        ls.StepLR(opt, 3, last_epoch=5)
    assert e.value.args[0] == (
        "param 'initial_lr' is not specified in param_groups[0] when resuming scheduler with last_epoch >= 0.\n"
        "This typically happens when:\n"
        "1. You're trying to resume training from a checkpoint but haven't properly loaded the optimizer state\n"
        "2. You're using last_epoch >= 0 for a fresh training run (not recommended)")


def test_resume_with_last_epoch_continues_sequence():
    opt = _opt()
    s = ls.StepLR(opt, 3, gamma=0.5)
    full = _drive(opt, s, 10)
    opt2 = _opt()
    for g in opt2.param_groups:
        g["initial_lr"] = 0.1
        g["lr"] = full[5]
    s2 = ls.StepLR(opt2, 3, gamma=0.5, last_epoch=4)  # initial step makes last_epoch 5
    assert s2.last_epoch == 5
    assert _drive(opt2, s2, 5) == full[5:]


def test_get_last_lr_is_a_copy_and_get_lr_warns():
    opt = _opt(2)
    s = ls.ExponentialLR(opt, 0.5)
    _drive(opt, s, 2)
    assert s.get_last_lr() == [0.025, 0.025]
    with pytest.warns(UserWarning, match=re.escape("please use `get_last_lr()`")):
        s.get_lr()


def test_array_lr_is_written_in_place(xp):
    p = refoptim.Parameter(xp.zeros(2))
    lr = xp.asarray(0.5)
    opt = refoptim.SGD([p], lr=lr)
    s = ls.StepLR(opt, 1, gamma=0.5)
    p.grad = xp.zeros(2)
    opt.step()
    s.step()
    assert float(opt.param_groups[0]["lr"]) == 0.25
    assert float(s.get_last_lr()[0]) == 0.25
    assert s.get_last_lr()[0] is not opt.param_groups[0]["lr"]
    assert float(opt.param_groups[0]["initial_lr"]) == 0.5


# ------------------------------------------------------------------ warnings
def test_warning_when_scheduler_steps_before_optimizer():
    opt = _opt()
    s = ls.StepLR(opt, 2)
    with pytest.warns(UserWarning, match=re.escape(OPT_FIRST)):
        s.step()
    opt = _opt()
    s = ls.StepLR(opt, 2)
    opt.step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s.step()
        opt.step()
        s.step()
    assert getattr(opt.step, "_wrapped_by_lr_sched", False) and opt._opt_called


def test_warning_when_optimizer_step_overridden_after_init():
    opt = _opt()
    s = ls.StepLR(opt, 2)
    opt.step = lambda: None
    with pytest.warns(UserWarning, match=re.escape("Seems like `optimizer.step()` has been overridden")):
        s.step()


def test_step_is_patched_once_and_hooks_still_run():
    opt = _opt()
    ls.StepLR(opt, 2)
    wrapped = opt.step
    ls.ExponentialLR(opt, 0.9)
    assert opt.step is wrapped
    seen = []
    opt.register_step_post_hook(lambda o, a, k: seen.append(o))
    opt.step()
    assert seen == [opt]


def test_step_epoch_deprecation_warning():
    opt = _opt()
    s = ls.StepLR(opt, 3, gamma=0.5)
    opt.step()
    with pytest.warns(UserWarning, match=re.escape(ls.EPOCH_DEPRECATION_WARNING)):
        s.step(7)
    assert s.last_epoch == 7 and _lrs(opt) == [0.1 * 0.5 ** 2]  # closed form
    r = ls.ReduceLROnPlateau(opt)
    with pytest.warns(UserWarning, match=re.escape(ls.EPOCH_DEPRECATION_WARNING)):
        r.step(1.0, 4)
    assert r.last_epoch == 4


# ------------------------------------------------------------------ state_dict
def test_state_dict_excludes_optimizer_and_function_lambdas():
    class Obj:
        def __init__(self):
            self.k = 0.9

        def __call__(self, e):
            return self.k ** e

    opt = _opt(2)
    s = ls.LambdaLR(opt, [lambda e: 1.0, Obj()])
    sd = s.state_dict()
    assert "optimizer" not in sd
    assert sd["lr_lambdas"] == [None, {"k": 0.9}]
    assert list(sd) == ["base_lrs", "last_epoch", "_step_count", "_is_initial", "_get_lr_called_within_step",
                        "_last_lr", "lr_lambdas"]
    sd["lr_lambdas"][1]["k"] = 0.5
    s.load_state_dict(sd)
    assert s.lr_lambdas[1].k == 0.5 and "lr_lambdas" in sd


def test_state_dict_of_steplr_layout():
    opt = _opt()
    sd = ls.StepLR(opt, 30).state_dict()
    assert sd == {"step_size": 30, "gamma": 0.1, "base_lrs": [0.1], "last_epoch": 0, "_step_count": 1,
                  "_is_initial": False, "_get_lr_called_within_step": False, "_last_lr": [0.1]}


def test_cyclic_state_dict_drops_scale_fn():
    opt = _opt()
    s = ls.CyclicLR(opt, 0.01, 0.1, mode="exp_range", gamma=0.9)
    sd = s.state_dict()
    assert "_scale_fn_ref" not in sd and sd["_scale_fn_custom"] is None
    s2 = ls.CyclicLR(_opt(), 0.01, 0.1)
    s2.load_state_dict(sd)
    assert s2.mode == "exp_range" and s2.scale_fn(2) == 0.9 ** 2


def test_composite_state_dicts_nest():
    opt = _opt()
    seq = ls.SequentialLR(opt, [ls.ConstantLR(opt, 0.5, 2), ls.ExponentialLR(opt, 0.9)], [3])
    sd = seq.state_dict()
    assert "optimizer" not in sd and len(sd["_schedulers"]) == 2 and sd["_milestones"] == [3]
    ch = ls.ChainedScheduler([ls.StepLR(opt, 2)], optimizer=opt)
    assert ch.optimizer is opt and list(ch.state_dict()) == ["_last_lr", "_schedulers"]


def test_plateau_state_dict_has_no_optimizer():
    opt = _opt()
    sd = ls.ReduceLROnPlateau(opt).state_dict()
    assert "optimizer" not in sd and sd["best"] == math.inf and sd["mode"] == "min"


# ------------------------------------------------------------------ hand-checkable sequences
def test_steplr_by_hand():
    opt = _opt(lr=1.0)
    assert _drive(opt, ls.StepLR(opt, 2, gamma=0.5), 6) == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.125]


def test_multisteplr_repeated_milestones():
    opt = _opt(lr=1.0)
    assert _drive(opt, ls.MultiStepLR(opt, [1, 3, 3], gamma=0.5), 4) == [1.0, 0.5, 0.5, 0.125, 0.125]


def test_constantlr_and_linearlr_by_hand():
    opt = _opt(lr=1.0)
    assert _drive(opt, ls.ConstantLR(opt, factor=0.5, total_iters=2), 3) == [0.5, 0.5, 1.0, 1.0]
    opt = _opt(lr=1.0)
    assert _drive(opt, ls.LinearLR(opt, start_factor=0.5, end_factor=1.0, total_iters=2), 3) == [0.5, 0.75, 1.0, 1.0]


def test_cosine_by_hand():
    opt = _opt(lr=1.0)
    seq = _drive(opt, ls.CosineAnnealingLR(opt, T_max=2), 4)
    assert seq[0] == 1.0 and math.isclose(seq[1], 0.5) and abs(seq[2]) < 1e-15 and math.isclose(seq[3], 0.5)


def test_warm_restarts_by_hand():
    opt = _opt(lr=1.0)
    seq = _drive(opt, ls.CosineAnnealingWarmRestarts(opt, T_0=2, T_mult=2), 6)
    assert seq[0] == 1.0 and math.isclose(seq[1], 0.5) and seq[2] == 1.0 and seq[6] == 1.0
    s = ls.CosineAnnealingWarmRestarts(_opt(lr=1.0), T_0=2, T_mult=2)
    s.step(2.5)  # fractional epoch: second period of length 4, T_cur = 0.5
    assert (s.T_i, s.T_cur, s.last_epoch) == (4, 0.5, 2)


def test_plateau_by_hand():
    opt = _opt(lr=1.0)
    s = ls.ReduceLROnPlateau(opt, factor=0.5, patience=1, cooldown=1, min_lr=0.2)
    lrs = []
    for m in [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]:
        s.step(m)
        lrs.append(_lrs(opt)[0])
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.2]


def test_cyclic_triangular_by_hand_with_betas():
    opt = _opt(lr=0.5, kind="adam")
    s = ls.CyclicLR(opt, base_lr=0.0, max_lr=1.0, step_size_up=2, base_momentum=0.8, max_momentum=0.9)
    seq, betas = [_lrs(opt)[0]], [opt.param_groups[0]["betas"][0]]
    for _ in range(4):
        opt.step()
        s.step()
        seq.append(_lrs(opt)[0])
        betas.append(opt.param_groups[0]["betas"][0])
    assert seq == [0.0, 0.5, 1.0, 0.5, 0.0]
    assert betas[0] == 0.9 and betas[2] == 0.8 and opt.param_groups[0]["betas"][1] == 0.999


def test_one_cycle_endpoints():
    opt = _opt()
    s = ls.OneCycleLR(opt, max_lr=1.0, total_steps=10, anneal_strategy="linear")
    seq = _drive(opt, s, 9)
    assert seq[0] == 1.0 / 25 and math.isclose(seq[-1], 1.0 / 25 / 1e4)
    assert max(seq) == 1.0 and opt.param_groups[0]["momentum"] == 0.95


def test_sequential_docs_example():
    opt = _opt(lr=1.0)
    s = ls.SequentialLR(opt, [ls.ConstantLR(opt, factor=0.1, total_iters=2), ls.ExponentialLR(opt, gamma=0.9)],
                        milestones=[2])
    seq = _drive(opt, s, 4)
    assert seq == [0.1, 0.1, 1.0, 0.9, 0.9 * 0.9]
