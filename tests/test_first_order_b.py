"""NAdam, RAdam, RMSprop and Rprop: torch 2.13's interface, one code path, and each quirk.

Every expected exception, signature, default and number below was read from torch 2.13.0
(CPU, ``foreach=False``) by running the same thing on ``torch.optim``; an array stands in
for a tensor. No torch is imported here.
"""

from __future__ import annotations

import copy
import inspect
import zlib

import array_api_strict
import numpy as np
import pytest

import refoptim
from refoptim.nadam import NAdam, nadam_init, nadam_step
from refoptim.radam import RAdam, radam_init, radam_step
from refoptim.rmsprop import RMSprop, rmsprop_init, rmsprop_step
from refoptim.rprop import Rprop, rprop_init, rprop_step
from _immutable import ImmutableArray, wrap
from _support import (
    DTYPES,
    SHAPES,
    as_xp,
    assert_bitwise_equal,
    assert_state_equal,
    cnp,
    make_sequence,
    run_class,
    to_np,
)

CLASSES = [NAdam, RAdam, RMSprop, Rprop]


def params(xp=cnp):
    return [refoptim.Parameter(xp.zeros(3))]


def raises(cls, exc, message, *args, **kwargs):
    with pytest.raises(exc) as info:
        cls(*args, **kwargs)
    assert type(info.value) is exc
    assert str(info.value) == message


# ============================================================================ validation
ADAM_LIKE_ERRORS = [
    (dict(lr=-1), ValueError, "Invalid learning rate: -1"),
    (dict(eps=-1e-3), ValueError, "Invalid epsilon value: -0.001"),
    (dict(betas=(-0.1, 0.9)), ValueError, "Invalid beta parameter at index 0: -0.1"),
    (dict(betas=(1.0, 0.9)), ValueError, "Invalid beta parameter at index 0: 1.0"),
    (dict(betas=(0.9, 1.0)), ValueError, "Invalid beta parameter at index 1: 1.0"),
    (dict(betas=(0.9, -1.0)), ValueError, "Invalid beta parameter at index 1: -1.0"),
    (dict(weight_decay=-1.0), ValueError, "Invalid weight_decay value: -1.0"),
    # torch's order of checks
    (dict(lr=-1, eps=-1), ValueError, "Invalid learning rate: -1"),
    (dict(eps=-1, betas=(1.0, 0.9)), ValueError, "Invalid epsilon value: -1"),
    (dict(betas=(0.9, 1.0), weight_decay=-1), ValueError, "Invalid beta parameter at index 1: 1.0"),
]
ERRORS = {
    NAdam: ADAM_LIKE_ERRORS
    + [
        (dict(momentum_decay=-0.1), ValueError, "Invalid momentum_decay value: -0.1"),
        (dict(weight_decay=-1, momentum_decay=-1), ValueError, "Invalid weight_decay value: -1"),
    ],
    RAdam: ADAM_LIKE_ERRORS,
    RMSprop: [
        (dict(lr=-1), ValueError, "Invalid learning rate: -1"),
        (dict(eps=-1e-3), ValueError, "Invalid epsilon value: -0.001"),
        (dict(momentum=-0.5), ValueError, "Invalid momentum value: -0.5"),
        (dict(weight_decay=-0.5), ValueError, "Invalid weight_decay value: -0.5"),
        (dict(alpha=-0.1), ValueError, "Invalid alpha value: -0.1"),
        (dict(lr=-1, eps=-1), ValueError, "Invalid learning rate: -1"),
        (dict(eps=-1, momentum=-1), ValueError, "Invalid epsilon value: -1"),
        (dict(momentum=-1, weight_decay=-1), ValueError, "Invalid momentum value: -1"),
        (dict(weight_decay=-1, alpha=-1), ValueError, "Invalid weight_decay value: -1"),
    ],
    Rprop: [
        (dict(lr=-1), ValueError, "Invalid learning rate: -1"),
        (dict(etas=(0.0, 1.2)), ValueError, "Invalid eta values: 0.0, 1.2"),
        (dict(etas=(1.0, 1.2)), ValueError, "Invalid eta values: 1.0, 1.2"),
        (dict(etas=(0.5, 1.0)), ValueError, "Invalid eta values: 0.5, 1.0"),
        (dict(etas=(0.5, 0.9)), ValueError, "Invalid eta values: 0.5, 0.9"),
        (dict(etas=(-0.5, 1.2)), ValueError, "Invalid eta values: -0.5, 1.2"),
        (dict(lr=-1, etas=(0, 0)), ValueError, "Invalid learning rate: -1"),
    ],
}
ERROR_CASES = [(cls, *case) for cls, cases in ERRORS.items() for case in cases]


@pytest.mark.parametrize(
    "cls,kwargs,exc,message", ERROR_CASES, ids=[f"{c.__name__}-{k}" for c, k, _, _ in ERROR_CASES]
)
def test_errors(cls, kwargs, exc, message):
    raises(cls, exc, message, params(), **kwargs)


@pytest.mark.parametrize("cls", CLASSES)
def test_array_lr(cls, xp):
    raises(cls, ValueError, "Tensor lr must be 1-element", params(xp), lr=xp.asarray([0.1, 0.2]))
    raises(cls, ValueError, "Tensor lr must be 1-element", params(xp), lr=xp.zeros((0,)))
    # torch.tensor(-0.1) is float32; torch formats it as its Python float
    raises(cls, ValueError, "Invalid learning rate: -0.10000000149011612", params(xp),
           lr=xp.asarray(-0.1, dtype=xp.float32))
    # none of the four refuses a tensor lr with foreach=True
    opt = cls(params(xp), lr=xp.asarray(0.1), foreach=True)
    assert opt.param_groups[0]["foreach"] is True


@pytest.mark.parametrize("cls", CLASSES)
def test_no_fused_argument(cls):
    with pytest.raises(TypeError, match="fused"):
        cls(params(), fused=True)


@pytest.mark.parametrize("cls", CLASSES)
def test_empty_params(cls):
    raises(cls, ValueError, "optimizer got an empty parameter list", [])


def test_accepted_edge_values():
    # torch checks only alpha >= 0, and never checks step_sizes
    assert RMSprop(params(), alpha=1.5).param_groups[0]["alpha"] == 1.5
    assert Rprop(params(), step_sizes=(1, 0.1)).param_groups[0]["step_sizes"] == (1, 0.1)
    assert Rprop(params(), step_sizes=(-1, 50)).param_groups[0]["step_sizes"] == (-1, 50)
    # betas=(0, 0.99) (an int) is fine here, unlike Adam's "both floats or both Tensors"
    assert NAdam(params(), betas=(0, 0.99)).param_groups[0]["betas"] == (0, 0.99)
    assert RAdam(params(), betas=(0, 0.99)).param_groups[0]["betas"] == (0, 0.99)


# ============================================================================ signatures, defaults
P = inspect.Parameter
SIGNATURES = {
    NAdam: [
        ("params", P.POSITIONAL_OR_KEYWORD, P.empty),
        ("lr", P.POSITIONAL_OR_KEYWORD, 0.002),
        ("betas", P.POSITIONAL_OR_KEYWORD, (0.9, 0.999)),
        ("eps", P.POSITIONAL_OR_KEYWORD, 1e-08),
        ("weight_decay", P.POSITIONAL_OR_KEYWORD, 0),
        ("momentum_decay", P.POSITIONAL_OR_KEYWORD, 0.004),
        ("decoupled_weight_decay", P.POSITIONAL_OR_KEYWORD, False),
        ("foreach", P.KEYWORD_ONLY, None),
        ("maximize", P.KEYWORD_ONLY, False),
        ("capturable", P.KEYWORD_ONLY, False),
        ("differentiable", P.KEYWORD_ONLY, False),
    ],
    RAdam: [
        ("params", P.POSITIONAL_OR_KEYWORD, P.empty),
        ("lr", P.POSITIONAL_OR_KEYWORD, 0.001),
        ("betas", P.POSITIONAL_OR_KEYWORD, (0.9, 0.999)),
        ("eps", P.POSITIONAL_OR_KEYWORD, 1e-08),
        ("weight_decay", P.POSITIONAL_OR_KEYWORD, 0),
        ("decoupled_weight_decay", P.POSITIONAL_OR_KEYWORD, False),
        ("foreach", P.KEYWORD_ONLY, None),
        ("maximize", P.KEYWORD_ONLY, False),
        ("capturable", P.KEYWORD_ONLY, False),
        ("differentiable", P.KEYWORD_ONLY, False),
    ],
    RMSprop: [
        ("params", P.POSITIONAL_OR_KEYWORD, P.empty),
        ("lr", P.POSITIONAL_OR_KEYWORD, 0.01),
        ("alpha", P.POSITIONAL_OR_KEYWORD, 0.99),
        ("eps", P.POSITIONAL_OR_KEYWORD, 1e-08),
        ("weight_decay", P.POSITIONAL_OR_KEYWORD, 0),
        ("momentum", P.POSITIONAL_OR_KEYWORD, 0),
        ("centered", P.POSITIONAL_OR_KEYWORD, False),
        ("capturable", P.POSITIONAL_OR_KEYWORD, False),
        ("foreach", P.POSITIONAL_OR_KEYWORD, None),
        ("maximize", P.POSITIONAL_OR_KEYWORD, False),
        ("differentiable", P.POSITIONAL_OR_KEYWORD, False),
    ],
    Rprop: [
        ("params", P.POSITIONAL_OR_KEYWORD, P.empty),
        ("lr", P.POSITIONAL_OR_KEYWORD, 0.01),
        ("etas", P.POSITIONAL_OR_KEYWORD, (0.5, 1.2)),
        ("step_sizes", P.POSITIONAL_OR_KEYWORD, (1e-06, 50)),
        ("capturable", P.KEYWORD_ONLY, False),
        ("foreach", P.KEYWORD_ONLY, None),
        ("maximize", P.KEYWORD_ONLY, False),
        ("differentiable", P.KEYWORD_ONLY, False),
    ],
}


@pytest.mark.parametrize("cls", CLASSES)
def test_signature_matches_torch(cls):
    got = [(p.name, p.kind, p.default) for p in inspect.signature(cls).parameters.values()]
    assert got == SIGNATURES[cls]
    for (_, _, d_got), (_, _, d_want) in zip(got, SIGNATURES[cls]):
        assert type(d_got) is type(d_want)


# torch's param_groups[0] without "params", keys in torch's order
GROUPS = {
    NAdam: {"lr": 0.002, "betas": (0.9, 0.999), "eps": 1e-08, "weight_decay": 0, "momentum_decay": 0.004,
            "decoupled_weight_decay": False, "maximize": False, "foreach": None, "capturable": False,
            "differentiable": False},
    RAdam: {"lr": 0.001, "betas": (0.9, 0.999), "eps": 1e-08, "weight_decay": 0, "maximize": False,
            "foreach": None, "capturable": False, "decoupled_weight_decay": False, "differentiable": False},
    RMSprop: {"lr": 0.01, "momentum": 0, "alpha": 0.99, "eps": 1e-08, "centered": False, "weight_decay": 0,
              "capturable": False, "foreach": None, "maximize": False, "differentiable": False},
    Rprop: {"lr": 0.01, "etas": (0.5, 1.2), "step_sizes": (1e-06, 50), "foreach": None, "maximize": False,
            "differentiable": False, "capturable": False},
}


def _typed(d):
    return [(k, type(v), v) for k, v in d.items()]


@pytest.mark.parametrize("cls", CLASSES)
def test_defaults_and_group_keys_match_torch(cls, xp):
    opt = cls(params(xp))
    group = opt.param_groups[0]
    assert list(group) == ["params"] + list(GROUPS[cls])
    assert _typed({k: v for k, v in group.items() if k != "params"}) == _typed(GROUPS[cls])
    assert _typed(opt.defaults) == _typed(GROUPS[cls])


# ============================================================================ one code path
CONFIGS = {
    NAdam: [
        dict(lr=0.01),
        dict(lr=0.01, weight_decay=0.1),
        dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, maximize=True, momentum_decay=6e-3),
        dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6),
    ],
    RAdam: [
        dict(lr=0.01),
        dict(lr=0.01, weight_decay=0.1, maximize=True),
        dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
        dict(betas=(0.9, 0.7), eps=1e-6),
    ],
    RMSprop: [
        dict(lr=0.01),
        dict(lr=0.01, centered=True),
        dict(lr=0.01, momentum=0.9, weight_decay=0.1),
        dict(lr=0.01, centered=True, momentum=0.5, weight_decay=0.1, maximize=True, alpha=0.9),
    ],
    Rprop: [
        dict(),
        dict(lr=0.001, etas=(0.3, 1.5), maximize=True),
        dict(step_sizes=(1e-3, 0.02)),
    ],
}
ALL = [(cls, cfg) for cls, cfgs in CONFIGS.items() for cfg in cfgs]
IDS = [cls.__name__ + "(" + ",".join(f"{k}={v}" for k, v in cfg.items()) + ")" for cls, cfg in ALL]
STEPS = 10


def functional(cls, cfg):
    """(init(param) -> state, step function, keyword hyper-parameters) of ``cls(**cfg)``."""
    o = {name: p.default for name, p in inspect.signature(cls).parameters.items() if name != "params"}
    o.update(cfg)
    if cls is Rprop:
        hyper = dict(step_size_min=o["step_sizes"][0], step_size_max=o["step_sizes"][1],
                     etaminus=o["etas"][0], etaplus=o["etas"][1], maximize=o["maximize"])
        return (lambda w: rprop_init(w, o["lr"])), rprop_step, hyper
    if cls is RMSprop:
        hyper = {k: o[k] for k in ("lr", "alpha", "eps", "weight_decay", "momentum", "centered", "maximize")}
        return (lambda w: rmsprop_init(w, o["momentum"], o["centered"])), rmsprop_step, hyper
    hyper = dict(lr=o["lr"], beta1=o["betas"][0], beta2=o["betas"][1], eps=o["eps"],
                 weight_decay=o["weight_decay"], decoupled_weight_decay=o["decoupled_weight_decay"],
                 maximize=o["maximize"])
    if cls is NAdam:
        return nadam_init, nadam_step, dict(hyper, momentum_decay=o["momentum_decay"])
    return radam_init, radam_step, hyper


def run_functional(cls, cfg, xp, init, grads):
    init_fn, step, hyper = functional(cls, cfg)
    w = as_xp(xp, init)
    state = init_fn(w)
    for g in grads:
        w = step(w, as_xp(xp, g), state, **hyper)
    return w, state


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "shape" + "x".join(map(str, s)) if s else "0d")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls,cfg", ALL, ids=IDS)
def test_numpy_strict_and_functional_agree_bitwise(cls, cfg, dtype, shape):
    seed = zlib.crc32(f"{cls.__name__}{cfg}{dtype}{shape}".encode())
    init, grads = make_sequence(seed, shape, dtype, STEPS)
    p_np, s_np, _ = run_class(cls, cfg, cnp, init, grads)
    p_st, s_st, _ = run_class(cls, cfg, array_api_strict, init, grads)
    f_np, fs_np = run_functional(cls, cfg, cnp, init, grads)
    f_st, fs_st = run_functional(cls, cfg, array_api_strict, init, grads)
    assert isinstance(p_st, array_api_strict._array_object.Array)
    assert all(isinstance(v, array_api_strict._array_object.Array) for v in s_st.values())
    if np.prod(shape) > 0:
        assert not np.array_equal(to_np(p_np), init)
    assert_bitwise_equal(p_np, p_st, "param numpy vs array_api_strict")
    assert_state_equal(s_np, s_st, "state numpy vs array_api_strict")
    assert_bitwise_equal(p_np, f_np, "param class vs functional (numpy)")
    assert_state_equal(s_np, fs_np, "state class vs functional (numpy)")
    assert_bitwise_equal(p_st, f_st, "param class vs functional (array_api_strict)")
    assert_state_equal(s_st, fs_st, "state class vs functional (array_api_strict)")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls,cfg", ALL, ids=IDS)
def test_functional_on_immutable_matches_numpy(cls, cfg, dtype):
    init, grads = make_sequence(21, (2, 3), dtype, STEPS)
    w_np, s_np = run_functional(cls, cfg, cnp, init, grads)

    init_fn, step, hyper = functional(cls, cfg)
    w = wrap(init)
    state = init_fn(w)
    for g in grads:
        g_arr = wrap(g)
        w_before, w_before_np = w, to_np(w)
        state_before = dict(state)
        state_before_np = {k: to_np(v) for k, v in state.items()}
        w = step(w, g_arr, state, **hyper)
        # nothing given to the rule was written into, and results come back rebound
        assert_bitwise_equal(w_before, w_before_np, "param input mutated")
        assert_bitwise_equal(g_arr, g, "grad input mutated")
        for k, v in state_before.items():
            assert_bitwise_equal(v, state_before_np[k], f"state[{k!r}] input mutated")
        assert isinstance(w, ImmutableArray) and w is not w_before
        for k, v in state.items():
            assert isinstance(v, ImmutableArray), k
    assert_bitwise_equal(w_np, w, "param numpy vs immutable")
    assert_state_equal(s_np, state, "state numpy vs immutable")


@pytest.mark.parametrize("cls,cfg", ALL, ids=IDS)
def test_class_on_immutable_rebinds_parameter(cls, cfg):
    init, grads = make_sequence(22, (3,), "complex64", STEPS)
    w_np, s_np, _ = run_class(cls, cfg, cnp, init, grads)
    p = refoptim.Parameter(wrap(init), name="w")
    opt = cls([p], **cfg)
    for g in grads:
        before = p.data
        p.grad = wrap(g)
        opt.step()
        assert p.data is not before and isinstance(p.data, ImmutableArray)
    assert_bitwise_equal(w_np, p.data)
    assert_state_equal(s_np, opt.state[p])


# ============================================================================ state layout
STATE_KEYS = {
    NAdam: lambda cfg: ["step", "mu_product", "exp_avg", "exp_avg_sq"],
    RAdam: lambda cfg: ["step", "exp_avg", "exp_avg_sq"],
    RMSprop: lambda cfg: ["step", "square_avg"]
    + (["momentum_buffer"] if cfg.get("momentum", 0) > 0 else [])
    + (["grad_avg"] if cfg.get("centered") else []),
    Rprop: lambda cfg: ["step", "prev", "step_size"],
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls,cfg", ALL, ids=IDS)
def test_state_keys_shapes_dtypes(cls, cfg, dtype, xp):
    init, grads = make_sequence(3, (3, 4), dtype, 2)
    p, state, _ = run_class(cls, cfg, xp, init, grads)
    assert list(state) == STATE_KEYS[cls](cfg)  # torch's keys, in torch's order
    for key, value in state.items():
        if key in ("step", "mu_product"):
            assert value.shape == () and value.dtype == xp.float32, key
        else:
            assert value.shape == p.shape and value.dtype == p.dtype, key
    assert float(state["step"]) == 2.0


@pytest.mark.parametrize("cls", CLASSES)
def test_no_state_without_a_gradient(cls):
    p, q = refoptim.Parameter(np.ones(2)), refoptim.Parameter(np.ones(2))
    opt = cls([p, q])
    p.grad = np.ones(2)
    opt.step()
    assert p in opt.state and q not in opt.state


@pytest.mark.parametrize("cls,cfg", ALL, ids=IDS)
def test_state_dict_round_trip(cls, cfg):
    init, grads = make_sequence(5, (4,), "float32", 6)
    pa = refoptim.Parameter(init.copy())
    a = cls([pa], **cfg)
    for g in grads[:3]:
        pa.grad = g.copy()
        a.step()
    pb = refoptim.Parameter(to_np(pa.data))
    b = cls([pb], **cfg)
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    for g in grads[3:]:
        pa.grad, pb.grad = g.copy(), g.copy()
        a.step()
        b.step()
    assert_bitwise_equal(pa.data, pb.data)
    assert_state_equal(a.state[pa], b.state[pb])


@pytest.mark.parametrize("cls", CLASSES)
def test_setstate_makes_a_python_step_an_array(cls):
    p = refoptim.Parameter(np.ones(2, dtype=np.float64))
    opt = cls([p])
    p.grad = np.ones(2)
    opt.step()
    sd = opt.state_dict()
    sd["state"][0]["step"] = 1.0  # an old checkpoint kept a Python number
    if cls is NAdam:
        sd["state"][0]["mu_product"] = 0.5
    opt.load_state_dict(sd)
    assert opt.state[p]["step"].dtype == np.float32 and opt.state[p]["step"].shape == ()
    if cls is NAdam:
        assert opt.state[p]["mu_product"].dtype == np.float32


# ============================================================================ known values
# float64 / complex128 runs of torch.optim (foreach=False), the numbers written out.
G3 = [[2.0, -0.5], [1.0, 0.5], [-1.0, 0.25]]
G7 = G3 + [[0.5, -1.0], [1.5, 0.75], [-0.25, 2.0], [1.0, 1.0]]
KNOWN = {
    "nadam": (NAdam, [1.0, -1.0], G3, dict(lr=0.1),
              [0.8797020418952842, -1.0019388103978821],
              {"step": 3.0, "mu_product": 0.09121428430080414, "exp_avg": [0.15199999999999997, 0.0295],
               "exp_avg_sq": [0.0059910040000000055, 0.0005617502500000005]}),
    "nadam decoupled": (NAdam, [1.0, -1.0], G3,
                        dict(lr=0.1, weight_decay=0.1, decoupled_weight_decay=True, momentum_decay=6e-3),
                        [0.852618297300553, -0.9736355371018649],
                        {"step": 3.0, "mu_product": 0.0912589356303215, "exp_avg": [0.15199999999999997, 0.0295],
                         "exp_avg_sq": [0.0059910040000000055, 0.0005617502500000005]}),
    "nadam complex": (NAdam, [1 + 2j], [[0.5 - 1j], [1 + 0.25j]], dict(lr=0.1),
                      [0.7980600888408499 + 2.086407351172151j],
                      {"step": 2.0, "mu_product": 0.2025991976261139,
                       "exp_avg": [0.14499999999999996 - 0.06499999999999999j],
                       "exp_avg_sq": [0.001249750000000001 + 0.001061500000000001j]}),
    "radam 7 steps": (RAdam, [1.0, -1.0], G7, dict(lr=0.1),
                      [0.4615352977707304, -0.9472500512653537],
                      {"step": 7.0, "exp_avg": [0.33517719999999995, 0.28720494999999996],
                       "exp_avg_sq": [0.009524266405815985, 0.007113885178755067]}),
    "radam weight decay maximize": (RAdam, [1.0, -1.0], G7, dict(lr=0.1, weight_decay=0.1, maximize=True),
                                    [1.4799063814436306, -1.001500656646615],
                                    {"step": 7.0, "exp_avg": [-0.2646191303983379, -0.34005205758262247],
                                     "exp_avg_sq": [0.008496466517823193, 0.00779482248212023]}),
    "rmsprop centered momentum": (RMSprop, [1.0, -1.0], G3,
                                  dict(lr=0.01, centered=True, momentum=0.9, weight_decay=0.1),
                                  [0.675750918229216, -0.8573596360055212],
                                  {"step": 3.0, "square_avg": [0.06351689475730611, 0.0054600597636058085],
                                   "momentum_buffer": [8.66184423216023, -0.8318540406424155],
                                   "grad_avg": [0.02213497062160208, -0.00018677944936794746]}),
    "rmsprop complex": (RMSprop, [1 + 2j], [[0.5 - 1j], [1 + 0.25j]], dict(lr=0.01),
                        [0.8104677318088583 + 2.075631483433869j],
                        {"step": 2.0, "square_avg": [0.01247500000000001 + 0.01052500000000001j]}),
    "rprop": (Rprop, [0.0, 0.0, 0.0], [[1.0, -1.0, 0.0], [2.0, 1.0, 5.0], [-1.0, 1.0, 3.0], [1.0, 1.0, -2.0]],
              dict(lr=0.1), [-0.28, -0.009999999999999995, -0.22],
              {"step": 4.0, "prev": [1.0, 1.0, 0.0], "step_size": [0.06, 0.06, 0.06]}),
    "rprop complex": (Rprop, [1 + 1j], [[1 - 1j], [2 + 1j], [-1 + 1j]], dict(lr=0.1), [0.78 + 1.05j],
                      {"step": 3.0, "prev": [1j], "step_size": [0.06 + 0.05j]}),
}


@pytest.mark.parametrize("name", list(KNOWN))
def test_matches_torch_values(name, xp):
    cls, init, grads, cfg, expected_param, expected_state = KNOWN[name]
    dtype = "complex128" if isinstance(init[0], complex) else "float64"
    if not hasattr(xp, dtype):  # ndonnx has no complex dtypes
        pytest.skip(f"{getattr(xp, '__name__', xp)} has no {dtype}")
    p, state, _ = run_class(cls, cfg, xp, np.array(init, dtype=dtype), [np.array(g, dtype=dtype) for g in grads])
    np.testing.assert_allclose(to_np(p), expected_param, rtol=1e-14, atol=1e-15)
    for key, value in expected_state.items():
        np.testing.assert_allclose(to_np(state[key]), value, rtol=1e-14, atol=1e-16, err_msg=key)


# ============================================================================ quirks: NAdam
def test_nadam_mu_product_is_float32_products_of_mu():
    p = refoptim.Parameter(np.ones(3, dtype=np.float64))
    opt = NAdam([p], momentum_decay=6e-3)
    expected = np.float32(1.0)
    for t in range(1, 6):
        p.grad = np.ones(3)
        opt.step()
        mu = 0.9 * (1.0 - 0.5 * (0.96 ** (t * 6e-3)))
        expected = np.float32(expected * np.float32(mu))  # torch: float32 *= mu (rounded to float32)
        mu_product = opt.state[p]["mu_product"]
        assert mu_product.dtype == np.float32 and mu_product.shape == ()
        assert mu_product.tobytes() == expected.tobytes()
    # the float64 product differs: the float32 state is a real quirk, not a no-op
    exact = np.prod([0.9 * (1.0 - 0.5 * (0.96 ** (t * 6e-3))) for t in range(1, 6)])
    assert float(expected) != exact


def test_nadam_momentum_decay_zero_makes_mu_constant():
    p = refoptim.Parameter(np.ones(2))
    opt = NAdam([p], momentum_decay=0.0)
    for _ in range(3):
        p.grad = np.ones(2)
        opt.step()
    assert float(opt.state[p]["mu_product"]) == float(np.float32(np.float32(np.float32(0.45) * np.float32(0.45))
                                                                  * np.float32(0.45)))


def _nadam_first_step_by_hand(w, g, lr, beta1, beta2, eps, psi, adam_denom=False):
    """NAdam's first step from zero state in plain float32 NumPy (no fused op matters here:
    lerp and addcmul from zero round once either way)."""
    f = np.float32
    mu = beta1 * (1.0 - 0.5 * (0.96 ** (1.0 * psi)))
    mu_next = beta1 * (1.0 - 0.5 * (0.96 ** (2.0 * psi)))
    mu_product = float(f(1.0) * f(mu))
    m = f(1 - beta1) * g
    v = (f(1 - beta2) * g) * g
    bc2 = 1 - beta2**1.0
    if adam_denom:
        denom = np.sqrt(v) / f(bc2**0.5) + f(eps)
    else:
        denom = np.sqrt(v / f(bc2)) + f(eps)
    w = w + (f(-lr * (1.0 - mu) / (1.0 - mu_product)) * g) / denom
    return w + (f((-lr * mu_next) / (1.0 - mu_product * mu_next)) * m) / denom


def test_nadam_denominator_is_sqrt_of_the_corrected_average():
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal(4000).astype(np.float32)
    g = rng.standard_normal(4000).astype(np.float32)
    p = refoptim.Parameter(w0.copy())
    opt = NAdam([p], lr=0.1, betas=(0.9, 0.99), eps=1e-3)
    p.grad = g.copy()
    opt.step()
    nadam_order = _nadam_first_step_by_hand(w0, g, 0.1, 0.9, 0.99, 1e-3, 4e-3)
    adam_order = _nadam_first_step_by_hand(w0, g, 0.1, 0.9, 0.99, 1e-3, 4e-3, adam_denom=True)
    assert_bitwise_equal(p.data, nadam_order)
    assert not np.array_equal(nadam_order, adam_order)  # the test can tell the two apart


@pytest.mark.parametrize("cls", [NAdam, RAdam])
def test_decoupled_weight_decay_scales_the_parameter(cls):
    # a zero gradient from zero state: no moment, so only the decay moves the parameter
    w0 = np.array([1.0, -2.0, 3.0])
    p = refoptim.Parameter(w0.copy())
    opt = cls([p], lr=0.1, weight_decay=0.5, decoupled_weight_decay=True)
    p.grad = np.zeros(3)
    opt.step()
    assert_bitwise_equal(p.data, w0 * (1 - 0.1 * 0.5))
    assert not np.any(to_np(opt.state[p]["exp_avg"]))
    # coupled: the decay goes through the gradient and the moments
    q = refoptim.Parameter(w0.copy())
    opt = cls([q], lr=0.1, weight_decay=0.5)
    q.grad = np.zeros(3)
    opt.step()
    assert_bitwise_equal(opt.state[q]["exp_avg"], (1 - 0.9) * (0.5 * w0))
    assert not np.array_equal(to_np(q.data), w0 * (1 - 0.1 * 0.5))


def test_nadam_load_state_dict_casts_mu_product_to_the_parameter_dtype():
    p = refoptim.Parameter(np.ones(2, dtype=np.float64))
    opt = NAdam([p])
    p.grad = np.ones(2)
    opt.step()
    assert opt.state[p]["mu_product"].dtype == np.float32
    q = refoptim.Parameter(np.ones(2, dtype=np.float64))
    other = NAdam([q])
    other.load_state_dict(opt.state_dict())
    # torch casts every state tensor but step to a floating parameter's dtype
    assert other.state[q]["mu_product"].dtype == np.float64
    assert other.state[q]["step"].dtype == np.float32
    q.grad = np.ones(2)
    other.step()
    assert other.state[q]["mu_product"].dtype == np.float64


def test_nadam_complex_weight_decay_acts_on_the_real_view():
    w0 = np.array([1 + 2j, -3 - 0.5j], dtype=np.complex64)
    g = np.array([0.5 - 1j, 2 + 0.25j], dtype=np.complex64)
    p = refoptim.Parameter(w0.copy())
    opt = NAdam([p], lr=0.1, weight_decay=0.3)
    p.grad = g.copy()
    opt.step()
    r = refoptim.Parameter(w0.copy().view(np.float32).reshape(2, 2))
    opt_r = NAdam([r], lr=0.1, weight_decay=0.3)
    r.grad = g.copy().view(np.float32).reshape(2, 2)
    opt_r.step()
    assert_bitwise_equal(to_np(p.data).view(np.float32).reshape(2, 2), r.data)
    assert_bitwise_equal(to_np(opt.state[p]["exp_avg_sq"]).view(np.float32).reshape(2, 2),
                         opt_r.state[r]["exp_avg_sq"])


# ============================================================================ quirks: RAdam
def _radam_run(betas, eps, steps):
    init, grads = make_sequence(8, (6,), "float64", steps)
    out = []
    p = refoptim.Parameter(init.copy())
    opt = RAdam([p], lr=0.01, betas=betas, eps=eps)
    for g in grads:
        p.grad = g.copy()
        opt.step()
        out.append(to_np(p.data))
    return out


@pytest.mark.parametrize("betas,first_rectified", [((0.9, 0.999), 6), ((0.9, 0.9), 6), ((0.9, 0.7), 10)])
def test_radam_rectifies_only_once_rho_t_exceeds_5(betas, first_rectified):
    # eps only enters the rectified step: two eps agree exactly until it begins
    small = _radam_run(betas, 1e-8, first_rectified)
    huge = _radam_run(betas, 1e6, first_rectified)
    for t in range(first_rectified - 1):
        assert_bitwise_equal(small[t], huge[t], f"step {t + 1}")
    assert not np.array_equal(small[-1], huge[-1])


def test_radam_never_rectifies_when_rho_inf_is_at_most_5():
    # beta2 = 0.6: rho_inf = 4, the step is momentum SGD for ever
    small = _radam_run((0.9, 0.6), 1e-8, 40)
    huge = _radam_run((0.9, 0.6), 1e6, 40)
    assert_bitwise_equal(small[-1], huge[-1])


def test_radam_unrectified_step_is_bias_corrected_momentum():
    w0, g = np.array([1.0, -1.0]), np.array([2.0, -0.5])
    p = refoptim.Parameter(w0.copy())
    opt = RAdam([p], lr=0.1)
    p.grad = g.copy()
    opt.step()
    m = (1 - 0.9) * g  # lerp from zero, weight 1 - beta1
    assert_bitwise_equal(p.data, w0 - (m / (1 - 0.9)) * 0.1)


# ============================================================================ quirks: RMSprop
def test_rmsprop_step_is_counted_but_never_used():
    init, grads = make_sequence(9, (5,), "float32", 4)
    runs = []
    for start in (0.0, 1e7):
        p = refoptim.Parameter(init.copy())
        opt = RMSprop([p], lr=0.01, centered=True, momentum=0.9)
        p.grad = grads[0].copy()
        opt.step()
        opt.state[p]["step"] = np.asarray(start, dtype=np.float32)
        for g in grads[1:]:
            p.grad = g.copy()
            opt.step()
        assert float(opt.state[p]["step"]) == start + 3
        runs.append((to_np(p.data), {k: to_np(v) for k, v in opt.state[p].items() if k != "step"}))
    assert_bitwise_equal(runs[0][0], runs[1][0])
    assert_state_equal(runs[0][1], runs[1][1])


def test_rmsprop_eps_outside_the_root_and_no_bias_correction():
    w0, g = np.array([1.0, -1.0]), np.array([2.0, -0.5])
    p = refoptim.Parameter(w0.copy())
    opt = RMSprop([p], lr=0.01, alpha=0.9, eps=0.5)
    p.grad = g.copy()
    opt.step()
    v = 0.1 * g * g
    assert_bitwise_equal(p.data, w0 + (-0.01 * g) / (np.sqrt(v) + 0.5))


def test_rmsprop_state_is_decided_at_the_first_step():
    p = refoptim.Parameter(np.ones(2))
    opt = RMSprop([p])
    p.grad = np.ones(2)
    opt.step()
    opt.param_groups[0]["momentum"] = 0.9
    with pytest.raises(KeyError, match="momentum_buffer"):
        opt.step()


# ============================================================================ quirks: Rprop
def _rprop_run(lr_change_at, steps=6, dtype="float32"):
    init, grads = make_sequence(10, (8,), dtype, steps)
    p = refoptim.Parameter(init.copy())
    opt = Rprop([p], lr=0.01)
    for t, g in enumerate(grads):
        if t == lr_change_at:
            opt.param_groups[0]["lr"] = 0.5
        p.grad = g.copy()
        opt.step()
    return to_np(p.data), {k: to_np(v) for k, v in opt.state[p].items()}


@pytest.mark.parametrize("dtype", DTYPES)
def test_rprop_ignores_a_changed_lr_after_the_first_step(dtype):
    p_plain, s_plain = _rprop_run(lr_change_at=None, dtype=dtype)
    p_later, s_later = _rprop_run(lr_change_at=1, dtype=dtype)
    assert_bitwise_equal(p_plain, p_later)
    assert_state_equal(s_plain, s_later)
    # before the first step, the lr seeds the step sizes
    p_first, _ = _rprop_run(lr_change_at=0, dtype=dtype)
    assert not np.array_equal(p_plain, p_first)


def test_rprop_etas_and_sign_flip_by_hand():
    p = refoptim.Parameter(np.zeros(3))
    opt = Rprop([p], lr=0.1, etas=(0.5, 1.2))
    st = lambda: opt.state[p]  # noqa: E731 (reads the current state)
    p.grad = np.array([1.0, -1.0, 0.0])
    opt.step()  # prev = 0: sign 0, factor 1 everywhere
    np.testing.assert_array_equal(p.data, [-0.1, 0.1, 0.0])
    np.testing.assert_array_equal(st()["step_size"], [0.1, 0.1, 0.1])
    p.grad = np.array([2.0, 1.0, 5.0])
    opt.step()  # same sign: *1.2; flipped: *0.5 and gradient zeroed; prev 0: unchanged
    np.testing.assert_array_equal(st()["step_size"], [0.1 * 1.2, 0.1 * 0.5, 0.1])
    np.testing.assert_array_equal(st()["prev"], [2.0, 0.0, 5.0])
    np.testing.assert_array_equal(p.data, [-0.1 - 0.1 * 1.2, 0.1, -0.1])  # element 1 did not move
    p.grad = np.array([-1.0, 1.0, 3.0])
    opt.step()  # element 1: prev was zeroed, so no flip can be seen: factor 1
    np.testing.assert_array_equal(st()["step_size"], [0.1 * 1.2 * 0.5, 0.1 * 0.5, 0.1 * 1.2])
    np.testing.assert_array_equal(st()["prev"], [0.0, 1.0, 3.0])


def test_rprop_step_sizes_clamp():
    p = refoptim.Parameter(np.zeros(2))
    opt = Rprop([p], lr=1.0, etas=(0.5, 1.2), step_sizes=(0.6, 1.1))
    for g in ([1.0, 1.0], [1.0, -1.0], [1.0, 1.0], [1.0, 1.0]):
        p.grad = np.array(g)
        opt.step()
    # element 0 grew 1.0 -> 1.2 clamped to 1.1; element 1 shrank 1.0 -> 0.5 clamped to 0.6
    np.testing.assert_array_equal(opt.state[p]["step_size"], [1.1, 0.6 * 1.2])
    # min > max: the clamp is min(max(x, lo), hi), so every step size is hi
    q = refoptim.Parameter(np.zeros(2))
    opt = Rprop([q], lr=0.01, step_sizes=(0.1, 0.01))
    q.grad = np.array([1.0, -1.0])
    opt.step()
    np.testing.assert_array_equal(opt.state[q]["step_size"], [0.01, 0.01])
    np.testing.assert_array_equal(q.data, [-0.01, 0.01])


def test_rprop_complex_is_two_real_numbers():
    p = refoptim.Parameter(np.zeros(2, dtype=np.complex64))
    opt = Rprop([p], lr=0.1)
    p.grad = np.array([1 + 0j, -1 + 1j], dtype=np.complex64)
    opt.step()
    assert opt.state[p]["step_size"].dtype == np.complex64
    np.testing.assert_array_equal(opt.state[p]["step_size"], np.full(2, np.complex64(0.1 + 0.1j)))
    # a zero imaginary gradient does not move the imaginary part; the others move by lr
    np.testing.assert_array_equal(p.data, np.array([-0.1 + 0j, 0.1 - 0.1j], dtype=np.complex64))


def test_rprop_step_is_counted_and_a_tiny_product_counts_as_zero():
    p = refoptim.Parameter(np.zeros(1, dtype=np.float32))
    opt = Rprop([p], lr=0.1)
    p.grad = np.array([1e-30], dtype=np.float32)
    opt.step()
    p.grad = np.array([1e-30], dtype=np.float32)
    opt.step()  # 1e-30 * 1e-30 underflows to 0 in float32: no growth
    assert float(opt.state[p]["step"]) == 2.0
    np.testing.assert_array_equal(opt.state[p]["step_size"], np.array([0.1], dtype=np.float32))


# ============================================================================ docstrings
@pytest.mark.parametrize("cls", CLASSES)
def test_docstring_has_math_quirks_and_flags(cls):
    doc = cls.__doc__
    assert ".. math::" in doc
    assert "Torch quirks reproduced" in doc
    for flag in ("foreach", "capturable", "differentiable"):
        assert flag in doc


@pytest.mark.parametrize("fn", [nadam_init, nadam_step, radam_init, radam_step, rmsprop_init, rmsprop_step,
                                rprop_init, rprop_step])
def test_functions_have_docstrings(fn):
    assert inspect.getdoc(fn)


def test_rprop_skips_a_nan_gradient_as_torch_does():
    # torch's sign(NaN) is 0: the NaN element keeps its step size and does not move; the
    # NaN is stored in prev, so the next sign test there is 0 too (values from torch).
    p = refoptim.Parameter(np.array([1.0, 2.0, 3.0]))
    opt = Rprop([p], lr=0.1)
    expected = [
        ([0.9, 1.9, 2.9], [0.1, 0.1, 0.1], [1.0, 1.0, 1.0]),
        ([0.9, 1.7799999999999998, 2.78], [0.1, 0.12, 0.12], [np.nan, 1.0, np.inf]),
        ([0.8, 1.636, 2.6359999999999997], [0.1, 0.144, 0.144], [1.0, 1.0, 1.0]),
        ([0.68, 1.4631999999999998, 2.4631999999999996], [0.12, 0.17279999999999998, 0.17279999999999998],
         [1.0, 1.0, 1.0]),
    ]
    grads = ([1.0, 1.0, 1.0], [np.nan, 1.0, np.inf], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0])
    with np.errstate(invalid="ignore"):
        for g, (param, step_size, prev) in zip(grads, expected):
            p.grad = np.array(g)
            opt.step()
            np.testing.assert_array_equal(p.data, param)
            np.testing.assert_array_equal(opt.state[p]["step_size"], step_size)
            np.testing.assert_array_equal(opt.state[p]["prev"], prev)
