"""The one seam for speed: ways of running an elementwise rule that never change a result.

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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._backend import array_namespace, is_array

__all__ = ["CHUNK_ELEMENTS", "can_chunk", "can_group", "chunked_update", "grouped_update"]

CHUNK_ELEMENTS = 15872
"""Elements per piece (31 x 512): a piece's float64 temporaries (torch's fused multiply-adds
on float32 are evaluated in float64) take 124 KiB, under glibc's 128 KiB threshold above
which every temporary is a fresh ``mmap`` whose pages fault in on first touch. Measured on
the 2-core CI machine (Adam, 10M float32 elements): about 2x faster than whole arrays, and
a step's extra memory falls from 8x the parameter's bytes to about 0.01x. Set to 0 to
turn chunking off."""


def _flat_ok(x: Any) -> bool:
    """True when :func:`_flat_view` gives a view: a C-contiguous, writeable array."""
    flags = getattr(x, "flags", None)
    return flags is not None and bool(flags["C_CONTIGUOUS"]) and bool(flags["WRITEABLE"])


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


def can_chunk(param: Any, grad: Any, state: dict[str, Any], chunk: int | None = None) -> bool:
    """True when running the rule piece by piece is possible and worth it: more than two
    pieces' worth of elements, and the parameter, the gradient and every full-size state
    entry viewable flat without a copy. ``chunk`` defaults to :data:`CHUNK_ELEMENTS`."""
    chunk = CHUNK_ELEMENTS if chunk is None else chunk
    if chunk <= 0 or not is_array(grad):
        return False
    size = getattr(param, "size", None)
    if size is None or size <= 2 * chunk:
        return False
    return _fits(param, grad, state)


def _copy(xp: Any, value: Any) -> Any:
    return xp.asarray(value, copy=True) if is_array(value) else value


def chunked_update(
    update: Callable[[Any, Any, dict[str, Any], dict[str, Any]], Any],
    param: Any,
    grad: Any,
    state: dict[str, Any],
    group: dict[str, Any],
    chunk: int | None = None,
) -> Any:
    """Run ``update(param, grad, state, group)`` piece by piece; same bits as one call.

    ``param`` and the full-size entries of ``state`` are updated in place (they must pass
    :func:`can_chunk`); ``state`` receives the step's scalar values and any entry the rule
    creates. Returns ``param``. ``chunk`` defaults to :data:`CHUNK_ELEMENTS`.
    """
    chunk = CHUNK_ELEMENTS if chunk is None else chunk
    xp = array_namespace(param)
    shape = tuple(param.shape)
    n = int(param.size)
    flat_p, flat_g, full = _flat_parts(param, grad, state)
    scalars = {k: v for k, v in state.items() if k not in full}
    kept: dict[str, Any] = {}
    created: dict[str, list[Any]] = {}
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        views = {k: f[start:stop] for k, f in full.items()}
        piece_state = {k: _copy(xp, v) for k, v in scalars.items()}
        piece_state.update(views)
        p_view = flat_p[start:stop]
        out = update(p_view, flat_g[start:stop], piece_state, group)
        if out is not p_view:
            p_view[...] = out
        for key, value in piece_state.items():
            if key in views:
                if value is not views[key]:
                    views[key][...] = value
            elif is_array(value) and tuple(value.shape) == (stop - start,) and key not in scalars:
                created.setdefault(key, []).append(value)
            elif start == 0:
                kept[key] = value
    state.update(kept)
    for key, pieces in created.items():
        state[key] = xp.reshape(xp.concat(pieces), shape)
    return param


# --------------------------------------------------------------------- many small arrays
def can_group(param: Any, grad: Any, state: dict[str, Any], chunk: int | None = None) -> bool:
    """True when a parameter may be updated together with others of its group: small
    (at most two pieces, so it would run whole), not 0-d, with the parameter, gradient
    and full-size state all viewable flat without a copy."""
    chunk = CHUNK_ELEMENTS if chunk is None else chunk
    if chunk <= 0 or not is_array(grad):
        return False
    size = getattr(param, "size", None)
    if size is None or size == 0 or size > 2 * chunk or len(param.shape) == 0:
        return False
    return _fits(param, grad, state)


def _signature(param: Any, state: dict[str, Any]) -> tuple:
    """What must be equal for two parameters to share one call of the rule: dtype, the
    state's keys, which entries are full-size, and the exact scalar state values."""
    shape = tuple(param.shape)
    parts: list[Any] = [param.dtype, getattr(param, "device", None)]
    for key in sorted(state):
        value = state[key]
        if is_array(value) and tuple(value.shape) == shape:
            parts.append((key, "full", value.dtype))
        elif is_array(value):
            parts.append((key, "array", value.dtype, tuple(value.shape), _host_bytes(value)))
        else:
            parts.append((key, type(value), repr(value)))
    return tuple(parts)


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
) -> None:
    """Update many small parameters with few calls of the rule; same bits as one call each.

    ``items`` are ``(parameter array, gradient, state)`` triples that pass
    :func:`can_group`. Those with equal :func:`_signature` (dtype,
    state layout, scalar state values) are concatenated, updated by one call of ``update``
    per run of about :data:`CHUNK_ELEMENTS` elements, and copied back in place; each
    parameter gets its own copy of the new scalar state, and entries the rule creates are
    split back per parameter.
    """
    buckets: dict[tuple, list[tuple[Any, Any, dict[str, Any]]]] = {}
    for item in items:
        buckets.setdefault(_signature(item[0], item[2]), []).append(item)
    limit = CHUNK_ELEMENTS
    for bucket in buckets.values():
        # runs of about one piece's worth of elements: the working set stays in cache and
        # the concatenated copies stay small
        run: list[tuple[Any, Any, dict[str, Any]]] = []
        size = 0
        for item in bucket:
            if run and size + int(item[0].size) > limit:
                _update_run(update, run, group)
                run, size = [], 0
            run.append(item)
            size += int(item[0].size)
        _update_run(update, run, group)


def _update_run(update: Callable, run: list[tuple[Any, Any, dict[str, Any]]], group: dict[str, Any]) -> None:
    """One call of the rule for a run of parameters of one signature, results copied back."""
    if len(run) == 1:
        param, grad, state = run[0]
        out = update(param, grad, state, group)
        if out is not param:
            param[...] = out
        return
    parts = [_flat_parts(param, grad, state) for param, grad, state in run]
    first_param, _, first_state = run[0]
    first_full = parts[0][2]
    xp = array_namespace(first_param)
    offsets = [0]
    for param, _, _ in run:
        offsets.append(offsets[-1] + int(param.size))
    total = offsets[-1]
    flat_p = xp.concat([flat for flat, _, _ in parts])
    flat_g = xp.concat([flat for _, flat, _ in parts])
    state: dict[str, Any] = {k: _copy(xp, v) for k, v in first_state.items() if k not in first_full}
    for key in first_full:
        state[key] = xp.concat([full[key] for _, _, full in parts])
    new_p = update(flat_p, flat_g, state, group)
    for i, ((param, _, pstate), (p_flat, _, p_full)) in enumerate(zip(run, parts)):
        lo, hi = offsets[i], offsets[i + 1]
        p_flat[...] = new_p[lo:hi]
        for key, value in state.items():
            if is_array(value) and tuple(value.shape) == (total,):
                if key in p_full:
                    p_full[key][...] = value[lo:hi]
                else:  # created by the rule in this step
                    pstate[key] = xp.reshape(xp.asarray(value[lo:hi], copy=True), tuple(param.shape))
            else:
                pstate[key] = _copy(xp, value)
