"""refoptim._reduce: reductions in one fixed order, the same bits on every backend.

The expected values are computed independently: a pure-Python fold (Python floats are
IEEE doubles, so each addition rounds as the documented order says), exact rational
arithmetic for the correctly rounded claims, and a plain loop for the running sums.
"""

from __future__ import annotations

import math
import struct
from fractions import Fraction

import array_api_strict as xs
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refoptim import _reduce
from refoptim._backend import array_namespace


def _py_fold(values: list[float]) -> float:
    """The documented order, in Python floats: halves added, an odd last element carried."""
    x = list(values)
    if not x:
        return 0.0
    while len(x) > 1:
        n, h = len(x), len(x) // 2
        y = [x[i] + x[i + h] for i in range(h)]
        if n % 2:
            y.append(x[-1])
        x = y
    return x[0]


def _bits(x: float) -> bytes:
    return struct.pack("<d", float(x))


finite64 = st.floats(-1e6, 1e6, allow_nan=False, width=64)
finite32 = st.floats(-1e6, 1e6, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(st.lists(finite64, max_size=70))
def test_pairwise_sum_float64_is_the_documented_fold(values: list[float]) -> None:
    a = np.asarray(values, dtype=np.float64)
    got = _reduce.pairwise_sum(array_namespace(a), a)
    assert got.dtype == np.float64 and got.shape == ()
    assert _bits(got) == _bits(_py_fold(values))


@settings(max_examples=60, deadline=None)
@given(st.lists(finite32, max_size=70))
def test_pairwise_sum_float32_accumulates_in_float64_and_rounds_once(values: list[float]) -> None:
    a = np.asarray(values, dtype=np.float32)
    got = _reduce.pairwise_sum(array_namespace(a), a)
    assert got.dtype == np.float32
    assert float(got) == float(np.float32(_py_fold([float(v) for v in a])))


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.float32, st.integers(0, 60), elements=st.floats(-100, 100, width=32)),
       st.randoms(use_true_random=False))
def test_float32_dot_is_correctly_rounded_without_extreme_cancellation(a: np.ndarray, rnd) -> None:
    b = np.asarray([rnd.uniform(-100, 100) for _ in range(a.shape[0])], dtype=np.float32)
    exact = sum((Fraction(float(x)) * Fraction(float(y)) for x, y in zip(a, b)), Fraction(0))
    scale = sum((abs(Fraction(float(x)) * Fraction(float(y))) for x, y in zip(a, b)), Fraction(0))
    got = _reduce.dot(array_namespace(a), a, b)
    assert got.dtype == np.float32
    if scale == 0 or abs(exact) > scale * Fraction(1, 2**20):  # cancellation far from extreme
        # the correctly rounded float32 of the exact value (float() of a Fraction rounds
        # correctly to float64; float32 rounding of that is exact here except at ties,
        # which a margin this wide excludes)
        assert float(got) == float(np.float32(float(exact)))


def test_dot_float64_products_rounded_then_folded() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal(1001), rng.standard_normal(1001)
    got = _reduce.dot(array_namespace(a), a, b)
    assert _bits(got) == _bits(_py_fold([float(x) * float(y) for x, y in zip(a, b)]))


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 64, 1000, 4097])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numpy_and_array_api_strict_give_the_same_bits(n: int, dtype: str) -> None:
    rng = np.random.default_rng(n)
    a = rng.standard_normal(n).astype(dtype) * 10.0 ** rng.uniform(-15, 15, n).astype(dtype)
    b = rng.standard_normal(n).astype(dtype)
    for f in (_reduce.pairwise_sum, _reduce.sum_abs, _reduce.sum_squares):
        ours = f(array_namespace(a), a)
        strict = f(xs, xs.asarray(a))
        assert np.asarray(ours).tobytes() == np.asarray(strict).tobytes(), f.__name__
    d1 = _reduce.dot(array_namespace(a), a, b)
    d2 = _reduce.dot(xs, xs.asarray(a), xs.asarray(b))
    assert np.asarray(d1).tobytes() == np.asarray(d2).tobytes()


def test_dot_does_not_depend_on_the_layout_of_its_operands() -> None:
    rng = np.random.default_rng(0)
    m = rng.standard_normal((40, 30)).astype(np.float32)
    flat = np.ascontiguousarray(m.T).reshape(-1)
    xp = array_namespace(m)
    assert _reduce.dot(xp, m.T, m.T).tobytes() == _reduce.dot(xp, flat, flat).tobytes()


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_special_values() -> None:
    # (NumPy warns about the inf - inf and the overflowing cast these inputs ask for; the
    # warnings themselves are issue 16's subject)
    xp = array_namespace(np.zeros(1))
    assert math.copysign(1.0, float(_reduce.pairwise_sum(xp, np.asarray([-0.0, -0.0])))) == -1.0
    assert float(_reduce.pairwise_sum(xp, np.zeros(0, dtype=np.float32))) == 0.0
    assert float(_reduce.pairwise_sum(xp, np.asarray([1.0, np.inf, 2.0]))) == np.inf
    assert math.isnan(float(_reduce.pairwise_sum(xp, np.asarray([np.inf, -np.inf, 1.0]))))
    # float32 overflow of the sum is decided once, at the final rounding
    big = np.full(4, 2.0e38, dtype=np.float32)
    assert float(_reduce.pairwise_sum(xp, big - big + big / 4)) == float(np.float32(2.0e38))
    assert float(_reduce.pairwise_sum(xp, big)) == np.inf


@pytest.mark.parametrize("shape,axis", [((5,), 0), ((4, 7), -1), ((4, 7), -2), ((3, 1, 6), 1), ((2, 0), -1), ((0, 3), 0)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_running_sum_fast_path_equals_the_loop(shape: tuple[int, ...], axis: int, dtype: str) -> None:
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(shape) * 10.0 ** rng.uniform(-8, 8, shape)).astype(dtype)
    xp = array_namespace(x)
    fast = _reduce.running_sum(xp, x, axis)
    strict = _reduce.running_sum(xs, xs.asarray(x), axis)
    expected_shape = tuple(1 if i == axis % len(shape) else d for i, d in enumerate(shape))
    assert fast.shape == expected_shape
    assert np.asarray(strict).tobytes() == fast.tobytes()
    if x.shape[axis]:
        loop = _reduce._running_sum_loop(xp, x, axis % len(shape))
        assert loop.tobytes() == fast.tobytes()
        # and the loop is the sequential sum in the input dtype
        moved = np.moveaxis(x, axis, 0)
        seq = moved[0].copy()
        for row in moved[1:]:
            seq = seq + row
        assert np.expand_dims(seq, axis).tobytes() == fast.tobytes()
