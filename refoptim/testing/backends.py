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
    "Backend",
    "BackendUnavailable",
    "available_backends",
    "get_backend",
    "require_backend",
    "to_numpy",
]

BACKEND_NAMES: tuple[str, ...] = ("numpy", "array-api-strict", "cupy")
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
}


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
