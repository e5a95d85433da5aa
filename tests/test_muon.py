"""Muon: torch 2.13's signature, defaults, validation and state layout; the bfloat16
emulation; one code path on NumPy and array-api-strict.

No torch here: the expected messages, defaults and signature were read from torch 2.13.0
(CPU) by running the same thing on ``torch.optim.Muon``.
"""

import copy
import inspect
import math

import numpy as np
import pytest
from _support import NAMESPACES, as_xp, assert_bitwise_equal, cnp, to_np
from hypothesis import given, settings
from hypothesis import strategies as st

from refoptim import Parameter
from refoptim.muon import (
    Muon,
    adjust_lr,
    muon_init,
    muon_step,
    round_to_bfloat16,
    zeropower_via_newtonschulz,
)

COEFFS = (3.4445, -4.775, 2.0315)


def bf16_bits(x):
    """An independent bfloat16 rounding: round to nearest even on the top 16 bits of the
    float32 bit pattern (float64 goes through float32 first, as torch converts it)."""
    x = np.asarray(x).astype(np.float32)
    u = x.view(np.uint32).astype(np.uint64)
    r = (((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16) & 0xFFFFFFFF
    out = r.astype(np.uint32).view(np.float32)
    return np.where(np.isnan(x), x, out)


def rounded(x, xp=cnp):
    with np.errstate(all="ignore"):
        return to_np(round_to_bfloat16(xp.asarray(x)))


def same_bits(a, b):
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return np.array_equal(a.view(np.uint32), b.view(np.uint32)) or (
        np.array_equal(np.isnan(a), np.isnan(b))
        and np.array_equal(a[~np.isnan(a)].view(np.uint32), b[~np.isnan(b)].view(np.uint32))
    )


def matrix(xp=cnp, shape=(3, 4), dtype="float64"):
    return Parameter(xp.asarray(np.zeros(shape, dtype=dtype)))


def raises(exc, message, fn, *args, **kwargs):
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    assert type(info.value) is exc
    assert str(info.value) == message


# ============================================================================ construction
ERRORS = [
    ({"lr": -1}, "Learning rate should be >= 0 but is: -1"),
    ({"lr": -0.5}, "Learning rate should be >= 0 but is: -0.5"),
    ({"momentum": -0.5}, "momentum should be >= 0 but is: -0.5"),
    ({"weight_decay": -1}, "weight decay should be >= 0 but is: -1"),
    ({"adjust_lr_fn": "foo"}, "Adjust learning rate function foo is not supported"),
    ({"lr": -1, "momentum": -1}, "Learning rate should be >= 0 but is: -1"),
    ({"momentum": -1, "weight_decay": -1}, "momentum should be >= 0 but is: -1"),
]


@pytest.mark.parametrize("kwargs,message", ERRORS, ids=[str(k) for k, _ in ERRORS])
def test_constructor_errors(kwargs, message):
    raises(ValueError, message, Muon, [matrix()], **kwargs)


def test_array_lr(xp):
    raises(ValueError, "Tensor lr must be 1-element", Muon, [matrix(xp)], lr=xp.asarray([0.1, 0.2]))
    raises(ValueError, "Learning rate should be >= 0 but is: -0.10000000149011612", Muon, [matrix(xp)],
           lr=xp.asarray(-0.1, dtype=xp.float32))
    lr = xp.asarray(0.02, dtype=xp.float32)
    assert Muon([matrix(xp)], lr=lr).param_groups[0]["lr"] is lr


@pytest.mark.parametrize("shape,size", [((3,), "[3]"), ((2, 3, 4), "[2, 3, 4]"), ((), "[]")])
def test_only_2d_parameters(shape, size):
    message = f"Muon only supports 2D parameters whereas we found a parameter with size: torch.Size({size})"
    raises(ValueError, message, Muon, [matrix(), Parameter(cnp.zeros(shape))])
    # torch validates the options first, the shapes after the groups are built
    raises(ValueError, "Learning rate should be >= 0 but is: -1", Muon, [Parameter(cnp.zeros(shape))], lr=-1)
    raises(ValueError, "optimizer got an empty parameter list", Muon, [])


def test_signature_and_defaults():
    sig = inspect.signature(Muon.__init__)
    names = list(sig.parameters)
    assert names == ["self", "params", "lr", "weight_decay", "momentum", "nesterov", "ns_coefficients",
                     "eps", "ns_steps", "adjust_lr_fn", "ns_dtype"]
    assert sig.parameters["ns_dtype"].kind is inspect.Parameter.KEYWORD_ONLY
    opt = Muon([matrix()])
    assert opt.defaults == {"lr": 0.001, "weight_decay": 0.1, "momentum": 0.95, "nesterov": True,
                            "ns_coefficients": (3.4445, -4.775, 2.0315), "eps": 1e-07, "ns_steps": 5,
                            "adjust_lr_fn": None}
    assert list(opt.param_groups[0]) == ["params", *opt.defaults]
    assert opt.ns_dtype == "bfloat16"
    for flag in ("foreach", "maximize", "fused", "differentiable"):
        with pytest.raises(TypeError):
            Muon([matrix()], **{flag: False})
    raises(ValueError, "ns_dtype must be one of ('bfloat16', 'float32', 'param'), but got 'half'",
           Muon, [matrix()], ns_dtype="half")


def test_repr_lists_torch_keys():
    text = repr(Muon([matrix()]))
    assert text.splitlines()[1:] == [
        "Parameter Group 0", "    adjust_lr_fn: None", "    eps: 1e-07", "    lr: 0.001",
        "    momentum: 0.95", "    nesterov: True", "    ns_coefficients: (3.4445, -4.775, 2.0315)",
        "    ns_steps: 5", "    weight_decay: 0.1", ")"]


# ============================================================================ adjust_lr
def test_adjust_lr():
    assert adjust_lr(0.1, None, (8, 2)) == 0.1 * 2.0
    assert adjust_lr(0.1, "original", (2, 8)) == 0.1 * 1.0
    assert adjust_lr(0.1, "match_rms_adamw", (2, 8)) == 0.1 * (0.2 * math.sqrt(8))
    assert adjust_lr(0.1, "anything", (8, 2)) == 0.1


# ============================================================================ bfloat16
@settings(max_examples=500, deadline=None)
@given(st.floats(width=32, allow_nan=True, allow_infinity=True))
def test_bfloat16_matches_bit_rounding(v):
    x = np.asarray([v], dtype=np.float32)
    r = rounded(x)
    assert same_bits(r, bf16_bits(x))
    if np.isfinite(r[0]):
        assert r.view(np.uint32)[0] & 0xFFFF == 0  # 8 significant bits
        assert same_bits(rounded(r), r)  # idempotent
        if np.isfinite(v):
            # nearest: no bfloat16 neighbour is closer
            up = bf16_bits(np.nextafter(r, np.float32(np.inf)) * np.float32(1 + 2**-8))
            assert abs(float(r[0]) - v) <= abs(float(up[0]) - v) or not np.isfinite(up[0])


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False, width=64))
def test_bfloat16_of_float64_goes_through_float32(v):
    x = np.asarray([v])
    with np.errstate(over="ignore"):
        assert same_bits(rounded(x), bf16_bits(x))


@pytest.mark.parametrize("exponent", [-149, -133, -127, -126, -125, -1, 0, 1, 100, 127])
def test_bfloat16_whole_binades(exponent):
    """Every float32 of a binade (both signs; the bottom binades are subnormal)."""
    start = np.float32(2.0**exponent).view(np.uint32)
    bits = np.arange(start, start + (1 << 23) if exponent > -127 else start + (1 << 16), dtype=np.uint32)
    x = bits.view(np.float32)
    x = np.concatenate([x, -x])
    assert same_bits(rounded(x), bf16_bits(x))


def test_bfloat16_ties_to_even_and_edges():
    one = np.float32(1.0)
    half_ulp = np.float32(2.0**-8)
    ties = np.asarray([one + half_ulp, one + 3 * half_ulp, -(one + half_ulp), 2.0**-133 * 1.5,
                       2.0**-133 * 2.5, 2.0**-134], dtype=np.float32)
    np.testing.assert_array_equal(rounded(ties), [1.0, 1.0 + 2**-6, -1.0, 2.0**-132, 2.0**-132, 0.0])
    edges = np.asarray([np.inf, -np.inf, 0.0, -0.0, np.finfo(np.float32).max, 2.0**128 * (1 - 2**-9),
                        np.nextafter(np.float32(2.0**128 * (1 - 2**-9)), np.float32(0))], dtype=np.float32)
    r = rounded(edges)
    assert same_bits(r, bf16_bits(edges))
    assert np.isinf(r[4]) and np.isinf(r[5]) and r[6] == 2.0**128 * (1 - 2**-8)
    assert np.signbit(r[3]) and not np.signbit(r[2])
    assert np.isnan(rounded(np.asarray([np.nan], np.float32)))[0]


def test_bfloat16_on_array_api_strict():
    x = np.random.default_rng(0).standard_normal(1000).astype(np.float32) * np.float32(1e3)
    assert same_bits(rounded(x, NAMESPACES["array_api_strict"]), bf16_bits(x))


# ============================================================================ Newton–Schulz
def test_newtonschulz_errors():
    g = cnp.ones((3, 4))
    raises(ValueError, "Number of steps must be less than 100 for computational efficiency",
           zeropower_via_newtonschulz, g, (1.0, 2.0), 100, 1e-7)
    raises(ValueError, "Input tensor gradient must be a 2D matrix",
           zeropower_via_newtonschulz, cnp.ones(3), (1.0, 2.0), 5, 1e-7)
    raises(ValueError, "Coefficients must be a tuple of exactly 3 values",
           zeropower_via_newtonschulz, g, (1.0, 2.0), 5, 1e-7)


@pytest.mark.parametrize("shape", [(3, 4), (4, 3), (5, 5), (1, 6)])
def test_newtonschulz_orthogonalizes(shape):
    g = np.random.default_rng(1).standard_normal(shape)
    for ns_dtype in ("bfloat16", "float32", "param"):
        o = to_np(zeropower_via_newtonschulz(cnp.asarray(g), COEFFS, 5, 1e-7, ns_dtype=ns_dtype))
        assert o.shape == shape
        assert o.dtype == (np.float64 if ns_dtype == "param" else np.float32)
        s = np.linalg.svd(o, compute_uv=False)
        assert np.all((s > 0.5) & (s < 1.5)), s  # the quintic's band
    o = to_np(zeropower_via_newtonschulz(cnp.asarray(g), COEFFS, 5, 1e-7))
    assert same_bits(o, bf16_bits(o))  # bfloat16 values


def test_full_precision_differs_from_bfloat16_by_about_its_precision():
    g = np.random.default_rng(2).standard_normal((5, 7))
    bf = to_np(zeropower_via_newtonschulz(cnp.asarray(g), COEFFS, 5, 1e-7))
    full = to_np(zeropower_via_newtonschulz(cnp.asarray(g), COEFFS, 5, 1e-7, ns_dtype="param"))
    rel = np.max(np.abs(bf - full)) / np.max(np.abs(full))
    assert 2.0**-12 < rel < 2.0**-2, rel


def test_zero_gradient_divides_by_eps():
    o = to_np(zeropower_via_newtonschulz(cnp.zeros((3, 4)), COEFFS, 5, 1e-7))
    assert np.array_equal(o, np.zeros((3, 4), np.float32))


# ============================================================================ stepping
def run(xp, dtype="float64", steps=4, ns_dtype="bfloat16", **options):
    rng = np.random.default_rng(3)
    p = Parameter(as_xp(xp, rng.standard_normal((4, 3)).astype(dtype)))
    opt = Muon([p], ns_dtype=ns_dtype, **options)
    for _ in range(steps):
        p.grad = as_xp(xp, rng.standard_normal((4, 3)).astype(dtype))
        opt.step()
    return p, opt


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_state_layout(xp, dtype):
    p, opt = run(xp, dtype)
    state = opt.state[p]
    assert list(state) == ["momentum_buffer"]
    assert state["momentum_buffer"].dtype == p.data.dtype and tuple(state["momentum_buffer"].shape) == (4, 3)
    sd = opt.state_dict()
    assert list(sd["state"]) == [0] and sd["param_groups"][0]["params"] == [0]


@pytest.mark.parametrize("options", [{}, {"nesterov": False, "weight_decay": 0.0},
                                     {"adjust_lr_fn": "match_rms_adamw", "lr": 0.02, "momentum": 0.5},
                                     {"ns_steps": 1, "eps": 1e-3}])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numpy_and_array_api_strict_agree_bitwise(options, dtype):
    a, oa = run(NAMESPACES["numpy"], dtype, **options)
    b, ob = run(NAMESPACES["array_api_strict"], dtype, **options)
    assert_bitwise_equal(a.data, b.data, "param")
    assert_bitwise_equal(oa.state[a]["momentum_buffer"], ob.state[b]["momentum_buffer"], "buffer")


@pytest.mark.parametrize("ns_dtype", ["bfloat16", "float32", "param"])
@pytest.mark.parametrize("shape", [(24, 40), (48, 17)])
def test_larger_updates_agree_bitwise_on_numpy_and_array_api_strict(ns_dtype, shape):
    """Products that sum enough terms for a BLAS's order to show (and entries over many
    binades, so the exact path uses several bands): the same bits on both namespaces,
    because no product goes through the backend's BLAS order."""
    rng = np.random.default_rng(7)
    init = rng.standard_normal(shape)
    grads = [rng.standard_normal(shape) * 2.0 ** rng.integers(-40, 4, shape) for _ in range(3)]
    results = []
    for xp in NAMESPACES.values():
        p = Parameter(as_xp(xp, init))
        opt = Muon([p], lr=0.02, ns_dtype=ns_dtype)
        for g in grads:
            p.grad = as_xp(xp, g)
            opt.step()
        results.append((p.data, opt.state[p]["momentum_buffer"]))
    assert_bitwise_equal(results[0][0], results[1][0], "param")
    assert_bitwise_equal(results[0][1], results[1][1], "buffer")
    o = [to_np(zeropower_via_newtonschulz(as_xp(xp, grads[0]), COEFFS, 5, 1e-7, ns_dtype=ns_dtype))
         for xp in NAMESPACES.values()]
    assert_bitwise_equal(o[0], o[1], "newton-schulz")


def test_class_equals_functional(xp):
    rng = np.random.default_rng(3)
    init = rng.standard_normal((4, 3))
    grads = [rng.standard_normal((4, 3)) for _ in range(4)]
    p, opt = run(xp, "float64", lr=0.05, weight_decay=0.2)
    w = as_xp(xp, init)
    state = muon_init(w)
    for g in grads:
        w = muon_step(w, as_xp(xp, g), state, lr=0.05, weight_decay=0.2, momentum=0.95, nesterov=True,
                      ns_coefficients=COEFFS, ns_steps=5, eps=1e-7, adjust_lr_fn=None)
    assert_bitwise_equal(w, p.data, "param")
    assert_bitwise_equal(state["momentum_buffer"], opt.state[p]["momentum_buffer"], "buffer")


def test_first_step_by_hand():
    """One step from zero state: buffer = (1-mu) g; update = NS(lerp(g, buf, mu)); the
    parameter decays with the plain lr and moves by the adjusted lr (4 x 3: sqrt(4/3))."""
    g = np.random.default_rng(4).standard_normal((4, 3))
    p = Parameter(cnp.asarray(np.ones((4, 3))))
    p.grad = cnp.asarray(g)
    opt = Muon([p], lr=0.1, weight_decay=0.5, momentum=0.9)
    opt.step()
    buf = to_np(opt.state[p]["momentum_buffer"])
    np.testing.assert_allclose(buf, 0.1 * g, rtol=1e-15)
    u = 0.1 * g + 0.9 * buf
    o = to_np(zeropower_via_newtonschulz(cnp.asarray(u), COEFFS, 5, 1e-7)).astype(np.float64)
    expected = np.ones((4, 3)) * (1 - 0.1 * 0.5) - 0.1 * math.sqrt(4 / 3) * o
    np.testing.assert_allclose(to_np(p.data), expected, rtol=0, atol=1e-15)


def test_ns_dtype_option_changes_the_update():
    a, _ = run(cnp, "float64")
    b, _ = run(cnp, "float64", ns_dtype="param")
    c, _ = run(cnp, "float64", ns_dtype="float32")
    assert not np.array_equal(to_np(a.data), to_np(b.data))
    diff = np.max(np.abs(to_np(a.data) - to_np(b.data)))
    assert 0 < diff < 1e-3 * 5  # lr * sqrt(4/3) * (a bfloat16-sized difference) * steps
    assert np.max(np.abs(to_np(c.data) - to_np(b.data))) < diff / 100


def test_tensor_lr_is_read_in_its_dtype():
    """A 0-d float32 lr: the adjusted lr is a float32 product read exactly, and
    ``1 - lr * weight_decay`` is computed in float32 (torch's tensor arithmetic)."""
    lr = cnp.asarray(0.02, dtype=cnp.float32)
    a, _ = run(cnp, "float64", lr=lr, steps=1, weight_decay=0.0)
    b, _ = run(cnp, "float64", lr=float(lr), steps=1, weight_decay=0.0)
    c, _ = run(cnp, "float64", lr=0.02, steps=1, weight_decay=0.0)
    # (4, 3): lr * sqrt(4/3) is a float32 product, not the float64 one
    assert not np.array_equal(to_np(a.data), to_np(b.data))
    np.testing.assert_allclose(to_np(a.data), to_np(b.data), rtol=0, atol=1e-8)
    assert not np.array_equal(to_np(a.data), to_np(c.data))
    d, _ = run(cnp, "float64", lr=lr, steps=1, weight_decay=0.1)
    e, _ = run(cnp, "float64", lr=float(lr), steps=1, weight_decay=0.1)
    assert not np.array_equal(to_np(d.data), to_np(e.data))  # 1 - lr * wd in float32


def test_group_with_unknown_adjust_lr_fn_steps_with_ratio_one():
    rng = np.random.default_rng(5)
    init, g = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    p, q = Parameter(cnp.asarray(init)), Parameter(cnp.asarray(init))
    opt = Muon([p])
    opt.add_param_group({"params": [q], "adjust_lr_fn": "bogus", "weight_decay": 0.0})
    opt.param_groups[0]["weight_decay"] = 0.0
    p.grad, q.grad = cnp.asarray(g), cnp.asarray(g)
    opt.step()
    dp, dq = to_np(p.data) - init, to_np(q.data) - init
    np.testing.assert_allclose(dp, dq * math.sqrt(4 / 3), rtol=1e-12)


# ============================================================================ failed steps
def failing_cases():
    def ns_steps(opt, extra):
        opt.param_groups[1]["ns_steps"] = 100

    def coefficients(opt, extra):
        opt.param_groups[1]["ns_coefficients"] = (1.0, 2.0)

    def one_d(opt, extra):
        q = Parameter(cnp.zeros(5))
        opt.add_param_group({"params": [q]})
        q.grad = cnp.ones(5)

    def complex_param(opt, extra):
        c = Parameter(cnp.zeros((3, 4), dtype=cnp.complex128))
        opt.add_param_group({"params": [c]})
        c.grad = cnp.ones((3, 4), dtype=cnp.complex128)

    return [
        (ns_steps, ValueError, "Number of steps must be less than 100 for computational efficiency"),
        (coefficients, ValueError, "Coefficients must be a tuple of exactly 3 values"),
        (one_d, ValueError, "Param gradient must be a 2D matrix"),
        (complex_param, RuntimeError, "Muon does not support complex parameters"),
    ]


@pytest.mark.parametrize("breaker,exc,message", failing_cases(), ids=lambda v: getattr(v, "__name__", ""))
def test_failed_step_changes_nothing(breaker, exc, message):
    rng = np.random.default_rng(6)
    p, q = Parameter(cnp.asarray(rng.standard_normal((3, 4)))), Parameter(cnp.asarray(rng.standard_normal((4, 3))))
    opt = Muon([{"params": [p]}, {"params": [q]}], lr=0.1)
    p.grad, q.grad = cnp.asarray(rng.standard_normal((3, 4))), cnp.asarray(rng.standard_normal((4, 3)))
    opt.step()
    breaker(opt, None)
    before = copy.deepcopy({"p": to_np(p.data), "q": to_np(q.data),
                            "state": {k: to_np(v["momentum_buffer"]) for k, v in zip("pq", (opt.state[p], opt.state[q]))}})
    raises(exc, message, opt.step)
    assert_bitwise_equal(p.data, before["p"])
    assert_bitwise_equal(q.data, before["q"])
    assert_bitwise_equal(opt.state[p]["momentum_buffer"], before["state"]["p"])
    assert_bitwise_equal(opt.state[q]["momentum_buffer"], before["state"]["q"])
    assert len(opt.state) == 2


def test_pickle_keeps_ns_dtype():
    import pickle

    _, opt = run(cnp, ns_dtype="param", steps=1)
    assert pickle.loads(pickle.dumps(opt)).ns_dtype == "param"
