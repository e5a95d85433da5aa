"""torch's pointwise primitives, named after the torch ops the rules call.

A rule reads like torch's single-tensor path: ``exp_avg = lerp_(exp_avg, grad, 1 - beta1)``
is torch's ``exp_avg.lerp_(grad, 1 - beta1)``. Each helper reproduces how torch's CPU kernel
rounds, decided here once for every rule:

- ``add_``/``add`` with ``alpha``, ``lerp_`` and ``addcmul_`` are a *fused* multiply-add in
  torch's vectorised CPU kernels (one rounding). On float32 we evaluate the fused form in
  float64 and round once to float32, which is the fused result except in the rare case of a
  double rounding. On float64 no wider type exists in the Array API; the fused result is
  rebuilt from error-free transformations (Dekker's product, Knuth's sum), exact but for
  rare ties.
- ``addcdiv_`` is not fused: ``x + (value * t1) / t2``, each operation rounded.
- A Python scalar meets a float32 array as a float32 value (torch casts the ``Scalar`` to the
  kernel's type; NumPy 2 does the same under NEP 50).
- ``scalar / array`` (``reciprocal_scale``) is a reciprocal then a multiply in torch.
- ``sqrt`` is correctly rounded here. torch's CPU build computes ``sqrt`` with MKL's
  vector math (0-d tensors included), which is off by one unit in the last place for
  about one element in six in float32 (one in a hundred in float64); that is a
  difference we measure and report, not one we can reproduce.
- ``pow`` with a Python exponent follows torch's special cases (see :func:`pow`).

In-place helpers (trailing underscore, like torch) update their first argument where it is
writeable and return it; on immutable arrays they return a new array. Callers always keep
what they get back.
"""

from __future__ import annotations

import math
import struct
from typing import Any

from ._backend import array_namespace, assign, device_of

__all__ = [
    "add",
    "add_",
    "addcdiv_",
    "addcmul",
    "addcmul_",
    "clamp_",
    "fma",
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
    if dtype == xp.float32:
        try:
            return _F32.unpack(_F32.pack(value))[0]
        except (OverflowError, TypeError, struct.error):
            return float(xp.asarray(value, dtype=xp.float32))
    return value


_F32 = struct.Struct("f")


_VELTKAMP = 134217729.0  # 2**27 + 1: splits a float64 into two 26-bit halves


def _split(x: Any) -> tuple[Any, Any]:
    """Veltkamp's split: ``x == hi + lo`` exactly, each half with at most 26 bits."""
    t = _VELTKAMP * x
    hi = t - (t - x)
    return hi, x - hi


def _fma_float64(a: Any, b: Any, c: Any) -> Any:
    """``a * b + c`` with one rounding, from float64 operations only.

    Dekker's product gives ``a * b == p + e`` exactly, Knuth's sum ``p + c == s + t``
    exactly; ``s + (t + e)`` is then the correctly rounded result except when ``t + e``
    itself rounds across a tie, which is rare. Valid while ``|a|``, ``|b|`` stay below
    about 1e300 (the split overflows beyond).
    """
    p = a * b
    a_hi, a_lo = _split(a)
    b_hi, b_lo = _split(b)
    e = ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo
    s = p + c
    bb = s - p
    t = (p - (s - bb)) + (c - bb)
    r = s + (t + e)
    # An exact zero takes its sign from p + c, as IEEE's fma does (-0.0 * x + -0.0 is -0.0).
    return array_namespace(r).where(r == 0, p + c, r)


def fma(a: Any, b: Any, c: Any) -> Any:
    """``a * b + c`` rounded once, as torch's fused CPU kernels round it.

    ``b`` and ``c`` are arrays of one dtype, ``a`` an array or a Python scalar already
    rounded to that dtype. float32 is evaluated in float64 (the product is exact there)
    and rounded once; float64 uses :func:`_fma_float64`; complex dtypes are not fused
    in torch's kernels either, and are computed plainly.

    On float32 only ``b`` is converted explicitly: the Array API promotes ``a`` and ``c``
    (float32) to float64 where they meet the float64 ``b``, exactly, and without a
    temporary of their own.
    """
    xp = array_namespace(b)
    if b.dtype == xp.float32:
        return xp.astype(a * xp.astype(b, xp.float64) + c, xp.float32)
    if b.dtype == xp.float64:
        return _fma_float64(a, b, c)
    return a * b + c


def add(x: Any, other: Any, alpha: float = 1) -> Any:
    """torch's out-of-place ``x.add(other, alpha=alpha)``: a new array ``x + alpha * other``."""
    xp = array_namespace(x)
    if alpha == 1:
        return x + other
    return fma(_as_dtype_scalar(xp, alpha, x.dtype), other, x)


def add_(x: Any, other: Any, alpha: float = 1) -> Any:
    """torch's ``x.add_(other, alpha=alpha)`` in place: ``x <- x + alpha * other`` (fused)."""
    if alpha == 1:
        x += other
        return x
    return assign(x, add(x, other, alpha))


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
        out = fma(w, diff, x)
    else:
        out = fma(_as_dtype_scalar(xp, w - 1, x.dtype), diff, end)
    return assign(x, out)


def addcmul(x: Any, t1: Any, t2: Any, value: float = 1) -> Any:
    """torch's out-of-place ``x.addcmul(t1, t2, value=value)``: ``fma(value * t1, t2, x)``."""
    xp = array_namespace(x)
    return fma(_as_dtype_scalar(xp, value, x.dtype) * t1, t2, x)


def addcmul_(x: Any, t1: Any, t2: Any, value: float = 1) -> Any:
    """torch's ``x.addcmul_(t1, t2, value=value)`` in place: ``fma(value * t1, t2, x)``."""
    return assign(x, addcmul(x, t1, t2, value))


def addcdiv_(x: Any, t1: Any, t2: Any, value: float = 1) -> Any:
    """torch's ``x.addcdiv_(t1, t2, value=value)`` in place: ``x + (value * t1) / t2``, unfused."""
    x += (value * t1) / t2
    return x


def maximum_(x: Any, other: Any) -> Any:
    """torch's ``torch.maximum(x, other, out=x)``."""
    xp = array_namespace(x)
    return assign(x, xp.maximum(x, other))


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
