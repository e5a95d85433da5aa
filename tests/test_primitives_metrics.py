"""torch's fused primitives are rounded once; the ULP metric measures what it says."""

from fractions import Fraction

import numpy as np
import pytest

from refoptim._primitives import addcdiv_, addcmul_, fma, lerp_
from refoptim.testing.metrics import relative_error, ulp_error


def _exact_fma(a, b, c, dtype):
    return np.array(
        [float(Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z))) for x, y, z in zip(a, b, c)]
    ).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fma_is_rounded_once(dtype):
    rng = np.random.default_rng(0)
    n = 3000
    a, b, c = (
        (rng.standard_normal(n) * 10.0 ** rng.uniform(-4, 4, n)).astype(dtype) for _ in range(3)
    )
    expected = _exact_fma(a, b, c, dtype)
    got = fma(a, b, c)
    assert got.dtype == dtype
    # float32 goes through float64 then rounds (double rounding possible but absent here).
    np.testing.assert_array_equal(got, expected)
    # and the unfused form does differ, so the test can tell them apart
    assert np.any(a * b + c != expected)


def test_lerp_is_exact_at_both_ends():
    x = np.array([1.0, -3.5, 2.25], dtype=np.float32)
    end = np.array([0.1, 7.0, -1.0], dtype=np.float32)
    np.testing.assert_array_equal(lerp_(x.copy(), end, 1.0), end)
    np.testing.assert_array_equal(lerp_(x.copy(), end, 0.0), x)


def test_in_place_helpers_keep_the_array():
    x = np.ones(4)
    t = np.full(4, 2.0)
    assert addcmul_(x, t, t, value=0.5) is x
    np.testing.assert_array_equal(x, np.full(4, 3.0))
    assert addcdiv_(x, t, t, value=-1.0) is x
    np.testing.assert_array_equal(x, np.full(4, 2.0))


def test_ulp_error_counts_units_of_the_scale():
    theirs = np.array([1.0, 2.0, 0.0], dtype=np.float32)
    ours = theirs.copy()
    ours[1] = np.nextafter(np.nextafter(ours[1], np.float32(3)), np.float32(3))
    assert ulp_error(ours, theirs) == 2.0
    # A tiny result judged at the scale of a large operand: 1e-8 off at scale 1 is < 1 ULP.
    small = np.array([1e-8], dtype=np.float32)
    assert ulp_error(small, np.zeros(1, dtype=np.float32), np.ones(1, dtype=np.float32)) < 1.0
    # ... but far more than one ULP of its own magnitude.
    assert ulp_error(small, np.zeros(1, dtype=np.float32)) > 1e6


def test_ulp_error_non_finite_and_complex():
    nan = np.array([np.nan, 1.0])
    assert ulp_error(nan, nan.copy()) == 0.0
    assert ulp_error(np.array([np.inf]), np.array([1.0])) == float("inf")
    z = np.array([1 + 1j], dtype=np.complex64)
    w = np.array([1 + 1j * float(np.nextafter(np.float32(1), np.float32(2)))], dtype=np.complex64)
    assert ulp_error(z, w) == 1.0


def test_relative_error():
    assert relative_error(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.0
    assert relative_error(np.array([1.0, 2.2]), np.array([1.0, 2.0])) == pytest.approx(0.1)
    assert relative_error(np.zeros(0), np.zeros(0)) == 0.0


def test_fma_float64_keeps_the_sign_of_an_exact_zero():
    a = np.array([-0.0, 0.0, 2.0, -0.0])
    b = np.array([0.01, 0.01, 3.0, -1.0])
    c = np.array([-0.0, -0.0, -6.0, 0.0])
    got = fma(a, b, c)
    np.testing.assert_array_equal(np.signbit(got), [True, False, False, False])
    np.testing.assert_array_equal(got, 0.0)
