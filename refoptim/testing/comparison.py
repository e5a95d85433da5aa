"""Test another implementation of a torch.optim optimizer against refoptim, in one call
(:func:`refoptim.testing.compare`, also importable from here).

:func:`compare` runs a *candidate* (your framework's optimizer, wrapped in a few lines) over
the same configurations refoptim itself is checked on against torch (:mod:`refoptim.testing.matrix`),
or over the options, dtypes, shapes and steps you give, and measures it against refoptim
two ways at once:

- **teacher-forced**: before every step the candidate gets refoptim's parameter and state,
  takes one step on the same gradient, and its parameter and every mapped state entry are
  measured against refoptim's, in ULP of the operands' scale
  (:func:`~refoptim.testing.metrics.ulp_error`) and, for the parameter, in ULP of the
  update's own scale (:func:`~refoptim.testing.metrics.update_ulp_error`);
- **free-running**: the candidate runs on its own from the same start and the same gradient
  source (objectives with feedback evaluated at its own parameters), and its parameters are
  measured against refoptim's after every step (relative error).

Inputs come from :mod:`refoptim.testing.inputs` (``initial_values``, ``Gradients``), the same
seeded, torch-free source the torch runner uses, so the two cannot drift apart. refoptim is
the reference: it agrees with torch 2.13 within the same thresholds (``python -m refoptim
conformance``). Nothing here imports torch.

A candidate is a callable on NumPy arrays::

    def candidate(param, grad, state, **options):
        ...                       # state: {} at a parameter's first step; fill it in
        return new_param, new_state

``state`` is keyed by torch's state names (``exp_avg``, ``exp_avg_sq``, ``step`` ...) unless
``state_map`` renames them; ``options`` are torch's constructor keywords with torch's
defaults filled in (``lr``, ``betas``, ``eps``, ``weight_decay``, ``amsgrad``, ``maximize`` ...;
the flags that only pick a torch implementation, ``foreach``, ``fused``, ``capturable``,
``differentiable``, are left out); a tensor ``lr`` arrives as a 0-d float32 array. A
candidate that keeps its own state (optax's ``init``/``update``) is wrapped in
:class:`Stateful`. A candidate raises :class:`Unsupported` for a configuration it cannot
express; that configuration is reported as skipped with the reason.

The elementwise optimizers are covered: SGD, Adam, AdamW, Adagrad, Adadelta, Adamax, ASGD,
NAdam, RAdam, RMSprop, Rprop. LBFGS (a closure over all parameters), Adafactor, Muon and
sparse gradients have their own harnesses and are not.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import registry
from . import matrix
from .inputs import NUMPY_DTYPES, Gradients, initial_values, refoptim_class, refoptim_params, _groups
from .matrix import SHAPES, Config
from .metrics import relative_error, ulp_error, update_ulp_error
from .results import Result

__all__ = [
    "ELEMENTWISE",
    "Entry",
    "Report",
    "Stateful",
    "Unsupported",
    "assert_conforms",
    "compare",
    "counter",
    "scaled",
    "torch_defaults",
]

ELEMENTWISE = registry.names(elementwise=True)
"""The optimizers :func:`compare` covers: those whose rule acts on each element on its own
(the registry's ``elementwise`` entries, in its order)."""

class Unsupported(Exception):
    """Raised by a candidate (or its ``init``) for a configuration it cannot express, e.g.
    ``raise Unsupported("no amsgrad")``: the configuration is reported as skipped with the
    message, and does not fail the comparison."""


@dataclass(frozen=True)
class Entry:
    """How one of torch's state entries appears in the candidate's state.

    Args:
        name: the candidate's name for the entry.
        to_candidate: ``(torch_value, options) -> candidate_value``, applied when
            refoptim's state is handed to the candidate (teacher forcing); identity when None.
        from_candidate: ``(candidate_value, options) -> torch_value``, applied before the
            comparison; identity when None.
    """

    name: str
    to_candidate: Callable[[Any, dict[str, Any]], Any] | None = None
    from_candidate: Callable[[Any, dict[str, Any]], Any] | None = None


def _factor(factor: float | Callable[[dict[str, Any]], Any], options: dict[str, Any]) -> Any:
    value = factor(options) if callable(factor) else factor
    return np.asarray(value).item() if isinstance(value, np.ndarray) else value


def scaled(name: str, factor: float | Callable[[dict[str, Any]], Any]) -> Entry:
    """An entry the candidate keeps scaled: ``candidate = factor * torch``, with ``factor`` a
    number or ``callable(options) -> number`` (e.g. ``lambda o: -o["lr"]`` for a momentum
    trace that already holds the learning rate). The candidate's value is divided back
    before the comparison, so the figure includes the rounding of the scaling."""

    def to_candidate(value: Any, options: dict[str, Any]) -> Any:
        a = np.asarray(value)
        return (a * _factor(factor, options)).astype(a.dtype)

    def from_candidate(value: Any, options: dict[str, Any]) -> Any:
        a = np.asarray(value)
        return (a / _factor(factor, options)).astype(a.dtype)

    return Entry(name, to_candidate, from_candidate)


def counter(name: str, dtype: str = "int32", offset: int = 0) -> Entry:
    """A step counter the candidate keeps as an integer (optax's ``count``), ``offset`` ahead
    of torch's float32 ``step`` (the number of steps taken)."""

    def to_candidate(value: Any, options: dict[str, Any]) -> Any:
        return np.asarray(int(np.asarray(value)) + offset, dtype=dtype)

    def from_candidate(value: Any, options: dict[str, Any]) -> Any:
        return np.asarray(int(np.asarray(value)) - offset, dtype=np.float32)

    return Entry(name, to_candidate, from_candidate)


@dataclass(frozen=True)
class Stateful:
    """A candidate that keeps its own state (optax's ``init``/``update``, a Keras optimizer's
    variables).

    Args:
        init: ``init(param, **options) -> state``: the candidate's state for a parameter.
        update: ``update(param, grad, state, **options) -> (new_param, new_state)``: one step.
        read: ``read(state) -> dict``: the state's entries, by the candidate's names (arrays
            or anything ``np.asarray`` takes), for the comparison.
        write: ``write(entries, state) -> state``: ``state`` with the given entries (by the
            candidate's names, NumPy arrays) replaced: refoptim's values, for teacher forcing.
            ``state`` is a fresh ``init`` of the parameter.
    """

    init: Callable[..., Any]
    update: Callable[..., tuple[Any, Any]]
    read: Callable[[Any], Mapping[str, Any]]
    write: Callable[[dict[str, Any], Any], Any]


torch_defaults = matrix.constructor_defaults
"""torch's constructor keywords of an optimizer with their defaults, without the flags that
pick an implementation (:func:`refoptim.testing.matrix.constructor_defaults`): what a
candidate gets, completed by a configuration's options."""


# ----------------------------------------------------------------------------- report
class Report:
    """What :func:`compare` measured: one :class:`~refoptim.testing.results.Result` per
    configuration (its ``reference`` is ``"refoptim"``), and the verdict.

    ``str(report)`` is the table of ``python -m refoptim conformance``, with refoptim in
    torch's place.
    """

    def __init__(self, optimizer: str, candidate: str, results: list[Result]) -> None:
        self.optimizer = optimizer
        self.candidate = candidate
        self.results = results

    @property
    def passed(self) -> bool:
        """True when no configuration misses a threshold (skipped ones do not count), and
        at least one ran."""
        ran = [r for r in self.results if r.status != "skipped"]
        return bool(ran) and not any(r.fails_run for r in ran)

    @property
    def failures(self) -> list[Result]:
        """The configurations that miss a threshold."""
        return [r for r in self.results if r.fails_run]

    def worst(self) -> dict[str, dict[str, Any]]:
        """The worst figure of each kind (``param``, ``update``, ``state``, ``trajectory``)
        over the configurations that ran, each with its value, configuration (its label and
        dtype) and where (step and parameter)."""
        out: dict[str, dict[str, Any]] = {}
        ran = [r for r in self.results if r.status != "skipped"]
        for kind, value, where in (
            ("param", "param_ulp", "param_where"),
            ("update", "update_ulp", "update_where"),
            ("state", "state_ulp", "state_where"),
            ("trajectory", "trajectory", None),
        ):
            if not ran:
                continue
            r = max(ran, key=lambda r: getattr(r, value))
            out[kind] = {
                "value": getattr(r, value),
                "configuration": r.config.label,
                "dtype": r.config.dtype,
                "where": getattr(r, where) if where else f"after {r.config.steps} steps",
            }
        return out

    def __str__(self) -> str:
        title = f"{self.candidate} against refoptim ({self.optimizer}): {len(self.results)} configurations"
        try:
            from .table import format_table
        except ImportError:  # pragma: no cover - the shared formatter is part of the package
            format_table = None
        if format_table is not None:
            return format_table(self.results, title=title, reference="refoptim")
        return _plain_table(self.results, title)

    def __repr__(self) -> str:
        counts = {s: sum(r.status == s for r in self.results) for s in ("pass", "fail", "skipped")}
        return f"<Report {self.candidate} vs refoptim {self.optimizer}: {counts}>"


def _plain_table(results: list[Result], title: str) -> str:
    lines = [title]
    for r in results:
        lines.append(
            f"{r.config.dtype:<9} {r.config.label:<60} param {r.param_ulp:9.3g} update {r.update_ulp:9.3g} "
            f"state {r.state_ulp:9.3g} trajectory {r.trajectory:9.2e}  {r.status}"
            + (f": {r.reason or r.skipped}" if r.status != "pass" else "")
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- compare
def compare(
    candidate: Callable[..., tuple[Any, Any]] | Stateful,
    optimizer: str,
    *,
    options: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    dtypes: Sequence[str] = ("float32", "float64"),
    shapes: Sequence[Any] | None = None,
    steps: int | None = None,
    objectives: Sequence[str] = ("fixed",),
    configs: Sequence[Config] | None = None,
    state_map: Mapping[str, str | Entry | None] | None = None,
    name: str | None = None,
) -> Report:
    """Run ``candidate`` against refoptim's ``optimizer`` and measure every step.

    Args:
        candidate: ``candidate(param, grad, state, **options) -> (new_param, new_state)`` on
            NumPy arrays (see the module docstring), or a :class:`Stateful`.
        optimizer: the torch.optim class name (one of :data:`refoptim.testing.comparison.ELEMENTWISE`).
        options: one dict or a list of dicts of torch constructor keywords; each runs in
            every dtype, on ``shapes``, under every objective of ``objectives``. By
            default the configurations refoptim is checked on against torch
            (:func:`refoptim.testing.matrix.configs`: every option alone and crossed, groups,
            objectives with feedback).
        dtypes: ``"float32"``, ``"float64"``, ``"complex64"``.
        shapes: the parameters' shapes (default :data:`refoptim.testing.matrix.SHAPES`:
            0-d, (5,), (3, 4), size 0, and ``"view"``, a (3, 4) non-contiguous view). The
            third parameter gets no gradient on its first three steps and every seventh
            (:func:`refoptim.testing.inputs.has_grad`), so its state starts late.
        steps: steps per configuration (default the matrix's, 50; ASGD 120).
        objectives: gradient sources when ``options`` is given: ``"fixed"`` (a seeded
            sequence), ``"quadratic"``, ``"rosenbrock"`` (real dtypes only).
        configs: explicit :class:`~refoptim.testing.matrix.Config` objects instead.
        state_map: torch's state names to the candidate's: a name, an :class:`Entry`
            (:func:`scaled`, :func:`counter`), or None for an entry the candidate does not
            keep (not compared). Entries not listed keep torch's name.
        name: the candidate's name in the report (default its ``__name__``).

    Returns:
        A :class:`Report`.
    """
    if optimizer not in ELEMENTWISE:
        raise ValueError(
            f"compare covers the elementwise optimizers {', '.join(ELEMENTWISE)}; {optimizer!r} is not one "
            "(LBFGS, Adafactor, Muon and sparse gradients have their own harnesses)"
        )
    for dtype in dtypes:
        if dtype not in NUMPY_DTYPES:
            raise ValueError(f"dtypes: unknown dtype {dtype!r}; known: {', '.join(NUMPY_DTYPES)}")
    todo = _configurations(optimizer, options, tuple(dtypes), steps, tuple(objectives), configs)
    shapes = tuple(SHAPES if shapes is None else shapes)
    label = name or getattr(candidate, "__name__", None) or type(candidate).__name__
    adapter = _Adapter(candidate, dict(state_map or {}))
    results = [_run(adapter, cfg, shapes) for cfg in todo]
    return Report(optimizer, label, results)


def assert_conforms(candidate: Callable[..., tuple[Any, Any]] | Stateful, optimizer: str, **kwargs: Any) -> Report:
    """:func:`compare`, raising ``AssertionError`` with the report's table when a
    configuration misses a threshold (or none ran); returns the report otherwise. For a
    test suite::

        def test_my_adam():
            assert_conforms(my_adam, "Adam", dtypes=("float32",))
    """
    report = compare(candidate, optimizer, **kwargs)
    if not report.passed:
        failing = report.failures
        head = (
            f"{len(failing)} of {len(report.results)} configurations miss a threshold"
            if failing
            else "no configuration ran (all skipped)"
        )
        raise AssertionError(f"{head}\n{report}")
    return report


def _configurations(
    optimizer: str,
    options: Any,
    dtypes: tuple[str, ...],
    steps: int | None,
    objectives: tuple[str, ...],
    configs: Sequence[Config] | None,
) -> list[Config]:
    if configs is not None:
        return list(configs)
    if options is None:
        todo = matrix.configs([optimizer], dtypes, steps=50 if steps is None else steps)
        return [c for c in todo if matrix.extension_for(c) is None]
    option_sets = [options] if isinstance(options, Mapping) else list(options)
    n_steps = 50 if steps is None else steps
    out = []
    for dtype in dtypes:
        for opts in option_sets:
            for objective in objectives:
                if objective not in matrix.OBJECTIVES:
                    raise ValueError(f"objectives: unknown {objective!r}; known: {', '.join(matrix.OBJECTIVES)}")
                if objective == "rosenbrock" and dtype.startswith("complex"):
                    continue
                out.append(Config(optimizer, dict(opts), dtype, (), objective, n_steps))
    return out


class _Adapter:
    """The candidate behind one interface: ``init``/``step`` on torch-named NumPy state."""

    def __init__(self, candidate: Any, state_map: dict[str, str | Entry | None]) -> None:
        self.candidate = candidate
        self.stateful = isinstance(candidate, Stateful)
        self.map = {k: Entry(v) if isinstance(v, str) else v for k, v in state_map.items()}

    def _entry(self, key: str) -> Entry | None:
        return self.map.get(key, Entry(key))

    def to_candidate(self, torch_state: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for key, value in torch_state.items():
            entry = self._entry(key)
            if entry is None:
                continue
            value = copy.deepcopy(value)
            out[entry.name] = entry.to_candidate(value, options) if entry.to_candidate else value
        return out

    def from_candidate(self, cand_state: Mapping[str, Any], options: dict[str, Any], keys: Any) -> dict[str, Any]:
        """The candidate's values of torch's entries ``keys`` (missing ones left out)."""
        out = {}
        for key in keys:
            entry = self._entry(key)
            if entry is None or entry.name not in cand_state:
                continue
            value = cand_state[entry.name]
            value = entry.from_candidate(value, options) if entry.from_candidate else value
            out[key] = np.asarray(value)
        return out

    def state_of(self, state: Any) -> Mapping[str, Any]:
        """The candidate's state as a mapping of its names."""
        if self.stateful:
            return self.candidate.read(state)
        return state if state is not None else {}

    def start(self, param: np.ndarray, options: dict[str, Any], torch_state: dict[str, Any]) -> Any:
        """The candidate's state holding refoptim's ``torch_state`` (empty: a fresh one)."""
        if self.stateful:
            state = self.candidate.init(param.copy(), **options)
            if torch_state:
                state = self.candidate.write(self.to_candidate(torch_state, options), state)
            return state
        return self.to_candidate(torch_state, options)

    def step(self, param: np.ndarray, grad: np.ndarray, state: Any, options: dict[str, Any]) -> tuple[np.ndarray, Any]:
        fn = self.candidate.update if self.stateful else self.candidate
        new_param, new_state = fn(param, grad, state, **copy.deepcopy(options))
        return np.asarray(new_param), new_state


def _options_per_param(optimizer: Any, params: list[Any]) -> list[dict[str, Any]]:
    """Each parameter's complete options: its group's keys, without ``params`` and flags."""
    out = []
    for p in params:
        group = next(g for g in optimizer.param_groups if any(q is p for q in g["params"]))
        out.append({k: v for k, v in group.items() if k != "params" and k not in matrix.IMPLEMENTATION_FLAGS})
    return out


def _numpy_state(state: Mapping[str, Any]) -> dict[str, Any]:
    return {k: np.array(v, copy=True) if not isinstance(v, (int, float)) else v for k, v in state.items()}


def _where(step: int, shape: Any) -> str:
    return f"step {step + 1}, param {shape}"


def _run(adapter: _Adapter, cfg: Config, shapes: tuple[Any, ...]) -> Result:
    start = time.perf_counter()
    result = Result(cfg, reference="refoptim")
    values = initial_values(cfg, shapes)
    params = refoptim_params(shapes, values)
    reference = refoptim_class(cfg.optimizer)(_groups(cfg, params), **{"foreach": False, **cfg.options})
    options = _options_per_param(reference, params)
    gradients = Gradients(cfg, values)
    free = [v.copy() for v in values]
    free_state: list[Any] = [None] * len(values)
    trajectory = []
    try:
        for step in range(cfg.steps):
            before = [np.array(p.data, copy=True) for p in params]
            state_before = [_numpy_state(reference.state.get(p, {})) for p in params]
            grads = gradients(step, before)
            for p, g in zip(params, grads):
                p.grad = None if g is None else g.copy()
            reference.step()
            for i, (p, g) in enumerate(zip(params, grads)):
                if g is None:
                    continue
                where = _where(step, shapes[i])
                theirs = np.asarray(p.data)
                cand_state = adapter.start(before[i], options[i], state_before[i])
                ours, new_state = adapter.step(before[i].copy(), g.copy(), cand_state, options[i])
                if ours.shape != theirs.shape or ours.dtype != theirs.dtype:
                    result.structure_errors.append(
                        f"{where}: the candidate returned {ours.dtype}{list(ours.shape)} for a "
                        f"{theirs.dtype}{list(theirs.shape)} parameter"
                    )
                    break
                err = ulp_error(ours, theirs, before[i], g)
                if err > result.param_ulp:
                    result.param_ulp, result.param_where = err, where
                err = update_ulp_error(ours, theirs, before[i])
                if err > result.update_ulp:
                    result.update_ulp, result.update_where = err, where
                ref_state = reference.state[p]
                got = adapter.from_candidate(adapter.state_of(new_state), options[i], ref_state)
                for key, value in ref_state.items():
                    if adapter._entry(key) is None:
                        continue
                    if key not in got:
                        result.structure_errors.append(f"{where}: the candidate's state has no {key!r}")
                        continue
                    ref_value = np.asarray(value)
                    if got[key].shape != ref_value.shape or got[key].dtype != ref_value.dtype:
                        result.structure_errors.append(
                            f"{where}: state[{key!r}] is {got[key].dtype}{list(got[key].shape)}, "
                            f"refoptim's (torch's) {ref_value.dtype}{list(ref_value.shape)}"
                        )
                        continue
                    operands = [state_before[i][key]] if key in state_before[i] else []
                    err = ulp_error(got[key], ref_value, *operands, g)
                    if err > result.state_ulp:
                        result.state_ulp, result.state_where = err, f"{where}, {key}"
            if result.structure_errors:
                break
            # Free running: the candidate on its own parameters and gradients.
            f_grads = gradients(step, [v.copy() for v in free])
            for i, g in enumerate(f_grads):
                if g is None:
                    continue
                if free_state[i] is None:
                    free_state[i] = adapter.start(free[i], options[i], {})
                free[i], free_state[i] = adapter.step(free[i], g.copy(), free_state[i], options[i])
            trajectory.append(
                max((relative_error(f, np.asarray(p.data)) for f, p in zip(free, params)), default=0.0)
            )
    except Unsupported as exc:
        result.skipped = f"the candidate does not support it: {exc}"
    except Exception as exc:
        exc.add_note(f"while comparing {cfg.optimizer} {cfg.dtype} {cfg.label}")
        raise
    result.trajectory = trajectory[-1] if trajectory else 0.0
    result.trajectory_by_step = trajectory
    result.seconds = time.perf_counter() - start
    return result
