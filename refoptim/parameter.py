"""``Parameter``: an array that an optimizer updates, with its gradient beside it."""

from __future__ import annotations

from typing import Any

from ._backend import array_namespace, device_of, is_array, refusal, typename
from .sparse import SparseGrad

__all__ = ["Parameter"]


class Parameter:
    """An array to optimize, carrying ``.data`` and ``.grad`` the way a torch tensor does.

    Args:
        data: an array of any Array API library (NumPy, CuPy, array-api-strict, ...).
        name: an optional name, used in error messages and shown by ``repr``.

    ``grad`` starts as ``None``; it holds a dense array or a :class:`refoptim.SparseGrad`
    (a sparse COO gradient, whose values must match ``data``'s namespace, device and dtype
    and whose dense shape must be ``data``'s). Assigning a gradient checks it against ``data`` as torch
    2.13 does (``RuntimeError: attempting to assign a gradient of size ...``, and likewise
    for a different dtype or device; ``TypeError`` for something that is not an array);
    an optimizer step checks again, because ``data`` may have been rebound since. Optimizers update ``data`` in place where the array is
    writeable and rebind it otherwise (immutable arrays), so always read ``p.data`` after
    a step rather than keeping an old reference.

    Example:
        >>> import numpy as np
        >>> import refoptim
        >>> w = refoptim.Parameter(np.zeros(3), name="w")
        >>> w.grad = np.ones(3)
        >>> w
        Parameter(name='w', shape=(3,), dtype=float64)
    """

    __slots__ = ("_data", "_grad", "name", "__weakref__")

    def __init__(self, data: Any, name: str | None = None) -> None:
        if isinstance(data, Parameter):
            data = data.data
        self.data = data
        self._grad = None
        self.name = name

    @property
    def data(self) -> Any:
        """The parameter's array."""
        return self._data

    @data.setter
    def data(self, value: Any) -> None:
        if not is_array(value):
            why = " (masked arrays are not supported: a step would skip their masked elements)" if typename(value).startswith("numpy.ma.") else ""
            raise TypeError(
                f"Parameter data must be an array of an Array API library, but got {typename(value)}{why}"
            )
        why_not = refusal(value)
        if why_not is not None:
            raise TypeError(f"Parameter data cannot be {why_not}")
        self._data = value

    @property
    def grad(self) -> Any:
        """The gradient array, or ``None`` (the parameter is then skipped by a step)."""
        return self._grad

    @grad.setter
    def grad(self, value: Any) -> None:
        if value is not None:
            if isinstance(value, SparseGrad):
                self._check_grad(value.values, value.dtype, value.shape)
                self._grad = value
                return
            if not is_array(value):
                raise TypeError(
                    f"assigned grad expected to be an array or None but got grad of type {typename(value)}"
                )
            why_not = refusal(value)
            if why_not is not None and "requires grad" not in why_not:  # a gradient is only read
                raise TypeError(
                    f"assigned grad cannot be {why_not}; a sparse gradient is a refoptim.SparseGrad"
                    if "layout" in why_not
                    else f"assigned grad cannot be {why_not}"
                )
            self._check_grad(value, value.dtype, value.shape)
        self._grad = value

    def _check_grad(self, value: Any, dtype: Any, shape: tuple) -> None:
        """torch's checks on an assigned gradient: ``value`` is the array (a sparse
        gradient's values), ``dtype`` and ``shape`` the gradient's."""
        if array_namespace(value) is not array_namespace(self._data):
            raise TypeError(
                "assigned grad is an array of a different namespace: "
                f"{array_namespace(value).__name__} vs {array_namespace(self._data).__name__}"
            )
        if device_of(value) != device_of(self._data):
            raise RuntimeError(
                f"attempting to assign a gradient located on device '{device_of(value)}' to a "
                f"parameter located on device '{device_of(self._data)}'"
            )
        if dtype != self._data.dtype:
            raise RuntimeError(
                f"attempting to assign a gradient with dtype '{dtype}' to a parameter with "
                f"dtype '{self._data.dtype}'. The gradient must match the parameter's dtype"
            )
        if tuple(shape) != tuple(self._data.shape):
            raise RuntimeError(
                f"attempting to assign a gradient of size '{list(shape)}' to a tensor of size "
                f"'{list(self._data.shape)}'. Please ensure that the gradient and the tensor are the same size"
            )

    @property
    def shape(self) -> tuple:
        """Shape of ``data``."""
        return tuple(self._data.shape)

    @property
    def dtype(self) -> Any:
        """Dtype of ``data``."""
        return self._data.dtype

    @property
    def device(self) -> Any:
        """Device of ``data``."""
        return device_of(self._data)

    def __repr__(self) -> str:
        name = f"name={self.name!r}, " if self.name is not None else ""
        return f"Parameter({name}shape={self.shape}, dtype={self.dtype})"

    def __getstate__(self) -> dict:
        return {"data": self._data, "grad": self._grad, "name": self.name}

    def __setstate__(self, state: dict) -> None:
        self._data = state["data"]
        self._grad = state["grad"]
        self.name = state["name"]
