"""The optimizers that take a square root depart from torch only through torch's CPU
``sqrt`` (MKL, not correctly rounded): with ``sqrt`` routed through torch, refoptim is
bit-identical to torch over whole free-running trajectories. This keeps the claim in
docs/conformance.md checked."""

import numpy as np
import pytest
import torch

import importlib

import refoptim
import refoptim._primitives


class _TorchSqrt:
    """The array namespace, except that ``sqrt`` is torch's."""

    def __init__(self, xp):
        self._xp = xp

    def __getattr__(self, name):
        return getattr(self._xp, name)

    def sqrt(self, x):
        return torch.from_numpy(np.ascontiguousarray(x)).sqrt().numpy().reshape(x.shape)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64])
@pytest.mark.parametrize(
    "name, options",
    [
        ("Adam", {"lr": 0.01}),
        ("Adam", {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True, "maximize": True}),
        ("AdamW", {"lr": 0.01, "amsgrad": True}),
        ("Adagrad", {"lr": 0.1, "lr_decay": 0.01, "weight_decay": 0.1}),
        ("Adadelta", {"lr": 1.0, "eps": 1e-3}),
        ("NAdam", {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True}),
        ("RAdam", {"lr": 0.01, "weight_decay": 0.1}),
        ("RMSprop", {"lr": 0.01, "centered": True, "momentum": 0.9, "weight_decay": 0.1}),
        ("ASGD", {"lr": np.asarray(0.02, dtype=np.float32), "lambd": 0.1, "alpha": 0.5, "t0": 10}),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bit_identical_with_torchs_sqrt(monkeypatch, name, options, dtype):
    rule_module = importlib.import_module(getattr(refoptim, name)._update.__module__)
    for module in (rule_module, refoptim._primitives):
        namespace = module.array_namespace
        monkeypatch.setattr(module, "array_namespace", lambda x, namespace=namespace: _TorchSqrt(namespace(x)))
    torch_options = {k: torch.from_numpy(v.copy()) if isinstance(v, np.ndarray) else v for k, v in options.items()}
    rng = np.random.default_rng(7)

    def normal(n):
        x = rng.standard_normal(n)
        if np.dtype(dtype).kind == "c":
            x = x + 1j * rng.standard_normal(n)
        return x.astype(dtype)

    x0 = normal(1000)
    p = refoptim.Parameter(x0.copy())
    ours = getattr(refoptim, name)([p], **options)
    t = torch.from_numpy(x0.copy()).requires_grad_(True)
    theirs = getattr(torch.optim, name)([t], foreach=False, **torch_options)
    for _ in range(50):
        g = normal(1000)
        p.grad = g.copy()
        ours.step()
        t.grad = torch.from_numpy(g.copy())
        theirs.step()
    np.testing.assert_array_equal(p.data, t.detach().numpy())
    for key, value in theirs.state[t].items():
        np.testing.assert_array_equal(np.asarray(ours.state[p][key]), value.numpy())
