"""Measure optax and Keras 3 against torch.optim (through refoptim) over the conformance
matrix, and write the figures ``docs/frameworks.md`` publishes.

One process per JAX mode (x64 is fixed when JAX starts)::

    python conformance/frameworks/measure.py optax --out /tmp/fw/optax-x64off.json
    JAX_ENABLE_X64=1 python conformance/frameworks/measure.py optax --out /tmp/fw/optax-x64on.json
    (the same with keras)
    python conformance/frameworks/measure.py table /tmp/fw/optax-x64off.json /tmp/fw/optax-x64on.json

With x64 off only float32 runs (JAX makes float64 arrays float32). Every configuration of
``refoptim.testing.matrix`` for the torch optimizer runs (options alone and crossed,
parameter groups, the quadratic and Rosenbrock objectives; 50 steps; the five shapes),
except for the rows with their own option list (``Case.options``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _summary(results: list[Any]) -> dict[str, Any]:
    ran = [r for r in results if r.status != "skipped"]
    out: dict[str, Any] = {
        "configurations": len(results),
        "ran": len(ran),
        "passed": sum(r.status == "pass" for r in ran),
        "failed": sum(r.fails_run for r in ran),
        "skipped": len(results) - len(ran),
        "skip_reasons": sorted({r.skipped for r in results if r.skipped}),
    }
    for key in ("param_ulp", "update_ulp", "state_ulp", "trajectory"):
        if ran:
            worst = max(ran, key=lambda r: getattr(r, key))
            out[key] = getattr(worst, key)
            where = {"param_ulp": worst.param_where, "update_ulp": worst.update_where,
                     "state_ulp": worst.state_where, "trajectory": ""}[key]
            out[key + "_at"] = f"{worst.config.label} ({where})" if where else worst.config.label
        else:
            out[key] = None
    out["failing"] = [f"{r.config.label}: {r.reason}" for r in ran if r.fails_run][:5]
    out["configs"] = [
        {"id": r.config.short_id, "label": r.config.label, "status": r.status, "param_ulp": r.param_ulp,
         "update_ulp": r.update_ulp, "state_ulp": r.state_ulp, "trajectory": r.trajectory, "skipped": r.skipped}
        for r in results
    ]
    return out


def measure(framework: str, steps: int | None, only: str | None) -> dict[str, Any]:
    import framework_adapters as fa
    from refoptim.testing import compare

    cases = fa.OPTAX if framework == "optax" else fa.KERAS
    dtypes = ("float32", "float64") if fa.x64() else ("float32",)
    out: dict[str, Any] = {"framework": framework, "x64": fa.x64(), "versions": versions(), "cases": []}
    for case in cases:
        if only and only not in case.name:
            continue
        start = time.perf_counter()
        report = compare(
            case.candidate, case.torch, options=list(case.options) if case.options else None, dtypes=dtypes,
            steps=steps, state_map=case.state_map, name=case.name,
        )
        entry = {"name": case.name, "torch": case.torch, "mapping": case.mapping, "dtypes": {}}
        for dtype in dtypes:
            entry["dtypes"][dtype] = _summary([r for r in report.results if r.config.dtype == dtype])
        entry["seconds"] = time.perf_counter() - start
        out["cases"].append(entry)
        print(f"{case.name}: {entry['seconds']:.0f} s", {d: (s['passed'], s['failed'], s['skipped'], s['param_ulp'], s['update_ulp'], s['state_ulp']) for d, s in entry['dtypes'].items()}, flush=True)
    return out


def versions() -> dict[str, str]:
    import importlib.metadata as md

    return {name: md.version(name) for name in ("jax", "jaxlib", "optax", "keras", "numpy")}


def _fig(x: float | None) -> str:
    if x is None:
        return "–"
    if x == 0:
        return "0"
    if x < 10:
        return f"{x:.2g}"
    return f"{x:.2g}" if x >= 1e5 else f"{x:.0f}"


CAUSES: dict[str, str] = {
    "optax.adam": "x64 off: [bias correction in float32](#bias-correction-in-float32); float64: "
    "[torch's tensor lr](#torch-s-tensor-hyper-parameters)",
    "optax.adamw": "x64 off: [bias correction in float32](#bias-correction-in-float32); float64: "
    "[weight decay in the update](#weight-decay-folded-into-the-update), "
    "[torch's tensor lr](#torch-s-tensor-hyper-parameters)",
    "optax.adamax": "[one more rounding](#one-more-rounding); float64: "
    "[torch's tensor lr, betas](#torch-s-tensor-hyper-parameters)",
    "optax.rmsprop (eps_in_sqrt=False)": "[one more rounding](#one-more-rounding)",
    "optax.adagrad": "[eps inside the square root](#eps-inside-the-square-root)",
    "optax.rmsprop (eps_in_sqrt=True, the default)": "[eps inside the square root](#eps-inside-the-square-root)",
    "optax.radam": "[eps on the bias-corrected root](#eps-on-the-bias-corrected-root); x64 off: "
    "[bias correction in float32](#bias-correction-in-float32)",
    "optax.nadam": "[no momentum schedule](#no-momentum-schedule)",
    "optax.rprop": "[Rprop applies the previous update](#rprop-applies-the-previous-update)",
    "keras.optimizers.Adam": "[epsilon hat](#epsilon-hat); [powers in float32](#powers-in-the-variable-dtype)",
    "keras.optimizers.AdamW": "[epsilon hat](#epsilon-hat); [powers in float32](#powers-in-the-variable-dtype)",
    "keras.optimizers.Adamax": "[eps outside the maximum](#eps-outside-the-maximum); "
    "[powers in float32](#powers-in-the-variable-dtype)",
    "keras.optimizers.Adagrad": "[eps inside the square root](#eps-inside-the-square-root)",
    "keras.optimizers.RMSprop": "[eps inside the square root](#eps-inside-the-square-root)",
    "keras.optimizers.Nadam": "[powers in float32](#powers-in-the-variable-dtype); float64: "
    "[torch's float32 mu_product](#torch-keeps-mu-product-in-float32)",
}
"""The cause of each row's difference: a section of ``docs/frameworks.md``, which names its
reproducer in ``test_causes.py``."""


def table(paths: list[str]) -> str:
    """A Markdown table from one framework's JSON files (x64 off, x64 on). Without an x64-off
    file the float32 figures of the x64-on run fill that column, marked †: Keras casts every
    scalar to the variable's dtype, so its float32 figures do not depend on JAX's mode (all
    equal in the full runs; ``test_keras.py`` checks it)."""
    runs = [json.load(open(p)) for p in paths]
    off = next((r for r in runs if not r["x64"]), None)
    on = next((r for r in runs if r["x64"]), None)
    same = off is None
    if same:
        off = on
    names = [c["name"] for c in (on or off)["cases"]]
    lines = [
        "| optimizer | torch | hyper-parameters (torch's → the framework's) "
        "| float32, x64 off | float32, x64 on | float64 | passed | cause |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        cells, passed = [], []
        torch_name = mapping = ""
        for run, dtype in ((off, "float32"), (on, "float32"), (on, "float64")):
            case = next((c for c in run["cases"] if c["name"] == name), None) if run else None
            s = case["dtypes"].get(dtype) if case else None
            if case:
                torch_name, mapping = case["torch"], case["mapping"]
            if not s or not s["ran"]:
                cells.append("–")
                passed.append("–")
                continue
            mark = " †" if same and run is off and len(cells) == 0 else ""
            cells.append(f"{_fig(s['param_ulp'])} / {_fig(s['update_ulp'])}{mark}")
            passed.append(f"{s['passed']}/{s['ran']}{mark}")
        lines.append(
            f"| `{name}` | {torch_name} | {mapping} | " + " | ".join(cells) + " | " + ", ".join(passed)
            + f" | {CAUSES.get(name, '')} |"
        )
    return "\n".join(lines)


def details(paths: list[str]) -> str:
    """Per row and dtype: skipped configurations' reasons and the first failing ones."""
    out = []
    for path in paths:
        run = json.load(open(path))
        for case in run["cases"]:
            for dtype, s in case["dtypes"].items():
                out.append(f"{case['name']} {dtype} x64={run['x64']}: ran {s['ran']}, passed {s['passed']}, "
                           f"skipped {s['skipped']} {s['skip_reasons']}; worst param at {s.get('param_ulp_at')}; "
                           f"worst update at {s.get('update_ulp_at')}; state {s.get('state_ulp')} at {s.get('state_ulp_at')}; "
                           f"trajectory {s.get('trajectory')}")
                out += [f"    {f}" for f in s["failing"][:3]]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("optax", "keras", "table", "details"))
    parser.add_argument("files", nargs="*")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--only", default=None, help="run only the cases whose name contains this")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.what in ("table", "details"):
        print(table(args.files) if args.what == "table" else details(args.files))
        return
    result = measure(args.what, args.steps, args.only)
    text = json.dumps(result, indent=1)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as fh:
            fh.write(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
