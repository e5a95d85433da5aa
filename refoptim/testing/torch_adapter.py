"""The torch side of conformance: build the torch twin of a configuration from the same
seed, and convert parameters and state between torch and NumPy in both directions.

The refoptim side runs on NumPy unless another backend of
:mod:`refoptim.testing.backends` is named (``array-api-strict``, ``cupy``); the torch side
on the CPU with ``foreach=False`` unless another device (``cuda``) or torch's
multi-tensor path (``foreach=True``) is asked for.

Importing this module imports torch (``pip install torch==2.13.0``).
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import torch

import refoptim
import refoptim._backend

from . import backends
from .matrix import SHAPES, Config

__all__ = [
    "NUMPY_DTYPES",
    "TORCH_DEVICES",
    "Twin",
    "build_refoptim",
    "build_twin",
    "from_torch",
    "numpy_state_dict",
    "refoptim_params",
    "to_torch",
    "torch_device_unavailable",
    "torch_options",
    "torch_state_dict",
]

NUMPY_DTYPES = {"float32": np.float32, "float64": np.float64, "complex64": np.complex64}
TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64, "complex64": torch.complex64}

TORCH_DEVICES = ("cpu", "cuda")
"""The devices the torch side of conformance can run on."""


def torch_device_unavailable(device: str) -> str:
    """Why torch cannot run on ``device`` here, or an empty string when it can."""
    if device not in TORCH_DEVICES:
        return f"unknown torch device={device!r}; known: {', '.join(TORCH_DEVICES)}"
    if device == "cuda" and not torch.cuda.is_available():
        return (
            f"torch {torch.__version__} sees no CUDA device (torch.cuda.is_available() is False; "
            f"torch.version.cuda is {torch.version.cuda!r}): install a CUDA build of torch on a machine with a GPU"
        )
    return ""


def to_torch(a: Any) -> torch.Tensor:
    """A NumPy array (or scalar) as a new torch tensor of the same dtype and values."""
    return torch.from_numpy(np.array(a, copy=True))


def from_torch(t: torch.Tensor) -> np.ndarray:
    """A torch tensor as a new NumPy array of the same dtype and values."""
    return np.array(t.detach().cpu().resolve_conj().numpy(), copy=True)


def _map_leaves(value: Any, is_leaf: Any, convert: Any) -> Any:
    """``convert`` applied to every leaf of nested dicts, lists and tuples."""
    if is_leaf(value):
        return convert(value)
    if isinstance(value, dict):
        return {k: _map_leaves(v, is_leaf, convert) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_map_leaves(v, is_leaf, convert) for v in value)
    return value


def numpy_state_dict(torch_state_dict: dict[str, Any]) -> dict[str, Any]:
    """A torch optimizer's ``state_dict()`` with every tensor as a NumPy array: loadable by
    the refoptim optimizer of the same class with ``load_state_dict``."""
    return _map_leaves(torch_state_dict, lambda v: isinstance(v, torch.Tensor), from_torch)


def torch_state_dict(refoptim_state_dict: dict[str, Any]) -> dict[str, Any]:
    """A refoptim optimizer's ``state_dict()`` with every array as a torch tensor: loadable
    by the torch optimizer of the same class with ``load_state_dict``."""
    return _map_leaves(refoptim_state_dict, refoptim._backend.is_array, lambda a: to_torch(np.asarray(a)))


def torch_options(options: dict[str, Any]) -> dict[str, Any]:
    """Constructor options with NumPy arrays (a tensor ``lr``, tensor betas) as torch tensors."""
    return _map_leaves(options, lambda v: isinstance(v, np.ndarray), to_torch)


def initial_values(cfg: Config) -> list[np.ndarray]:
    """The initial parameter values of a configuration, from its seed."""
    rng = np.random.default_rng(cfg.seed)
    dtype = NUMPY_DTYPES[cfg.dtype]
    out = []
    for shape in SHAPES:
        shape = (3, 4) if shape == "view" else shape
        x = rng.standard_normal(shape)
        if cfg.objective == "rosenbrock":
            x = 0.5 + 0.25 * x
        if np.dtype(dtype).kind == "c":
            x = x + 1j * rng.standard_normal(shape)
        out.append(np.asarray(x, dtype=dtype))
    return out


class Twin:
    """Parameters and an optimizer of one configuration on one side (refoptim or torch)."""

    def __init__(self, params: list[Any], optimizer: Any) -> None:
        self.params = params
        self.optimizer = optimizer


def _groups(cfg: Config, params: list[Any], convert: Any = None) -> list[Any]:
    """The params argument: a plain list, or groups taking parameters round-robin, each
    group's options passed through ``convert`` (e.g. :func:`torch_options`) when given."""
    if not cfg.groups:
        return params
    groups = [{"params": [], **(convert(g) if convert else g)} for g in cfg.groups]
    for i, p in enumerate(params):
        groups[i % len(groups)]["params"].append(p)
    return groups


def refoptim_class(name: str) -> type:
    """refoptim's optimizer class of a torch.optim name: ``refoptim.<name>``, or found in
    its own module ``refoptim.<name lowercased>`` before it is exported."""
    cls = getattr(refoptim, name, None)
    if cls is None:
        cls = getattr(importlib.import_module(f"refoptim.{name.lower()}"), name)
    return cls


def refoptim_params(shapes: Any, values: list[np.ndarray], backend: str = "numpy") -> list[Any]:
    """refoptim Parameters holding copies of ``values`` as arrays of ``backend`` (a name of
    :mod:`refoptim.testing.backends`); where ``shapes`` says ``"view"``, a non-contiguous
    view (every other row, columns 1 to 4, of a (6, 9) array)."""
    b = backends.require_backend(backend)
    params = []
    for shape, value in zip(shapes, values):
        if shape == "view":
            base = b.from_numpy(np.zeros((6, 9), dtype=value.dtype))
            data = base[::2, 1:5]
            data[...] = b.from_numpy(value)
        else:
            data = b.from_numpy(value)
        params.append(refoptim.Parameter(data))
    return params


def build_refoptim(cfg: Config, values: list[np.ndarray], backend: str = "numpy") -> Twin:
    """The refoptim side on ``backend`` (a name of :mod:`refoptim.testing.backends`;
    default NumPy), the view parameter a non-contiguous view. On another backend than NumPy
    the array options (a 0-d ``lr``) become that backend's arrays too."""
    params = refoptim_params(SHAPES, values, backend)
    convert = None
    if backend != "numpy":
        b = backends.require_backend(backend)

        def convert(opts: dict[str, Any]) -> dict[str, Any]:
            return _map_leaves(opts, lambda v: isinstance(v, np.ndarray), b.from_numpy)

    options = {"foreach": False, **(convert(cfg.options) if convert else cfg.options)}
    optimizer = refoptim_class(cfg.optimizer)(_groups(cfg, params, convert), **options)
    return Twin(params, optimizer)


def build_twin(cfg: Config, values: list[np.ndarray], device: str = "cpu", foreach: bool = False) -> Twin:
    """The torch side (default CPU, ``foreach=False``): the same values, the view a view
    too, on ``device``; ``foreach=True`` picks torch's multi-tensor path. Array options (a
    tensor ``lr``) stay on the CPU, as torch's own tests pass them."""
    params = []
    for shape, value in zip(SHAPES, values):
        if shape == "view":
            base = torch.zeros((6, 9), dtype=TORCH_DTYPES[cfg.dtype], device=device)
            t = base[::2, 1:5]
            with torch.no_grad():
                t.copy_(to_torch(value))
            t.requires_grad_(True)
        else:
            t = to_torch(value).to(device).requires_grad_(True)
        params.append(t)
    options = {"foreach": foreach, **torch_options(cfg.options)}
    optimizer = getattr(torch.optim, cfg.optimizer)(_groups(cfg, params, torch_options), **options)
    return Twin(params, optimizer)
