"""refoptim.testing.compare: another implementation judged against refoptim (no torch)."""

from __future__ import annotations

import math
from collections import namedtuple

import numpy as np
import pytest

import refoptim
from refoptim.testing import Stateful, Unsupported, assert_conforms, compare, counter, scaled
from refoptim.testing.comparison import torch_defaults
from refoptim.testing.inputs import Gradients, initial_values
from refoptim.testing.matrix import Config
from refoptim.testing.metrics import ulp_error, update_ulp_error

FEW = [{}, {"lr": 1e-2}, {"weight_decay": 0.1}, {"amsgrad": True, "maximize": True}]


def faithful_adam(param, grad, state, *, lr, betas, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay):
    """torch's Adam from its formula, with two honest reorderings: ``b*m + (1-b)*g`` for
    ``lerp`` and ``sqrt(v / bc2)`` for ``sqrt(v) / sqrt(bc2)``."""
    b1, b2 = betas
    dt = param.dtype.type
    lr = float(lr)
    if not state:
        state = {"step": np.zeros((), np.float32), "exp_avg": np.zeros_like(param), "exp_avg_sq": np.zeros_like(param)}
        if amsgrad:
            state["max_exp_avg_sq"] = np.zeros_like(param)
    g = -grad if maximize else grad
    if weight_decay:
        if decoupled_weight_decay:
            param = param * dt(1 - lr * weight_decay)
        else:
            g = g + dt(weight_decay) * param
    step = state["step"] + np.float32(1)
    t = float(step)
    m = dt(b1) * state["exp_avg"] + dt(1 - b1) * g
    v = dt(b2) * state["exp_avg_sq"] + dt(1 - b2) * g * g
    new = {"step": step, "exp_avg": m, "exp_avg_sq": v}
    if amsgrad:
        v = new["max_exp_avg_sq"] = np.maximum(state["max_exp_avg_sq"], v)
    denom = np.sqrt(v / dt(1 - b2**t)) + dt(eps)
    return param - dt(lr / (1 - b1**t)) * m / denom, new


def eps_hat_adam(param, grad, state, *, lr, betas, eps, **_):
    """Adam with epsilon added after folding the bias corrections into the step (Keras)."""
    b1, b2 = betas
    dt = param.dtype.type
    state = state or {"step": np.zeros((), np.float32), "exp_avg": np.zeros_like(param), "exp_avg_sq": np.zeros_like(param)}
    step = state["step"] + np.float32(1)
    t = float(step)
    m = dt(b1) * state["exp_avg"] + dt(1 - b1) * grad
    v = dt(b2) * state["exp_avg_sq"] + dt(1 - b2) * grad * grad
    alpha = float(lr) * math.sqrt(1 - b2**t) / (1 - b1**t)
    return param - dt(alpha) * m / (np.sqrt(v) + dt(eps)), {"step": step, "exp_avg": m, "exp_avg_sq": v}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_faithful_adam_passes_and_eps_hat_fails(dtype):
    good = compare(faithful_adam, "Adam", options=FEW, dtypes=(dtype,), steps=20)
    assert good.passed, str(good)
    assert len(good.results) == len(FEW)
    assert all(r.reference == "refoptim" for r in good.results)
    bad = compare(eps_hat_adam, "Adam", options=[{}], dtypes=(dtype,), steps=20)
    assert not bad.passed
    (r,) = bad.failures
    assert "param" in r.misses and r.param_ulp > 4 and r.update_ulp > r.param_ulp
    assert "step" in r.param_where and r.update_where


def test_the_report_reads_like_the_conformance_table():
    report = compare(eps_hat_adam, "Adam", options=[{}, {"lr": 1e-2}], dtypes=("float32",), steps=10)
    text = str(report)
    assert "eps_hat_adam" in text and "refoptim" in text
    assert "FAIL" in text.upper()
    worst = report.worst()
    assert set(worst) == {"param", "update", "state", "trajectory"}
    assert worst["param"]["value"] == max(r.param_ulp for r in report.results)
    with pytest.raises(AssertionError, match="miss a threshold"):
        assert_conforms(eps_hat_adam, "Adam", options=[{}], dtypes=("float32",), steps=10)
    assert assert_conforms(faithful_adam, "Adam", options=[{}], dtypes=("float32",), steps=10).passed


def test_candidates_get_torchs_keywords_with_defaults_and_fresh_state():
    seen = []

    def spy(param, grad, state, **options):
        seen.append((dict(options), dict(state)))
        return faithful_adam(param, grad, state, **options)

    compare(spy, "Adam", options=[{"lr": 1e-2}], dtypes=("float32",), steps=2)
    options, state = seen[0]
    assert options == {**torch_defaults("Adam"), "lr": 1e-2}
    assert not {"foreach", "fused", "capturable", "differentiable"} & set(options)
    assert state == {}  # a parameter's first step starts from an empty state
    assert any(set(s) == {"step", "exp_avg", "exp_avg_sq"} for _, s in seen)


def test_the_inputs_are_the_public_seeded_source():
    """compare draws the torch runner's inputs: the same initial values and gradients."""
    firsts = []

    def record(param, grad, state, **options):
        firsts.append((param.copy(), grad.copy()))
        return faithful_adam(param, grad, state, **options)

    compare(record, "Adam", options=[{}], dtypes=("float64",), steps=1, shapes=[(5,)])
    cfg = Config("Adam", {}, "float64", (), "fixed", 1)
    values = initial_values(cfg, [(5,)])
    (param, grad), _free = firsts  # teacher-forced, then free-running
    np.testing.assert_array_equal(param, values[0])
    np.testing.assert_array_equal(grad, Gradients(cfg, values)(0, values)[0])


def test_renamed_and_counter_state():
    def adam_mv(param, grad, state, **options):
        torch_state = {}
        if state:
            torch_state = {"step": np.float32(state["count"]), "exp_avg": state["m"], "exp_avg_sq": state["v"]}
        new_param, new = faithful_adam(param, grad, torch_state, **options)
        return new_param, {"count": np.int32(new["step"]), "m": new["exp_avg"], "v": new["exp_avg_sq"]}

    plain = compare(adam_mv, "Adam", options=[{}], dtypes=("float32",), steps=10)
    assert not plain.passed and any("has no 'exp_avg'" in e for e in plain.results[0].structure_errors)
    mapped = compare(
        adam_mv, "Adam", options=[{}], dtypes=("float32",), steps=10,
        state_map={"step": counter("count"), "exp_avg": "m", "exp_avg_sq": "v"},
    )
    assert mapped.passed, str(mapped)


def test_scaled_state_and_entries_not_kept():
    """A momentum trace that holds -lr times torch's momentum_buffer (p += trace)."""

    def sgd_trace(param, grad, state, *, lr, momentum, dampening, weight_decay, nesterov, maximize):
        dt = param.dtype.type
        trace = state.get("trace")
        trace = -dt(lr) * grad if trace is None else dt(momentum) * trace - dt(lr) * grad
        return param + trace, {"trace": trace}

    options = [{"momentum": 0.9, "lr": 1e-2}]
    report = compare(sgd_trace, "SGD", options=options, dtypes=("float64",), steps=20,
                     state_map={"momentum_buffer": scaled("trace", lambda o: -o["lr"])})
    r = report.results[0]
    assert not r.structure_errors and r.state_ulp < 8 and r.param_ulp < 8
    ignored = compare(sgd_trace, "SGD", options=options, dtypes=("float64",), steps=5, state_map={"momentum_buffer": None})
    assert ignored.results[0].state_ulp == 0 and not ignored.results[0].structure_errors


def test_a_stateful_candidate():
    State = namedtuple("State", "count mu nu")

    def init(param, **options):
        return State(np.zeros((), np.int32), np.zeros_like(param), np.zeros_like(param))

    def update(param, grad, s, **options):
        torch_state = {"step": np.float32(s.count), "exp_avg": s.mu, "exp_avg_sq": s.nu} if s.count else {}
        new_param, new = faithful_adam(param, grad, torch_state, **options)
        return new_param, State(np.int32(new["step"]), new["exp_avg"], new["exp_avg_sq"])

    def read(s):
        return s._asdict()

    def write(entries, s):
        return s._replace(**entries)

    report = compare(
        Stateful(init, update, read, write), "Adam", options=[{}, {"lr": 1e-2}], dtypes=("float32", "float64"),
        steps=15, state_map={"step": counter("count"), "exp_avg": "mu", "exp_avg_sq": "nu"},
    )
    assert report.passed, str(report)


def test_unsupported_configurations_are_skipped():
    def no_amsgrad(param, grad, state, **options):
        if options["amsgrad"]:
            raise Unsupported("no amsgrad")
        return faithful_adam(param, grad, state, **options)

    report = compare(no_amsgrad, "Adam", options=[{}, {"amsgrad": True}], dtypes=("float32",), steps=5)
    assert [r.status for r in report.results] == ["pass", "skipped"]
    assert "no amsgrad" in report.results[1].skipped and report.passed
    everything_skipped = compare(no_amsgrad, "Adam", options=[{"amsgrad": True}], dtypes=("float32",), steps=5)
    assert not everything_skipped.passed


def test_a_promoted_result_is_a_structure_error():
    def promotes(param, grad, state, **options):
        new_param, new = faithful_adam(param, grad, state, **options)
        return new_param.astype(np.float64), new

    r = compare(promotes, "Adam", options=[{}], dtypes=("float32",), steps=3).results[0]
    assert r.status == "fail" and "float64" in r.structure_errors[0]


def test_the_default_is_the_matrix_and_the_others_are_refused():
    report = compare(faithful_adam, "Adam", dtypes=("float32",), steps=3)
    labels = {r.config.label for r in report.results}
    assert len(report.results) > 20 and any("groups" in label for label in labels)
    assert any("quadratic" in label for label in labels)
    with pytest.raises(ValueError, match="elementwise"):
        compare(faithful_adam, "LBFGS")
    with pytest.raises(ValueError, match="dtype"):
        compare(faithful_adam, "Adam", dtypes=("float16",))


def test_refoptims_own_functional_rule_is_bit_identical():
    """refoptim's functional Adam, as a candidate, meets every figure with zero error."""
    from refoptim.functional import adam_init, adam_step

    def rule(param, grad, state, *, lr, betas, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay):
        state = dict(state) or adam_init(param, amsgrad)
        new = adam_step(param, grad, state, lr=lr, beta1=betas[0], beta2=betas[1], eps=eps,
                        weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize,
                        decoupled_weight_decay=decoupled_weight_decay)
        return new, state

    report = compare(rule, "Adam", options=FEW, dtypes=("float32", "float64", "complex64"), steps=10)
    assert report.passed
    assert all(r.param_ulp == r.update_ulp == r.state_ulp == r.trajectory == 0 for r in report.results)
    assert refoptim.Adam  # the class the reference runs


def test_update_ulp_error_sees_what_the_operand_scale_hides():
    before = np.ones(4, dtype=np.float64)
    theirs = before - 1e-6
    ours = before - 1e-6 * (1 + 3e-10)  # the update wrong in its 10th digit
    assert ulp_error(ours, theirs, before) < 4  # within 4 ULP at the operands' scale
    assert update_ulp_error(ours, theirs, before) > 1e3
    # one unit of the parameter is the final rounding's allowance: never an error alone
    assert update_ulp_error(np.nextafter(theirs, 2), theirs, before) == 0
    assert update_ulp_error(theirs, theirs, before) == 0
    assert update_ulp_error(np.array([np.nan]), np.array([1.0]), np.array([1.0])) == np.inf


def test_the_update_figure_has_its_own_threshold():
    from refoptim.testing import thresholds
    from refoptim.testing.results import Result

    cfg = Config("Adam", {}, "float32")
    limit = thresholds.UPDATE_ULP["float32"]
    assert Result(cfg, update_ulp=limit).passed
    missed = Result(cfg, update_ulp=2 * limit, update_where="step 3, param (5,)", reference="refoptim")
    assert missed.misses == ["update"] and missed.status == "fail"
    assert "ULP of the update" in missed.reason and "step 3" in missed.reason
    # the optimizers judged by relative error have no update-scale figure
    assert Result(Config("LBFGS", {}, "float32")).update_limit is None
