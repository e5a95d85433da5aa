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

__all__ = ["OPTIMIZERS", "WORKLOADS", "Row", "measure", "run"]

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


def _median_ms(step: Any, repeats: int) -> float:
    step()  # creates the state; not timed
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


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


def _torch(name: str, variant: str, params: list[np.ndarray], grads: list[np.ndarray], repeats: int) -> float | None:
    import torch

    key, _, value = variant.partition("=")
    options = {**OPTIMIZERS[name], key: value == "True"}
    if key == "fused":
        options["foreach"] = False
    ts = [torch.from_numpy(p.copy()).requires_grad_(True) for p in params]
    for t, g in zip(ts, grads):
        t.grad = torch.from_numpy(g)
    try:
        opt = getattr(torch.optim, name)(ts, **options)
        with torch.no_grad():
            return _median_ms(opt.step, repeats)
    except (RuntimeError, TypeError, ValueError) as exc:
        if key == "fused":
            return None  # torch has no fused CPU kernel for this optimizer
        raise RuntimeError(f"torch {name}({variant}) failed: {exc}") from exc


def measure(name: str, workload: str, repeats: int = 10, torch_variants: tuple[str, ...] = _TORCH_VARIANTS) -> Row:
    """Benchmark one optimizer on one workload (see :data:`WORKLOADS`)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
    if workload not in WORKLOADS:
        raise ValueError(f"unknown workload {workload!r}; known: {', '.join(WORKLOADS)}")
    params, grads = _data(workload)
    count, size = WORKLOADS[workload]
    ms, memory = _refoptim(name, params, grads, repeats)
    row = Row(name, workload, count, size, ms, peak_extra_memory=memory, repeats=repeats)
    for variant in torch_variants:
        row.torch_ms[variant] = _torch(name, variant, params, grads, repeats)
    return row


def run(
    optimizers: list[str] | None = None,
    workloads: list[str] | None = None,
    repeats: int = 10,
    out: Any = None,
) -> list[Row]:
    """Benchmark every (optimizer, workload) pair, printing a table row as each finishes."""
    import sys

    import torch

    out = out or sys.stdout
    optimizers = list(optimizers or DEFAULT_OPTIMIZERS)
    workloads = list(workloads or ["a", "b", "c"])
    print(
        f"refoptim {refoptim.__version__} on NumPy {np.__version__} against torch {torch.__version__} "
        f"(CPU, {torch.get_num_threads()} threads); median of {repeats} steps after the first",
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
            row = measure(name, workload, repeats)
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
    return rows
