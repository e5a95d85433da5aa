"""Whole-rule fusion (:mod:`refoptim._fuse`, opt-in with ``REFOPTIM_NUMBA=1``): each
operation a trace records gives, compiled, NumPy's dtype and bits; what a trace cannot
follow gives up before anything is written; every elementwise optimizer's rule fuses.
(That every optimizer's results are the plain rule's bits with fusion on is
``tests/test_fastpath.py``, modes ``threads-numba`` and ``grouped-numba``.)"""

import warnings

import numpy as np
import pytest

import refoptim
import refoptim._fastpath as fastpath
from refoptim import _fuse, _scratch, registry
from refoptim._backend import quiet
from refoptim._primitives import fma, lerp_, maximum_

pytest.importorskip("numba")

_SPECIALS = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 0.5, -2.5, 3.0, 1e-45, -1e-45, 1e-38, 3e38, -3e38, 1e-310]


def _operands(dtype):
    """Every pair of special values (signed zeros, infinities, NaN, subnormals, the
    largest finite values) and random values of several scales, as three arrays."""
    rng = np.random.default_rng(7)
    special = np.array(_SPECIALS)
    with np.errstate(over="ignore"):
        x = np.concatenate([np.repeat(special, len(special)), rng.standard_normal(512) * 10.0 ** rng.integers(-30, 30, 512)])
        y = np.concatenate([np.tile(special, len(special)), rng.standard_normal(512) * 10.0 ** rng.integers(-30, 30, 512)])
        return x.astype(dtype), y.astype(dtype), rng.permutation(x).astype(dtype)


def _canonical(a):
    """Bytes with every NaN made one pattern: a NaN's sign and payload are not part of the
    contract (``refoptim.fingerprint``)."""
    a = np.array(a, copy=True)
    a[np.isnan(a)] = np.nan
    return a.dtype.str, a.shape, a.tobytes()


def _rule(fn):
    """A rule in the fast path's form, ``update(param, grad, state, group)``, from
    ``fn(p, g, z)``: its result is the new parameter; ``state["z"]`` a full-size entry."""

    def update(param, grad, state, group):
        return fn(param, grad, state["z"])

    return update


RULES = {
    "add": lambda p, g, z: p + g,
    "subtract": lambda p, g, z: p - g,
    "multiply": lambda p, g, z: p * g,
    "divide": lambda p, g, z: p / g,
    "weak-scalars": lambda p, g, z: (p * 0.1 + 3) / 7 - 1e-3,
    "scalar-first": lambda p, g, z: 2.5 - 1 / p,
    "strong-float64-scalar": lambda p, g, z: p * np.float64(0.1),
    "0d-array": lambda p, g, z: p / np.asarray(0.3, p.dtype) + np.asarray(1e-8, np.float64),
    "sqrt": lambda p, g, z: np.sqrt(p),
    "negative-absolute": lambda p, g, z: -np.abs(p),
    "maximum": lambda p, g, z: np.maximum(p, g),
    "minimum": lambda p, g, z: np.minimum(p, g),
    "maximum_": lambda p, g, z: maximum_(z, p),
    "compare": lambda p, g, z: np.where(p > g, p, np.where(p < g, g, np.where(p == g, z, 7.0))),
    "compare-eq": lambda p, g, z: np.where((p >= g) & (p <= z) | ~(g != z), p, g),
    "logical": lambda p, g, z: np.where(np.logical_or(np.logical_and(p > 0, g > 0), np.logical_not(z > 0)), p, z),
    "classify": lambda p, g, z: np.where(np.isfinite(p), p, np.where(np.isnan(g), z, np.where(np.isinf(z), 1.0, g))),
    "where-0d": lambda p, g, z: np.where(p > 0, np.asarray(1.5, p.dtype), np.asarray(-0.5, p.dtype)) - np.where(g < 0, 1.0, 0.0),
    "astype": lambda p, g, z: (p.astype(np.float64) * g).astype(p.dtype) + (g > 0).astype(p.dtype),
    "like": lambda p, g, z: np.zeros_like(p) - np.ones_like(g) * np.full_like(z, 2.5),
    "inplace": lambda p, g, z: ((p.__imul__(0.5)).__iadd__(g)).__itruediv__(z),
    "store": lambda p, g, z: (z.__setitem__(Ellipsis, p * g), z + 1)[1],
}
FMA_RULES = {
    "fma-scalar": lambda p, g, z: fma(0.1, p, g),
    "fma-array": lambda p, g, z: fma(z, p, g),
    "fma-out": lambda p, g, z: fma(-0.25, p, z, out=z) * 2,
    "lerp-small": lambda p, g, z: lerp_(z, g, 0.1) + p,
    "lerp-large": lambda p, g, z: lerp_(z, g, 0.9) + p,
}


def _compare(fn, dtype):
    x, y, z = _operands(dtype)
    with quiet():
        p, zz = x.copy(), z.copy()
        want_p = fn(p, y.copy(), zz)
        want = np.empty_like(x)
        want[...] = want_p
        plan = _fuse.trace(_rule(fn), x, y, {"z": z}, {}, {})
    got_p, got_z = x.copy(), z.copy()
    plan.run({"param": got_p, "grad": y, "z": got_z})
    return (_canonical(got_p), _canonical(got_z)), (_canonical(want), _canonical(zz))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(RULES))
def test_each_operation_compiled_gives_numpys_bits(name, dtype):
    """Each operation a trace records (arithmetic with arrays, weak Python scalars, strong
    NumPy scalars and 0-d arrays; sqrt, abs, negation, maximum, minimum, comparisons,
    logical and bitwise operations on bools, classification, where, casts, the ``*_like``
    constructors, in-place operators, stores), compiled and run on every pair of special
    values and on random values of many scales: the parameter's and a state entry's
    bits are NumPy's (NaNs compared as NaNs)."""
    got, want = _compare(RULES[name], dtype)
    assert got == want


@pytest.mark.parametrize("name", list(FMA_RULES))
def test_the_fused_multiply_add_compiled_gives_the_array_api_bits(name):
    """float32 ``fma`` (a Python scalar or an array ``a``, with and without ``out``) and
    ``lerp_`` (both of torch's branches): the Array API route's bits."""
    got, want = _compare(FMA_RULES[name], np.float32)
    assert got == want


UNFUSABLE = {
    "a reduction": lambda p, g, z: p - np.sum(g),
    "a value read": lambda p, g, z: p if bool(np.any(g > 0)) else g,
    "indexing": lambda p, g, z: p + g[0],
    "power": lambda p, g, z: p**2.0,
    "a copy": lambda p, g, z: p.copy() + g,
    "a reshape": lambda p, g, z: p.reshape(2, -1).sum(),
    "an integer dtype": lambda p, g, z: (p > 0).astype(np.int32) * p,
    "a full-size plain array": lambda p, g, z: p + np.ones(p.shape, p.dtype),
    "a float64 fma": lambda p, g, z: fma(0.1, p.astype(np.float64), g.astype(np.float64)),
    "a raised error": lambda p, g, z: p + {}["missing"],
}


@pytest.mark.parametrize("name", list(UNFUSABLE))
def test_what_a_trace_cannot_follow_gives_up_and_changes_nothing(name):
    x, y, z = _operands(np.float32)
    step = np.asarray(4.0, np.float32)
    before = [a.tobytes() for a in (x, y, z, step)]

    def update(param, grad, state, group):
        state["step"] += 1
        return UNFUSABLE[name](param, grad, state["z"])

    with pytest.raises(_fuse.Unfusable):
        _fuse.trace(update, x, y, {"z": z}, {"step": step}, {})
    assert [a.tobytes() for a in (x, y, z, step)] == before


def test_a_created_state_entry_gives_up():
    x, y, z = _operands(np.float32)

    def update(param, grad, state, group):
        state["buf"] = grad * 2
        return param + state["buf"]

    with pytest.raises(_fuse.Unfusable, match="created"):
        _fuse.trace(update, x, y, {}, {}, {})


def test_the_scalar_state_is_the_rules_and_the_program_is_compiled_once():
    """The Python around the arithmetic runs for real on copies of the scalar state; the
    step's scalars are arguments, so a second step reuses the compiled program."""
    x, y, z = _operands(np.float32)
    step = np.asarray(1.0, np.float32)

    def update(param, grad, state, group):
        state["step"] += 1
        correction = 1 - group["beta"] ** float(state["step"])
        return param - grad / correction

    first = _fuse.trace(update, x, y, {}, {"step": step}, {"beta": 0.9})
    assert float(step) == 1.0 and float(first.kept["step"]) == 2.0
    second = _fuse.trace(update, x, y, {}, {"step": first.kept["step"]}, {"beta": 0.9})
    assert second.kernel is first.kernel and second.scalars != first.scalars
    got = x.copy()
    second.run({"param": got, "grad": y})
    with quiet():
        want = x - y / np.float32(1 - 0.9**3.0)
    assert _canonical(got) == _canonical(want)


def test_a_layout_that_gave_up_is_not_traced_again(monkeypatch):
    calls = []
    real = _fuse.trace
    monkeypatch.setattr(_fuse, "trace", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(_fuse, "_FAILED", set())
    x, y, z = _operands(np.float32)
    update = _rule(UNFUSABLE["power"])
    assert _fuse.plan_for(update, x, y, {"z": z}, {}, {}) is None
    assert _fuse.plan_for(update, x, y, {"z": z}, {}, {}) is None
    assert len(calls) == 1
    assert _fuse.plan_for(_rule(RULES["add"]), x, y, {"z": z}, {}, {}) is not None


@pytest.mark.parametrize("name", registry.names(elementwise=True))
def test_every_elementwise_rule_fuses(name, monkeypatch):
    """Generated from the registry: with ``REFOPTIM_NUMBA=1``, every elementwise optimizer
    at its bench options takes the fused path from its second step on (float32, a large
    parameter and small ones), with the plain rule's bits."""
    monkeypatch.setattr(_scratch, "NUMBA", True)
    monkeypatch.setattr(fastpath, "SCRATCH_MIN_ELEMENTS", 0)
    traced = []
    real = _fuse.trace
    monkeypatch.setattr(_fuse, "trace", lambda *a: traced.append(real(*a)) or traced[-1])
    results = []
    for strategy in (fastpath.ElementwiseStrategy(num_threads=2, thread_block_elements=64), fastpath.PLAIN):
        rng = np.random.default_rng(0)
        shapes = [(40_000,), (300,), (20, 30), (300,)]
        ps = [refoptim.Parameter(rng.standard_normal(s).astype(np.float32)) for s in shapes]
        cls = registry.get(name).cls
        with monkeypatch.context() as mp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mp.setattr(cls, "_strategy", strategy)
            opt = cls(ps, **registry.get(name).bench)
            for _ in range(3):
                for p in ps:
                    p.grad = rng.standard_normal(p.data.shape).astype(np.float32)
                opt.step()
        results.append([_canonical(p.data) for p in ps] + [_canonical(v) for p in ps for v in opt.state[p].values() if isinstance(v, np.ndarray)])
        if strategy is not fastpath.PLAIN:
            assert len(traced) >= 2, f"{name}: no step was fused"
    assert results[0] == results[1]


def test_without_numba_the_error_says_how_to_install_it(monkeypatch):
    """``REFOPTIM_NUMBA=1`` where numba does not import: the first program to compile
    raises an ``ImportError`` naming the extra, before the program runs."""
    import sys

    monkeypatch.setitem(sys.modules, "numba", None)
    monkeypatch.setattr(_fuse, "_COMPILED", {})
    x, y, z = _operands(np.float32)
    with pytest.raises(ImportError, match=r"pip install 'refoptim\[numba\]'"):
        _fuse.trace(_rule(RULES["add"]), x, y, {"z": z}, {}, {})
