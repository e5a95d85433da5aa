r"""``python -m refoptim fingerprint``: one SHA-256 over everything refoptim computes.

refoptim's outputs must be a pure function of its inputs: the same bits on every CPU,
BLAS kernel, NumPy SIMD dispatch (``NPY_DISABLE_CPU_FEATURES``), thread count
(``REFOPTIM_NUM_THREADS``) and backend (NumPy, array-api-strict). The fingerprint checks
it in one line: run every configuration, hash every output, compare with the digests
committed in ``refoptim/testing/fingerprint.json``. It needs no torch.

**What is hashed.** Every configuration of the conformance matrix
(:func:`refoptim.testing.matrix.configs`: every optimizer with every option alone and
crossed, every dtype, parameter groups, the objectives with feedback, and the extension
harnesses: LBFGS through its closure, Adafactor, Muon, sparse gradients for SparseAdam,
SGD and Adagrad), each for ``steps`` steps (:data:`DEFAULT_STEPS`; see :func:`steps_of`);
after every step, every parameter and every state entry (and LBFGS's returned loss). Then
every learning-rate scheduler configuration of
:data:`refoptim.testing.inputs.SCHEDULER_CONFIGS` with 1, 2 and 3 parameter groups (every
group's ``lr``, ``momentum``, ``betas``, ... and every scheduler's ``get_last_lr()`` and
``last_epoch`` after every step), and the swa_utils cases (every SWALR case's lrs, and the
averages and ``n_averaged`` of :class:`refoptim.swa_utils.AveragedModel` under every
averaging function in float32 and float64). Each configuration gets its own digest; an
optimizer's digest (a *section*; SGD and Adagrad with sparse gradients are sections of
their own, ``"SGD (sparse)"``, ``"Adagrad (sparse)"``) hashes its configurations' ids and
digests in matrix order, and the total hashes the sections' names and digests in sorted
order.

**How a value is serialised** (:func:`canonical_bytes`), so that the bytes mean the same on
every machine: an array (of any backend, copied to NumPy) as a tag, its dtype name, its
shape and its elements in C order, little-endian; a Python ``float`` as ``struct`` ``'<d'``,
an ``int`` as ``'<q'``, a ``bool`` as one byte, ``None``, strings, lists and tuples (with
their length) and dicts (keys in sorted order) tagged; a :class:`refoptim.SparseGrad` as its
shape, indices, values and coalesced flag. **NaNs are canonicalised** to one bit pattern
(the positive quiet NaN: ``0x7fc00000`` in float32, ``0x7ff8000000000000`` in float64;
each half of a complex number on its own): x86 produces negative default NaNs where ARM
produces positive ones, and a NaN's sign and payload are not part of refoptim's contract.
Everything else is kept, **signed zeros included** (``-0.0`` and ``0.0`` hash differently).

**The inputs are machine-independent by construction** (they differ from the conformance
suite's, which may use anything torch and NumPy agree on). NumPy's ``standard_normal`` (its
ziggurat's tail calls libm's ``log``) and NumPy's ``exp``/``log``/``tanh``/``power`` (with
SIMD implementations per CPU, e.g. AVX-512 ones whose last bits differ) never feed the
fingerprint: every initial value, gradient, curvature and data point comes from
``Generator.random`` and ``Generator.integers`` (bit-exact by construction: integer
arithmetic and one exact scaling) through ``+ - * /`` and ``sqrt`` (correctly rounded in
IEEE arithmetic, whatever the SIMD width) and exact powers of two (``math.ldexp``). The
feedback objectives use the same operations only, and their sums run in a fixed pairwise
order (:func:`tree_sum`, elementwise additions; never ``np.sum``, ``@`` or BLAS):

- ``quadratic``: :math:`\sum a/2\,|x - c|^2`, gradient :math:`a (x - c)` (complex
  parameters on their real and imaginary parts separately);
- ``rosenbrock``: the Rosenbrock function over each parameter's flattened values;
- ``logistic`` (LBFGS): logistic regression's logistic loss :math:`\log(1 + e^{-m})` needs
  ``exp`` and ``log``, so the fingerprint uses its algebraic twin, the smooth hinge
  :math:`\ell(m) = (\sqrt{m^2 + 1} - m)/2` (convex, linear for :math:`m \to -\infty`, zero
  for :math:`m \to \infty`, like the logistic loss), whose derivative
  :math:`-(1 - m/\sqrt{m^2+1})/2` is an algebraic sigmoid; L2-regularised, on fixed data
  from ``Generator.random``; the margins :math:`m = y\,(Xw)` and :math:`X^T` products are
  fixed-order sums.

What refoptim computes from them is what is under test: if a result depends on the
machine (a BLAS kernel, a SIMD ``pow``, the number of threads), the fingerprint differs.
Python's ``math`` functions and float ``**`` (the schedulers' ``cos``, the bias
corrections' ``beta ** step``) are the platform's libm, which refoptim shares with torch;
glibc picks an FMA or a non-FMA variant of ``cos``, ``exp``, ``pow``, ... by CPU, and the
two differ in the last bit for about one argument in 1400. The digests are the same under
both (measured with ``GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX2,-FMA``), but other arguments
could meet such a case.

The committed file holds the digests for :data:`DEFAULT_STEPS` (8; about 20-25 s on
NumPy on a 2-core machine) and for :data:`QUICK_STEPS` (2; the check for array-api-strict,
which runs about ten times slower). Run it::

    python -m refoptim fingerprint                  # all sections; exit 1 if any differs
    python -m refoptim fingerprint --json out.json  # also every configuration's digest
    python -m refoptim fingerprint --backend array-api-strict --steps 2
    python -m refoptim fingerprint --write          # regenerate the committed digests
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import platform
import struct
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .testing.inputs import from_real_flat, real_flat

__all__ = [
    "ASGD_FACTOR",
    "DEFAULT_STEPS",
    "EXPECTED_PATH",
    "QUICK_STEPS",
    "Fingerprint",
    "Agreement",
    "agreement",
    "canonical_bytes",
    "compare",
    "compute",
    "expected_for",
    "load_expected",
    "environment",
    "numpy_dispatch_groups",
    "section_of",
    "steps_of",
    "tree_sum",
    "write_expected",
]

DEFAULT_STEPS = 8
"""Steps per optimizer configuration in one run (see :func:`steps_of`)."""

QUICK_STEPS = 2
"""The second step count the committed file holds digests for, the slow backends' check
(array-api-strict runs about ten times slower than NumPy)."""

ASGD_FACTOR = 3
"""ASGD runs this many times ``steps`` (24 by default), so that its averaging starts inside
the run (``t0`` = 5, 10 and 20.5 in the matrix; its ``t0 = 100`` configuration averages
only in the conformance suite's 120 steps)."""

EXPECTED_PATH = Path(__file__).parent / "testing" / "fingerprint.json"
"""The committed digests (shipped in the package)."""

SCHEDULERS = "schedulers"
SWA_UTILS = "swa_utils"

# ============================================================================ serialisation
_NAN_BITS = {2: (np.uint16, 0x7E00), 4: (np.uint32, 0x7FC00000), 8: (np.uint64, 0x7FF8000000000000)}
_NAN_DOUBLE = struct.pack("<Q", 0x7FF8000000000000)


def _array_bytes(a: np.ndarray) -> bytes:
    """An array's tag, dtype name, shape and little-endian C-order bytes, NaNs canonical."""
    dt = a.dtype
    a = np.ascontiguousarray(a, dtype=dt.newbyteorder("<") if dt.byteorder not in ("|", "<") else dt)
    head = b"A" + dt.name.encode() + b"\0" + struct.pack(f"<B{a.ndim}q", a.ndim, *a.shape)
    if dt.kind in "fc":
        flat = a.reshape(-1)
        if dt.kind == "c":
            flat = flat.view(flat.real.dtype)
        nan = np.isnan(flat)
        if nan.any():
            uint, bits = _NAN_BITS[flat.dtype.itemsize]
            flat = flat.copy()
            flat.view(uint)[nan] = bits
            return head + flat.tobytes()
    return head + a.tobytes()


def _feed(out: list[bytes], value: Any) -> None:
    """Append the canonical bytes of ``value`` to ``out``."""
    kind = type(value)
    if kind is np.ndarray:
        out.append(_array_bytes(value))
    elif kind is float:
        out.append(b"F" + (_NAN_DOUBLE if math.isnan(value) else struct.pack("<d", value)))
    elif value is None:
        out.append(b"N")
    elif kind is bool:
        out.append(b"B\1" if value else b"B\0")
    elif kind is int and -(2**63) <= value < 2**63:
        out.append(b"I" + struct.pack("<q", value))
    elif kind is list or kind is tuple:
        out.append(b"L" + struct.pack("<q", len(value)))
        for item in value:
            _feed(out, item)
    elif kind is dict:
        out.append(b"D" + struct.pack("<q", len(value)))
        for key in sorted(value, key=lambda k: (type(k).__name__, k)):
            _feed(out, key)
            _feed(out, value[key])
    elif kind is str:
        text = value.encode()
        out.append(b"S" + struct.pack("<q", len(text)) + text)
    elif isinstance(value, np.ndarray):
        out.append(_array_bytes(np.asarray(value)))
    elif isinstance(value, np.generic):
        out.append(_array_bytes(np.asarray(value)))
    elif isinstance(value, bool):
        _feed(out, bool(value))
    elif isinstance(value, int):
        if -(2**63) <= value < 2**63:
            out.append(b"I" + struct.pack("<q", int(value)))
        else:
            text = str(int(value)).encode()
            out.append(b"J" + struct.pack("<q", len(text)) + text)
    elif isinstance(value, float):
        _feed(out, float(value))
    elif isinstance(value, complex):
        out.append(b"C")
        for part in (value.real, value.imag):
            out.append(_NAN_DOUBLE if math.isnan(part) else struct.pack("<d", part))
    elif isinstance(value, str):
        _feed(out, str(value))
    elif isinstance(value, (list, tuple)):
        _feed(out, list(value))
    elif isinstance(value, dict):
        _feed(out, dict(value))
    else:
        _feed_other(out, value)


def _feed_other(out: list[bytes], value: Any) -> None:
    from ._backend import is_array
    from .sparse import SparseGrad
    from .testing import backends

    if isinstance(value, SparseGrad):
        out.append(b"P")
        _feed(out, tuple(value.shape))
        _feed(out, backends.to_numpy(value.indices))
        _feed(out, backends.to_numpy(value.values))
        _feed(out, bool(value.is_coalesced()))
    elif is_array(value):
        out.append(_array_bytes(backends.to_numpy(value)))
    else:
        raise TypeError(f"fingerprint: cannot serialise a {type(value).__module__}.{type(value).__qualname__}")


def canonical_bytes(value: Any) -> bytes:
    """The canonical serialisation the fingerprint hashes (see the module docstring): arrays
    of any registered backend, NumPy scalars, Python numbers, ``None``, strings, lists,
    tuples, dicts (keys sorted) and :class:`refoptim.SparseGrad`, nested; NaNs canonical,
    signed zeros kept.

    >>> import numpy as np
    >>> from refoptim.fingerprint import canonical_bytes
    >>> canonical_bytes(np.float32(-np.nan)) == canonical_bytes(np.float32(np.nan))
    True
    >>> canonical_bytes(-0.0) == canonical_bytes(0.0)
    False
    """
    out: list[bytes] = []
    _feed(out, value)
    return b"".join(out)


# ============================================================================ inputs
def tree_sum(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """The sum of ``x`` along ``axis`` in a fixed order: neighbours are added pairwise
    (``x[0] + x[1]``, ``x[2] + x[3]``, ...; an odd last element is carried to the next
    round) until one remains; an empty axis sums to zero. Elementwise additions only, so
    the result is the same on every CPU, SIMD setting and BLAS.

    >>> import numpy as np
    >>> from refoptim.fingerprint import tree_sum
    >>> float(tree_sum(np.array([1.0, 2.0, 3.0, 4.0, 5.0])))
    15.0
    """
    x = np.moveaxis(np.asarray(x), axis, -1)
    if x.shape[-1] == 0:
        return np.zeros(x.shape[:-1], dtype=x.dtype)
    while x.shape[-1] > 1:
        n = x.shape[-1]
        pairs = x[..., 0 : n - n % 2 : 2] + x[..., 1 : n - n % 2 : 2]
        x = np.concatenate([pairs, x[..., n - 1 :]], axis=-1) if n % 2 else pairs
    return x[..., 0]


def _rng(cfg_id: str, salt: int) -> np.random.Generator:
    """A generator seeded from the configuration's id (so configurations differ) and a salt."""
    digest = hashlib.sha256(cfg_id.encode()).digest()
    return np.random.default_rng([int.from_bytes(digest[:8], "little"), salt])


def _normal(rng: np.random.Generator, shape: Any) -> np.ndarray:
    """Float64 values with mean 0 and variance 1 in (-3, 3): ``2 (u1 + u2 + u3) - 3`` from
    ``Generator.random`` (exact operations only; not ``standard_normal``)."""
    return 2 * (rng.random(shape) + rng.random(shape) + rng.random(shape)) - 3


def _scale(rng: np.random.Generator, low: int = -10, high: int = 3) -> float:
    """A power of two from ``2**low`` to ``2**high`` (exact)."""
    return math.ldexp(1.0, int(rng.integers(low, high + 1)))


def _typed(rng: np.random.Generator, shape: Any, dtype: Any, scale: float = 1.0, offset: float = 0.0) -> np.ndarray:
    """An array of ``dtype`` from :func:`_normal` (times ``scale``, plus ``offset``); complex
    dtypes get independent real and imaginary parts, set part by part."""
    dtype = np.dtype(dtype)
    if dtype.kind == "c":
        out = np.empty(shape, dtype=dtype)
        out.real = _normal(rng, shape) * scale + offset
        out.imag = _normal(rng, shape) * scale
        return out
    return np.asarray(_normal(rng, shape) * scale + offset, dtype=dtype)


def _real_dtype(dtype: Any) -> np.dtype:
    return np.dtype(np.float32) if np.dtype(dtype) in (np.float32, np.complex64) else np.dtype(np.float64)


@dataclass
class _Problem:
    """What one optimizer configuration runs on: parameter shapes, which parameter skips
    which steps, the initial values and the gradient source."""

    shapes: tuple[Any, ...]
    skip: Callable[[int, int], bool]
    values: list[np.ndarray]
    gradients: Callable[[int, list[np.ndarray]], list[Any]] | None = None
    objective: Callable[[list[np.ndarray]], tuple[np.ndarray, list[np.ndarray]]] | None = None
    sparse: bool = False


def _shape_of(shape: Any) -> tuple[int, ...]:
    return (3, 4) if shape == "view" else shape


def _matrix_skip(step: int, index: int) -> bool:
    """The matrix's (3, 4) parameter misses its first three steps and every seventh."""
    return index == 2 and (step < 3 or step % 7 == 0)


def _muon_skip(step: int, index: int) -> bool:
    """Muon's (5, 5) matrix misses its first two steps and every fifth."""
    return index == 2 and (step < 2 or step % 5 == 0)


def _never(step: int, index: int) -> bool:
    return False


def _rosenbrock(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Loss terms and gradient of sum_i 100 (x[i+1] - x[i]^2)^2 + (1 - x[i])^2 over the
    flattened array (a single element: (x - 1)^2)."""
    flat = np.ascontiguousarray(x).reshape(-1)
    g = np.zeros_like(flat)
    if flat.size >= 2:
        xi, xn = flat[:-1], flat[1:]
        t = xn - xi * xi
        u = 1 - xi
        g[:-1] += -400 * xi * t - 2 * u
        g[1:] += 200 * t
        terms = 100 * t * t + u * u
    elif flat.size == 1:
        terms = (flat - 1) * (flat - 1)
        g += 2 * (flat - 1)
    else:
        terms = flat
    return terms, g.reshape(x.shape)


def _quadratic_parts(rng: np.random.Generator, values: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Curvatures from 1/8 to 8 (real, the parameter's real dtype) and centres."""
    curvature = [np.asarray(0.125 + 7.875 * rng.random(v.shape), dtype=_real_dtype(v.dtype)) for v in values]
    center = [_typed(rng, v.shape, v.dtype) for v in values]
    return curvature, center


def _quadratic_grad(a: np.ndarray, x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``a * (x - c)``; complex parameters part by part (no complex multiply)."""
    if np.iscomplexobj(x):
        g = np.empty_like(x)
        g.real = a * (x.real - c.real)
        g.imag = a * (x.imag - c.imag)
        return g
    return a * (x - c)


def _lbfgs_objective(cfg: Any, values: list[np.ndarray]) -> Callable[[list[np.ndarray]], tuple[np.ndarray, list[np.ndarray]]]:
    """LBFGS's loss-and-gradient function (see the module docstring), its data drawn from
    the configuration's id: ``f(params) -> (0-d loss of the real dtype, gradients)``."""
    real = _real_dtype(values[0].dtype).type
    rng = _rng(cfg.id, 2)
    if cfg.objective == "quadratic":
        curvature, center = _quadratic_parts(rng, values)

        def quadratic(params: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
            loss = real(0)
            grads = []
            for x, a, c in zip(params, curvature, center):
                r = x - c
                sq = r.real * r.real + r.imag * r.imag if np.iscomplexobj(r) else r * r
                loss = real(loss + tree_sum((a * sq).reshape(-1)) / 2)
                grads.append(_quadratic_grad(a, x, c))
            return np.asarray(loss, dtype=real), grads

        return quadratic
    if cfg.objective == "rosenbrock":

        def rosenbrock(params: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
            loss = real(0)
            grads = []
            for x in params:
                terms, g = _rosenbrock(x)
                loss = real(loss + tree_sum(terms))
                grads.append(g)
            return np.asarray(loss, dtype=real), grads

        return rosenbrock
    if cfg.objective == "logistic":
        n = sum(real_flat(v).size for v in values)
        samples = 64
        X = np.asarray(_normal(rng, (samples, n)) / math.sqrt(n), dtype=real)
        y = np.asarray(2 * rng.integers(0, 2, samples) - 1, dtype=real)
        lam = real(1e-2)
        one, half = real(1), real(0.5)

        def logistic(params: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
            w = np.concatenate([real_flat(x) for x in params])
            m = y * tree_sum(X * w, axis=1)
            root = np.sqrt(m * m + one)
            loss = tree_sum(half * (root - m)) / real(samples) + lam / 2 * tree_sum(w * w)
            coef = half * (m / root - one) * y / real(samples)
            gw = tree_sum(X * coef[:, None], axis=0) + lam * w
            grads, offset = [], 0
            for x in params:
                k = real_flat(x).size
                grads.append(from_real_flat(gw[offset : offset + k], x))
                offset += k
            return np.asarray(loss, dtype=real), grads

        return logistic
    raise ValueError(f"fingerprint: unknown LBFGS objective {cfg.objective!r}")


def _sparse_sequence(cfg: Any, shapes: Any) -> Callable[[int, list[np.ndarray]], list[Any]]:
    """Per step, per parameter: (indices, values) of an uncoalesced sparse gradient, or None
    (as the sparse harness draws them: repeated indices, nnz = 0 on some steps, the 3-d
    parameter skipping some steps)."""
    rng = _rng(cfg.id, 1)
    dtype = np.dtype({"float32": np.float32, "float64": np.float64, "complex64": np.complex64}[cfg.dtype])
    scales = [_scale(rng, -6, 3) for _ in shapes]
    sequence = []
    for step in range(cfg.steps):
        grads: list[Any] = []
        for i, ((shape, sparse_dim), scale) in enumerate(zip(shapes, scales)):
            if i == 2 and (step < 3 or step % 7 == 0):
                grads.append(None)
                continue
            nnz = 0 if i == 1 and step % 5 == 4 else (1, 2, 5, 9, 20, 33)[int(rng.integers(0, 6))]
            span = [max(1, min(s, int(rng.integers(2, s + 1)))) for s in shape[:sparse_dim]]
            idx = np.stack([rng.integers(0, span[d], nnz) for d in range(sparse_dim)]).astype(np.int64)
            vshape = (nnz,) + shape[sparse_dim:]
            grads.append((idx, _typed(rng, vshape, dtype, scale)))
        sequence.append(grads)
    return lambda step, params: sequence[step]


def _problem(cfg: Any) -> _Problem:
    """Shapes, skips, initial values and gradient source of an optimizer configuration."""
    from .testing import inputs

    dtype = np.dtype(inputs.NUMPY_DTYPES[cfg.dtype])
    rng = _rng(cfg.id, 0)
    if cfg.objective == "sparse":
        shapes = inputs.SPARSE_SHAPES
        values = [_typed(rng, shape, dtype) for shape, _ in shapes]
        return _Problem(shapes, _never, values, gradients=_sparse_sequence(cfg, shapes), sparse=True)
    if cfg.optimizer == "Muon":
        shapes, skip = inputs.muon_shapes(cfg), _muon_skip
    elif cfg.optimizer == "Adafactor":
        shapes, skip = inputs.ADAFACTOR_SHAPES, _matrix_skip
    elif cfg.optimizer == "LBFGS":
        shapes, skip = inputs.SHAPES, _never
    else:
        shapes, skip = inputs.SHAPES, _matrix_skip
    offset, scale = (0.5, 0.25) if cfg.objective == "rosenbrock" else (0.0, 1.0)
    values = [_typed(rng, _shape_of(s), dtype, scale, offset) for s in shapes]
    if cfg.optimizer == "LBFGS":
        return _Problem(shapes, skip, values, objective=_lbfgs_objective(cfg, values))

    grad_rng = _rng(cfg.id, 1)
    if cfg.objective in ("fixed", "large"):
        scales = [_scale(grad_rng) for _ in shapes]

        def fixed(step: int, params: list[np.ndarray]) -> list[Any]:
            # drawn for every parameter at every step, so a skipped step keeps the stream
            return [_typed(grad_rng, v.shape, dtype, s) for v, s in zip(values, scales)]

        return _Problem(shapes, skip, values, gradients=fixed)
    if cfg.objective == "quadratic":
        curvature, center = _quadratic_parts(grad_rng, values)

        def quadratic(step: int, params: list[np.ndarray]) -> list[Any]:
            return [_quadratic_grad(a, x, c) for a, x, c in zip(curvature, params, center)]

        quadratic.feedback = True  # type: ignore[attr-defined]
        return _Problem(shapes, skip, values, gradients=quadratic)
    if cfg.objective == "rosenbrock":

        def rosenbrock(step: int, params: list[np.ndarray]) -> list[Any]:
            return [_rosenbrock(x)[1] for x in params]

        rosenbrock.feedback = True  # type: ignore[attr-defined]
        return _Problem(shapes, skip, values, gradients=rosenbrock)
    raise ValueError(f"fingerprint: unknown objective {cfg.objective!r} of {cfg.id}")


# ============================================================================ running
def steps_of(cfg: Any, steps: int) -> int:
    """The steps a configuration runs in the fingerprint: ``steps``; ASGD
    :data:`ASGD_FACTOR` times as many; LBFGS its own count if smaller (each of its steps is
    up to ``max_iter`` iterations). The matrix's minimums (ASGD 120, Muon's large matrices
    50) serve the comparison with torch and do not apply."""
    if cfg.optimizer == "LBFGS":
        return min(cfg.steps, steps)
    if cfg.optimizer == "ASGD":
        return ASGD_FACTOR * steps
    return steps


def section_of(cfg: Any) -> str:
    """The section (digest line) a configuration belongs to: its optimizer's name, with
    ``" (sparse)"`` for SGD and Adagrad with sparse gradients."""
    if cfg.objective == "sparse" and cfg.optimizer != "SparseAdam":
        return f"{cfg.optimizer} (sparse)"
    return cfg.optimizer


def _backend_options(options: dict[str, Any], backend: Any) -> dict[str, Any]:
    """Array options (a 0-d lr, 0-d betas) as arrays of the backend."""

    def convert(v: Any) -> Any:
        if isinstance(v, np.ndarray):
            return backend.from_numpy(v)
        if isinstance(v, (list, tuple)):
            return type(v)(convert(x) for x in v)
        return v

    return {k: convert(v) for k, v in options.items()}


def _config_digest(cfg: Any, backend: Any, backend_name: str) -> str:
    """Run one optimizer configuration and hash every parameter and state entry after
    every step."""
    from .sparse import SparseGrad
    from .testing import inputs

    problem = _problem(cfg)
    if problem.sparse:
        import refoptim

        params = [refoptim.Parameter(backend.from_numpy(v)) for v in problem.values]
    else:
        params = inputs.refoptim_params(problem.shapes, problem.values, backend_name)
    cls = inputs.refoptim_class(cfg.optimizer)
    groups = [{"params": [], **_backend_options(g, backend)} for g in cfg.groups]
    for i, p in enumerate(params):
        if groups:
            groups[i % len(groups)]["params"].append(p)
    optimizer = cls(groups or params, **_backend_options(cfg.options, backend))
    ordered = [p for g in optimizer.param_groups for p in g["params"]]
    h = hashlib.sha256()
    feedback = getattr(problem.gradients, "feedback", False)
    to_numpy = backend.to_numpy

    if problem.objective is not None:
        f = problem.objective

        def closure() -> Any:
            loss, grads = f([to_numpy(p.data) for p in params])
            for p, g in zip(params, grads):
                p.grad = backend.from_numpy(g)
            return backend.from_numpy(loss)

    for step in range(cfg.steps):
        out: list[bytes] = [b"step", struct.pack("<q", step)]
        if problem.objective is not None:
            _feed(out, optimizer.step(closure))
        else:
            assert problem.gradients is not None
            grads = problem.gradients(step, [to_numpy(p.data) for p in params] if feedback else [])
            for i, (p, g) in enumerate(zip(params, grads)):
                if g is None or problem.skip(step, i):
                    p.grad = None
                elif problem.sparse:
                    p.grad = SparseGrad(backend.from_numpy(g[0]), backend.from_numpy(g[1]), problem.shapes[i][0])
                else:
                    p.grad = backend.from_numpy(g)
            optimizer.step()
        for index, p in enumerate(ordered):
            _feed(out, p.data)
            state = optimizer.state.get(p)
            if state:
                out.append(b"state" + struct.pack("<q", index))
                _feed(out, state)
        h.update(b"".join(out))
    return h.hexdigest()


_SCHEDULED_KEYS = ("lr", "initial_lr", "momentum", "betas", "max_lr", "min_lr", "max_momentum", "base_momentum")
"""The group entries a scheduler sets (``None`` where a group has no such entry)."""


def _scheduler_digests(backend: Any) -> dict[str, str]:
    """Every scheduler configuration with 1, 2 and 3 groups (of an SGD with momentum 0.9):
    every group's ``lr``, ``initial_lr``, ``momentum``, ``betas`` and cycle bounds, and every
    scheduler's ``get_last_lr()`` and ``last_epoch``, at construction and after every step."""
    import refoptim
    import refoptim.lr_scheduler as rls

    from .testing.inputs import (
        SCHEDULER_CONFIGS,
        SCHEDULER_DEFAULT_STEPS,
        SCHEDULER_LRS,
        SCHEDULER_STEPS,
    )

    digests = {}
    for name in sorted(SCHEDULER_CONFIGS):
        for n_groups in (1, 2, 3):
            groups = [
                {"params": [refoptim.Parameter(backend.from_numpy(np.zeros(3)))], "lr": SCHEDULER_LRS[i]}
                for i in range(n_groups)
            ]
            optimizer = refoptim.SGD(groups, lr=0.1, momentum=0.9)
            made = SCHEDULER_CONFIGS[name](rls, optimizer)
            schedulers = list(made) if isinstance(made, (list, tuple)) else [made]
            h = hashlib.sha256()
            for step in range(SCHEDULER_STEPS.get(name, SCHEDULER_DEFAULT_STEPS) + 1):
                # The optimizer is not stepped: a scheduler reads and writes only the
                # groups (SGD's steps with any lr are the SGD section's business).
                if step:
                    for s in schedulers:
                        s.step()
                out: list[bytes] = [b"step", struct.pack("<q", step)]
                for g in optimizer.param_groups:
                    _feed(out, [g.get(key) for key in _SCHEDULED_KEYS])
                for s in schedulers:
                    _feed(out, [list(s.get_last_lr()), getattr(s, "last_epoch", None)])
                h.update(b"".join(out))
            digests[f"{name} x{n_groups}"] = h.hexdigest()
    return digests


def _swa_digests(backend: Any) -> dict[str, str]:
    """Every SWALR case (the groups' lrs and ``swa_lr`` and ``get_last_lr()`` at
    construction and after every step) and every averaging setup in float32 and float64
    (the averages and ``n_averaged`` after every update)."""
    import refoptim
    import refoptim.swa_utils as rswa

    from .testing.inputs import (
        AVERAGING_SETUPS,
        AVERAGING_UPDATES,
        SWA_GROUP_LRS,
        SWALR_CASES,
        SWALR_STEPS,
        SWALR_SWA_LRS,
        averaging_kwargs,
    )

    digests = {}
    for strategy, epochs, n_groups, as_list in SWALR_CASES:
        groups = [
            {"params": [refoptim.Parameter(backend.from_numpy(np.zeros(2)))], "lr": SWA_GROUP_LRS[i]}
            for i in range(n_groups)
        ]
        optimizer = refoptim.SGD(groups, lr=0.1)
        swa_lr = SWALR_SWA_LRS[:n_groups] if as_list else 0.02
        scheduler = rswa.SWALR(optimizer, swa_lr, anneal_epochs=epochs, anneal_strategy=strategy)
        h = hashlib.sha256()
        for step in range(SWALR_STEPS + 1):
            if step:
                optimizer.step()
                scheduler.step()
            out: list[bytes] = [b"step", struct.pack("<q", step)]
            _feed(out, [[g["lr"], g["swa_lr"]] for g in optimizer.param_groups])
            _feed(out, list(scheduler.get_last_lr()))
            h.update(b"".join(out))
        digests[f"SWALR {strategy} anneal_epochs={epochs} groups={n_groups} swa_lr_list={as_list}"] = h.hexdigest()
    for name in sorted(AVERAGING_SETUPS):
        for dtype in (np.float32, np.float64):
            rng = _rng(f"AveragedModel {name} {np.dtype(dtype).name}", 0)
            current = [_typed(rng, s, dtype) for s in ((7,), (3, 4), ())]
            params = [refoptim.Parameter(backend.from_numpy(a)) for a in current]
            averaged = rswa.AveragedModel(params, **averaging_kwargs(name, rswa))
            h = hashlib.sha256()
            for update in range(AVERAGING_UPDATES):
                current = [a + _typed(rng, a.shape, dtype, 0.125) for a in current]
                for p, a in zip(params, current):
                    p.data = backend.from_numpy(a)  # rebound: immutable arrays (JAX) too
                averaged.update_parameters(params)
                out: list[bytes] = [b"update", struct.pack("<q", update)]
                _feed(out, averaged.n_averaged)
                _feed(out, [p.data for p in averaged.params])
                h.update(b"".join(out))
            digests[f"AveragedModel {name} {np.dtype(dtype).name}"] = h.hexdigest()
    return digests


def _combine(items: dict[str, str]) -> str:
    """SHA-256 over ``name\\0digest\\n`` for every item, in the dict's order."""
    h = hashlib.sha256()
    for name, digest in items.items():
        h.update(name.encode() + b"\0" + digest.encode() + b"\n")
    return h.hexdigest()


@dataclass
class Fingerprint:
    """The digests of one run: the total, one per section (optimizer, ``schedulers``,
    ``swa_utils``), one per configuration, and how the run was made."""

    total: str
    sections: dict[str, str]
    counts: dict[str, int]
    configurations: dict[str, dict[str, str]] = field(repr=False)
    steps: int = DEFAULT_STEPS
    backend: str = "numpy"
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the digests and the run's settings."""
        return {
            "total": self.total,
            "sections": self.sections,
            "configurations_per_section": self.counts,
            "steps": self.steps,
            "backend": self.backend,
            "numpy": np.__version__,
            "seconds": round(self.seconds, 2),
            "configurations": self.configurations,
        }


def compute(steps: int = DEFAULT_STEPS, backend: str = "numpy", progress: Callable[[str], None] | None = None) -> Fingerprint:
    """Run every configuration, scheduler case and swa_utils case on ``backend`` (a name
    of :mod:`refoptim.testing.backends`) and hash them (see the module docstring).
    ``progress``, if given, is called with each section's name when it is done."""
    from .testing import backends as registry

    b = registry.require_backend(backend)
    start = time.perf_counter()
    per_section = _per_configuration(steps, b, backend)
    names = sorted(per_section)
    sections = {name: _combine(per_section[name]) for name in names}
    if progress is not None:
        for name in names:
            progress(name)
    return Fingerprint(
        total=_combine(sections),
        sections=sections,
        counts={name: len(per_section[name]) for name in names},
        configurations={name: per_section[name] for name in names},
        steps=steps,
        backend=backend,
        seconds=time.perf_counter() - start,
    )


def _per_configuration(
    steps: int,
    b: Any,
    backend: str,
    dtypes: frozenset[str] | None = None,
    on_error: bool = False,
    per_section: int | None = None,
    skip: dict[str, str] | None = None,
) -> dict[str, dict[str, str]]:
    """{section: {configuration id: digest}} of every configuration, scheduler case and
    swa_utils case on backend ``b``. With ``dtypes``, a configuration of another dtype gets
    ``"unsupported: no <dtype>"`` instead of a digest, and the swa_utils section (which has
    float64 cases) ``"unsupported: no float64"`` without float64; a configuration of a
    section in ``skip`` gets ``"unsupported: <its reason>"``; with ``on_error``, a
    configuration that raises gets ``"error: <type>: <message>"`` instead of stopping the
    run. With ``per_section``, only that many configurations of each optimizer section run,
    spread evenly over its list (every dtype and option kind stays likely to be met)."""
    from .testing.matrix import configs

    chosen = list(configs(steps=steps))
    if per_section is not None:
        sections: dict[str, list[Any]] = {}
        for cfg in chosen:
            sections.setdefault(section_of(cfg), []).append(cfg)
        keep = set()
        for members in sections.values():
            stride = max(1, len(members) / per_section)
            keep |= {id(members[int(i * stride)]) for i in range(min(per_section, len(members)))}
        chosen = [cfg for cfg in chosen if id(cfg) in keep]

    def run(make: Callable[[], Any]) -> Any:
        if not on_error:
            return make()
        try:
            return make()
        except Exception as exc:  # noqa: BLE001 - reported per configuration
            return f"error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]

    digests: dict[str, dict[str, str]] = {}
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for cfg in chosen:
            cfg = dataclasses.replace(cfg, steps=steps_of(cfg, steps))
            if dtypes is not None and cfg.dtype not in dtypes:
                digest = f"unsupported: no {cfg.dtype}"
            elif skip and section_of(cfg) in skip:
                digest = f"unsupported: {skip[section_of(cfg)]}"
            else:
                digest = run(lambda: _config_digest(cfg, b, backend))
            digests.setdefault(section_of(cfg), {})[cfg.id] = digest
        digests[SCHEDULERS] = run(lambda: _scheduler_digests(b))
        if dtypes is not None and "float64" not in dtypes:
            digests[SWA_UTILS] = "unsupported: no float64"
        else:
            digests[SWA_UTILS] = run(lambda: _swa_digests(b))
    return digests


def backend_dtypes(backend: Any) -> frozenset[str]:
    """The floating dtypes (``float32``, ``float64``, ``complex64``) a backend's namespace
    has, from its ``__array_namespace_info__().dtypes()`` (all three where it does not say)."""
    wanted = {"float32", "float64", "complex64"}
    info = getattr(backend.namespace(), "__array_namespace_info__", None)
    if info is None:
        return frozenset(wanted)
    try:
        names = info().dtypes()
    except TypeError:  # ndonnx wants its kind spelled out
        names = info().dtypes(kind=None)
    return frozenset(wanted & set(names))


@dataclass
class Agreement:
    """A backend's run of every fingerprint configuration against NumPy's, bit for bit.

    ``verdicts`` maps each section to ``{configuration id: verdict}`` with verdict
    ``"identical"``, ``"differs"``, ``"unsupported: ..."`` (a dtype the backend lacks) or
    ``"error: ..."`` (the backend raised); a section that is one case in the fingerprint
    (``schedulers``, ``swa_utils``) has one entry, named after the section."""

    backend: str
    steps: int
    verdicts: dict[str, dict[str, str]]
    seconds: float = 0.0

    def summary(self) -> dict[str, dict[str, int]]:
        """{section: {verdict kind: count}}, the kind being the verdict up to its first colon."""
        out: dict[str, dict[str, int]] = {}
        for section, rows in self.verdicts.items():
            counts: dict[str, int] = {}
            for verdict in rows.values():
                kind = verdict.split(":")[0]
                counts[kind] = counts.get(kind, 0) + 1
            out[section] = counts
        return out

    def identical(self, section: str) -> bool:
        """True when every configuration of ``section`` that ran gave NumPy's bits (and at
        least one ran)."""
        rows = self.verdicts[section].values()
        ran = [v for v in rows if not v.startswith("unsupported")]
        return bool(ran) and all(v == "identical" for v in ran)


def agreement(backend: str, steps: int = 2, per_section: int | None = None) -> Agreement:
    """Every fingerprint configuration on ``backend`` and on NumPy, compared bit for bit
    (every parameter and state entry after every step): the proof that a backend gives
    NumPy's answer, reductions (Adafactor, Muon, L-BFGS) included. Configurations of a
    dtype the backend lacks, and the sections :data:`refoptim.testing.backends.NOT_RUN`
    names for it (too slow there), are reported unsupported, not run. ``per_section`` runs only
    that many configurations of each optimizer (spread over its list), for slow backends."""
    from .testing import backends as registry

    b = registry.require_backend(backend)
    start = time.perf_counter()
    dtypes = backend_dtypes(b)
    skip = {section: why for (name, section), why in registry.NOT_RUN.items() if name == backend}
    ours = _per_configuration(steps, b, backend, dtypes, on_error=True, per_section=per_section, skip=skip)
    reference = _per_configuration(steps, registry.get_backend("numpy"), "numpy", per_section=per_section)

    def verdict(mine: str, theirs: str) -> str:
        if mine.startswith(("unsupported", "error")):
            return mine
        return "identical" if mine == theirs else "differs"

    verdicts: dict[str, dict[str, str]] = {}
    for section in sorted(reference):
        mine, theirs = ours[section], reference[section]
        if isinstance(theirs, dict) and isinstance(mine, str):  # the whole section refused
            verdicts[section] = {k: mine for k in theirs}
        elif isinstance(theirs, dict):
            verdicts[section] = {k: verdict(mine[k], theirs[k]) for k in theirs}
        else:
            mine = mine if isinstance(mine, str) else _combine(mine)
            verdicts[section] = {section: verdict(mine, _combine(theirs))}
    return Agreement(backend, steps, verdicts, time.perf_counter() - start)


# ============================================================================ NumPy's SIMD dispatch
_AVX2_TARGETS = ("X86_V3", "AVX", "F16C", "FMA3", "AVX2")


def _numpy_cpu() -> tuple[list[str], list[str], dict[str, bool]]:
    """NumPy's CPU baseline, its dispatch targets and the CPU features it found (empty
    where this NumPy does not say)."""
    try:
        from numpy._core import _multiarray_umath as umath

        return list(umath.__cpu_baseline__), list(umath.__cpu_dispatch__), dict(umath.__cpu_features__)
    except (ImportError, AttributeError):  # another NumPy layout
        return [], [], {}


def environment() -> dict[str, Any]:
    """What the fingerprint's bits must not depend on, as this process has it: NumPy and
    Python versions, the machine, refoptim's thread count and the variables that set it
    and NumPy's SIMD dispatch, and NumPy's baseline, dispatch targets and active targets."""
    import os

    from ._fastpath import get_num_threads

    baseline, dispatch, features = _numpy_cpu()
    return {
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "threads": get_num_threads(),
        "REFOPTIM_NUM_THREADS": os.environ.get("REFOPTIM_NUM_THREADS"),
        "NPY_DISABLE_CPU_FEATURES": os.environ.get("NPY_DISABLE_CPU_FEATURES"),
        "numpy_cpu_baseline": baseline,
        "numpy_cpu_dispatch": dispatch,
        "numpy_cpu_dispatch_active": [name for name in dispatch if features.get(name)],
    }


def numpy_dispatch_groups() -> dict[str, list[str]]:
    """The names ``NPY_DISABLE_CPU_FEATURES`` accepts on this NumPy, by group:
    ``"avx512"`` (NumPy 2.4: ``X86_V4``, ``AVX512_ICL``, ``AVX512_SPR``; older NumPy:
    ``AVX512F``, ``AVX512_SKX``, ...), ``"avx2"`` (``X86_V3``; older: ``AVX``, ``F16C``,
    ``FMA3``, ``AVX2``) and ``"other"`` (the remaining dispatch targets, e.g. ARM's).

    They are the targets NumPy dispatches to (``__cpu_dispatch__``) minus its baseline
    (``__cpu_baseline__``): disabling a baseline feature is an error at import, and a name
    NumPy does not dispatch to only raises an ImportWarning and disables nothing. A target
    this CPU lacks is accepted silently (and changes nothing), so the AVX-512 names belong
    in every variant: on an AVX-512 CPU they matter. Empty lists where NumPy does not say.
    """
    baseline, dispatch, _ = _numpy_cpu()
    targets = [name for name in dispatch if name not in baseline]
    avx512 = [n for n in targets if "AVX512" in n or n == "X86_V4"]
    avx2 = [n for n in targets if n in _AVX2_TARGETS]
    return {"avx512": avx512, "avx2": avx2, "other": [n for n in targets if n not in avx512 + avx2]}


# ============================================================================ committed digests
def load_expected(path: Path | str = EXPECTED_PATH) -> dict[str, Any] | None:
    """The committed digests (``refoptim/testing/fingerprint.json``), or None without one."""
    try:
        with open(path) as fh:
            return json.load(fh)
    except FileNotFoundError:
        return None


def expected_for(expected: dict[str, Any] | None, steps: int) -> dict[str, Any] | None:
    """The committed entry for ``steps`` steps per configuration (``total``, ``sections``,
    ``configurations_per_section``), or None."""
    if not expected:
        return None
    return expected.get("digests", {}).get(str(steps))


def compare(fp: Fingerprint, expected: dict[str, Any] | None) -> dict[str, bool | None]:
    """For every section and ``"total"``: True when its digest equals the committed one
    for ``fp.steps`` steps, False when it differs, None when there is nothing to compare
    with (no committed digests for these steps, or not for this section)."""
    entry = expected_for(expected, fp.steps)
    if entry is None:
        return {name: None for name in [*fp.sections, "total"]}
    committed = entry.get("sections", {})
    out: dict[str, bool | None] = {
        name: (digest == committed[name]) if name in committed else None for name, digest in fp.sections.items()
    }
    out["total"] = fp.total == entry.get("total")
    return out


def write_expected(fp: Fingerprint, path: Path | str = EXPECTED_PATH) -> None:
    """Store ``fp`` as the committed digests for ``fp.steps`` steps (``--write``), keeping
    the entries of other step counts, with the NumPy and Python versions it was made with."""
    data = load_expected(path) or {}
    digests = data.get("digests", {})
    digests[str(fp.steps)] = {
        "total": fp.total,
        "sections": fp.sections,
        "configurations_per_section": fp.counts,
    }
    data = {
        "about": "python -m refoptim fingerprint --write regenerates this file; what is hashed: "
        "refoptim/fingerprint.py and docs/conformance.md",
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "digests": {k: digests[k] for k in sorted(digests, key=int, reverse=True)},
    }
    with open(path, "w") as fh:
        json.dump(data, fh, indent=1)
        fh.write("\n")
