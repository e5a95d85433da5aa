"""Sphinx extension: the parts of the optimizer pages that come from the code.

``.. refoptim-references:: NAME``
    the optimizer's place in the lineage (its parent, linked to its page, then the
    registry's one-sentence ``lineage``), its papers and the torch source it follows, all
    read from :mod:`refoptim.registry`, so nothing is written twice;
``.. refoptim-source:: refoptim.adam.adam_step``
    a function's source without its docstring (the math of the docstring is on the page
    already, as math): the function is found with :mod:`ast`, not by line numbers, so the
    listing follows the code as it changes.

It also repairs the "[docs]" back-links of ``sphinx.ext.viewcode``. viewcode keeps one
documented module name per source module (the first it meets) and builds every back-link
of that source module as ``#<that name>.<object>``. ``refoptim/adam.py`` is documented
under two names, ``refoptim.Adam`` (the optimizer pages) and ``refoptim.functional.adam_step``
(the API reference), so the class's back-link pointed at ``#refoptim.functional.Adam``,
an anchor no page has. The ids of the Python objects each page documents are recorded at
``doctree-read``, and the back-links of the ``_modules/`` pages are pointed at the id
actually there.
"""

from __future__ import annotations

import ast
import html
import importlib
import inspect
import re
import textwrap
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------ source listings
def source_without_docstring(qualified: str) -> tuple[str, Path]:
    """The source of the module-level function or class ``qualified`` (``package.module.name``)
    without its docstring, and the file it is in."""
    module_name, _, name = qualified.rpartition(".")
    module = importlib.import_module(module_name)
    path = Path(inspect.getsourcefile(module) or "")
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    for node in ast.parse(text).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            break
    else:
        raise ValueError(f"{qualified}: no such function or class in {path}")
    start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    keep = list(range(start - 1, node.end_lineno or node.lineno))
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        drop = set(range(first.lineno - 1, first.end_lineno or first.lineno))
        keep = [i for i in keep if i not in drop]
    return textwrap.dedent("\n".join(lines[i] for i in keep)), path


class SourceListing(SphinxDirective):
    """``.. refoptim-source:: refoptim.adam.adam_step``: the code without its docstring."""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        try:
            code, path = source_without_docstring(self.arguments[0])
        except (ImportError, ValueError, OSError) as exc:
            raise self.error(f"refoptim-source: {exc}") from exc
        self.env.note_dependency(str(path))
        block = nodes.literal_block(code, code)
        block["language"] = "python"
        self.set_source_info(block)
        return [block]


# ------------------------------------------------------------------ references
def _doc_link(env: Any, name: str) -> nodes.Node:
    import refoptim.registry as registry

    info = registry.get(name)
    ref = addnodes.pending_xref(
        "", nodes.inline(name, name), refdomain="std", reftype="doc", reftarget="/" + info.page,
        refexplicit=True, refwarn=True, refdoc=env.docname,
    )
    return ref


def _external(text: str, url: str) -> nodes.Node:
    return nodes.reference(text, text, refuri=url)


class References(SphinxDirective):
    """``.. refoptim-references:: Adam``: lineage, papers and torch source from the registry."""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        import refoptim.registry as registry

        try:
            info = registry.get(self.arguments[0])
        except (KeyError, ValueError) as exc:
            raise self.error(f"refoptim-references: {exc}") from exc
        self.env.note_dependency(registry.__file__)

        lineage = nodes.paragraph()
        lineage += nodes.strong("Lineage. ", "Lineage. ")
        if info.parent is not None:
            lineage += _doc_link(self.env, info.parent)
            lineage += nodes.Text(" → ")
            lineage += nodes.strong(info.name, info.name)
            lineage += nodes.Text(": " + info.lineage)
        else:
            lineage += nodes.strong(info.name, info.name)
            lineage += nodes.Text(" has no parent in the lineage. " + info.lineage)
        # the optimizers that extend this one, in the registry's (lineage) order
        children = [i.name for i in registry.OPTIMIZERS if i.parent == info.name]
        if children:
            lineage += nodes.Text(" Extended by ")
            for k, child in enumerate(children):
                if k:
                    lineage += nodes.Text(", " if k < len(children) - 1 else " and ")
                lineage += _doc_link(self.env, child)
            lineage += nodes.Text(".")

        papers = nodes.paragraph()
        papers += nodes.strong("Papers.", "Papers.")
        items = nodes.bullet_list()
        for paper in info.papers:
            item = nodes.list_item()
            para = nodes.paragraph()
            para += _external(paper.citation, paper.url)
            item += para
            items += item

        source = nodes.paragraph()
        source += nodes.strong("torch source. ", "torch source. ")
        source += _external(info.torch_source, info.torch_url)
        source += nodes.Text(" (PyTorch 2.13), whose single-tensor path refoptim follows.")
        return [lineage, papers, items, source]


# ------------------------------------------------------------------ viewcode back-links
def _record_ids(app: Sphinx, doctree: nodes.document) -> None:
    """Remember the id of each Python object this page documents, by its full name."""
    env = app.env
    found: dict[str, str] = {}
    for desc in doctree.findall(addnodes.desc):
        if desc.get("domain") != "py":
            continue
        for sig in desc.findall(addnodes.desc_signature):
            if sig.get("fullname") and sig.get("ids"):
                found.setdefault(sig["fullname"], sig["ids"][0])
    if not hasattr(env, "refoptim_py_ids"):
        env.refoptim_py_ids = {}
    env.refoptim_py_ids[env.docname] = found


def _purge(app: Sphinx, env: Any, docname: str) -> None:
    getattr(env, "refoptim_py_ids", {}).pop(docname, None)


def _merge(app: Sphinx, env: Any, docnames: Any, other: Any) -> None:
    if not hasattr(env, "refoptim_py_ids"):
        env.refoptim_py_ids = {}
    env.refoptim_py_ids.update(getattr(other, "refoptim_py_ids", {}))


_BACKLINK = re.compile(r'(<a class="viewcode-back" href=")([^"#]*)#([^"]+)(")')


def _fix_backlinks(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: Any) -> None:
    if not pagename.startswith("_modules/") or "body" not in context:
        return
    ids_by_doc: dict[str, dict[str, str]] = getattr(app.env, "refoptim_py_ids", {})
    builder = app.builder

    def fix(match: re.Match[str]) -> str:
        href, fragment = html.unescape(match.group(2)), html.unescape(match.group(3))
        for docname, ids in ids_by_doc.items():
            if builder.get_relative_uri(pagename, docname) != href:
                continue
            if fragment in ids.values():
                return match.group(0)
            names = [n for n in ids if fragment == n or fragment.endswith("." + n)]
            if names:
                target = ids[max(names, key=len)]
                return f"{match.group(1)}{match.group(2)}#{html.escape(target)}{match.group(4)}"
        return match.group(0)

    context["body"] = _BACKLINK.sub(fix, context["body"])


def _check_backlinks(app: Sphinx, exception: Exception | None) -> None:
    """After an HTML build: every link with an anchor on a ``_modules/`` page must point at
    an id that exists on its target page; each one that does not is a warning (an error
    under ``-W``), so a broken "[docs]" back-link fails the build."""
    if exception is not None or app.builder.format != "html":
        return
    root = Path(app.outdir)
    ids_of: dict[Path, set[str]] = {}

    def ids(page: Path) -> set[str]:
        if page not in ids_of:
            text = page.read_text(encoding="utf-8") if page.is_file() else ""
            ids_of[page] = set(re.findall(r'\bid="([^"]+)"', text))
        return ids_of[page]

    for page in sorted((root / "_modules").rglob("*.html")):
        for href in re.findall(r'href="([^"]+#[^"]+)"', page.read_text(encoding="utf-8")):
            path, fragment = html.unescape(href).split("#", 1)
            if "://" in path:
                continue
            target = (page.parent / path).resolve() if path else page
            if fragment not in ids(target):
                logger.warning(f"viewcode link {page.relative_to(root)} -> {href}: no such anchor")


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("build-finished", _check_backlinks)
    app.add_directive("refoptim-references", References)
    app.add_directive("refoptim-source", SourceListing)
    app.connect("doctree-read", _record_ids)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    app.connect("html-page-context", _fix_backlinks)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
