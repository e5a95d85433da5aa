"""The conformance table, as ``python -m refoptim conformance`` prints it: one formatter for
every caller (the CLI, and :func:`refoptim.testing.compare`, whose report prints the same
table with refoptim as the reference). Torch-free: it reads
:class:`~refoptim.testing.results.Result` objects only.

One row per configuration::

    optimizer id          configuration                           dtype     steps     param     state    update trajectory  result
    Adam      adam-53c51e lr=0.01, weight_decay=0.1, maximize=True float32      50         2         0         2   8.16e-07  pass   [25/33]

- **optimizer**: the torch.optim name;
- **id**: :attr:`Config.short_id <refoptim.testing.matrix.Config.short_id>`, the handle
  ``--only`` takes;
- **configuration**: :attr:`Config.brief_label <refoptim.testing.matrix.Config.brief_label>`
  (the options that differ from the constructor's defaults, the groups, the objective); a
  long one wraps onto continuation lines, never cut;
- **param**, **state**: the worst teacher-forced one-step error of the parameter and of any
  state entry, in ULP of the operands' scale (figures marked ``r`` are relative errors: the
  optimizers that are not elementwise);
- **update**: the worst one-step error of the parameter in ULP of the update's own scale
  (``Result.update_ulp``); ``-`` for the rows measured in relative error;
- **trajectory**: the relative error of the free-running parameters after the last step;
- **result**: the status word (``pass``, ``FAIL: ...``, ``SENSITIVE here: ...``,
  ``KNOWN: ...``, ``KNOWN, not seen here ...``, ``SKIPPED: ...``) with its reason.

:func:`format_table` writes a whole table from finished results; the CLI streams it with
:func:`format_header` and :func:`format_row` as results arrive, then
:func:`format_summary` and :func:`format_totals`.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Any, Iterable

from . import thresholds

__all__ = [
    "STATUS_WORDS",
    "WITHIN",
    "Columns",
    "count_statuses",
    "figure",
    "format_header",
    "format_preamble",
    "format_row",
    "format_sensitivity_header",
    "format_sensitivity_row",
    "format_summary",
    "format_table",
    "format_totals",
    "record",
    "status_text",
]

STATUS_WORDS = ("pass", "fail", "sensitive", "known", "known-not-seen", "sensitivity", "skipped")
"""The values of ``Result.status``."""

WITHIN = ("pass", "known-not-seen")
"""Statuses whose figures meet every threshold (the worst-figure summary reads these)."""

DEFAULT_LABEL_WIDTH = 70
"""The widest configuration column; longer configurations wrap."""

_MIN_LABEL_WIDTH = 24


def figure(value: float, unit: str) -> str:
    """A one-step figure: ULP as a short number, relative errors marked ``r``."""
    return f"{value:.3g}" if unit == "ULP" else f"{value:.1e}r"


def _update(r: Any) -> str:
    """The update column: ``-`` where the figures are relative errors."""
    return "-" if r.unit != "ULP" else figure(getattr(r, "update_ulp", 0.0), "ULP")


@dataclass(frozen=True)
class Columns:
    """The widths of the text columns: the optimizer, the short id and the configuration."""

    id: int = 17
    """The width of the short id column."""
    label: int = DEFAULT_LABEL_WIDTH
    """The width of the configuration column; longer labels wrap."""
    optimizer: int = 9
    """The width of the optimizer column."""

    @classmethod
    def fit(cls, configs: Iterable[Any], label_width: int = DEFAULT_LABEL_WIDTH) -> Columns:
        """Widths for these configurations (``Config`` or ``Result`` objects): the longest
        short id, and the longest brief label up to ``label_width`` (longer ones wrap)."""
        cfgs = [getattr(c, "config", c) for c in configs]
        if not cfgs:
            return cls(2, _MIN_LABEL_WIDTH)
        label = max(len(c.brief_label) for c in cfgs)
        label = max(_MIN_LABEL_WIDTH, min(label, label_width))
        return cls(
            max(2, max(len(c.short_id) for c in cfgs)), label, max(9, max(len(c.optimizer) for c in cfgs))
        )

    @property
    def indent(self) -> int:
        """Where the configuration column starts (its continuation lines too)."""
        return self.optimizer + 1 + self.id + 1

    def wrap(self, text: str) -> list[str]:
        """``text`` in lines of at most :attr:`label` characters, broken at spaces."""
        if len(text) <= self.label:
            return [text]
        return textwrap.wrap(text, self.label, break_on_hyphens=False) or [""]


def status_text(r: Any) -> str:
    """The result column of a row of the main table."""
    status = r.status
    if status == "pass":
        return "pass"
    if status == "fail":
        twin = f"; {r.twin_text}" if r.twin_text else ""
        return f"FAIL: {r.reason}{twin}"
    if status == "sensitive":
        return f"SENSITIVE here: {r.reason}; {r.twin_text}"
    if status == "known":
        return f"KNOWN: {r.reason} — {r.known}"
    if status == "known-not-seen":
        return f"KNOWN, not seen here (meets every threshold on this machine) — {r.known}"
    if status == "sensitivity":
        reason = f": {r.reason}" if r.reason else ""
        return f"sensitivity section (not gating), verdict here {r.verdict}{reason}"
    return "SKIPPED: " + r.skipped


def format_preamble(reference: str = "torch") -> str:
    """The lines above the table: the thresholds and what each figure means."""
    return "\n".join(
        [
            "one-step thresholds (ULP): "
            + ", ".join(f"{k} {v:g}" for k, v in thresholds.ONE_STEP_ULP.items())
            + "; update (ULP of the update): "
            + ", ".join(f"{k} {v:g}" for k, v in thresholds.UPDATE_ULP.items())
            + "; trajectory (relative): "
            + ", ".join(f"{k} {v:g}" for k, v in thresholds.TRAJECTORY_REL.items()),
            f"param/state: worst teacher-forced one-step error against {reference}, in ULP of the operands' "
            "scale; figures marked r are relative errors, for the optimizers that are not elementwise: "
            + "; ".join(
                f"{name} " + ", ".join(f"{k} {v:g}" for k, v in limits.items())
                for name, limits in thresholds.ONE_STEP_REL.items()
            ),
            "update: the parameter's one-step error in ULP of the update's own scale (- for relative figures); "
            "trajectory: relative error after the last free-running step; id: the configuration's short id"
            + (" (--only ID reruns it)" if reference == "torch" else ""),
        ]
    )


def format_header(columns: Columns) -> str:
    """The header line of the main table and the rule below it."""
    head = (
        f"{'optimizer':<{columns.optimizer}} {'id':<{columns.id}} {'configuration':<{columns.label}} {'dtype':<9} "
        f"{'steps':>5} {'param':>9} {'state':>9} {'update':>9} {'trajectory':>10}  result"
    )
    return head + "\n" + "-" * len(head)


def format_row(
    r: Any, columns: Columns, *, index: int | None = None, total: int | None = None, note: str = ""
) -> str:
    """One row of the main table (more lines when the configuration wraps): short id,
    brief label, dtype, steps, param, state, update, trajectory, result; ``note`` follows
    the status word, ``[index/total]`` the row."""
    cfg = r.config
    lines = columns.wrap(cfg.brief_label)
    if r.status == "skipped":
        figures = f"{'-':>9} {'-':>9} {'-':>9} {'-':>10}"
    else:
        figures = (
            f"{figure(r.param_ulp, r.unit):>9} {figure(r.state_ulp, r.unit):>9} {_update(r):>9} "
            f"{r.trajectory:>10.2e}"
        )
    progress = f"   [{index}/{total}]" if index is not None else ""
    first = (
        f"{cfg.optimizer:<{columns.optimizer}} {cfg.short_id:<{columns.id}} {lines[0]:<{columns.label}} "
        f"{cfg.dtype:<9} {cfg.steps:>5} {figures}  {status_text(r)}{note}{progress}"
    )
    return "\n".join([first] + [" " * columns.indent + line for line in lines[1:]])


def format_sensitivity_header(columns: Columns, reference: str = "torch") -> str:
    """The title, header and rule of the sensitivity section (``thresholds.SENSITIVITY``)."""
    title = (
        "sensitivity section (not gating): configurations whose outcome moves with torch's CPU summation "
        f"order; refoptim against {reference} beside torch's twin (torch with another summation order) "
        f"against {reference}"
    )
    head = (
        f"{'optimizer':<{columns.optimizer}} {'id':<{columns.id}} {'configuration':<{columns.label}} "
        f"{'dtype':<9} {'steps':>5}  "
        f"{'refoptim: param':>15} {'state':>9} {'trajectory':>10} {'counters':>8}  "
        f"{'twin: param':>11} {'state':>9} {'trajectory':>10} {'counters':>8}  verdict here"
    )
    return title + "\n" + head + "\n" + "-" * len(head)


def format_sensitivity_row(
    r: Any, columns: Columns, *, index: int | None = None, total: int | None = None, note: str = ""
) -> str:
    """One row of the sensitivity section: refoptim's figures beside torch's twin's."""
    cfg = r.config
    lines = columns.wrap(cfg.brief_label)
    ours = (
        f"{figure(r.param_ulp, r.unit):>15} {figure(r.state_ulp, r.unit):>9} {r.trajectory:>10.2e} "
        f"{'differ' if r.counter_errors else 'equal':>8}"
    )
    t = r.twin
    twin = (
        f"{'-':>11} {'-':>9} {'-':>10} {'-':>8}"
        if t is None
        else f"{figure(t.param_rel, r.unit):>11} {figure(t.state_rel, r.unit):>9} {t.trajectory:>10.2e} "
        f"{'differ' if t.counter_errors else 'equal':>8}"
    )
    verdict = {
        "pass": "pass",
        "sensitive": "SENSITIVE: " + r.reason,
        "fail": "refoptim misses where the twin does not (not gating): " + r.reason,
    }[r.verdict]
    progress = f"   [{index}/{total}]" if index is not None else ""
    first = (
        f"{cfg.optimizer:<{columns.optimizer}} {cfg.short_id:<{columns.id}} {lines[0]:<{columns.label}} "
        f"{cfg.dtype:<9} {cfg.steps:>5}  {ours}  {twin}  {verdict}{note}{progress}"
    )
    return "\n".join([first] + [" " * columns.indent + line for line in lines[1:]])


def _name(cfg: Any) -> str:
    return cfg.optimizer + (" (sparse)" if cfg.objective == "sparse" else "")


def _where(r: Any) -> str:
    return r.param_where if r.param_ulp >= r.state_ulp else r.state_where


def format_summary(results: Iterable[Any]) -> str:
    """The section below the table: the worst figures per optimizer and dtype (rows that
    meet every threshold only), the worst one-step error of the elementwise optimizers
    and the worst trajectory error, each named by short id and brief label."""
    results = list(results)
    lines = [
        "worst per optimizer and dtype (param / state / update one-step error / trajectory; known deviations, "
        "SENSITIVE rows and the sensitivity section excluded):"
    ]
    summary: dict[tuple[str, str, str], list[float]] = {}
    within = [r for r in results if r.status in WITHIN]
    for r in within:
        row = summary.setdefault((_name(r.config), r.config.dtype, r.unit), [0.0, 0.0, 0.0, 0.0])
        row[0] = max(row[0], r.param_ulp)
        row[1] = max(row[1], r.state_ulp)
        row[2] = max(row[2], getattr(r, "update_ulp", 0.0))
        row[3] = max(row[3], r.trajectory)
    for (name, dtype, unit), (p, s, u, traj) in summary.items():
        upd = figure(u, unit) if unit == "ULP" else "-"
        lines.append(f"  {name:<18} {dtype:<9} {figure(p, unit):>7} / {figure(s, unit):<7} / {upd:<7} / {traj:.2e}")
    elementwise = [r for r in within if r.unit == "ULP"]
    if elementwise:
        w = max(elementwise, key=lambda r: max(r.param_ulp, r.state_ulp))
        where = f", {_where(w)}" if _where(w) else ""
        lines.append(
            f"worst one-step error of the elementwise optimizers: {max(w.param_ulp, w.state_ulp):.3g} ULP "
            f"({w.config.short_id}: {w.config.optimizer}, {w.config.brief_label}, {w.config.dtype}{where})"
        )
        u = max(elementwise, key=lambda r: getattr(r, "update_ulp", 0.0))
        if getattr(u, "update_ulp", 0.0) > 0:
            where = f", {u.update_where}" if u.update_where else ""
            lines.append(
                f"worst one-step error at the update's scale: {u.update_ulp:.3g} ULP "
                f"({u.config.short_id}: {u.config.optimizer}, {u.config.brief_label}, {u.config.dtype}{where})"
            )
    if within:
        t = max(within, key=lambda r: r.trajectory)
        lines.append(
            f"worst trajectory error: {t.trajectory:.3g} ({t.config.short_id}: {t.config.optimizer}, "
            f"{t.config.brief_label}, {t.config.dtype})"
        )
    return "\n".join(lines)


def count_statuses(
    results: Iterable[Any], *, other_rows: int = 0, other_failures: int = 0, other_sensitive: int = 0
) -> dict[str, int]:
    """How many rows have each status, and ``passed`` and ``failed``.

    ``other_*`` count rows outside ``results`` (the CLI's schedulers and swa_utils rows):
    all of them, those that fail, those ``SENSITIVE here``; the rest count as passed."""
    results = list(results)
    count = {s: sum(r.status == s for r in results) for s in STATUS_WORDS}
    count["sensitive"] += other_sensitive
    count["failed"] = count["fail"] + other_failures
    count["passed"] = count["pass"] + other_rows - other_failures - other_sensitive
    return count


def format_totals(count: dict[str, int], seconds: float | None = None) -> str:
    """The total line: ``total: 51 passed, 0 failed, 3 known deviations (1 not seen here),
    ... (12.3 s)`` from :func:`count_statuses`."""
    parts = [f"{count['passed']} passed", f"{count['failed']} failed"]
    n_known = count["known"] + count["known-not-seen"]
    if n_known:
        not_seen = f" ({count['known-not-seen']} not seen here)" if count["known-not-seen"] else ""
        parts.append(f"{n_known} known deviation{'s' if n_known != 1 else ''}{not_seen}")
    if count["sensitive"]:
        parts.append(f"{count['sensitive']} sensitive here")
    if count["sensitivity"]:
        parts.append(f"{count['sensitivity']} in the sensitivity section (not gating)")
    if count["skipped"]:
        parts.append(f"{count['skipped']} skipped")
    time = f" ({seconds:.1f} s)" if seconds is not None else ""
    return f"total: {', '.join(parts)}{time}"


def format_table(
    results: Iterable[Any],
    *,
    title: str | None = None,
    reference: str = "torch",
    label_width: int = DEFAULT_LABEL_WIDTH,
    seconds: float | None = None,
) -> str:
    """The whole table of finished results, as ``python -m refoptim conformance`` prints
    it: the title, the thresholds, the main table, the sensitivity section (rows of status
    ``sensitivity``), the worst figures and the total line.

    Args:
        results: :class:`~refoptim.testing.results.Result` objects, in row order.
        title: the first line (default: ``conformance against REFERENCE: N configurations``).
        reference: what the results were measured against (``"torch"``; ``"refoptim"``
            when another implementation is judged against refoptim).
        label_width: the widest configuration column; longer configurations wrap.
        seconds: the run's time, for the total line.
    """
    results = list(results)
    columns = Columns.fit(results, label_width)
    main = [r for r in results if r.status != "sensitivity"]
    section = [r for r in results if r.status == "sensitivity"]
    out = [title if title is not None else f"conformance against {reference}: {len(results)} configurations"]
    out.append(format_preamble(reference))
    out.append(format_header(columns))
    rule = out[-1].splitlines()[-1]
    total = len(results)
    out += [format_row(r, columns, index=i, total=total) for i, r in enumerate(main, 1)]
    if section:
        out.append(format_sensitivity_header(columns, reference))
        out += [
            format_sensitivity_row(r, columns, index=i, total=total) for i, r in enumerate(section, len(main) + 1)
        ]
    out.append(rule)
    out.append(format_summary(results))
    out.append(format_totals(count_statuses(results), seconds))
    return "\n".join(out)


def record(r: Any) -> dict[str, Any]:
    """A row for ``--json``: ``Result.as_dict()`` with the configuration's ``short_id``,
    ``brief_label`` and full ``label`` (``configuration`` is the full label too, as the
    thresholds' keys use it), the update figure and the per-step trajectory errors."""
    cfg = r.config
    out = dict(r.as_dict())
    out["short_id"] = cfg.short_id
    out["brief_label"] = cfg.brief_label
    out["label"] = cfg.label
    out.setdefault("update_ulp", getattr(r, "update_ulp", 0.0))
    out.setdefault("update_where", getattr(r, "update_where", ""))
    out.setdefault("trajectory_by_step", list(getattr(r, "trajectory_by_step", None) or []))
    return out
