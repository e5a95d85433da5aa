"""JAX (x64 on) against NumPy, bit for bit: XLA's division by a scalar.

XLA on CPU compiles ``x / s`` (an array by a scalar or a broadcast 0-d array) to
``x * (1 / s)``, a unit off on about one element in seven. :func:`refoptim._primitives.div`
finds that once per namespace with a probe and divides by a full-size array there. These
tests run every elementwise optimizer on JAX with ``JAX_ENABLE_X64=1`` in a subprocess
(x64 is a process-wide switch) and require NumPy's bits, float32 and float64; they are
skipped where JAX is not installed.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from test_no_float64 import run_jax_against_numpy

PROBE = r"""
import numpy as np
import jax
import jax.numpy as jnp
from refoptim._backend import array_namespace
from refoptim._primitives import _divides_by_scalar, div

x = np.random.default_rng(0).standard_normal(10_000)
xp = array_namespace(jnp.ones(1))
for dtype in (np.float32, np.float64):
    xd = x.astype(dtype)
    plain = np.asarray(jnp.asarray(xd) / 0.999)
    assert np.count_nonzero(plain != xd / dtype(0.999)) > 0, "XLA no longer rewrites x / s"
    assert not _divides_by_scalar(xp, jnp.asarray(xd).dtype)
    for s in (0.999, 3.0, jnp.asarray(0.271, dtype=dtype)):
        got = np.asarray(div(jnp.asarray(xd), s))
        want = xd / (dtype(s) if isinstance(s, float) else np.asarray(s))
        assert got.tobytes() == want.tobytes(), (dtype, s)
    # Under jax.jit a full-size constant is a broadcast again: div switches to a divisor
    # that depends on x (the probe cannot run on tracers). Infinities, NaN, -0.0 included.
    xd[:4] = [np.inf, -np.inf, np.nan, -0.0]
    with np.errstate(all="ignore"):
        want = xd / dtype(0.999)
    got = np.asarray(jax.jit(lambda a: div(a, 0.999))(jnp.asarray(xd)))
    assert got.tobytes() == want.tobytes(), (dtype, "jit, Python scalar")
    got = np.asarray(jax.jit(div)(jnp.asarray(xd), jnp.asarray(0.999, dtype=dtype)))
    assert got.tobytes() == want.tobytes(), (dtype, "jit, traced 0-d divisor")
print("ok")
"""


def test_div_on_jax_is_ieee_division():
    """The probe sees XLA's rewrite, and ``div`` gives NumPy's quotient anyway, eager and
    under ``jax.jit``."""
    pytest.importorskip("jax")
    env = dict(os.environ, JAX_ENABLE_X64="1", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


def test_every_elementwise_optimizer_on_jax_x64_matches_numpy():
    """JAX with x64 on: parameters and state bit-identical to NumPy after six steps,
    float32 and float64, for every elementwise optimizer (Adam, AdamW, NAdam and RAdam
    divide by a bias correction, the case XLA rewrote)."""
    assert run_jax_against_numpy(x64=True, dtypes=["float32", "float64"]) == []
