"""An immutable array stand-in: the Array API pieces refoptim's rules use, and no mutation.

``ImmutableArray`` wraps a read-only NumPy array. It has the binary and unary operators,
comparisons, ``__getitem__``, ``shape``/``dtype``/``device`` and ``__array_namespace__``,
but *no* in-place operators (``x += y`` rebinds ``x`` to a new array, as on JAX) and a
``__setitem__`` that raises ``TypeError`` (as JAX's does). Its namespace delegates to
``array_api_compat.numpy``, wrapping and unwrapping. It refuses to mix with NumPy arrays,
so a code path that leaks a backend-specific array shows up as an error.
"""

from __future__ import annotations

import operator
from typing import Any

import array_api_compat.numpy as cnp
import numpy as np

_SCALARS = (bool, int, float, complex)


def _unwrap(x: Any) -> Any:
    if isinstance(x, ImmutableArray):
        return x._a
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v) for v in x)
    if isinstance(x, np.ndarray) or isinstance(x, np.generic):
        raise TypeError("ImmutableArray does not mix with NumPy arrays")
    return x


def _wrap(x: Any) -> Any:
    if isinstance(x, (np.ndarray, np.generic)):
        return ImmutableArray(np.asarray(x))
    return x


class ImmutableArray:
    """A read-only array with the Array API's operators but no in-place ones."""

    __slots__ = ("_a",)
    __hash__ = None  # type: ignore[assignment]
    __array_ufunc__ = None  # NumPy defers to us, and we refuse NumPy operands

    def __init__(self, a: Any) -> None:
        a = np.array(a, copy=True)
        a.flags.writeable = False
        object.__setattr__(self, "_a", a)

    # -- identity / introspection
    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("ImmutableArray is immutable")

    def __array_namespace__(self, api_version: str | None = None) -> "_Namespace":
        return namespace

    def unwrap(self) -> np.ndarray:
        """A writeable NumPy copy (for the tests' comparisons only)."""
        return np.array(self._a, copy=True)

    @property
    def shape(self) -> tuple:
        return self._a.shape

    @property
    def dtype(self) -> Any:
        return self._a.dtype

    @property
    def ndim(self) -> int:
        return self._a.ndim

    @property
    def size(self) -> int:
        return self._a.size

    @property
    def device(self) -> str:
        return "cpu"

    def __repr__(self) -> str:
        return f"ImmutableArray({self._a!r})"

    # -- no mutation
    def __setitem__(self, key: Any, value: Any) -> None:
        raise TypeError("'ImmutableArray' object does not support item assignment")

    def __getitem__(self, key: Any) -> "ImmutableArray":
        return _wrap(np.asarray(self._a[_unwrap(key)]))

    # -- conversions (0-d only, like the standard)
    def __float__(self) -> float:
        return float(self._a)

    def __complex__(self) -> complex:
        return complex(self._a)

    def __int__(self) -> int:
        return int(self._a)

    def __bool__(self) -> bool:
        return bool(self._a)

    def __index__(self) -> int:
        return operator.index(self._a)


def _binary(op: Any, reflected: bool = False) -> Any:
    def method(self: ImmutableArray, other: Any) -> Any:
        if not isinstance(other, (ImmutableArray,) + _SCALARS):
            return NotImplemented
        a, b = self._a, _unwrap(other)
        return _wrap(np.asarray(op(b, a) if reflected else op(a, b)))

    return method


def _unary(op: Any) -> Any:
    def method(self: ImmutableArray) -> Any:
        return _wrap(np.asarray(op(self._a)))

    return method


for _name, _op in {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "truediv": operator.truediv,
    "floordiv": operator.floordiv,
    "mod": operator.mod,
    "pow": operator.pow,
}.items():
    setattr(ImmutableArray, f"__{_name}__", _binary(_op))
    setattr(ImmutableArray, f"__r{_name}__", _binary(_op, reflected=True))
for _name, _op in {
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
    "eq": operator.eq,
    "ne": operator.ne,
    "and": operator.and_,
    "or": operator.or_,
}.items():
    setattr(ImmutableArray, f"__{_name}__", _binary(_op))
for _name, _op in {"neg": operator.neg, "pos": operator.pos, "abs": operator.abs, "invert": operator.invert}.items():
    setattr(ImmutableArray, f"__{_name}__", _unary(_op))


def _delegate(name: str) -> Any:
    fn = getattr(cnp, name)

    def f(*args: Any, **kwargs: Any) -> Any:
        args = tuple(_unwrap(a) for a in args)
        kwargs = {k: _unwrap(v) for k, v in kwargs.items()}
        return _wrap(fn(*args, **kwargs))

    f.__name__ = name
    return f


class _Namespace:
    """The stand-in's array namespace: array_api_compat.numpy's functions, wrapped."""

    __name__ = "immutable_standin"

    float32 = cnp.float32
    float64 = cnp.float64
    complex64 = cnp.complex64
    complex128 = cnp.complex128
    int32 = cnp.int32
    int64 = cnp.int64
    bool = cnp.bool

    def __init__(self) -> None:
        for name in (
            "sqrt",
            "maximum",
            "minimum",
            "astype",
            "zeros",
            "zeros_like",
            "ones_like",
            "real",
            "imag",
            "stack",
            "abs",
            "sign",
            "where",
            "isfinite",
            "full",
            "full_like",
            "empty_like",
            "reshape",
            "sum",
            "conj",
            "signbit",
            "ones",
            "min",
            "max",
            "any",
            "clip",
        ):
            object.__setattr__(self, name, _delegate(name))

    def isdtype(self, dtype: Any, kind: Any) -> bool:
        return cnp.isdtype(dtype, kind)

    def asarray(self, obj: Any, /, *, dtype: Any = None, device: Any = None, copy: Any = None) -> ImmutableArray:
        # Every ImmutableArray is its own copy: nothing can write into it.
        return ImmutableArray(cnp.asarray(_unwrap(obj), dtype=dtype))

    def __repr__(self) -> str:
        return "<immutable stand-in namespace>"


namespace = _Namespace()


def wrap(a: np.ndarray) -> ImmutableArray:
    """A NumPy array as an ImmutableArray (a read-only copy)."""
    return ImmutableArray(a)
