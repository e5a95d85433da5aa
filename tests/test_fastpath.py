"""The fast paths never change a result: every elementwise optimizer of the registry, run
by :class:`refoptim._fastpath.ElementwiseStrategy` (many small parameters together, large
ones piece by piece, on threads), gives the same bits, every parameter and every state
entry, as the plain rule run parameter by parameter (:data:`refoptim._fastpath.PLAIN`);
so do groups whose memory overlaps and read-only arrays, which the strategy hands to the
plain rule. The optimizers and their option sets are generated from the registry and the
constructors (:func:`_option_sets`): a new elementwise optimizer is covered when it is
registered."""

import inspect
import warnings

import array_api_strict
import numpy as np
import pytest

import refoptim
import refoptim._fastpath as fastpath
from refoptim import _scratch, registry

# --------------------------------------------------------------------- the cases, from the registry
ELEMENTWISE = registry.names(elementwise=True)

IMPLEMENTATION_FLAGS = {"foreach", "fused", "capturable", "differentiable"}
"""Options that only pick one of torch's implementations: refoptim always computes the
single-tensor one, so they switch on no branch of a rule."""

SWITCH_ON = {
    "momentum": 0.9,
    "dampening": 0.1,
    "weight_decay": 0.1,
    "lr_decay": 0.01,
    "initial_accumulator_value": 0.1,
    "t0": 2.0,
}
"""For numeric options (by name, whichever optimizer has them): a value that switches on a
branch their default leaves off (ASGD's averaging starts at step ``t0``). A boolean option
is switched on by ``True``."""


def _valid(cls, options, dtype=np.float64):
    """Whether ``cls(options)`` constructs and steps twice on a small parameter of
    ``dtype`` (torch's checks refuse, say, Nesterov without momentum)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = refoptim.Parameter(np.linspace(-1, 1, 3).astype(dtype))
            opt = cls([p], **options)
            for _ in range(2):
                p.grad = np.linspace(1, -0.5, 3).astype(dtype)
                opt.step()
    except (ValueError, TypeError, RuntimeError):
        return False
    return True


def _option_sets(cls):
    """``(id, options)`` for ``cls``: its defaults; each boolean option switched on (with a
    :data:`SWITCH_ON` option where it needs one: Nesterov needs momentum); each numeric
    option of :data:`SWITCH_ON` it has; ``lr`` as a 0-d float32 array; and as many of all
    these at once as are valid together."""
    signature = inspect.signature(cls.__init__).parameters
    flags = [
        k for k, v in signature.items()
        if k not in IMPLEMENTATION_FLAGS and v.default is False
    ]
    switches = [k for k in SWITCH_ON if k in signature and signature[k].default != SWITCH_ON[k]]
    sets = [("defaults", {})]
    for flag in flags:
        options = {flag: True}
        if not _valid(cls, options):
            options = next(
                ({flag: True, k: SWITCH_ON[k]} for k in switches if _valid(cls, {flag: True, k: SWITCH_ON[k]})), None
            )
        if options is not None:
            sets.append(("+".join(options), options))
    sets += [(k, {k: SWITCH_ON[k]}) for k in switches if _valid(cls, {k: SWITCH_ON[k]})]
    lr = {"lr": np.asarray(signature["lr"].default, dtype=np.float32)}
    if _valid(cls, lr):
        sets.append(("lr_array", lr))
    everything: dict = {}
    for k, value in [(k, SWITCH_ON[k]) for k in switches] + [(k, True) for k in flags] + list(lr.items()):
        if _valid(cls, {**everything, k: value}):
            everything[k] = value
    sets.append(("all", everything))
    return sets


def _cases():
    cases = []
    for name in ELEMENTWISE:
        cls = registry.get(name).cls
        complex_ok = _valid(cls, {}, np.complex64)
        for label, options in _option_sets(cls):
            for dtype in [np.float32, np.float64] + ([np.complex64] if complex_ok else []):
                if dtype == np.complex64 and not _valid(cls, options, dtype):
                    continue
                cases.append(pytest.param(name, options, dtype, id=f"{name}-{label}-{np.dtype(dtype).name}"))
    return cases


CASES = _cases()


def _arrays(dtype, seed, shape):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        x = x + 1j * rng.standard_normal(shape)
    return np.asarray(x, dtype=dtype)


# --------------------------------------------------------------------- inputs
# Each builder returns (param groups, the distinct Parameters, grads(step) -> one gradient
# or None per entry of the groups' params, before(step, opt) run before each step).
SIZE = 103  # with pieces of 16: six full pieces and a short one


def _large(dtype):
    """Large parameters (one 2-d, one skipping steps, one strided so it runs whole)."""
    buf = _arrays(dtype, 3, (2 * SIZE,))
    params = [
        refoptim.Parameter(_arrays(dtype, 0, (SIZE,))),
        refoptim.Parameter(_arrays(dtype, 1, (9, 13))),
        refoptim.Parameter(_arrays(dtype, 2, (SIZE,))),
        refoptim.Parameter(buf[::2]),  # not contiguous: the plain rule
    ]

    def grads(step):
        return [
            None if i == 2 and step % 3 == 1 else _arrays(dtype, 10 * step + i, p.data.shape)
            for i, p in enumerate(params)
        ]

    return [{"params": params}], params, grads, None


def _many(dtype):
    """Many small parameters in two groups (2-d, 0-d, one strided), some skipping steps so
    their step counts diverge."""
    shapes = [(7,), (3, 5), (1,), (11,), (2, 2, 3), (7,), ()]
    params = [refoptim.Parameter(_arrays(dtype, i, s)) for i, s in enumerate(shapes)]
    params.append(refoptim.Parameter(_arrays(dtype, 99, (6, 10))[::2, 1:8]))  # not contiguous

    def grads(step):
        return [
            None if (i == 1 and step % 3 == 1) or (i == 3 and step == 0) else _arrays(dtype, 100 * step + i, p.data.shape)
            for i, p in enumerate(params)
        ]

    return [{"params": params[:5]}, {"params": params[5:], "lr": 0.003}], params, grads, None


def _aliased(case, size):
    """Memory shared between parameters, or between a parameter and a gradient, and
    read-only arrays: the plain rule updates parameters one after the other, each seeing
    what earlier ones wrote (as torch does); the fast paths, which read every input before
    they write, must step aside."""

    def build(dtype):
        base = _arrays(dtype, 0, (size,))
        other = _arrays(dtype, 1, (size,))
        fresh = lambda seed: _arrays(dtype, seed, (size,))  # noqa: E731
        before = None
        if case == "two-parameters-one-array":
            params = [refoptim.Parameter(base), refoptim.Parameter(base)]
            entries = params
            grads = lambda step: [fresh(10 + step), fresh(20 + step)]  # noqa: E731
        elif case == "one-parameter-twice":
            params = [refoptim.Parameter(base)]
            entries = params * 2
            grads = lambda step: [fresh(10 + step)] * 2  # noqa: E731
        elif case == "grad-is-data":
            params = [refoptim.Parameter(base), refoptim.Parameter(other)]
            entries = params
            grads = lambda step: [p.data for p in params]  # noqa: E731
        elif case == "grad-is-other-parameter":
            params = [refoptim.Parameter(base), refoptim.Parameter(other)]
            entries = params
            grads = lambda step: [params[1].data, fresh(20 + step)]  # noqa: E731
        elif case == "overlapping-views":
            buf = _arrays(dtype, 2, (size + size // 2,))
            params = [refoptim.Parameter(buf[:size]), refoptim.Parameter(buf[size // 2 :])]
            entries = params
            grads = lambda step: [fresh(10 + step), fresh(20 + step)]  # noqa: E731
        elif case == "read-only":
            # two read-only parameters with read-only gradients, and a writeable one (which
            # takes the fast paths); after the first step every state array of the first
            # parameter is made read-only
            params = [refoptim.Parameter(base), refoptim.Parameter(other), refoptim.Parameter(fresh(3))]
            for p in params[:2]:
                p.data.flags.writeable = False
            entries = params

            def grads(step):
                out = [fresh(10 * step + i) for i in range(3)]
                for g in out[:2]:
                    g.flags.writeable = False
                return out

            def before(step, opt):
                if step == 1:
                    for value in opt.state[params[0]].values():
                        if isinstance(value, np.ndarray):
                            value.flags.writeable = False
        else:
            raise AssertionError(case)
        return [{"params": entries}], params, grads, before

    return build


ALIASING = ["two-parameters-one-array", "one-parameter-twice", "grad-is-data", "grad-is-other-parameter",
            "overlapping-views", "read-only"]

# mode: (inputs, strategy knobs, the fast-path functions the run must call, must not call)
TINY_THREADS = {"chunk_elements": 16, "num_threads": 3, "thread_chunk_elements": 5, "thread_block_elements": 20}
MODES = {
    "whole": (_large, {"chunk_elements": 0}, set(), {"chunked_update", "grouped_update"}),
    "whole-many": (_many, {"chunk_elements": 0}, set(), {"chunked_update", "grouped_update"}),
    "chunked": (
        _large, {"chunk_elements": 16, "num_threads": 1, "thread_chunk_elements": 16}, {"chunked_update"}, {"_map_in_threads"}
    ),
    "threads": (_large, TINY_THREADS, {"chunked_update", "_map_in_threads"}, set()),
    "grouped": (_many, {"chunk_elements": 64}, {"grouped_update"}, set()),
    "grouped-runs": (_many, {"chunk_elements": 8}, {"grouped_update"}, set()),
    # without the scratch buffers (refoptim._scratch): the rule's temporaries allocated
    "chunked-no-scratch": (_large, {"chunk_elements": 16, "num_threads": 1, "scratch": False}, {"chunked_update"}, set()),
    "grouped-no-scratch": (_many, {"chunk_elements": 8, "scratch": False}, {"grouped_update"}, set()),
    # the opt-in compiled evaluation (REFOPTIM_NUMBA=1): whole-rule fusion (refoptim._fuse)
    # where the rule can be traced, else the compiled float32 fused multiply-add
    # (refoptim._numba) on scratch buffers; float64 and complex64 are never fused
    "threads-numba": (_large, TINY_THREADS, {"chunked_update", "_map_in_threads"}, set()),
    "grouped-numba": (_many, {"chunk_elements": 8}, {"grouped_update"}, set()),
}
NUMBA_MODES = {"threads-numba", "grouped-numba"}
for _case in ALIASING:
    for _size, _label in [(8, "grouped"), (SIZE, "chunked")]:
        MODES[f"{_case}-{_label}"] = (_aliased(_case, _size), TINY_THREADS, set(), set())
MODES["read-only-chunked"] = (_aliased("read-only", SIZE), TINY_THREADS, {"_map_in_threads"}, set())
MODES["read-only-grouped"] = (_aliased("read-only", 8), TINY_THREADS, {"grouped_update"}, set())


@pytest.fixture(autouse=True)
def _scratch_for_small_arrays(monkeypatch):
    """The cases here are small: they take the scratch buffers all the same (in normal use
    only calls of at least ``SCRATCH_MIN_ELEMENTS`` elements do)."""
    monkeypatch.setattr(fastpath, "SCRATCH_MIN_ELEMENTS", 0)


# --------------------------------------------------------------------- running and comparing
def _encode(value):
    """A value as what must match: type, dtype, shape and bytes (NaNs and signed zeros
    included) of an array; type and repr of anything else."""
    if isinstance(value, np.ndarray | np.generic):
        value = np.asarray(value)
        return (type(value).__name__, value.dtype.str, value.shape, value.tobytes())
    return (type(value).__name__, repr(value))


def _run(name, options, dtype, build, strategy, steps, spy=None):
    """``steps`` steps of ``name`` on the inputs ``build`` makes, every group run by
    ``strategy``; returns every distinct parameter's and state entry's :func:`_encode`."""
    cls = registry.get(name).cls
    groups, params, grads, before = build(dtype)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cls, "_strategy", strategy)
        for fn in spy if spy is not None else {}:
            real = getattr(fastpath, fn)
            mp.setattr(fastpath, fn, lambda *a, _real=real, _fn=fn, **k: spy[_fn].append(1) or _real(*a, **k))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "optimizer contains a parameter group with duplicate parameters")
            opt = cls(groups, **options)
        entries = [p for g in groups for p in g["params"]]
        for step in range(steps):
            for p, g in zip(entries, grads(step), strict=True):
                p.grad = g
            if before is not None:
                before(step, opt)
            opt.step()
    return [
        (i, _encode(p.data), {k: _encode(v) for k, v in opt.state.get(p, {}).items()})
        for i, p in enumerate(params)
    ]


_plain_results: dict = {}


def _plain(name, options, dtype, build, steps, key):
    """The reference: every parameter by the plain rule, one after the other (cached per
    inputs: several modes share them)."""
    if key not in _plain_results:
        spy = {"chunked_update": [], "grouped_update": []}
        _plain_results[key] = _run(name, options, dtype, build, fastpath.PLAIN, steps, spy)
        assert not spy["chunked_update"] and not spy["grouped_update"]
    return _plain_results[key]


def _assert_same(plain, fast):
    for (i, p_plain, s_plain), (_, p_fast, s_fast) in zip(plain, fast, strict=True):
        assert p_plain == p_fast, f"parameter {i}: bits differ"
        assert s_plain.keys() == s_fast.keys(), f"parameter {i}: state keys {list(s_plain)} != {list(s_fast)}"
        for k in s_plain:
            assert s_plain[k] == s_fast[k], f"parameter {i}: state[{k!r}] differs"


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("name, options, dtype", CASES)
def test_fast_paths_give_the_plain_rules_bits(name, options, dtype, mode):
    """Generated from the registry: every elementwise optimizer, every option set of
    :func:`_option_sets`, float32, float64 and complex64, run by the fast paths (whole,
    piece by piece, on threads, grouped; aliased and read-only memory) has every
    parameter and every state entry bitwise equal to the plain rule's."""
    build, knobs, must, must_not = MODES[mode]
    if mode in NUMBA_MODES:
        pytest.importorskip("numba")
        from refoptim import _fuse
    steps = 3 if build not in (_large, _many) else 5
    inputs = build.__name__ if build in (_large, _many) else mode
    key = (name, repr(sorted(options.items())), np.dtype(dtype).name, inputs)
    plain = _plain(name, options, dtype, build, steps, key)
    spy = {fn: [] for fn in must | must_not}
    fused = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_scratch, "NUMBA", mode in NUMBA_MODES)
        if mode in NUMBA_MODES:
            real = _fuse.trace
            mp.setattr(_fuse, "trace", lambda *a: fused.append(real(*a)) or fused[-1])
        fast = _run(name, options, dtype, build, fastpath.ElementwiseStrategy(**knobs), steps, spy)
    if mode in NUMBA_MODES:
        # every float32 rule fuses (from its second step on); nothing else does
        assert bool(fused) == (np.dtype(dtype) == np.float32), f"fused steps: {len(fused)}"
    for fn in must:
        assert spy[fn], f"{fn} was not called: the fast path was not taken"
    for fn in must_not:
        assert not spy[fn], f"{fn} was called"
    _assert_same(plain, fast)


def test_every_elementwise_optimizer_and_its_options_are_covered():
    """The generated cases cover every elementwise optimizer of the registry, each boolean
    option that switches a branch, in float32, float64 and (where it steps) complex64;
    and the registry's ``elementwise`` is the class's."""
    covered = {(c.values[0], c.values[2]) for c in CASES}
    for name in ELEMENTWISE:
        cls = registry.get(name).cls
        assert cls._elementwise
        assert (name, np.float32) in covered and (name, np.float64) in covered
        labels = [label for label, _ in _option_sets(cls)]
        for k, v in inspect.signature(cls.__init__).parameters.items():
            if v.default is False and k not in IMPLEMENTATION_FLAGS:
                assert any(k in label.split("+") for label in labels), (name, k)
    assert {name for name, dtype in covered if dtype == np.complex64} == set(ELEMENTWISE)
    for name in registry.names(elementwise=False):
        assert not registry.get(name).cls._elementwise


def test_the_strategy_follows_elementwise():
    for name in registry.names():
        cls = registry.get(name).cls
        opt = cls([refoptim.Parameter(np.zeros((2, 3)))])  # 2-d: Muon takes only matrices
        expected = fastpath.ELEMENTWISE if registry.get(name).elementwise else fastpath.PLAIN
        assert opt._strategy is expected, name


def test_the_shared_strategy_reads_the_module_settings(monkeypatch):
    """:data:`ELEMENTWISE`'s knobs default to the module's settings, read at each step:
    ``CHUNK_ELEMENTS`` 0 turns the fast paths off, :func:`set_num_threads` governs the
    threads; a knob set on a strategy wins over the module's."""
    calls = {"chunked_update": [], "grouped_update": [], "_map_in_threads": []}
    for fn in calls:
        real = getattr(fastpath, fn)
        monkeypatch.setattr(fastpath, fn, lambda *a, _real=real, _fn=fn, **k: calls[_fn].append(1) or _real(*a, **k))
    p = refoptim.Parameter(_arrays(np.float32, 0, (4 * fastpath.THREAD_BLOCK_ELEMENTS,)))
    q = refoptim.Parameter(_arrays(np.float32, 1, (5,)))
    opt = refoptim.Adam([p, q])

    def step():
        for c in calls.values():
            c.clear()
        p.grad, q.grad = np.ones_like(p.data), np.ones_like(q.data)
        opt.step()
        return {fn for fn, c in calls.items() if c}

    monkeypatch.setattr(fastpath, "_num_threads", 2)
    assert step() == {"chunked_update", "grouped_update", "_map_in_threads"}
    monkeypatch.setattr(fastpath, "_num_threads", 1)
    assert step() == {"chunked_update", "grouped_update"}
    monkeypatch.setattr(fastpath.ELEMENTWISE, "num_threads", 2)
    assert step() == {"chunked_update", "grouped_update", "_map_in_threads"}
    monkeypatch.setattr(fastpath.ELEMENTWISE, "num_threads", None)
    monkeypatch.setattr(fastpath, "CHUNK_ELEMENTS", 0)
    assert step() == set()
    assert repr(fastpath.ElementwiseStrategy(num_threads=2)) == "ElementwiseStrategy(num_threads=2)"
    assert repr(fastpath.PLAIN) == "PlainStrategy()"


# --------------------------------------------------------------------- the pieces
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
    monkeypatch.setattr(fastpath, "CHUNK_ELEMENTS", 16)
    p = refoptim.Parameter(_arrays(np.float64, 0, (SIZE,)))
    p.grad = _arrays(np.float64, 1, (SIZE,))
    opt = refoptim.SGD([p], lr=0.1, momentum=0.9)
    opt.step()
    buf = opt.state[p]["momentum_buffer"]
    assert buf.shape == (SIZE,) and buf.tobytes() == p.grad.tobytes()
    assert not np.shares_memory(buf, p.grad)


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
