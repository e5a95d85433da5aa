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


def test_known_deviations_are_shown_not_failed_and_must_keep_missing(monkeypatch, capsys):
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

    # A listed case that passes fails the run, so the list stays true.
    stale = configs(["SGD"], ("float64",), steps=5)[0]
    monkeypatch.setattr(thresholds, "KNOWN_DEVIATIONS", {stale.id: "stale entry"})
    assert main(["conformance", "--optimizer", "SGD", "--dtype", "float64", "--steps", "5"]) == 1
    assert "listed in KNOWN_DEVIATIONS" in capsys.readouterr().out


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
