"""The one place where numerical agreement with torch is decided.

Never loosen a figure here to make a case pass: a case that cannot meet its threshold
stays visible in the conformance table with its measured figure and the reason.

``ONE_STEP_ULP``: the worst teacher-forced one-step error, in units in the last place of
the operands' scale (see :func:`refoptim.testing.metrics.ulp_error`), for the parameter
and for every state entry. The target of every elementwise optimizer is 4 ULP: torch's
CPU kernels and refoptim's differ only where torch rounds in a way the Array API cannot
express exactly (its MKL ``sqrt``, fused multiply-adds on float64), each worth at most
about one unit.

``TRAJECTORY_REL``: the free-running error after all steps, ``max|ours - torch| /
max|torch|`` over the parameters. Rounding differences of one unit per step can grow
along a trajectory (more so with feedback through the gradient), so this is looser than
one step; it is a guard against drift, while the one-step figure is the contract.
"""

ONE_STEP_ULP: dict[str, float] = {
    "float32": 4.0,
    "float64": 4.0,
    "complex64": 4.0,
}

TRAJECTORY_REL: dict[str, float] = {
    "float32": 1e-4,
    "float64": 1e-12,
    "complex64": 1e-4,
}


def one_step_ulp(dtype: str) -> float:
    """The one-step threshold (ULP of the operands' scale) for a dtype name."""
    return ONE_STEP_ULP[dtype]


def trajectory_rel(dtype: str) -> float:
    """The free-running relative-error threshold for a dtype name."""
    return TRAJECTORY_REL[dtype]


KNOWN_DEVIATIONS: dict[str, str] = {
    "ASGD-float64-lr=array(0.019999999552965164, float32), lambd=0.1, alpha=0.5, t0=10": (
        "with a float32 tensor lr torch computes eta = lr / (1 + lambd*lr*t)**alpha in float32, "
        "and for alpha = 0.5 its pow is its MKL sqrt, which is not correctly rounded: eta (a "
        "float32 state entry) is one float32 unit off on some steps, which a float64 trajectory "
        "carries at about 2**-24 relative (measured 1.3e-8). One-step figures pass; with torch's "
        "sqrt routed into the rule the run is bit-identical"
    ),
}
"""Configurations (by ``Config.id``) that cannot meet a threshold, with the measured
reason. They stay in the matrix and in the table, marked ``KNOWN`` with their figures;
they do not fail the run. A listed case that starts passing fails the run instead, so
this list stays true. Adding an entry needs a measured cause outside refoptim's control."""
