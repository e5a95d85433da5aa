"""refoptim against live torch 2.13: every configuration of the matrix, every step.

Each case runs torch (CPU, ``foreach=False``) beside refoptim on NumPy and asserts, with
the figures of ``refoptim/testing/thresholds.py``:

- the teacher-forced one-step error of the parameter and of every state entry,
- the state layout (keys, dtypes, shapes) and ``param_groups`` keys equal to torch's,
- the free-running trajectory error after all steps.
"""

import copy

import numpy as np
import pytest
import torch

import refoptim
import refoptim.testing.matrix
from refoptim.testing import thresholds
from refoptim.testing.matrix import configs
from refoptim.testing.metrics import ulp_error
from refoptim.testing.runner import run_config
from refoptim.testing.torch_adapter import (
    from_torch,
    numpy_state_dict,
    to_torch,
    torch_state_dict,
)

CONFIGS = [c for c in configs() if refoptim.testing.matrix.extension_for(c) is None]
"""The elementwise optimizers' configurations; the others (LBFGS, sparse gradients,
Adafactor, Muon) are run by their own ``conformance/test_<name>_vs_torch.py``."""


def test_torch_is_the_pinned_version():
    assert torch.__version__.startswith(refoptim.TORCH_VERSION)


def _case(cfg):
    known = thresholds.KNOWN_DEVIATIONS.get(cfg.id)
    marks = [pytest.mark.xfail(strict=True, reason=known)] if known else []
    return pytest.param(cfg, id=cfg.id, marks=marks)


@pytest.mark.parametrize("cfg", [_case(c) for c in CONFIGS])
def test_configuration(cfg):
    """Every threshold met; a listed known deviation must still miss (strict xfail)."""
    result = run_config(cfg)
    assert result.passed, result.reason
    assert result.param_ulp <= result.limit and result.state_ulp <= result.limit


_INTEROP = {
    "SGD": {"lr": 0.01, "momentum": 0.9},
    "Adam": {"lr": 0.01, "amsgrad": True},
    "AdamW": {"lr": 0.01, "amsgrad": True},
    "Adagrad": {"lr": 0.1, "lr_decay": 0.01},
    "Adadelta": {"lr": 1.0},
    "Adamax": {"lr": 0.01},
    "ASGD": {"lr": 0.01, "t0": 3},
    "NAdam": {"lr": 0.01},
    "RAdam": {"lr": 0.01},
    "RMSprop": {"lr": 0.01, "centered": True, "momentum": 0.9},
    "Rprop": {"lr": 0.01},
}


def test_interop_covers_every_elementwise_optimizer():
    """(The optimizers that are not elementwise test interop in their own files.)"""
    matrix = refoptim.testing.matrix
    assert set(_INTEROP) == set(matrix.optimizer_names()) - set(matrix.EXTENSIONS)


@pytest.mark.parametrize("name", sorted(_INTEROP))
def test_refoptim_state_dict_loads_into_torch(name):
    """The other direction: refoptim's state, converted to tensors, continues torch's run."""
    rng = np.random.default_rng(3)
    x0 = rng.standard_normal(6)
    options = _INTEROP[name]
    grads = [rng.standard_normal(6) for _ in range(10)]

    p = refoptim.Parameter(x0.copy())
    ours = getattr(refoptim, name)([p], foreach=False, **options)
    for g in grads[:5]:
        p.grad = g.copy()
        ours.step()

    t = to_torch(p.data).requires_grad_(True)
    theirs = getattr(torch.optim, name)([t], foreach=False, **options)
    sd = ours.state_dict()
    theirs.load_state_dict(torch_state_dict(sd))
    # Both sides load the same dict, so both apply the loading cast (NAdam's float32
    # mu_product becomes float64 for a float64 parameter, in torch and here).
    ours.load_state_dict(copy.deepcopy(sd))
    for g in grads[5:]:
        p.grad = g.copy()
        ours.step()
        t.grad = to_torch(g)
        theirs.step()
    limit = thresholds.one_step_ulp("float64")
    assert ulp_error(p.data, from_torch(t)) <= limit
    for key, value in numpy_state_dict(theirs.state_dict())["state"][0].items():
        assert ulp_error(np.asarray(ours.state[p][key]), value) <= limit, key
