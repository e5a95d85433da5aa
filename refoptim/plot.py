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

__all__ = ["EXAMPLES", "SCHEDULERS", "Trace", "draw", "parse_arguments", "trace"]

SCHEDULERS: tuple[str, ...] = tuple(n for n in lr_scheduler.__all__ if n != "LRScheduler")
"""The schedulers that can be drawn: every scheduler of :mod:`refoptim.lr_scheduler`."""

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
    return out


@dataclass
class Trace:
    """The values of a schedule, as drawn: ``lr[g][t]`` is group ``g``'s lr at step ``t``
    (``get_last_lr()`` before the ``t``-th ``optimizer.step()``); ``momentum`` likewise when
    the scheduler cycles it (``momentum`` of SGD, ``betas[0]`` of Adam), else ``None``."""

    scheduler: str
    arguments: dict[str, Any]
    lr: list[list[float]] = field(default_factory=list)
    momentum: list[list[float]] | None = None
    momentum_name: str = "momentum"

    @property
    def steps(self) -> int:
        """The number of steps recorded."""
        return len(self.lr[0]) if self.lr else 0

    @property
    def title(self) -> str:
        """The scheduler with its arguments, as a reader writes it."""
        inner = ", ".join(f"{k}={_show(v)}" for k, v in self.arguments.items())
        return f"{self.scheduler}({inner})"


def _show(value: Any) -> str:
    if callable(value) and getattr(value, "__name__", "") == "<lambda>":
        return "<lambda>"
    return repr(value)


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

    Args:
        scheduler: a name from :data:`SCHEDULERS`.
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
    if scheduler not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {scheduler!r}; known: {', '.join(SCHEDULERS)}")
    if optimizer not in ("SGD", "Adam"):
        raise ValueError(f"optimizer must be 'SGD' or 'Adam', not {optimizer!r}")
    if not lrs:
        raise ValueError("lrs must name at least one parameter group's lr")
    if steps is not None and steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    arguments = dict(arguments or {})
    groups = [{"params": [Parameter(np.zeros(1))], "lr": float(lr)} for lr in lrs]
    opt: Optimizer = SGD(groups, lr=float(lrs[0]), momentum=0.9) if optimizer == "SGD" else Adam(groups, lr=float(lrs[0]))
    sched = _construct(scheduler, opt, [], {k: _build(v, opt) for k, v in arguments.items()})
    momentum_key = "momentum" if optimizer == "SGD" else "betas"
    plateau = scheduler == "ReduceLROnPlateau"
    try:
        metric_fn = eval(f"lambda epoch: {metric}", {"__builtins__": {}, **_namespace()})
    except SyntaxError as exc:
        raise ValueError(f"metric: cannot read {metric!r} ({exc})") from None

    out = Trace(scheduler, arguments, lr=[[] for _ in groups], momentum_name="momentum" if optimizer == "SGD" else "beta1")
    momenta: list[list[float]] = [[] for _ in groups]
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
            sched.step(float(metric_fn(t)))
        else:
            sched.step()
    if any(len(set(m)) > 1 for m in momenta):
        out.momentum = momenta
    return out


def draw(values: Trace, path: str | None = None, *, width: float = 6.4, height: float = 4.0, dpi: int = 100) -> Any:
    """Draw a :class:`Trace` (lr above, momentum below when cycled) and save it as PNG.

    Args:
        values: what :func:`trace` recorded.
        path: where to write the PNG; ``None`` only builds the figure.
        width, height: the figure size in inches (the image is ``width*dpi`` by
            ``height*dpi`` pixels).
        dpi: dots per inch.

    Returns the matplotlib ``Figure``: one line per parameter group on each axes.

    Raises:
        ImportError: matplotlib is not installed, with the command that installs it.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(
            'drawing a schedule needs matplotlib, which is not installed; install it with:  pip install "refoptim[plot]"'
        ) from None
    rows = 2 if values.momentum is not None else 1
    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    x = list(range(values.steps))
    series = [("learning rate", values.lr)]
    if values.momentum is not None:
        series.append((values.momentum_name, values.momentum))
    for ax, (label, groups) in zip(axes, series):
        for g, ys in enumerate(groups):
            ax.plot(x, ys, label=f"group {g}" if len(groups) > 1 else None)
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        if len(groups) > 1:
            ax.legend(loc="best", fontsize="small")
    axes[-1].set_xlabel("step")
    chars = max(20, int(width * dpi / 7.5))  # about a medium-size character's width in pixels
    axes[0].set_title(textwrap.fill(values.title, chars), fontsize="medium")
    if path is not None:
        fig.savefig(path, format="png", dpi=dpi)
    return fig
