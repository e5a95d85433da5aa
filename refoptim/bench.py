"""``python -m refoptim bench``: the step time and the memory of refoptim against torch's
own optimizers, measured in one run on one machine, reported as ratios.

For each optimizer and workload it times ``optimizer.step()`` of refoptim on NumPy and of
torch 2.13 on the CPU with ``foreach=False`` (torch's single-tensor path, the one refoptim
reproduces), ``foreach=True`` (the multi-tensor path) and ``fused=True`` where torch has a
fused CPU kernel. Every implementation gets the same initial parameters and the same fixed
gradients; the first step (which creates the state) is not timed; the figure is the median
of the timed steps. Memory is the peak of what one of refoptim's steps allocates on top of
what existed before it (``tracemalloc``, which NumPy reports its buffers to), as a multiple
of the parameters' bytes; torch's CPU allocations are not visible to it and are not shown.

Workloads (from issue 6): ``a`` one 10M-element float32 tensor, ``b`` 1000 tensors of 1000
elements, ``c`` 100 tensors of 100k elements; ``d`` 100M elements (for GPUs).

``backend="cupy"`` (``python -m refoptim bench --backend cupy``) times refoptim on CuPy
arrays against torch on CUDA instead, with both devices synchronized before each timed step
and after it; refoptim's peak extra memory is then read from CuPy's memory pool (the
largest ``used_bytes()`` seen at any allocation during one step, over what was in use
before it). It needs CuPy, a CUDA GPU and a CUDA build of torch, and says which is missing.
"""

from __future__ import annotations

import gc
import statistics
import time
import tracemalloc
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

import refoptim

__all__ = ["BACKENDS", "OPTIMIZERS", "WORKLOADS", "Row", "measure", "require_backend", "run"]

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

OPTIMIZERS: dict[str, dict[str, Any]] = {
    "SGD": {"lr": 0.01, "momentum": 0.9},
    "Adam": {"lr": 1e-3},
    "AdamW": {"lr": 1e-3},
    "RMSprop": {"lr": 1e-3},
    "Adagrad": {"lr": 1e-2},
    "Adadelta": {},
    "Adamax": {},
    "ASGD": {},
    "NAdam": {},
    "RAdam": {},
    "Rprop": {},
}
"""The optimizers the benchmark knows, with the options it runs them with (SGD with
momentum, the others at torch's defaults or a common lr)."""

DEFAULT_OPTIMIZERS = ("SGD", "Adam", "AdamW", "RMSprop", "Adagrad")
"""Benchmarked unless others are named."""

_TORCH_VARIANTS = ("foreach=False", "foreach=True", "fused=True")


@dataclass
class Row:
    """One optimizer on one workload: median step times in milliseconds (``None`` where
    torch has no such path), refoptim's ratios to each torch path, and refoptim's peak
    extra memory per step as a multiple of the parameter bytes."""

    optimizer: str
    workload: str
    tensors: int
    elements: int
    refoptim_ms: float
    torch_ms: dict[str, float | None] = field(default_factory=dict)
    peak_extra_memory: float = 0.0
    repeats: int = 0

    @property
    def ratios(self) -> dict[str, float | None]:
        """refoptim's time over each torch path's (below 1.0: refoptim is faster)."""
        return {k: (self.refoptim_ms / v if v else None) for k, v in self.torch_ms.items()}

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, ratios included."""
        return {**asdict(self), "ratios": self.ratios}


def _data(workload: str, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    count, size = WORKLOADS[workload]
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(size, dtype=np.float32) for _ in range(count)]
    grads = [rng.standard_normal(size, dtype=np.float32) for _ in range(count)]
    return params, grads


def _median_ms(step: Any, repeats: int, sync: Any = None) -> float:
    step()  # creates the state; not timed
    times = []
    if sync is None:
        for _ in range(repeats):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
    else:  # a GPU: wait for the queued work before starting the clock and before stopping it
        for _ in range(repeats):
            sync()
            start = time.perf_counter()
            step()
            sync()
            times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


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


def _refoptim_cupy(name: str, params: list[np.ndarray], grads: list[np.ndarray], repeats: int) -> tuple[float, float]:
    import cupy

    ps = [refoptim.Parameter(cupy.asarray(p)) for p in params]
    for p, g in zip(ps, grads):
        p.grad = cupy.asarray(g)
    opt = getattr(refoptim, name)(ps, **OPTIMIZERS[name])
    ms = _median_ms(opt.step, repeats, _cupy_sync)
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
    return ms, (peak[0] - before) / nbytes


def _refoptim(name: str, params: list[np.ndarray], grads: list[np.ndarray], repeats: int) -> tuple[float, float]:
    ps = [refoptim.Parameter(p.copy()) for p in params]
    for p, g in zip(ps, grads):
        p.grad = g
    opt = getattr(refoptim, name)(ps, **OPTIMIZERS[name])
    ms = _median_ms(opt.step, repeats)
    gc.collect()
    tracemalloc.start()
    try:
        opt.step()
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        opt.step()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    nbytes = sum(p.nbytes for p in params)
    return ms, (peak - before) / nbytes


def _torch(
    name: str, variant: str, params: list[np.ndarray], grads: list[np.ndarray], repeats: int, device: str = "cpu"
) -> float | None:
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
            return _median_ms(opt.step, repeats, sync)
    except (RuntimeError, TypeError, ValueError) as exc:
        if key == "fused":
            return None  # torch has no fused kernel for this optimizer on this device
        raise RuntimeError(f"torch {name}({variant}) failed: {exc}") from exc


def measure(
    name: str,
    workload: str,
    repeats: int = 10,
    torch_variants: tuple[str, ...] = _TORCH_VARIANTS,
    backend: str = "numpy",
) -> Row:
    """Benchmark one optimizer on one workload (see :data:`WORKLOADS`): refoptim on
    ``backend`` (``"numpy"``, or ``"cupy"`` against torch on CUDA; see :data:`BACKENDS`)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
    if workload not in WORKLOADS:
        raise ValueError(f"unknown workload {workload!r}; known: {', '.join(WORKLOADS)}")
    require_backend(backend)
    params, grads = _data(workload)
    count, size = WORKLOADS[workload]
    if backend == "numpy":
        ms, memory = _refoptim(name, params, grads, repeats)
    else:
        ms, memory = _refoptim_cupy(name, params, grads, repeats)
    row = Row(name, workload, count, size, ms, peak_extra_memory=memory, repeats=repeats)
    device = "cpu" if backend == "numpy" else "cuda"
    for variant in torch_variants:
        row.torch_ms[variant] = _torch(name, variant, params, grads, repeats, device)
    return row


def run(
    optimizers: list[str] | None = None,
    workloads: list[str] | None = None,
    repeats: int = 10,
    out: Any = None,
    backend: str = "numpy",
) -> list[Row]:
    """Benchmark every (optimizer, workload) pair, printing a table row as each finishes;
    ``backend="cupy"`` runs refoptim on CuPy against torch on CUDA."""
    import sys

    import torch

    require_backend(backend)
    out = out or sys.stdout
    optimizers = list(optimizers or DEFAULT_OPTIMIZERS)
    workloads = list(workloads or ["a", "b", "c"])
    if backend == "numpy":
        print(
            f"refoptim {refoptim.__version__} on NumPy {np.__version__} ({refoptim.get_num_threads()} threads) "
            f"against torch {torch.__version__} (CPU, {torch.get_num_threads()} threads); "
            f"median of {repeats} steps after the first",
            file=out,
        )
    else:
        import cupy

        print(
            f"refoptim {refoptim.__version__} on CuPy {cupy.__version__} against torch {torch.__version__} "
            f"(CUDA {torch.version.cuda}, {torch.cuda.get_device_name()}); both devices synchronized around "
            f"each step; median of {repeats} steps after the first",
            file=out,
        )
    head = (
        f"{'optimizer':<9} {'workload':<14} {'refoptim ms':>11} "
        + " ".join(f"{'torch ' + v:>20}" for v in _TORCH_VARIANTS)
        + f" {'peak extra mem':>14}"
    )
    print(head, file=out)
    print("-" * len(head), file=out)
    rows = []
    for name in optimizers:
        for workload in workloads:
            row = measure(name, workload, repeats, backend=backend)
            rows.append(row)
            cells = []
            for v in _TORCH_VARIANTS:
                t, r = row.torch_ms.get(v), row.ratios.get(v)
                cells.append(f"{'n/a':>20}" if t is None else f"{t:>9.2f} ({r:>6.2f}x)".rjust(20))
            label = f"{workload} {row.tensors}x{row.elements:,}"
            print(
                f"{name:<9} {label:<14} {row.refoptim_ms:>11.2f} " + " ".join(cells) + f" {row.peak_extra_memory:>13.2f}x",
                file=out,
                flush=True,
            )
    print("(ratio = refoptim time / torch time; peak extra memory = refoptim's peak allocation in one step / parameter bytes)", file=out)
    if backend != "numpy":
        print("(GPU: peak extra memory read from CuPy's default memory pool)", file=out)
    return rows
