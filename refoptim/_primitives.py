"""torch's pointwise primitives, named after the torch ops the rules call.

A rule reads like torch's single-tensor path: ``exp_avg = lerp_(exp_avg, grad, 1 - beta1)``
is torch's ``exp_avg.lerp_(grad, 1 - beta1)``. Each helper reproduces how torch's CPU kernel
rounds, decided here once for every rule:

- ``add_``/``add`` with ``alpha``, ``lerp_`` and ``addcmul_`` are a *fused* multiply-add in
  torch's vectorised CPU kernels (one rounding). On float32 we evaluate the fused form in
  float64 and round once to float32, which is the fused result except in the rare case of a
  double rounding. On float64 no wider type exists in the Array API; the fused result is
  rebuilt from error-free transformations (Dekker's product, Knuth's sum): IEEE 754's
  ``fma`` for every input (infinities, NaN, overflow, subnormals, signed zeros: those
  elements are repaired exactly, see :func:`_fma_float64`), except a unit in the last
  place in rare near-ties of the normal range, kept so that the fingerprints hold.
- ``addcdiv_`` is not fused: ``x + (value * t1) / t2``, each operation rounded.
- A Python scalar meets a float32 array as a float32 value (torch casts the ``Scalar`` to the
  kernel's type; NumPy 2 does the same under NEP 50).
- ``scalar / array`` (``reciprocal_scale``) is a reciprocal then a multiply in torch.
- ``sqrt`` is correctly rounded here. torch's CPU build computes ``sqrt`` with MKL's
  vector math (0-d tensors included), which is off by one unit in the last place for
  about one element in six in float32 (one in a hundred in float64); that is a
  difference we measure and report, not one we can reproduce.
- ``pow`` with a Python exponent follows torch's special cases (see :func:`pow`).
- ``array / scalar`` (``div``) is one IEEE division per element. Some libraries compile it
  to a multiplication by the reciprocal (XLA on CPU does, for JAX: about one element in
  seven then differs by a unit); where a one-time probe finds that, or cannot run (inside
  ``jax.jit``), :func:`div` divides by a divisor the compiler cannot rewrite.
- **Namespaces without float64** (JAX with ``jax_enable_x64`` off; the answer is read once
  per namespace from ``__array_namespace_info__().dtypes()``): the float32 fused
  multiply-add is rebuilt from float32 error-free transformations, bit-identical to the
  float64 route (see :func:`_fma_float32`); a float32 ``pow`` with a non-special exponent
  has no float32-only exact form and is the library's float32 ``**`` (see :func:`pow`).

In-place helpers (trailing underscore, like torch) update their first argument where it is
writeable and return it; on immutable arrays they return a new array. Callers always keep
what they get back.
"""

from __future__ import annotations

import math
import struct
from typing import Any

from ._backend import array_namespace, assign, device_of, is_complex, numel
from ._schedule_scalars import LazyFloat

__all__ = [
    "add",
    "add_",
    "addcdiv_",
    "addcmul",
    "addcmul_",
    "clamp_",
    "div",
    "fma",
    "has_float64",
    "lerp_",
    "masked_fill",
    "maximum_",
    "mul_",
    "pow",
    "reciprocal_scale",
    "sign",
]


def _as_dtype_scalar(xp: Any, value: Any, dtype: Any) -> Any:
    """A Python scalar rounded to ``dtype``, as torch casts a ``Scalar`` for a kernel.

    For float32 this is the C cast ``(float)value`` (round to nearest even), which
    ``struct``'s ``"f"`` format performs without making an array; a value beyond float32's
    range, which ``struct`` refuses, goes through the array namespace (it becomes inf)."""
    if isinstance(value, LazyFloat):  # a per-step value under jax.jit: a 0-d array
        return value.astype(dtype)
    if dtype == xp.float32:
        try:
            return _F32.unpack(_F32.pack(value))[0]
        except (OverflowError, TypeError, struct.error):
            return float(xp.asarray(value, dtype=xp.float32))
    return value


_F32 = struct.Struct("f")


_VELTKAMP = 134217729.0  # 2**27 + 1: splits a float64 into two 26-bit halves


def _split(x: Any) -> tuple[Any, Any]:
    """Veltkamp's split: ``x == hi + lo`` exactly, each half with at most 26 bits (``x``
    finite with ``|x| < 2**996``; beyond, ``134217729 * x`` overflows and the halves are
    NaN)."""
    t = _VELTKAMP * x
    hi = t - (t - x)
    return hi, x - hi


# Below this |a * b| (rounded), Dekker's error term may not be a float64 (it falls under
# the subnormal grid); at or above it, with nothing infinite, Dekker's product is exact.
_TINY_PRODUCT = 2.0**-968


def _fma_float64(a: Any, b: Any, c: Any, xp: Any = None) -> Any:
    r"""``a * b + c`` with one rounding, from float64 operations only.

    **Fast path** (unchanged since the first fingerprint, so the committed digests hold):
    Dekker's product :math:`ab = p + e` exactly, Knuth's sum :math:`p + c = s + t`
    exactly, result :math:`r = s + (t + e)`; an exact zero takes the sign of ``p + c``.
    It is valid where every operand is finite, nothing overflows (``|a|, |b| < 2**996``,
    so the split stays finite, and ``p``, ``s`` finite) and ``|p| >= 2**-968`` or ``p`` is
    an exact zero (``a`` or ``b`` zero); there ``r`` is IEEE 754's ``fma(a, b, c)``
    (round to nearest, ties to even) except where :math:`t + e` is itself rounded and
    that rounding decides the final one: :math:`ab + c` within about :math:`2^{-105}`
    of its magnitude from a midpoint between two float64s (for instance ``p + c`` exactly
    a midpoint and a tiny ``e`` on the side away from the even neighbour). That
    deviation, a unit in the last place in rare near-ties, is kept: the fast path's bits
    are what the fingerprints record.

    **Everything else** is repaired exactly (:func:`_fma_exact`): infinities and NaN
    (IEEE's rules: ``inf * 0`` is NaN, an infinite ``c`` with a finite ``a * b`` is ``c``
    even where the float64 product ``a * b`` overflows), overflow of the exact result
    (``±inf``) and exact results that are finite although ``a * b`` overflows, operands
    beyond ``2**996``, products under ``2**-968`` (subnormal operands, results on the
    subnormal grid rounded once, the sign of a zero that a tiny product rounds to).

    Detection: where the array can be inspected (NumPy, array-api-strict, CuPy, JAX
    outside ``jax.jit``) two reductions test ``min |p| >= 2**-968`` and a finite
    ``sum(r)``; only when that fails is the exact mask of suspect elements built, and only
    when an element is suspect is the repair computed (over the whole array, about 250
    elementwise operations) and merged with ``where``. Where a data-dependent branch is
    impossible or would force a computation (``jax.jit`` tracers, Dask, ndonnx), the
    repair is always computed and merged with ``where``: the same bits, slower.

    A library that flushes subnormal numbers to zero (XLA on CPU, for JAX) returns its
    flushed result where IEEE's is subnormal.
    """
    p = a * b
    a_hi, a_lo = _split(a)
    b_hi, b_lo = _split(b)
    e = ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo
    s = p + c
    bb = s - p
    t = (p - (s - bb)) + (c - bb)
    r = s + (t + e)
    # An exact zero takes its sign from p + c (that is s), as IEEE's fma does
    # (-0.0 * x + -0.0 is -0.0).
    if xp is None:
        xp = array_namespace(r)
    r = xp.where(r == 0, s, r)
    kind = _kind(r)
    if kind == _LAZY:
        bad = _fma_suspects(xp, a, b, r, xp.abs(p), True, True)
        cond = _jax_cond(r)
        if cond is not None:  # a JAX tracer: the repair only runs where needed
            return cond(xp.any(bad), lambda: xp.where(bad, _fma_exact(xp, a, b, c), r), lambda: r)
        return xp.where(bad, _fma_exact(xp, a, b, c), r)
    q = xp.abs(p)
    if kind == _NDARRAY:  # NumPy's reductions without the Python wrappers: small arrays
        numpy = _NUMPY_MODULE[0]
        tiny = not numpy.minimum.reduce(q, axis=None, initial=math.inf) >= _TINY_PRODUCT
        inf = not math.isfinite(numpy.add.reduce(r, axis=None))
    else:
        inf = tiny = numel(q) != 0 and not bool((xp.min(q) >= _TINY_PRODUCT) & xp.isfinite(xp.sum(r)))
    if not (tiny or inf):
        return r
    bad = _fma_suspects(xp, a, b, r, q, inf, tiny)
    if kind == _NDARRAY:
        if not _NUMPY_MODULE[0].logical_or.reduce(bad, axis=None):
            return r
    elif not bool(xp.any(bad)):
        return r
    return xp.where(bad, _fma_exact(xp, a, b, c), r)


def _fma_suspects(xp: Any, a: Any, b: Any, r: Any, q: Any, inf: bool, tiny: bool) -> Any:
    """Where :func:`_fma_float64`'s fast path may be wrong: ``r`` not finite (an infinite
    or NaN operand, or an overflow on the way; looked for where ``inf``), or a product of
    nonzero factors whose rounded magnitude ``q`` is under ``2**-968``, zero included (an
    underflow; looked for where ``tiny``)."""
    bad = ~xp.isfinite(r) if inf else None
    if not tiny:
        return bad
    if isinstance(a, (int, float)):
        if a == 0 or not math.isfinite(a):  # an exact zero product, or a non-finite r
            return ~xp.isfinite(r)
        small = (q < _TINY_PRODUCT) & (b != 0)
    else:
        small = (q < _TINY_PRODUCT) & (a != 0) & (b != 0)
    return small if bad is None else bad | small


# Kinds of array type, for fma: a NumPy array, another NumPy-backed array
# (array-api-strict; both have their floating-point errors silenced with numpy.errstate),
# another eager library (CuPy, a concrete JAX array: bool() is cheap), or lazy (a JAX
# tracer, Dask, ndonnx: no data-dependent branch). Remembered per type.
_NDARRAY, _NUMPY_BACKED, _EAGER, _LAZY = 0, 1, 2, 3
_KINDS: dict[type, int] = {}
_NUMPY_MODULE: list[Any] = []


def _kind(x: Any) -> int:
    """The kind of ``x``'s type (``_NDARRAY``, ``_NUMPY_BACKED``, ``_EAGER``, ``_LAZY``)."""
    kind = _KINDS.get(type(x))
    if kind is None:
        from ._backend import _is_lazy

        import sys

        module = getattr(type(x), "__module__", "") or ""
        numpy = sys.modules.get("numpy")
        subclass = numpy is not None and isinstance(x, numpy.ndarray)  # the fast path's scratch arrays
        if module == "numpy" or subclass or module.startswith("array_api_strict"):
            import numpy

            _NUMPY_MODULE[:] = [numpy]
            kind = _NDARRAY if module == "numpy" or subclass else _NUMPY_BACKED
        elif not _is_lazy(x):
            kind = _EAGER
        else:
            jax = sys.modules.get("jax")
            concrete = (
                jax is not None and isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer)
            )
            kind = _EAGER if concrete else _LAZY
        _KINDS[type(x)] = kind
    return kind


def _jax_cond(x: Any) -> Any:
    """``jax.lax.cond`` where ``x`` is a JAX tracer, else None."""
    import sys

    jax = sys.modules.get("jax")
    if jax is not None and isinstance(x, jax.core.Tracer):
        return jax.lax.cond
    return None


def _is_dask(x: Any) -> bool:
    return (getattr(type(x), "__module__", "") or "").startswith("dask.")


def _fma_blocks(a: Any, b: Any, c: Any) -> Any:
    """:func:`fma` of Dask arrays, one NumPy call per block (Dask's ``elemwise``: chunks
    aligned, operands broadcast): the same bits as the whole-array rule, with the eager
    route's cheap detection in each block instead of an always-computed repair in the
    graph."""
    from dask.array.core import elemwise

    return elemwise(fma, a, b, c, dtype=b.dtype)


def _binade(xp: Any, x: Any) -> tuple[Any, Any]:
    """``x == m * 2**k`` with ``1 <= |m| < 2**128`` and ``k`` a multiple of 128 (a float64
    array of integers in ``[-1152, 896]``), for finite nonzero ``x``, subnormals included;
    by comparisons and multiplications by powers of two, all exact. A zero gives
    ``m == 0``."""
    am = xp.abs(x)
    k = xp.zeros_like(am)
    for j in (512, 256, 128):
        big = am >= 2.0**j
        am = xp.where(big, am * 2.0**-j, am)
        k = xp.where(big, k + j, k)
    for j in (512, 512, 256, 128):
        small = am < 2.0 ** (128 - j)
        am = xp.where(small, am * 2.0**j, am)
        k = xp.where(small, k - j, k)
    return xp.where(x < 0, -am, am), k


def _binade_scalar(x: float) -> tuple[float, float]:
    """:func:`_binade` of a finite nonzero Python float."""
    k = 128 * ((math.frexp(x)[1] - 1) // 128)
    return math.ldexp(x, -k), float(k)


def _pow2(xp: Any, n: Any) -> Any:
    """``2.0 ** n`` exactly, for ``n`` a float64 array of multiples of 128 in ``[-896, 896]``."""
    an = xp.abs(n)
    f = xp.ones_like(an)
    for j in (512, 256, 128):
        take = an >= j
        an = xp.where(take, an - j, an)
        f = xp.where(take, f * 2.0**j, f)
    return xp.where(n < 0, 1.0 / f, f)


def _round3(xp: Any, hi: Any, lo: Any, c: Any) -> tuple[Any, Any, Any, Any]:
    r"""The float64 nearest ``hi + lo + c`` (ties to even), with ``|lo| <= ulp(hi) / 2``
    and every operation exact (no overflow, no result under ``2**-969``).

    Knuth's sums: :math:`hi + c = s + t`, :math:`t + lo = u + w`, :math:`s + u = h + l`,
    so the sum is :math:`h + l + w` with :math:`h = \mathrm{RN}(h + l)`. Where ``t != 0``,
    :math:`|s| \ge |hi|/2` (else Sterbenz makes ``hi + c`` exact), so ``|u| < 2 ulp(s)``:
    ``l`` and every midpoint next to ``h`` are multiples of ``ulp(u)`` and
    :math:`|w| \le ulp(u)/2`, so ``w`` changes the rounding only where ``h + l`` is a
    midpoint, and then it goes to the neighbour ``h + 2l`` when ``w`` has ``l``'s sign
    (``w == 0``: the tie ``h``, even). Where ``t == 0``, ``w == 0`` and ``h`` is the
    rounded sum. Returns the rounded sum and ``h, l, w``."""
    s, t = _two_sum(hi, c)
    u, w = _two_sum(t, lo)
    h, l = _two_sum(s, u)
    twice = l + l
    h2 = h + twice
    up = ((h2 - h) == twice) & xp.where(l > 0, w > 0, w < 0)
    return xp.where(up, h2, h), h, l, w


def _fma_exact(xp: Any, a: Any, b: Any, c: Any) -> Any:
    r"""IEEE 754's ``fma(a, b, c)`` on float64 (round to nearest, ties to even) for every
    element, from comparisons, ``where`` and float64 arithmetic on exact powers of two
    (about 250 elementwise operations).

    Non-finite operands and exact zero products follow IEEE's rules with plain arithmetic
    (``c`` where ``a``, ``b`` are finite and ``c`` is not). Otherwise:

    1. :func:`_binade`: ``a = m_a 2^{k_a}``, ``b = m_b 2^{k_b}``, ``c = m_c 2^{k_c}`` with
       ``1 <= |m| < 2**128``; Dekker's product :math:`m_a m_b = p_h + p_l` exactly.
    2. With :math:`K = k_a + k_b` and :math:`R = \max(K, k_c)`, both terms are scaled by
       :math:`2^{-R}`: the larger keeps its significand, the other is multiplied by
       :math:`2^{\max(\min(K, k_c) - R, -384)}`. Where that clamps, the true smaller term
       is under :math:`2^{-255}`, its stand-in under :math:`2^{-127}`, both nonzero with
       the same sign, while the larger term's exact value is a multiple of
       :math:`2^{-104}` and at least 1: both round alike.
    3. :func:`_round3` rounds the scaled sum :math:`X` to 53 bits: ``hr``.
    4. If :math:`|hr| \ge T = 2^{-1022-R}` the result is normal, ``hr * 2**R`` (which
       overflows to ``±inf`` exactly where IEEE's rounding does). Otherwise it lies on the
       subnormal grid :math:`G = 2^{-52} T` of the scaled space, and
       :math:`\mathrm{RN}_G(X) = \mathrm{RN}_{53}(\pm T + X) \mp T`, one rounding in the
       binade of ``T``, from ``h + l'`` (``l' = l``, or ``w`` where ``l == 0``: only
       there can ``w`` decide), scaled back exactly. Zeros take the sign of the exact
       result (``+0`` for an exact cancellation).
    """
    dev = device_of(b)
    zero = xp.asarray(0.0, dtype=xp.float64, device=dev)
    one = xp.asarray(1.0, dtype=xp.float64, device=dev)
    scalar_a = isinstance(a, (int, float))
    if scalar_a and (a == 0 or not math.isfinite(a)):
        return a * b + c  # an exact zero product, or IEEE's infinity or NaN
    finite_ab = xp.isfinite(b) if scalar_a else xp.isfinite(a) & xp.isfinite(b)
    finite_c = xp.isfinite(c)
    special = xp.where(finite_ab & ~finite_c, c, a * b + c)
    nonzero = (b != 0) if scalar_a else (a != 0) & (b != 0)
    general = finite_ab & finite_c & nonzero

    # 1. binades (operands outside `general` replaced by harmless values), Dekker's product
    c1 = xp.where(general, c, zero)
    mb, kb = _binade(xp, xp.where(general, b, one))
    if scalar_a:
        ma, ka = _binade_scalar(float(a))
    else:
        ma, ka = _binade(xp, xp.where(general, a, one))
    mc, kc = _binade(xp, c1)
    kc = xp.where(c1 == 0, xp.asarray(-1e4, dtype=xp.float64, device=dev), kc)  # c: never larger
    a_hi, a_lo = _split(ma)
    b_hi, b_lo = _split(mb)
    ph = ma * mb
    pl = ((a_hi * b_hi - ph) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo

    # 2. one scale for both terms, the smaller clamped to a sticky stand-in
    big_k = kb + ka
    product_larger = big_k >= kc
    top = xp.where(product_larger, big_k, kc)
    shift = xp.clip(-xp.abs(big_k - kc), -384.0, 0.0)  # 0, -128, -256 or -384
    f = xp.where(shift <= -256.0, one * 2.0**-256, one)
    f = xp.where((shift == -128.0) | (shift == -384.0), f * 2.0**-128, f)
    f_p = xp.where(product_larger, one, f)
    f_c = xp.where(product_larger, f, one)

    # 3. the scaled sum rounded to 53 bits
    hr, h, l, w = _round3(xp, ph * f_p, pl * f_p, mc * f_c)

    # 4. back to the true scale: normal (or overflowing), subnormal, or zero
    kept = xp.clip(top, -1408.0, 1792.0)  # below -1333 the result rounds to zero anyway
    first = xp.clip(kept, -896.0, 896.0)
    f1, f2 = _pow2(xp, first), _pow2(xp, kept - first)  # 2**R == f1 * f2
    normal = (hr * f1) * f2
    threshold = (2.0**-1022 / f1) / f2  # 2**(-1022 - R): 0 where that underflows (normal)
    sigma = xp.where(hr < 0, -threshold, threshold)
    z = _round3(xp, h, xp.where(l == 0, w, l), sigma)[0]
    sub = ((z - sigma) * ((f2 * 2.0**576) * f1)) * 2.0**-576  # exact where used
    signed_zero = hr * 0.0
    sub = xp.where(sub == 0, signed_zero, sub)
    out = xp.where(xp.abs(hr) >= threshold, normal, xp.where(threshold > 2.0**320, signed_zero, sub))
    out = xp.where(h == 0, zero, out)  # an exact cancellation: +0
    return xp.where(general, out, special)


_HAS_FLOAT64: dict[int, bool] = {}


def has_float64(xp: Any) -> bool:
    """True when namespace ``xp`` offers float64 (``__array_namespace_info__().dtypes()``
    lists it), remembered per namespace: the fused multiply-add asks on every call.

    JAX with ``jax_enable_x64`` off has no float64 (a float64 request is silently made
    float32); the float32 primitives then avoid float64 (:func:`_fma_float32`). The answer
    is read once: switching ``jax_enable_x64`` after the first step is not followed.
    A namespace without ``__array_namespace_info__`` is taken to have float64 when it has
    a ``float64`` attribute.
    """
    key = id(xp)
    known = _HAS_FLOAT64.get(key)
    if known is None:
        try:
            known = "float64" in xp.__array_namespace_info__().dtypes()
        except Exception:  # an older namespace: no inspection API
            known = hasattr(xp, "float64")
        _HAS_FLOAT64[key] = known
    return known


_VELTKAMP32 = 4097.0  # 2**12 + 1: splits a float32 into two halves of at most 12 bits


def _split32_scalar(a: float) -> tuple[float, float]:
    """Veltkamp's split of a Python float that holds a float32 value, evaluated in float32
    arithmetic (each operation rounded to float32 with ``struct``), so it equals what
    :func:`_split` with ``2**12 + 1`` gives on a float32 array."""
    f = _F32
    t = f.unpack(f.pack(_VELTKAMP32 * a))[0]
    hi = f.unpack(f.pack(t - f.unpack(f.pack(t - a))[0]))[0]
    return hi, a - hi


def _fma_float32(a: Any, b: Any, c: Any) -> Any:
    r"""The float32 ``a * b + c`` of :func:`fma`'s float64 route, from float32 operations only.

    The float64 route computes :math:`\mathrm{RN}_{32}(\mathrm{RN}_{64}(ab + c))` (the
    product is exact in float64, the sum rounded to float64, then to float32). Here, on a
    namespace without float64:

    1. Dekker's product (Veltkamp split with :math:`2^{12}+1`): :math:`ab = p + e` exactly;
    2. Knuth's sums: :math:`p + c = s + t`, :math:`t + e = u + w`, :math:`s + u = h + l`,
       each exact, so :math:`ab + c = h + l + w` with :math:`h = \mathrm{RN}(s + u)`;
    3. ``h`` is the correctly rounded result except where :math:`h + l` is a float32
       midpoint (``l`` half the gap to the neighbour ``h + 2l``): then the exact value lies
       beyond the midpoint by ``w``, and the float64 route moves to ``h + 2l`` only when
       ``w`` has ``l``'s sign and is over half a float64 unit of the midpoint
       (:math:`|w| > 2^{-29}|l|`); closer, float64 rounds to the midpoint itself and the
       tie goes to the even ``h``: the double rounding of the float64 route, reproduced.

    Outside the midpoint case the exact value is more than a float64 unit away from every
    midpoint (``l`` is then a multiple of ``u``'s unit away from it, ``w`` under half that
    unit), so both routes round it alike. The result is bit-identical to the float64 route
    for finite inputs with :math:`|a|, |b| \le 2^{115}` (the split's ``4097 a`` stays
    finite), :math:`|ab| + |c| < 2^{127}`, and ``a * b`` either zero or at least
    :math:`2^{-101}` in magnitude (the product's error term is then a float32, not lost to
    underflow): ``tests/test_no_float64.py`` checks it on random and edge inputs. Zeros
    take their sign as IEEE's sum does; a non-finite ``p + c`` (an infinite or NaN input)
    is returned as computed, as the float64 route gives it, except that an infinite ``c``
    with finite ``a``, ``b`` gives ``c`` even where the float32 ``a * b`` overflows (the
    float64 product does not).

    The cost: about 45 elementwise operations instead of four (fewer for a Python scalar
    ``a``, two for a power of two). Measured on JAX 0.10 (CPU, two shared cores, one
    million float32 elements): eagerly, one ``fma`` about 7x the float64 route's time and
    an Adam step about 6x; under ``jax.jit``, where XLA fuses the operations into one
    loop, 1.4 ms against 0.3 ms, with the same bits.
    """
    xp = array_namespace(b)
    scalar_a = isinstance(a, (int, float))
    if scalar_a:
        if a == 0 or abs(math.frexp(a)[0]) == 0.5:
            # A power of two (or zero): a * b is exact, e == 0, and the steps below reduce
            # to the float32 sum, which both routes round alike.
            return a * b + c
        a_hi, a_lo = _split32_scalar(float(a))
    else:
        t = _VELTKAMP32 * a
        a_hi = t - (t - a)
        a_lo = a - a_hi
    t = _VELTKAMP32 * b
    b_hi = t - (t - b)
    b_lo = b - b_hi
    p = a * b
    if scalar_a and a_lo == 0:  # a has at most 12 significant bits: the a_lo terms vanish
        e = (a_hi * b_hi - p) + a_hi * b_lo
    else:
        e = ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo
    s, t = _two_sum(p, c)
    u, w = _two_sum(t, e)
    h, l = _two_sum(s, u)
    twice = 2 * l
    h2 = h + twice
    # A midpoint: h + 2l is h's neighbour (the difference is exact). The float64 route
    # then moves off h only when w leans past half a float64 unit, |w| > 2**-29 |l|.
    w_scaled = w * 536870912.0
    beyond = xp.where(l > 0, w_scaled > l, w_scaled < l)
    out = xp.where(((h2 - h) == twice) & beyond, h2, h)
    # p == 0: the result is c + (+-0), whose zero sign s carries (-0.0 * x + -0.0 is -0.0);
    # a non-finite result: s, as IEEE arithmetic gives it from infinite or NaN inputs.
    out = xp.where(xp.isfinite(out) & (p != 0), out, s)
    # An infinite c meets a finite a * b that overflows float32 (p infinite, s perhaps
    # inf - inf): the float64 route's product is finite, its result c.
    if scalar_a and not math.isfinite(a):
        return out
    if isinstance(c, (int, float)):
        if not math.isinf(c):
            return out
        c = xp.full_like(out, c)
    finite_ab = xp.isfinite(b) if scalar_a else xp.isfinite(a) & xp.isfinite(b)
    return xp.where(xp.isinf(c) & finite_ab, c, out)


def _two_sum(x: Any, y: Any) -> tuple[Any, Any]:
    """Knuth's TwoSum: ``x + y == s + t`` exactly, ``s`` the rounded sum (any magnitudes)."""
    s = x + y
    bb = s - x
    return s, (x - (s - bb)) + (y - bb)


def fma(a: Any, b: Any, c: Any, out: Any = None) -> Any:
    """``a * b + c`` rounded once, as torch's fused CPU kernels round it; with ``out``, the
    result stored into ``out`` where it is writeable (:func:`~refoptim._backend.assign`:
    keep what is returned).

    ``b`` and ``c`` are arrays of one dtype, ``a`` an array or a Python scalar already
    rounded to that dtype. float32 is evaluated in float64 (the product is exact there)
    and rounded once; float64 uses :func:`_fma_float64`; complex dtypes are not fused
    in torch's kernels either, and are computed plainly.

    float64: IEEE 754's ``fma`` for every input (infinities, NaN, overflow, subnormals,
    signed zeros), except the fast path's documented near-tie deviation (a unit in the
    last place, rare; see :func:`_fma_float64`). float32: the float64 ``a * b + c``
    (product exact, one float64 rounding, IEEE's rules for infinities and NaN, a zero's
    sign included) rounded to float32, overflow there giving ``±inf``: the fused result
    except for the double rounding of rare near-ties.

    On float32 only ``b`` is converted explicitly: the Array API promotes ``a`` and ``c``
    (float32) to float64 where they meet the float64 ``b``, exactly, and without a
    temporary of their own. A namespace without float64 (:func:`has_float64`) gets the
    same bits from float32 operations (:func:`_fma_float32`).

    On NumPy (and array-api-strict) arrays the computation runs under
    ``numpy.errstate(all="ignore")``: infinite, NaN or overflowing operands give IEEE's
    result without a ``RuntimeWarning`` (about 1.5 µs per call; reading ``numpy.geterr()``
    to skip it inside a caller's ``errstate`` costs about as much).

    An array type may compute the same bits its own way: the fast path's scratch arrays
    (:class:`refoptim._scratch.Scratch`) do, without temporaries, through their
    ``_refoptim_fma`` method (``NotImplemented`` sends a case back here).
    """
    own = getattr(b, "_refoptim_fma", None)
    if own is not None:
        done = own(a, c, out)
        if done is not NotImplemented:
            return done
    xp = array_namespace(b)
    kind = _kind(b)
    if kind <= _NUMPY_BACKED:
        with _NUMPY_MODULE[0].errstate(all="ignore"):
            r = _fma_by_dtype(xp, a, b, c)
    elif kind == _LAZY and b.dtype == xp.float64 and _is_dask(b):
        r = _fma_blocks(a, b, c)
    else:
        r = _fma_by_dtype(xp, a, b, c)
    return r if out is None else assign(out, r)


def _fma_by_dtype(xp: Any, a: Any, b: Any, c: Any) -> Any:
    if b.dtype == xp.float32:
        if not has_float64(xp):
            return _fma_float32(a, b, c)
        return xp.astype(a * xp.astype(b, xp.float64) + c, xp.float32)
    if b.dtype == xp.float64:
        return _fma_float64(a, b, c, xp)
    return a * b + c


def add(x: Any, other: Any, alpha: float = 1) -> Any:
    """torch's out-of-place ``x.add(other, alpha=alpha)``: a new array ``x + alpha * other``."""
    xp = array_namespace(x)
    # torch multiplies a complex ``other`` by ``alpha`` even where ``alpha == 1``, as a
    # complex product, so an infinite part gives a NaN (``(1+0j) * (0+infj)`` has
    # ``0 * inf`` in its real part); for real dtypes ``1 * x`` is ``x``.
    if not isinstance(alpha, LazyFloat) and alpha == 1 and not is_complex(xp, x):
        return x + other
    return fma(_as_dtype_scalar(xp, alpha, x.dtype), other, x)


def add_(x: Any, other: Any, alpha: float = 1) -> Any:
    """torch's ``x.add_(other, alpha=alpha)`` in place: ``x <- x + alpha * other`` (fused)."""
    xp = array_namespace(x)
    if not isinstance(alpha, LazyFloat) and alpha == 1 and not is_complex(xp, x):
        x += other
        return x
    return fma(_as_dtype_scalar(xp, alpha, x.dtype), other, x, out=x)


def mul_(x: Any, value: Any) -> Any:
    """torch's ``x.mul_(value)`` in place."""
    x *= value
    return x


def lerp_(x: Any, end: Any, weight: float) -> Any:
    """torch's ``x.lerp_(end, weight)`` with a scalar weight, in place.

    torch's kernel: for ``weight < 0.5``, ``fma(weight, end - x, x)``; otherwise
    ``fma(weight - 1, end - x, end)``, so the result is exact at both ends.
    """
    xp = array_namespace(x)
    w = _as_dtype_scalar(xp, weight, x.dtype)
    diff = end - x
    if abs(w) < 0.5:
        return fma(w, diff, x, out=x)
    return fma(_as_dtype_scalar(xp, w - 1, x.dtype), diff, end, out=x)


def addcmul(x: Any, t1: Any, t2: Any, value: float = 1) -> Any:
    """torch's out-of-place ``x.addcmul(t1, t2, value=value)``: ``fma(value * t1, t2, x)``."""
    xp = array_namespace(x)
    return fma(_as_dtype_scalar(xp, value, x.dtype) * t1, t2, x)


def addcmul_(x: Any, t1: Any, t2: Any, value: float = 1) -> Any:
    """torch's ``x.addcmul_(t1, t2, value=value)`` in place: ``fma(value * t1, t2, x)``."""
    xp = array_namespace(x)
    return fma(_as_dtype_scalar(xp, value, x.dtype) * t1, t2, x, out=x)


def addcdiv_(x: Any, t1: Any, t2: Any, value: float = 1) -> Any:
    """torch's ``x.addcdiv_(t1, t2, value=value)`` in place: ``x + (value * t1) / t2``, unfused."""
    x += (value * t1) / t2
    return x


def maximum_(x: Any, other: Any) -> Any:
    """torch's ``torch.maximum(x, other, out=x)``."""
    xp = array_namespace(x)
    return assign(x, xp.maximum(x, other))


_DIVIDES: dict[tuple[type, Any], bool | None] = {}
_UNPROBED = object()


def _divides_by_scalar(xp: Any, dtype: Any) -> bool | None:
    """Whether ``x / s`` (an array by a Python scalar) is a true IEEE division in ``xp``
    for ``dtype``, found by a probe: ``k / 10`` for ``k = 1..64``, against the correctly
    rounded quotients (Python's float division, rounded to float32 with ``struct`` where
    the dtype is float32: a float64 quotient rounded to float32 is the correctly rounded
    float32 quotient). True: it is; False: the namespace computes ``x * (1 / s)`` (XLA on
    CPU, for JAX, misses several of them); None: the probe cannot run (inside
    ``jax.jit``, where arrays are traced, or on a lazy array that refuses ``bool``) or the
    dtype is not a real floating one. :func:`div` remembers the answer per array type and
    dtype."""
    try:
        ks = [float(k) for k in range(1, 65)]
        if dtype == xp.float32:
            want = [_F32.unpack(_F32.pack(k / 10.0))[0] for k in ks]
        elif dtype == xp.float64:
            want = [k / 10.0 for k in ks]
        else:
            return None
        got = xp.asarray(ks, dtype=dtype) / 10.0
        return bool(xp.all(got == xp.asarray(want, dtype=dtype)))
    except Exception:  # traced or lazy: the probe cannot say
        return None


def div(x: Any, s: Any) -> Any:
    """torch's ``x / s`` (``x.div(s)``) for an array ``x`` and a Python scalar, or an array
    ``s`` that broadcasts to ``x``'s shape (a 0-d array, a kept dimension): one IEEE
    division per element, correctly rounded, as torch's CPU kernel divides (promotion as
    the Array API promotes ``x / s``).

    XLA (JAX on CPU) compiles a division by a broadcast scalar to a multiplication by its
    reciprocal, off by a unit on about one element in seven. A probe
    (:func:`_divides_by_scalar`), run once per array type and dtype, decides the form:

    - NumPy, CuPy, array-api-strict (true division): ``x / s``, nothing more (one
      dictionary lookup more than ``x / s``);
    - eager JAX (the rewrite seen): ``x / full_like(x, s)``, a full-size divisor, which
      the rewrite does not touch;
    - traced arrays (inside ``jax.jit``, where a full-size constant is a broadcast again)
      and anything the probe cannot run on: ``x / (s - minimum(|x|, 0))``. The divisor is
      ``s`` exactly (``s - (+0)``, -0.0, infinities and NaN included) except where ``x`` is
      NaN (then the quotient is NaN either way), so a compiler that keeps NaN semantics
      cannot turn it into a broadcast: XLA then divides. Checked bit-identical to NumPy
      under ``jax.jit`` (``tests/test_jax_arith.py``).
    """
    try:
        key = (type(x), x.dtype)
        plain = _DIVIDES.get(key, _UNPROBED)
    except TypeError:  # an unhashable dtype object
        key, plain = None, _UNPROBED
    if plain is _UNPROBED:
        plain = _divides_by_scalar(array_namespace(x), x.dtype)
        if key is not None:
            _DIVIDES[key] = plain
    if plain:
        return x / s
    xp = array_namespace(x)
    if plain is False and isinstance(s, (int, float)):
        return x / xp.full_like(x, s)
    if plain is False:
        # An array, or a stand-in that becomes one where it meets an array (a LazyFloat
        # of _schedule_scalars): ``1 * s`` is s exactly.
        return x / (xp.ones_like(x) * s)
    return x / (s - xp.minimum(xp.abs(x), xp.zeros_like(x)))


def reciprocal_scale(value: float, x: Any) -> Any:
    """torch's ``value / x`` for a Python scalar and an array: ``value * (1 / x)``."""
    return value * (1 / x)


def sign(x: Any) -> Any:
    """torch's ``x.sign()`` on a real array: ``(0 < x) - (x < 0)`` in ``x``'s dtype.

    Unlike the Array API's ``sign`` (and NumPy's), torch's gives ``0`` for NaN and
    ``+0.0`` for ``-0.0``.
    """
    xp = array_namespace(x)
    one = xp.asarray(1, dtype=x.dtype, device=device_of(x))
    zero = xp.asarray(0, dtype=x.dtype, device=device_of(x))
    return xp.where(x > 0, one, zero) - xp.where(x < 0, one, zero)


def masked_fill(x: Any, mask: Any, value: float) -> Any:
    """torch's ``x.masked_fill(mask, value)`` (``x[mask] = value`` on a copy) with a Python
    scalar: ``value`` is cast to ``x``'s dtype first, as torch casts it."""
    xp = array_namespace(x)
    return xp.where(mask, xp.asarray(value, dtype=x.dtype, device=device_of(x)), x)


def clamp_(x: Any, min: float, max: float) -> Any:
    """torch's ``x.clamp_(min, max)`` with Python scalars, in place: ``min(max(x, lo), hi)``
    in ``x``'s dtype, so ``hi`` wins when ``lo > hi``, and NaN stays NaN."""
    xp = array_namespace(x)
    lo = xp.asarray(min, dtype=x.dtype, device=device_of(x))
    hi = xp.asarray(max, dtype=x.dtype, device=device_of(x))
    return assign(x, xp.minimum(xp.maximum(x, lo), hi))


def pow(base: Any, exponent: float) -> Any:
    """torch's ``base.pow(exponent)`` (``base ** exponent``) for a real floating array
    ``base`` and a Python float ``exponent``, rounded as torch's CPU kernel rounds it.

    torch special-cases some exponents: 0 (ones), 1 (a copy), 0.5 (its ``sqrt``),
    -0.5 (``1 / sqrt``), -1 (``1 / x``), 2 (``x * x``), 3 (``x * x * x``) and -2
    (``1 / (x * x)``), each rounded per operation; any other exponent is ``std::pow``
    with a double exponent, which for float32 is the double-precision power rounded once
    to float32. NumPy's float32 ``**`` differs from it by a unit on some inputs (from
    about one in a thousand to one in ten, depending on the exponent). torch's ``sqrt``
    (MKL) is not correctly rounded and ours is, so the exponent 0.5 can still differ by
    one unit.

    On a namespace without float64 (:func:`has_float64`), a float32 array with a
    non-special exponent is raised with the library's float32 ``**``: no exact float32-only
    form is built, and the result differs from the float64 route by a unit on some
    elements: on JAX 0.10 (CPU, x64 off), over a million bases in [0, 16), 0.06% of
    them for the exponents 0.75, 1.5 and 2.5, 1.8% for 0.1, 15 to 18% for 0.3, -0.3, 1/3 and
    0.999, by up to 3 units. No rule of an elementwise optimizer raises a full array to
    such a power (a 0-d base, as in Adamax and ASGD, takes C's ``pow`` in Python and is
    exact either way), so no optimizer's bits depend on it.
    """
    xp = array_namespace(base)
    base = xp.asarray(base)
    if exponent == 0:
        return xp.ones_like(base)
    if exponent == 1:
        return xp.asarray(base, copy=True)
    if exponent == 0.5:
        return xp.sqrt(base)
    if exponent == -0.5:
        return 1 / xp.sqrt(base)
    if exponent == -1:
        return 1 / base
    if exponent == 2:
        return base * base
    if exponent == 3:
        return base * base * base
    if exponent == -2:
        return 1 / (base * base)
    if len(base.shape) == 0:
        # A 0-d base (a tensor hyper-parameter: ASGD's eta, Adamax's bias correction): C's
        # ``pow`` in double precision, as torch's scalar loop calls it, rounded once to the
        # dtype. Not NumPy's ``**``, whose SIMD dispatch picks another implementation on
        # AVX-512 CPUs (SVML): one answer on every machine needs one pow.
        return xp.asarray(_c_pow(float(base), float(exponent)), dtype=base.dtype, device=device_of(base))
    if base.dtype == xp.float32:
        if not has_float64(xp):
            # No float64 (JAX with x64 off): the library's float32 ``**``, which is not the
            # double-precision power rounded once (a correctly rounded float32 pow from
            # float32 operations needs a double-float log and exp; not built). It differs
            # from the float64 route by a unit on some elements (see the docstring).
            return base ** exponent
        return xp.astype(xp.astype(base, xp.float64) ** exponent, xp.float32)
    return base ** exponent


def _c_pow(x: float, y: float) -> float:
    """C99's ``pow(x, y)`` for doubles: ``math.pow`` with its exceptions turned back into
    C's results (``inf`` for zero to a negative power, NaN for a negative base to a
    non-integer power, a signed infinity on overflow)."""
    odd = y.is_integer() and int(y) % 2 == 1
    try:
        return math.pow(x, y)
    except ValueError:
        return math.copysign(math.inf, x) if (x == 0 and odd) else (math.inf if x == 0 else math.nan)
    except OverflowError:
        return -math.inf if (x < 0 and odd) else math.inf
