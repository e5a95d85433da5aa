"""``python -m refoptim bench``: the step time and the memory of refoptim against torch's
own optimizers, measured in one run on one machine, reported as ratios.

For each optimizer and workload it times ``optimizer.step()`` of refoptim on NumPy and of
torch 2.13 on the CPU with ``foreach=False`` (torch's single-tensor path, the one refoptim
reproduces), ``foreach=True`` (the multi-tensor path) and ``fused=True`` where torch has a
fused CPU kernel. Every implementation gets the same initial parameters and the same fixed
gradients; the first two steps are not timed (the first creates the state); the figure is
the median of the timed steps. Memory is the peak of what one of refoptim's steps
allocates on top of what existed before it (``tracemalloc``, which NumPy reports its
buffers to), as a multiple of the parameters' bytes; torch's CPU allocations are not
visible to it and are not shown.

Alongside the median time, each implementation reports what its timed steps cost the
process as a whole (``resource.getrusage``, every thread included): **minor page faults per
step** (``ru_minflt``: fresh memory the allocator had to map or touch, the sign of
allocation churn) and **system CPU time per step** in milliseconds (``ru_stime``: time in
the kernel, mostly serving those faults).

``process="shared"`` measures every implementation in this process, set up side by side
and timed taking turns, one step of each per round (so a machine whose speed drifts during
the run, as a shared VM's does, slows every implementation alike);
``process="fresh"`` runs each (implementation, optimizer, workload) measurement in a
fresh ``python`` subprocess of its own (the same seeded data, optimizer options and thread
counts, the environment passed on unchanged, so ``MALLOC_*`` variables apply to both
sides) that returns its figures as JSON, so that one process's heap state cannot decide a
figure; ``process="both"`` does both. ``malloc_env`` repeats the fresh-subprocess
measurement once per allocator setting (default :data:`MALLOC_SETTINGS`), and
:func:`malloc_changes` reports how much each ratio moved against the run without it.
:func:`markdown` turns the rows into the README's performance tables.

Workloads (from issue 6): ``a`` one 10M-element float32 tensor, ``b`` 1000 tensors of 1000
elements, ``c`` 100 tensors of 100k elements; ``d`` 100M elements (for GPUs).

``backend="cupy"`` (``python -m refoptim bench --backend cupy``) times refoptim on CuPy
arrays against torch on CUDA instead, with both devices synchronized before each timed step
and after it; refoptim's peak extra memory is then read from CuPy's memory pool (the
largest ``used_bytes()`` seen at any allocation during one step, over what was in use
before it). It needs CuPy, a CUDA GPU and a CUDA build of torch, and says which is missing.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

import refoptim
from refoptim import _fastpath, _scratch, registry

__all__ = [
    "ALL_OPTIMIZERS",
    "BACKENDS",
    "MALLOC_SETTINGS",
    "PROCESSES",
    "OPTIMIZERS",
    "WORKLOADS",
    "DaskRow",
    "Row",
    "malloc_changes",
    "markdown",
    "measure",
    "persist_optimizer",
    "require_backend",
    "run",
    "run_dask",
    "traced_peak",
]

BACKENDS = ("numpy", "cupy")
"""Where refoptim runs in the benchmark: NumPy against torch on the CPU, or CuPy against
torch on CUDA."""

WORKLOADS: dict[str, tuple[int, int]] = {
    "a": (1, 10_000_000),
    "b": (1000, 1000),
    "c": (100, 100_000),
    "d": (1, 100_000_000),
}
"""Workload name -> (number of tensors, elements per tensor), all float32."""

OPTIMIZERS: dict[str, dict[str, Any]] = {info.name: dict(info.bench) for info in registry.OPTIMIZERS if info.bench is not None}
"""The optimizers the benchmark knows, with the options it runs them with (SGD with
momentum, the others at torch's defaults or a common lr): each registry entry's ``bench``,
in the registry's order."""

DEFAULT_OPTIMIZERS = tuple(info.name for info in registry.OPTIMIZERS if info.bench_default)
"""Benchmarked unless others are named (the registry entries with ``bench_default``)."""

ALL_OPTIMIZERS = tuple(OPTIMIZERS)
"""Every benchmarked optimizer (``--all``): the eleven elementwise ones."""

_TORCH_VARIANTS = ("foreach=False", "foreach=True", "fused=True")

PROCESSES = ("shared", "fresh", "both")
"""Where each implementation is measured: all in this process, taking turns step by step
(``shared``), each in a fresh subprocess of its own (``fresh``), or both."""

MALLOC_SETTINGS: tuple[tuple[str, str], ...] = (
    ("MALLOC_TRIM_THRESHOLD_", "1000000000"),
    ("MALLOC_MMAP_THRESHOLD_", "1000000000"),
    ("MALLOC_ARENA_MAX", "1"),
)
"""glibc allocator settings the fresh-subprocess measurement is repeated under (issue 19):
either threshold turns off glibc's dynamic mmap threshold; one arena makes every thread
share the main heap. glibc reads them at start-up, so they only act in a fresh process."""

_ENV_SEEN = ("MALLOC_", "GLIBC_TUNABLES")
"""Environment variables (by prefix) a measurement reports having seen."""


@dataclass
class Row:
    """One optimizer on one workload: median step times in milliseconds (``None`` where
    torch has no such path), refoptim's ratios to each torch path, and refoptim's peak
    extra memory per step as a multiple of the parameter bytes.

    ``refoptim_faults``/``torch_faults``: minor page faults per timed step of the whole
    process (``ru_minflt``); ``refoptim_sys_ms``/``torch_sys_ms``: system CPU time per
    timed step in milliseconds (``ru_stime``), all threads together. ``process``:
    ``"shared"`` (every implementation in this process) or ``"fresh"`` (each in a fresh
    subprocess). ``env``: the variables set for this measurement on top of the inherited
    environment (an allocator setting; empty for none). ``env_seen``: the ``MALLOC_*``
    (and ``GLIBC_TUNABLES``) variables the process that measured refoptim had."""

    optimizer: str
    workload: str
    tensors: int
    elements: int
    refoptim_ms: float
    torch_ms: dict[str, float | None] = field(default_factory=dict)
    peak_extra_memory: float = 0.0
    repeats: int = 0
    refoptim_faults: float = 0.0
    refoptim_sys_ms: float = 0.0
    torch_faults: dict[str, float | None] = field(default_factory=dict)
    torch_sys_ms: dict[str, float | None] = field(default_factory=dict)
    process: str = "shared"
    env: dict[str, str] = field(default_factory=dict)
    env_seen: dict[str, str] = field(default_factory=dict)

    @property
    def ratios(self) -> dict[str, float | None]:
        """refoptim's time over each torch path's (below 1.0: refoptim is faster)."""
        return {k: (self.refoptim_ms / v if v else None) for k, v in self.torch_ms.items()}

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, ratios included."""
        return {**asdict(self), "ratios": self.ratios}


def _data(workload: str, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    return _make_data(*WORKLOADS[workload], seed=seed)


def _make_data(count: int, size: int, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(size, dtype=np.float32) for _ in range(count)]
    grads = [rng.standard_normal(size, dtype=np.float32) for _ in range(count)]
    return params, grads


@dataclass
class _Timing:
    """One implementation's timed steps: median milliseconds, and per step the process's
    minor page faults and system CPU milliseconds."""

    ms: float
    faults: float
    sys_ms: float


def _median_ms(step: Any, repeats: int, sync: Any = None, warmup: int = 2) -> float:
    return _timed(step, repeats, sync, warmup).ms


def _timed(step: Any, repeats: int, sync: Any = None, warmup: int = 2) -> _Timing:
    # ``warmup`` untimed steps first, as :func:`_prepare` takes them
    for _ in range(warmup):
        step()
    return _timed_together({"": (step, sync)}, repeats)[""]


def _in_turn(names: Any, r: int) -> list[Any]:
    """``names`` in round ``r``'s order: the first of the round moves on by one each time."""
    first = r % len(names)
    return [*names[first:], *names[:first]]


def _timed_together(steps: dict[str, tuple[Any, Any]], repeats: int) -> dict[str, _Timing]:
    """Time ``repeats`` steps of each implementation (``name -> (step, sync)``; ``sync``
    ``None`` on the CPU, else called before the clock starts and before it stops), taking
    turns: one step of each per round, the first of the round moving on by one each time.
    A machine that slows down or speeds up during the run (another tenant, frequency)
    then changes every implementation's steps alike instead of deciding a ratio. Page
    faults and system time are read around each step, so each implementation is charged
    only its own."""
    names = list(steps)
    times: dict[str, list[float]] = {k: [] for k in names}
    faults = dict.fromkeys(names, 0)
    sys_s = dict.fromkeys(names, 0.0)
    for r in range(repeats if names else 0):
        for name in _in_turn(names, r):
            step, sync = steps[name]
            if sync is not None:  # a GPU: wait for the queued work before starting the clock
                sync()
            before = resource.getrusage(resource.RUSAGE_SELF)
            start = time.perf_counter()
            step()
            if sync is not None:  # ... and before stopping it
                sync()
            times[name].append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_SELF)
            faults[name] += after.ru_minflt - before.ru_minflt
            sys_s[name] += after.ru_stime - before.ru_stime
    count = max(repeats, 1)
    return {
        k: _Timing(ms=1e3 * statistics.median(times[k]), faults=faults[k] / count, sys_ms=1e3 * sys_s[k] / count)
        for k in names
    }


def require_backend(backend: str) -> None:
    """Raise ``ValueError`` for an unknown ``backend`` and ``RuntimeError`` saying what is
    missing when it cannot run here (CuPy with a GPU, a CUDA build of torch)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend={backend!r}; known: {', '.join(BACKENDS)}")
    if backend == "numpy":
        return
    from .testing.backends import require_backend as _require

    _require("cupy")  # BackendUnavailable (a RuntimeError) naming what is missing
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError(
            f"backend='cupy' compares against torch on CUDA, but torch {torch.__version__} sees no CUDA device "
            f"(torch.version.cuda is {torch.version.cuda!r}); install a CUDA build of torch"
        )


def _cupy_sync() -> None:
    import cupy

    cupy.cuda.Device().synchronize()


def _torch_cuda_sync() -> None:
    import torch

    torch.cuda.synchronize()


@dataclass
class _Prepared:
    """One implementation set up and past its untimed steps: its ``step``, ``sync``
    (``None`` on the CPU), and ``after``, called once its steps are timed, for the
    figures other than time (refoptim's memory; ``None``: none)."""

    step: Any
    sync: Any = None
    after: Any = None


def _prepare_refoptim_cupy(name: str, params: list[np.ndarray], grads: list[np.ndarray], warmup: int) -> _Prepared:
    import cupy

    ps = [refoptim.Parameter(cupy.asarray(p)) for p in params]
    for p, g in zip(ps, grads):
        p.grad = cupy.asarray(g)
    opt = getattr(refoptim, name)(ps, **OPTIMIZERS[name])
    for _ in range(warmup):
        opt.step()

    def after() -> dict[str, Any]:
        pool = cupy.get_default_memory_pool()
        opt.step()
        _cupy_sync()
        before = pool.used_bytes()
        peak = [before]

        def tracking_malloc(size: int) -> Any:
            memory = pool.malloc(size)
            peak[0] = max(peak[0], pool.used_bytes())
            return memory

        cupy.cuda.set_allocator(tracking_malloc)
        try:
            opt.step()
            _cupy_sync()
        finally:
            cupy.cuda.set_allocator(pool.malloc)
        nbytes = sum(p.nbytes for p in params)
        return {"memory": (peak[0] - before) / nbytes}

    return _Prepared(opt.step, _cupy_sync, after)


def _prepare_refoptim(name: str, params: list[np.ndarray], grads: list[np.ndarray], warmup: int) -> _Prepared:
    ps = [refoptim.Parameter(p.copy()) for p in params]
    for p, g in zip(ps, grads):
        p.grad = g
    opt = getattr(refoptim, name)(ps, **OPTIMIZERS[name])
    _scratch.release_all()  # this optimizer's scratch buffers only, made in its first step
    for _ in range(warmup):
        opt.step()

    def after() -> dict[str, Any]:
        peak = traced_peak(opt.step)
        nbytes = sum(p.nbytes for p in params)
        # The scratch buffers were made before tracing began and are kept between steps:
        # they are extra memory all the same.
        return {"memory": (peak + _scratch.retained_bytes()) / nbytes}

    return _Prepared(opt.step, None, after)


def traced_peak(step: Any) -> int:
    """The most bytes one call of ``step`` allocates on top of what existed before it
    (``tracemalloc``, which NumPy reports its buffers to), measured on a second call
    after a first one under tracing."""
    gc.collect()
    tracemalloc.start()
    try:
        step()
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        step()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - before


def _prepare_torch(
    name: str, variant: str, params: list[np.ndarray], grads: list[np.ndarray], warmup: int, device: str = "cpu"
) -> _Prepared | None:
    """torch's optimizer ``variant`` (``"foreach=True"``, ...), or ``None`` where torch has
    no fused kernel for it on ``device``. Its steps are to be taken under
    ``torch.no_grad()`` (:func:`_no_grad`), as a training loop takes them."""
    import torch

    key, _, value = variant.partition("=")
    options = {**OPTIMIZERS[name], key: value == "True"}
    if key == "fused":
        options["foreach"] = False
    if device == "cpu":
        ts = [torch.from_numpy(p.copy()).requires_grad_(True) for p in params]
        for t, g in zip(ts, grads):
            t.grad = torch.from_numpy(g)
        sync = None
    else:
        ts = [torch.from_numpy(p.copy()).to(device).requires_grad_(True) for p in params]
        for t, g in zip(ts, grads):
            t.grad = torch.from_numpy(g).to(device)
        sync = _torch_cuda_sync
    try:
        opt = getattr(torch.optim, name)(ts, **options)
        with torch.no_grad():
            for _ in range(warmup):
                opt.step()
    except (RuntimeError, TypeError, ValueError) as exc:
        if key == "fused":
            return None  # torch has no fused kernel for this optimizer on this device
        raise RuntimeError(f"torch {name}({variant}) failed: {exc}") from exc
    return _Prepared(opt.step, sync)


def _no_grad(sides: Any) -> Any:
    """``torch.no_grad()`` where torch is among ``sides`` (names), else a null context."""
    if all(side == "refoptim" for side in sides):
        return contextlib.nullcontext()
    import torch

    return torch.no_grad()


def _prepare(
    name: str, side: str, params: list[np.ndarray], grads: list[np.ndarray], backend: str, warmup: int = 2
) -> _Prepared | None:
    """Set up one implementation (``side``: ``"refoptim"`` or a torch variant) and take
    its ``warmup`` untimed steps: the first creates the state, the second is the first of
    the steady state (with REFOPTIM_NUMBA=1, SGD's rule is fused, and compiled, from its
    second step: its first copies the gradient into the momentum buffer)."""
    if side == "refoptim":
        if backend == "numpy":
            return _prepare_refoptim(name, params, grads, warmup)
        return _prepare_refoptim_cupy(name, params, grads, warmup)
    return _prepare_torch(name, side, params, grads, warmup, "cpu" if backend == "numpy" else "cuda")


def _env_seen() -> dict[str, str]:
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith(_ENV_SEEN)}


def _sides(
    name: str, sides: tuple[str, ...], params: list[np.ndarray], grads: list[np.ndarray], repeats: int, backend: str
) -> dict[str, dict[str, Any]]:
    """Measure implementations here (``sides``: ``"refoptim"`` and torch variants), all
    set up first, then timed taking turns (:func:`_timed_together`): per side a JSON-ready
    dict of its figures (``ms`` ``None`` where torch has no such path)."""
    prepared = {side: _prepare(name, side, params, grads, backend) for side in sides}
    ready = {side: p for side, p in prepared.items() if p is not None}
    with _no_grad(ready):
        timings = _timed_together({side: (p.step, p.sync) for side, p in ready.items()}, repeats)
    seen = _env_seen()
    results: dict[str, dict[str, Any]] = {}
    for side, p in prepared.items():
        if p is None:
            results[side] = {"ms": None, "faults": None, "sys_ms": None, "env_seen": seen}
            continue
        extra = p.after() if p.after is not None else {}
        results[side] = {**asdict(timings[side]), **extra, "env_seen": seen}
    return results


def _side(
    name: str, side: str, params: list[np.ndarray], grads: list[np.ndarray], repeats: int, backend: str
) -> dict[str, Any]:
    """Measure one implementation (``side``: ``"refoptim"`` or a torch variant) here: a
    JSON-ready dict of its figures (``ms`` ``None`` where torch has no such path)."""
    return _sides(name, (side,), params, grads, repeats, backend)[side]


_CHILD_MARK = "refoptim-bench-result: "


def _child(spec_json: str) -> None:
    """The fresh subprocess's side of ``_fresh``: measure what ``spec_json`` says and
    print the figures as one JSON line after ``_CHILD_MARK``."""
    spec = json.loads(spec_json)
    name = spec["name"]
    OPTIMIZERS[name] = spec["options"]
    refoptim.set_num_threads(spec["threads"])
    if spec["side"] != "refoptim":
        import torch

        torch.set_num_threads(spec["torch_threads"])
    params, grads = _make_data(spec["tensors"], spec["elements"], spec["seed"])
    result = _side(name, spec["side"], params, grads, spec["repeats"], spec["backend"])
    sys.stdout.write(_CHILD_MARK + json.dumps(result) + "\n")
    sys.stdout.flush()


def _fresh(
    name: str, side: str, workload: str, repeats: int, backend: str, env: dict[str, str] | None, seed: int = 0
) -> dict[str, Any]:
    """Measure one implementation in a fresh ``python`` subprocess: the same data (seeded),
    options and thread counts as here, this process's environment plus ``env``."""
    count, size = WORKLOADS[workload]
    spec = {
        "name": name,
        "options": OPTIMIZERS[name],
        "side": side,
        "tensors": count,
        "elements": size,
        "seed": seed,
        "repeats": repeats,
        "backend": backend,
        "threads": refoptim.get_num_threads(),
    }
    if side != "refoptim":
        import torch

        spec["torch_threads"] = torch.get_num_threads()
    root = os.path.dirname(os.path.dirname(os.path.abspath(refoptim.__file__)))
    code = f"import sys; sys.path.insert(0, {root!r}); from refoptim.bench import _child; _child(sys.argv[1])"
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(spec)],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith(_CHILD_MARK)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"the fresh process measuring {side} {name} on {workload} failed (exit {proc.returncode}):\n"
            + proc.stderr[-2000:]
        )
    return json.loads(lines[-1][len(_CHILD_MARK):])


def measure(
    name: str,
    workload: str,
    repeats: int = 10,
    torch_variants: tuple[str, ...] = _TORCH_VARIANTS,
    backend: str = "numpy",
    process: str = "shared",
    env: dict[str, str] | None = None,
    rounds: int = 1,
) -> Row:
    """Benchmark one optimizer on one workload (see :data:`WORKLOADS`): refoptim on
    ``backend`` (``"numpy"``, or ``"cupy"`` against torch on CUDA; see :data:`BACKENDS`).

    ``process="shared"`` measures every implementation in this process, timed taking
    turns (:func:`_timed_together`);
    ``process="fresh"`` each in a fresh subprocess of its own, whose environment is this
    one's plus ``env`` (an allocator setting such as ``{"MALLOC_ARENA_MAX": "1"}``; only
    with ``"fresh"``, since glibc reads them at start-up). With ``"fresh"``, ``rounds``
    fresh processes per implementation, launched in turns (each round one process of each,
    the first moving on); each implementation's figures are those of its process with the
    median time (of an even number, the lower middle one)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
    if workload not in WORKLOADS:
        raise ValueError(f"unknown workload {workload!r}; known: {', '.join(WORKLOADS)}")
    if process not in ("shared", "fresh"):
        raise ValueError(f"unknown process={process!r}; known: shared, fresh")
    if env and process != "fresh":
        raise ValueError("env= only applies to process='fresh' (the allocator reads it at start-up)")
    if type(rounds) is not int or rounds < 1:
        raise ValueError(f"rounds must be a positive integer, not {rounds!r}")
    require_backend(backend)
    count, size = WORKLOADS[workload]
    sides = ("refoptim", *torch_variants)
    if process == "shared":  # all set up here, timed taking turns
        params, grads = _data(workload)
        results = _sides(name, sides, params, grads, repeats, backend)
    else:  # in fresh processes taking turns, round by round
        runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
        for r in range(rounds):
            for side in _in_turn(sides, r):
                runs[side].append(_fresh(name, side, workload, repeats, backend, env))
        results = {side: _median_run(found) for side, found in runs.items()}
    ours = results["refoptim"]
    row = Row(
        name,
        workload,
        count,
        size,
        ours["ms"],
        peak_extra_memory=ours["memory"],
        repeats=repeats,
        refoptim_faults=ours["faults"],
        refoptim_sys_ms=ours["sys_ms"],
        process=process,
        env=dict(env or {}),
        env_seen=ours["env_seen"],
    )
    for variant in torch_variants:
        theirs = results[variant]
        row.torch_ms[variant] = theirs["ms"]
        row.torch_faults[variant] = theirs["faults"]
        row.torch_sys_ms[variant] = theirs["sys_ms"]
    return row


def _median_run(found: list[dict[str, Any]]) -> dict[str, Any]:
    """Of one implementation's fresh-process results, the one with the median time (the
    lower middle one of an even number; any, where torch has no such path)."""
    timed = sorted((r for r in found if r["ms"] is not None), key=lambda r: r["ms"])
    return timed[(len(timed) - 1) // 2] if timed else found[0]


def _size(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 10_000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def _workload_label(row: Row) -> str:
    return f"{row.workload} {row.tensors} x {_size(row.elements)}"


def _value(v: str) -> str:
    """``"1000000000"`` -> ``"1e9"``; anything else as it is."""
    return f"1e{len(v) - 1}" if len(v) > 6 and v.startswith("1") and set(v[1:]) == {"0"} else v


def _setting_label(env: dict[str, str]) -> str:
    """``{"MALLOC_TRIM_THRESHOLD_": "1000000000"}`` -> ``"trim_threshold=1e9"``."""
    return ",".join(f"{k.removeprefix('MALLOC_').rstrip('_').lower()}={_value(v)}" for k, v in env.items())


def _process_label(row: Row) -> str:
    if row.process == "shared":
        return "one process"
    return "fresh" + (" " + _setting_label(row.env) if row.env else "")


def _configs(process: str, malloc_env: Any) -> list[tuple[str, dict[str, str]]]:
    if process not in PROCESSES:
        raise ValueError(f"unknown process={process!r}; known: {', '.join(PROCESSES)}")
    configs: list[tuple[str, dict[str, str]]] = []
    if process in ("shared", "both"):
        configs.append(("shared", {}))
    if process in ("fresh", "both") or malloc_env is not None:
        configs.append(("fresh", {}))  # also the baseline the allocator settings are compared with
    if malloc_env is not None:
        settings = malloc_env.items() if isinstance(malloc_env, dict) else (malloc_env or MALLOC_SETTINGS)
        configs += [("fresh", {k: str(v)}) for k, v in settings]
    return configs


def _fmt(v: float | None, digits: int = 1) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def run(
    optimizers: list[str] | None = None,
    workloads: list[str] | None = None,
    repeats: int = 10,
    out: Any = None,
    backend: str = "numpy",
    process: str = "shared",
    malloc_env: Any = None,
    rounds: int = 1,
) -> list[Row]:
    """Benchmark every (optimizer, workload) pair, printing a table row as each finishes;
    ``backend="cupy"`` runs refoptim on CuPy against torch on CUDA.

    ``process``: ``"shared"`` (every implementation in this process), ``"fresh"`` (each
    in a fresh subprocess) or ``"both"`` (one row for each). ``malloc_env``: also measure
    in fresh subprocesses once per allocator setting, each set on its own (a sequence of
    ``(name, value)`` pairs or a dict; empty: :data:`MALLOC_SETTINGS`), after the
    fresh-subprocess measurement without it, and print :func:`malloc_changes`.
    ``rounds``: fresh processes per implementation in each fresh measurement, taking
    turns, the median one reported (see :func:`measure`)."""
    import torch

    require_backend(backend)
    configs = _configs(process, malloc_env)
    out = out or sys.stdout
    optimizers = list(optimizers or DEFAULT_OPTIMIZERS)
    workloads = list(workloads or ["a", "b", "c"])
    fresh = "each implementation in a fresh process" + (
        f" ({rounds} rounds taking turns, the median process)" if rounds > 1 else ""
    )
    modes = " and ".join(dict.fromkeys("in one process, taking turns" if p == "shared" else fresh for p, _ in configs))
    inherited = ", ".join(f"{k}={v}" for k, v in _env_seen().items()) or "none"
    if backend == "numpy":
        print(
            f"refoptim {refoptim.__version__} on NumPy {np.__version__} ({refoptim.get_num_threads()} threads) "
            f"against torch {torch.__version__} (CPU, {torch.get_num_threads()} threads); "
            f"median of {repeats} steps after the first two; {modes}; allocator variables inherited: {inherited}; "
            f"scratch buffers {'on' if _fastpath.SCRATCH else 'off'}, "
            f"compiled evaluation (REFOPTIM_NUMBA) {'on' if _scratch.NUMBA else 'off'}",
            file=out,
        )
    else:
        import cupy

        print(
            f"refoptim {refoptim.__version__} on CuPy {cupy.__version__} against torch {torch.__version__} "
            f"(CUDA {torch.version.cuda}, {torch.cuda.get_device_name()}); both devices synchronized around "
            f"each step; median of {repeats} steps after the first two; {modes}",
            file=out,
        )
    short = {"foreach=False": "single", "foreach=True": "foreach", "fused=True": "fused"}
    width = max([11] + [len(_process_label(Row("", "", 0, 0, 0.0, process=p, env=e))) for p, e in configs])
    head = (
        f"{'optimizer':<9} {'workload':<14} {'process':<{width}} {'refoptim ms':>11} "
        + " ".join(f"{'torch ' + v:>20}" for v in _TORCH_VARIANTS)
        + " | faults/step "
        + " ".join(f"{k:>8}" for k in ["refoptim", *(short[v] for v in _TORCH_VARIANTS)])
        + " | sys ms/step "
        + " ".join(f"{k:>8}" for k in ["refoptim", *(short[v] for v in _TORCH_VARIANTS)])
        + f" | {'peak extra mem':>14}"
    )
    print(head, file=out)
    print("-" * len(head), file=out)
    rows = []
    for name in optimizers:
        for workload in workloads:
            for where, env in configs:
                row = measure(name, workload, repeats, backend=backend, process=where, env=env, rounds=rounds)
                rows.append(row)
                cells = []
                for v in _TORCH_VARIANTS:
                    t, r = row.torch_ms.get(v), row.ratios.get(v)
                    cells.append(f"{'n/a':>20}" if t is None else f"{t:>9.2f} ({r:>6.2f}x)".rjust(20))
                faults = [row.refoptim_faults, *(row.torch_faults.get(v) for v in _TORCH_VARIANTS)]
                sys_ms = [row.refoptim_sys_ms, *(row.torch_sys_ms.get(v) for v in _TORCH_VARIANTS)]
                print(
                    f"{name:<9} {_workload_label(row):<14} {_process_label(row):<{width}} {row.refoptim_ms:>11.2f} "
                    + " ".join(cells)
                    + " | faults/step "
                    + " ".join(f"{_fmt(f, 0):>8}" for f in faults)
                    + " | sys ms/step "
                    + " ".join(f"{_fmt(t, 2):>8}" for t in sys_ms)
                    + f" | {row.peak_extra_memory:>13.2f}x",
                    file=out,
                    flush=True,
                )
    print(
        "(ratio = refoptim time / torch time; faults/step = minor page faults of the whole process per timed step; "
        "sys ms/step = kernel CPU time per timed step, all threads; peak extra memory = refoptim's peak allocation "
        "in one step / parameter bytes)",
        file=out,
    )
    if backend != "numpy":
        print("(GPU: peak extra memory read from CuPy's default memory pool)", file=out)
    changes = malloc_changes(rows)
    if changes:
        print(
            "allocator settings, each in fresh processes: refoptim's ratio to torch foreach=True under the setting "
            "over the same ratio without it (above 1: refoptim lost ground; the issue-19 target is at most 1.2x)",
            file=out,
        )
        for change in changes:
            setting = ",".join(f"{k}={v}" for k, v in change["env"].items())
            print(
                f"  {setting:<36} worst {change['worst_change']:.2f}x ({change['worst']}), "
                f"ratios under it {change['min_ratio']:.2f}x to {change['max_ratio']:.2f}x",
                file=out,
            )
    return rows


def malloc_changes(rows: list[Row], variant: str = "foreach=True") -> list[dict[str, Any]]:
    """For each allocator setting in ``rows`` (fresh-process rows with an ``env``): how
    refoptim's ratio to torch's ``variant`` moved against the fresh-process row without a
    setting, per (optimizer, workload) as ``ratio with / ratio without`` (above 1.0:
    refoptim lost ground), with the worst of them. A JSON-ready list of dicts with keys
    ``env``, ``changes`` (``"Adam a"`` -> change), ``worst_change``, ``worst``,
    ``min_ratio`` and ``max_ratio`` (the ratios under the setting)."""
    base = {(r.optimizer, r.workload): r.ratios.get(variant) for r in rows if r.process == "fresh" and not r.env}
    settings: dict[tuple[tuple[str, str], ...], list[Row]] = {}
    for r in rows:
        if r.process == "fresh" and r.env:
            settings.setdefault(tuple(r.env.items()), []).append(r)
    result = []
    for key, group in settings.items():
        changes: dict[str, float] = {}
        ratios = []
        for r in group:
            ratio, before = r.ratios.get(variant), base.get((r.optimizer, r.workload))
            if ratio is not None:
                ratios.append(ratio)
            if ratio is not None and before:
                changes[f"{r.optimizer} {r.workload}"] = ratio / before
        if not changes:
            continue
        worst = max(changes, key=changes.__getitem__)
        result.append(
            {
                "env": dict(key),
                "variant": variant,
                "changes": changes,
                "worst_change": changes[worst],
                "worst": worst,
                "min_ratio": min(ratios),
                "max_ratio": max(ratios),
            }
        )
    return result


def markdown(rows: list[Row], variant: str = "foreach=True") -> str:
    """The README's performance tables from ``rows`` (what :func:`run` returned), as
    Markdown: refoptim's ratio to torch's ``variant`` with one row per optimizer and one
    column per workload (and per process mode, where both were run); the figures behind
    them with one row per optimizer, workload and process; and, where allocator settings
    were measured, each ratio under each setting with its change and the worst change."""
    plain = [r for r in rows if not r.env]
    workloads = list(dict.fromkeys((r.workload, _workload_label(r)) for r in plain))
    processes = list(dict.fromkeys(r.process for r in plain))
    names = list(dict.fromkeys(r.optimizer for r in plain))
    by = {(r.optimizer, r.workload, r.process): r for r in plain}
    where = {"shared": "one process", "fresh": "fresh processes"}
    lines = [f"refoptim's step time / torch `{variant}`'s (below 1.0: refoptim is faster):", ""]
    columns = [label if len(processes) == 1 else f"{label} ({where[p]})" for _, label in workloads for p in processes]
    lines.append("| optimizer | " + " | ".join(columns) + " |")
    lines.append("|---" * (len(columns) + 1) + "|")
    for name in names:
        cells = []
        for w, _ in workloads:
            for p in processes:
                r = by.get((name, w, p))
                ratio = None if r is None else r.ratios.get(variant)
                cells.append("n/a" if ratio is None else f"{ratio:.2f}x")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "The figures (median step time; page faults and `sys` time per step of the whole process):", ""]
    lines.append(
        "| optimizer | workload | process | refoptim | "
        + " | ".join(f"torch `{v}`" for v in _TORCH_VARIANTS)
        + " | page faults per step (refoptim / " + " / ".join(f"`{v}`" for v in _TORCH_VARIANTS) + ")"
        + " | `sys` ms per step (refoptim / " + " / ".join(f"`{v}`" for v in _TORCH_VARIANTS) + ")"
        + " | refoptim's peak extra memory |"
    )
    lines.append("|---" * (7 + len(_TORCH_VARIANTS)) + "|")
    for r in plain:
        torch_cells = [
            "n/a" if r.torch_ms.get(v) is None else f"{r.torch_ms[v]:.1f} ms ({r.ratios[v]:.2f}x)" for v in _TORCH_VARIANTS
        ]
        faults = " / ".join(_fmt(f, 0) for f in [r.refoptim_faults, *(r.torch_faults.get(v) for v in _TORCH_VARIANTS)])
        sys_ms = " / ".join(_fmt(t, 1) for t in [r.refoptim_sys_ms, *(r.torch_sys_ms.get(v) for v in _TORCH_VARIANTS)])
        lines.append(
            f"| {r.optimizer} | {_workload_label(r)} | {where[r.process]} | {r.refoptim_ms:.1f} ms | "
            + " | ".join(torch_cells)
            + f" | {faults} | {sys_ms} | {r.peak_extra_memory:.2f}x |"
        )
    changes = malloc_changes(rows, variant)
    if changes:
        settings = [c["env"] for c in changes]
        by_env = {(r.optimizer, r.workload, tuple(r.env.items())): r for r in rows if r.process == "fresh"}
        lines += [
            "",
            f"Under allocator settings, each in fresh processes: the ratio to torch `{variant}` and, in brackets, "
            "that ratio over the one without the setting:",
            "",
        ]
        head = ["no setting", *(",".join(f"`{k}={v}`" for k, v in e.items()) for e in settings)]
        lines.append("| optimizer | workload | " + " | ".join(head) + " |")
        lines.append("|---" * (len(head) + 2) + "|")
        for name in names:
            for w, label in workloads:
                base = by_env.get((name, w, ()))
                if base is None:
                    continue
                cells = [_fmt(base.ratios.get(variant), 2) + "x"]
                for e, c in zip(settings, changes):
                    r = by_env.get((name, w, tuple(e.items())))
                    ratio = None if r is None else r.ratios.get(variant)
                    change = c["changes"].get(f"{name} {w}")
                    cells.append("n/a" if ratio is None else f"{ratio:.2f}x" + ("" if change is None else f" ({change:.2f})"))
                lines.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
        lines.append(
            "| **worst change** | | | " + " | ".join(f"**{c['worst_change']:.2f}** ({c['worst']})" for c in changes) + " |"
        )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------- Dask
@dataclass
class DaskRow:
    """One optimizer on one large parameter held as a chunked Dask array on a cluster,
    against the same steps on NumPy in this process (``python -m refoptim bench --dask``).

    Times are medians over the timed steps (the first step, which creates the state, is not
    timed), in milliseconds: ``numpy_ms`` one refoptim step on NumPy; ``build_ms``
    ``optimizer.step()`` on Dask, which only builds the task graph; ``dask_ms`` a whole step
    on the cluster: the graph built, then parameters and state persisted there and waited
    for. ``tasks_per_step`` is the size of the graph one step builds (parameter and state
    together, their persisted inputs included); ``tasks_after_persist`` what is left after
    ``persist()`` (one task per chunk and array). Memory per worker, in MB:
    ``worker_peak_rss_mb`` the peak resident memory of each worker process since it started
    (``getrusage``), ``worker_managed_mb`` the bytes of data each worker holds after the last
    step (the scheduler's count: parameter, state and gradient chunks). ``identical``: the
    parameter and every state array fetched back are bit for bit NumPy's (``None`` when
    not checked). ``worker_compute_s`` and ``worker_transfer_s``: seconds the workers spent
    computing and moving chunks between each other per timed step, summed over the workers
    (``distributed.get_task_stream``)."""

    optimizer: str
    elements: int
    chunks: int
    workers: int
    steps: int
    numpy_ms: float
    build_ms: float
    dask_ms: float
    tasks_per_step: int
    tasks_after_persist: int
    worker_peak_rss_mb: list[float] = field(default_factory=list)
    worker_managed_mb: list[float] = field(default_factory=list)
    identical: bool | None = None
    scheduler: str = ""
    worker_compute_s: float = 0.0
    worker_transfer_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def _dask_slots(optimizer: Any) -> list[tuple[Any, str | None]]:
    """The (parameter, state key) slots of ``optimizer`` that hold Dask arrays; key ``None``
    is the parameter itself."""
    import dask

    params = [p for group in optimizer.param_groups for p in group["params"]]
    slots: list[tuple[Any, str | None]] = [(p, None) for p in params if dask.is_dask_collection(p.data)]
    for p in params:
        slots += [(p, k) for k, v in optimizer.state.get(p, {}).items() if dask.is_dask_collection(v)]
    return slots


def persist_optimizer(optimizer: Any) -> list[Any]:
    """Persist every Dask parameter and state entry of ``optimizer`` in one
    ``dask.persist`` call (on the default client's cluster where there is one) and keep the
    persisted arrays in their places; returns them (``distributed.wait`` takes them)."""
    import dask

    slots = _dask_slots(optimizer)
    done = dask.persist(*dask_arrays(optimizer))
    for (p, k), value in zip(slots, done):
        if k is None:
            p.data = value
        else:
            optimizer.state[p][k] = value
    return list(done)


def dask_arrays(optimizer: Any) -> list[Any]:
    """Every Dask parameter and state entry of ``optimizer``, in :func:`persist_optimizer`'s
    order."""
    return [p.data if k is None else optimizer.state[p][k] for p, k in _dask_slots(optimizer)]


def _graph_tasks(arrays: list[Any]) -> int:
    keys: set[Any] = set()
    for a in arrays:
        keys.update(a.__dask_graph__().keys())
    return len(keys)


def _worker_peak_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kilobytes


def run_dask(
    optimizer: str = "Adam",
    elements: int = 100_000_000,
    chunks: int = 10,
    workers: int = 2,
    steps: int = 5,
    scheduler: str | None = None,
    check: bool = True,
    out: Any = None,
) -> DaskRow:
    """Time ``optimizer`` on one float32 parameter of ``elements`` elements in ``chunks``
    chunks, its parameter, gradient and state as Dask arrays on a cluster, persisted after
    every step, against the same steps of refoptim on NumPy in this process; print a table
    and return a :class:`DaskRow`.

    The cluster is a ``distributed.LocalCluster`` of ``workers`` worker processes of one
    thread each, started here and closed at the end, or the running cluster whose scheduler
    is at ``scheduler`` (``"tcp://host:8786"``: the same code on a real multi-node cluster).
    The gradient is drawn on the cluster once and reused every step; NumPy gets the same
    values. With ``check``, the parameter and state are fetched back at the end and
    compared with NumPy's bit for bit."""
    import sys

    import dask.array as da
    from distributed import Client, LocalCluster, get_task_stream, wait

    out = out or sys.stdout
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; known: {', '.join(OPTIMIZERS)}")
    cls, options = getattr(refoptim, optimizer), OPTIMIZERS[optimizer]
    cluster = None
    if scheduler is None:
        import dask

        # no work stealing: a chunk's step runs where its chunks are, instead of moving
        # them to an idle worker (measured: most of the transfers otherwise)
        with dask.config.set({"distributed.scheduler.work-stealing": False}):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    else:
        client = Client(scheduler)
    try:
        workers = len(client.nthreads())
        per_chunk = -(-elements // chunks)
        p0 = da.random.default_rng(0).standard_normal(elements, chunks=per_chunk, dtype=np.float32).persist()
        wait(p0)
        # each gradient chunk is made from its parameter chunk, so the scheduler puts it on
        # the same worker: a step then moves no chunk between workers
        grad = p0.map_blocks(_normal_like, dtype=np.float32).persist()
        wait(grad)

        # NumPy, one process: the same values
        p_np = refoptim.Parameter(np.array(client.compute(p0).result(), copy=True))
        p_np.grad = np.array(client.compute(grad).result(), copy=True)
        opt_np = cls([p_np], **options)
        # as many steps as the Dask side below takes (one untimed), so the results compare
        numpy_ms = _median_ms(opt_np.step, steps, warmup=1)

        # Dask on the cluster, persisted every step
        p = refoptim.Parameter(p0)
        p.grad = grad
        del p0  # the parameter holds it until the first step replaces it
        opt = cls([p], **options)
        builds, totals, tasks = [], [], []
        spent = {"compute": 0.0, "transfer": 0.0}
        for i in range(steps + 1):
            with get_task_stream(client) as stream:
                start = time.perf_counter()
                opt.step()
                built = time.perf_counter()
                tasks.append(_graph_tasks(dask_arrays(opt)))
                wait(persist_optimizer(opt))
                end = time.perf_counter()
            if i:  # the first step creates the state: not timed
                builds.append(built - start)
                totals.append(end - start)
                for record in stream.data:
                    for part in record.get("startstops", ()):
                        if part["action"] in spent:
                            spent[part["action"]] += part["stop"] - part["start"]
        after = _graph_tasks(dask_arrays(opt))
        peak = client.run(_worker_peak_rss)
        managed = client.run_on_scheduler(_managed_bytes)
        identical = None
        if check:
            identical = bool(np.asarray(client.compute(p.data).result()).tobytes() == p_np.data.tobytes())
            for key, want in opt_np.state[p_np].items():
                got = opt.state[p][key]
                got = client.compute(got).result() if hasattr(got, "__dask_graph__") else got
                identical = identical and np.asarray(got).tobytes() == np.asarray(want).tobytes()
        row = DaskRow(
            optimizer=optimizer,
            elements=elements,
            chunks=chunks,
            workers=workers,
            steps=steps,
            numpy_ms=numpy_ms,
            build_ms=1e3 * statistics.median(builds),
            dask_ms=1e3 * statistics.median(totals),
            tasks_per_step=int(statistics.median(tasks[1:])) if steps else tasks[0],
            tasks_after_persist=after,
            worker_peak_rss_mb=[peak[w] / 2**20 for w in sorted(peak)],
            worker_managed_mb=[managed.get(w, 0) / 2**20 for w in sorted(peak)],
            identical=identical,
            scheduler=scheduler or f"LocalCluster({workers} worker processes, 1 thread each)",
            worker_compute_s=spent["compute"] / steps,
            worker_transfer_s=spent["transfer"] / steps,
        )
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    print(
        f"refoptim {refoptim.__version__}: {optimizer} on {elements:,} float32 elements ({elements * 4 / 2**20:,.0f} MiB per array) "
        f"in {chunks} chunks on {row.scheduler}, persisted every step; NumPy: one process, "
        f"{refoptim.get_num_threads()} threads; median of {steps} steps after the first",
        file=out,
    )
    print(f"  NumPy step                       {row.numpy_ms:10.1f} ms", file=out)
    print(f"  Dask step (build+persist+wait)   {row.dask_ms:10.1f} ms  ({row.dask_ms / row.numpy_ms:.2f}x NumPy)", file=out)
    print(f"    of which building the graph    {row.build_ms:10.1f} ms", file=out)
    print(
        f"  workers' time per step           {row.worker_compute_s * 1e3:10.1f} ms computing, "
        f"{row.worker_transfer_s * 1e3:.1f} ms in transfers between them (summed over workers)",
        file=out,
    )
    print(f"  graph per step                   {row.tasks_per_step:10,d} tasks; after persist {row.tasks_after_persist:,d}", file=out)
    for i, (rss, held) in enumerate(zip(row.worker_peak_rss_mb, row.worker_managed_mb)):
        print(f"  worker {i}: peak RSS {rss:8.0f} MB, data held {held:8.0f} MB", file=out)
    if identical is not None:
        print(f"  bit-identical to NumPy (parameter and state): {identical}", file=out, flush=True)
    return row


def _normal_like(block: np.ndarray, block_info: Any = None) -> np.ndarray:
    """Standard normal float32 values of ``block``'s shape, seeded by the block's place."""
    location = block_info[0]["chunk-location"] if block_info else (0,)
    return np.random.default_rng([1, *location]).standard_normal(block.shape, dtype=np.float32)


def _managed_bytes(dask_scheduler: Any) -> dict[str, int]:
    return {address: ws.nbytes for address, ws in dask_scheduler.workers.items()}
