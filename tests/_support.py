"""Shared helpers of the unit tests: namespaces, data, bitwise comparison, snapshots.

No torch here: the unit tests run without it.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import array_api_compat.numpy as cnp
import array_api_strict
import numpy as np
import pytest

import refoptim
from refoptim.testing import backends

# The two CPU namespaces that must agree bit for bit (array-api-strict wraps NumPy); the
# tests that compare namespaces with each other run over these. The ``xp`` fixture
# (conftest.py) runs over every backend of the registry, CuPy included where a GPU is.
NAMESPACES = {"numpy": cnp, "array_api_strict": array_api_strict}

# The backends the ``xp`` fixture runs the unit tests on, available or not (the unavailable
# ones skipped with their reason): NumPy, array-api-strict and CuPy by default. The other
# libraries of the registry (JAX, Dask, torch, ndonnx) are proven bit-identical to NumPy
# over the whole matrix by tests/test_backend_agreement.py; ``REFOPTIM_TEST_BACKENDS``
# (comma-separated registry names, or ``all``) adds them to the unit tests as well, which
# takes far longer (each operation is a dispatch or a graph node there).
_CORE = ("numpy", "array-api-strict", "cupy")
_EXTRA = os.environ.get("REFOPTIM_TEST_BACKENDS", "")
_NAMES = backends.BACKEND_NAMES if _EXTRA.strip() == "all" else _CORE + tuple(
    n for n in (x.strip() for x in _EXTRA.split(",")) if n and n not in _CORE
)
BACKENDS = {name: backends.get_backend(name) for name in _NAMES}



def backend_param(name: str) -> Any:
    """The ``xp`` fixture's parameter for backend ``name``: skipped, with the reason, where
    the backend cannot run here (CuPy without a CUDA GPU)."""
    backend = BACKENDS[name]
    if backend.available:
        return pytest.param(name, id=name)
    reason = (
        f"CuPy with a CUDA GPU is not available: {backend.reason}"
        if name == "cupy"
        else f"backend {name} is not available: {backend.reason}"
    )
    return pytest.param(name, id=name, marks=pytest.mark.skip(reason=reason))


DTYPES = ("float32", "float64", "complex64")
SHAPES = ((), (5,), (3, 4), (0,))


def to_np(x: Any) -> np.ndarray:
    """A NumPy copy of an array of any of the tested namespaces (or of the stand-in), through
    the backend registry (CuPy arrays are copied from the device); anything else (Python
    scalars, lists) through ``np.asarray``."""
    if hasattr(x, "unwrap"):
        x = x.unwrap()
    try:
        return backends.to_numpy(x)
    except TypeError:
        return np.array(np.asarray(x), copy=True)


def bitwise_equal(a: Any, b: Any) -> bool:
    """True when ``a`` and ``b`` have one dtype, one shape and the same bytes."""
    a, b = to_np(a), to_np(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def assert_bitwise_equal(a: Any, b: Any, what: str = "") -> None:
    a_np, b_np = to_np(a), to_np(b)
    assert a_np.dtype == b_np.dtype, f"{what}: dtype {a_np.dtype} != {b_np.dtype}"
    assert a_np.shape == b_np.shape, f"{what}: shape {a_np.shape} != {b_np.shape}"
    assert a_np.tobytes() == b_np.tobytes(), f"{what}: values differ\n{a_np!r}\n{b_np!r}"


def random_array(rng: np.random.Generator, shape: tuple, dtype: str, scale: float = 1.0) -> np.ndarray:
    """A NumPy array of ``dtype`` with normal entries (real and imaginary for complex)."""
    if dtype.startswith("complex"):
        real = rng.standard_normal(shape) * scale
        imag = rng.standard_normal(shape) * scale
        return np.asarray(real + 1j * imag).astype(dtype)
    return np.asarray(rng.standard_normal(shape) * scale).astype(dtype)


def make_sequence(seed: int, shape: tuple, dtype: str, steps: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """An initial value and a gradient sequence, all NumPy, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    init = random_array(rng, shape, dtype)
    grads = [random_array(rng, shape, dtype) for _ in range(steps)]
    return init, grads


def as_xp(xp: Any, a: np.ndarray) -> Any:
    """``a`` (NumPy) as a fresh array of namespace ``xp``."""
    return xp.asarray(np.array(a, copy=True))


def state_snapshot(opt: refoptim.Optimizer) -> dict:
    """{(group, index): {key: numpy copy}} of every state entry of ``opt``."""
    snap = {}
    for gi, group in enumerate(opt.param_groups):
        for i, p in enumerate(group["params"]):
            if p in opt.state:
                snap[(gi, i)] = {k: to_np(v) if refoptim._backend.is_array(v) else copy.deepcopy(v)
                                 for k, v in opt.state[p].items()}
    return snap


def param_snapshot(opt: refoptim.Optimizer) -> dict:
    """{(group, index): numpy copy of data} of every parameter of ``opt``."""
    return {(gi, i): to_np(p.data) for gi, g in enumerate(opt.param_groups) for i, p in enumerate(g["params"])}


def assert_snapshots_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], dict):
            assert a[k].keys() == b[k].keys(), k
            for kk in a[k]:
                if isinstance(a[k][kk], np.ndarray):
                    assert_bitwise_equal(a[k][kk], b[k][kk], f"{k}/{kk}")
                else:
                    assert a[k][kk] == b[k][kk], (k, kk)
        else:
            assert_bitwise_equal(a[k], b[k], str(k))


def assert_state_equal(sa: dict, sb: dict, what: str = "state") -> None:
    """Two per-parameter state dicts have the same keys and bitwise-equal arrays."""
    assert sa.keys() == sb.keys(), f"{what}: keys {sorted(sa)} != {sorted(sb)}"
    for k in sa:
        assert_bitwise_equal(sa[k], sb[k], f"{what}[{k!r}]")


# Optimizer configurations the backend and round-trip tests run over.
SGD_CONFIGS = [
    dict(lr=0.1),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.3),
    dict(lr=0.05, momentum=0.9, nesterov=True),
    dict(lr=0.05, momentum=0.5, weight_decay=0.1, nesterov=True, maximize=True),
    dict(lr=0.02, momentum=0.8, dampening=0.1, weight_decay=0.01, maximize=True),
    dict(lr=0.1, weight_decay=0.2),
]
ADAM_CONFIGS = [
    dict(lr=0.01),
    dict(lr=0.01, amsgrad=True),
    dict(lr=0.01, weight_decay=0.1),
    dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
    dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6, amsgrad=True, maximize=True, weight_decay=0.05),
    dict(lr=0.01, amsgrad=True, weight_decay=0.1, decoupled_weight_decay=True, maximize=True),
]
ADAMW_CONFIGS = [
    dict(lr=0.01),
    dict(lr=0.01, weight_decay=0.1, amsgrad=True, maximize=True),
]

ALL_CONFIGS = (
    [(refoptim.SGD, c) for c in SGD_CONFIGS]
    + [(refoptim.Adam, c) for c in ADAM_CONFIGS]
    + [(refoptim.AdamW, c) for c in ADAMW_CONFIGS]
)


def config_id(cls: type, cfg: dict) -> str:
    return cls.__name__ + "(" + ",".join(f"{k}={v}" for k, v in cfg.items()) + ")"


def functional_hyper(cls: type, cfg: dict) -> tuple[Any, dict, bool]:
    """(step function, keyword hyper-parameters, amsgrad) of the functional form of ``cls(**cfg)``."""
    from refoptim import functional as F

    if cls is refoptim.SGD:
        hyper = dict(lr=0.001, momentum=0, dampening=0, weight_decay=0, nesterov=False, maximize=False)
        hyper.update(cfg)
        return F.sgd_step, hyper, False
    beta1, beta2 = cfg.get("betas", (0.9, 0.999))
    hyper = dict(
        lr=cfg.get("lr", 0.001),
        beta1=beta1,
        beta2=beta2,
        eps=cfg.get("eps", 1e-8),
        weight_decay=cfg.get("weight_decay", 0.01 if cls is refoptim.AdamW else 0),
        amsgrad=cfg.get("amsgrad", False),
        maximize=cfg.get("maximize", False),
    )
    if cls is refoptim.AdamW:
        return F.adamw_step, hyper, hyper["amsgrad"]
    hyper["decoupled_weight_decay"] = cfg.get("decoupled_weight_decay", False)
    return F.adam_step, hyper, hyper["amsgrad"]


def run_class(cls: type, cfg: dict, xp: Any, init: np.ndarray, grads: list[np.ndarray]):
    """Run ``cls(**cfg)`` on one parameter over ``grads``; return (parameter, state, optimizer)."""
    p = refoptim.Parameter(as_xp(xp, init), name="w")
    opt = cls([p], **cfg)
    for g in grads:
        p.grad = as_xp(xp, g)
        opt.step()
    return p.data, opt.state.get(p, {}), opt


def run_functional(cls: type, cfg: dict, xp: Any, init: np.ndarray, grads: list[np.ndarray]):
    """Run the functional form of ``cls(**cfg)`` over ``grads``; return (parameter, state)."""
    from refoptim import functional as F

    fn, hyper, amsgrad = functional_hyper(cls, cfg)
    w = as_xp(xp, init)
    state = {} if cls is refoptim.SGD else F.adam_init(w, amsgrad)
    for g in grads:
        w = fn(w, as_xp(xp, g), state, **hyper)
    return w, state


# A script for ``python -c``: runs refoptim's CLI with every import of torch refused (a meta-path finder: a ``None`` in
# ``sys.modules`` would break array-api-compat, which looks torch up there).
NO_TORCH = """
import sys

class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked for this test")
        return None

sys.meta_path.insert(0, _NoTorch())
from refoptim.__main__ import main
sys.exit(main(sys.argv[1:]))
"""
