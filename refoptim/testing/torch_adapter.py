"""The torch side of conformance: build the torch twin of a configuration from the same
seed, and convert parameters and state between torch and NumPy in both directions.

The refoptim side runs on NumPy unless another backend of
:mod:`refoptim.testing.backends` is named (``array-api-strict``, ``cupy``); the torch side
on the CPU with ``foreach=False`` unless another device (``cuda``) or torch's
multi-tensor path (``foreach=True``) is asked for.

The torch-free parts (:func:`initial_values`, :func:`build_refoptim`,
:func:`refoptim_params`, ...) live in :mod:`refoptim.testing.inputs` and are importable
from here too. Importing this module imports torch (``pip install torch==2.13.0``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

import refoptim
import refoptim._backend

from .inputs import (  # the torch-free parts, kept importable from here
    NUMPY_DTYPES,
    Twin,
    _groups,
    _map_leaves,
    build_refoptim,
    initial_values,
    refoptim_class,
    refoptim_params,
)
from .matrix import SHAPES, Config

__all__ = [
    "NUMPY_DTYPES",
    "TORCH_DEVICES",
    "Twin",
    "build_refoptim",
    "build_twin",
    "from_torch",
    "initial_values",
    "numpy_state_dict",
    "refoptim_class",
    "refoptim_params",
    "to_torch",
    "torch_device_unavailable",
    "torch_options",
    "torch_state_dict",
]

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
