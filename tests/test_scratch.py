"""The scratch buffers of the NumPy fast path (:mod:`refoptim._scratch`): a steady-state
step allocates nothing proportional to the parameters, and every operation a rule runs on
scratch arrays gives NumPy's own dtype and bits. (That every optimizer's results are the
plain rule's bits with scratch buffers on and off is ``tests/test_fastpath.py``.)"""

import sys
import warnings

import numpy as np
import pytest

import refoptim
import refoptim._fastpath as fastpath
from refoptim import _scratch, registry
from refoptim._backend import quiet
from refoptim._primitives import fma
from refoptim.bench import traced_peak

ELEMENTWISE = registry.names(elementwise=True)


def _steady_state_peak(name, scratch, threads, n=200_000, tensors=2):
    """Bytes a steady-state step of ``name`` allocates at its peak (``tracemalloc``: NumPy reports
    its buffers to it), on ``tensors`` float32 parameters of ``n`` elements."""
    rng = np.random.default_rng(0)
    ps = [refoptim.Parameter(rng.standard_normal(n).astype(np.float32)) for _ in range(tensors)]
    for p in ps:
        p.grad = rng.standard_normal(n).astype(np.float32)
    cls = registry.get(name).cls
    strategy = fastpath.ElementwiseStrategy(scratch=scratch, num_threads=threads)
    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mp.setattr(cls, "_strategy", strategy)
        opt = cls(ps, **registry.get(name).bench)
        opt.step()
        opt.step()
        peak = traced_peak(opt.step)
    return peak, sum(p.data.nbytes for p in ps)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_a_steady_state_step_allocates_nothing_proportional_to_the_parameters(name, threads):
    """Generated from the registry: every elementwise optimizer, at its bench options, on
    two parameters of 200,000 float32 elements (piece by piece, on one thread and on two):
    once its scratch buffers exist, a step's allocations peak under 128 KiB per thread
    (measured 80-90 KiB on one: NumPy's own 64 KiB casting buffer, 8192 float64 elements,
    for an operation that mixes float32 and float64; Python objects; the 0-d step
    counters), against 1.6
    MB of parameters; without the buffers the same step peaks at its pieces' temporaries
    (measured 330 KB to 5.9 MB), so the measurement can fail."""
    with_scratch, nbytes = _steady_state_peak(name, True, threads)
    assert with_scratch < threads * 128 * 1024, f"{name}: a steady-state step allocated {with_scratch} bytes"
    without, _ = _steady_state_peak(name, False, threads)
    assert without > 2 * with_scratch, (name, without, with_scratch)


def test_buffers_are_lent_until_nothing_refers_to_them():
    ws = _scratch.Workspace(block_bytes=64, limit=4)
    dtype = np.dtype(np.float64)
    plain, a = ws.take((4,), dtype)
    _, b = ws.take((4,), dtype)
    assert not np.shares_memory(a, b)  # a is still referred to
    view = a[1:]
    del a, plain
    _, c = ws.take((4,), dtype)
    assert not np.shares_memory(c, view)  # a view keeps its buffer lent
    del view, c
    _, d = ws.take((4,), dtype)
    _, e = ws.take((2,), np.dtype(np.float32))  # another shape and dtype in a free buffer
    assert len(ws.buffers) == 3
    assert ws.take((4,), dtype)[1] is not d


def test_the_same_shape_gets_the_same_arrays_back():
    ws = _scratch.Workspace()
    dtype = np.dtype(np.float32)
    first = ws.take((8,), dtype)[1]
    ident = id(first)
    del first
    assert id(ws.take((8,), dtype)[1]) == ident


def test_past_the_limit_temporaries_are_ordinary_arrays():
    ws = _scratch.Workspace(block_bytes=8, limit=1)
    keep = ws.take((1,), np.dtype(np.float64))
    plain, extra = ws.take((1,), np.dtype(np.float64))
    assert len(ws.buffers) == 1 and plain.base is None and type(extra) is _scratch.Scratch
    del keep


def _operands():
    rng = np.random.default_rng(1)
    special = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-310, -5e-324, 1e308, -1e308, 3.0, 2.0**-1000]
    out = []
    for dtype in (np.float32, np.float64):
        with np.errstate(over="ignore"):
            x = np.concatenate([rng.standard_normal(64), special]).astype(dtype)
            y = np.concatenate([rng.standard_normal(64) * 1e3, special[::-1]]).astype(dtype)
        out.append((x, y))
    return out


OPS = {
    "add": lambda x, y: x + y,
    "mul-scalar": lambda x, y: x * 0.3,
    "rdiv-int": lambda x, y: 1 / x,
    "sqrt": lambda x, y: np.sqrt(np.abs(x)),
    "maximum": lambda x, y: np.maximum(x, y),
    "compare": lambda x, y: x > y,
    "isfinite": lambda x, y: np.isfinite(x),
    "where": lambda x, y: np.where(x > 0, x, y),
    "where-0d": lambda x, y: np.where(x > 0, np.asarray(1.5, x.dtype), x),
    "astype": lambda x, y: x.astype(np.float64 if x.dtype == np.float32 else np.float32),
    "zeros_like": lambda x, y: np.zeros_like(x),
    "ones_like": lambda x, y: np.ones_like(x),
    "full_like": lambda x, y: np.full_like(x, 2.5),
    "reduce": lambda x, y: np.minimum.reduce(np.abs(x), axis=None, initial=np.inf),
    "broadcast": lambda x, y: x[:, None] * y[None, :4],
    "inplace": lambda x, y: x.__imul__(0.5),
    "two-outputs": lambda x, y: np.divmod(x, 2.0),
    "fma-scalar": lambda x, y: fma(0.1, x, y),
    "fma-array": lambda x, y: fma(y * 0.5, x, y),
    "fma-out": lambda x, y: fma(-0.25, x, y, out=y),
}


@pytest.mark.parametrize("op", list(OPS))
def test_operations_on_scratch_arrays_match_numpy(op):
    """Each operation a rule runs (ufuncs, ``where``, ``astype``, the ``*_like``
    constructors, reductions, broadcasting, in-place operators, the fused multiply-add
    with and without ``out``), on finite, infinite, NaN and subnormal float32 and float64
    operands: the same dtype, shape and bits as on plain arrays, and never a scratch
    array that is not the thread's buffer or the operand itself."""
    fn = OPS[op]
    for x, y in _operands():
        with quiet():
            want = fn(x.copy(), y.copy())
            xs, ys = x.copy(), y.copy()
            got = fn(_scratch.scratch_view(xs), _scratch.scratch_view(ys))
        want, got_plain = np.asarray(want), np.asarray(got).view(np.ndarray)
        assert got_plain.dtype == want.dtype and got_plain.shape == want.shape, op
        assert got_plain.tobytes() == want.tobytes(), op


def test_results_of_a_step_are_never_scratch_arrays(monkeypatch):
    """State entries a rule creates (SGD's momentum buffer, made from the gradient in the
    first step) are copied out of the scratch buffers; parameters keep their arrays."""
    monkeypatch.setattr(fastpath, "CHUNK_ELEMENTS", 16)
    monkeypatch.setattr(fastpath, "SCRATCH_MIN_ELEMENTS", 0)
    p = refoptim.Parameter(np.linspace(-1, 1, 100, dtype=np.float32))
    data = p.data
    p.grad = np.ones(100, np.float32)
    opt = refoptim.SGD([p], lr=0.1, momentum=0.9)
    opt.step()
    buf = opt.state[p]["momentum_buffer"]
    assert type(buf) is np.ndarray and p.data is data
    lent = [entry[0] for ws in _scratch._all_workspaces for entry in ws.buffers]
    assert lent and not any(np.shares_memory(buf, raw) for raw in lent)


def test_only_calls_of_enough_elements_take_scratch_buffers():
    """Small parameters' temporaries come from the allocator's free lists; scratch arrays
    would only add their Python cost: calls under ``SCRATCH_MIN_ELEMENTS`` elements do
    without them, larger ones take them."""
    n = fastpath.SCRATCH_MIN_ELEMENTS
    for size, expect in [(n // 4, False), (4 * n, True)]:
        _scratch.release_all()
        ps = [refoptim.Parameter(np.ones(size, np.float32)) for _ in range(3)]
        for p in ps:
            p.grad = np.ones(size, np.float32)
        refoptim.Adam(ps).step()
        assert (_scratch.retained_bytes() > 0) is expect, size


def test_the_environment_turns_scratch_buffers_off():
    import subprocess

    code = "import refoptim._fastpath as f; print(f.SCRATCH)"
    for value, expect in [("0", "False"), ("off", "False"), ("1", "True")]:
        env = {"REFOPTIM_SCRATCH": value, "PATH": "", "PYTHONPATH": ":".join(sys.path)}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == expect


def test_the_compiled_fused_multiply_add_gives_the_array_api_bits(monkeypatch):
    """The opt-in numba kernels (:mod:`refoptim._numba`): ``fma`` on float32 scratch arrays,
    with a Python scalar and with an array as ``a``, into a new buffer and in place over
    ``c``, on a million operands spread over float32's range (subnormal to overflowing
    products, infinities, NaN, signed zeros): bit for bit the Array API route's result."""
    pytest.importorskip("numba")
    monkeypatch.setattr(_scratch, "NUMBA", True)
    rng = np.random.default_rng(3)
    n = 1_000_000
    scale = rng.choice([1e-40, 1e-20, 1.0, 1e20, 1e38], n)
    with np.errstate(over="ignore"):
        b = (rng.standard_normal(n) * scale).astype(np.float32)
        c = (rng.standard_normal(n) * scale[::-1]).astype(np.float32)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, 3e38, -3e38], np.float32)
    b[:64], c[:64] = np.tile(special, 8), np.repeat(special, 8)
    arrays = rng.standard_normal(n).astype(np.float32)
    with quiet():
        for a in (0.1, -1e-3, 0.999, 3e38, float(np.float32(1 / 3)), arrays):
            a_scalar = a if isinstance(a, np.ndarray) else float(np.float32(a))
            want = fma(a_scalar, b, c)  # plain arrays: the Array API route
            a_in = _scratch.scratch_view(a) if isinstance(a, np.ndarray) else a_scalar
            got = fma(a_in, _scratch.scratch_view(b), _scratch.scratch_view(c))
            assert np.asarray(got).view(np.ndarray).tobytes() == want.tobytes()
            c_copy = c.copy()
            target = _scratch.scratch_view(c_copy)
            assert fma(a_in, _scratch.scratch_view(b), target, out=target) is target
            assert c_copy.tobytes() == want.tobytes()
