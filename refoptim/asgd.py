r"""ASGD (torch 2.13's ``torch.optim.ASGD``): stochastic gradient descent with a decaying
step size and a running (Polyak-Ruppert) average of the iterates."""

from __future__ import annotations

from typing import Any

from ._backend import (
    to_scalar,
    array_namespace,
    assign,
    back_to_complex,
    device_of,
    is_array,
    is_complex,
    real_views,
    scalar,
)
from ._checks import check_lr, check_weight_decay
from ._docs import append_doc, flags_doc
from ._primitives import add, add_, mul_, pow
from ._schedule_scalars import if_else, maximum, read_float, step_count, to_array
from .optimizer import Optimizer

__all__ = ["ASGD", "asgd_init", "asgd_step"]

_FLAGS_DOC = flags_doc(
    "ASGD",
    ("foreach", "capturable", "differentiable"),
    note=(
        "torch's ``capturable`` path keeps the step size as a tensor and rounds it differently; refoptim does"
        " not emulate it."
    ),
    scalars=("step", "eta", "mu"),
)


def _store_scalar(xp: Any, old: Any, value: Any) -> Any:
    """torch's ``old.copy_(torch.as_tensor(value))``: a Python float becomes a float32
    tensor first (torch's default dtype), an array keeps its dtype; the result is cast to
    ``old``'s dtype and written into it (or returned, for an immutable ``old``)."""
    if is_array(value):
        value = xp.asarray(value)
    else:
        value = to_array(value, xp.float32, old)
    if value.dtype != old.dtype:
        value = xp.astype(value, old.dtype)
    return assign(old, xp.reshape(value, ()))


def asgd_init(param: Any, lr: Any = 1e-2) -> dict[str, Any]:
    """The state ASGD starts a parameter with: ``step`` (0-d float32 zero), ``eta`` (the
    lr as a 0-d float32 array), ``mu`` (0-d float32 one) and ``ax`` (zeros like the
    parameter)."""
    xp = array_namespace(param)
    device = device_of(param)
    return {
        "step": xp.zeros((), dtype=xp.float32, device=device),
        "eta": xp.asarray(scalar(lr), dtype=xp.float32, device=device),
        "mu": xp.full((), 1.0, dtype=xp.float32, device=device),
        "ax": xp.zeros_like(param),
    }


def asgd_step(
    param: Any,
    grad: Any,
    state: dict[str, Any],
    *,
    lr: Any = 1e-2,
    lambd: float = 1e-4,
    alpha: float = 0.75,
    t0: float = 1e6,
    weight_decay: float = 0,
    maximize: bool = False,
) -> Any:
    r"""One ASGD update of one parameter, in the order of torch's ``_single_tensor_asgd``.

    ``state`` holds ``step``, ``eta``, ``mu`` and ``ax`` as :func:`asgd_init` makes them;
    the new values are stored back into it. Returns the new parameter. Works on immutable
    arrays: keep what it returns.

    .. math::
        t &\leftarrow t + 1 \\
        g &\leftarrow -g \text{ if maximize} \\
        g &\leftarrow g + \lambda_w\theta \quad (\lambda_w \ne 0) \\
        \theta &\leftarrow \theta (1 - \lambda\eta) - \eta g \\
        a &\leftarrow \theta \text{ if } \mu = 1 \text{ else } a + \mu(\theta - a) \\
        \eta &\leftarrow \gamma / (1 + \lambda\gamma t)^\alpha \\
        \mu &\leftarrow 1 / \max(1, t - t_0)
    """
    xp = array_namespace(param)
    lr = to_scalar(lr)
    if maximize:
        grad = -grad
    mu = state["mu"]
    ax = state["ax"]
    eta = state["eta"]
    complex_param = is_complex(xp, param)
    if complex_param:
        # torch views complex tensors as (real, imag) pairs before the weight decay.
        originals = (param, ax)
        param, ax = real_views(xp, *originals)
        (grad,) = real_views(xp, grad)
    step_t = state["step"]
    step_t += 1
    state["step"] = step_t

    if weight_decay != 0:
        grad = add(grad, param, alpha=weight_decay)

    eta_value = read_float(eta)  # float(eta); a stand-in under jax.jit (see _schedule_scalars)
    param = mul_(param, 1 - lambd * eta_value)  # decay term
    param = add_(param, grad, alpha=-eta_value)  # update parameter

    # averaging
    mu_value = read_float(mu)

    def average() -> Any:
        return add_(ax, (param - ax) * mu_value)

    def copy() -> Any:
        new_ax = assign(ax, param)  # torch's ax.copy_(param)
        # immutable arrays: rebound, never aliased to a mutable one
        return xp.asarray(param, copy=True) if new_ax is param else new_ax

    ax = if_else(mu_value != 1, average, copy)

    step = step_count(step_t)
    if is_array(lr):
        # torch keeps a tensor lr: the new eta is computed in its dtype, with torch's pow.
        new_eta = lr / pow(1 + lambd * lr * step, alpha)
    else:
        new_eta = lr / ((1 + lambd * lr * step) ** alpha)
        if isinstance(new_eta, complex):
            # a negative base (lambd < 0): Python's ** gives a complex number, and torch's
            # eta.copy_() of it into the real eta keeps the real part
            new_eta = new_eta.real
    state["eta"] = _store_scalar(xp, eta, new_eta)
    state["mu"] = _store_scalar(xp, mu, 1 / maximum(1, step - t0))

    if complex_param:
        param, ax = back_to_complex(xp, originals, (param, ax))
    state["ax"] = ax
    return param


class ASGD(Optimizer):
    r"""Averaged stochastic gradient descent (``torch.optim.ASGD``).

    .. math::
        \begin{aligned}
        &\textbf{input}: \gamma \text{ (lr)}, \theta_0 \text{ (params)}, f(\theta)
            \text{ (objective)}, \lambda \text{ (lambd)}, \alpha \text{ (power)},
            t_0 \text{ (averaging start)}, \lambda_w \text{ (weight decay)},
            \textit{maximize} \\
        &\textbf{initialize}: \eta_0 \leftarrow \gamma,\ \mu_0 \leftarrow 1,\
            a_0 \leftarrow 0 \\
        &\textbf{for } t = 1, 2, \ldots \textbf{ do} \\
        &\quad g_t \leftarrow \nabla_\theta f_t(\theta_{t-1}),\ \text{negated if } \textit{maximize} \\
        &\quad \textbf{if } \lambda_w \ne 0:\ g_t \leftarrow g_t + \lambda_w\theta_{t-1} \\
        &\quad \theta_t \leftarrow \theta_{t-1}(1 - \lambda\eta_{t-1}) - \eta_{t-1} g_t \\
        &\quad \textbf{if } \mu_{t-1} \ne 1:\ a_t \leftarrow a_{t-1} + \mu_{t-1}(\theta_t - a_{t-1})
            \textbf{ else } a_t \leftarrow \theta_t \\
        &\quad \eta_t \leftarrow \gamma / (1 + \lambda\gamma t)^\alpha \\
        &\quad \mu_t \leftarrow 1 / \max(1, t - t_0)
        \end{aligned}

    Args:
        params (iterable): Parameters, ``(name, Parameter)`` pairs, or parameter-group dicts.
        lr (float or 0-d array): learning rate (default: 1e-2). A 0-d array is kept as an
            array, as torch keeps a tensor lr: the new ``eta`` is then computed in the
            array's dtype.
        lambd (float): decay term (default: 1e-4).
        alpha (float): power of the ``eta`` update (default: 0.75).
        t0 (float): the step after which averaging starts (default: 1e6).
        weight_decay (float): L2 penalty added to the gradient (default: 0).
        foreach (bool, optional): accepted for signature parity (see below); positional,
            as in torch's ASGD, like the three arguments that follow.
        maximize (bool): maximize the objective instead of minimizing (default: False).
        differentiable (bool): accepted for signature parity (see below).
        capturable (bool): accepted for signature parity (see below).

    State per parameter: ``step``, ``eta`` and ``mu`` (0-d float32 arrays, whatever the
    parameter's dtype) and ``ax`` (the running average, the parameter's shape and dtype).

    Torch quirks reproduced (each explained on the manual's page, "Reproducing torch
    exactly"):

    * float32 ``eta`` and ``mu``, also for float64 parameters;
    * ``eta`` and ``mu`` of step :math:`t` computed at step :math:`t - 1`;
    * averaging starts at step :math:`\max(2, \lfloor t_0 \rfloor + 3)`;
    * a 0-d array lr: the new ``eta`` with torch's ``pow`` in the array's dtype;
    * ``lambd``, ``alpha`` and ``t0`` not validated;
    * complex parameters: (real, imag) pairs *before* the weight decay;
    * float32 ``step``: stops counting at :math:`2^{24}`.
    """

    _sparse_grad_error = (RuntimeError, "ASGD does not support sparse gradients")
    _elementwise = True  # the rule may run piece by piece (refoptim._fastpath)

    def __init__(
        self,
        params: Any,
        lr: Any = 1e-2,
        lambd: float = 1e-4,
        alpha: float = 0.75,
        t0: float = 1e6,
        weight_decay: float = 0,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
    ) -> None:
        check_lr(lr)
        check_weight_decay(weight_decay)

        defaults = {
            "lr": lr,
            "lambd": lambd,
            "alpha": alpha,
            "t0": t0,
            "weight_decay": weight_decay,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "capturable": capturable,
        }
        super().__init__(params, defaults)

    _setstate_options = ("foreach", "maximize", "differentiable", "capturable")
    _setstate_scalars = ("step", "eta", "mu")

    def _init_state(self, p: Any, group: dict[str, Any]) -> dict[str, Any]:
        return asgd_init(p.data, group["lr"])

    def _update(self, param: Any, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> Any:
        return asgd_step(
            param,
            grad,
            state,
            lr=group["lr"],
            lambd=group["lambd"],
            alpha=group["alpha"],
            t0=group["t0"],
            weight_decay=group["weight_decay"],
            maximize=group["maximize"],
        )


ASGD.__doc__ = append_doc(ASGD.__doc__, _FLAGS_DOC)
