r"""Per-step scalars (bias corrections, step sizes) that stay exact when the step count
cannot be read: under ``jax.jit`` or ``jax.lax.scan``, and on lazy arrays (Dask, ndonnx).

torch computes a rule's bias corrections in Python double precision from the step count it
reads with ``step_t.item()``::

    step = float(step_t)
    bias_correction1 = 1 - beta1**step        # C's pow, rounded to a double
    step_size = lr / bias_correction1         # a Python float, cast to the kernel's dtype

A rule here writes the same lines with ``step = step_count(step_t)``. Where the step
array is concrete (NumPy, CuPy, torch, array-api-strict, an eager JAX array)
:func:`step_count` returns the Python float ``float(step_t)`` and nothing else changes:
the arithmetic is Python's, bit for bit what it always was. Where it is not (a JAX tracer,
a Dask array, which ``float()`` would compute), it returns a :class:`LazyFloat`: a
stand-in that *records* the arithmetic done with it (``1 - beta1**step``,
``lr / bias_correction1``, ...) as a function of the integer step ``t``, and turns it into
an array only where it meets one:

- **a table of exact Python values.** The recorded function is evaluated with Python
  floats for ``t = 1, 2, ..., T``, where ``T`` is the step from which the value no longer
  changes (``1 - 0.9**t`` is ``1.0`` in double precision from ``t = 356``;
  ``1 - 0.999**t`` from ``t = 37,412``; NAdam's momentum cache settles at ``t = 224,982``),
  and indexed with the traced step (``xp.take``), clamped beyond ``T``. Every value is the
  one Python computes, so eager and compiled runs agree bit for bit, whatever the array
  library's own ``pow`` does. The table is built once per expression (cached) at trace
  time: 37,000 entries take about 0.1 s, NAdam's 225,000 about 1 s.
- **array arithmetic** where no table fits (the value keeps changing up to the float32
  step count's limit :math:`2^{24}`, or needs more than :data:`TABLE_LIMIT` entries):
  the recorded function is evaluated in float64 array operations. ``+ - * /`` are IEEE
  operations, identical to Python's; ``**`` is then the array library's ``pow``, which is
  *not* C's: XLA's float64 ``pow`` differs from it in the last bit on about a third of
  inputs. Only ASGD's ``eta`` takes this path with a ``**`` in it, and it is stored as
  float32, where the difference vanishes: XLA's ``pow`` rounded to float32 equals C's
  ``pow`` rounded to float32 at every step ``1 .. 2**24`` for the three configurations
  measured (``(lr, lambd, alpha)`` = ``(0.01, 1e-4, 0.75)``, ``(0.1, 1e-3, 0.5)``,
  ``(0.05, 1e-2, 0.9)``; ``tests/test_jax_jit.py`` checks steps 1 to 699, 36,000 to 37,200 and
  :math:`2^{20}`, :math:`2^{24}`). Under ``jax.jit`` XLA on CPU also contracts
  ``a * b + c`` into one fused multiply-add, so such arithmetic can differ from Python's
  by a unit there (Adagrad's ``lr / (1 + (t - 1) lr_decay)``, NAdam's
  ``1 - mu_product * mu_next``); tables are immune (docs/guides/jax.md).

A state value torch reads as a Python float (NAdam's ``mu_product``, ASGD's ``eta`` and
``mu``) goes through :func:`read_float`: ``float(x)`` when concrete, else a
:class:`LazyFloat` holding ``x`` as a 0-d float64 array, whose arithmetic is float64
array arithmetic (IEEE, so Python's). A branch on such a value (RAdam's ``rho_t > 5``,
ASGD's ``mu != 1``) is written :func:`if_else`, which runs one branch for a Python bool
and both, joined by ``xp.where``, for a lazy one.

When a :class:`LazyFloat` meets an array it is cast to the array's dtype, as a Python float
is (NumPy's NEP 50 and torch's ``Scalar`` rounding alike): a float32 parameter sees the
double value rounded once to float32.

With JAX's x64 mode off there are no float64 arrays: tables are stored as float32, which
is exact for a value that meets a float32 array directly (Adam, AdamW, Adamax, RAdam,
Adagrad without ``lr_decay``: every value above that comes from a table); a value
computed in array arithmetic (NAdam's step sizes, Adagrad's decayed lr, ASGD's ``mu``,
``eta``) is then computed in float32 and may differ from torch's by a unit in the last
place.

Why tables, rather than an exact ("double-double") ``pow`` in float64 array arithmetic:
each entry is the value Python computes, so exactness needs no proof and no grid; a
lookup is one gather per value per step, on Dask one small task; the compiler cannot
rewrite a constant (XLA contracts multiply-adds and replaces divisions by scalars, which
would break an error-free transformation's assumptions); and a float32 table stays exact
with x64 off. The cost is a table built at trace time and held by the compiled program
(at most :data:`TABLE_LIMIT` entries; 37,412 for Adam's default ``beta2``).
"""

from __future__ import annotations

import math
import operator
import struct
import sys
from collections import OrderedDict
from typing import Any, Callable

from array_api_compat import is_lazy_array as _is_lazy_array

from ._backend import array_namespace, device_of, is_array

__all__ = ["LazyFloat", "TABLE_LIMIT", "if_else", "is_concrete", "maximum", "read_float", "step_count", "to_array"]

MAX_STEP = 2**24
"""The largest step count a float32 ``step`` reaches (it stops counting there, as torch's)."""

TABLE_LIMIT = 2**20
"""The most entries a per-step table may have (8 MiB of float64)."""

_CONCRETE: dict[type, bool] = {}


def is_concrete(x: Any) -> bool:
    """True where ``float(x)`` reads a value without running anything: NumPy, CuPy, torch,
    array-api-strict, an eager JAX array. False for a JAX tracer (inside ``jax.jit``,
    ``jax.lax.scan``, ...) and for the arrays of a lazy library (Dask, ndonnx), where it
    would fail or compute the graph. Decided per type."""
    kind = type(x)
    known = _CONCRETE.get(kind)
    if known is None:
        try:
            known = not _is_lazy_array(x)
        except Exception:  # a type array-api-compat cannot classify: read it as eager
            known = True
        jax = sys.modules.get("jax")
        if not known and jax is not None and isinstance(x, jax.Array):
            known = not isinstance(x, jax.core.Tracer)  # an eager JAX array holds its value
        _CONCRETE[kind] = known
    return known


def step_count(step_t: Any) -> Any:
    """The step count as torch reads it (``step_t.item()``): a Python float where
    ``step_t`` is concrete, else a :class:`LazyFloat` of the step."""
    if is_concrete(step_t):
        return float(step_t)
    return LazyFloat(step=step_t, expr=_T)


def read_float(x: Any) -> Any:
    """A 0-d state array read as a Python float (torch's ``.item()``): ``float(x)`` where
    concrete, else a :class:`LazyFloat` holding it in float64."""
    if is_concrete(x):
        return float(x)
    return LazyFloat(value=_float64(array_namespace(x), x))


def if_else(condition: Any, then: Callable[[], Any], otherwise: Callable[[], Any]) -> Any:
    """``then() if condition else otherwise()``; for a lazy ``condition`` both branches
    run and ``xp.where`` picks per element (each branch returns an array)."""
    if not isinstance(condition, LazyFloat):
        return then() if condition else otherwise()
    a, b = then(), otherwise()
    xp = array_namespace(a)
    return xp.where(condition._array(), a, b)


def maximum(a: Any, b: Any) -> Any:
    """Python's ``max(a, b)``, for Python floats and :class:`LazyFloat` alike."""
    if isinstance(a, LazyFloat) or isinstance(b, LazyFloat):
        return _combine("max", a, b)
    return max(a, b)


def to_array(value: Any, dtype: Any, like: Any) -> Any:
    """A Python float or a :class:`LazyFloat` as a 0-d array of ``dtype`` in ``like``'s
    namespace (torch's ``torch.as_tensor(value, dtype=dtype)``)."""
    if isinstance(value, LazyFloat):
        xp = array_namespace(like)
        return xp.astype(value._array(), dtype)
    xp = array_namespace(like)
    return xp.asarray(value, dtype=dtype, device=device_of(like))


# -- recorded expressions ------------------------------------------------------------------
# An expression is the step ``_T``, a Python number, or a tuple ``(op, operand, ...)``.

_T = ("t",)


def _py_max(a: float, b: float) -> float:
    return max(a, b)


_PY_OPS: dict[str, Callable[..., Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "**": operator.pow,
    "neg": operator.neg,
    "abs": abs,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    "max": _py_max,
}
_COMPARISONS = {">", ">=", "<", "<=", "==", "!="}


def _compile(expr: Any) -> Callable[[float], Any]:
    """The expression as a Python function of the step ``t`` (a float)."""
    if expr is _T or expr == _T:
        return lambda t: t
    if not isinstance(expr, tuple):
        return lambda t: expr
    op, *args = expr
    fn = _PY_OPS[op]
    parts = [_compile(a) for a in args]
    if len(parts) == 1:
        (a,) = parts
        return lambda t: fn(a(t))
    a, b = parts
    return lambda t: fn(a(t), b(t))


def _is_bool(expr: Any) -> bool:
    return isinstance(expr, tuple) and expr[0] in _COMPARISONS


def _safe(fn: Callable[[float], Any]) -> Callable[[int], Any]:
    """``fn`` where Python would fail (a negative base to a fractional power, a division by
    zero): NaN. Such steps are only reached on a branch :func:`if_else` discards."""

    def value(t: int) -> Any:
        try:
            v = fn(float(t))
        except (ArithmeticError, ValueError):
            return math.nan
        return math.nan if isinstance(v, complex) else v

    return value


_D = struct.Struct("d")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    return _D.pack(a) == _D.pack(b)


_TABLES: OrderedDict[Any, Any] = OrderedDict()
_CACHE_SIZE = 64


def _table(expr: Any) -> Any:
    """The NumPy table ``[f(1), ..., f(T)]`` of the expression, or ``None`` where the value
    does not settle within :data:`TABLE_LIMIT` steps. Cached per expression."""
    try:
        found = _TABLES[expr]
        _TABLES.move_to_end(expr)
        return found
    except KeyError:
        pass
    import numpy as np

    f = _safe(_compile(expr))
    last = f(MAX_STEP)
    # the first step from which f stays at its final value (these values settle monotonically)
    lo, hi = 1, MAX_STEP
    while lo < hi:
        mid = (lo + hi) // 2
        if _same(f(mid), last):
            hi = mid
        else:
            lo = mid + 1
    settled = lo
    table = None
    if settled <= TABLE_LIMIT:
        checks = list(range(settled, min(settled + 256, MAX_STEP + 1)))
        checks += [int(settled * (MAX_STEP / settled) ** (k / 256)) for k in range(257)]
        if all(_same(f(t), last) for t in checks):
            dtype = np.bool_ if _is_bool(expr) else np.float64
            table = np.array([f(t) for t in range(1, settled + 1)], dtype=dtype)
    _TABLES[expr] = table
    if len(_TABLES) > _CACHE_SIZE:
        _TABLES.popitem(last=False)
    return table


_XP_TABLES: OrderedDict[Any, Any] = OrderedDict()


def _xp_table(xp: Any, table: Any, expr: Any, device: Any) -> Any:
    key = (expr, id(xp), repr(device))
    found = _XP_TABLES.get(key)
    if found is None:
        found = xp.asarray(table) if device is None else xp.asarray(table, device=device)
        jax = sys.modules.get("jax")
        if jax is not None and isinstance(found, jax.core.Tracer):
            return found  # a constant of the computation being traced: not to be kept
        _XP_TABLES[key] = found
        if len(_XP_TABLES) > _CACHE_SIZE:
            _XP_TABLES.popitem(last=False)
    return found


_INDEX_DTYPES: dict[int, Any] = {}


def _index_dtype(xp: Any) -> Any:
    """The namespace's default indexing dtype (int64, or int32 for JAX with x64 off;
    ndonnx's ``take`` accepts only int64)."""
    known = _INDEX_DTYPES.get(id(xp))
    if known is None:
        try:
            known = xp.__array_namespace_info__().default_dtypes()["indexing"]
        except Exception:  # an older namespace: no inspection API
            known = xp.int64
        _INDEX_DTYPES[id(xp)] = known
    return known


def _float64(xp: Any, x: Any) -> Any:
    return xp.astype(x, xp.float64)


def _evaluate(xp: Any, expr: Any, t: Any) -> Any:
    """The expression in array arithmetic, ``t`` a float64 array (see the module notes)."""
    if expr is _T or expr == _T:
        return t
    if not isinstance(expr, tuple):
        return expr
    op, *args = expr
    values = [_evaluate(xp, a, t) for a in args]
    if op == "max":
        a, b = (v if is_array(v) else xp.asarray(v, dtype=t.dtype) for v in values)
        return xp.maximum(a, b)
    if op == "abs":
        return xp.abs(values[0])
    return _PY_OPS[op](*values)


def _combine(op: str, a: Any, b: Any) -> Any:
    """``op(a, b)`` where one of ``a``, ``b`` is a :class:`LazyFloat` and the other a Python
    number or a :class:`LazyFloat`."""
    la = a if isinstance(a, LazyFloat) else None
    lb = b if isinstance(b, LazyFloat) else None
    steps = [x._step for x in (la, lb) if x is not None]
    if all(x is None or x._expr is not None for x in (la, lb)) and all(s is steps[0] for s in steps):
        # still a function of one step: keep recording
        ea = la._expr if la is not None else a
        eb = lb._expr if lb is not None else b
        return LazyFloat(step=steps[0], expr=(op, ea, eb))
    # otherwise, float64 array arithmetic
    va = la._array() if la is not None else a
    vb = lb._array() if lb is not None else b
    if op == "max":
        xp = array_namespace(va if is_array(va) else vb)
        va, vb = (v if is_array(v) else xp.asarray(v, dtype=xp.float64) for v in (va, vb))
        return LazyFloat(value=xp.maximum(va, vb))
    return LazyFloat(value=_PY_OPS[op](va, vb))


class LazyFloat:
    """A Python float whose value lives in an array: a function of a step array that could
    not be read (recorded, then tabulated), or a 0-d float64 array.

    Arithmetic with Python numbers and other ``LazyFloat`` gives a ``LazyFloat``; with an
    array, the value is cast to the array's dtype first (as a Python float would be) and
    the result is an array. It has no truth value and no ``float()``: a branch on it is
    :func:`if_else`.
    """

    __slots__ = ("_expr", "_step", "_value")
    __array_ufunc__ = None  # NumPy and Dask defer to our reflected operators
    __array_priority__ = 1000

    def __init__(self, *, step: Any = None, expr: Any = None, value: Any = None) -> None:
        self._step = step
        self._expr = expr
        self._value = value

    def _array(self) -> Any:
        """The value as a 0-d array: float64 (bool for a comparison)."""
        if self._value is not None:
            return self._value
        step = self._step
        xp = array_namespace(step)
        table = _table(self._expr)
        if table is None:
            value = _evaluate(xp, self._expr, _float64(xp, step))
        else:
            device = device_of(step)
            values = _xp_table(xp, table, self._expr, device)
            index = xp.astype(step, _index_dtype(xp))
            index = xp.minimum(xp.maximum(index, 1), table.shape[0]) - 1
            value = xp.reshape(xp.take(values, xp.reshape(index, (1,))), ())
        self._value = value
        return value

    def astype(self, dtype: Any) -> Any:
        """The value as a 0-d array of ``dtype``, rounded from the double as a Python float
        is when it meets an array of that dtype (torch's ``Scalar`` cast)."""
        value = self._array()
        return array_namespace(value).astype(value, dtype)

    def _cast(self, like: Any) -> Any:
        xp = array_namespace(like)
        value = self._array()
        if value.dtype == xp.bool:
            return value
        return xp.astype(value, like.dtype)

    def _binary(self, other: Any, op: str, reflected: bool) -> Any:
        if isinstance(other, (int, float, LazyFloat)):
            return _combine(op, other, self) if reflected else _combine(op, self, other)
        if is_array(other):
            mine = self._cast(other)
            return _PY_OPS[op](other, mine) if reflected else _PY_OPS[op](mine, other)
        return NotImplemented

    def __add__(self, other: Any) -> Any:
        return self._binary(other, "+", False)

    def __radd__(self, other: Any) -> Any:
        return self._binary(other, "+", True)

    def __sub__(self, other: Any) -> Any:
        return self._binary(other, "-", False)

    def __rsub__(self, other: Any) -> Any:
        return self._binary(other, "-", True)

    def __mul__(self, other: Any) -> Any:
        return self._binary(other, "*", False)

    def __rmul__(self, other: Any) -> Any:
        return self._binary(other, "*", True)

    def __truediv__(self, other: Any) -> Any:
        return self._binary(other, "/", False)

    def __rtruediv__(self, other: Any) -> Any:
        return self._binary(other, "/", True)

    def __pow__(self, other: Any) -> Any:
        return self._binary(other, "**", False)

    def __rpow__(self, other: Any) -> Any:
        return self._binary(other, "**", True)

    def __gt__(self, other: Any) -> Any:
        return self._binary(other, ">", False)

    def __ge__(self, other: Any) -> Any:
        return self._binary(other, ">=", False)

    def __lt__(self, other: Any) -> Any:
        return self._binary(other, "<", False)

    def __le__(self, other: Any) -> Any:
        return self._binary(other, "<=", False)

    def __eq__(self, other: Any) -> Any:  # type: ignore[override]
        return self._binary(other, "==", False)

    def __ne__(self, other: Any) -> Any:  # type: ignore[override]
        return self._binary(other, "!=", False)

    __hash__ = None  # type: ignore[assignment]

    def __neg__(self) -> LazyFloat:
        if self._expr is not None:
            return LazyFloat(step=self._step, expr=("neg", self._expr))
        return LazyFloat(value=-self._value)

    def __pos__(self) -> LazyFloat:
        return self

    def __abs__(self) -> LazyFloat:
        if self._expr is not None:
            return LazyFloat(step=self._step, expr=("abs", self._expr))
        return LazyFloat(value=array_namespace(self._value).abs(self._value))

    def _read(self) -> Any:
        value = self._array()
        jax = sys.modules.get("jax")
        if jax is not None and isinstance(value, jax.core.Tracer):
            raise TypeError(
                "a value computed from a step count under jax.jit has no Python value; "
                "branch with refoptim._schedule_scalars.if_else, or keep it an array"
            )
        return value

    def __bool__(self) -> bool:
        """The truth value, read from the array: a lazy array is computed (as torch's
        ``.item()`` would read it); under ``jax.jit`` a ``TypeError``. The rules never ask
        for it (they branch with :func:`if_else`); a caller that does gets the old cost."""
        return bool(self._read())

    def __float__(self) -> float:
        """The value, read as :meth:`__bool__` reads it."""
        return float(self._read())

    def __repr__(self) -> str:
        return f"LazyFloat({self._expr if self._expr is not None else self._value!r})"
