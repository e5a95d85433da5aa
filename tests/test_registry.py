"""The registry (``refoptim/registry.py``) against everything an optimizer needs.

A registered optimizer must have its module and class, its functional rules (exported and
documented), its page in the manual, its conformance matrix entry, its papers and the torch
source it follows; every optimizer of torch 2.13 must be registered; and the hand-written
tables of the manual (the optimizer index's toctree, the API reference, the parity tables
of the README and docs/backends.md) must name exactly the registered optimizers. Adding an
optimizer: see CONTRIBUTING.md. No torch needed but for the check that torch's optimizers
are all registered.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
from pathlib import Path

import pytest

import refoptim
from refoptim import functional as F
from refoptim import registry
from refoptim.testing import matrix

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
INFOS = registry.OPTIMIZERS
NAMES = registry.names()


def _ids(info):
    return info.name


def test_names_and_modules_are_unique():
    assert len(set(NAMES)) == len(NAMES)
    assert len({i.module for i in INFOS}) == len(INFOS)


def test_get_names_the_known_ones():
    assert registry.get("Adam").module == "adam"
    with pytest.raises(KeyError, match="known: SGD"):
        registry.get("Adamm")


# ============================================================================ the code
@pytest.mark.parametrize("info", INFOS, ids=_ids)
def test_module_and_class(info):
    module = importlib.import_module(f"refoptim.{info.module}")
    cls = getattr(module, info.name, None)
    assert cls is not None, f"refoptim/{info.module}.py has no class {info.name}"
    assert inspect.isclass(cls) and issubclass(cls, refoptim.Optimizer) and cls is not refoptim.Optimizer
    assert cls.__name__ == info.name and cls.__module__ == f"refoptim.{info.module}"
    assert info.cls is cls
    assert getattr(refoptim, info.name) is cls and info.name in refoptim.__all__


@pytest.mark.parametrize("info", INFOS, ids=_ids)
def test_flags_are_the_classes(info):
    assert info.elementwise is bool(info.cls._elementwise), "elementwise != the class's _elementwise"
    assert info.sparse is bool(info.cls._supports_sparse_grad), "sparse != the class's _supports_sparse_grad"


@pytest.mark.parametrize("info", INFOS, ids=_ids)
def test_functional_rules(info):
    init, step = info.rules
    assert init.endswith("_init") and step.endswith("_step"), info.rules
    module = importlib.import_module(f"refoptim.{info.module}")
    api = (DOCS / "api.rst").read_text()
    for name in (init, step):
        assert callable(getattr(module, name, None)), f"refoptim/{info.module}.py has no {name}"
        assert name in F.__all__ and getattr(F, name).__wrapped__ is getattr(module, name)
        doc = inspect.getdoc(getattr(F, name))
        assert doc and doc.strip(), f"{name} has no docstring"
        assert re.search(rf"^\s+{name}$", api, re.M), f"docs/api.rst does not list {name}"


def test_exports_are_the_registry():
    exported = {
        n for n in refoptim.__all__
        if inspect.isclass(getattr(refoptim, n)) and issubclass(getattr(refoptim, n), refoptim.Optimizer) and n != "Optimizer"
    }
    assert exported == set(NAMES)
    assert F.__all__ == sorted(name for info in INFOS for name in info.rules)


@pytest.mark.parametrize("info", INFOS, ids=_ids)
def test_matrix_entry(info):
    m = info.matrix
    if info.elementwise:
        assert m.get("alone") and m.get("groups") and m.get("feedback"), "alone, groups and feedback may not be empty"
        assert callable(m.get("crossed")), "crossed: a function returning option sets"
        assert set(m) <= {"alone", "crossed", "groups", "feedback", "min_steps"}
        for objective, _ in m["feedback"]:
            assert objective in matrix.OBJECTIVES, objective
        assert matrix.configs([info.name], ("float32",), steps=2), "the matrix makes no configuration"
    else:
        assert set(m) == {"extension"}, "an optimizer that is not elementwise names its harness: {'extension': module}"
        harness = f"refoptim.testing.conformance_{m['extension']}"
        assert importlib.util.find_spec(harness) is not None, f"no {harness}"
        from refoptim.testing.inputs import EXTENSION_CONFIGS

        assert m["extension"] in EXTENSION_CONFIGS, "refoptim.testing.inputs.EXTENSION_CONFIGS lacks its configs"
    assert info.name in matrix.optimizer_names()


def test_matrix_covers_the_registry():
    assert set(matrix.optimizer_names()) == set(NAMES)
    assert set(matrix.EXTENSIONS) == set(registry.names(elementwise=False))


def test_bench_is_the_registry():
    from refoptim import bench

    assert bench.OPTIMIZERS == {i.name: i.bench for i in INFOS if i.bench is not None}
    assert set(bench.DEFAULT_OPTIMIZERS) == {i.name for i in INFOS if i.bench_default}
    assert set(bench.DEFAULT_OPTIMIZERS) <= set(bench.OPTIMIZERS)


# ============================================================================ the references
@pytest.mark.parametrize("info", INFOS, ids=_ids)
def test_papers_lineage_parent(info):
    assert info.papers, "at least the paper that introduced it"
    for paper in info.papers:
        assert paper.citation.strip() and paper.url.startswith("https://"), paper
    assert info.summary.strip() and info.state.strip() and info.lineage.strip()
    assert info.parent is None or info.parent in NAMES, f"parent {info.parent!r} is not registered"
    assert info.parent != info.name


def _torch_root() -> Path | None:
    spec = importlib.util.find_spec("torch")  # no import: the unit tests need no torch
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).parent


@pytest.mark.parametrize("info", INFOS, ids=_ids)
def test_torch_source_exists(info):
    assert info.torch_source.startswith("torch/optim/") and info.torch_source.endswith(".py")
    root = _torch_root()
    if root is None:
        pytest.skip("torch is not installed")
    assert (root / info.torch_source).is_file(), f"{root / info.torch_source} does not exist"


def test_every_torch_optimizer_is_registered():
    torch = pytest.importorskip("torch")
    theirs = {
        name for name in dir(torch.optim)
        if inspect.isclass(obj := getattr(torch.optim, name)) and issubclass(obj, torch.optim.Optimizer)
        and obj is not torch.optim.Optimizer
    }
    assert theirs == set(NAMES)


# ============================================================================ the manual
@pytest.mark.parametrize("info", INFOS, ids=_ids)
def test_page_exists(info):
    assert (DOCS / f"{info.page}.rst").is_file(), f"docs/{info.page}.rst is missing"


PAGE_SECTIONS = (
    "Lineage and references",
    "Algorithm, arguments, state and torch quirks",
    "The rule in code",
    "Reproducing torch exactly",
    "Trajectory",
    "Example",
    "Differences from other libraries",
)


@pytest.mark.parametrize("info", INFOS, ids=_ids)
def test_page_has_every_part(info):
    """Every page: the sections the optimizer index promises, its lineage, papers and torch
    source (rendered from the registry), its class docstring, and its trajectory plot."""
    text = (DOCS / f"{info.page}.rst").read_text()
    headings = [a for a, b in zip(text.splitlines(), text.splitlines()[1:]) if b.startswith("---") and set(b) == {"-"}]
    assert [h for h in headings if h in PAGE_SECTIONS] == list(PAGE_SECTIONS), headings
    assert f".. refoptim-references:: {info.name}\n" in text
    assert f".. autoclass:: refoptim.{info.name}" in text
    assert re.search(r"^\.\. refoptim-trajectory:: \S", text, re.M), "no trajectory plot"


def test_optimizer_index_toctree_is_the_registry_order():
    text = (DOCS / "optimizers" / "index.rst").read_text()
    assert ".. refoptim-optimizer-table::" in text  # the table is generated from the registry
    toctree = text[text.index(".. toctree::"):]
    entries = [line.strip() for line in toctree.splitlines()[1:] if line.startswith("   ") and not line.strip().startswith(":")]
    assert entries == [i.module for i in INFOS]


def test_optimizer_table_has_one_row_per_entry():
    import sys

    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        registry_tables = importlib.import_module("registry_tables")
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    rows = [line for line in registry_tables.optimizer_table_rst() if line.startswith("   * - :doc:")]
    assert rows == [f"   * - :doc:`/{i.page}`" for i in INFOS]


def _autosummary(text: str, heading: str) -> list[str]:
    """The names of the first autosummary after ``heading`` in docs/api.rst."""
    rest = text[text.index(heading):]
    rest = rest[rest.index(".. autosummary::"):]
    names = []
    for line in rest.splitlines()[1:]:
        if line.strip() and not line.startswith("   "):
            break
        if line.strip() and not line.strip().startswith(":"):
            names.append(line.strip())
    return names


def test_api_reference_lists_the_registry():
    text = (DOCS / "api.rst").read_text()
    assert sorted(_autosummary(text, "Optimizers\n")) == sorted(NAMES)
    assert sorted(_autosummary(text, "Functional API\n")) == sorted(F.__all__)


def _table_rows(text: str, heading: str) -> list[list[str]]:
    """The cells of the rows of the first Markdown table after ``heading``."""
    rest = text[text.index(heading):].splitlines()
    start = next(i for i, line in enumerate(rest) if line.startswith("|"))
    rows = []
    for line in rest[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def test_readme_parity_table_names_every_optimizer():
    """The README's parity table: one row per registered optimizer, nothing else (the rows
    of lr_scheduler and swa_utils are not optimizers)."""
    rows = _table_rows((ROOT / "README.md").read_text(), "## Parity with torch.optim")
    named = [re.match(r"`(\w+)", cells[0]).group(1) for cells in rows if re.match(r"`[A-Z]", cells[0])]
    assert sorted(named) == sorted(NAMES)
    others = [cells[0] for cells in rows if not re.match(r"`[A-Z]", cells[0])]
    assert all(c.startswith(("`lr_scheduler", "`swa_utils")) for c in others), others


def test_backends_foreach_table_names_every_elementwise_optimizer():
    """docs/backends.md's measurement of torch's multi-tensor path: the elementwise
    optimizers (the others have no foreach path to compare), each once."""
    rows = _table_rows((DOCS / "backends.md").read_text(), "### torch's multi-tensor path on the CPU")
    named = [name.strip() for cells in rows for name in cells[0].split(",")]
    assert sorted(named) == sorted(registry.names(elementwise=True))
