"""Issue 16's reproducers, each run on torch 2.13 and on refoptim side by side.

- Aliased memory (two Parameters over one array, one parameter listed twice, a gradient
  that is the parameter's own array): refoptim gives torch's results after three steps,
  within the free-running threshold (`refoptim.testing.thresholds.TRAJECTORY_REL`).
- Non-finite and overflowing float64 inputs: torch's values, placed where torch places
  them (the float64 fused multiply-add's edges).
- Options of the wrong type: the exception type torch raises, from refoptim before
  anything changes; torch itself is not atomic (a reproducer shows it moving a parameter
  before raising), which is the documented difference.
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import refoptim  # noqa: E402
from refoptim import registry  # noqa: E402
from refoptim.testing.metrics import relative_error  # noqa: E402
from refoptim.testing.thresholds import TRAJECTORY_REL  # noqa: E402

ELEMENTWISE = list(registry.names(elementwise=True))
OPTIONS = {
    "SGD": {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01},
    "RAdam": {"lr": 0.1, "weight_decay": 0.1, "decoupled_weight_decay": True},
    "NAdam": {"lr": 0.1, "weight_decay": 0.1, "decoupled_weight_decay": True},
    "AdamW": {"lr": 0.1, "weight_decay": 0.1},
}


def _pair(name, case, dtype, steps=3):
    """Run ``case`` on both sides; return refoptim's and torch's final parameters."""
    options = OPTIONS.get(name, {"lr": 0.1})
    rng = np.random.default_rng(0)
    init = rng.standard_normal((2, 5)).astype(dtype)
    grads = [rng.standard_normal((2, 5)).astype(dtype) for _ in range(steps)]
    results = []
    for side in ("refoptim", "torch"):
        if side == "refoptim":
            make, wrap, lib = (lambda a: refoptim.Parameter(a)), (lambda a: a), refoptim
        else:
            make = lambda a: torch.nn.Parameter(a)  # noqa: E731
            wrap, lib = torch.from_numpy, torch.optim
        a, b = wrap(init[0].copy()), wrap(init[1].copy())
        if case == "two-parameters-one-array":
            params = [make(a), make(a)]
        elif case == "one-parameter-twice":
            p = make(a)
            params = [p, p]
        else:  # grad-is-data: two parameters, each gradient its own array
            params = [make(a), make(b)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # both sides warn about duplicates
            opt = getattr(lib, name)(params, **options)
        for g in grads:
            for i, p in enumerate(params):
                if case == "grad-is-data":
                    p.grad = p.data
                else:
                    p.grad = wrap(g[i].copy())
            opt.step()
        results.append([np.asarray(p.data.numpy() if side == "torch" else p.data).copy() for p in params])
    return results


@pytest.mark.parametrize("case", ["two-parameters-one-array", "one-parameter-twice", "grad-is-data"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_aliased_memory_matches_torch(name, dtype, case):
    ours, theirs = _pair(name, case, dtype)
    for o, t in zip(ours, theirs):
        assert relative_error(o, t) <= TRAJECTORY_REL[dtype], (name, case)


def test_one_parameter_twice_counts_two_steps_as_torch():
    p = refoptim.Parameter(np.array([1.0, 2.0]))
    p.grad = np.ones(2)
    t = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    t.grad = torch.ones(2, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours, theirs = refoptim.Adam([p, p], lr=0.1), torch.optim.Adam([t, t], lr=0.1)
    ours.step()
    theirs.step()
    assert float(ours.state[p]["step"]) == float(theirs.state[t]["step"]) == 2.0
    np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=0, atol=1e-15)


@pytest.mark.parametrize(
    "name, param, grad",
    [
        ("SGD", [1.0, 2.0], [np.inf, 1.0]),
        ("Adam", [1.0, 2.0], [1e160, 1.0]),
        ("Adam", [np.inf, 2.0], [1.0, 1.0]),
        ("SGD", [1e308, 2.0], [-1e308, 1.0]),
    ],
)
def test_non_finite_float64_values_land_where_torch_puts_them(name, param, grad):
    p = refoptim.Parameter(np.array(param))
    p.grad = np.array(grad)
    t = torch.nn.Parameter(torch.tensor(param, dtype=torch.float64))
    t.grad = torch.tensor(grad, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no NumPy warning
        getattr(refoptim, name)([p], lr=0.1).step()
    getattr(torch.optim, name)([t], lr=0.1).step()
    np.testing.assert_array_equal(p.data, t.detach().numpy())


# The optimizers that take a weight_decay (not Rprop, SparseAdam, LBFGS)
WITH_WEIGHT_DECAY = [n for n in registry.names() if "weight_decay" in inspect.signature(registry.get(n).cls).parameters]


@pytest.mark.parametrize("bad", [None, "0.01"], ids=["None", "str"])
@pytest.mark.parametrize("name", WITH_WEIGHT_DECAY)
def test_weight_decay_of_the_wrong_type_raises_torchs_type(name, bad):
    outcomes = []
    for lib, make, array in (
        (refoptim, refoptim.Parameter, lambda: np.ones((3, 3), dtype=np.float32)),
        (torch.optim, torch.nn.Parameter, lambda: torch.ones(3, 3)),
    ):
        p = make(array())
        p.grad = array() / 2
        opt = getattr(lib, name)([p], lr=0.1)
        opt.param_groups[0]["weight_decay"] = bad
        with pytest.raises(Exception) as info:
            opt.step()
        outcomes.append(type(info.value))
    assert issubclass(outcomes[0], TypeError) and issubclass(outcomes[1], TypeError), outcomes


def test_torch_is_not_atomic_where_refoptim_is():
    """The documented difference: torch's AdamW moves the parameter (weight decay first)
    before it meets an ``eps`` of the wrong type; refoptim raises before anything moves."""
    t = torch.nn.Parameter(torch.ones(3))
    t.grad = torch.ones(3)
    opt = torch.optim.AdamW([t], lr=0.1, weight_decay=0.1)
    opt.param_groups[0]["eps"] = None
    with pytest.raises(TypeError):
        opt.step()
    assert not torch.equal(t.detach(), torch.ones(3))  # torch moved it
    p = refoptim.Parameter(np.ones(3, dtype=np.float32))
    p.grad = np.ones(3, dtype=np.float32)
    ours = refoptim.AdamW([p], lr=0.1, weight_decay=0.1)
    ours.param_groups[0]["eps"] = None
    with pytest.raises(TypeError, match=r"param_groups\[0\]\['eps'\]"):
        ours.step()
    np.testing.assert_array_equal(p.data, np.ones(3, dtype=np.float32))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: torch.nn.Parameter(torch.ones(3)), "requires grad .* pass tensor.detach()"),
        (lambda: torch.ones(5).to_sparse(), "layout torch.sparse_coo"),
        (lambda: torch.ones(5, device="meta"), "meta device"),
    ],
    ids=["requires-grad", "sparse", "meta"],
)
def test_torch_tensors_refoptim_cannot_step_are_refused_up_front(make, message):
    """Each of these failed midway through a step before (after other parameters moved)."""
    with pytest.raises(TypeError, match=message):
        refoptim.Parameter(make())


def test_a_detached_nn_parameter_is_stepped_in_place():
    weight = torch.nn.Parameter(torch.ones(40000))
    p = refoptim.Parameter(weight.detach())  # shares the memory
    p.grad = torch.full((40000,), 0.5)
    refoptim.Adam([p], lr=0.1).step()
    assert torch.equal(weight.detach(), p.data)
    assert float(weight[0]) != 1.0
    with pytest.raises(TypeError, match="layout"):
        p.grad = torch.ones(40000).to_sparse()


# --------------------------------------------------------------------------- the fuzzer's finds
def _outcome(opt, step_count, set_grads):
    """(exception type or None) of each step, stopping at the first error."""
    out = []
    for k in range(step_count):
        set_grads(k)
        try:
            opt.step()
        except Exception as e:  # noqa: BLE001 - the outcome is compared
            out.append(type(e))
            break
        out.append(None)
    return out


def _both(name, make_kwargs, change, steps=2, grad=True):
    """The outcomes of refoptim and torch: one float32 parameter [1, 2], ``change(group)``
    after construction, then ``steps`` steps (gradient ones, or none at all)."""
    p = refoptim.Parameter(np.array([1.0, 2.0], np.float32))
    t = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    ours = getattr(refoptim, name)([p], **make_kwargs)
    theirs = getattr(torch.optim, name)([t], **make_kwargs)
    change(ours.param_groups[0])
    change(theirs.param_groups[0])

    def ours_grads(k):
        p.grad = np.ones(2, np.float32) if grad else None

    def theirs_grads(k):
        t.grad = torch.ones(2) if grad else None

    return _outcome(ours, steps, ours_grads), _outcome(theirs, steps, theirs_grads), p, t


@pytest.mark.parametrize(
    "name, key, value",
    [("SGD", "lr", None), ("Adam", "eps", "1e-8"), ("RMSprop", "alpha", None), ("Adam", "betas", (0.9, None))],
)
def test_wrong_types_in_a_group_without_gradients_raise_nothing_as_in_torch(name, key, value):
    """torch's rule functions read nothing for an empty list: an option of the wrong type
    in a group whose parameters have no gradient is no error (the fuzzer found refoptim
    refusing it)."""
    ours, theirs, _, _ = _both(name, {"lr": 0.1}, lambda g: g.__setitem__(key, value), grad=False)
    assert ours == theirs == [None, None]


@pytest.mark.parametrize("name", ["Adam", "RAdam", "Adamax", "NAdam"])
def test_betas_of_length_three_raise_even_without_gradients_as_in_torch(name):
    """torch unpacks ``beta1, beta2 = group["betas"]`` for every group: ValueError."""
    ours, theirs, _, _ = _both(name, {"lr": 0.1}, lambda g: g.__setitem__("betas", (0.9, 0.99, 0.999)), grad=False)
    assert ours == theirs == [ValueError]


@pytest.mark.parametrize(
    "name, kwargs, key, value",
    [("ASGD", {"t0": None}, None, None), ("SGD", {"momentum": 0.9, "dampening": None}, None, None)],
)
def test_wrong_types_the_constructor_accepts_are_refused_before_anything_moves(name, kwargs, key, value):
    """torch's constructor accepts ``t0=None`` (ASGD) and ``dampening=None`` (SGD) and
    raises TypeError at the step that reads them; refoptim raises the same type, and its
    parameter has not moved (the check compares with the signature's defaults, not with
    the instance's, which hold the bad value)."""
    ours, theirs, p, _ = _both(name, {"lr": 0.1, **kwargs}, lambda g: None, steps=3)
    assert ours == theirs and ours[-1] is TypeError
    if len(ours) == 1:
        np.testing.assert_array_equal(p.data, np.array([1.0, 2.0], np.float32))


def test_sgd_momentum_is_read_only_where_a_buffer_exists_as_in_torch():
    """torch's first momentum step copies the gradient and never reads ``momentum``: a
    ``momentum=None`` set after construction raises at the second step, in both."""
    ours, theirs, p, t = _both("SGD", {"lr": 0.1, "momentum": 0.5}, lambda g: g.__setitem__("momentum", None))
    assert ours == theirs == [None, TypeError]
    np.testing.assert_array_equal(p.data, t.detach().numpy())


@pytest.mark.parametrize(
    "name, kwargs, key",
    [("Adam", {}, "amsgrad"), ("AdamW", {}, "amsgrad"), ("RMSprop", {}, "centered"), ("RMSprop", {}, "momentum")],
)
def test_an_option_switched_on_after_a_step_raises_torchs_key_error(name, kwargs, key):
    """amsgrad (centered, momentum) switched on after the first step: torch's _init_group
    reads a state entry that does not exist, KeyError; refoptim raises the same, before
    anything changes (it raised TypeError after moving before)."""
    p = refoptim.Parameter(np.array([1.0, 2.0], np.float32))
    t = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    sides = [(getattr(refoptim, name)([p], lr=0.1), p, np.ones), (getattr(torch.optim, name)([t], lr=0.1), t, torch.ones)]
    errors = []
    for opt, param, ones in sides:
        param.grad = ones(2) if ones is torch.ones else ones(2, np.float32)
        opt.step()
        opt.param_groups[0][key] = 0.9 if key == "momentum" else True
        with pytest.raises(KeyError) as info:
            opt.step()
        errors.append(str(info.value))
    assert errors[0] == errors[1]
    assert int(refoptim.Optimizer.state_dict(sides[0][0])["state"][0]["step"]) == 1


def test_complex_weight_decay_of_an_infinite_part_puts_a_nan_as_torch():
    """torch multiplies a complex ``other`` by ``alpha`` as a complex product even for
    ``alpha == 1``: ``(1+0j) * (0+infj)`` has a NaN real part. refoptim skipped the product
    for ``alpha == 1`` and kept ``infj``, a NaN-free value where torch has a NaN."""
    p = refoptim.Parameter(np.array([complex(0, np.inf)], np.complex64))
    t = torch.nn.Parameter(torch.tensor([complex(0, np.inf)], dtype=torch.complex64))
    p.grad = np.zeros(1, np.complex64)
    t.grad = torch.zeros(1, dtype=torch.complex64)
    refoptim.RMSprop([p], lr=0.1, weight_decay=1.0).step()
    torch.optim.RMSprop([t], lr=0.1, weight_decay=1.0).step()
    ours, theirs = p.data[0], complex(t.detach().numpy()[0])
    assert np.isnan(theirs.real)
    assert np.isnan(ours.real) or np.isnan(ours.imag)


@pytest.mark.parametrize("name", ["Muon", "Adafactor"])
def test_a_complex_parameter_with_a_sparse_gradient_gets_torchs_first_error(name):
    """torch's _init_group refuses the complex parameter before its sparse gradient (the
    fuzzer found refoptim refusing the sparse gradient first)."""
    p = refoptim.Parameter(np.zeros((1, 1), np.complex64))
    p.grad = refoptim.SparseGrad(np.zeros((1, 0), np.int64), np.zeros((0, 1), np.complex64), (1, 1))
    t = torch.nn.Parameter(torch.zeros((1, 1), dtype=torch.complex64))
    t.grad = torch.sparse_coo_tensor(torch.zeros((1, 0), dtype=torch.int64), torch.zeros((0, 1), dtype=torch.complex64), (1, 1))
    with pytest.raises(RuntimeError) as theirs:
        getattr(torch.optim, name)([t]).step()
    with pytest.raises(RuntimeError) as ours:
        getattr(refoptim, name)([p]).step()
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize(
    "name, options",
    [("Muon", {"ns_coefficients": (1.0, 2.0)}), ("Muon", {"ns_steps": 100}), ("Adafactor", {"lr": "0.1"})],
)
def test_a_complex_parameter_is_refused_before_any_option_is_checked(name, options):
    """torch's _init_group refuses a complex parameter before its update function reads
    a bad option of the group (the fuzzer found refoptim raising Muon's "Coefficients
    must be a tuple of exactly 3 values" first)."""
    p = refoptim.Parameter(np.zeros((1, 1), np.complex64))
    p.grad = np.zeros((1, 1), np.complex64)
    t = torch.nn.Parameter(torch.zeros((1, 1), dtype=torch.complex64))
    t.grad = torch.zeros((1, 1), dtype=torch.complex64)
    opt_t, opt_p = getattr(torch.optim, name)([t]), getattr(refoptim, name)([p])
    opt_t.param_groups[0].update(options)
    opt_p.param_groups[0].update(options)
    with pytest.raises(RuntimeError) as theirs:
        opt_t.step()
    with pytest.raises(RuntimeError) as ours:
        opt_p.step()
    assert str(ours.value) == str(theirs.value)


def test_asgd_with_a_negative_lambd_keeps_the_real_part_of_eta_as_torch():
    """``lambd < 0`` makes ``1 + lambd * lr * step`` negative after a few steps: Python's
    ``**`` then gives a complex number, and torch's ``eta.copy_()`` keeps its real part
    (refoptim raised TypeError from ``float()``; the fuzzer's long profile found it)."""
    t = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    p = refoptim.Parameter(np.array([1.0, 2.0], np.float32))
    theirs = torch.optim.ASGD([t], lambd=-1.0, lr=0.15)
    ours = refoptim.ASGD([p], lambd=-1.0, lr=0.15)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch: casting complex values to real
        for _ in range(10):
            t.grad = torch.ones(2)
            p.grad = np.ones(2, np.float32)
            theirs.step()
            ours.step()
    assert float(theirs.state[t]["eta"]) < 0
    assert float(ours.state[p]["eta"]) == float(theirs.state[t]["eta"])
    np.testing.assert_array_equal(p.data, t.detach().numpy())


@pytest.mark.parametrize("bad", [None, "0.01"], ids=["None", "str"])
def test_sgd_weight_decay_of_the_wrong_type_with_a_sparse_gradient_raises_torchs_type_error(bad):
    """torch's ``grad.add(param, alpha=weight_decay)`` parses ``alpha`` before it finds
    the sparse-plus-dense addition unsupported: a weight decay that is not a number is a
    TypeError, not the sparse RuntimeError (found by the fuzzer's long profile)."""
    t = torch.nn.Parameter(torch.zeros(2))
    t.grad = torch.sparse_coo_tensor(torch.zeros((1, 0), dtype=torch.int64), torch.zeros(0), (2,))
    p = refoptim.Parameter(np.zeros(2, np.float32))
    p.grad = refoptim.SparseGrad(np.zeros((1, 0), np.int64), np.zeros(0, np.float32), (2,))
    outcomes = []
    for param, lib in ((t, torch.optim), (p, refoptim)):
        opt = lib.SGD([param], lr=0.1)
        opt.param_groups[0]["weight_decay"] = bad
        with pytest.raises(Exception) as info:
            opt.step()
        outcomes.append(type(info.value))
    assert outcomes == [TypeError, TypeError], outcomes


@pytest.mark.parametrize("value", [1e38, 1e-30], ids=["huge", "tiny"])
@pytest.mark.parametrize("shape", [(), (1, 1), (1, 3), (3, 1)])
def test_adafactor_norm_of_one_element_is_its_absolute_value_as_in_torch(shape, value):
    """torch's norm over a single element is ``abs(x)``: a float32 parameter of 1e38 keeps
    its RMS finite where sqrt(x*x) overflows (the fuzzer's long profile found refoptim's
    Adafactor turning such a parameter into NaN)."""
    data = np.full(shape, value, np.float32)
    grad = np.full(shape, 0.5, np.float32)
    p = refoptim.Parameter(data.copy())
    t = torch.nn.Parameter(torch.from_numpy(data.copy()))
    opt_p, opt_t = refoptim.Adafactor([p], lr=0.01), torch.optim.Adafactor([t], lr=0.01)
    for _ in range(2):
        p.grad, t.grad = grad.copy(), torch.from_numpy(grad.copy())
        opt_p.step()
        opt_t.step()
    np.testing.assert_array_equal(p.data, t.detach().numpy())


def _sparse_pair(n=2, values=0):
    t = torch.nn.Parameter(torch.zeros(n))
    t.grad = torch.sparse_coo_tensor(torch.zeros((1, values), dtype=torch.int64), torch.ones(values), (n,))
    p = refoptim.Parameter(np.zeros(n, np.float32))
    p.grad = refoptim.SparseGrad(np.zeros((1, values), np.int64), np.ones(values, np.float32), (n,))
    return t, p


def _outcomes(make, change, steps):
    """The exception type of the last of ``steps`` steps in torch and in refoptim (None:
    no error), with ``change(opt)`` applied before the last step."""
    out = []
    for lib, param, grad in make():
        opt = lib([param])
        for i in range(steps):
            if i == steps - 1:
                change(opt)
                try:
                    param.grad = grad
                    opt.step()
                    out.append(None)
                except Exception as e:  # noqa: BLE001 - compared below
                    out.append(type(e))
            else:
                opt.step()
    return out


@pytest.mark.parametrize("option", ["momentum", "dampening"])
def test_sgd_sparse_buffer_with_an_option_of_the_wrong_type_raises_torchs_type_error(option):
    """A sparse momentum buffer and then a dense gradient: torch computes ``mul_(momentum)``
    and ``1 - dampening`` before the unsupported sparse-plus-dense addition, so ``None``
    there is a TypeError (found by the fuzzer's long profile; refoptim raised the
    RuntimeError)."""

    def make():
        t, p = _sparse_pair(values=1)
        return [
            (lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.5), t, torch.ones(2)),
            (lambda ps: refoptim.SGD(ps, lr=0.1, momentum=0.5), p, np.ones(2, np.float32)),
        ]

    def change(opt):
        opt.param_groups[0][option] = None

    assert _outcomes(make, change, steps=2) == [TypeError, TypeError]


def test_sparse_adam_reads_no_option_for_a_gradient_without_values_as_torch():
    """torch's SparseAdam skips a sparse gradient without values before it reads ``lr``:
    ``lr=None`` then raises nothing (found by the fuzzer's long profile)."""
    t, p = _sparse_pair(values=0)
    outcomes = []
    for lib, param in ((torch.optim, t), (refoptim, p)):
        opt = lib.SparseAdam([param])
        opt.param_groups[0]["lr"] = None
        opt.step()
        outcomes.append(float(opt.state[param]["step"]))
    assert outcomes == [1.0, 1.0]


def _two_groups(lib, make, name, first, second, options):
    opt = getattr(lib, name)([{"params": [first]}, {"params": [second]}], **options)
    with pytest.raises(Exception) as info:
        opt.step()
    return type(info.value), str(info.value)


def test_an_earlier_groups_error_comes_first_as_in_torch():
    """torch updates group by group: Adafactor's division by zero on a size-0 parameter of
    group 0 comes before group 1's sparse gradient is read, and Muon's Newton-Schulz check
    of group 0 before group 1's complex parameter (CI's fuzzer found refoptim raising the
    later group's error: it checked every group before the optimizer's own checks)."""
    outcomes = []
    for lib, make in ((torch.optim, torch.nn.Parameter), (refoptim, refoptim.Parameter)):
        is_torch = lib is torch.optim
        empty = make(torch.zeros(0) if is_torch else np.zeros(0, np.float32))
        empty.grad = torch.zeros(0) if is_torch else np.zeros(0, np.float32)
        sparse = make(torch.zeros(2) if is_torch else np.zeros(2, np.float32))
        sparse.grad = (
            torch.sparse_coo_tensor(torch.zeros((1, 0), dtype=torch.int64), torch.zeros(0), (2,))
            if is_torch
            else refoptim.SparseGrad(np.zeros((1, 0), np.int64), np.zeros(0, np.float32), (2,))
        )
        outcomes.append(_two_groups(lib, make, "Adafactor", empty, sparse, {}))
        real = make(torch.zeros(2, 2) if is_torch else np.zeros((2, 2), np.float32))
        real.grad = torch.ones(2, 2) if is_torch else np.ones((2, 2), np.float32)
        cplx = make(torch.zeros(2, 2, dtype=torch.complex64) if is_torch else np.zeros((2, 2), np.complex64))
        cplx.grad = torch.ones(2, 2, dtype=torch.complex64) if is_torch else np.ones((2, 2), np.complex64)
        outcomes.append(_two_groups(lib, make, "Muon", real, cplx, {"ns_steps": 100}))
    assert outcomes[:2] == outcomes[2:], outcomes
    assert outcomes[0][0] is ZeroDivisionError and outcomes[1][0] is ValueError


@pytest.mark.parametrize("option", ["d", "weight_decay"])
def test_adafactor_size_0_first_parameter_divides_by_zero_before_reading_options(option):
    """torch's Adafactor divides by zero at a size-0 first parameter before it reads ``d``
    or ``weight_decay``: ``None`` there does not raise TypeError first (CI's fuzzer)."""
    outcomes = []
    for lib, param in ((torch.optim, torch.nn.Parameter(torch.zeros(0))), (refoptim, refoptim.Parameter(np.zeros(0, np.float32)))):
        param.grad = param.data * 1 if lib is torch.optim else np.zeros(0, np.float32)
        opt = lib.Adafactor([param])
        opt.param_groups[0][option] = None
        with pytest.raises(Exception) as info:
            opt.step()
        outcomes.append(type(info.value))
    assert outcomes == [ZeroDivisionError, ZeroDivisionError]
