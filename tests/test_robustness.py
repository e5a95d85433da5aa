"""Nothing lost, nothing silently wrong (issue 16), for every optimizer:

- a read-only NumPy parameter (or state entry) is rebound to an updated copy, never
  half-updated, with the bits of a writeable run;
- options of the wrong type, set on any group after construction, raise before anything
  changes, naming the group and the option (torch raises the same types, but only after
  earlier groups moved);
- ``load_state_dict`` checks the whole dict first (missing entries, shapes, complex
  dtypes, options) and changes nothing when it refuses;
- arrays refoptim cannot step are refused when the ``Parameter`` is made;
- no NumPy ``RuntimeWarning`` reaches the user from infinite or NaN inputs.

torch's side of the same reproducers is in conformance/test_robustness_vs_torch.py.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest

import refoptim
from refoptim import Parameter, SparseGrad, registry

# name -> (constructor options, parameter shape); a registered optimizer not listed here
# runs with lr=0.1 on a (3, 4) parameter.
_OPTIONS = {
    "SGD": ({"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}, (3, 4)),
    "Adam": ({"lr": 0.1, "weight_decay": 0.01, "amsgrad": True}, (3, 4)),
    "AdamW": ({"lr": 0.1}, (3, 4)),
    "Adagrad": ({"lr": 0.1, "lr_decay": 0.01, "weight_decay": 0.01}, (3, 4)),
    "Adadelta": ({"lr": 1.0, "weight_decay": 0.01}, (3, 4)),
    "Adamax": ({"lr": 0.1, "weight_decay": 0.01}, (3, 4)),
    "ASGD": ({"lr": 0.1, "t0": 1, "weight_decay": 0.01}, (3, 4)),
    "NAdam": ({"lr": 0.1, "weight_decay": 0.01}, (3, 4)),
    "RAdam": ({"lr": 0.1, "weight_decay": 0.01}, (3, 4)),
    "RMSprop": ({"lr": 0.1, "momentum": 0.5, "centered": True}, (3, 4)),
    "Rprop": ({"lr": 0.1}, (3, 4)),
    "SparseAdam": ({"lr": 0.1}, (3, 4)),
    "LBFGS": ({"lr": 0.5}, (3, 4)),
    "Muon": ({"lr": 0.1}, (3, 4)),
    "Adafactor": ({"lr": 0.1}, (3, 4)),
}
OPTIMIZERS = {name: _OPTIONS.get(name, ({"lr": 0.1}, (3, 4))) for name in registry.names()}
"""Every optimizer refoptim has (the registry's), with its options and shape."""
NAMES = list(OPTIMIZERS)


def _grad(name, rng, shape, dtype=np.float64):
    g = rng.standard_normal(shape).astype(dtype)
    if name == "SparseAdam":
        rows = np.array([[0, 2]])
        return SparseGrad(rows, g[[0, 2]], shape)
    return g


def _build(name, arrays, groups=False, **extra):
    options, _ = OPTIMIZERS[name]
    params = [Parameter(a) for a in arrays]
    options = {**options, **extra}
    if groups and name != "LBFGS":  # LBFGS takes one group only
        spec = [{"params": params[:1]}, {"params": params[1:], "lr": options["lr"] / 2}]
    else:
        spec = params
    return getattr(refoptim, name)(spec, **options), params


def _step(opt, name, params, rng):
    grads = [_grad(name, rng, p.shape) for p in params]
    if name == "LBFGS":

        def closure():
            for p, g in zip(params, grads):
                p.grad = g + p.data
            return float(sum(np.sum(p.data**2) for p in params))

        return opt.step(closure)
    for p, g in zip(params, grads):
        p.grad = g
    return opt.step()


def _arrays(n=2, shape=(3, 4), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape) for _ in range(n)]


def _frozen(value):
    """``value`` with every array as its dtype and bytes (lists and dicts walked)."""
    if isinstance(value, (list, tuple)):
        return [_frozen(v) for v in value]
    if isinstance(value, dict):
        return {k: _frozen(v) for k, v in value.items()}
    if hasattr(value, "shape"):
        return (str(np.asarray(value).dtype), np.asarray(value).tobytes())
    return copy.deepcopy(value)


def _snapshot(opt):
    """Every parameter's and state entry's bytes, and every group's options."""
    params = [np.asarray(p.data).tobytes() for g in opt.param_groups for p in g["params"]]
    state = {id(p): _frozen(dict(s)) for p, s in opt.state.items()}
    groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    return params, state, repr(groups)


# ----------------------------------------------------------------- read-only arrays
@pytest.mark.parametrize("name", NAMES)
def test_read_only_parameters_are_rebound_with_the_bits_of_a_writeable_run(name):
    arrays = _arrays()
    reference, ref_params = _build(name, [a.copy() for a in arrays])
    frozen = [a.copy() for a in arrays]
    frozen[1].flags.writeable = False
    opt, params = _build(name, frozen)
    for seed in range(3):
        _step(reference, name, ref_params, np.random.default_rng(seed))
        _step(opt, name, params, np.random.default_rng(seed))
    assert params[1].data is not frozen[1]  # rebound to the updated copy
    np.testing.assert_array_equal(frozen[1], arrays[1])  # the read-only array never changed
    for p, q in zip(params, ref_params):
        assert np.asarray(p.data).tobytes() == np.asarray(q.data).tobytes()


@pytest.mark.parametrize("name", [n for n in NAMES if n not in ("LBFGS", "SGD")])
def test_read_only_state_entries_are_rebound_too(name):
    arrays = _arrays()
    reference, ref_params = _build(name, [a.copy() for a in arrays])
    opt, params = _build(name, [a.copy() for a in arrays])
    _step(reference, name, ref_params, np.random.default_rng(0))
    _step(opt, name, params, np.random.default_rng(0))
    for state in opt.state.values():
        for value in state.values():
            if isinstance(value, np.ndarray):
                value.flags.writeable = False
    _step(reference, name, ref_params, np.random.default_rng(1))
    _step(opt, name, params, np.random.default_rng(1))
    for p, q in zip(params, ref_params):
        assert np.asarray(p.data).tobytes() == np.asarray(q.data).tobytes()


# ----------------------------------------------------------------- options
# Options torch does not read at a step like the test's second one (RAdam's eps before
# the rectified branch, Rprop's lr once the state exists, Adagrad's constructor-only
# initial accumulator): no error on either side; tested below.
UNREAD = {("RAdam", "eps"), ("Rprop", "lr"), ("Adagrad", "initial_accumulator_value")}


def _bad_options(name):
    """(option, bad value, exception type) for the options of ``name``'s defaults."""
    opt, _ = _build(name, _arrays())
    cases = []
    for key, default in opt.defaults.items():
        if isinstance(default, bool) or default is None or isinstance(default, str) or (name, key) in UNREAD:
            continue
        if isinstance(default, (int, float)):
            none_error = RuntimeError if (name, key) == ("Muon", "eps") else TypeError  # torch's clamp
            cases += [(key, None, none_error), (key, "0.01", TypeError), (key, [0.1], TypeError)]
        elif isinstance(default, tuple):
            cases += [(key, None, TypeError), (key, default + (0.5,), ValueError), (key, default[:1], ValueError)]
            cases.append((key, tuple("x" if d is not None else None for d in default), TypeError))
    return cases


BAD = [(name, *case) for name in NAMES for case in _bad_options(name)]


@pytest.mark.parametrize("name, key, value, error", BAD, ids=[f"{n}-{k}-{v!r}" for n, k, v, _ in BAD])
def test_a_bad_option_on_a_later_group_raises_before_anything_changes(name, key, value, error):
    opt, params = _build(name, _arrays(), groups=True)
    _step(opt, name, params, np.random.default_rng(0))
    group = opt.param_groups[-1]
    group[key] = value
    before = _snapshot(opt)
    with pytest.raises(error) as info:
        _step(opt, name, params, np.random.default_rng(1))
    where = f"param_groups[{len(opt.param_groups) - 1}]['{key}']"
    if name != "Muon" or error is TypeError:  # Muon: torch's own messages
        assert where in str(info.value)
    assert _snapshot(opt) == before


def test_weight_decay_none_raises_instead_of_nan():
    p = Parameter(np.ones(3, dtype=np.float32))
    p.grad = np.ones(3, dtype=np.float32)
    opt = refoptim.Adam([p], lr=0.1)
    opt.param_groups[0]["weight_decay"] = None
    with pytest.raises(TypeError, match=r"param_groups\[0\]\['weight_decay'\] must be a real number, not NoneType"):
        opt.step()
    np.testing.assert_array_equal(p.data, np.ones(3, dtype=np.float32))
    assert not opt.state


@pytest.mark.parametrize("name, key", sorted(UNREAD))
def test_options_torch_does_not_read_at_a_step_are_not_checked_there(name, key):
    opt, params = _build(name, _arrays(), groups=True)
    _step(opt, name, params, np.random.default_rng(0))
    opt.param_groups[-1][key] = None
    _step(opt, name, params, np.random.default_rng(1))  # torch 2.13 steps too
    if name == "RAdam":  # ...until the rectified branch (rho_t > 5, the 6th step here) reads eps
        for seed in range(2, 5):
            _step(opt, name, params, np.random.default_rng(seed))
        before = _snapshot(opt)
        with pytest.raises(TypeError, match=r"\['eps'\]"):
            _step(opt, name, params, np.random.default_rng(5))
        assert _snapshot(opt) == before


def test_values_torch_accepts_after_construction_are_accepted():
    """Only types are checked at a step: a negative lr or a 0-d array lr set later steps,
    as in torch."""
    p = Parameter(np.ones(3))
    p.grad = np.ones(3)
    opt = refoptim.Adam([p], lr=0.1)
    opt.param_groups[0]["lr"] = -0.1
    opt.step()
    opt.param_groups[0]["lr"] = np.asarray(0.1)
    opt.param_groups[0]["betas"] = [0.9, 0.99]  # a list unpacks as torch unpacks it
    opt.step()
    assert float(opt.state[p]["step"]) == 2


# ----------------------------------------------------------------- load_state_dict
@pytest.mark.parametrize("name", NAMES)
def test_load_state_dict_round_trip_and_refusals_change_nothing(name):
    opt, params = _build(name, _arrays(), groups=True)
    _step(opt, name, params, np.random.default_rng(0))
    good = copy.deepcopy(opt.state_dict())
    opt.load_state_dict(copy.deepcopy(good))  # a valid dict loads
    before = _snapshot(opt)
    state = good["state"]
    pid = next(iter(state))
    entry, value = next((k, v) for k, v in state[pid].items() if isinstance(v, np.ndarray) and v.ndim > 0)

    wrong_shape = copy.deepcopy(good)
    wrong_shape["state"][pid][entry] = np.ones(7)
    wrong_shape["param_groups"][0]["lr"] = 123.0
    with pytest.raises(ValueError, match=f"state entry '{entry}' of parameter .* has shape \\(7,\\)"):
        opt.load_state_dict(wrong_shape)
    assert _snapshot(opt) == before

    required = list(opt._init_state(params[0], opt.param_groups[0]))
    if len(state[pid]) > 1 and required:  # (a state left empty is a parameter not stepped yet)
        required = required[0]
        missing = copy.deepcopy(good)
        del missing["state"][pid][required]
        missing["param_groups"][0]["lr"] = 123.0
        with pytest.raises(KeyError, match=f"has no entry '{required}'"):
            opt.load_state_dict(missing)
        assert _snapshot(opt) == before

    bad_option = copy.deepcopy(good)
    bad_option["param_groups"][-1]["lr"] = "fast"
    with pytest.raises(TypeError, match=r"\['lr'\] must be a real number"):
        opt.load_state_dict(bad_option)
    assert _snapshot(opt) == before
    _step(opt, name, params, np.random.default_rng(1))  # still usable


def test_a_real_state_for_a_complex_parameter_is_refused():
    p = Parameter(np.ones(3, dtype=np.complex64))
    p.grad = np.ones(3, dtype=np.complex64)
    opt = refoptim.Adam([p], lr=0.1)
    opt.step()
    sd = copy.deepcopy(opt.state_dict())
    sd["state"][0]["exp_avg"] = np.ones(3, dtype=np.float32)
    with pytest.raises(ValueError, match="keeps a complex one"):
        opt.load_state_dict(sd)


def test_a_failing_subclass_conversion_restores_the_optimizer(monkeypatch):
    p = Parameter(np.ones(3))
    p.grad = np.ones(3)
    opt = refoptim.Adam([p], lr=0.1)
    opt.step()
    before = _snapshot(opt)
    sd = copy.deepcopy(opt.state_dict())
    sd["param_groups"][0]["lr"] = 5.0

    def broken(self, state):
        refoptim.Optimizer.__setstate__(self, state)
        raise RuntimeError("conversion failed")

    monkeypatch.setattr(refoptim.Adam, "__setstate__", broken)
    with pytest.raises(RuntimeError, match="conversion failed"):
        opt.load_state_dict(sd)
    assert _snapshot(opt) == before


# ----------------------------------------------------------------- refused arrays
@pytest.mark.parametrize(
    "data, message",
    [
        ([1.0, 2.0], "got list"),
        (lambda: np.matrix([[1.0, 2.0]]), "got numpy.matrix"),
        (np.ma.array([1.0, 2.0], mask=[False, True]), "masked arrays are not supported"),
    ],
    ids=["list", "matrix", "masked"],
)
def test_arrays_refoptim_cannot_step_are_refused_when_the_parameter_is_made(data, message):
    if callable(data):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            data = data()
    with pytest.raises(TypeError, match=message):
        Parameter(data)


@pytest.mark.parametrize("dtype", ["int64", "bool", "object"])
def test_non_floating_dtypes_are_refused_when_the_optimizer_is_made(dtype):
    p = Parameter(np.zeros(3, dtype=dtype))
    with pytest.raises(TypeError, match="only update real or complex floating-point"):
        refoptim.SGD([p], lr=0.1)


# ----------------------------------------------------------------- no warnings
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", NAMES)
def test_infinite_and_nan_inputs_raise_no_numpy_warning(name, dtype):
    big = np.finfo(dtype).max / 4
    tiny = -np.finfo(dtype).smallest_subnormal
    arrays = [np.array([[1.0, np.inf, -np.inf, np.nan], [big, tiny, 0.0, -0.0], [1.0, 2.0, 3.0, 4.0]], dtype=dtype)]
    arrays.append(arrays[0][::-1].copy())
    opt, params = _build(name, arrays)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for seed in range(2):
            grads = [_grad(name, np.random.default_rng(seed), p.shape, dtype) for p in params]
            for g in grads:
                (g.values if isinstance(g, SparseGrad) else g)[..., 1] = np.inf
            if name == "LBFGS":

                def closure():
                    for p, g in zip(params, grads):
                        p.grad = g
                    return 1.0

                opt.step(closure)
            else:
                for p, g in zip(params, grads):
                    p.grad = g
                opt.step()


def test_the_callers_warning_settings_are_kept_outside_the_step():
    p = Parameter(np.ones(2))
    p.grad = np.array([np.inf, 1.0])
    opt = refoptim.SGD([p], lr=0.1)
    with np.errstate(invalid="raise"):
        opt.step()
        with pytest.raises(FloatingPointError):
            np.array([np.inf]) - np.array([np.inf])


@pytest.mark.parametrize("aliasing", ["listed-twice", "two-parameters-one-array"])
def test_lbfgs_refuses_parameters_that_share_memory_before_the_closure_runs(aliasing):
    """torch moves each LBFGS parameter in turn with ``add_``; under aliasing its
    parameters are not the flat vector refoptim's rule moves (the fuzzer measured a
    parameter left at 0.0 where torch's reached 1.0), so refoptim refuses instead of
    giving other numbers silently."""
    data = np.zeros(3)
    p = Parameter(data)
    q = p if aliasing == "listed-twice" else Parameter(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the duplicate-parameter warning
        opt = refoptim.LBFGS([p, q])
    calls = []

    def closure():
        calls.append(1)
        p.grad = p.data - 1
        return float(((p.data - 1) ** 2).sum())

    with pytest.raises(ValueError, match="share memory"):
        opt.step(closure)
    assert calls == []
    assert not opt.state
    np.testing.assert_array_equal(data, np.zeros(3))
