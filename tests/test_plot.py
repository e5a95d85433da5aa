"""``python -m refoptim plot`` and ``refoptim.plot``: the values drawn are the scheduler's,
the file is a real PNG of the requested size, every scheduler draws, and a missing
matplotlib gives a clear error."""

import struct
import sys

import numpy as np
import pytest

import refoptim
from refoptim import lr_scheduler
from refoptim.__main__ import main
from refoptim.plot import EXAMPLES, SCHEDULERS, draw, parse_arguments, trace

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    """(width, height) from the IHDR chunk, after checking the signature and chunk type."""
    with open(path, "rb") as fh:
        head = fh.read(24)
    assert head[:8] == PNG_SIGNATURE, "not a PNG file"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def direct_lrs(make, lrs, steps, momentum_key=None):
    """The schedule recorded by hand: a fresh SGD, the scheduler, step by step."""
    groups = [{"params": [refoptim.Parameter(np.zeros(1))], "lr": lr} for lr in lrs]
    opt = refoptim.SGD(groups, lr=lrs[0], momentum=0.9)
    sched = make(opt)
    out = [[] for _ in lrs]
    for t in range(steps):
        for g, group in enumerate(opt.param_groups):
            out[g].append(group["lr"] if momentum_key is None else group[momentum_key])
        if t < steps - 1:
            opt.step()
            sched.step()
    return out


def test_every_scheduler_has_an_example():
    assert set(EXAMPLES) == set(SCHEDULERS)
    assert set(SCHEDULERS) == set(lr_scheduler.__all__) - {"LRScheduler"}


def test_trace_is_the_schedule_stepped_by_hand():
    got = trace("StepLR", {"step_size": 3, "gamma": 0.5}, lrs=[0.2, 0.1], steps=10)
    want = direct_lrs(lambda o: lr_scheduler.StepLR(o, step_size=3, gamma=0.5), [0.2, 0.1], 10)
    assert got.lr == want
    assert got.momentum is None
    assert got.steps == 10


def test_trace_records_the_cycled_momentum():
    args = {"max_lr": 1.0, "total_steps": 30}
    got = trace("OneCycleLR", args, lrs=[0.1], steps=None)
    assert got.steps == 30  # OneCycleLR's total_steps by default
    want_lr = direct_lrs(lambda o: lr_scheduler.OneCycleLR(o, **args), [0.1], 30)
    want_m = direct_lrs(lambda o: lr_scheduler.OneCycleLR(o, **args), [0.1], 30, "momentum")
    assert got.lr == want_lr
    assert got.momentum == want_m
    assert got.momentum_name == "momentum"
    adam = trace("OneCycleLR", args, optimizer="Adam")
    assert adam.momentum_name == "beta1" and adam.momentum is not None
    assert min(adam.momentum[0]) == pytest.approx(0.85) and max(adam.momentum[0]) == pytest.approx(0.95)


def test_parse_arguments_composes_schedulers_and_lambdas():
    args = parse_arguments(EXAMPLES["SequentialLR"])
    assert args["milestones"] == [20]
    got = trace("SequentialLR", args, lrs=[0.1], steps=25)
    assert got.lr[0][:20] == [pytest.approx(0.01)] * 20
    assert got.lr[0][20] == 0.1
    lam = parse_arguments(["lr_lambda=lambda e: 0.5 ** e"])["lr_lambda"]
    assert lam(3) == 0.125


@pytest.mark.parametrize(
    "item, message",
    [("gamma", "not of the form name=value"), ("gamma=(", "cannot read"), ("x=open('f')", "cannot read")],
)
def test_parse_arguments_errors(item, message):
    with pytest.raises(ValueError, match=message):
        parse_arguments([item])


def test_trace_errors():
    with pytest.raises(ValueError, match="unknown scheduler 'Nope'"):
        trace("Nope")
    with pytest.raises(ValueError, match="optimizer must be"):
        trace("StepLR", {"step_size": 1}, optimizer="RMSprop")
    with pytest.raises(ValueError, match="steps must be at least 1"):
        trace("StepLR", {"step_size": 1}, steps=0)


matplotlib = pytest.importorskip("matplotlib")


@pytest.mark.parametrize("name", SCHEDULERS)
def test_every_scheduler_draws_its_values(name, tmp_path):
    values = trace(name, parse_arguments(EXAMPLES[name]), lrs=[0.1, 0.05], steps=None if name == "OneCycleLR" else 60)
    path = tmp_path / f"{name}.png"
    fig = draw(values, str(path), width=5.0, height=3.0, dpi=80)
    assert png_size(path) == (400, 240)
    lr_lines = fig.axes[0].get_lines()
    assert len(lr_lines) == 2
    for line, ys in zip(lr_lines, values.lr):
        assert list(line.get_ydata()) == ys
        assert list(line.get_xdata()) == list(range(values.steps))
    assert len(fig.axes) == (2 if values.momentum is not None else 1)
    if values.momentum is not None:
        for line, ys in zip(fig.axes[1].get_lines(), values.momentum):
            assert list(line.get_ydata()) == ys


def test_cli_writes_the_png(tmp_path, capsys):
    path = tmp_path / "steplr.png"
    rc = main(["plot", "StepLR", "step_size=30", "gamma=0.1", "--lr", "0.05", "-o", str(path)])
    assert rc == 0
    assert png_size(path) == (640, 400)
    out = capsys.readouterr().out
    assert "StepLR(step_size=30, gamma=0.1)" in out and "100 steps" in out


def test_cli_example_and_size(tmp_path):
    path = tmp_path / "cyclic.png"
    rc = main(["plot", "CyclicLR", "--example", "--steps", "50", "--width", "4", "--height", "2", "--dpi", "50", "-o", str(path)])
    assert rc == 0
    assert png_size(path) == (200, 100)


def test_cli_bad_arguments_exit_2(tmp_path, capsys):
    path = tmp_path / "x.png"
    assert main(["plot", "StepLR", "gamma=0.1", "-o", str(path)]) == 2
    assert "step_size" in capsys.readouterr().err
    assert not path.exists()


def test_cli_without_matplotlib_says_how_to_install(tmp_path, capsys, monkeypatch):
    for mod in list(sys.modules):
        if mod == "matplotlib" or mod.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    path = tmp_path / "x.png"
    assert main(["plot", "StepLR", "step_size=3", "-o", str(path)]) == 2
    assert 'pip install "refoptim[plot]"' in capsys.readouterr().err
    assert not path.exists()


def test_the_readme_plot_commands_run(tmp_path):
    import pathlib
    import shlex

    readme = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text()
    commands = [line.split("#")[0] for line in readme.splitlines() if line.startswith("python -m refoptim plot ")]
    assert len(commands) >= 3
    for command in commands:
        argv = shlex.split(command)[3:]
        out = tmp_path / argv[argv.index("-o") + 1]
        argv[argv.index("-o") + 1] = str(out)
        assert main(argv) == 0, command
        assert png_size(out) == (640, 400)
