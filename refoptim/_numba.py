"""An optional compiled fused multiply-add for float32 (numba), behind the speed seam.

torch's float32 ``add_(alpha=)``, ``lerp_`` and ``addcmul_`` round once; refoptim's
Array API route (:func:`refoptim._primitives.fma`) gets that rounding from float64
arithmetic: ``a`` and ``b`` converted, multiplied (exact in float64), ``c`` added (one
rounding), the sum rounded to float32. In NumPy that is four passes over the data with
two conversions, the largest part of a float32 step (145 µs of 170 µs for SGD's piece of
131,072 elements). The kernels here compute the same expression element by element in
one pass (23 µs), with the interpreter lock released:

    out[i] = float32(float64(a) * float64(b[i]) + float64(c[i]))

The same operations in the same order, each IEEE-rounded: numba compiles without
``fastmath``, so LLVM neither reassociates nor contracts the multiply and the add into a
hardware fused multiply-add (which would round once in float64 precision *and* differ from
torch's float32 fused result). ``tests/test_scratch.py`` checks the bits against the Array
API route on normal, subnormal, infinite and NaN operands, and ``tests/test_fastpath.py``
runs every elementwise optimizer with it.

Opt-in: ``REFOPTIM_NUMBA=1`` in the environment (read at import) or
``refoptim._scratch.NUMBA = True``; it needs ``pip install "refoptim[numba]"``. The same
switch fuses whole rules (:mod:`refoptim._fuse`), which compute this expression inside
their own compiled pass; these kernels serve the steps a trace cannot follow (SGD's first
step, which copies the gradient into its momentum buffer). Only float32 operands of one
shape on the NumPy fast path (its scratch arrays) take it; everything else, float64
included, keeps the Array API route. The first use compiles the kernels (about a second
per process).
"""

from __future__ import annotations

from typing import Any

__all__ = ["kernels", "require"]

_KERNELS: tuple[Any, Any] | None = None


def require() -> Any:
    """The ``numba`` module, or an ``ImportError`` that says how to install it."""
    try:
        import numba
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "REFOPTIM_NUMBA=1 (refoptim._scratch.NUMBA) needs numba: pip install 'refoptim[numba]'"
        ) from exc
    return numba


def kernels() -> tuple[Any, Any]:
    """``(scalar_a, array_a)``: compiled ``kernel(a, b, c, out)`` for a Python float ``a``
    and for a float32 array ``a``; ``b``, ``c``, ``out`` 1-d float32 arrays of one length
    (``out`` may be ``b`` or ``c``: each element is read before it is written)."""
    global _KERNELS
    if _KERNELS is None:
        numba = require()
        import numpy as np

        jit = numba.njit(nogil=True, fastmath=False, cache=False)

        @jit
        def scalar_a(a, b, c, out):  # pragma: no cover - compiled
            for i in range(b.shape[0]):
                out[i] = np.float32(a * np.float64(b[i]) + np.float64(c[i]))

        @jit
        def array_a(a, b, c, out):  # pragma: no cover - compiled
            for i in range(b.shape[0]):
                out[i] = np.float32(np.float64(a[i]) * np.float64(b[i]) + np.float64(c[i]))

        _KERNELS = (scalar_a, array_a)
    return _KERNELS
