r"""Conformance of ``refoptim.LBFGS`` against torch 2.13's ``torch.optim.LBFGS``.

L-BFGS is not elementwise: a step calls a closure several times, runs a line search, and
reads all parameters as one flat vector. So its configurations do not go through the
elementwise runner; this module builds them (:func:`configs`) and runs them
(:func:`run_config`), as ``refoptim.testing.matrix.EXTENSIONS`` describes.

Every configuration optimizes the matrix's five parameters (0-d, 1-d, 2-d, size 0, and a
non-contiguous 2-d view) in one group, on one of three objectives with feedback:

- ``"quadratic"``: :math:`\sum a/2\,|x - c|^2` with per-element curvatures :math:`a` from
  0.1 to 10 (condition number up to 100, as the elementwise matrix's quadratic);
- ``"rosenbrock"``: the Rosenbrock function over each parameter's flattened values (real
  dtypes only);
- ``"logistic"``: L2-regularised logistic regression on fixed seeded data, the parameters
  flattened into one weight vector (complex ones as (real, imag) pairs).

Both sides evaluate loss and gradient with the same NumPy function: torch's closure reads
its parameters as NumPy arrays, calls it, and sets ``.grad`` from its result. Per step:

- **teacher-forced**: refoptim gets torch's parameters and whole LBFGS state (converted to
  NumPy), both take one ``step(closure)``, and the parameters and every state entry
  (``d``, ``t``, ``H_diag``, ``prev_flat_grad``, ``prev_loss`` and every entry of
  ``old_dirs``, ``old_stps``, ``ro``, ``al``) are compared with
  :func:`~refoptim.testing.metrics.step_relative_error`; ``func_evals``, ``n_iter``, the
  list lengths, which scalars are arrays and which are Python numbers, and the returned
  loss must be equal (``structure_errors`` otherwise);
- **free-running**: refoptim alone on its own trajectory; after all steps the relative
  error of the parameters, and ``func_evals``/``n_iter`` equal to torch's.

Importing this module imports torch.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from . import thresholds
from .matrix import SHAPES, Config, _lr_array
from .metrics import relative_error, step_relative_error
from .runner import Result
from .torch_adapter import (
    NUMPY_DTYPES,
    TORCH_DTYPES,
    from_torch,
    initial_values,
    to_torch,
)

__all__ = ["OBJECTIVES", "configs", "objective", "run_config"]

OBJECTIVES = ("quadratic", "rosenbrock", "logistic")
"""The objectives of the LBFGS configurations (all with feedback: the gradient depends on
the parameters)."""


_SW = {"line_search_fn": "strong_wolfe"}

# (objective, options, steps) per dtype: every option alone and with the line search, the
# tolerances chosen so that they end inner loops early in these runs, ``history_size``
# small enough that the history rolls over.
#
# How long a run can be is set by L-BFGS's sensitivity to rounding, not by refoptim: torch
# against itself, with only the summation order of its dot products changed, drifts apart
# just as far (measured: float64 Rosenbrock with strong Wolfe, free-running, 1.8e-12 after
# two steps of 20 iterations and 1.8e-10 after four; float32, with torch's default
# tolerances far below float32's resolution, one step of 20 iterations differs by up to
# 1e-4 in the parameters and 1e-3 to 1 in the state, with different iteration counts).
# So float64 runs use torch's defaults, Rosenbrock for one long step or several short
# ones; float32 runs keep to a few iterations per step and tolerances float32 can resolve.
_ENTRIES: dict[str, list[tuple[str, dict[str, Any], int]]] = {
    "float64": [
        # defaults; the line search
        ("quadratic", {}, 4),
        ("quadratic", dict(_SW), 4),
        ("rosenbrock", dict(_SW), 1),
        ("logistic", {}, 3),
        ("logistic", dict(_SW), 3),
        # lr (a float and a 0-d float32 array)
        ("quadratic", {"lr": 0.5}, 4),
        ("rosenbrock", {"lr": 0.1, "max_iter": 10}, 3),
        ("logistic", {"lr": _lr_array(0.5)}, 3),
        ("quadratic", {"lr": _lr_array(0.8), **_SW}, 3),
        # max_iter, max_eval (the max_eval test ends the loop; with a line search it also
        # limits the search's evaluations)
        ("quadratic", {"max_iter": 5}, 6),
        ("rosenbrock", {"max_iter": 7, "max_eval": 9, **_SW}, 2),
        ("logistic", {"max_iter": 10, "max_eval": 6}, 4),
        ("quadratic", {"max_iter": 1, **_SW}, 8),
        ("rosenbrock", {"max_eval": 3, **_SW}, 6),
        # tolerance_grad, tolerance_change ending inner loops early
        ("quadratic", {"tolerance_grad": 1e-2}, 4),
        ("logistic", {"tolerance_grad": 1e-3, **_SW}, 3),
        ("quadratic", {"tolerance_change": 1e-2}, 4),
        ("rosenbrock", {"tolerance_change": 0.05, **_SW}, 2),
        ("logistic", {"tolerance_change": 1e-4}, 3),
        # history_size small: the history rolls over
        ("quadratic", {"history_size": 2}, 4),
        ("rosenbrock", {"history_size": 3, **_SW}, 1),
        ("logistic", {"history_size": 2, "max_iter": 8}, 4),
        # several options at once
        ("rosenbrock", {"lr": 0.5, "max_iter": 8, "history_size": 4, "tolerance_change": 1e-6, **_SW}, 2),
        # a long free-running Rosenbrock run: a known deviation (thresholds.KNOWN_DEVIATIONS)
        ("rosenbrock", {"max_iter": 20, **_SW}, 4),
    ],
    "float32": [
        ("quadratic", {"max_iter": 5}, 2),
        ("quadratic", {"max_iter": 5, **_SW}, 2),
        ("rosenbrock", {"max_iter": 5, **_SW}, 2),
        ("logistic", {"max_iter": 5}, 2),
        ("logistic", {"max_iter": 5, **_SW}, 2),
        ("quadratic", {"lr": 0.5, "max_iter": 5}, 2),
        ("rosenbrock", {"lr": 0.1, "max_iter": 5}, 2),
        ("logistic", {"lr": _lr_array(0.5), "max_iter": 5}, 2),
        ("quadratic", {"lr": _lr_array(0.8), "max_iter": 4, **_SW}, 2),
        ("rosenbrock", {"max_iter": 4, "max_eval": 5, **_SW}, 3),
        ("logistic", {"max_iter": 10, "max_eval": 6}, 2),
        ("quadratic", {"max_iter": 1, **_SW}, 8),
        ("rosenbrock", {"max_eval": 3, **_SW}, 6),
        ("quadratic", {"tolerance_grad": 0.3, "max_iter": 8}, 2),
        ("logistic", {"tolerance_grad": 3e-2, "max_iter": 8, **_SW}, 2),
        ("quadratic", {"tolerance_change": 0.1, "max_iter": 8}, 2),
        ("rosenbrock", {"tolerance_change": 0.5, "max_iter": 8, **_SW}, 2),
        ("quadratic", {"history_size": 2, "max_iter": 6}, 2),
        ("rosenbrock", {"history_size": 2, "max_iter": 6, **_SW}, 2),
        ("logistic", {"history_size": 2, "max_iter": 4}, 2),
        # torch's defaults in float32: known deviations (thresholds.KNOWN_DEVIATIONS),
        # kept so that their figures stay visible
        ("quadratic", {}, 2),
        ("logistic", dict(_SW), 2),
    ],
}
# complex64: 2 * 29 real unknowns, which reach float32's resolution sooner; real-valued
# objectives of complex parameters only (no Rosenbrock).
_ENTRIES["complex64"] = [
    ("quadratic", {"max_iter": 4}, 2),
    ("quadratic", {"max_iter": 4, **_SW}, 2),
    ("logistic", {"max_iter": 4}, 1),
    ("logistic", {"max_iter": 4, **_SW}, 2),
    ("quadratic", {"lr": 0.5, "max_iter": 3}, 2),
    ("logistic", {"lr": _lr_array(0.5), "max_iter": 4}, 2),
    ("quadratic", {"max_iter": 6, "max_eval": 4}, 2),
    ("quadratic", {"max_iter": 1, **_SW}, 8),
    ("quadratic", {"tolerance_grad": 0.3, "max_iter": 8}, 2),
    ("quadratic", {"tolerance_change": 0.1, "max_iter": 8}, 2),
    ("quadratic", {"history_size": 2, "max_iter": 4}, 2),
    ("logistic", {"history_size": 2, "max_iter": 4}, 1),
]


def configs(optimizers: list[str] | None, dtypes: tuple[str, ...], steps: int) -> list[Config]:
    """The LBFGS configurations, if ``"LBFGS"`` is among ``optimizers``.

    Each entry runs in the requested dtypes that ``thresholds.ONE_STEP_REL["LBFGS"]``
    names (complex ones on the quadratic and logistic objectives only), for its own
    number of ``step(closure)`` calls, at most ``steps``.
    """
    if optimizers is not None and "LBFGS" not in optimizers:
        return []
    limits = thresholds.ONE_STEP_REL["LBFGS"]
    out = []
    for dtype in dtypes:
        if dtype not in limits or dtype not in _ENTRIES:
            continue
        for objective_name, options, n in _ENTRIES[dtype]:
            out.append(Config("LBFGS", dict(options), dtype, (), objective_name, max(1, min(n, steps))))
    return out


# ----------------------------------------------------------------------- objectives
def _real_flat(x: np.ndarray) -> np.ndarray:
    """``x`` flattened, complex as (real, imag) pairs (torch's ``view_as_real(x).view(-1)``)."""
    x = np.ascontiguousarray(x)
    if np.iscomplexobj(x):
        x = np.stack([x.real, x.imag], axis=-1)
    return x.reshape(-1)


def _from_real_flat(flat: np.ndarray, like: np.ndarray) -> np.ndarray:
    """The inverse of :func:`_real_flat`, shaped and typed like ``like``."""
    if np.iscomplexobj(like):
        pairs = flat.reshape(like.shape + (2,))
        return (pairs[..., 0] + 1j * pairs[..., 1]).astype(like.dtype)
    return flat.reshape(like.shape).astype(like.dtype)


def objective(cfg: Config) -> Callable[[list[np.ndarray]], tuple[np.ndarray, list[np.ndarray]]]:
    """The NumPy loss-and-gradient function of a configuration, with its fixed data drawn
    from ``cfg.seed``: ``f(params) -> (loss as a 0-d array of the real dtype, gradients)``.
    Both sides call it on the same values, so both see the same numbers."""
    dtype = NUMPY_DTYPES[cfg.dtype]
    real = np.float32 if dtype in (np.float32, np.complex64) else np.float64
    rng = np.random.default_rng(cfg.seed + 1)
    values = initial_values(cfg)

    if cfg.objective == "quadratic":
        curvature = [np.asarray(10.0 ** rng.uniform(-1, 1, v.shape), dtype=real) for v in values]
        center = []
        for v in values:
            c = rng.standard_normal(v.shape)
            if np.iscomplexobj(v):
                c = c + 1j * rng.standard_normal(v.shape)
            center.append(np.asarray(c, dtype=dtype))

        def quadratic(params: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
            loss = real(0)
            grads = []
            for x, a, c in zip(params, curvature, center):
                r = x - c
                loss = real(loss + np.sum(a * (r.real * r.real + r.imag * r.imag) if np.iscomplexobj(r) else a * r * r) / 2)
                grads.append((a * r).astype(dtype))
            return np.asarray(loss, dtype=real), grads

        return quadratic

    if cfg.objective == "rosenbrock":

        def rosenbrock(params: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
            loss = real(0)
            grads = []
            for x in params:
                flat = np.ascontiguousarray(x).reshape(-1)
                g = np.zeros_like(flat)
                if flat.size >= 2:
                    xi, xn = flat[:-1], flat[1:]
                    t = xn - xi * xi
                    u = 1 - xi
                    loss = real(loss + np.sum(100 * t * t + u * u))
                    g[:-1] += -400 * xi * t - 2 * u
                    g[1:] += 200 * t
                elif flat.size == 1:
                    loss = real(loss + np.sum((flat - 1) * (flat - 1)))
                    g += 2 * (flat - 1)
                grads.append(g.reshape(x.shape))
            return np.asarray(loss, dtype=real), grads

        return rosenbrock

    if cfg.objective == "logistic":
        n = sum(_real_flat(v).size for v in values)
        samples = 64
        X = np.asarray(rng.standard_normal((samples, n)) / np.sqrt(n), dtype=real)
        w_true = rng.standard_normal(n) * 3
        y = np.where(X.astype(np.float64) @ w_true + 0.5 * rng.standard_normal(samples) > 0, 1.0, -1.0).astype(real)
        lam = real(1e-2)

        def logistic(params: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
            w = np.concatenate([_real_flat(x) for x in params])
            m = y * (X @ w)
            loss = np.mean(np.logaddexp(real(0), -m)) + lam / 2 * np.sum(w * w)
            coef = -y * np.exp(-np.logaddexp(real(0), m)) / real(samples)  # -y * sigmoid(-m) / N
            gw = X.T @ coef + lam * w
            grads, offset = [], 0
            for x in params:
                k = _real_flat(x).size
                grads.append(_from_real_flat(gw[offset : offset + k], np.asarray(x)))
                offset += k
            return np.asarray(loss, dtype=real), grads

        return logistic

    raise ValueError(f"unknown LBFGS objective {cfg.objective!r}; expected one of {OBJECTIVES}")


# ----------------------------------------------------------------------- the two sides
class _Side:
    """Parameters, optimizer and closure of one side (torch or refoptim)."""

    def __init__(self, params: list[Any], optimizer: Any, closure: Callable[[], Any], read: Callable[[Any], np.ndarray]):
        self.params = params
        self.optimizer = optimizer
        self.closure = closure
        self.read = read

    def values(self) -> list[np.ndarray]:
        return [self.read(p) for p in self.params]

    def state(self) -> dict[str, Any]:
        """The LBFGS state (on the first parameter) as NumPy arrays and Python numbers."""
        sd = self.optimizer.state_dict()["state"]
        return _to_numpy(sd.get(0, {}))


def _to_numpy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return from_torch(value)
    if isinstance(value, dict):
        return {k: _to_numpy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_numpy(v) for v in value]
    if isinstance(value, (np.ndarray, np.generic)):
        return np.array(value, copy=True)
    return value


def _torch_options(options: dict[str, Any]) -> dict[str, Any]:
    return {k: to_torch(v) if isinstance(v, np.ndarray) else v for k, v in options.items()}


def build_torch(cfg: Config, values: list[np.ndarray], f: Callable) -> _Side:
    """torch's side: the five parameters (the view a non-contiguous view), torch's LBFGS
    and a closure that evaluates ``f`` on the parameters' NumPy values."""
    params = []
    for shape, value in zip(SHAPES, values):
        if shape == "view":
            base = torch.zeros((6, 9), dtype=TORCH_DTYPES[cfg.dtype])
            t = base[::2, 1:5]
            with torch.no_grad():
                t.copy_(to_torch(value))
            t.requires_grad_(True)
        else:
            t = to_torch(value).requires_grad_(True)
        params.append(t)
    optimizer = torch.optim.LBFGS(params, **_torch_options(cfg.options))

    def closure() -> torch.Tensor:
        loss, grads = f([from_torch(p) for p in params])
        for p, g in zip(params, grads):
            p.grad = to_torch(g)
        return torch.from_numpy(np.array(loss, copy=True))

    return _Side(params, optimizer, closure, from_torch)


def build_refoptim(cfg: Config, values: list[np.ndarray], f: Callable) -> _Side:
    """refoptim's side on NumPy, built like :func:`build_torch`."""
    from .torch_adapter import refoptim_class, refoptim_params

    params = refoptim_params(SHAPES, values)
    optimizer = refoptim_class("LBFGS")(params, **copy.deepcopy(cfg.options))

    def closure() -> np.ndarray:
        loss, grads = f([np.array(p.data, copy=True) for p in params])
        for p, g in zip(params, grads):
            p.grad = g
        return loss

    return _Side(params, optimizer, closure, lambda p: np.array(p.data, copy=True))


# ----------------------------------------------------------------------- comparison
_COUNTERS = ("func_evals", "n_iter")
_LISTS = ("old_dirs", "old_stps", "ro", "al")


def _kind(v: Any) -> str:
    """How a state value is held: ``None``, an array with its dtype and shape, or a
    Python type name."""
    if v is None:
        return "None"
    if isinstance(v, np.ndarray):
        return f"array {v.dtype}{list(v.shape)}"
    return type(v).__name__


def _error(ours: Any, theirs: Any, *operands: Any) -> float:
    """:func:`step_relative_error` of two values already of one kind."""
    if isinstance(theirs, np.ndarray):
        return step_relative_error(ours, theirs, *operands)
    if ours == theirs:
        return 0.0
    return step_relative_error(np.float64(ours), np.float64(theirs))


def compare_state(ours: dict[str, Any], theirs: dict[str, Any], before: dict[str, Any]) -> tuple[float, str, list[str]]:
    """Compare two LBFGS states (NumPy arrays and Python numbers, as :func:`_to_numpy`
    gives them): the worst relative error and where, and the structure errors.

    Structure: the keys in torch's order, ``func_evals`` and ``n_iter`` equal, every value
    held the same way (array of the same dtype and shape, or the same Python type, or
    ``None``), the lists equally long. Errors: each array against torch's with
    :func:`step_relative_error`, the value before the step as an operand; each list is
    measured as the array its entries stack into (``old_dirs`` as a matrix, ``ro`` and
    ``al`` as vectors, ``al``'s ``None`` entries left out), so its scale is its largest
    entry, as for every other state array.
    """
    errors: list[str] = []
    if list(ours) != list(theirs):
        errors.append(f"state keys {list(ours)} != torch's {list(theirs)}")
    worst, where = 0.0, ""

    def note(err: float, key: str) -> None:
        nonlocal worst, where
        if err > worst:
            worst, where = err, key

    for key, t in theirs.items():
        if key not in ours:
            continue
        o, b = ours[key], before.get(key)
        if key in _COUNTERS:
            if o != t:
                errors.append(f"{key} {o} != torch's {t}")
            continue
        if isinstance(t, list) and isinstance(o, list):
            if len(o) != len(t):
                errors.append(f"{key} has {len(o)} entries, torch's {len(t)}")
                continue
            kinds = [(_kind(oi), _kind(ti)) for oi, ti in zip(o, t)]
            bad = [i for i, (ko, kt) in enumerate(kinds) if ko != kt]
            if bad:
                errors.append(f"{key}[{bad[0]}] is {kinds[bad[0]][0]}, torch's {kinds[bad[0]][1]}")
                continue
            pairs = [(oi, ti) for oi, ti in zip(o, t) if ti is not None]
            if pairs:
                note(_error(np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])), key)
            continue
        if _kind(o) != _kind(t):
            errors.append(f"{key} is {_kind(o)}, torch's {_kind(t)}")
            continue
        if t is None:
            continue
        ops = [b] if isinstance(b, np.ndarray) and isinstance(t, np.ndarray) and b.shape == t.shape else []
        note(_error(o, t, *ops), key)
    return worst, where, errors


def _load_forced(forced: _Side, values: list[np.ndarray], state: dict[str, Any]) -> None:
    """Teacher forcing: torch's parameters and LBFGS state, copied into refoptim as they are."""
    for p, v in zip(forced.params, values):
        p.data[...] = v
    first = forced.params[0]
    opt = forced.optimizer
    if state:
        opt.state[first] = copy.deepcopy(state)
    else:
        opt.state.pop(first, None)


def run_config(cfg: Config) -> Result:
    """Run one LBFGS configuration against torch (see the module docstring)."""
    start = time.perf_counter()
    result = Result(cfg)
    values = initial_values(cfg)
    f = objective(cfg)
    twin = build_torch(cfg, values, f)
    forced = build_refoptim(cfg, values, f)
    free = build_refoptim(cfg, values, f)

    for step in range(cfg.steps):
        t_before = twin.values()
        t_state_before = twin.state()
        _load_forced(forced, t_before, t_state_before)

        t_loss = twin.optimizer.step(twin.closure)
        r_loss = forced.optimizer.step(forced.closure)
        if float(t_loss) != float(r_loss):
            result.structure_errors.append(f"step {step + 1}: returned loss {float(r_loss)!r} != torch's {float(t_loss)!r}")

        for i, (o, t, b) in enumerate(zip(forced.values(), twin.values(), t_before)):
            err = step_relative_error(o, t, b)
            if err > result.param_ulp:
                result.param_ulp, result.param_where = err, f"step {step + 1}, param {SHAPES[i]}"
        err, where, errors = compare_state(forced.state(), twin.state(), t_state_before)
        result.structure_errors += [f"step {step + 1}: {e}" for e in errors]
        if err > result.state_ulp:
            result.state_ulp, result.state_where = err, f"step {step + 1}, {where}"

        free.optimizer.step(free.closure)

    result.trajectory = max(relative_error(o, t) for o, t in zip(free.values(), twin.values()))
    t_state, r_state = twin.state(), free.state()
    for key in _COUNTERS:
        if r_state.get(key) != t_state.get(key):
            result.structure_errors.append(f"free-running: {key} {r_state.get(key)} != torch's {t_state.get(key)}")
    t_groups = twin.optimizer.state_dict()["param_groups"]
    r_groups = free.optimizer.state_dict()["param_groups"]
    for gi, (tg, rg) in enumerate(zip(t_groups, r_groups)):
        if list(tg) != list(rg):
            result.structure_errors.append(f"param_groups[{gi}] keys {list(rg)} != torch's {list(tg)}")
    result.seconds = time.perf_counter() - start
    return result
