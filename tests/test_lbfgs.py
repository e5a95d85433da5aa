"""LBFGS: torch 2.13's signature, defaults, validation, state layout, closure protocol and
quirks; one code path on NumPy and array-api-strict; known minimisers.

No torch here: every expected exception, default and counter below was read from torch
2.13.0 (CPU) by running the same thing on ``torch.optim.LBFGS``.
"""

import copy
import inspect
import pickle

import numpy as np
import pytest
from _support import NAMESPACES, as_xp, assert_bitwise_equal, cnp, to_np

from refoptim import Parameter
from refoptim.lbfgs import LBFGS, cubic_interpolate


def quadratic(params, a, c):
    """A closure over ``f = sum a/2 (x - c)^2`` on one parameter: sets ``.grad``, returns f."""
    (p,) = params

    def closure():
        r = p.data - c
        p.grad = a * r
        return float(np.sum(to_np(a * r * r))) / 2

    return closure


# ============================================================================ signature
def test_signature_and_defaults_are_torchs():
    sig = inspect.signature(LBFGS.__init__)
    assert list(sig.parameters) == [
        "self", "params", "lr", "max_iter", "max_eval", "tolerance_grad", "tolerance_change",
        "history_size", "line_search_fn",
    ]
    defaults = {k: v.default for k, v in sig.parameters.items() if k not in ("self", "params")}
    assert defaults == {"lr": 1, "max_iter": 20, "max_eval": None, "tolerance_grad": 1e-7, "tolerance_change": 1e-9,
                            "history_size": 100, "line_search_fn": None}
    assert list(inspect.signature(LBFGS.step).parameters) == ["self", "closure"]


@pytest.mark.parametrize("max_iter, max_eval", [(20, 25), (7, 8), (1, 1), (3, 3), (0, 0), (-1, -2)])
def test_max_eval_default_is_max_iter_times_5_floordiv_4(max_iter, max_eval):
    opt = LBFGS([Parameter(np.zeros(2))], max_iter=max_iter)
    assert opt.param_groups[0]["max_eval"] == max_eval
    assert opt.defaults == {"lr": 1, "max_iter": max_iter, "max_eval": max_eval, "tolerance_grad": 1e-7,
                                "tolerance_change": 1e-9, "history_size": 100, "line_search_fn": None}


# ============================================================================ validation
@pytest.mark.parametrize(
    "kwargs, exc, message",
    [
        ({"lr": -1}, ValueError, "Invalid learning rate: -1"),
        ({"lr": -0.5}, ValueError, "Invalid learning rate: -0.5"),
        ({"lr": float("nan")}, ValueError, "Invalid learning rate: nan"),
        ({"lr": np.asarray([1.0, 2.0])}, ValueError, "Tensor lr must be 1-element"),
    ],
)
def test_constructor_errors_are_torchs(kwargs, exc, message):
    with pytest.raises(exc) as info:
        LBFGS([Parameter(np.zeros(3))], **kwargs)
    assert type(info.value) is exc and str(info.value) == message


def test_accepted_like_torch_without_checks():
    # torch checks none of these in the constructor
    for kwargs in ({"max_iter": -1}, {"history_size": 0}, {"line_search_fn": "foo"}, {"tolerance_grad": -1.0}):
        LBFGS([Parameter(np.zeros(3))], **kwargs)


def test_several_groups_are_refused_with_torchs_message():
    with pytest.raises(ValueError) as info:
        LBFGS([{"params": [Parameter(np.zeros(2))]}, {"params": [Parameter(np.zeros(3))]}])
    assert str(info.value) == "LBFGS doesn't support per-parameter options (parameter groups)"
    with pytest.raises(ValueError, match="^optimizer got an empty parameter list$"):
        LBFGS([])


def test_group_added_later_fails_at_step_with_torchs_assertion():
    p = Parameter(np.ones(2))
    opt = LBFGS([p])
    opt.add_param_group({"params": [Parameter(np.zeros(3))]})
    with pytest.raises(AssertionError) as info:
        opt.step(quadratic([p], np.ones(2), np.zeros(2)))
    assert str(info.value) == "Expected exactly one param_group, but got 2"


def test_closure_is_required():
    p = Parameter(np.ones(2))
    opt = LBFGS([p])
    with pytest.raises(TypeError, match=r"missing 1 required positional argument: 'closure'"):
        opt.step()
    with pytest.raises(TypeError) as info:
        opt.step(None)
    assert str(info.value) == "'NoneType' object is not callable"
    assert len(opt.state) == 0  # torch leaves {'func_evals': 0, 'n_iter': 0}; refoptim nothing


def test_unknown_line_search_fn_raises_at_the_move_and_changes_nothing():
    p = Parameter(np.array([1.0, -2.0]))
    opt = LBFGS([p], line_search_fn="foo")
    closure = quadratic([p], np.ones(2), np.zeros(2))
    with pytest.raises(RuntimeError) as info:
        opt.step(closure)
    assert str(info.value) == "only 'strong_wolfe' is supported"
    assert len(opt.state) == 0 and np.array_equal(p.data, [1.0, -2.0])
    # ... but a step whose first gradient is already small enough returns, as in torch
    q = Parameter(np.zeros(2))
    opt = LBFGS([q], line_search_fn="foo")
    assert opt.step(quadratic([q], np.ones(2), np.zeros(2))) == 0.0
    assert opt.state[q] == {"func_evals": 1, "n_iter": 0}


def test_history_size_zero_fails_like_torch():
    p = Parameter(np.array([1.0, -2.0, 3.0]))
    opt = LBFGS([p], history_size=0)
    with pytest.raises(IndexError, match="pop from empty list"):
        opt.step(quadratic([p], np.array([1.0, 2.0, 3.0]), np.zeros(3)))
    assert np.array_equal(p.data, [1.0, -2.0, 3.0]) and len(opt.state) == 0


def test_bad_gradient_mid_step_restores_parameters_and_state(xp):
    p = Parameter(as_xp(xp, np.array([1.0, -2.0, 3.0])))
    a, c = as_xp(xp, np.array([1.0, 2.0, 3.0])), as_xp(xp, np.zeros(3))
    opt = LBFGS([p], max_iter=3)
    good = quadratic([p], a, c)
    opt.step(good)
    before_p = to_np(p.data)
    before_state = copy.deepcopy({k: (to_np(v) if hasattr(v, "shape") else v) for k, v in opt.state[p].items()
                                  if not isinstance(v, list)})
    lists = {k: len(v) for k, v in opt.state[p].items() if isinstance(v, list)}
    calls = []

    def bad():
        calls.append(1)
        loss = good()
        if len(calls) == 3:
            p.grad = as_xp(xp, np.zeros(2))  # wrong shape on the third evaluation
        return loss

    with pytest.raises(RuntimeError, match="size"):
        opt.step(bad)
    assert len(calls) == 3
    assert_bitwise_equal(p.data, before_p)
    state = opt.state[p]
    for k, v in before_state.items():
        if isinstance(v, np.ndarray):
            assert_bitwise_equal(state[k], v, k)
        else:
            assert state[k] == v, k
    assert {k: len(v) for k, v in state.items() if isinstance(v, list)} == lists


def test_closure_exception_inside_line_search_restores_parameters():
    p = Parameter(np.array([1.0, -2.0, 3.0]))
    good = quadratic([p], np.array([1.0, 2.0, 3.0]), np.zeros(3))
    opt = LBFGS([p], line_search_fn="strong_wolfe")
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 2:  # the line search's first trial point
            raise KeyError("boom")
        return good()

    with pytest.raises(KeyError):
        opt.step(flaky)
    assert np.array_equal(p.data, [1.0, -2.0, 3.0]) and len(opt.state) == 0


# ============================================================================ closure protocol
def test_step_returns_the_first_loss_unchanged(xp):
    p = Parameter(as_xp(xp, np.array([3.0, -1.0])))
    marker = xp.asarray(123.0)
    losses = []

    def closure():
        p.grad = 2 * p.data
        loss = xp.sum(p.data * p.data)
        losses.append(loss)
        return marker if len(losses) == 1 else loss

    opt = LBFGS([p], max_iter=5)
    assert opt.step(closure) is marker
    assert len(losses) == opt.state[p]["func_evals"]


def test_counters_without_line_search():
    # Quadratic 1-d: f = (x - 1)^2 / 2 from x = 5. Iteration 1: t = min(1, 1/4) = 0.25 ->
    # x = 4; iteration 2 (secant, exact on a quadratic) -> x = 1, gradient 0 -> stop.
    p = Parameter(np.array([5.0]))
    opt = LBFGS([p])
    loss = opt.step(quadratic([p], np.ones(1), np.ones(1)))
    assert loss == 8.0
    assert p.data.tolist() == [1.0]
    st = opt.state[p]
    assert (st["func_evals"], st["n_iter"]) == (3, 2)
    assert st["t"] == 1 and type(st["t"]) is int  # t = lr (the int default) after iteration 1
    assert st["prev_loss"] == 4.5 and type(st["prev_loss"]) is float
    assert len(st["old_dirs"]) == 1 and float(st["H_diag"]) == 1.0
    # the next step finds the gradient zero: one evaluation, no iteration
    opt.step(quadratic([p], np.ones(1), np.ones(1)))
    assert (st["func_evals"], st["n_iter"]) == (4, 2)


def test_last_iteration_of_max_iter_does_not_reevaluate():
    x0, a = np.array([5.0, -3.0, 1.0, 2.0, -1.0, 0.5]), np.array([1.0, 4.0, 2.0, 8.0, 0.5, 3.0])
    p = Parameter(x0.copy())
    opt = LBFGS([p], max_iter=3, max_eval=10, lr=0.1)
    opt.step(quadratic([p], a, np.zeros(6)))
    assert (opt.state[p]["func_evals"], opt.state[p]["n_iter"]) == (3, 3)  # 1 + 2, not 1 + 3
    # with the default max_eval = 3 * 5 // 4 = 3, the evaluations end the loop first
    p = Parameter(x0.copy())
    opt = LBFGS([p], max_iter=3, lr=0.1)
    opt.step(quadratic([p], a, np.zeros(6)))
    assert (opt.state[p]["func_evals"], opt.state[p]["n_iter"]) == (3, 2)


def test_max_eval_ends_the_loop():
    p = Parameter(np.array([5.0, -3.0]))
    opt = LBFGS([p], max_iter=10, max_eval=4, lr=0.1)
    opt.step(quadratic([p], np.array([1.0, 4.0]), np.zeros(2)))
    assert (opt.state[p]["func_evals"], opt.state[p]["n_iter"]) == (4, 3)


def test_first_step_length_is_min_one_over_l1_norm_times_lr():
    # max_iter=1: one move of t = min(1, 1/|g|_1) * lr along -g, with no re-evaluation.
    g0 = np.array([3.0, -1.0, 0.5])
    p = Parameter(g0.copy())
    opt = LBFGS([p], max_iter=1, lr=0.5)
    opt.step(quadratic([p], np.ones(3), np.zeros(3)))
    t = opt.state[p]["t"]
    assert isinstance(t, np.ndarray) and t.shape == () and float(t) == (1 / 4.5) * 0.5
    np.testing.assert_array_equal(p.data, g0 - float(t) * g0)
    assert opt.state[p]["H_diag"] == 1 and "al" not in opt.state[p]  # no second iteration
    # small gradient: t = 1 * lr, a Python float
    p = Parameter(np.array([0.1, -0.2]))
    opt = LBFGS([p], max_iter=1, lr=0.5)
    opt.step(quadratic([p], np.ones(2), np.zeros(2)))
    assert opt.state[p]["t"] == 0.5 and type(opt.state[p]["t"]) is float


def test_tolerance_grad_returns_at_once():
    p = Parameter(np.array([1e-8, -1e-8]))
    opt = LBFGS([p])
    opt.step(quadratic([p], np.ones(2), np.zeros(2)))
    assert opt.state[p] == {"func_evals": 1, "n_iter": 0}
    assert p.data.tolist() == [1e-8, -1e-8]


def test_history_rolls_over_and_al_has_history_size_entries():
    rng = np.random.default_rng(0)
    p = Parameter(rng.standard_normal(6))
    a = 10.0 ** rng.uniform(-1, 1, 6)
    opt = LBFGS([p], history_size=2, max_iter=6)
    opt.step(quadratic([p], a, np.zeros(6)))
    st = opt.state[p]
    assert st["n_iter"] == 6 and len(st["old_dirs"]) == len(st["old_stps"]) == len(st["ro"]) == 2
    assert len(st["al"]) == 2


def test_parameter_without_grad_counts_as_zero_gradient():
    a = Parameter(np.array([2.0, -1.0]))
    b = Parameter(np.array([1.0]))
    opt = LBFGS([a, b], max_iter=4)

    def closure():
        x = np.concatenate([a.data, b.data])
        a.grad = x[:2] + 0.5 * x[2]  # b's grad stays None; its flat-gradient part is 0
        return float(x[:2] @ x[:2]) / 2

    opt.step(closure)
    # torch 2.13: prev_flat_grad [1.6667, -0.3333, 0.0], b stays 1.0 (no history along it)
    np.testing.assert_allclose(opt.state[a]["prev_flat_grad"], [5 / 3, -1 / 3, 0.0], rtol=1e-12)
    assert opt.state[a]["prev_flat_grad"][2] == 0.0 and b.data.tolist() == [1.0]
    assert b not in opt.state


# ============================================================================ state layout
def test_state_layout_is_torchs():
    rng = np.random.default_rng(1)
    ps = [Parameter(rng.standard_normal(s).astype(np.float32)) for s in [(), (3,), (2, 2)]]
    opt = LBFGS(ps, max_iter=5, line_search_fn="strong_wolfe")

    def closure():
        loss = 0.0
        for p in ps:
            p.grad = (2 * p.data).astype(np.float32)
            loss += float(np.sum(p.data * p.data))
        return np.float32(loss)

    opt.step(closure)
    assert set(opt.state) == {ps[0]}
    st = opt.state[ps[0]]
    assert list(st) == ["func_evals", "n_iter", "al", "d", "t", "old_dirs", "old_stps", "ro", "H_diag",
                        "prev_flat_grad", "prev_loss"]
    assert type(st["func_evals"]) is int and type(st["n_iter"]) is int
    for key in ("d", "prev_flat_grad"):
        assert st[key].dtype == np.float32 and st[key].shape == (8,)
    assert all(v.shape == (8,) and v.dtype == np.float32 for v in st["old_dirs"] + st["old_stps"])
    assert all(isinstance(v, np.ndarray) and v.shape == () and v.dtype == np.float32 for v in st["ro"])
    assert len(st["al"]) == 100 and st["al"][0].dtype == np.float32 and st["al"][-1] is None
    assert isinstance(st["H_diag"], np.ndarray) and st["H_diag"].dtype == np.float32
    assert type(st["prev_loss"]) is float
    sd = opt.state_dict()
    assert list(sd["state"]) == [0]
    assert sd["param_groups"] == [{"lr": 1, "max_iter": 5, "max_eval": 6, "tolerance_grad": 1e-7, "tolerance_change": 1e-9,
                                       "history_size": 100, "line_search_fn": "strong_wolfe", "params": [0, 1, 2]}]


def _run(xp, dtype, steps, **options):
    rng = np.random.default_rng(7)
    shapes = [(), (5,), (3, 4), (0,)]
    values = [rng.standard_normal(s).astype(dtype) for s in shapes]
    if np.dtype(dtype).kind == "c":
        values = [(v + 1j * rng.standard_normal(v.shape)).astype(dtype) for v in values]
    curv = [np.asarray(10.0 ** rng.uniform(-1, 1, s), dtype=np.float32 if dtype != np.float64 else np.float64)
            for s in shapes]
    params = [Parameter(as_xp(xp, v)) for v in values]
    curv_x = [as_xp(xp, c) for c in curv]
    opt = LBFGS(params, **options)

    def closure():
        loss = 0.0
        for p, c in zip(params, curv_x):
            p.grad = p.data * c
            loss += float(xp.sum(xp.abs(p.data) ** 2 * c)) / 2
        return loss

    losses = [opt.step(closure) for _ in range(steps)]
    return params, opt, losses


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64])
@pytest.mark.parametrize("options", [{"max_iter": 6}, {"max_iter": 6, "line_search_fn": "strong_wolfe", "history_size": 3}])
def test_numpy_and_array_api_strict_agree_bitwise(dtype, options):
    np_params, np_opt, np_losses = _run(NAMESPACES["numpy"], dtype, 3, **options)
    st_params, st_opt, st_losses = _run(NAMESPACES["array_api_strict"], dtype, 3, **options)
    assert np_losses == st_losses
    for a, b in zip(np_params, st_params):
        assert_bitwise_equal(a.data, b.data)
    sa, sb = np_opt.state[np_params[0]], st_opt.state[st_params[0]]
    assert list(sa) == list(sb)
    for k in sa:
        va, vb = sa[k], sb[k]
        if isinstance(va, list):
            assert len(va) == len(vb)
            for x, y in zip(va, vb):
                assert (x is None) == (y is None)
                if x is not None:
                    assert_bitwise_equal(x, y, k)
        elif hasattr(va, "shape"):
            assert_bitwise_equal(va, vb, k)
        else:
            assert va == vb and type(va) is type(vb), k


def test_state_dict_round_trip_continues_identically(xp):
    a, opt_a, _ = _run(xp, np.float64, 2, max_iter=4, history_size=3, line_search_fn="strong_wolfe")
    sd = copy.deepcopy(opt_a.state_dict())
    b = [Parameter(xp.asarray(p.data, copy=True)) for p in a]
    opt_b = LBFGS(b, max_iter=4, history_size=3, line_search_fn="strong_wolfe")
    opt_b.load_state_dict(sd)

    def closure_for(params):
        def closure():
            loss = 0.0
            for i, p in enumerate(params):
                p.grad = p.data * (i + 1.0)
                loss += float(xp.sum(p.data * p.data)) * (i + 1.0) / 2
            return loss
        return closure

    for _ in range(2):
        opt_a.step(closure_for(a))
        opt_b.step(closure_for(b))
    for pa, pb in zip(a, b):
        assert_bitwise_equal(pa.data, pb.data)
    assert opt_a.state[a[0]]["func_evals"] == opt_b.state[b[0]]["func_evals"]


def test_pickle_keeps_a_working_optimizer():
    # torch's LBFGS loses its _params attribute when pickled; refoptim's is a property.
    _params, opt, _ = _run(cnp, np.float64, 1, max_iter=3)
    clone = pickle.loads(pickle.dumps(opt))
    assert clone._params[0] is clone.param_groups[0]["params"][0]


# ============================================================================ known values
def test_strong_wolfe_reaches_the_minimiser_of_a_quadratic(xp):
    # f = 1/2 x^T A x - b^T x with A symmetric positive definite: minimiser A^{-1} b.
    rng = np.random.default_rng(3)
    m = rng.standard_normal((8, 8))
    A = m @ m.T + 8 * np.eye(8)
    b = rng.standard_normal(8)
    x_star = np.linalg.solve(A, b)
    p = Parameter(as_xp(xp, np.zeros(8)))
    A_x, b_x = as_xp(xp, A), as_xp(xp, b)

    def closure():
        g = A_x @ p.data - b_x
        p.grad = g
        return float(p.data @ (A_x @ p.data)) / 2 - float(b_x @ p.data)

    opt = LBFGS([p], line_search_fn="strong_wolfe", max_iter=100, tolerance_grad=1e-11, tolerance_change=1e-30)
    opt.step(closure)
    # a line search on loss values resolves the minimiser to about sqrt(eps) (1.5e-8)
    np.testing.assert_allclose(to_np(p.data), x_star, rtol=0, atol=2e-8)
    assert opt.state[p]["n_iter"] < 100
    # with tolerance_change=1e-15 torch (and refoptim) stop at 5e-9 from it: the test
    # g^T d > -tolerance_change ends the loop once |g|^2 is below the tolerance


def test_rosenbrock_converges_with_strong_wolfe():
    p = Parameter(np.array([-1.2, 1.0]))

    def closure():
        x, y = p.data
        p.grad = np.array([-400 * x * (y - x * x) - 2 * (1 - x), 200 * (y - x * x)])
        return 100 * (y - x * x) ** 2 + (1 - x) ** 2

    opt = LBFGS([p], line_search_fn="strong_wolfe", max_iter=100, tolerance_grad=1e-10, tolerance_change=1e-14)
    opt.step(closure)
    np.testing.assert_allclose(p.data, [1.0, 1.0], rtol=1e-6)


def test_cubic_interpolate_matches_the_minimiser_of_the_cubic():
    # f(x) = (x - 0.3)^3 - 3 (x - 0.3) ... use f = x^3 - 3x: minimum at x = 1 on [0, 2].
    f = lambda x: x**3 - 3 * x
    g = lambda x: 3 * x**2 - 3
    x1, x2 = np.float64(0.0), np.float64(2.0)
    assert float(cubic_interpolate(x1, f(x1), g(x1), x2, f(x2), g(x2))) == pytest.approx(1.0, abs=1e-15)
    # negative discriminant (d1 = 0, d1^2 - g1 g2 = -4): the midpoint of the bounds
    assert cubic_interpolate(0.0, 0.0, np.float64(2.0), 1.0, 4 / 3, np.float64(2.0), bounds=(0.2, 0.6)) == 0.4
    # torch 2.13 gives 0.816496580927726 here (float64 tensors)
    assert float(cubic_interpolate(0.0, 1.0, np.float64(-1.0), 1.0, 0.5, np.float64(0.5))) == 0.816496580927726
    # clamped to the bounds
    assert float(cubic_interpolate(x1, f(x1), g(x1), x2, f(x2), g(x2), bounds=(1.5, 3.0))) == 1.5


def test_complex_parameters_are_viewed_as_real_pairs(xp):
    p = Parameter(as_xp(xp, np.array([1 + 2j, -3 + 0.5j], dtype=np.complex128)))
    opt = LBFGS([p], max_iter=1)

    def closure():
        p.grad = p.data  # f = |z|^2 / 2
        return float(xp.sum(xp.abs(p.data) ** 2)) / 2

    opt.step(closure)
    # flat gradient [1, 2, -3, 0.5], |g|_1 = 6.5: t = 1/6.5, z <- z - t z
    t = 1 / 6.5
    expected = np.array([1 + 2j, -3 + 0.5j]) * (1 - t)
    np.testing.assert_allclose(to_np(p.data), expected, rtol=1e-15)
    d = to_np(opt.state[p]["d"])
    assert d.dtype == np.float64 and d.tolist() == [-1.0, -2.0, 3.0, -0.5]  # torch's d
