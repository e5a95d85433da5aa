r"""Adam (torch 2.13's ``torch.optim.Adam``), with AMSGrad and decoupled weight decay."""

from __future__ import annotations

from typing import Any

from ._backend import array_namespace, back_to_complex, device_of, is_array, is_complex, real_views, scalar
from ._checks import check_betas, check_eps, check_lr, check_tensor, check_weight_decay
from ._docs import append_doc, flags_doc
from ._primitives import add, addcdiv_, addcmul_, div, lerp_, maximum_, mul_
from ._schedule_scalars import step_count
from .optimizer import Optimizer

__all__ = ["Adam", "adam_init", "adam_step"]

_FLAGS_DOC = flags_doc(
    "Adam",
    ("foreach", "fused", "capturable", "differentiable"),
    checks="a 0-d array ``lr`` with ``foreach=True`` and ``capturable=False`` raises ``ValueError``",
    note="torch's ``fused`` and ``capturable`` paths round differently; refoptim does not emulate them.",
)


def adam_init(param: Any, amsgrad: bool = False) -> dict[str, Any]:
    """The state Adam starts a parameter with: ``step`` (0-d float32 zero), ``exp_avg`` and
    ``exp_avg_sq`` (zeros like the parameter) and, with AMSGrad, ``max_exp_avg_sq``."""
    xp = array_namespace(param)
    state = {
        "step": xp.zeros((), dtype=xp.float32, device=device_of(param)),
        "exp_avg": xp.zeros_like(param),
        "exp_avg_sq": xp.zeros_like(param),
    }
    if amsgrad:
        state["max_exp_avg_sq"] = xp.zeros_like(param)
    return state


def adam_step(
    param: Any,
    grad: Any,
    state: dict[str, Any],
    *,
    lr: Any = 1e-3,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0,
    amsgrad: bool = False,
    maximize: bool = False,
    decoupled_weight_decay: bool = False,
) -> Any:
    r"""One Adam update of one parameter, in the order of torch's ``_single_tensor_adam``.

    ``state`` holds ``step``, ``exp_avg``, ``exp_avg_sq`` (and ``max_exp_avg_sq`` with
    AMSGrad), as :func:`adam_init` makes them; the new values are stored back into it.
    Returns the new parameter. Works on immutable arrays: keep what it returns.

    .. math::
        t &\leftarrow t + 1 \\
        \theta &\leftarrow \theta (1 - \gamma\lambda) \text{ (decoupled) or }
            g \leftarrow g + \lambda\theta \\
        m &\leftarrow \mathrm{lerp}(m, g, 1 - \beta_1) \\
        v &\leftarrow \beta_2 v + (1 - \beta_2) g^2 \\
        \hat v &\leftarrow \max(\hat v, v) \text{ (AMSGrad), else } \hat v = v \\
        \theta &\leftarrow \theta - \frac{\gamma}{1 - \beta_1^t}\,
            \frac{m}{\sqrt{\hat v} / \sqrt{1 - \beta_2^t} + \epsilon}
    """
    xp = array_namespace(param)
    if maximize:
        grad = -grad
    step_t = state["step"]
    step_t += 1
    state["step"] = step_t

    if weight_decay != 0:
        if decoupled_weight_decay:
            param = mul_(param, scalar(1 - lr * weight_decay))
        else:
            grad = add(grad, param, alpha=weight_decay)

    exp_avg = state["exp_avg"]
    exp_avg_sq = state["exp_avg_sq"]
    max_exp_avg_sq = state.get("max_exp_avg_sq") if amsgrad else None
    complex_param = is_complex(xp, param)
    if complex_param:
        # torch views complex tensors as (real, imag) pairs from here on.
        originals = (param, exp_avg, exp_avg_sq, max_exp_avg_sq)
        param, exp_avg, exp_avg_sq, max_exp_avg_sq = real_views(xp, *originals)
        (grad,) = real_views(xp, grad)

    exp_avg = lerp_(exp_avg, grad, 1 - beta1)
    exp_avg_sq = mul_(exp_avg_sq, beta2)
    exp_avg_sq = addcmul_(exp_avg_sq, grad, grad, value=1 - beta2)

    step = step_count(step_t)  # float(step_t); a stand-in under jax.jit (see _schedule_scalars)
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    step_size = lr / bias_correction1
    bias_correction2_sqrt = bias_correction2**0.5

    if amsgrad:
        max_exp_avg_sq = maximum_(max_exp_avg_sq, exp_avg_sq)
        denom = div(xp.sqrt(max_exp_avg_sq), bias_correction2_sqrt) + eps
    else:
        denom = div(xp.sqrt(exp_avg_sq), bias_correction2_sqrt) + eps

    param = addcdiv_(param, exp_avg, denom, value=-scalar(step_size))

    if complex_param:
        param, exp_avg, exp_avg_sq, max_exp_avg_sq = back_to_complex(
            xp, originals, (param, exp_avg, exp_avg_sq, max_exp_avg_sq)
        )
    state["exp_avg"] = exp_avg
    state["exp_avg_sq"] = exp_avg_sq
    if amsgrad:
        state["max_exp_avg_sq"] = max_exp_avg_sq
    return param


class Adam(Optimizer):
    r"""Adam (``torch.optim.Adam``), with AMSGrad and decoupled (AdamW) weight decay.

    .. math::
        \begin{aligned}
        &\textbf{input}: \gamma \text{ (lr)}, \beta_1, \beta_2 \text{ (betas)}, \theta_0,
            f(\theta), \lambda \text{ (weight decay)}, \epsilon, \textit{amsgrad},
            \textit{maximize}, \textit{decoupled} \\
        &\textbf{initialize}: m_0 \leftarrow 0, v_0 \leftarrow 0, \hat v_0 \leftarrow 0 \\
        &\textbf{for } t = 1, 2, \ldots \textbf{ do} \\
        &\quad g_t \leftarrow \nabla_\theta f_t(\theta_{t-1}),\ \text{negated if } \textit{maximize} \\
        &\quad \textbf{if } \lambda \ne 0: \textbf{ if } \textit{decoupled}:
            \theta_{t-1} \leftarrow \theta_{t-1}(1 - \gamma\lambda)
            \textbf{ else } g_t \leftarrow g_t + \lambda\theta_{t-1} \\
        &\quad m_t \leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
        &\quad v_t \leftarrow \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
        &\quad \textbf{if } \textit{amsgrad}: \hat v_t \leftarrow \max(\hat v_{t-1}, v_t)
            \textbf{ else } \hat v_t \leftarrow v_t \\
        &\quad \theta_t \leftarrow \theta_{t-1} - \frac{\gamma}{1 - \beta_1^t}
            \cdot \frac{m_t}{\sqrt{\hat v_t}/\sqrt{1 - \beta_2^t} + \epsilon}
        \end{aligned}

    Args:
        params (iterable): Parameters, ``(name, Parameter)`` pairs, or parameter-group dicts.
        lr (float or 0-d array): learning rate (default: 1e-3). A 0-d array is read as
            torch reads a tensor lr: ``lr / (1 - beta1**t)`` is computed in the array's
            dtype, so a float32 lr gives a float32-rounded step size even for float64
            parameters.
        betas (tuple[float, float]): coefficients of the running averages of the gradient
            and of its square (default: (0.9, 0.999)).
        eps (float): term added to the denominator (default: 1e-8).
        weight_decay (float): weight decay (default: 0).
        amsgrad (bool): use the AMSGrad maximum of second moments (default: False).
        maximize (bool): maximize the objective (default: False).
        decoupled_weight_decay (bool): AdamW's decoupled weight decay (default: False).
        foreach (bool, optional): accepted for signature parity (see below).
        capturable (bool): accepted for signature parity (see below).
        differentiable (bool): accepted for signature parity (see below).
        fused (bool, optional): accepted for signature parity (see below).

    State per parameter: ``step`` (0-d float32 array), ``exp_avg``, ``exp_avg_sq`` and,
    with ``amsgrad``, ``max_exp_avg_sq`` (each the parameter's shape and dtype).

    Torch quirks reproduced (each explained on the manual's page, "Reproducing torch
    exactly"):

    * float32 ``step``: stops counting at :math:`2^{24}`;
    * torch's roundings: ``lerp``, ``mul`` + fused ``addcmul``, ``addcdiv``;
    * the denominator :math:`\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon`: two square roots,
      not :math:`\sqrt{v_t/(1-\beta_2^t)}` (the same math, rounded differently);
    * complex parameters: decay in complex arithmetic, the rest on (real, imag) pairs;
    * 0-d array betas read as Python floats;
    * not reproduced: torch's CPU ``sqrt`` (MKL), off by one unit on some elements.
    """

    _sparse_grad_error = (RuntimeError, "Adam does not support sparse gradients, please consider SparseAdam instead")
    _elementwise = True  # the rule may run piece by piece (refoptim._fastpath)
    _unpacked_options = ("betas",)  # torch: beta1, beta2 = group["betas"], every group

    def _required_state(self, group: dict[str, Any]) -> tuple[str, ...]:
        # amsgrad switched on after a step: torch's _init_group reads state["max_exp_avg_sq"]
        return ("max_exp_avg_sq",) if group["amsgrad"] else ()

    def __init__(
        self,
        params: Any,
        lr: Any = 1e-3,
        betas: tuple[Any, Any] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        decoupled_weight_decay: bool = False,
    ) -> None:
        check_lr(lr, foreach=foreach, capturable=capturable)
        check_eps(eps)
        check_betas(betas)
        check_weight_decay(weight_decay)
        if not (
            (isinstance(betas[0], float) and isinstance(betas[1], float))
            or (is_array(betas[0]) and is_array(betas[1]))
        ):
            raise ValueError("betas must be either both floats or both Tensors")
        for index in (0, 1):
            check_tensor(f"betas[{index}]", betas[index], foreach, capturable)

        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
            "maximize": maximize,
            "foreach": foreach,
            "capturable": capturable,
            "differentiable": differentiable,
            "fused": fused,
            "decoupled_weight_decay": decoupled_weight_decay,
        }
        super().__init__(params, defaults)

        self._check_fused(fused, foreach, differentiable)

    _setstate_options = (
        "amsgrad", "maximize", "foreach", "capturable", "differentiable", "decoupled_weight_decay",
        "fused"
    )
    _setstate_scalars = ("step",)

    def _init_state(self, p: Any, group: dict[str, Any]) -> dict[str, Any]:
        return adam_init(p.data, group["amsgrad"])

    def _update(self, param: Any, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> Any:
        beta1, beta2 = group["betas"]
        return adam_step(
            param,
            grad,
            state,
            lr=group["lr"],
            beta1=scalar(beta1),
            beta2=scalar(beta2),
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            amsgrad=group["amsgrad"],
            maximize=group["maximize"],
            decoupled_weight_decay=group["decoupled_weight_decay"],
        )


Adam.__doc__ = append_doc(Adam.__doc__, _FLAGS_DOC)
