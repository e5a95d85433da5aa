r"""NAdam (torch 2.13's ``torch.optim.NAdam``): Adam with Nesterov momentum, and NAdamW."""

from __future__ import annotations

from typing import Any

from ._backend import array_namespace, back_to_complex, device_of, is_complex, real_views, scalar
from ._checks import check_betas, check_eps, check_lr, check_nonnegative, check_weight_decay
from ._docs import append_doc, flags_doc
from ._primitives import add, addcdiv_, addcmul_, div, lerp_, mul_
from ._schedule_scalars import read_float, step_count
from .optimizer import Optimizer

__all__ = ["NAdam", "nadam_init", "nadam_step"]

_FLAGS_DOC = flags_doc(
    "NAdam",
    ("foreach", "capturable", "differentiable"),
    note=(
        "torch's ``capturable`` and ``differentiable`` paths split the update into two ``addcdiv`` with "
        "tensor coefficients and round differently; refoptim does not emulate them."
    ),
    scalars=("step", "mu_product"),
)


def nadam_init(param: Any) -> dict[str, Any]:
    """The state NAdam starts a parameter with, in torch's key order: ``step`` (0-d
    float32 zero), ``mu_product`` (0-d float32 one), ``exp_avg`` and ``exp_avg_sq``
    (zeros like the parameter)."""
    xp = array_namespace(param)
    return {
        "step": xp.zeros((), dtype=xp.float32, device=device_of(param)),
        "mu_product": xp.full((), 1.0, dtype=xp.float32, device=device_of(param)),
        "exp_avg": xp.zeros_like(param),
        "exp_avg_sq": xp.zeros_like(param),
    }


def nadam_step(
    param: Any,
    grad: Any,
    state: dict[str, Any],
    *,
    lr: Any = 2e-3,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0,
    momentum_decay: float = 4e-3,
    decoupled_weight_decay: bool = False,
    maximize: bool = False,
) -> Any:
    r"""One NAdam update of one parameter, in the order of torch's ``_single_tensor_nadam``.

    ``state`` holds ``step``, ``mu_product``, ``exp_avg`` and ``exp_avg_sq`` as
    :func:`nadam_init` makes them; the new values are stored back into it. Returns the
    new parameter. Works on immutable arrays: keep what it returns.

    .. math::
        t &\leftarrow t + 1 \\
        \theta &\leftarrow \theta (1 - \gamma\lambda) \text{ (decoupled) or }
            g \leftarrow g + \lambda\theta \\
        \mu_t &\leftarrow \beta_1 (1 - \tfrac12\, 0.96^{t\psi}),\quad
        \mu_{t+1} \leftarrow \beta_1 (1 - \tfrac12\, 0.96^{(t+1)\psi}),\quad
        \Pi \leftarrow \Pi\,\mu_t \text{ (float32)} \\
        m &\leftarrow \mathrm{lerp}(m, g, 1 - \beta_1),\quad
        v \leftarrow \beta_2 v + (1 - \beta_2) g^2 \\
        d &\leftarrow \sqrt{v / (1 - \beta_2^t)} + \epsilon \\
        \theta &\leftarrow \theta - \frac{\gamma (1 - \mu_t)}{1 - \Pi}\, \frac{g}{d}
            - \frac{\gamma\, \mu_{t+1}}{1 - \Pi\, \mu_{t+1}}\, \frac{m}{d}
    """
    xp = array_namespace(param)
    if maximize:
        grad = -grad
    exp_avg = state["exp_avg"]
    exp_avg_sq = state["exp_avg_sq"]
    mu_product = state["mu_product"]

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

    bias_correction2 = 1 - beta2**step

    if weight_decay != 0:
        if decoupled_weight_decay:
            param = mul_(param, scalar(1 - lr * weight_decay))
        else:
            grad = add(grad, param, alpha=weight_decay)

    # the momentum cache mu_t and mu_{t+1}; the product of the mu_t lives in float32
    mu = beta1 * (1.0 - 0.5 * (0.96 ** (step * momentum_decay)))
    mu_next = beta1 * (1.0 - 0.5 * (0.96 ** ((step + 1) * momentum_decay)))
    mu_product *= mu
    state["mu_product"] = mu_product

    exp_avg = lerp_(exp_avg, grad, 1 - beta1)
    exp_avg_sq = mul_(exp_avg_sq, beta2)
    exp_avg_sq = addcmul_(exp_avg_sq, grad, grad, value=1 - beta2)
    denom = xp.sqrt(div(exp_avg_sq, bias_correction2))

    mu_product_now = read_float(mu_product)
    mu_product_next = mu_product_now * mu_next
    denom = denom + eps
    param = addcdiv_(param, grad, denom, value=scalar(-lr * (1.0 - mu) / (1.0 - mu_product_now)))
    param = addcdiv_(param, exp_avg, denom, value=scalar((-lr * mu_next) / (1.0 - mu_product_next)))

    if complex_param:
        param, exp_avg, exp_avg_sq = back_to_complex(xp, originals, (param, exp_avg, exp_avg_sq))
    state["exp_avg"] = exp_avg
    state["exp_avg_sq"] = exp_avg_sq
    return param


class NAdam(Optimizer):
    r"""NAdam (``torch.optim.NAdam``): Adam with Nesterov momentum; NAdamW with
    ``decoupled_weight_decay=True``.

    .. math::
        \begin{aligned}
        &\textbf{input}: \gamma \text{ (lr)}, \beta_1, \beta_2 \text{ (betas)}, \theta_0,
            f(\theta), \lambda \text{ (weight decay)}, \psi \text{ (momentum decay)},
            \epsilon, \textit{decoupled}, \textit{maximize} \\
        &\textbf{initialize}: m_0 \leftarrow 0, v_0 \leftarrow 0, \Pi_0 \leftarrow 1 \\
        &\textbf{for } t = 1, 2, \ldots \textbf{ do} \\
        &\quad g_t \leftarrow \nabla_\theta f_t(\theta_{t-1}),\ \text{negated if } \textit{maximize} \\
        &\quad \textbf{if } \lambda \ne 0: \textbf{ if } \textit{decoupled}:
            \theta_{t-1} \leftarrow \theta_{t-1}(1 - \gamma\lambda)
            \textbf{ else } g_t \leftarrow g_t + \lambda\theta_{t-1} \\
        &\quad \mu_t \leftarrow \beta_1 \big(1 - \tfrac{1}{2}\, 0.96^{t\psi}\big),\quad
               \mu_{t+1} \leftarrow \beta_1 \big(1 - \tfrac{1}{2}\, 0.96^{(t+1)\psi}\big),\quad
               \Pi_t \leftarrow \Pi_{t-1}\, \mu_t \\
        &\quad m_t \leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t,\quad
               v_t \leftarrow \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
        &\quad d_t \leftarrow \sqrt{v_t / (1 - \beta_2^t)} + \epsilon \\
        &\quad \theta_t \leftarrow \theta_{t-1}
            - \gamma\,\frac{1 - \mu_t}{1 - \Pi_t}\,\frac{g_t}{d_t}
            - \gamma\,\frac{\mu_{t+1}}{1 - \Pi_t\,\mu_{t+1}}\,\frac{m_t}{d_t}
        \end{aligned}

    Args:
        params (iterable): Parameters, ``(name, Parameter)`` pairs, or parameter-group dicts.
        lr (float or 0-d array): learning rate (default: 2e-3). A 0-d array is read as
            torch reads a tensor lr: the coefficients ``-lr (1 - mu) / (1 - Pi)`` and
            ``1 - lr * weight_decay`` are computed in the array's dtype.
        betas (tuple[float, float]): coefficients of the running averages of the gradient
            and of its square (default: (0.9, 0.999)).
        eps (float): term added to the denominator (default: 1e-8).
        weight_decay (float): weight decay (default: 0).
        momentum_decay (float): :math:`\psi`, how fast :math:`\mu_t` approaches
            :math:`\beta_1` (default: 4e-3).
        decoupled_weight_decay (bool): decay the parameter (NAdamW) instead of adding
            :math:`\lambda\theta` to the gradient (default: False).
        foreach (bool, optional): accepted for signature parity (see below).
        maximize (bool): maximize the objective instead of minimizing (default: False).
        capturable (bool): accepted for signature parity (see below).
        differentiable (bool): accepted for signature parity (see below).

    State per parameter, in torch's order: ``step`` and ``mu_product`` (0-d float32
    arrays), ``exp_avg`` and ``exp_avg_sq`` (the parameter's shape and dtype).

    Torch quirks reproduced (each explained on the manual's page, "Reproducing torch
    exactly"):

    * float32 ``mu_product``, updated with a float32-rounded ``mu``;
    * ``load_state_dict`` casts ``mu_product`` to a float64 parameter's dtype;
    * the denominator :math:`\sqrt{v / (1 - \beta_2^t)} + \epsilon` (unlike Adam's);
    * two unfused ``addcdiv``: the gradient term, then the momentum term;
    * float32 ``step``: stops counting at :math:`2^{24}`;
    * decoupled decay factor ``1 - lr * weight_decay``: a Python float;
    * complex parameters: (real, imag) pairs *before* weight decay;
    * 0-d array betas read as Python floats (torch's float32 tensors not emulated);
    * not reproduced: torch's CPU ``sqrt`` (MKL), off by one unit on some elements.
    """

    _sparse_grad_error = (RuntimeError, "NAdam does not support sparse gradients")
    _elementwise = True  # the rule may run piece by piece (refoptim._fastpath)
    _unpacked_options = ("betas",)  # torch: beta1, beta2 = group["betas"], every group

    def __init__(
        self,
        params: Any,
        lr: Any = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum_decay: float = 4e-3,
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
        check_nonnegative(momentum_decay, "Invalid momentum_decay value: {}")
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "momentum_decay": momentum_decay,
            "decoupled_weight_decay": decoupled_weight_decay,
            "maximize": maximize,
            "foreach": foreach,
            "capturable": capturable,
            "differentiable": differentiable,
        }
        super().__init__(params, defaults)

    _setstate_options = ("maximize", "foreach", "capturable", "differentiable", "decoupled_weight_decay")
    _setstate_scalars = ("step", "mu_product")

    def _init_state(self, p: Any, group: dict[str, Any]) -> dict[str, Any]:
        return nadam_init(p.data)

    def _update(self, param: Any, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> Any:
        beta1, beta2 = group["betas"]
        return nadam_step(
            param,
            grad,
            state,
            lr=group["lr"],
            beta1=scalar(beta1),
            beta2=scalar(beta2),
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            momentum_decay=group["momentum_decay"],
            decoupled_weight_decay=group["decoupled_weight_decay"],
            maximize=group["maximize"],
        )


NAdam.__doc__ = append_doc(NAdam.__doc__, _FLAGS_DOC)
