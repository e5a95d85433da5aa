"""Hypothesis properties of the first-order optimizers (issue 3: the elementwise ones but
SGD, Adam and AdamW), over drawn hyper-parameters, shapes (0-d to 3-d, size 0 included)
and dtypes (float32, float64, complex64):

(a) NumPy and array-api-strict agree bit for bit, parameter and every state entry;
(b) maximize with gradients g is minimize with -g, bit for bit;
(c) finite inputs give finite parameters;
(d) array state entries are 0-d or have the parameter's shape.
"""

import inspect

import array_api_strict
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import refoptim
from refoptim import registry
from _support import assert_bitwise_equal, assert_state_equal, cnp, run_class, to_np
from test_properties import SETTINGS, problems

unit = st.floats(0.0, 1.0, allow_nan=False)
small = st.sampled_from([0.0]) | st.floats(0.0, 0.5)
lrs = st.floats(0.0, 0.5)
betas = st.tuples(st.floats(0.0, 0.999), st.floats(0.0, 0.9999))


# The elementwise optimizers but SGD, Adam and AdamW (test_properties.py has theirs), by
# name; one with no strategy below runs with its constructor's defaults.
FIRST_ORDER = sorted((n for n in registry.names(elementwise=True) if n not in ("SGD", "Adam", "AdamW")), key=str.lower)


@st.composite
def first_order_config(draw):
    name = draw(st.sampled_from(FIRST_ORDER))
    if name == "Adadelta":
        cfg = dict(lr=draw(st.floats(0.0, 2.0)), rho=draw(unit), eps=draw(st.floats(1e-8, 1e-2)), weight_decay=draw(small))
    elif name == "Adagrad":
        cfg = dict(lr=draw(lrs), lr_decay=draw(small), weight_decay=draw(small),
                   initial_accumulator_value=draw(small), eps=draw(st.floats(1e-10, 1e-2)))
    elif name == "Adamax":
        cfg = dict(lr=draw(lrs), betas=draw(betas), eps=draw(st.floats(1e-10, 1e-2)), weight_decay=draw(small))
    elif name == "ASGD":
        cfg = dict(lr=draw(lrs), lambd=draw(st.floats(0.0, 1e-2)), alpha=draw(st.sampled_from([0.75, 0.5, 1.0])),
                   t0=draw(st.sampled_from([0.0, 1.0, 2.5, 1e6])), weight_decay=draw(small))
    elif name == "NAdam":
        cfg = dict(lr=draw(lrs), betas=draw(betas), eps=draw(st.floats(1e-10, 1e-2)), weight_decay=draw(small),
                   momentum_decay=draw(st.floats(0.0, 1e-2)), decoupled_weight_decay=draw(st.booleans()))
    elif name == "RAdam":
        cfg = dict(lr=draw(lrs), betas=draw(betas), eps=draw(st.floats(1e-10, 1e-2)), weight_decay=draw(small),
                   decoupled_weight_decay=draw(st.booleans()))
    elif name == "RMSprop":
        cfg = dict(lr=draw(lrs), alpha=draw(unit), eps=draw(st.floats(1e-10, 1e-2)), weight_decay=draw(small),
                   momentum=draw(st.sampled_from([0.0, 0.9]) | unit), centered=draw(st.booleans()))
    elif name == "Rprop":
        lo = draw(st.floats(1e-6, 1e-2))
        cfg = dict(lr=draw(st.floats(1e-6, 0.1)), etas=(draw(st.floats(0.1, 0.99)), draw(st.floats(1.01, 2.0))),
                   step_sizes=(lo, draw(st.floats(lo, 50.0))))
    else:
        cfg = {}
    if "maximize" in inspect.signature(getattr(refoptim, name)).parameters:
        cfg["maximize"] = draw(st.booleans())
    return getattr(refoptim, name), cfg


@SETTINGS
@given(config=first_order_config(), problem=problems())
def test_numpy_and_array_api_strict_agree(config, problem):
    cls, cfg = config
    init, grads = problem
    p_np, s_np, _ = run_class(cls, cfg, cnp, init, grads)
    p_st, s_st, _ = run_class(cls, cfg, array_api_strict, init, grads)
    if np.iscomplexobj(to_np(p_np)) and not np.all(np.isfinite(to_np(p_np))):
        # A known limit, kept visible by test_complex_nan_placement_on_strict below:
        # array-api-strict has no dtype views, so a complex result is rebuilt as
        # re + im * 1j, which turns a NaN imaginary part into NaN + NaNj
        # (refoptim._backend.view_as_complex; issue 16). Where the value is NaN agrees.
        assert np.array_equal(np.isnan(to_np(p_np)), np.isnan(to_np(p_st)))
        return
    assert_bitwise_equal(p_np, p_st, f"{cls.__name__}: numpy vs array_api_strict")
    assert_state_equal(s_np, s_st)


def test_complex_nan_placement_on_strict():
    """The case hypothesis found (centered RMSprop, alpha=0, a purely imaginary gradient:
    the imaginary part's sqrt is of a negative rounding error): NumPy views the complex
    parameter as real pairs and gives 0+nanj, as torch does; array-api-strict rebuilds it
    with complex arithmetic and gives nan+nanj. Measured, not yet fixed (issue 16)."""
    cfg = dict(lr=0.0, alpha=0.0, eps=0.0078125, centered=True)
    init, grads = np.complex64(0j), [np.complex64(64.640625j)]
    p_np, _, _ = run_class(refoptim.RMSprop, cfg, cnp, init, grads)
    p_st, _, _ = run_class(refoptim.RMSprop, cfg, array_api_strict, init, grads)
    z_np, z_st = complex(to_np(p_np)), complex(to_np(p_st))
    assert z_np.real == 0 and np.isnan(z_np.imag)
    assert np.isnan(z_st.real) and np.isnan(z_st.imag)


@SETTINGS
@given(config=first_order_config(), problem=problems())
def test_maximize_is_minimize_of_the_negated_gradient(config, problem):
    cls, cfg = config
    init, grads = problem
    p_max, s_max, _ = run_class(cls, dict(cfg, maximize=True), cnp, init, grads)
    p_min, s_min, _ = run_class(cls, dict(cfg, maximize=False), cnp, init, [-g for g in grads])
    assert_bitwise_equal(p_max, p_min, cls.__name__)
    assert_state_equal(s_max, s_min)


@SETTINGS
@given(config=first_order_config(), problem=problems(bound=10.0))
def test_finite_inputs_give_finite_results_and_state_shapes(config, problem):
    cls, cfg = config
    init, grads = problem
    p, state, _ = run_class(cls, cfg, cnp, init, grads)
    if not cfg.get("centered"):  # centered RMSprop can take sqrt of a negative: see below
        assert np.all(np.isfinite(to_np(p))), cls.__name__
    for key, value in state.items():
        shape = np.shape(to_np(value))
        assert shape in ((), init.shape), f"{cls.__name__}: state[{key!r}] has shape {shape}"


def test_centered_rmsprop_takes_nan_where_torch_does():
    """torch's centered RMSprop computes v - m*m as one fused multiply-add on the rounded
    v, so with alpha = 0 (v = g*g rounded) the result is the rounding error of g*g, which
    can be negative: sqrt gives NaN. torch 2.13 gives NaN for each of these gradients
    (float32, lr=0, alpha=0, eps=2**-7); refoptim must too."""
    for g in (8.603516, 1.6029305, 3.351696):
        p, state, _ = run_class(refoptim.RMSprop, dict(lr=0.0, alpha=0.0, eps=0.0078125, centered=True),
                                cnp, np.float32(0.0), [np.float32(g)])
        assert np.isnan(to_np(p))
        assert to_np(state["square_avg"]) == np.float32(g) * np.float32(g)
