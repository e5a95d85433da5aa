"""Whole-rule fusion (opt-in, numba): an elementwise rule run as one compiled pass.

Part of the speed seam (:mod:`refoptim._fastpath`). A rule stays written once, against the
Array API; nothing here is a second form of it. Instead the rule is *traced*: it is called
once per step on :class:`Tracer` arrays, a NumPy ``ndarray`` subclass that computes nothing
and records each operation it meets (every ufunc, ``where``, ``astype``, the ``*_like``
constructors, the float32 fused multiply-add of :func:`refoptim._primitives.fma`, stores
with ``x[...] =``), with the operand dtypes NumPy would resolve and the scalars it would
cast. The Python around the arithmetic runs for real: the branches on hyperparameters,
the bias corrections computed from ``step``, the scalar state the rule updates. What comes
out is a straight-line program per element; it is compiled once per shape of program
(:func:`numba.njit`, no ``fastmath``, NumPy's error model, the interpreter lock released)
and run over whole parameters, the step's scalars passed as arguments, so the
compilation is reused from step to step.

One pass instead of one per operation, and no temporaries. The bits are NumPy's: each
recorded operation is the same IEEE operation on operands converted to the same loop
dtypes (``ufunc.resolve_dtypes``, Python scalars weak as in NEP 50, converted to the loop
dtype on the host as NumPy converts them); the fused multiply-add is
``float32(float64(a) * float64(b) + float64(c))``, the Array API route's own arithmetic;
``maximum`` and ``minimum`` follow NumPy's loops on x86 (NaN from either side, the second
operand where the two compare equal, signed zeros included). LLVM neither contracts a multiply
and an add into a hardware fma nor reassociates without ``fastmath``.
``tests/test_fuse.py`` checks every operation on finite, infinite, NaN, subnormal and
signed-zero operands, and ``tests/test_fastpath.py`` every elementwise optimizer, against
the plain rule.

What a trace cannot follow makes it give up (:class:`Unfusable`) before anything is
written, and the step runs the usual way: an operation outside the table (``power``,
reductions, ``sign``, integer dtypes, broadcasting between shapes), a value read out of an
array (``bool``, ``float``, ``any``), a copy (SGD's first momentum buffer), a state entry
the rule creates, the float64 fused multiply-add (its repair of near-ties reads the data).
A rule that gave up is not traced again for the same layout of arguments (dtypes, state
keys and kinds, the group's flags; not the scalars' values: a rule that gave up on one
step's values alone would then run the usual way for the rest of the process, with the
same bits, only slower).

Opt-in, with the compiled fused multiply-add of :mod:`refoptim._numba`: ``REFOPTIM_NUMBA=1``
(``refoptim._scratch.NUMBA``), ``pip install "refoptim[numba]"``. The fast path fuses the
calls of :data:`refoptim._fastpath.SCRATCH_MIN_ELEMENTS` elements or more. Each new shape of
program compiles in 0.1 to 0.3 s, once per process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["Plan", "Tracer", "Unfusable", "plan_for", "trace"]

_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)
_BOOL = np.dtype(np.bool_)
_FLOATS = (_F32, _F64)
_DTYPES = (_F32, _F64, _BOOL)


class Unfusable(Exception):
    """The rule did something a trace cannot follow: run it the usual way."""


# The operations a trace records, as expressions of their operands (already converted to
# the loop dtypes). Comparisons and logical operations give bool.
_BINARY = {
    "add": "({0} + {1})",
    "subtract": "({0} - {1})",
    "multiply": "({0} * {1})",
    "divide": "({0} / {1})",
    "maximum": "_maximum({0}, {1})",
    "minimum": "_minimum({0}, {1})",
    "greater": "({0} > {1})",
    "greater_equal": "({0} >= {1})",
    "less": "({0} < {1})",
    "less_equal": "({0} <= {1})",
    "equal": "({0} == {1})",
    "not_equal": "({0} != {1})",
    "logical_and": "({0} and {1})",
    "logical_or": "({0} or {1})",
    "bitwise_and": "({0} & {1})",
    "bitwise_or": "({0} | {1})",
    "bitwise_xor": "({0} ^ {1})",
}
_UNARY = {
    "sqrt": "np.sqrt({0})",
    "negative": "(-{0})",
    "absolute": "abs({0})",
    "isfinite": "np.isfinite({0})",
    "isnan": "np.isnan({0})",
    "isinf": "np.isinf({0})",
    "logical_not": "(not {0})",
    "invert": "(not {0})",
}
_BOOL_ONLY = {"bitwise_and", "bitwise_or", "bitwise_xor", "invert", "logical_and", "logical_or", "logical_not"}
_NO_BOOL = {"add", "subtract", "multiply", "divide", "sqrt", "negative", "absolute", "maximum", "minimum"}
_CAST = {_F32: "_f32", _F64: "_f64", _BOOL: "_bool"}


class _Trace:
    """The program a rule builds: ``nodes[i]`` is ``(op, operands, dtype)``; an operand is
    a node number; ``("in", k)`` loads input array ``k``, ``("s", k)`` is scalar ``k``."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.nodes: list[tuple] = []
        self.scalars: list[Any] = []

    def add(self, op: Any, operands: tuple, dtype: np.dtype) -> int:
        self.nodes.append((op, operands, dtype))
        return len(self.nodes) - 1

    def scalar(self, value: Any, dtype: np.dtype) -> int:
        """A node for a scalar converted to ``dtype`` as NumPy converts it for a loop."""
        with np.errstate(all="ignore"):
            converted = dtype.type(value)
        self.scalars.append(converted)
        return self.add("s", (len(self.scalars) - 1,), dtype)

    def tracer(self, node: int) -> Tracer:
        return _make(self, node, self.nodes[node][2])

    def cast(self, node: int, dtype: np.dtype) -> int:
        if self.nodes[node][2] == dtype:
            return node
        if dtype not in _DTYPES:
            raise Unfusable(f"a cast to {dtype}")
        return self.add("cast", (node,), dtype)


_ZERO = bytearray(16)


def _make(tr: _Trace, node: int, dtype: np.dtype) -> Tracer:
    t = np.ndarray.__new__(Tracer, shape=(tr.n,), dtype=dtype, buffer=_ZERO, strides=(0,))
    t._trace = tr
    t._node = node
    return t


def _scalar_kind(x: Any) -> Any:
    """What ``resolve_dtypes`` takes for an operand that is not a tracer: a Python
    scalar's type (weak), a NumPy scalar's or 0-d array's dtype (strong)."""
    if type(x) in (float, int, bool):
        return type(x)
    if isinstance(x, np.generic) or (type(x) is np.ndarray and x.shape == ()):
        return x.dtype
    raise Unfusable(f"an operand of type {type(x).__name__} and shape {getattr(x, 'shape', None)}")


def _operand(tr: _Trace, x: Any, dtype: np.dtype) -> int:
    """The node of operand ``x`` converted to the loop dtype ``dtype``."""
    if type(x) is Tracer:
        if x._trace is not tr or x._node is None:
            raise Unfusable("an array made outside the trace")
        return tr.cast(x._node, dtype)
    if type(x) is np.ndarray:
        x = x[()]
    return tr.scalar(x, dtype)


def _trace_of(args: tuple) -> _Trace:
    found = None
    for x in args:
        if type(x) is Tracer:
            if x._trace is None or x._node is None:
                raise Unfusable("a view or copy of a traced array")
            if found is not None and x._trace is not found:
                raise Unfusable("two traces")
            found = x._trace
        elif isinstance(x, np.ndarray) and x.shape != ():
            raise Unfusable(f"an array of shape {x.shape} beside the traced ones")
    if found is None:
        raise Unfusable("no traced operand")
    return found


def _resolve(ufunc: np.ufunc, args: tuple) -> tuple[np.dtype, ...]:
    kinds = tuple(x.dtype if type(x) is Tracer else _scalar_kind(x) for x in args)
    try:
        dtypes = ufunc.resolve_dtypes(kinds + (None,) * ufunc.nout)
    except Exception as exc:  # noqa: BLE001 - NumPy decides at call time: not traced
        raise Unfusable(f"{ufunc.__name__} on {kinds}") from exc
    for d in dtypes:
        if d not in _DTYPES:
            raise Unfusable(f"{ufunc.__name__} in {d}")
    return tuple(dtypes)


def _record(ufunc: np.ufunc, inputs: tuple) -> tuple[_Trace, int]:
    name = ufunc.__name__
    table = _BINARY if ufunc.nin == 2 else _UNARY
    if ufunc.nout != 1 or name not in table:
        raise Unfusable(f"the ufunc {name}")
    tr = _trace_of(inputs)
    dtypes = _resolve(ufunc, inputs)
    loop = dtypes[: ufunc.nin]
    if name in _BOOL_ONLY and any(d != _BOOL for d in loop):
        raise Unfusable(f"{name} on {loop}")
    if name in _NO_BOOL and any(d == _BOOL for d in loop):
        raise Unfusable(f"{name} on bool")
    operands = tuple(_operand(tr, x, d) for x, d in zip(inputs, loop))
    return tr, tr.add(name, operands, dtypes[-1])


def _store(target: Tracer, tr: _Trace, node: int) -> None:
    """``target[...] = node``: the value converted to the target's dtype, and every later
    use of ``target`` sees it (NumPy's ``same_kind`` casting for ``out=`` and stores)."""
    if target._trace is not tr:
        raise Unfusable("a store into an array made outside the trace")
    have = tr.nodes[node][2]
    if not np.can_cast(have, target.dtype, casting="same_kind"):
        raise Unfusable(f"a store of {have} into {target.dtype}")
    target._node = tr.cast(node, target.dtype)


class Tracer(np.ndarray):
    """A stand-in array that records what a rule computes instead of computing it.

    Its memory is one zero repeated (stride 0): nothing reads it. Views and copies made by
    NumPy's own methods are *poisoned* (no node); using one gives up the trace, as does
    reading a value (``bool``, ``float``, ``item``, indexing)."""

    _trace: _Trace | None
    _node: int | None

    def __array_finalize__(self, obj: Any) -> None:
        self._trace = None
        self._node = None

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, out: Any = None, **kwargs: Any) -> Any:
        if method != "__call__" or kwargs:
            raise Unfusable(f"{ufunc.__name__}.{method} with {sorted(kwargs)}")
        if out is not None:
            if len(out) != 1 or type(out[0]) is not Tracer:
                raise Unfusable("out= other than one traced array")
            tr, node = _record(ufunc, inputs)
            _store(out[0], tr, node)
            return out[0]
        tr, node = _record(ufunc, inputs)
        return tr.tracer(node)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        impl = _FUNCTIONS.get(func)
        if impl is None:
            raise Unfusable(f"numpy.{getattr(func, '__name__', func)}")
        return impl(*args, **kwargs)

    def astype(self, dtype: Any, order: str = "K", casting: str = "unsafe", subok: bool = True, copy: bool = True) -> Any:
        """The cast, recorded (a new node even where the dtype is the same: a copy)."""
        tr = _trace_of((self,))
        dtype = np.dtype(dtype)
        if dtype not in _DTYPES:
            raise Unfusable(f"astype({dtype})")
        if not copy and dtype == self.dtype:
            return self
        if dtype == self.dtype:
            return tr.tracer(tr.add("cast", (self._node,), dtype))
        return tr.tracer(tr.cast(self._node, dtype))

    def __setitem__(self, key: Any, value: Any) -> None:
        if not (key is Ellipsis or key == slice(None) or key == (slice(None),) or key == (Ellipsis,)):
            raise Unfusable(f"a store into [{key!r}]")
        tr = _trace_of((self,))
        if type(value) is Tracer:
            node = _operand(tr, value, value.dtype)
        else:
            _scalar_kind(value)  # a scalar or a 0-d array, else not traced
            node = tr.scalar(value[()] if type(value) is np.ndarray else value, np.dtype(self.dtype))
        _store(self, tr, node)

    def __getitem__(self, key: Any) -> Any:
        raise Unfusable(f"indexing [{key!r}]")

    def _refoptim_fma(self, a: Any, c: Any, out: Any = None) -> Any:
        """:func:`refoptim._primitives.fma` ``(a, self, c)`` on float32, recorded as the Array
        API route computes it: ``float32(float64(a) * float64(self) + float64(c))``."""
        tr = _trace_of((self, c) if type(c) is Tracer else (self,))
        if self.dtype != _F32 or type(c) is not Tracer or c.dtype != _F32:
            raise Unfusable("a fused multiply-add other than float32")
        if type(a) is Tracer:
            if a.dtype != _F32 or a._trace is not tr:
                raise Unfusable("a fused multiply-add other than float32")
            a_node = tr.cast(a._node, _F64)
        elif type(a) in (float, int) or (isinstance(a, (np.generic, np.ndarray)) and np.shape(a) == () and a.dtype in _FLOATS):
            a_node = tr.scalar(a, _F64)
        else:
            raise Unfusable(f"a fused multiply-add with a of type {type(a).__name__}")
        node = tr.add("fma", (a_node, tr.cast(self._node, _F64), tr.cast(c._node, _F64)), _F32)
        if out is None:
            return tr.tracer(node)
        if type(out) is not Tracer or out.dtype != _F32:
            raise Unfusable("a fused multiply-add into an array made outside the trace")
        _store(out, tr, node)
        return out

    def _read(self, *args: Any, **kwargs: Any) -> Any:
        raise Unfusable("a value read out of a traced array")

    __bool__ = __float__ = __int__ = __index__ = __complex__ = item = tolist = tobytes = __iter__ = _read  # type: ignore[assignment]


def _where(condition: Any, x: Any = None, y: Any = None, /) -> Any:
    if x is None or y is None:
        raise Unfusable("one-argument where")
    tr = _trace_of((condition, x, y))
    if (condition.dtype if type(condition) is Tracer else _scalar_kind(condition)) != _BOOL:
        raise Unfusable("where on a condition that is not bool")
    kinds = [np.empty(0, v.dtype) if type(v) is Tracer else v for v in (x, y)]
    dtype = np.result_type(*kinds)
    if dtype not in _DTYPES:
        raise Unfusable(f"where in {dtype}")
    operands = (_operand(tr, condition, _BOOL), _operand(tr, x, dtype), _operand(tr, y, dtype))
    return tr.tracer(tr.add("where", operands, dtype))


def _filled(a: Any, fill: Any, dtype: Any, shape: Any, kw: dict) -> Any:
    if kw or shape is not None or fill is None:
        raise Unfusable("an uninitialised or reshaped array")
    tr = _trace_of((a,))
    dtype = np.dtype(a.dtype if dtype is None else dtype)
    if dtype not in _DTYPES:
        raise Unfusable(f"a constant of {dtype}")
    return tr.tracer(tr.scalar(fill, dtype))


def _zeros_like(a: Any, dtype: Any = None, order: str = "K", subok: bool = True, shape: Any = None, **kw: Any) -> Any:
    return _filled(a, 0, dtype, shape, kw)


def _ones_like(a: Any, dtype: Any = None, order: str = "K", subok: bool = True, shape: Any = None, **kw: Any) -> Any:
    return _filled(a, 1, dtype, shape, kw)


def _full_like(
    a: Any, fill_value: Any, dtype: Any = None, order: str = "K", subok: bool = True, shape: Any = None, **kw: Any
) -> Any:
    if isinstance(fill_value, np.ndarray):
        if fill_value.shape != ():
            raise Unfusable("full_like with an array")
        fill_value = fill_value[()]
    return _filled(a, fill_value, dtype, shape, kw)


_FUNCTIONS: dict[Any, Callable] = {
    np.where: _where,
    np.zeros_like: _zeros_like,
    np.ones_like: _ones_like,
    np.full_like: _full_like,
}


# ------------------------------------------------------------------ compiling a program
def _maximum(a: Any, b: Any) -> Any:
    """NumPy's ``maximum`` on x86, for one element (compiled into the kernels)."""
    if a != a:
        return a
    return a if a > b else b


def _minimum(a: Any, b: Any) -> Any:
    """NumPy's ``minimum`` on x86, for one element (compiled into the kernels)."""
    if a != a:
        return a
    return a if a < b else b


_KERNEL_GLOBALS: dict[str, Any] = {}


def _kernel_globals(numba: Any) -> dict[str, Any]:
    """What the generated kernels refer to, the helpers compiled once per process."""
    if not _KERNEL_GLOBALS:
        _KERNEL_GLOBALS.update(
            np=np,
            _f32=np.float32,
            _f64=np.float64,
            _bool=np.bool_,
            _maximum=numba.njit(inline="always")(_maximum),
            _minimum=numba.njit(inline="always")(_minimum),
        )
    return _KERNEL_GLOBALS


_COMPILED: dict[tuple, Any] = {}
_COMPILE_LOCK = threading.Lock()


def _source(nodes: tuple, n_arrays: int, n_scalars: int, outputs: tuple) -> str:
    """The kernel's Python source: one loop over the elements; ``outputs`` are
    ``(array number, node, dtype)``. Each array is one argument, read and written through
    the same name (one pointer: the compiler then vectorises without alias checks between
    a parameter's input and its output)."""
    args = ["n"] + [f"a{k}" for k in range(n_arrays)] + [f"s{k}" for k in range(n_scalars)]
    lines = [f"def kernel({', '.join(args)}):"]
    needed = _needed(nodes, [node for _, node, _ in outputs])
    # scalars arrive as Python floats (float32 values exactly) and bools: typed here
    lines += [f"    s{op[0]} = {_CAST[d]}(s{op[0]})" for i, (kind, op, d) in enumerate(nodes) if kind == "s" and i in needed]
    lines.append("    for j in range(n):")
    names: dict[int, str] = {}
    for i, (op, operands, dtype) in enumerate(nodes):
        if i not in needed:
            continue
        if op == "s":
            names[i] = f"s{operands[0]}"
            continue
        if op == "in":
            expr = f"a{operands[0]}[j]"
        elif op == "cast":
            expr = f"{_CAST[dtype]}({names[operands[0]]})"
        elif op == "fma":
            a, b, c = (names[o] for o in operands)
            expr = f"_f32({a} * {b} + {c})"
        elif op == "where":
            cond, x, y = (names[o] for o in operands)
            expr = f"({x} if {cond} else {y})"
        elif op in _BINARY:
            expr = _BINARY[op].format(*(names[o] for o in operands))
        else:
            expr = _UNARY[op].format(names[operands[0]])
        lines.append(f"        t{i} = {expr}")
        names[i] = f"t{i}"
    for k, node, dtype in outputs:
        lines.append(f"        a{k}[j] = {_CAST[dtype]}({names[node]})")
    return "\n".join(lines) + "\n"


def _needed(nodes: tuple, roots: list[int]) -> set[int]:
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        i = stack.pop()
        if i in seen:
            continue
        seen.add(i)
        op, operands, _ = nodes[i]
        if op not in ("s", "in"):
            stack.extend(operands)
    return seen


def _compile(key: tuple, src: str) -> Any:
    with _COMPILE_LOCK:
        kernel = _COMPILED.get(key)
        if kernel is None:
            from ._numba import require

            numba = require()
            jit = numba.njit(nogil=True, fastmath=False, error_model="numpy", boundscheck=False, cache=False)
            space = dict(_kernel_globals(numba))
            exec(compile(src, "<refoptim._fuse kernel>", "exec"), space)  # noqa: S102 - generated from the trace
            kernel = jit(space["kernel"])
            _COMPILED[key] = kernel
    return kernel


class Plan:
    """A traced call: the compiled program, which arrays it reads and writes (by name:
    ``"param"``, ``"grad"`` or a state key), the scalars it takes, and the scalar state the
    rule left (``kept``).

    ``run(arrays)`` applies it to one parameter's 1-d arrays (by name, any length ``n``,
    all the same), every element read before it is written."""

    def __init__(self, kernel: Any, arrays: list[str], scalars: tuple, kept: dict[str, Any]):
        self.kernel = kernel
        self.arrays = arrays
        self.scalars = scalars
        self.kept = kept

    def run(self, arrays: dict[str, Any], lo: int = 0, hi: int | None = None) -> None:
        """Elements ``lo:hi`` of ``arrays`` (1-d NumPy arrays by name)."""
        hi = arrays["param"].shape[0] if hi is None else hi
        if hi > lo:
            self.kernel(hi - lo, *[arrays[k][lo:hi] for k in self.arrays], *self.scalars)


def trace(
    update: Callable[[Any, Any, dict[str, Any], dict[str, Any]], Any],
    param: np.ndarray,
    grad: np.ndarray,
    full: dict[str, np.ndarray],
    scalars: dict[str, Any],
    group: dict[str, Any],
) -> Plan:
    """Trace ``update(param, grad, state, group)`` for a parameter like ``param`` (1-d),
    its gradient and full-size state entries ``full`` (1-d, by key), and scalar state
    ``scalars`` (not changed: the rule sees copies). Raises :class:`Unfusable` where the
    rule does what a trace cannot follow; nothing outside the trace is changed then."""
    n = param.shape[0]
    if "param" in full or "grad" in full:
        raise Unfusable("a state entry named param or grad")
    for x in (param, grad, *full.values()):
        if np.dtype(x.dtype) not in _FLOATS or x.shape != (n,):
            raise Unfusable(f"an array of {x.dtype} {x.shape}")
    tr = _Trace(n)
    names = ["param", "grad", *full]
    sources = [param, grad, *full.values()]
    inputs = [_make(tr, tr.add("in", (k,), np.dtype(x.dtype)), np.dtype(x.dtype)) for k, x in enumerate(sources)]
    state: dict[str, Any] = {k: (np.array(v, copy=True) if isinstance(v, np.ndarray) else v) for k, v in scalars.items()}
    state.update(zip(full, inputs[2:]))
    try:
        with np.errstate(all="ignore"):
            result = update(inputs[0], inputs[1], state, group)
    except Unfusable:
        raise
    except Exception as exc:  # noqa: BLE001 - anything the rule raised: the usual route says it again
        raise Unfusable(f"the rule raised {type(exc).__name__} under the trace") from exc
    finals = {"param": result}
    for key in full:
        if key not in state:
            raise Unfusable(f"the rule removed state[{key!r}]")
        finals[key] = state[key]
    kept = {}
    for key, value in state.items():
        if key in full:
            continue
        if key not in scalars and isinstance(value, np.ndarray) and value.shape == (n,):
            raise Unfusable(f"the rule created state[{key!r}]")
        if type(value) is Tracer or (isinstance(value, np.ndarray) and value.shape not in ((), (n,))):
            raise Unfusable(f"state[{key!r}] is not a scalar")
        kept[key] = value
    outputs, writes = [], []
    for name, value in finals.items():
        if type(value) is not Tracer or value._trace is not tr or value._node is None:
            raise Unfusable(f"the rule's {name} is not traced")
        index = names.index(name)
        if value._node == index:  # unchanged
            continue
        dtype = np.dtype(sources[index].dtype)
        if not np.can_cast(tr.nodes[value._node][2], dtype, casting="same_kind"):
            raise Unfusable(f"{name} of {tr.nodes[value._node][2]} into {dtype}")
        outputs.append((value._node, dtype))
        writes.append(name)
    needed = _needed(tuple(tr.nodes), [node for node, _ in outputs])
    # the arrays the program touches, each once, in the order of ``names``
    used = sorted({k for k in range(len(names)) if k in needed} | {names.index(w) for w in writes})
    nodes = []
    used_scalars = []
    for i, (op, operands, dtype) in enumerate(tr.nodes):
        if op == "in":
            operands = (used.index(operands[0]),) if i in needed else (-1,)
        elif op == "s":
            if i in needed:
                value = tr.scalars[operands[0]]
                # a Python float or bool: numba unboxes it faster than a NumPy scalar
                used_scalars.append(bool(value) if dtype == _BOOL else float(value))
                operands = (len(used_scalars) - 1,)
            else:
                operands = (-1,)
        nodes.append((op, operands, dtype.str))
    stores = tuple((used.index(names.index(w)), node, dtype.str) for w, (node, dtype) in zip(writes, outputs))
    key = (tuple(nodes), tuple(np.dtype(sources[k].dtype).str for k in used), stores)
    kernel = _COMPILED.get(key)
    if kernel is None:
        typed = tuple((op, operands, np.dtype(d)) for op, operands, d in nodes)
        kernel = _compile(key, _source(typed, len(used), len(used_scalars), tuple((k, node, np.dtype(d)) for k, node, d in stores)))
    return Plan(kernel, [names[k] for k in used], tuple(used_scalars), kept)


_FAILED: set[tuple] = set()


def _layout(update: Any, param: Any, grad: Any, full: dict[str, Any], scalars: dict[str, Any], group: dict[str, Any]) -> tuple:
    """What decides whether a rule can be traced, without the scalars' values: the rule,
    the dtypes, the state's keys and kinds, and the group's flags (and which of its numbers
    are zero: the rules branch on ``weight_decay != 0``)."""
    func = getattr(update, "__func__", update)
    owner = type(getattr(update, "__self__", None))
    flags = tuple(
        (k, v if isinstance(v, (bool, str, type(None))) else (type(v).__name__, v == 0 if isinstance(v, (int, float)) else None))
        for k, v in group.items()
        if k != "params"
    )
    return (
        func,
        owner,
        param.dtype.str,
        grad.dtype.str,
        tuple((k, v.dtype.str) for k, v in full.items()),
        tuple((k, type(v).__name__) for k, v in scalars.items()),
        flags,
    )


def plan_for(
    update: Callable[[Any, Any, dict[str, Any], dict[str, Any]], Any],
    param: np.ndarray,
    grad: np.ndarray,
    full: dict[str, np.ndarray],
    scalars: dict[str, Any],
    group: dict[str, Any],
) -> Plan | None:
    """:func:`trace`, or ``None`` where it gives up (remembered: the same layout of
    arguments is not traced again)."""
    layout = _layout(update, param, grad, full, scalars, group)
    if layout in _FAILED:
        return None
    try:
        return trace(update, param, grad, full, scalars, group)
    except Unfusable:
        _FAILED.add(layout)
        return None
