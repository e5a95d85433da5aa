"""The rules on immutable arrays: they rebind instead of mutating, and give NumPy's numbers.

``ImmutableArray`` (tests/_immutable.py) stands in for JAX: no in-place operators and a
``__setitem__`` that raises ``TypeError``. sgd_step / adam_step / adamw_step (and the
classes on top of them) must run on it, return the same bits as on NumPy, and never
write into an input array.
"""

import array_api_compat
import array_api_strict
import numpy as np
import pytest

import refoptim
from refoptim import functional as F
from _immutable import ImmutableArray, namespace, wrap
from _support import (
    ALL_CONFIGS,
    DTYPES,
    SHAPES,
    assert_bitwise_equal,
    assert_state_equal,
    cnp,
    config_id,
    functional_hyper,
    make_sequence,
    run_class,
    run_functional,
    to_np,
)

STEPS = 8
IDS = [config_id(c, k) for c, k in ALL_CONFIGS]


# ----------------------------------------------------------------------------- the stand-in
def test_stand_in_is_an_array_api_object():
    w = wrap(np.ones(3, dtype=np.float32))
    assert array_api_compat.is_array_api_obj(w)
    assert array_api_compat.array_namespace(w) is namespace
    assert array_api_compat.array_namespace(w, wrap(np.zeros(3))) is namespace
    assert refoptim._backend.is_array(w)
    assert refoptim._backend.device_of(w) == "cpu"


def test_stand_in_is_immutable():
    w = wrap(np.ones(3))
    with pytest.raises(TypeError):
        w[...] = 0.0
    with pytest.raises(ValueError):
        w._a[0] = 5.0  # the buffer itself is read-only
    for name in ("__iadd__", "__isub__", "__imul__", "__itruediv__", "__ipow__"):
        assert not hasattr(w, name)
    before = w
    w += 1.0  # rebinds, as on JAX
    assert w is not before
    assert np.array_equal(to_np(before), np.ones(3))
    assert np.array_equal(to_np(w), np.full(3, 2.0))
    # It refuses to mix with NumPy arrays, so a leaked backend array shows up.
    with pytest.raises(TypeError):
        w + np.ones(3)


def test_assign_rebinds_on_immutable():
    old, new = wrap(np.zeros(2)), wrap(np.ones(2))
    out = refoptim._backend.assign(old, new)
    assert out is new
    assert np.array_equal(to_np(old), np.zeros(2))


# ----------------------------------------------------------------------------- functional form
def _run_immutable_functional(cls, cfg, init, grads):
    fn, hyper, amsgrad = functional_hyper(cls, cfg)
    w = wrap(init)
    state = {} if cls is refoptim.SGD else F.adam_init(w, amsgrad)
    for g in grads:
        g_arr = wrap(g)
        w_before = w
        w_before_np = to_np(w_before)
        state_before = dict(state)
        state_before_np = {k: to_np(v) for k, v in state.items()}
        w = fn(w, g_arr, state, **hyper)
        # Nothing given to the rule was written into: inputs keep their values...
        assert_bitwise_equal(w_before, w_before_np, "param input mutated")
        assert_bitwise_equal(g_arr, g, "grad input mutated")
        for k, v in state_before.items():
            assert_bitwise_equal(v, state_before_np[k], f"state[{k!r}] input mutated")
        # ... and the results come back as new (rebound) arrays.
        assert isinstance(w, ImmutableArray)
        assert w is not w_before
        for k, v in state.items():
            assert isinstance(v, ImmutableArray), k
            if k in state_before:
                assert v is not state_before[k], f"state[{k!r}] was not rebound"
    return w, state


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "shape" + "x".join(map(str, s)) if s else "0d")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls,cfg", ALL_CONFIGS, ids=IDS)
def test_functional_on_immutable_matches_numpy(cls, cfg, dtype, shape):
    init, grads = make_sequence(11, shape, dtype, STEPS)
    w_np, s_np = run_functional(cls, cfg, cnp, init, grads)
    w_im, s_im = _run_immutable_functional(cls, cfg, init, grads)
    assert_bitwise_equal(w_np, w_im, "param numpy vs immutable")
    assert_state_equal(s_np, s_im, "state numpy vs immutable")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls,cfg", ALL_CONFIGS, ids=IDS)
def test_functional_on_array_api_strict_matches_numpy(cls, cfg, dtype):
    init, grads = make_sequence(12, (2, 3), dtype, STEPS)
    w_np, s_np = run_functional(cls, cfg, cnp, init, grads)
    w_st, s_st = run_functional(cls, cfg, array_api_strict, init, grads)
    assert isinstance(w_st, array_api_strict._array_object.Array)
    assert all(isinstance(v, array_api_strict._array_object.Array) for v in s_st.values())
    assert_bitwise_equal(w_np, w_st)
    assert_state_equal(s_np, s_st)


def test_sgd_momentum_buffer_is_a_copy_on_immutable():
    g = wrap(np.array([1.0, 2.0]))
    state = {}
    w = F.sgd_step(wrap(np.zeros(2)), g, state, lr=0.1, momentum=0.9, dampening=0.0,
                   weight_decay=0.0, nesterov=False, maximize=False)
    assert np.array_equal(to_np(state["momentum_buffer"]), [1.0, 2.0])
    assert np.array_equal(to_np(w), [-0.1, -0.2])


# ----------------------------------------------------------------------------- the classes
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls,cfg", ALL_CONFIGS, ids=IDS)
def test_classes_on_immutable_rebind_parameter(cls, cfg, dtype):
    init, grads = make_sequence(13, (3,), dtype, STEPS)
    w_np, s_np, _ = run_class(cls, cfg, cnp, init, grads)

    p = refoptim.Parameter(wrap(init), name="w")
    opt = cls([p], **cfg)
    for g in grads:
        before, before_np = p.data, to_np(p.data)
        p.grad = wrap(g)
        opt.step()
        assert p.data is not before
        assert isinstance(p.data, ImmutableArray)
        assert_bitwise_equal(before, before_np, "old parameter array changed")
    assert_bitwise_equal(w_np, p.data)
    assert_state_equal(s_np, opt.state.get(p, {}))


def test_zero_grad_on_immutable_rebinds():
    p = refoptim.Parameter(wrap(np.ones(3)))
    g = wrap(np.full(3, 2.0))
    p.grad = g
    opt = refoptim.SGD([p], lr=0.1)
    opt.zero_grad(set_to_none=False)
    assert p.grad is not g
    assert np.array_equal(to_np(p.grad), np.zeros(3))
    assert np.array_equal(to_np(g), np.full(3, 2.0))
    opt.zero_grad()
    assert p.grad is None


def test_state_dict_round_trip_on_immutable():
    init, grads = make_sequence(14, (4,), "float32", 6)
    pa = refoptim.Parameter(wrap(init))
    a = refoptim.Adam([pa], lr=0.01, amsgrad=True)
    for g in grads[:3]:
        pa.grad = wrap(g)
        a.step()
    pb = refoptim.Parameter(wrap(to_np(pa.data)))
    b = refoptim.Adam([pb], lr=0.5)
    b.load_state_dict(a.state_dict())
    assert b.param_groups[0]["lr"] == 0.01
    assert all(isinstance(v, ImmutableArray) for v in b.state[pb].values())
    for g in grads[3:]:
        pa.grad = wrap(g)
        pb.grad = wrap(g)
        a.step()
        b.step()
    assert_bitwise_equal(pa.data, pb.data)
    assert_state_equal(a.state[pa], b.state[pb])


def test_validation_on_immutable_leaves_everything():
    p1 = refoptim.Parameter(wrap(np.ones(3)), name="a")
    p2 = refoptim.Parameter(wrap(np.ones(2)), name="b")
    opt = refoptim.Adam([p1, p2], lr=0.1)
    p1.grad = wrap(np.ones(3))
    p2._grad = wrap(np.ones(3))  # wrong shape, past the setter
    d1, d2 = p1.data, p2.data
    with pytest.raises(RuntimeError, match="'b'"):
        opt.step()
    assert p1.data is d1 and p2.data is d2
    assert len(opt.state) == 0
