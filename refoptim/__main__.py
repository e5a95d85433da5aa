"""Command line: ``python -m refoptim conformance``, ``plot``, ``bench``, ``fingerprint``, ``backends`` and ``golden``.

``conformance`` runs the whole configuration matrix against the installed torch, prints
one row per configuration as it completes (optimizer, short id, the options that differ
from the defaults, dtype, steps, worst one-step error on parameters, on state and at the
update's scale in ULP, trajectory error, status; the format is
:mod:`refoptim.testing.table`'s), a total line, and exits 1 on any failure, 2 when torch
is missing. ``--only ID ...`` reruns the rows of those short ids; ``--json FILE`` writes
every row (short id, brief and full label, figures, trajectory error per step);
``--report DIR`` writes ``DIR/index.html`` with matplotlib plots of the figures per
optimizer and the worst cases (:mod:`refoptim.testing.report_html`). ``--backend`` runs refoptim on
another array library (``array-api-strict``, ``cupy``), ``--torch-device cuda`` and
``--torch-foreach`` run torch on the GPU and on its multi-tensor path (the elementwise
optimizers' rows; the others say that they ran on NumPy against torch CPU); an
unavailable backend or device exits 2.

``plot SCHEDULER [name=value ...] -o FILE.png`` draws a learning-rate schedule (and the
cycled momentum) over the steps, one line per parameter group; it needs matplotlib
(``pip install "refoptim[plot]"``) and exits 2 without it.

``bench`` times refoptim's step against torch's (see :mod:`refoptim.bench`).

``fingerprint`` runs every configuration (optimizers, schedulers, swa_utils) on
machine-independent inputs, hashes every output after every step, prints one SHA-256 per
optimizer and section and the total, and compares them with the digests committed in
``refoptim/testing/fingerprint.json``: exit 0 when all match, 1 when one differs (named)
or none is committed for ``--steps``, 2 for an unavailable ``--backend``. ``--json FILE``
(``-`` for stdout) writes every digest, per configuration too, and the run's environment;
``--write`` regenerates the committed file. It needs no torch (see :mod:`refoptim.fingerprint`).

``backends`` runs the fingerprint's configurations on every other backend of
:mod:`refoptim.testing.backends` that is available here (``--backend NAME ...`` selects)
and on NumPy, and prints per optimizer whether every parameter and state entry after every
step has NumPy's bits (configurations of a dtype the backend lacks are listed as
unsupported): exit 0 when all agree, 1 when one differs or raises (named), 2 for a named
backend that is unavailable. ``--per-section N`` samples N configurations per optimizer.

``golden --out DIR`` writes the golden corpus for frameworks without Python: every
configuration of the matrix (``--optimizer NAME ...``, ``--dtype ...``, ``--steps N`` select
them) as ``.npy`` files, refoptim's parameter, gradient and state before and after every
step, and ``DIR/manifest.json`` (options, groups, shapes, state layout, thresholds, the
SHA-256 of every file), byte-identical on every machine; it prints the manifest's SHA-256
and compares it with the committed one (``refoptim/testing/golden_digests.json``;
``--write-digest`` regenerates it): exit 0 written, 1 written but differing, 2 for an
unknown optimizer, nothing covered (LBFGS, Muon and sparse gradients are left out) or
``--with-torch`` (torch's own one-step values beside refoptim's) without torch. It needs no
torch otherwise (see :mod:`refoptim.golden`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from . import TORCH_VERSION
from .testing.backends import BACKEND_NAMES


def _conformance(args: argparse.Namespace) -> int:
    try:
        import torch
    except ImportError:
        print(
            f"refoptim conformance needs PyTorch {TORCH_VERSION}, which is not installed.\n"
            f'Install it with:  pip install torch=={TORCH_VERSION}   (or: pip install -e ".[test]")',
            file=sys.stderr,
        )
        return 2
    from .testing import backends, table, thresholds
    from .testing.matrix import DTYPES, configs, extension_for, optimizer_names
    from .testing.runner import run_config
    from .testing.torch_adapter import torch_device_unavailable

    if not torch.__version__.startswith(TORCH_VERSION):
        print(
            f"warning: torch {torch.__version__} is installed; refoptim reproduces torch {TORCH_VERSION}",
            file=sys.stderr,
        )
    names = args.optimizer or optimizer_names()
    unknown = [n for n in names if n not in optimizer_names()]
    if unknown:
        print(f"unknown optimizer(s): {', '.join(unknown)}; known: {', '.join(optimizer_names())}", file=sys.stderr)
        return 2
    try:
        backends.require_backend(args.backend)
    except backends.BackendUnavailable as exc:
        print(f"error: --backend {args.backend}: {exc}", file=sys.stderr)
        return 2
    device_problem = torch_device_unavailable(args.torch_device)
    if device_problem:
        print(f"error: --torch-device {args.torch_device}: {device_problem}", file=sys.stderr)
        return 2
    if args.report:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print('error: --report draws with matplotlib, which is not installed; install it with:  '
                  'pip install "refoptim[plot]"', file=sys.stderr)
            return 2
    todo = configs(names, tuple(args.dtype or DTYPES), steps=args.steps)
    if args.only:
        wanted = {i.strip().lower() for i in args.only}
        missing = sorted(wanted - {c.short_id for c in todo})
        if missing:
            print(
                f"unknown configuration id(s): {', '.join(missing)}; not among the {len(todo)} configurations "
                "selected (--optimizer, --dtype); the ids are the id column of the table and short_id in --json",
                file=sys.stderr,
            )
            return 2
        todo = [c for c in todo if c.short_id in wanted]
    default_sides = args.backend == "numpy" and args.torch_device == "cpu" and not args.torch_foreach
    columns = table.Columns.fit(todo, args.width)
    out = sys.stdout
    print(f"refoptim conformance against torch {torch.__version__}: {len(todo)} configurations", file=out)
    if not default_sides:
        print(
            f"sides: refoptim on {args.backend} against torch on {args.torch_device} with "
            f"foreach={args.torch_foreach} for the elementwise optimizers; rows marked [numpy/cpu] "
            "(LBFGS, Adafactor, Muon, sparse gradients) and the schedulers and swa_utils ran on NumPy "
            "against torch CPU foreach=False",
            file=out,
        )
        if args.torch_foreach:
            print(
                "note: torch's foreach=True path orders its operations differently from the single-tensor "
                "path refoptim reproduces; the thresholds are the single-tensor ones, so these rows report "
                "agreement, and a row torch's foreach path rejects is SKIPPED",
                file=out,
            )
    print(table.format_preamble("torch"), file=out)
    header = table.format_header(columns)
    rule = header.splitlines()[-1]
    print(header, file=out)
    results = []
    start = time.perf_counter()
    # The configurations of thresholds.SENSITIVITY run last, in their own section.
    gating = [c for c in todo if c.id not in thresholds.SENSITIVITY]
    section = [c for c in todo if c.id in thresholds.SENSITIVITY]
    for index, cfg in enumerate(gating, 1):
        r = run_config(cfg, args.backend, args.torch_device, args.torch_foreach)
        results.append(r)
        note = " [numpy/cpu]" if not default_sides and extension_for(cfg) is not None else ""
        print(table.format_row(r, columns, index=index, total=len(todo), note=note), file=out, flush=True)
    other = {"other_rows": 0, "other_failures": 0, "other_sensitive": 0}
    if not args.optimizer and not args.only and not args.no_schedulers:
        scheduler_rows, scheduler_failures = _schedulers(out)
        swa_rows, swa_failures, swa_sensitive = _swa_utils(out)
        other = {
            "other_rows": scheduler_rows + swa_rows,
            "other_failures": len(scheduler_failures) + len(swa_failures),
            "other_sensitive": swa_sensitive,
        }
    if section:
        sides = (args.backend, args.torch_device, args.torch_foreach)
        results += _sensitivity_section(section, sides, len(gating), len(todo), columns, out)
    elapsed = time.perf_counter() - start
    print(rule, file=out)
    print(table.format_summary(results), file=out)
    count = table.count_statuses(results, **other)
    print(table.format_totals(count, elapsed), file=out)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {
                    "torch": torch.__version__,
                    "backend": args.backend,
                    "torch_device": args.torch_device,
                    "torch_foreach": args.torch_foreach,
                    "thresholds": {
                        "one_step_ulp": thresholds.ONE_STEP_ULP,
                        "one_step_rel": thresholds.ONE_STEP_REL,
                        "update_ulp": thresholds.UPDATE_ULP,
                        "trajectory_rel": thresholds.TRAJECTORY_REL,
                        "spread_factor": thresholds.SPREAD_FACTOR,
                    },
                    "counts": count,
                    "results": [table.record(r) for r in results],
                },
                fh,
                indent=1,
            )
    if args.report:
        from .testing.report_html import write_report

        path = write_report(
            results,
            args.report,
            title=f"refoptim conformance against torch {torch.__version__}",
            reference="torch",
            seconds=elapsed,
            counts=count,
            sides=f"refoptim on {args.backend}, torch on {args.torch_device}, foreach={args.torch_foreach}",
        )
        print(f"wrote the report: {path}", file=out)
    return 1 if count["failed"] else 0


def _sensitivity_section(section: list[Any], sides: tuple[Any, ...], done: int, total: int, columns: Any, out: Any) -> list[Any]:
    """Run and print the configurations of ``thresholds.SENSITIVITY``: refoptim against
    torch beside torch's twin against torch. Reported, never failing the run."""
    from .testing import table
    from .testing.matrix import extension_for
    from .testing.runner import run_config

    print(table.format_sensitivity_header(columns), file=out)
    results = []
    for index, cfg in enumerate(section, done + 1):
        r = run_config(cfg, *sides)
        results.append(r)
        note = " [numpy/cpu]" if tuple(sides) != ("numpy", "cpu", False) and extension_for(cfg) is not None else ""
        print(table.format_sensitivity_row(r, columns, index=index, total=total, note=note), file=out, flush=True)
    return results


def _schedulers(out: Any) -> tuple[int, list[str]]:
    """Every scheduler configuration x 1-3 groups against torch: all values ``==`` torch's."""
    from .testing.schedulers import CONFIGS, run_named

    print("-" * 60, file=out)
    print(f"{'schedulers':<30} {'groups':>6} {'steps':>5}  result (every lr, momentum, betas == torch's)", file=out)
    rows, failures = 0, []
    for name in sorted(CONFIGS):
        for n_groups in (1, 2, 3):
            steps, reason = run_named(name, n_groups)
            rows += 1
            status = "pass" if not reason else "FAIL: " + reason
            if reason:
                failures.append(f"{name} x{n_groups}")
            print(f"{name:<30} {n_groups:>6} {steps:>5}  {status}", file=out, flush=True)
    return rows, failures


def _plot(args: argparse.Namespace) -> int:
    from .plot import EXAMPLES, draw, parse_arguments, plot_trajectories, trace

    if args.trajectory:
        if args.scheduler is not None:
            print("error: give a SCHEDULER or --trajectory, not both", file=sys.stderr)
            return 2
        output = args.output or f"trajectory-{args.on}.png"
        try:
            plot_trajectories(args.trajectory, on=args.on, steps=args.steps, path=output,
                              width=args.width, height=args.height, dpi=args.dpi)
        except (ValueError, ImportError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"wrote {output}: {', '.join(args.trajectory)} on {args.on}")
        return 0
    if args.scheduler is None or args.output is None:
        print("error: plot needs a SCHEDULER and -o FILE.png, or --trajectory SPEC ...", file=sys.stderr)
        return 2
    try:
        arguments = parse_arguments((EXAMPLES[args.scheduler] if args.example else []) + args.arguments)
        values = trace(
            args.scheduler,
            arguments,
            lrs=args.lr or [0.1],
            steps=args.steps,
            optimizer=args.optimizer,
            metric=args.metric,
        )
    except (ValueError, TypeError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    try:
        draw(values, args.output, width=args.width, height=args.height, dpi=args.dpi, log=args.log)
    except ImportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cycled = f" and {values.momentum_name}" if values.momentum is not None else ""
    print(
        f"wrote {args.output}: {values.title}, lr{cycled} over {values.steps} steps, "
        f"{len(values.lr)} parameter group{'s' if len(values.lr) != 1 else ''} "
        f"({round(args.width * args.dpi)}x{round(args.height * args.dpi)} px)"
    )
    return 0


def _swa_utils(out: Any) -> tuple[int, list[str], int]:
    """SWALR's lrs ``==`` torch's, and AveragedModel's averages bitwise equal to torch's.

    Returns the rows, the failed rows' names and the number of rows ``SENSITIVE here``: an
    average that differs from torch's only because torch's kernels on this machine round
    ``lerp``/``add(alpha=)`` in two operations (no FMA), i.e. that is bitwise equal when
    refoptim is re-run with that rounding (:mod:`refoptim.testing.torch_kernels`)."""
    import numpy as np

    from .testing.torch_kernels import torch_fuses, unfused_primitives

    from .testing.swa import (
        AVERAGING,
        AVERAGING_UPDATES,
        SWALR_CASES,
        SWALR_STEPS,
        run_averaging,
        run_swalr,
    )

    print("-" * 60, file=out)
    print(f"{'swa_utils':<44} {'steps':>5}  result (== torch's)", file=out)
    rows, failures, sensitive = 0, [], 0
    for strategy, epochs, groups, as_list in SWALR_CASES:
        name = f"SWALR {strategy}, anneal_epochs={epochs}, {groups} group{'s' if groups > 1 else ''}{', swa_lr list' if as_list else ''}"
        reason = run_swalr(strategy, epochs, groups, as_list)
        rows += 1
        if reason:
            failures.append(name)
        print(f"{name:<44} {SWALR_STEPS:>5}  {'FAIL: ' + reason if reason else 'pass'}", file=out, flush=True)
    for avg in sorted(AVERAGING):
        for dtype in (np.float32, np.float64):
            name = f"AveragedModel {avg} {np.dtype(dtype).name}"
            reason = run_averaging(avg, dtype)
            rows += 1
            text = "pass"
            if reason and not torch_fuses():
                with unfused_primitives():
                    again = run_averaging(avg, dtype)
                if not again:
                    sensitive += 1
                    text = (
                        f"SENSITIVE here: {reason}; torch's kernels here round lerp/add(alpha) in two "
                        "operations (no FMA, as with ATEN_CPU_CAPABILITY=default); refoptim with that "
                        "rounding is bitwise equal"
                    )
            if reason and text == "pass":
                failures.append(name)
                text = "FAIL: " + reason
            print(f"{name:<44} {AVERAGING_UPDATES:>5}  {text}", file=out, flush=True)
    return rows, failures, sensitive


def _bench(args: argparse.Namespace) -> int:
    if args.dask:
        return _bench_dask(args)
    try:
        import torch
    except ImportError:
        print(
            f"refoptim bench compares against PyTorch {TORCH_VERSION}, which is not installed.\n"
            f"Install it with:  pip install torch=={TORCH_VERSION}",
            file=sys.stderr,
        )
        return 2
    from . import bench

    unknown = [n for n in args.optimizer or [] if n not in bench.OPTIMIZERS]
    if unknown:
        print(f"unknown optimizer(s): {', '.join(unknown)}; known: {', '.join(bench.OPTIMIZERS)}", file=sys.stderr)
        return 2
    if args.all and args.optimizer:
        print("--all and --optimizer exclude each other", file=sys.stderr)
        return 2
    malloc_env = None
    if args.malloc_env is not None:
        bad = [s for s in args.malloc_env if "=" not in s or not s.partition("=")[0]]
        if bad:
            print(f"--malloc-env takes NAME=VALUE settings, not: {', '.join(bad)}", file=sys.stderr)
            return 2
        malloc_env = [tuple(s.split("=", 1)) for s in args.malloc_env]
    optimizers = list(bench.ALL_OPTIMIZERS) if args.all else args.optimizer
    if args.no_scratch:
        from . import _fastpath

        os.environ["REFOPTIM_SCRATCH"] = "0"  # the fresh subprocesses read it at import
        _fastpath.SCRATCH = False
    if args.numba:
        from . import _numba, _scratch

        try:
            _numba.kernels()
        except ImportError as exc:
            print(f"error: --numba: {exc}", file=sys.stderr)
            return 2
        os.environ["REFOPTIM_NUMBA"] = "1"
        _scratch.NUMBA = True
    options: dict[str, Any] = {}
    process = args.process or ("both" if args.backend == "numpy" else "shared")
    if process != "shared":
        options["process"] = process
    if malloc_env is not None:
        options["malloc_env"] = malloc_env
    if args.rounds < 1:
        print(f"--rounds must be at least 1, not {args.rounds}", file=sys.stderr)
        return 2
    if process != "shared" or malloc_env is not None:  # something is measured in fresh processes
        options["rounds"] = args.rounds
    if args.backend != "numpy":
        try:
            bench.require_backend(args.backend)
        except RuntimeError as exc:
            print(f"error: --backend {args.backend}: {exc}", file=sys.stderr)
            return 2
        options["backend"] = args.backend
    started = time.perf_counter()
    rows = bench.run(optimizers, args.workload, args.repeats, **options)
    print(f"(the benchmark took {time.perf_counter() - started:.0f} s)")
    if args.markdown:
        text = bench.markdown(rows)
        if args.markdown == "-":
            print(text, end="")
        else:
            with open(args.markdown, "w") as fh:
                fh.write(text)
    if args.json:
        import torch

        data: dict[str, Any] = {"torch": torch.__version__, "threads": torch.get_num_threads()}
        if args.backend != "numpy":
            import cupy

            data.update(backend=args.backend, cupy=cupy.__version__, device=torch.cuda.get_device_name())
        data["rows"] = [r.as_dict() for r in rows]
        data["malloc_changes"] = bench.malloc_changes(rows)
        with open(args.json, "w") as fh:
            json.dump(data, fh, indent=1)
    return 0


def _bench_dask(args: argparse.Namespace) -> int:
    """``python -m refoptim bench --dask``: one optimizer on a chunked Dask array on a
    cluster against NumPy (no torch needed)."""
    try:
        import dask.array  # noqa: F401
        import distributed  # noqa: F401
    except ImportError as exc:
        print(f"refoptim bench --dask needs dask and distributed ({exc}).\nInstall them with:  pip install 'dask[array]' distributed", file=sys.stderr)
        return 2
    from . import bench

    names = args.optimizer or ["Adam"]
    unknown = [n for n in names if n not in bench.OPTIMIZERS]
    if unknown:
        print(f"unknown optimizer(s): {', '.join(unknown)}; known: {', '.join(bench.OPTIMIZERS)}", file=sys.stderr)
        return 2
    if args.repeats < 1:
        print("--repeats must be at least 1", file=sys.stderr)
        return 2
    rows = [
        bench.run_dask(
            name,
            elements=args.dask_elements,
            chunks=args.dask_chunks,
            workers=args.dask_workers,
            steps=args.repeats,
            scheduler=args.dask_scheduler,
        )
        for name in names
    ]
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"dask": [r.as_dict() for r in rows]}, fh, indent=1)
    return 0


def _fingerprint(args: argparse.Namespace) -> int:
    """``python -m refoptim fingerprint``: run, print one line per section, compare with
    the committed digests (or write them with ``--write``)."""
    from . import fingerprint as fpm
    from .testing import backends

    try:
        backends.require_backend(args.backend)
    except backends.BackendUnavailable as exc:
        print(f"error: --backend {args.backend}: {exc}", file=sys.stderr)
        return 2
    if args.steps < 1:
        print(f"error: --steps must be at least 1, not {args.steps}", file=sys.stderr)
        return 2
    out = sys.stderr if args.json == "-" else sys.stdout
    env = fpm.environment()
    expected = fpm.load_expected()
    if args.write and args.steps_given is None:
        # regenerate every step count the committed file holds (and the default)
        counts = sorted({fpm.DEFAULT_STEPS, fpm.QUICK_STEPS, *(int(k) for k in (expected or {}).get("digests", {}))},
                        reverse=True)
    else:
        counts = [args.steps]
    print(
        f"refoptim fingerprint: backend {args.backend}, numpy {env['numpy']}, {env['threads']} thread"
        f"{'s' if env['threads'] != 1 else ''}, NPY_DISABLE_CPU_FEATURES={env['NPY_DISABLE_CPU_FEATURES'] or '(unset)'}, "
        f"numpy dispatch active: {' '.join(env['numpy_cpu_dispatch_active']) or '(none)'}",
        file=out,
    )
    status = 0
    results = []
    for steps in counts:
        fp = fpm.compute(steps=steps, backend=args.backend)
        results.append(fp)
        before = fpm.compare(fp, expected)
        print(f"{steps} steps per configuration (ASGD {fpm.ASGD_FACTOR * steps}; LBFGS at most {steps}):", file=out)
        print(f"  {'section':<18} {'cases':>5}  {'sha256':<64}  committed", file=out)
        for name, digest in [*fp.sections.items(), ("total", fp.total)]:
            count = fp.counts.get(name, sum(fp.counts.values()))
            verdict = {True: "match", False: "DIFFERS", None: "-"}[before[name]]
            print(f"  {name:<18} {count:>5}  {digest}  {verdict}", file=out)
        differ = [name for name, ok in before.items() if ok is False]
        if args.write:
            fpm.write_expected(fp)
            expected = fpm.load_expected()
            changed = f"; changed: {', '.join(differ)}" if differ else ("; unchanged" if before["total"] else "")
            print(f"wrote the digests for {steps} steps to {fpm.EXPECTED_PATH}{changed} ({fp.seconds:.1f} s)", file=out)
        elif differ:
            status = 1
            print(
                f"DIFFERS from the committed digests ({fpm.EXPECTED_PATH.name}, made with numpy "
                f"{(expected or {}).get('numpy', '?')}): {', '.join(differ)} ({fp.seconds:.1f} s)",
                file=out,
            )
        elif before["total"] is None:
            status = 1
            held = ", ".join(sorted((expected or {}).get("digests", {}), key=int, reverse=True)) or "none"
            print(
                f"no committed digests for {steps} steps (the committed file holds: {held}); nothing compared "
                f"({fp.seconds:.1f} s)",
                file=out,
            )
        else:
            print(f"every digest matches the committed one ({fp.seconds:.1f} s)", file=out)
    if args.json:
        data = {
            "environment": env,
            "runs": [{**fp.as_dict(), "committed": fpm.compare(fp, expected)} for fp in results],
        }
        if args.json == "-":
            json.dump(data, sys.stdout, indent=1)
            sys.stdout.write("\n")
        else:
            with open(args.json, "w") as fh:
                json.dump(data, fh, indent=1)
    return status


def _golden(args: argparse.Namespace) -> int:
    """``golden``: the corpus of :mod:`refoptim.golden`."""
    from . import golden

    return golden.command(args.out, args.optimizer, args.dtype, args.steps, args.with_torch, args.write_digest)


def _backends(args: argparse.Namespace) -> int:
    from . import fingerprint as fpm
    from .testing import backends

    names = args.backend or [n for n in backends.BACKEND_NAMES if n != "numpy"]
    rows: dict[str, Any] = {}
    worst = 0
    for name in names:
        backend = backends.get_backend(name)
        if not backend.available:
            print(f"{name}: not available here: {backend.reason}")
            rows[name] = {"available": False, "reason": backend.reason}
            worst = max(worst, 2 if args.backend else 0)
            continue
        result = fpm.agreement(name, steps=args.steps, per_section=args.per_section)
        print(f"{name}: every configuration against NumPy, {args.steps} steps ({result.seconds:.1f} s)")
        for section, counts in result.summary().items():
            verdicts = result.verdicts[section]
            line = ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items()))
            ran = any(not v.startswith("unsupported") for v in verdicts.values())
            label = "not run" if not ran else "bit-identical" if result.identical(section) else "DIFFERS"
            print(f"  {section:18s} {label:14s} {line}")
            for cfg_id, verdict in verdicts.items():
                if verdict != "identical" and not verdict.startswith("unsupported"):
                    print(f"      {cfg_id}: {verdict}")
                    worst = max(worst, 1)
        rows[name] = {"available": True, "steps": args.steps, "seconds": round(result.seconds, 1),
                      "verdicts": result.verdicts}
    if args.json:
        text = json.dumps(rows, indent=1, sort_keys=True)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as fh:
                fh.write(text + "\n")
    return worst


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m refoptim``."""
    parser = argparse.ArgumentParser(prog="python -m refoptim", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    conf = sub.add_parser("conformance", help="check every configuration against the installed torch")
    conf.add_argument("--optimizer", action="append", help="only this optimizer (repeatable)")
    conf.add_argument("--dtype", action="append", choices=["float32", "float64", "complex64"], help="only this dtype (repeatable)")
    conf.add_argument("--steps", type=int, default=50, help="steps per configuration (default 50)")
    conf.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    conf.add_argument(
        "--width", type=int, default=70,
        help="widest configuration column (default 70); a longer configuration wraps onto continuation lines",
    )
    conf.add_argument(
        "--only", nargs="+", metavar="ID",
        help="rerun only these configurations, by the short id of the table's id column (e.g. adam-3f2a9c); "
        "no schedulers",
    )
    conf.add_argument(
        "--report", metavar="DIR",
        help="also write an HTML report, DIR/index.html with its PNG plots (needs matplotlib)",
    )
    conf.add_argument(
        "--no-schedulers", action="store_true", help="skip the schedulers (they also run only without --optimizer)"
    )
    conf.add_argument(
        "--backend",
        choices=list(BACKEND_NAMES),
        default="numpy",
        help="array library of the refoptim side (default numpy; cupy and torch-cuda need a CUDA GPU); "
        "the elementwise optimizers only, the other rows run on NumPy",
    )
    conf.add_argument(
        "--torch-device", choices=["cpu", "cuda"], default="cpu", help="device of the torch side (default cpu)"
    )
    conf.add_argument(
        "--torch-foreach",
        action="store_true",
        help="run torch's multi-tensor path (foreach=True) instead of foreach=False and report the agreement",
    )
    from .fingerprint import DEFAULT_STEPS, EXPECTED_PATH

    fingerprint = sub.add_parser(
        "fingerprint",
        help="one SHA-256 over every output of every configuration, checked against the committed digests",
        description="Run every optimizer configuration of the matrix, every scheduler configuration and the "
        "swa_utils cases on machine-independent inputs, hash every parameter and state entry after every step "
        "(NaNs canonical, signed zeros kept), print one digest per section and the total, and compare them "
        f"with the committed ones ({EXPECTED_PATH.name}): exit 0 when all match, 1 otherwise. Needs no torch.",
    )
    fingerprint.add_argument(
        "--steps", type=int, default=None, dest="steps_given", metavar="N",
        help=f"steps per configuration (default {DEFAULT_STEPS}; the committed file also holds 2)",
    )
    fingerprint.add_argument("--json", metavar="FILE", help="also write every digest (per configuration too) as JSON to FILE ('-': stdout)")
    fingerprint.add_argument(
        "--backend", choices=list(BACKEND_NAMES), default="numpy",
        help="array library to run refoptim on (default numpy)",
    )
    fingerprint.add_argument(
        "--write", action="store_true",
        help="regenerate the committed digests (for every step count the file holds, or only --steps); "
        "the commit must say why a digest moved",
    )
    agree = sub.add_parser(
        "backends",
        help="run every fingerprint configuration on other array libraries and compare each with NumPy, bit for bit",
    )
    agree.add_argument(
        "--backend", action="append", choices=[n for n in BACKEND_NAMES if n != "numpy"],
        help="a backend to check (repeatable; default: every backend, the unavailable ones listed with the reason)",
    )
    agree.add_argument("--steps", type=int, default=2, help="steps per configuration (default 2)")
    agree.add_argument(
        "--per-section", type=int, default=None, metavar="N",
        help="only N configurations of each optimizer, spread over its list (for slow backends)",
    )
    agree.add_argument("--json", metavar="FILE", help="also write every verdict as JSON to FILE ('-': stdout)")
    golden = sub.add_parser(
        "golden",
        help="write the golden corpus (.npy files and a manifest) for frameworks without Python",
        description="Write every selected configuration of the matrix as .npy files (refoptim's parameter, "
        "gradient and state before and after every step) and DIR/manifest.json, byte-identical on every machine. "
        "Needs no torch (but --with-torch).",
    )
    golden.add_argument("--out", required=True, metavar="DIR", help="where to write (new, empty, or a previous corpus)")
    golden.add_argument("--optimizer", nargs="+", action="extend", metavar="NAME", help="only these optimizers")
    golden.add_argument("--dtype", nargs="+", action="extend", choices=["float32", "float64", "complex64"], help="only these dtypes")
    golden.add_argument("--steps", type=int, default=None, metavar="N", help="steps per configuration (default 50; ASGD at least 120)")
    golden.add_argument("--with-torch", action="store_true", help="also store torch's values after one step from refoptim's")
    golden.add_argument("--write-digest", action="store_true", help="store the manifest's SHA-256 as the committed digest")
    from .bench import DEFAULT_OPTIMIZERS, MALLOC_SETTINGS, WORKLOADS

    bench = sub.add_parser("bench", help="step time and memory against torch's single-tensor, foreach and fused paths")
    bench.add_argument("--optimizer", action="append", help=f"only this optimizer (repeatable; default {', '.join(DEFAULT_OPTIMIZERS)})")
    bench.add_argument(
        "--workload",
        action="append",
        choices=list(WORKLOADS),
        help="a: 1x10M, b: 1000x1000, c: 100x100k, d: 1x100M float32 elements (repeatable; default a, b, c)",
    )
    bench.add_argument("--all", action="store_true", help="every benchmarked optimizer (the eleven elementwise ones)")
    bench.add_argument("--repeats", type=int, default=10, help="timed steps per measurement (default 10)")
    bench.add_argument("--json", metavar="FILE", help="also write the rows as JSON to FILE")
    bench.add_argument(
        "--process",
        choices=["shared", "fresh", "both"],
        help="shared: every implementation measured in this process; fresh: each (implementation, optimizer, workload) "
        "in a fresh python subprocess with this environment; both: a row for each (default: both on the CPU, "
        "shared with --backend cupy)",
    )
    bench.add_argument(
        "--rounds",
        type=int,
        default=3,
        metavar="N",
        help="fresh processes per implementation and measurement, launched in turns, the one with the median time "
        "reported (default 3: a machine that slows down for a while then cannot decide a fresh-process ratio alone)",
    )
    bench.add_argument(
        "--malloc-env",
        nargs="*",
        action="extend",
        metavar="NAME=VALUE",
        help="also repeat the fresh-subprocess measurement under each allocator setting on its own and report how far "
        "each ratio moved (default settings: "
        + ", ".join(f"{k}={v}" for k, v in MALLOC_SETTINGS)
        + ")",
    )
    bench.add_argument(
        "--no-scratch",
        action="store_true",
        help="run refoptim without its per-thread scratch buffers (REFOPTIM_SCRATCH=0, here and in the fresh "
        "subprocesses): the rules' temporaries are then ordinary allocations",
    )
    bench.add_argument(
        "--numba",
        action="store_true",
        help="run refoptim with its opt-in compiled evaluation (REFOPTIM_NUMBA=1, here and in the fresh "
        "subprocesses; needs numba): each rule fused into one compiled pass, the compiled float32 fused "
        "multiply-add where a rule cannot be fused",
    )
    bench.add_argument(
        "--markdown", metavar="FILE", help="also write the README's performance tables as Markdown to FILE ('-': print them)"
    )
    bench.add_argument(
        "--backend",
        choices=["numpy", "cupy"],
        default="numpy",
        help="numpy: refoptim on NumPy against torch on the CPU (default); cupy: refoptim on CuPy against torch on CUDA",
    )
    bench.add_argument(
        "--dask",
        action="store_true",
        help="instead: the optimizer (default Adam) on one float32 parameter as a chunked Dask array on a cluster, "
        "persisted every step, against NumPy in this process: step times, graph size, memory per worker, "
        "bit-identity (needs dask and distributed, not torch)",
    )
    bench.add_argument("--dask-elements", type=int, default=100_000_000, metavar="N", help="with --dask: elements of the parameter (default 100M)")
    bench.add_argument("--dask-chunks", type=int, default=10, metavar="K", help="with --dask: chunks of each array (default 10)")
    bench.add_argument("--dask-workers", type=int, default=2, metavar="W", help="with --dask: worker processes of the LocalCluster (default 2)")
    bench.add_argument(
        "--dask-scheduler",
        metavar="ADDRESS",
        help="with --dask: use the running cluster at this scheduler address (tcp://host:8786) instead of a LocalCluster",
    )
    from .plot import DEFAULT_METRIC, SCHEDULERS

    plot = sub.add_parser(
        "plot",
        help="draw a learning-rate schedule as PNG",
        description="Draw SCHEDULER's lr (and cycled momentum) over the steps, one line per parameter group. "
        "Scheduler arguments are name=value with Python values, e.g.: "
        "plot StepLR step_size=30 gamma=0.1 --lr 0.05 -o steplr.png; "
        "plot SequentialLR 'schedulers=[ConstantLR(factor=0.1, total_iters=20), ExponentialLR(gamma=0.9)]' "
        "milestones=[20] -o seq.png; plot LambdaLR 'lr_lambda=lambda e: 0.95 ** e' -o lambda.png",
    )
    plot.add_argument("scheduler", nargs="?", choices=SCHEDULERS, metavar="SCHEDULER", help="one of: " + ", ".join(SCHEDULERS))
    plot.add_argument("arguments", nargs="*", metavar="name=value", help="the scheduler's arguments")
    plot.add_argument("--example", action="store_true", help="start from refoptim.plot.EXAMPLES' arguments for SCHEDULER")
    plot.add_argument("-o", "--output", metavar="FILE.png", help="where to write the PNG (required for a schedule; "
                      "default trajectory-FUNCTION.png for --trajectory)")
    plot.add_argument("--lr", type=float, action="append", help="a parameter group's initial lr (repeat for more groups; default 0.1)")
    plot.add_argument("--steps", type=int, help="steps to draw (default: OneCycleLR's total_steps, else 100; "
                      "with --trajectory: 300 on rosenbrock, 100 on quadratic and saddle)")
    plot.add_argument("--log", action="store_true", help="the lr on a log scale (for a schedule whose tail matters)")
    plot.add_argument(
        "--trajectory", nargs="+", metavar="SPEC",
        help="instead of a schedule: each optimizer's path on a 2-D test function, computed by refoptim; "
        "SPEC is Name or Name:key=value,key=value with Python literals, e.g. --trajectory Adam SGD:momentum=0.9 "
        "'Adam:betas=(0.8,0.99)'; options not given take the function's default lr",
    )
    plot.add_argument("--on", choices=["rosenbrock", "quadratic", "saddle"], default="rosenbrock",
                      help="with --trajectory: the test function (default rosenbrock)")
    plot.add_argument("--optimizer", choices=["SGD", "Adam"], default="SGD", help="SGD (momentum 0.9) or Adam, whose momentum/beta1 a cycling scheduler drives")
    plot.add_argument("--metric", default=DEFAULT_METRIC, help=f"ReduceLROnPlateau's metric as an expression in epoch (default: {DEFAULT_METRIC})")
    plot.add_argument("--width", type=float, default=6.4, help="inches (default 6.4)")
    plot.add_argument("--height", type=float, default=4.0, help="inches (default 4.0)")
    plot.add_argument("--dpi", type=int, default=100, help="dots per inch (default 100)")
    args = parser.parse_args(argv)
    if args.command == "conformance":
        return _conformance(args)
    if args.command == "fingerprint":
        from .fingerprint import DEFAULT_STEPS

        args.steps = DEFAULT_STEPS if args.steps_given is None else args.steps_given
        return _fingerprint(args)
    if args.command == "backends":
        return _backends(args)
    if args.command == "golden":
        return _golden(args)
    if args.command == "plot":
        return _plot(args)
    if args.command == "bench":
        return _bench(args)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
