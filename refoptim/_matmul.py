r"""Matrix products in one fixed order: the same bits on every CPU, BLAS, thread count and
backend.

A BLAS ``gemm`` (what ``@`` calls on NumPy and CuPy) sums each dot product in the order of
the kernel it picks: OpenBLAS chooses one per CPU (``OPENBLAS_CORETYPE`` changes NumPy's
float32 ``@`` in the last bits), splits the work by thread count, and cuBLAS has its own.
So ``a @ b`` is not a function of ``a`` and ``b`` alone. This module has two products that
are, for 2-D real floating arrays ``a`` (``m x k``) and ``b`` (``k x n``):

**Exact band products** (:func:`matmul_exact`; Muon's bfloat16 values, held in float32
arrays). The result is *the exact product correctly rounded to float32* (nearest, ties to
even): a definition that names no algorithm, so any exact method (integer arithmetic,
another band split) reproduces it bit for bit. How it is computed: a float64 ``gemm`` is
exact, and so independent of its summation order, FMA use and threads, when every product
and every partial sum is an integer multiple of one quantum, below :math:`2^{53}` of it.
Each operand is split by magnitude into bands of :math:`W` binades, with exact comparisons
against powers of two only (``|a| >= 2**e``; the top exponent from :func:`math.frexp` of the
exact maximum): an entry of ``bits`` significant bits in the band :math:`[2^{t-W}, 2^t)`
is an integer of at most :math:`L = W + \mathrm{bits} - 1` bits times :math:`2^{t-L}`, so
a band-pair product of ``k`` terms is exact when :math:`2L + \lceil\log_2 k\rceil \le 53`.
:func:`band_width` gives the widest such :math:`W` (bfloat16: 16 for ``k`` up to 64, 14 up
to 1024, 13 up to 4096). Every non-empty band pair is one float64 ``xp.matmul``; only
the ``k`` indices where both bands have entries take part (a low band is sparse: a few
entries in 10**4 on Muon's matrices). Bands run from the top of the largest entry down to
the band of the smallest nonzero one, empty bands skipped, so every finite value is
covered, bfloat16's subnormals (down to :math:`2^{-133}`) and float32's included: no
fallback, nothing left out. For ``x @ x.T``, and ``g @ g`` with a symmetric ``g`` (checked
by value), only the band pairs ``(i, j)`` with ``i <= j`` are multiplied, ``(j, i)`` being
the transpose. The band-pair results are exact; their sum is correctly rounded to float32
by :func:`round_sum_to_float32` (a float64 sum, with a proof per element that it rounds
right, and an exact sum on the host for the rare elements where it might not).

**The fixed fold** (:func:`matmul`; Muon's ``"float32"`` and ``"param"`` modes, any real
floating dtype). Element :math:`(i, j)` is :func:`refoptim._reduce.dot` of row :math:`i`
of ``a`` and column :math:`j` of ``b``, bit for bit: the ``k`` products (float32 widened
to float64, where they are exact; float64 products rounded once each) folded in halves,
:math:`y_p = x_p + x_{p+h}` with the odd last one carried, until one is left, in
float64, then rounded to the operands' dtype. Built from elementwise operations only, a
block of rows at a time (``a[rows, :, None] * b[None, :, :]`` with ``k`` leading, at most
:data:`FOLD_BLOCK_BYTES` of products at once), so it is as machine-independent as IEEE
arithmetic, on any backend, and as slow as :math:`mnk` multiplications and additions made
by elementwise loops instead of a ``gemm``.

**Signs and non-finite values.** Both return ``+0.0`` for every zero result (a BLAS may
return ``-0.0`` for a sum of ``-0.0`` products, or not, by kernel). Non-finite entries give
what IEEE arithmetic gives in any order: NaN where a product is NaN (NaN, or
:math:`\infty \cdot 0`) or where products of both infinite signs meet, otherwise
:math:`\pm\infty` where one is infinite. :func:`matmul_exact` finds them with exact float64
products of 0/1 indicator matrices (a BLAS may skip the multiplications by zero that make
the NaNs). NaN payloads and signs are not fixed: CPUs make different default NaNs.

**Cost**, NumPy 2.4 and OpenBLAS 0.3.31 on one thread of the shared 2-core CI machine
(AMD EPYC; loaded, so +-30%), square ``n x n`` products, against the float32 ``@`` they
replace:

=====  ==========  ===========  ======================  ======================
n      float32 @   float64 @    matmul_exact (x @ x.T)  matmul (fold), float32
=====  ==========  ===========  ======================  ======================
64     0.02 ms     0.03 ms      0.2 ms (0.13 ms)        0.7 ms
256    0.45 ms     0.9 ms       10 ms (8 ms)            20-25 ms
768    10 ms       24 ms        85 ms (70 ms)           0.65-1.1 s
1024   28 ms       57 ms        230 ms (145 ms)         2.5 s
=====  ==========  ===========  ======================  ======================

The exact path costs what its float64 ``gemm``\ s cost (one dense band pair, twice a
float32 ``gemm``, plus the sparse ones) and about 20 elementwise passes: 5 to 9 times
``@`` at these sizes, about 3.5 times for a whole Newton–Schulz iteration (whose
bfloat16 roundings cost the same as before). The fold is 40 to 100 times ``@``: it is
meant for the full-precision modes of small matrices and for reference, not for speed.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

from ._backend import device_of
from ._reduce import fold0, require_float64

__all__ = ["FOLD_BLOCK_BYTES", "band_width", "matmul", "matmul_exact", "round_sum_to_float32"]

FOLD_BLOCK_BYTES = 1 << 20
"""The most bytes of float64 products :func:`matmul` holds at once (1 MiB): a block of
rows of ``a`` is multiplied by all of ``b`` at a time."""


def _ceil_log2(k: int) -> int:
    return (k - 1).bit_length() if k > 1 else 0


def band_width(k: int, bits: int) -> int:
    r"""The widest band, in binades, whose band-pair products of ``k`` terms of ``bits``
    significant bits are exact in float64: the largest :math:`W` with
    :math:`2(W + \mathrm{bits} - 1) + \lceil\log_2 k\rceil \le 53` (0 when none is)."""
    return max(0, (53 - _ceil_log2(k)) // 2 - bits + 1)


def _check(xp: Any, a: Any, b: Any) -> None:
    if len(a.shape) != 2 or len(b.shape) != 2:
        raise ValueError(f"matmul takes 2-D arrays, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} do not align")
    if a.dtype != b.dtype:
        raise ValueError(f"matmul: dtypes differ ({a.dtype} and {b.dtype})")


# ----------------------------------------------------------------------------- fixed fold
def matmul(xp: Any, a: Any, b: Any) -> Any:
    """``a @ b`` of 2-D real floating arrays of one dtype, each element summed in the fixed
    fold (module docstring): :func:`refoptim._reduce.dot` of a row and a column, bit for
    bit. float32 is accumulated in float64 and rounded once; float64 products are rounded
    once each. Zero results are ``+0.0``. ``TypeError`` on a namespace without float64
    (:func:`refoptim._reduce.require_float64`)."""
    _check(xp, a, b)
    m, k = int(a.shape[0]), int(a.shape[1])
    n = int(b.shape[1])
    dtype = a.dtype
    if m == 0 or n == 0 or k == 0:
        return xp.zeros((m, n), dtype=dtype, device=device_of(a))
    require_float64(xp, "matmul")
    wide = xp.float64
    aw = xp.astype(a, wide) if dtype != wide else a
    bw = xp.astype(b, wide) if dtype != wide else b
    at = xp.expand_dims(aw.T, axis=2)  # (k, m, 1)
    bk = xp.expand_dims(bw, axis=1)  # (k, 1, n)
    rows = max(1, FOLD_BLOCK_BYTES // (8 * k * n))
    blocks = []
    for start in range(0, m, rows):
        blocks.append(fold0(xp, at[:, start : min(start + rows, m), :] * bk))
    out = blocks[0] if len(blocks) == 1 else xp.concat(blocks, axis=0)
    if out.dtype != dtype:
        out = xp.astype(out, dtype)
    return out + 0.0


# -------------------------------------------------------------------- exact band products
def _bands(xp: Any, a: Any, width: int) -> list[tuple[int, Any]]:
    r"""The nonzero bands of a finite float32 array ``a``, largest first: pairs
    ``(index, band)`` with ``band`` the float64 array of the entries of ``a`` with
    :math:`2^{t - (index+1) W} \le |a| < 2^{t - index W}` (zero elsewhere), ``t`` the
    top exponent of ``max|a|`` (``max|a| < 2**t``), the last band taking everything below.
    Only exact comparisons against powers of two; empty bands are left out."""
    mag = xp.abs(a)
    top = float(xp.max(mag)) if a.shape[0] * a.shape[1] else 0.0
    if top == 0.0:
        return []
    _, t = math.frexp(top)  # top < 2**t (frexp's mantissa is in [0.5, 1))
    floor = float(xp.min(xp.where(mag > 0, mag, math.inf)))
    _, f = math.frexp(floor)  # floor >= 2**(f - 1)
    bands = []
    index, upper = 0, None
    while True:
        lower = t - (index + 1) * width
        inside = None if lower <= f - 1 else mag >= 2.0**lower
        if upper is not None:
            inside = upper if inside is None else inside & upper
        if inside is not None:
            band = xp.where(inside, a, 0.0)
        else:
            band = a
        if inside is None or bool(xp.any(inside)):
            bands.append((index, xp.astype(band, xp.float64)))
        if lower <= f - 1:
            return bands
        upper = mag < 2.0**lower
        index += 1


def _nonfinite_pattern(xp: Any, a: Any, b: Any) -> tuple[Any, Any, Any]:
    """Where ``a @ b`` is NaN, +inf and -inf by IEEE arithmetic (boolean arrays), from
    exact float64 products of 0/1 indicators: counts of the offending products."""

    def ind(mask: Any) -> Any:
        return xp.astype(mask, xp.float64)

    a_inf, b_inf = xp.isinf(a), xp.isinf(b)
    a_pos, a_neg, b_pos, b_neg = a > 0, a < 0, b > 0, b < 0
    nan = (
        xp.matmul(ind(xp.isnan(a)), xp.ones_like(ind(b_inf)))
        + xp.matmul(xp.ones_like(ind(a_inf)), ind(xp.isnan(b)))
        + xp.matmul(ind(a_inf), ind(b == 0))
        + xp.matmul(ind(a == 0), ind(b_inf))
    )
    a_pinf, a_ninf = ind(a_inf & a_pos), ind(a_inf & a_neg)
    b_pinf, b_ninf = ind(b_inf & b_pos), ind(b_inf & b_neg)
    a_p, a_n, b_p, b_n = ind(a_pos), ind(a_neg), ind(b_pos), ind(b_neg)
    pos = (
        xp.matmul(a_pinf, b_p) + xp.matmul(a_ninf, b_n) + xp.matmul(a_p, b_pinf) + xp.matmul(a_n, b_ninf)
    )
    neg = (
        xp.matmul(a_pinf, b_n) + xp.matmul(a_ninf, b_p) + xp.matmul(a_p, b_ninf) + xp.matmul(a_n, b_pinf)
    )
    both = (pos > 0) & (neg > 0)
    return (nan > 0) | both, (pos > 0) & ~both, (neg > 0) & ~both


def _fraction_to_float32(value: Fraction) -> float:
    """A rational number correctly rounded to float32 (nearest, ties to even; subnormals
    and overflow to infinity as float32 has them), as a Python float."""
    if value == 0:
        return 0.0
    sign = -1.0 if value < 0 else 1.0
    magnitude = abs(value)
    # numerator and denominator bit lengths put |value| in (2**(top-1), 2**(top+1))
    top = magnitude.numerator.bit_length() - magnitude.denominator.bit_length()
    if magnitude < Fraction(2) ** top:
        top -= 1  # now 2**top <= |value| < 2**(top + 1)
    # the float32 quantum at |value|: 24 significant bits, not below the subnormal 2**-149
    q = max(top - 23, -149)
    scaled = magnitude / Fraction(2) ** q
    whole = scaled.numerator // scaled.denominator
    rest = scaled - whole
    if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and whole % 2 == 1):
        whole += 1
    if whole * Fraction(2) ** q >= Fraction(2) ** 128:
        return sign * math.inf
    return sign * math.ldexp(float(whole), q)


def _two_sum(s: Any, t: Any) -> tuple[Any, Any]:
    """Knuth's error-free ``s + t``: ``(sum, err)`` with ``sum + err == s + t`` exactly."""
    total = s + t
    back = total - s
    return total, (s - (total - back)) + (t - back)


def _put_back(xp: Any, mask: Any, values: Any, default: Any) -> Any:
    """1-d: ``default`` with its elements where ``mask`` is true replaced, in order, by
    ``values`` (a scatter from gathers only: each element's ordinal among the true)."""
    ordinal = xp.cumulative_sum(xp.astype(mask, xp.int64)) - 1
    ordinal = xp.where(ordinal < 0, 0, ordinal)
    return xp.where(mask, xp.take(values, ordinal), default)


def round_sum_to_float32(xp: Any, terms: list[Any]) -> Any:
    r"""The exact sum of float64 arrays ``terms`` (one shape, at least one, each element
    exact) correctly rounded to float32 (nearest, ties to even), whatever their magnitudes
    and however they cancel.

    The terms are added in float64, ``s``, and ``s`` is rounded to float32. That is the
    correctly rounded result wherever the float64 error bound,
    :math:`|x - s| \le B = 4T\,2^{-53}\sum_i|t_i|` for :math:`T` terms (more than twice
    the textbook bound of any summation order), leaves no float32 rounding boundary between
    :math:`s - B` and :math:`s + B`: both ends round to the same float32. The other elements
    are gathered and added again, term by term, with Knuth's ``TwoSum``: where no addition
    left a residual the sum is exact (typically an exact float32 tie, which float32's own
    rounding breaks to even) and is rounded once; the rest (near-ties and cancellations: none to a few in a million on Muon's
    matrices) are summed exactly on the host with :class:`fractions.Fraction`, rounded by
    :func:`_fraction_to_float32`, and put back. Elementwise operations only; and the result,
    the correctly rounded exact sum, depends on nothing else: not on the order of the terms,
    not on the machine."""
    return _round_sum(xp, [(t, False) for t in terms])


def _round_sum(xp: Any, terms: list[tuple[Any, bool]]) -> Any:
    """:func:`round_sum_to_float32` of terms given as ``(array, twice)``: ``twice`` stands
    for two exact terms, the (square) array and its transpose."""

    def whole(t: Any, twice: bool) -> Any:
        return t + t.T if twice else t

    s = whole(*terms[0])
    for t, twice in terms[1:]:
        s = s + whole(t, twice)
    r = xp.astype(s, xp.float32)
    count = sum(2 if twice else 1 for _, twice in terms)
    if count == 1:
        return r  # s is the exact sum: one rounding
    size = None
    for t, twice in terms:
        mag = whole(xp.abs(t), twice)
        size = mag if size is None else size + mag
    bound = size * (4 * count * 2.0**-53)
    unsure = xp.reshape(xp.astype(s - bound, xp.float32) != xp.astype(s + bound, xp.float32), (-1,))
    if not bool(xp.any(unsure)):
        return r
    where = xp.nonzero(unsure)[0]
    parts = []
    for t, twice in terms:
        flat = xp.reshape(t, (-1,))
        parts.append(xp.take(flat, where))
        if twice:  # element (i, j) of t.T is element (j, i) of t
            n = int(t.shape[1])
            parts.append(xp.take(flat, (where % n) * n + where // n))
    total = parts[0]
    inexact = xp.zeros(total.shape, dtype=xp.bool, device=device_of(total))
    for part in parts[1:]:
        total, err = _two_sum(total, part)
        inexact = inexact | (err != 0)
    # where no addition of this sum rounded, it is exact: one rounding to float32
    corrected = xp.astype(total, xp.float32)
    hard = int(xp.count_nonzero(inexact))
    if hard:
        index = xp.nonzero(inexact)[0]
        chosen = [xp.take(part, index) for part in parts]
        exact = [
            _fraction_to_float32(sum((Fraction(float(part[i])) for part in chosen), Fraction(0)))
            for i in range(hard)
        ]
        values = xp.asarray(exact, dtype=xp.float32, device=device_of(r))
        corrected = _put_back(xp, inexact, values, corrected)
    return xp.reshape(_put_back(xp, unsure, corrected, xp.reshape(r, (-1,))), tuple(r.shape))


def _product(xp: Any, ai: Any, bj: Any, *, gram: bool = False) -> Any:
    """``ai @ bj`` of two float64 bands, exact; with ``gram=True``, ``ai @ ai.T`` (``bj``
    is then ``ai``'s transpose and is not read). Only the ``k`` indices where both
    operands have a nonzero entry take part (a low band is sparse, and dropping zero
    products changes nothing in an exact sum): they are gathered first when they are
    fewer than three quarters of ``k``."""
    k = int(ai.shape[1])
    used = xp.any(ai != 0, axis=0)
    if not gram:
        used = used & xp.any(bj != 0, axis=1)
    count = int(xp.count_nonzero(used))
    if count == 0:
        n = int(ai.shape[0]) if gram else int(bj.shape[1])
        return xp.zeros((int(ai.shape[0]), n), dtype=ai.dtype, device=device_of(ai))
    if 4 * count < 3 * k:
        index = xp.nonzero(used)[0]
        ai = xp.take(ai, index, axis=1)
        if not gram:
            bj = xp.take(bj, index, axis=0)
    # ai @ ai.T on one array lets NumPy call syrk (half the work); exact all the same.
    return xp.matmul(ai, ai.T) if gram else xp.matmul(ai, bj)


def matmul_exact(xp: Any, a: Any, b: Any, *, bits: int = 8) -> Any:
    """``a @ b`` of 2-D float32 arrays whose values have at most ``bits`` significant bits
    (bfloat16 values: 8), by exact float64 band products (module docstring): a float32
    array, independent of the BLAS, its threads and the backend. Zero results are
    ``+0.0``.

    When ``b`` equals ``a.T`` (``x @ x.T``, or ``g @ g`` for a symmetric ``g``) only the
    band pairs ``(i, j)`` with ``i <= j`` are multiplied, ``(j, i)`` being the transpose
    of ``(i, j)``, and the diagonal pairs as ``A_i @ A_i.T``: the same exact values, so
    the same bits, for about half the work.

    The caller promises the ``bits``: with more significant bits in an operand the bands
    are not exact and the result may depend on the BLAS. Raises ``ValueError`` when ``k``
    is too large for a band of one binade (``2 * bits + ceil(log2 k) > 53``: for bfloat16,
    ``k > 2**37``), ``TypeError`` on a namespace without float64 (its band products are
    float64; :func:`refoptim._reduce.require_float64`)."""
    _check(xp, a, b)
    if a.dtype != xp.float32:
        raise ValueError(f"matmul_exact takes float32 arrays, got {a.dtype}")
    require_float64(xp, "matmul_exact")
    m, k = int(a.shape[0]), int(a.shape[1])
    n = int(b.shape[1])
    width = band_width(k, bits)
    if width < 1:
        raise ValueError(f"matmul_exact: k={k} is too large for exact products of {bits}-bit values")
    finite = bool(xp.all(xp.isfinite(a))) and bool(xp.all(xp.isfinite(b)))
    if finite:
        a_fin, b_fin = a, b
    else:
        a_fin = xp.where(xp.isfinite(a), a, 0.0)
        b_fin = xp.where(xp.isfinite(b), b, 0.0)
    symmetric = m == n and m * k > 0 and bool(xp.all(b_fin == a_fin.T))
    a_bands = dict(_bands(xp, a_fin, width))
    b_bands = {} if symmetric else dict(_bands(xp, b_fin, width))
    terms = []
    for i, ai in a_bands.items():
        for j in a_bands if symmetric else b_bands:
            if not symmetric:
                terms.append((_product(xp, ai, b_bands[j]), False))
            elif i == j:
                terms.append((_product(xp, ai, None, gram=True), False))
            elif i < j:  # (j, i) is the transpose of (i, j): the same exact values
                terms.append((_product(xp, ai, a_bands[j].T), True))
    if not terms:
        out = xp.zeros((m, n), dtype=xp.float32, device=device_of(a))
    else:
        out = _round_sum(xp, terms) + 0.0
    if not finite:
        nan, pinf, ninf = _nonfinite_pattern(xp, a, b)
        out = xp.where(pinf, math.inf, out)
        out = xp.where(ninf, -math.inf, out)
        out = xp.where(nan, math.nan, out)
    return out
