"""The backend seam: complex arrays as real pairs and back, on every kind of namespace."""

import itertools

import array_api_strict
import numpy as np
import pytest

from refoptim._backend import back_to_complex, real_views, view_as_complex, view_as_real
from _immutable import wrap

VALUES = [0.0, -0.0, 1.5, -2.0, np.inf]


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_numpy_pairs_are_true_views(dtype):
    import array_api_compat.numpy as xp

    z = np.array([1 + 2j, -0.0 - 0.0j, 3 - 1j], dtype=dtype)
    r = view_as_real(xp, z)
    assert r.shape == (3, 2) and np.shares_memory(r, z)
    r[0, 1] = 7.0
    assert z[0] == 1 + 7j
    assert view_as_complex(xp, r) is not None and np.shares_memory(view_as_complex(xp, r), z)


def test_pairs_of_a_non_contiguous_view_and_a_0d_array():
    import array_api_compat.numpy as xp

    base = np.zeros((6, 9), dtype=np.complex64)
    v = base[::2, 1:5]
    (r,) = real_views(xp, v)
    r[...] = 1.0
    assert np.all(v == 1 + 1j) and np.all(base[1::2] == 0)
    z0 = np.asarray(2 - 3j, dtype=np.complex64)
    assert view_as_real(xp, z0).shape == (2,)


@pytest.mark.parametrize("make", ["strict", "immutable"])
def test_copy_fallback_keeps_every_finite_part_exactly(make):
    finite = [v for v in VALUES if np.isfinite(v)]
    pairs = np.array(list(itertools.product(finite, finite)), dtype=np.float32)
    if make == "strict":
        xp, r = array_api_strict, array_api_strict.asarray(pairs)
    else:
        r = wrap(pairs)
        xp = r.__array_namespace__()
    z = view_as_complex(xp, r)
    z = z.unwrap() if make == "immutable" else np.asarray(z)
    np.testing.assert_array_equal(z.real, pairs[:, 0])
    np.testing.assert_array_equal(z.imag, pairs[:, 1])
    np.testing.assert_array_equal(np.signbit(z.real), np.signbit(pairs[:, 0]))
    np.testing.assert_array_equal(np.signbit(z.imag), np.signbit(pairs[:, 1]))


def test_back_to_complex_writes_into_writeable_originals():
    xp = array_api_strict
    z = xp.asarray(np.array([1 + 1j, 2 - 2j], dtype=np.complex64))
    (r,) = real_views(xp, z)
    r = r * 2
    (out,) = back_to_complex(xp, (z,), (r,))
    assert out is z  # written in place
    np.testing.assert_array_equal(np.asarray(z), np.array([2 + 2j, 4 - 4j], dtype=np.complex64))
