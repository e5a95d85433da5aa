"""Adafactor against live torch 2.13: every configuration of
``refoptim.testing.conformance_adafactor``, state_dict interop both ways, and torch's
error messages at ``step``.
"""

import copy

import numpy as np
import pytest
import torch

import refoptim
from refoptim.adafactor import Adafactor
from refoptim.testing import thresholds
from refoptim.testing.conformance_adafactor import configs, run_config
from refoptim.testing.matrix import configs as matrix_configs
from refoptim.testing.torch_adapter import (
    from_torch,
    numpy_state_dict,
    to_torch,
    torch_state_dict,
)

CONFIGS = configs(["Adafactor"], ("float32", "float64", "complex64"), 50)


def test_configs_cover_the_options():
    assert configs(["SGD"], ("float32",), 5) == []
    assert {c.dtype for c in CONFIGS} == {"float32", "float64"}  # complex: torch rejects it
    options = set().union(*(c.options for c in CONFIGS), *(g for c in CONFIGS for g in c.groups))
    assert {"lr", "beta2_decay", "eps", "d", "weight_decay", "maximize"} <= options
    assert {c.objective for c in CONFIGS} == {"fixed", "quadratic", "rosenbrock"}
    assert any(len(c.groups) == 3 for c in CONFIGS)
    # the main matrix picks the extension up
    assert {c.id for c in matrix_configs(["Adafactor"], ("float32",), 50)} == {
        c.id for c in CONFIGS if c.dtype == "float32"
    }


@pytest.mark.parametrize("cfg", CONFIGS, ids=[c.id for c in CONFIGS])
def test_configuration(cfg):
    ulp = {}
    result = run_config(cfg, ulp)
    assert result.unit == "rel"
    assert result.passed, result.reason
    assert result.param_ulp <= thresholds.ONE_STEP_REL["Adafactor"][cfg.dtype]
    if cfg.dtype == "float32":
        # measured: every float32 step bit-identical to torch's
        assert result.param_ulp == result.state_ulp == result.trajectory == 0.0, result.as_dict()
    else:
        # state always bit-identical; the parameter within one ULP (the non-contiguous
        # view's norm is summed in another order by torch)
        assert result.state_ulp == 0.0 and ulp["param"] <= 1.0, (result.as_dict(), ulp)


def _pair(x0, options):
    t = to_torch(x0).requires_grad_(True)
    p = refoptim.Parameter(x0.copy())
    return t, torch.optim.Adafactor([t], foreach=False, **options), p, Adafactor([p], **options)


@pytest.mark.parametrize("shape", [(6,), (3, 4), (2, 3, 4)])
def test_torch_state_dict_continues_in_refoptim(shape):
    rng = np.random.default_rng(3)
    x0 = rng.standard_normal(shape)
    grads = [rng.standard_normal(shape) for _ in range(10)]
    options = {"lr": 0.05, "weight_decay": 0.1}
    t, theirs, p, _ = _pair(x0, options)
    for g in grads[:5]:
        t.grad = to_torch(g)
        theirs.step()
    p.data[...] = from_torch(t)
    ours = Adafactor([p], lr=0.5)
    ours.load_state_dict(numpy_state_dict(copy.deepcopy(theirs.state_dict())))
    assert ours.param_groups[0]["lr"] == 0.05
    assert ours.state[p]["step"].dtype == np.float32
    for g in grads[5:]:
        t.grad = to_torch(g)
        p.grad = g.copy()
        theirs.step()
        ours.step()
    np.testing.assert_array_equal(p.data, from_torch(t))
    for key, value in theirs.state[t].items():
        np.testing.assert_array_equal(np.asarray(ours.state[p][key]), from_torch(value))


@pytest.mark.parametrize("shape", [(6,), (3, 4), (2, 3, 4)])
def test_refoptim_state_dict_continues_in_torch(shape):
    rng = np.random.default_rng(4)
    x0 = rng.standard_normal(shape).astype(np.float32)
    grads = [rng.standard_normal(shape).astype(np.float32) for _ in range(10)]
    options = {"lr": 0.05, "eps": (1e-3, 1e-3), "maximize": True}
    t, theirs, p, ours = _pair(x0, options)
    for g in grads[:5]:
        p.grad = g.copy()
        ours.step()
    with torch.no_grad():
        t.copy_(to_torch(p.data))
    theirs.load_state_dict(torch_state_dict(copy.deepcopy(ours.state_dict())))
    assert theirs.state[t]["step"].dtype == torch.float32
    for g in grads[5:]:
        t.grad = to_torch(g)
        p.grad = g.copy()
        theirs.step()
        ours.step()
    np.testing.assert_array_equal(p.data, from_torch(t))


def _both_raise(build):
    """Run ``build(side)`` for torch and refoptim; return the two exceptions."""
    out = []
    for side in ("torch", "refoptim"):
        with pytest.raises(Exception) as info:
            build(side)
        out.append(info.value)
    return out


@pytest.mark.parametrize(
    "options",
    [{"lr": -1}, {"lr": -0.5}, {"beta2_decay": 0.5}, {"eps": (-1.0, 1e-3)}, {"eps": (None, -1e-3)},
     {"d": 0.9}, {"weight_decay": -0.1}, {"eps": (0.1,)}, {"lr": np.asarray(-0.1, dtype=np.float32)},
     {"lr": np.asarray([0.1, 0.2])}],
    ids=str,
)
def test_constructor_errors_equal_torch(options):
    def build(side):
        if side == "torch":
            opts = {k: (to_torch(v) if isinstance(v, np.ndarray) else v) for k, v in options.items()}
            torch.optim.Adafactor([torch.zeros(3, requires_grad=True)], **opts)
        else:
            Adafactor([refoptim.Parameter(np.zeros(3))], **options)

    theirs, ours = _both_raise(build)
    assert type(ours) is type(theirs) and str(ours) == str(theirs)


def test_complex_error_equals_torch():
    def build(side):
        if side == "torch":
            c = torch.ones(3, dtype=torch.complex64, requires_grad=True)
            opt = torch.optim.Adafactor([c])
            c.grad = torch.ones(3, dtype=torch.complex64)
        else:
            c = refoptim.Parameter(np.ones(3, dtype=np.complex64))
            opt = Adafactor([c])
            c.grad = np.ones(3, dtype=np.complex64)
        opt.step()

    theirs, ours = _both_raise(build)
    assert type(ours) is type(theirs) is RuntimeError and str(ours) == str(theirs)


@pytest.mark.parametrize("shape", [(0,), (0, 3), (3, 0)])
def test_size_zero_error_equals_torch(shape):
    def build(side):
        if side == "torch":
            z = torch.zeros(shape, requires_grad=True)
            opt = torch.optim.Adafactor([z])
            z.grad = torch.zeros(shape)
        else:
            z = refoptim.Parameter(np.zeros(shape, dtype=np.float32))
            opt = Adafactor([z])
            z.grad = np.zeros(shape, dtype=np.float32)
        opt.step()

    theirs, ours = _both_raise(build)
    assert type(ours) is type(theirs) is ZeroDivisionError and str(ours) == str(theirs)


def test_sparse_gradient_error_message():
    """torch's message, which the Optimizer base's default spells the same way."""
    t = torch.zeros(3, requires_grad=True)
    opt = torch.optim.Adafactor([t])
    t.grad = torch.ones(3).to_sparse()
    with pytest.raises(RuntimeError) as info:
        opt.step()
    assert str(info.value) == "Adafactor does not support sparse gradients"
    assert getattr(Adafactor, "_sparse_grad_error", None) is None


def test_mixed_dtype_group_eps1_quirk_equals_torch():
    """eps1=None: the first parameter's dtype gives every parameter of the group its eps."""
    g = np.array([[1e-8, 2e-8, 3e-8], [1.0, 2.0, 3.0]])
    a_t = torch.ones(3, dtype=torch.float32, requires_grad=True)
    b_t = torch.from_numpy(np.linspace(1, 2, 6).reshape(2, 3)).requires_grad_(True)
    a_r = refoptim.Parameter(np.ones(3, dtype=np.float32))
    b_r = refoptim.Parameter(np.linspace(1, 2, 6).reshape(2, 3))
    theirs = torch.optim.Adafactor([a_t, b_t], foreach=False)
    ours = Adafactor([a_r, b_r])
    for _ in range(3):
        a_t.grad, b_t.grad = torch.ones(3), to_torch(g)
        a_r.grad, b_r.grad = np.ones(3, dtype=np.float32), g.copy()
        theirs.step()
        ours.step()
    np.testing.assert_array_equal(b_r.data, from_torch(b_t))
    np.testing.assert_array_equal(a_r.data, from_torch(a_t))
