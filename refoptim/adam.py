r"""Adam (torch 2.13's ``torch.optim.Adam``), with AMSGrad and decoupled weight decay."""

from __future__ import annotations

from typing import Any

from ._backend import array_namespace, back_to_complex, device_of, is_array, is_complex, numel, real_views, scalar
from ._primitives import add, addcdiv_, addcmul_, div, lerp_, maximum_, mul_
from ._schedule_scalars import step_count
from .optimizer import Optimizer

__all__ = ["Adam", "adam_init", "adam_step"]

_FLAGS_DOC = r"""
    ``foreach``, ``fused``, ``capturable`` and ``differentiable`` pick one of torch's
    implementations; refoptim accepts them so signatures match, applies torch's checks on
    them (``fused`` with ``differentiable`` or with ``foreach=True`` raises
    ``RuntimeError``; a 0-d array ``lr`` with ``foreach=True`` and ``capturable=False``
    raises ``ValueError``), and always computes torch's single-tensor, non-capturable path.
    torch's ``fused`` and ``capturable`` paths round differently; refoptim does not
    emulate them, and ``step`` stays a 0-d float32 array whatever they say.
"""


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
        foreach, capturable, differentiable, fused: accepted for signature parity (below).

    State per parameter: ``step`` (0-d float32 array), ``exp_avg``, ``exp_avg_sq`` and,
    with ``amsgrad``, ``max_exp_avg_sq`` (each the parameter's shape and dtype).

    Torch quirks reproduced:

    * ``step`` is a float32 scalar, so it stops counting at :math:`2^{24}` (16777216);
      the bias corrections read it as a Python float.
    * the first moment uses ``lerp`` (one fused rounding), the second ``mul`` then a fused
      ``addcmul``; the update is ``addcdiv`` with ``value = -lr / (1 - beta1**t)`` and
      ``denom = sqrt(v) / sqrt(1 - beta2**t) + eps``: eps is added *after* the bias
      correction of the square root, unlike the paper's :math:`\hat v / (1-\beta_2^t)`.
    * complex parameters: weight decay acts in complex arithmetic, then everything else
      views the parameter, gradient and state as (real, imag) pairs, so ``exp_avg_sq``
      holds :math:`\Re(g)^2` and :math:`\Im(g)^2` in its real and imaginary parts, not
      :math:`|g|^2`.
    * betas given as 0-d arrays are read as Python floats (torch's tensor-beta path is
      only distinct when ``capturable`` or ``differentiable``).
    * torch's CPU ``sqrt`` (MKL) is off by one unit in the last place on some elements;
      refoptim's is correctly rounded. The conformance suite measures the difference.
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
        if is_array(lr):
            if foreach and not capturable:
                raise ValueError("lr as a Tensor is not supported for capturable=False and foreach=True")
            if numel(lr) != 1:
                raise ValueError("Tensor lr must be 1-element")
        if not 0.0 <= scalar(lr):
            raise ValueError(f"Invalid learning rate: {scalar(lr)}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= scalar(betas[0]) < 1.0:
            raise ValueError(f"Invalid beta parameter at index 0: {scalar(betas[0])}")
        if not 0.0 <= scalar(betas[1]) < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {scalar(betas[1])}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not (
            (isinstance(betas[0], float) and isinstance(betas[1], float))
            or (is_array(betas[0]) and is_array(betas[1]))
        ):
            raise ValueError("betas must be either both floats or both Tensors")
        for index in (0, 1):
            if is_array(betas[index]):
                if not capturable and foreach:
                    raise ValueError(
                        f"betas[{index}] as a Tensor is not supported for capturable=False and foreach=True"
                    )
                if numel(betas[index]) != 1:
                    raise ValueError(f"Tensor betas[{index}] must be 1-element")

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

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("amsgrad", False)
            group.setdefault("maximize", False)
            group.setdefault("foreach", None)
            group.setdefault("capturable", False)
            group.setdefault("differentiable", False)
            group.setdefault("decoupled_weight_decay", False)
            group.setdefault("fused", None)
        self._scalar_state_as_arrays("step")

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


Adam.__doc__ = (Adam.__doc__ or "") + _FLAGS_DOC
