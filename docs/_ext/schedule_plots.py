"""Sphinx extension: learning-rate schedule plots drawn at build time by refoptim itself.

Every plot is recorded from a real scheduler by :func:`refoptim.plot.trace` with the
arguments of :data:`refoptim.plot.EXAMPLES` and drawn by :func:`refoptim.plot.draw`: the
code, and the image, of ``python -m refoptim plot NAME --example -o NAME.png``. SWALR, which
lives in :mod:`refoptim.swa_utils` and not in the CLI, is recorded the same way here and
drawn by the same :func:`~refoptim.plot.draw`.

At ``builder-inited`` the PNGs are written to ``docs/_generated/plots/`` (git-ignored).
Two directives place them:

``.. schedule-plot:: NAME``
    the figure of one scheduler, with a caption generated from its configuration
    (:attr:`refoptim.plot.Trace.caption`) and the command that draws it; for the schedulers
    of :data:`LOG_SCALE` a second figure with the lr on a log scale;
``.. schedule-gallery::``
    every scheduler's figure, grouped by kind (:data:`KINDS`), each captioned with a link
    to its page and a line generated from its configuration;
``.. schedule-references:: NAME``
    the paper a scheduler comes from (where there is one) and the torch source it follows,
    from :data:`REFERENCES`, the one place they are written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

import refoptim.plot as rplot

logger = logging.getLogger(__name__)

PLOT_DIR = ("_generated", "plots")
"""Where the PNGs go, relative to the documentation's source folder."""

SWALR_EXAMPLE: dict[str, Any] = {"swa_lr": 0.02, "anneal_epochs": 30, "anneal_strategy": "cos"}
"""SWALR's drawn example: from lr 0.1 to ``swa_lr`` along a cosine over 30 epochs."""

SWALR_STEPS = 60

TORCH_SCHEDULERS = "https://github.com/pytorch/pytorch/blob/v2.13.0/torch/optim/lr_scheduler.py"
TORCH_SWA_UTILS = "https://github.com/pytorch/pytorch/blob/v2.13.0/torch/optim/swa_utils.py"

_SGDR = ("Loshchilov & Hutter, SGDR: Stochastic Gradient Descent with Warm Restarts (ICLR 2017)",
         "https://arxiv.org/abs/1608.03983")

REFERENCES: dict[str, list[tuple[str, str]]] = {
    "CosineAnnealingLR": [_SGDR],
    "CosineAnnealingWarmRestarts": [_SGDR],
    "CyclicLR": [("Smith, Cyclical Learning Rates for Training Neural Networks (WACV 2017)",
                  "https://arxiv.org/abs/1506.01186"),
                 ("the author's reference implementation (bckenstler/CLR), which torch's docstring cites",
                  "https://github.com/bckenstler/CLR")],
    "OneCycleLR": [("Smith & Topin, Super-Convergence: Very Fast Training of Neural Networks Using Large "
                    "Learning Rates", "https://arxiv.org/abs/1708.07120")],
    "SWALR": [("Izmailov et al., Averaging Weights Leads to Wider Optima and Better Generalization (UAI 2018)",
               "https://arxiv.org/abs/1803.05407")],
}
"""The papers each scheduler follows (the ones torch 2.13's docstrings cite); the others
cite none and follow only torch's source (:func:`torch_source`)."""

LOG_SCALE: tuple[str, ...] = ("StepLR", "MultiStepLR", "ExponentialLR", "ReduceLROnPlateau", "SequentialLR")
"""The schedulers whose tail spans orders of magnitude: their pages add the plot with the lr
on a log scale."""

KINDS: list[tuple[str, str, list[str]]] = [
    ("Decay", "The lr falls with the epochs, by steps or smoothly.",
     ["StepLR", "MultiStepLR", "ExponentialLR", "MultiplicativeLR", "LambdaLR", "PolynomialLR",
      "CosineAnnealingLR", "SWALR"]),
    ("Warm-up", "The lr starts low and reaches the optimizer's lr after total_iters epochs.",
     ["ConstantLR", "LinearLR"]),
    ("Cyclic", "The lr goes up and down: per batch (CyclicLR, OneCycleLR) or in restarts.",
     ["CyclicLR", "OneCycleLR", "CosineAnnealingWarmRestarts"]),
    ("Composite", "Schedulers made of schedulers: in turn (SequentialLR) or multiplied (ChainedScheduler).",
     ["SequentialLR", "ChainedScheduler"]),
    ("Metric-driven", "The lr falls when a metric given to step() stops improving.",
     ["ReduceLROnPlateau"]),
]
"""The gallery's groups: (title, what they share, schedulers)."""


def torch_source(name: str) -> str:
    """The torch 2.13 source file the scheduler follows."""
    return TORCH_SWA_UTILS if name == "SWALR" else TORCH_SCHEDULERS


def _escape(text: str) -> str:
    """Plain text made safe inside reStructuredText (every markup character escaped)."""
    import re

    return re.sub(r"([\\`*_|\[\]<>:])", r"\\\1", text)


def names() -> list[str]:
    """Every scheduler with a plot: refoptim.plot's (all of refoptim.lr_scheduler) and SWALR."""
    return [*rplot.SCHEDULERS, "SWALR"]


def module_of(name: str) -> str:
    """The module a scheduler is documented under."""
    return "refoptim.swa_utils" if name == "SWALR" else "refoptim.lr_scheduler"


def swalr_trace(steps: int = SWALR_STEPS) -> rplot.Trace:
    """Record SWALR's lr with :func:`refoptim.plot.trace` (which takes ``"SWALR"`` though the
    CLI does not)."""
    return rplot.trace("SWALR", dict(SWALR_EXAMPLE), steps=steps)


def record(name: str) -> rplot.Trace:
    """The trace drawn for ``name``: ``python -m refoptim plot NAME --example``'s."""
    if name == "SWALR":
        return swalr_trace()
    return rplot.trace(name, rplot.parse_arguments(rplot.EXAMPLES[name]))


def command(name: str) -> str:
    """The shell command that draws the same image."""
    if name == "SWALR":
        return ""
    return f"python -m refoptim plot {name} --example -o {name}.png"


def render_all(out_dir: Path) -> list[Path]:
    """Draw every scheduler's plot into ``out_dir``; return the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names():
        path = out_dir / f"{name}.png"
        rplot.draw(record(name), str(path))
        written.append(path)
    return written


def render_log(out_dir: Path) -> list[Path]:
    """Draw the log-scale plots of :data:`LOG_SCALE` into ``out_dir`` (``NAME-log.png``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in LOG_SCALE:
        path = out_dir / f"{name}-log.png"
        rplot.draw(record(name), str(path), log=True)
        written.append(path)
    return written


def _on_builder_inited(app: Sphinx) -> None:
    out_dir = Path(app.srcdir, *PLOT_DIR)
    files = render_all(out_dir) + render_log(out_dir)
    logger.info(f"schedule_plots: drew {len(files)} schedules into {out_dir}")


class SchedulePlot(SphinxDirective):
    """``.. schedule-plot:: NAME``: the build-time plot of one scheduler."""

    required_arguments = 1
    option_spec = {"width": directives.unchanged}

    def run(self) -> list[Any]:
        name = self.arguments[0]
        if name not in names():
            raise self.error(f"schedule-plot: unknown scheduler {name!r}; known: {', '.join(names())}")
        self.env.note_dependency(rplot.__file__)
        values = record(name)
        width = self.options.get("width", "90%")
        how = command(name)
        caption = _escape(values.caption) + " Drawn at build time by :mod:`refoptim.plot`"
        caption += f" (``{how}``)." if how else "."
        lines = [
            f".. figure:: /{'/'.join(PLOT_DIR)}/{name}.png",
            f"   :alt: {name}'s learning rate over {values.steps} {rplot._plural(values.unit)}",
            f"   :width: {width}",
            "   :class: schedule-plot",
            "",
            f"   {caption}",
        ]
        if name in LOG_SCALE:
            lines += [
                "",
                f".. figure:: /{'/'.join(PLOT_DIR)}/{name}-log.png",
                f"   :alt: {name}'s learning rate on a log scale",
                f"   :width: {width}",
                "   :class: schedule-plot",
                "",
                "   The same schedule with the lr on a log scale, where its tail shows"
                + (f" (``{how} --log``)." if how else "."),
            ]
        return self._parse(lines)

    def _parse(self, lines: list[str]) -> list[Any]:
        from docutils import nodes

        container = nodes.container()
        self.state.nested_parse(StringList(lines, source=f"<{self.name}>"), self.content_offset, container)
        return container.children


def short_caption(values: rplot.Trace) -> str:
    """The gallery's line under a plot, from the recorded values and the configuration."""
    ys = values.lr[0]
    text = f"lr {ys[0]:.4g} → {ys[-1]:.4g} over {values.steps} {rplot._plural(values.unit)}"
    if values.marks:
        text += "; lines: " + "; ".join(label for label, _ in values.marks)
    return text + "."


class ScheduleGallery(SchedulePlot):
    """``.. schedule-gallery::``: every scheduler's plot, grouped by kind, linked to its page."""

    required_arguments = 0

    def run(self) -> list[Any]:
        self.env.note_dependency(rplot.__file__)
        grouped = [n for _, _, members in KINDS for n in members]
        if sorted(grouped) != sorted(names()):
            raise self.error(f"schedule-gallery: KINDS must hold every scheduler once; has {grouped}")
        lines: list[str] = []
        for title, what, members in KINDS:
            lines += [".. rubric:: " + title, "", what, "", ".. container:: schedule-gallery", ""]
            for name in members:
                values = record(name)
                lines += [
                    f"   .. figure:: /{'/'.join(PLOT_DIR)}/{name}.png",
                    f"      :alt: {name}",
                    f"      :target: {name}.html",
                    "",
                    f"      :class:`~{module_of(name)}.{name}`: {_escape(short_caption(values))}",
                    "",
                ]
        return self._parse(lines)


class ScheduleReferences(SchedulePlot):
    """``.. schedule-references:: NAME``: the scheduler's paper(s) and torch source."""

    def run(self) -> list[Any]:
        name = self.arguments[0]
        if name not in names():
            raise self.error(f"schedule-references: unknown scheduler {name!r}")
        lines = []
        for citation, url in REFERENCES.get(name, []):
            lines.append(f"- {_escape(citation)}: {url}")
        if name not in REFERENCES:
            lines.append("- No paper: torch's docstring cites none for this scheduler.")
        module = "swa_utils" if name == "SWALR" else "lr_scheduler"
        lines.append(f"- The torch source it follows, ``{name}`` in ``torch/optim/{module}.py`` of PyTorch 2.13: "
                     f"{torch_source(name)}")
        return self._parse(lines)


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("builder-inited", _on_builder_inited)
    app.add_directive("schedule-plot", SchedulePlot)
    app.add_directive("schedule-gallery", ScheduleGallery)
    app.add_directive("schedule-references", ScheduleReferences)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
