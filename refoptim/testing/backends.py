"""The array backends refoptim is tested on, in one registry.

Every test and tool that runs refoptim on more than NumPy (the unit tests' ``xp`` fixture,
``python -m refoptim conformance --backend``, ``python -m refoptim bench --backend``) asks
this module which backends exist, whether each can run here, and how to move arrays between
it and NumPy:

- ``numpy``: always available; refoptim's own reference backend.
- ``array-api-strict``: the standard's strict reference library (it wraps NumPy, so its
  figures must be bit-identical to NumPy's); available when the package is installed
  (the ``test`` extra installs it).
- ``cupy``: CuPy on a CUDA GPU; available when ``cupy`` imports *and* reports at least one
  CUDA device (``pip install -e ".[cuda]"`` on a machine with a GPU).
- ``jax``: JAX arrays with 64-bit types on (``jax_enable_x64``); ``jax-x32``: JAX with them
  off (its default), where no float64 exists. x64 is one switch per process: the first of
  the two used in a process sets it, and the other is then unavailable there (run it in
  its own process, as the tests do). ``pip install -e ".[jax]"``.
- ``dask``: Dask arrays, chunked (every array of more than one element in up to three
  chunks along its first axis), computed by Dask's default threaded scheduler;
  ``dask-distributed``: the same arrays computed on a ``distributed.LocalCluster`` of two
  worker processes, started on first use and closed at exit. ``pip install -e ".[dask]"``.
- ``torch``: PyTorch CPU tensors (through array-api-compat); ``torch-cuda``: CUDA tensors,
  where torch sees a GPU. torch is in the ``test`` extra.
- ``ndonnx``: ndonnx arrays (ONNX-backed, evaluated eagerly with onnxruntime's reference
  kernels). ``pip install -e ".[ndonnx]"``.

Nothing here imports a backend until it is asked about, and an unavailable backend is
described by a reason (the import error, no device, ...), never an exception.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "BACKEND_NAMES",
    "DEVIATIONS",
    "NOT_RUN",
    "Backend",
    "BackendUnavailable",
    "available_backends",
    "backend_table",
    "deviations_of",
    "get_backend",
    "require_backend",
    "to_numpy",
]

BACKEND_NAMES: tuple[str, ...] = (
    "numpy",
    "array-api-strict",
    "cupy",
    "jax",
    "jax-x32",
    "dask",
    "dask-distributed",
    "torch",
    "torch-cuda",
    "ndonnx",
)
"""Every backend of the registry, in the order tests are parametrized over them."""


class BackendUnavailable(RuntimeError):
    """Raised by :func:`require_backend` for a backend that cannot run here; the message
    names the backend and says why."""


# --------------------------------------------------------------------------- probes
def _probe_numpy() -> tuple[bool, str]:
    return True, ""


def _probe_array_api_strict() -> tuple[bool, str]:
    try:
        importlib.import_module("array_api_strict")
    except Exception as exc:  # noqa: BLE001 - any failure means "not here"
        return False, f"array_api_strict does not import ({type(exc).__name__}: {exc}); pip install array-api-strict"
    return True, ""


def _probe_cupy() -> tuple[bool, str]:
    try:
        cupy = importlib.import_module("cupy")
    except Exception as exc:  # noqa: BLE001 - ImportError, or a CUDA library that fails to load
        return False, f"cupy does not import ({type(exc).__name__}: {exc}); pip install -e \".[cuda]\" on a machine with a GPU"
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # noqa: BLE001 - no driver, no device, ...
        return False, f"cupy imports but finds no CUDA device ({type(exc).__name__}: {exc})"
    if count <= 0:
        return False, "cupy imports but reports 0 CUDA devices"
    return True, ""


def _probe_module(module: str, extra: str) -> tuple[bool, str]:
    try:
        importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - any failure means "not here"
        return False, f"{module} does not import ({type(exc).__name__}: {exc}); pip install -e \".[{extra}]\""
    return True, ""


_JAX_X64: list[bool] = []  # the x64 mode this process chose for JAX (empty until one did)


def _probe_jax(x64: bool) -> tuple[bool, str]:
    ok, reason = _probe_module("jax", "jax")
    if not ok:
        return ok, reason
    if _JAX_X64 and _JAX_X64[0] != x64:
        other = "jax" if _JAX_X64[0] else "jax-x32"
        return False, f"this process already runs {other!r} (jax_enable_x64={_JAX_X64[0]}); run it in its own process"
    import jax

    jax.config.update("jax_enable_x64", x64)
    if not _JAX_X64:
        _JAX_X64.append(x64)
    return True, ""


def _probe_distributed() -> tuple[bool, str]:
    ok, reason = _probe_module("dask.array", "dask")
    return (ok, reason) if not ok else _probe_module("distributed", "dask")


def _probe_torch_cuda() -> tuple[bool, str]:
    ok, reason = _probe_module("torch", "test")
    if not ok:
        return ok, reason
    import torch

    if not torch.cuda.is_available():
        return False, "torch imports but sees no CUDA device"
    return True, ""


# --------------------------------------------------------------------------- conversions
def _numpy_from_numpy(a: np.ndarray) -> np.ndarray:
    return np.array(a, copy=True)


def _numpy_to_numpy(x: Any) -> np.ndarray:
    return np.array(x, copy=True)


def _strict_from_numpy(a: np.ndarray) -> Any:
    import array_api_strict

    return array_api_strict.asarray(np.array(a, copy=True))


def _strict_to_numpy(x: Any) -> np.ndarray:
    # DLPack shares the wrapped NumPy buffer; the copy makes the result independent.
    return np.array(np.from_dlpack(x), copy=True)


def _cupy_from_numpy(a: np.ndarray) -> Any:
    import cupy

    return cupy.asarray(np.ascontiguousarray(a))


def _cupy_to_numpy(x: Any) -> np.ndarray:
    return np.array(x.get(), copy=True)


def _cupy_synchronize() -> None:
    import cupy

    cupy.cuda.Device().synchronize()


def _nothing() -> None:
    return None


def _jax_from_numpy(a: np.ndarray) -> Any:
    import jax.numpy as jnp

    return jnp.asarray(np.array(a, copy=True))


def _jax_to_numpy(x: Any) -> np.ndarray:
    return np.array(x, copy=True)


def _jax_synchronize() -> None:
    return None  # to_numpy waits for the result; timings call block_until_ready themselves


def _dask_from_numpy(a: np.ndarray) -> Any:
    import dask.array as da

    chunks = tuple(max(1, -(-n // 3)) if i == 0 else n for i, n in enumerate(a.shape))
    return da.from_array(np.array(a, copy=True), chunks=chunks or ())


def _dask_to_numpy(x: Any) -> np.ndarray:
    return np.array(x.compute(), copy=True)


_CLUSTER: list[Any] = []  # (cluster, client) of dask-distributed, started on first use


def _distributed_client() -> Any:
    if not _CLUSTER:
        import atexit

        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster, set_as_default=True)
        _CLUSTER.extend([cluster, client])
        atexit.register(_close_cluster)
    return _CLUSTER[1]


def _close_cluster() -> None:
    if _CLUSTER:
        cluster, client = _CLUSTER
        _CLUSTER.clear()
        client.close()
        cluster.close()


def _distributed_from_numpy(a: np.ndarray) -> Any:
    _distributed_client()
    return _dask_from_numpy(a)


def _torch_from_numpy(a: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(np.array(a, copy=True))


def _torch_to_numpy(x: Any) -> np.ndarray:
    return np.array(x.detach().resolve_conj().resolve_neg().cpu().numpy(), copy=True)


def _torch_cuda_from_numpy(a: np.ndarray) -> Any:
    return _torch_from_numpy(a).to("cuda")


def _torch_cuda_synchronize() -> None:
    import torch

    torch.cuda.synchronize()


def _ndonnx_from_numpy(a: np.ndarray) -> Any:
    import ndonnx

    return ndonnx.asarray(np.array(a, copy=True))


def _ndonnx_to_numpy(x: Any) -> np.ndarray:
    return np.array(x.unwrap_numpy(), copy=True)


@dataclass(frozen=True)
class Backend:
    """One array backend: its name, the module it imports, and how arrays cross between it
    and NumPy. ``available``/``reason`` are probed once, on first use."""

    name: str
    module: str
    compat_module: str
    device: str
    _probe: Callable[[], tuple[bool, str]] = field(repr=False)
    _from_numpy: Callable[[np.ndarray], Any] = field(repr=False)
    _to_numpy: Callable[[Any], np.ndarray] = field(repr=False)
    _synchronize: Callable[[], None] = field(repr=False, default=_nothing)

    def _probed(self) -> tuple[bool, str]:
        known = _PROBED.get(self.name)
        if known is None:
            known = _PROBED[self.name] = self._probe()
        return known

    @property
    def available(self) -> bool:
        """True when this backend can run here (imports, and for CuPy has a CUDA device)."""
        return self._probed()[0]

    @property
    def reason(self) -> str:
        """Why the backend is unavailable (empty when it is available)."""
        return self._probed()[1]

    def namespace(self) -> Any:
        """The backend's Array API namespace, as array-api-compat wraps it (NumPy and CuPy)
        or the library itself (array-api-strict)."""
        return importlib.import_module(self.compat_module)

    def from_numpy(self, a: Any) -> Any:
        """A new array of this backend with ``a``'s dtype, shape and bits (``a`` is a NumPy
        array or anything ``np.asarray`` accepts)."""
        return self._from_numpy(np.asarray(a))

    def to_numpy(self, x: Any) -> np.ndarray:
        """A new NumPy array with the dtype, shape and bits of ``x`` (an array of this
        backend; CuPy copies it from the device)."""
        return self._to_numpy(x)

    def synchronize(self) -> None:
        """Wait until the backend's queued work is done (CuPy: the current device; the CPU
        backends do nothing): call it around timings."""
        self._synchronize()


_PROBED: dict[str, tuple[bool, str]] = {}

_REGISTRY: dict[str, Backend] = {
    "numpy": Backend("numpy", "numpy", "array_api_compat.numpy", "cpu", _probe_numpy, _numpy_from_numpy, _numpy_to_numpy),
    "array-api-strict": Backend(
        "array-api-strict",
        "array_api_strict",
        "array_api_strict",
        "cpu",
        _probe_array_api_strict,
        _strict_from_numpy,
        _strict_to_numpy,
    ),
    "cupy": Backend(
        "cupy", "cupy", "array_api_compat.cupy", "cuda", _probe_cupy, _cupy_from_numpy, _cupy_to_numpy, _cupy_synchronize
    ),
    "jax": Backend(
        "jax", "jax", "jax.numpy", "cpu", lambda: _probe_jax(True), _jax_from_numpy, _jax_to_numpy, _jax_synchronize
    ),
    "jax-x32": Backend(
        "jax-x32", "jax", "jax.numpy", "cpu", lambda: _probe_jax(False), _jax_from_numpy, _jax_to_numpy, _jax_synchronize
    ),
    "dask": Backend(
        "dask", "dask", "array_api_compat.dask.array", "cpu", lambda: _probe_module("dask.array", "dask"),
        _dask_from_numpy, _dask_to_numpy,
    ),
    "dask-distributed": Backend(
        "dask-distributed", "dask", "array_api_compat.dask.array", "cpu", _probe_distributed,
        _distributed_from_numpy, _dask_to_numpy,
    ),
    "torch": Backend(
        "torch", "torch", "array_api_compat.torch", "cpu", lambda: _probe_module("torch", "test"),
        _torch_from_numpy, _torch_to_numpy,
    ),
    "torch-cuda": Backend(
        "torch-cuda", "torch", "array_api_compat.torch", "cuda", _probe_torch_cuda,
        _torch_cuda_from_numpy, _torch_to_numpy, _torch_cuda_synchronize,
    ),
    "ndonnx": Backend(
        "ndonnx", "ndonnx", "ndonnx", "cpu", lambda: _probe_module("ndonnx", "ndonnx"), _ndonnx_from_numpy, _ndonnx_to_numpy
    ),
}

# The array types' top-level modules where they differ from the library's name.
_TYPE_MODULES = {"jaxlib": "jax"}


def get_backend(name: str) -> Backend:
    """The registry's entry for ``name`` (one of :data:`BACKEND_NAMES`), available or not."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown backend name={name!r}; known: {', '.join(BACKEND_NAMES)}") from None


def require_backend(name: str) -> Backend:
    """The entry for ``name``, or :class:`BackendUnavailable` saying why it cannot run here."""
    backend = get_backend(name)
    if not backend.available:
        raise BackendUnavailable(f"backend {name!r} is not available: {backend.reason}")
    return backend


def available_backends() -> list[Backend]:
    """The backends that can run here, in :data:`BACKEND_NAMES` order."""
    return [b for b in (_REGISTRY[n] for n in BACKEND_NAMES) if b.available]


def _backend_of(x: Any) -> Backend:
    module = type(x).__module__.split(".")[0]
    module = _TYPE_MODULES.get(module, module)
    for backend in _REGISTRY.values():
        if backend.module == module:
            return backend
    raise TypeError(f"to_numpy: x of type {type(x).__module__}.{type(x).__qualname__} is not an array of a known backend")


def to_numpy(x: Any) -> np.ndarray:
    """A new NumPy array with the bits of ``x``, an array of any registered backend (or a
    NumPy scalar/array); the backend is recognised by the array's type."""
    if isinstance(x, (np.ndarray, np.generic)):
        return np.array(x, copy=True)
    return _backend_of(x).to_numpy(x)


# --------------------------------------------------------------------------- one answer
_TORCH_SQRT = (
    "torch's CPU `sqrt` is not correctly rounded (a unit in the last place on some elements); "
    "with a correctly rounded one swapped in, every configuration is bit-identical, and on "
    "torch tensors refoptim gives torch.optim's bits"
)

_NO_FLOAT64_REDUCTIONS = (
    "refused with a TypeError that says to enable x64: their fixed-order float32 dot "
    "products and matrix products accumulate in float64, which a float32 pair cannot "
    "reproduce bit for bit (refoptim/_reduce.py)"
)

_DASK_SPARSE = (
    "sparse gradients fail (ValueError, NotImplementedError): coalescing a SparseGrad "
    "needs the size of its unique indices, which Dask knows only after computing"
)

DEVIATIONS: dict[tuple[str, str], str] = {
    ("jax-x32", "Adagrad (sparse)"): (
        "complex64 sparse gradients: the complex sqrt and division are evaluated in float64 "
        "parts everywhere else; without float64 they are JAX's own (a unit in the last place)"
    ),
    ("jax-x32", "LBFGS"): _NO_FLOAT64_REDUCTIONS,
    ("jax-x32", "Muon"): _NO_FLOAT64_REDUCTIONS,
    **{
        (backend, section): _DASK_SPARSE
        for backend in ("dask", "dask-distributed")
        for section in ("Adagrad (sparse)", "SGD (sparse)", "SparseAdam")
    },
    **{
        ("torch", section): _TORCH_SQRT
        for section in (
            "ASGD", "Adadelta", "Adafactor", "Adagrad", "Adagrad (sparse)", "Adam", "AdamW",
            "LBFGS", "Muon", "NAdam", "RAdam", "RMSprop", "SparseAdam",
        )
    },
}
"""Where a backend may give other bits than NumPy, with the measured cause, as
``{(backend, section): cause}``, a section being an optimizer's name (``"Adagrad
(sparse)"`` for its sparse-gradient configurations), ``"schedulers"`` or ``"swa_utils"``.
``tests/test_backend_agreement.py`` runs every backend that installs and fails on any
difference not listed here. A listed section may also agree on a given machine (the cause
is a library's kernel, which can differ per CPU); the README's table says "no" for it."""


NOT_RUN: dict[tuple[str, str], str] = {
    ("dask", "Muon"): (
        "not run: about 20 s per step even on a 4 x 3 matrix (its exact matrix product decides "
        "per band from the data, 98 computes per step) and it can fail on unknown chunk sizes"
    ),
    ("dask", "LBFGS"): (
        "not run: seconds per step (the closure's loss is computed at every read, "
        "recomputing the history), bit-identical where measured (docs/guides/dask.md)"
    ),
}
"""Sections :func:`refoptim.fingerprint.agreement` does not run on a backend, with the
measured reason (too slow to be a test there); the README's table lists them."""
NOT_RUN.update({("dask-distributed", section): why for (_, section), why in list(NOT_RUN.items())})


def deviations_of(name: str) -> dict[str, str]:
    """``{section: cause}`` of the sections where backend ``name`` may differ from NumPy."""
    return {section: cause for (backend, section), cause in DEVIATIONS.items() if backend == name}


# The README's rows: (backend names, library, how it runs, how it is verified). A row of
# several names is "yes" only when none of them has a deviation.
_TABLE_ROWS: tuple[tuple[tuple[str, ...], str, str, str], ...] = (
    (("numpy",), "NumPy", "CPU", "the reference"),
    (("array-api-strict",), "array-api-strict", "CPU (wraps NumPy)", "tests/test_backend_agreement.py"),
    (("cupy",), "CuPy", "CUDA GPU", "not yet run: no GPU has been lent to this project"),
    (("jax",), "JAX, x64 on", "eager, CPU", "tests/test_backend_agreement.py"),
    (("jax-x32",), "JAX, x64 off", "eager, CPU, float32 and complex64 only", "tests/test_backend_agreement.py"),
    (("jax-jit",), "JAX, x64 on", "`jax.jit` and `jax.lax.scan` of the functional steps", "tests/test_jax_jit.py"),
    (("dask",), "Dask", "threads, chunked", "tests/test_backend_agreement.py, tests/test_dask.py"),
    (("dask-distributed",), "Dask", "LocalCluster, 2 worker processes", "tests/test_dask.py (Adam, Adafactor); tests/test_backend_agreement.py with REFOPTIM_SLOW_BACKENDS=1"),
    (("torch",), "PyTorch tensors", "CPU", "tests/test_backend_agreement.py"),
    (("torch-cuda",), "PyTorch tensors", "CUDA GPU", "not yet run: no GPU has been lent to this project"),
    (("ndonnx",), "ndonnx", "eager (onnxruntime), no complex dtypes", "tests/test_backend_agreement.py"),
)


JIT_DIFFERS = ("SGD", "AdamW", "Adadelta", "NAdam", "RMSprop")
"""The elementwise optimizers whose ``jax.jit``-compiled functional steps differ from eager
(and so from NumPy) in some configuration of ``tests/test_jax_jit.py``, which checks this
list against what it measures."""

_JIT_CAUSE = (
    "XLA contracts `a * b + c` into a fused multiply-add when it compiles (a unit in the "
    "last place; no flag turns it off); the per-step scalars are Python's, and the other "
    "elementwise optimizers compile to eager's bits; L-BFGS and Adafactor do not compile"
)


def backend_table() -> str:
    """The README's table of backends, from :data:`DEVIATIONS`: for each library and mode,
    whether every optimizer gives NumPy's bits, and where not, the sections and the cause."""
    lines = [
        "| library | runs | bit-identical to NumPy | checked by |",
        "|---|---|---|---|",
    ]
    for names, library, runs, checked in _TABLE_ROWS:
        if names == ("numpy",):
            verdict = "(reference)"
        elif names == ("jax-jit",):
            verdict = f"no: {', '.join(sorted(JIT_DIFFERS))}: {_JIT_CAUSE}"
        elif checked.startswith("not yet run"):
            verdict = "not measured"
        else:
            found: dict[str, list[str]] = {}
            skipped: dict[str, list[str]] = {}
            for name in names:
                for section, cause in deviations_of(name).items():
                    found.setdefault(cause, []).append(section)
                for (backend, section), why in NOT_RUN.items():
                    if backend == name:
                        skipped.setdefault(why, []).append(section)
            if not found:
                verdict = "yes, every case run" if skipped else "yes, every optimizer, scheduler and swa_utils case"
            else:
                verdict = "no: " + "; ".join(
                    f"{', '.join(sorted(set(sections)))}: {cause}" for cause, sections in found.items()
                )
            verdict += "".join(f"; {', '.join(sorted(set(sections)))} {why}" for why, sections in skipped.items())
        lines.append(f"| {library} | {runs} | {verdict} | {checked} |")
    return "\n".join(lines) + "\n"
