"""Draw a learning-rate schedule: the lr (and the cycled momentum) over the steps, one line
per parameter group, like the images in the PyTorch docs.

The values drawn are recorded from a real refoptim scheduler on a real optimizer, stepped
the way a training loop steps it (``optimizer.step()`` then ``scheduler.step()``), so a
plot shows exactly what :mod:`refoptim.lr_scheduler` computes. Used by
``python -m refoptim plot``; needs matplotlib (``pip install "refoptim[plot]"``) only to
draw, not to record::

    >>> from refoptim.plot import trace
    >>> t = trace("StepLR", {"step_size": 2, "gamma": 0.5}, lrs=[1.0], steps=5)
    >>> t.lr[0]
    [1.0, 1.0, 0.5, 0.5, 0.25]
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import lr_scheduler
from .adam import Adam
from .optimizer import Optimizer
from .parameter import Parameter
from .sgd import SGD

__all__ = [
    "EXAMPLES", "FUNCTIONS", "NOT_DRAWN", "PER_BATCH", "SCHEDULERS", "TestFunction", "Trace", "draw",
    "parse_arguments", "parse_spec", "plot_trajectories", "spec_options", "trace", "trajectory",
]

SCHEDULERS: tuple[str, ...] = tuple(n for n in lr_scheduler.__all__ if n != "LRScheduler")
"""Every scheduler of :mod:`refoptim.lr_scheduler`, by name (the schedulers that can be drawn)."""

EXAMPLES: dict[str, list[str]] = {
    "LambdaLR": ["lr_lambda=lambda epoch: 0.95 ** epoch"],
    "MultiplicativeLR": ["lr_lambda=lambda epoch: 0.97"],
    "StepLR": ["step_size=30", "gamma=0.1"],
    "MultiStepLR": ["milestones=[30, 80]", "gamma=0.1"],
    "ConstantLR": ["factor=0.5", "total_iters=40"],
    "LinearLR": ["start_factor=0.25", "total_iters=40"],
    "ExponentialLR": ["gamma=0.95"],
    "PolynomialLR": ["total_iters=80", "power=2.0"],
    "CosineAnnealingLR": ["T_max=50"],
    "ChainedScheduler": ["schedulers=[ConstantLR(factor=0.1, total_iters=10), ExponentialLR(gamma=0.97)]"],
    "SequentialLR": ["schedulers=[ConstantLR(factor=0.1, total_iters=20), ExponentialLR(gamma=0.9)]", "milestones=[20]"],
    "ReduceLROnPlateau": ["patience=5", "factor=0.5"],
    "CyclicLR": ["base_lr=0.01", "max_lr=0.1", "step_size_up=20", "mode='triangular2'"],
    "OneCycleLR": ["max_lr=0.1", "total_steps=100"],
    "CosineAnnealingWarmRestarts": ["T_0=10", "T_mult=2"],
}
"""One example of each scheduler, as ``python -m refoptim plot NAME --example`` draws it
(the arguments as they are written on the command line)."""

DEFAULT_METRIC = "max(1.0 - epoch / 40, 0.0) + 0.1"
"""The validation metric fed to ReduceLROnPlateau unless another is given: it improves
for 40 epochs, then stays flat, so the plateau reductions show."""


class _Deferred:
    """A scheduler to build once the optimizer exists (inside SequentialLR's or
    ChainedScheduler's ``schedulers=[...]``)."""

    def __init__(self, name: str, args: tuple, kwargs: dict) -> None:
        self.name, self.args, self.kwargs = name, args, kwargs

    def build(self, optimizer: Optimizer) -> Any:
        return _construct(self.name, optimizer, [_build(a, optimizer) for a in self.args],
                          {k: _build(v, optimizer) for k, v in self.kwargs.items()})

    def __repr__(self) -> str:
        inner = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.name}({', '.join(inner)})"


def _construct(name: str, optimizer: Optimizer, args: list, kwargs: dict) -> Any:
    """``name(optimizer, *args, **kwargs)``; ChainedScheduler takes its optimizer last,
    by keyword."""
    cls = getattr(lr_scheduler, name)
    if name == "ChainedScheduler":
        return cls(*args, **kwargs, optimizer=optimizer)
    return cls(optimizer, *args, **kwargs)


def _build(value: Any, optimizer: Optimizer) -> Any:
    if isinstance(value, _Deferred):
        return value.build(optimizer)
    if isinstance(value, list):
        return [_build(v, optimizer) for v in value]
    if isinstance(value, tuple):
        return tuple(_build(v, optimizer) for v in value)
    return value


def _namespace() -> dict[str, Any]:
    names: dict[str, Any] = {"math": math, "max": max, "min": min, "abs": abs, "float": float, "int": int}
    for name in SCHEDULERS:
        names[name] = lambda *a, _name=name, **kw: _Deferred(_name, a, kw)
    return names


def parse_arguments(items: list[str]) -> dict[str, Any]:
    """Scheduler arguments from ``key=value`` strings, each value a Python expression.

    Values may be numbers, strings, lists and tuples, lambdas (``lr_lambda=lambda e:
    0.95 ** e``, with ``math`` available) and other schedulers written as calls without
    the optimizer (``schedulers=[ConstantLR(factor=0.1, total_iters=20),
    ExponentialLR(gamma=0.9)]``).

    Raises:
        ValueError: an item without ``=``, or a value that is not a valid expression.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ValueError(f"scheduler argument {item!r} is not of the form name=value")
        try:
            out[key] = eval(text, {"__builtins__": {}, **_namespace()})
        except Exception as exc:  # noqa: BLE001 - any error in a user expression (SyntaxError, NameError, ...)
            raise ValueError(f"scheduler argument {key}: cannot read {text!r} ({exc})") from None
        if callable(out[key]) and getattr(out[key], "__name__", "") == "<lambda>":
            out[key]._refoptim_source = text.strip()  # shown in the title instead of <lambda>
    return out


PER_BATCH: frozenset[str] = frozenset({"CyclicLR", "OneCycleLR"})
"""The schedulers stepped once per batch (torch's docs say so); the others once per epoch."""


@dataclass
class Trace:
    """The values of a schedule, as drawn: ``lr[g][t]`` is group ``g``'s lr at step ``t``
    (``get_last_lr()`` before the ``t``-th ``optimizer.step()``); ``momentum`` likewise when
    the scheduler cycles it (``momentum`` of SGD, ``betas[0]`` of Adam), else ``None``.

    ``unit`` is what one step is (``"epoch"``, or ``"batch"`` for :data:`PER_BATCH`);
    ``marks`` the landmarks of the configuration (milestones, restarts, switch points,
    ...) as ``(label, steps)`` pairs, drawn as vertical lines; ``notes`` the sentences of
    :attr:`caption` that come from the configuration; ``optimizer`` the optimizer stepped,
    as written in the caption."""

    scheduler: str
    arguments: dict[str, Any]
    lr: list[list[float]] = field(default_factory=list)
    momentum: list[list[float]] | None = None
    momentum_name: str = "momentum"
    unit: str = "epoch"
    marks: list[tuple[str, list[float]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    optimizer: str = "SGD(lr=0.1, momentum=0.9)"

    @property
    def steps(self) -> int:
        """The number of steps recorded."""
        return len(self.lr[0]) if self.lr else 0

    @property
    def title(self) -> str:
        """The scheduler with its arguments, as a reader writes it."""
        inner = ", ".join(f"{k}={_show(v)}" for k, v in self.arguments.items())
        return f"{self.scheduler}({inner})"

    @property
    def caption(self) -> str:
        """The caption, generated from the configuration and the values recorded; the
        scheduler, the optimizer, the number of steps and what a step is, where the lr
        starts and ends, and what the configuration's landmarks are."""
        ranges = []
        for g, ys in enumerate(self.lr):
            who = f"group {g}: " if len(self.lr) > 1 else ""
            ranges.append(f"{who}lr {_num(ys[0])} at {self.unit} 0, {_num(ys[-1])} at {self.unit} {len(ys) - 1}"
                          f" (min {_num(min(ys))}, max {_num(max(ys))})")
        text = (f"{self.title} on {self.optimizer}, {self.steps} {_plural(self.unit)} (scheduler.step() once per "
                f"{self.unit}): {'; '.join(ranges)}.")
        return " ".join([text, *self.notes])


def _plural(unit: str) -> str:
    return unit + ("es" if unit == "batch" else "s")


def _show(value: Any) -> str:
    if callable(value) and getattr(value, "__name__", "") == "<lambda>":
        return getattr(value, "_refoptim_source", "<lambda>")
    return repr(value)


def _num(x: float) -> str:
    return f"{x:.4g}"


def _within(xs: Any, steps: int) -> list[float]:
    return [float(x) for x in xs if 0 < x < steps]


def _marks(sched: Any, steps: int, prefix: str = "") -> list[tuple[str, list[float]]]:
    """The landmarks of a scheduler's configuration, from the scheduler object itself."""
    kind = type(sched).__name__
    out: list[tuple[str, Any]] = []
    if kind == "StepLR":
        out.append((f"lr × gamma every step_size={sched.step_size}", range(sched.step_size, steps, sched.step_size)))
    elif kind == "MultiStepLR":
        ms = sorted(sched.milestones)
        out.append((f"milestones {ms}: lr × gamma", ms))
    elif kind in ("ConstantLR", "LinearLR", "PolynomialLR"):
        out.append((f"total_iters={sched.total_iters}", [sched.total_iters]))
    elif kind == "CosineAnnealingLR":
        out.append((f"multiples of T_max={sched.T_max}", range(sched.T_max, steps, sched.T_max)))
    elif kind == "CosineAnnealingWarmRestarts":
        restarts, period, at = [], sched.T_0, sched.T_0
        while at < steps:
            restarts.append(at)
            period *= sched.T_mult
            at += period
        out.append((f"restarts (T_0={sched.T_0}, T_mult={sched.T_mult})", restarts))
    elif kind == "CyclicLR":
        total = sched.total_size
        up = total * sched.step_ratio
        out.append(("lr peaks (max_lr)", [up + k * total for k in range(int(steps // total) + 1)]))
        out.append((f"cycle ends (every {_num(total)})", [k * total for k in range(1, int(steps // total) + 1)]))
    elif kind == "OneCycleLR":
        ends = [phase["end_step"] for phase in sched._schedule_phases[:-1]]
        out.append(("phase ends (pct_start·total_steps − 1)", ends))
    elif kind == "SequentialLR":
        out.append((f"switch to the next scheduler (milestones={list(sched._milestones)})", sched._milestones))
    elif kind == "ChainedScheduler":
        for inner in sched._schedulers:
            out += _marks(inner, steps, prefix=f"{type(inner).__name__}: ")
    elif kind == "SWALR":
        out.append((f"anneal_epochs={sched.anneal_epochs}: swa_lr reached", [sched.anneal_epochs]))
    return [(prefix + label, _within(xs, steps)) for label, xs in out if _within(xs, steps)]


def _notes(name: str, sched: Any, values: Trace, opt: Optimizer, metric: str, metric_values: list[float]) -> list[str]:
    """The caption's sentences about the configuration (see :attr:`Trace.caption`)."""
    group = opt.param_groups[0]
    unit = values.unit
    notes: list[str] = []
    if name == "OneCycleLR":
        initial, top, low = group["initial_lr"], group["max_lr"], group["min_lr"]
        peak = sched._schedule_phases[0]["end_step"]
        notes.append(
            f"The lr starts at max_lr/div_factor = {_num(top)}/{_num(top / initial)} = {_num(initial)}, not at the "
            f"optimizer's lr, rises to max_lr = {_num(top)} at {unit} {_num(peak)} and anneals to "
            f"initial_lr/final_div_factor = {_num(low)} at {unit} {sched.total_steps - 1}."
        )
    elif name == "CyclicLR":
        notes.append(
            f"The lr cycles between base_lr = {_num(sched.base_lrs[0])} (which replaces the optimizer's lr) and "
            f"max_lr = {_num(sched.max_lrs[0])}, mode {sched.mode!r}, one cycle every {_num(sched.total_size)} {unit}es."
        )
    elif name == "ReduceLROnPlateau":
        best = min(metric_values) if sched.mode == "min" else max(metric_values)
        flat = metric_values.index(best)
        drops = [t for t in range(1, values.steps) if values.lr[0][t] < values.lr[0][t - 1]]
        notes.append(
            f"step() is given the metric {metric} (mode {sched.mode!r}), which stops improving at epoch {flat}; "
            f"the lr is multiplied by factor = {_num(sched.factor)} once more than patience = {sched.patience} epochs "
            f"pass without improvement" + (f": at epochs {', '.join(map(str, drops))}." if drops else ".")
        )
    elif name == "SequentialLR":
        inner = ", ".join(type(s).__name__ for s in sched._schedulers)
        notes.append(f"The schedulers {inner} take turns at the milestones {list(sched._milestones)}.")
    elif name == "ChainedScheduler":
        inner = ", ".join(type(s).__name__ for s in sched._schedulers)
        notes.append(f"Every step steps each of {inner} in turn; their factors multiply.")
    elif name == "SWALR":
        notes.append(
            f"The lr anneals ({sched._anneal_strategy}) to swa_lr = "
            f"{_num(group['swa_lr'])} over anneal_epochs = {sched.anneal_epochs} epochs, then holds it."
        )
    if values.momentum is not None:
        m = values.momentum[0]
        notes.append(f"The {values.momentum_name} cycles between {_num(min(m))} and {_num(max(m))}, opposite to the lr.")
    if values.marks:
        notes.append("Vertical lines: " + "; ".join(
            f"{label} (at {unit} {', '.join(_num(x) for x in xs)})" for label, xs in values.marks) + ".")
    return notes


def trace(
    scheduler: str,
    arguments: dict[str, Any] | None = None,
    *,
    lrs: list[float] | tuple[float, ...] = (0.1,),
    steps: int | None = None,
    optimizer: str = "SGD",
    metric: str = DEFAULT_METRIC,
) -> Trace:
    """Record a schedule: build ``scheduler`` on an optimizer with one parameter group per
    entry of ``lrs``, and step both ``steps`` times.

    The :class:`Trace` also holds what a step is (``unit``), the configuration's landmarks
    (``marks``: milestones, restarts, switch points, the end of a warm-up, where
    ReduceLROnPlateau's metric stops improving) and a :attr:`~Trace.caption` generated
    from the configuration.

    Args:
        scheduler: a name from :data:`SCHEDULERS`, or ``"SWALR"``
            (:class:`refoptim.swa_utils.SWALR`).
        arguments: the scheduler's arguments other than the optimizer (see
            :func:`parse_arguments` for composed schedulers).
        lrs: the initial lr of each parameter group.
        steps: how many steps to record (default: OneCycleLR's ``total_steps``, else 100).
        optimizer: ``"SGD"`` (with ``momentum=0.9``) or ``"Adam"``; the one whose
            ``momentum`` or ``betas[0]`` a cycling scheduler drives.
        metric: for ReduceLROnPlateau, the validation metric as an expression in
            ``epoch`` (the step index).

    Raises:
        ValueError: an unknown scheduler or optimizer, no groups, or ``steps < 1``; and
            whatever the scheduler itself raises for its arguments (torch's errors).
    """
    if scheduler not in (*SCHEDULERS, "SWALR"):
        raise ValueError(f"unknown scheduler {scheduler!r}; known: {', '.join(SCHEDULERS)}, SWALR")
    if optimizer not in ("SGD", "Adam"):
        raise ValueError(f"optimizer must be 'SGD' or 'Adam', not {optimizer!r}")
    if not lrs:
        raise ValueError("lrs must name at least one parameter group's lr")
    if steps is not None and steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    arguments = dict(arguments or {})
    groups = [{"params": [Parameter(np.zeros(1))], "lr": float(lr)} for lr in lrs]
    opt: Optimizer = SGD(groups, lr=float(lrs[0]), momentum=0.9) if optimizer == "SGD" else Adam(groups, lr=float(lrs[0]))
    if scheduler == "SWALR":
        from .swa_utils import SWALR

        sched: Any = SWALR(opt, **arguments)
    else:
        sched = _construct(scheduler, opt, [], {k: _build(v, opt) for k, v in arguments.items()})
    momentum_key = "momentum" if optimizer == "SGD" else "betas"
    plateau = scheduler == "ReduceLROnPlateau"
    try:
        metric_fn = eval(f"lambda epoch: {metric}", {"__builtins__": {}, **_namespace()})
    except SyntaxError as exc:
        raise ValueError(f"metric: cannot read {metric!r} ({exc})") from None

    shown = ", ".join(_num(lr) for lr in lrs)
    out = Trace(
        scheduler, arguments, lr=[[] for _ in groups], momentum_name="momentum" if optimizer == "SGD" else "beta1",
        unit="batch" if scheduler in PER_BATCH else "epoch",
        optimizer=f"SGD(lr={shown}, momentum=0.9)" if optimizer == "SGD" else f"Adam(lr={shown})",
    )
    momenta: list[list[float]] = [[] for _ in groups]
    metric_values: list[float] = []
    if steps is None:
        steps = int(getattr(sched, "total_steps", 100))
    for t in range(steps):
        for g, group in enumerate(opt.param_groups):
            out.lr[g].append(float(group["lr"]))
            m = group[momentum_key]
            momenta[g].append(float(m[0] if momentum_key == "betas" else m))
        if t == steps - 1:
            break
        opt.step()  # no gradients: nothing changes, but the scheduler sees a stepped optimizer
        if plateau:
            metric_values.append(float(metric_fn(t)))
            sched.step(metric_values[-1])
        else:
            sched.step()
    if any(len(set(m)) > 1 for m in momenta):
        out.momentum = momenta
    out.marks = _marks(sched, steps)
    if plateau and metric_values:
        best = min(metric_values) if sched.mode == "min" else max(metric_values)
        flat = metric_values.index(best)
        if 0 < flat < len(metric_values) - 1:
            out.marks.append((f"metric stops improving (epoch {flat})", [float(flat)]))
        drops = [float(t) for t in range(1, steps) if out.lr[0][t] < out.lr[0][t - 1]]
        if drops:
            out.marks.append((f"lr × factor={_num(sched.factor)} (patience={sched.patience})", drops))
    out.notes = _notes(scheduler, sched, out, opt, metric, metric_values)
    return out


_MARK_STYLES = [("0.35", (0, (4, 3))), ("tab:red", (0, (1, 2))), ("tab:green", (0, (6, 2, 1, 2))), ("tab:purple", (0, (2, 2)))]


def _figure(width: float, height: float, dpi: int) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(
            'drawing needs matplotlib, which is not installed; install it with:  pip install "refoptim[plot]"'
        ) from None
    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def draw(
    values: Trace,
    path: str | None = None,
    *,
    width: float = 6.4,
    height: float = 4.0,
    dpi: int = 100,
    log: bool = False,
) -> Any:
    """Draw a :class:`Trace` (lr above, momentum below when cycled) and save it as PNG.

    Every value holds for a whole step, so the lines are drawn as steps
    (``drawstyle="steps-post"``): a jump between two steps is a vertical edge, never a
    slope. The configuration's landmarks (``Trace.marks``) are vertical lines named
    in the legend; the x-axis says what a step is (``Trace.unit``); every y-axis
    starts at 0 unless ``log``.

    Args:
        values: what :func:`trace` recorded.
        path: where to write the PNG; ``None`` only builds the figure.
        width, height: the figure size in inches (the image is ``width*dpi`` by
            ``height*dpi`` pixels).
        dpi: dots per inch.
        log: draw the lr on a log scale (for schedules whose tail matters, such as
            ExponentialLR's); a zero lr is then left out.

    Returns the matplotlib ``Figure``: one line per parameter group on each axes.

    Raises:
        ImportError: matplotlib is not installed, with the command that installs it.
    """
    rows = 2 if values.momentum is not None else 1
    fig = _figure(width, height, dpi)
    from matplotlib.ticker import MaxNLocator
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    x = list(range(values.steps))
    series = [("learning rate", values.lr)]
    if values.momentum is not None:
        series.append((values.momentum_name, values.momentum))
    for row, (ax, (label, groups)) in enumerate(zip(axes, series)):
        for g, ys in enumerate(groups):
            ax.plot(x, ys, drawstyle="steps-post", label=f"group {g}" if len(groups) > 1 else None)
        for k, (mark, xs) in enumerate(values.marks):
            color, style = _MARK_STYLES[k % len(_MARK_STYLES)]
            ax.vlines(xs, 0, 1, transform=ax.get_xaxis_transform(), colors=color, linestyles=[style],
                      linewidth=1.0, label=mark if row == 0 else None)
        if log and row == 0:
            ax.set_yscale("log")
            label += " (log scale)"
        else:
            ax.set_ylim(bottom=0)
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize="x-small")
    axes[-1].set_xlabel(f"{values.unit} (scheduler.step() once per {values.unit})")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[-1].set_xlim(0, max(values.steps - 1, 1))
    chars = max(20, int(width * dpi / 7.5))  # about a medium-size character's width in pixels
    axes[0].set_title(textwrap.fill(values.title, chars), fontsize="medium")
    if path is not None:
        fig.savefig(path, format="png", dpi=dpi)
    return fig


# ============================================================================ trajectories
# Each optimizer's path on a 2-D test function, every point from refoptim's own step.


@dataclass(frozen=True)
class TestFunction:
    """A 2-D test function for :func:`trajectory`: its value and analytic gradient (NumPy),
    where paths start, its minima, the window drawn and each optimizer's default lr there.

    ``lr`` maps an optimizer's name to its default lr on this function, chosen so that a
    path of ``steps`` steps is readable (it moves, and stays in the window); ``extra``
    maps a name to other default options. A spec's own options override both."""

    name: str
    title: str
    formula: str
    value: Any
    gradient: Any
    start: tuple[float, float]
    minima: tuple[tuple[float, float], ...]
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    levels: Any
    lr: dict[str, float]
    steps: int = 200
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)

    __test__ = False  # not a pytest test class


def _rosenbrock(p: Any) -> float:
    x, y = p
    return float((1 - x) ** 2 + 100 * (y - x * x) ** 2)


def _rosenbrock_grad(p: Any) -> Any:
    x, y = p
    return np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])


_QUADRATIC_K = 25.0


def _quadratic(p: Any) -> float:
    x, y = p
    return float(0.5 * (x * x + _QUADRATIC_K * y * y))


def _quadratic_grad(p: Any) -> Any:
    x, y = p
    return np.array([x, _QUADRATIC_K * y])


def _saddle(p: Any) -> float:
    x, y = p
    return float(x * x - y * y + 0.5 * y ** 4)


def _saddle_grad(p: Any) -> Any:
    x, y = p
    return np.array([2 * x, -2 * y + 2 * y ** 3])


_LBFGS = {"max_iter": 1, "max_eval": 25, "line_search_fn": "strong_wolfe"}

FUNCTIONS: dict[str, TestFunction] = {
    "rosenbrock": TestFunction(
        "rosenbrock", "Rosenbrock", "f(x, y) = (1 − x)² + 100 (y − x²)²",
        _rosenbrock, _rosenbrock_grad, start=(-1.5, 2.0), minima=((1.0, 1.0),),
        xlim=(-2.0, 2.0), ylim=(-1.0, 3.0), levels=("log", -1.0, 3.5, 16),
        lr={"SGD": 1e-3, "ASGD": 1e-3, "LBFGS": 1.0, "Adagrad": 1.0, "Adadelta": 30.0, "Rprop": 1e-2,
            "RMSprop": 1e-2, "RAdam": 1e-2, "Adafactor": 0.3, "Muon": 0.05, "*": 0.1},
        steps=300, extra={"LBFGS": _LBFGS},
    ),
    "quadratic": TestFunction(
        "quadratic", "Ill-conditioned quadratic", f"f(x, y) = (x² + {_QUADRATIC_K:g} y²) / 2",
        _quadratic, _quadratic_grad, start=(-4.0, 1.5), minima=((0.0, 0.0),),
        xlim=(-5.0, 5.0), ylim=(-2.5, 2.5), levels=("log", -2.0, 1.8, 12),
        lr={"SGD": 0.07, "ASGD": 0.07, "LBFGS": 1.0, "Adagrad": 1.0, "Adadelta": 10.0, "Rprop": 1e-2,
            "RMSprop": 3e-2, "Adafactor": 0.1, "Muon": 0.1, "*": 0.1},
        steps=100, extra={"LBFGS": _LBFGS},
    ),
    "saddle": TestFunction(
        "saddle", "Saddle", "f(x, y) = x² − y² + y⁴/2",
        _saddle, _saddle_grad, start=(-1.8, 0.02), minima=((0.0, -1.0), (0.0, 1.0)),
        xlim=(-2.0, 2.0), ylim=(-1.6, 1.6), levels=("linear", -0.45, 4.5, 16),
        lr={"SGD": 0.05, "ASGD": 0.05, "LBFGS": 1.0, "Adagrad": 0.5, "Adadelta": 10.0, "Rprop": 1e-2,
            "RMSprop": 1e-2, "Adafactor": 0.05, "Muon": 0.05, "*": 0.05},
        steps=100, extra={"LBFGS": _LBFGS},
    ),
}
"""The test functions of :func:`trajectory`, by the name ``--on`` takes.

``rosenbrock``
    :math:`(1-x)^2 + 100\\,(y-x^2)^2`: a curved, narrow valley; minimum at (1, 1).
``quadratic``
    :math:`(x^2 + 25\\,y^2)/2`: an ill-conditioned bowl (condition number 25); minimum at
    the origin.
``saddle``
    :math:`x^2 - y^2 + y^4/2`: a saddle at the origin (the :math:`x^2 - y^2` of the
    textbooks) made bounded below by :math:`y^4/2`, with minima at (0, ±1); paths start
    just off the saddle's stable line (y = 0.02) and must escape it."""

NOT_DRAWN: dict[str, str] = {
    "SparseAdam": "SparseAdam needs sparse gradients (refoptim.SparseGrad), and a test function's gradient "
                  "is dense; draw Adam instead",
}
"""Optimizers of :data:`refoptim.registry.OPTIMIZERS` that :func:`trajectory` refuses, and why."""


def _optimizer_names() -> list[str]:
    from . import registry

    return registry.names()


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """An optimizer spec: ``Name`` or ``Name:key=value,key=value``, each value a Python
    literal (``SGD:momentum=0.9,nesterov=True``, ``Adam:betas=(0.8,0.99)``).

    >>> from refoptim.plot import parse_spec
    >>> parse_spec("SGD:momentum=0.9,nesterov=True")
    ('SGD', {'momentum': 0.9, 'nesterov': True})

    Raises:
        ValueError: naming the spec: an optimizer not in :data:`refoptim.registry.OPTIMIZERS`,
            one in :data:`NOT_DRAWN`, options that are not ``key=value`` pairs, or a value
            that is not a literal.
    """
    import ast

    name, sep, rest = spec.partition(":")
    name = name.strip()
    known = _optimizer_names()
    if name not in known:
        raise ValueError(f"optimizer spec {spec!r}: unknown optimizer {name!r}; known: {', '.join(known)}")
    if name in NOT_DRAWN:
        raise ValueError(f"optimizer spec {spec!r}: {NOT_DRAWN[name]}")
    options: dict[str, Any] = {}
    if not sep:
        return name, options
    try:
        call = ast.parse(f"f({rest})", mode="eval").body
    except SyntaxError:
        call = None
    if (not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name) or call.func.id != "f"
            or call.args or not call.keywords or any(k.arg is None for k in call.keywords)):
        raise ValueError(f"optimizer spec {spec!r}: options must be key=value pairs separated by commas, "
                         f"as in SGD:momentum=0.9,nesterov=True")
    for keyword in call.keywords:
        try:
            options[str(keyword.arg)] = ast.literal_eval(keyword.value)
        except ValueError:
            raise ValueError(f"optimizer spec {spec!r}: the value of {keyword.arg} is not a Python literal "
                             f"({ast.unparse(keyword.value)})") from None
    return name, options


def _function(on: str) -> TestFunction:
    if on not in FUNCTIONS:
        raise ValueError(f"unknown test function {on!r}; known: {', '.join(FUNCTIONS)}")
    return FUNCTIONS[on]


def spec_options(spec: str, on: str = "rosenbrock") -> tuple[str, dict[str, Any], dict[str, Any]]:
    """``(name, options, defaulted)``: the options :func:`trajectory` builds the optimizer
    with on ``on`` (the spec's, over the function's defaults), and which of them came from
    the defaults."""
    fn = _function(on)
    name, given = parse_spec(spec)
    defaults = {"lr": fn.lr.get(name, fn.lr["*"]), **fn.extra.get(name, {})}
    defaulted = {k: v for k, v in defaults.items() if k not in given}
    return name, {**defaulted, **given}, defaulted


def trajectory(spec: str, on: str = "rosenbrock", steps: int | None = None) -> Any:
    """The path of an optimizer on a 2-D test function, computed by refoptim itself.

    The point is a float64 :class:`refoptim.Parameter` of shape ``(2,)`` (``(1, 2)`` for
    Muon, which acts on matrices only: the update of a 1×2 matrix orthogonalised by
    Newton–Schulz is, up to the iteration's inexactness, the unit vector along Muon's
    momentum, so Muon here is normalised gradient descent with Nesterov momentum). Every
    step calls the optimizer's ``step(closure)``; the closure sets ``.grad`` to the
    function's analytic gradient (NumPy) and returns its value, so LBFGS, which needs a
    closure, works like the others (its default options here are ``max_iter=1`` and
    ``max_eval=25`` and ``line_search_fn="strong_wolfe"``: one point per L-BFGS iteration;
    with ``max_iter=1`` torch's own default ``max_eval``, ``max_iter * 5 // 4 = 1``, leaves
    the strong-Wolfe search no evaluation and the point never moves, in torch as here).

    Args:
        spec: ``Name`` or ``Name:key=value,...`` (:func:`parse_spec`); options not given
            take the function's defaults (``TestFunction.lr``, ``TestFunction.extra``).
        on: a name of :data:`FUNCTIONS`.
        steps: optimizer steps (default: the function's ``steps``).

    Returns an array of shape ``(steps + 1, 2)``: the start, then the point after each step.

    >>> from refoptim.plot import trajectory
    >>> path = trajectory("SGD:lr=0.1", on="quadratic", steps=1)
    >>> path.tolist()   # start (-4, 1.5), gradient (-4, 37.5): one step of -0.1 × gradient
    [[-4.0, 1.5], [-3.6, -2.25]]

    Raises:
        ValueError: a bad spec or function (naming it), ``steps < 0``, or options the
            optimizer rejects.
    """
    fn = _function(on)
    steps = fn.steps if steps is None else steps
    if steps < 0:
        raise ValueError(f"steps must be at least 0, got {steps}")
    name, options, _ = spec_options(spec, on)
    from . import registry

    start = np.array(fn.start, dtype=np.float64)
    p = Parameter(start.reshape(1, 2).copy() if name == "Muon" else start.copy())
    try:
        opt = registry.get(name).cls([p], **options)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"optimizer spec {spec!r}: {exc}") from None

    def closure() -> float:
        point = np.asarray(p.data).reshape(-1)
        p.grad = np.asarray(fn.gradient(point), dtype=np.float64).reshape(np.shape(p.data))
        return fn.value(point)

    points = [start]
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(steps):
            opt.step(closure)
            points.append(np.array(p.data, dtype=np.float64).reshape(-1))
    return np.array(points)


def _label(spec: str, on: str, path: Any) -> str:
    _, _, defaulted = spec_options(spec, on)
    label = spec + (" [" + ", ".join(f"{k}={v!r}" for k, v in defaulted.items()) + "]" if defaulted else "")
    fn = FUNCTIONS[on]
    if not np.all(np.isfinite(path)):
        label += " (diverges)"
    elif (path[:, 0].min() < fn.xlim[0] or path[:, 0].max() > fn.xlim[1]
          or path[:, 1].min() < fn.ylim[0] or path[:, 1].max() > fn.ylim[1]):
        label += " (leaves the window)"
    return label


def plot_trajectories(
    specs: list[str],
    on: str = "rosenbrock",
    steps: int | None = None,
    ax: Any = None,
    *,
    path: str | None = None,
    title: str | None = None,
    width: float = 6.4,
    height: float = 5.0,
    dpi: int = 100,
) -> Any:
    """Draw each optimizer's path (:func:`trajectory`) on a 2-D test function.

    Contour lines of the function, the start (a black dot), the minima (stars), one path
    per spec with a dot per step, a legend naming each spec with the options it took
    from the function's defaults, the axes labelled ``x`` and ``y``, and a title with the
    function and the number of steps.

    Args:
        specs: optimizer specs (:func:`parse_spec`), one path each.
        on: a name of :data:`FUNCTIONS`.
        steps: optimizer steps (default: the function's).
        ax: a matplotlib ``Axes`` to draw into; ``None``: a new figure.
        path: where to write the PNG (only with a new figure); ``None`` writes nothing.
        title: the title (default: the function, its formula and the steps).
        width, height, dpi: the new figure's size in inches and its resolution.

    Returns the ``Axes`` drawn into.

    Raises:
        ValueError: a bad spec or function, before anything is drawn.
        ImportError: matplotlib is not installed, with the command that installs it.
    """
    if not specs:
        raise ValueError("name at least one optimizer spec")
    fn = _function(on)
    steps = fn.steps if steps is None else steps
    paths = [trajectory(spec, on, steps) for spec in specs]
    if ax is None:
        fig = _figure(width, height, dpi)
        ax = fig.subplots()
    gx = np.linspace(*fn.xlim, 300)
    gy = np.linspace(*fn.ylim, 300)
    X, Y = np.meshgrid(gx, gy)
    Z = np.vectorize(lambda a, b: fn.value((a, b)))(X, Y)
    scale, lo, hi, count = fn.levels
    levels = np.logspace(lo, hi, count) if scale == "log" else np.linspace(lo, hi, count)
    ax.contour(X, Y, Z, levels=levels, colors="0.7", linewidths=0.7)
    for spec, points in zip(specs, paths):
        ax.plot(points[:, 0], points[:, 1], marker=".", markersize=3, linewidth=1.1, label=_label(spec, on, points))
    ax.plot(*fn.start, "ko", markersize=6, label=f"start ({fn.start[0]:g}, {fn.start[1]:g})")
    mins = np.array(fn.minima)
    ax.plot(mins[:, 0], mins[:, 1], "k*", markersize=10, linestyle="none",
            label="minim" + ("um " if len(mins) == 1 else "a ") + ", ".join(f"({a:g}, {b:g})" for a, b in fn.minima))
    ax.set_xlim(*fn.xlim)
    ax.set_ylim(*fn.ylim)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(title if title is not None else f"{fn.title}: {fn.formula}, {steps} steps", fontsize="medium")
    ax.legend(loc="best", fontsize="x-small", framealpha=0.85)
    if path is not None:
        ax.figure.savefig(path, format="png", dpi=dpi)
    return ax
