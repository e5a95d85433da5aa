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
  :func:`~refoptim.testing.metrics.step_relative_error`; which scalars are arrays and
  which are Python numbers, and the returned loss must be equal (``structure_errors``
  otherwise), and so must ``func_evals``, ``n_iter`` and the list lengths
  (``counter_errors`` otherwise);
- **free-running**: refoptim alone on its own trajectory; after all steps the relative
  error of the parameters, and ``func_evals``/``n_iter`` equal to torch's.

L-BFGS amplifies the summation order of its dot products, and torch's (MKL's) order
depends on the CPU. So where refoptim misses a threshold, and always for the ill-conditioned
configurations of ``thresholds.SENSITIVITY``, **torch's twin** runs too
(:func:`measure_twin`): torch again, with only its dot products (and the first step's
``abs().sum()``) summed in other orders (:func:`torch_reduction_order`), measured the same
way. A miss the twin shows as well is torch's own spread on this machine
(``Result.verdict``).

Importing this module imports torch.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from .inputs import LBFGS_OBJECTIVES as OBJECTIVES
from .inputs import from_real_flat, real_flat
from .inputs import lbfgs_configs as configs
from .matrix import SHAPES, Config
from .metrics import relative_error, step_relative_error
from .runner import Result, Spread
from .torch_adapter import (
    NUMPY_DTYPES,
    TORCH_DTYPES,
    from_torch,
    initial_values,
    to_torch,
)

__all__ = ["OBJECTIVES", "TWIN_ORDERS", "configs", "measure_twin", "objective", "run_config", "torch_reduction_order"]

# The configurations (shapes, option lists, ``configs``) live in the torch-free module
# refoptim.testing.inputs, imported above under their old names.


# ----------------------------------------------------------------------- objectives
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
        n = sum(real_flat(v).size for v in values)
        samples = 64
        X = np.asarray(rng.standard_normal((samples, n)) / np.sqrt(n), dtype=real)
        w_true = rng.standard_normal(n) * 3
        y = np.where(X.astype(np.float64) @ w_true + 0.5 * rng.standard_normal(samples) > 0, 1.0, -1.0).astype(real)
        lam = real(1e-2)

        def logistic(params: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
            w = np.concatenate([real_flat(x) for x in params])
            m = y * (X @ w)
            loss = np.mean(np.logaddexp(real(0), -m)) + lam / 2 * np.sum(w * w)
            coef = -y * np.exp(-np.logaddexp(real(0), m)) / real(samples)  # -y * sigmoid(-m) / N
            gw = X.T @ coef + lam * w
            grads, offset = [], 0
            for x in params:
                k = real_flat(x).size
                grads.append(from_real_flat(gw[offset : offset + k], x))
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


def _is_counter_error(error: str) -> bool:
    """True for a difference that follows from an iteration count (``n_iter``,
    ``func_evals``, the history lengths and which ``al`` entries are set), not from the
    state layout."""
    body = error.split(": ", 1)[-1]
    if body.startswith(_COUNTERS):
        return True
    return body.startswith(_LISTS) and (" entries, torch's " in body or "None" in body)


def run_config(cfg: Config) -> Result:
    """Run one LBFGS configuration against torch (see the module docstring).

    When refoptim misses a threshold, or the configuration is one of
    ``thresholds.SENSITIVITY``, torch's twin (:func:`measure_twin`) runs too, and the
    result judges the miss against it (:attr:`Result.verdict`)."""
    start = time.perf_counter()
    result = Result(cfg)
    values = initial_values(cfg)
    f = objective(cfg)
    theirs = build_torch(cfg, values, f)
    forced = build_refoptim(cfg, values, f)
    free = build_refoptim(cfg, values, f)

    for step in range(cfg.steps):
        t_before = theirs.values()
        t_state_before = theirs.state()
        _load_forced(forced, t_before, t_state_before)

        t_loss = theirs.optimizer.step(theirs.closure)
        r_loss = forced.optimizer.step(forced.closure)
        if float(t_loss) != float(r_loss):
            result.structure_errors.append(f"step {step + 1}: returned loss {float(r_loss)!r} != torch's {float(t_loss)!r}")

        for i, (o, t, b) in enumerate(zip(forced.values(), theirs.values(), t_before)):
            err = step_relative_error(o, t, b)
            if err > result.param_ulp:
                result.param_ulp, result.param_where = err, f"step {step + 1}, param {SHAPES[i]}"
        err, where, errors = compare_state(forced.state(), theirs.state(), t_state_before)
        for e in errors:
            (result.counter_errors if _is_counter_error(e) else result.structure_errors).append(f"step {step + 1}: {e}")
        if err > result.state_ulp:
            result.state_ulp, result.state_where = err, f"step {step + 1}, {where}"

        free.optimizer.step(free.closure)

    result.trajectory = max(relative_error(o, t) for o, t in zip(free.values(), theirs.values()))
    result.counter_errors += _free_counter_errors(free, theirs)
    t_groups = theirs.optimizer.state_dict()["param_groups"]
    r_groups = free.optimizer.state_dict()["param_groups"]
    for gi, (tg, rg) in enumerate(zip(t_groups, r_groups)):
        if list(tg) != list(rg):
            result.structure_errors.append(f"param_groups[{gi}] keys {list(rg)} != torch's {list(tg)}")
    if not result.passed or not result.gating:
        result.twin = measure_twin(cfg)
    result.seconds = time.perf_counter() - start
    return result


def _free_counter_errors(free: _Side, theirs: _Side) -> list[str]:
    """The free-running ``func_evals`` and ``n_iter`` that differ from torch's."""
    t_state, o_state = theirs.state(), free.state()
    return [
        f"free-running: {key} {o_state.get(key)} != torch's {t_state.get(key)}"
        for key in _COUNTERS
        if o_state.get(key) != t_state.get(key)
    ]


# ----------------------------------------------------------------------- torch's twin
TWIN_ORDERS = ("reversed", "accurate")
"""The summation orders torch's twin runs (:func:`torch_reduction_order`); its figures are
the worst over them."""


@contextlib.contextmanager
def torch_reduction_order(order: str) -> Iterator[None]:
    """Run torch's LBFGS with its reductions summed in another, equally valid order.

    torch's ``LBFGS.step`` reduces with ``Tensor.dot`` (``y.dot(s)``, ``y.dot(y)``,
    ``old_stps[i].dot(q)``, ``g.dot(d)``, ...: MKL's dot, whose blocking MKL picks per
    CPU) and once with ``flat_grad.abs().sum()`` (the first step length). Inside this
    context both are replaced on ``torch.Tensor``:

    - ``"reversed"``: the same kernels on the vectors reversed (the partial sums pair
      other elements);
    - ``"accurate"``: the products summed in float64 and rounded to the dtype (float32),
      or summed exactly with ``math.fsum`` and rounded (float64) -- what a dot product
      with a wider accumulator gives.

    Every other call is torch's own. Not thread-safe (it patches the class).
    """
    if order not in TWIN_ORDERS:
        raise ValueError(f"unknown order {order!r}; expected one of {TWIN_ORDERS}")
    cls = torch.Tensor
    saved = {name: cls.__dict__.get(name) for name in ("dot", "sum")}
    dot, sum_ = cls.dot, cls.sum

    def other_sum_1d(x: torch.Tensor) -> torch.Tensor:
        if order == "reversed":
            return sum_(x.flip(0))
        if x.dtype == torch.float64:
            return torch.tensor(math.fsum(x.tolist()), dtype=x.dtype)
        return sum_(x.to(torch.float64)).to(x.dtype)

    def other_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if order == "reversed":
            return dot(a.flip(0), b.flip(0))
        if a.dtype == torch.float64:
            return other_sum_1d(a * b)
        return dot(a.to(torch.float64), b.to(torch.float64)).to(a.dtype)

    def other_sum(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if args or kwargs or x.dim() != 1 or x.is_complex():
            return sum_(x, *args, **kwargs)
        return other_sum_1d(x)

    cls.dot, cls.sum = other_dot, other_sum
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                delattr(cls, name)
            else:
                setattr(cls, name, value)


def _load_torch(side: _Side, values: list[np.ndarray], state: dict[str, Any]) -> None:
    """Teacher forcing of torch's twin: another torch side's parameters and state."""
    with torch.no_grad():
        for p, v in zip(side.params, values):
            p.copy_(to_torch(v))
    side.optimizer.state.clear()
    if state:
        side.optimizer.state[side.params[0]] = state


def measure_twin(cfg: Config, orders: tuple[str, ...] = TWIN_ORDERS) -> Spread:
    """torch against itself with only its summation order changed
    (:func:`torch_reduction_order`), measured as :func:`run_config` measures refoptim:
    the teacher-forced one-step relative error of the parameters and the state, the
    iteration counters of every step, and free-running the trajectory and the counters.
    The figures are the worst over ``orders``."""
    start = time.perf_counter()
    spread = Spread(orders=", ".join(orders))
    values = initial_values(cfg)
    f = objective(cfg)
    theirs = build_torch(cfg, values, f)
    forced = {o: build_torch(cfg, values, f) for o in orders}
    free = {o: build_torch(cfg, values, f) for o in orders}
    for step in range(cfg.steps):
        t_before = theirs.values()
        t_state_before = theirs.state()
        raw_state = theirs.optimizer.state.get(theirs.params[0], {})
        copies = {o: copy.deepcopy(dict(raw_state)) for o in orders}
        theirs.optimizer.step(theirs.closure)
        t_after, t_state = theirs.values(), theirs.state()
        for o in orders:
            side = forced[o]
            _load_torch(side, t_before, copies[o])
            with torch_reduction_order(o):
                side.optimizer.step(side.closure)
                free[o].optimizer.step(free[o].closure)
            for a, t, b in zip(side.values(), t_after, t_before):
                spread.param_rel = max(spread.param_rel, step_relative_error(a, t, b))
            err, _, errors = compare_state(side.state(), t_state, t_state_before)
            spread.state_rel = max(spread.state_rel, err)
            spread.counter_errors += [f"{o}, step {step + 1}: {e}" for e in errors if _is_counter_error(e)]
    for o in orders:
        spread.trajectory = max(spread.trajectory, *(relative_error(a, t) for a, t in zip(free[o].values(), theirs.values())))
        spread.counter_errors += [f"{o}, {e}" for e in _free_counter_errors(free[o], theirs)]
    spread.seconds = time.perf_counter() - start
    return spread
