"""The figures of one conformance configuration and their verdict
(:class:`~refoptim.testing.results.Result`), and torch's own spread
(:class:`~refoptim.testing.results.Spread`): torch-free, shared by the torch runners
(:mod:`!refoptim.testing.runner` and the ``conformance_*`` harnesses) and by
:func:`refoptim.testing.compare`, which judges another implementation against refoptim.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import thresholds
from .matrix import Config

__all__ = ["Result", "Spread"]


@dataclass
class Spread:
    """torch against itself with only its summation order changed ("torch's twin"),
    measured in the same run and with the same figures as refoptim against torch.

    Some configurations' outcomes depend on the order in which torch's CPU kernels sum
    (MKL's dot product picks its blocking per CPU; L-BFGS amplifies a last-bit difference
    of a dot product into different iteration counts), so torch's own results move with
    the machine. A harness that can re-run torch with another, equally valid order
    (``conformance_lbfgs.torch_reduction_order``) measures how far torch moves: that is
    the spread a miss of refoptim is judged against (:attr:`Result.verdict`).
    """

    orders: str = ""
    """The other orders the twin ran (where several ran, the figures are the worst of them)."""
    param_rel: float = 0.0
    state_rel: float = 0.0
    trajectory: float = 0.0
    counter_errors: list[str] = field(default_factory=list)
    """Where the twin's iteration counters (and the history lengths that follow them)
    differ from torch's: teacher-forced steps and free-running."""
    seconds: float = 0.0

    def worst(self, other: Spread) -> Spread:
        """The spread of both twins' orders: the worst of each figure."""
        return Spread(
            orders=", ".join(o for o in (self.orders, other.orders) if o),
            param_rel=max(self.param_rel, other.param_rel),
            state_rel=max(self.state_rel, other.state_rel),
            trajectory=max(self.trajectory, other.trajectory),
            counter_errors=self.counter_errors + other.counter_errors,
            seconds=self.seconds + other.seconds,
        )

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "orders": self.orders,
            "param": self.param_rel,
            "state": self.state_rel,
            "trajectory": self.trajectory,
            "counter_errors": list(self.counter_errors),
            "seconds": self.seconds,
        }


@dataclass
class Result:
    """What one configuration measured, and whether it meets the thresholds."""

    config: Config
    param_ulp: float = 0.0
    param_where: str = ""
    state_ulp: float = 0.0
    state_where: str = ""
    update_ulp: float = 0.0
    """The worst one-step error of the parameter at the update's own scale
    (:func:`refoptim.testing.metrics.update_ulp_error`), beside ``param_ulp`` at the
    operands' scale; 0 for the optimizers judged by relative error."""
    update_where: str = ""
    trajectory: float = 0.0
    trajectory_by_step: list[float] = field(default_factory=list)
    """The free-running relative error after each step (``trajectory`` is the last), where
    the harness records it (the elementwise runner does); empty otherwise."""
    structure_errors: list[str] = field(default_factory=list)
    """Where the layout differs from the reference's (state keys, shapes and dtypes, parameter
    group keys, LBFGS's returned loss), one message each; any is the miss ``"structure"``."""
    seconds: float = 0.0
    backend: str = "numpy"
    torch_device: str = "cpu"
    torch_foreach: bool = False
    skipped: str = ""
    """Why torch's requested path rejects the configuration (status ``skipped``), or an
    empty string when it ran."""
    reference: str = "torch"
    """What the figures were measured against, ``"torch"`` (the conformance runners) or
    ``"refoptim"`` (:func:`refoptim.testing.compare`, another implementation judged against
    refoptim). The lists of ``thresholds`` (known deviations, the sensitivity section)
    describe refoptim against torch and apply only to the first."""
    counter_errors: list[str] = field(default_factory=list)
    """Iteration counters that differ from torch's (LBFGS's ``n_iter`` and ``func_evals``,
    and the history lengths that follow them): decisions taken on rounded values, which a
    summation order can flip. Kept apart from :attr:`structure_errors` (the state layout,
    which no order changes) so that torch's twin can be held against them."""
    unfused: Result | None = None
    """The same configuration measured again with torch's two-operation rounding of
    ``lerp``, ``add(alpha=)`` and ``addcmul`` (:mod:`!refoptim.testing.torch_kernels`), when
    refoptim missed a threshold on a machine whose torch kernels do not fuse them
    (``ATEN_CPU_CAPABILITY=default``, CPUs without AVX2)."""
    twin: Spread | None = None
    """torch against itself with another summation order (:class:`Spread`), when the
    harness measured it: for a configuration of ``thresholds.SENSITIVITY`` always, for
    any other one of a harness that has a twin when refoptim misses a threshold."""

    @property
    def passed(self) -> bool:
        """True when every figure meets its threshold and the state layout and the
        iteration counters match torch's."""
        return not self.misses

    @property
    def misses(self) -> list[str]:
        """The figures that miss their threshold, among ``"structure"``, ``"counters"``,
        ``"param"``, ``"state"``, ``"update"``, ``"trajectory"``."""
        limit = self.limit
        out = []
        if self.structure_errors:
            out.append("structure")
        if self.counter_errors:
            out.append("counters")
        if self.param_ulp > limit:
            out.append("param")
        if self.state_ulp > limit:
            out.append("state")
        update_limit = self.update_limit
        if update_limit is not None and self.update_ulp > update_limit:
            out.append("update")
        if self.trajectory > self.trajectory_limit:
            out.append("trajectory")
        return out

    @property
    def limit(self) -> float:
        """The one-step threshold of this configuration (in :attr:`unit`)."""
        return thresholds.one_step_limit(self.config.optimizer, self.config.dtype)[0]

    @property
    def update_limit(self) -> float | None:
        """The update-scale threshold of this configuration (ULP), or None where there is
        no update-scale figure (the optimizers judged by relative error)."""
        return thresholds.update_limit(self.config.optimizer, self.config.dtype)

    @property
    def trajectory_limit(self) -> float:
        """The free-running threshold of this configuration (relative)."""
        return thresholds.trajectory_rel(self.config.dtype, self.config.optimizer)

    @property
    def unit(self) -> str:
        """The unit of ``param_ulp`` and ``state_ulp``, ``"ULP"`` or ``"rel"`` (relative
        error) for the optimizers that are not elementwise."""
        return thresholds.one_step_limit(self.config.optimizer, self.config.dtype)[1]

    @property
    def known(self) -> str | None:
        """The recorded reason when this configuration is a known deviation, else None."""
        if self.reference != "torch":
            return None
        return thresholds.KNOWN_DEVIATIONS.get(self.config.id)

    @property
    def gating(self) -> bool:
        """False for the configurations of ``thresholds.SENSITIVITY``, which are reported in
        the sensitivity section beside torch's twin, never failing the run."""
        return self.reference != "torch" or self.config.id not in thresholds.SENSITIVITY

    @property
    def verdict(self) -> str:
        """The figures' judgement, before the lists of ``thresholds``; ``pass`` (every
        threshold met), ``sensitive`` (refoptim misses, and torch's twin misses every
        threshold refoptim misses, as :func:`~refoptim.testing.thresholds.within_spread`
        decides: torch's own result moves that far on this machine; or refoptim re-run with
        this machine's unfused torch kernels, :attr:`unfused`, meets every threshold), or
        ``fail``."""
        misses = self.misses
        if not misses:
            return "pass"
        if self.unfused is not None and self.unfused.passed and "structure" not in misses:
            return "sensitive"
        twin = self.twin
        if twin is None or "structure" in misses:
            return "fail"
        covered = {
            "counters": bool(twin.counter_errors),
            "param": thresholds.within_spread(self.param_ulp, twin.param_rel, self.limit),
            "state": thresholds.within_spread(self.state_ulp, twin.state_rel, self.limit),
            "update": False,  # no twin measures the update-scale figure
            "trajectory": thresholds.within_spread(self.trajectory, twin.trajectory, self.trajectory_limit),
        }
        return "sensitive" if all(covered[m] for m in misses) else "fail"

    @property
    def status(self) -> str:
        """What the run makes of this configuration:

        - ``pass``: every threshold met;
        - ``sensitive``: misses, but torch against itself with another summation order
          misses the same way on this machine (:attr:`verdict`); does not fail the run;
        - ``fail``: misses where torch's twin does not (or where no twin runs): fails the run;
        - ``known``: a listed deviation (``thresholds.KNOWN_DEVIATIONS``) that misses;
        - ``known-not-seen``: a listed deviation that meets every threshold on this
          machine (torch's CPU results move with the machine: MKL's sqrt and reduction
          orders); reported, does not fail the run. The deviations were measured on NumPy
          against torch CPU ``foreach=False``; on other sides one that passes is a plain
          ``pass``;
        - ``sensitivity``: a configuration of ``thresholds.SENSITIVITY``, reported with its
          :attr:`verdict` beside torch's twin, never failing the run;
        - ``skipped``: torch's requested path rejects the configuration (:attr:`skipped`).
        """
        if self.skipped:
            return "skipped"
        if not self.gating:
            return "sensitivity"
        verdict = self.verdict
        if self.known is None:
            return verdict
        if verdict != "pass":
            return "known"
        default_sides = (self.backend, self.torch_device, self.torch_foreach) == ("numpy", "cpu", False)
        return "known-not-seen" if default_sides else "pass"

    @property
    def fails_run(self) -> bool:
        """True when this configuration fails the conformance run (status ``fail``)."""
        return self.status == "fail"

    @property
    def reason(self) -> str:
        """Why the configuration misses a threshold, or an empty string."""
        out = list(self.structure_errors) + list(self.counter_errors)
        limit, unit = self.limit, self.unit
        if self.param_ulp > limit:
            out.append(f"param one-step {self.param_ulp:.3g} {unit} > {limit:g} at {self.param_where}")
        update_limit = self.update_limit
        if update_limit is not None and self.update_ulp > update_limit:
            out.append(f"update one-step {self.update_ulp:.3g} ULP of the update > {update_limit:g} at {self.update_where}")
        if self.state_ulp > limit:
            out.append(f"state one-step {self.state_ulp:.3g} {unit} > {limit:g} at {self.state_where}")
        traj_limit = self.trajectory_limit
        if self.trajectory > traj_limit:
            out.append(f"trajectory {self.trajectory:.3g} > {traj_limit:g}")
        return "; ".join(out)

    @property
    def twin_text(self) -> str:
        """What torch's own spread showed, in a line; the re-run with this machine's unfused
        torch kernels (:attr:`unfused`) and torch's twin's figures (empty when neither ran)."""
        parts = []
        if self.unfused is not None:
            u = self.unfused
            verdict = "meets every threshold" if u.passed else "still misses: " + u.reason
            parts.append(
                f"torch's kernels here round lerp/add(alpha)/addcmul in two operations (no FMA, as with "
                f"ATEN_CPU_CAPABILITY=default); refoptim with that rounding {verdict} (param {u.param_ulp:.3g}, "
                f"state {u.state_ulp:.3g}, trajectory {u.trajectory:.2g})"
            )
        t = self.twin
        if t is not None:
            counters = f"; counters differ ({t.counter_errors[0]})" if t.counter_errors else ""
            parts.append(
                f"torch's twin ({t.orders}): param {t.param_rel:.2g}, state {t.state_rel:.2g}, "
                f"trajectory {t.trajectory:.2g}{counters}"
            )
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "optimizer": self.config.optimizer,
            "configuration": self.config.label,
            "dtype": self.config.dtype,
            "steps": self.config.steps,
            "unit": self.unit,
            "param_ulp": self.param_ulp,
            "param_where": self.param_where,
            "state_ulp": self.state_ulp,
            "update_ulp": self.update_ulp,
            "update_where": self.update_where,
            "state_where": self.state_where,
            "trajectory": self.trajectory,
            "passed": self.passed,
            "status": self.status,
            "verdict": self.verdict,
            "gating": self.gating,
            "reason": self.reason,
            "known_reason": self.known,
            "sensitivity_reason": thresholds.SENSITIVITY.get(self.config.id),
            "counter_errors": list(self.counter_errors),
            "twin": None if self.twin is None else self.twin.as_dict(),
            "unfused_rerun": None if self.unfused is None else {
                "param": self.unfused.param_ulp,
                "state": self.unfused.state_ulp,
                "trajectory": self.unfused.trajectory,
                "passed": self.unfused.passed,
            },
            "seconds": self.seconds,
            "backend": self.backend,
            "torch_device": self.torch_device,
            "torch_foreach": self.torch_foreach,
            "skipped": self.skipped,
        }
