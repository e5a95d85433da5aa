"""Property tests (hypothesis) over hyper-parameters, shapes and dtypes.

(a) NumPy and array-api-strict agree bitwise; (b) the classes and the functional form agree
bitwise; (c) lr = 0 leaves the parameters unchanged (SGD; Adam without decoupled decay);
(d) finite inputs give finite results; (e) maximize with g is minimize with -g, bitwise;
(f) Adam's ``step`` is a 0-d float32 count, and every other state entry has the
parameter's shape and dtype; (g) Adam on a complex parameter is Adam on its real view.
"""

import array_api_strict
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refoptim import SGD, Adam, AdamW
from _support import (
    assert_bitwise_equal,
    assert_state_equal,
    cnp,
    run_class,
    run_functional,
    to_np,
)

SETTINGS = settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

dtypes = st.sampled_from(["float32", "float64", "complex64"])
shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)
unit = st.floats(0.0, 1.0, allow_nan=False)


@st.composite
def problems(draw, steps=st.integers(1, 5), bound=100.0):
    """(initial value, gradients): finite NumPy arrays of one drawn dtype and shape.

    Values are finite and free of -0.0 (x + 0.0); complex ones have drawn real and
    imaginary parts.
    """
    dtype = draw(dtypes)
    shape = draw(shapes)
    n = draw(steps)
    real = "float32" if dtype in ("float32", "complex64") else "float64"
    elements = st.floats(-bound, bound, allow_nan=False, allow_infinity=False, width=32 if real == "float32" else 64)
    parts = 2 if dtype.startswith("complex") else 1

    def one():
        a = draw(hnp.arrays(real, (parts,) + tuple(shape), elements=elements)) + np.asarray(0.0, dtype=real)
        return (a[0] + 1j * a[1]).astype(dtype) if parts == 2 else a[0].astype(dtype)

    init = one()
    return init, [one() for _ in range(n)]


@st.composite
def sgd_configs(draw):
    momentum = draw(st.sampled_from([0.0, 0.5, 0.9]) | st.floats(0.0, 0.99))
    dampening = draw(st.sampled_from([0.0]) | unit)
    nesterov = draw(st.booleans()) if momentum > 0 and dampening == 0 else False
    return dict(
        lr=draw(st.floats(0.0, 1.0)),
        momentum=momentum,
        dampening=dampening,
        weight_decay=draw(st.sampled_from([0.0]) | st.floats(0.0, 0.5)),
        nesterov=nesterov,
        maximize=draw(st.booleans()),
    )


@st.composite
def adam_configs(draw, decoupled=st.booleans()):
    return dict(
        lr=draw(st.floats(0.0, 0.5)),
        betas=(draw(st.floats(0.0, 0.999)), draw(st.floats(0.0, 0.9999))),
        eps=draw(st.floats(1e-10, 1e-2)),
        weight_decay=draw(st.sampled_from([0.0]) | st.floats(0.0, 0.5)),
        amsgrad=draw(st.booleans()),
        maximize=draw(st.booleans()),
        decoupled_weight_decay=draw(decoupled),
    )


@st.composite
def any_config(draw):
    which = draw(st.sampled_from(["SGD", "Adam", "AdamW"]))
    if which == "SGD":
        return SGD, draw(sgd_configs())
    cfg = draw(adam_configs())
    if which == "AdamW":
        del cfg["decoupled_weight_decay"]
        return AdamW, cfg
    return Adam, cfg


# ----------------------------------------------------------------------------- (a), (b)
@SETTINGS
@given(config=any_config(), problem=problems())
def test_namespaces_and_functional_agree(config, problem):
    cls, cfg = config
    init, grads = problem
    p_np, s_np, _ = run_class(cls, cfg, cnp, init, grads)
    p_st, s_st, _ = run_class(cls, cfg, array_api_strict, init, grads)
    f_np, fs_np = run_functional(cls, cfg, cnp, init, grads)
    assert_bitwise_equal(p_np, p_st, "numpy vs array_api_strict")
    assert_state_equal(s_np, s_st)
    assert_bitwise_equal(p_np, f_np, "class vs functional")
    assert_state_equal(s_np, fs_np)


# ----------------------------------------------------------------------------- (c)
@SETTINGS
@given(cfg=sgd_configs(), problem=problems())
def test_sgd_zero_lr_leaves_params(cfg, problem):
    init, grads = problem
    cfg = dict(cfg, lr=0.0)
    p, _, _ = run_class(SGD, cfg, cnp, init, grads)
    assert np.array_equal(to_np(p), init)


@SETTINGS
@given(cfg=adam_configs(decoupled=st.just(False)), problem=problems())
def test_adam_zero_lr_leaves_params(cfg, problem):
    init, grads = problem
    cfg = dict(cfg, lr=0.0)
    p, state, _ = run_class(Adam, cfg, cnp, init, grads)
    assert np.array_equal(to_np(p), init)
    assert float(state["step"]) == len(grads)  # the step still counts


def test_adamw_zero_lr_leaves_params_too():
    # decoupled decay is lr * weight_decay, so it vanishes with lr as well
    init = np.array([1.0, -2.0])
    p, _, _ = run_class(AdamW, dict(lr=0.0, weight_decay=0.5), cnp, init, [np.array([0.3, 0.1])] * 3)
    assert np.array_equal(to_np(p), init)


# ----------------------------------------------------------------------------- (d)
@SETTINGS
@given(config=any_config(), problem=problems())
def test_finite_inputs_give_finite_results(config, problem):
    cls, cfg = config
    init, grads = problem
    p, state, _ = run_class(cls, cfg, cnp, init, grads)
    assert np.all(np.isfinite(to_np(p)))
    for key, value in state.items():
        assert np.all(np.isfinite(to_np(value))), key


# ----------------------------------------------------------------------------- (e)
@SETTINGS
@given(config=any_config(), problem=problems())
def test_maximize_is_minimize_of_the_negated_gradient(config, problem):
    cls, cfg = config
    init, grads = problem
    p_max, s_max, _ = run_class(cls, dict(cfg, maximize=True), cnp, init, grads)
    p_min, s_min, _ = run_class(cls, dict(cfg, maximize=False), cnp, init, [-g for g in grads])
    assert_bitwise_equal(p_max, p_min)
    assert_state_equal(s_max, s_min)


# ----------------------------------------------------------------------------- (f)
@SETTINGS
@given(config=any_config(), problem=problems(steps=st.integers(0, 6)), ns=st.sampled_from(["numpy", "strict"]))
def test_state_entries(config, problem, ns):
    cls, cfg = config
    init, grads = problem
    xp = cnp if ns == "numpy" else array_api_strict
    p, state, opt = run_class(cls, cfg, xp, init, grads)
    assert p.shape == init.shape and p.dtype == xp.asarray(init).dtype
    if not grads:
        assert state == {} and len(opt.state) == 0
        return
    if cls is SGD:
        assert set(state) == ({"momentum_buffer"} if cfg["momentum"] != 0 else set())
    else:
        assert set(state) == {"step", "exp_avg", "exp_avg_sq"} | ({"max_exp_avg_sq"} if cfg["amsgrad"] else set())
        step = state["step"]
        assert step.shape == () and step.dtype == xp.float32
        assert float(step) == len(grads)
    for key, value in state.items():
        if key != "step":
            assert value.shape == p.shape and value.dtype == p.dtype, key
            assert type(value) is type(p)


# ----------------------------------------------------------------------------- (g)
def _real_view(z):
    return np.stack([z.real, z.imag], axis=-1)


@SETTINGS
@given(cfg=adam_configs(decoupled=st.booleans()), problem=problems())
def test_complex_adam_is_adam_on_the_real_view(cfg, problem):
    """torch views complex parameters as (re, im) pairs; without weight decay the complex
    run is the real run on those pairs."""
    init, grads = problem
    if not np.iscomplexobj(init):
        init = init.astype(np.complex64)
        grads = [g.astype(np.complex64) for g in grads]
    cfg = dict(cfg, weight_decay=0.0)
    p_c, s_c, _ = run_class(Adam, cfg, cnp, init, grads)
    p_r, s_r, _ = run_class(Adam, cfg, cnp, _real_view(init), [_real_view(g) for g in grads])
    # Equal values (the sign of a zero aside: see test_complex_adam_keeps_each_component).
    _assert_equal_values(_real_view(to_np(p_c)), p_r)
    for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
        if key in s_c:
            _assert_equal_values(_real_view(to_np(s_c[key])), s_r[key])


def _assert_equal_values(a, b):
    a, b = to_np(a), to_np(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert np.array_equal(a, b), (a, b)


@pytest.mark.parametrize(
    "init,grad",
    [
        # exp_avg_sq's imaginary part overflows to inf (float32); torch keeps its real part 0.001
        (1.0 + 0.0j, 1.0 + 1e30j),
        # a -0.0 imaginary part that Adam does not move (zero imaginary gradient)
        (complex(2.0, -0.0), 1.0 + 0.0j),
    ],
    ids=["inf-imag", "negative-zero-imag"],
)
def test_complex_adam_keeps_each_component(init, grad):
    z0 = np.array([init], dtype=np.complex64)
    g = np.array([grad], dtype=np.complex64)
    with np.errstate(all="ignore"):
        p_c, s_c, _ = run_class(Adam, dict(lr=0.1), cnp, z0, [g, g])
        p_r, s_r, _ = run_class(Adam, dict(lr=0.1), cnp, _real_view(z0), [_real_view(g)] * 2)
    assert_bitwise_equal(_real_view(to_np(s_c["exp_avg_sq"])), s_r["exp_avg_sq"], "exp_avg_sq")
    assert_bitwise_equal(_real_view(to_np(p_c)), p_r, "param")
