"""Sphinx extension: optimizer trajectories on 2-D test functions, drawn at build time by
refoptim itself (:func:`refoptim.plot.plot_trajectories`, the code behind
``python -m refoptim plot --trajectory``), and the optimizers' lineage from the registry.

Directives:

``.. refoptim-trajectory:: SPEC [SPEC ...]``
    one figure: each spec's path (``Name`` or ``Name:key=value,...``); options ``:on:``
    (``rosenbrock``, ``quadratic`` or ``saddle``; default ``rosenbrock``), ``:steps:``,
    ``:caption:`` (default: what was drawn and the command that draws it) and ``:width:``.
``.. trajectory-gallery::``
    one figure per optimizer of :data:`refoptim.registry.OPTIMIZERS` against its parent
    (its ``parent``), captioned with its ``lineage`` sentence; option ``:on:``.
``.. optimizer-lineage::``
    the registry's lineage as a list: each optimizer, its parent and what it adds.

The PNGs go to ``docs/_generated/trajectories/`` (git-ignored), named by a hash of what
they show, and are drawn when a page using the directive is read.
"""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path
from typing import Any

from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

import refoptim.plot as rplot
from refoptim import registry

OUT_DIR = ("_generated", "trajectories")
"""Where the PNGs go, relative to the documentation's source folder."""


def _escape(text: str) -> str:
    import re

    return re.sub(r"([\\`*_|\[\]<>:])", r"\\\1", text)


def drawable() -> list[registry.OptimizerInfo]:
    """The registry's optimizers that :func:`refoptim.plot.trajectory` draws."""
    return [info for info in registry.OPTIMIZERS if info.name not in rplot.NOT_DRAWN]


_SOURCE_DIGEST: list[str] = []


def _source_digest() -> str:
    """A digest of refoptim's sources: a figure is redrawn whenever the code changes."""
    if not _SOURCE_DIGEST:
        h = hashlib.sha256()
        for f in sorted(Path(rplot.__file__).parent.rglob("*.py")):
            h.update(f.read_bytes())
        _SOURCE_DIGEST.append(h.hexdigest())
    return _SOURCE_DIGEST[0]


def render(specs: list[str], on: str, steps: int | None, out_dir: Path) -> Path:
    """Draw the figure of ``specs`` on ``on`` into ``out_dir`` (once per content and
    version of refoptim's sources); return it."""
    key = hashlib.sha256(repr((specs, on, steps, _source_digest())).encode()).hexdigest()[:12]
    path = out_dir / f"{on}-{key}.png"
    if not path.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.png")
        rplot.plot_trajectories(specs, on=on, steps=steps, path=str(tmp))
        tmp.replace(path)
    return path


def command(specs: list[str], on: str, steps: int | None) -> str:
    """The shell command that draws the same figure."""
    out = "python -m refoptim plot --trajectory " + " ".join(shlex.quote(s) for s in specs) + f" --on {on}"
    return out + (f" --steps {steps}" if steps is not None else "")


class _Base(SphinxDirective):
    def _parse(self, lines: list[str]) -> list[Any]:
        from docutils import nodes

        container = nodes.container()
        self.state.nested_parse(StringList(lines, source=f"<{self.name}>"), self.content_offset, container)
        return container.children

    def _figure(self, specs: list[str], on: str, steps: int | None, caption: str, width: str) -> list[str]:
        try:
            path = render(specs, on, steps, Path(self.env.srcdir, *OUT_DIR))
        except ValueError as exc:
            raise self.error(f"{self.name}: {exc}") from None
        return [
            f".. figure:: /{'/'.join(OUT_DIR)}/{path.name}",
            f"   :alt: {', '.join(specs)} on {on}",
            f"   :width: {width}",
            "",
            f"   {caption}",
            "",
        ]


def _default_caption(specs: list[str], on: str, steps: int | None) -> str:
    fn = rplot.FUNCTIONS[on]
    n = fn.steps if steps is None else steps
    return (f"{_escape(', '.join(specs))} for {n} steps on the {_escape(fn.title.lower())} function "
            f"{_escape(fn.formula)}, every point from refoptim's own step (options in brackets are the "
            f"function's defaults). Drawn at build time: ``{command(specs, on, steps)}``.")


class Trajectory(_Base):
    """``.. refoptim-trajectory:: SPEC [SPEC ...]``: the paths of these optimizers."""

    required_arguments = 1
    optional_arguments = 20
    option_spec = {
        "on": lambda arg: directives.choice(arg, list(rplot.FUNCTIONS)),
        "steps": directives.nonnegative_int,
        "caption": directives.unchanged,
        "width": directives.unchanged,
    }

    def run(self) -> list[Any]:
        self.env.note_dependency(rplot.__file__)
        specs = list(self.arguments)
        on = self.options.get("on", "rosenbrock")
        steps = self.options.get("steps")
        caption = self.options.get("caption") or _default_caption(specs, on, steps)
        return self._parse(self._figure(specs, on, steps, caption, self.options.get("width", "90%")))


class TrajectoryGallery(_Base):
    """``.. trajectory-gallery::``: each optimizer against its parent in the lineage."""

    option_spec = {"on": lambda arg: directives.choice(arg, list(rplot.FUNCTIONS)), "width": directives.unchanged}

    def run(self) -> list[Any]:
        self.env.note_dependency(rplot.__file__)
        self.env.note_dependency(registry.__file__)
        on = self.options.get("on", "rosenbrock")
        lines: list[str] = []
        for info in drawable():
            parent = info.parent if info.parent not in (None, *rplot.NOT_DRAWN) else None
            specs = [parent, info.name] if parent else [info.name]
            against = f" against its parent {parent}" if parent else " (a root of the lineage)"
            caption = (f":class:`~refoptim.{info.name}`{against}: {_escape(info.lineage)} "
                       f"(``{command(specs, on, None)}``)")
            lines += [f".. rubric:: {info.name}", ""]
            lines += self._figure(specs, on, None, caption, self.options.get("width", "80%"))
        return self._parse(lines)


class OptimizerLineage(_Base):
    """``.. optimizer-lineage::``: each optimizer, its parent and its lineage sentence."""

    def run(self) -> list[Any]:
        self.env.note_dependency(registry.__file__)
        lines: list[str] = []
        for info in registry.OPTIMIZERS:
            parent = f" (from :class:`~refoptim.{info.parent}`)" if info.parent else " (a root)"
            lines += [f":class:`~refoptim.{info.name}`{parent}", f"   {_escape(info.lineage)}", ""]
        return self._parse(lines)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("refoptim-trajectory", Trajectory)
    app.add_directive("trajectory-gallery", TrajectoryGallery)
    app.add_directive("optimizer-lineage", OptimizerLineage)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
