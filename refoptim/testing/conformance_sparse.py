"""Conformance of sparse gradients: SparseAdam, and SGD and Adagrad with sparse gradients
(objective ``"sparse"``), against torch 2.13 on CPU. Needs torch.

Every configuration runs on three parameters: an embedding table (12, 4) with gradients
on its rows (``sparse_dim`` 1, values ``(nnz, 4)``), a 1-d vector (15,) with scalar
values, and a (4, 5, 3) array with ``sparse_dim`` 2. The gradients are uncoalesced, as
``nn.Embedding(sparse=True)`` makes them: indices drawn with repeats (pairs, triples and
more, and more than 16 entries, where torch's coalescing order is its unstable sort's),
sometimes no entries at all (nnz = 0), and the 3-d parameter gets no gradient on some
steps. Both sides get the same gradients; torch's are ``torch.sparse_coo_tensor``.

Measured as :func:`refoptim.testing.runner.run_config` measures the elementwise
optimizers: each step teacher-forced (refoptim starts from torch's parameters and state)
with the parameter and every state entry compared in ULP of the operands' scale
(``thresholds.ONE_STEP_ULP``), the state layout (keys, dtypes, shapes; SparseAdam's
``step`` a Python int), and a free-running trajectory.

SGD with momentum keeps a *sparse* ``momentum_buffer`` (a torch sparse tensor in its
``state_dict()``, a :class:`refoptim.SparseGrad` in refoptim's): its indices must equal
torch's exactly, in the same storage order, with the same ``nnz`` and the same
``is_coalesced()`` flag (a structure error otherwise); its values are compared in ULP.
:func:`sparse_from_torch` and :func:`sparse_to_torch` convert such a buffer.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from .inputs import SPARSE_OBJECTIVES as OBJECTIVES
from .inputs import SPARSE_SHAPES as SHAPES
from .inputs import sparse_configs as configs
from .matrix import Config
from .metrics import relative_error, ulp_error, update_ulp_error
from .runner import Result, _group_key_errors
from .torch_adapter import (
    NUMPY_DTYPES,
    _groups,
    from_torch,
    refoptim_class,
    to_torch,
    torch_options,
)

__all__ = ["OBJECTIVES", "SHAPES", "configs", "run_config", "sparse_from_torch", "sparse_to_torch"]

# The configurations (shapes, option lists, ``configs``) live in the torch-free module
# refoptim.testing.inputs, imported above under their old names.


# ----------------------------------------------------------------------- gradients
def _gradient_sequence(cfg: Config) -> list[list[tuple[np.ndarray, np.ndarray] | None]]:
    """Per step, per parameter: (indices, values) of an uncoalesced sparse gradient, or None."""
    rng = np.random.default_rng(cfg.seed + 11)
    dtype = NUMPY_DTYPES[cfg.dtype]
    complex_ = np.dtype(dtype).kind == "c"
    scales = [10.0 ** rng.uniform(-2, 1) for _ in SHAPES]
    out = []
    for step in range(cfg.steps):
        grads: list[tuple[np.ndarray, np.ndarray] | None] = []
        for i, ((shape, sparse_dim), scale) in enumerate(zip(SHAPES, scales)):
            if i == 2 and (step < 3 or step % 7 == 0):
                grads.append(None)
                continue
            if i == 1 and step % 5 == 4:
                nnz = 0
            else:
                nnz = int(rng.choice([1, 2, 5, 9, 20, 33]))
            # Draw from a few rows so that pairs, triples and longer runs occur.
            span = [max(1, min(s, int(rng.integers(2, s + 1)))) for s in shape[:sparse_dim]]
            idx = np.stack([rng.integers(0, span[d], nnz) for d in range(sparse_dim)]).astype(np.int64)
            vshape = (nnz,) + shape[sparse_dim:]
            v = rng.standard_normal(vshape) * 10.0 ** rng.uniform(-1, 1, vshape)
            if complex_:
                v = v + 1j * rng.standard_normal(vshape)
            grads.append((idx, np.asarray(v * scale, dtype=dtype)))
        out.append(grads)
    return out


def _torch_grad(g: tuple[np.ndarray, np.ndarray], shape: tuple[int, ...]) -> torch.Tensor:
    return torch.sparse_coo_tensor(to_torch(g[0]), to_torch(g[1]), shape, check_invariants=True)


def _ref_grad(g: tuple[np.ndarray, np.ndarray], shape: tuple[int, ...]) -> Any:
    from refoptim.sparse import SparseGrad

    return SparseGrad(g[0].copy(), g[1].copy(), shape)


def _initial(cfg: Config) -> list[np.ndarray]:
    rng = np.random.default_rng(cfg.seed)
    dtype = NUMPY_DTYPES[cfg.dtype]
    out = []
    for shape, _ in SHAPES:
        x = rng.standard_normal(shape)
        if np.dtype(dtype).kind == "c":
            x = x + 1j * rng.standard_normal(shape)
        out.append(np.asarray(x, dtype=dtype))
    return out


def _build(cfg: Config, values: list[np.ndarray]) -> tuple[list[Any], Any, list[torch.Tensor], Any]:
    import refoptim

    if cfg.optimizer == "SparseAdam" and not hasattr(refoptim, "SparseAdam"):
        from refoptim.sparse_adam import SparseAdam as cls
    else:
        cls = refoptim_class(cfg.optimizer)
    ref_params = [refoptim.Parameter(v.copy()) for v in values]
    ref_opt = cls(_groups(cfg, ref_params), **cfg.options)
    t_params = [to_torch(v).requires_grad_(True) for v in values]
    options = torch_options(cfg.options)
    if cfg.optimizer != "SparseAdam":
        options = {"foreach": False, **options}
    t_opt = getattr(torch.optim, cfg.optimizer)(_groups(cfg, t_params, torch_options), **options)
    return ref_params, ref_opt, t_params, t_opt


def sparse_from_torch(t: torch.Tensor) -> Any:
    """A torch sparse COO tensor as a :class:`refoptim.SparseGrad` of NumPy arrays: the
    same indices in the same storage order, the same values and coalesced flag (not
    coalesced here)."""
    from refoptim.sparse import SparseGrad

    t = t.detach()
    return SparseGrad(from_torch(t._indices()), from_torch(t._values()), tuple(t.shape), is_coalesced=t.is_coalesced())


def sparse_to_torch(g: Any) -> torch.Tensor:
    """A :class:`refoptim.SparseGrad` as a torch sparse COO tensor, storage order and
    coalesced flag kept (SGD's sparse ``momentum_buffer`` for torch's ``load_state_dict``)."""
    return torch.sparse_coo_tensor(
        to_torch(np.asarray(g.indices)), to_torch(np.asarray(g.values)), g.shape, is_coalesced=g.is_coalesced(),
        check_invariants=True,
    )


def _state_value(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return sparse_from_torch(v) if v.is_sparse else from_torch(v)
    return v


def _np_state(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: _state_value(v) for k, v in entry.items()}


def _copy_state_value(v: Any) -> Any:
    from refoptim.sparse import SparseGrad

    if isinstance(v, np.ndarray):
        return np.array(v, copy=True)
    if isinstance(v, SparseGrad):
        return v.clone()
    return v


def _sparse_errors(where: str, ours: Any, theirs: torch.Tensor) -> list[str]:
    """A sparse state entry against torch's: same dense shape and dtype, the same indices
    in the same order, the same coalesced flag (values are compared in ULP elsewhere)."""
    from refoptim.sparse import SparseGrad

    if not isinstance(ours, SparseGrad):
        return [f"{where}: is {type(ours).__name__}, torch's a sparse tensor"]
    t = sparse_from_torch(theirs)
    if ours.shape != t.shape or np.asarray(ours.values).dtype != np.asarray(t.values).dtype:
        ours_dt, theirs_dt = np.asarray(ours.values).dtype, np.asarray(t.values).dtype
        return [f"{where}: sparse {ours_dt}{list(ours.shape)}, torch's {theirs_dt}{list(t.shape)}"]
    if ours.nnz != t.nnz or not np.array_equal(np.asarray(ours.indices), np.asarray(t.indices)):
        return [f"{where}: sparse indices differ (nnz {ours.nnz}, torch's {t.nnz})"]
    if ours.is_coalesced() != t.is_coalesced():
        return [f"{where}: is_coalesced() {ours.is_coalesced()}, torch's {t.is_coalesced()}"]
    return []


def _layout_errors(where: str, ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    errors = []
    if set(ours) != set(theirs):
        return [f"{where}: state keys {sorted(ours)} != torch's {sorted(theirs)}"]
    for key, t in theirs.items():
        o = ours[key]
        if isinstance(t, torch.Tensor) and t.is_sparse:
            errors += _sparse_errors(f"{where}: state[{key!r}]", o, t)
        elif isinstance(t, torch.Tensor):
            o_np = np.asarray(o)
            if o_np.dtype != from_torch(t).dtype or o_np.shape != tuple(t.shape):
                errors.append(f"{where}: state[{key!r}] is {o_np.dtype}{list(o_np.shape)}, torch's "
                              f"{from_torch(t).dtype}{list(t.shape)}")
        elif type(o) is not type(t) or o != t:
            errors.append(f"{where}: state[{key!r}] is {o!r} ({type(o).__name__}), torch's {t!r} ({type(t).__name__})")
    return errors


def run_config(cfg: Config) -> Result:
    """Run one sparse configuration against torch; see the module docstring.

    torch runs single-threaded meanwhile (its sparse CPU kernels spend far more time
    starting threads than computing on arrays this small: ten times slower with two);
    the number of threads is restored afterwards. With one thread torch applies the
    entries of a sparse gradient strictly in storage order, the order refoptim follows.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(cfg)
    finally:
        torch.set_num_threads(threads)


def _run(cfg: Config) -> Result:
    start = time.perf_counter()
    result = Result(cfg)
    values = _initial(cfg)
    sequence = _gradient_sequence(cfg)
    forced, forced_opt, t_params, t_opt = _build(cfg, values)
    free, free_opt, _, _ = _build(cfg, values)
    state_id = {id(p): k for k, p in enumerate(p for g in t_opt.param_groups for p in g["params"])}
    ids = [state_id[id(p)] for p in t_params]
    names = [f"{shape} sparse_dim={sd}" for shape, sd in SHAPES]

    for step in range(cfg.steps):
        grads = sequence[step]
        t_before = [from_torch(p) for p in t_params]
        t_state_before = {i: _np_state(e) for i, e in t_opt.state_dict()["state"].items()}
        for i, (p, value) in enumerate(zip(forced, t_before)):
            p.data[...] = value
            entry = t_state_before.get(ids[i])
            if entry:
                forced_opt.state[p] = {k: _copy_state_value(v) for k, v in entry.items()}
            else:
                forced_opt.state.pop(p, None)
        dense_grads = []
        for (shape, _), tp, fp, g in zip(SHAPES, t_params, forced, grads):
            tp.grad = None if g is None else _torch_grad(g, shape)
            fp.grad = None if g is None else _ref_grad(g, shape)
            dense_grads.append(None if g is None else from_torch(_torch_grad(g, shape).to_dense()))
        t_opt.step()
        forced_opt.step()

        t_state = t_opt.state_dict()["state"]
        r_state = forced_opt.state_dict()["state"]
        for i, (tp, fp, dg) in enumerate(zip(t_params, forced, dense_grads)):
            operands = [t_before[i]] + ([dg] if dg is not None else [])
            ours, theirs = np.asarray(fp.data), from_torch(tp)
            err = ulp_error(ours, theirs, *operands)
            if err > result.param_ulp:
                result.param_ulp, result.param_where = err, f"step {step + 1}, param {names[i]}"
            err = update_ulp_error(ours, theirs, t_before[i])
            if err > result.update_ulp:
                result.update_ulp, result.update_where = err, f"step {step + 1}, param {names[i]}"
            t_entry = t_state.get(ids[i], {})
            r_entry = r_state.get(ids[i], {})
            if step in (0, cfg.steps - 1) or not set(t_entry) <= set(r_entry):
                result.structure_errors += _layout_errors(f"step {step + 1}, param {names[i]}", r_entry, t_entry)
            before = t_state_before.get(ids[i], {})
            for key, t_val in t_entry.items():
                if key not in r_entry:
                    continue
                if not isinstance(t_val, torch.Tensor):
                    if r_entry[key] != t_val:
                        result.structure_errors.append(
                            f"step {step + 1}, param {names[i]}: state[{key!r}] {r_entry[key]!r} != torch's {t_val!r}")
                    continue
                where = f"step {step + 1}, param {names[i]}"
                if t_val.is_sparse:
                    # the same indices in the same order (else a structure error), then the
                    # values in ULP of their own scale
                    errs = _sparse_errors(f"{where}: state[{key!r}]", r_entry[key], t_val)
                    result.structure_errors += errs
                    if errs:
                        continue
                    err = ulp_error(np.asarray(r_entry[key].values), from_torch(t_val._values()))
                    if err > result.state_ulp:
                        result.state_ulp, result.state_where = err, f"{where}, {key}"
                    continue
                ops = [before[key]] if key in before else []
                if dg is not None:
                    ops.append(dg)
                err = ulp_error(np.asarray(r_entry[key]), from_torch(t_val), *ops)
                if err > result.state_ulp:
                    result.state_ulp, result.state_where = err, f"step {step + 1}, param {names[i]}, {key}"

        for (shape, _), fp, g in zip(SHAPES, free, grads):
            fp.grad = None if g is None else _ref_grad(g, shape)
        free_opt.step()

    result.trajectory = max(relative_error(np.asarray(fp.data), from_torch(tp)) for fp, tp in zip(free, t_params))
    result.structure_errors += _group_key_errors(t_opt, free_opt)
    result.seconds = time.perf_counter() - start
    return result
