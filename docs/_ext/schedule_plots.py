"""Sphinx extension: learning-rate schedule plots drawn at build time by refoptim itself.

Every plot is recorded from a real scheduler by :func:`refoptim.plot.trace` with the
arguments of :data:`refoptim.plot.EXAMPLES` and drawn by :func:`refoptim.plot.draw`: the
code, and the image, of ``python -m refoptim plot NAME --example -o NAME.png``. SWALR, which
lives in :mod:`refoptim.swa_utils` and not in the CLI, is recorded the same way here and
drawn by the same :func:`~refoptim.plot.draw`.

At ``builder-inited`` the PNGs are written to ``docs/_generated/plots/`` (git-ignored).
Two directives place them:

``.. schedule-plot:: NAME``
    the figure of one scheduler, captioned with its arguments and the command that draws it;
``.. schedule-gallery::``
    every scheduler's figure in a grid, each captioned with a link to its page.
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


def names() -> list[str]:
    """Every scheduler with a plot: refoptim.plot's (all of refoptim.lr_scheduler) and SWALR."""
    return [*rplot.SCHEDULERS, "SWALR"]


def module_of(name: str) -> str:
    """The module a scheduler is documented under."""
    return "refoptim.swa_utils" if name == "SWALR" else "refoptim.lr_scheduler"


def swalr_trace(steps: int = SWALR_STEPS) -> rplot.Trace:
    """Record SWALR's lr the way :func:`refoptim.plot.trace` records the others."""
    import numpy as np

    from refoptim import SGD, Parameter
    from refoptim.swa_utils import SWALR

    opt = SGD([Parameter(np.zeros(1))], lr=0.1, momentum=0.9)
    sched = SWALR(opt, **SWALR_EXAMPLE)
    values = rplot.Trace("SWALR", dict(SWALR_EXAMPLE), lr=[[]])
    for t in range(steps):
        values.lr[0].append(float(opt.param_groups[0]["lr"]))
        if t == steps - 1:
            break
        opt.step()
        sched.step()
    return values


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


def _on_builder_inited(app: Sphinx) -> None:
    out_dir = Path(app.srcdir, *PLOT_DIR)
    files = render_all(out_dir)
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
        caption = f"``{values.title}``, {values.steps} steps from lr 0.1, drawn at build time by :mod:`refoptim.plot`"
        caption += f" (``{how}``)." if how else "."
        lines = [
            f".. figure:: /{'/'.join(PLOT_DIR)}/{name}.png",
            f"   :alt: {name}'s learning rate over {values.steps} steps",
            f"   :width: {width}",
            "   :class: schedule-plot",
            "",
            f"   {caption}",
        ]
        return self._parse(lines)

    def _parse(self, lines: list[str]) -> list[Any]:
        from docutils import nodes

        container = nodes.container()
        self.state.nested_parse(StringList(lines, source=f"<{self.name}>"), self.content_offset, container)
        return container.children


class ScheduleGallery(SchedulePlot):
    """``.. schedule-gallery::``: every scheduler's plot in a grid, linked to its page."""

    required_arguments = 0

    def run(self) -> list[Any]:
        self.env.note_dependency(rplot.__file__)
        lines = [".. container:: schedule-gallery", ""]
        for name in names():
            lines += [
                f"   .. figure:: /{'/'.join(PLOT_DIR)}/{name}.png",
                f"      :alt: {name}",
                f"      :target: {name}.html",
                "",
                f"      :class:`~{module_of(name)}.{name}`",
                "",
            ]
        return self._parse(lines)


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("builder-inited", _on_builder_inited)
    app.add_directive("schedule-plot", SchedulePlot)
    app.add_directive("schedule-gallery", ScheduleGallery)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
