"""refoptim/_matmul.py: matrix products whose bits do not depend on the BLAS, its threads,
its kernel or the array library.

No torch here. The exact path is checked against the exact product computed with
:class:`fractions.Fraction` and correctly rounded to float32 (an independent rounding,
below); the fold against :func:`refoptim._reduce.dot`, row by column.
"""

import math
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from _support import NAMESPACES, as_xp, cnp, to_np

import refoptim._matmul as M
from refoptim._matmul import band_width, matmul, matmul_exact, round_sum_to_float32
from refoptim._reduce import dot
from refoptim.muon import round_to_bfloat16, zeropower_via_newtonschulz

STRICT = NAMESPACES["array_api_strict"]
COEFFS = (3.4445, -4.775, 2.0315)


# ============================================================================ references
def f32_nearest(value: Fraction) -> np.float32:
    """``value`` correctly rounded to float32, by search among float32 neighbours (an
    independent check of the module's own rounding): the nearest, ties to the even
    significand."""
    with np.errstate(over="ignore"):
        c = np.float32(float(value))  # within one float32 step of the answer
    candidates = [c, np.nextafter(c, np.float32(np.inf)), np.nextafter(c, np.float32(-np.inf))]
    finite = [x for x in candidates if np.isfinite(x)]
    best = min(finite, key=lambda x: (abs(Fraction(float(x)) - value), int(np.asarray(x).view(np.uint32)) & 1))
    limit = Fraction(2) ** 128 * (1 - Fraction(1, 2**25))  # float32's overflow threshold
    if abs(value) >= limit:
        return np.float32(math.copysign(math.inf, value))
    return np.float32(best) + np.float32(0.0)


def exact_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` summed exactly with Fractions, correctly rounded to float32."""
    A = [[Fraction(float(v)) for v in row] for row in a]
    B = [[Fraction(float(v)) for v in row] for row in b]
    m, k, n = a.shape[0], a.shape[1], b.shape[1]
    out = np.zeros((m, n), np.float32)
    for i in range(m):
        for j in range(n):
            out[i, j] = f32_nearest(sum((A[i][p] * B[p][j] for p in range(k)), Fraction(0)))
    return out


def bf16(x: np.ndarray) -> np.ndarray:
    """float32 values rounded to bfloat16 (8 significant bits), as a float32 array."""
    with np.errstate(all="ignore"):
        return np.asarray(round_to_bfloat16(cnp.asarray(np.asarray(x, dtype=np.float32))))


def wide(rng: np.random.Generator, shape: tuple, low: int = -130, high: int = 10) -> np.ndarray:
    """bfloat16 values from about 2**low to 2**high (both signs, a few zeros)."""
    values = rng.standard_normal(shape) * 2.0 ** rng.integers(low, high, shape)
    values[rng.random(shape) < 0.05] = 0.0
    return bf16(values)


def same(a, b) -> bool:
    a, b = to_np(a), to_np(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# ============================================================================ exact path
SHAPES = [(1, 1, 1), (3, 1, 4), (1, 7, 1), (5, 3, 2), (4, 9, 5), (7, 13, 3), (2, 33, 6), (6, 6, 6)]


@pytest.mark.parametrize("m,k,n", SHAPES)
@pytest.mark.parametrize("name", list(NAMESPACES))
def test_exact_path_is_the_exact_product_rounded_once(name, m, k, n):
    """Values from 2**-130 (bfloat16 subnormals) to 2**10: every band, none left out."""
    xp = NAMESPACES[name]
    rng = np.random.default_rng(m * 100 + k * 10 + n)
    for trial in range(4):
        a, b = wide(rng, (m, k)), wide(rng, (k, n))
        if trial == 1:  # a narrow range: one band each
            a, b = bf16(rng.standard_normal((m, k))), bf16(rng.standard_normal((k, n)))
        got = to_np(matmul_exact(xp, as_xp(xp, a), as_xp(xp, b)))
        assert same(got, exact_product(a, b)), (trial, a, b)


def test_exact_path_on_gram_products():
    """``x @ x.T`` and ``g @ g`` (symmetric ``g``) take the half-work path: same values."""
    rng = np.random.default_rng(1)
    for shape in [(3, 5), (6, 2), (5, 5)]:
        x = wide(rng, shape, -60, 4)
        gram = to_np(matmul_exact(cnp, x, x.T))
        assert same(gram, exact_product(x, x.T))
        assert np.array_equal(gram, gram.T)  # the exact product, rounded once: symmetric
        g = bf16(gram)
        assert same(matmul_exact(cnp, g, g), exact_product(g, g))
        assert same(matmul_exact(STRICT, STRICT.asarray(g), STRICT.asarray(g)), exact_product(g, g))


def test_exact_path_on_ties_and_cancellation():
    """Cases where adding the band products in float64 would round wrongly: the exact
    sum is just above a float32 tie, just below one, or cancels to a tiny value."""
    b = np.ones((3, 1), np.float32)
    cases = [
        ([[1.0, 2.0**-24, 2.0**-80]], b),  # 1 + 2**-24 + 2**-80: above the tie, rounds up
        ([[1.0, 2.0**-24, -(2.0**-80)]], b),  # below the tie, rounds down
        ([[1.0, -(2.0**-24), 2.0**-80]], b),
        ([[1.0, 2.0**-24, 0.0]], b),  # an exact tie: to even
        ([[1.0, 2.0**-40, 2.0**-50]], [[-(2.0**-40)], [1.0], [2.0**-50]]),  # cancels to 2**-100
        ([[2.0**-126, 2.0**-133, -(2.0**-126)]], b),  # subnormal result
    ]
    for a, bb in cases:
        a, bb = np.asarray(a, np.float32), np.asarray(bb, np.float32)
        want = exact_product(a, bb)
        for xp in NAMESPACES.values():
            got = to_np(matmul_exact(xp, as_xp(xp, a), as_xp(xp, bb)))
            assert same(got, want), (a, bb, got, want)
    assert to_np(matmul_exact(cnp, np.asarray(cases[0][0], np.float32), b))[0, 0] == np.float32(1 + 2.0**-23)


def test_exact_path_on_small_integers_at_distant_scales():
    """Small integers times powers of two far apart: exact float32 ties, sums that cancel
    across bands, and symmetric products (``x @ x.T`` and ``g @ g``) at random."""
    rng = np.random.default_rng(12)
    for trial in range(80):
        m, k = (int(v) for v in rng.integers(1, 7, 2))
        a = bf16(rng.integers(-255, 256, (m, k)) * 2.0 ** rng.choice([-70, -40, -20, -8, 0, 5], size=(m, k)))
        if trial % 2:
            b = a.T.copy()
        else:
            b = bf16(rng.integers(-255, 256, (k, m)) * 2.0 ** rng.choice([-60, -30, -8, 0], size=(k, m)))
        got = to_np(matmul_exact(cnp, a, b))
        assert same(got, exact_product(a, b)), (a, b)
        if trial % 2:
            g = bf16(got)
            assert same(matmul_exact(STRICT, STRICT.asarray(g), STRICT.asarray(g)), exact_product(g, g))


@pytest.mark.parametrize("m,k,n", [(0, 3, 2), (2, 0, 3), (3, 2, 0), (0, 0, 0)])
def test_exact_path_empty(m, k, n):
    for xp in NAMESPACES.values():
        out = to_np(matmul_exact(xp, as_xp(xp, np.ones((m, k), np.float32)), as_xp(xp, np.ones((k, n), np.float32))))
        assert out.shape == (m, n) and out.dtype == np.float32
        assert not np.any(out) and not np.any(np.signbit(out))  # k = 0: +0.0


def test_exact_path_zeros_are_positive():
    a = np.asarray([[-0.0, 1.0], [0.0, -0.0]], np.float32)
    b = np.asarray([[1.0, -1.0], [-0.0, 0.0]], np.float32)
    out = to_np(matmul_exact(cnp, a, b))
    assert np.array_equal(out, np.zeros((2, 2), np.float32)) and not np.any(np.signbit(out))
    out = to_np(matmul(cnp, a, b))
    assert np.array_equal(out, np.zeros((2, 2), np.float32)) and not np.any(np.signbit(out))


def test_exact_path_non_contiguous_operands():
    rng = np.random.default_rng(2)
    big = wide(rng, (9, 14), -40, 5)
    a = big[1::2, 2:11]  # (4, 9), strided
    b = wide(rng, (5, 9), -40, 5).T  # (9, 5), transposed
    want = exact_product(a, b)
    assert same(matmul_exact(cnp, a, b), want)
    assert same(matmul_exact(STRICT, STRICT.asarray(big)[1::2, 2:11], STRICT.asarray(b.T).T), want)


def test_exact_path_other_significand_widths():
    """``bits=24``: whole float32 values, exact while ``2 * 24 + ceil(log2 k) <= 53``."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((4, 8)).astype(np.float32) * np.float32(3.0)
    b = rng.standard_normal((8, 3)).astype(np.float32)
    assert same(matmul_exact(cnp, a, b, bits=24), exact_product(a, b))
    with pytest.raises(ValueError, match="too large"):
        matmul_exact(cnp, np.ones((2, 64), np.float32), np.ones((64, 2), np.float32), bits=24)


def test_band_width():
    assert band_width(1, 8) == 19  # 2 * (19 + 7) <= 53
    assert band_width(48, 8) == 16
    assert band_width(1024, 8) == 14  # 2 * 21 + 10 = 52
    assert band_width(4096, 8) == 13
    assert band_width(2**37, 8) == 1 and band_width(2**38, 8) == 0
    for k in (1, 2, 3, 1000, 1024, 1025, 10**6):
        w = band_width(k, 8)
        assert 2 * (w + 7) + math.ceil(math.log2(k)) <= 53 < 2 * (w + 8) + math.ceil(math.log2(k))


def test_exact_path_rejects_bad_operands():
    with pytest.raises(ValueError, match="float32"):
        matmul_exact(cnp, np.ones((2, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="align"):
        matmul_exact(cnp, np.ones((2, 3), np.float32), np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="2-D"):
        matmul(cnp, np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="dtypes"):
        matmul(cnp, np.ones((2, 2)), np.ones((2, 2), np.float32))


def test_non_finite_values_follow_ieee():
    """NaN where a product is NaN (NaN, inf * 0) or infinities of both signs meet; +-inf
    where one sign does; finite elsewhere: as the elementwise float64 sum says."""
    inf, nan = np.inf, np.nan
    a = np.asarray([[1.0, 2.0, 0.0], [inf, 1.0, 1.0], [1.0, -inf, 0.5], [nan, 1.0, 1.0], [2.0, 1.0, 1.0]], np.float32)
    b = np.asarray([[1.0, 0.0, 2.0, 1.0], [1.0, 1.0, -1.0, 0.5], [inf, -2.0, 1.0, -inf]], np.float32)
    with np.errstate(invalid="ignore"):
        want = (a.astype(np.float64)[:, :, None] * b.astype(np.float64)[None, :, :]).sum(axis=1)
    for xp in NAMESPACES.values():
        got = to_np(matmul_exact(xp, as_xp(xp, a), as_xp(xp, b)))
        assert np.array_equal(np.isnan(got), np.isnan(want))
        assert np.array_equal(got[~np.isnan(got)], want[~np.isnan(want)].astype(np.float32))
        with np.errstate(invalid="ignore"):
            fold = to_np(matmul(xp, as_xp(xp, a), as_xp(xp, b)))
        assert np.array_equal(np.isnan(fold), np.isnan(want))


def test_round_sum_to_float32():
    """The correctly rounded sum of exact float64 terms, cancellation and ties included."""
    rng = np.random.default_rng(4)
    for _ in range(30):
        t = rng.integers(2, 6)
        terms = [rng.standard_normal(50) * 2.0 ** rng.integers(-80, 40) for _ in range(t)]
        terms.append(-terms[0] + rng.standard_normal(50) * 2.0**-60)  # cancellation
        got = to_np(round_sum_to_float32(cnp, [cnp.asarray(x) for x in terms]))
        want = [f32_nearest(sum((Fraction(float(x[i])) for x in terms), Fraction(0))) for i in range(50)]
        assert np.array_equal(got, np.asarray(want, np.float32))
    # ties: 1 + 2**-24 exactly (to even), and pushed off it by 2**-100 either way
    terms = [np.asarray([1.0, 1.0, 1.0]), np.asarray([2.0**-24] * 3), np.asarray([0.0, 2.0**-100, -(2.0**-100)])]
    got = to_np(round_sum_to_float32(STRICT, [STRICT.asarray(x) for x in terms]))
    assert list(got) == [1.0, np.float32(1 + 2.0**-23), 1.0]


def test_fraction_to_float32_matches_the_float64_cast():
    """float64 to float32 is a correctly rounded cast: the host rounding must agree."""
    rng = np.random.default_rng(5)
    values = rng.standard_normal(3000) * 2.0 ** rng.integers(-160, 130, 3000)
    edges = [2.0**-149, 2.0**-150, 3 * 2.0**-150, 2.0**-126, 1 + 2.0**-24, 1 + 3 * 2.0**-24,
             float(np.finfo(np.float32).max), 2.0**128 * (1 - 2.0**-25), 2.0**128 * (1 - 2.0**-24)]
    with np.errstate(over="ignore"):
        for v in [*values, *edges, *(-e for e in edges)]:
            assert M._fraction_to_float32(Fraction(v)) == float(np.float32(v)), v


# ============================================================================ fold path
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (4, 7, 3), (3, 16, 5), (5, 1, 2), (2, 33, 3)])
def test_fold_is_dot_of_row_and_column(dtype, m, k, n):
    rng = np.random.default_rng(k)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    got = to_np(matmul(cnp, a, b))
    want = np.asarray(
        [[to_np(dot(cnp, cnp.asarray(a[i]), cnp.asarray(b[:, j]))) for j in range(n)] for i in range(m)], dtype
    ).reshape(m, n)
    assert same(got, want)
    assert same(matmul(STRICT, STRICT.asarray(a), STRICT.asarray(b)), got)
    assert same(matmul(cnp, np.asfortranarray(a), b[:, ::-1][:, ::-1]), got)  # layout does not matter


def test_fold_blocks_do_not_change_bits(monkeypatch):
    rng = np.random.default_rng(6)
    a = rng.standard_normal((13, 11)).astype(np.float32)
    b = rng.standard_normal((11, 7)).astype(np.float32)
    one_block = to_np(matmul(cnp, a, b))
    monkeypatch.setattr(M, "FOLD_BLOCK_BYTES", 8 * 11 * 7 * 3)  # three rows at a time
    assert same(matmul(cnp, a, b), one_block)
    assert same(matmul(STRICT, STRICT.asarray(a), STRICT.asarray(b)), one_block)
    monkeypatch.setattr(M, "FOLD_BLOCK_BYTES", 1)  # one row at a time
    assert same(matmul(cnp, a, b), one_block)


@pytest.mark.parametrize("m,k,n", [(0, 3, 2), (2, 0, 3), (3, 2, 0)])
def test_fold_empty(m, k, n):
    out = to_np(matmul(STRICT, STRICT.ones((m, k)), STRICT.ones((k, n))))
    assert out.shape == (m, n) and out.dtype == np.float64 and not np.any(out) and not np.any(np.signbit(out))


def test_fold_is_accurate():
    """float32 accumulated in float64: the correctly rounded product, but for extreme
    cancellation."""
    rng = np.random.default_rng(7)
    a = rng.standard_normal((6, 20)).astype(np.float32)
    b = rng.standard_normal((20, 4)).astype(np.float32)
    assert same(matmul(cnp, a, b), exact_product(a, b))


# ============================================================================ one answer
def test_numpy_and_array_api_strict_agree_on_larger_products():
    rng = np.random.default_rng(8)
    x = bf16(rng.standard_normal((40, 24)) * 2.0 ** rng.integers(-30, 3, (40, 24)))
    g = bf16(to_np(matmul_exact(cnp, x, x.T)))
    for a, b in [(x, x.T), (g, g), (g, x), (x.T, g)]:
        assert same(matmul_exact(cnp, a, b), matmul_exact(STRICT, STRICT.asarray(a), STRICT.asarray(b)))
    y = rng.standard_normal((20, 30))
    assert same(matmul(cnp, y, y.T), matmul(STRICT, STRICT.asarray(y), STRICT.asarray(y).T))


def test_threadpool_sizes_give_the_same_bits():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    rng = np.random.default_rng(9)
    a = bf16(rng.standard_normal((300, 500)))
    b = bf16(rng.standard_normal((500, 200)))
    results = []
    for threads in (1, 2, 4):
        with threadpoolctl.threadpool_limits(limits=threads, user_api="blas"):
            results.append(to_np(matmul_exact(cnp, a, b)))
    assert all(same(r, results[0]) for r in results)


_DIGEST_SCRIPT = r"""
import hashlib, numpy as np
import array_api_compat.numpy as cnp
from refoptim._matmul import matmul, matmul_exact
from refoptim.muon import round_to_bfloat16, zeropower_via_newtonschulz
rng = np.random.default_rng(10)
a = np.asarray(round_to_bfloat16(cnp.asarray((rng.standard_normal((150, 400)) * 2.0 ** rng.integers(-20, 2, (150, 400))).astype(np.float32))))
b = np.asarray(round_to_bfloat16(cnp.asarray(rng.standard_normal((400, 120)).astype(np.float32))))
c = rng.standard_normal((60, 90)).astype(np.float32)
g = rng.standard_normal((96, 64))
h = hashlib.sha256()
for out in (matmul_exact(cnp, a, b), matmul_exact(cnp, a, a.T), matmul(cnp, c, c.T),
            zeropower_via_newtonschulz(g, (3.4445, -4.775, 2.0315), 5, 1e-7),
            zeropower_via_newtonschulz(g.astype(np.float32), (3.4445, -4.775, 2.0315), 2, 1e-7, ns_dtype="float32")):
    h.update(np.ascontiguousarray(np.asarray(out)).tobytes())
print(h.hexdigest())
"""


def test_blas_threads_and_kernels_give_the_same_bits():
    """In fresh processes with OpenBLAS on 1 and 2 threads and under other CPU kernels
    (``OPENBLAS_CORETYPE``, honoured by NumPy's dynamic-arch OpenBLAS; a BLAS that ignores
    it just runs its own): the products and Newton–Schulz give the same bits. (NumPy's
    float32 ``@`` gives different bits under those kernels on an x86-64 CPU.)"""
    root = Path(__file__).resolve().parent.parent
    settings = [{"OPENBLAS_NUM_THREADS": "1"}, {"OPENBLAS_NUM_THREADS": "2"},
                {"OPENBLAS_NUM_THREADS": "1", "OPENBLAS_CORETYPE": "Prescott"},
                {"OPENBLAS_NUM_THREADS": "2", "OPENBLAS_CORETYPE": "Sandybridge"}]
    digests = set()
    for extra in settings:
        env = {**os.environ, **extra, "PYTHONPATH": str(root)}
        run = subprocess.run([sys.executable, "-c", _DIGEST_SCRIPT], env=env, capture_output=True, text=True,
                             timeout=300, cwd=root)
        assert run.returncode == 0, run.stderr
        digests.add(run.stdout.strip())
    assert len(digests) == 1, digests


def test_muon_update_is_exact_products_rounded_twice():
    """The bfloat16 Newton–Schulz iteration of torch, emulated: every matrix product is
    the exact product rounded to float32 and then to bfloat16 (``addmm``: the exact
    product rounded to float32, then one fused ``beta * C + alpha * P`` in float32, then
    bfloat16), the norm the exact sum of squares rounded to float32, square-rooted in
    float32, rounded to bfloat16. An independent reference with Fractions."""

    def ref_bf16(x):
        return bf16(np.asarray(x, np.float32))

    def fma32(alpha, c, p):  # float32(alpha * C + P) rounded once (alpha * C exact in float64)
        return (np.float64(alpha) * c.astype(np.float64) + p.astype(np.float64)).astype(np.float32)

    a32, b32, c32 = (float(np.float32(v)) for v in COEFFS)
    rng = np.random.default_rng(11)
    for shape in [(3, 5), (5, 3), (4, 4)]:
        g = rng.standard_normal(shape) * 2.0 ** rng.integers(-6, 3, shape)
        got = to_np(zeropower_via_newtonschulz(cnp.asarray(g), COEFFS, 2, 1e-7))
        x = ref_bf16(g)
        if shape[0] > shape[1]:
            x = x.T
        sq = f32_nearest(sum((Fraction(float(v)) ** 2 for v in x.ravel()), Fraction(0)))
        norm = ref_bf16(np.sqrt(np.float32(sq)))
        x = ref_bf16(x / np.maximum(norm, ref_bf16(np.float32(1e-7))))
        for _ in range(2):
            gram = ref_bf16(exact_product(x, x.T))
            update = ref_bf16(fma32(b32, gram, np.float32(c32) * exact_product(gram, gram)))
            x = ref_bf16(fma32(a32, x, exact_product(update, x)))
        if shape[0] > shape[1]:
            x = x.T
        assert same(got, x), shape
