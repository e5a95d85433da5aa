"""``python -m refoptim conformance``: the table, the total line, the JSON and the exit code."""

import json

from refoptim.__main__ import main


def test_conformance_command_prints_table_and_total(tmp_path, capsys):
    out_json = tmp_path / "conf.json"
    code = main(["conformance", "--optimizer", "SGD", "--dtype", "float64", "--steps", "5", "--json", str(out_json)])
    text = capsys.readouterr().out
    assert code == 0
    data = json.loads(out_json.read_text())
    n = len(data["results"])
    assert n > 10 and all(r["passed"] for r in data["results"])
    assert f"total: {n} passed, 0 failed" in text
    assert "worst one-step error" in text
    assert f"[{n}/{n}]" in text  # progress on every row
    # every row is identifiable: its short id, its brief label whole (wrapped, never cut)
    header = next(line for line in text.splitlines() if line.startswith("optimizer "))
    assert header.split() == ["optimizer", "id", "configuration", "dtype", "steps", "param", "state", "update",
                              "trajectory", "result"]
    rows = [line for line in text.splitlines() if line.startswith("SGD ")]
    assert len(rows) == n and len({row.split()[1] for row in rows}) == n and "…" not in text
    for r in data["results"]:
        assert r["label"] == r["configuration"]
        assert _row_label(text, r["short_id"]) == r["brief_label"]
        if not r["configuration"].endswith("| sparse"):  # the elementwise runner records every step
            assert len(r["trajectory_by_step"]) == r["steps"] and r["trajectory_by_step"][-1] == r["trajectory"]
        assert r["update_ulp"] >= 0


def _row_label(text, short_id):
    """The configuration cell of the row of ``short_id``, its continuation lines joined."""
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("optimizer "))
    start, end = header.index("configuration"), header.index("dtype")
    i = next(i for i, line in enumerate(lines) if line.split()[1:2] == [short_id])
    label = lines[i][start:end].strip()
    for line in lines[i + 1:]:
        if not line.startswith(" " * start) or not line.strip():
            break
        label += " " + line.strip()
    return label


def test_only_reruns_the_rows_named_by_short_id(tmp_path, capsys):
    from refoptim.testing.matrix import configs

    picked = configs(steps=3)[3::150]
    out_json = tmp_path / "only.json"
    code = main(["conformance", "--steps", "3", "--json", str(out_json), "--only", *[c.short_id for c in picked]])
    text = capsys.readouterr().out
    assert code == 0
    assert [r["short_id"] for r in json.loads(out_json.read_text())["results"]] == [c.short_id for c in picked]
    assert {c.optimizer for c in picked} > {"SGD", "Adam"}
    assert f"total: {len(picked)} passed, 0 failed" in text
    assert "every lr, momentum, betas" not in text  # no schedulers with --only
    assert main(["conformance", "--only", "adam-zzzzzz", picked[0].short_id]) == 2
    assert "unknown configuration id(s): adam-zzzzzz" in capsys.readouterr().err


def test_conformance_command_rejects_unknown_optimizer(capsys):
    assert main(["conformance", "--optimizer", "Nope"]) == 2
    assert "unknown optimizer" in capsys.readouterr().err


def test_conformance_command_fails_when_a_case_misses_its_threshold(monkeypatch, capsys):
    # Demand bit-identity of float32 Adam: torch's MKL sqrt makes some cases miss it.
    from refoptim.testing import thresholds

    monkeypatch.setitem(thresholds.ONE_STEP_ULP, "float32", 0.0)
    code = main(["conformance", "--optimizer", "Adam", "--dtype", "float32", "--steps", "50"])
    text = capsys.readouterr().out
    assert code == 1
    assert "FAIL: param one-step" in text
    assert " failed (" in text and ", 0 failed" not in text


def test_known_deviations_are_shown_not_failed_and_reported_where_not_seen(monkeypatch, capsys, tmp_path):
    from refoptim.testing import thresholds
    from refoptim.testing.matrix import configs
    from refoptim.testing.runner import run_config

    # Demand bit-identity of float32 Adam and list exactly the cases that miss it.
    monkeypatch.setitem(thresholds.ONE_STEP_ULP, "float32", 0.0)
    missing = [c for c in configs(["Adam"], ("float32",)) if not run_config(c).passed]
    assert missing, "expected some float32 Adam case to differ from torch by a ULP"
    monkeypatch.setattr(thresholds, "KNOWN_DEVIATIONS", {c.id: "torch's MKL sqrt" for c in missing})
    assert main(["conformance", "--optimizer", "Adam", "--dtype", "float32"]) == 0
    text = capsys.readouterr().out
    assert "KNOWN: param one-step" in text and "torch's MKL sqrt" in text
    assert f", 0 failed, {len(missing)} known deviation" in text

    # A listed case that passes on this machine is reported, not failed: torch's CPU
    # results move with the machine (MKL sqrt, reduction orders), the verdict must not.
    not_seen = configs(["SGD"], ("float64",), steps=5)[0]
    monkeypatch.setattr(thresholds, "KNOWN_DEVIATIONS", {not_seen.id: "measured elsewhere"})
    out_json = tmp_path / "conf.json"
    argv = ["conformance", "--optimizer", "SGD", "--dtype", "float64", "--steps", "5", "--json", str(out_json)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "KNOWN, not seen here" in text and "measured elsewhere" in text
    assert ", 0 failed, 1 known deviation (1 not seen here)" in text
    rows = {r["configuration"]: r for r in json.loads(out_json.read_text())["results"]}
    assert rows[not_seen.label]["status"] == "known-not-seen" and rows[not_seen.label]["passed"]


def test_conformance_command_includes_the_schedulers(capsys):
    from refoptim.testing.schedulers import CONFIGS

    assert main(["conformance", "--dtype", "float64", "--steps", "2"]) == 0
    text = capsys.readouterr().out
    assert "every lr, momentum, betas == torch's" in text
    rows = [line for line in text.splitlines() if line.split()[:1] and line.split()[0] in CONFIGS]
    assert len(rows) == 3 * len(CONFIGS) and all(line.rstrip().endswith("pass") for line in rows)
    from refoptim.testing.swa import AVERAGING, SWALR_CASES

    swalr = [line for line in text.splitlines() if line.startswith("SWALR ")]
    averaged = [line for line in text.splitlines() if line.startswith("AveragedModel ")]
    assert len(swalr) == len(SWALR_CASES) and len(averaged) == 2 * len(AVERAGING)
    assert all(line.rstrip().endswith("pass") for line in swalr + averaged)


def _lbfgs_results(monkeypatch, judge):
    """Run the CLI over two LBFGS configurations with ``runner.run_config`` replaced by
    constructed results (``judge(result)`` sets their figures): fast, and any verdict."""
    from refoptim.testing import runner
    from refoptim.testing.matrix import configs

    todo = configs(["LBFGS"], ("float32",))[:2]
    monkeypatch.setattr("refoptim.testing.matrix.configs", lambda *a, **k: todo)

    def fake(cfg, *args, **kwargs):
        result = runner.Result(cfg)
        if cfg is todo[0]:
            judge(result)
        return result

    monkeypatch.setattr(runner, "run_config", fake)
    return todo


def test_a_miss_within_torchs_own_spread_is_sensitive_here_not_failed(monkeypatch, capsys, tmp_path):
    from refoptim.testing import thresholds
    from refoptim.testing.runner import Spread

    limit = thresholds.ONE_STEP_REL["LBFGS"]["float32"]

    def judge(r):
        r.state_ulp, r.state_where = 6 * limit, "step 2, ro"
        r.counter_errors = ["free-running: n_iter 10 != torch's 9"]
        r.twin = Spread("reversed, accurate", 0.0, 2 * limit, 0.0, ["reversed, free-running: n_iter 8 != torch's 9"])

    _lbfgs_results(monkeypatch, judge)
    out_json = tmp_path / "conf.json"
    assert main(["conformance", "--optimizer", "LBFGS", "--dtype", "float32", "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "SENSITIVE here: free-running: n_iter 10 != torch's 9; state one-step" in text
    assert "torch's twin (reversed, accurate): param 0, state 0.0002" in text
    assert "total: 1 passed, 0 failed, 1 sensitive here" in text
    first = json.loads(out_json.read_text())["results"][0]
    assert first["status"] == "sensitive" and first["twin"]["state"] == 2 * limit


def test_a_miss_beyond_torchs_own_spread_fails(monkeypatch, capsys):
    from refoptim.testing import thresholds
    from refoptim.testing.runner import Spread

    limit = thresholds.ONE_STEP_REL["LBFGS"]["float32"]

    def judge(r):
        r.param_ulp, r.param_where = 3 * limit, "step 1, param (3,)"
        r.twin = Spread("reversed, accurate", limit / 10, limit / 10, 0.0, [])

    _lbfgs_results(monkeypatch, judge)
    assert main(["conformance", "--optimizer", "LBFGS", "--dtype", "float32"]) == 1
    text = capsys.readouterr().out
    assert "FAIL: param one-step" in text and "torch's twin (reversed, accurate)" in text
    assert "total: 1 passed, 1 failed" in text


def test_the_sensitivity_section_is_reported_and_never_fails(monkeypatch, capsys):
    from refoptim.testing import thresholds
    from refoptim.testing.runner import Spread

    def judge(r):
        r.trajectory = 1.0  # far off, and the twin agrees with torch: still not gating
        r.twin = Spread("reversed, accurate")

    todo = _lbfgs_results(monkeypatch, judge)
    monkeypatch.setattr(thresholds, "SENSITIVITY", {todo[0].id: "ill-conditioned"})
    assert main(["conformance", "--optimizer", "LBFGS", "--dtype", "float32"]) == 0
    text = capsys.readouterr().out
    section = text[text.index("sensitivity section (not gating)") : text.index("worst per optimizer")]
    assert todo[0].short_id in section and "refoptim misses where the twin does not (not gating)" in section
    assert todo[1].short_id not in section
    assert "total: 1 passed, 0 failed, 1 in the sensitivity section (not gating)" in text


def test_the_runner_draws_the_public_torch_free_inputs():
    """The torch runner, compare and the golden corpus draw one seeded source
    (refoptim.testing.inputs): they cannot drift apart."""
    from refoptim.testing import inputs, runner

    assert runner.Gradients is inputs.Gradients and runner.initial_values is inputs.initial_values
