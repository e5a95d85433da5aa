r"""Adamax (torch 2.13's ``torch.optim.Adamax``): Adam with the infinity norm in place of
the second moment."""

from __future__ import annotations

from typing import Any

from ._backend import (
    to_scalar,
    array_namespace,
    back_to_complex,
    device_of,
    is_array,
    is_complex,
    real_views,
    scalar,
)
from ._checks import check_betas, check_eps, check_lr, check_weight_decay
from ._docs import append_doc, flags_doc
from ._primitives import add, addcdiv_, lerp_, maximum_, mul_, pow, reciprocal_scale
from ._schedule_scalars import step_count
from .optimizer import Optimizer

__all__ = ["Adamax", "adamax_init", "adamax_step"]

_FLAGS_DOC = flags_doc(
    "Adamax",
    ("foreach", "capturable", "differentiable"),
    note="torch's ``capturable`` path rounds its step size differently; refoptim does not emulate it.",
)


def adamax_init(param: Any) -> dict[str, Any]:
    """The state Adamax starts a parameter with: ``step`` (0-d float32 zero), ``exp_avg``
    and ``exp_inf`` (zeros like the parameter)."""
    xp = array_namespace(param)
    return {
        "step": xp.zeros((), dtype=xp.float32, device=device_of(param)),
        "exp_avg": xp.zeros_like(param),
        "exp_inf": xp.zeros_like(param),
    }


def adamax_step(
    param: Any,
    grad: Any,
    state: dict[str, Any],
    *,
    lr: Any = 2e-3,
    beta1: Any = 0.9,
    beta2: Any = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0,
    maximize: bool = False,
) -> Any:
    r"""One Adamax update of one parameter, in the order of torch's ``_single_tensor_adamax``.

    ``state`` holds ``step``, ``exp_avg`` and ``exp_inf`` as :func:`adamax_init` makes
    them; the new values are stored back into it. Returns the new parameter. Works on
    immutable arrays: keep what it returns. ``beta1`` and ``beta2`` are Python floats or
    0-d arrays (read as torch reads tensor betas: ``1 - beta1**t`` in the array's dtype).

    .. math::
        t &\leftarrow t + 1 \\
        g &\leftarrow -g \text{ if maximize} \\
        g &\leftarrow g + \lambda\theta \quad (\lambda \ne 0) \\
        m &\leftarrow \mathrm{lerp}(m, g, 1 - \beta_1) \\
        u &\leftarrow \max(\beta_2 u,\ |g| + \epsilon) \\
        \theta &\leftarrow \theta - \frac{\gamma}{1 - \beta_1^t}\, \frac{m}{u}
    """
    xp = array_namespace(param)
    lr = to_scalar(lr)
    if maximize:
        grad = -grad
    step_t = state["step"]
    step_t += 1
    state["step"] = step_t

    if weight_decay != 0:
        grad = add(grad, param, alpha=weight_decay)

    exp_avg = state["exp_avg"]
    exp_inf = state["exp_inf"]
    complex_param = is_complex(xp, param)
    if complex_param:
        originals = (param, exp_avg, exp_inf)
        param, exp_avg, exp_inf = real_views(xp, *originals)
        (grad,) = real_views(xp, grad)

    exp_avg = lerp_(exp_avg, grad, scalar(1 - beta1))
    exp_inf = mul_(exp_inf, scalar(beta2))
    exp_inf = maximum_(exp_inf, xp.abs(grad) + eps)

    step = step_count(step_t)  # float(step_t); a stand-in under jax.jit (see _schedule_scalars)
    if is_array(beta1):
        # torch's tensor beta1: the bias correction is computed in its dtype.
        bias_correction = 1 - pow(beta1, step)
        clr = lr / bias_correction if is_array(lr) else reciprocal_scale(lr, bias_correction)
    else:
        bias_correction = 1 - beta1**step
        # A 0-d array lr stays an array here, as in torch: clr is then in its dtype.
        clr = lr / bias_correction
    param = addcdiv_(param, exp_avg, exp_inf, value=-scalar(clr))

    if complex_param:
        param, exp_avg, exp_inf = back_to_complex(xp, originals, (param, exp_avg, exp_inf))
    state["exp_avg"] = exp_avg
    state["exp_inf"] = exp_inf
    return param


class Adamax(Optimizer):
    r"""Adamax (``torch.optim.Adamax``), the infinity-norm variant of Adam.

    .. math::
        \begin{aligned}
        &\textbf{input}: \gamma \text{ (lr)}, \beta_1, \beta_2 \text{ (betas)}, \theta_0
            \text{ (params)}, f(\theta) \text{ (objective)}, \epsilon,
            \lambda \text{ (weight decay)}, \textit{maximize} \\
        &\textbf{initialize}: m_0 \leftarrow 0 \text{ (first moment)},
            u_0 \leftarrow 0 \text{ (infinity norm)} \\
        &\textbf{for } t = 1, 2, \ldots \textbf{ do} \\
        &\quad g_t \leftarrow \nabla_\theta f_t(\theta_{t-1}),\ \text{negated if } \textit{maximize} \\
        &\quad \textbf{if } \lambda \ne 0:\ g_t \leftarrow g_t + \lambda\theta_{t-1} \\
        &\quad m_t \leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
        &\quad u_t \leftarrow \max(\beta_2 u_{t-1},\ |g_t| + \epsilon) \\
        &\quad \theta_t \leftarrow \theta_{t-1} - \frac{\gamma}{1 - \beta_1^t} \cdot \frac{m_t}{u_t}
        \end{aligned}

    Args:
        params (iterable): Parameters, ``(name, Parameter)`` pairs, or parameter-group dicts.
        lr (float or 0-d array): learning rate (default: 2e-3). A 0-d array is kept as an
            array, as torch keeps a tensor lr: ``lr / (1 - beta1**t)`` is then computed in
            the array's dtype.
        betas (tuple[float, float]): coefficients of the running average of the gradient
            and of the decay of the infinity norm (default: (0.9, 0.999)).
        eps (float): term added to :math:`|g|` inside the maximum (default: 1e-8).
        weight_decay (float): L2 penalty added to the gradient (default: 0).
        foreach (bool, optional): accepted for signature parity (see below).
        maximize (bool): maximize the objective instead of minimizing (default: False).
        differentiable (bool): accepted for signature parity (see below).
        capturable (bool): accepted for signature parity (see below).

    State per parameter: ``step`` (0-d float32 array), ``exp_avg`` and ``exp_inf`` (each
    the parameter's shape and dtype).

    Torch quirks reproduced (each explained on the manual's page, "Reproducing torch
    exactly"):

    * ``eps`` inside the maximum, :math:`\max(\beta_2 u_{t-1}, |g_t| + \epsilon)`;
    * torch's roundings: ``lerp``; ``mul`` then a maximum; ``addcdiv``;
    * complex parameters: decay in complex arithmetic, the rest on (real, imag) pairs;
    * float32 ``step``: stops counting at :math:`2^{24}`;
    * 0-d array betas accepted unchecked, an array ``beta1`` computed in its dtype.
    """

    _sparse_grad_error = (RuntimeError, "Adamax does not support sparse gradients")
    _elementwise = True  # the rule may run piece by piece (refoptim._fastpath)
    _unpacked_options = ("betas",)  # torch: beta1, beta2 = group["betas"], every group

    def __init__(
        self,
        params: Any,
        lr: Any = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
    ) -> None:
        check_lr(lr)
        check_eps(eps)
        check_betas(betas)
        check_weight_decay(weight_decay)

        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "capturable": capturable,
        }
        super().__init__(params, defaults)

    _setstate_options = ("foreach", "maximize", "differentiable", "capturable")
    _setstate_scalars = ("step",)

    def _init_state(self, p: Any, group: dict[str, Any]) -> dict[str, Any]:
        return adamax_init(p.data)

    def _update(self, param: Any, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> Any:
        beta1, beta2 = group["betas"]
        return adamax_step(
            param,
            grad,
            state,
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            maximize=group["maximize"],
        )


Adamax.__doc__ = append_doc(Adamax.__doc__, _FLAGS_DOC)
