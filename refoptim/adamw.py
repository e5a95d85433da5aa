r"""AdamW (torch 2.13's ``torch.optim.AdamW``): Adam with decoupled weight decay."""

from __future__ import annotations

from typing import Any

from .adam import Adam, adam_init, adam_step

__all__ = ["AdamW", "adamw_init", "adamw_step"]


def adamw_init(param: Any, amsgrad: bool = False) -> dict[str, Any]:
    """The state AdamW starts a parameter with: Adam's (:func:`refoptim.functional.adam_init`),
    ``step`` (0-d float32 zero), ``exp_avg`` and ``exp_avg_sq`` (zeros like the parameter)
    and, with AMSGrad, ``max_exp_avg_sq``."""
    return adam_init(param, amsgrad)


def adamw_step(
    param: Any,
    grad: Any,
    state: dict[str, Any],
    *,
    lr: Any = 1e-3,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
    amsgrad: bool = False,
    maximize: bool = False,
) -> Any:
    r"""One AdamW update: :func:`refoptim.functional.adam_step` with ``decoupled_weight_decay=True``.

    .. math::
        \theta \leftarrow \theta (1 - \gamma\lambda), \text{ then Adam's update.}

    The keywords and their defaults are :class:`refoptim.AdamW`'s (``weight_decay=1e-2``; ``beta1``,
    ``beta2`` from ``betas``); there is no ``decoupled_weight_decay``: it is always on.
    """
    return adam_step(
        param,
        grad,
        state,
        lr=lr,
        beta1=beta1,
        beta2=beta2,
        eps=eps,
        weight_decay=weight_decay,
        amsgrad=amsgrad,
        maximize=maximize,
        decoupled_weight_decay=True,
    )


class AdamW(Adam):
    r"""AdamW (``torch.optim.AdamW``): weight decay applied to the parameter, not the gradient.

    .. math::
        \begin{aligned}
        &\textbf{for } t = 1, 2, \ldots \textbf{ do} \\
        &\quad g_t \leftarrow \nabla_\theta f_t(\theta_{t-1}),\ \text{negated if } \textit{maximize} \\
        &\quad \theta_{t-1} \leftarrow \theta_{t-1} - \gamma\lambda\theta_{t-1} \\
        &\quad m_t \leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t,\quad
               v_t \leftarrow \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
        &\quad \hat v_t \leftarrow \max(\hat v_{t-1}, v_t) \text{ if } \textit{amsgrad}
               \text{ else } v_t \\
        &\quad \theta_t \leftarrow \theta_{t-1} - \frac{\gamma}{1 - \beta_1^t}
            \cdot \frac{m_t}{\sqrt{\hat v_t}/\sqrt{1 - \beta_2^t} + \epsilon}
        \end{aligned}

    Why decoupling matters: with Adam's L2 term (:math:`g_t + \lambda\theta`) the decay is
    part of the gradient, so it is divided by :math:`\sqrt{\hat v_t}` like the rest of the
    step: weights with large gradients (a large :math:`\hat v_t`) are barely decayed, and
    weights with small ones are decayed more. Decoupled decay shrinks every weight by
    the same factor :math:`1 - \gamma\lambda`, whatever its gradient history.

    Same arguments as :class:`refoptim.Adam` but ``weight_decay`` defaults to ``1e-2`` and
    there is no ``decoupled_weight_decay`` argument: every group has it ``True``, also
    after ``load_state_dict`` (torch's ``__setstate__`` forces it). Same state as Adam.

    Torch quirks reproduced: those of :class:`refoptim.Adam`, and

    * the decay factor ``1 - lr * weight_decay``: a Python float (in a 0-d array lr's dtype);
    * ``decoupled_weight_decay`` forced back to ``True`` by ``load_state_dict``.

    ``foreach``, ``fused``, ``capturable`` and ``differentiable`` are accepted for
    signature parity; refoptim always computes torch's single-tensor path.
    """

    _sparse_grad_error = (RuntimeError, "Adam does not support sparse gradients, please consider SparseAdam instead")

    def __init__(
        self,
        params: Any,
        lr: Any = 1e-3,
        betas: tuple[Any, Any] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            foreach=foreach,
            maximize=maximize,
            capturable=capturable,
            differentiable=differentiable,
            fused=fused,
            decoupled_weight_decay=True,
        )

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True
