"""``python -m refoptim bench``: rows, ratios, JSON and errors, on a tiny workload (the
figures themselves are measurements, never asserted)."""

import json

import pytest

from refoptim import bench
from refoptim.__main__ import main


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setitem(bench.WORKLOADS, "t", (3, 1000))
    return "t"


def test_measure_fills_every_figure(tiny):
    row = bench.measure("Adam", tiny, repeats=2)
    assert (row.tensors, row.elements, row.repeats) == (3, 1000, 2)
    assert row.refoptim_ms > 0
    assert set(row.torch_ms) == {"foreach=False", "foreach=True", "fused=True"}
    assert all(v is not None and v > 0 for v in row.torch_ms.values())  # Adam has a fused CPU kernel
    assert row.ratios["foreach=True"] == pytest.approx(row.refoptim_ms / row.torch_ms["foreach=True"])
    assert row.peak_extra_memory > 0


def test_optimizer_without_a_fused_kernel_reports_none(tiny):
    row = bench.measure("Rprop", tiny, repeats=1)
    assert row.torch_ms["fused=True"] is None and row.ratios["fused=True"] is None
    assert row.torch_ms["foreach=False"] > 0


def test_run_prints_one_row_per_pair(tiny, capsys):
    rows = bench.run(["SGD", "AdamW"], [tiny], repeats=1)
    text = capsys.readouterr().out
    assert [(r.optimizer, r.workload) for r in rows] == [("SGD", tiny), ("AdamW", tiny)]
    lines = [line for line in text.splitlines() if line.startswith(("SGD ", "AdamW "))]
    assert len(lines) == 2 and all("x)" in line and line.endswith("x") for line in lines)


def test_cli_json(tiny, tmp_path, monkeypatch):
    path = tmp_path / "bench.json"
    monkeypatch.setattr(bench, "DEFAULT_OPTIMIZERS", ("SGD",))
    real_run = bench.run
    monkeypatch.setattr(bench, "run", lambda o, w, r: real_run(o, [tiny], r))
    assert main(["bench", "--repeats", "1", "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    assert data["torch"].startswith("2.13.0")
    (row,) = data["rows"]
    assert row["optimizer"] == "SGD" and row["workload"] == tiny
    assert set(row["ratios"]) == {"foreach=False", "foreach=True", "fused=True"}


def test_unknown_optimizer(capsys):
    assert main(["bench", "--optimizer", "Nope"]) == 2
    assert "unknown optimizer" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown workload"):
        bench.measure("SGD", "zz")
