"""Adam on a Dask array spread over a cluster of worker processes, bit for bit NumPy's.

    python examples/dask_cluster.py            # 10M float32 elements, 10 chunks, 5 steps
    python examples/dask_cluster.py 100000000  # 100M elements (400 MB per array)

The parameter, its gradient and Adam's state (``exp_avg``, ``exp_avg_sq``, ``step``) are
Dask arrays whose chunks live on the workers. ``optimizer.step()`` only builds the task
graph of one step (refoptim rebinds Dask arrays, it never writes into them); ``persist()``
then computes it on the workers and leaves one task per chunk, so the graph stays the same
size however many steps you take. At the end the parameter and state are fetched back and
compared with the same steps of refoptim on NumPy.

On a real multi-node cluster the code is the same; only the client changes: start a
scheduler (``dask scheduler``, port 8786) and workers on each machine (``dask worker
tcp://scheduler:8786``), install refoptim, NumPy and Dask in the same versions everywhere,
and replace ``LocalCluster(...)``/``Client(cluster)`` below with::

    client = Client("tcp://scheduler:8786")

(or any other ``distributed`` deployment: dask-jobqueue, dask-kubernetes, Coiled, ...).
Choose chunks of tens to hundreds of MB so the per-task overhead stays small against the
arithmetic, and make the gradient on the workers (from your model's chunks), not on the
client: a NumPy gradient shipped from the client crosses the network every step.
"""

import sys
import time

import dask
import dask.array as da
import numpy as np
from distributed import Client, LocalCluster, wait

import refoptim
# persist every Dask parameter and state entry in one dask.persist call, in place
from refoptim.bench import dask_arrays, persist_optimizer


def tasks(optimizer):
    """The number of tasks behind the optimizer's parameters and state."""
    return len({key for a in dask_arrays(optimizer) for key in a.__dask_graph__().keys()})


def main(elements=10_000_000, chunks=10, steps=5):
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)  # a real cluster: client = Client("tcp://scheduler:8786")
    try:
        per_chunk = -(-elements // chunks)
        rng = da.random.default_rng(0)
        p0 = rng.standard_normal(elements, chunks=per_chunk, dtype=np.float32).persist()
        grads = [rng.standard_normal(elements, chunks=per_chunk, dtype=np.float32).persist() for _ in range(steps)]
        wait([p0, *grads])

        param = refoptim.Parameter(p0)
        optimizer = refoptim.Adam([param], lr=1e-3)

        # The same steps on NumPy, in this process, to compare with.
        param_np = refoptim.Parameter(p0.compute())
        optimizer_np = refoptim.Adam([param_np], lr=1e-3)

        print(f"Adam on {elements:,} float32 elements in {chunks} chunks, {len(client.nthreads())} workers")
        for step, grad in enumerate(grads, 1):
            start = time.perf_counter()
            param.grad = grad
            optimizer.step()  # builds the graph of this step; computes nothing
            built = tasks(optimizer)
            wait(persist_optimizer(optimizer))  # computes it on the workers
            elapsed = time.perf_counter() - start
            print(f"step {step}: {built:,} tasks built, {tasks(optimizer):,} after persist, {elapsed * 1e3:.0f} ms")

            param_np.grad = grad.compute()
            optimizer_np.step()

        same = param.data.compute().tobytes() == param_np.data.tobytes()
        for key, want in optimizer_np.state[param_np].items():
            got = np.asarray(dask.compute(optimizer.state[param][key])[0])
            same = same and got.tobytes() == np.asarray(want).tobytes()
        print(f"parameter and state bit-identical to NumPy: {same}")
        return same
    finally:
        client.close()
        cluster.close()


if __name__ == "__main__":  # the guard matters: worker processes re-import this file
    ok = main(*(int(a) for a in sys.argv[1:]))
    sys.exit(0 if ok else 1)
