"""Adafactor: torch 2.13's signature, defaults, validation, state layout and quirks; one
code path on NumPy and array-api-strict; known values of tiny cases.

No torch here: every expected exception, default and signature below was read from
torch 2.13.0 (CPU) by running the same thing on ``torch.optim.Adafactor``.
"""

import inspect
import math

import numpy as np
import pytest
from _support import (
    NAMESPACES,
    as_xp,
    assert_bitwise_equal,
    assert_state_equal,
    cnp,
    make_sequence,
    to_np,
)

from refoptim import Parameter
from refoptim.adafactor import Adafactor, adafactor_init, adafactor_step

STEPS = 8
SHAPES = ((), (5,), (3, 4), (2, 3, 4), (7, 1), (1, 9))


def params(xp=cnp):
    return [Parameter(xp.zeros(3))]


# ============================================================================ validation
ERRORS = [
    ({"lr": -1}, ValueError, "Learning rate should be >= 0 but is: -1"),
    ({"lr": -0.5}, ValueError, "Learning rate should be >= 0 but is: -0.5"),
    ({"lr": float("nan")}, ValueError, "Learning rate should be >= 0 but is: nan"),
    ({"beta2_decay": 0.1}, ValueError, "beta2_decay should be <= 0 but is: 0.1"),
    ({"beta2_decay": float("nan")}, ValueError, "beta2_decay should be <= 0 but is: nan"),
    ({"eps": (-1, 1e-3)}, ValueError, "epsilon1 should be >= 0 but is: -1"),
    ({"eps": (None, -1.0)}, ValueError, "epsilon2 should be >= 0 but is: -1.0"),
    ({"d": 0.5}, ValueError, "Clipping threshold d should be >= 1 but is: 0.5"),
    ({"weight_decay": -1}, ValueError, "weight_decay should be >= 0 but is: -1"),
    ({"eps": (1e-30,)}, IndexError, "tuple index out of range"),
    # the first failing check wins, in torch's order
    ({"lr": -1, "beta2_decay": 1}, ValueError, "Learning rate should be >= 0 but is: -1"),
    ({"beta2_decay": 1, "eps": (-1, -1)}, ValueError, "beta2_decay should be <= 0 but is: 1"),
    ({"eps": (-1, -1), "d": 0}, ValueError, "epsilon1 should be >= 0 but is: -1"),
    ({"eps": (None, -1), "d": 0}, ValueError, "epsilon2 should be >= 0 but is: -1"),
    ({"d": 0, "weight_decay": -1}, ValueError, "Clipping threshold d should be >= 1 but is: 0"),
]


@pytest.mark.parametrize("kwargs,exc,message", ERRORS, ids=[str(k) for k, _, _ in ERRORS])
def test_errors(kwargs, exc, message):
    with pytest.raises(exc) as info:
        Adafactor(params(), **kwargs)
    assert type(info.value) is exc
    assert str(info.value) == message


def test_array_lr(xp):
    with pytest.raises(ValueError, match="^Tensor lr must be 1-element$"):
        Adafactor(params(xp), lr=xp.asarray([0.1, 0.2]))
    # torch formats a 0-d tensor as its Python float
    with pytest.raises(ValueError) as info:
        Adafactor(params(xp), lr=xp.asarray(-0.1, dtype=xp.float32))
    assert str(info.value) == "Learning rate should be >= 0 but is: -0.10000000149011612"
    lr = xp.asarray(0.1, dtype=xp.float32)
    opt = Adafactor(params(xp), lr=lr, foreach=True)
    assert opt.param_groups[0]["lr"] is lr and opt.param_groups[0]["foreach"] is True


def test_empty_params():
    with pytest.raises(ValueError, match="^optimizer got an empty parameter list$"):
        Adafactor([])


# ============================================================================ signature
def test_signature_and_defaults():
    sig = inspect.signature(Adafactor.__init__)
    assert list(sig.parameters) == [
        "self", "params", "lr", "beta2_decay", "eps", "d", "weight_decay", "foreach", "maximize"
    ]
    kinds = {n: p.kind for n, p in sig.parameters.items()}
    assert kinds["foreach"] is kinds["maximize"] is inspect.Parameter.KEYWORD_ONLY
    assert kinds["weight_decay"] is inspect.Parameter.POSITIONAL_OR_KEYWORD
    opt = Adafactor(params())
    assert opt.defaults == {
        "lr": 1e-2,
        "beta2_decay": -0.8,
        "eps": (None, 1e-3),
        "d": 1.0,
        "weight_decay": 0.0,
        "foreach": None,
        "maximize": False,
    }
    group = opt.param_groups[0]
    assert set(group) == {"params", "lr", "beta2_decay", "eps", "d", "weight_decay", "foreach", "maximize"}


def test_setstate_fills_foreach_and_step_arrays():
    p = Parameter(np.zeros(3))
    opt = Adafactor([p])
    p.grad = np.ones(3)
    opt.step()
    state = opt.__getstate__()
    del state["param_groups"][0]["foreach"]
    state["state"][p]["step"] = 3.0
    opt.__setstate__(state)
    assert opt.param_groups[0]["foreach"] is None
    step = opt.state[p]["step"]
    assert step.dtype == np.float32 and step.shape == () and float(step) == 3.0


# ============================================================================ state layout
LAYOUT = [
    ((), {"step": (), "variance": ()}),
    ((5,), {"step": (), "variance": (5,)}),
    ((3, 4), {"step": (), "row_var": (3, 1), "col_var": (1, 4)}),
    ((2, 3, 4), {"step": (), "row_var": (2, 3, 1), "col_var": (2, 1, 4)}),
    ((7, 1), {"step": (), "row_var": (7, 1), "col_var": (1, 1)}),
]


@pytest.mark.parametrize("shape,layout", LAYOUT, ids=[str(s) for s, _ in LAYOUT])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_state_layout(xp, shape, layout, dtype):
    init, grads = make_sequence(1, shape, dtype, 2)
    p = Parameter(as_xp(xp, init))
    opt = Adafactor([p])
    assert p not in opt.state
    for g in grads:
        p.grad = as_xp(xp, g)
        opt.step()
    state = opt.state[p]
    assert {k: tuple(v.shape) for k, v in state.items()} == layout
    assert state["step"].dtype == xp.float32 and float(state["step"]) == 2.0
    for key in layout:
        if key != "step":
            assert state[key].dtype == getattr(xp, dtype)
    fresh = adafactor_init(as_xp(xp, init))
    assert {k: tuple(v.shape) for k, v in fresh.items()} == layout
    assert all(float(xp.sum(xp.abs(v))) == 0.0 for v in fresh.values())


def test_parameter_without_grad_gets_no_state():
    a, b = Parameter(np.ones(3)), Parameter(np.ones((2, 2)))
    opt = Adafactor([a, b])
    a.grad = np.ones(3)
    opt.step()
    assert a in opt.state and b not in opt.state


# ============================================================================ rejections
def test_complex_rejected_at_step_and_nothing_changes():
    real = Parameter(np.arange(1.0, 4.0))
    cplx = Parameter(np.ones(3, dtype=np.complex128))
    other = Parameter(np.arange(1.0, 5.0).reshape(2, 2))
    opt = Adafactor([{"params": [other]}, {"params": [real, cplx]}])  # constructing is allowed
    for p in (real, cplx, other):
        p.grad = np.ones_like(p.data)
    before = [p.data.copy() for p in (real, cplx, other)]
    with pytest.raises(RuntimeError) as info:
        opt.step()
    assert str(info.value) == "Adafactor does not support complex parameters"
    # torch would have stepped group 0 and created state for `real`; refoptim changes nothing
    assert len(opt.state) == 0
    for p, b in zip((real, cplx, other), before):
        assert_bitwise_equal(p.data, b)


@pytest.mark.parametrize("shape", [(0,), (0, 3), (2, 0, 4)])
def test_size_zero_divides_by_zero_and_nothing_changes(shape):
    z = Parameter(np.zeros(shape))
    w = Parameter(np.ones(4))
    opt = Adafactor([w, z])
    w.grad, z.grad = np.ones(4), np.zeros(shape)
    with pytest.raises(ZeroDivisionError, match="^float division by zero$"):
        opt.step()
    assert len(opt.state) == 0
    assert_bitwise_equal(w.data, np.ones(4))
    # a size-0 parameter without a gradient is skipped, as in torch
    z.grad = None
    opt.step()
    assert w in opt.state and z not in opt.state


def test_failed_step_after_good_steps_changes_nothing():
    a = Parameter(np.linspace(-1, 1, 6).reshape(2, 3))
    b = Parameter(np.ones(3, dtype=np.complex128))
    opt = Adafactor([{"params": [a]}, {"params": [b]}], weight_decay=0.1)
    for _ in range(3):
        a.grad = np.full((2, 3), 0.5)
        opt.step()
    snap = {k: to_np(v) for k, v in opt.state[a].items()}
    data = a.data.copy()
    a.grad = np.ones((2, 3))
    b.grad = np.ones(3, dtype=np.complex128)  # torch would step group 0, then raise
    with pytest.raises(RuntimeError, match="^Adafactor does not support complex parameters$"):
        opt.step()
    assert_bitwise_equal(a.data, data)
    assert_state_equal({k: to_np(v) for k, v in opt.state[a].items()}, snap)
    assert float(opt.state[a]["step"]) == 3.0 and b not in opt.state


# ============================================================================ known values
def test_known_values_vector():
    """Step 1 on [3, 4] with gradient [1, 2] (float64, defaults), by hand."""
    p = Parameter(np.array([3.0, 4.0]))
    opt = Adafactor([p])
    p.grad = np.array([1.0, 2.0])
    opt.step()
    # 1 - beta2_1 = 1**-0.8 = 1: variance = g**2; update = g / |g| = [1, 1], RMS 1, no clip
    alpha = max(1e-3, 5.0 / 2**0.5) * min(0.01, 1.0)
    assert opt.state[p]["variance"].tolist() == [1.0, 4.0]
    assert p.data.tolist() == [3.0 - alpha, 4.0 - alpha]
    # step 2: weight 2**-0.8 on the new squares
    p.grad = np.array([2.0, 0.0])
    opt.step()
    w = 2.0**-0.8  # lerp([1, 4], [4, 0], w)
    assert np.allclose(opt.state[p]["variance"], [1.0 + w * 3.0, (1 - w) * 4.0], rtol=1e-15, atol=0)
    assert float(opt.state[p]["step"]) == 2.0


def test_known_values_matrix():
    """Step 1 on [[1, 2], [3, 4]] with gradient [[3, 4], [0, 0]] (float64): exact norms."""
    p = Parameter(np.array([[1.0, 2.0], [3.0, 4.0]]))
    opt = Adafactor([p], lr=0.05, weight_decay=0.1)
    p.grad = np.array([[3.0, 4.0], [0.0, 0.0]])
    opt.step()
    state = opt.state[p]
    # row means of g**2: [25/2, 0]; column means: [9/2, 16/2]
    assert state["row_var"].tolist() == [[12.5], [0.0]]
    assert state["col_var"].tolist() == [[4.5, 8.0]]
    # V = R C / mean(R) = [[9, 16], [0, 0]] -> clamp eps**2 -> U = g / sqrt(V) = [[1, 1], [0, 0]]
    # RMS(U) = 1/sqrt(2) < d: no clipping. alpha reads RMS(theta) before weight decay.
    alpha = max(1e-3, math.sqrt(30.0) / 2.0) * min(0.05, 1.0)
    decayed = np.array([[1.0, 2.0], [3.0, 4.0]]) * (1 - 0.05 * 0.1)
    expected = decayed - alpha * np.array([[1.0, 1.0], [0.0, 0.0]])
    assert p.data.tolist() == expected.tolist()


def test_clipping_and_eps2_floor():
    """A zero parameter steps by eps2 * rho; a large update RMS is clipped to d."""
    p = Parameter(np.zeros(4))
    opt = Adafactor([p], lr=0.5, eps=(None, 0.25), d=1.0)
    p.grad = np.array([1.0, -1.0, 1.0, -1.0])
    opt.step()
    # U = sign(g), RMS 1 = d: no clip; alpha = 0.25 * min(0.5, 1)
    assert p.data.tolist() == [-0.125, 0.125, -0.125, 0.125]


def test_eps1_none_is_the_first_parameters_dtype_eps():
    """torch resolves eps1=None once per group from its first parameter with a gradient."""
    tiny = np.array([[1e-8, 2e-8, 3e-8], [1.0, 2.0, 3.0]])  # row 0 falls under eps1**2 in float32
    a32 = Parameter(np.ones(3, dtype=np.float32))
    b64 = Parameter(np.linspace(1, 2, 6).reshape(2, 3))
    opt = Adafactor([a32, b64])
    a32.grad, b64.grad = np.ones(3, dtype=np.float32), tiny.copy()
    opt.step()
    ref = np.linspace(1, 2, 6).reshape(2, 3)
    got32 = adafactor_step(ref.copy(), tiny.copy(), adafactor_init(ref), lr=1e-2, beta2_decay=-0.8,
                           eps1=float(np.finfo(np.float32).eps), eps2=1e-3, d=1.0, weight_decay=0.0,
                           maximize=False)
    got64 = adafactor_step(ref.copy(), tiny.copy(), adafactor_init(ref), lr=1e-2, beta2_decay=-0.8,
                           eps1=None, eps2=1e-3, d=1.0, weight_decay=0.0, maximize=False)
    assert not np.array_equal(got32, got64)  # the quirk is visible here
    assert_bitwise_equal(b64.data, got32)
    # alone in its group, the float64 parameter gets float64's epsilon
    c64 = Parameter(np.linspace(1, 2, 6).reshape(2, 3))
    opt2 = Adafactor([c64])
    c64.grad = tiny.copy()
    opt2.step()
    assert_bitwise_equal(c64.data, got64)


def test_maximize_is_negated_gradient():
    init, grads = make_sequence(5, (3, 4), "float64", STEPS)
    p, q = Parameter(init.copy()), Parameter(init.copy())
    o1, o2 = Adafactor([p], maximize=True, weight_decay=0.1), Adafactor([q], weight_decay=0.1)
    for g in grads:
        p.grad, q.grad = g.copy(), -g
        o1.step()
        o2.step()
    assert_bitwise_equal(p.data, q.data)


# ============================================================================ backends, functional
CONFIGS = [
    {},
    {"lr": 0.5, "weight_decay": 0.1, "maximize": True},
    {"eps": (1e-3, 1e-2), "d": 1.5, "beta2_decay": -0.5},
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numpy_and_strict_bitwise_equal(cfg, shape, dtype):
    init, grads = make_sequence(2, shape, dtype, STEPS)
    results = []
    for xp in NAMESPACES.values():
        p = Parameter(as_xp(xp, init))
        opt = Adafactor([p], **cfg)
        for g in grads:
            p.grad = as_xp(xp, g)
            opt.step()
        results.append((to_np(p.data), {k: to_np(v) for k, v in opt.state[p].items()}))
    assert_bitwise_equal(results[0][0], results[1][0])
    assert_state_equal(results[0][1], results[1][1])
    assert not np.array_equal(results[0][0], init)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_class_equals_functional(xp, shape):
    init, grads = make_sequence(3, shape, "float32", STEPS)
    cfg = {"lr": 0.05, "beta2_decay": -0.6, "eps1": 1e-4, "eps2": 1e-3, "d": 1.2, "weight_decay": 0.05, "maximize": True}
    p = Parameter(as_xp(xp, init))
    opt = Adafactor([p], lr=cfg["lr"], beta2_decay=cfg["beta2_decay"], eps=(cfg["eps1"], cfg["eps2"]),
                    d=cfg["d"], weight_decay=cfg["weight_decay"], maximize=True)
    w = as_xp(xp, init)
    state = adafactor_init(w)
    for g in grads:
        p.grad = as_xp(xp, g)
        opt.step()
        w = adafactor_step(w, as_xp(xp, g), state, **cfg)
    assert_bitwise_equal(p.data, w)
    assert_state_equal({k: to_np(v) for k, v in opt.state[p].items()}, {k: to_np(v) for k, v in state.items()})


def test_array_lr_equals_its_float32_value_per_step():
    """A 0-d float32 lr: rho_t and alpha are computed in float32 (as torch computes them)."""
    init, grads = make_sequence(4, (3, 4), "float64", STEPS)
    p = Parameter(init.copy())
    q = Parameter(init.copy())
    o1 = Adafactor([p], lr=np.asarray(0.3, dtype=np.float32), weight_decay=0.1)
    o2 = Adafactor([q], lr=0.3, weight_decay=0.1)
    for g in grads:
        p.grad, q.grad = g.copy(), g.copy()
        o1.step()
        o2.step()
    assert np.allclose(p.data, q.data, rtol=1e-6, atol=0)
    assert not np.array_equal(p.data, q.data)
