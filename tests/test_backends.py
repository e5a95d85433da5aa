"""One code path for every backend: NumPy and array-api-strict give bitwise-identical results.

Same initial values and the same 20 gradients into SGD, Adam and AdamW (many flag
combinations) on both namespaces; after the run the parameter and every state entry must
be bitwise equal, and the functional form must give the same numbers as the classes.
"""

import zlib

import array_api_strict
import numpy as np
import pytest

import refoptim
from refoptim import functional as F
from refoptim import registry
from _support import (
    ALL_CONFIGS,
    DTYPES,
    SHAPES,
    assert_bitwise_equal,
    assert_state_equal,
    cnp,
    config_id,
    make_sequence,
    run_class,
    run_functional,
    to_np,
)

STEPS = 20


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "shape" + "x".join(map(str, s)) if s else "0d")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls,cfg", ALL_CONFIGS, ids=[config_id(c, k) for c, k in ALL_CONFIGS])
def test_numpy_and_strict_and_functional_agree_bitwise(cls, cfg, dtype, shape):
    init, grads = make_sequence(zlib.crc32(f"{config_id(cls, cfg)}-{dtype}-{shape}".encode()), shape, dtype, STEPS)

    p_np, s_np, _ = run_class(cls, cfg, cnp, init, grads)
    p_st, s_st, _ = run_class(cls, cfg, array_api_strict, init, grads)
    f_np, fs_np = run_functional(cls, cfg, cnp, init, grads)
    f_st, fs_st = run_functional(cls, cfg, array_api_strict, init, grads)

    # Each result lives in its own namespace.
    assert isinstance(p_np, np.ndarray)
    assert isinstance(p_st, array_api_strict._array_object.Array)
    assert isinstance(f_st, array_api_strict._array_object.Array)

    # The run did something (a size-0 parameter has nothing to change).
    if np.prod(shape) > 0:
        assert not np.array_equal(to_np(p_np), init)

    assert_bitwise_equal(p_np, p_st, "param numpy vs array_api_strict")
    assert_state_equal(s_np, s_st, "state numpy vs array_api_strict")
    assert_bitwise_equal(p_np, f_np, "param class vs functional (numpy)")
    assert_state_equal(s_np, fs_np, "state class vs functional (numpy)")
    assert_bitwise_equal(p_st, f_st, "param class vs functional (array_api_strict)")
    assert_state_equal(s_st, fs_st, "state class vs functional (array_api_strict)")


@pytest.mark.parametrize("cls,cfg", ALL_CONFIGS, ids=[config_id(c, k) for c, k in ALL_CONFIGS])
def test_state_keys_shapes_dtypes(cls, cfg, xp):
    init, grads = make_sequence(3, (3, 4), "float32", 2)
    p, state, _ = run_class(cls, cfg, xp, init, grads)
    if cls is refoptim.SGD:
        expected = {"momentum_buffer"} if cfg.get("momentum", 0) != 0 else set()
    else:
        expected = {"step", "exp_avg", "exp_avg_sq"} | ({"max_exp_avg_sq"} if cfg.get("amsgrad") else set())
    assert set(state) == expected
    for key, value in state.items():
        if key == "step":
            assert value.shape == () and value.dtype == xp.float32
            assert float(value) == 2.0
        else:
            assert value.shape == p.shape and value.dtype == p.dtype


def test_functional_module_exports():
    optimizers = [n for n in refoptim.__all__ if isinstance(getattr(refoptim, n), type)
                  and issubclass(getattr(refoptim, n), refoptim.Optimizer) and n != "Optimizer"]
    assert optimizers == list(registry.names())
    # LBFGS's rule acts on one flat vector of all parameters (lbfgs_step), like the class.
    for name in optimizers:
        for rule in registry.get(name).rules:
            assert rule in F.__all__, (name, rule)
    for name in F.__all__:
        assert callable(getattr(F, name))


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_init(xp, dtype, amsgrad):
    w = xp.asarray(np.ones((2, 3), dtype=dtype))
    state = F.adam_init(w, amsgrad)
    assert set(state) == {"step", "exp_avg", "exp_avg_sq"} | ({"max_exp_avg_sq"} if amsgrad else set())
    assert state["step"].shape == () and state["step"].dtype == xp.float32 and float(state["step"]) == 0.0
    for key in set(state) - {"step"}:
        assert state[key].dtype == w.dtype and state[key].shape == w.shape
        assert not np.any(to_np(state[key]))
    # The default is no AMSGrad.
    assert "max_exp_avg_sq" not in F.adam_init(w)


def test_adamw_step_is_adam_step_with_decoupled_decay(xp):
    init, grads = make_sequence(5, (4,), "float64", 5)
    hyper = dict(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1, amsgrad=False, maximize=False)
    w1, w2, w3 = (xp.asarray(init.copy()) for _ in range(3))
    s1, s2, s3 = F.adam_init(w1), F.adam_init(w2), F.adam_init(w3)
    for g in grads:
        w1 = F.adamw_step(w1, xp.asarray(g), s1, **hyper)
        w2 = F.adam_step(w2, xp.asarray(g), s2, decoupled_weight_decay=True, **hyper)
        w3 = F.adam_step(w3, xp.asarray(g), s3, decoupled_weight_decay=False, **hyper)
    assert_bitwise_equal(w1, w2)
    assert_state_equal(s1, s2)
    # Coupled weight decay is a different update.
    assert not np.array_equal(to_np(w1), to_np(w3))


def test_functional_updates_numpy_in_place(xp):
    """On mutable arrays the rule returns the very array it was given, updated."""
    from array_api_compat import is_lazy_array

    w = xp.asarray(np.ones(3))
    if is_lazy_array(w):
        pytest.skip("lazy arrays (JAX, Dask, ndonnx) are rebound, not written in place")
    g = xp.asarray(np.full(3, 0.5))
    out = F.sgd_step(w, g, {}, lr=0.1, momentum=0, dampening=0, weight_decay=0, nesterov=False, maximize=False)
    assert out is w
    assert np.array_equal(to_np(w), np.full(3, 0.95))
    state = F.adam_init(w)
    step0 = state["step"]
    out = F.adam_step(w, g, state, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                      amsgrad=False, maximize=False, decoupled_weight_decay=False)
    assert out is w
    assert state["step"] is step0 and float(step0) == 1.0
    # The gradient is never written to.
    assert np.array_equal(to_np(g), np.full(3, 0.5))
