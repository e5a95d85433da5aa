"""The ``>>>`` examples run: every docstring of the package, and the manual's scheduler
pages and landing page, with the option flags of Sphinx's doctest builder.

``python -m sphinx -b doctest docs ...`` runs the same examples (and those of the other
pages) in CI; this test makes ``pytest`` cover them too, without Sphinx.
"""

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import refoptim

DOCS = Path(__file__).resolve().parent.parent / "docs"
FLAGS = doctest.ELLIPSIS | doctest.IGNORE_EXCEPTION_DETAIL | doctest.DONT_ACCEPT_TRUE_FOR_1  # Sphinx's defaults
TORCH_MODULES = ("refoptim.testing.",)  # conformance machinery; some of it imports torch

MODULES = sorted(["refoptim", *(m.name for m in pkgutil.walk_packages(refoptim.__path__, "refoptim."))])
PAGES = [DOCS / "index.rst", *sorted((DOCS / "schedulers").glob("*.rst"))]


def _import(name):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == "torch" and name.startswith(TORCH_MODULES):
            pytest.skip(f"{name} needs torch")
        raise


def _run(tests):
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in tests:
        runner.run(test)
    return runner.summarize(verbose=False)


@pytest.mark.parametrize("name", MODULES)
def test_module_docstring_examples_pass(name):
    module = _import(name)
    tests = doctest.DocTestFinder(exclude_empty=True).find(module, name)
    result = _run(tests)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed (see the output above)"


def test_the_modules_with_examples_are_found():
    """Guards the test above against finding nothing: these modules carry examples."""
    for name in ("refoptim.parameter", "refoptim.sparse", "refoptim.sparse_adam", "refoptim.swa_utils", "refoptim.plot"):
        tests = doctest.DocTestFinder(exclude_empty=True).find(importlib.import_module(name), name)
        assert sum(len(t.examples) for t in tests) > 0, name


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_page_examples_pass(page):
    text = page.read_text(encoding="utf-8")
    test = doctest.DocTestParser().get_doctest(text, {}, page.name, str(page), 0)
    if page.parent.name == "schedulers" and page.stem not in ("index", "gallery"):
        assert len(test.examples) >= 5, f"{page.name} has no runnable example"
    result = _run([test])
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {page.name} failed (see the output above)"
