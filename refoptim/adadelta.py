r"""Adadelta (torch 2.13's ``torch.optim.Adadelta``): steps scaled by the ratio of two
running root-mean-squares, of past updates and of gradients."""

from __future__ import annotations

from typing import Any

from ._backend import (
    array_namespace,
    back_to_complex,
    device_of,
    is_complex,
    real_views,
    scalar,
    view_as_complex,
)
from ._checks import check_eps, check_lr, check_weight_decay
from ._docs import append_doc, flags_doc
from ._primitives import add, add_, addcmul_, mul_
from .optimizer import Optimizer

__all__ = ["Adadelta", "adadelta_init", "adadelta_step"]

_FLAGS_DOC = flags_doc(
    "Adadelta",
    ("foreach", "capturable", "differentiable"),
    note="torch's ``differentiable`` path clones one intermediate for autograd and computes the same numbers.",
)


def adadelta_init(param: Any) -> dict[str, Any]:
    """The state Adadelta starts a parameter with: ``step`` (0-d float32 zero),
    ``square_avg`` and ``acc_delta`` (zeros like the parameter)."""
    xp = array_namespace(param)
    return {
        "step": xp.zeros((), dtype=xp.float32, device=device_of(param)),
        "square_avg": xp.zeros_like(param),
        "acc_delta": xp.zeros_like(param),
    }


def adadelta_step(
    param: Any,
    grad: Any,
    state: dict[str, Any],
    *,
    lr: Any = 1.0,
    rho: float = 0.9,
    eps: float = 1e-6,
    weight_decay: float = 0,
    maximize: bool = False,
) -> Any:
    r"""One Adadelta update of one parameter, in the order of torch's ``_single_tensor_adadelta``.

    ``state`` holds ``step``, ``square_avg`` and ``acc_delta`` as :func:`adadelta_init`
    makes them; the new values are stored back into it. Returns the new parameter. Works
    on immutable arrays: keep what it returns.

    .. math::
        t &\leftarrow t + 1 \\
        g &\leftarrow -g \text{ if maximize} \\
        g &\leftarrow g + \lambda\theta \quad (\lambda \ne 0) \\
        v &\leftarrow \rho v + (1 - \rho) g^2 \\
        \Delta &\leftarrow \frac{\sqrt{u + \epsilon}}{\sqrt{v + \epsilon}}\, g \\
        u &\leftarrow \rho u + (1 - \rho) \Delta^2 \\
        \theta &\leftarrow \theta - \gamma \Delta
    """
    xp = array_namespace(param)
    step_t = state["step"]
    step_t += 1
    state["step"] = step_t
    if maximize:
        grad = -grad

    if weight_decay != 0:
        grad = add(grad, param, alpha=weight_decay)

    square_avg = state["square_avg"]
    acc_delta = state["acc_delta"]
    complex_param = is_complex(xp, param)
    if complex_param:
        # torch views the state and the gradient as (real, imag) pairs; not the parameter.
        originals = (square_avg, acc_delta)
        square_avg, acc_delta = real_views(xp, *originals)
        (grad,) = real_views(xp, grad)

    square_avg = mul_(square_avg, rho)
    square_avg = addcmul_(square_avg, grad, grad, value=1 - rho)
    std = xp.sqrt(square_avg + eps)
    delta = xp.sqrt(acc_delta + eps)
    delta = delta / std
    delta = delta * grad
    acc_delta = mul_(acc_delta, rho)
    acc_delta = addcmul_(acc_delta, delta, delta, value=1 - rho)

    if complex_param:
        delta = view_as_complex(xp, delta)
        square_avg, acc_delta = back_to_complex(xp, originals, (square_avg, acc_delta))
    state["square_avg"] = square_avg
    state["acc_delta"] = acc_delta
    return add_(param, delta, alpha=-scalar(lr))


class Adadelta(Optimizer):
    r"""Adadelta (``torch.optim.Adadelta``).

    .. math::
        \begin{aligned}
        &\textbf{input}: \gamma \text{ (lr)}, \theta_0 \text{ (params)}, f(\theta)
            \text{ (objective)}, \rho \text{ (decay)}, \lambda \text{ (weight decay)},
            \epsilon, \textit{maximize} \\
        &\textbf{initialize}: v_0 \leftarrow 0 \text{ (square avg)},
            u_0 \leftarrow 0 \text{ (accumulated updates)} \\
        &\textbf{for } t = 1, 2, \ldots \textbf{ do} \\
        &\quad g_t \leftarrow \nabla_\theta f_t(\theta_{t-1}),\ \text{negated if } \textit{maximize} \\
        &\quad \textbf{if } \lambda \ne 0:\ g_t \leftarrow g_t + \lambda\theta_{t-1} \\
        &\quad v_t \leftarrow \rho v_{t-1} + (1 - \rho) g_t^2 \\
        &\quad \Delta_t \leftarrow \frac{\sqrt{u_{t-1} + \epsilon}}{\sqrt{v_t + \epsilon}}\, g_t \\
        &\quad u_t \leftarrow \rho u_{t-1} + (1 - \rho) \Delta_t^2 \\
        &\quad \theta_t \leftarrow \theta_{t-1} - \gamma \Delta_t
        \end{aligned}

    Args:
        params (iterable): Parameters, ``(name, Parameter)`` pairs, or parameter-group dicts.
        lr (float or 0-d array): coefficient that scales the update (default: 1.0). A 0-d
            array is read at its own dtype's precision (torch's ``alpha=-lr``).
        rho (float): coefficient of the running averages (default: 0.9).
        eps (float): term added inside both square roots (default: 1e-6).
        weight_decay (float): L2 penalty added to the gradient (default: 0).
        foreach (bool, optional): accepted for signature parity (see below).
        capturable (bool): accepted for signature parity (see below).
        maximize (bool): maximize the objective instead of minimizing (default: False).
        differentiable (bool): accepted for signature parity (see below).

    State per parameter: ``step`` (0-d float32 array), ``square_avg`` and ``acc_delta``
    (each the parameter's shape and dtype).

    Torch quirks reproduced (each explained on the manual's page, "Reproducing torch
    exactly"):

    * ``eps`` inside both square roots; ``rho = 1`` accepted;
    * torch's roundings: a division, then a multiplication, then a fused ``add_(alpha=-lr)``;
    * complex parameters: decay in complex arithmetic, the averages on (real, imag) pairs;
    * float32 ``step``: counted (stuck at :math:`2^{24}`) but never used;
    * not reproduced: torch's CPU ``sqrt`` (MKL), off by one unit on some elements.
    """

    _sparse_grad_error = (RuntimeError, "Adadelta does not support sparse gradients")
    _elementwise = True  # the rule may run piece by piece (refoptim._fastpath)

    def __init__(
        self,
        params: Any,
        lr: Any = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0,
        foreach: bool | None = None,
        *,
        capturable: bool = False,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        check_lr(lr)
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"Invalid rho value: {rho}")
        check_eps(eps)
        check_weight_decay(weight_decay)

        defaults = {
            "lr": lr,
            "rho": rho,
            "eps": eps,
            "weight_decay": weight_decay,
            "maximize": maximize,
            "capturable": capturable,
            "foreach": foreach,
            "differentiable": differentiable,
        }
        super().__init__(params, defaults)

    _setstate_options = ("foreach", "maximize", "differentiable", "capturable")
    _setstate_scalars = ("step",)

    def _init_state(self, p: Any, group: dict[str, Any]) -> dict[str, Any]:
        return adadelta_init(p.data)

    def _update(self, param: Any, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> Any:
        return adadelta_step(
            param,
            grad,
            state,
            lr=group["lr"],
            rho=group["rho"],
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            maximize=group["maximize"],
        )


Adadelta.__doc__ = append_doc(Adadelta.__doc__, _FLAGS_DOC)
