"""The float64 fused multiply-add at the edges: IEEE 754's ``fma`` for every input.

``refoptim._primitives.fma`` on float64 keeps Dekker's product and Knuth's sum as its fast
path (the committed fingerprints depend on its bits) and repairs, exactly, every element
where that path is not valid: infinities and NaN, overflow of the product or of the result,
operands beyond ``2**996`` (the split overflows), products under ``2**-968`` (subnormal
operands and results, signs of zero). The reference here is exact: Python's ``Fraction``
of ``a * b + c`` rounded by ``float(Fraction)``, which is correctly rounded (ties to even)
on the whole range, subnormals included, and raises ``OverflowError`` exactly where
IEEE's rounding overflows; infinities, NaN and the signs of zeros follow IEEE's rules
separately. Where the fast path was valid the expected bits are the previous
implementation's (copied below), which differ from IEEE only in rare near-ties (one is
constructed in a test); everywhere else they are IEEE's.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings
from fractions import Fraction

import numpy as np
import pytest
from _support import to_np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refoptim import _primitives
from refoptim._primitives import _TINY_PRODUCT, fma

MAX = sys.float_info.max
TINY = 5e-324  # 2**-1074, the smallest subnormal


# --- references ---------------------------------------------------------------------------


def ieee_fma(a: float, b: float, c: float) -> float:
    """IEEE 754's ``fma(a, b, c)`` on float64 (round to nearest, ties to even)."""
    if math.isnan(a) or math.isnan(b) or math.isnan(c):
        return math.nan
    if math.isinf(a) or math.isinf(b):
        if a == 0 or b == 0:
            return math.nan  # inf * 0
        prod = math.inf if (a > 0) == (b > 0) else -math.inf
        if math.isinf(c) and (c > 0) != (prod > 0):
            return math.nan
        return prod
    if math.isinf(c):
        return c  # a * b is finite (exactly), whatever its float64 rounding does
    exact = Fraction(a) * Fraction(b) + Fraction(c)
    if exact == 0:
        if a == 0 or b == 0:  # +-0 + c with c == +-0: -0 only if both are -0
            prod_neg = (math.copysign(1.0, a) < 0) != (math.copysign(1.0, b) < 0)
            return -0.0 if prod_neg and math.copysign(1.0, c) < 0 else 0.0
        return 0.0  # an exact cancellation of nonzero terms: +0
    try:
        out = float(exact)  # int / int: correctly rounded, subnormals included
    except OverflowError:
        return math.inf if exact > 0 else -math.inf
    return math.copysign(0.0, exact > 0 or -1) if out == 0 else out  # underflow keeps the sign


def previous_fma_float64(a, b, c):
    """The float64 ``fma`` before the edge repair (NumPy), verbatim: the fast path."""
    with np.errstate(all="ignore"):
        v = 134217729.0

        def split(x):
            t = v * x
            hi = t - (t - x)
            return hi, x - hi

        p = a * b
        a_hi, a_lo = split(a)
        b_hi, b_lo = split(b)
        e = ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo
        s = p + c
        bb = s - p
        t = (p - (s - bb)) + (c - bb)
        r = s + (t + e)
        return np.where(r == 0, p + c, r)


def fast_path_valid(a, b, c, previous):
    """Where the previous algorithm was valid: finite result (so finite operands and no
    overflow on the way) and a product either exactly zero or at least ``2**-968``."""
    with np.errstate(all="ignore"):
        p = np.abs(a * b)
    return np.isfinite(previous) & ((p >= _TINY_PRODUCT) | (a == 0) | (b == 0))


def expected_fma(a, b, c):
    """The contract: the previous bits where its fast path was valid, IEEE's elsewhere."""
    a, b, c = np.broadcast_arrays(np.asarray(a, np.float64), b, c)
    previous = previous_fma_float64(a, b, c)
    exact = np.array([ieee_fma(float(x), float(y), float(z)) for x, y, z in zip(a.ravel(), b.ravel(), c.ravel())])
    exact = exact.reshape(a.shape)
    return np.where(fast_path_valid(a, b, c, previous), previous, exact), exact


def same_bits(got, want):
    """Bitwise equality, zero signs included, any NaN equal to any NaN."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    nan = np.isnan(got) & np.isnan(want)
    return (got.view(np.uint64) == want.view(np.uint64)) | nan


def assert_fma(xp, a, b, c):
    """``fma`` on namespace ``xp`` against :func:`expected_fma`, bit for bit."""
    want, _ = expected_fma(a, b, c)
    xa = a if isinstance(a, float) else xp.asarray(np.asarray(a, np.float64))
    got = to_np(fma(xa, xp.asarray(np.asarray(b, np.float64)), xp.asarray(np.asarray(c, np.float64))))
    ok = same_bits(got, want)
    if not ok.all():
        ab = np.broadcast_arrays(np.asarray(a, np.float64), b, c)
        bad = np.flatnonzero(~ok.ravel())[:5]
        rows = [
            f"fma({ab[0].ravel()[i]!r}, {ab[1].ravel()[i]!r}, {ab[2].ravel()[i]!r}) = "
            f"{got.ravel()[i]!r}, want {want.ravel()[i]!r}"
            for i in bad
        ]
        raise AssertionError(f"{int((~ok).sum())} of {ok.size} differ:\n" + "\n".join(rows))


def test_reference_rounds_like_ieee():
    """The reference itself, on values whose IEEE results are known."""
    assert ieee_fma(TINY, 0.5, 0.0) == 0.0 and ieee_fma(TINY, 1.5, 0.0) == 2 * TINY
    assert ieee_fma(TINY, 2.5, 0.0) == 2 * TINY  # tie to even on the subnormal grid
    assert math.copysign(1.0, ieee_fma(-TINY, 0.5, 0.0)) < 0  # rounds to -0
    assert ieee_fma(MAX, 1.0, MAX) == math.inf
    assert ieee_fma(2.0**1023, 2.0, -(2.0**970)) == math.inf  # 2**1024 - 2**970: the tie
    assert ieee_fma(2.0**1023, 2.0, -(2.0**970) - 2.0**918) == MAX
    assert math.isnan(ieee_fma(math.inf, 0.0, 1.0)) and ieee_fma(1e300, 1e300, -math.inf) == -math.inf
    assert math.copysign(1.0, ieee_fma(-0.0, 1.0, -0.0)) < 0
    assert math.copysign(1.0, ieee_fma(-0.0, 1.0, 0.0)) > 0
    assert math.copysign(1.0, ieee_fma(2.0, 3.0, -6.0)) > 0


# --- hand-picked edges --------------------------------------------------------------------

SPECIAL = [0.0, -0.0, math.inf, -math.inf, math.nan, 1.0, -1.5, TINY, -3 * TINY, 2.0**-1022,
           MAX, -MAX, 2.0**996, 1.5 * 2.0**1000, 2.0**-537, 0.1]

EDGES = [
    (math.inf, -0.1, 1.0),  # an infinite factor (SGD's reproducer: fma(-0.1, inf, 1))
    (1e160, 1e160, 1.0),  # Adam's reproducer: the square overflows
    (1e300, 1.9, -1e308),  # product 1.9e308 overflows, the result does not
    (1e300, 1.9, -MAX),
    (2.0**1000, 1.5, -(2.0**1000)),  # the split of 2**1000 overflows
    (1.5 * 2.0**1000, 2.0**-10, -(2.0**990)),
    (2.0**1000, 2.0**-1074, 1.0),  # a huge by a subnormal, product normal
    (3.0 * 2.0**999, 2.0**-1073 * 5, -(2.0**-74) * 3),
    (MAX, 1.0, MAX),  # overflow of the exact result
    (MAX, 2.0, -MAX),  # product 2 MAX overflows, result MAX
    (2.0**1023, 2.0, -(2.0**970)),  # the overflow tie: inf
    (2.0**1023, 2.0, -(2.0**970) - 2.0**918),  # just under: MAX
    (1e300, 1e300, -math.inf),
    (1e300, 1e300, math.inf),
    (1e-300, 1e-300, 0.0),
    (-1e-300, 1e-300, 0.0),  # a tiny negative product: -0
    (1e-300, -1e-300, -0.0),
    (-1e-200, 1e-200, 0.0),
    (1e-200, 1e-200, -0.0),
    (1e-170, 1e-170, 2.0**-1073),
    (TINY, 0.5, 0.0),  # a tie on the subnormal grid: to even (0)
    (TINY, 1.5, 0.0),
    (TINY, 2.5, -0.0),
    (-TINY, 0.5, 0.0),
    (2.0**-1022, 0.5, 2.0**-1074),
    (2.0**-1022, 1 - 2.0**-53, 0.0),  # 2**-1022 - 2**-1075: the tie rounds up to 2**-1022
    (2.0**-1022, 1 - 2.0**-52, 0.0),
    (2.0**-600, 2.0**-500 * (1 + 2.0**-52), -(2.0**-1100 + 0.0)),
    (2.0**-600 * (1 + 2.0**-52), 2.0**-500 * (1 - 2.0**-53), -(2.0**-1074) * 3),
    (1.5 * 2.0**-540, 1.25 * 2.0**-500, 2.0**-1040),
    (2.0**-1000, 2.0**-60, 1.0),  # a tiny product beside a large c: c
    (2.0**-1000, 2.0**-60, 1.0 + 2.0**-52),
    (2.0**-1000, -(2.0**-60), 1.0),  # below 1's half gap (a quarter unit): still 1
    (0.0, math.inf, 1.0),
    (-0.0, 1.0, -0.0),
    (-0.0, 1.0, 0.0),
    (0.0, -1.0, -0.0),
    (2.0, 3.0, -6.0),  # an exact cancellation: +0
    (-2.0, 3.0, 6.0),
    (1e-160, 1e-160, -1e-320),
    (1.0 + 2.0**-52, 1.0 - 2.0**-53, -1.0),
    (math.nan, 0.0, 1.0),
    (1.0, 1.0, math.nan),
    (2.0**996, 2.0**-996, -1.0),  # split limit
    (2.0**995 * 1.9999999, 1.5, -(2.0**996)),
    (MAX, -MAX, math.inf),
    (MAX, MAX, -MAX),
]


@pytest.mark.parametrize("scalar_a", [False, True])
def test_edges(xp, scalar_a):
    a, b, c = (np.array(col, np.float64) for col in zip(*EDGES))
    if not scalar_a:
        assert_fma(xp, a, b, c)
        assert_fma(xp, b, a, c)
    else:
        for x, y, z in EDGES:
            assert_fma(xp, x, np.array([y, -y, 1.0, 0.5]), np.array([z, z, z, -z]))


def test_every_combination_of_special_values(xp):
    """All 16**3 triples of zeros, infinities, NaN, subnormals, MAX, 2**996 and beyond."""
    s = np.array(SPECIAL)
    a, b, c = (x.ravel() for x in np.meshgrid(s, s, s, indexing="ij"))
    assert_fma(xp, a, b, c)


def test_broadcasting_and_zero_dimensional(xp):
    a = np.array([[1e300], [-(2.0**-1000)], [2.0]])  # (3, 1) against (4,)
    b = np.array([1.9, -1e-100, math.inf, 3.0])
    c = np.array([-1e308, 0.0, 1.0, -6.0])
    assert_fma(xp, a, b, c)
    assert_fma(xp, np.array(1e300), b, c)
    assert_fma(xp, a, b, np.array(-0.0))
    assert_fma(xp, np.zeros((0,)), np.zeros((0,)), np.zeros((0,)))
    for row in EDGES[:12]:  # all three 0-d
        assert_fma(xp, *(np.array(v) for v in row))


def test_documented_near_tie_is_kept():
    """The fast path's known deviation: ``p + c`` exactly a midpoint, Dekker's error term
    ``e = -2**-113`` too small to survive ``t + e``; IEEE rounds down, the fast path
    (and so ``fma``, for the fingerprints' sake) to the even neighbour above."""
    a, b, c = 1 + 2.0**-30, 2.0**-53 * (1 - 2.0**-30), 1 + 2.0**-52
    assert ieee_fma(a, b, c) == 1 + 2.0**-52
    got = fma(np.array([a]), np.array([b]), np.array([c]))
    assert got[0] == 1 + 2.0**-51 == previous_fma_float64(np.array([a]), np.array([b]), np.array([c]))[0]


# --- random triples -----------------------------------------------------------------------


def _finite(draw, lo=-1074, hi=1023):
    """A float of random sign, a 1-to-53-bit significand and a binary exponent in [lo, hi]."""
    bits = draw(st.integers(1, 53))
    mant = draw(st.integers(2 ** (bits - 1), 2**bits - 1))
    x = math.ldexp(mant, draw(st.integers(lo, hi)) - bits + 1)  # rounds on the subnormal grid
    return -x if draw(st.booleans()) else x


@st.composite
def triples(draw):
    kind = draw(st.sampled_from(["any", "wide", "tiny", "huge", "cancel", "overflow"]))
    if kind == "any":  # hypothesis's own floats: specials, subnormals, boundaries
        f = st.floats(width=64, allow_nan=True, allow_infinity=True, allow_subnormal=True)
        return draw(f), draw(f), draw(f)
    if kind == "wide":
        return _finite(draw), _finite(draw), _finite(draw)
    if kind == "tiny":  # products and results near and under the subnormal range
        a, b = _finite(draw, -700, -300), _finite(draw, -800, -250)
        return a, b, draw(st.sampled_from([0.0, -0.0])) if draw(st.booleans()) else _finite(draw, -1074, -900)
    if kind == "huge":
        a, b = _finite(draw, 900, 1023), _finite(draw, -1074, 120)
        return a, b, _finite(draw, -1074, 1023)
    a, b = _finite(draw, -600, 600), _finite(draw, -600, 600)
    with np.errstate(all="ignore"):
        p = float(np.float64(a) * np.float64(b))
    if kind == "overflow":  # products beyond MAX, c bringing them back
        a, b = _finite(draw, 500, 1023), _finite(draw, 500, 1023)
        sign = math.copysign(1.0, a) * math.copysign(1.0, b)
        return a, b, -sign * MAX * draw(st.sampled_from([1.0, 0.75, 0.5, 1 - 2.0**-53]))
    # cancel: c next to -a * b, so the result is the product's rounding error or close to it
    nudge = draw(st.integers(-3, 3))
    c = -p
    for _ in range(abs(nudge)):
        c = math.nextafter(c, math.copysign(math.inf, nudge))
    return a, b, c


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.lists(triples(), min_size=1, max_size=48))
def test_random_triples_numpy(rows):
    import array_api_compat.numpy as cnp

    a, b, c = (np.array(col, np.float64) for col in zip(*rows))
    assert_fma(cnp, a, b, c)


@SETTINGS
@given(st.lists(triples(), min_size=1, max_size=48), st.sampled_from([0.1, 1e300, 3 * TINY, -(2.0**997), 1.5]))
def test_random_triples_python_scalar_a(rows, a):
    import array_api_compat.numpy as cnp

    b, c = (np.array(col, np.float64) for col in list(zip(*rows))[1:])
    assert_fma(cnp, a, b, c)


@settings(max_examples=40, deadline=None)
@given(st.lists(triples(), min_size=1, max_size=48))
def test_random_triples_array_api_strict(rows):
    import array_api_strict

    a, b, c = (np.array(col, np.float64) for col in zip(*rows))
    assert_fma(array_api_strict, a, b, c)


def test_normal_range_is_bit_identical_to_the_previous_algorithm():
    """A million random finite normal-range triples, cancellations included: bit for bit the
    previous algorithm (the path the fingerprints record), with no repair taken."""
    rng = np.random.default_rng(16)
    n = 1_000_000
    a, b = (rng.standard_normal(n) * 2.0 ** rng.integers(-400, 400, n) for _ in range(2))
    c = rng.standard_normal(n) * 2.0 ** rng.integers(-800, 800, n)
    c[::3] = -(a[::3] * b[::3]) * (1 + rng.integers(-4, 5, c[::3].size) * 2.0**-52)
    c[1::7] = 0.0
    b[2::11] = 0.0
    want = previous_fma_float64(a, b, c)
    assert fast_path_valid(a, b, c, want).all()
    assert same_bits(fma(a, b, c), want).all()
    assert same_bits(fma(0.1, b, c), previous_fma_float64(0.1, b, c)).all()


def test_where_route_of_lazy_arrays(monkeypatch):
    """The route lazy arrays take (no data-dependent branch: the repair is always computed
    and merged with ``where``), exercised on NumPy: the same bits as the eager route."""
    s = np.array(SPECIAL)
    a, b, c = (x.ravel() for x in np.meshgrid(s, s, s, indexing="ij"))
    rng = np.random.default_rng(3)
    a = np.concatenate([a, rng.standard_normal(1000)])
    b = np.concatenate([b, rng.standard_normal(1000) * 1e-5])
    c = np.concatenate([c, rng.standard_normal(1000)])
    eager = fma(a, b, c)
    monkeypatch.setitem(_primitives._KINDS, np.ndarray, _primitives._LAZY)
    with np.errstate(all="ignore"):
        lazy = _primitives._fma_float64(a, b, c)
    assert same_bits(lazy, eager).all()
    assert same_bits(lazy, expected_fma(a, b, c)[0]).all()


def _near_midpoints(rng, n, sa, sb):
    """(a, b, c) with ``a * b + c`` at, or a few units of ``2**-80`` relative from, a
    midpoint between two float64s next to ``c``: ``a = 2**sa (1 + i 2**-40)``,
    ``b = 2**sb H (1 + j 2**-40)`` with ``H`` half the gap from ``c 2**-(sa + sb)`` to a
    neighbour, so the product is ``2**(sa + sb) H (1 + (i + j) 2**-40 + i j 2**-80)``.
    Large ``sa``, ``sb`` send the elements to the repair: ``|a| > 2**996`` (the split
    overflows), or a product under ``2**-968``."""
    c = rng.standard_normal(n) * 2.0 ** rng.integers(-10, 60, n)
    direction = np.where(rng.random(n) < 0.5, np.inf, -np.inf)
    half_gap = (np.nextafter(c, direction) - c) / 2
    i = rng.integers(-3, 4, n)
    j = np.where(rng.random(n) < 0.5, -i, i + rng.integers(-1, 2, n))
    a = (1 + i * 2.0**-40) * 2.0**sa
    b = half_gap * (1 + j * 2.0**-40) * 2.0**sb
    return a, b, c * 2.0 ** (sa + sb)


@pytest.mark.parametrize("sa, sb", [(0, 0), (1000, -1000), (-500, -500)])
def test_exact_repair_at_midpoints(sa, sb):
    """The repair (``_fma_exact``) is IEEE's fma on every element, exact ties and
    near-ties included; with large exponents ``fma`` sends these elements to it, with
    none ``fma`` keeps the fast path's bits (which miss some of these near-ties)."""
    import array_api_compat.numpy as cnp

    rng = np.random.default_rng(1000 + sa)
    a, b, c = _near_midpoints(rng, 3000, sa, sb)
    with np.errstate(all="ignore"):
        got = _primitives._fma_exact(cnp, a, b, c)
    want, exact = expected_fma(a, b, c)
    assert same_bits(got, exact).all()
    assert same_bits(fma(a, b, c), want).all()
    if sa:
        assert same_bits(want, exact).all()
    else:
        assert not same_bits(want, exact).all()  # the documented near-tie deviation, kept


@SETTINGS
@given(st.lists(triples(), min_size=1, max_size=48))
def test_exact_repair_everywhere(rows):
    """The repair alone, on every element (the fast path's valid ones too): IEEE's fma."""
    import array_api_compat.numpy as cnp

    a, b, c = (np.array(col, np.float64) for col in zip(*rows))
    with np.errstate(all="ignore"):
        got = _primitives._fma_exact(cnp, a, b, c)
    assert same_bits(got, expected_fma(a, b, c)[1]).all()


def test_binade_over_every_exponent():
    """``x == m * 2**k`` exactly with ``1 <= |m| < 2**128``, ``k`` a multiple of 128, for
    the first and last significand of every binade, subnormals included."""
    import array_api_compat.numpy as cnp

    e = np.arange(-1074, 1024)
    x = np.concatenate([np.ldexp(1.0, e), np.ldexp(2 - 2.0**-52, e[e < 1023]), [MAX, -TINY, -MAX]])
    x = x[np.isfinite(x) & (x != 0)]
    m, k = _primitives._binade(cnp, x)
    assert (np.abs(m) >= 1).all() and (np.abs(m) < 2.0**128).all() and (k % 128 == 0).all()
    assert all(Fraction(float(mi)) * Fraction(2) ** int(ki) == Fraction(float(xi)) for mi, ki, xi in zip(m, k, x))
    for xi, mi, ki in zip(x[::97], m[::97], k[::97]):
        assert _primitives._binade_scalar(float(xi)) == (mi, ki)


# --- warnings, float32, optimizers --------------------------------------------------------


def test_no_runtime_warning_on_numpy():
    s = np.array(SPECIAL)
    a, b, c = (x.ravel() for x in np.meshgrid(s, s, s, indexing="ij"))
    with np.errstate(all="ignore"):
        a32 = a.astype(np.float32)[:100]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fma(a, b, c)
        fma(1e300, b, c)
        fma(math.inf, b, c)
        fma(a32, np.full(100, 3e38, np.float32), np.zeros(100, np.float32))
        with np.errstate(all="raise"):  # fma's own errstate wins inside it
            fma(a, b, c)


def test_float32_route_is_the_float64_sum_rounded_to_float32():
    """float32: IEEE's float64 ``a * b + c`` (the product exact) rounded to float32, with
    infinities, NaN, signed zeros, float32 subnormals and overflow of the final cast."""
    f32 = np.finfo(np.float32)
    s = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.5, f32.smallest_subnormal, f32.tiny, f32.max,
                  -f32.max, 0.1, 3e-30, 2.0**64], np.float32)
    a, b, c = (x.ravel() for x in np.meshgrid(s, s, s, indexing="ij"))
    got = fma(a, b, c)
    assert got.dtype == np.float32
    with np.errstate(all="ignore"):
        want = np.array([ieee_fma(float(x), float(y), float(z)) for x, y, z in zip(a, b, c)]).astype(np.float32)
    assert (same_bits(got.astype(np.float64), want.astype(np.float64))).all()
    # the product beyond float32's range, the sum back inside; and the sum overflowing
    got = fma(np.float32(2.0**100), np.array([2.0**100, 2.0**100], np.float32),
              np.array([-f32.max, f32.max], np.float32))
    assert np.isinf(got[0]) and got[0] > 0 and np.isinf(got[1])
    small = fma(np.float32(2.0**-100), np.array([2.0**-49], np.float32), np.array([-0.0], np.float32))
    assert small[0] == np.float32(2.0**-149)
    neg = fma(np.float32(-(2.0**-100)), np.array([2.0**-60], np.float32), np.array([0.0], np.float32))
    assert neg[0] == 0 and np.signbit(neg[0])


def test_sgd_infinite_gradient_matches_torch():
    """torch 2.13: ``SGD(lr=0.1)``, p = [1, 2], grad = [inf, 1] gives [-inf, 1.9]."""
    import refoptim as optim

    p = optim.Parameter(np.array([1.0, 2.0]))
    opt = optim.SGD([p], lr=0.1)
    p.grad = np.array([np.inf, 1.0])
    with np.errstate(all="ignore"):
        opt.step()
    assert p.data.tolist() == [-np.inf, 1.9]


def test_adam_huge_gradient_matches_torch():
    """torch 2.13: ``Adam(lr=0.1)``, p = [1, 2], grad = [1e160, 1] gives [1, 1.9] (printed
    rounded; the second is 2 - 0.1 / (1 + 1e-8)): the square overflows and the update of
    the first element is lr * m / inf = 0. The second element is what it is without the
    huge neighbour."""
    import refoptim as optim

    def step(grad):
        p = optim.Parameter(np.array([1.0, 2.0]))
        opt = optim.Adam([p], lr=0.1)
        p.grad = np.array(grad)
        with np.errstate(all="ignore"):
            opt.step()
        return p.data.tolist()

    got = step([1e160, 1.0])
    assert got[0] == 1.0 and got[1] == step([1.0, 1.0])[1] == pytest.approx(1.9, abs=2e-9)


# --- JAX with x64, eager and under jit ----------------------------------------------------

JAX_SCRIPT = r"""
import sys
import numpy as np
import jax, jax.numpy as jnp
from refoptim._primitives import fma
sys.path.insert(0, sys.argv[1])
from test_fma_edges import EDGES, SPECIAL
s = np.array(SPECIAL)
a, b, c = (x.ravel() for x in np.meshgrid(s, s, s, indexing="ij"))
e = np.array(EDGES)
rng = np.random.default_rng(5)
r = [rng.standard_normal(500) * 2.0 ** rng.integers(-300, 300, 500) for _ in range(3)]
a, b, c = (np.concatenate([x, e[:, i], r[i]]) for i, x in enumerate((a, b, c)))
want = fma(a, b, c)
with np.errstate(all="ignore"):
    # XLA on CPU flushes subnormals: leave out subnormal operands, results and products
    # whose error term is subnormal (the fast path there is not exact under flushing)
    flushed = lambda x: (x != 0) & (np.abs(x) < 2.0**-1022)
    keep = ~(flushed(a) | flushed(b) | flushed(c) | flushed(want) | ((np.abs(a * b) < 2.0**-900) & (a * b != 0))
             | ((a * b == 0) & (a != 0) & (b != 0)))
ja, jb, jc = jnp.asarray(a), jnp.asarray(b), jnp.asarray(c)
for label, got in (("eager", fma(ja, jb, jc)), ("jit", jax.jit(fma)(ja, jb, jc)),
                   ("jit scalar a", jax.jit(lambda y, z: fma(1e300, y, z))(jb, jc))):
    ref = want if label != "jit scalar a" else fma(1e300, b, c)
    got = np.asarray(got)
    same = (got.view(np.uint64) == ref.view(np.uint64)) | (np.isnan(got) & np.isnan(ref))
    k = keep if label != "jit scalar a" else keep & ~flushed(ref)
    bad = np.flatnonzero(k & ~same)
    assert bad.size == 0, (label, [(a[i], b[i], c[i], got[i], ref[i]) for i in bad[:5]])
print("ok", int(keep.sum()), a.size)
"""


def test_jax_x64_eager_and_jit_match_numpy():
    """JAX (x64 on, in a subprocess: x64 is a process-wide switch), eagerly and under
    ``jax.jit`` (where the repair is always computed and merged with ``where``): NumPy's
    bits, except where XLA's flushing of subnormals decides."""
    pytest.importorskip("jax")
    env = dict(os.environ, JAX_ENABLE_X64="1", JAX_PLATFORMS="cpu")
    here = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.run([sys.executable, "-c", JAX_SCRIPT, here], capture_output=True, text=True, check=False,
                          timeout=300, env=env, cwd=os.path.dirname(here))
    assert proc.returncode == 0 and proc.stdout.startswith("ok"), proc.stderr[-3000:]
