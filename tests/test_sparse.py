"""Sparse gradients without torch: SparseGrad, Parameter.grad, every optimizer's refusal,
SparseAdam, and SGD/Adagrad's sparse paths, on NumPy and array-api-strict."""

import numpy as np
import pytest
from _support import (
    NAMESPACES,
    assert_bitwise_equal,
    assert_snapshots_equal,
    param_snapshot,
    state_snapshot,
    to_np,
)

import refoptim
from refoptim import registry
from refoptim.sparse import (
    SparseGrad,
    add_sparse_,
    scatter_rows,
    torch_cpu_sort_permutation,
)
from refoptim.sparse_adam import SparseAdam

XPS = list(NAMESPACES.items())


def sg(xp, idx, vals, shape, dtype="float32"):
    return SparseGrad(xp.asarray(np.asarray(idx, dtype=np.int64)), xp.asarray(np.asarray(vals, dtype=dtype)), shape)


# ------------------------------------------------------------------ SparseGrad
@pytest.mark.parametrize("name, xp", XPS)
def test_coalesce_known_sums(name, xp):
    g = sg(xp, [[2, 0, 2, 2]], [1.0, 2.0, 3.0, 4.0], (4,))
    assert not g.is_coalesced() and g._nnz() == 4
    c = g.coalesce()
    assert c.is_coalesced() and c.nnz == 2
    assert to_np(c.indices).tolist() == [[0, 2]]
    assert to_np(c.values).tolist() == [2.0, 8.0]
    assert to_np(g.to_dense()).tolist() == [2.0, 0.0, 8.0, 0.0]
    assert c.coalesce() is c


def test_coalesce_sums_left_to_right_in_sorted_order():
    # float32: (1e8 + 1) + -1e8 == 0, while 1e8 + (1 + -1e8) == 0 too; pick an order-sensitive case
    vals = np.array([1.0, 1e8, -1e8], np.float32)
    c = SparseGrad(np.zeros((1, 3), np.int64), vals, (1,)).coalesce()
    assert to_np(c.values).tolist() == [np.float32(np.float32(1.0 + np.float32(1e8)) + np.float32(-1e8))]
    vals = np.array([1e8, -1e8, 1.0], np.float32)
    c = SparseGrad(np.zeros((1, 3), np.int64), vals, (1,)).coalesce()
    assert to_np(c.values).tolist() == [1.0]


def test_coalesce_multi_dim_lexicographic():
    idx = [[1, 0, 1, 0], [0, 2, 0, 1]]
    g = SparseGrad(np.array(idx), np.arange(4.0), (2, 3)).coalesce()
    assert g.indices.tolist() == [[0, 0, 1], [1, 2, 0]]
    assert g.values.tolist() == [3.0, 1.0, 2.0]


def test_flags_and_repr():
    assert SparseGrad(np.zeros((1, 0), np.int64), np.zeros(0), (3,)).is_coalesced()
    assert SparseGrad(np.array([[1]]), np.ones(1), (3,)).is_coalesced()
    assert not SparseGrad(np.array([[0, 1]]), np.ones(2), (3,)).is_coalesced()
    assert SparseGrad(np.array([[0, 1]]), np.ones(2), (3,), is_coalesced=True).is_coalesced()
    r = repr(SparseGrad(np.array([[0, 1]]), np.ones((2, 2)), (3, 2)))
    assert "nnz=2" in r and "shape=(3, 2)" in r
    g = SparseGrad(np.array([[0, 1]]), np.ones((2, 2)), (3, 2))
    assert (g.sparse_dim, g.dense_dim, g.size(), g.is_sparse) == (1, 1, (3, 2), True)


@pytest.mark.parametrize(
    "args, error",
    [
        ((np.array([[0.0]]), np.ones(1), (3,)), TypeError),
        ((np.array([0]), np.ones(1), (3,)), ValueError),
        ((np.array([[0, 1]]), np.ones(1), (3,)), ValueError),
        ((np.array([[0]]), np.ones((1, 2)), (3, 3)), ValueError),
        ((np.array([[3]]), np.ones(1), (3,)), IndexError),
        ((np.array([[-1]]), np.ones(1), (3,)), IndexError),
        (([[0]], np.ones(1), (3,)), TypeError),
    ],
)
def test_construction_errors(args, error):
    with pytest.raises(error):
        SparseGrad(*args)


def test_torch_sort_permutation_small_is_stable():
    keys = [2, 0, 2, 1, 0, 2]
    assert torch_cpu_sort_permutation(keys) == sorted(range(6), key=lambda i: keys[i])
    assert torch_cpu_sort_permutation([]) == []


@pytest.mark.parametrize("name, xp", XPS)
def test_scatter_paths_agree(name, xp):
    dense = xp.asarray(np.arange(12.0).reshape(6, 2))
    out = scatter_rows(dense, xp.asarray(np.array([4, 1])), xp.asarray(np.array([[-1.0, -2.0], [-3.0, -4.0]])))
    expect = np.arange(12.0).reshape(6, 2)
    expect[4], expect[1] = [-1, -2], [-3, -4]
    assert to_np(out).tolist() == expect.tolist()


# ------------------------------------------------------------------ Parameter.grad, refusals
def test_parameter_accepts_sparse_grad_and_checks_it():
    p = refoptim.Parameter(np.zeros((3, 2), np.float32))
    p.grad = SparseGrad(np.array([[0]]), np.ones((1, 2), np.float32), (3, 2))
    assert isinstance(p.grad, SparseGrad)
    with pytest.raises(RuntimeError, match="gradient of size"):
        p.grad = SparseGrad(np.array([[0]]), np.ones((1, 2), np.float32), (4, 2))
    with pytest.raises(RuntimeError, match="dtype"):
        p.grad = SparseGrad(np.array([[0]]), np.ones((1, 2), np.float64), (3, 2))


# torch's message where it is not "<name> does not support sparse gradients"
_REFUSAL_MESSAGES = {
    "Adam": "Adam does not support sparse gradients, please consider SparseAdam instead",
    "AdamW": "Adam does not support sparse gradients, please consider SparseAdam instead",
}
# Not LBFGS: torch's densifies a sparse gradient (its _gather_flat_grad) where refoptim's
# refuses it, a deviation not to be pinned here.
REFUSALS = {
    name: _REFUSAL_MESSAGES.get(name, f"{name} does not support sparse gradients")
    for name in registry.names(sparse=False)
    if name != "LBFGS"
}


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_refusal_messages_and_nothing_changes(name):
    shape = (3, 2) if name == "Muon" else (3,)  # Muon takes matrices only
    a, b = refoptim.Parameter(np.ones(shape, np.float32)), refoptim.Parameter(np.ones(shape, np.float32))
    opt = getattr(refoptim, name)([a, b])
    a.grad = np.ones(shape, np.float32)
    b.grad = SparseGrad(np.array([[0]]), np.ones((1, *shape[1:]), np.float32), shape)
    before_p, before_s = param_snapshot(opt), state_snapshot(opt)
    with pytest.raises(RuntimeError) as info:
        opt.step()
    assert str(info.value) == REFUSALS[name]
    assert_snapshots_equal(param_snapshot(opt), before_p)
    assert_snapshots_equal(state_snapshot(opt), before_s)


def test_default_refusal_message():
    class Mine(refoptim.Optimizer):
        def __init__(self, params):
            super().__init__(params, {})

    p = refoptim.Parameter(np.ones(3))
    p.grad = SparseGrad(np.array([[0]]), np.ones(1), (3,))
    with pytest.raises(RuntimeError, match="^Mine does not support sparse gradients$"):
        Mine([p]).step()


def test_zero_grad_keeps_sparse_layout_empty():
    p = refoptim.Parameter(np.ones(3))
    opt = refoptim.SGD([p])
    p.grad = SparseGrad(np.array([[0, 0]]), np.ones(2), (3,))
    opt.zero_grad(set_to_none=False)
    assert isinstance(p.grad, SparseGrad) and p.grad.nnz == 0 and p.grad.is_coalesced()


# ------------------------------------------------------------------ SGD, Adagrad
@pytest.mark.parametrize("name, xp", XPS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("options", [{"lr": 0.1}, {"lr": 0.05, "maximize": True}])
def test_sgd_sparse_equals_dense_without_duplicates(name, xp, dtype, options):
    rng = np.random.default_rng(0)
    init = rng.standard_normal((6, 3)).astype(dtype)
    rows = np.array([[4, 0, 2]])
    vals = rng.standard_normal((3, 3)).astype(dtype)
    dense = np.zeros((6, 3), dtype)
    dense[rows[0]] = vals
    ps, pd = refoptim.Parameter(xp.asarray(init.copy())), refoptim.Parameter(xp.asarray(init.copy()))
    opt_s, opt_d = refoptim.SGD([ps], **options), refoptim.SGD([pd], **options)
    ps.grad = sg(xp, rows, vals, (6, 3), dtype)
    pd.grad = xp.asarray(dense)
    opt_s.step()
    opt_d.step()
    assert_bitwise_equal(ps.data, pd.data)


def test_sgd_sparse_duplicates_applied_one_by_one():
    p = refoptim.Parameter(np.array([1.0], np.float32))
    vals = np.array([1e-8, 1e-8, 1.0], np.float32)
    opt = refoptim.SGD([p], lr=1.0)
    p.grad = SparseGrad(np.zeros((1, 3), np.int64), vals, (1,))
    opt.step()
    x = np.float32(1.0)
    for v in vals:
        x = np.float32(x - v)
    assert p.data.tolist() == [x]


@pytest.mark.parametrize(
    "cls, options, error, message",
    [
        (refoptim.SGD, {"weight_decay": 0.1}, RuntimeError, "add(sparse, dense) is not supported. Use add(dense, sparse) instead."),
        (refoptim.SGD, {"fused": True}, RuntimeError, "`_fused_sgd` does not support sparse gradients"),
        (refoptim.Adagrad, {"weight_decay": 0.1}, RuntimeError, "weight_decay option is not compatible with sparse gradients"),
    ],
)
def test_sparse_option_errors_change_nothing(cls, options, error, message):
    a, b = refoptim.Parameter(np.ones(3, np.float32)), refoptim.Parameter(np.ones(3, np.float32))
    opt = cls([a, b], lr=0.1, **options)
    a.grad = np.ones(3, np.float32)
    b.grad = SparseGrad(np.array([[0]]), np.ones(1, np.float32), (3,))
    before_p, before_s = param_snapshot(opt), state_snapshot(opt)
    with pytest.raises(error) as info:
        opt.step()
    if message is not None:
        assert str(info.value) == message
    assert_snapshots_equal(param_snapshot(opt), before_p)
    assert_snapshots_equal(state_snapshot(opt), before_s)


@pytest.mark.parametrize("name, xp", XPS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_adagrad_sparse_rows_only(name, xp, dtype):
    rng = np.random.default_rng(1)
    init = rng.standard_normal((5, 2)).astype(dtype)
    p = refoptim.Parameter(xp.asarray(init.copy()))
    opt = refoptim.Adagrad([p], lr=0.1, initial_accumulator_value=0.5)
    p.grad = sg(xp, [[3, 1, 3]], [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], (5, 2), dtype)
    opt.step()
    data, s = to_np(p.data), to_np(opt.state[p]["sum"])
    untouched = [0, 2, 4]
    assert data[untouched].tobytes() == init[untouched].tobytes()
    assert (s[untouched] == np.asarray(0.5, dtype)).all()
    assert s[3].tolist() == [36.5, 64.5] and s[1].tolist() == [9.5, 16.5]
    assert float(to_np(opt.state[p]["step"])) == 1.0


# ------------------------------------------------------------------ SparseAdam
def test_sparse_adam_validation():
    p = [refoptim.Parameter(np.zeros(2, np.float32))]
    for options, message in [
        ({"lr": 0.0}, "Invalid learning rate: 0.0"),
        ({"eps": 0.0}, "Invalid epsilon value: 0.0"),
        ({"betas": (1.0, 0.9)}, "Invalid beta parameter at index 0: 1.0"),
        ({"betas": (0.9, 1.0)}, "Invalid beta parameter at index 1: 1.0"),
        ({"lr": np.array([0.1, 0.2])}, "Tensor lr must be 1-element"),
    ]:
        with pytest.raises(ValueError) as info:
            SparseAdam(p, **options)
        assert str(info.value) == message
    with pytest.raises(ValueError, match=r"^Complex params at indices \[\[0, 1\]\]: SparseAdam does not support complex"):
        SparseAdam([refoptim.Parameter(np.zeros(2)), refoptim.Parameter(np.zeros(2, np.complex64))])


def test_sparse_adam_dense_grad_refused_before_anything_changes():
    a, b = refoptim.Parameter(np.ones(3, np.float32)), refoptim.Parameter(np.ones(3, np.float32))
    opt = SparseAdam([a, b])
    a.grad = SparseGrad(np.array([[0]]), np.ones(1, np.float32), (3,))
    b.grad = np.ones(3, np.float32)
    with pytest.raises(RuntimeError, match="^SparseAdam does not support dense gradients, please consider Adam instead$"):
        opt.step()
    assert a.data.tolist() == [1.0, 1.0, 1.0] and not opt.state


@pytest.mark.parametrize("name, xp", XPS)
def test_sparse_adam_state_layout_and_quirks(name, xp):
    p = refoptim.Parameter(xp.asarray(np.zeros((4, 2), np.float32)))
    opt = SparseAdam([p], lr=0.1)
    p.grad = SparseGrad(xp.asarray(np.zeros((1, 0), np.int64)), xp.asarray(np.zeros((0, 2), np.float32)), (4, 2))
    opt.step()  # empty: counts a step, changes nothing
    state = opt.state[p]
    assert set(state) == {"step", "exp_avg", "exp_avg_sq"} and state["step"] == 1 and type(state["step"]) is int
    assert to_np(p.data).tolist() == [[0.0, 0.0]] * 4
    p.grad = sg(xp, [[1, 3, 1]], np.ones((3, 2)), (4, 2))
    opt.step()
    assert state["step"] == 2
    m = to_np(state["exp_avg"])
    assert m[[0, 2]].tolist() == [[0.0, 0.0]] * 2
    assert m[1].tolist() == [np.float32(np.float32(2.0) * np.float32(1 - 0.9))] * 2
    data = to_np(p.data)
    assert data[[0, 2]].tolist() == [[0.0, 0.0]] * 2 and (data[[1, 3]] < 0).all()
    sd = opt.state_dict()
    assert sd["param_groups"][0].keys() == {"lr", "betas", "eps", "maximize", "params"}


@pytest.mark.parametrize("optimizer", ["SparseAdam", "SGD", "Adagrad"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numpy_and_strict_bitwise_equal(optimizer, dtype):
    rng = np.random.default_rng(2)
    init = rng.standard_normal((7, 3)).astype(dtype)
    seq = []
    for _ in range(8):
        nnz = int(rng.integers(0, 25))
        seq.append((rng.integers(0, 4, (1, nnz)), rng.standard_normal((nnz, 3)).astype(dtype)))
    results = []
    for xp in NAMESPACES.values():
        p = refoptim.Parameter(xp.asarray(init.copy()))
        cls = SparseAdam if optimizer == "SparseAdam" else getattr(refoptim, optimizer)
        opt = cls([p], lr=0.05)
        for idx, vals in seq:
            p.grad = sg(xp, idx, vals, (7, 3), dtype)
            opt.step()
        results.append((to_np(p.data), {k: to_np(v) if not isinstance(v, int) else v for k, v in opt.state.get(p, {}).items()}))
    (pa, sa), (pb, sb) = results
    assert_bitwise_equal(pa, pb)
    assert sa.keys() == sb.keys()
    for k in sa:
        if isinstance(sa[k], int):
            assert sa[k] == sb[k]
        else:
            assert_bitwise_equal(sa[k], sb[k], k)


@pytest.mark.parametrize("name, xp", XPS)
def test_add_sparse_alpha_one_is_plain_add(name, xp):
    dense = xp.asarray(np.zeros(3))
    out = add_sparse_(dense, sg(xp, [[0, 2, 0]], [1.0, 2.0, 3.0], (3,), "float64"))
    assert to_np(out).tolist() == [4.0, 0.0, 2.0]


# ------------------------------------------------------------------ sparse-sparse arithmetic, SGD momentum
@pytest.mark.parametrize("name, xp", XPS)
def test_sparse_add_merges_in_storage_order(name, xp):
    # torch's two-cursor walk: the smaller head is emitted, equal heads combined
    a = sg(xp, [[3, 1, 3]], [1.0, 2.0, 3.0], (5,), "float64")
    b = sg(xp, [[0, 3, 4]], [10.0, 20.0, 30.0], (5,), "float64")
    r = a.add(b, alpha=0.5)
    assert to_np(r.indices).tolist() == [[0, 3, 1, 3, 4]]
    assert to_np(r.values).tolist() == [5.0, 11.0, 2.0, 3.0, 15.0]
    assert not r.is_coalesced() and r.nnz == 5
    assert to_np(r.to_dense()).tolist() == (to_np(a.to_dense()) + 0.5 * to_np(b.to_dense())).tolist()
    # both coalesced: a sorted merge, flagged coalesced
    c = sg(xp, [[1, 3]], [1.0, 2.0], (5,), "float64").coalesce()
    d = sg(xp, [[0, 3]], [5.0, 6.0], (5,), "float64").coalesce()
    e = c.add(d, alpha=0.5)
    assert to_np(e.indices).tolist() == [[0, 1, 3]] and to_np(e.values).tolist() == [2.5, 1.0, 5.0]
    assert e.is_coalesced()


def test_sparse_add_multi_dim_lexicographic_and_growth():
    p = SparseGrad(np.array([[1, 0], [0, 2]]), np.array([1.0, 2.0]), (3, 3))
    q = SparseGrad(np.array([[0, 1], [2, 0]]), np.array([10.0, 20.0]), (3, 3))
    r = p.add(q)
    assert r.indices.tolist() == [[0, 1, 0], [2, 0, 2]] and r.values.tolist() == [10.0, 21.0, 2.0]
    g = SparseGrad(np.array([[0, 1, 2, 3, 4, 0]]), np.ones(6), (5,))
    assert g.add(g).nnz == 6  # never capped at numel, never coalesced


def test_sparse_add_rounding_and_signed_zeros():
    t = np.array([1.0, -0.0, 3.0], np.float32)
    s = np.array([np.float32(1e-8), np.float32(7.0)], np.float32)
    a = SparseGrad(np.array([[0, 1, 2]]), t, (3,), is_coalesced=True)
    b = SparseGrad(np.array([[0, 2]]), s, (3,), is_coalesced=True)
    r = a.add(b, alpha=0.9)
    fused = [np.float32(np.float64(t[0]) + np.float64(np.float32(0.9)) * np.float64(s[0])), 0.0,
             np.float32(np.float64(t[2]) + np.float64(np.float32(0.9)) * np.float64(s[1]))]
    assert r.values.tolist() == fused
    assert not np.signbit(r.values[1])  # 0 + -0 is +0 (axpy into zeros)
    # an empty left operand: a plain product, -0 kept, the right operand's flag
    empty = SparseGrad(np.zeros((1, 0), np.int64), np.zeros(0, np.float32), (3,))
    m = empty.add(SparseGrad(np.array([[1, 1]]), np.array([-0.0, 2.0], np.float32), (3,)), alpha=0.5)
    assert m.values.tolist() == [-0.0, 1.0] and np.signbit(m.values[0]) and not m.is_coalesced()
    # an empty right operand: a copy
    c = a.add(empty, alpha=0.5)
    assert c.values.tobytes() == t.tobytes() and c.is_coalesced() and c.values is not a.values


def test_sparse_mul_flags():
    c = SparseGrad(np.array([[0, 3]]), np.array([1.0, 2.0]), (5,), is_coalesced=True)
    assert c.mul(0.5).is_coalesced() and c.mul(0.5).values.tolist() == [0.5, 1.0]
    d = c.clone()
    assert d.is_coalesced() and d.values is not c.values
    assert d.mul_(0.5) is d and not d.is_coalesced() and d.values.tolist() == [0.5, 1.0]
    one = SparseGrad(np.array([[2]]), np.array([1.0]), (5,), is_coalesced=False)
    assert not one.is_coalesced() and one.mul_(0.5).is_coalesced()  # nnz <= 1


def _sgd_momentum_reference(seq, init, lr, momentum, dampening, nesterov, maximize, dtype):
    """SGD with momentum and sparse 1-d gradients in plain NumPy scalars, following torch's
    sparse rules one entry at a time: clone, mul_, the merge walk of sparse + sparse
    (axpy: fused), the storage-order dense + sparse (fused)."""
    def fused(a, x, y):  # fma(a, x, y) for float32: exact product in float64, one rounding
        return dtype(np.float64(dtype(a)) * np.float64(x) + np.float64(y))

    def add(t, s, alpha):  # torch's sparse t.add(s, alpha)
        if not s[0]:
            return t
        if not t[0]:
            return s[0], [dtype(v * dtype(alpha)) for v in s[1]]
        (ti, tv), (si, sv) = t, s
        out_i, out_v, i, j = [], [], 0, 0
        while i < len(ti) or j < len(si):
            if j >= len(si) or (i < len(ti) and ti[i] < si[j]):
                out_i.append(ti[i]); out_v.append(dtype(0) + tv[i]); i += 1
            elif i >= len(ti) or ti[i] > si[j]:
                out_i.append(si[j]); out_v.append(fused(alpha, sv[j], 0)); j += 1
            else:
                out_i.append(ti[i]); out_v.append(fused(alpha, sv[j], tv[i])); i += 1; j += 1
        return out_i, out_v

    p, buf = init.copy(), None
    for idx, vals in seq:
        g = (list(idx[0]), [(-v if maximize else v) for v in vals])
        if buf is None:
            buf = (g[0], list(g[1]))
        else:
            buf = add((buf[0], [dtype(v * dtype(momentum)) for v in buf[1]]), g, 1 - dampening)
        step = add(g, buf, momentum) if nesterov else buf
        for i, v in zip(*step):
            p[i] = fused(-lr, v, p[i])
    return p, buf


@pytest.mark.parametrize("name, xp", XPS)
@pytest.mark.parametrize("options", [
    {"momentum": 0.9},
    {"momentum": 0.9, "dampening": 0.3},
    {"momentum": 0.8, "nesterov": True},
    {"momentum": 0.5, "maximize": True},
])
def test_sgd_sparse_momentum_buffer(name, xp, options):
    rng = np.random.default_rng(4)
    dtype = np.float32
    init = rng.standard_normal(6).astype(dtype)
    seq = []
    for step in range(12):
        nnz = 0 if step % 5 == 3 else int(rng.integers(1, 8))
        seq.append((rng.integers(0, 4, (1, nnz)), rng.standard_normal(nnz).astype(dtype)))
    p = refoptim.Parameter(xp.asarray(init.copy()))
    opt = refoptim.SGD([p], lr=0.1, **options)
    nnz = []
    for idx, vals in seq:
        p.grad = sg(xp, idx, vals, (6,))
        opt.step()
        buf = opt.state[p]["momentum_buffer"]
        assert isinstance(buf, SparseGrad)
        nnz.append(buf.nnz)
    assert nnz == sorted(nnz) and nnz[-1] > 6  # grows past numel, never coalesced
    assert not buf.is_coalesced()
    expect_p, expect_buf = _sgd_momentum_reference(
        seq, init, 0.1, options["momentum"], options.get("dampening", 0.0), options.get("nesterov", False),
        options.get("maximize", False), dtype)
    assert to_np(buf.indices)[0].tolist() == list(expect_buf[0])
    assert to_np(buf.values).tobytes() == np.asarray(expect_buf[1], dtype).tobytes()
    assert to_np(p.data).tobytes() == expect_p.tobytes()
    # the buffer travels in state_dict, and load_state_dict keeps it sparse
    sd = opt.state_dict()
    assert sd["state"][0]["momentum_buffer"] is buf
    q = refoptim.Parameter(xp.asarray(init.copy()))
    opt2 = refoptim.SGD([q], lr=0.1, **options)
    opt2.load_state_dict(sd)
    loaded = opt2.state[q]["momentum_buffer"]
    assert isinstance(loaded, SparseGrad) and loaded is not buf and not loaded.is_coalesced()
    assert_bitwise_equal(loaded.values, buf.values)
    assert to_np(loaded.indices).tolist() == to_np(buf.indices).tolist()


def test_sgd_sparse_momentum_first_buffer_is_a_clone():
    p = refoptim.Parameter(np.zeros(4, np.float32))
    opt = refoptim.SGD([p], lr=0.1, momentum=0.9, dampening=0.5)
    g = SparseGrad(np.array([[2, 0, 2]]), np.array([1.0, 2.0, 3.0], np.float32), (4,))
    p.grad = g
    opt.step()
    buf = opt.state[p]["momentum_buffer"]
    assert buf is not g and buf.values is not g.values and buf.indices.tolist() == [[2, 0, 2]]
    assert buf.values.tolist() == [1.0, 2.0, 3.0]  # no dampening at the first step
    assert not buf.is_coalesced()


def test_sgd_sparse_buffer_with_dense_grad_refused_before_changes():
    a, b = refoptim.Parameter(np.ones(3, np.float32)), refoptim.Parameter(np.ones(3, np.float32))
    opt = refoptim.SGD([a, b], lr=0.1, momentum=0.9)
    a.grad = np.ones(3, np.float32)
    b.grad = SparseGrad(np.array([[0]]), np.ones(1, np.float32), (3,))
    opt.step()
    b.grad = np.ones(3, np.float32)
    before_p = param_snapshot(opt)
    buf_a = opt.state[a]["momentum_buffer"].copy()
    buf_b = opt.state[b]["momentum_buffer"].values.copy()
    with pytest.raises(RuntimeError, match=r"^add\(sparse, dense\) is not supported"):
        opt.step()
    assert_snapshots_equal(param_snapshot(opt), before_p)
    assert_bitwise_equal(opt.state[a]["momentum_buffer"], buf_a)
    assert_bitwise_equal(opt.state[b]["momentum_buffer"].values, buf_b)


def test_sgd_dense_buffer_then_sparse_grad():
    p = refoptim.Parameter(np.zeros(3, np.float64))
    opt = refoptim.SGD([p], lr=0.5, momentum=0.5)
    p.grad = np.array([1.0, 2.0, 3.0])
    opt.step()
    p.grad = SparseGrad(np.array([[0, 0]]), np.array([1.0, 1.0]), (3,))
    opt.step()
    buf = opt.state[p]["momentum_buffer"]
    assert not isinstance(buf, SparseGrad) and buf.tolist() == [2.5, 1.0, 1.5]
    nest = refoptim.SGD([p], lr=0.5, momentum=0.5, nesterov=True)
    nest.state[p] = {"momentum_buffer": np.zeros(3)}
    with pytest.raises(RuntimeError, match=r"^add\(sparse, dense\) is not supported"):
        nest.step()
