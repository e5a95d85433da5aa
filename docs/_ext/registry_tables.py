"""Sphinx extension: tables of the manual generated from :mod:`refoptim.registry`.

``.. refoptim-optimizer-table::``
    the index of the optimizer pages (``docs/optimizers/index.rst``): one row per
    registered optimizer, in the registry's (lineage) order, with a link to its page, what
    it does (the entry's ``summary``, then the optimizer it builds on and the entry's
    one-sentence ``lineage``) and the state each parameter keeps (``state``). Links are
    absolute (``/optimizers/adam``), so the table reads the same on any page.

Adding an optimizer to the registry adds its row; nothing here is written twice.
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective


def optimizer_table_rst() -> list[str]:
    """The reStructuredText of the optimizer table (a ``list-table``), one row per entry."""
    from refoptim import registry

    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 18 52 30",
        "",
        "   * - optimizer",
        "     - what it does",
        "     - state per parameter",
    ]
    for info in registry.OPTIMIZERS:
        if info.parent is None:
            lineage = info.lineage
        else:
            parent = registry.get(info.parent)
            lineage = f"*Builds on* :doc:`/{parent.page}`: {info.lineage}"
        lines += [
            f"   * - :doc:`/{info.page}`",
            f"     - {info.summary}",
            "",
            f"       {lineage}",
            f"     - {info.state}",
        ]
    return lines


class OptimizerTable(SphinxDirective):
    """``.. refoptim-optimizer-table::``: the registry's optimizers as a table."""

    has_content = False
    required_arguments = 0
    optional_arguments = 0

    def run(self) -> list[nodes.Node]:
        container = nodes.container()
        source = self.get_source_info()[0] or "<refoptim-optimizer-table>"
        content = StringList(optimizer_table_rst(), source=source)
        self.state.nested_parse(content, self.content_offset, container)
        from refoptim import registry

        self.env.note_dependency(registry.__file__)  # rebuilt when the registry changes
        return container.children


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("refoptim-optimizer-table", OptimizerTable)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
