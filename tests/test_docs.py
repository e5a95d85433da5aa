"""The manual's structure stays in step with the package: every scheduler has its page
(formula pulled from the docstring, build-time plot, example), the gallery and the plot
extension cover every scheduler, and the API reference names every public name.

Building the manual itself (``python -m sphinx -W ...``) is CI's job; the part of the
plot extension that draws is tested here when Sphinx and matplotlib are installed.
"""

import re
import struct
import sys
from pathlib import Path

import pytest

import refoptim
from refoptim import functional, lr_scheduler, plot, swa_utils

DOCS = Path(__file__).resolve().parent.parent / "docs"
SCHEDULERS = [n for n in lr_scheduler.__all__ if n != "LRScheduler"]
PAGES = [*SCHEDULERS, "SWALR"]


def _read(relative):
    return (DOCS / relative).read_text(encoding="utf-8")


def test_there_are_fifteen_schedulers_and_swalr():
    assert len(SCHEDULERS) == 15
    assert "SWALR" in swa_utils.__all__


@pytest.mark.parametrize("name", PAGES)
def test_scheduler_page_has_docstring_plot_and_example(name):
    text = _read(f"schedulers/{name}.rst")
    module = "refoptim.swa_utils" if name == "SWALR" else "refoptim.lr_scheduler"
    assert text.startswith(f"{name}\n{'=' * len(name)}\n")
    assert f".. currentmodule:: {module}" in text
    assert re.search(rf"^\.\. autoclass:: {name}$", text, re.MULTILINE), "the formula and arguments come from the docstring"
    assert re.search(rf"^\.\. schedule-plot:: {name}$", text, re.MULTILINE)
    assert f"optim.{module.split('.')[1]}.{name}(" in text, "the example builds this scheduler"
    assert "\\eta" not in text, "the math is the docstring's, pulled by autodoc, never copied"


def test_scheduler_index_lists_every_page():
    text = _read("schedulers/index.rst")
    toctree = text[text.index(".. toctree::"):]
    for name in [*PAGES, "gallery"]:
        assert re.search(rf"^   {name}$", toctree, re.MULTILINE), name


def test_gallery_draws_every_scheduler():
    assert ".. schedule-gallery::" in _read("schedulers/gallery.rst")
    assert sorted(plot.SCHEDULERS) == sorted(SCHEDULERS)
    assert sorted(plot.EXAMPLES) == sorted(SCHEDULERS)


def test_extension_knows_every_scheduler():
    assert _extension().names() == [*plot.SCHEDULERS, "SWALR"]


def test_landing_page_toctree():
    text = _read("index.rst")
    toctree = text[text.index(".. toctree::"):]
    for entry in ("optimizers/index", "schedulers/index", "guides/index", "api", "conformance", "design-notes", "backends"):
        assert re.search(rf"^   {re.escape(entry)}$", toctree, re.MULTILINE), entry


def test_api_reference_names_every_public_name():
    text = _read("api.rst")
    listed = set(re.findall(r"^   ~?([\w.]+)$", text, re.MULTILINE))
    listed |= set(re.findall(r"^\.\. autodata:: (\w+)$", text, re.MULTILINE))
    modules = {"functional", "lr_scheduler", "swa_utils"}
    expected = {n for n in refoptim.__all__ if n not in modules}
    expected |= set(functional.__all__) | set(lr_scheduler.__all__) | set(swa_utils.__all__) | set(plot.__all__)
    assert expected - listed == set()


def _extension():
    pytest.importorskip("sphinx", reason="the docs extension needs Sphinx (pip install -e '.[docs]')")
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        import schedule_plots
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    return schedule_plots


def test_swalr_trace_anneals_to_swa_lr():
    ext = _extension()
    values = ext.swalr_trace(steps=40)
    assert values.lr[0][0] == 0.1
    assert values.lr[0][-1] == ext.SWALR_EXAMPLE["swa_lr"]
    assert values.lr[0][ext.SWALR_EXAMPLE["anneal_epochs"]] == ext.SWALR_EXAMPLE["swa_lr"]
    assert all(a >= b for a, b in zip(values.lr[0], values.lr[0][1:]))


def test_extension_draws_one_png_per_scheduler(tmp_path):
    pytest.importorskip("matplotlib")
    ext = _extension()
    files = ext.render_all(tmp_path)
    assert [f.stem for f in files] == ext.names()
    for f in files:
        head = f.read_bytes()[:24]
        assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", f.name
        assert struct.unpack(">II", head[16:24]) == (640, 400), f.name
