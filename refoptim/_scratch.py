"""Per-thread scratch buffers for the NumPy fast path: a step that allocates nothing.

Part of the speed seam (:mod:`refoptim._fastpath`). A rule is written once against the
Array API, so every ``a * b`` or ``xp.sqrt(v)`` in it returns a fresh array. On NumPy each
fresh array is a ``malloc``; a piece's temporaries (hundreds of kilobytes) sit above
glibc's ``mmap`` threshold whenever that threshold is fixed (any ``MALLOC_*`` setting fixes
it), and are then mapped and faulted in afresh, page by page, on every operation: the
kernel time that made the same step take 48 ms in one process and 170 ms in another.

Here the rule's arithmetic is not changed; where the result goes is. The
:class:`ElementwiseStrategy <refoptim._fastpath.ElementwiseStrategy>` hands the rule its
pieces as :class:`Scratch` arrays, a NumPy ``ndarray`` subclass. Every ufunc it meets
(operators, ``sqrt``, ``maximum``, ``isfinite`` ...), ``where``, ``astype`` and the
``*_like`` constructors then write their result into a buffer of the calling thread's
:class:`Workspace` (``out=``) instead of a fresh array; a buffer is free again as soon as
no array refers to it (CPython's reference count says so exactly), so the next piece,
and the next step, reuse the same few buffers. The same ufunc loops run on the same
inputs and dtypes: the bits are the plain rule's, which ``tests/test_fastpath.py``
checks for every elementwise optimizer and option.

What it costs: a few microseconds of Python per operation (the subclass's dispatch),
against a page fault per 4 KiB that it saves; :mod:`refoptim.bench` measures both ways
(``--no-scratch``). Anything this module does not recognise (broadcasting between
different shapes, ufunc options, reductions) runs as NumPy runs it, unpooled.

The fused multiply-add, the one primitive that is more than one ufunc, also has a pooled
form (:meth:`Scratch._refoptim_fma`): on float32, ``b`` is copied into one float64 buffer,
multiplied by ``a``, ``c`` is added, and the sum is copied, rounded to float32, straight
into its destination, where the generic route makes four temporaries and a final copy:
the same roundings. With :data:`NUMBA` (opt-in) the same expression runs as one compiled
pass (:mod:`refoptim._numba`).
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

import numpy as np

from . import _numba

__all__ = [
    "Scratch",
    "Workspace",
    "block_workspaces",
    "concat",
    "lend",
    "release_all",
    "restore",
    "retained_bytes",
    "scratch_view",
    "workspace",
]

_plain = np.ndarray
NDARRAY = np.ndarray

NUMBA = os.environ.get("REFOPTIM_NUMBA", "0").strip().lower() in ("1", "true", "yes", "on")
"""Whether the fast path evaluates NumPy rules compiled (opt-in, needs numba): each rule
the trace can follow as one compiled pass over its arrays (:mod:`refoptim._fuse`), and
otherwise the float32 fused multiply-add of the scratch arrays as a compiled kernel
(:mod:`refoptim._numba`); the same bits either way. Off by default; ``REFOPTIM_NUMBA=1``
(read at import) or ``True`` here turns it on."""
_getrefcount = sys.getrefcount


class Workspace:
    """The scratch buffers of one thread, each lent out as a typed array and free again as
    soon as nothing refers to that array any more.

    A buffer is ``[raw, plain, scratch]``: raw bytes, and the last typed view asked of it,
    as a plain array (what ufuncs write into) and as a :class:`Scratch` array (what the
    rule receives). The same shape and dtype, asked again (the next piece, the next
    step), get the same two objects back, so lending costs no allocation at all.
    :meth:`take` lends the first free buffer large enough; a new one when none is, its
    size rounded up to a multiple of ``block_bytes`` (so sizes that differ a little, as
    the runs of small parameters do, share buffers); ``limit`` caps how many buffers the
    workspace keeps (beyond it a temporary is an ordinary allocation, freed as usual)."""

    __slots__ = ("buffers", "block_bytes", "limit")

    def __init__(self, block_bytes: int = 1 << 16, limit: int = 64) -> None:
        self.buffers: list[list[Any]] = []
        self.block_bytes = block_bytes
        self.limit = limit

    def take(self, shape: tuple[int, ...], dtype: np.dtype) -> tuple[np.ndarray, Scratch]:
        """A free buffer as ``(plain, scratch)`` arrays of ``shape`` and ``dtype`` over the
        same memory (uninitialised, C-contiguous): the free buffer last lent with this
        shape and dtype, else the smallest free one large enough, else a new one."""
        n = dtype.itemsize
        for s in shape:
            n *= s
        best = None
        for entry in self.buffers:
            scratch = entry[2]
            # free: the scratch view is referred to by the entry and the local name only
            # (and the argument of getrefcount)
            if _getrefcount(scratch) == 3:
                if scratch.shape == shape and scratch.dtype == dtype:
                    return entry[1], scratch
                size = entry[0].nbytes
                if size >= n and (best is None or size < best[0].nbytes):
                    best = entry
        if best is not None:
            plain = _plain(shape, dtype, buffer=best[0])
            scratch = plain.view(Scratch)
            best[1] = plain
            best[2] = scratch
            return plain, scratch
        if len(self.buffers) >= self.limit:
            plain = np.empty(shape, dtype)
            return plain, plain.view(Scratch)
        block = self.block_bytes
        raw = np.empty(max(block, -(-n // block) * block), np.uint8)
        plain = _plain(shape, dtype, buffer=raw)
        scratch = plain.view(Scratch)
        self.buffers.append([raw, plain, scratch])
        return plain, scratch

    def nbytes(self) -> int:
        """Bytes held by this workspace's buffers."""
        return sum(entry[0].nbytes for entry in self.buffers)

    def clear(self) -> None:
        """Let go of every buffer (arrays still using one keep it alive)."""
        self.buffers = []


_local = threading.local()
_all_workspaces: list[Workspace] = []
_all_lock = threading.Lock()


def workspace() -> Workspace:
    """The calling thread's :class:`Workspace`, made on first use."""
    try:
        return _local.ws
    except AttributeError:
        ws = _local.ws = Workspace()
        with _all_lock:
            _all_workspaces.append(ws)
        return ws


def block_workspaces(n: int) -> list[Workspace]:
    """The calling thread's ``n`` workspaces for the blocks it hands to other threads
    (block ``i`` always computes in workspace ``i``, whichever pool thread runs it, so
    the buffers are warm from the second step on and their number does not depend on
    which thread picked which block). Only the calling thread hands them out, one per
    block of one call at a time: no two threads use one at once."""
    try:
        spaces = _local.blocks
    except AttributeError:
        spaces = _local.blocks = []
    while len(spaces) < n:
        ws = Workspace()
        with _all_lock:
            _all_workspaces.append(ws)
        spaces.append(ws)
    return spaces


def lend(ws: Workspace) -> Workspace | None:
    """Make ``ws`` the calling thread's workspace; returns the one it replaces (give it
    back with :func:`restore`)."""
    previous = getattr(_local, "ws", None)
    _local.ws = ws
    return previous


def restore(previous: Workspace | None) -> None:
    """Undo :func:`lend`."""
    if previous is None:
        del _local.ws
    else:
        _local.ws = previous


def retained_bytes() -> int:
    """Bytes held by every thread's workspace: scratch memory a step keeps between steps
    (the bench adds it to a step's peak extra memory)."""
    with _all_lock:
        return sum(ws.nbytes() for ws in _all_workspaces)


def release_all() -> None:
    """Let go of every thread's buffers (tests; memory comes back once arrays using a
    buffer are gone)."""
    with _all_lock:
        for ws in _all_workspaces:
            ws.clear()


def _forget() -> None:
    """In a forked child other threads' workspaces do not exist."""
    global _local, _all_workspaces, _all_lock
    _local, _all_workspaces, _all_lock = threading.local(), [], threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget)


def _strip(x: Any) -> Any:
    return x.view(_plain) if type(x) is Scratch else x


def _shape_of(args: tuple) -> tuple[int, ...] | None:
    """The common shape of the non-0-d arrays among ``args``, or ``None`` when there is
    none (everything 0-d or scalar) or when shapes differ (broadcasting: left to NumPy)."""
    shape = None
    for a in args:
        s = getattr(a, "shape", ())
        if s:
            if shape is None:
                shape = s
            elif s != shape:
                return None
    return shape


_RESOLVED: dict[tuple, Any] = {}
_SCALARS = (float, int, complex, bool)


def _out_dtype(key: tuple) -> np.dtype | None:
    """The dtype of the one output of ``key[0]`` (a ufunc) on operands of the dtypes (or
    Python scalar types, weak as in NEP 50) ``key[1:]``, as NumPy resolves it; remembered;
    ``None`` where NumPy cannot say without the values."""
    try:
        return _RESOLVED[key]
    except KeyError:
        pass
    try:
        found = key[0].resolve_dtypes(key[1:] + (None,))[-1]
    except Exception:  # noqa: BLE001 - object dtypes, odd scalars: NumPy decides at call time
        found = None
    _RESOLVED[key] = found
    return found


_UNKNOWN = object()


def _fallback(ufunc: np.ufunc, method: str, inputs: tuple, out: Any, kwargs: dict) -> Any:
    """A ufunc call as NumPy makes it, on the plain arrays behind the scratch ones
    (broadcasting between shapes, reductions, options): its result is NumPy's own."""
    args = tuple(x.view(_plain) if type(x) is Scratch else x for x in inputs)
    if out is not None:
        plain_out = tuple(o.view(_plain) if type(o) is Scratch else o for o in out)
        result = getattr(ufunc, method)(*args, out=plain_out, **kwargs)
        if result is NotImplemented:
            return result
        return out[0] if len(out) == 1 else out
    return getattr(ufunc, method)(*args, **kwargs)


class Scratch(np.ndarray):
    """A NumPy array whose operations put their results in the thread's scratch buffers.

    Only the fast path makes these (:func:`scratch_view`), only around the pieces it hands
    to a rule, and only for the duration of that call: nothing a step returns or stores is
    a ``Scratch`` array (in-place results land in the caller's own arrays; created state
    entries are copied out)."""

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, out: Any = None, **kwargs: Any) -> Any:
        # The hot paths are written out: this runs for every operation of a rule, and
        # its Python time is held under the interpreter lock, which the threads share.
        if method == "__call__" and not kwargs:
            if out is None:
                if len(inputs) == 2 and ufunc.nout == 1:
                    x, y = inputs
                    tx, ty = type(x), type(y)
                    if tx is Scratch:
                        kx, sx, x = x.dtype, x.shape, x.view(_plain)
                    elif tx in _SCALARS:
                        kx, sx = tx, ()
                    elif tx is _plain or isinstance(x, np.generic):
                        kx, sx = x.dtype, x.shape
                    else:
                        return _fallback(ufunc, method, inputs, out, kwargs)
                    if ty is Scratch:
                        ky, sy, y = y.dtype, y.shape, y.view(_plain)
                    elif ty in _SCALARS:
                        ky, sy = ty, ()
                    elif ty is _plain or isinstance(y, np.generic):
                        ky, sy = y.dtype, y.shape
                    else:
                        return _fallback(ufunc, method, inputs, out, kwargs)
                    if sx and sy and sx != sy:
                        return _fallback(ufunc, method, inputs, out, kwargs)
                    key = (ufunc, kx, ky)
                    dtype = _RESOLVED.get(key, _UNKNOWN)
                    if dtype is _UNKNOWN:
                        dtype = _out_dtype(key)
                    if dtype is not None and (sx or sy):
                        plain, scratch = workspace().take(sx or sy, dtype)
                        ufunc(x, y, out=plain)
                        return scratch
                elif len(inputs) == 1 and ufunc.nout == 1:
                    x = inputs[0]
                    if type(x) is Scratch and x.shape:
                        key = (ufunc, x.dtype)
                        dtype = _RESOLVED.get(key, _UNKNOWN)
                        if dtype is _UNKNOWN:
                            dtype = _out_dtype(key)
                        if dtype is not None:
                            plain, scratch = workspace().take(x.shape, dtype)
                            ufunc(x.view(_plain), out=plain)
                            return scratch
            elif len(out) == 1:  # an in-place operator (x *= y) or an explicit out=
                target = out[0]
                ufunc(
                    *[x.view(_plain) if type(x) is Scratch else x for x in inputs],
                    out=target.view(_plain) if type(target) is Scratch else target,
                )
                return target
        return _fallback(ufunc, method, inputs, out, kwargs)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        impl = _FUNCTIONS.get(func)
        if impl is not None:
            result = impl(*args, **kwargs)
            if result is not NotImplemented:
                return result
        return super().__array_function__(func, types, args, kwargs)

    def astype(self, dtype: Any, order: str = "K", casting: str = "unsafe", subok: bool = True, copy: bool = True) -> Any:
        """``ndarray.astype`` into a scratch buffer (the same cast, no fresh array)."""
        dtype = np.dtype(dtype)
        if not copy and dtype == self.dtype:
            return self
        if order not in ("K", "C", "A") or not self.flags.c_contiguous:
            return _plain.astype(self.view(_plain), dtype, order=order, casting=casting, subok=False, copy=copy)
        plain, scratch = workspace().take(self.shape, dtype)
        np.copyto(plain, self.view(_plain), casting=casting)
        return scratch

    def _refoptim_fma(self, a: Any, c: Any, out: Any = None) -> Any:
        """:func:`refoptim._primitives.fma` ``(a, self, c)`` for float32 operands of one
        shape: ``self`` converted to float64, multiplied by ``a``, ``c`` added, all in one
        float64 scratch buffer, the sum rounded once to float32 into ``out`` (a writeable
        array of the shape) or a scratch buffer. The generic route's operations and
        roundings without its four temporaries (measured on 131,072 elements: 114 µs
        against 139 µs). ``NotImplemented`` sends any other case back to the generic
        route. Runs inside the step's ``errstate`` (the fast path's only caller)."""
        shape = self.shape
        if (
            self.dtype != _F32
            or not self.flags.c_contiguous
            or getattr(c, "dtype", None) != _F32
            or c.shape != shape
            or not c.flags.c_contiguous
            or not (type(a) is float or (getattr(a, "dtype", None) == _F32 and a.shape == shape and a.flags.c_contiguous))
            or (out is not None and not (out.shape == shape and out.dtype == _F32 and out.flags.c_contiguous))
        ):
            return NotImplemented
        ws = workspace()
        if NUMBA:
            scalar_kernel, array_kernel = _numba.kernels()
            if out is None:
                dest, result = ws.take(shape, _F32)
            else:
                dest, result = _strip(out), out
            flat = (-1,)
            b = self.view(_plain).reshape(flat)
            if type(a) is float:
                scalar_kernel(a, b, _strip(c).reshape(flat), dest.reshape(flat))
            else:
                array_kernel(_strip(a).reshape(flat), b, _strip(c).reshape(flat), dest.reshape(flat))
            return result
        wide, held = ws.take(shape, _F64)  # held: the buffer stays lent while this runs
        np.copyto(wide, self.view(_plain))
        np.multiply(wide, _strip(a), out=wide)
        np.add(wide, _strip(c), out=wide)
        if out is None:
            dest, scratch = ws.take(shape, _F32)
            np.copyto(dest, wide, casting="same_kind")
            return scratch
        np.copyto(_strip(out), wide, casting="same_kind")
        del held
        return out


_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)


def scratch_view(x: np.ndarray) -> Scratch:
    """``x`` (a NumPy array) seen as a :class:`Scratch` array over the same memory."""
    return x.view(Scratch)


def concat(parts: list[Any]) -> Scratch:
    """``numpy.concatenate`` of 1-d arrays of one dtype into a scratch buffer."""
    plain = [_strip(p) for p in parts]
    buf, scratch = workspace().take((sum(p.shape[0] for p in plain),), plain[0].dtype)
    np.concatenate(plain, out=buf)
    return scratch


def _where(condition: Any, x: Any = None, y: Any = None, /) -> Any:
    """``numpy.where(condition, x, y)`` into a scratch buffer: ``y`` copied, then ``x``
    where ``condition`` holds (a selection: the same values, in the promoted dtype)."""
    if x is None or y is None:
        return NotImplemented
    args = (_strip(condition), _strip(x), _strip(y))
    shape = _shape_of(args)
    if not shape:
        return NotImplemented
    try:
        dtype = np.result_type(args[1], args[2])
    except TypeError:
        return NotImplemented
    buf, scratch = workspace().take(shape, dtype)
    np.copyto(buf, args[2])
    np.copyto(buf, args[1], where=args[0])
    return scratch


def _filled(a: Any, fill: Any, dtype: Any, order: str, shape: Any, kw: dict) -> Any:
    if kw or shape is not None or order not in ("K", "C", "A") or not getattr(a, "shape", ()):
        return NotImplemented
    buf, scratch = workspace().take(a.shape, np.dtype(a.dtype if dtype is None else dtype))
    if fill is not None:
        buf[...] = fill
    return scratch


def _zeros_like(a: Any, dtype: Any = None, order: str = "K", subok: bool = True, shape: Any = None, **kw: Any) -> Any:
    return _filled(a, 0, dtype, order, shape, kw)


def _ones_like(a: Any, dtype: Any = None, order: str = "K", subok: bool = True, shape: Any = None, **kw: Any) -> Any:
    return _filled(a, 1, dtype, order, shape, kw)


def _empty_like(a: Any, dtype: Any = None, order: str = "K", subok: bool = True, shape: Any = None, **kw: Any) -> Any:
    return _filled(a, None, dtype, order, shape, kw)


def _full_like(
    a: Any, fill_value: Any, dtype: Any = None, order: str = "K", subok: bool = True, shape: Any = None, **kw: Any
) -> Any:
    return _filled(a, fill_value, dtype, order, shape, kw)


_FUNCTIONS: dict[Any, Any] = {
    np.where: _where,
    np.zeros_like: _zeros_like,
    np.ones_like: _ones_like,
    np.empty_like: _empty_like,
    np.full_like: _full_like,
}
