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
from refoptim import registry

__all__ = [
    "BACKENDS",
    "OPTIMIZERS",
    "WORKLOADS",
    "DaskRow",
    "Row",
    "measure",
    "persist_optimizer",
    "require_backend",
    "run",
    "run_dask",
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
        numpy_ms = _median_ms(opt_np.step, steps)

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
