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


# ------------------------------------------------------------------ how schedules are drawn


@pytest.mark.parametrize("name", ["SequentialLR", "CosineAnnealingWarmRestarts", "ReduceLROnPlateau", "ChainedScheduler"])
def test_schedules_are_drawn_as_steps_from_zero(name):
    values = trace(name, parse_arguments(EXAMPLES[name]))
    fig = draw(values)
    for ax in fig.axes:
        assert ax.get_ylim()[0] == 0, "every y-axis starts at 0"
        for line in ax.get_lines():
            assert line.get_drawstyle() == "steps-post"
    assert "epoch" in fig.axes[-1].get_xlabel()


def test_sequential_jump_is_a_vertical_edge_and_its_switch_is_marked():
    values = trace("SequentialLR", parse_arguments(EXAMPLES["SequentialLR"]), steps=30)
    assert values.lr[0][19] != values.lr[0][20]
    line = draw(values).axes[0].get_lines()[0]
    path = line._get_transformed_path().get_fully_transformed_path().vertices  # as drawn, in pixels
    # steps-post: the change at 20 is vertical (two vertices at the x of step 20)
    xs = line.get_transform().transform(np.column_stack([[19, 20], [0, 0]]))[:, 0]
    at_20 = path[np.isclose(path[:, 0], xs[1])]
    assert len(at_20) >= 2 and len(set(np.round(at_20[:, 1], 6))) == 2
    assert values.marks == [("switch to the next scheduler (milestones=[20])", [20.0])]
    assert "milestones [20]" in values.caption


def test_marks_come_from_the_configuration():
    assert trace("CosineAnnealingWarmRestarts", {"T_0": 10, "T_mult": 2}).marks[0][1] == [10.0, 30.0, 70.0]
    assert trace("MultiStepLR", {"milestones": [30, 80]}).marks[0][1] == [30.0, 80.0]
    plateau = trace("ReduceLROnPlateau", {"patience": 5, "factor": 0.5})
    labels = [label for label, _ in plateau.marks]
    assert labels[0] == "metric stops improving (epoch 40)"
    drops = plateau.marks[1][1]
    assert drops[0] == 47.0 and all(plateau.lr[0][int(t)] < plateau.lr[0][int(t) - 1] for t in drops)


def test_draw_marks_the_landmarks_and_labels_the_unit():
    from matplotlib.collections import LineCollection

    values = trace("CyclicLR", parse_arguments(EXAMPLES["CyclicLR"]))
    ax = draw(values).axes[0]
    marked = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(marked) == len(values.marks) == 2
    assert ax.get_legend() is not None
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {label for label, _ in values.marks}
    assert draw(values).axes[-1].get_xlabel().startswith("batch")
    assert trace("OneCycleLR", {"max_lr": 0.1, "total_steps": 10}).unit == "batch"
    assert trace("StepLR", {"step_size": 3}).unit == "epoch"


def test_log_scale_option(tmp_path):
    values = trace("ExponentialLR", {"gamma": 0.9})
    ax = draw(values, log=True).axes[0]
    assert ax.get_yscale() == "log"
    assert draw(values).axes[0].get_yscale() == "linear"
    path = tmp_path / "e.png"
    assert main(["plot", "ExponentialLR", "gamma=0.9", "--log", "-o", str(path)]) == 0
    assert png_size(path) == (640, 400)


def test_captions_are_generated_from_the_configuration():
    one = trace("OneCycleLR", {"max_lr": 0.2, "total_steps": 50, "div_factor": 10.0})
    assert one.lr[0][0] == pytest.approx(0.02)
    assert "max_lr/div_factor = 0.2/10 = 0.02" in one.caption
    assert "lr 0.02 at batch 0" in one.caption and "50 batches" in one.caption
    assert "100 epochs (" in trace("StepLR", {"step_size": 3}).caption
    assert "from lr 0.1" not in one.caption
    cyc = trace("CyclicLR", {"base_lr": 0.01, "max_lr": 0.3, "step_size_up": 5})
    assert "base_lr = 0.01" in cyc.caption and "max_lr = 0.3" in cyc.caption
    plateau = trace("ReduceLROnPlateau", {"patience": 2}, metric="max(1 - epoch / 10, 0)")
    assert "max(1 - epoch / 10, 0)" in plateau.caption and "stops improving at epoch 10" in plateau.caption
    lam = trace("LambdaLR", parse_arguments(["lr_lambda=lambda e: 0.5 ** e"]), steps=3)
    assert lam.title == "LambdaLR(lr_lambda=lambda e: 0.5 ** e)"


# ------------------------------------------------------------------ trajectories

from refoptim.plot import FUNCTIONS, parse_spec, plot_trajectories, spec_options, trajectory  # noqa: E402


def test_trajectory_starts_at_the_start_and_is_refoptims_steps():
    fn = FUNCTIONS["rosenbrock"]
    path = trajectory("Adam:lr=0.05,betas=(0.8,0.99)", on="rosenbrock", steps=7)
    assert path.shape == (8, 2)
    assert path[0].tolist() == list(fn.start)
    # the same optimizer run directly, with the same gradients
    p = refoptim.Parameter(np.array(fn.start))
    opt = refoptim.Adam([p], lr=0.05, betas=(0.8, 0.99))
    for k in range(7):
        p.grad = fn.gradient(p.data)
        opt.step()
        np.testing.assert_array_equal(path[k + 1], p.data)


def test_one_sgd_step_by_hand():
    x, y = FUNCTIONS["rosenbrock"].start
    g = np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])
    path = trajectory("SGD:lr=0.001", on="rosenbrock", steps=1)
    np.testing.assert_allclose(path[1], np.array([x, y]) - 0.001 * g, rtol=0, atol=1e-15)
    saddle = trajectory("SGD:lr=0.1", on="saddle", steps=1)
    sx, sy = FUNCTIONS["saddle"].start
    np.testing.assert_allclose(saddle[1], [sx - 0.1 * 2 * sx, sy - 0.1 * (-2 * sy + 2 * sy ** 3)], atol=1e-15)


def test_analytic_gradients_match_finite_differences():
    for fn in FUNCTIONS.values():
        point = np.array([0.3, -0.7])
        h = 1e-6
        numeric = [(fn.value(point + h * e) - fn.value(point - h * e)) / (2 * h) for e in np.eye(2)]
        np.testing.assert_allclose(fn.gradient(point), numeric, rtol=1e-6)


def test_lbfgs_uses_its_closure_and_converges():
    path = trajectory("LBFGS", on="rosenbrock", steps=40)
    assert not np.array_equal(path[1], path[0])
    np.testing.assert_allclose(path[-1], [1.0, 1.0], atol=1e-3)
    assert spec_options("LBFGS")[2]["line_search_fn"] == "strong_wolfe"


def test_muon_treats_the_point_as_a_1x2_matrix():
    path = trajectory("Muon:lr=0.02,weight_decay=0.0", on="quadratic", steps=3)
    assert path.shape == (4, 2)
    step = path[1] - path[0]
    assert 0 < np.linalg.norm(step) < 0.05  # about lr: a normalised step, not lr * gradient (~0.75)


def test_spec_parsing():
    assert parse_spec("Adam") == ("Adam", {})
    assert parse_spec("SGD:momentum=0.9,nesterov=True") == ("SGD", {"momentum": 0.9, "nesterov": True})
    assert parse_spec("Adam:betas=(0.8, 0.9)") == ("Adam", {"betas": (0.8, 0.9)})
    name, options, defaulted = spec_options("SGD:momentum=0.9", on="quadratic")
    assert options == {"lr": FUNCTIONS["quadratic"].lr["SGD"], "momentum": 0.9} and list(defaulted) == ["lr"]


@pytest.mark.parametrize(
    "spec, message",
    [
        ("Adamm", "unknown optimizer 'Adamm'"),
        ("SparseAdam", "sparse gradients"),
        ("SGD:momentum", "key=value pairs"),
        ("SGD:", "key=value pairs"),
        ("SGD:lr=0.1), print(1", "key=value pairs"),
        ("SGD:lr=abs(1)", "not a Python literal"),
    ],
)
def test_bad_spec_is_a_value_error_naming_it(spec, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_spec(spec)
    assert repr(spec) in str(info.value)


def test_options_the_optimizer_rejects_name_the_spec():
    with pytest.raises(ValueError, match=r"'Adam:bogus=1'.*bogus"):
        trajectory("Adam:bogus=1", steps=1)
    with pytest.raises(ValueError, match="unknown test function"):
        trajectory("Adam", on="himmelblau")


def test_plot_trajectories_is_labelled():
    ax = plot_trajectories(["SGD", "SGD:momentum=0.9"], on="quadratic", steps=5)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0].startswith("SGD [lr=") and labels[1].startswith("SGD:momentum=0.9 [lr=")
    assert any(label.startswith("start") for label in labels)
    assert ax.get_xlabel() == "x" and ax.get_ylabel() == "y" and "5 steps" in ax.get_title()
    assert len(ax.get_lines()[0].get_xdata()) == 6
    np.testing.assert_array_equal(ax.get_lines()[1].get_xydata(), trajectory("SGD:momentum=0.9", "quadratic", 5))


def test_cli_trajectory_writes_a_png(tmp_path, capsys):
    path = tmp_path / "paths.png"
    rc = main(["plot", "--trajectory", "Adam", "SGD:momentum=0.9", "--on", "saddle", "--steps", "10", "-o", str(path)])
    assert rc == 0
    assert png_size(path) == (640, 400)
    assert "Adam, SGD:momentum=0.9 on saddle" in capsys.readouterr().out
    bad = tmp_path / "bad.png"
    assert main(["plot", "--trajectory", "SGD:momentum", "-o", str(bad)]) == 2
    assert "'SGD:momentum'" in capsys.readouterr().err and not bad.exists()
