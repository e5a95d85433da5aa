"""Keras 3 (JAX backend) against torch.optim (through refoptim), optimizer by optimizer, in
both JAX modes; pinned as in ``test_optax.py``. Keras casts every scalar to the variable's
dtype, so its float32 figures are the same with x64 off and on. The float64 rows build the
optimizer with ``keras.config.set_floatx("float64")`` (Keras keeps its learning rate in a
floatx variable; ``test_causes.py::test_keras_learning_rate_is_a_floatx_variable``).
"""

import pytest

pytest.importorskip("keras", reason="needs the frameworks extra: pip install -e '.[frameworks]'")

import framework_adapters as fa  # noqa: E402

OFF32, ON32, ON64 = fa.MODES

EXPECTED = {
    # Keras optimizer: {mode: "pass" | (param ULP, update ULP)}             cause (test_causes.py)
    "keras.optimizers.SGD": {OFF32: "pass", ON32: "pass", ON64: "pass"},
    "keras.optimizers.Adam": {OFF32: (14, 1020), ON32: (14, 1020), ON64: (4.35e9, 5.57e11)},   # epsilon hat
    "keras.optimizers.AdamW": {OFF32: (14, 1020), ON32: (14, 1020), ON64: (4.35e9, 5.57e11)},  # epsilon hat
    "keras.optimizers.Adamax": {OFF32: "pass", ON32: "pass", ON64: (3.55e4, 1.1e6)},  # eps outside the max
    "keras.optimizers.Adagrad": {OFF32: (4, 48), ON32: (4, 48), ON64: (2.23e9, 3.56e10)},  # eps inside the sqrt
    "keras.optimizers.Adagrad (eps=0)": {OFF32: "pass", ON32: "pass", ON64: "pass"},
    "keras.optimizers.Adadelta": {OFF32: "pass", ON32: "pass", ON64: "pass"},
    "keras.optimizers.RMSprop": {                                         # eps inside the sqrt
        OFF32: (3.94e4, 6.31e5), ON32: (3.94e4, 6.31e5), ON64: (2.12e13, 3.39e14),
    },
    "keras.optimizers.Nadam": {OFF32: (5, 64), ON32: (5, 64), ON64: (7.25e6, 5.8e7)},  # float32 powers; mu_product
}


def test_every_case_is_pinned():
    assert sorted(EXPECTED) == sorted(c.name for c in fa.KERAS)


@pytest.mark.parametrize("mode", fa.MODES, ids=lambda m: f"{m[0]}-{m[2]}")
@pytest.mark.parametrize("case", fa.KERAS, ids=lambda c: c.name)
def test_keras(case, mode):
    report = fa.run_case(case, fa.options_for_tests(case), mode[1], mode[2])
    fa.check_pinned(report, EXPECTED[case.name][mode])
