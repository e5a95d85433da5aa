"""Constructor validation, defaults and signatures: torch 2.13's, exactly.

Every expected exception type and message below was read from torch 2.13.0 (CPU) by
running the same construction on ``torch.optim``; an array stands in for a tensor.
"""

import inspect

import numpy as np
import pytest

import refoptim
from refoptim import SGD, Adam, AdamW, Parameter
from _support import NAMESPACES, cnp, to_np

ADAMS = [Adam, AdamW]


def params(xp=cnp):
    return [Parameter(xp.zeros(3))]


def raises(cls, exc, message, *args, **kwargs):
    with pytest.raises(exc) as info:
        cls(*args, **kwargs)
    assert str(info.value) == message
    assert type(info.value) is exc


# ----------------------------------------------------------------------------- SGD
@pytest.mark.parametrize(
    "kwargs,exc,message",
    [
        (dict(lr=-1), ValueError, "Invalid learning rate: -1"),
        (dict(lr=-0.5), ValueError, "Invalid learning rate: -0.5"),
        (dict(momentum=-0.5), ValueError, "Invalid momentum value: -0.5"),
        (dict(weight_decay=-0.5), ValueError, "Invalid weight_decay value: -0.5"),
        (dict(nesterov=True), ValueError, "Nesterov momentum requires a momentum and zero dampening"),
        (dict(nesterov=True, momentum=0.9, dampening=0.1), ValueError,
         "Nesterov momentum requires a momentum and zero dampening"),
        (dict(fused=True, differentiable=True), RuntimeError, "`fused` does not support `differentiable`"),
        (dict(fused=True, foreach=True), RuntimeError, "`fused` and `foreach` cannot be `True` together."),
        # torch's order of checks
        (dict(lr=-1, momentum=-1), ValueError, "Invalid learning rate: -1"),
        (dict(momentum=-1, weight_decay=-1), ValueError, "Invalid momentum value: -1"),
        (dict(nesterov=True, weight_decay=-1), ValueError, "Invalid weight_decay value: -1"),
        (dict(nesterov=True, fused=True, differentiable=True), ValueError,
         "Nesterov momentum requires a momentum and zero dampening"),
    ],
)
def test_sgd_errors(kwargs, exc, message):
    raises(SGD, exc, message, params(), **kwargs)


def test_sgd_nesterov_checks_come_before_the_params():
    raises(SGD, ValueError, "Nesterov momentum requires a momentum and zero dampening", [], nesterov=True)
    # fused checks come after the params
    raises(SGD, ValueError, "optimizer got an empty parameter list", [], fused=True, differentiable=True)


def test_sgd_array_lr(xp):
    raises(SGD, ValueError, "Tensor lr must be 1-element", params(xp), lr=xp.asarray([0.1, 0.2]))
    raises(SGD, ValueError, "Tensor lr must be 1-element", params(xp), lr=xp.zeros((0,)))
    # torch accepts a tensor lr with foreach=True for SGD
    opt = SGD(params(xp), lr=xp.asarray(0.1), foreach=True)
    assert opt.param_groups[0]["foreach"] is True


def test_sgd_accepts_valid_edge_values():
    opt = SGD(params(), lr=0.0, momentum=0.0, dampening=1.0, weight_decay=0.0)
    assert opt.param_groups[0]["lr"] == 0.0
    opt = SGD(params(), momentum=0.9, nesterov=True)
    assert opt.param_groups[0]["nesterov"] is True
    # fused alone and foreach alone are accepted
    assert SGD(params(), fused=True).param_groups[0]["fused"] is True
    assert SGD(params(), foreach=True).param_groups[0]["foreach"] is True


# ----------------------------------------------------------------------------- Adam, AdamW
ADAM_ERRORS = [
    (dict(lr=-1), ValueError, "Invalid learning rate: -1"),
    (dict(eps=-1e-3), ValueError, "Invalid epsilon value: -0.001"),
    (dict(betas=(-0.1, 0.9)), ValueError, "Invalid beta parameter at index 0: -0.1"),
    (dict(betas=(1.0, 0.9)), ValueError, "Invalid beta parameter at index 0: 1.0"),
    (dict(betas=(0.9, 1.0)), ValueError, "Invalid beta parameter at index 1: 1.0"),
    (dict(betas=(0.9, -1.0)), ValueError, "Invalid beta parameter at index 1: -1.0"),
    (dict(weight_decay=-1.0), ValueError, "Invalid weight_decay value: -1.0"),
    (dict(betas=(0, 0.99)), ValueError, "betas must be either both floats or both Tensors"),
    (dict(fused=True, differentiable=True), RuntimeError, "`fused` does not support `differentiable`"),
    (dict(fused=True, foreach=True), RuntimeError, "`fused` and `foreach` cannot be `True` together."),
    # torch's order of checks
    (dict(lr=-1, eps=-1), ValueError, "Invalid learning rate: -1"),
    (dict(eps=-1, betas=(1.0, 0.9)), ValueError, "Invalid epsilon value: -1"),
    (dict(betas=(1.0, 1.0)), ValueError, "Invalid beta parameter at index 0: 1.0"),
    (dict(betas=(0.9, 1.0), weight_decay=-1), ValueError, "Invalid beta parameter at index 1: 1.0"),
]


@pytest.mark.parametrize("cls", ADAMS)
@pytest.mark.parametrize("kwargs,exc,message", ADAM_ERRORS)
def test_adam_errors(cls, kwargs, exc, message):
    raises(cls, exc, message, params(), **kwargs)


@pytest.mark.parametrize("cls", ADAMS)
def test_adam_array_hyperparameters(cls, xp):
    a = lambda v: xp.asarray(v)  # noqa: E731
    raises(cls, ValueError, "betas must be either both floats or both Tensors", params(xp), betas=(0.9, a(0.99)))
    raises(cls, ValueError, "betas must be either both floats or both Tensors", params(xp), betas=(a(0.9), 0.99))
    raises(cls, ValueError, "Invalid weight_decay value: -1",
           params(xp), betas=(0.9, a(0.99)), weight_decay=-1)
    raises(cls, ValueError, "Tensor lr must be 1-element", params(xp), lr=a([0.1, 0.2]))
    raises(cls, ValueError, "lr as a Tensor is not supported for capturable=False and foreach=True",
           params(xp), lr=a(0.1), foreach=True)
    # the foreach check comes before the size check
    raises(cls, ValueError, "lr as a Tensor is not supported for capturable=False and foreach=True",
           params(xp), lr=a([0.1, 0.2]), foreach=True)
    raises(cls, ValueError, "betas[0] as a Tensor is not supported for capturable=False and foreach=True",
           params(xp), betas=(a(0.9), a(0.99)), foreach=True)
    # accepted: array lr with capturable, array betas without foreach
    opt = cls(params(xp), lr=a(0.1), foreach=True, capturable=True)
    assert opt.param_groups[0]["capturable"] is True
    betas = (a(0.9), a(0.99))
    opt = cls(params(xp), betas=betas)
    assert opt.param_groups[0]["betas"] is betas


def test_adamw_has_no_decoupled_weight_decay_argument():
    with pytest.raises(TypeError, match="decoupled_weight_decay"):
        AdamW(params(), decoupled_weight_decay=True)


@pytest.mark.parametrize("cls", ADAMS)
def test_adam_fused_checks_come_after_the_params(cls):
    raises(cls, ValueError, "optimizer got an empty parameter list", [], fused=True, differentiable=True)


# An array lr below zero: torch formats the tensor as its Python float.
@pytest.mark.parametrize(
    "ns",
    [
        "numpy",
        "array_api_strict",
    ],
)
@pytest.mark.parametrize("cls", [SGD, Adam, AdamW])
def test_negative_array_lr_message(cls, ns):
    xp = NAMESPACES[ns]
    # torch.tensor(-0.1) (float32) -> 'Invalid learning rate: -0.10000000149011612'
    raises(cls, ValueError, "Invalid learning rate: -0.10000000149011612", params(xp),
           lr=xp.asarray(-0.1, dtype=xp.float32))
    raises(cls, ValueError, "Invalid learning rate: -0.5", params(xp), lr=xp.asarray(-0.5, dtype=xp.float64))


# ----------------------------------------------------------------------------- defaults
TORCH_SGD_GROUP = {
    "lr": 0.001,
    "momentum": 0,
    "dampening": 0,
    "weight_decay": 0,
    "nesterov": False,
    "maximize": False,
    "foreach": None,
    "differentiable": False,
    "fused": None,
}
TORCH_ADAM_GROUP = {
    "lr": 0.001,
    "betas": (0.9, 0.999),
    "eps": 1e-08,
    "weight_decay": 0,
    "amsgrad": False,
    "maximize": False,
    "foreach": None,
    "capturable": False,
    "differentiable": False,
    "fused": None,
    "decoupled_weight_decay": False,
}
TORCH_ADAMW_GROUP = dict(TORCH_ADAM_GROUP, weight_decay=0.01, decoupled_weight_decay=True)


def _typed(d):
    return [(k, type(v), v) for k, v in d.items()]


@pytest.mark.parametrize(
    "cls,expected", [(SGD, TORCH_SGD_GROUP), (Adam, TORCH_ADAM_GROUP), (AdamW, TORCH_ADAMW_GROUP)]
)
def test_defaults_and_group_keys_match_torch(cls, expected, xp):
    opt = cls(params(xp))
    group = opt.param_groups[0]
    assert list(group) == ["params"] + list(expected)  # same keys, same order
    assert _typed({k: v for k, v in group.items() if k != "params"}) == _typed(expected)
    assert _typed(opt.defaults) == _typed(expected)


def test_headline_defaults():
    assert SGD(params()).defaults["lr"] == 1e-3
    assert Adam(params()).defaults["weight_decay"] == 0
    assert AdamW(params()).defaults["weight_decay"] == 1e-2


# ----------------------------------------------------------------------------- signatures
E = inspect.Parameter.empty
POK = "POSITIONAL_OR_KEYWORD"
KO = "KEYWORD_ONLY"
TORCH_SIGNATURES = {
    SGD: [
        ("self", POK, E), ("params", POK, E), ("lr", POK, 0.001), ("momentum", POK, 0),
        ("dampening", POK, 0), ("weight_decay", POK, 0), ("nesterov", POK, False),
        ("maximize", KO, False), ("foreach", KO, None), ("differentiable", KO, False), ("fused", KO, None),
    ],
    Adam: [
        ("self", POK, E), ("params", POK, E), ("lr", POK, 0.001), ("betas", POK, (0.9, 0.999)),
        ("eps", POK, 1e-08), ("weight_decay", POK, 0), ("amsgrad", POK, False),
        ("foreach", KO, None), ("maximize", KO, False), ("capturable", KO, False),
        ("differentiable", KO, False), ("fused", KO, None), ("decoupled_weight_decay", KO, False),
    ],
    AdamW: [
        ("self", POK, E), ("params", POK, E), ("lr", POK, 0.001), ("betas", POK, (0.9, 0.999)),
        ("eps", POK, 1e-08), ("weight_decay", POK, 0.01), ("amsgrad", POK, False),
        ("maximize", KO, False), ("foreach", KO, None), ("capturable", KO, False),
        ("differentiable", KO, False), ("fused", KO, None),
    ],
}
STEP = [("self", POK, E), ("closure", POK, None)]
TORCH_BASE_SIGNATURES = {
    "__init__": [("self", POK, E), ("params", POK, E), ("defaults", POK, E)],
    "step": STEP,
    "zero_grad": [("self", POK, E), ("set_to_none", POK, True)],
    "add_param_group": [("self", POK, E), ("param_group", POK, E)],
    "state_dict": [("self", POK, E)],
    "load_state_dict": [("self", POK, E), ("state_dict", POK, E)],
    "register_step_pre_hook": [("self", POK, E), ("hook", POK, E)],
    "register_step_post_hook": [("self", POK, E), ("hook", POK, E)],
    "register_state_dict_pre_hook": [("self", POK, E), ("hook", POK, E), ("prepend", POK, False)],
    "register_state_dict_post_hook": [("self", POK, E), ("hook", POK, E), ("prepend", POK, False)],
    "register_load_state_dict_pre_hook": [("self", POK, E), ("hook", POK, E), ("prepend", POK, False)],
    "register_load_state_dict_post_hook": [("self", POK, E), ("hook", POK, E), ("prepend", POK, False)],
}


def _signature(f):
    return [(n, p.kind.name, p.default) for n, p in inspect.signature(f).parameters.items()]


@pytest.mark.parametrize("cls", [SGD, Adam, AdamW])
def test_constructor_signature_matches_torch(cls):
    assert _signature(cls.__init__) == TORCH_SIGNATURES[cls]
    assert _signature(cls.step) == STEP


@pytest.mark.parametrize("name", list(TORCH_BASE_SIGNATURES))
def test_optimizer_method_signatures_match_torch(name):
    assert _signature(getattr(refoptim.Optimizer, name)) == TORCH_BASE_SIGNATURES[name]


def test_global_hook_signatures_match_torch():
    for f in (refoptim.register_optimizer_step_pre_hook, refoptim.register_optimizer_step_post_hook):
        assert _signature(f) == [("hook", POK, E)]


# ----------------------------------------------------------------------------- array lr (item 6)
@pytest.mark.parametrize("cls", [SGD, Adam, AdamW])
def test_zero_d_float32_lr_is_kept_and_works(cls, xp):
    lr = xp.asarray(0.01, dtype=xp.float32)
    p = Parameter(xp.asarray(np.array([1.0, -2.0, 3.0], dtype=np.float32)))
    opt = cls([p], lr=lr)
    assert opt.param_groups[0]["lr"] is lr
    assert opt.defaults["lr"] is lr
    for _ in range(3):
        p.grad = xp.asarray(np.array([0.5, 0.25, -1.0], dtype=np.float32))
        opt.step()
    assert opt.param_groups[0]["lr"] is lr
    assert float(lr) == float(np.float32(0.01))  # never written to
    out = to_np(p.data)
    assert np.all(np.isfinite(out))
    assert not np.array_equal(out, np.array([1.0, -2.0, 3.0], dtype=np.float32))
    if cls is SGD:
        # SGD reads the array lr as its float value (torch's .item())
        q = Parameter(xp.asarray(np.array([1.0, -2.0, 3.0], dtype=np.float32)))
        opt_q = SGD([q], lr=float(np.float32(0.01)))
        for _ in range(3):
            q.grad = xp.asarray(np.array([0.5, 0.25, -1.0], dtype=np.float32))
            opt_q.step()
        assert to_np(q.data).tobytes() == out.tobytes()
    else:
        # Adam moves each coordinate by about lr per step against the gradient's sign
        np.testing.assert_allclose(out, [1.0 - 0.03, -2.0 - 0.03, 3.0 + 0.03], rtol=0, atol=1e-3)


@pytest.mark.parametrize("cls", [SGD, Adam])
def test_zero_d_float32_lr_matches_functional(cls, xp):
    from refoptim import functional as F

    lr = xp.asarray(0.01, dtype=xp.float32)
    init = np.array([1.0, -2.0, 3.0])
    grad = np.array([0.5, 0.25, -1.0])
    p = Parameter(xp.asarray(init))
    opt = cls([p], lr=lr)
    w = xp.asarray(init)
    if cls is SGD:
        state = {}
        step = lambda w, g: F.sgd_step(w, g, state, lr=lr, momentum=0, dampening=0,  # noqa: E731
                                       weight_decay=0, nesterov=False, maximize=False)
    else:
        state = F.adam_init(w)
        step = lambda w, g: F.adam_step(w, g, state, lr=lr, beta1=0.9, beta2=0.999, eps=1e-8,  # noqa: E731
                                        weight_decay=0, amsgrad=False, maximize=False,
                                        decoupled_weight_decay=False)
    for _ in range(4):
        p.grad = xp.asarray(grad)
        opt.step()
        w = step(w, xp.asarray(grad))
    assert to_np(p.data).tobytes() == to_np(w).tobytes()


# torch accepts any 1-element tensor as lr (shape (1,) or (1, 1)), and steps with it.
@pytest.mark.parametrize("cls", [SGD, Adam, AdamW])
def test_one_element_1d_lr_steps_like_0d_lr(cls, xp):
    results = []
    for lr in (xp.asarray(0.1, dtype=xp.float32), xp.asarray([0.1], dtype=xp.float32)):
        p = Parameter(xp.asarray(np.ones(3, dtype=np.float32)))
        opt = cls([p], lr=lr)
        p.grad = xp.asarray(np.ones(3, dtype=np.float32))
        opt.step()
        results.append(to_np(p.data))
    assert results[0].tobytes() == results[1].tobytes()
