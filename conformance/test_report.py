"""``python -m refoptim conformance --report DIR``: the HTML page and its plots, from a real run."""

import json
import re
from html.parser import HTMLParser

import pytest

from refoptim.__main__ import main

pytest.importorskip("matplotlib")


class _Page(HTMLParser):
    """Optimizer sections with their heading, images and worst-cases ids; the text table."""

    def __init__(self):
        super().__init__()
        self.sections, self.section, self.tags, self.pre = {}, None, [], ""
        self.in_worst = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "section" and a.get("class") == "optimizer":
            self.section = self.sections.setdefault(a["id"], {"h2": "", "images": [], "worst": []})
        elif tag == "img" and self.section is not None:
            self.section["images"].append((a["src"], a.get("alt", "")))
        elif tag == "table" and a.get("class") == "worst":
            self.in_worst = True

    def handle_endtag(self, tag):
        while self.tags and self.tags.pop() != tag:
            pass
        if tag == "section":
            self.section = None
        elif tag == "table":
            self.in_worst = False

    def handle_data(self, data):
        if self.tags[-1:] == ["h2"] and self.section is not None:
            self.section["h2"] += data
        elif self.tags[-1:] == ["code"] and self.in_worst and self.section is not None:
            self.section["worst"].append(data)
        elif self.tags[-1:] == ["pre"]:
            self.pre += data


def test_report_has_a_section_per_optimizer_plots_and_worst_cases(tmp_path, capsys):
    report, out_json = tmp_path / "report", tmp_path / "run.json"
    argv = ["conformance", "--optimizer", "Adam", "--optimizer", "LBFGS", "--dtype", "float32", "--steps", "5",
            "--report", str(report), "--json", str(out_json)]
    assert main(argv) == 0
    assert f"wrote the report: {report / 'index.html'}" in capsys.readouterr().out
    rows = json.loads(out_json.read_text())["results"]
    ids = {r["short_id"]: r for r in rows}

    page = _Page()
    text = (report / "index.html").read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    page.feed(text)
    assert {k: v["h2"] for k, v in page.sections.items()} == {"adam": "Adam", "lbfgs": "LBFGS"}
    for name, section in page.sections.items():
        srcs = [src for src, _ in section["images"]]
        # the elementwise runner records the trajectory per step; LBFGS's harness does not (yet)
        assert srcs == ([f"{name}-one-step.png", f"{name}-trajectory.png"] if name == "adam" else [f"{name}-one-step.png"])
        for src, alt in section["images"]:
            assert alt and (report / src).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert section["worst"], f"{name}: no worst cases"
        assert all(i in ids and ids[i]["optimizer"].lower() == name for i in section["worst"])
    # the worst case of Adam is the row with the largest one-step or trajectory figure against its threshold
    adam = [r for r in rows if r["optimizer"] == "Adam"]
    worst = max(adam, key=lambda r: max(max(r["param_ulp"], r["state_ulp"]) / 4, r["trajectory"] / 1e-4))
    assert page.sections["adam"]["worst"][0] == worst["short_id"]
    # the text table, as the CLI prints it, ends the page: every row's short id is in it
    assert all(re.search(rf"\b{i}\b", page.pre) for i in ids)
    assert "total: " in page.pre
