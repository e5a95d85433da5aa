"""The one seam for speed: ways of running an elementwise rule that never change a result.

Who calls what. ``Optimizer.step`` runs the closure, checks every parameter and gradient
(``_params_with_grad``), and, under ``quiet()``, hands each group to a *strategy*:
``optimizer._strategy.step_group(optimizer, group, pairs)`` (through ``_step_group``, which
SGD overrides for a parameter listed twice). The strategy decides, parameter by parameter,
how the rule runs, and runs it:

- :class:`PlainStrategy` (:data:`PLAIN`, optimizers whose ``_elementwise`` is false): each
  parameter by the plain rule, one after the other (:meth:`PlainStrategy.update`, also
  ``Optimizer._update_plain``).
- :class:`ElementwiseStrategy` (:data:`ELEMENTWISE`, elementwise optimizers): the plain
  rule for a group whose memory overlaps (:func:`shares_memory`) and for what cannot be
  viewed flat; else small parameters together (:func:`grouped_update`) and large ones
  piece by piece, on threads (:func:`chunked_update`). It owns the knobs (piece sizes,
  thread count); ``None`` reads this module's settings at each step.

A strategy reaches the optimizer only through ``optimizer.state``,
``optimizer._init_state(p, group)`` and ``optimizer._update(param, grad, state, group)``.
On NumPy it hands the rule its pieces as scratch arrays (:mod:`refoptim._scratch`,
:data:`SCRATCH`): the rule's temporaries then reuse each thread's buffers, so a
steady-state step allocates nothing proportional to the parameters, whatever the
allocator's settings. With the opt-in compiled evaluation (``REFOPTIM_NUMBA=1``,
:data:`refoptim._scratch.NUMBA`) it first traces the rule once per step and runs it as
one compiled pass over each parameter, on the same threads (:mod:`refoptim._fuse`);
where the trace gives up, the scratch arrays run it as above. The test that guards every strategy (``tests/test_fastpath.py``,
generated from the registry) compares its bits with the plain rule's, with scratch
buffers on and off.

An elementwise rule (every optimizer whose update of an element depends only on that
element, its gradient and its state, plus scalars) gives the same bits whether it runs
on a whole array or on consecutive pieces of it. So the Optimizer base may run it piece by
piece: :func:`chunked_update` feeds the rule flat slices of the parameter, its gradient and
each full-size state entry, so the temporaries of one piece stay in the CPU's cache and a
step's extra memory stays bounded by the piece size instead of growing with the parameter.

Scalar state (``step``, ASGD's ``eta`` and ``mu``, NAdam's ``mu_product``) is the same for
every piece: each piece gets its own copy of the values before the step, and the first
piece's results are kept. State entries that a rule creates during the step (SGD's first
momentum buffer) are assembled from the pieces.

Only arrays that can be viewed flat without a copy are chunked (C-contiguous parameter,
gradient and full-size state on a namespace whose ``reshape`` returns views for them:
NumPy, CuPy); anything else runs whole, exactly as before. ``tests/test_fastpath.py``
proves every covered optimizer bit-identical to the whole-array rule.

Many small parameters (at most two pieces each) are updated together instead
(:func:`grouped_update`, like torch's ``foreach`` path): those of one group with the same
dtype, state layout and scalar state values (so the same ``step``) are concatenated, the
rule runs once on the concatenation, and the results are copied back in place. The
per-parameter cost of the rule's many small calls disappears; the copies cost two passes.

On NumPy, the pieces of the large parameters of a group run on several threads at once
(:func:`set_num_threads`, like torch's intra-op threads; by default one per CPU this
process may use): their elements, laid end to end, are cut into one block per thread,
and each thread runs its block piece by piece. NumPy's ufuncs release the interpreter lock
while they compute, so two threads nearly halve a large step. The pieces are disjoint and
the rule is elementwise, so the bits do not depend on the number of threads. Small
parameters stay in the calling thread: their cost is Python's, which threads share.
"""

from __future__ import annotations

import contextvars
import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from itertools import pairwise
from typing import Any

from . import _scratch
from ._backend import array_namespace, assign, is_array

__all__ = [
    "CHUNK_ELEMENTS",
    "ELEMENTWISE",
    "PLAIN",
    "SCRATCH",
    "SCRATCH_MIN_ELEMENTS",
    "THREAD_BLOCK_ELEMENTS",
    "THREAD_CHUNK_ELEMENTS",
    "ElementwiseStrategy",
    "PlainStrategy",
    "can_chunk",
    "can_group",
    "chunked_update",
    "get_num_threads",
    "group_key",
    "grouped_update",
    "set_num_threads",
    "shares_memory",
    "writeable_or_copy",
]

CHUNK_ELEMENTS = 15872
"""Elements per piece (31 x 512): a piece's float64 temporaries (torch's fused multiply-adds
on float32 are evaluated in float64) take 124 KiB, under glibc's 128 KiB threshold above
which every temporary is a fresh ``mmap`` whose pages fault in on first touch. Measured on
the 2-core CI machine (Adam, 10M float32 elements): about 2x faster than whole arrays, and
a step's extra memory falls from 8x the parameter's bytes to about 0.01x. Set to 0 to
turn chunking off."""


THREAD_CHUNK_ELEMENTS = 131072
"""Elements per piece when NumPy arrays run on several threads, each thread taking one
block of them piece by piece. Larger than :data:`CHUNK_ELEMENTS` because the threads
share one interpreter lock, which they hold between NumPy calls: pieces this size keep
each call long enough that the other thread computes meanwhile (at 15,872 elements two
threads were slower than one here; 65,536 took 35 ms for Adam on 10M float32 elements,
131,072 about 28 ms). A piece's float64 temporaries take 1 MiB each; Adam's peak extra
memory on 10M elements is 0.11x the parameter bytes."""

THREAD_BLOCK_ELEMENTS = 32768
"""The fewest elements worth a thread of their own: an array of ``n`` elements is shared
out to at most ``n // THREAD_BLOCK_ELEMENTS`` threads (handing a block to a thread costs
tens of microseconds)."""

SCRATCH = os.environ.get("REFOPTIM_SCRATCH", "1").strip().lower() not in ("0", "false", "no", "off")
"""Whether the fast path gives a NumPy rule its pieces as scratch arrays
(:mod:`refoptim._scratch`): the rule's temporaries then reuse each thread's buffers
instead of allocating, so a steady-state step allocates nothing proportional to the
parameters and faults no pages in, whatever the allocator's settings. The bits are the
same either way. On by default; the environment variable ``REFOPTIM_SCRATCH=0`` (read at
import) or ``False`` here turns it off (``python -m refoptim bench --no-scratch``
measures the difference)."""


def _min_elements_from_env() -> int:
    try:
        return max(0, int(os.environ.get("REFOPTIM_SCRATCH_MIN_ELEMENTS", "8192")))
    except ValueError:
        return 8192


SCRATCH_MIN_ELEMENTS = _min_elements_from_env()
"""The fewest elements a call of the rule must cover to compute in scratch buffers
(default 8,192: a float64 temporary of 8,192 elements is 64 KiB). Smaller temporaries come
from the allocator's free lists without touching the kernel, and the scratch arrays'
Python cost per operation would then be most of the step (the fingerprint's small cases
ran 35% slower with it). The environment variable ``REFOPTIM_SCRATCH_MIN_ELEMENTS``
(read at import) sets it: ``0`` puts every call on scratch buffers, which is how the
fingerprint checks their bits on its small cases."""


def _scratch_wrapper(x: Any, scratch: bool | None, n: int) -> Callable[[Any], Any] | None:
    """:func:`refoptim._scratch.scratch_view` where ``x`` is a plain NumPy array, the call
    covers at least :data:`SCRATCH_MIN_ELEMENTS` elements (``n``) and scratch arrays are
    on (``scratch``, default :data:`SCRATCH`), else ``None``."""
    if not (SCRATCH if scratch is None else scratch) or n < SCRATCH_MIN_ELEMENTS:
        return None
    if type(x) is not _scratch.NDARRAY:
        return None
    return _scratch.scratch_view


_num_threads: int | None = None
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()


def _default_threads() -> int:
    env = os.environ.get("REFOPTIM_NUM_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            pass
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def get_num_threads() -> int:
    """The number of threads refoptim's CPU fast path may use (torch's
    ``torch.get_num_threads``): by default the CPUs this process may run on, or the
    environment variable ``REFOPTIM_NUM_THREADS``."""
    global _num_threads
    if _num_threads is None:
        _num_threads = _default_threads()
    return _num_threads


def set_num_threads(n: int) -> None:
    """Set the number of threads refoptim's CPU fast path may use (torch's
    ``torch.set_num_threads``). ``1`` keeps every step in the calling thread. Results are
    the same bits for every setting: threads only share out disjoint pieces of an
    elementwise update. Bad values raise torch's ``RuntimeError`` and message."""
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, int):
        raise RuntimeError(f"set_num_threads expects an int, but got {type(n).__name__}")
    if n < 1:
        raise RuntimeError("set_num_threads expects a positive integer")
    _num_threads = n


def _threads_for(x: Any, n: int, threads: int | None = None, block: int | None = None) -> int:
    """How many threads to share ``n`` elements of ``x`` out to: more than one only for
    NumPy arrays (their ufuncs release the interpreter lock while they compute; other
    libraries, CuPy with its per-thread device and stream among them, stay in the calling
    thread), at most ``threads`` (default :func:`get_num_threads`) and at most one thread
    per ``block`` elements (default :data:`THREAD_BLOCK_ELEMENTS`)."""
    threads = get_num_threads() if threads is None else threads
    if threads <= 1 or type(x).__module__ != "numpy":
        return 1
    block = THREAD_BLOCK_ELEMENTS if block is None else block
    return max(1, min(threads, n // block))


def _map_in_threads(fn: Callable[[int, int], Any], ranges: list[tuple[int, int]]) -> list[Any]:
    """``[fn(lo, hi) for lo, hi in ranges]``, the ranges run at once on the thread pool.

    Each call runs in a copy of the caller's context (NumPy's ``errstate`` lives there), and
    the first exception raised is re-raised here after every call has finished."""
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size < len(ranges):
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool_size = len(ranges)
            _pool = ThreadPoolExecutor(max_workers=_pool_size, thread_name_prefix="refoptim")
        pool = _pool
    futures = [pool.submit(contextvars.copy_context().run, fn, lo, hi) for lo, hi in ranges]
    wait(futures)
    return [f.result() for f in futures]


def _forget_pool() -> None:
    """In a forked child the pool's threads do not exist: start a new pool when needed."""
    global _pool, _pool_size, _pool_lock
    _pool, _pool_size, _pool_lock = None, 0, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _flat_ok(x: Any) -> bool:
    """True when :func:`_flat_view` gives a view: a C-contiguous, writeable array."""
    if type(x) is _scratch.NDARRAY:  # the common case, in two attribute reads
        flags = x.flags
        return flags.c_contiguous and flags.writeable
    flags = getattr(x, "flags", None)
    if flags is None:
        return False
    try:
        if not flags["C_CONTIGUOUS"]:
            return False
    except (KeyError, TypeError):
        return False
    return _writeable(x, flags)


def _writeable(x: Any, flags: Any = None) -> bool:
    """True when ``x`` says it is writeable. CuPy's ``flags`` have no ``WRITEABLE`` entry
    (its arrays always are); an array with no ``flags`` at all is not known to be."""
    flags = getattr(x, "flags", None) if flags is None else flags
    if flags is None:
        return False
    try:
        return bool(flags["WRITEABLE"])
    except (KeyError, TypeError):
        return True


def _flat_view(xp: Any, x: Any) -> Any | None:
    """``x`` as a 1-d view sharing its memory, or ``None`` when that needs a copy.

    Only arrays that say they are C-contiguous and writeable (NumPy's and CuPy's
    ``flags``) qualify; their own ``reshape`` method returns the view without the
    namespace wrapper's overhead, which matters when it runs for every small parameter."""
    if not _flat_ok(x):
        return None
    method = getattr(x, "reshape", None)
    try:
        return method(-1) if method is not None else xp.reshape(x, (-1,), copy=False)
    except (ValueError, TypeError, AttributeError, NotImplementedError):
        return None


def _flat_parts(param: Any, grad: Any, state: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]] | None:
    """The 1-d views of the parameter, its gradient and every full-size state entry (by
    key), or ``None`` when any of them cannot be viewed flat without a copy."""
    xp = array_namespace(param)
    shape = tuple(param.shape)
    if tuple(grad.shape) != shape:
        return None
    flat_p = _flat_view(xp, param)
    flat_g = _flat_view(xp, grad)
    if flat_p is None or flat_g is None:
        return None
    full = {}
    for key, value in state.items():
        if is_array(value) and tuple(value.shape) == shape:
            flat = _flat_view(xp, value)
            if flat is None:
                return None
            full[key] = flat
    return flat_p, flat_g, full


def _fits(param: Any, grad: Any, state: dict[str, Any]) -> bool:
    """True when the parameter, its gradient and every full-size state entry can be viewed
    flat (checked without making the views)."""
    shape = tuple(param.shape)
    if tuple(grad.shape) != shape or not _flat_ok(param) or not _flat_ok(grad):
        return False
    return all(_flat_ok(v) for v in state.values() if is_array(v) and tuple(v.shape) == shape)


def _size(x: Any) -> int | None:
    """The number of elements of ``x``, counted from its shape (``x.size`` is a method on
    torch tensors, and the Array API allows ``None`` for a size or a dimension not known
    yet; Dask writes NaN); None when it is not known."""
    if type(x) is _scratch.NDARRAY:
        return x.size
    shape = getattr(x, "shape", None)
    if shape is None or any(d is None or d != d for d in shape):
        return None
    return math.prod(int(d) for d in shape)


def _count(x: Any) -> int:
    """:func:`_size` of an array the fast path already accepted (its shape is known)."""
    size = _size(x)
    assert size is not None
    return size


def can_chunk(param: Any, grad: Any, state: dict[str, Any], chunk: int | None = None) -> bool:
    """True when running the rule piece by piece is possible and worth it: more than two
    pieces' worth of elements, and the parameter, the gradient and every full-size state
    entry viewable flat without a copy. ``chunk`` defaults to :data:`CHUNK_ELEMENTS`."""
    chunk = CHUNK_ELEMENTS if chunk is None else chunk
    if chunk <= 0 or not is_array(grad):
        return False
    size = _size(param)
    if size is None or size <= 2 * chunk:
        return False
    return _fits(param, grad, state)


def _copy(xp: Any, value: Any) -> Any:
    return xp.asarray(value, copy=True) if is_array(value) else value


def chunked_update(
    update: Callable[[Any, Any, dict[str, Any], dict[str, Any]], Any],
    items: list[tuple[Any, Any, dict[str, Any]]],
    group: dict[str, Any],
    chunk: int | None = None,
    *,
    thread_chunk: int | None = None,
    threads: int | None = None,
    block: int | None = None,
    scratch: bool | None = None,
) -> None:
    """Run ``update(param, grad, state, group)`` piece by piece for each ``(param, grad,
    state)`` of ``items``; the same bits as one call each.

    Each ``param`` and the full-size entries of its ``state`` are updated in place (they
    must pass :func:`can_chunk`); ``state`` receives the step's scalar values and any
    entry the rule creates. ``chunk`` defaults to :data:`CHUNK_ELEMENTS`.

    With more than one thread (``threads``, default :func:`get_num_threads`) and NumPy
    arrays, the elements of all the parameters, laid end to end, are cut into one block
    per thread (at least ``block`` elements each, default :data:`THREAD_BLOCK_ELEMENTS`),
    and the blocks run at once, each piece by piece in pieces of at most ``thread_chunk``
    elements (default :data:`THREAD_CHUNK_ELEMENTS`) that never straddle two parameters.

    With ``scratch`` (default :data:`SCRATCH`) and NumPy arrays, the rule's temporaries
    live in each thread's scratch buffers (:mod:`refoptim._scratch`), and a single thread
    also takes pieces of ``thread_chunk`` elements (where larger than ``chunk``). With
    :data:`refoptim._scratch.NUMBA` too, the rule is fused where it can be: one trace per
    layout and scalar state (:mod:`refoptim._fuse`), its compiled pass run over each
    thread's block of elements whole.
    """
    chunk = CHUNK_ELEMENTS if chunk is None else chunk
    thread_chunk = THREAD_CHUNK_ELEMENTS if thread_chunk is None else thread_chunk
    if not items:
        return
    xp = array_namespace(items[0][0])
    jobs = []
    for param, grad, state in items:
        flat_p, flat_g, full = _flat_parts(param, grad, state)
        scalars = {k: v for k, v in state.items() if k not in full}
        jobs.append((flat_p, flat_g, full, scalars, _count(param)))
    total = sum(job[4] for job in jobs)
    threads = _threads_for(items[0][0], total, threads, block)
    wrap = _scratch_wrapper(items[0][0], scratch, total)
    if wrap is not None and _scratch.NUMBA and _fused_chunked(update, xp, items, jobs, group, threads):
        return
    results: list[list[tuple[dict[str, Any], dict[str, list[Any]]]]] = [[] for _ in items]
    if threads > 1:
        bounds = [total * i // threads for i in range(threads + 1)]
        spaces = _scratch.block_workspaces(threads) if wrap is not None else None

        def block(lo: int, hi: int) -> list[tuple[int, int, Any]]:
            previous = None if spaces is None else _scratch.lend(spaces[bounds.index(lo)])
            try:
                done = []
                for j, start, stop in _spans([job[4] for job in jobs], lo, hi):
                    flat_p, flat_g, full, scalars, _ = jobs[j]
                    out = _run_pieces(update, xp, flat_p, flat_g, full, scalars, group, start, stop, thread_chunk, wrap)
                    done.append((j, start, out))
                return done
            finally:
                if spaces is not None:
                    _scratch.restore(previous)

        for done in _map_in_threads(block, list(pairwise(bounds))):
            for j, _, out in sorted(done, key=lambda d: (d[0], d[1])):
                results[j].append(out)
    else:
        # With scratch buffers the temporaries' size no longer decides (no allocation),
        # the interpreter's cost per piece does: the larger thread pieces (measured: Adam,
        # 10M float32 elements, one thread, 69 ms against 114 ms in pieces of 15,872).
        size = chunk if wrap is None else max(chunk, thread_chunk)
        for j, (flat_p, flat_g, full, scalars, n) in enumerate(jobs):
            results[j].append(_run_pieces(update, xp, flat_p, flat_g, full, scalars, group, 0, n, size, wrap))
    for (param, _, state), blocks in zip(items, results):
        state.update(blocks[0][0])
        created: dict[str, list[Any]] = {}
        for _, block_created in blocks:
            for key, pieces in block_created.items():
                created.setdefault(key, []).extend(pieces)
        for key, pieces in created.items():
            state[key] = xp.reshape(xp.concat(pieces), tuple(param.shape))


def _spans(sizes: list[int], lo: int, hi: int) -> list[tuple[int, int, int]]:
    """``(j, start, stop)`` for each array ``j`` of ``sizes`` (laid end to end) that the
    element range ``lo:hi`` covers, ``start:stop`` in that array's own elements."""
    spans, offset = [], 0
    for j, n in enumerate(sizes):
        start, stop = max(lo - offset, 0), min(hi - offset, n)
        if start < stop:
            spans.append((j, start, stop))
        offset += n
    return spans


def _scalar_signature(scalars: dict[str, Any]) -> tuple:
    """The scalar state's keys, kinds and exact values (bytes for arrays)."""
    return tuple(
        (k, type(v), v.dtype.str, v.tobytes()) if is_array(v) and type(v).__module__ == "numpy" else (k, type(v), repr(v))
        for k, v in scalars.items()
    )


def _fused_chunked(
    update: Callable, xp: Any, items: list[tuple[Any, Any, dict[str, Any]]], jobs: list[tuple], group: dict[str, Any], threads: int
) -> bool:
    """:func:`chunked_update` by whole-rule fusion (:mod:`refoptim._fuse`, with
    ``REFOPTIM_NUMBA=1``): the rule traced once per layout and scalar state, its compiled
    program run over each parameter, in one block per thread. False, with nothing
    changed, where a trace gives up."""
    from . import _fuse

    plans = []
    traced: dict[tuple, Any] = {}
    for flat_p, flat_g, full, scalars, _ in jobs:
        sig = (flat_p.dtype, flat_g.dtype, tuple((k, v.dtype) for k, v in full.items()), _scalar_signature(scalars))
        plan = traced.get(sig)
        if plan is None:
            plan = _fuse.plan_for(update, flat_p, flat_g, full, scalars, group)
            if plan is None:
                return False
            traced[sig] = plan
        plans.append(plan)
    arrays = [{"param": flat_p, "grad": flat_g, **full} for flat_p, flat_g, full, _, _ in jobs]
    if threads > 1:
        sizes = [job[4] for job in jobs]
        total = sum(sizes)

        def block(lo: int, hi: int) -> None:
            for j, start, stop in _spans(sizes, lo, hi):
                plans[j].run(arrays[j], start, stop)

        _map_in_threads(block, list(pairwise(total * i // threads for i in range(threads + 1))))
    else:
        for plan, named in zip(plans, arrays):
            plan.run(named)
    for (_, _, state), plan in zip(items, plans):
        state.update({k: _copy(xp, v) for k, v in plan.kept.items()})
    return True


def _fused_bucket(update: Callable, xp: Any, bucket: list[tuple[Any, Any, dict[str, Any]]], group: dict[str, Any]) -> bool:
    """A bucket of :func:`grouped_update` (equal keys: one layout, the same scalar state)
    by whole-rule fusion: one trace, the compiled program run on each parameter in turn,
    no concatenation. False, with nothing changed, where the trace gives up."""
    from . import _fuse

    param, grad, state = bucket[0]
    flat_p, flat_g, full = _flat_parts(param, grad, state)
    plan = _fuse.plan_for(update, flat_p, flat_g, full, {k: v for k, v in state.items() if k not in full}, group)
    if plan is None:
        return False
    # Every parameter of the bucket passed group_key: C-contiguous, writeable, of one
    # layout. The compiled program takes its arrays flat, in the plan's order.
    kernel, names, scalars, kept = plan.kernel, plan.arrays, plan.scalars, list(plan.kept.items())
    for param, grad, state in bucket:
        arrays = [param if k == "param" else grad if k == "grad" else state[k] for k in names]
        if len(param.shape) != 1:
            arrays = [a.reshape(-1) for a in arrays]
        kernel(param.size, *arrays, *scalars)
        for key, value in kept:
            state[key] = _set_scalar(xp, state.get(key), value)
    return True


def _run_pieces(
    update: Callable,
    xp: Any,
    flat_p: Any,
    flat_g: Any,
    full: dict[str, Any],
    scalars: dict[str, Any],
    group: dict[str, Any],
    lo: int,
    hi: int,
    chunk: int,
    wrap: Callable[[Any], Any] | None = None,
) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """Elements ``lo:hi`` of the flat arrays, piece by piece, in order. Returns the scalar
    state the first piece ended with, and the entries the rule created, piece by piece.

    ``wrap`` (:func:`_scratch_wrapper`), where given, makes the views the rule sees
    (scratch arrays); what the rule creates is then copied out of the scratch buffers."""
    kept: dict[str, Any] = {}
    created: dict[str, list[Any]] = {}
    for start in range(lo, hi, chunk):
        stop = min(start + chunk, hi)
        if wrap is None:
            views = {k: f[start:stop] for k, f in full.items()}
            p_view, g_view = flat_p[start:stop], flat_g[start:stop]
        else:
            views = {k: wrap(f[start:stop]) for k, f in full.items()}
            p_view, g_view = wrap(flat_p[start:stop]), wrap(flat_g[start:stop])
        piece_state = {k: _copy(xp, v) for k, v in scalars.items()}
        piece_state.update(views)
        out = update(p_view, g_view, piece_state, group)
        if out is not p_view:
            p_view[...] = out
        for key, value in piece_state.items():
            if key in views:
                if value is not views[key]:
                    views[key][...] = value
            elif is_array(value) and tuple(value.shape) == (stop - start,) and key not in scalars:
                created.setdefault(key, []).append(value if wrap is None else _copy(xp, value))
            elif start == lo:
                kept[key] = value if type(value) is not _scratch.Scratch else _copy(xp, value)
    return kept, created


# --------------------------------------------------------------------- many small arrays
def group_key(param: Any, grad: Any, state: dict[str, Any], chunk: int | None = None) -> tuple | None:
    """What a parameter must share with others to be updated together with them, or
    ``None`` when it may not be: it must be small (at most two pieces, so it would run
    whole), not 0-d, with the parameter, gradient and full-size state all viewable flat
    without a copy. Parameters of one group with equal keys have the same dtype and
    device, the same state keys with the same full-size entries, and bitwise-equal scalar
    state (so the same ``step``): one call of the rule computes them all."""
    chunk = CHUNK_ELEMENTS if chunk is None else chunk
    if chunk <= 0 or (type(grad) is not _scratch.NDARRAY and not is_array(grad)):
        return None
    size = _size(param)
    shape = getattr(param, "shape", None)
    if size is None or size == 0 or size > 2 * chunk or not shape:
        return None
    if tuple(grad.shape) != tuple(shape) or not _flat_ok(param) or not _flat_ok(grad):
        return None
    parts: list[Any] = [param.dtype, getattr(param, "device", None)]
    kind = type(param)
    # In the state's own order: equal layouts loaded in another key order only land in
    # separate runs.
    for key, value in state.items():
        if type(value) is not kind and not is_array(value):
            parts.append((key, type(value), repr(value)))
        elif value.shape == shape:
            if not _flat_ok(value):
                return None
            parts.append((key, "full", value.dtype))
        else:
            data = value.tobytes() if type(value) is _scratch.NDARRAY else _host_bytes(value)
            parts.append((key, "array", value.dtype, tuple(value.shape), data))
    return tuple(parts)


def can_group(param: Any, grad: Any, state: dict[str, Any], chunk: int | None = None) -> bool:
    """True when a parameter may be updated together with others of its group
    (:func:`group_key` is not ``None``)."""
    return group_key(param, grad, state, chunk) is not None


def _host_bytes(value: Any) -> bytes:
    """A small array's bytes, read on the host (NumPy ``tobytes``; CuPy through ``get``)."""
    get = getattr(value, "get", None)
    host = get() if callable(get) else value
    tobytes = getattr(host, "tobytes", None)
    if tobytes is not None:
        return tobytes()
    import numpy as np

    return np.asarray(host).tobytes()


def grouped_update(
    update: Callable[[Any, Any, dict[str, Any], dict[str, Any]], Any],
    items: list[tuple[Any, Any, dict[str, Any]]],
    group: dict[str, Any],
    keys: list[tuple] | None = None,
    *,
    limit: int | None = None,
    scratch: bool | None = None,
) -> None:
    """Update many small parameters with few calls of the rule; same bits as one call each.

    ``items`` are ``(parameter array, gradient, state)`` triples that pass
    :func:`can_group`, ``keys`` their :func:`group_key` (computed here when not given).
    Those with equal keys are concatenated, updated by one call of ``update`` per run of
    about ``limit`` elements (default :data:`CHUNK_ELEMENTS`), and copied back in place;
    each parameter's scalar state receives the new values (in place where its arrays are writeable, as the
    plain rule's ``step += 1`` does), and entries the rule creates are split back per
    parameter.
    """
    limit = CHUNK_ELEMENTS if limit is None else limit
    if keys is None:
        keys = [group_key(*item, chunk=limit) for item in items]
    buckets: dict[tuple, list[tuple[Any, Any, dict[str, Any]]]] = {}
    for key, item in zip(keys, items):
        buckets.setdefault(key, []).append(item)
    runs: list[list[tuple[Any, Any, dict[str, Any]]]] = []
    for bucket in buckets.values():
        if _scratch.NUMBA:
            first = bucket[0][0]
            wrap = _scratch_wrapper(first, scratch, sum(_count(item[0]) for item in bucket))
            if wrap is not None and _fused_bucket(update, array_namespace(first), bucket, group):
                continue
        # runs of about one piece's worth of elements: the working set stays in cache and
        # the concatenated copies stay small
        run: list[tuple[Any, Any, dict[str, Any]]] = []
        size = 0
        for item in bucket:
            if run and size + _count(item[0]) > limit:
                runs.append(run)
                run, size = [], 0
            run.append(item)
            size += _count(item[0])
        runs.append(run)
    for run in runs:
        _update_run(update, run, group, scratch)


def _update_run(
    update: Callable, run: list[tuple[Any, Any, dict[str, Any]]], group: dict[str, Any], scratch: bool | None = None
) -> None:
    """One call of the rule for a run of parameters of one key, results copied back.
    With scratch arrays (:func:`_scratch_wrapper`) the concatenations and the rule's
    temporaries live in the thread's scratch buffers."""
    first_param, _, first_state = run[0]
    wrap = _scratch_wrapper(first_param, scratch, sum(_count(item[0]) for item in run))
    xp = array_namespace(first_param)
    if len(run) == 1:
        param, grad, state = run[0]
        if wrap is None:
            out = update(param, grad, state, group)
            if out is not param:
                param[...] = out
            return
        flat_p, flat_g, full = _flat_parts(param, grad, state)
        scalars = {k: v for k, v in state.items() if k not in full}
        n = _count(param)
        kept, made = _run_pieces(update, xp, flat_p, flat_g, full, scalars, group, 0, n, n, wrap)
        for key, value in kept.items():
            state[key] = _set_scalar(xp, state.get(key), value)
        for key, pieces in made.items():
            state[key] = xp.reshape(pieces[0], tuple(param.shape))
        return
    concat = xp.concat if wrap is None else _scratch.concat
    shape = first_param.shape
    # Equal keys: every parameter of the run has these full-size entries and scalars.
    full_keys = [k for k, v in first_state.items() if is_array(v) and v.shape == shape]
    scalar_keys = [k for k in first_state if k not in full_keys]
    flat = [
        (param, grad, [state[k] for k in full_keys])
        if len(param.shape) == 1  # already flat (biases, norms): no views to make
        else (param.reshape(-1), grad.reshape(-1), [state[k].reshape(-1) for k in full_keys])
        for param, grad, state in run
    ]
    offsets = [0]
    for param, _, _ in run:
        offsets.append(offsets[-1] + _count(param))
    total = offsets[-1]
    state: dict[str, Any] = {k: _copy(xp, first_state[k]) for k in scalar_keys}
    for j, key in enumerate(full_keys):
        state[key] = concat([f[2][j] for f in flat])
    new_p = update(concat([f[0] for f in flat]), concat([f[1] for f in flat]), state, group)
    back = [state[k] for k in full_keys]
    created = [k for k, v in state.items() if k not in first_state and is_array(v) and tuple(v.shape) == (total,)]
    scalars = [(k, v) for k, v in state.items() if k not in full_keys and k not in created]
    for i, ((param, _, pstate), (p_flat, _, p_full)) in enumerate(zip(run, flat)):
        lo, hi = offsets[i], offsets[i + 1]
        p_flat[...] = new_p[lo:hi]
        for target, value in zip(p_full, back):
            target[...] = value[lo:hi]
        for key in created:
            pstate[key] = xp.reshape(xp.asarray(state[key][lo:hi], copy=True), tuple(param.shape))
        for key, value in scalars:
            pstate[key] = _set_scalar(xp, pstate.get(key), value)


def _set_scalar(xp: Any, old: Any, new: Any) -> Any:
    """A parameter's new scalar state: written into its own array where that is a
    writeable array of the same dtype and shape (it keeps its identity, as after the
    plain rule's in-place ``step += 1``), else a copy of its own."""
    if (
        type(old) is type(new)
        and is_array(new)
        and old.dtype == new.dtype
        and old.shape == new.shape
        and _writeable(old)
    ):
        old[...] = new
        return old
    return _copy(xp, new)



# --------------------------------------------------------------------- aliasing
def _root(x: Any) -> Any:
    """The object that owns ``x``'s memory: the end of its chain of ``base`` arrays
    (NumPy's and CuPy's views keep the array they view as ``base``; a NumPy array over a
    foreign buffer ends in that buffer)."""
    try:
        base = x.base
    except AttributeError:  # torch tensors and others: not on the fast paths
        return x
    while base is not None:
        x = base
        base = getattr(x, "base", None)
    return x


def _bounds(x: Any) -> tuple[int, int] | None:
    """The first and one-past-last byte address ``x`` may touch, or ``None`` if unknown."""
    try:
        if type(x).__module__ == "numpy":
            from numpy.lib.array_utils import byte_bounds

            return byte_bounds(x)
        ptr = x.data.ptr  # CuPy
        lo = hi = ptr
        for n, stride in zip(x.shape, x.strides):
            if n == 0:
                return (ptr, ptr)
            extent = (n - 1) * stride
            if extent < 0:
                lo += extent
            else:
                hi += extent
        return (lo, hi + x.itemsize)
    except Exception:  # noqa: BLE001 - an array type without addresses: assume overlap
        return None


def shares_memory(pairs: list[tuple[Any, Any]]) -> bool:
    """True when the memory of a parameter among ``pairs`` (``(Parameter, gradient)``)
    may overlap another parameter's or a gradient's: then the fast paths, which read
    every input before writing, would not see what the plain rule's in-order updates
    write, and the group takes the plain rule.

    Cheap in the usual case: arrays are bucketed by the object owning their memory
    (:func:`_root`); only arrays that share an owner (views into one buffer) are compared
    by their byte ranges, which is exact for contiguous views and errs towards "overlaps"
    for strided ones. Gradients overlapping each other are fine (rules only read them);
    a :class:`refoptim.SparseGrad` is never aliased here (its arrays are its own).
    """
    # The usual case, in one pass: NumPy arrays that own their memory (``base`` None),
    # none listed twice.
    seen = set()
    count = 0
    for p, grad in pairs:
        for x in (p.data, grad):
            if getattr(x, "base", True) is None:
                seen.add(id(x))
            else:
                seen.add(id(_root(x)) if is_array(x) else ~count)
            count += 1
    if len(seen) == count:
        return False
    owners: dict[int, list[tuple[Any, bool]]] = {}
    for p, grad in pairs:
        owners.setdefault(id(_root(p.data)), []).append((p.data, True))
        if is_array(grad):
            owners.setdefault(id(_root(grad)), []).append((grad, False))
    for entries in owners.values():
        if len(entries) < 2 or not any(is_param for _, is_param in entries):
            continue
        spans = []
        for x, is_param in entries:
            bounds = _bounds(x)
            if bounds is None:
                return True
            if bounds[1] > bounds[0]:
                spans.append((bounds[0], bounds[1], is_param))
        spans.sort(key=lambda s: (s[0], s[1]))
        # a parameter overlapping anything, or anything overlapping a parameter
        reach: list[tuple[int, bool]] = []  # (end, is_param) of the spans still open
        for lo, hi, is_param in spans:
            reach = [(end, was_param) for end, was_param in reach if end > lo]
            if any(is_param or was_param for _, was_param in reach):
                return True
            reach.append((hi, is_param))
    return False


def writeable_or_copy(x: Any) -> Any:
    """``x`` itself, or a writeable copy where ``x`` is a NumPy array that is read-only
    (``flags.writeable`` False): the rules update parameters and state in place where
    they can, and a read-only array is then rebound to the copy, as an immutable array
    (JAX) is rebound to the rule's result. Anything else is returned as it is."""
    flags = getattr(x, "flags", None)
    if flags is None or type(x).__module__ != "numpy":
        return x
    if flags.writeable:
        return x
    import numpy

    return numpy.array(x, copy=True)


# --------------------------------------------------------------------- strategies
class PlainStrategy:
    """Every parameter of a group by the plain rule, one after the other, in the group's
    order: the rule sees what the updates before it wrote, as torch's single-tensor path
    does. The strategy of every optimizer whose rule is not elementwise, and what
    :class:`ElementwiseStrategy` falls back to.

    A strategy is stateless between steps and may serve any number of optimizers; it
    reaches the optimizer only through ``optimizer.state`` (the per-parameter state
    mapping), ``optimizer._init_state(p, group)`` (a parameter's first state) and
    ``optimizer._update(param, grad, state, group)`` (the rule on one array).
    """

    def step_group(self, optimizer: Any, group: dict[str, Any], pairs: list[tuple[Any, Any]]) -> None:
        """Update one group's ``(Parameter, gradient)`` pairs, checked beforehand by the
        optimizer (``_params_with_grad``)."""
        state_of = optimizer.state
        for p, grad in pairs:
            state = state_of.get(p)
            if not state:
                state = optimizer._init_state(p, group)
            self.update(optimizer, p, grad, state, group)

    @staticmethod
    def update(optimizer: Any, p: Any, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        """One parameter by the plain rule, read-only NumPy arrays (parameter or state)
        replaced by writeable copies first (:func:`writeable_or_copy`), so every optimizer
        rebinds ``.data`` for them, as for immutable arrays, and none fails midway; the
        state is stored when it is not empty."""
        p.data = writeable_or_copy(p.data)
        for k, v in state.items():
            state[k] = writeable_or_copy(v)
        p.data = assign(p.data, optimizer._update(p.data, grad, state, group))
        if state:
            optimizer.state[p] = state

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ElementwiseStrategy(PlainStrategy):
    """The fast paths for an elementwise rule, with the plain rule's bits: per group, the
    small parameters are updated together (:func:`grouped_update`), the large ones piece
    by piece, on several threads where that pays (:func:`chunked_update`), and the rest
    (0-d, not viewable flat, sparse gradients) by the plain rule, in the group's order.
    A group in which a parameter's memory overlaps another parameter's or a gradient's
    (:func:`shares_memory`: two Parameters over one array, one Parameter listed twice, a
    gradient that is its parameter's array) runs wholly by the plain rule: the fast paths
    read every input before they write, where the plain rule sees earlier updates.

    Its knobs; ``None`` (the default) reads the module's setting at each step, so
    :func:`set_num_threads` and the module constants govern the shared :data:`ELEMENTWISE`:

    - ``chunk_elements``: elements per piece, and the size below which parameters are
      grouped (:data:`CHUNK_ELEMENTS`; 0 turns both fast paths off);
    - ``thread_chunk_elements``: elements per piece on threads (:data:`THREAD_CHUNK_ELEMENTS`);
    - ``thread_block_elements``: the fewest elements worth a thread (:data:`THREAD_BLOCK_ELEMENTS`);
    - ``num_threads``: threads for large NumPy parameters (:func:`get_num_threads`);
    - ``scratch``: NumPy rules compute in per-thread scratch buffers (:data:`SCRATCH`).

    Every setting gives the same bits.
    """

    def __init__(
        self,
        *,
        chunk_elements: int | None = None,
        thread_chunk_elements: int | None = None,
        thread_block_elements: int | None = None,
        num_threads: int | None = None,
        scratch: bool | None = None,
    ) -> None:
        self.chunk_elements = chunk_elements
        self.thread_chunk_elements = thread_chunk_elements
        self.thread_block_elements = thread_block_elements
        self.num_threads = num_threads
        self.scratch = scratch

    def step_group(self, optimizer: Any, group: dict[str, Any], pairs: list[tuple[Any, Any]]) -> None:
        if shares_memory(pairs):
            return super().step_group(optimizer, group, pairs)
        chunk = CHUNK_ELEMENTS if self.chunk_elements is None else self.chunk_elements
        state_of = optimizer.state
        together, keys, pieces = [], [], []
        for p, grad in pairs:
            state = state_of.get(p)
            if not state:
                state = optimizer._init_state(p, group)
            key = group_key(p.data, grad, state, chunk)
            if key is not None:  # many small arrays: updated together
                together.append((p, grad, state))
                keys.append(key)
            elif can_chunk(p.data, grad, state, chunk):  # large arrays: piece by piece
                pieces.append((p, grad, state))
            else:
                self.update(optimizer, p, grad, state, group)
        if pieces:
            chunked_update(
                optimizer._update,
                [(p.data, grad, state) for p, grad, state in pieces],
                group,
                chunk,
                thread_chunk=self.thread_chunk_elements,
                threads=self.num_threads,
                block=self.thread_block_elements,
                scratch=self.scratch,
            )
        if together:
            grouped_update(
                optimizer._update,
                [(p.data, grad, state) for p, grad, state in together],
                group,
                keys,
                limit=chunk,
                scratch=self.scratch,
            )
        for p, _, state in pieces + together:
            if state:
                state_of[p] = state
        return None

    def __repr__(self) -> str:
        knobs = ("chunk_elements", "thread_chunk_elements", "thread_block_elements", "num_threads", "scratch")
        set_ = [f"{k}={getattr(self, k)!r}" for k in knobs if getattr(self, k) is not None]
        return f"{type(self).__name__}({', '.join(set_)})"


PLAIN = PlainStrategy()
"""The strategy of optimizers whose rule is not elementwise (``Optimizer._elementwise``
false)."""

ELEMENTWISE = ElementwiseStrategy()
"""The strategy of elementwise optimizers, shared by all of them; its knobs default to the
module's settings."""
