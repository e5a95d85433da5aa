"""Sphinx configuration of the refoptim manual.

Build it (warnings are errors) and run its doctests with::

    pip install -e ".[docs]"
    python -m sphinx -n -W --keep-going -b html docs docs/_build/html
    python -m sphinx -W --keep-going -b doctest docs docs/_build/doctest

The schedule plots are drawn at build time by ``refoptim.plot`` (the code behind
``python -m refoptim plot``) through the local extension ``docs/_ext/schedule_plots.py``,
into ``docs/_generated/`` (git-ignored), beside the API pages autosummary generates.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE.parent))  # the checkout's refoptim, also without an install

import refoptim

project = "refoptim"
author = "the refoptim developers"
copyright = "the refoptim developers"
release = refoptim.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",  # the docstrings use torch's Google style ("Args:")
    "sphinx.ext.mathjax",
    "sphinx.ext.doctest",
    "sphinx.ext.viewcode",  # every rule's source beside its math
    "myst_parser",  # the Markdown pages (conformance, design notes, backends)
    "schedule_plots",  # docs/_ext: schedule plots drawn by refoptim.plot at build time
    "trajectory_plots",  # docs/_ext: optimizer trajectories on 2-D test functions, drawn at build time
    "optimizer_pages",  # docs/_ext: optimizer pages' references, lineage and rule listings from the code
    "registry_tables",  # docs/_ext: the optimizer index's table, from refoptim.registry
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_templates", "Thumbs.db", ".DS_Store"]
templates_path = ["_templates"]

# -- autodoc / autosummary / napoleon ------------------------------------------------
autosummary_generate = True
autosummary_generate_overwrite = True
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # the types are in each docstring's "Args:", as in torch's docs
autodoc_default_options = {"show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_ivar = True

# -- nitpicky mode (``-n``) ----------------------------------------------------------
# The manual is built with ``-n -W``: every cross-reference must resolve. Two kinds of names
# have no target and are ignored here, nothing else (a broken reference to refoptim's own
# code is fixed where it is written, never listed here):
# - the plain-English words of torch-style Google types, e.g. ``(iterable of Parameter)``,
#   ``(float, optional)``, ``(0-d array)``: napoleon hands the type to the Python domain,
#   which makes every word between "or", "of" and commas a class reference.
# - the standard library's names (``json``, ``zipfile``, ``os.PathLike``, ``open``): the
#   manual builds offline, without intersphinx, so Python's own documentation is not
#   linked; builtins (``int``, ``str``, ``None``) need no entry, Sphinx resolves them.
nitpick_ignore = [
    *(
        ("py:class", word)
        for word in (
            "optional",
            "iterable",
            "callable",
            "function",
            "sequence",
            "keyword-only",
            "0-d array",
            "1-element array",
        )
    ),
    ("py:mod", "json"),
    ("py:mod", "zipfile"),
    ("py:class", "os.PathLike"),
    ("py:func", "open"),
    # The private base of ChainedScheduler and SequentialLR, named by show-inheritance.
    ("py:class", "refoptim.lr_scheduler._ComposedScheduler"),
]

# -- doctest -------------------------------------------------------------------------
# Pages and docstrings carry self-contained examples (imports included), so that a reader
# can copy them; nothing is set up behind their back.
doctest_test_doctest_blocks = "default"

# -- MyST ----------------------------------------------------------------------------
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3

# -- HTML ----------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"refoptim {release}"
html_static_path = ["_static"]
html_css_files = ["refoptim.css"]
html_theme_options = {
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "secondary_sidebar_items": ["page-toc", "sourcelink"],
}
html_show_sourcelink = True
