"""refoptim's rules on torch tensors (through array-api-compat) against torch.optim on the
same tensors: a cross-check of the rules inside torch itself. With torch's own kernels
under refoptim's rules (its sqrt, its fused multiply-adds), every elementwise optimizer is
bit-identical to torch.optim's single-tensor path, on small and on large parameters.

Before, ``Optimizer.step`` crashed on torch tensors in the fast path's element count
(``getattr(param, "size")`` is ``Tensor.size``, a method); it now counts elements from
the shape. The fast paths themselves take only arrays that report C-contiguous,
writeable ``flags`` (NumPy, CuPy): torch tensors run the plain rule."""

from __future__ import annotations

import pytest
import torch

import refoptim
from refoptim import _fastpath, registry

_CASES = [
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.5}),
    ("Adam", {"lr": 1e-2, "weight_decay": 0.1}),
    ("Adam", {"lr": 1e-2, "amsgrad": True, "maximize": True}),
    ("AdamW", {"lr": 1e-2}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.01}),
    ("Adadelta", {"weight_decay": 0.1}),
    ("Adamax", {"lr": 1e-2}),
    ("ASGD", {"lr": 1e-2, "t0": 2}),
    ("NAdam", {"lr": 1e-2, "decoupled_weight_decay": True, "weight_decay": 0.1}),
    ("RAdam", {"lr": 1e-2}),
    ("RMSprop", {"lr": 1e-2, "centered": True, "momentum": 0.5}),
    ("Rprop", {}),
]
CASES = _CASES + [(n, {}) for n in registry.names(elementwise=True) if n not in {name for name, _ in _CASES}]
"""The cases above, and every other elementwise optimizer with its defaults."""

SIZES = {"small": [(5,), (3, 4), ()], "large": [(3 * _fastpath.CHUNK_ELEMENTS + 7,)]}


def _run(name, options, shapes, dtype):
    gen = torch.Generator().manual_seed(0)
    values = [torch.randn(s, generator=gen, dtype=dtype) for s in shapes]
    grads = [[torch.randn(s, generator=gen, dtype=dtype) for s in shapes] for _ in range(8)]
    t_params = [v.clone().requires_grad_(True) for v in values]
    t_opt = getattr(torch.optim, name)(t_params, foreach=False, **options)
    r_params = [refoptim.Parameter(v.clone()) for v in values]
    r_opt = getattr(refoptim, name)(r_params, **options)
    for step_grads in grads:
        for tp, rp, g in zip(t_params, r_params, step_grads):
            tp.grad, rp.grad = g.clone(), g.clone()
        t_opt.step()
        r_opt.step()
    return t_params, t_opt, r_params, r_opt


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize(("name", "options"), CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_refoptim_on_torch_tensors_is_bit_identical_to_torch_optim(name, options, dtype, size):
    t_params, t_opt, r_params, r_opt = _run(name, options, SIZES[size], dtype)
    for tp, rp in zip(t_params, r_params):
        assert isinstance(rp.data, torch.Tensor) and rp.data.dtype == dtype
        assert torch.equal(rp.data, tp.detach()), name
        for key, value in t_opt.state[tp].items():
            ours = r_opt.state[rp][key]
            if isinstance(value, torch.Tensor):
                assert torch.equal(torch.as_tensor(ours), value), (name, key)


def test_the_fast_paths_count_elements_from_the_shape():
    """``Tensor.size`` is a method: the fast paths count from the shape, and decline
    tensors (no ``flags``) instead of failing."""
    big = torch.zeros(3 * _fastpath.CHUNK_ELEMENTS)
    assert _fastpath._size(big) == 3 * _fastpath.CHUNK_ELEMENTS and _fastpath._size(torch.zeros(())) == 1
    assert not _fastpath.can_chunk(big, big, {})
    assert _fastpath.group_key(torch.zeros(5), torch.zeros(5), {}) is None

    class Lazy:  # an Array API array whose size is not known yet (Dask's unknown chunks)
        shape = (None, 3)

    assert _fastpath._size(Lazy()) is None
