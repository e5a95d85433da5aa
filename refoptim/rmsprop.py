r"""RMSprop (torch 2.13's ``torch.optim.RMSprop``), centered or not, with momentum."""

from __future__ import annotations

from typing import Any

from ._backend import array_namespace, back_to_complex, device_of, is_complex, real_views, scalar
from ._checks import check_eps, check_lr, check_nonnegative, check_weight_decay
from ._docs import append_doc, flags_doc
from ._primitives import add, add_, addcdiv_, addcmul, addcmul_, lerp_, mul_
from .optimizer import Optimizer

__all__ = ["RMSprop", "rmsprop_init", "rmsprop_step"]

_FLAGS_DOC = flags_doc(
    "RMSprop",
    ("foreach", "capturable", "differentiable"),
    note=(
        "In torch's single-tensor RMSprop ``capturable`` changes no arithmetic, only where ``step`` lives "
        "(and it needs an accelerator)."
    ),
)


def rmsprop_init(param: Any, momentum: float = 0, centered: bool = False) -> dict[str, Any]:
    """The state RMSprop starts a parameter with: ``step`` (0-d float32 zero),
    ``square_avg`` (zeros like the parameter), ``momentum_buffer`` when ``momentum > 0``
    and ``grad_avg`` when ``centered``, in torch's key order."""
    xp = array_namespace(param)
    state = {
        "step": xp.zeros((), dtype=xp.float32, device=device_of(param)),
        "square_avg": xp.zeros_like(param),
    }
    if momentum > 0:
        state["momentum_buffer"] = xp.zeros_like(param)
    if centered:
        state["grad_avg"] = xp.zeros_like(param)
    return state


def rmsprop_step(
    param: Any,
    grad: Any,
    state: dict[str, Any],
    *,
    lr: Any = 1e-2,
    alpha: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 0,
    momentum: float = 0,
    centered: bool = False,
    maximize: bool = False,
) -> Any:
    r"""One RMSprop update of one parameter, in the order of torch's ``_single_tensor_rmsprop``.

    ``state`` holds ``step``, ``square_avg`` and, as :func:`rmsprop_init` makes them,
    ``momentum_buffer`` (``momentum > 0``) and ``grad_avg`` (``centered``); the new values
    are stored back into it. Returns the new parameter. Works on immutable arrays: keep
    what it returns.

    .. math::
        t &\leftarrow t + 1 \quad\text{(counted, never used)} \\
        g &\leftarrow g + \lambda\theta \quad (\lambda \ne 0) \\
        v &\leftarrow \alpha v + (1 - \alpha) g^2 \\
        \bar g &\leftarrow \mathrm{lerp}(\bar g, g, 1 - \alpha),\quad
            d \leftarrow \sqrt{v - \bar g^2} + \epsilon \text{ (centered), else }
            d \leftarrow \sqrt{v} + \epsilon \\
        b &\leftarrow \mu b + g / d,\quad \theta \leftarrow \theta - \gamma b
            \quad (\mu > 0) \\
        \theta &\leftarrow \theta - \gamma\, g / d \quad (\mu = 0)
    """
    xp = array_namespace(param)
    if maximize:
        grad = -grad
    square_avg = state["square_avg"]
    step_t = state["step"]
    step_t += 1
    state["step"] = step_t

    if weight_decay != 0:
        grad = add(grad, param, alpha=weight_decay)

    grad_avg = state["grad_avg"] if centered else None
    buf = state["momentum_buffer"] if momentum > 0 else None
    complex_param = is_complex(xp, param)
    if complex_param:
        # torch views complex tensors as (real, imag) pairs from here on (after weight decay).
        originals = (param, square_avg, grad_avg, buf)
        param, square_avg, grad_avg, buf = real_views(xp, *originals)
        (grad,) = real_views(xp, grad)

    square_avg = mul_(square_avg, alpha)
    square_avg = addcmul_(square_avg, grad, grad, value=1 - alpha)

    if centered:
        grad_avg = lerp_(grad_avg, grad, 1 - alpha)
        avg = xp.sqrt(addcmul(square_avg, grad_avg, grad_avg, value=-1))
    else:
        avg = xp.sqrt(square_avg)
    avg = avg + eps

    if momentum > 0:
        buf = mul_(buf, momentum)
        buf = addcdiv_(buf, grad, avg)
        param = add_(param, buf, alpha=-scalar(lr))
    else:
        param = addcdiv_(param, grad, avg, value=-scalar(lr))

    if complex_param:
        param, square_avg, grad_avg, buf = back_to_complex(xp, originals, (param, square_avg, grad_avg, buf))
    state["square_avg"] = square_avg
    if centered:
        state["grad_avg"] = grad_avg
    if momentum > 0:
        state["momentum_buffer"] = buf
    return param


class RMSprop(Optimizer):
    r"""RMSprop (``torch.optim.RMSprop``): steps scaled by a running RMS of the gradient.

    .. math::
        \begin{aligned}
        &\textbf{input}: \gamma \text{ (lr)}, \alpha \text{ (smoothing)}, \theta_0,
            f(\theta), \lambda \text{ (weight decay)}, \mu \text{ (momentum)},
            \epsilon, \textit{centered}, \textit{maximize} \\
        &\textbf{initialize}: v_0 \leftarrow 0, b_0 \leftarrow 0, \bar g_0 \leftarrow 0 \\
        &\textbf{for } t = 1, 2, \ldots \textbf{ do} \\
        &\quad g_t \leftarrow \nabla_\theta f_t(\theta_{t-1}),\ \text{negated if } \textit{maximize} \\
        &\quad \textbf{if } \lambda \ne 0:\ g_t \leftarrow g_t + \lambda\theta_{t-1} \\
        &\quad v_t \leftarrow \alpha v_{t-1} + (1 - \alpha) g_t^2 \\
        &\quad \textbf{if } \textit{centered}:\
            \bar g_t \leftarrow \alpha \bar g_{t-1} + (1 - \alpha) g_t,\
            d_t \leftarrow \sqrt{v_t - \bar g_t^2} + \epsilon \\
        &\quad \textbf{else}:\ d_t \leftarrow \sqrt{v_t} + \epsilon \\
        &\quad \textbf{if } \mu > 0:\ b_t \leftarrow \mu b_{t-1} + g_t / d_t,\
            \theta_t \leftarrow \theta_{t-1} - \gamma b_t \\
        &\quad \textbf{else}:\ \theta_t \leftarrow \theta_{t-1} - \gamma\, g_t / d_t
        \end{aligned}

    Args:
        params (iterable): Parameters, ``(name, Parameter)`` pairs, or parameter-group dicts.
        lr (float or 0-d array): learning rate (default: 1e-2). A 0-d array is read as a
            Python float (torch's ``alpha=``/``value=`` take it with ``.item()``).
        alpha (float): smoothing constant (default: 0.99).
        eps (float): term added to the denominator (default: 1e-8).
        weight_decay (float): L2 penalty added to the gradient (default: 0).
        momentum (float): momentum factor (default: 0).
        centered (bool): normalize by an estimate of the gradient's variance (default: False).
        capturable (bool): accepted for signature parity (see below).
        foreach (bool, optional): accepted for signature parity (see below).
        maximize (bool): maximize the objective instead of minimizing (default: False).
        differentiable (bool): accepted for signature parity (see below).

    State per parameter: ``step`` (0-d float32 array), ``square_avg``, and
    ``momentum_buffer`` (when ``momentum > 0`` at the parameter's first step) and
    ``grad_avg`` (when ``centered``), each the parameter's shape and dtype.

    Torch quirks reproduced (each explained on the manual's page, "Reproducing torch
    exactly"):

    * float32 ``step``: counted (stuck at :math:`2^{24}`) but never used;
    * ``alpha`` only checked to be non-negative;
    * ``eps`` outside the square root; the centered variance one fused ``addcmul``;
    * torch's roundings: ``mul`` + ``addcdiv`` into the buffer, fused ``add(alpha=-lr)``;
    * the state's keys fixed at a parameter's first step;
    * complex parameters: decay in complex arithmetic, the rest on (real, imag) pairs;
    * not reproduced: torch's CPU ``sqrt`` (MKL), off by one unit on some elements.
    """

    _sparse_grad_error = (RuntimeError, "RMSprop does not support sparse gradients")
    _elementwise = True  # the rule may run piece by piece (refoptim._fastpath)

    def _required_state(self, group: dict[str, Any]) -> tuple[str, ...]:
        # switched on after a step: torch's _init_group reads these entries
        return (("momentum_buffer",) if group["momentum"] > 0 else ()) + (("grad_avg",) if group["centered"] else ())

    def __init__(
        self,
        params: Any,
        lr: Any = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        check_lr(lr)
        check_eps(eps)
        check_nonnegative(momentum, "Invalid momentum value: {}")
        check_weight_decay(weight_decay)
        check_nonnegative(alpha, "Invalid alpha value: {}")

        defaults = {
            "lr": lr,
            "momentum": momentum,
            "alpha": alpha,
            "eps": eps,
            "centered": centered,
            "weight_decay": weight_decay,
            "capturable": capturable,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
        }
        super().__init__(params, defaults)

    _setstate_options = ("momentum", "centered", "foreach", "maximize", "differentiable", "capturable")
    _setstate_scalars = ("step",)

    def _init_state(self, p: Any, group: dict[str, Any]) -> dict[str, Any]:
        return rmsprop_init(p.data, group["momentum"], group["centered"])

    def _update(self, param: Any, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> Any:
        return rmsprop_step(
            param,
            grad,
            state,
            lr=group["lr"],
            alpha=group["alpha"],
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            momentum=group["momentum"],
            centered=group["centered"],
            maximize=group["maximize"],
        )


RMSprop.__doc__ = append_doc(RMSprop.__doc__, _FLAGS_DOC)
