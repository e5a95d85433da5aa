"""``python -m refoptim bench``: rows, ratios, page faults and ``sys`` time, fresh
subprocesses, allocator settings, JSON, Markdown and errors, on a tiny workload (the
figures themselves are measurements, never asserted beyond being sensible)."""

import json

import os

import pytest

from refoptim import bench, registry
from refoptim.__main__ import main


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setitem(bench.WORKLOADS, "t", (3, 1000))
    return "t"


def _figures_are_sensible(row):
    assert row.refoptim_ms > 0 and row.refoptim_faults >= 0 and row.refoptim_sys_ms >= 0
    assert set(row.torch_faults) == set(row.torch_sys_ms) == set(row.torch_ms)
    for v, ms in row.torch_ms.items():
        if ms is None:
            assert row.torch_faults[v] is None and row.torch_sys_ms[v] is None
        else:
            assert ms > 0 and row.torch_faults[v] >= 0 and row.torch_sys_ms[v] >= 0
    assert row.peak_extra_memory > 0


def test_measure_fills_every_figure(tiny):
    row = bench.measure("Adam", tiny, repeats=2)
    assert (row.tensors, row.elements, row.repeats) == (3, 1000, 2)
    assert row.refoptim_ms > 0
    assert set(row.torch_ms) == {"foreach=False", "foreach=True", "fused=True"}
    assert all(v is not None and v > 0 for v in row.torch_ms.values())  # Adam has a fused CPU kernel
    assert row.ratios["foreach=True"] == pytest.approx(row.refoptim_ms / row.torch_ms["foreach=True"])
    assert row.peak_extra_memory > 0
    _figures_are_sensible(row)
    assert (row.process, row.env) == ("shared", {})
    as_json = json.loads(json.dumps(row.as_dict()))
    for key in ("refoptim_faults", "refoptim_sys_ms", "torch_faults", "torch_sys_ms", "process", "env", "env_seen"):
        assert key in as_json


def test_page_faults_count_fresh_memory():
    """The counter behind faults/step sees memory being touched afresh."""
    import mmap

    def touch_fresh_pages():
        with mmap.mmap(-1, 1 << 22) as m:  # 4 MB of new anonymous memory, every page written
            m.write(b"\1" * (1 << 22))

    timing = bench._timed(touch_fresh_pages, 3)
    assert timing.faults >= 1 and timing.sys_ms >= 0 and timing.ms > 0
    assert bench._timed(lambda: None, 3).faults < timing.faults


def test_implementations_take_turns_and_each_is_charged_its_own_faults():
    """The shared process times one step of each implementation per round, the first of
    the round moving on, so a drift of the machine's speed reaches every side alike; page
    faults are read around each step, so a side that touches fresh memory does not charge
    the other."""
    import mmap

    calls = []

    def touch_fresh_pages():
        calls.append("touch")
        with mmap.mmap(-1, 1 << 22) as m:
            m.write(b"\1" * (1 << 22))

    def idle():
        calls.append("idle")

    timings = bench._timed_together({"touch": (touch_fresh_pages, None), "idle": (idle, None)}, 4)
    assert calls == ["touch", "idle", "idle", "touch", "touch", "idle", "idle", "touch"]
    assert timings["touch"].faults >= 100 * max(timings["idle"].faults, 0.01)
    assert timings["touch"].ms > 0 and timings["idle"].ms >= 0


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
    assert all("faults/step" in line and "sys ms/step" in line for line in lines)
    header = text.splitlines()[1]
    assert "faults/step" in header and "sys ms/step" in header and "process" in header


def test_every_elementwise_optimizer_is_benchmarked():
    assert bench.ALL_OPTIMIZERS == registry.names(elementwise=True)
    assert len(bench.ALL_OPTIMIZERS) == 11
    assert set(bench.DEFAULT_OPTIMIZERS) < set(bench.ALL_OPTIMIZERS)


def test_cli_all_selects_the_eleven(monkeypatch):
    seen = {}

    def fake_run(optimizers, workloads, repeats, **options):
        seen.update(optimizers=optimizers, options=options)
        return []

    monkeypatch.setattr(bench, "run", fake_run)
    assert main(["bench", "--all", "--repeats", "1"]) == 0
    assert tuple(seen["optimizers"]) == registry.names(elementwise=True)
    assert seen["options"] == {"process": "both", "rounds": 3}
    assert main(["bench", "--process", "shared", "--malloc-env", "--optimizer", "SGD", "--rounds", "1"]) == 0
    assert seen["optimizers"] == ["SGD"] and seen["options"] == {"malloc_env": [], "rounds": 1}
    assert main(["bench", "--process", "fresh", "--malloc-env", "MALLOC_ARENA_MAX=2", "--malloc-env", "A=B=C"]) == 0
    assert seen["optimizers"] is None  # the registry's bench_default ones
    assert seen["options"] == {"process": "fresh", "malloc_env": [("MALLOC_ARENA_MAX", "2"), ("A", "B=C")], "rounds": 3}
    assert main(["bench", "--process", "shared", "--optimizer", "SGD"]) == 0
    assert seen["options"] == {}  # nothing in fresh processes: no rounds
    assert main(["bench", "--rounds", "0"]) == 2
    assert main(["bench", "--malloc-env", "NOEQUALS"]) == 2
    assert main(["bench", "--all", "--optimizer", "SGD"]) == 2


def test_fresh_process_returns_the_same_structure(tiny):
    shared = bench.measure("Rprop", tiny, repeats=1, torch_variants=("foreach=True", "fused=True"))
    fresh = bench.measure("Rprop", tiny, repeats=1, torch_variants=("foreach=True", "fused=True"), process="fresh")
    assert fresh.process == "fresh" and shared.process == "shared"
    assert set(fresh.as_dict()) == set(shared.as_dict())
    for row in (shared, fresh):
        assert set(row.torch_ms) == {"foreach=True", "fused=True"}
        assert row.torch_ms["fused=True"] is None  # no fused Rprop in torch
        _figures_are_sensible(row)
    # the same seeded data and options: the same state, so the same extra memory
    assert fresh.peak_extra_memory == pytest.approx(shared.peak_extra_memory, rel=0.05)


def test_fresh_rounds_take_turns_and_report_the_median_process(tiny, monkeypatch):
    """``rounds`` fresh processes per implementation, launched in turns; each
    implementation's figures come from its process with the median time."""
    launched = []
    times = iter([5.0, 9.0, 7.0, 1.0, 3.0, 2.0])  # refoptim, torch, torch, refoptim, refoptim, torch

    def fake_fresh(name, side, workload, repeats, backend, env, seed=0):
        launched.append(side)
        ms = next(times)
        return {"ms": ms, "faults": ms * 10, "sys_ms": 0.0, "memory": ms / 100, "env_seen": {}}

    monkeypatch.setattr(bench, "_fresh", fake_fresh)
    row = bench.measure("SGD", tiny, repeats=1, torch_variants=("foreach=True",), process="fresh", rounds=3)
    assert launched == ["refoptim", "foreach=True", "foreach=True", "refoptim", "refoptim", "foreach=True"]
    assert (row.refoptim_ms, row.refoptim_faults, row.peak_extra_memory) == (3.0, 30.0, 0.03)
    assert (row.torch_ms["foreach=True"], row.torch_faults["foreach=True"]) == (7.0, 70.0)
    with pytest.raises(ValueError, match="rounds"):
        bench.measure("SGD", tiny, repeats=1, process="fresh", rounds=0)


def test_malloc_env_reaches_the_fresh_process(tiny, monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    monkeypatch.setenv("MALLOC_TOP_PAD_", "131072")  # the caller's environment is passed on unchanged
    row = bench.measure("SGD", tiny, repeats=1, torch_variants=(), process="fresh", env={"MALLOC_ARENA_MAX": "1"})
    assert row.env == {"MALLOC_ARENA_MAX": "1"}
    # whatever else the caller has (dask's distributed sets MALLOC_TRIM_THRESHOLD_ in
    # os.environ when imported) reaches the child too
    callers = {k: v for k, v in os.environ.items() if k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    assert callers["MALLOC_TOP_PAD_"] == "131072"
    assert row.env_seen == {**callers, "MALLOC_ARENA_MAX": "1"}
    with pytest.raises(ValueError, match="fresh"):
        bench.measure("SGD", tiny, repeats=1, env={"MALLOC_ARENA_MAX": "1"})


def test_run_configurations():
    assert bench._configs("shared", None) == [("shared", {})]
    assert bench._configs("both", None) == [("shared", {}), ("fresh", {})]
    assert bench._configs("shared", []) == [("shared", {}), ("fresh", {})] + [
        ("fresh", {k: v}) for k, v in bench.MALLOC_SETTINGS
    ]
    assert bench._configs("fresh", {"MALLOC_ARENA_MAX": 2}) == [("fresh", {}), ("fresh", {"MALLOC_ARENA_MAX": "2"})]
    assert {k for k, _ in bench.MALLOC_SETTINGS} == {"MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_ARENA_MAX"}
    with pytest.raises(ValueError, match="unknown process"):
        bench._configs("nope", None)


def _row(name, workload, ms, foreach_ms, process="fresh", env=None):
    return bench.Row(
        name, workload, 1, 10, ms, {"foreach=False": ms, "foreach=True": foreach_ms, "fused=True": None},
        process=process, env=env or {},
    )


def test_malloc_changes_and_markdown():
    trim = {"MALLOC_TRIM_THRESHOLD_": "1000000000"}
    rows = [
        _row("SGD", "a", 1.0, 2.0, "shared"),
        _row("SGD", "a", 1.0, 2.0),
        _row("SGD", "a", 3.0, 2.0, env=trim),  # ratio 0.5 -> 1.5: 3x worse
        _row("Adam", "a", 2.0, 2.0, "shared"),
        _row("Adam", "a", 2.0, 2.0),
        _row("Adam", "a", 2.0, 4.0, env=trim),  # ratio 1.0 -> 0.5: better
    ]
    (change,) = bench.malloc_changes(rows)
    assert change["env"] == trim and change["worst"] == "SGD a"
    assert change["worst_change"] == pytest.approx(3.0)
    assert change["changes"]["Adam a"] == pytest.approx(0.5)
    assert (change["min_ratio"], change["max_ratio"]) == (0.5, 1.5)
    text = bench.markdown(rows)
    tables = [t for t in text.split("\n\n") if t.startswith("|")]
    assert len(tables) == 3
    summary = tables[0].splitlines()
    assert summary[0] == "| optimizer | a 1 x 10 (one process) | a 1 x 10 (fresh processes) |"
    assert [line.split(" | ")[0] for line in summary[2:]] == ["| SGD", "| Adam"]  # one row per optimizer
    assert summary[2] == "| SGD | 0.50x | 0.50x |"
    for table in tables:
        widths = {line.count("|") for line in table.splitlines()}
        assert len(widths) == 1  # every row as wide as the header
    assert "**3.00** (SGD a)" in tables[2]


def test_cli_json_and_markdown(tiny, tmp_path, monkeypatch):
    path, md = tmp_path / "bench.json", tmp_path / "bench.md"
    monkeypatch.setattr(bench, "DEFAULT_OPTIMIZERS", ("SGD", "Adam"))
    real_run = bench.run
    monkeypatch.setattr(bench, "run", lambda o, w, r, **k: real_run(o, [tiny], r, **k))
    assert main(["bench", "--repeats", "1", "--process", "shared", "--json", str(path), "--markdown", str(md)]) == 0
    data = json.loads(path.read_text())
    assert data["torch"].startswith("2.13.0")
    assert [row["optimizer"] for row in data["rows"]] == ["SGD", "Adam"]
    row = data["rows"][0]
    assert row["workload"] == tiny and row["process"] == "shared"
    assert set(row["ratios"]) == {"foreach=False", "foreach=True", "fused=True"}
    assert row["refoptim_faults"] >= 0 and row["refoptim_sys_ms"] >= 0
    assert data["malloc_changes"] == []
    summary = md.read_text().split("\n\n")[1].splitlines()
    assert summary[0] == "| optimizer | t 3 x 1000 |"
    assert [line.split(" | ")[0] for line in summary[2:]] == ["| SGD", "| Adam"]


def test_unknown_optimizer(capsys):
    assert main(["bench", "--optimizer", "Nope"]) == 2
    assert "unknown optimizer" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown workload"):
        bench.measure("SGD", "zz")


def test_cli_numba_turns_the_compiled_evaluation_on_here_and_for_fresh_processes(tiny, monkeypatch, capsys):
    """``bench --numba``: the compiled evaluation on in this process and, through the
    environment, in the fresh subprocesses; the header line says so."""
    pytest.importorskip("numba")
    from refoptim import _scratch

    monkeypatch.setattr(_scratch, "NUMBA", False)  # restored after the test, as is the variable
    monkeypatch.setenv("REFOPTIM_NUMBA", "0")
    monkeypatch.setattr(bench, "DEFAULT_OPTIMIZERS", ("Adam",))
    real_run = bench.run
    monkeypatch.setattr(bench, "run", lambda o, w, r, **k: real_run(o, [tiny], r, **k))
    assert main(["bench", "--repeats", "1", "--process", "shared", "--numba"]) == 0
    assert "compiled evaluation (REFOPTIM_NUMBA) on" in capsys.readouterr().out
    assert _scratch.NUMBA is True and os.environ["REFOPTIM_NUMBA"] == "1"
