"""The HTML report of a conformance run (``python -m refoptim conformance --report DIR``):
``DIR/index.html`` and the PNG plots beside it, drawn with matplotlib (Agg, no display).

For each optimizer, a section with:

- **one-step errors per configuration**: the param, state and update figures of every
  configuration on a log scale, grouped by dtype and sorted by the worst figure within each
  dtype (so the markers read as the distribution), the one-step threshold of each dtype as
  a dashed line; a figure of 0 (bit-identical) is drawn on a dotted floor line;
- **trajectory error against step** (where the runner recorded it,
  ``Result.trajectory_by_step``): one step line per configuration (``drawstyle="steps-post"``:
  the error after step k holds until step k+1), coloured by dtype, the trajectory threshold
  of each dtype dashed, the worst configuration drawn bold and named;
- **worst cases**: the configurations nearest to (or beyond) a threshold: short id, brief
  label, dtype, figure, value, threshold, where, status.

At the end, the text table as the CLI prints it (:func:`refoptim.testing.table.format_table`).
Torch-free: it reads :class:`~refoptim.testing.results.Result` objects only.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any, Iterable

from . import table, thresholds

__all__ = ["write_report"]

_DTYPE_COLOURS = {"float32": "tab:blue", "float64": "tab:green", "complex64": "tab:purple"}
_FIGURES = (("param", "o", "tab:blue"), ("state", "s", "tab:orange"), ("update", "^", "tab:green"))

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0 1em; }
th, td { border: 1px solid #ddd; padding: .25em .5em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
code, pre { font-family: ui-monospace, monospace; } pre { font-size: .75em; overflow-x: auto; background: #f8f8f8; padding: .5em; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: .85em; color: #555; }
.fail { color: #b00; font-weight: bold; } .pass { color: #080; } .other { color: #a60; }
nav a { margin-right: .8em; }
"""


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "x"


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _status_class(status: str) -> str:
    return {"pass": "pass", "fail": "fail"}.get(status, "other")


def _candidates(r: Any) -> list[tuple[str, float, float, str]]:
    """The judged figures of ``r``: (name, value, threshold, where)."""
    limit = r.limit
    return [
        ("param", r.param_ulp, limit, r.param_where),
        ("state", r.state_ulp, limit, r.state_where),
        ("trajectory", r.trajectory, r.trajectory_limit, f"after step {r.config.steps}"),
    ]


def worst_cases(results: Iterable[Any], n: int = 10) -> list[tuple[Any, str, float, float, str]]:
    """The ``n`` results whose worst judged figure (param, state, trajectory) is nearest to
    its threshold, worst first, as (result, figure, value, threshold, where); figures of 0
    are left out."""
    rows = []
    for r in results:
        if r.status == "skipped":
            continue
        name, value, limit, where = max(_candidates(r), key=lambda c: c[1] / c[2] if c[2] > 0 else c[1])
        if value > 0:
            rows.append((value / limit if limit > 0 else float("inf"), (r, name, value, limit, where)))
    rows.sort(key=lambda x: -x[0])
    return [row for _, row in rows[:n]]


def _figure_objects(width: float, height: float, dpi: int) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _one_step_plot(name: str, results: list[Any], path: Path, dpi: int) -> str:
    """Draw the one-step figures of one optimizer's results; return the caption."""
    results = [r for r in results if r.status != "skipped"]
    unit = results[0].unit
    fig, ax = _figure_objects(9.0, 4.6, dpi)
    values = [
        v for r in results for v in (r.param_ulp, r.state_ulp, getattr(r, "update_ulp", 0.0) if unit == "ULP" else 0.0)
    ]
    positive = [v for v in values if v > 0]
    limits = [r.limit for r in results]
    floor = min(positive) / 4 if positive else min(limits) / 1e3
    dtypes = list(dict.fromkeys(r.config.dtype for r in results))
    x0 = 0
    for dtype in dtypes:
        rows = sorted(
            (r for r in results if r.config.dtype == dtype),
            key=lambda r: (max(r.param_ulp, r.state_ulp), getattr(r, "update_ulp", 0.0)),
        )
        xs = list(range(x0, x0 + len(rows)))
        for label, marker, colour in _FIGURES:
            if label == "update" and unit != "ULP":
                continue
            ys = [max(getattr(r, f"{label}_ulp", 0.0), floor) for r in rows]
            ax.plot(
                xs, ys, linestyle="none", marker=marker, markersize=4, color=colour, alpha=0.75,
                markerfacecolor="none" if label != "param" else colour,
                label=label if dtype == dtypes[0] else None,
            )
        ax.hlines(
            rows[0].limit, x0 - 0.5, x0 + len(rows) - 0.5, colors="tab:red", linestyles="dashed",
            label="one-step threshold (param, state)" if dtype == dtypes[0] else None,
        )
        ax.text(x0 + len(rows) / 2 - 0.5, 1.01, dtype, transform=ax.get_xaxis_transform(), ha="center", va="bottom",
                fontsize="small")
        if x0:
            ax.axvline(x0 - 0.5, color="0.6", linewidth=0.8)
        x0 += len(rows)
    ax.axhline(floor, color="0.5", linestyle="dotted", linewidth=0.8, label="0 (bit-identical) drawn here")
    ax.set_yscale("log")
    ax.set_xlim(-0.5, x0 - 0.5)
    ax.set_xlabel("configuration (grouped by dtype, sorted by worst param/state figure)")
    ax.set_ylabel("one-step error (ULP)" if unit == "ULP" else "one-step error (relative)")
    ax.set_ylim(floor / 2, max([*positive, *limits]) * 4)
    ax.set_title(f"{name}: worst teacher-forced one-step error per configuration", fontsize="medium", pad=14)
    ax.grid(True, which="major", axis="y", alpha=0.3)
    fig.legend(loc="outside lower center", fontsize="small", ncols=5)
    fig.savefig(path, format="png", dpi=dpi)
    if unit == "ULP":
        return (
            "Worst one-step error of each configuration over all steps: param and state in ULP of the operands' "
            "scale, update in ULP of the update's own scale; log scale; the dashed line is the one-step threshold. "
            "Known deviations and the sensitivity section are drawn too: their status is in the table below."
        )
    return (
        "Worst one-step error of each configuration over all steps, relative to the size of the operands "
        "(this optimizer is not elementwise); log scale; the dashed line is the one-step threshold. "
        "Known deviations and the sensitivity section are drawn too: their status is in the table below."
    )


def _trajectory_plot(name: str, results: list[Any], path: Path, dpi: int) -> str | None:
    """Draw the per-step trajectory errors of one optimizer's results; None when no result
    has them."""
    rows = [r for r in results if r.status != "skipped" and getattr(r, "trajectory_by_step", None)]
    if not rows:
        return None
    positive = [v for r in rows for v in r.trajectory_by_step if v > 0]
    floor = min(positive) / 4 if positive else min(r.trajectory_limit for r in rows) / 1e3
    fig, ax = _figure_objects(9.0, 4.6, dpi)
    worst = max(rows, key=lambda r: max(r.trajectory_by_step) / r.trajectory_limit)
    labelled: set[str] = set()
    for r in rows:
        dtype = r.config.dtype
        colour = _DTYPE_COLOURS.get(dtype, "0.3")
        steps = list(range(1, len(r.trajectory_by_step) + 1))
        ys = [max(v, floor) for v in r.trajectory_by_step]
        bold = r is worst
        ax.plot(
            steps, ys, drawstyle="steps-post", color="black" if bold else colour,
            linewidth=1.6 if bold else 0.7, alpha=1.0 if bold else 0.35, zorder=3 if bold else 2,
            label=(f"worst: {r.config.short_id} ({dtype})" if bold else (dtype if dtype not in labelled else None)),
        )
        if not bold:
            labelled.add(dtype)
    limits: dict[float, list[str]] = {}
    for dtype in dict.fromkeys(r.config.dtype for r in rows):
        limits.setdefault(next(r.trajectory_limit for r in rows if r.config.dtype == dtype), []).append(dtype)
    for limit, dtypes in limits.items():
        colour = _DTYPE_COLOURS.get(dtypes[0], "0.3") if len(dtypes) == 1 else "tab:red"
        ax.axhline(limit, color=colour, linestyle="dashed", linewidth=1.0,
                   label=f"threshold {', '.join(dtypes)} ({limit:g})")
    ax.axhline(floor, color="0.5", linestyle="dotted", linewidth=0.8, label="0 (bit-identical) drawn here")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("trajectory error (relative)")
    ax.set_title(f"{name}: free-running error after each step, one line per configuration", fontsize="medium")
    ax.grid(True, which="major", axis="y", alpha=0.3)
    fig.legend(loc="outside lower center", fontsize="small", ncols=4)
    fig.savefig(path, format="png", dpi=dpi)
    return (
        "max |ours - torch| / max |torch| of the free-running parameters after each step (the worst parameter), "
        "one step line per configuration; log scale; dashed: the trajectory threshold of each dtype."
    )


def _worst_table(results: list[Any], n: int) -> str:
    rows = worst_cases(results, n)
    if not rows:
        return "<p>Every figure is 0: bit-identical in every configuration.</p>"
    out = [
        '<table class="worst"><thead><tr><th>id</th><th>configuration</th><th>dtype</th><th>figure</th>'
        "<th>value</th><th>threshold</th><th>where</th><th>status</th></tr></thead><tbody>"
    ]
    for r, name, value, limit, where in rows:
        unit = "" if name == "trajectory" else (" ULP" if r.unit == "ULP" else " (rel)")
        status = table.status_text(r)
        out.append(
            f'<tr><td><code>{_esc(r.config.short_id)}</code></td><td>{_esc(r.config.brief_label)}</td>'
            f"<td>{_esc(r.config.dtype)}</td><td>{_esc(name)}</td><td class=\"num\">{value:.3g}{unit}</td>"
            f'<td class="num">{limit:g}</td><td>{_esc(where)}</td>'
            f'<td class="{_status_class(r.status)}">{_esc(status)}</td></tr>'
        )
    out.append("</tbody></table>")
    return "\n".join(out)


def write_report(
    results: Iterable[Any],
    directory: str | Path,
    *,
    title: str = "refoptim conformance",
    reference: str = "torch",
    seconds: float | None = None,
    counts: dict[str, int] | None = None,
    sides: str = "",
    worst: int = 10,
    dpi: int = 100,
) -> Path:
    """Write ``directory/index.html`` and its PNG plots for ``results``; return the page's path.

    Args:
        results: :class:`~refoptim.testing.results.Result` objects.
        directory: created if missing; the page and the PNGs (``<optimizer>-one-step.png``,
            ``<optimizer>-trajectory.png``) are written there.
        title: the page's heading.
        reference: what the results were measured against (``"torch"``, ``"refoptim"``).
        seconds, counts: the run's time and :func:`refoptim.testing.table.count_statuses`
            (default: counted from ``results``), for the total line.
        sides: a line saying which backends and devices ran.
        worst: rows of each worst-cases table.
        dpi: of the PNGs.

    Raises:
        ImportError: matplotlib is not installed.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError(
            'the report draws with matplotlib, which is not installed; install it with:  pip install "refoptim[plot]"'
        ) from None
    results = list(results)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    counts = counts if counts is not None else table.count_statuses(results)
    by_optimizer: dict[str, list[Any]] = {}
    for r in results:
        by_optimizer.setdefault(r.config.optimizer, []).append(r)

    body = [f"<h1>{_esc(title)}</h1>"]
    body.append(f"<p><strong>{_esc(table.format_totals(counts, seconds))}</strong></p>")
    if sides:
        body.append(f"<p>{_esc(sides)}</p>")
    body.append(
        "<p>Thresholds: one-step "
        + _esc(", ".join(f"{k} {v:g} ULP" for k, v in thresholds.ONE_STEP_ULP.items()))
        + "; trajectory (relative) "
        + _esc(", ".join(f"{k} {v:g}" for k, v in thresholds.TRAJECTORY_REL.items()))
        + "; the optimizers that are not elementwise are judged by relative one-step error: "
        + _esc("; ".join(f"{n} " + ", ".join(f"{k} {v:g}" for k, v in lim.items())
                         for n, lim in thresholds.ONE_STEP_REL.items()))
        + f". Figures are against {_esc(reference)}.</p>"
    )
    body.append(
        "<nav>" + "".join(f'<a href="#{_slug(name)}">{_esc(name)}</a>' for name in by_optimizer)
        + '<a href="#table">the table</a></nav>'
    )
    for name, rows in by_optimizer.items():
        slug = _slug(name)
        per = table.count_statuses(rows)
        body.append(f'<section class="optimizer" id="{slug}">')
        body.append(f"<h2>{_esc(name)}</h2>")
        body.append(f"<p>{len(rows)} configurations: {_esc(table.format_totals(per).removeprefix('total: '))}</p>")
        if any(r.status != "skipped" for r in rows):
            png = f"{slug}-one-step.png"
            caption = _one_step_plot(name, rows, directory / png, dpi)
            body.append(
                f'<figure><img src="{png}" alt="{_esc(name)}: one-step error per configuration">'
                f"<figcaption>{_esc(caption)}</figcaption></figure>"
            )
            png = f"{slug}-trajectory.png"
            caption = _trajectory_plot(name, rows, directory / png, dpi)
            if caption is not None:
                body.append(
                    f'<figure><img src="{png}" alt="{_esc(name)}: trajectory error against step">'
                    f"<figcaption>{_esc(caption)}</figcaption></figure>"
                )
            else:
                body.append("<p>No per-step trajectory errors recorded for these configurations "
                            "(their harness measures the trajectory at the end only).</p>")
        body.append(f"<h3>Worst cases ({_esc(name)})</h3>")
        body.append(_worst_table(rows, worst))
        body.append("</section>")
    body.append('<section id="table"><h2>The table</h2>')
    body.append(f"<pre>{_esc(table.format_table(results, title=title, reference=reference, seconds=seconds))}</pre>")
    body.append("</section>")
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{_esc(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
    index = directory / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
