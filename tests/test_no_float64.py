"""Namespaces without float64 (JAX with ``jax_enable_x64`` off).

refoptim's float32 fused multiply-add is evaluated in float64 and rounded once. Where a
namespace has no float64, :func:`refoptim._primitives._fma_float32` rebuilds the same
bits from float32 error-free transformations. The first tests check that claim directly
on NumPy float32 arrays (no JAX needed: the function is plain Array API arithmetic): on
random inputs, cancellations, exact ties, near-midpoint sums that the float64 route
double-rounds, powers of two, zeros, infinities and NaN, at the edges of the documented
range. The last test runs every elementwise optimizer on JAX with x64 off in a
subprocess (x64 is a process-wide switch) and requires NumPy's bits, with no warning.
"""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys
import warnings

import numpy as np
import pytest

from refoptim import _primitives, registry
from refoptim._primitives import _fma_float32, div, fma, has_float64

N = 100_000


def _float64_route(a, b, c):
    """The float64 route of ``fma`` on float32 inputs: exact product, one float64 sum,
    rounded to float32."""
    with np.errstate(all="ignore"):
        return (np.asarray(a, np.float64) * b.astype(np.float64) + c).astype(np.float32)


def _assert_same_as_float64_route(a, b, c):
    want = _float64_route(a, b, c)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("error")
        got = _fma_float32(a, b, c)
    assert got.dtype == np.float32
    bad = np.flatnonzero(want.view(np.uint32) != got.view(np.uint32))
    assert bad.size == 0, (
        f"{bad.size} of {b.size} differ, e.g. a={np.broadcast_to(a, b.shape)[bad[:3]]} "
        f"b={b[bad[:3]]} c={c[bad[:3]]}: want {want[bad[:3]]}, got {got[bad[:3]]}"
    )


def _rnd(rng, n, lo, hi):
    """float32 values of random sign with binary exponents in [lo, hi)."""
    mant = rng.uniform(1, 2, n) * np.where(rng.random(n) < 0.5, -1.0, 1.0)
    return (mant * 2.0 ** rng.integers(lo, hi, n)).astype(np.float32)


def _near_midpoints(rng, n, pow2=False):
    """(a, b, c) with ``a * b + c`` within a few float64 units of a float32 midpoint next
    to ``c``: ``a = 1 + i 2**-15``, ``b = G (1 + j 2**-15)`` with ``G`` half the gap from
    ``c`` to a neighbour, so the product is ``G (1 + (i + j) 2**-15 + i j 2**-30)``. With
    ``j = -i`` the exact sum sits ``i**2 2**-30 G`` short of the midpoint: for ``|i| = 1``
    the float64 route rounds it onto the midpoint and then to even (a double rounding the
    true fused result does not make), for ``|i| >= 2`` it does not."""
    c = _rnd(rng, n, -20, 20)
    if pow2:
        c = (np.sign(c) * 2.0 ** np.round(np.log2(np.abs(c)))).astype(np.float32)
    direction = np.where(rng.random(n) < 0.5, np.inf, -np.inf).astype(np.float32)
    half_gap = (np.nextafter(c, direction) - c).astype(np.float64) / 2
    i = rng.integers(-5, 6, n)
    j = np.where(rng.random(n) < 0.5, -i, i + rng.integers(-1, 2, n))
    a = (1 + i * 2.0**-15).astype(np.float32)
    b = (half_gap * (1 + j * 2.0**-15)).astype(np.float32)
    assert np.array_equal(b.astype(np.float64), half_gap * (1 + j * 2.0**-15))
    return a, b, c


def test_fma_float32_random_and_cancelling():
    rng = np.random.default_rng(0)
    _assert_same_as_float64_route(_rnd(rng, N, -20, 20), _rnd(rng, N, -20, 20), _rnd(rng, N, -40, 40))
    a, b = _rnd(rng, N, -3, 3), _rnd(rng, N, -3, 3)
    exact = a.astype(np.float64) * b
    _assert_same_as_float64_route(a, b, (-exact).astype(np.float32))  # c == -ab, rounded
    _assert_same_as_float64_route(a, b, (-exact * (1 + rng.standard_normal(N) * 1e-6)).astype(np.float32))
    _assert_same_as_float64_route(_rnd(rng, N, -2, 2), _rnd(rng, N, -2, 2), _rnd(rng, N, 20, 26))


def test_fma_float32_exact_ties_and_short_mantissas():
    rng = np.random.default_rng(1)
    a = rng.integers(1, 2**12, N).astype(np.float32)
    b = rng.integers(1, 2**12, N).astype(np.float32)
    c = rng.integers(-(2**30), 2**30, N).astype(np.float32)  # many sums exactly halfway
    _assert_same_as_float64_route(a, b, c)
    a = rng.integers(1, 2**24, N).astype(np.float32) * np.float32(2.0**-24)
    b = rng.integers(1, 2**24, N).astype(np.float32) * np.float32(2.0**-5)
    c = rng.integers(-(2**24), 2**24, N).astype(np.float32) * np.float32(2.0**5)
    _assert_same_as_float64_route(a, b, c)


@pytest.mark.parametrize("pow2", [False, True], ids=["any", "power-of-two-c"])
def test_fma_float32_double_rounding_near_midpoints(pow2):
    rng = np.random.default_rng(2)
    a, b, c = _near_midpoints(rng, N, pow2)
    _assert_same_as_float64_route(a, b, c)
    if not pow2:
        # The construction really reaches the double rounding: the float64 route differs
        # from the correctly rounded fused result (80-bit long double is exact here) on
        # some elements, and _fma_float32 follows the float64 route there too.
        if np.finfo(np.longdouble).nmant >= 63:
            k = 20_000
            exact = np.longdouble(a[:k]) * np.longdouble(b[:k]) + np.longdouble(c[:k])
            fused = exact.astype(np.float32)
            assert np.count_nonzero(fused != _float64_route(a[:k], b[:k], c[:k])) > 100


@pytest.mark.parametrize(
    "a",
    [0.9, 0.1, 0.999, 1 / 3, -0.5, 0.5, -2.0, 0.0, 0.75, 1.5, 3.0, 2.0**-20, 1e-3],
)
def test_fma_float32_python_scalar_first_operand(a):
    """A Python scalar ``a`` (already float32-rounded, as the rules pass it) is split in
    Python with float32 rounding; powers of two and short mantissas take shorter forms."""
    a = struct.unpack("f", struct.pack("f", a))[0]
    rng = np.random.default_rng(3)
    _assert_same_as_float64_route(a, _rnd(rng, N, -10, 10), _rnd(rng, N, -10, 10))
    _, b, c = _near_midpoints(rng, N)
    _assert_same_as_float64_route(a, b, c)


def test_fma_float32_edges_of_the_valid_range():
    rng = np.random.default_rng(4)
    # |a|, |b| up to 2**115, |ab| + |c| under 2**127.
    _assert_same_as_float64_route(_rnd(rng, N, 50, 58), _rnd(rng, N, 50, 58), _rnd(rng, N, -60, 120))
    _assert_same_as_float64_route(_rnd(rng, N, 100, 115), _rnd(rng, N, -10, 10), _rnd(rng, N, 90, 124))
    # products down to 2**-101, sums into the subnormal range.
    _assert_same_as_float64_route(_rnd(rng, N, -51, -49), _rnd(rng, N, -52, -50), _rnd(rng, N, -110, -90))
    _assert_same_as_float64_route(
        _rnd(rng, N, -109, -100), np.full(N, 2.0**10, np.float32), _rnd(rng, N, -149, -90)
    )
    a, b = _rnd(rng, N, -51, -49), _rnd(rng, N, -51, -49)
    _assert_same_as_float64_route(a, b, (-(a.astype(np.float64) * b)).astype(np.float32))


def test_fma_float32_outside_the_range_is_documented_not_silent():
    """Products under 2**-101 lose the error term to underflow: the documented limit is
    real (this is where it shows), so the docstring's range is not a formality."""
    rng = np.random.default_rng(5)
    a, b, c = _rnd(rng, N, -60, -55), _rnd(rng, N, -60, -55), _rnd(rng, N, -130, -100)
    with np.errstate(all="ignore"):
        got = _fma_float32(a, b, c)
    assert np.count_nonzero(got != _float64_route(a, b, c)) > 0
    assert "2^{-101}" in _fma_float32.__doc__


def test_fma_float32_zeros_infinities_nan():
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 2.5e-3], np.float32)
    a, b, c = (x.ravel() for x in np.meshgrid(special, special, special))
    _assert_same_as_float64_route(a, b, c)
    for s in (0.0, -0.0, 1.0, 0.1):
        s32 = struct.unpack("f", struct.pack("f", s))[0]
        _assert_same_as_float64_route(s32, b, c)


def test_fma_float32_infinite_c_with_a_product_that_overflows_float32():
    """``1e30 * 1e30`` overflows float32 but not float64: the float64 route gives ``c`` for
    an infinite ``c`` of either sign, where ``p + c`` in float32 could be ``inf - inf``."""
    big = np.array([1e30, -1e30, 3e38, 1e20], np.float32)
    a, b, c = (x.ravel() for x in np.meshgrid(big, big, np.array([np.inf, -np.inf, 1.0], np.float32)))
    _assert_same_as_float64_route(a, b, c)
    for s in (1e30, -3e38):
        s32 = struct.unpack("f", struct.pack("f", s))[0]
        _assert_same_as_float64_route(s32, b, c)
        with np.errstate(all="ignore"):
            for c_scalar in (math.inf, -math.inf):
                want = _float64_route(s32, b, np.full_like(b, c_scalar))
                assert np.array_equal(_fma_float32(s32, b, c_scalar), want, equal_nan=True)


def test_numpy_keeps_the_float64_route():
    """NumPy has float64: ``fma`` there is the float64 route itself, and the answer is
    remembered per namespace (the hot path pays one dictionary lookup)."""
    import array_api_compat.numpy as cnp
    import array_api_strict

    assert has_float64(cnp) and has_float64(array_api_strict)
    assert _primitives._HAS_FLOAT64[id(cnp)] is True
    rng = np.random.default_rng(6)
    b, c = _rnd(rng, 1000, -5, 5), _rnd(rng, 1000, -5, 5)
    a = struct.unpack("f", struct.pack("f", 0.1))[0]
    assert fma(a, b, c).tobytes() == _float64_route(a, b, c).tobytes()


def test_div_is_plain_division_on_numpy():
    import array_api_compat.numpy as cnp

    rng = np.random.default_rng(7)
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal(1000).astype(dtype)
        for s in (0.999, 3.0, 1 - 0.9**3):
            assert div(x, s).tobytes() == (x / s).tobytes()
        assert _primitives._divides_by_scalar(cnp, cnp.float32 if dtype == np.float32 else cnp.float64)
        assert _primitives._DIVIDES[(np.ndarray, x.dtype)] is True


# --- every elementwise optimizer on JAX against NumPy, in a subprocess -------------------

# Options per optimizer; a registered elementwise optimizer not listed runs with its
# constructor's defaults.
_CONFIGS = {
    "SGD": [dict(lr=0.1), dict(lr=0.1, momentum=0.9, weight_decay=0.01), dict(lr=0.1, momentum=0.9, nesterov=True)],
    "Adam": [dict(lr=0.01), dict(lr=0.01, weight_decay=0.1), dict(lr=0.01, amsgrad=True, maximize=True)],
    "AdamW": [dict(lr=0.01), dict(lr=0.01, amsgrad=True)],
    "Adagrad": [dict(lr=0.1), dict(lr=0.1, lr_decay=0.01, weight_decay=0.1)],
    "Adadelta": [dict(lr=1.0), dict(lr=0.5, weight_decay=0.1)],
    "Adamax": [dict(lr=0.01), dict(lr=0.01, weight_decay=0.1)],
    "ASGD": [dict(lr=0.01), dict(lr=0.01, weight_decay=0.1, t0=3)],
    "NAdam": [dict(lr=0.01), dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)],
    "RAdam": [dict(lr=0.01), dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)],
    "RMSprop": [dict(lr=0.01), dict(lr=0.01, momentum=0.9, centered=True, weight_decay=0.1)],
    "Rprop": [dict(lr=0.01), dict(lr=0.01, etas=(0.4, 1.3))],
}
CONFIGS = {name: _CONFIGS.get(name, [{}]) for name in registry.names(elementwise=True)}

JAX_VS_NUMPY = r"""
import json, sys, warnings
warnings.simplefilter("error")  # no warning may leak (float64 truncation included)
import numpy as np
import jax.numpy as jnp
import refoptim as optim

configs, dtypes, steps, n = json.loads(sys.argv[1])

def run(mod, name, cfg, dtype):
    rng = np.random.default_rng(0)
    init = (rng.standard_normal(n) * 3).astype(dtype)
    grads = [rng.standard_normal(n).astype(dtype) for _ in range(steps)]
    p = optim.Parameter(mod.asarray(init))
    opt = getattr(optim, name)([p], **cfg)
    for g in grads:
        p.grad = mod.asarray(g)
        opt.step()
    state = {k: np.asarray(v) for k, v in opt.state[p].items()}
    return np.asarray(p.data), state

failures = []
for dtype in dtypes:
    for name, cfgs in configs.items():
        for cfg in cfgs:
            if "etas" in cfg:
                cfg = dict(cfg, etas=tuple(cfg["etas"]))
            want, want_state = run(np, name, cfg, dtype)
            got, got_state = run(jnp, name, cfg, dtype)
            label = f"{name} {cfg} {dtype}"
            if got.dtype != want.dtype or got.tobytes() != want.tobytes():
                failures.append(f"{label}: param, {int(np.sum(got != want))} of {n} elements differ")
            for key in want_state:
                w, g = want_state[key], got_state[key]
                if w.dtype != g.dtype or w.tobytes() != g.tobytes():
                    failures.append(f"{label}: state {key!r} differs")
print(json.dumps(failures))
"""


def run_jax_against_numpy(x64: bool, dtypes: list[str], steps: int = 6, n: int = 257) -> list[str]:
    """Run every configuration of :data:`CONFIGS` on JAX (``JAX_ENABLE_X64`` as given) and
    on NumPy in a fresh interpreter; return the differences found (empty when every
    parameter and state entry is bit-identical)."""
    pytest.importorskip("jax")
    env = dict(os.environ, JAX_ENABLE_X64="1" if x64 else "0", JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "-c", JAX_VS_NUMPY, json.dumps([CONFIGS, dtypes, steps, n])],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_elementwise_optimizer_on_jax_without_float64_matches_numpy():
    """JAX with x64 off: float32 parameters and state bit-identical to NumPy after six
    steps, for every elementwise optimizer, with no warning (any warning is an error in
    the subprocess)."""
    assert run_jax_against_numpy(x64=False, dtypes=["float32"]) == []
