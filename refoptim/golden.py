r"""``python -m refoptim golden``: golden vectors for frameworks without Python.

An optimizer written in Rust, C++ or Mojo can check itself against refoptim without Python
or torch: this module writes every configuration of the conformance matrix
(:func:`refoptim.testing.matrix.configs`) as plain ``.npy`` files (a 128-byte-aligned
text header, then the elements in C order, little-endian) and one ``manifest.json`` that
says what each file holds. The manual's page ``docs/golden.md`` describes the layout, the
manifest and a reader in C (``conformance/golden/check_adam.c``).

**What is stored.** For every configuration, refoptim's own trajectory from the matrix's
initial values (:func:`refoptim.testing.inputs.initial_values`), with the gradients of the
public seeded source :class:`refoptim.testing.inputs.Gradients` evaluated at refoptim's
current parameters. Since refoptim is the reference, its trajectory *is* the sequence of
teacher-forced steps: step ``t`` (from 1) starts from ``param[t-1]``, ``state[t-1]`` and
``grad[t-1]`` and ends at ``param[t]`` and ``state[t]``. Per parameter ``i`` of a
configuration, in ``<Optimizer>/<dtype>/<NNN>/p<i>/``:

- ``param.npy``: shape ``(steps + 1, *shape)``; row 0 is the initial value;
- ``grad.npy``: ``(steps, *shape)``, row ``t - 1`` the gradient of step ``t`` (zeros where
  the parameter got none); ``has_grad.npy``: ``(steps,)`` bool. A parameter without a
  gradient is not stepped: its parameter and state rows repeat;
- ``state_<name>.npy``: ``(steps + 1, *entry_shape)`` for every state entry (``step``,
  ``exp_avg``, ...), in the entry's own dtype (``step`` is float32 whatever the parameter);
  ``state_present.npy``: ``(steps + 1,)`` bool, False before the parameter's first gradient
  (torch creates every entry then; the rows before hold zeros);
- with ``--with-torch``: ``torch_param.npy`` ``(steps, *shape)``, ``torch_state_<name>.npy``
  and ``torch_state_present.npy`` ``(steps, ...)``: row ``t - 1`` is torch 2.13 (CPU,
  ``foreach=False``) after one step from refoptim's ``param[t-1]``, ``state[t-1]`` and
  ``grad[t-1]``.

The non-contiguous ``"view"`` parameter is stored contiguously (its values); NaNs, if any,
are written as the positive quiet NaN (a NaN's sign is not part of refoptim's contract);
signed zeros are kept.

**The manifest** (schema: ``refoptim/testing/golden.schema.json``) holds the schema version,
refoptim's version and the torch version it reproduces, the selection, and per
configuration: its id, optimizer, dtype, objective, seed, steps, every constructor option
with torch's keyword names and torch's defaults filled in (``foreach``, ``fused``,
``capturable`` and ``differentiable`` left out), the options of every parameter group,
the parameters (shape, group, files) with their state entries (dtype, shape), the
thresholds that apply (:mod:`refoptim.testing.thresholds`), and the SHA-256, NumPy
``descr`` and shape of every file. Arrays among the options are written as
``{"array": value, "dtype": "float32"}``, tuples as lists. It is written with sorted keys
and no timestamp or host name, so it is byte-identical on every machine, thread count
(``REFOPTIM_NUM_THREADS``) and SIMD setting (``NPY_DISABLE_CPU_FEATURES``); the SHA-256 of
the manifest of ``--optimizer Adam`` is committed in ``refoptim/testing/golden_digests.json``
(``--write-digest`` regenerates it). ``--with-torch`` adds torch's values, which are not
machine-independent (torch's MKL ``sqrt``), so such a manifest is never compared.

**Coverage.** The elementwise optimizers (SGD, Adam, AdamW, Adagrad, Adadelta, Adamax,
ASGD, NAdam, RAdam, RMSprop, Rprop) and Adafactor (same gradient source, its own shapes).
Left out, and listed in the manifest's ``left_out``: LBFGS (a step is a closure with inner
iterations and a line search), Muon (its gradient source lives in its torch-side harness)
and sparse gradients (SparseAdam; SGD and Adagrad with sparse gradients).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

import refoptim

from ._backend import is_array
from .testing import inputs, thresholds
from .testing.matrix import (
    DTYPES,
    EXTENSIONS,
    IMPLEMENTATION_FLAGS,
    SHAPES,
    Config,
    configs,
    constructor_defaults,
    optimizer_names,
)

__all__ = [
    "COVERED_EXTENSIONS",
    "DIGESTS_PATH",
    "GoldenError",
    "LEFT_OUT",
    "MANIFEST",
    "SCHEMA_PATH",
    "SCHEMA_VERSION",
    "Summary",
    "command",
    "committed_digest",
    "full_options",
    "generate",
    "left_out_reason",
    "npy_bytes",
    "selection_key",
    "write_digest",
]

SCHEMA_VERSION = 1
"""The manifest's ``schema_version``, raised when a field changes meaning or goes away."""

MANIFEST = "manifest.json"
SCHEMA_PATH = Path(__file__).resolve().parent / "testing" / "golden.schema.json"
DIGESTS_PATH = Path(__file__).resolve().parent / "testing" / "golden_digests.json"

FLAGS = IMPLEMENTATION_FLAGS
"""Constructor flags that only pick one of torch's implementations, and so are not in the
manifest (:data:`refoptim.testing.matrix.IMPLEMENTATION_FLAGS`)."""

COVERED_EXTENSIONS = ("Adafactor",)
"""Optimizers of ``matrix.EXTENSIONS`` the corpus covers (besides the elementwise ones)."""

LEFT_OUT: dict[str, str] = {
    "LBFGS": "a step is a closure with inner iterations and a line search, not one gradient",
    "Muon": "its gradient source lives in the torch-side harness (refoptim.testing.conformance_muon)",
    "SparseAdam": "sparse gradients (refoptim.SparseGrad) are not dense arrays",
    "sparse": "sparse gradients (refoptim.SparseGrad) are not dense arrays",
}
"""Why an optimizer (or the ``"sparse"`` objective) is left out of the corpus."""


class GoldenError(Exception):
    """A request the corpus cannot serve (exit status 2 on the command line)."""


def left_out_reason(cfg: Config) -> str | None:
    """Why ``cfg`` is not in the corpus, or None when it is."""
    if cfg.objective in inputs.SPARSE_OBJECTIVES:
        return LEFT_OUT["sparse"]
    if cfg.optimizer in EXTENSIONS and cfg.optimizer not in COVERED_EXTENSIONS:
        return LEFT_OUT.get(cfg.optimizer, "not covered")
    return None


def _section(cfg: Config) -> str:
    """The name a left-out configuration is counted under: its optimizer, ``"SGD (sparse)"``
    and ``"Adagrad (sparse)"`` for sparse gradients (the fingerprint's sections)."""
    sparse = cfg.objective in inputs.SPARSE_OBJECTIVES and cfg.optimizer not in EXTENSIONS
    return cfg.optimizer + (" (sparse)" if sparse else "")


def shapes_of(cfg: Config) -> tuple[Any, ...]:
    """The parameters of a covered configuration (``"view"``: a (3, 4) non-contiguous view)."""
    return inputs.ADAFACTOR_SHAPES if cfg.optimizer == inputs.ADAFACTOR else SHAPES


# ============================================================================ values to JSON
def _json_value(value: Any) -> Any:
    """An option as JSON: arrays as ``{"array": value, "dtype": name}``, tuples as lists."""
    if isinstance(value, np.ndarray):
        a = np.asarray(value)
        return {"array": a.tolist(), "dtype": a.dtype.name}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot write option value {value!r} to the manifest")


def full_options(cfg: Config) -> dict[str, Any]:
    """Every constructor option of ``cfg`` with torch's keyword names: the class signature's
    defaults (torch's), overridden by the configuration's, without :data:`FLAGS`."""
    options = constructor_defaults(cfg.optimizer)
    options.update({k: v for k, v in cfg.options.items() if k not in FLAGS})
    return {k: _json_value(v) for k, v in options.items()}


def _group_options(group: dict[str, Any]) -> dict[str, Any]:
    return {k: _json_value(v) for k, v in group.items() if k != "params" and k not in FLAGS}


def _thresholds(cfg: Config) -> dict[str, Any]:
    limit, unit = thresholds.one_step_limit(cfg.optimizer, cfg.dtype)
    out: dict[str, Any] = {
        "one_step": float(limit),
        "one_step_unit": unit,
        "trajectory_rel": float(thresholds.trajectory_rel(cfg.dtype, cfg.optimizer)),
    }
    update = getattr(thresholds, "UPDATE_ULP", None)  # the update-scale figure, where it exists
    if isinstance(update, dict):
        update = update.get(cfg.dtype)
    if isinstance(update, (int, float)) and not isinstance(update, bool) and unit == "ULP":
        out["update_ulp"] = float(update)
    return out


# ============================================================================ .npy files
def _canonical(a: np.ndarray) -> np.ndarray:
    """``a`` contiguous and little-endian, every NaN the positive quiet NaN."""
    a = np.asarray(a)
    if not a.flags.c_contiguous:
        a = a.copy(order="C")  # not np.ascontiguousarray, which makes a 0-d array 1-d
    if a.dtype.byteorder == ">" or (a.dtype.byteorder == "=" and sys.byteorder == "big"):
        a = a.astype(a.dtype.newbyteorder("<"))
    if a.dtype.kind in "fc":
        parts = a.view(a.real.dtype) if a.dtype.kind == "c" else a
        nan = np.isnan(parts)
        if nan.any():
            a = a.copy()
            parts = a.view(a.real.dtype) if a.dtype.kind == "c" else a
            parts[nan] = np.nan
    return a


def npy_descr(dtype: np.dtype) -> str:
    """The ``descr`` of a little-endian ``.npy`` header: ``<f4``, ``<f8``, ``<c8``, ``|b1``."""
    dtype = np.dtype(dtype)
    if dtype.itemsize == 1:
        return "|" + dtype.str[1:]
    return "<" + dtype.str[1:]


def npy_bytes(a: np.ndarray) -> bytes:
    """``a`` as a ``.npy`` file (format 1.0), written here rather than by ``np.save`` so the
    bytes never change with NumPy's version: the magic ``\\x93NUMPY``, version 1.0, the
    header length (uint16, little-endian), the header ``{'descr': '<f4', 'fortran_order':
    False, 'shape': (51, 3, 4), }`` padded with spaces and a newline to a multiple of 64
    bytes, then the elements in C order, little-endian (bool: one byte, 0 or 1)."""
    a = _canonical(a)
    dims = ", ".join(str(d) for d in a.shape) + ("," if a.ndim == 1 else "")
    header = f"{{'descr': '{npy_descr(a.dtype)}', 'fortran_order': False, 'shape': ({dims}), }}"
    header += " " * (-(10 + len(header) + 1) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1") + a.tobytes()


@dataclass
class _Writer:
    """Writes the files of a corpus under ``root`` and remembers their sizes."""

    root: Path
    files: int = 0
    bytes: int = 0

    def write(self, relative: str, array: np.ndarray) -> dict[str, Any]:
        data = npy_bytes(array)
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.files += 1
        self.bytes += len(data)
        a = _canonical(array)
        return {
            "path": relative,
            "sha256": hashlib.sha256(data).hexdigest(),
            "descr": npy_descr(a.dtype),
            "shape": list(a.shape),
        }


# ============================================================================ one configuration
class _History:
    """One parameter's rows over the steps: param, grad, has_grad and every state entry."""

    def __init__(self, value: np.ndarray, steps: int, rows: int) -> None:
        self.param = np.zeros((rows, *value.shape), dtype=value.dtype)
        self.grad = np.zeros((steps, *value.shape), dtype=value.dtype)
        self.has_grad = np.zeros(steps, dtype=bool)
        self.present = np.zeros(rows, dtype=bool)
        self.state: dict[str, np.ndarray] = {}
        self.rows = rows

    def record_state(self, row: int, state: dict[str, Any] | None, where: str) -> None:
        if not state:
            if self.present[:row].any():
                raise RuntimeError(f"{where}: the state went away at row {row}")
            return
        if self.state and set(state) != set(self.state):
            raise RuntimeError(f"{where}: state keys changed from {sorted(self.state)} to {sorted(state)} at row {row}")
        for key, value in state.items():
            if not is_array(value):
                raise RuntimeError(f"{where}: state[{key!r}] is {type(value).__name__}, not an array")
            value = np.asarray(value)
            if key not in self.state:
                if self.present[:row].any():
                    raise RuntimeError(f"{where}: state[{key!r}] appeared after the others, at row {row}")
                self.state[key] = np.zeros((self.rows, *value.shape), dtype=value.dtype)
            stack = self.state[key]
            if stack.shape[1:] != value.shape or stack.dtype != value.dtype:
                raise RuntimeError(f"{where}: state[{key!r}] changed dtype or shape at row {row}")
            stack[row] = value
        self.present[row] = True


class _TorchSide:
    """torch 2.13 (CPU, ``foreach=False``) stepped once from refoptim's values at every step."""

    def __init__(self, cfg: Config, values: list[np.ndarray]) -> None:
        from .testing import torch_adapter

        self.ta = torch_adapter
        if cfg.optimizer == inputs.ADAFACTOR:
            from .testing.conformance_adafactor import build_twin
        else:
            build_twin = torch_adapter.build_twin
        self.twin = build_twin(cfg, values)

    def step(self, params: list[np.ndarray], states: list[dict[str, Any] | None], grads: list[Any]) -> tuple[list[np.ndarray], list[dict[str, np.ndarray]]]:
        import torch

        optimizer = self.twin.optimizer
        for tp, value, state, g in zip(self.twin.params, params, states, grads):
            with torch.no_grad():
                tp.copy_(self.ta.to_torch(value))
            if state:
                optimizer.state[tp] = {k: self.ta.to_torch(np.asarray(v)) for k, v in state.items()}
            else:
                optimizer.state.pop(tp, None)
            tp.grad = None if g is None else self.ta.to_torch(g)
        optimizer.step()
        after = [self.ta.from_torch(tp) for tp in self.twin.params]
        states_after = [
            {k: self.ta.from_torch(v) if isinstance(v, torch.Tensor) else np.asarray(v) for k, v in optimizer.state.get(tp, {}).items()}
            for tp in self.twin.params
        ]
        return after, states_after


def _shape_json(shape: Any) -> list[int]:
    return [3, 4] if shape == "view" else list(shape)


def _run_config(cfg: Config, directory: str, writer: _Writer, with_torch: bool) -> dict[str, Any]:
    """Run ``cfg`` on refoptim (and torch), write its files, return its manifest entry."""
    shapes = shapes_of(cfg)
    values = inputs.initial_values(cfg, shapes)
    if shapes is SHAPES:
        twin = inputs.build_refoptim(cfg, values)
    else:
        params = inputs.refoptim_params(shapes, values)
        optimizer = inputs.refoptim_class(cfg.optimizer)(inputs._groups(cfg, params), **{"foreach": False, **cfg.options})
        twin = inputs.Twin(params, optimizer)
    params, optimizer = twin.params, twin.optimizer
    gradients = inputs.Gradients(cfg, values)
    torch_side = _TorchSide(cfg, values) if with_torch else None
    steps = cfg.steps
    hist = [_History(v, steps, steps + 1) for v in values]
    torch_hist = [_History(v, steps, steps) for v in values] if with_torch else []

    def record(row: int) -> None:
        for i, (h, p) in enumerate(zip(hist, params)):
            h.param[row] = np.asarray(p.data)
            h.record_state(row, optimizer.state.get(p), f"{cfg.id}, param {i}")

    record(0)
    for t in range(steps):
        before = [np.array(h.param[t]) for h in hist]
        grads = gradients(t, before)
        for h, g in zip(hist, grads):
            if g is not None:
                h.grad[t] = g
                h.has_grad[t] = True
        if torch_side is not None:
            states = [{k: np.array(s[t]) for k, s in h.state.items()} if h.present[t] else None for h in hist]
            after, states_after = torch_side.step(before, states, grads)
            for i, (th, value, state) in enumerate(zip(torch_hist, after, states_after)):
                th.param[t] = value
                th.record_state(t, state, f"{cfg.id}, torch, param {i}")
        for p, g in zip(params, grads):
            p.grad = None if g is None else np.array(g)
        optimizer.step()
        record(t + 1)

    group_of = {id(p): gi for gi, group in enumerate(optimizer.param_groups) for p in group["params"]}
    parameters = []
    for i, (shape, h) in enumerate(zip(shapes, hist)):
        base = f"{directory}/p{i}"
        entry: dict[str, Any] = {
            "index": i,
            "shape": _shape_json(shape),
            "view": shape == "view",
            "group": group_of[id(params[i])],
            "param": writer.write(f"{base}/param.npy", h.param),
            "grad": writer.write(f"{base}/grad.npy", h.grad),
            "has_grad": writer.write(f"{base}/has_grad.npy", h.has_grad),
            "state_present": writer.write(f"{base}/state_present.npy", h.present),
            "state": {
                name: {
                    "dtype": stack.dtype.name,
                    "shape": list(stack.shape[1:]),
                    "file": writer.write(f"{base}/state_{name}.npy", stack),
                }
                for name, stack in sorted(h.state.items())
            },
        }
        if with_torch:
            th = torch_hist[i]
            entry["torch"] = {
                "param": writer.write(f"{base}/torch_param.npy", th.param),
                "state_present": writer.write(f"{base}/torch_state_present.npy", th.present),
                "state": {
                    name: {
                        "dtype": stack.dtype.name,
                        "shape": list(stack.shape[1:]),
                        "file": writer.write(f"{base}/torch_state_{name}.npy", stack),
                    }
                    for name, stack in sorted(th.state.items())
                },
            }
        parameters.append(entry)
    return {
        "id": cfg.id,
        "short_id": cfg.short_id,
        "label": cfg.label,
        "directory": directory,
        "optimizer": cfg.optimizer,
        "dtype": cfg.dtype,
        "objective": cfg.objective,
        "seed": cfg.seed,
        "steps": steps,
        "options": full_options(cfg),
        "options_given": {k: _json_value(v) for k, v in cfg.options.items()},
        "groups": [_group_options(g) for g in optimizer.param_groups],
        "groups_given": [{k: _json_value(v) for k, v in g.items()} for g in cfg.groups],
        "shapes": [_shape_json(s) for s in shapes],
        "parameters": parameters,
        "thresholds": _thresholds(cfg),
    }


# ============================================================================ the corpus
@dataclass
class Summary:
    """What :func:`generate` wrote."""

    out: Path
    manifest_sha256: str
    configurations: int
    files: int
    bytes: int
    seconds: float
    selection: dict[str, Any]
    left_out: list[dict[str, Any]] = field(default_factory=list)
    per_optimizer: dict[str, dict[str, Any]] = field(default_factory=dict)
    with_torch: bool = False


def selection_key(selection: dict[str, Any]) -> str:
    """The key of a selection in the committed digests: ``optimizers=Adam dtypes=float32,... steps=50``."""
    return (
        f"optimizers={','.join(selection['optimizers'])} dtypes={','.join(selection['dtypes'])} "
        f"steps={selection['steps']}"
    )


def _prepare(out: Path) -> None:
    """Make ``out`` ready: new or empty, or holding a previous corpus, whose listed files
    (and the folders they leave empty) are removed. Anything else is refused."""
    manifest = out / MANIFEST
    if out.exists() and not out.is_dir():
        raise GoldenError(f"--out {out}: not a directory")
    if not out.exists() or not any(out.iterdir()):
        out.mkdir(parents=True, exist_ok=True)
        return
    if not manifest.is_file():
        raise GoldenError(f"--out {out}: the directory is not empty and holds no golden corpus ({MANIFEST}); choose another")
    try:
        old = json.loads(manifest.read_text())
        paths = [
            f["path"]
            for c in old["configurations"]
            for p in c["parameters"]
            for f in _files_of(p)
        ]
    except (ValueError, KeyError, TypeError) as exc:
        raise GoldenError(f"--out {out}: {MANIFEST} is not a golden manifest ({exc}); choose another directory") from exc
    root = out.resolve()
    folders = set()
    for relative in paths:
        path = (out / relative).resolve()
        if root not in path.parents:
            raise GoldenError(f"--out {out}: {MANIFEST} lists a file outside the directory: {relative}")
        path.unlink(missing_ok=True)
        folders.update(p for p in path.parents if root in p.parents)
    manifest.unlink()
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        try:
            folder.rmdir()
        except OSError:
            pass  # not empty: something else lives there


def _files_of(parameter: dict[str, Any]) -> list[dict[str, Any]]:
    files = [parameter[k] for k in ("param", "grad", "has_grad", "state_present")]
    files += [s["file"] for s in parameter["state"].values()]
    if "torch" in parameter:
        files += [parameter["torch"]["param"], parameter["torch"]["state_present"]]
        files += [s["file"] for s in parameter["torch"]["state"].values()]
    return files


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    """The manifest as written: sorted keys, one-space indents, floats as ``repr``, ASCII."""
    return (json.dumps(manifest, sort_keys=True, indent=1, ensure_ascii=True, allow_nan=False) + "\n").encode("ascii")


def generate(
    out: str | os.PathLike,
    optimizers: list[str] | None = None,
    dtypes: list[str] | tuple[str, ...] | None = None,
    steps: int | None = None,
    with_torch: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Summary:
    """Write the golden corpus of the selected configurations into ``out``.

    ``optimizers`` (torch class names; default every optimizer of the matrix), ``dtypes``
    (default :data:`refoptim.testing.matrix.DTYPES`) and ``steps`` (default the matrix's,
    50; ASGD runs at least 120) select configurations as :func:`matrix.configs` does.
    Raises :class:`GoldenError` for an unknown optimizer, a selection with nothing covered,
    or an ``out`` that is neither new, empty nor a previous corpus.
    """
    start = time.perf_counter()
    known = optimizer_names()
    names = list(dict.fromkeys(optimizers)) if optimizers else list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise GoldenError(f"unknown optimizer(s): {', '.join(unknown)}; known: {', '.join(known)}")
    dtypes = tuple(dict.fromkeys(dtypes)) if dtypes else DTYPES
    bad = [d for d in dtypes if d not in DTYPES]
    if bad:
        raise GoldenError(f"unknown dtype(s): {', '.join(bad)}; known: {', '.join(DTYPES)}")
    steps = 50 if steps is None else int(steps)
    if steps < 1:
        raise GoldenError("--steps must be at least 1")
    selection = {"optimizers": names, "dtypes": list(dtypes), "steps": steps}
    todo, left = [], {}
    for cfg in configs(names, dtypes, steps):
        reason = left_out_reason(cfg)
        if reason is None:
            todo.append(cfg)
        else:
            entry = left.setdefault(_section(cfg), {"section": _section(cfg), "configurations": 0, "reason": reason})
            entry["configurations"] += 1
    left_out = list(left.values())
    if not todo:
        raise GoldenError(
            "nothing to write: "
            + "; ".join(f"{e['section']} is left out ({e['reason']})" for e in left_out)
            + f". The corpus covers: {', '.join(covered_optimizers())}"
        )
    out = Path(out)
    _prepare(out)
    writer = _Writer(out)
    entries = []
    per_optimizer: dict[str, dict[str, Any]] = {}
    index: dict[tuple[str, str], int] = {}
    for cfg in todo:
        k = index.get((cfg.optimizer, cfg.dtype), 0)
        index[(cfg.optimizer, cfg.dtype)] = k + 1
        if progress and k == 0:
            progress(f"  {cfg.optimizer} {cfg.dtype} ...")
        files, size, t0 = writer.files, writer.bytes, time.perf_counter()
        entries.append(_run_config(cfg, f"{cfg.optimizer}/{cfg.dtype}/{k:03d}", writer, with_torch))
        row = per_optimizer.setdefault(cfg.optimizer, {"configurations": 0, "files": 0, "bytes": 0, "seconds": 0.0})
        row["configurations"] += 1
        row["files"] += writer.files - files
        row["bytes"] += writer.bytes - size
        row["seconds"] += time.perf_counter() - t0
    torch_info = None
    if with_torch:
        import torch

        torch_info = {"version": torch.__version__, "device": "cpu", "foreach": False}
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "generator": "python -m refoptim golden",
        "refoptim_version": refoptim.__version__,
        "torch_version": refoptim.TORCH_VERSION,
        "selection": selection,
        "configurations": entries,
        "left_out": left_out,
        "torch": torch_info,
        "totals": {"configurations": len(entries), "files": writer.files, "bytes": writer.bytes},
    }
    data = manifest_bytes(manifest)
    (out / MANIFEST).write_bytes(data)
    return Summary(
        out=out,
        manifest_sha256=hashlib.sha256(data).hexdigest(),
        configurations=len(entries),
        files=writer.files + 1,
        bytes=writer.bytes + len(data),
        seconds=time.perf_counter() - start,
        selection=selection,
        left_out=left_out,
        per_optimizer=per_optimizer,
        with_torch=with_torch,
    )


def covered_optimizers() -> list[str]:
    """The optimizers the corpus covers (SGD and Adagrad without their sparse configurations)."""
    return [n for n in optimizer_names() if n not in EXTENSIONS or n in COVERED_EXTENSIONS]


# ============================================================================ committed digests
def load_digests(path: Path | str = DIGESTS_PATH) -> dict[str, Any]:
    """The committed digests (``refoptim/testing/golden_digests.json``), or an empty one."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}


def committed_digest(selection: dict[str, Any], path: Path | str = DIGESTS_PATH) -> str | None:
    """The committed SHA-256 of the manifest of ``selection``, or None."""
    return load_digests(path).get("digests", {}).get(selection_key(selection))


def write_digest(selection: dict[str, Any], sha256: str, path: Path | str = DIGESTS_PATH) -> None:
    """Store ``sha256`` as the committed digest of ``selection``'s manifest."""
    digests = load_digests(path).get("digests", {})
    digests[selection_key(selection)] = sha256
    data = {
        "about": "SHA-256 of manifest.json of `python -m refoptim golden` for each selection; "
        "`python -m refoptim golden --optimizer Adam --out DIR --write-digest` regenerates the Adam entry. "
        "The manifest holds every file's SHA-256, so this one digest covers the whole corpus.",
        "schema_version": SCHEMA_VERSION,
        "digests": dict(sorted(digests.items())),
    }
    Path(path).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


# ============================================================================ the command
def command(
    out: str,
    optimizers: list[str] | None = None,
    dtypes: list[str] | None = None,
    steps: int | None = None,
    with_torch: bool = False,
    write: bool = False,
    stdout: Any = None,
    stderr: Any = None,
) -> int:
    """``python -m refoptim golden``: write the corpus, print what was written and how its
    manifest compares with the committed digest. Exit status: 0 written (and matching, where
    a digest is committed), 1 written but its manifest differs from the committed digest,
    2 nothing written (unknown optimizer or dtype, nothing covered, ``--with-torch``
    without torch, an ``--out`` that is not a corpus)."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    if with_torch:
        try:
            import torch
        except ImportError:
            print(
                f"error: --with-torch needs PyTorch {refoptim.TORCH_VERSION}, which is not installed "
                f"(pip install torch=={refoptim.TORCH_VERSION}); without --with-torch the corpus needs no torch",
                file=stderr,
            )
            return 2
        if not torch.__version__.startswith(refoptim.TORCH_VERSION):
            print(f"warning: torch {torch.__version__} is installed; refoptim reproduces torch {refoptim.TORCH_VERSION}", file=stderr)
        if write:
            print("error: --write-digest needs a corpus without --with-torch (torch's values depend on the machine)", file=stderr)
            return 2
    try:
        summary = generate(out, optimizers, dtypes, steps, with_torch, progress=lambda line: print(line, file=stdout, flush=True))
    except GoldenError as exc:
        print(f"error: {exc}", file=stderr)
        return 2
    print(f"golden corpus in {summary.out}: {summary.configurations} configurations", file=stdout)
    print(f"  {'optimizer':<10} {'configs':>7} {'files':>7} {'MB':>8} {'seconds':>8}", file=stdout)
    for name, row in summary.per_optimizer.items():
        print(
            f"  {name:<10} {row['configurations']:>7} {row['files']:>7} {row['bytes'] / 1e6:>8.2f} {row['seconds']:>8.1f}",
            file=stdout,
        )
    print(
        f"  total: {summary.files} files (manifest included), {summary.bytes / 1e6:.2f} MB, {summary.seconds:.1f} s",
        file=stdout,
    )
    if summary.left_out:
        print(
            "left out (listed in the manifest): "
            + "; ".join(f"{e['section']} ({e['configurations']} configurations): {e['reason']}" for e in summary.left_out)
            + f". Covered: {', '.join(covered_optimizers())}",
            file=stdout,
        )
    print(f"manifest sha256 {summary.manifest_sha256}", file=stdout)
    if with_torch:
        print("with torch's values: not compared with a committed digest (they depend on the machine)", file=stdout)
        return 0
    committed = committed_digest(summary.selection)
    if write:
        write_digest(summary.selection, summary.manifest_sha256)
        change = "unchanged" if committed == summary.manifest_sha256 else ("new" if committed is None else f"was {committed}")
        print(f"wrote the digest of '{selection_key(summary.selection)}' to {DIGESTS_PATH} ({change})", file=stdout)
        return 0
    if committed is None:
        print("no committed digest for this selection", file=stdout)
        return 0
    if committed != summary.manifest_sha256:
        print(
            f"DIFFERS from the committed digest {committed} ({DIGESTS_PATH.name}); the corpus is written",
            file=stdout,
        )
        return 1
    print(f"matches the committed digest ({DIGESTS_PATH.name})", file=stdout)
    return 0
