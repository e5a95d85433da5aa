"""The conformance table without torch: short ids and brief labels of the matrix, the shared
formatter (:mod:`refoptim.testing.table`) and the HTML report on synthetic results."""

import hashlib
import re
from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from refoptim.testing import table, thresholds
from refoptim.testing.matrix import IMPLEMENTATION_FLAGS, Config, _same_value, configs, constructor_defaults
from refoptim.testing.results import Result, Spread

ALL = configs()


# ------------------------------------------------------------------ short ids, brief labels
def test_short_ids_are_unique_over_the_whole_matrix():
    ids = [c.short_id for c in ALL]
    assert len(ALL) > 1000 and len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[a-z]+-[0-9a-f]{6}", i) for i in ids)
    assert all(c.short_id.startswith(c.optimizer.lower() + "-") for c in ALL)


def test_short_id_is_a_sha256_of_the_id_the_same_everywhere():
    cfg = Config("Adam", {}, "float32")
    assert cfg.id == "Adam-float32-defaults"
    assert cfg.short_id == "adam-" + hashlib.sha256(b"Adam-float32-defaults").hexdigest()[:6]
    assert cfg.short_id == "adam-359588"  # pinned: never Python's salted hash()
    # steps are not part of the id: --steps keeps a configuration's short id
    assert Config("Adam", {}, "float32", steps=3).short_id == cfg.short_id


def test_brief_label_lists_only_what_differs_from_the_constructor_defaults():
    sgd = Config("SGD", {"lr": 1e-2, "momentum": 0.0, "dampening": 0.0, "nesterov": False,
                         "weight_decay": 0.0, "maximize": True})
    assert sgd.brief_label == "lr=0.01, maximize=True"
    assert Config("SGD", {"lr": 1e-3}).brief_label == "defaults"  # torch's default lr
    assert Config("Adam").brief_label == "defaults"
    assert Config("Adam", {"foreach": True, "capturable": False, "amsgrad": True}).brief_label == "amsgrad=True"
    # an array lr is not the float default, and a tuple of arrays is written briefly
    lr = np.asarray(1e-3, dtype=np.float32)
    assert Config("Adam", {"lr": lr}).brief_label == "lr=array(0.001, float32)"
    betas = (np.asarray(0.9, dtype=np.float32), np.asarray(0.999, dtype=np.float32))
    assert Config("Adamax", {"betas": betas}).brief_label == "betas=(array(0.9, float32), array(0.999, float32))"
    assert Config("AdamW", {"weight_decay": 0.0}).brief_label == "weight_decay=0.0"  # AdamW's default is 0.01
    # groups and objective as the full label writes them
    grouped = Config("Adam", {}, "float32", ({"lr": 0.01},), "quadratic")
    assert grouped.brief_label == "groups: {lr=0.01} | quadratic"
    assert Config("LBFGS", {"max_iter": 20, "line_search_fn": "strong_wolfe"}, objective="rosenbrock").brief_label == (
        "line_search_fn='strong_wolfe' | rosenbrock"
    )


def test_same_value_is_strict_about_types():
    assert _same_value(0.0, 0) and _same_value((0.9, 0.999), (0.9, 0.999))
    assert not _same_value(False, 0) and not _same_value(np.asarray(0.001), 0.001)
    assert not _same_value(None, 0) and _same_value(None, None)
    defaults = constructor_defaults("Adam")
    assert not IMPLEMENTATION_FLAGS & set(defaults) and constructor_defaults("SGD")["lr"] == 1e-3
    defaults["lr"] = 1.0  # a new dict per call: the cached one is not touched
    assert constructor_defaults("Adam")["lr"] == 1e-3


def _effective(cfg):
    """What the optimizer is built with: the options over the constructor's defaults."""
    defaults = constructor_defaults(cfg.optimizer)
    merged = {**defaults, **cfg.options}
    return {k: v for k, v in merged.items() if not (k in defaults and _same_value(v, defaults[k]))}


def test_brief_labels_with_dtype_are_unique_except_for_the_same_run_spelled_twice():
    """Brief label + dtype (+ steps) name a run. Where two entries of the matrix share one,
    they are the same optimizer: the matrix lists an option set alone (``lr=0.01``) and
    again among the crossings with every default written out (``lr=0.01, momentum=0.0,
    ...``); ``configs()`` removes duplicates by the full label, so both run, with different
    short ids. The one exception is LBFGS's float64 Rosenbrock with strong Wolfe, listed
    with 1 step and, spelling out the default ``max_iter=20``, with 4: the steps column
    tells them apart."""
    groups = defaultdict(list)
    for c in ALL:
        groups[(c.optimizer, c.dtype, c.brief_label)].append(c)
    shared = {k: v for k, v in groups.items() if len(v) > 1}
    assert shared, "the matrix has no option set spelled twice any more: tighten this test"
    for (optimizer, dtype, label), cfgs in shared.items():
        first = cfgs[0]
        for other in cfgs[1:]:
            assert _same_value(tuple(sorted(_effective(other).items())), tuple(sorted(_effective(first).items()))), label
            assert (other.groups, other.objective) == (first.groups, first.objective)
    by_steps = defaultdict(list)
    for c in ALL:
        by_steps[(c.optimizer, c.dtype, c.brief_label, c.steps)].append(c)
    differ_in_steps_only = {k[:3] for k in shared} - {k[:3] for k, v in by_steps.items() if len(v) > 1}
    assert differ_in_steps_only == {("LBFGS", "float64", "line_search_fn='strong_wolfe' | rosenbrock")}


# ------------------------------------------------------------------ the formatter
def _result(cfg, **figures):
    r = Result(cfg)
    for k, v in figures.items():
        setattr(r, k, v)
    return r


ADAM = [c for c in ALL if c.optimizer == "Adam" and c.dtype == "float32"]
LBFGS = [c for c in ALL if c.optimizer == "LBFGS" and c.dtype == "float32" and c.id not in thresholds.SENSITIVITY]


def test_row_shows_short_id_brief_label_and_the_update_column():
    cfg = ADAM[1]
    r = _result(cfg, param_ulp=1.0, state_ulp=0.5, update_ulp=2.0, trajectory=3e-8)
    columns = table.Columns.fit([cfg])
    header = table.format_header(columns).splitlines()[0]
    row = table.format_row(r, columns, index=2, total=9)
    assert header.split() == ["optimizer", "id", "configuration", "dtype", "steps", "param", "state", "update",
                              "trajectory", "result"]
    assert row.split()[:2] == ["Adam", cfg.short_id] and cfg.brief_label in row
    assert row.split()[-8:] == ["float32", "50", "1", "0.5", "2", "3.00e-08", "pass", "[2/9]"]
    assert row.endswith("3.00e-08  pass   [2/9]")
    # the columns line up with the header
    assert row.index(" pass") == header.index(" result")
    # relative figures: update is '-'
    rel = table.format_row(_result(LBFGS[0], param_ulp=1e-6, state_ulp=2e-6), table.Columns.fit(LBFGS))
    assert "1.0e-06r" in rel and "2.0e-06r" in rel and re.search(r"r +- +0\.00e\+00", rel)
    skipped = table.format_row(_result(cfg, skipped="torch rejects it"), columns)
    assert "SKIPPED: torch rejects it" in skipped and skipped.count(" - ") >= 3


def test_a_long_configuration_wraps_whole_never_cut():
    cfg = max(ALL, key=lambda c: len(c.brief_label))
    columns = table.Columns.fit([cfg], label_width=40)
    assert columns.label == 40
    lines = table.format_row(_result(cfg), columns, index=1, total=1).splitlines()
    assert len(lines) > 1 and lines[0].endswith("[1/1]")
    fragments = [lines[0][columns.indent:columns.indent + columns.label].strip()]
    fragments += [line[columns.indent:].strip() for line in lines[1:]]
    assert all(len(f) <= 40 for f in fragments) and not any(line[:columns.indent].strip() for line in lines[1:])
    assert " ".join(fragments) == cfg.brief_label
    assert "…" not in "\n".join(lines)


def test_format_table_statuses_summary_and_totals():
    limit = thresholds.ONE_STEP_REL["LBFGS"]["float32"]
    results = [
        _result(ADAM[0]),
        _result(ADAM[1], param_ulp=2.0, param_where="step 3, param (5,)", update_ulp=1.5, trajectory=1e-7),
        _result(ADAM[2], param_ulp=9.0, param_where="step 1, param ()"),
        _result(LBFGS[0], state_ulp=3 * limit, state_where="step 2, ro",
                twin=Spread("reversed", 0.0, 3 * limit, 0.0, [])),
    ]
    text = table.format_table(results, title="myopt conformance against refoptim", reference="refoptim", seconds=1.25)
    lines = text.splitlines()
    assert lines[0] == "myopt conformance against refoptim"
    assert "worst teacher-forced one-step error against refoptim" in text
    for r in results:
        assert r.config.short_id in text
    assert "FAIL: param one-step 9 ULP > 4 at step 1, param ()" in text
    assert "SENSITIVE here: state one-step" in text
    assert "worst one-step error of the elementwise optimizers: 2 ULP (" + ADAM[1].short_id in text
    assert "worst one-step error at the update's scale: 1.5 ULP (" + ADAM[1].short_id in text
    assert lines[-1] == "total: 2 passed, 1 failed, 1 sensitive here (1.2 s)"
    assert re.search(r"^  Adam +float32 +2 / 0 +/ 1\.5 +/ 1\.00e-07$", text, flags=re.M)


def test_counts_with_rows_outside_the_results():
    results = [_result(ADAM[0]), _result(ADAM[1], param_ulp=9.0)]
    count = table.count_statuses(results, other_rows=10, other_failures=1, other_sensitive=2)
    assert (count["passed"], count["failed"], count["sensitive"]) == (8, 2, 2)
    assert table.format_totals(count) == "total: 8 passed, 2 failed, 2 sensitive here"


def test_record_has_short_id_brief_and_full_label():
    r = _result(ADAM[3], trajectory_by_step=[0.0, 1e-9])
    rec = table.record(r)
    assert rec["short_id"] == ADAM[3].short_id and rec["brief_label"] == ADAM[3].brief_label
    assert rec["label"] == rec["configuration"] == ADAM[3].label
    assert rec["trajectory_by_step"] == [0.0, 1e-9] and "update_ulp" in rec


# ------------------------------------------------------------------ the HTML report
class _Page(HTMLParser):
    """Sections (with their h2), images and the worst-cases tables' first cells."""

    def __init__(self):
        super().__init__()
        self.sections, self.images, self.worst_ids, self.stack = {}, [], [], []
        self._section = self._in_h2 = self._cell = None
        self._row_cells = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.stack.append(tag)
        if tag == "section" and "optimizer" in (a.get("class") or ""):
            self._section = a["id"]
            self.sections[self._section] = {"h2": "", "images": [], "worst": []}
        elif tag == "h2" and self._section:
            self._in_h2 = True
        elif tag == "img":
            self.images.append(a["src"])
            if self._section:
                self.sections[self._section]["images"].append(a["src"])
            assert a.get("alt")
        elif tag == "table" and "worst" in (a.get("class") or ""):
            self._cell = "table"
        elif tag == "tr" and self._cell:
            self._row_cells = 0
        elif tag == "td" and self._cell:
            self._row_cells += 1

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        self.stack.pop()
        if tag == "section":
            self._section = None
        elif tag == "h2":
            self._in_h2 = False
        elif tag == "table":
            self._cell = None

    def handle_data(self, data):
        if self._in_h2 and self._section:
            self.sections[self._section]["h2"] += data
        if self._cell and self._row_cells == 1 and self.stack[-1] == "code" and self._section:
            self.sections[self._section]["worst"].append(data)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        self.stack.pop()


VOID = {"meta", "img", "br", "hr", "link", "input"}


def parse_report(path: Path) -> _Page:
    page = _Page()
    text = path.read_text(encoding="utf-8")
    # void elements have no end tag: write them self-closed for the stack check
    text = re.sub(r"<(%s)(\s[^>]*)?>" % "|".join(VOID), lambda m: m.group(0)[:-1] + "/>", text)
    page.feed(text)
    page.close()
    assert page.stack == [], page.stack
    return page


def test_html_report_on_synthetic_results(tmp_path):
    pytest.importorskip("matplotlib")
    from refoptim.testing.report_html import write_report

    limit = thresholds.ONE_STEP_REL["LBFGS"]["float32"]
    results = [
        _result(c, param_ulp=float(i % 3), state_ulp=0.5 * (i % 2), update_ulp=float(i % 4),
                trajectory=1e-8 * i, trajectory_by_step=[1e-9 * i * s for s in range(c.steps)])
        for i, c in enumerate(ADAM[:12])
    ]
    results.append(_result(ADAM[12], param_ulp=7.0, param_where="step 4, param (5,)"))  # a failure
    results += [_result(c, state_ulp=limit * (i + 1) / 10, trajectory=1e-6) for i, c in enumerate(LBFGS[:5])]
    page_path = write_report(results, tmp_path / "rep", title="synthetic <run>", seconds=1.0)
    assert page_path == tmp_path / "rep" / "index.html"
    page = parse_report(page_path)
    assert set(page.sections) == {"adam", "lbfgs"}
    assert page.sections["adam"]["h2"] == "Adam" and page.sections["lbfgs"]["h2"] == "LBFGS"
    for src in page.images:
        assert (tmp_path / "rep" / src).stat().st_size > 1000 and src.endswith(".png")
    assert page.sections["adam"]["images"] == ["adam-one-step.png", "adam-trajectory.png"]
    assert page.sections["lbfgs"]["images"] == ["lbfgs-one-step.png"]  # no per-step figures recorded
    # worst cases: the failure first, then the nearest to their thresholds
    assert page.sections["adam"]["worst"][0] == ADAM[12].short_id
    assert page.sections["lbfgs"]["worst"][0] == LBFGS[4].short_id
    text = page_path.read_text()
    assert "synthetic &lt;run&gt;" in text and "<run>" not in text
    assert "total: 17 passed, 1 failed" in text
