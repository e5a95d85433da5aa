r"""SparseAdam (torch 2.13's ``torch.optim.SparseAdam``): Adam masked to the rows a sparse
gradient names, for ``nn.Embedding(sparse=True)``-style gradients."""

from __future__ import annotations

import math
from typing import Any

from ._backend import (
    array_namespace,
    assign,
    is_array,
    is_complex,
    numel,
    to_scalar,
)
from ._checks import check_betas, check_eps, check_lr
from .optimizer import Optimizer
from .sparse import SparseGrad, gather_rows, scatter_rows

__all__ = ["SparseAdam", "sparse_adam_init", "sparse_adam_step"]


def sparse_adam_init(param: Any) -> dict[str, Any]:
    """The state SparseAdam gives a parameter at its first gradient: ``step`` (the Python
    int 0, not an array as in Adam), ``exp_avg`` and ``exp_avg_sq`` (zeros like the
    parameter)."""
    xp = array_namespace(param)
    return {"step": 0, "exp_avg": xp.zeros_like(param), "exp_avg_sq": xp.zeros_like(param)}


def sparse_adam_step(
    param: Any,
    grad: SparseGrad,
    state: dict[str, Any],
    *,
    lr: Any = 1e-3,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    maximize: bool = False,
) -> Any:
    r"""One SparseAdam update of one parameter, in the order of torch's
    ``torch.optim._functional.sparse_adam``.

    ``state`` holds ``step`` (a Python int), ``exp_avg`` and ``exp_avg_sq`` as
    :func:`sparse_adam_init` makes them; ``step`` is counted here (also for an empty
    gradient, which changes nothing else) and the new arrays are stored back. Returns the
    new parameter.

    On the rows :math:`i` of the coalesced gradient (duplicates summed) only:

    .. math::
        t &\leftarrow t + 1 \\
        m_i &\leftarrow m_i + (1 - \beta_1)(g_i - m_i) \\
        v_i &\leftarrow v_i + (1 - \beta_2)(g_i^2 - v_i) \\
        \theta_i &\leftarrow \theta_i - \frac{\gamma \sqrt{1 - \beta_2^t}}{1 - \beta_1^t}
            \cdot \frac{m_i}{\sqrt{v_i} + \epsilon}

    torch's order, each step rounded: ``du = (g - m) * (1 - beta1)``, ``m + du``;
    ``dv = (g * g - v) * (1 - beta2)``, ``v + dv``; ``numer = du + m_old``,
    ``denom = sqrt(dv + v_old) + eps``; the step size ``lr * sqrt(1 - beta2**t) /
    (1 - beta1**t)`` in Python floats (in the lr's dtype for a 0-d array lr); the rows
    of the parameter gain ``(-step_size) * (numer / denom)``.
    """
    xp = array_namespace(param)
    state["step"] = step = state["step"] + 1
    if maximize:
        grad = -grad
    grad = grad.coalesce()
    if grad.nnz == 0 or numel(grad.values) == 0:
        return param  # torch skips the update of an empty gradient (the step still counts)

    rows = grad.linear_indices()
    values = grad.values
    shape = tuple(param.shape)
    flat_shape = (math.prod(shape[: grad.sparse_dim]),) + shape[grad.sparse_dim :]

    exp_avg = state["exp_avg"]
    exp_avg_flat = xp.reshape(exp_avg, flat_shape)
    old_exp_avg_values = gather_rows(exp_avg_flat, rows)
    exp_avg_update_values = (values - old_exp_avg_values) * (1 - beta1)
    exp_avg_flat = scatter_rows(exp_avg_flat, rows, old_exp_avg_values + exp_avg_update_values)
    state["exp_avg"] = assign(exp_avg, xp.reshape(exp_avg_flat, shape))

    exp_avg_sq = state["exp_avg_sq"]
    exp_avg_sq_flat = xp.reshape(exp_avg_sq, flat_shape)
    old_exp_avg_sq_values = gather_rows(exp_avg_sq_flat, rows)
    exp_avg_sq_update_values = (values * values - old_exp_avg_sq_values) * (1 - beta2)
    exp_avg_sq_flat = scatter_rows(exp_avg_sq_flat, rows, old_exp_avg_sq_values + exp_avg_sq_update_values)
    state["exp_avg_sq"] = assign(exp_avg_sq, xp.reshape(exp_avg_sq_flat, shape))

    # "Dense addition again is intended, avoiding another sparse_mask" (torch): the same
    # sums as the new moments, computed again.
    numer = exp_avg_update_values + old_exp_avg_values
    denom = xp.sqrt(exp_avg_sq_update_values + old_exp_avg_sq_values) + eps

    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    # A 0-d array lr stays an array, as torch's _to_scalar keeps a tensor: the step size
    # is then computed in its dtype.
    step_size = lr * math.sqrt(bias_correction2) / bias_correction1

    param_flat = xp.reshape(param, flat_shape)
    update = -step_size * (numer / denom)
    if is_array(update) and update.dtype != param.dtype:
        update = xp.astype(update, param.dtype)
    param_flat = scatter_rows(param_flat, rows, gather_rows(param_flat, rows) + update)
    return assign(param, xp.reshape(param_flat, shape))


class SparseAdam(Optimizer):
    r"""SparseAdam (``torch.optim.SparseAdam``): Adam on the rows a sparse gradient names.

    For parameters whose gradients come as :class:`refoptim.SparseGrad` (torch's sparse COO
    layout, as ``nn.Embedding(sparse=True)`` produces). The moments and the parameter
    change only on the rows present in the (coalesced) gradient; every other row keeps its
    value, moments included, so a row's moments decay only on the steps that touch it.
    Present values are taken as non-zero: a stored zero still updates its row.

    .. math::
        \begin{aligned}
        &\textbf{input}: \gamma \text{ (lr)}, \beta_1, \beta_2 \text{ (betas)}, \theta_0,
            f(\theta), \epsilon, \textit{maximize} \\
        &\textbf{initialize}: m_0 \leftarrow 0, v_0 \leftarrow 0 \\
        &\textbf{for } t = 1, 2, \ldots \textbf{ do} \\
        &\quad g_t \leftarrow \nabla_\theta f_t(\theta_{t-1}) \text{ (sparse, coalesced)},
            \ \text{negated if } \textit{maximize} \\
        &\quad \textbf{for each row } i \textbf{ of } g_t: \\
        &\qquad m_{t,i} \leftarrow m_{t-1,i} + (1 - \beta_1)(g_{t,i} - m_{t-1,i}) \\
        &\qquad v_{t,i} \leftarrow v_{t-1,i} + (1 - \beta_2)(g_{t,i}^2 - v_{t-1,i}) \\
        &\qquad \theta_{t,i} \leftarrow \theta_{t-1,i}
            - \frac{\gamma\sqrt{1 - \beta_2^t}}{1 - \beta_1^t}
            \cdot \frac{m_{t,i}}{\sqrt{v_{t,i}} + \epsilon}
        \end{aligned}

    Args:
        params (iterable): Parameters, ``(name, Parameter)`` pairs, or parameter-group dicts.
        lr (float or 0-d array): learning rate (default: 1e-3); must be positive.
        betas (tuple[float, float]): coefficients of the running averages of the gradient
            and of its square (default: (0.9, 0.999)); each in ``[0, 1)``.
        eps (float): term added to the denominator (default: 1e-8); must be positive.
        maximize (bool): maximize the objective instead of minimizing (default: False).

    State per parameter: ``step`` (a Python ``int``, unlike every other optimizer's 0-d
    float32 array), ``exp_avg`` and ``exp_avg_sq`` (the parameter's shape and dtype).

    Torch quirks reproduced (each explained on the manual's page, "Reproducing torch
    exactly"):

    * validation: ``lr`` and ``eps`` strictly positive; complex refused at construction only;
    * a dense gradient: torch's ``RuntimeError``;
    * ``eps`` added to :math:`\sqrt{v}` without bias correction (Adam's :math:`\hat\epsilon` form);
    * an empty gradient counts a step and changes nothing else;
    * torch's roundings: ``old + (1 - beta) * (new - old)``; the denominator from ``dv + v_old``;
    * no ``foreach``/``fused``/``capturable``/``differentiable`` flags, no ``weight_decay``;
    * not reproduced: torch's errors after a partial step; torch's CPU ``sqrt`` (MKL).

    Example:
        >>> import numpy as np
        >>> import refoptim
        >>> from refoptim.sparse import SparseGrad
        >>> emb = refoptim.Parameter(np.zeros((4, 2), dtype=np.float32))
        >>> opt = refoptim.SparseAdam([emb], lr=0.1)
        >>> emb.grad = SparseGrad(np.array([[1, 3, 1]]), np.ones((3, 2), np.float32), (4, 2))
        >>> opt.step()
        >>> emb.data[:, 0].tolist(), opt.state[emb]["step"]  # rows 1 and 3 only; torch's floats
        ([0.0, -0.09999997913837433, 0.0, -0.09999995678663254], 1)
    """

    _supports_sparse_grad = True
    _unpacked_options = ("betas",)  # torch: beta1, beta2 = group["betas"], every group

    def __init__(
        self,
        params: Any,
        lr: Any = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        maximize: bool = False,
    ) -> None:
        check_lr(lr, positive=True)
        check_eps(eps, positive=True)
        check_betas(betas)

        defaults = {"lr": lr, "betas": betas, "eps": eps, "maximize": maximize}
        super().__init__(params, defaults)

        # refoptim parameters are always dense, so torch's "Sparse params at indices ...:
        # SparseAdam requires dense parameter tensors" cannot occur.
        complex_params = []
        for index, param_group in enumerate(self.param_groups):
            for d_index, d_param in enumerate(param_group["params"]):
                if is_complex(array_namespace(d_param.data), d_param.data):
                    complex_params.append([index, d_index])
        if complex_params:
            raise ValueError(
                f"Complex params at indices {complex_params}: SparseAdam does not support complex parameters"
            )

    def _options_unused(self, group: dict[str, Any]) -> tuple[str, ...]:
        # torch skips a gradient without values before it reads lr, eps or a beta's value
        # (the lengths of betas are unpacked for every group)
        if all(
            isinstance(p.grad, SparseGrad) and numel(p.grad.values) == 0 for p in group["params"] if p.grad is not None
        ):
            return ("lr", "eps", "betas")
        return ()

    def _check_dense_grad(self, p: Any, grad: Any, group: dict[str, Any]) -> None:
        raise RuntimeError("SparseAdam does not support dense gradients, please consider Adam instead")

    def _init_state(self, p: Any, group: dict[str, Any]) -> dict[str, Any]:
        return sparse_adam_init(p.data)

    def _update(self, param: Any, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> Any:
        beta1, beta2 = group["betas"]
        return sparse_adam_step(
            param,
            grad,
            state,
            lr=to_scalar(group["lr"]),
            beta1=beta1,
            beta2=beta2,
            eps=group["eps"],
            maximize=group.get("maximize", False),
        )
