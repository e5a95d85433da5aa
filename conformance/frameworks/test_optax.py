"""optax against torch.optim (through refoptim), optimizer by optimizer, in both JAX modes.

Each row is pinned: ``"pass"`` (every configuration meets refoptim's thresholds: 4 ULP one
step, 1e-4 / 1e-12 relative trajectory) or the recorded worst one-step figures ``(operand
scale ULP, update scale ULP)`` of a known difference, whose cause has a reproducer in
``test_causes.py``. A measured figure more than a factor of 2 away from the recorded one,
or a known difference that passes, fails the test: something changed upstream.

A subset of the matrix (``framework_adapters.TEST_OPTIONS``, 10 steps, one (3, 4)
parameter); ``measure.py`` runs the whole matrix for ``docs/frameworks.md``.
"""

import pytest

pytest.importorskip("optax", reason="needs the frameworks extra: pip install -e '.[frameworks]'")

import framework_adapters as fa  # noqa: E402

OFF32, ON32, ON64 = fa.MODES

EXPECTED = {
    # optax op: {mode: "pass" | (param ULP, update ULP)}                    cause (test_causes.py)
    "optax.sgd": {OFF32: "pass", ON32: "pass", ON64: "pass"},
    "optax.adam": {OFF32: (10, 256), ON32: "pass", ON64: "pass"},          # bias correction in float32
    "optax.adamw": {OFF32: (10, 256), ON32: "pass", ON64: "pass"},         # bias correction in float32
    "optax.adamax": {OFF32: "pass", ON32: "pass", ON64: "pass"},
    "optax.adagrad": {OFF32: (4, 48), ON32: (4, 48), ON64: (2.23e9, 3.56e10)},  # eps inside the sqrt
    "optax.adagrad (eps=0)": {OFF32: "pass", ON32: "pass", ON64: "pass"},
    "optax.adadelta": {OFF32: "pass", ON32: "pass", ON64: "pass"},
    "optax.rmsprop (eps_in_sqrt=False)": {OFF32: "pass", ON32: "pass", ON64: "pass"},
    "optax.rmsprop (eps_in_sqrt=True, the default)": {                   # eps inside the sqrt
        OFF32: (3.94e4, 6.31e5), ON32: (3.94e4, 6.31e5), ON64: (2.12e13, 3.39e14),
    },
    "optax.radam": {OFF32: (115, 6.55e4), ON32: "pass", ON64: (1.39e7, 1.02e10)},  # eps on v_hat; float32 powers
    "optax.nadam": {                                                      # no momentum schedule
        OFF32: (2.09e5, 8.97e6), ON32: (2.09e5, 8.97e6), ON64: (1.12e14, 4.81e15),
    },
    "optax.rprop": {                                                      # applies the previous update
        OFF32: (1.34e6, 1.57e7), ON32: (1.34e6, 1.57e7), ON64: (7.21e14, 8.4e15),
    },
}


def test_every_case_is_pinned():
    assert sorted(EXPECTED) == sorted(c.name for c in fa.OPTAX)


@pytest.mark.parametrize("mode", fa.MODES, ids=lambda m: f"{m[0]}-{m[2]}")
@pytest.mark.parametrize("case", fa.OPTAX, ids=lambda c: c.name)
def test_optax(case, mode):
    report = fa.run_case(case, fa.options_for_tests(case), mode[1], mode[2])
    fa.check_pinned(report, EXPECTED[case.name][mode])


def test_float64_needs_x64():
    """With x64 off JAX would turn a float64 parameter into float32: the adapter says so."""
    report = fa.run_case(fa.OPTAX[0], [{}], False, "float64")
    assert all(r.status == "skipped" and "x64" in r.skipped for r in report.results)
