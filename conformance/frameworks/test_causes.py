"""The cause of every difference ``docs/frameworks.md`` publishes, each reproduced in a few
lines: the framework's own operation against torch's formula written in NumPy (torch 2.13's
single-tensor CPU path, which refoptim follows). The figures are pinned, so a fix upstream
shows up here as a failure to update the docs.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

optax = pytest.importorskip("optax", reason="needs the frameworks extra: pip install -e '.[frameworks]'")
keras = pytest.importorskip("keras", reason="needs the frameworks extra: pip install -e '.[frameworks]'")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import framework_adapters as fa  # noqa: E402

x64 = jax.enable_x64


def _ulps(got, want, dtype):
    """|got - want| in units of the dtype's spacing at |want|."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want) / np.spacing(np.abs(want).astype(dtype)).astype(np.float64)))


# --------------------------------------------------------------------------- optax Rprop
def test_optax_rprop_applies_the_previous_update():
    """optax 0.2.8's ``scale_by_rprop`` returns ``state.prev_updates``, the update of the
    *previous* step: step 1 moves nothing and step t takes torch's step t-1 (upstream
    optax PR 1725, not in 0.2.8)."""
    lr, eta_plus = 0.01, 1.2
    p, g = jnp.array([1.0, -2.0, 3.0]), jnp.array([0.5, -0.25, 1.0])
    tx = optax.rprop(lr)
    s = tx.init(p)
    u1, s = tx.update(g, s, p)
    u2, s = tx.update(g, s, p)
    torch_step1 = -lr * np.sign(g)  # step_size = lr; sign(g * 0) = 0 -> factor 1
    torch_step2 = -lr * eta_plus * np.sign(g)  # same sign twice -> eta_plus
    assert np.all(np.asarray(u1) == 0)
    np.testing.assert_allclose(u2, torch_step1, rtol=1e-6)
    assert not np.allclose(u2, torch_step2)


# --------------------------------------------------------------------------- bias correction
def test_optax_bias_correction_is_float32_with_x64_off():
    """optax's ``tree.bias_correction`` computes ``1 - decay**count`` with ``count`` an int32
    array: with x64 off in float32 (``1 - float32(0.999)``), 211 ULP off at step 1; with x64
    on in float64. torch computes ``1 - beta2**step`` in Python floats (float64). This is
    optax Adam/AdamW/RAdam's float32 difference with x64 off, and none with x64 on."""
    exact = np.float32(1 / (1 - 0.999))
    with x64(False):
        bc = optax.tree.bias_correction(jnp.ones((), jnp.float32), 0.999, jnp.asarray(1, jnp.int32))
    assert bc.dtype == jnp.float32
    assert 105 <= _ulps(bc, exact, np.float32) <= 422  # 211 ULP recorded
    with x64(True):
        bc = optax.tree.bias_correction(jnp.ones((), jnp.float32), 0.999, jnp.asarray(1, jnp.int32))
    assert _ulps(bc, exact, np.float32) <= 1


def test_keras_powers_are_in_the_variable_dtype():
    """Keras's Adam and Nadam take ``ops.power(cast(beta, variable.dtype), step)``: in
    float32 ``1 - beta_2**t`` carries float32(0.999)'s rounding whatever JAX's x64 mode
    (Keras Nadam's float32 figure; Keras Adam's is dominated by epsilon hat)."""
    with x64(True):
        t = np.float32(1.0)
        bc = 1 - keras.ops.power(keras.ops.cast(0.999, "float32"), t)
    assert bc.dtype == "float32"
    assert 50 <= _ulps(bc, np.float32(1 - 0.999), np.float32) <= 200  # 106 ULP recorded


# --------------------------------------------------------------------------- eps placement
def test_optax_radam_adds_eps_to_the_bias_corrected_root():
    """optax RAdam: ``r * m_hat / (sqrt(v / (1 - b2**t)) + eps)``; torch RAdam:
    ``r * m_hat * sqrt(1 - beta2**t) / (sqrt(v) + eps)``: eps meets v before the bias
    correction in torch, after it in optax. Same formula once |g| >> eps."""
    b1, b2, eps, t = 0.9, 0.999, 1e-8, 10
    g = np.array([1e-7, 1.0])
    with x64(True):
        tx = optax.scale_by_radam(b1=b1, b2=b2, eps=eps)
        s = tx.init(jnp.zeros(2))
        s = s._replace(count=jnp.asarray(t - 1, jnp.int32))
        u = np.asarray(tx.update(jnp.asarray(g), s)[0])
    m, v = (1 - b1) * g, (1 - b2) * g * g
    bc1, bc2 = 1 - b1**t, 1 - b2**t
    rho_inf = 2 / (1 - b2) - 1
    rho = rho_inf - 2 * t * b2**t / bc2
    r = np.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
    optax_form = r * (m / bc1) / (np.sqrt(v / bc2) + eps)
    torch_form = r * (m / bc1) * np.sqrt(bc2) / (np.sqrt(v) + eps)
    np.testing.assert_allclose(u, optax_form, rtol=1e-9)  # rho_t cancels: ~1e-12
    assert abs(u[0] / torch_form[0] - 1) > 0.5  # small gradient: 75% apart
    assert abs(u[1] / torch_form[1] - 1) < 1e-6  # large gradient: 9 eps / sqrt(v_hat) apart


@pytest.mark.parametrize("framework", ["optax", "keras"])
def test_adagrad_adds_eps_inside_the_root(framework):
    """optax and Keras Adagrad: ``g / sqrt(sum + eps)``; torch: ``g / (sqrt(sum) + eps)``.
    With eps=0 both pass."""
    g, eps = np.array([1e-6, 1.0]), 1e-10
    with x64(True):
        if framework == "optax":
            tx = optax.adagrad(1.0, initial_accumulator_value=0.0, eps=eps)
            u = np.asarray(tx.update(jnp.asarray(g), tx.init(jnp.zeros(2)))[0])
        else:
            u = _keras_one_step(lambda: keras.optimizers.Adagrad(1.0, initial_accumulator_value=0.0, epsilon=eps), g)
    their_form = -g / np.sqrt(g * g + eps)
    torch_form = -g / (np.sqrt(g * g) + eps)
    np.testing.assert_allclose(u, their_form, rtol=1e-12)
    assert abs(u[0] / torch_form[0] - 1) > 0.9  # 0.0995 against 0.9999


@pytest.mark.parametrize("framework", ["optax", "keras"])
def test_rmsprop_adds_eps_inside_the_root(framework):
    """Keras RMSprop and optax.rmsprop's default ``eps_in_sqrt=True``: ``g / sqrt(v + eps)``;
    torch: ``g / (sqrt(v) + eps)`` (optax's ``eps_in_sqrt=False``)."""
    g, alpha, eps = np.array([1e-5, 1.0]), 0.99, 1e-8
    with x64(True):
        if framework == "optax":
            tx = optax.rmsprop(1.0, decay=alpha, eps=eps)
            u = np.asarray(tx.update(jnp.asarray(g), tx.init(jnp.zeros(2)))[0])
        else:
            u = _keras_one_step(lambda: keras.optimizers.RMSprop(1.0, rho=alpha, epsilon=eps), g)
    v = (1 - alpha) * g * g
    np.testing.assert_allclose(u, -g / np.sqrt(v + eps), rtol=1e-12)
    torch_form = -g / (np.sqrt(v) + eps)
    assert abs(u[0] / torch_form[0] - 1) > 0.9


def test_keras_adam_uses_epsilon_hat():
    """Keras Adam (and AdamW): ``lr * sqrt(1 - b2**t) / (1 - b1**t) * m / (sqrt(v) + eps)``,
    the "epsilon hat" form (eps meets the uncorrected sqrt(v)); torch:
    ``lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)``."""
    g, lr, b1, b2, eps = np.array([1e-8, 1.0]), 1e-3, 0.9, 0.999, 1e-7
    with x64(True):
        u = _keras_one_step(lambda: keras.optimizers.Adam(lr, beta_1=b1, beta_2=b2, epsilon=eps), g)
    m, v = (1 - b1) * g, (1 - b2) * g * g
    eps_hat_form = -lr * np.sqrt(1 - b2) / (1 - b1) * m / (np.sqrt(v) + eps)
    torch_form = -lr / (1 - b1) * m / (np.sqrt(v) / np.sqrt(1 - b2) + eps)
    np.testing.assert_allclose(u, eps_hat_form, rtol=1e-12)
    assert abs(u[0] / torch_form[0] - 1) > 0.5


def test_keras_adamax_adds_eps_outside_the_max():
    """Keras Adamax: ``u = max(b2 * u, |g|)``, then divides by ``u + eps``; torch:
    ``exp_inf = max(beta2 * exp_inf, |g| + eps)``. After a large gradient and a small one
    the denominators are ``b2 * u + eps`` and ``b2 * (u + eps)``: (1 - b2) * eps apart."""
    g1, g2, lr, b1, b2, eps = np.array([1.0]), np.array([1e-3]), 1e-3, 0.9, 0.999, 1e-7
    with x64(True):
        u2 = _keras_one_step(lambda: keras.optimizers.Adamax(lr, beta_1=b1, beta_2=b2, epsilon=eps), g1, g2)
    m = b1 * (1 - b1) * g1 + (1 - b1) * g2
    keras_form = -lr * m / ((1 - b1**2) * (b2 * np.abs(g1) + eps))
    torch_form = -lr / (1 - b1**2) * m / (b2 * (np.abs(g1) + eps))
    np.testing.assert_allclose(u2, keras_form, rtol=1e-14)
    rel = abs(u2[0] / torch_form[0] - 1)
    assert 0.5 * (1 - b2) * eps <= rel <= 2 * (1 - b2) * eps  # 1e-10 relative: 4.5e5 float64 ULP


# --------------------------------------------------------------------------- order of operations
def test_optax_rounds_in_more_operations():
    """optax's RMSprop (``eps_in_sqrt=False``) multiplies by a reciprocal,
    ``(1 / (sqrt(v) + eps)) * g``, and its Adamax computes ``(m / (1 - b1**t)) / u``, where
    XLA turns the division by the scalar into a multiplication by its reciprocal,
    ``(m * (1 / (1 - b1**t))) / u``; torch divides once (``addcdiv(g, sqrt(v) + eps)``; ``addcdiv(m, exp_inf, value=-lr /
    (1 - beta1**t))`` with the scalar in float64). One more rounding of the update: within
    the 4 ULP threshold almost always, just above it in one configuration of each (5 and
    8 ULP at the operands' scale, in float32)."""
    rng = np.random.default_rng(2)
    g = (rng.standard_normal(4096) * 10.0 ** rng.uniform(-3, 1, 4096)).astype(np.float32)
    with x64(False):
        tx = optax.scale_by_rms(decay=0.99, eps=1e-8, eps_in_sqrt=False)
        u = np.asarray(tx.update(jnp.asarray(g), tx.init(jnp.zeros(4096)))[0])
        v = np.float32(1 - 0.99) * (g * g)
        optax_form = (np.float32(1) / (np.sqrt(v) + np.float32(1e-8))) * g
        torch_form = g / (np.sqrt(v) + np.float32(1e-8))
        assert np.array_equal(u, optax_form)
        assert np.count_nonzero(u != torch_form) > 0
        assert _ulps(u, torch_form, np.float32) <= 2

        tx = optax.scale_by_adamax(b1=0.9, b2=0.999, eps=1e-8)
        u = np.asarray(tx.update(jnp.asarray(g), tx.init(jnp.zeros(4096)))[0])
        m, inf = np.float32(1 - 0.9) * g, np.abs(g) + np.float32(1e-8)
        optax_form = (m * (np.float32(1) / (np.float32(1) - np.float32(0.9)))) / inf
        torch_form = m / inf * np.float32(1 / (1 - 0.9))
        assert np.array_equal(u, optax_form)
        assert np.count_nonzero(u != torch_form) > 0
        assert _ulps(u, torch_form, np.float32) <= 8  # 5: with x64 off 1 - b1 is float32 too


def test_optax_adamw_folds_weight_decay_into_the_update():
    """optax.adamw adds ``wd * p`` to Adam's direction and scales the sum by ``-lr``:
    ``p + (-lr) * (a + wd * p)``; torch first shrinks the parameter, ``p * (1 - lr * wd)``,
    then subtracts ``lr * a``. Where the two terms nearly cancel, the rounding of the sum
    is large beside the update (128 ULP of the update with weight_decay=0.5 in float64)."""
    rng = np.random.default_rng(3)
    p = rng.standard_normal(4096)
    a = rng.standard_normal(4096) * 10.0 ** rng.uniform(-3, 1, 4096)  # Adam's direction
    lr, wd = 1e-3, 0.5
    with x64(True):
        tx = optax.chain(optax.add_decayed_weights(wd), optax.scale_by_learning_rate(lr))
        new = np.asarray(optax.apply_updates(jnp.asarray(p), tx.update(jnp.asarray(a), tx.init(jnp.asarray(p)), jnp.asarray(p))[0]))
    optax_form = p + (-lr) * (a + wd * p)
    torch_form = p * (1 - lr * wd) - lr * a
    assert np.array_equal(new, optax_form)
    assert np.count_nonzero(new != torch_form) > 0
    update_ulps = np.abs(new - torch_form) / np.spacing(np.abs(torch_form - p))
    assert update_ulps.max() > 16


# --------------------------------------------------------------------------- NAdam
def test_optax_nadam_has_no_momentum_schedule():
    """optax.nadam's ``m_hat = b1 m / (1 - b1**(t+1)) + (1 - b1) g / (1 - b1**t)`` keeps b1
    fixed; torch's NAdam uses ``mu_t = beta1 (1 - 0.5 * 0.96**(t * momentum_decay))`` and
    their running product. No optax setting gives torch's schedule."""
    g, b1, b2, eps, psi = np.array([0.3]), 0.9, 0.999, 1e-8, 4e-3
    with x64(True):
        tx = optax.scale_by_adam(b1=b1, b2=b2, eps=eps, nesterov=True)
        u = np.asarray(tx.update(jnp.asarray(g), tx.init(jnp.zeros(1)))[0])
    m, v = (1 - b1) * g, (1 - b2) * g * g
    denom = np.sqrt(v / (1 - b2)) + eps
    optax_form = (b1 * m / (1 - b1**2) + (1 - b1) * g / (1 - b1)) / denom
    mu1, mu2 = (b1 * (1 - 0.5 * 0.96 ** (t * psi)) for t in (1, 2))
    torch_form = ((1 - mu1) / (1 - mu1) * g + mu2 / (1 - mu1 * mu2) * m) / denom
    np.testing.assert_allclose(u, optax_form, rtol=1e-12)
    assert abs(u[0] / torch_form[0] - 1) > 0.3


def test_torch_nadam_keeps_mu_product_in_float32():
    """torch's NAdam keeps ``mu_product`` in a float32 tensor whatever the parameter's
    dtype (refoptim does the same); Keras Nadam keeps ``u_product`` in the variable's dtype.
    In float64 the two products are float32 rounding apart: Keras Nadam's float64 figure."""
    import refoptim

    w = refoptim.Parameter(np.ones(2))
    opt = refoptim.NAdam([w], momentum_decay=1.0)
    for _ in range(3):
        w.grad = np.array([0.1, -0.2])
        opt.step()
    mu_product = opt.state[w]["mu_product"]
    assert np.asarray(mu_product).dtype == np.float32
    exact = np.prod([0.9 * (1 - 0.5 * 0.96**t) for t in (1, 2, 3)])
    assert abs(float(mu_product) / exact - 1) > 1e-12  # float32 rounding, ~1e-8 relative


# --------------------------------------------------------------------------- L-BFGS
def test_optax_lbfgs_first_step_is_scaled_by_the_l2_norm():
    """optax's ``scale_by_lbfgs`` scales its first direction by ``min(1, 1/||g||_2)``;
    torch's LBFGS by ``min(1, 1/||g||_1) * lr``. Once the first step is made equal, optax
    (``linesearch=None``, ``memory_size=history_size``) and torch (``max_iter=1``, no line
    search) follow the same iterates: the first step is the only difference."""
    import refoptim

    rng = np.random.default_rng(0)
    a, c = 10.0 ** rng.uniform(-1, 1, 8), rng.standard_normal(8)
    x0, lr = rng.standard_normal(8), 0.5
    w = refoptim.Parameter(x0.copy())
    opt = refoptim.LBFGS([w], lr=lr, max_iter=1, history_size=5)

    def closure():
        w.grad = a * (w.data - c)
        return 0.5 * float(np.sum(a * (w.data - c) ** 2))

    g0 = a * (x0 - c)
    opt.step(closure)
    x1_torch = w.data.copy()
    with x64(True):
        tx = optax.lbfgs(learning_rate=lr, memory_size=5, linesearch=None)
        s = tx.init(jnp.asarray(x0))
        u, s = tx.update(jnp.asarray(g0), s, jnp.asarray(x0))
        np.testing.assert_allclose(u, -lr * g0 / np.linalg.norm(g0), rtol=1e-12)
        np.testing.assert_allclose(x1_torch - x0, -lr * min(1, 1 / np.abs(g0).sum()) * g0, rtol=1e-12)
        x = jnp.asarray(x1_torch)  # teacher-force the first step, then run free
        for _ in range(6):
            opt.step(closure)
            u, s = tx.update(a * (x - c), s, x)
            x = x + u
        assert np.max(np.abs(np.asarray(x) - w.data)) / np.max(np.abs(w.data)) < 1e-12


# --------------------------------------------------------------------------- amsgrad
def test_optax_amsgrad_is_another_rule():
    """optax.amsgrad keeps ``max(nu_max, v_t / (1 - b2**t))``; torch keeps
    ``max(max_exp_avg_sq, v_t)`` and divides by the current ``sqrt(1 - beta2**t)``: after
    a large gradient and a small one the two denominators differ (the adapter reports
    amsgrad as unsupported)."""
    g1, g2, b1, b2, eps = 1.0, 1e-3, 0.9, 0.999, 1e-8
    with x64(True):
        tx = optax.scale_by_amsgrad(b1=b1, b2=b2, eps=eps)
        s = tx.init(jnp.zeros(1))
        _, s = tx.update(jnp.asarray([g1]), s)
        u = np.asarray(tx.update(jnp.asarray([g2]), s)[0])
    v1, m2 = (1 - b2) * g1**2, b1 * (1 - b1) * g1 + (1 - b1) * g2
    v2 = b2 * v1 + (1 - b2) * g2**2
    optax_form = m2 / (1 - b1**2) / (np.sqrt(max(v1 / (1 - b2), v2 / (1 - b2**2))) + eps)
    torch_form = m2 / (1 - b1**2) / (np.sqrt(max(v1, v2)) / np.sqrt(1 - b2**2) + eps)
    np.testing.assert_allclose(u, [optax_form], rtol=1e-12)
    assert abs(float(u[0]) / torch_form - 1) > 0.2


# --------------------------------------------------------------------------- torch's side
@pytest.mark.parametrize("name, options", [
    ("Adamax", {"betas": (np.asarray(0.9, np.float32), np.asarray(0.999, np.float32))}),
    ("AdamW", {"lr": np.asarray(1e-2, np.float32), "weight_decay": 0.1}),
])
def test_torch_tensor_hyperparameters_compute_in_float32(name, options):
    """torch computes with a 0-d float32 tensor ``lr`` or ``betas`` in float32 tensor
    arithmetic (Adamax's ``1 - beta1**step``, AdamW's ``1 - lr * weight_decay``), also for a
    float64 parameter; refoptim does the same. The adapters hand the frameworks the
    tensor's value as a Python float, which they use in float64: float64 rows with tensor
    hyper-parameters differ for a reason on torch's side."""
    import refoptim

    def one_step(opts):
        w = refoptim.Parameter(np.array([1.0, -2.0, 3.0]))
        opt = getattr(refoptim, name)([w], **opts)
        w.grad = np.array([0.3, -0.1, 2.0])
        opt.step()
        return w.data

    as_floats = {k: (tuple(float(b) for b in v) if isinstance(v, tuple) else float(v)) for k, v in options.items()}
    assert _ulps(one_step(options), one_step(as_floats), np.float64) > 1e3


# --------------------------------------------------------------------------- how we run
def test_jit_and_eager_round_differently():
    """The adapters run under ``jax.jit``, as training does: XLA fuses the elementwise
    chain and rounds differently from eager dispatch (optax.adam in float32: some elements
    of the update differ by a unit or so)."""
    rng = np.random.default_rng(0)
    p = jnp.asarray(rng.standard_normal(1000).astype(np.float32))
    g = jnp.asarray((rng.standard_normal(1000) * 10.0 ** rng.uniform(-6, 0, 1000)).astype(np.float32))
    with x64(False):
        tx = optax.adam(1e-3)
        s = tx.init(p)
        for _ in range(3):
            _, s = tx.update(g, s, p)
        eager, _ = tx.update(g, s, p)
        jitted, _ = jax.jit(tx.update)(g, s, p)
    differ = np.asarray(eager) != np.asarray(jitted)
    assert differ.any()
    assert _ulps(eager, jitted, np.float32) <= 4


@pytest.mark.parametrize("flag", [False, True])
def test_adagrad_schedule_form_is_exact(flag):
    """The optax Adagrad adapter always uses the schedule ``lr / (1 + count * lr_decay)``
    (so the state has a count to teacher-force); with lr_decay=0 it rounds exactly as
    ``optax.adagrad(lr)``."""
    rng = np.random.default_rng(1)
    dtype = jnp.float64 if flag else jnp.float32
    with x64(flag):
        p = jnp.asarray(rng.standard_normal(50), dtype)
        plain, scheduled = optax.adagrad(0.1), optax.adagrad(lambda count: 0.1 / (1 + count * 0.0))
        s1, s2 = plain.init(p), scheduled.init(p)
        for _ in range(5):
            g = jnp.asarray(rng.standard_normal(50) * 10.0 ** rng.uniform(-4, 1, 50), dtype)
            u1, s1 = jax.jit(plain.update)(g, s1)
            u2, s2 = jax.jit(scheduled.update)(g, s2)
            assert np.array_equal(np.asarray(u1), np.asarray(u2))


def test_keras_learning_rate_is_a_floatx_variable():
    """Keras keeps the learning rate in a ``floatx()`` variable: a float64 variable trained
    with the default floatx (float32) steps with lr rounded to float32 (the float64 rows
    build the optimizer with floatx float64)."""
    g, lr = np.array([1.0]), 1e-3
    with x64(True):
        default = _keras_one_step(lambda: keras.optimizers.SGD(lr), g, floatx="float32")
        float64 = _keras_one_step(lambda: keras.optimizers.SGD(lr), g)
    assert float(default[0]) == -float(np.float32(lr)) != -lr
    assert float(float64[0]) == -lr


def test_x64_context_matches_a_separate_process():
    """The tests switch JAX's mode with ``jax.enable_x64``; ``measure.py`` (the published
    tables) starts a process with ``JAX_ENABLE_X64=1``: the figures agree."""
    case = next(c for c in fa.OPTAX if c.name == "optax.radam")
    here = fa.worst(fa.run_case(case, [{}], True, "float64", steps=8))
    code = (
        "import framework_adapters as fa\n"
        "case = next(c for c in fa.OPTAX if c.name == 'optax.radam')\n"
        "print(repr(fa.worst(fa.run_case(case, [{}], True, 'float64', steps=8))))\n"
    )
    env = dict(os.environ, JAX_ENABLE_X64="1", KERAS_BACKEND="jax")
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=os.path.dirname(os.path.abspath(__file__)), env=env,
        capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip().splitlines()[-1] == repr(here)


def _keras_one_step(make, *grads, floatx="float64"):
    """The last update of a float64 Keras variable starting at 0, after ``grads``; the
    optimizer ``make()`` is built with ``keras.config.floatx()`` set to ``floatx``."""
    saved = keras.config.floatx()
    keras.config.set_floatx(floatx)
    try:
        opt = make()
        var = keras.Variable(np.zeros(len(grads[0])), dtype="float64")
    finally:
        keras.config.set_floatx(saved)
    before = None
    for g in grads:
        before = np.asarray(var.value).copy()
        opt.apply([jnp.asarray(g, jnp.float64)], [var])
    return np.asarray(var.value) - before
