r"""RAdam, rectified Adam (torch 2.13's ``torch.optim.RAdam``), with decoupled weight decay."""

from __future__ import annotations

from typing import Any

from ._backend import _is_lazy, array_namespace, back_to_complex, device_of, is_complex, real_views, scalar
from ._checks import check_betas, check_eps, check_lr, check_weight_decay
from ._docs import append_doc, flags_doc
from ._primitives import add, add_, addcmul_, div, lerp_, mul_, reciprocal_scale
from ._schedule_scalars import if_else, step_count
from .optimizer import Optimizer

__all__ = ["RAdam", "radam_init", "radam_step"]

_FLAGS_DOC = flags_doc(
    "RAdam",
    ("foreach", "capturable", "differentiable"),
    note=(
        "torch's ``capturable`` path multiplies in another order (``rect * adaptive_lr`` first) and rounds "
        "differently; refoptim does not emulate it."
    ),
)


def radam_init(param: Any) -> dict[str, Any]:
    """The state RAdam starts a parameter with: ``step`` (0-d float32 zero), ``exp_avg``
    and ``exp_avg_sq`` (zeros like the parameter)."""
    xp = array_namespace(param)
    return {
        "step": xp.zeros((), dtype=xp.float32, device=device_of(param)),
        "exp_avg": xp.zeros_like(param),
        "exp_avg_sq": xp.zeros_like(param),
    }


def radam_step(
    param: Any,
    grad: Any,
    state: dict[str, Any],
    *,
    lr: Any = 1e-3,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0,
    decoupled_weight_decay: bool = False,
    maximize: bool = False,
) -> Any:
    r"""One RAdam update of one parameter, in the order of torch's ``_single_tensor_radam``.

    ``state`` holds ``step``, ``exp_avg`` and ``exp_avg_sq`` as :func:`radam_init` makes
    them; the new values are stored back into it. Returns the new parameter. Works on
    immutable arrays: keep what it returns.

    .. math::
        t &\leftarrow t + 1 \\
        \theta &\leftarrow \theta (1 - \gamma\lambda) \text{ (decoupled) or }
            g \leftarrow g + \lambda\theta \\
        m &\leftarrow \mathrm{lerp}(m, g, 1 - \beta_1),\quad
        v \leftarrow \beta_2 v + (1 - \beta_2) g^2,\quad
        \hat m \leftarrow m / (1 - \beta_1^t) \\
        \rho_\infty &= \frac{2}{1 - \beta_2} - 1,\quad
        \rho_t = \rho_\infty - \frac{2 t \beta_2^t}{1 - \beta_2^t} \\
        \theta &\leftarrow \theta - \hat m\,\gamma\,
            \frac{\sqrt{1 - \beta_2^t}}{\sqrt{v} + \epsilon}\, r_t
            \text{ if } \rho_t > 5, \text{ else } \theta - \hat m\,\gamma, \\
        r_t &= \sqrt{\frac{(\rho_t - 4)(\rho_t - 2)\rho_\infty}
            {(\rho_\infty - 4)(\rho_\infty - 2)\rho_t}}
    """
    xp = array_namespace(param)
    if maximize:
        grad = -grad
    exp_avg = state["exp_avg"]
    exp_avg_sq = state["exp_avg_sq"]

    complex_param = is_complex(xp, param)
    if complex_param:
        # torch views complex tensors as (real, imag) pairs first, weight decay included.
        originals = (param, exp_avg, exp_avg_sq)
        param, exp_avg, exp_avg_sq = real_views(xp, *originals)
        (grad,) = real_views(xp, grad)

    step_t = state["step"]
    step_t += 1
    state["step"] = step_t
    step = step_count(step_t)  # float(step_t); a stand-in under jax.jit (see _schedule_scalars)

    if weight_decay != 0:
        if decoupled_weight_decay:
            param = mul_(param, scalar(1 - lr * weight_decay))
        else:
            grad = add(grad, param, alpha=weight_decay)

    exp_avg = lerp_(exp_avg, grad, 1 - beta1)
    exp_avg_sq = mul_(exp_avg_sq, beta2)
    exp_avg_sq = addcmul_(exp_avg_sq, grad, grad, value=1 - beta2)

    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step

    bias_corrected_exp_avg = div(exp_avg, bias_correction1)

    # the maximum length of the approximated SMA, and its length at step t
    rho_inf = 2 / (1 - beta2) - 1
    rho_t = rho_inf - 2 * step * (beta2**step) / bias_correction2

    lr_value = scalar(lr)

    def rectified() -> Any:
        adaptive_lr = reciprocal_scale(bias_correction2**0.5, xp.sqrt(exp_avg_sq) + eps)
        rect = ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
        return bias_corrected_exp_avg * lr_value * adaptive_lr * rect

    def unrectified() -> Any:
        return bias_corrected_exp_avg * lr_value

    # torch's `if rho_t > 5:` (under jax.jit both branches run and xp.where picks one)
    param = add_(param, if_else(rho_t > 5.0, rectified, unrectified), alpha=-1.0)

    if complex_param:
        param, exp_avg, exp_avg_sq = back_to_complex(xp, originals, (param, exp_avg, exp_avg_sq))
    state["exp_avg"] = exp_avg
    state["exp_avg_sq"] = exp_avg_sq
    return param


class RAdam(Optimizer):
    r"""RAdam (``torch.optim.RAdam``): Adam whose adaptive step is switched on, and
    rectified, once the variance estimate is trustworthy.

    .. math::
        \begin{aligned}
        &\textbf{input}: \gamma \text{ (lr)}, \beta_1, \beta_2 \text{ (betas)}, \theta_0,
            f(\theta), \lambda \text{ (weight decay)}, \epsilon, \textit{decoupled},
            \textit{maximize} \\
        &\textbf{initialize}: m_0 \leftarrow 0, v_0 \leftarrow 0,
            \rho_\infty \leftarrow 2/(1 - \beta_2) - 1 \\
        &\textbf{for } t = 1, 2, \ldots \textbf{ do} \\
        &\quad g_t \leftarrow \nabla_\theta f_t(\theta_{t-1}),\ \text{negated if } \textit{maximize} \\
        &\quad \textbf{if } \lambda \ne 0: \textbf{ if } \textit{decoupled}:
            \theta_{t-1} \leftarrow \theta_{t-1}(1 - \gamma\lambda)
            \textbf{ else } g_t \leftarrow g_t + \lambda\theta_{t-1} \\
        &\quad m_t \leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t,\quad
               v_t \leftarrow \beta_2 v_{t-1} + (1 - \beta_2) g_t^2,\quad
               \hat m_t \leftarrow m_t / (1 - \beta_1^t) \\
        &\quad \rho_t \leftarrow \rho_\infty - 2 t \beta_2^t / (1 - \beta_2^t) \\
        &\quad \textbf{if } \rho_t > 5: \\
        &\qquad l_t \leftarrow \sqrt{1 - \beta_2^t} / (\sqrt{v_t} + \epsilon),\quad
                r_t \leftarrow \sqrt{\frac{(\rho_t - 4)(\rho_t - 2)\rho_\infty}
                {(\rho_\infty - 4)(\rho_\infty - 2)\rho_t}} \\
        &\qquad \theta_t \leftarrow \theta_{t-1} - \hat m_t\, \gamma\, l_t\, r_t \\
        &\quad \textbf{else}:\ \theta_t \leftarrow \theta_{t-1} - \hat m_t\, \gamma
        \end{aligned}

    Args:
        params (iterable): Parameters, ``(name, Parameter)`` pairs, or parameter-group dicts.
        lr (float or 0-d array): learning rate (default: 1e-3). A 0-d array multiplies
            at its own value (its dtype's precision); ``1 - lr * weight_decay`` is then
            computed in the array's dtype.
        betas (tuple[float, float]): coefficients of the running averages of the gradient
            and of its square (default: (0.9, 0.999)).
        eps (float): term added to the denominator (default: 1e-8).
        weight_decay (float): weight decay (default: 0).
        decoupled_weight_decay (bool): decay the parameter (as AdamW) instead of adding
            :math:`\lambda\theta` to the gradient (default: False).
        foreach (bool, optional): accepted for signature parity (see below).
        maximize (bool): maximize the objective instead of minimizing (default: False).
        capturable (bool): accepted for signature parity (see below).
        differentiable (bool): accepted for signature parity (see below).

    State per parameter: ``step`` (0-d float32 array), ``exp_avg`` and ``exp_avg_sq``
    (the parameter's shape and dtype).

    Torch quirks reproduced (each explained on the manual's page, "Reproducing torch
    exactly"):

    * the switch at :math:`\rho_t > 5`, where the paper's Algorithm 2 has :math:`\rho_t > 4`;
    * ``eps`` in :math:`l_t`, which the paper's :math:`l_t = \sqrt{(1-\beta_2^t)/v_t}` lacks;
    * torch's roundings: ``((m_hat * lr) * adaptive_lr) * rect``, a reciprocal then a multiply;
    * float32 ``step``: stops counting at :math:`2^{24}`;
    * complex parameters: (real, imag) pairs *before* weight decay;
    * 0-d array betas read as Python floats (torch's float32 tensors not emulated);
    * not reproduced: torch's CPU ``sqrt`` (MKL), off by one unit on some elements.
    """

    _sparse_grad_error = (RuntimeError, "RAdam does not support sparse gradients")
    _elementwise = True  # the rule may run piece by piece (refoptim._fastpath)
    _unpacked_options = ("betas",)  # torch: beta1, beta2 = group["betas"], every group

    def __init__(
        self,
        params: Any,
        lr: Any = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        decoupled_weight_decay: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
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
            "maximize": maximize,
            "foreach": foreach,
            "capturable": capturable,
            "decoupled_weight_decay": decoupled_weight_decay,
            "differentiable": differentiable,
        }
        super().__init__(params, defaults)

    _setstate_options = ("foreach", "maximize", "differentiable", "decoupled_weight_decay", "capturable")
    _setstate_scalars = ("step",)

    def _options_unused(self, group: dict[str, Any]) -> tuple[str, ...]:
        # torch reads eps only in the rectified branch, taken where rho_t > 5
        try:
            beta2 = float(group["betas"][1])
            rho_inf = 2 / (1 - beta2) - 1
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state.get(p)
                step = state.get("step") if state else None
                if step is not None and _is_lazy(step):
                    return ()  # reading a lazy step would compute it: check eps
                t = (0.0 if step is None else float(step)) + 1
                if rho_inf - 2 * t * beta2**t / (1 - beta2**t) > 5.0:
                    return ()
        except Exception:  # noqa: BLE001 - bad betas (refused as an option), a traced step: check eps
            return ()
        return ("eps",)

    def _init_state(self, p: Any, group: dict[str, Any]) -> dict[str, Any]:
        return radam_init(p.data)

    def _update(self, param: Any, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> Any:
        beta1, beta2 = group["betas"]
        return radam_step(
            param,
            grad,
            state,
            lr=group["lr"],
            beta1=scalar(beta1),
            beta2=scalar(beta2),
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            decoupled_weight_decay=group["decoupled_weight_decay"],
            maximize=group["maximize"],
        )


RAdam.__doc__ = append_doc(RAdam.__doc__, _FLAGS_DOC)
