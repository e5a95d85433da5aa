"""The array-backend layer: namespace resolution and the checks every step relies on.

A step resolves ``xp`` once with array-api-compat's :func:`array_namespace`; rules then
call only ``xp.*`` functions and array operators. Nothing here branches on a backend's
identity: everything is decided by dtype and by what the array namespace offers.
"""

from __future__ import annotations

import math
from typing import Any

from array_api_compat import array_namespace as _compat_array_namespace
from array_api_compat import device as _device
from array_api_compat import is_array_api_obj
from array_api_compat import is_lazy_array as _is_lazy_array

__all__ = [
    "array_namespace",
    "assign",
    "back_to_complex",
    "device_of",
    "is_array",
    "is_complex",
    "is_floating",
    "namespace_name",
    "real_views",
    "scalar",
    "to_scalar",
    "typename",
    "view_as_complex",
    "view_as_real",
]


_NAMESPACES: dict[type, Any] = {}


def array_namespace(*xs: Any, **kwargs: Any) -> Any:
    """array-api-compat's ``array_namespace``, remembered per array type for the common
    call with one array and no options (a step asks it once per primitive, and the
    answer depends only on the type)."""
    if len(xs) == 1 and not kwargs:
        kind = type(xs[0])
        xp = _NAMESPACES.get(kind)
        if xp is None:
            xp = _compat_array_namespace(xs[0])
            _NAMESPACES[kind] = xp
        return xp
    return _compat_array_namespace(*xs, **kwargs)


_IS_ARRAY: dict[type, bool] = {}


def is_array(x: Any) -> bool:
    """True for any array of an Array API library (NumPy, CuPy, array-api-strict, ...).

    NumPy's masked arrays are not: arithmetic on them skips masked elements, which no
    torch tensor does, so a step would silently leave them behind. The answer depends
    only on the type, so it is remembered per type."""
    kind = type(x)
    known = _IS_ARRAY.get(kind)
    if known is None:
        known = _IS_ARRAY[kind] = bool(is_array_api_obj(x)) and not _is_masked_type(kind)
    return known


def _is_masked_type(kind: type) -> bool:
    return any(k.__module__ == "numpy.ma" or k.__module__.startswith("numpy.ma.") for k in kind.__mro__)


def device_of(x: Any) -> Any:
    """The device ``x`` lives on, as array-api-compat reports it.

    The standard's ``x.device`` attribute is read directly where an array has one (NumPy 2,
    CuPy, array-api-strict); array-api-compat answers for the others."""
    try:
        found = x.device
    except AttributeError:
        return _device(x)
    return _device(x) if callable(found) else found


def namespace_name(xp: Any) -> str:
    """A readable name of an array namespace (``array_api_compat.numpy``, ``array_api_strict``)."""
    return getattr(xp, "__name__", type(xp).__name__)


_ISDTYPE: dict[tuple[int, Any, Any], bool] = {}


def _isdtype(xp: Any, dtype: Any, kind: Any) -> bool:
    """``xp.isdtype(dtype, kind)``, remembered per namespace, dtype and kind (a step asks
    for every parameter, and the answer never changes)."""
    try:
        key = (id(xp), dtype, kind)
        known = _ISDTYPE.get(key)
    except TypeError:  # an unhashable dtype object
        return bool(xp.isdtype(dtype, kind))
    if known is None:
        known = _ISDTYPE[key] = bool(xp.isdtype(dtype, kind))
    return known


def is_floating(xp: Any, dtype: Any) -> bool:
    """True when ``dtype`` is a real or complex floating dtype of ``xp``."""
    return _isdtype(xp, dtype, ("real floating", "complex floating"))


def is_complex(xp: Any, x: Any) -> bool:
    """True when ``x`` has a complex floating dtype (torch's ``torch.is_complex``)."""
    return _isdtype(xp, x.dtype, "complex floating")


def numel(x: Any) -> int:
    """Number of elements of an array (torch's ``numel``)."""
    return math.prod(x.shape)


def scalar(value: Any) -> Any:
    """A hyper-parameter as a Python scalar: a 1-element array becomes a Python float.

    This is what torch does when a 0-d tensor hyper-parameter meets a kernel as a
    ``Scalar`` argument (``alpha=``, ``value=``): it is read with ``.item()``, so it keeps
    the precision of the array's dtype.
    """
    if is_array(value):
        xp = array_namespace(value)
        value = xp.reshape(value, ())  # torch's _to_scalar squeezes a 1-element tensor
        return complex(value) if is_complex(xp, value) else float(value)
    return value


def to_scalar(value: Any) -> Any:
    """torch's ``_to_scalar``: a 1-element array hyper-parameter squeezed to 0-d (it stays
    an array, so arithmetic with it keeps the array's dtype); a Python number as it is."""
    if is_array(value) and len(value.shape) != 0:
        return array_namespace(value).reshape(value, ())
    return value


def _real_dtype(xp: Any, dtype: Any) -> Any:
    return xp.float32 if dtype == xp.complex64 else xp.float64


def view_as_real(xp: Any, x: Any) -> Any:
    """torch's ``view_as_real``: a complex array as real pairs on a new last axis of size 2.

    Where the array type can reinterpret its memory (NumPy's and CuPy's ``.view``), the
    result is a true view, as in torch: updating it in place updates ``x``, bit for bit,
    infinities and signed zeros included. The Array API itself has no views between
    dtypes; elsewhere the result is a copy (``xp.real``/``xp.imag`` stacked) and
    :func:`view_as_complex` builds the complex array back.
    """
    view = getattr(x, "view", None)
    if view is not None:
        try:
            out = x[..., None].view(_real_dtype(xp, x.dtype))
        except (TypeError, ValueError, AttributeError):
            out = None
        if out is not None and tuple(out.shape) == tuple(x.shape) + (2,):
            return out
    return xp.stack([xp.real(x), xp.imag(x)], axis=-1)


def view_as_complex(xp: Any, r: Any) -> Any:
    """The inverse of :func:`view_as_real`: real pairs on the last axis back to complex.

    A true view where the array type has ``.view``. Otherwise the complex array is built
    as ``re + im * 1j`` in complex arithmetic, then the sign of each zero part is put back
    (``conj`` and negation flip signs exactly). That is exact for finite parts; an
    infinite imaginary part still makes the real part NaN (``inf * 0``): the Array API
    offers no exact way to assemble a complex number.
    """
    cdtype = xp.complex64 if r.dtype == xp.float32 else xp.complex128
    view = getattr(r, "view", None)
    if view is not None:
        try:
            out = view(cdtype)
        except (TypeError, ValueError, AttributeError):
            out = None
        if out is not None and tuple(out.shape) == tuple(r.shape[:-1]) + (1,):
            return out[..., 0]
    re, im = r[..., 0], r[..., 1]
    z = xp.astype(re, cdtype) + xp.astype(im, cdtype) * xp.asarray(1j, dtype=cdtype)
    # Complex arithmetic can leave a zero part with the wrong sign; conj and negation flip
    # signs exactly, so put each zero's sign back (non-zero parts already agree).
    z = xp.where(xp.signbit(xp.imag(z)) != xp.signbit(im), xp.conj(z), z)
    return xp.where(xp.signbit(xp.real(z)) != xp.signbit(re), -xp.conj(z), z)


def real_views(xp: Any, *arrays: Any) -> tuple[Any, ...]:
    """torch's ``_view_as_real`` over several arrays: each complex one as (real, imag)
    pairs (:func:`view_as_real`); ``None`` stays ``None``."""
    return tuple(None if a is None else view_as_real(xp, a) for a in arrays)


def back_to_complex(xp: Any, originals: tuple[Any, ...], pairs: tuple[Any, ...]) -> tuple[Any, ...]:
    """After a rule ran on :func:`real_views`, the results as complex arrays, written into
    the original arrays where they are writeable (see :func:`assign`)."""
    return tuple(
        None if o is None else assign(o, view_as_complex(xp, r)) for o, r in zip(originals, pairs)
    )


_IS_LAZY: dict[type, bool] = {}


def _is_lazy(x: Any) -> bool:
    """array-api-compat's ``is_lazy_array``, remembered per type (the first array of a type
    decides for all of them): Dask, JAX and ndonnx arrays are lazy, NumPy's and CuPy's are
    not, and any other type is asked once."""
    kind = type(x)
    known = _IS_LAZY.get(kind)
    if known is None:
        try:
            known = bool(_is_lazy_array(x))
        except Exception:  # noqa: BLE001 - a type array-api-compat cannot classify: eager
            known = False
        _IS_LAZY[kind] = known
    return known


def assign(old: Any, new: Any) -> Any:
    """Store ``new`` into ``old`` in place where ``old`` is writeable; else return ``new``.

    This is how results reach the caller's arrays: NumPy and CuPy arrays keep their
    identity (views into a larger buffer stay views), immutable arrays (JAX) are rebound.
    Lazy arrays (Dask, JAX, ndonnx: array-api-compat's ``is_lazy_array``) are always
    rebound: Dask would accept ``old[...] = new``, but only by embedding both task graphs
    in a new one, so a graph carried from step to step would grow quadratically in the
    number of steps (300,000 tasks after 50 Adam steps), and a distributed scheduler
    would see one key with two different tasks. Rebound, it grows linearly, and
    ``persist()`` keeps it at one task per chunk.
    The caller always keeps what this returns.
    """
    if new is old:
        return old
    try:  # one dict look-up: this is on NumPy's hot path
        lazy = _IS_LAZY[type(old)]
    except KeyError:
        lazy = _is_lazy(old)
    if lazy:
        return new
    try:
        old[...] = new
    except (TypeError, ValueError, AttributeError, NotImplementedError):
        return new
    return old


def typename(obj: Any) -> str:
    """The dotted type name of ``obj`` as torch's ``torch.typename`` spells it."""
    cls = obj if isinstance(obj, type) else type(obj)
    module = getattr(cls, "__module__", "") or ""
    qualname = getattr(cls, "__qualname__", cls.__name__)
    if module in {"", "builtins"}:
        return qualname
    return f"{module}.{qualname}"


def quiet() -> Any:
    """A context in which NumPy's floating-point warnings are off (``numpy.errstate(all=
    "ignore")``): refoptim computes with infinities and NaN as IEEE arithmetic does, as
    torch does, and torch does not warn about them. It also covers libraries computing
    through NumPy (array-api-strict) and is cheap (about a microsecond); other libraries
    do not warn. The optimizers' steps, their functional rules and the schedulers run
    inside it; the caller's own code (a closure, a hook) runs with the caller's settings.
    """
    import numpy

    return numpy.errstate(all="ignore")


def refusal(x: Any) -> str | None:
    """Why refoptim cannot step array ``x`` (a sentence), or ``None`` when it can.

    Only torch tensors have per-array properties that rule a step out: one that requires
    grad (the step updates in place, which autograd refuses on a leaf; torch.optim steps
    under ``torch.no_grad()``: give refoptim ``tensor.detach()``, which shares the memory),
    a sparse or otherwise non-strided layout, and the ``meta`` device (no values). Every
    other array type is decided by its type (:func:`is_array`). Cheap for the others: one
    comparison of the type's module name."""
    if not type(x).__module__.startswith("torch"):
        return None
    if getattr(x, "requires_grad", False):
        return (
            "a torch tensor that requires grad (refoptim updates it in place, which autograd "
            "refuses on a leaf); pass tensor.detach(), which shares its memory"
        )
    layout = str(getattr(x, "layout", "torch.strided"))
    if layout != "torch.strided":
        return f"a torch tensor of layout {layout} (only dense, strided tensors can be stepped)"
    device = getattr(x, "device", None)
    if getattr(device, "type", None) == "meta":
        return "a torch tensor on the meta device (it holds no values)"
    return None
