"""The fast path never changes a result: every elementwise optimizer, run piece by piece
(``refoptim._fastpath``), gives the same bits, parameter and state, as the whole-array
rule; arrays that cannot be viewed flat run whole."""

import array_api_strict
import numpy as np
import pytest

import refoptim
import refoptim._fastpath as fastpath

CASES = [
    ("SGD", {"lr": 0.01}),
    ("SGD", {"lr": 0.01, "momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01}),
    ("SGD", {"lr": 0.01, "momentum": 0.9, "nesterov": True, "maximize": True}),
    ("Adam", {"lr": 0.01}),
    ("Adam", {"lr": np.asarray(0.01, dtype=np.float32), "amsgrad": True, "weight_decay": 0.1}),
    ("AdamW", {"lr": 0.01, "amsgrad": True}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.01, "weight_decay": 0.1, "initial_accumulator_value": 0.1}),
    ("Adadelta", {"lr": 1.0, "weight_decay": 0.1}),
    ("Adamax", {"lr": 0.01, "weight_decay": 0.1}),
    ("ASGD", {"lr": 0.01, "t0": 2, "weight_decay": 0.1}),
    ("NAdam", {"lr": 0.01, "momentum_decay": 0.004, "decoupled_weight_decay": True, "weight_decay": 0.1}),
    ("RAdam", {"lr": 0.01, "weight_decay": 0.1}),
    ("RMSprop", {"lr": 0.01, "centered": True, "momentum": 0.5, "weight_decay": 0.1}),
    ("Rprop", {"lr": 0.01}),
]
CHUNK = 16
SIZE = 103  # six full pieces and a short one


def _arrays(dtype, seed, shape=(SIZE,)):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        x = x + 1j * rng.standard_normal(shape)
    return np.asarray(x, dtype=dtype)


def _run(name, options, dtype, chunk, monkeypatch, shape=(SIZE,), steps=6):
    monkeypatch.setattr(fastpath, "CHUNK_ELEMENTS", chunk)
    calls = []
    real = fastpath.chunked_update
    monkeypatch.setattr(refoptim.optimizer, "chunked_update", lambda *a, **k: calls.append(1) or real(*a, **k))
    p = refoptim.Parameter(_arrays(dtype, 0, shape))
    q = refoptim.Parameter(_arrays(dtype, 1, shape))
    opt = getattr(refoptim, name)([p, q], **options)
    for step in range(steps):
        p.grad = _arrays(dtype, 10 + step, shape)
        q.grad = None if step % 3 == 1 else _arrays(dtype, 20 + step, shape)  # q skips steps
        opt.step()
    return [p.data, q.data], [opt.state[p], opt.state[q]], len(calls)


def _same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _assert_same_results(params_a, state_a, params_b, state_b):
    """Two runs' parameters and per-parameter state: the same keys, types and bits."""
    for a, b in zip(params_a, params_b, strict=True):
        assert _same_bits(a, b)
    for sa, sb in zip(state_a, state_b, strict=True):
        assert set(sa) == set(sb)
        for key in sa:
            va, vb = sa[key], sb[key]
            assert type(va) is type(vb), key
            if isinstance(va, np.ndarray):
                assert _same_bits(va, vb), key
            else:
                assert va == vb, key


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64])
@pytest.mark.parametrize("name, options", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_piece_by_piece_is_bit_identical(name, options, dtype, monkeypatch):
    if name == "Rprop" and dtype == np.complex64:
        options = {"lr": 0.01}
    whole_params, whole_state, whole_calls = _run(name, options, dtype, 0, monkeypatch)
    piece_params, piece_state, piece_calls = _run(name, options, dtype, CHUNK, monkeypatch)
    assert whole_calls == 0 and piece_calls > 0  # the second run did take the fast path
    _assert_same_results(whole_params, whole_state, piece_params, piece_state)


def test_multi_dimensional_parameters_are_chunked_flat(monkeypatch):
    a, sa, _ = _run("Adam", {"lr": 0.01}, np.float32, 0, monkeypatch, shape=(9, 13))
    b, sb, calls = _run("Adam", {"lr": 0.01}, np.float32, CHUNK, monkeypatch, shape=(9, 13))
    assert calls > 0
    assert all(_same_bits(x, y) for x, y in zip(a, b))
    assert all(_same_bits(sa[0][k], sb[0][k]) for k in sa[0])


def test_what_cannot_be_viewed_flat_runs_whole():
    big = np.zeros((40, 40), dtype=np.float32)
    state = {"exp_avg": np.zeros((40, 40), dtype=np.float32)}
    assert fastpath.can_chunk(big, big.copy(), state, chunk=16)
    assert not fastpath.can_chunk(big, big.copy(), state, chunk=0)  # turned off
    assert not fastpath.can_chunk(big, big.copy(), state, chunk=800)  # too small to be worth it
    assert not fastpath.can_chunk(big[:, ::2], big[:, ::2].copy(), {}, chunk=16)  # non-contiguous param
    assert not fastpath.can_chunk(big, big.T, {}, chunk=16)  # non-contiguous gradient
    assert not fastpath.can_chunk(big, big.copy(), {"exp_avg": big.T}, chunk=16)  # non-contiguous state
    ro = big.copy()
    ro.flags.writeable = False
    assert not fastpath.can_chunk(ro, big.copy(), {}, chunk=16)
    strict = array_api_strict.zeros((40, 40), dtype=array_api_strict.float32)
    assert not fastpath.can_chunk(strict, strict, {}, chunk=16)  # no flat views promised


def test_new_state_entries_are_assembled_from_the_pieces(monkeypatch):
    """SGD creates its momentum buffer in the first step: a full array made of the pieces."""
    monkeypatch.setattr(fastpath, "CHUNK_ELEMENTS", CHUNK)
    p = refoptim.Parameter(_arrays(np.float64, 0))
    p.grad = _arrays(np.float64, 1)
    opt = refoptim.SGD([p], lr=0.1, momentum=0.9)
    opt.step()
    buf = opt.state[p]["momentum_buffer"]
    assert buf.shape == (SIZE,) and _same_bits(buf, p.grad)
    assert not np.shares_memory(buf, p.grad)


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64])
@pytest.mark.parametrize("name, options", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_threads_give_the_same_bits(name, options, dtype, threads, monkeypatch):
    """Blocks of the parameters' elements, laid end to end, on several threads, each block
    piece by piece (pieces of 5; blocks that straddle the two parameters and do not line
    up with the pieces)."""
    if name == "Rprop" and dtype == np.complex64:
        options = {"lr": 0.01}
    whole_params, whole_state, _ = _run(name, options, dtype, 0, monkeypatch)
    monkeypatch.setattr(fastpath, "THREAD_CHUNK_ELEMENTS", 5)
    monkeypatch.setattr(fastpath, "THREAD_BLOCK_ELEMENTS", 20)
    monkeypatch.setattr(fastpath, "_num_threads", threads)
    blocks = []
    real = fastpath._map_in_threads
    monkeypatch.setattr(fastpath, "_map_in_threads", lambda fn, ranges: blocks.append(ranges) or real(fn, ranges))
    threaded_params, threaded_state, calls = _run(name, options, dtype, CHUNK, monkeypatch)
    assert calls > 0 and blocks and all(len(r) == threads for r in blocks)
    assert all(r[0][0] == 0 and r[-1][1] in (SIZE, 2 * SIZE) for r in blocks)  # q skips some steps
    _assert_same_results(whole_params, whole_state, threaded_params, threaded_state)


def test_threads_only_for_numpy_arrays_large_enough(monkeypatch):
    monkeypatch.setattr(fastpath, "_num_threads", 4)
    n = 4 * fastpath.THREAD_BLOCK_ELEMENTS
    assert fastpath._threads_for(np.zeros(1), 10 * n) == 4
    assert fastpath._threads_for(np.zeros(1), n) == 4
    assert fastpath._threads_for(np.zeros(1), 2 * fastpath.THREAD_BLOCK_ELEMENTS + 1) == 2
    assert fastpath._threads_for(np.zeros(1), 2 * fastpath.THREAD_BLOCK_ELEMENTS - 1) == 1
    assert fastpath._threads_for(array_api_strict.zeros(1), n) == 1  # other libraries: calling thread
    monkeypatch.setattr(fastpath, "_num_threads", 1)
    assert fastpath._threads_for(np.zeros(1), n) == 1


def test_threads_see_the_callers_errstate_and_raise_its_errors():
    def overflow(lo, hi):
        return np.float32(3e38) * np.float32(lo + 10)

    with np.errstate(over="raise"), pytest.raises(FloatingPointError):
        fastpath._map_in_threads(overflow, [(0, 1), (1, 2)])
    with np.errstate(over="ignore"):
        assert fastpath._map_in_threads(overflow, [(0, 1), (1, 2)]) == [np.inf, np.inf]


def test_set_num_threads(monkeypatch):
    monkeypatch.setattr(fastpath, "_num_threads", None)
    monkeypatch.setenv("REFOPTIM_NUM_THREADS", "3")
    assert refoptim.get_num_threads() == 3
    refoptim.set_num_threads(1)
    assert refoptim.get_num_threads() == 1
    with pytest.raises(RuntimeError, match="^set_num_threads expects a positive integer$"):  # torch's
        refoptim.set_num_threads(0)
    with pytest.raises(RuntimeError, match="^set_num_threads expects an int, but got float$"):
        refoptim.set_num_threads(2.0)
    assert refoptim.get_num_threads() == 1


def test_non_elementwise_optimizers_never_take_it(monkeypatch):
    assert not refoptim.LBFGS._elementwise
    assert not refoptim.Adafactor._elementwise and not refoptim.Muon._elementwise
    assert not refoptim.SparseAdam._elementwise
    assert refoptim.AdamW._elementwise and refoptim.SGD._elementwise


def _run_many(name, options, dtype, chunk, monkeypatch, steps=6):
    """Many small parameters (some 2-d, one non-contiguous, one 0-d), some skipping steps."""
    monkeypatch.setattr(fastpath, "CHUNK_ELEMENTS", chunk)
    calls = []
    real = fastpath.grouped_update
    monkeypatch.setattr(refoptim.optimizer, "grouped_update", lambda *a, **k: calls.append(1) or real(*a, **k))
    shapes = [(7,), (3, 5), (1,), (11,), (2, 2, 3), (7,), ()]
    params = [refoptim.Parameter(_arrays(dtype, i, s)) for i, s in enumerate(shapes)]
    base = _arrays(dtype, 99, (6, 10))
    params.append(refoptim.Parameter(base[::2, 1:8]))  # non-contiguous: runs whole
    opt = getattr(refoptim, name)(
        [{"params": params[:5]}, {"params": params[5:], "lr": 0.003}] if name != "Rprop" else params, **options
    )
    for step in range(steps):
        for i, p in enumerate(params):
            skip = (i == 1 and step % 3 == 1) or (i == 3 and step == 0)  # step counts diverge
            p.grad = None if skip else _arrays(dtype, 100 * step + i, p.data.shape)
        opt.step()
    return [p.data for p in params], [opt.state[p] for p in params], len(calls)


@pytest.mark.parametrize("chunk", [64, 8], ids=["one-run", "several-runs"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64])
@pytest.mark.parametrize("name, options", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_many_small_parameters_together_are_bit_identical(name, options, dtype, chunk, monkeypatch):
    whole_params, whole_state, whole_calls = _run_many(name, options, dtype, 0, monkeypatch)
    many_params, many_state, many_calls = _run_many(name, options, dtype, chunk, monkeypatch)
    assert whole_calls == 0 and many_calls > 0
    _assert_same_results(whole_params, whole_state, many_params, many_state)


def test_grouped_parameters_keep_their_arrays_and_own_their_state(monkeypatch):
    monkeypatch.setattr(fastpath, "CHUNK_ELEMENTS", 64)
    params = [refoptim.Parameter(_arrays(np.float32, i, (5,))) for i in range(4)]
    arrays = [p.data for p in params]
    opt = refoptim.Adam(params, lr=0.1)
    for p in params:
        p.grad = _arrays(np.float32, 7, (5,))
    opt.step()
    opt.step()
    assert all(p.data is a for p, a in zip(params, arrays))  # updated in place, not rebound
    steps = [opt.state[p]["step"] for p in params]
    assert all(float(s) == 2.0 for s in steps)
    assert len({id(s) for s in steps}) == 4  # each parameter its own step array
    bufs = [opt.state[p]["exp_avg"] for p in params]
    assert not any(np.shares_memory(a, b) for i, a in enumerate(bufs) for b in bufs[i + 1:])


def test_what_cannot_be_grouped():
    small = np.zeros(10, dtype=np.float32)
    assert fastpath.can_group(small, small.copy(), {}, chunk=64)
    assert not fastpath.can_group(small, small.copy(), {}, chunk=0)
    assert not fastpath.can_group(np.zeros(200, np.float32), np.zeros(200, np.float32), {}, chunk=64)  # large: chunked
    assert not fastpath.can_group(np.zeros((), np.float32), np.zeros((), np.float32), {}, chunk=64)  # 0-d
    assert not fastpath.can_group(np.zeros(0, np.float32), np.zeros(0, np.float32), {}, chunk=64)  # empty
    assert not fastpath.can_group(small[::2], small[::2].copy(), {}, chunk=64)


def test_flags_without_a_writeable_entry_count_as_writeable():
    """CuPy's ``flags`` answer only C_CONTIGUOUS, F_CONTIGUOUS and OWNDATA (any other key
    raises KeyError); its arrays are always writeable."""

    class CupyLikeFlags:
        def __init__(self, contiguous):
            self.contiguous = contiguous

        def __getitem__(self, name):
            if name == "C_CONTIGUOUS":
                return self.contiguous
            raise KeyError(f"{name} is not defined for cupy.ndarray.flags")

    class CupyLike:
        def __init__(self, contiguous):
            self.flags = CupyLikeFlags(contiguous)

    assert fastpath._flat_ok(CupyLike(True))
    assert not fastpath._flat_ok(CupyLike(False))
    assert fastpath._writeable(CupyLike(True))
    assert not fastpath._writeable(object())


# --------------------------------------------------------------------- aliasing
# Memory shared between parameters, or between a parameter and a gradient: the plain rule
# updates the parameters one after the other, each seeing what the earlier ones wrote (as
# torch does); the fast paths read every input before writing, so they must step aside.
# Each case runs with the fast paths on (small pieces, so both chunking and grouping are
# exercised) and off, and must give the same bits.

def _aliased(case, dtype, size):
    base = _arrays(dtype, 0, (size,))
    other = _arrays(dtype, 1, (size,))
    if case == "two-parameters-one-array":
        p, q = refoptim.Parameter(base), refoptim.Parameter(base)
        return [p, q], lambda step: [_arrays(dtype, 10 + step, (size,)), _arrays(dtype, 20 + step, (size,))]
    if case == "one-parameter-twice":
        p = refoptim.Parameter(base)
        return [p, p], lambda step: [_arrays(dtype, 10 + step, (size,))] * 2
    if case == "grad-is-data":
        p, q = refoptim.Parameter(base), refoptim.Parameter(other)
        return [p, q], lambda step: [p.data, q.data]
    if case == "grad-is-other-parameter":
        p, q = refoptim.Parameter(base), refoptim.Parameter(other)
        return [p, q], lambda step: [q.data, _arrays(dtype, 20 + step, (size,))]
    if case == "overlapping-views":
        buf = _arrays(dtype, 2, (size + size // 2,))
        p, q = refoptim.Parameter(buf[:size]), refoptim.Parameter(buf[size // 2 :])
        return [p, q], lambda step: [_arrays(dtype, 10 + step, (size,)), _arrays(dtype, 20 + step, (size,))]
    raise AssertionError(case)


ALIASING = ["two-parameters-one-array", "one-parameter-twice", "grad-is-data", "grad-is-other-parameter", "overlapping-views"]


def _run_aliased(name, options, dtype, case, size, chunk, monkeypatch, steps=3):
    monkeypatch.setattr(fastpath, "CHUNK_ELEMENTS", chunk)
    params, grads = _aliased(case, dtype, size)
    with pytest.warns(UserWarning, match="duplicate") if case == "one-parameter-twice" else _no_warning():
        opt = getattr(refoptim, name)(params, **options)
    for step in range(steps):
        for p, g in zip(params, grads(step)):
            p.grad = g
        opt.step()
    unique = list({id(p): p for p in params}.values())
    return [p.data for p in unique], [opt.state[p] for p in unique]


class _no_warning:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("size", [8, 103], ids=["grouped", "chunked"])
@pytest.mark.parametrize("case", ALIASING)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name, options", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_aliased_memory_gives_the_plain_rules_bits(name, options, dtype, case, size, monkeypatch):
    plain = _run_aliased(name, options, dtype, case, size, 0, monkeypatch)
    fast = _run_aliased(name, options, dtype, case, size, 16, monkeypatch)
    _assert_same_results(*plain, *fast)


def test_aliasing_reproducers_of_the_issue():
    """The issue's reproducers, with torch 2.13's results (conformance/ checks them
    against torch itself): two Parameters over one array move twice; one parameter
    listed twice moves twice and counts two steps."""
    a = np.array([1.0, 2.0])
    p1, p2 = refoptim.Parameter(a), refoptim.Parameter(a)
    p1.grad, p2.grad = np.ones(2), np.ones(2)
    refoptim.Adam([p1, p2], lr=0.1).step()
    np.testing.assert_allclose(p1.data, [0.8, 1.8], rtol=0, atol=1e-8)
    p = refoptim.Parameter(np.array([1.0, 2.0]))
    p.grad = np.ones(2)
    with pytest.warns(UserWarning, match="duplicate"):
        opt = refoptim.Adam([p, p], lr=0.1)
    opt.step()
    np.testing.assert_allclose(p.data, [0.8, 1.8], rtol=0, atol=1e-8)
    assert float(opt.state[p]["step"]) == 2.0


def test_shares_memory_tells_views_apart():
    buf = np.zeros(100)
    disjoint = [(refoptim.Parameter(buf[i * 10 : (i + 1) * 10]), np.ones(10)) for i in range(10)]
    assert not fastpath.shares_memory(disjoint)  # views into one buffer, side by side
    touching = disjoint + [(refoptim.Parameter(buf[5:15]), np.ones(10))]
    assert fastpath.shares_memory(touching)
    p = refoptim.Parameter(np.ones(4))
    assert fastpath.shares_memory([(p, p.data)])  # the gradient is the parameter's array
    g = np.ones(4)
    shared_grads = [(refoptim.Parameter(np.ones(4)), g), (refoptim.Parameter(np.ones(4)), g)]
    assert not fastpath.shares_memory(shared_grads)  # gradients are only read
    strided = [(refoptim.Parameter(buf[0::2]), np.ones(50)), (refoptim.Parameter(buf[1::2]), np.ones(50))]
    assert fastpath.shares_memory(strided)  # interleaved: byte ranges overlap, so "may share"
