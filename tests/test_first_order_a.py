"""Adagrad, Adadelta, Adamax and ASGD: torch 2.13's signatures, defaults, validation, state
layout and quirks; one code path on NumPy, array-api-strict and immutable arrays.

No torch here: every expected exception, default, signature and known value below was
read from torch 2.13.0 (CPU) by running the same thing on ``torch.optim`` (an array stands
in for a tensor); floats are written in hex where bits matter.
"""

import copy
import inspect
import zlib

import array_api_strict
import numpy as np
import pytest
from _immutable import ImmutableArray, wrap
from _support import (
    DTYPES,
    NAMESPACES,
    SHAPES,
    as_xp,
    assert_bitwise_equal,
    assert_state_equal,
    cnp,
    make_sequence,
    to_np,
)

from refoptim import Parameter
from refoptim.adadelta import Adadelta, adadelta_init, adadelta_step
from refoptim.adagrad import Adagrad, adagrad_init, adagrad_step
from refoptim.adamax import Adamax, adamax_init, adamax_step
from refoptim.asgd import ASGD, asgd_init, asgd_step
from refoptim._primitives import pow as torch_pow

CLASSES = [Adagrad, Adadelta, Adamax, ASGD]
STEPS = 10


def params(xp=cnp):
    return [Parameter(xp.zeros(3))]


def raises(cls, exc, message, *args, **kwargs):
    with pytest.raises(exc) as info:
        cls(*args, **kwargs)
    assert type(info.value) is exc
    assert str(info.value) == message


# ============================================================================ validation
ERRORS = [
    # Adagrad
    (Adagrad, dict(lr=-1), ValueError, "Invalid learning rate: -1"),
    (Adagrad, dict(lr=-0.5), ValueError, "Invalid learning rate: -0.5"),
    (Adagrad, dict(lr=float("nan")), ValueError, "Invalid learning rate: nan"),
    (Adagrad, dict(lr_decay=-0.5), ValueError, "Invalid lr_decay value: -0.5"),
    (Adagrad, dict(weight_decay=-1.0), ValueError, "Invalid weight_decay value: -1.0"),
    (Adagrad, dict(initial_accumulator_value=-0.1), ValueError, "Invalid initial_accumulator_value value: -0.1"),
    (Adagrad, dict(eps=-1e-3), ValueError, "Invalid epsilon value: -0.001"),
    (Adagrad, dict(eps=float("nan")), ValueError, "Invalid epsilon value: nan"),
    (Adagrad, dict(fused=True, differentiable=True), RuntimeError, "`fused` does not support `differentiable`"),
    (Adagrad, dict(fused=True, foreach=True), RuntimeError, "`fused` and `foreach` cannot be `True` together."),
    (Adagrad, dict(lr=-1, lr_decay=-1), ValueError, "Invalid learning rate: -1"),
    (Adagrad, dict(lr_decay=-1, weight_decay=-1), ValueError, "Invalid lr_decay value: -1"),
    (Adagrad, dict(weight_decay=-1, initial_accumulator_value=-1), ValueError, "Invalid weight_decay value: -1"),
    (Adagrad, dict(initial_accumulator_value=-1, eps=-1), ValueError, "Invalid initial_accumulator_value value: -1"),
    # Adadelta
    (Adadelta, dict(lr=-1), ValueError, "Invalid learning rate: -1"),
    (Adadelta, dict(rho=1.1), ValueError, "Invalid rho value: 1.1"),
    (Adadelta, dict(rho=-0.1), ValueError, "Invalid rho value: -0.1"),
    (Adadelta, dict(eps=-1e-3), ValueError, "Invalid epsilon value: -0.001"),
    (Adadelta, dict(weight_decay=-0.5), ValueError, "Invalid weight_decay value: -0.5"),
    (Adadelta, dict(lr=-1, rho=2), ValueError, "Invalid learning rate: -1"),
    (Adadelta, dict(rho=2, eps=-1), ValueError, "Invalid rho value: 2"),
    (Adadelta, dict(eps=-1, weight_decay=-1), ValueError, "Invalid epsilon value: -1"),
    # Adamax
    (Adamax, dict(lr=-1), ValueError, "Invalid learning rate: -1"),
    (Adamax, dict(eps=-1e-3), ValueError, "Invalid epsilon value: -0.001"),
    (Adamax, dict(betas=(-0.1, 0.9)), ValueError, "Invalid beta parameter at index 0: -0.1"),
    (Adamax, dict(betas=(1.0, 0.9)), ValueError, "Invalid beta parameter at index 0: 1.0"),
    (Adamax, dict(betas=(0.0, 1.0)), ValueError, "Invalid beta parameter at index 1: 1.0"),
    (Adamax, dict(betas=(0.9, -1.0)), ValueError, "Invalid beta parameter at index 1: -1.0"),
    (Adamax, dict(weight_decay=-1.0), ValueError, "Invalid weight_decay value: -1.0"),
    (Adamax, dict(lr=-1, eps=-1), ValueError, "Invalid learning rate: -1"),
    (Adamax, dict(eps=-1, betas=(1.0, 0.9)), ValueError, "Invalid epsilon value: -1"),
    (Adamax, dict(betas=(1.0, 1.0)), ValueError, "Invalid beta parameter at index 0: 1.0"),
    (Adamax, dict(betas=(0.9, 1.0), weight_decay=-1), ValueError, "Invalid beta parameter at index 1: 1.0"),
    # ASGD
    (ASGD, dict(lr=-1), ValueError, "Invalid learning rate: -1"),
    (ASGD, dict(weight_decay=-0.5), ValueError, "Invalid weight_decay value: -0.5"),
    (ASGD, dict(lr=-1, weight_decay=-1), ValueError, "Invalid learning rate: -1"),
]


@pytest.mark.parametrize(
    "cls,kwargs,exc,message", ERRORS, ids=[f"{c.__name__}-{k}" for c, k, _, _ in ERRORS]
)
def test_errors(cls, kwargs, exc, message):
    raises(cls, exc, message, params(), **kwargs)


@pytest.mark.parametrize("cls", CLASSES)
def test_array_lr_errors_and_acceptance(cls, xp):
    raises(cls, ValueError, "Tensor lr must be 1-element", params(xp), lr=xp.asarray([0.1, 0.2]))
    raises(cls, ValueError, "Tensor lr must be 1-element", params(xp), lr=xp.asarray([0.1, 0.2]), foreach=True)
    # torch formats a 0-d tensor as its Python float
    raises(cls, ValueError, "Invalid learning rate: -0.10000000149011612", params(xp),
           lr=xp.asarray(-0.1, dtype=xp.float32))
    # unlike Adam, these accept a tensor lr with foreach=True
    lr = xp.asarray(0.1, dtype=xp.float32)
    opt = cls(params(xp), lr=lr, foreach=True)
    assert opt.param_groups[0]["lr"] is lr and opt.param_groups[0]["foreach"] is True


@pytest.mark.parametrize("cls", CLASSES)
def test_params_are_read_before_fused_checks(cls):
    raises(cls, ValueError, "optimizer got an empty parameter list", [])
    raises(Adagrad, ValueError, "optimizer got an empty parameter list", [], fused=True, differentiable=True)
    raises(Adagrad, ValueError, "Invalid learning rate: -1", [], lr=-1)


def test_accepted_edge_values():
    Adadelta(params(), rho=1.0)
    Adadelta(params(), rho=0.0)
    Adamax(params(), betas=(0, 0.99))  # Adam would refuse mixed int/float betas; Adamax does not
    Adamax(params(), betas=(np.asarray(0.9, dtype=np.float32), 0.99))
    ASGD(params(), lambd=-1, alpha=-1, t0=-1)  # not validated
    assert Adagrad(params(), fused=True).param_groups[0]["fused"] is True


# ============================================================================ defaults, signatures
TORCH_GROUPS = {
    Adagrad: {"lr": 0.01, "lr_decay": 0, "eps": 1e-10, "weight_decay": 0, "initial_accumulator_value": 0,
              "foreach": None, "maximize": False, "differentiable": False, "fused": None},
    Adadelta: {"lr": 1.0, "rho": 0.9, "eps": 1e-06, "weight_decay": 0, "maximize": False, "capturable": False,
               "foreach": None, "differentiable": False},
    Adamax: {"lr": 0.002, "betas": (0.9, 0.999), "eps": 1e-08, "weight_decay": 0, "foreach": None,
             "maximize": False, "differentiable": False, "capturable": False},
    ASGD: {"lr": 0.01, "lambd": 0.0001, "alpha": 0.75, "t0": 1000000.0, "weight_decay": 0, "foreach": None,
           "maximize": False, "differentiable": False, "capturable": False},
}


def _typed(d):
    return [(k, type(v), v) for k, v in d.items()]


@pytest.mark.parametrize("cls", CLASSES)
def test_defaults_and_group_keys_match_torch(cls, xp):
    opt = cls(params(xp))
    group = opt.param_groups[0]
    assert list(group) == ["params"] + list(TORCH_GROUPS[cls])
    assert _typed({k: v for k, v in group.items() if k != "params"}) == _typed(TORCH_GROUPS[cls])
    assert _typed(opt.defaults) == _typed(TORCH_GROUPS[cls])


E = inspect.Parameter.empty
POK = "POSITIONAL_OR_KEYWORD"
KO = "KEYWORD_ONLY"
TORCH_SIGNATURES = {
    Adagrad: [
        ("self", POK, E), ("params", POK, E), ("lr", POK, 0.01), ("lr_decay", POK, 0), ("weight_decay", POK, 0),
        ("initial_accumulator_value", POK, 0), ("eps", POK, 1e-10), ("foreach", POK, None),
        ("maximize", KO, False), ("differentiable", KO, False), ("fused", KO, None),
    ],
    Adadelta: [
        ("self", POK, E), ("params", POK, E), ("lr", POK, 1.0), ("rho", POK, 0.9), ("eps", POK, 1e-06),
        ("weight_decay", POK, 0), ("foreach", POK, None),
        ("capturable", KO, False), ("maximize", KO, False), ("differentiable", KO, False),
    ],
    Adamax: [
        ("self", POK, E), ("params", POK, E), ("lr", POK, 0.002), ("betas", POK, (0.9, 0.999)), ("eps", POK, 1e-08),
        ("weight_decay", POK, 0), ("foreach", POK, None),
        ("maximize", KO, False), ("differentiable", KO, False), ("capturable", KO, False),
    ],
    ASGD: [
        ("self", POK, E), ("params", POK, E), ("lr", POK, 0.01), ("lambd", POK, 0.0001), ("alpha", POK, 0.75),
        ("t0", POK, 1000000.0), ("weight_decay", POK, 0), ("foreach", POK, None), ("maximize", POK, False),
        ("differentiable", POK, False), ("capturable", POK, False),
    ],
}


def _signature(f):
    return [(n, p.kind.name, p.default) for n, p in inspect.signature(f).parameters.items()]


@pytest.mark.parametrize("cls", CLASSES)
def test_constructor_signature_matches_torch(cls):
    assert _signature(cls.__init__) == TORCH_SIGNATURES[cls]
    assert _signature(cls.step) == [("self", POK, E), ("closure", POK, None)]


@pytest.mark.parametrize("cls", CLASSES)
def test_docstring_has_math_quirks_and_flags(cls):
    doc = cls.__doc__
    assert ".. math::" in doc and "quirk" in doc.lower()
    for flag in ("foreach", "differentiable"):
        assert flag in doc


# ============================================================================ state layout
STATE_KEYS = {
    Adagrad: ["step", "sum"],
    Adadelta: ["step", "square_avg", "acc_delta"],
    Adamax: ["step", "exp_avg", "exp_inf"],
    ASGD: ["step", "eta", "mu", "ax"],
}
SCALAR_KEYS = {"step", "eta", "mu"}  # 0-d float32 whatever the parameter's dtype


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls", CLASSES)
def test_state_layout_after_steps(cls, dtype, xp):
    init, grads = make_sequence(5, (3, 4), dtype, 3)
    p = Parameter(as_xp(xp, init))
    opt = cls([p])
    for g in grads:
        p.grad = as_xp(xp, g)
        opt.step()
    state = opt.state[p]
    assert list(state) == STATE_KEYS[cls]  # torch's keys, in torch's order
    for key, value in state.items():
        assert type(value) is type(p.data), key
        if key in SCALAR_KEYS:
            assert value.shape == () and value.dtype == xp.float32, key
        else:
            assert value.shape == p.data.shape and value.dtype == p.data.dtype, key
    assert float(state["step"]) == 3.0
    assert list(opt.state_dict()["state"][0]) == STATE_KEYS[cls]


# ============================================================================ one code path
def _a(xp, v):
    return xp.asarray(v, dtype=xp.float32)


# (class, options); options may be functions of xp (array hyper-parameters).
CONFIGS = [
    (Adagrad, lambda xp: {}),
    (Adagrad, lambda xp: dict(lr=0.1, lr_decay=0.1, weight_decay=0.1, initial_accumulator_value=0.1)),
    (Adagrad, lambda xp: dict(lr=_a(xp, 0.05), lr_decay=0.01, eps=1e-3, maximize=True)),
    (Adadelta, lambda xp: {}),
    (Adadelta, lambda xp: dict(lr=0.5, rho=0.5, weight_decay=0.1, maximize=True)),
    (Adadelta, lambda xp: dict(lr=_a(xp, 0.3), rho=1.0, eps=1e-3)),
    (Adamax, lambda xp: {}),
    (Adamax, lambda xp: dict(lr=0.01, betas=(0.5, 0.9), weight_decay=0.1, maximize=True)),
    (Adamax, lambda xp: dict(lr=_a(xp, 0.01), betas=(_a(xp, 0.8), _a(xp, 0.99)), eps=0.1)),
    (ASGD, lambda xp: {}),
    (ASGD, lambda xp: dict(lr=0.05, t0=3, lambd=0.1, weight_decay=0.1, maximize=True)),
    (ASGD, lambda xp: dict(lr=_a(xp, 0.02), t0=2.5, lambd=0.37, alpha=0.3)),
]
IDS = [f"{c.__name__}-{i}" for i, (c, _) in enumerate(CONFIGS)]


def _functional(cls, cfg):
    """(init(w), step function, keyword hyper-parameters) of the functional form of cls(**cfg)."""
    defaults = {k: v for k, v in TORCH_GROUPS[cls].items()}
    defaults.update(cfg)
    d = defaults
    if cls is Adagrad:
        hyper = dict(lr=d["lr"], weight_decay=d["weight_decay"], lr_decay=d["lr_decay"], eps=d["eps"],
                     maximize=d["maximize"])
        return (lambda w: adagrad_init(w, d["initial_accumulator_value"])), adagrad_step, hyper
    if cls is Adadelta:
        hyper = dict(lr=d["lr"], rho=d["rho"], eps=d["eps"], weight_decay=d["weight_decay"], maximize=d["maximize"])
        return adadelta_init, adadelta_step, hyper
    if cls is Adamax:
        hyper = dict(lr=d["lr"], beta1=d["betas"][0], beta2=d["betas"][1], eps=d["eps"],
                     weight_decay=d["weight_decay"], maximize=d["maximize"])
        return adamax_init, adamax_step, hyper
    hyper = dict(lr=d["lr"], lambd=d["lambd"], alpha=d["alpha"], t0=d["t0"], weight_decay=d["weight_decay"],
                 maximize=d["maximize"])
    return (lambda w: asgd_init(w, d["lr"])), asgd_step, hyper


def run_class(cls, cfg, xp, init, grads):
    p = Parameter(as_xp(xp, init), name="w")
    opt = cls([p], **cfg)
    for g in grads:
        p.grad = as_xp(xp, g)
        opt.step()
    return p.data, opt.state.get(p, {})


def run_functional(cls, cfg, xp, init, grads):
    init_fn, step, hyper = _functional(cls, cfg)
    w = as_xp(xp, init)
    state = init_fn(w)
    for g in grads:
        w = step(w, as_xp(xp, g), state, **hyper)
    return w, state


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls,make_cfg", CONFIGS, ids=IDS)
def test_numpy_strict_and_functional_agree_bitwise(cls, make_cfg, dtype):
    init, grads = make_sequence(zlib.crc32(f"{cls.__name__}-{make_cfg(cnp)}-{dtype}".encode()), (2, 3), dtype, STEPS)
    results = {}
    for ns, xp in NAMESPACES.items():
        results[ns, "class"] = run_class(cls, make_cfg(xp), xp, init, grads)
        results[ns, "functional"] = run_functional(cls, make_cfg(xp), xp, init, grads)
    p_np, s_np = results["numpy", "class"]
    assert isinstance(p_np, np.ndarray)
    assert not np.array_equal(to_np(p_np), init)
    for key, (p, s) in results.items():
        if key[0] == "array_api_strict":
            assert isinstance(p, array_api_strict._array_object.Array)
            assert all(isinstance(v, array_api_strict._array_object.Array) for v in s.values())
        assert_bitwise_equal(p_np, p, f"param {key}")
        assert_state_equal(s_np, s, f"state {key}")


def _run_immutable_functional(cls, cfg, init, grads):
    init_fn, step, hyper = _functional(cls, cfg)
    w = wrap(init)
    state = init_fn(w)
    for g in grads:
        g_arr = wrap(g)
        w_before, w_before_np = w, to_np(w)
        state_before = dict(state)
        state_before_np = {k: to_np(v) for k, v in state.items()}
        w = step(w, g_arr, state, **hyper)
        # nothing given to the rule was written into, and results are rebound
        assert_bitwise_equal(w_before, w_before_np, "param input mutated")
        assert_bitwise_equal(g_arr, g, "grad input mutated")
        for k, v in state_before.items():
            assert_bitwise_equal(v, state_before_np[k], f"state[{k!r}] input mutated")
        assert isinstance(w, ImmutableArray) and w is not w_before
        for k, v in state.items():
            assert isinstance(v, ImmutableArray), k
            assert v is not state_before[k], f"state[{k!r}] was not rebound"
    return w, state


# Immutable runs use Python-float hyper-parameters (the stand-in refuses NumPy arrays).
IMMUTABLE_CONFIGS = [(c, f) for c, f in CONFIGS if "lr" not in f(cnp) or isinstance(f(cnp)["lr"], float)]
IMMUTABLE_IDS = [f"{c.__name__}-{f(cnp)}" for c, f in IMMUTABLE_CONFIGS]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "shape" + "x".join(map(str, s)) if s else "0d")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls,make_cfg", IMMUTABLE_CONFIGS, ids=IMMUTABLE_IDS)
def test_functional_on_immutable_matches_numpy(cls, make_cfg, dtype, shape):
    init, grads = make_sequence(11, shape, dtype, 8)
    cfg = make_cfg(cnp)
    w_np, s_np = run_functional(cls, cfg, cnp, init, grads)
    w_im, s_im = _run_immutable_functional(cls, cfg, init, grads)
    assert_bitwise_equal(w_np, w_im, "param numpy vs immutable")
    assert_state_equal(s_np, s_im, "state numpy vs immutable")


@pytest.mark.parametrize("cls,make_cfg", IMMUTABLE_CONFIGS, ids=IMMUTABLE_IDS)
def test_classes_on_immutable_rebind_parameter(cls, make_cfg):
    init, grads = make_sequence(13, (3,), "complex64", 8)
    cfg = make_cfg(cnp)
    w_np, s_np = run_class(cls, cfg, cnp, init, grads)
    p = Parameter(wrap(init), name="w")
    opt = cls([p], **cfg)
    for g in grads:
        before, before_np = p.data, to_np(p.data)
        p.grad = wrap(g)
        opt.step()
        assert isinstance(p.data, ImmutableArray) and p.data is not before
        assert_bitwise_equal(before, before_np, "old parameter array changed")
    assert_bitwise_equal(w_np, p.data)
    assert_state_equal(s_np, opt.state[p])


# ============================================================================ quirks
# ---------------------------------------------------------------------------- Adagrad
def test_adagrad_state_exists_right_after_construction():
    a, b = Parameter(np.zeros(3, dtype=np.float32)), Parameter(np.zeros((2, 2)))
    opt = Adagrad([a, b], initial_accumulator_value=0.25)
    assert set(opt.state) == {a, b}
    for p in (a, b):
        assert float(opt.state[p]["step"]) == 0.0 and opt.state[p]["step"].dtype == np.float32
        assert_bitwise_equal(opt.state[p]["sum"], np.full_like(p.data, 0.25))
    # listed by state_dict before any step, also for a parameter that never gets a gradient
    assert sorted(opt.state_dict()["state"]) == [0, 1]
    a.grad = np.ones(3, dtype=np.float32)
    opt.step()
    assert float(opt.state[a]["step"]) == 1.0 and float(opt.state[b]["step"]) == 0.0


def test_adagrad_ignores_per_group_initial_accumulator_value():
    a, b, c = (Parameter(np.zeros(2)) for _ in range(3))
    opt = Adagrad([{"params": [a]}, {"params": [b], "initial_accumulator_value": 0.5}],
                  initial_accumulator_value=0.1)
    assert opt.param_groups[1]["initial_accumulator_value"] == 0.5  # stored...
    assert_bitwise_equal(opt.state[b]["sum"], np.full(2, 0.1))  # ...but ignored
    # a group added later gets its state at its first step, from the defaults
    opt.add_param_group({"params": [c], "initial_accumulator_value": 0.7})
    assert c not in opt.state
    c.grad = np.ones(2)
    opt.step()
    assert_bitwise_equal(opt.state[c]["sum"], np.full(2, 1.1))


def test_adagrad_complex_sum_starts_at_v_plus_vj_and_is_the_real_view():
    init, grads = make_sequence(3, (4,), "complex64", 6)
    p = Parameter(init.copy())
    opt = Adagrad([p], lr=0.1, lr_decay=0.1, initial_accumulator_value=0.5)
    assert_bitwise_equal(opt.state[p]["sum"], np.full(4, 0.5 + 0.5j, dtype=np.complex64))
    r = Parameter(np.stack([init.real, init.imag], -1))
    ropt = Adagrad([r], lr=0.1, lr_decay=0.1, initial_accumulator_value=0.5)
    for g in grads:
        p.grad, r.grad = g, np.stack([g.real, g.imag], -1)
        opt.step()
        ropt.step()
    assert_bitwise_equal(p.data.view(np.float32).reshape(4, 2), r.data)
    assert_bitwise_equal(opt.state[p]["sum"].view(np.float32).reshape(4, 2), ropt.state[r]["sum"])


def test_adagrad_lr_decay_starts_after_the_first_step():
    init, grads = make_sequence(4, (5,), "float64", 2)
    out = []
    for lr_decay in (0.0, 0.5):
        p = Parameter(init.copy())
        opt = Adagrad([p], lr=0.1, lr_decay=lr_decay)
        p.grad = grads[0]
        opt.step()
        first = p.data.copy()
        p.grad = grads[1]
        opt.step()
        out.append((first, p.data.copy()))
    assert_bitwise_equal(out[0][0], out[1][0])  # step 1: lr / (1 + 0 * lr_decay)
    assert not np.array_equal(out[0][1], out[1][1])


def test_adagrad_share_memory_is_accepted():
    opt = Adagrad(params())
    assert opt.share_memory() is None


# ---------------------------------------------------------------------------- Adadelta
def test_adadelta_eps_inside_both_square_roots():
    g = np.array([0.3, -2.0, 1e-4])
    p = Parameter(np.zeros(3))
    opt = Adadelta([p], lr=1.0, rho=0.9, eps=1e-6)
    p.grad = g.copy()
    opt.step()
    delta = np.sqrt(0.0 + 1e-6) / np.sqrt(0.1 * g * g + 1e-6) * g
    np.testing.assert_allclose(p.data, -delta, rtol=1e-14)
    np.testing.assert_allclose(opt.state[p]["acc_delta"], 0.1 * delta * delta, rtol=1e-14)


def test_adadelta_rho_one_steps_by_the_gradient():
    init, grads = make_sequence(6, (5,), "float32", 4)
    p = Parameter(init.copy())
    opt = Adadelta([p], rho=1.0)
    expected = init.copy()
    for g in grads:
        p.grad = g
        opt.step()
        expected = expected - g  # sqrt(eps)/sqrt(eps) * g == g, lr == 1
        assert_bitwise_equal(p.data, expected)
    assert not np.any(opt.state[p]["square_avg"]) and not np.any(opt.state[p]["acc_delta"])


# ---------------------------------------------------------------------------- Adamax
def test_adamax_eps_inside_the_max():
    p = Parameter(np.array([1.0, -2.0], dtype=np.float32))
    opt = Adamax([p], eps=1e-3)
    p.grad = np.zeros(2, dtype=np.float32)
    opt.step()
    assert_bitwise_equal(opt.state[p]["exp_inf"], np.full(2, 1e-3, dtype=np.float32))  # max(0, |0| + eps)
    assert_bitwise_equal(p.data, np.array([1.0, -2.0], dtype=np.float32))  # exp_avg 0: no move
    p.grad = np.array([0.5, 0.0], dtype=np.float32)
    opt.step()
    f = np.float32
    expected = np.maximum(f(1e-3) * f(0.999), np.abs(np.array([0.5, 0.0], dtype=f)) + f(1e-3))
    assert_bitwise_equal(opt.state[p]["exp_inf"], expected)


def test_adamax_array_betas_compute_the_bias_correction_in_their_dtype():
    """torch 2.13: Adamax([p], lr=0.1, betas=(torch.tensor(0.9), torch.tensor(0.999)))."""
    grads = ([0.3, -0.1, 0.2], [0.1, 0.4, -0.3], [-0.2, 0.2, 0.1])
    torch_values = {
        "array": ["0x1.a323942f7fe1ep-1", "-0x1.fc2a651b1374dp+0", "0x1.b02aa1887d0d0p-2"],
        "float": ["0x1.a32394153b85dp-1", "-0x1.fc2a654788852p+0", "0x1.b02aa1f5cba9bp-2"],
    }
    for kind, betas in (("array", (np.asarray(0.9, dtype=np.float32), np.asarray(0.999, dtype=np.float32))),
                        ("float", (0.9, 0.999))):
        p = Parameter(np.array([1.0, -2.0, 0.5]))
        opt = Adamax([p], lr=0.1, betas=betas)
        for g in grads:
            p.grad = np.array(g)
            opt.step()
        assert [float(v).hex() for v in p.data] == torch_values[kind], kind


# ---------------------------------------------------------------------------- ASGD
def test_asgd_eta_and_mu_are_float32_also_for_float64():
    p = Parameter(np.zeros(3))
    opt = ASGD([p], lr=0.1, lambd=0.1)
    p.grad = np.ones(3)
    opt.step()
    state = opt.state[p]
    for key in ("step", "eta", "mu"):
        assert state[key].dtype == np.float32 and state[key].shape == ()
    assert float(state["eta"]) == float(np.float32(0.1 / (1 + 0.1 * 0.1 * 1.0) ** 0.75))
    # the first step moved by the float32-rounded lr
    assert_bitwise_equal(p.data, np.full(3, -float(np.float32(0.1))))
    # load_state_dict casts them to the parameter's dtype (torch's rule for non-step entries)
    q = Parameter(np.zeros(3))
    other = ASGD([q], lr=0.1)
    other.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert other.state[q]["eta"].dtype == np.float64 and other.state[q]["mu"].dtype == np.float64
    assert other.state[q]["step"].dtype == np.float32


@pytest.mark.parametrize("t0", [3, 4.5, -5])
def test_asgd_averaging_starts_when_mu_leaves_one(t0):
    init, grads = make_sequence(8, (4,), "float32", 12)
    p = Parameter(init.copy())
    opt = ASGD([p], lr=0.05, t0=t0)
    first = max(2, int(np.floor(t0)) + 3)
    for step, g in enumerate(grads, start=1):
        mu_read = float(opt.state[p]["mu"]) if p in opt.state else 1.0
        ax_before = opt.state[p]["ax"].copy() if p in opt.state else np.zeros_like(init)
        p.grad = g
        opt.step()
        ax = opt.state[p]["ax"]
        if step < first:
            assert mu_read == 1.0
            assert_bitwise_equal(ax, p.data)
        else:
            assert mu_read == float(np.float32(1 / max(1, step - 1 - t0))) < 1.0
            assert_bitwise_equal(ax, ax_before + (p.data - ax_before) * np.float32(mu_read))
    assert float(opt.state[p]["mu"]) == float(np.float32(1 / max(1, 12 - t0)))


def test_asgd_complex_is_the_real_view_including_weight_decay():
    init, grads = make_sequence(9, (4,), "complex64", 8)
    cfg = dict(lr=0.05, lambd=0.1, t0=2, weight_decay=0.3, maximize=True)
    p = Parameter(init.copy())
    r = Parameter(np.stack([init.real, init.imag], -1))
    opt, ropt = ASGD([p], **cfg), ASGD([r], **cfg)
    for g in grads:
        p.grad, r.grad = g, np.stack([g.real, g.imag], -1)
        opt.step()
        ropt.step()
    assert_bitwise_equal(p.data.view(np.float32).reshape(4, 2), r.data)
    assert_bitwise_equal(opt.state[p]["ax"].view(np.float32).reshape(4, 2), ropt.state[r]["ax"])


def test_asgd_array_lr_matches_torch():
    """torch 2.13: ASGD([p], lr=torch.tensor(0.05), lambd=0.37, alpha=0.3, t0=1), float32."""
    p = Parameter(np.array([1.0, -2.0, 0.5], dtype=np.float32))
    opt = ASGD([p], lr=np.asarray(0.05, dtype=np.float32), lambd=0.37, alpha=0.3, t0=1)
    for i in range(5):
        p.grad = np.array([0.3, -0.1, 0.2], dtype=np.float32) * np.float32(i + 1)
        opt.step()
    assert [float(v).hex() for v in p.data] == ["0x1.64013c0000000p-1", "-0x1.c05c400000000p+0", "0x1.3f100c0000000p-2"]
    state = opt.state[p]
    assert float(state["step"]).hex() == "0x1.4000000000000p+2"
    assert float(state["eta"]).hex() == "0x1.8edf3a0000000p-5"
    assert float(state["mu"]).hex() == "0x1.0000000000000p-2"
    assert float(state["ax"][0]).hex() == "0x1.8ea4140000000p-1"


# torch 2.13: (torch.tensor(x) ** a).item() for float32 x; NumPy's float32 ** differs on each.
TORCH_POW = [
    ("0x1.b63fd00000000p+1", 0.3, "0x1.7255720000000p+0"),
    ("0x1.8bbc2e0000000p+1", 0.75, "0x1.2a70700000000p+1"),
    ("0x1.c27fa00000000p+0", 3.0, "0x1.5cc55a0000000p+2"),
    ("0x1.c27fa00000000p+0", -2.0, "0x1.4aab300000000p-2"),
    ("0x1.cd3ffc0000000p+1", -0.5, "0x1.0db7500000000p-1"),
    ("0x1.1106cc0000000p+1", -1.0, "0x1.e0120e0000000p-2"),
    ("0x1.1106cc0000000p+1", 2.0, "0x1.232f800000000p+2"),
]


@pytest.mark.parametrize("x,exponent,expected", TORCH_POW)
def test_pow_rounds_as_torch(x, exponent, expected, xp):
    if abs(exponent) == 0.5 and getattr(xp, "__name__", "") == "array_api_compat.torch":
        pytest.skip("on torch tensors the exponents +-0.5 use torch's sqrt, not correctly rounded "
                    "(refoptim.testing.backends.DEVIATIONS)")
    base = xp.asarray(float.fromhex(x), dtype=xp.float32)
    out = torch_pow(base, exponent)
    assert out.dtype == xp.float32 and out.shape == ()
    assert float(out).hex() == expected
    assert_bitwise_equal(torch_pow(base, 1.0), base)
    assert float(torch_pow(base, 0.0)) == 1.0
