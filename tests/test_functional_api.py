"""The functional API (``refoptim.functional``) as a framework author uses it.

* every keyword of every ``*_step`` and ``*_init`` defaults to the class constructor's
  default (read from the class's signature here, so the two cannot drift apart);
* a step with no keywords is bit for bit the class's step with no arguments;
* ``sgd_init`` and ``adamw_init``;
* ``lbfgs_step`` over a flat vector is bit for bit ``refoptim.LBFGS`` (parameters, state,
  returned loss), which calls it: one code path.

No torch here.
"""

import inspect

import numpy as np
import pytest
import _immutable
from _immutable import ImmutableArray
from _support import NAMESPACES, as_xp, assert_bitwise_equal, to_np

import refoptim
import refoptim.lbfgs
from refoptim import functional as F
from refoptim import registry
from refoptim._backend import is_array

OPTIMIZERS = {
    n: getattr(refoptim, n)
    for n in refoptim.__all__
    if isinstance(getattr(refoptim, n), type) and issubclass(getattr(refoptim, n), refoptim.Optimizer) and n != "Optimizer"
}

# The functional names of each optimizer: (step, init), from its registry entry.
RULES = {info.name: (info.rules[1], info.rules[0]) for info in registry.OPTIMIZERS}

# A rule's keyword that is one half of a constructor argument: name -> (argument, index).
HALVES = {
    "beta1": ("betas", 0),
    "beta2": ("betas", 1),
    "etaminus": ("etas", 0),
    "etaplus": ("etas", 1),
    "step_size_min": ("step_sizes", 0),
    "step_size_max": ("step_sizes", 1),
    "eps1": ("eps", 0),
    "eps2": ("eps", 1),
}

# Constructor flags that only pick one of torch's implementations: no rule takes them.
FLAGS = {"foreach", "fused", "capturable", "differentiable"}

# What a rule's function takes that is not a hyper-parameter.
OPERANDS = {"param", "grad", "state", "x", "loss_and_grad"}


def _class_defaults(cls):
    return {
        name: p.default
        for name, p in inspect.signature(cls).parameters.items()
        if name != "params" and name not in FLAGS
    }


def _expected(class_defaults, name):
    """The class default a rule's keyword ``name`` must have."""
    if name in HALVES:
        arg, index = HALVES[name]
        return class_defaults[arg][index]
    return class_defaults[name]


def _same(a, b):
    return type(a) is type(b) and a == b


# ============================================================================ defaults
def test_every_optimizer_has_its_rules_exported():
    assert sorted(RULES) == sorted(OPTIMIZERS)
    for step, init in RULES.values():
        assert step in F.__all__ and init in F.__all__
        assert callable(getattr(F, step)) and callable(getattr(F, init))


@pytest.mark.parametrize("name", sorted(RULES))
def test_rule_defaults_are_the_constructors(name):
    cls = OPTIMIZERS[name]
    class_defaults = _class_defaults(cls)
    assert inspect.Parameter.empty not in class_defaults.values()
    covered = set()
    for fn_name in RULES[name]:
        fn = getattr(F, fn_name)
        for pname, p in inspect.signature(fn).parameters.items():
            if pname in OPERANDS:
                assert p.default is inspect.Parameter.empty, (fn_name, pname)
                continue
            assert p.default is not inspect.Parameter.empty, f"{fn_name}: {pname} has no default"
            expected = _expected(class_defaults, pname)
            assert _same(p.default, expected), f"{fn_name}({pname}={p.default!r}), {name}: {expected!r}"
            covered.add(HALVES[pname][0] if pname in HALVES else pname)
    # Every hyper-parameter of the constructor reaches the rule (step or init); AdamW's
    # decoupled_weight_decay is not an argument of AdamW, as in torch.
    assert set(class_defaults) - covered == set(), name


@pytest.mark.parametrize("name", sorted(RULES))
def test_step_hyperparameters_are_keyword_only(name):
    step = getattr(F, RULES[name][0])
    for pname, p in inspect.signature(step).parameters.items():
        if pname not in OPERANDS:
            assert p.kind is inspect.Parameter.KEYWORD_ONLY, (step.__name__, pname)


def test_adamw_defaults_are_adamws_not_adams():
    assert inspect.signature(F.adamw_step).parameters["weight_decay"].default == 1e-2
    assert inspect.signature(F.adam_step).parameters["weight_decay"].default == 0
    assert "decoupled_weight_decay" not in inspect.signature(F.adamw_step).parameters


# ============================================================================ no keywords = the class
# The rules over one parameter and a dense gradient (Muon's and Adafactor's too): not
# LBFGS's (one flat vector and a loss function) nor SparseAdam's (sparse gradients).
ELEMENTWISE = sorted(set(RULES) - {"LBFGS", "SparseAdam"})


def _run_class(cls, init, grads):
    p = refoptim.Parameter(np.array(init, copy=True))
    opt = cls([p])
    for g in grads:
        p.grad = np.array(g, copy=True)
        opt.step()
    return p.data, opt.state.get(p, {})


def _assert_states_equal(a, b):
    assert list(a) == list(b)
    for key in a:
        if is_array(a[key]):
            assert_bitwise_equal(a[key], b[key], key)
        else:
            assert _same(a[key], b[key]), key


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_step_without_keywords_is_the_class_with_defaults(name, dtype):
    rng = np.random.default_rng(3)
    init = rng.standard_normal((3, 4)).astype(dtype)  # 2-D, for Muon
    grads = [rng.standard_normal((3, 4)).astype(dtype) for _ in range(4)]
    step, make_state = getattr(F, RULES[name][0]), getattr(F, RULES[name][1])
    w = np.array(init, copy=True)
    state = make_state(w)
    for g in grads:
        w = step(w, np.array(g, copy=True), state)
    p, class_state = _run_class(OPTIMIZERS[name], init, grads)
    assert_bitwise_equal(w, p, name)
    _assert_states_equal(state, class_state)
    assert not np.array_equal(w, init)  # the steps moved it


def test_adam_step_without_keywords_is_adams():
    rng = np.random.default_rng(0)
    w = rng.standard_normal(5)
    p = refoptim.Parameter(w.copy())
    opt = refoptim.Adam([p])
    state = F.adam_init(w)
    for _ in range(5):
        g = rng.standard_normal(5)
        w = F.adam_step(w, g.copy(), state)
        p.grad = g.copy()
        opt.step()
    assert_bitwise_equal(w, p.data)
    _assert_states_equal(state, opt.state[p])
    # and the defaults matter: another lr gives another parameter
    w2, s2 = p.data.copy(), F.adam_init(p.data)
    assert not np.array_equal(F.adam_step(w2.copy(), g, dict(s2), lr=1e-2), F.adam_step(w2.copy(), g, dict(s2)))


def test_sparse_adam_step_without_keywords_is_the_class():
    rng = np.random.default_rng(5)
    init = rng.standard_normal((4, 3))
    rows = [[0, 2], [1, 2, 3], [2]]
    grads = [refoptim.SparseGrad(np.array([r], dtype=np.int64), rng.standard_normal((len(r), 3)), (4, 3))
             for r in rows]
    w = init.copy()
    state = F.sparse_adam_init(w)
    for g in grads:
        w = F.sparse_adam_step(w, g, state)
    p = refoptim.Parameter(init.copy())
    opt = refoptim.SparseAdam([p])
    for g in grads:
        p.grad = g
        opt.step()
    assert_bitwise_equal(w, p.data)
    _assert_states_equal(state, opt.state[p])


# ============================================================================ sgd_init, adamw_init
@pytest.mark.parametrize("momentum", [0, 0.9])
def test_sgd_init_is_empty_and_the_buffer_comes_at_the_first_step(xp, momentum):
    w = as_xp(xp, np.array([1.0, -2.0, 3.0]))
    state = F.sgd_init(w, momentum=momentum)
    assert state == {}
    assert F.sgd_init(w) == {}
    g = as_xp(xp, np.array([0.5, 0.25, -1.0]))
    w = F.sgd_step(w, g, state, lr=0.1, momentum=momentum, dampening=0.5)
    if momentum:
        assert list(state) == ["momentum_buffer"]
        # torch's first buffer is the gradient itself, not zeros: dampening skipped
        assert_bitwise_equal(state["momentum_buffer"], g)
    else:
        assert state == {}


def test_sgd_init_then_steps_equal_the_class():
    rng = np.random.default_rng(1)
    init = rng.standard_normal(6)
    grads = [rng.standard_normal(6) for _ in range(4)]
    cfg = dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01)
    w, state = init.copy(), F.sgd_init(init, momentum=0.9)
    for g in grads:
        w = F.sgd_step(w, g.copy(), state, **cfg)
    p = refoptim.Parameter(init.copy())
    opt = refoptim.SGD([p], **cfg)
    for g in grads:
        p.grad = g.copy()
        opt.step()
    assert_bitwise_equal(w, p.data)
    _assert_states_equal(state, opt.state[p])


def test_sgd_init_wants_an_array():
    with pytest.raises(TypeError):
        F.sgd_init([1.0, 2.0])


@pytest.mark.parametrize("amsgrad", [False, True])
def test_adamw_init_is_adams_state(xp, amsgrad):
    w = as_xp(xp, np.ones((2, 3), dtype=np.float32))
    state, adam = F.adamw_init(w, amsgrad=amsgrad), F.adam_init(w, amsgrad)
    assert list(state) == list(adam) == ["step", "exp_avg", "exp_avg_sq"] + (["max_exp_avg_sq"] if amsgrad else [])
    for key in state:
        assert_bitwise_equal(state[key], adam[key], key)
    assert state["step"].dtype == xp.float32 and state["step"].shape == ()
    assert "max_exp_avg_sq" not in F.adamw_init(w)


def test_adamw_init_and_step_without_keywords_equal_adamw():
    rng = np.random.default_rng(2)
    init = rng.standard_normal(5)
    grads = [rng.standard_normal(5) for _ in range(4)]
    w, state = init.copy(), F.adamw_init(init)
    for g in grads:
        w = F.adamw_step(w, g.copy(), state)
    p, class_state = _run_class(refoptim.AdamW, init, grads)
    assert_bitwise_equal(w, p)
    _assert_states_equal(state, class_state)
    # AdamW's default decay acts: without it the result differs
    w0, s0 = init.copy(), F.adamw_init(init)
    for g in grads:
        w0 = F.adamw_step(w0, g.copy(), s0, weight_decay=0)
    assert not np.array_equal(w0, w)


# ============================================================================ L-BFGS
def quadratic(dtype):
    curv = np.asarray(10.0 ** np.linspace(-1, 1.5, 7), dtype=dtype)
    center = np.linspace(-1, 1, 7).astype(dtype)

    def objective(x):
        r = x - center
        return float(np.sum(curv * r * r)) / 2, curv * r

    return objective, np.zeros(7, dtype=dtype)


def rosenbrock(dtype):
    def objective(x):
        a, b = x[:-1], x[1:]
        loss = float(np.sum(100 * (b - a * a) ** 2 + (1 - a) ** 2))
        g = np.zeros_like(x)
        g[:-1] = -400 * a * (b - a * a) - 2 * (1 - a)
        g[1:] += 200 * (b - a * a)
        return loss, g.astype(dtype)

    x0 = np.array([-1.2, 1.0, -1.2, 1.0, 0.5, -0.5], dtype=dtype)
    return objective, x0


PROBLEMS = {"quadratic": quadratic, "rosenbrock": rosenbrock}
SHAPES = {"quadratic": [(3,), (2, 2)], "rosenbrock": [(6,)]}
OPTIONS = [
    {"max_iter": 5},
    {"max_iter": 5, "line_search_fn": "strong_wolfe"},
    {"max_iter": 4, "history_size": 3, "line_search_fn": "strong_wolfe", "lr": 0.5},
    {"max_iter": 7, "history_size": 2, "lr": 0.2},
]


def _run_lbfgs_class(objective, x0, shapes, options, steps):
    """``refoptim.LBFGS`` over parameters of ``shapes`` (their flat concatenation is x)."""
    params, offset = [], 0
    for s in shapes:
        n = int(np.prod(s))
        params.append(refoptim.Parameter(x0[offset:offset + n].reshape(s).copy()))
        offset += n
    opt = refoptim.LBFGS(params, **options)

    def closure():
        flat = np.concatenate([p.data.reshape(-1) for p in params])
        loss, g = objective(flat)
        offset = 0
        for p in params:
            p.grad = g[offset:offset + p.data.size].reshape(p.data.shape).copy()
            offset += p.data.size
        return loss

    losses = [opt.step(closure) for _ in range(steps)]
    x = np.concatenate([p.data.reshape(-1) for p in params])
    return x, opt.state[params[0]], losses


def _run_lbfgs_rule(objective, x0, options, steps, state=None):
    x = x0.copy()
    state = F.lbfgs_init(x) if state is None else state
    losses = []
    for _ in range(steps):
        x, loss = F.lbfgs_step(x, objective, state, **options)
        losses.append(loss)
    return x, state, losses


def _assert_lbfgs_states_equal(a, b):
    assert list(a) == list(b)
    for key in a:
        va, vb = a[key], b[key]
        if isinstance(va, list):
            assert len(va) == len(vb), key
            for i, (ea, eb) in enumerate(zip(va, vb)):
                if ea is None or eb is None:
                    assert ea is None and eb is None, (key, i)
                else:
                    assert_bitwise_equal(ea, eb, f"{key}[{i}]")
        elif is_array(va):
            assert is_array(vb), key
            assert_bitwise_equal(va, vb, key)
        else:
            assert _same(va, vb), (key, va, vb)


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_lbfgs_step_is_the_class_bit_for_bit(problem, dtype, options):
    objective, x0 = PROBLEMS[problem](dtype)
    steps = 4
    x_class, state_class, losses_class = _run_lbfgs_class(objective, x0, SHAPES[problem], options, steps)
    x_rule, state_rule, losses_rule = _run_lbfgs_rule(objective, x0, options, steps)
    assert_bitwise_equal(x_rule, x_class, "x")
    _assert_lbfgs_states_equal(state_rule, state_class)
    assert [type(v) for v in losses_rule] == [type(v) for v in losses_class]
    assert losses_rule == losses_class
    # the steps did something: moved x, counted, kept a history
    assert not np.array_equal(x_rule, x0)
    assert state_rule["n_iter"] > steps and len(state_rule["old_dirs"]) >= 1


def test_lbfgs_step_finds_rosenbrocks_minimiser():
    objective, x0 = rosenbrock("float64")
    x, _, _ = _run_lbfgs_rule(objective, x0, {"line_search_fn": "strong_wolfe", "max_iter": 100}, 3)
    np.testing.assert_allclose(x, np.ones(6), atol=1e-4)
    assert objective(x)[0] < 1e-10 < objective(x0)[0]


def test_lbfgs_init_state_and_an_empty_dict_give_the_same_step():
    objective, x0 = quadratic("float64")
    assert F.lbfgs_init(x0) == {"func_evals": 0, "n_iter": 0}
    xa, sa, _ = _run_lbfgs_rule(objective, x0, {"max_iter": 3}, 2)
    xb, sb, _ = _run_lbfgs_rule(objective, x0, {"max_iter": 3}, 2, state={})
    assert_bitwise_equal(xa, xb)
    _assert_lbfgs_states_equal(sa, sb)


def test_lbfgs_class_calls_the_rule(monkeypatch):
    """The class runs the body of lbfgs_step (one code path), with its settle hook."""
    calls = []
    body = refoptim.lbfgs._lbfgs

    def spy(x, loss_and_grad, state, **options):
        calls.append(options)
        return body(x, loss_and_grad, state, **options)

    monkeypatch.setattr(refoptim.lbfgs, "_lbfgs", spy)
    objective, x0 = quadratic("float64")
    _run_lbfgs_class(objective, x0, [(7,)], {"max_iter": 3, "history_size": 4}, 2)
    assert len(calls) == 2
    settle = calls[0].pop("settle")
    assert calls[0] == dict(lr=1, max_iter=3, max_eval=3, tolerance_grad=1e-7, tolerance_change=1e-9,
                            history_size=4, line_search_fn=None)
    assert settle is None  # one dtype: nothing to round between moves
    calls.clear()
    # float32 beside float64: the class rounds the float32 part at every move
    params = [refoptim.Parameter(np.ones(3, dtype=np.float32)), refoptim.Parameter(np.ones(2))]

    def closure():
        for p in params:
            p.grad = 2 * p.data
        return float(sum(np.sum(p.data.astype(np.float64) ** 2) for p in params))

    refoptim.LBFGS(params, max_iter=3).step(closure)
    settle = calls[0]["settle"]
    assert settle is not None
    assert settle(np.array([1 / 3, 1 / 3, 1 / 3, 1 / 3, 1 / 3]))[:3].tolist() == [float(np.float32(1 / 3))] * 3
    calls.clear()
    x = x0.copy()
    F.lbfgs_step(x, objective, F.lbfgs_init(x), max_iter=3)  # the public rule: the same body
    assert len(calls) == 1 and calls[0]["settle"] is None


def test_lbfgs_step_updates_numpy_in_place_and_returns_the_first_loss():
    objective, x0 = quadratic("float64")
    x = x0.copy()
    out, loss = F.lbfgs_step(x, objective, F.lbfgs_init(x), max_iter=3)
    assert out is x and not np.array_equal(x, x0)
    assert loss == objective(x0)[0]


def test_lbfgs_step_returns_the_loss_object_unchanged():
    marker = np.asarray(42.0)
    objective, x0 = quadratic("float64")
    _, loss = F.lbfgs_step(x0.copy(), lambda x: (marker, objective(x)[1]), {}, max_iter=2)
    assert loss is marker


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_lbfgs_step_on_immutable_arrays_matches_numpy(line_search_fn, monkeypatch):
    # the reductions L-BFGS needs beyond the elementwise rules' (the stand-in lacks them)
    for name in ("max", "concat", "cumulative_sum", "vecdot"):
        monkeypatch.setattr(_immutable.namespace, name, _immutable._delegate(name), raising=False)
    objective, x0 = rosenbrock("float64")

    def immutable_objective(x):
        loss, g = objective(x.unwrap())
        return loss, ImmutableArray(g)

    options = {"max_iter": 6, "line_search_fn": line_search_fn}
    x_np, s_np, _ = _run_lbfgs_rule(objective, x0, options, 3)
    x = ImmutableArray(x0)
    state = F.lbfgs_init(x)
    for _ in range(3):
        x, _ = F.lbfgs_step(x, immutable_objective, state, **options)
    assert isinstance(x, ImmutableArray)
    assert_bitwise_equal(x, x_np)
    _assert_lbfgs_states_equal(
        {k: (to_np(v) if hasattr(v, "unwrap") else [to_np(e) if hasattr(e, "unwrap") else e for e in v]
             if isinstance(v, list) else v) for k, v in state.items()},
        s_np,
    )


@pytest.mark.parametrize("name", sorted(NAMESPACES))
def test_lbfgs_step_agrees_across_namespaces(name):
    xp = NAMESPACES[name]
    objective, x0 = rosenbrock("float32")

    def xp_objective(x):
        loss, g = objective(to_np(x))
        return loss, as_xp(xp, g)

    options = {"max_iter": 5, "line_search_fn": "strong_wolfe"}
    x_np, _, _ = _run_lbfgs_rule(objective, x0, options, 2)
    x = as_xp(xp, x0)
    state = {}
    for _ in range(2):
        x, _ = F.lbfgs_step(x, xp_objective, state, **options)
    assert_bitwise_equal(x, x_np)


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_lbfgs_step_that_raises_leaves_x_and_state_alone(line_search_fn):
    objective, x0 = rosenbrock("float64")
    options = {"max_iter": 6, "line_search_fn": line_search_fn}
    x, state, _ = _run_lbfgs_rule(objective, x0, options, 1)
    x_before = x.copy()
    snapshot = {k: (list(v) if isinstance(v, list) else v) for k, v in state.items()}
    calls = []

    def flaky(point):
        calls.append(1)
        if len(calls) == 3:
            raise KeyError("boom")
        return objective(point)

    with pytest.raises(KeyError):
        F.lbfgs_step(x, flaky, state, **options)
    assert len(calls) == 3
    assert_bitwise_equal(x, x_before)
    assert list(state) == list(snapshot)
    for key, value in snapshot.items():
        if isinstance(value, list):
            assert len(state[key]) == len(value) and all(a is b for a, b in zip(state[key], value)), key
        else:
            assert state[key] is value, key
    # and the same step without the failure continues as if nothing happened
    x_good, _ = F.lbfgs_step(x, objective, state, **options)
    x_ref, s_ref, _ = _run_lbfgs_rule(objective, x0, options, 2)
    assert_bitwise_equal(x_good, x_ref)
    _assert_lbfgs_states_equal(state, s_ref)


def test_lbfgs_step_checks_its_vectors():
    objective, x0 = quadratic("float64")
    with pytest.raises(ValueError, match="1-d"):
        F.lbfgs_step(x0.reshape(7, 1), objective, {})
    with pytest.raises(TypeError, match="real floating"):
        F.lbfgs_init(x0.astype(np.complex128))
    x = x0.copy()
    state = F.lbfgs_init(x)
    with pytest.raises(ValueError, match="gradient of shape"):
        F.lbfgs_step(x, lambda v: (objective(v)[0], objective(v)[1][:3]), state)
    with pytest.raises(ValueError, match="dtype"):
        F.lbfgs_step(x, lambda v: (objective(v)[0], objective(v)[1].astype(np.float32)), state)
    assert state == {"func_evals": 0, "n_iter": 0} and np.array_equal(x, x0)


def test_lbfgs_step_keeps_torchs_errors():
    objective, x0 = quadratic("float64")
    with pytest.raises(RuntimeError, match="only 'strong_wolfe' is supported"):
        F.lbfgs_step(x0.copy(), objective, {}, line_search_fn="foo")
    with pytest.raises(IndexError, match="pop from empty list"):
        F.lbfgs_step(x0.copy(), objective, {}, history_size=0)
