r"""Checkpoints without pickle: :func:`save` and :func:`load`.

``refoptim.save(obj, path)`` writes a state dict (an optimizer's, a scheduler's, or a dict
or list holding several of them and plain values) to one file, and
``refoptim.load(path)`` reads it back, the way ``torch.save`` and
``torch.load(weights_only=True)`` do, but without pickle: loading a file never runs code
found in it, whoever wrote it.

**The file** is a ZIP archive, its members stored uncompressed (so it is also a valid
``.npz`` file, and ``unzip -l`` lists it):

* ``refoptim-checkpoint.json`` (first): UTF-8 JSON, one object with the keys
  ``format`` (``"refoptim-checkpoint"``), ``format_version`` (:data:`FORMAT_VERSION`),
  ``refoptim_version``, ``metadata`` (what the caller passed, or ``null``), ``arrays`` (the
  names of the array members, in order) and ``object`` (the saved object, encoded below);
* ``arrays/0.npy``, ``arrays/1.npy``, ...: one array each, in NumPy's ``.npy`` format
  (version 1.0, C order), of a numeric or bool dtype (never ``object``).

In ``object``, ``null``, ``true``/``false``, integers, strings and lists stand for
themselves, and a finite float is a JSON number (written with a ``.`` or an exponent, so it
never reads back as an int). A dict whose keys are all strings not starting with ``$`` is a
JSON object. Everything else is a JSON object whose first key starts with ``$``:

* ``{"$tuple": [...]}``; ``{"$dict": [[key, value], ...]}`` (any other dict: the int keys
  of an optimizer's ``state``, ...), keys and values encoded alike; ``{"$counter": ...}``
  and ``{"$ordered_dict": ...}`` likewise for ``collections.Counter`` (MultiStepLR's
  ``milestones``) and ``collections.OrderedDict``;
* ``{"$float": "inf" | "-inf" | "nan" | "0x<16 hex digits>"}``: a float JSON cannot hold
  (the hex form keeps a NaN's sign and payload bit for bit);
  ``{"$complex": [real, imag]}``;
* ``{"$array": i, "dtype": "float32", "shape": [...]}``: member ``arrays[i]``, loaded as an
  array of the namespace :func:`load` is asked for (a 0-d array stays a 0-d array; a Python
  float stays a float);
* ``{"$numpy_scalar": i, "dtype": ..., "shape": []}``: a NumPy scalar (``np.float32(1)``),
  loaded as a NumPy scalar whatever the namespace;
* ``{"$sparse_grad": [indices, values, shape, coalesced]}``: a :class:`refoptim.SparseGrad`
  (SGD's sparse momentum buffer).

An array object saved twice in one call is stored once and loads as one array object.

**Writing is atomic**: :func:`save` writes a temporary file ``.<name>.tmp-<8 hex digits>``
in the target's directory, flushes and ``fsync`` s it, renames it over the target
(``os.replace``) and ``fsync`` s the directory where the system allows. A crash or a kill
midway leaves the previous checkpoint as it was, plus possibly that temporary file, which is
safe to delete.

**Loading** reads the archive with :mod:`zipfile` and :mod:`json` only, and each array with
NumPy's ``.npy`` header parser and ``np.frombuffer``; ZIP's CRC-32 of every member it reads
is checked. It raises :class:`CheckpointError` (a ``ValueError``) naming the file and the
reason for anything that is not an intact refoptim checkpoint: a pickle file, a
``torch.save`` file, another ZIP or ``.npz`` file, an array of ``object`` dtype, a truncated or
corrupted file, a newer format version. ``OSError`` (``FileNotFoundError``, ...) comes from
opening the file, as from :func:`open`.
"""

from __future__ import annotations

import io
import json
import math
import os
import secrets
import struct
import zipfile
from collections import Counter, OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np

from ._backend import is_array
from .sparse import SparseGrad

__all__ = ["FORMAT_VERSION", "CheckpointError", "load", "read_metadata", "save"]

FORMAT_VERSION = 1
"""The checkpoint format version :func:`save` writes and the newest :func:`load` reads."""

_FORMAT = "refoptim-checkpoint"
_HEADER = "refoptim-checkpoint.json"
_ARRAY_DIR = "arrays/"
_DATE = (1980, 1, 1, 0, 0, 0)  # fixed: the same object saves to the same bytes
# The dtypes an array member may have: numbers and bool, as torch's weights_only allows.
_DTYPES = frozenset(
    np.dtype(n)
    for n in (
        "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
        "float16", "float32", "float64", "complex64", "complex128",
    )
)

# The mapping types a checkpoint holds, by their tag: torch's MultiStepLR keeps its
# milestones in a Counter, and a state dict converted from torch may use OrderedDicts.
_MAPPING_TAGS = {dict: "$dict", Counter: "$counter", OrderedDict: "$ordered_dict"}
_MAPPING_TYPES = {tag: kind for kind, tag in _MAPPING_TAGS.items()}


class CheckpointError(ValueError):
    """A file :func:`load` refuses: not a refoptim checkpoint (a pickle, a ``torch.save``
    file, another ZIP), content it never loads (``object`` arrays, pickled data),
    truncated or corrupted, or of a newer format version. The message names the file and
    the reason; the low-level exception, if any, is chained as ``__cause__``."""


# ---------------------------------------------------------------------------- encoding
class _Encoder:
    """Turns a saved object into its JSON tree, collecting the arrays on the host."""

    def __init__(self) -> None:
        self.arrays: list[np.ndarray] = []
        self._memo: dict[int, int] = {}
        self._keep: list[Any] = []  # the memo's objects stay alive, so their ids stay unique
        self._active: set[int] = set()

    def array(self, x: Any, where: str, tag: str = "$array") -> dict[str, Any]:
        index = self._memo.get(id(x)) if tag == "$array" else None
        if index is None:
            host = _host(x, where)
            index = len(self.arrays)
            self.arrays.append(host)
            if tag == "$array":
                self._memo[id(x)] = index
                self._keep.append(x)
        host = self.arrays[index]
        return {tag: index, "dtype": host.dtype.name, "shape": list(host.shape)}

    def encode(self, value: Any, where: str) -> Any:
        kind = type(value)
        if value is None or kind is bool or kind is int or kind is str:
            return value
        if kind is float:
            return value if math.isfinite(value) else {"$float": _float_text(value)}
        if kind is complex:
            return {"$complex": [self.encode(value.real, where), self.encode(value.imag, where)]}
        if isinstance(value, np.generic):
            return self.array(value, where, tag="$numpy_scalar")
        if isinstance(value, SparseGrad):
            return {
                "$sparse_grad": [
                    self.array(value.indices, f"{where}.indices"),
                    self.array(value.values, f"{where}.values"),
                    [int(s) for s in value.shape],
                    bool(value.is_coalesced()),
                ]
            }
        if kind in (list, tuple, dict, Counter, OrderedDict):
            if id(value) in self._active:
                raise ValueError(f"refoptim.save: {where} contains itself; a checkpoint holds no cycles")
            self._active.add(id(value))
            try:
                if kind is list:
                    return [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
                if kind is tuple:
                    return {"$tuple": [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]}
                return self.mapping(value, where, _MAPPING_TAGS[kind])
            finally:
                self._active.discard(id(value))
        if is_array(value):
            return self.array(value, where)
        hint = " (save p.data, the array)" if type(value).__name__ == "Parameter" else ""
        raise TypeError(
            f"refoptim.save: cannot save {where}, a {kind.__module__}.{kind.__qualname__}{hint}; a checkpoint "
            "holds None, bool, int, float, complex, str, lists, tuples, dicts (Counter, OrderedDict), "
            "arrays, NumPy scalars and SparseGrad"
        )

    def mapping(self, value: dict, where: str, tag: str) -> Any:
        if tag == "$dict" and all(type(k) is str and not k.startswith("$") for k in value):
            return {k: self.encode(v, f"{where}[{k!r}]") for k, v in value.items()}
        items = []
        for k, v in value.items():
            if not _plain_key(k):
                raise TypeError(
                    f"refoptim.save: cannot save the key {k!r} of {where}, a {type(k).__qualname__}; dict keys "
                    "must be None, bool, int, float, complex, str or tuples of them"
                )
            items.append([self.encode(k, f"{where}.keys()"), self.encode(v, f"{where}[{k!r}]")])
        return {tag: items}


def _plain_key(key: Any) -> bool:
    """A dict key a checkpoint holds (and that is hashable again after loading)."""
    if type(key) is tuple:
        return all(_plain_key(k) for k in key)
    return key is None or type(key) in (bool, int, float, complex, str)


def _float_text(value: float) -> str:
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    bits = struct.unpack("<Q", struct.pack("<d", value))[0]
    return "nan" if bits == 0x7FF8000000000000 else f"0x{bits:016x}"


def _host(x: Any, where: str) -> np.ndarray:
    """A C-contiguous NumPy copy of an array of any backend (or of a NumPy scalar)."""
    if isinstance(x, (np.ndarray, np.generic)):
        host = np.array(x, copy=True)
    else:
        from .testing import backends

        try:
            host = backends.to_numpy(x)
        except TypeError:  # an array library outside the registry: DLPack, then __array__
            try:
                host = np.array(np.from_dlpack(x), copy=True)
            except (TypeError, AttributeError, RuntimeError, BufferError):
                host = np.array(np.asarray(x), copy=True)
    if host.dtype.newbyteorder("=") not in _DTYPES:
        raise TypeError(
            f"refoptim.save: cannot save {where}, an array of dtype {host.dtype}; a checkpoint holds "
            "arrays of bool, integer, float16/32/64 and complex64/128 dtypes"
        )
    return np.array(host, dtype=host.dtype.newbyteorder("<"), order="C", copy=None)  # 0-d stays 0-d


def _version() -> str:
    import refoptim

    version = getattr(refoptim, "__version__", None)
    if version is None:
        try:
            from importlib.metadata import version as dist_version

            version = dist_version("refoptim")
        except Exception:  # noqa: BLE001 - not installed as a distribution
            version = "unknown"
    return str(version)


# ---------------------------------------------------------------------------- save
def save(obj: Any, path: str | os.PathLike, *, metadata: Mapping[str, Any] | None = None) -> None:
    """Save ``obj`` to the file ``path``, without pickle (``torch.save`` for state dicts).

    Args:
        obj: what to save: an optimizer's or a scheduler's ``state_dict()``, or any nesting
            of dicts, lists and tuples of them and of ``None``, bool, int, float (``inf`` and
            ``nan`` included), complex, str, ``collections.Counter`` and ``OrderedDict``,
            arrays of any Array API library (copied to the host), NumPy scalars and
            :class:`refoptim.SparseGrad`. Dict keys may be ``None``,
            bool, int, float, complex, str or tuples of them.
        path (str or os.PathLike): the file to write; an existing file is replaced
            atomically (a symbolic link is followed, and its target replaced).
        metadata (dict, optional): plain JSON data (str keys; str, int, finite float, bool,
            None, lists and dicts of them) stored beside ``obj`` and read back by
            :func:`read_metadata`, e.g. the classes the state dicts belong to:
            ``{"optimizer": "AdamW", "scheduler": "CosineAnnealingLR"}``. refoptim records
            no class names itself: a state dict does not know its class.

    Raises ``TypeError`` (a value it cannot save, named by its place in ``obj``, or
    ``metadata`` that is not plain JSON) and ``ValueError`` (a container that contains
    itself) before it touches the disk; ``OSError`` from writing, after which the
    previous file at ``path`` is unchanged. See :mod:`refoptim.checkpoint` for the format
    and the atomic write.

    Example:
        >>> import os, tempfile
        >>> import numpy as np
        >>> import refoptim as optim
        >>> w = optim.Parameter(np.array([1.0, -2.0], dtype=np.float32))
        >>> opt = optim.Adam([w], lr=0.1)
        >>> w.grad = 2 * w.data
        >>> opt.step()
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = os.path.join(tmp, "checkpoint.npz")
        ...     optim.save({"optimizer": opt.state_dict(), "epoch": 1}, path)
        ...     ckpt = optim.load(path)
        >>> ckpt["epoch"], ckpt["optimizer"]["state"][0]["step"]
        (1, array(1., dtype=float32))
    """
    encoder = _Encoder()
    tree = encoder.encode(obj, "obj")
    if metadata is not None:
        if not isinstance(metadata, Mapping) or not all(type(k) is str for k in metadata):
            raise TypeError("refoptim.save: metadata must be a dict with str keys")
        metadata = dict(metadata)
        try:
            json.dumps(metadata, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"refoptim.save: metadata must be plain JSON data: {exc}") from None
    names = [f"{_ARRAY_DIR}{i}.npy" for i in range(len(encoder.arrays))]
    header = {
        "format": _FORMAT,
        "format_version": FORMAT_VERSION,
        "refoptim_version": _version(),
        "metadata": metadata,
        "arrays": names,
        "object": tree,
    }
    header_bytes = json.dumps(header, allow_nan=False, separators=(",", ":")).encode("utf-8")

    target = os.path.realpath(os.fspath(path))
    directory, name = os.path.split(target)
    fd, tmp = _create_temporary(directory, name)
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
                zf.writestr(_member(_HEADER), header_bytes)
                for member, array in zip(names, encoder.arrays):
                    with zf.open(_member(member), "w", force_zip64=True) as out:
                        np.lib.format.write_array(out, array, version=(1, 0), allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_directory(directory)


def _member(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_DATE)
    info.compress_type = zipfile.ZIP_STORED
    info.create_system = 3
    info.external_attr = 0o644 << 16
    return info


def _create_temporary(directory: str, name: str) -> tuple[int, str]:
    """``.<name>.tmp-<8 hex digits>`` in ``directory``, created exclusively with the
    permissions a new file gets (the umask applies, unlike ``tempfile.mkstemp``'s 0600)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = os.path.join(directory or ".", f".{name}.tmp-{secrets.token_hex(4)}")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"refoptim.save: no free temporary file name for {name!r} in {directory!r}")


def _fsync_directory(directory: str) -> None:
    """Make the rename durable where the system lets a directory be opened (not Windows)."""
    try:
        fd = os.open(directory or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------- load
class _Reader:
    """Reads one checkpoint archive; every failure becomes a :class:`CheckpointError`."""

    def __init__(self, path: str, f: Any) -> None:
        self.path = path
        self.f = f

    def fail(self, reason: str) -> CheckpointError:
        return CheckpointError(f"refoptim.load: {self.path!r} {reason}")

    def open(self) -> dict[str, Any]:
        start = self.f.read(4)
        self.f.seek(0)
        if not start:
            raise self.fail("is empty: not a refoptim checkpoint")
        if start[:1] == b"\x80":  # the PROTO opcode every pickle since protocol 2 starts with
            raise self.fail(
                "is a pickle file, not a refoptim checkpoint; refoptim.load never unpickles "
                "(unpickle it yourself only if you trust where it came from)"
            )
        if start != b"PK\x03\x04":
            raise self.fail("is not a refoptim checkpoint (not a ZIP archive)")
        try:
            self.zf = zipfile.ZipFile(self.f)
        except zipfile.BadZipFile as exc:
            raise self.fail(f"is not a readable ZIP archive (truncated or corrupted): {exc}") from exc
        names = self.zf.namelist()
        if _HEADER not in names:
            if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
                raise self.fail(
                    "is a torch.save file, which holds pickled data; refoptim.load never unpickles "
                    "(convert it with torch.load(weights_only=True) and refoptim.save)"
                )
            raise self.fail(f"is a ZIP archive without {_HEADER!r}: not a refoptim checkpoint")
        header = json.loads(self.member(_HEADER).decode("utf-8"))
        if not isinstance(header, dict) or header.get("format") != _FORMAT:
            raise self.fail(f"has no {_FORMAT!r} header: not a refoptim checkpoint")
        version = header.get("format_version")
        if type(version) is not int or version < 1:
            raise self.fail(f"has an invalid format version {version!r}")
        if version > FORMAT_VERSION:
            raise self.fail(
                f"has format version {version}, written by a newer refoptim "
                f"({header.get('refoptim_version')!r}); this refoptim reads versions up to {FORMAT_VERSION}"
            )
        arrays = header.get("arrays")
        if not isinstance(arrays, list) or not all(isinstance(a, str) for a in arrays) or "object" not in header:
            raise self.fail("has a malformed header")
        self.array_names = arrays
        self.loaded: dict[int, Any] = {}
        return header

    def member(self, name: str) -> bytes:
        try:
            info = self.zf.getinfo(name)
        except KeyError:
            raise self.fail(f"lacks the member {name!r} (corrupted)") from None
        if info.compress_type != zipfile.ZIP_STORED:
            raise self.fail(f"stores {name!r} compressed (method {info.compress_type}); refoptim checkpoints store members uncompressed")
        if info.flag_bits & 0x1:
            raise self.fail(f"has the member {name!r} encrypted")
        return self.zf.read(info)  # checks the CRC-32

    def array(self, spec: dict[str, Any], tag: str) -> Any:
        index = spec[tag]
        if type(index) is not int or not 0 <= index < len(self.array_names):
            raise self.fail(f"refers to array {index!r}, which it does not hold (corrupted)")
        if tag == "$array" and index in self.loaded:
            return self.loaded[index]
        name = self.array_names[index]
        a = _read_npy(self, name, self.member(name))
        if np.dtype(str(spec.get("dtype"))) != a.dtype or spec.get("shape") != list(a.shape):
            raise self.fail(f"has the member {name!r} of dtype {a.dtype} and shape {a.shape}, not as its header says")
        if tag == "$numpy_scalar":
            if a.shape != ():
                raise self.fail(f"has a NumPy scalar {name!r} of shape {a.shape}")
            return a[()]
        self.loaded[index] = a
        return a

    def decode(self, node: Any) -> Any:
        if node is None or type(node) in (bool, int, float, str):
            return node
        if type(node) is list:
            return [self.decode(v) for v in node]
        if type(node) is not dict:
            raise self.fail(f"holds an unexpected JSON value {node!r}")
        first = next(iter(node), None)
        if first is None or not first.startswith("$"):
            return {k: self.decode(v) for k, v in node.items()}
        value = node[first]
        if first == "$tuple" and type(value) is list:
            return tuple(self.decode(v) for v in value)
        if first in _MAPPING_TYPES and type(value) is list:
            out = _MAPPING_TYPES[first]()
            for item in value:
                if type(item) is not list or len(item) != 2:
                    raise self.fail("holds a malformed dict entry")
                out[self.decode(item[0])] = self.decode(item[1])
            return out
        if first == "$float" and type(value) is str:
            return _float_from_text(value)
        if first == "$complex" and type(value) is list and len(value) == 2:
            re, im = (self.decode(v) for v in value)
            if type(re) is not float or type(im) is not float:
                raise self.fail("holds a malformed complex number")
            return complex(re, im)
        if first in ("$array", "$numpy_scalar"):
            return self.array(node, first)
        if first == "$sparse_grad" and type(value) is list and len(value) == 4:
            indices, values, shape, coalesced = value
            if type(indices) is not dict or type(values) is not dict or type(coalesced) is not bool:
                raise self.fail("holds a malformed SparseGrad")
            return SparseGrad(
                self.array(indices, "$array"), self.array(values, "$array"), tuple(shape), is_coalesced=coalesced
            )
        raise self.fail(f"holds an unknown or malformed entry {first!r} (written by a newer refoptim?)")


def _float_from_text(text: str) -> float:
    if text in ("inf", "-inf", "nan"):
        return float(text)
    if not text.startswith("0x") or len(text) != 18:
        raise ValueError(f"malformed float {text!r}")
    return struct.unpack("<d", struct.pack("<Q", int(text, 16)))[0]


def _read_npy(reader: _Reader, name: str, data: bytes) -> np.ndarray:
    """An ``.npy`` member as a new writeable array: header parsed by NumPy's literal parser,
    data by ``np.frombuffer``, after checking dtype and size (no pickle, no allocation the
    data does not cover)."""
    fp = io.BytesIO(data)
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
    else:
        raise reader.fail(f"has the member {name!r} in .npy version {version}, which it does not read")
    if dtype.hasobject or dtype.newbyteorder("=") not in _DTYPES:
        raise reader.fail(
            f"has the member {name!r} of dtype {dtype}; refoptim.load reads numeric and bool arrays only "
            "(object arrays hold pickled data)"
        )
    if not all(type(s) is int and s >= 0 for s in shape):
        raise reader.fail(f"has the member {name!r} with an invalid shape {shape!r}")
    count = math.prod(shape)
    offset = fp.tell()
    if len(data) - offset != count * dtype.itemsize:
        raise reader.fail(
            f"has the member {name!r} with {len(data) - offset} data bytes where shape {shape} and "
            f"dtype {dtype} need {count * dtype.itemsize} (corrupted)"
        )
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    a = flat.reshape(shape, order="F" if fortran else "C")
    return np.array(a, dtype=dtype.newbyteorder("="), order="C", copy=True)


def _read(path: str | os.PathLike, decode: bool) -> tuple[dict[str, Any], Any]:
    name = os.fspath(path)
    with open(name, "rb") as f:  # OSError (FileNotFoundError, ...) as from open()
        reader = _Reader(name, f)
        try:
            header = reader.open()
            return header, (reader.decode(header["object"]) if decode else None)
        except CheckpointError:
            raise
        except Exception as exc:
            raise reader.fail(f"is truncated or corrupted ({type(exc).__name__}: {exc})") from exc


def _namespace(xp: Any) -> Any:
    if xp is None:
        return None
    if isinstance(xp, str):
        from .testing import backends

        return backends.require_backend(xp).namespace()
    if not callable(getattr(xp, "asarray", None)):
        raise TypeError(f"refoptim.load: xp must be None, a backend name or an array namespace, not {xp!r}")
    return xp


def _convert(value: Any, convert: Any, memo: dict[int, Any]) -> Any:
    if isinstance(value, np.ndarray):
        known = memo.get(id(value))
        if known is None:
            known = memo[id(value)] = convert(value)
        return known
    if isinstance(value, SparseGrad):
        return SparseGrad(
            _convert(value.indices, convert, memo),
            _convert(value.values, convert, memo),
            value.shape,
            is_coalesced=value.is_coalesced(),
        )
    if type(value) is list:
        return [_convert(v, convert, memo) for v in value]
    if type(value) is tuple:
        return tuple(_convert(v, convert, memo) for v in value)
    if type(value) in _MAPPING_TAGS:
        return type(value)((k, _convert(v, convert, memo)) for k, v in value.items())
    return value


def load(path: str | os.PathLike, *, xp: Any = None, device: Any = None) -> Any:
    """Load what :func:`save` wrote to ``path`` (``torch.load(weights_only=True)``).

    Nothing in the file is executed: it is read with :mod:`zipfile`, :mod:`json` and
    NumPy's ``.npy`` parser, never with pickle.

    Args:
        path (str or os.PathLike): the checkpoint file.
        xp (optional): the array library the arrays come back in: ``None`` (NumPy arrays,
            the default), an Array API namespace (``array_api_strict``, ``jax.numpy``,
            ``array_api_compat.cupy``, ...: each array is ``xp.asarray(numpy_array)``), or
            a backend name of :mod:`refoptim.testing.backends` (``"array-api-strict"``,
            ``"cupy"``, ``"jax"``, ...), whose namespace is then used.
        device (optional): passed as ``device=`` to ``xp.asarray`` (e.g. a CuPy or JAX
            device); ``None`` leaves the namespace's default.

    An array keeps its dtype: where ``xp.asarray`` would change it (JAX without x64 makes
    float64 float32), ``load`` raises ``TypeError`` instead; load such a checkpoint with
    ``xp=None`` and let ``load_state_dict`` cast to the parameters' dtype.

    Returns the saved object with its types: tuples as tuples, int dict keys as ints,
    0-d arrays as 0-d arrays of their dtype, Python floats (``inf`` and ``nan`` too),
    ints and bools as themselves, NumPy scalars as NumPy scalars, SparseGrads as
    SparseGrads of ``xp``. An array saved twice as one object loads as one object. Pass
    the parts to ``load_state_dict``, which casts them to the parameters' namespace,
    device and dtype as torch does.

    Raises :class:`CheckpointError` (a ``ValueError``) when the file is not an intact
    refoptim checkpoint (see :mod:`refoptim.checkpoint`), ``OSError`` when it cannot be
    opened, and, for ``xp`` given by name, ``ValueError`` (unknown name) or
    :class:`refoptim.testing.backends.BackendUnavailable` (not installed here).
    """
    namespace = _namespace(xp)
    _, obj = _read(path, decode=True)
    if namespace is None and device is None:
        return obj
    kwargs = {} if device is None else {"device": device}
    target = np if namespace is None else namespace

    def convert(a: np.ndarray) -> Any:
        out = target.asarray(a, **kwargs)
        want = getattr(target, a.dtype.name, None)
        if want is not None and out.dtype != want:
            raise TypeError(
                f"refoptim.load: {getattr(target, '__name__', target)!r} turned an array of dtype {a.dtype.name} "
                f"into one of dtype {out.dtype} (JAX without x64 has no 64-bit types); load with xp=None and "
                "let load_state_dict cast to the parameters' dtype"
            )
        return out

    return _convert(obj, convert, {})


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The header of the checkpoint at ``path``, without reading its arrays: a dict with
    ``format_version``, ``refoptim_version`` (of the refoptim that wrote it) and
    ``metadata`` (what :func:`save` was given, or ``None``).

    Raises as :func:`load` does."""
    header, _ = _read(path, decode=False)
    return {key: header.get(key) for key in ("format_version", "refoptim_version", "metadata")}
