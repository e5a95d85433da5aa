r"""Reductions in one fixed order: the same bits on every CPU, BLAS, SIMD setting, thread
count and backend.

An elementwise IEEE operation (``+``, ``-``, ``*``, ``/``, ``sqrt``) has one correct result,
so every elementwise rule is machine-independent for free. A reduction is not: a BLAS
``dot`` or ``gemm`` sums in the order of the kernel the CPU picks (OpenBLAS chooses one per
CPU; four different LBFGS results under five ``OPENBLAS_CORETYPE``\ s), and ``xp.sum``
sums in the order of each library's implementation (NumPy's unrolled pairwise loop,
CuPy's parallel tree). So every reduction of refoptim goes through this module, which
sums with elementwise operations only, in an order it fixes:

**The order** (:func:`pairwise_sum`): the elements, flattened in C order, are folded in
halves: with :math:`n` elements and :math:`h = \lfloor n/2 \rfloor`,

.. math::
    y_i = x_i + x_{i+h} \quad (0 \le i < h), \qquad
    y_h = x_{n-1} \text{ when } n \text{ is odd},

and the same is done to :math:`y` until one element is left (an empty sum is ``+0.0``).
Each level is one elementwise addition, so the result is the same wherever IEEE addition
is, and the error is that of pairwise summation: at most about
:math:`\lceil\log_2 n\rceil\,u\sum|x_i|` (:math:`u` the unit roundoff of the
accumulation).

**The precision**: float32 inputs are accumulated in float64 and rounded to float32 once
at the end. A product of two float32 numbers is exact in float64 (24 + 24 significant bits
fit in 53), so a float32 dot product is the exact sum rounded twice: to float64 along the
tree, then to float32. It is the correctly rounded float32 result unless cancellation is
extreme (the float64 error, about :math:`\log_2 n \cdot 2^{-53}\sum|a_i b_i|`, would have
to reach a float32 rounding boundary): more accurate than torch's float32 ``dot`` and
machine-independent by construction. float64 inputs are accumulated in float64 (products
rounded once each): the fixed order makes the bits machine-independent; they are as
accurate as a BLAS's, not correctly rounded (a compensated, twice-the-precision form
would cost several times more and no float64 case needs it).

**Without float64** (JAX with ``jax_enable_x64`` off): the float64 accumulation has no
float32-only equivalent that keeps the same bits (each level of the float64 tree rounds
to 53 bits, more than a pair of float32 holds), so a float32 reduction raises
``TypeError`` there (:func:`require_float64`) instead of silently summing in float32.
L-BFGS and Muon (and :mod:`refoptim._matmul`) reduce this way; the elementwise rules and
Adafactor (whose sums are in the input's dtype) do not need float64.

**Running sums** (:func:`running_sum`): where refoptim reproduces a torch kernel that
sums left to right (Adafactor's norms), the order is the sequential one,
:math:`((x_0 + x_1) + x_2) + \dots`, in the input's dtype. NumPy's ``cumulative_sum``
is exactly that scan, so on NumPy (and array-api-strict, which runs on it) the sum is
read off its last element: one call instead of a Python loop. Any other library
(CuPy's parallel scan, torch's own scan) takes the generic path, one
elementwise addition per element along the axis; the two are tested bit-identical.

**The cost**, measured on NumPy on the 2-core CI machine against the BLAS/``np.sum``
calls they replace, for one million float32 elements: ``dot`` 2.8 ms against 0.17 ms for
``vecdot`` (float64: 1.8 ms against 0.5 ms), ``sum`` 1.1 ms against 0.2 ms. That is O(n)
work with :math:`\log_2 n` array operations; it matters only to L-BFGS on very large
problems, where the closure (a forward and backward pass) usually costs far more.
"""

from __future__ import annotations

from typing import Any

from ._backend import device_of, namespace_name
from ._primitives import has_float64

__all__ = ["dot", "fold0", "pairwise_sum", "require_float64", "running_sum", "sum_abs", "sum_squares"]


def require_float64(xp: Any, what: str) -> None:
    """Raise ``TypeError`` when namespace ``xp`` has no float64 (JAX with
    ``jax_enable_x64`` off): ``what`` accumulates float32 in float64, and summing in
    float32 instead would silently change its bits (module docstring)."""
    if not has_float64(xp):
        raise TypeError(
            f"{what} accumulates float32 in float64 (refoptim's fixed-order reductions), but "
            f"the array namespace {namespace_name(xp)} has no float64; with JAX, enable it "
            "(jax.config.update('jax_enable_x64', True) or JAX_ENABLE_X64=1) before creating "
            "arrays. A float32-only form with the same bits is not implemented."
        )


def _wide(xp: Any, x: Any) -> Any:
    """``x`` in the accumulation dtype: float32 widened to float64 (exactly), else itself.
    Raises ``TypeError`` for float32 on a namespace without float64."""
    if x.dtype == xp.float32:
        require_float64(xp, "this reduction")
        return xp.astype(x, xp.float64)
    return x


def fold0(xp: Any, x: Any) -> Any:
    """The fixed pairwise fold along axis 0 of ``x`` (``x.shape[0] >= 1``), for every
    trailing index at once: ``y[i] = x[i] + x[i + h]``, an odd last one carried, until
    one is left; returns ``x[0, ...]`` of that (a 0-d array for a 1-d ``x``)."""
    n = int(x.shape[0])
    while n > 1:
        h = n // 2
        y = x[:h, ...] + x[h : 2 * h, ...]
        x = xp.concat([y, x[2 * h :, ...]], axis=0) if n % 2 else y
        n = h + n % 2
    return x[0, ...]


def _fold(xp: Any, x: Any) -> Any:
    """The fixed pairwise fold of a 1-d array to a 0-d array of its dtype."""
    if int(x.shape[0]) == 0:
        return xp.zeros((), dtype=x.dtype, device=device_of(x))
    return xp.reshape(fold0(xp, x), ())


def _flat(xp: Any, x: Any) -> Any:
    return x if len(x.shape) == 1 else xp.reshape(x, (-1,))


def pairwise_sum(xp: Any, x: Any) -> Any:
    """The sum of all elements of a real floating array ``x`` in refoptim's fixed order
    (module docstring): a 0-d array of ``x``'s dtype (float32 accumulated in float64 and
    rounded once)."""
    total = _fold(xp, _wide(xp, _flat(xp, x)))
    return xp.astype(total, x.dtype) if total.dtype != x.dtype else total


def dot(xp: Any, a: Any, b: Any) -> Any:
    """``sum(a * b)`` of two real floating arrays of one dtype and shape, in the fixed
    order: a 0-d array of their dtype. float32 products are formed exactly in float64."""
    products = _wide(xp, _flat(xp, a)) * _wide(xp, _flat(xp, b))
    total = _fold(xp, products)
    return xp.astype(total, a.dtype) if total.dtype != a.dtype else total


def sum_abs(xp: Any, x: Any) -> Any:
    """``sum(|x|)`` (torch's ``x.abs().sum()``, the L1 norm) in the fixed order."""
    return pairwise_sum(xp, xp.abs(x))


def sum_squares(xp: Any, x: Any) -> Any:
    """``sum(x * x)`` in the fixed order (float32 squares formed exactly in float64): the
    square of the Frobenius norm, before its ``sqrt``."""
    return dot(xp, x, x)


# Namespaces whose ``cumulative_sum`` is a sequential left-to-right scan in the input's
# dtype (NumPy's ``add.accumulate``): the seam's fast path. Tested equal to the loop.
_SEQUENTIAL_SCAN = frozenset({"array_api_compat.numpy", "numpy", "array_api_strict"})


def running_sum(xp: Any, x: Any, axis: int) -> Any:
    """The left-to-right sum of ``x`` along ``axis``, keeping the axis (size 1):
    ``((x[0] + x[1]) + x[2]) + ...`` in ``x``'s dtype, the order of torch's sequential CPU
    reductions. An empty axis sums to zeros."""
    n = int(x.shape[axis])
    axis = axis % len(x.shape)
    index: list[Any] = [slice(None)] * len(x.shape)
    if n == 0:
        shape = tuple(1 if i == axis else d for i, d in enumerate(x.shape))
        return xp.zeros(shape, dtype=x.dtype, device=device_of(x))
    if getattr(xp, "__name__", "") in _SEQUENTIAL_SCAN:
        index[axis] = slice(n - 1, None)
        return xp.cumulative_sum(x, axis=axis)[tuple(index)]
    return _running_sum_loop(xp, x, axis)


def _running_sum_loop(xp: Any, x: Any, axis: int) -> Any:
    """:func:`running_sum`'s generic path: one elementwise addition per element."""
    index: list[Any] = [slice(None)] * len(x.shape)
    index[axis] = slice(0, 1)
    total = x[tuple(index)]
    for i in range(1, int(x.shape[axis])):
        index[axis] = slice(i, i + 1)
        total = total + x[tuple(index)]
    return total
