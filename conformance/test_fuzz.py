"""A differential fuzzer: refoptim against live torch 2.13 on inputs hypothesis draws (issue 16).

The conformance matrix (``test_conformance.py`` and the ``test_*_vs_torch.py`` files) runs
chosen configurations on well-behaved data. This module draws the cases nobody chose, runs
them on both sides from the same initial bits, and requires the same outcome.

What is drawn (one *scenario* per example, :func:`scenarios`)
------------------------------------------------------------
- **the optimizer**: one test per optimizer, all fifteen (``OPTIMIZERS``). SparseAdam gets
  sparse COO gradients (``refoptim.SparseGrad`` against ``torch.sparse_coo_tensor``, with
  repeated indices, i.e. uncoalesced, and sometimes no entries); SGD and Adagrad sometimes
  do, the other optimizers rarely (their refusal is compared). LBFGS gets a closure over a
  separable quadratic (curvatures 0.1 to 10, drawn centres) that both sides evaluate with
  the same NumPy function. Muon gets 2-D parameters (sometimes not, to compare the refusal).
- **the options**: each constructor keyword mostly at torch's default, often at another
  valid value (a tensor ``lr`` among them: a 0-d NumPy array against a 0-d tensor), and
  sometimes at an invalid one: negative or NaN numbers, ``None`` or a string where a number
  belongs, betas of length 1 or 3 or outside [0, 1), bad etas/step sizes, zero or fractional
  integers, unknown strings. Per-group options too (up to two groups), and **options changed
  between steps** (``group[key] = value`` before step 2 or 3, invalid values included, which
  torch does not validate at ``step``).
- **the dtype**: float32, float64 and complex64 (complex mostly for the optimizers that
  support it; Muon and Adafactor refuse it, which is compared).
- **the shapes**: 0-d, 1-d and 2-d of up to 6 elements a side, and size 0.
- **non-finite and extreme values** (in about a quarter of the scenarios): inf, -inf, NaN,
  1e160, 1e38, 3e38, 1e30, subnormals (1e-310, 1e-40) and -0.0 among the initial values and
  the gradients (float32 casts 1e160 to inf and 1e-310 to 0: both sides get the same bits).
- **aliasing**: the same parameter twice in a group (``[p, p]``), a parameter in two groups,
  two parameters over one array (refoptim: two ``Parameter`` of one NumPy array; torch: two
  ``detach()`` leaves of one storage), and a gradient that is the parameter's own array
  (``p.grad = p.data``; torch: ``t.grad = t.detach()``).
- **missing gradients**: ``grad = None`` for some parameters at some steps (LBFGS: a closure
  that leaves some gradients ``None``).
- 2 or 3 steps.

What is required
----------------
- **Errors**: at the first point where either side raises (the constructor, or a step),
  the other raises too, with the same exception type (``type(...) is``) and the same
  message (``str``): the project's convention (``tests/test_validation.py``,
  ``test_muon_vs_torch.py``, ``test_sparse_vs_torch.py``). One documented exception: a
  group option of the wrong type is refused by refoptim at the start of ``step`` with its
  own message naming the group and option (``param_groups[0]['lr'] must be a real number,
  not NoneType``; ``Optimizer._check_group_options``), where torch fails later with an
  operator's message; that agrees when torch raises the same *type* at the same step. It
  does not agree where torch raises nothing (the option is not read in that configuration)
  or raises something else first. There is no superset rule for messages: the fuzzer never
  draws the inputs for which refoptim deliberately says more than torch (``EXCLUDED``).
- **Validate first, then mutate** (DESIGN.md): where refoptim's step raises a ``TypeError``
  or its option check, every parameter and state entry of refoptim is as it was before the
  step (bit for bit). Other errors (``ZeroDivisionError`` of a bias correction,
  ``KeyError`` of a buffer an option change asks for) come from the rule itself, midway, as
  in torch, and are not held to this. After an error nothing more is compared.
- **Numbers**, where neither raises: each step is teacher-forced (refoptim starts it from
  torch's parameters and state, copied into its arrays in place, so aliasing survives),
  then every parameter and every state entry is measured with the conformance suite's
  metrics and thresholds (``refoptim/testing/thresholds.py``, never loosened here):
  elementwise optimizers and SparseAdam ``ulp_error <= ONE_STEP_ULP`` (the parameter also
  ``update_ulp_error <= UPDATE_ULP``); LBFGS, Adafactor and Muon by relative error
  (``ONE_STEP_REL``; Muon's parameter relative to torch's update, as
  ``conformance_muon``); LBFGS's counters (``n_iter``, ``func_evals``, history lengths)
  equal. These metrics require non-finite values where torch has them: NaN where NaN, an
  infinity of the same sign where torch has one. The state layout (keys, dtypes, shapes,
  sparse indices, which parameters have state) must be torch's.
- **Complex NaN**: measured over ~1100 complex scenarios, 8 had an element that is NaN on
  both sides in different *components*: torch ``nan+nanj`` where refoptim (real views, as
  torch's kernels, but a few complex operations of NumPy's) gives ``1e+30+nanj``,
  ``nan+4.2j`` or ``0+nanj`` (Adam, RMSprop, Adagrad; the same limit as
  ``test_complex_nan_placement_on_strict`` in tests/). So a complex element with a NaN
  component on *both* sides agrees, whatever the other component; a NaN on one side only
  does not.
- **Warnings** (the duplicate-parameter warning of both sides, NumPy's overflow warnings)
  are ignored: not compared, never errors.

A miss is not failed where the conformance verdict attributes it to torch, by the suite's
own rules, each a re-run that must then agree within the same thresholds:

- refoptim with torch's two-operation rounding (``torch_kernels.unfused_primitives``), only
  on a machine whose torch kernels do not fuse (``torch_kernels.torch_fuses()``);
- refoptim with torch's ``sqrt`` (MKL's, not correctly rounded), for the elementwise
  optimizers' finite misses: docs/conformance.md's "the only difference", checked by
  ``test_sqrt_is_the_only_difference.py``. Measured: Adadelta, complex64, ``eps=1.0``,
  ``weight_decay=1.0``, ``acc_delta`` 5 ULP (limit 4: ``delta**2`` doubles a one-unit
  difference of MKL's sqrt); with torch's sqrt, bit-identical;
- for LBFGS, refoptim with torch's own dot products and ``abs().sum()``
  (:func:`torch_lbfgs_reductions`): refoptim sums them in its fixed order (DESIGN.md, "one
  answer everywhere"), torch in MKL's, which is what ``ONE_STEP_REL["LBFGS"]`` allows for;
- for LBFGS and Muon, torch's twin (torch with another, equally valid summation order:
  ``conformance_lbfgs.torch_reduction_order``, ``conformance_muon.torch_ns_order``) missing
  as far (``thresholds.within_spread``; counters that differ for the twin too).

These two decide **LBFGS near convergence**. On the drawn quadratics a step often runs its
inner loop down to rounding noise, where the gradient has shrunk by 1e5 or more and the
direction ``d``, ``ro = 1/y.s`` and the tolerance tests (``abs().max() <= tolerance_grad``,
``abs(loss - prev_loss) < tolerance_change``) turn on the last bits of a reduction.
Measured: a float64 step of 14 inner iterations whose first ``t`` (``1/abs().sum()``)
differs from torch's by one unit (2.5e-16) ends with ``d`` 2.8e-4 relative (limit 1e-6),
the error growing tenfold per iteration; with torch's reductions refoptim is bit-identical.
Elsewhere (2-5% of LBFGS scenarios) ``n_iter`` 8 against torch's 7 and ``d`` 0.99 relative,
where torch's twin differs from torch the same way. Inherent to a fixed summation order,
so not failed; but not excluded either: every such scenario still runs, and it fails if
neither re-run agrees.

Excluded (visible here, not silent)
-----------------------------------
``EXCLUDED`` lists what is not drawn and why.

Budget
------
Profiles are registered in ``conformance/conftest.py``: ``ci`` (the default here: 200
examples per optimizer, about 60 s in all on a 2-core machine while refoptim agrees,
``derandomize=True`` so every run draws the same examples, no deadline, no database; a
failure adds hypothesis' shrinking, up to a minute per failing optimizer) and ``long``
(2000 examples per optimizer, random, with the example database)::

    pytest conformance/test_fuzz.py                                # ci
    pytest conformance/test_fuzz.py --hypothesis-profile=long      # deeper
    HYPOTHESIS_PROFILE=long pytest conformance/test_fuzz.py        # the same, this module only
    pytest conformance/test_fuzz.py -k Adam --hypothesis-profile=long --hypothesis-seed=7

``ci`` applies to this module only; ``--hypothesis-profile`` loads the named profile for
the whole session (hypothesis' plugin does), and the fuzzer then uses it (the profiles are
registered by ``conformance/conftest.py``, so name ``conformance/`` or a file in it, or run
from the root, whose ``testpaths`` include it). A failure prints
the scenario as Python (``Scenario.describe``); ``run_scenario(Scenario(...))`` replays it.

``derandomize`` fixes the seed, not quite the draws: hypothesis also draws from a pool of
the literal constants of every local module imported so far
(``hypothesis.internal.conjecture.providers``), so a lone run of this file and the full
suite can draw different examples (CI's full run found two disagreements that lone runs
did not). This module imports every ``refoptim`` module first, so that part of the pool is
the same everywhere; to draw what the full suite draws, run the fuzzer from the root with
all test modules collected: ``pytest -k test_refoptim_agrees_with_torch``.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import math
import os
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, note, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import refoptim
from refoptim.testing import thresholds


def _import_every_refoptim_module() -> None:
    """Import all of refoptim (but its command line), for hypothesis' constants pool."""
    import importlib
    import pkgutil

    for info in pkgutil.walk_packages(refoptim.__path__, "refoptim."):
        if info.name != "refoptim.__main__":
            with contextlib.suppress(ImportError):
                importlib.import_module(info.name)


_import_every_refoptim_module()
from refoptim.testing.conformance_lbfgs import (
    _is_counter_error,
    compare_state,
    torch_reduction_order,
)
from refoptim.testing.conformance_muon import TWIN_ORDERS as MUON_ORDERS
from refoptim.testing.conformance_muon import torch_ns_order, update_relative_error
from refoptim.testing.conformance_sparse import sparse_from_torch
from refoptim.testing.metrics import step_relative_error, ulp_error, update_ulp_error
from refoptim.testing.torch_kernels import torch_fuses, unfused_primitives

OPTIMIZERS = (
    "SGD", "Adam", "AdamW", "Adagrad", "Adadelta", "Adamax", "ASGD", "NAdam", "RAdam",
    "RMSprop", "Rprop", "SparseAdam", "LBFGS", "Muon", "Adafactor",
)  # fmt: skip

RELATIVE = ("LBFGS", "Adafactor", "Muon")
"""Judged by relative error per step (``thresholds.ONE_STEP_REL``), not ULP."""

NO_COMPLEX = ("Muon", "Adafactor")
"""torch refuses complex parameters for these: complex is drawn rarely, for the refusal."""

EXCLUDED: dict[str, str] = {
    "gradients of another shape, dtype, namespace or device than the parameter": (
        "refoptim deliberately raises its own message naming the parameter where torch fails "
        "inside a kernel (or not at all); tests/test_optimizer_base.py covers them"
    ),
    "foreach=True, fused=True, capturable=True, differentiable=True": (
        "they only pick a torch implementation; torch runs foreach=False here, the path "
        "refoptim follows (torch's foreach path rounds differently: test_backends_vs_torch.py)"
    ),
    "bfloat16 and float16 parameters": "refoptim's dtypes are float32, float64 and complex64",
    "LBFGS with parameters that share memory (one listed twice, two over one array)": (
        "refoptim raises ValueError before the closure runs: torch moves each parameter in "
        "turn with add_, so aliased parameters are not the flat vector refoptim's rule moves; "
        "tests/test_robustness.py covers the refusal"
    ),
    "LBFGS options of the wrong type (None, a string, a fraction where an int belongs; max_eval=None "
    "in a group or set after construction), but for tolerance_grad": (
        "torch reads LBFGS's options inside its inner loop, each only on the branch that uses "
        "it (max_iter, lr and max_eval once the first gradient is not small enough, "
        "history_size from the second iteration, line_search_fn not at all without a line "
        "search), so whether torch raises depends on the trajectory; refoptim refuses them at "
        "the start of step, before the closure runs (validate, then mutate); "
        "tests/test_robustness.py covers them"
    ),
}
"""What the fuzzer does not draw, and why."""

# --------------------------------------------------------------------------- values
_SPECIALS = (
    0.0, -0.0, math.inf, -math.inf, math.nan, 1e160, -1e160, 1e38, -3e38, 1e30, -1e30,
    1e-310, -1e-310, 1e-40, -1e-40, 1e-30, 65504.0,
)  # fmt: skip
_MODERATE = st.floats(-8.0, 8.0, allow_subnormal=False, width=32)
_EXTREME = st.one_of(_MODERATE, _MODERATE, st.sampled_from(_SPECIALS))
_NUMPY = {"float32": np.float32, "float64": np.float64, "complex64": np.complex64}


def _real_dtype(dtype: str) -> type:
    return np.float64 if dtype == "float64" else np.float32


@st.composite
def _values(draw: Any, shape: tuple[int, ...], dtype: str, extreme: bool) -> np.ndarray:
    """An array of ``shape`` and ``dtype``: moderate values, or with specials mixed in."""
    elements = _EXTREME if extreme else _MODERATE
    real = draw(hnp.arrays(np.float64, shape, elements=elements))
    if dtype != "complex64":
        with np.errstate(over="ignore"):
            return real.astype(_NUMPY[dtype])
    im = draw(hnp.arrays(np.float64, shape, elements=elements))
    out = np.empty(shape, np.complex64)
    with np.errstate(over="ignore"):
        out.real = real.astype(np.float32)
        out.imag = im.astype(np.float32)
    return out


# --------------------------------------------------------------------------- options
_FLOAT_BAD = (-1.0, -0.5, math.nan, None, "0.1")
_PAIR_BAD = ((0.9,), (0.9, 0.99, 0.999), (1.0, 0.999), (0.9, 1.0), (-0.1, 0.9), (None, 0.9), (0.9, "0.99"), None)
_INT_BAD = (0, -1, None, 2.5, "3")

_F32 = np.float32
OPTION_VALUES: dict[str, tuple[tuple[Any, ...], tuple[Any, ...]]] = {
    # name: (other valid values, invalid values)
    "lr": ((0.0, 1e-3, 0.01, 0.1, 0.5, 1.0, 1e30, np.asarray(0.01, _F32), np.asarray(0.1, np.float64)), _FLOAT_BAD),
    "weight_decay": ((0.0, 0.01, 0.1, 1.0), _FLOAT_BAD),
    "eps": ((0.0, 1e-8, 1e-3, 1.0), _FLOAT_BAD),
    "betas": (((0.9, 0.999), (0.0, 0.0), (0.5, 0.9), (0.99, 0.5), (0.0, 0.999), (0.9, 0.0)), _PAIR_BAD),
    "momentum": ((0.0, 0.5, 0.9, 0.95), _FLOAT_BAD),
    "dampening": ((0.0, 0.1, 0.5, 1.0), (-1.0, None, "0")),
    "nesterov": ((False, True), ()),
    "maximize": ((False, True), ()),
    "amsgrad": ((False, True), ()),
    "decoupled_weight_decay": ((False, True), ()),
    "lr_decay": ((0.0, 0.01, 1.0), _FLOAT_BAD),
    "initial_accumulator_value": ((0.0, 0.1, 1.0), _FLOAT_BAD),
    "rho": ((0.0, 0.5, 0.9, 1.0), (-0.1, 1.5, None, "0.9")),
    "lambd": ((0.0, 1e-4, 0.1, 1.0), _FLOAT_BAD),
    "alpha": ((0.0, 0.5, 0.75, 0.99, 1.0), _FLOAT_BAD),
    "t0": ((0.0, 1.0, 2.0, 1e6), (None, "1")),
    "momentum_decay": ((0.0, 4e-3, 0.1), _FLOAT_BAD),
    "centered": ((False, True), ()),
    "etas": (
        ((0.5, 1.2), (0.1, 2.0), (0.9, 1.01), (0.0, 1.5)),
        ((1.5, 1.2), (0.5, 0.9), (0.5,), (0.5, 1.2, 2.0), None),
    ),
    "step_sizes": (((1e-6, 50), (0.0, 1.0), (1e-3, 1e-2)), ((1.0,), None, (1.0, "2"))),
    "max_iter": ((1, 2, 3, 5, 20), _INT_BAD),
    "max_eval": ((None, 1, 3, 10), (0, -1, 2.5, "3")),
    "tolerance_grad": ((1e-7, 0.0, 1e-3), (None, "1e-7")),
    "tolerance_change": ((1e-9, 0.0, 1e-3), (None, "1e-9")),
    "history_size": ((1, 2, 5, 100), _INT_BAD),
    "line_search_fn": ((None, "strong_wolfe"), ("foo", 3)),
    "ns_coefficients": (((3.4445, -4.775, 2.0315), (2.0, -1.5, 0.5)), ((1.0, 2.0), None)),
    "ns_steps": ((1, 2, 5), (100, 0, None, 2.5)),
    "adjust_lr_fn": ((None, "original", "match_rms_adamw"), ("foo", 3)),
    "beta2_decay": ((-0.8, -0.5, -1.0, 0.0), (0.5, None, "x")),
    "d": ((1.0, 2.0, 0.5), (0.5 - 1.0, None, "1")),
    "LBFGS.lr": ((0.0, 1e-3, 0.01, 0.1, 0.5, 1.0, np.asarray(0.1, np.float64)), (-1.0, -0.5, math.nan)),
    "LBFGS.max_iter": ((1, 2, 3, 5, 20), (0, -1)),
    "LBFGS.max_eval": ((None, 1, 3, 10), (0, -1)),
    "LBFGS.tolerance_change": ((1e-9, 0.0, 1e-3), ()),
    "LBFGS.history_size": ((1, 2, 5, 100), ()),
    "LBFGS.line_search_fn": ((None, "strong_wolfe"), ()),
    "Adafactor.eps": (
        ((None, 1e-3), (1e-30, 1e-3), (None, 0.0), (1e-3, 1e-3)),
        ((-1.0, 1e-3), (None, -1.0), (None,), None, 1e-3),
    ),
}
"""For every constructor keyword the fuzzer draws: other valid values, and invalid ones
(compared as errors). torch's default is drawn most often."""

_FLAGS = ("params", "foreach", "fused", "capturable", "differentiable")
_EMPTY = inspect.Parameter.empty


def _signature(name: str) -> dict[str, Any]:
    """torch's constructor keywords of an optimizer with their defaults (no flags)."""
    sig = inspect.signature(getattr(torch.optim, name).__init__)
    return {k: p.default for k, p in sig.parameters.items() if k != "self" and k not in _FLAGS}


def _option_key(name: str, option: str) -> str:
    return f"{name}.{option}" if f"{name}.{option}" in OPTION_VALUES else option


@st.composite
def _option(draw: Any, name: str, option: str, default: Any, bad_weight: int = 1) -> Any:
    """A value of one keyword: the default (weight 6), another valid one (3), an invalid
    one (``bad_weight``)."""
    valid, bad = OPTION_VALUES[_option_key(name, option)]
    choice = draw(st.integers(0, 8 + (bad_weight if bad else 0)))
    if choice < 6 and default is not _EMPTY:
        return default
    if choice < 9 or not bad:
        return draw(st.sampled_from(valid))
    return draw(st.sampled_from(bad))


@st.composite
def _options(draw: Any, name: str, subset: bool = False) -> dict[str, Any]:
    """Constructor keywords (only those drawn away from the default); ``subset``: a few
    keywords only, as a group's own options."""
    sig = _signature(name)
    keys = list(sig)
    if subset:
        keys = draw(st.lists(st.sampled_from(keys), min_size=1, max_size=2, unique=True))
    out = {}
    for key in keys:
        value = draw(_option(name, key, sig[key]))
        if value is _EMPTY:
            continue
        if not _same(value, sig[key]) or subset:
            out[key] = value
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return False
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:  # noqa: BLE001
        return False


# --------------------------------------------------------------------------- scenarios
@dataclass
class Sparse:
    """A sparse COO gradient: ``indices`` (sparse_dim, nnz) int64, ``values`` (nnz, *dense)."""

    indices: np.ndarray
    values: np.ndarray

    def dense(self, shape: tuple[int, ...]) -> np.ndarray:
        out = np.zeros(shape, self.values.dtype)
        for k in range(self.indices.shape[1]):
            out[tuple(self.indices[:, k])] += self.values[k]
        return out

    def __repr__(self) -> str:
        return f"Sparse(indices={self.indices.tolist()!r}, values={_arr(self.values)})"


def _arr(a: np.ndarray) -> str:
    return f"np.array({a.tolist()!r}, dtype=np.{a.dtype})"


@dataclass
class Scenario:
    """One drawn case. ``params[i]`` is the index of the array parameter ``i`` is over;
    ``groups`` lists parameter indices (repeats allowed) and the group's own options;
    ``grads[step][i]`` is ``None``, ``"data"`` (the parameter's own array), an array or a
    :class:`Sparse`; ``changes[step]`` are ``(group, key, value)`` set before that step;
    ``objective`` (LBFGS) is ``(curvature, centre)`` per array and ``frozen`` the
    parameters whose closure leaves the gradient ``None``."""

    name: str
    dtype: str
    arrays: list[np.ndarray]
    params: list[int]
    groups: list[tuple[list[int], dict[str, Any]]]
    defaults: dict[str, Any]
    steps: int
    grads: list[list[Any]] = field(default_factory=list)
    changes: list[list[tuple[int, str, Any]]] = field(default_factory=list)
    objective: list[tuple[np.ndarray, np.ndarray]] | None = None
    frozen: list[bool] = field(default_factory=list)

    def __repr__(self) -> str:
        return self.describe()

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # hypothesis' failure report
        printer.text(self.describe())

    def describe(self) -> str:
        """The scenario as Python: a reproducer for :func:`run_scenario`."""
        lines = [
            "Scenario(",
            f"    name={self.name!r}, dtype={self.dtype!r}, steps={self.steps},",
            f"    arrays=[{', '.join(_arr(a) for a in self.arrays)}],",
            f"    params={self.params!r}, groups={self.groups!r}, defaults={self.defaults!r},",
        ]
        if self.objective is None:
            lines.append("    grads=[")
            for row in self.grads:
                lines.append(
                    "        [" + ", ".join(_arr(g) if isinstance(g, np.ndarray) else repr(g) for g in row) + "],"
                )
            lines.append("    ],")
        else:
            lines.append(f"    objective=[{', '.join(f'({_arr(a)}, {_arr(c)})' for a, c in self.objective)}],")
            lines.append(f"    frozen={self.frozen!r},")
        lines.append(f"    changes={self.changes!r},")
        lines.append(")")
        return "\n".join(lines)


def _shape_strategy(name: str) -> st.SearchStrategy:
    side = st.integers(1, 6)
    two_d = st.tuples(side, side)
    if name == "Muon":
        return st.one_of(two_d, two_d, two_d, two_d, two_d, two_d, st.tuples(side), st.just(()))
    return st.one_of(st.just(()), st.tuples(side), st.tuples(side), two_d, two_d, st.just((0,)))


def _dtype_strategy(name: str) -> st.SearchStrategy:
    if name in NO_COMPLEX:
        return st.sampled_from(("float32", "float64") * 5 + ("complex64",))
    return st.sampled_from(("float32", "float64", "complex64"))


@st.composite
def _sparse(draw: Any, shape: tuple[int, ...], dtype: str, extreme: bool) -> Sparse:
    sparse_dim = draw(st.integers(1, len(shape)))
    nnz = draw(st.integers(0, 4)) if shape[0] else 0
    idx = [[draw(st.integers(0, shape[d] - 1)) for _ in range(nnz)] for d in range(sparse_dim)]
    indices = np.asarray(idx, dtype=np.int64).reshape(sparse_dim, nnz)
    values = draw(_values((nnz, *shape[sparse_dim:]), dtype, extreme))
    return Sparse(indices, values)


@st.composite
def _grad(draw: Any, name: str, shape: tuple[int, ...], dtype: str, extreme: bool, allow_data: bool) -> Any:
    kind = draw(st.integers(0, 99))
    if kind < 8:
        return None
    if kind < 13 and allow_data:
        return "data"
    sparse_share = {"SparseAdam": 92, "SGD": 15, "Adagrad": 15}.get(name, 3)
    if shape and draw(st.integers(0, 99)) < sparse_share:
        return draw(_sparse(shape, dtype, extreme))
    return draw(_values(shape, dtype, extreme))


@st.composite
def scenarios(draw: Any, name: str) -> Scenario:
    """A scenario for optimizer ``name`` (see the module docstring)."""
    dtype = draw(_dtype_strategy(name))
    extreme = draw(st.integers(0, 3)) == 0
    n_arrays = draw(st.integers(1, 3))
    shapes = [draw(_shape_strategy(name)) for _ in range(n_arrays)]
    arrays = [draw(_values(s, dtype, extreme)) for s in shapes]
    params = list(range(n_arrays))
    if name != "LBFGS" and draw(st.integers(0, 9)) == 0:  # two Parameters over one array
        params.append(draw(st.integers(0, n_arrays - 1)))
    n = len(params)
    if name != "LBFGS" and n > 1 and draw(st.integers(0, 3)) == 0:
        split = draw(st.integers(1, n - 1))
        members = [list(range(split)), list(range(split, n))]
    else:
        members = [list(range(n))]
    if name != "LBFGS" and draw(st.integers(0, 9)) == 0:  # the same parameter twice in a group
        g = draw(st.integers(0, len(members) - 1))
        members[g].insert(draw(st.integers(0, len(members[g]))), draw(st.sampled_from(members[g])))
    if len(members) > 1 and draw(st.integers(0, 24)) == 0:  # a parameter in two groups
        members[1].append(draw(st.sampled_from(members[0])))
    groups = []
    for m in members:
        own = draw(_options(name, subset=True)) if draw(st.integers(0, 3)) == 0 else {}
        if name == "LBFGS" and "max_eval" in own and own["max_eval"] is None:
            del own["max_eval"]  # None is the constructor's, not a group's (EXCLUDED)
        groups.append((m, own))
    defaults = draw(_options(name))
    steps = draw(st.integers(2, 3))
    scn = Scenario(name, dtype, arrays, params, groups, defaults, steps)
    if name == "LBFGS":
        scn.objective = [
            (
                draw(hnp.arrays(np.float64, a.shape, elements=st.floats(0.1, 10.0))).astype(_real_dtype(dtype)),
                draw(_values(a.shape, dtype, False)),
            )
            for a in arrays
        ]
        scn.frozen = [draw(st.integers(0, 9)) == 0 for _ in params]
    else:
        allow_data = draw(st.integers(0, 4)) == 0
        scn.grads = [
            [draw(_grad(name, arrays[k].shape, dtype, extreme, allow_data)) for k in params] for _ in range(steps)
        ]
    keys = list(_signature(name))
    scn.changes = [[] for _ in range(steps)]
    for step in range(1, steps):
        if draw(st.integers(0, 3)) == 0:
            key = draw(st.sampled_from(keys))
            g = draw(st.integers(0, len(groups) - 1))
            value = draw(_option(name, key, _EMPTY, bad_weight=3))
            if name == "LBFGS" and key == "max_eval" and value is None:
                value = 10  # None is the constructor's, not a group's (EXCLUDED)
            scn.changes[step].append((g, key, value))
    return scn


# --------------------------------------------------------------------------- the two sides
def _torch_value(v: Any) -> Any:
    """An option value for torch: NumPy arrays as tensors."""
    if isinstance(v, np.ndarray):
        return torch.from_numpy(v.copy())
    if isinstance(v, tuple):
        return tuple(_torch_value(x) for x in v)
    return v


def _with_foreach(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    if "foreach" in inspect.signature(getattr(torch.optim, name).__init__).parameters:
        return {"foreach": False, **kwargs}
    return kwargs


def _to_numpy(value: Any) -> Any:
    """torch state (tensors, lists, numbers) as NumPy arrays, lists and numbers."""
    if isinstance(value, torch.Tensor):
        if value.is_sparse:
            return sparse_from_torch(value)
        return np.array(value.detach().resolve_conj().numpy(), copy=True)
    if isinstance(value, dict):
        return {k: _to_numpy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_numpy(v) for v in value)
    if isinstance(value, (np.ndarray, np.generic)):
        return np.array(value, copy=True)
    return value


def _clone(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_clone(v) for v in value)
    return copy.deepcopy(value)


def _objective(scn: Scenario) -> Callable[[list[np.ndarray]], tuple[np.ndarray, list[np.ndarray]]]:
    """LBFGS's loss and gradients: ``sum a/2 |x - c|^2`` per array, in float64, rounded."""
    real = _real_dtype(scn.dtype)

    def f(values: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        loss, grads = 0.0, []
        with np.errstate(all="ignore"):
            for x, k in zip(values, scn.params):
                a, c = scn.objective[k]
                r = x.astype(np.complex128 if np.iscomplexobj(x) else np.float64) - c
                loss += float(np.sum(a * (r.real * r.real + r.imag * r.imag) if np.iscomplexobj(r) else a * r * r)) / 2
                grads.append(np.asarray((a * r).astype(x.dtype)))
            return np.asarray(loss, dtype=real), grads

    return f


class Side:
    """One side of a comparison: refoptim on NumPy (``torch=False``) or torch; ``context``
    wraps the side's steps (refoptim's unfused rounding, torch's twin orders)."""

    def __init__(self, scn: Scenario, torch_side: bool, context: Callable[[], Any] = contextlib.nullcontext):
        self.scn = scn
        self.torch = torch_side
        self.context = context
        if torch_side:
            bases = [torch.from_numpy(a.copy()) for a in scn.arrays]
            self.params = [bases[k].detach().requires_grad_(True) for k in scn.params]
        else:
            bases = [a.copy() for a in scn.arrays]
            self.params = [refoptim.Parameter(bases[k]) for k in scn.params]
        self.optimizer: Any = None
        self.closure: Callable[[], Any] | None = None
        if scn.objective is not None:
            f = _objective(scn)

            def closure() -> Any:
                loss, grads = f([self.value(i) for i in range(len(self.params))])
                for i, g in enumerate(grads):
                    self.params[i].grad = None if scn.frozen[i] else (torch.from_numpy(g) if torch_side else g)
                return torch.from_numpy(loss) if torch_side else loss

            self.closure = closure

    def convert(self, v: Any) -> Any:
        return _torch_value(v) if self.torch else copy.deepcopy(v)

    def build(self) -> None:
        groups = [
            {"params": [self.params[i] for i in members], **{k: self.convert(v) for k, v in own.items()}}
            for members, own in self.scn.groups
        ]
        if len(groups) == 1 and len(groups[0]) == 1:
            groups = groups[0]["params"]
        kwargs = {k: self.convert(v) for k, v in self.scn.defaults.items()}
        if self.torch:
            self.optimizer = getattr(torch.optim, self.scn.name)(groups, **_with_foreach(self.scn.name, kwargs))
        else:
            self.optimizer = getattr(refoptim, self.scn.name)(groups, **_with_foreach(self.scn.name, kwargs))

    def value(self, i: int) -> np.ndarray:
        p = self.params[i]
        return _to_numpy(p) if self.torch else np.array(p.data, copy=True)

    def set_grads(self, step: int) -> None:
        for i, spec in enumerate(self.scn.grads[step]):
            p = self.params[i]
            if spec is None:
                p.grad = None
            elif isinstance(spec, str):  # "data": the parameter's own array
                p.grad = p.detach() if self.torch else p.data
            elif isinstance(spec, Sparse):
                shape = self.scn.arrays[self.scn.params[i]].shape
                if self.torch:
                    p.grad = torch.sparse_coo_tensor(
                        torch.from_numpy(spec.indices.copy()), torch.from_numpy(spec.values.copy()), shape
                    )
                else:
                    p.grad = refoptim.SparseGrad(spec.indices.copy(), spec.values.copy(), shape)
            else:
                p.grad = torch.from_numpy(spec.copy()) if self.torch else spec.copy()

    def change(self, step: int) -> None:
        for g, key, value in self.scn.changes[step]:
            self.optimizer.param_groups[g][key] = self.convert(value)

    def step(self) -> None:
        with self.context():
            if self.closure is not None:
                self.optimizer.step(self.closure)
            else:
                self.optimizer.step()

    def state(self, i: int) -> dict[str, Any]:
        """Parameter ``i``'s state as NumPy arrays, lists and numbers."""
        entry = self.optimizer.state.get(self.params[i], {})
        return {k: _to_numpy(v) if self.torch else _numpy_tree(v) for k, v in entry.items()}

    def force(self, theirs: Side) -> None:
        """Teacher forcing: the parameters' values (in place) and the state of ``theirs``."""
        for i, p in enumerate(self.params):
            value = theirs.value(i)
            if self.torch:
                with torch.no_grad():
                    p.copy_(torch.from_numpy(value))
            else:
                p.data[...] = value
        for i, p in enumerate(self.params):
            entry = theirs.optimizer.state.get(theirs.params[i])
            if entry:
                self.optimizer.state[p] = _clone(dict(entry)) if self.torch else _to_numpy(dict(entry))
            else:
                self.optimizer.state.pop(p, None)


def _numpy_tree(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _numpy_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_numpy_tree(v) for v in value)
    if isinstance(value, refoptim.SparseGrad):
        return value.clone()
    if hasattr(value, "__array_namespace__") or isinstance(value, (np.ndarray, np.generic)):
        return np.array(np.asarray(value), copy=True)
    return value


# --------------------------------------------------------------------------- comparison
@dataclass
class Miss:
    """One disagreement: ``kind`` is ``"error"``, ``"param"``, ``"state"``, ``"layout"``
    or ``"counter"``; ``figure`` its measure (for ``param``/``state``) against ``limit``."""

    kind: str
    where: str
    text: str
    figure: float = 0.0
    limit: float = 0.0

    def __str__(self) -> str:
        fig = f" ({self.figure:.3g} > {self.limit:g})" if self.kind in ("param", "state") else ""
        return f"{self.where}: {self.kind}{fig}: {self.text}"


def _attempt(fn: Callable[[], Any]) -> tuple[type, str] | None:
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - whatever each side raises is compared
        return type(exc), str(exc)
    return None


def _complex_nan_agrees(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Complex elements with a NaN component on both sides made ``nan+nanj`` on both
    (the module docstring: NaN's component is not compared)."""
    if not (np.iscomplexobj(a) and np.iscomplexobj(b)) or a.shape != b.shape:
        return a, b
    both = (np.isnan(a.real) | np.isnan(a.imag)) & (np.isnan(b.real) | np.isnan(b.imag))
    if not np.any(both):
        return a, b
    a, b = a.copy(), b.copy()
    nan = np.complex64(complex(math.nan, math.nan)).astype(a.dtype)
    a[both] = nan
    b[both] = nan
    return a, b


def _measure(
    name: str, dtype: str, ours: np.ndarray, theirs: np.ndarray, operands: list[np.ndarray], param: bool
) -> list[tuple[str, float, float]]:
    """The figures of one array against torch's: ``(metric, figure, limit)`` that miss."""
    ours, theirs = _complex_nan_agrees(ours, theirs)
    with np.errstate(all="ignore"):
        if np.all((ours == theirs) | (np.isnan(ours) & np.isnan(theirs))):
            return []
    try:
        limit, unit = thresholds.one_step_limit(name, dtype)
    except KeyError:
        return [("no threshold for this dtype in thresholds.py", math.inf, 0.0)]
    misses = []
    with np.errstate(all="ignore"):
        if unit == "ULP":
            err = ulp_error(ours, theirs, *operands)
            if err > limit:
                misses.append(("ULP", err, limit))
            update = thresholds.update_limit(name, dtype)
            if param and update is not None and operands:
                err = update_ulp_error(ours, theirs, operands[0])
                if err > update:
                    misses.append(("update ULP", err, update))
        elif name == "Muon" and param:
            err = update_relative_error(ours, theirs, operands[0])
            if err > limit:
                misses.append(("relative to the update", err, limit))
        else:
            err = step_relative_error(ours, theirs, *operands)
            if err > limit:
                misses.append(("relative", err, limit))
    return misses


def _kind(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return f"array {v.dtype}{list(v.shape)}"
    if isinstance(v, refoptim.SparseGrad):
        coalesced = "coalesced" if v.is_coalesced() else "uncoalesced"
        return (
            f"sparse {np.asarray(v.values).dtype}{list(v.shape)} {coalesced}, indices {np.asarray(v.indices).tolist()}"
        )
    return type(v).__name__


def _dense(spec: Any, before: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    if spec is None:
        return None
    if isinstance(spec, str):
        return before
    if isinstance(spec, Sparse):
        with np.errstate(all="ignore"):
            return spec.dense(shape)
    return spec


def compare_step(
    scn: Scenario,
    ours: Side,
    theirs: Side,
    step: int,
    before: list[np.ndarray],
    before_state: list[dict[str, Any]],
    grads: list[Any],
) -> list[Miss]:
    """Every parameter and every state entry of ``ours`` after a step against ``theirs``."""
    misses: list[Miss] = []
    seen: set[int] = set()
    for i in range(len(scn.params)):
        where = f"step {step + 1}, param {i}"
        o, t = ours.value(i), theirs.value(i)
        if o.shape != t.shape or o.dtype != t.dtype:
            misses.append(Miss("layout", where, f"{_kind(o)}, torch's {_kind(t)}"))
            continue
        g = _dense(grads[i], before[i], t.shape) if grads else None
        ops = [before[i]] + ([g] if g is not None else [])
        for metric, fig, lim in _measure(scn.name, scn.dtype, o, t, ops, param=True):
            misses.append(Miss("param", where, f"{metric}: {_differ(o, t, before[i], g)}", fig, lim))
        if id(theirs.params[i]) in seen:
            continue
        seen.add(id(theirs.params[i]))
        rs, ts = ours.state(i), theirs.state(i)
        if scn.name == "LBFGS":
            if not ts and not rs:
                continue
            err, key, errors = compare_state(rs, ts, before_state[i])
            lim = thresholds.ONE_STEP_REL["LBFGS"][scn.dtype]
            if err > lim:
                misses.append(Miss("state", f"{where}, {key}", "relative", err, lim))
            for e in errors:
                misses.append(Miss("counter" if _is_counter_error(e) else "layout", where, e))
            continue
        if sorted(rs) != sorted(ts):
            misses.append(Miss("layout", where, f"state keys {sorted(rs)}, torch's {sorted(ts)}"))
            continue
        for key, tv in ts.items():
            rv = rs[key]
            if _kind(rv) != _kind(tv):
                misses.append(Miss("layout", f"{where}, {key}", f"{_kind(rv)}, torch's {_kind(tv)}"))
                continue
            if isinstance(tv, refoptim.SparseGrad):  # SGD's momentum buffer of sparse gradients
                rv_, tv_ = np.asarray(rv.values), np.asarray(tv.values)
                for metric, fig, lim in _measure(scn.name, scn.dtype, rv_, tv_, [], param=False):
                    misses.append(Miss("state", f"{where}, {key}", f"{metric}: {_differ(rv_, tv_)}", fig, lim))
                continue
            if not isinstance(tv, np.ndarray):
                if rv != tv and not (isinstance(tv, float) and math.isnan(tv) and math.isnan(rv)):
                    misses.append(Miss("state", f"{where}, {key}", f"ours {rv!r}, torch {tv!r}", math.inf, 0.0))
                continue
            ops = [x for x in (before_state[i].get(key), g) if isinstance(x, np.ndarray) and x.shape == tv.shape]
            for metric, fig, lim in _measure(
                scn.name, scn.dtype if tv.dtype.kind in "fc" else "float32", rv, tv, ops, param=False
            ):
                misses.append(
                    Miss(
                        "state",
                        f"{where}, {key}",
                        f"{metric}: {_differ(rv, tv, before_state[i].get(key), g)}",
                        fig,
                        lim,
                    )
                )
    return misses


def _differ(ours: np.ndarray, theirs: np.ndarray, *operands: np.ndarray | None, n: int = 3) -> str:
    """The first ``n`` elements where the two differ: index, ours, torch's and the operands'."""
    o, t = np.asarray(ours).reshape(-1), np.asarray(theirs).reshape(-1)
    with np.errstate(all="ignore"):
        same = (o == t) | (np.isnan(o) & np.isnan(t))
    where = np.flatnonzero(~same)[:n]
    shape = np.shape(ours)
    parts = []
    for k in where:
        idx = np.unravel_index(k, shape) if shape else ()
        ops = [np.asarray(x).reshape(-1)[k].item() for x in operands if x is not None and np.shape(x) == shape]
        parts.append(f"[{', '.join(map(str, idx))}] ours {o[k].item()!r}, torch {t[k].item()!r} (from {ops!r})")
    return "; ".join(parts) or "equal"


def _error_miss(where: str, ours: tuple[type, str] | None, theirs: tuple[type, str] | None) -> Miss:
    def show(e: tuple[type, str] | None) -> str:
        return "no error" if e is None else f"{e[0].__name__}: {e[1]}"

    return Miss("error", where, f"ours {show(ours)}; torch {show(theirs)}")


_OPTION_CHECK = re.compile(r"^param_groups\[\d+\]\['\w+'\]")
"""refoptim's own message for a group option of the wrong type, raised at ``step`` before
anything changes (``Optimizer._check_group_options``): documented to be of the type torch
raises when its step reaches the option, with a message that names the group and option."""


def _errors_agree(ours: tuple[type, str] | None, theirs: tuple[type, str] | None) -> bool:
    """The same type and message; or refoptim's option check (``_OPTION_CHECK``) where
    torch raises the same type."""
    if ours == theirs:
        return True
    if ours is None or theirs is None:
        return False
    return ours[0] is theirs[0] and bool(_OPTION_CHECK.match(ours[1]))


def _same_bits(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and a.tobytes() == b.tobytes()
        )
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_bits(x, y) for x, y in zip(a, b))
    if isinstance(a, refoptim.SparseGrad) and isinstance(b, refoptim.SparseGrad):
        return (
            a.shape == b.shape
            and a.is_coalesced() == b.is_coalesced()
            and _same_bits(np.asarray(a.indices), np.asarray(b.indices))
            and _same_bits(np.asarray(a.values), np.asarray(b.values))
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(_same_bits(a[k], b[k]) for k in a)
    return a is b or a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def _unchanged(
    ours: Side, before: list[np.ndarray], state: list[dict[str, Any]], step: int, error: tuple[type, str]
) -> list[Miss]:
    """refoptim's step raised: every parameter and state entry must be as it was (the
    design's "validate first, then mutate")."""
    misses = []
    raised = f"{error[0].__name__}: {error[1]}"
    for i in range(len(before)):
        if not _same_bits(ours.value(i), before[i]):
            diff = _differ(ours.value(i), before[i]).replace("torch", "before")
            misses.append(
                Miss(
                    "changed",
                    f"step {step + 1}, param {i}",
                    f"refoptim raised {raised} but changed the parameter: {diff}",
                )
            )
        elif not _same_bits(ours.state(i), state[i]):
            misses.append(
                Miss("changed", f"step {step + 1}, param {i}", f"refoptim raised {raised} but changed the state")
            )
    return misses


def run_pair(scn: Scenario, ours: Side, theirs: Side | None = None) -> list[Miss]:
    """Run a scenario on ``ours`` beside torch (``theirs``), teacher-forced step by step;
    the misses of the first step that has any (an error ends the run)."""
    theirs = theirs or Side(scn, torch_side=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_err, o_err = _attempt(theirs.build), _attempt(ours.build)
        if t_err or o_err:
            return [] if _errors_agree(o_err, t_err) else [_error_miss("constructor", o_err, t_err)]
        for step in range(scn.steps):
            if step:
                ours.force(theirs)
                theirs.change(step)
                ours.change(step)
            before = [theirs.value(i) for i in range(len(scn.params))]
            before_state = [theirs.state(i) for i in range(len(scn.params))]
            grads = None
            if scn.objective is None:
                theirs.set_grads(step)
                ours.set_grads(step)
                grads = scn.grads[step]
            o_before = [ours.value(i) for i in range(len(scn.params))]
            o_state = [ours.state(i) for i in range(len(scn.params))]
            t_err, o_err = _attempt(theirs.step), _attempt(ours.step)
            if t_err or o_err:
                misses = [] if _errors_agree(o_err, t_err) else [_error_miss(f"step {step + 1}", o_err, t_err)]
                if o_err and not ours.torch and (o_err[0] is TypeError or _OPTION_CHECK.match(o_err[1])):
                    misses += _unchanged(ours, o_before, o_state, step, o_err)
                return misses
            misses = compare_step(scn, ours, theirs, step, before, before_state, grads)
            if misses:
                return misses
    return []


def _twins(name: str) -> list[Callable[[], Any]]:
    """torch's twin contexts for an optimizer whose reductions torch orders per machine."""
    if name == "LBFGS":
        return [lambda o=o: torch_reduction_order(o) for o in ("reversed", "accurate")]
    if name == "Muon":
        return [lambda o=o: torch_ns_order(o) for o in MUON_ORDERS]
    return []


def _covered(misses: list[Miss], twin: list[Miss]) -> bool:
    """True when every miss of refoptim is within torch's twin's spread
    (``thresholds.within_spread``; counters: the twin's counters differ too)."""
    if any(m.kind in ("error", "layout", "changed") for m in misses):
        return False
    for kind in ("param", "state"):
        ours = max((m.figure for m in misses if m.kind == kind), default=0.0)
        limit = max((m.limit for m in misses if m.kind == kind), default=0.0)
        twin_fig = max((m.figure for m in twin if m.kind == kind), default=0.0)
        if ours and not thresholds.within_spread(ours, twin_fig, limit):
            return False
    return not (any(m.kind == "counter" for m in misses) and not any(m.kind == "counter" for m in twin))


class _TorchSqrt:
    """An array namespace whose ``sqrt`` is torch's (MKL's on the CPU): as
    ``conformance/test_sqrt_is_the_only_difference.py`` routes it."""

    def __init__(self, xp: Any) -> None:
        self._xp = xp

    def __getattr__(self, name: str) -> Any:
        return getattr(self._xp, name)

    def sqrt(self, x: Any) -> Any:
        a = np.ascontiguousarray(x)
        return torch.from_numpy(a.copy()).sqrt().numpy().reshape(a.shape)


_SQRT_MODULES = (
    "refoptim._primitives", "refoptim._fastpath", "refoptim.sparse", "refoptim.adadelta", "refoptim.adagrad",
    "refoptim.adam", "refoptim.adamw", "refoptim.nadam", "refoptim.radam", "refoptim.rmsprop", "refoptim.sparse_adam",
)  # fmt: skip


@contextlib.contextmanager
def torch_sqrt() -> Iterator[None]:
    """refoptim with torch's ``sqrt`` inside the block (the rules' and primitives'
    ``array_namespace`` wrapped in :class:`_TorchSqrt`); restored after it."""
    import importlib

    saved = []
    for name in _SQRT_MODULES:
        module = importlib.import_module(name)
        namespace = getattr(module, "array_namespace", None)
        if namespace is None:
            continue
        saved.append((module, namespace))
        module.array_namespace = lambda *xs, _ns=namespace, **kw: _TorchSqrt(_ns(*xs, **kw))
    try:
        yield
    finally:
        for module, namespace in saved:
            module.array_namespace = namespace


@contextlib.contextmanager
def torch_lbfgs_reductions() -> Iterator[None]:
    """refoptim's LBFGS with torch's own reductions inside the block: its dot products
    (``refoptim.lbfgs._dot``) and its ``abs().sum()`` (``refoptim._reduce.sum_abs``) computed
    by torch on the same values, so that only refoptim's fixed summation order changes."""
    import refoptim._reduce
    import refoptim.lbfgs

    def torch_dot(xp: Any, a: Any, b: Any) -> Any:
        return torch.from_numpy(np.ascontiguousarray(a)).dot(torch.from_numpy(np.ascontiguousarray(b))).numpy()

    def torch_sum_abs(xp: Any, x: Any) -> Any:
        return torch.from_numpy(np.ascontiguousarray(x)).abs().sum().numpy()

    saved = refoptim.lbfgs._dot, refoptim._reduce.sum_abs
    refoptim.lbfgs._dot, refoptim._reduce.sum_abs = torch_dot, torch_sum_abs
    try:
        yield
    finally:
        refoptim.lbfgs._dot, refoptim._reduce.sum_abs = saved


def run_scenario(scn: Scenario) -> tuple[list[Miss], str]:
    """The verdict of one scenario: ``(misses, how)``; no misses is agreement. ``how``
    says when a miss was covered (module docstring: by torch's unfused rounding, torch's
    sqrt, or torch's twin)."""
    misses = run_pair(scn, Side(scn, torch_side=False))
    if not misses or any(m.kind in ("error", "layout", "changed") for m in misses):
        return misses, ""
    if not torch_fuses() and not run_pair(scn, Side(scn, torch_side=False, context=unfused_primitives)):
        return [], "covered: refoptim with torch's unfused rounding agrees"
    finite = all(m.kind in ("param", "state") and m.figure < math.inf for m in misses)
    if scn.name not in RELATIVE and finite and not run_pair(scn, Side(scn, torch_side=False, context=torch_sqrt)):
        return [], "covered: refoptim with torch's (MKL's) sqrt agrees"
    if scn.name == "LBFGS" and not run_pair(scn, Side(scn, torch_side=False, context=torch_lbfgs_reductions)):
        return [], "covered: refoptim with torch's dot products and sums agrees"
    for ctx in _twins(scn.name):
        twin = run_pair(scn, Side(scn, torch_side=True, context=ctx))
        if twin and _covered(misses, twin):
            return [], f"covered: torch's twin misses too ({twin[0]})"
    return misses, ""


# --------------------------------------------------------------------------- the tests
def _fuzz_settings() -> settings:
    """The ``ci`` profile (or ``$HYPOTHESIS_PROFILE``) unless ``--hypothesis-profile``
    loaded another for the session, which then applies here too."""
    current = settings.get_current_profile_name()
    if current == "default" or current.startswith("default-"):
        chosen = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
        return settings(chosen, verbosity=settings.default.verbosity)
    return settings.default


def test_the_fuzzer_draws_every_optimizer_and_every_keyword():
    assert set(OPTIMIZERS) == {
        n
        for n in refoptim.__all__
        if isinstance(getattr(refoptim, n), type)
        and issubclass(getattr(refoptim, n), refoptim.Optimizer)
        and n != "Optimizer"
    }
    for name in OPTIMIZERS:
        missing = [k for k in _signature(name) if _option_key(name, k) not in OPTION_VALUES]
        assert not missing, f"{name}: no values for {missing}"


@pytest.mark.parametrize("name", OPTIMIZERS)
@_fuzz_settings()
@given(data=st.data())
def test_refoptim_agrees_with_torch(name, data):
    scn = data.draw(scenarios(name), label="scenario")  # printed as Python on failure
    misses, how = run_scenario(scn)
    if how:
        note(how)
    if misses:
        raise AssertionError("refoptim disagrees with torch:\n" + "\n".join(str(m) for m in misses[:8]))
