r"""Adafactor (torch 2.13's ``torch.optim.Adafactor``): factored second moments.

For a parameter with two or more dimensions the second moment is kept as a row factor
(``row_var``, shape ``(..., R, 1)``) and a column factor (``col_var``, ``(..., 1, C)``) of
its last two dimensions; 0-d and 1-d parameters keep a full ``variance``. Every step
contains reductions (the root mean square of the parameter and of the update, the row and
column means of the squared gradient, the mean of the row factor). torch sums them in an
order fixed by its CPU kernels; the private helpers below (``_sum_sq_lastdim``,
``_sum_sq_strided``, ``_torch_sum_lastdim``) reproduce those orders with Array API
operations, so on NumPy refoptim's steps are bit-identical to torch's on the shapes the
conformance suite measures (see :class:`Adafactor`, "Reductions").
"""

from __future__ import annotations

from typing import Any

from ._backend import (
    array_namespace,
    device_of,
    numel,
    scalar,
    to_scalar,
)
from ._checks import check_lr, check_weight_decay
from . import _reduce
from ._primitives import add_, div, fma, lerp_, mul_
from .optimizer import Optimizer

__all__ = ["Adafactor", "adafactor_init", "adafactor_step"]


# ----------------------------------------------------------------------------- reductions
# torch's CPU kernels (AVX2 build, one thread) sum in these orders:
#
# * norm over a contiguous run (``torch.norm(x)`` of a contiguous tensor, ``dim=-1``): the
#   squares go into W lanes (W = 8 for float32, 4 for float64; x*x then +, unfused), the
#   lanes are folded left to right, then the n % W leftover elements are added one by one
#   with a fused multiply-add (float32 adds a block of 4 of them unfused first);
# * norm over a strided dimension (``dim=-2``): a plain running sum of x*x, unfused;
# * sum/mean over a contiguous run: ``cascade_sum``, 4 interleaved partial sums (of W-wide
#   vectors when the run has at least W elements) added in levels of 16, then combined.
#
# Each was matched bit for bit against torch 2.13 (see the conformance notes in the
# class docstring). Every sequential sum goes through ``_reduce.running_sum``, so the
# order is the same on every backend (NumPy's ``cumulative_sum`` where it is that scan).


def _running_sum(xp: Any, x: Any, axis: int) -> Any:
    """The left-to-right sum along ``axis`` (keeping the axis with size 1), in the same
    order on every backend (:func:`refoptim._reduce.running_sum`)."""
    return _reduce.running_sum(xp, x, axis)


def _sum_sq_lastdim(xp: Any, x: Any) -> Any:
    """Sum of squares over the last axis, in the order of torch's contiguous-``norm``
    kernel (lanes, a left fold, then the leftovers fused). Returns shape ``x.shape[:-1]``."""
    n = x.shape[-1]
    width = 8 if x.dtype == xp.float32 else 4
    full = n - n % width
    if full:
        lanes = x[..., :full]
        lanes = xp.reshape(lanes * lanes, x.shape[:-1] + (full // width, width))
        acc = _running_sum(xp, lanes, -2)[..., 0, :]
        total = acc[..., 0]
        for j in range(1, width):
            total = total + acc[..., j]
    else:
        total = xp.zeros(x.shape[:-1], dtype=x.dtype, device=device_of(x))
    d = full
    if x.dtype == xp.float32 and n - d >= 4:
        for i in range(d, d + 4):
            total = total + x[..., i] * x[..., i]
        d += 4
    for i in range(d, n):
        total = fma(x[..., i], x[..., i], total)
    return total


def _sum_sq_strided(xp: Any, x: Any, axis: int) -> Any:
    """Sum of squares over a strided ``axis`` (keeping it, size 1), as torch's generic
    reduction sums it: a running sum of ``x * x``, each rounded."""
    return _running_sum(xp, x * x, axis)


# torch's norm over a single element is its absolute value, not sqrt(x*x): it does not
# overflow (1e38 in float32) or underflow (1e-30). Elsewhere the two agree bit for bit
# (sqrt of a correctly rounded square is |x|), so only those edges change.


def _norm_all(xp: Any, x: Any) -> float:
    """torch's ``x.norm(2).item()`` of a contiguous array, as a Python float."""
    flat = xp.reshape(x, (1, numel(x)))
    if numel(x) == 1:
        return float(xp.abs(flat)[0, 0])
    return float(xp.sqrt(_sum_sq_lastdim(xp, flat))[0])


def _row_norm(xp: Any, grad: Any) -> Any:
    """torch's ``torch.norm(grad, dim=-1, keepdim=True)`` (contiguous rows)."""
    if grad.shape[-1] == 1:
        return xp.abs(grad)
    return xp.sqrt(_sum_sq_lastdim(xp, grad))[..., None]


def _col_norm(xp: Any, grad: Any) -> Any:
    """torch's ``torch.norm(grad, dim=-2, keepdim=True)``: strided columns, unless there
    is a single column, which torch then reads as a contiguous run."""
    if grad.shape[-2] == 1:
        return xp.abs(grad)
    if grad.shape[-1] == 1:
        return xp.sqrt(_sum_sq_lastdim(xp, grad[..., 0]))[..., None, None]
    return xp.sqrt(_sum_sq_strided(xp, grad, -2))


def _ceil_log2(x: int) -> int:
    return 1 if x <= 2 else (x - 1).bit_length()


def _multi_row_sum(item: Any, size: int, nrows: int, zero: Any) -> list[Any]:
    """torch's ``multi_row_sum``: ``nrows`` interleaved partial sums, cascaded in levels."""
    levels = 4
    power = max(4, _ceil_log2(size) // levels)
    step = 1 << power
    mask = step - 1
    acc = [[zero for _ in range(nrows)] for _ in range(levels)]
    i = 0
    while i + step <= size:
        for _ in range(step):
            for k in range(nrows):
                acc[0][k] = acc[0][k] + item(i * nrows + k)
            i += 1
        for j in range(1, levels):
            for k in range(nrows):
                acc[j][k] = acc[j][k] + acc[j - 1][k]
                acc[j - 1][k] = zero
            if i & (mask << (j * power)):
                break
    while i < size:
        for k in range(nrows):
            acc[0][k] = acc[0][k] + item(i * nrows + k)
        i += 1
    for j in range(1, levels):
        for k in range(nrows):
            acc[0][k] = acc[0][k] + acc[j][k]
    return acc[0]


def _row_sum(item: Any, size: int, zero: Any) -> Any:
    """torch's ``row_sum``: four interleaved partial sums, the leftovers, then combined."""
    quarter = size // 4
    partial = _multi_row_sum(item, quarter, 4, zero)
    for i in range(quarter * 4, size):
        partial[0] = partial[0] + item(i)
    for k in range(1, 4):
        partial[0] = partial[0] + partial[k]
    return partial[0]


def _torch_sum_lastdim(xp: Any, x: Any) -> Any:
    """torch's CPU ``sum`` over a contiguous last axis (``cascade_sum``)."""
    n = x.shape[-1]
    width = 8 if x.dtype == xp.float32 else 4
    zero = xp.zeros(x.shape[:-1], dtype=x.dtype, device=device_of(x))
    if n >= width:
        vectors = n // width
        vzero = xp.zeros(x.shape[:-1] + (width,), dtype=x.dtype, device=device_of(x))
        vacc = _row_sum(lambda m: x[..., m * width:(m + 1) * width], vectors, vzero)
        total = zero
        for k in range(vectors * width, n):
            total = total + x[..., k]
        for lane in range(width):
            total = total + vacc[..., lane]
        return total
    return _row_sum(lambda m: x[..., m], n, zero)


def _row_var_mean(xp: Any, row_var: Any) -> Any:
    """torch's ``row_var.mean(dim=-2, keepdim=True)`` on CPU: the sum, then ``div_(R)``."""
    rows = row_var.shape[-2]
    return div(_torch_sum_lastdim(xp, row_var[..., 0]), rows)[..., None, None]


# ----------------------------------------------------------------------------- the rule
def adafactor_init(param: Any) -> dict[str, Any]:
    """The state Adafactor starts a parameter with: ``step`` (0-d float32 zero) and, for
    two or more dimensions, ``row_var`` (the shape with its last dimension 1) and
    ``col_var`` (the shape with its second-to-last dimension 1), else ``variance`` (zeros
    like the parameter). All zeros of the parameter's dtype."""
    xp = array_namespace(param)
    device = device_of(param)
    state: dict[str, Any] = {"step": xp.zeros((), dtype=xp.float32, device=device)}
    shape = tuple(param.shape)
    if len(shape) > 1:
        state["row_var"] = xp.zeros(shape[:-1] + (1,), dtype=param.dtype, device=device)
        state["col_var"] = xp.zeros(shape[:-2] + (1, shape[-1]), dtype=param.dtype, device=device)
    else:
        state["variance"] = xp.zeros_like(param)
    return state


def adafactor_step(
    param: Any,
    grad: Any,
    state: dict[str, Any],
    *,
    lr: Any = 1e-2,
    beta2_decay: float = -0.8,
    eps1: float | None = None,
    eps2: float = 1e-3,
    d: float = 1.0,
    weight_decay: float = 0.0,
    maximize: bool = False,
) -> Any:
    r"""One Adafactor update of one parameter, in the order of torch's
    ``_single_tensor_adafactor``.

    ``state`` holds ``step`` and ``row_var``/``col_var`` (two or more dimensions) or
    ``variance`` (0-d, 1-d), as :func:`adafactor_init` makes them; the new values are
    stored back into it. ``eps1=None`` means the machine epsilon of the parameter's
    dtype. Returns the new parameter. Works on immutable arrays: keep what it returns.

    .. math::
        t &\leftarrow t + 1,\quad \hat\beta_{2,t} = 1 - t^{\tau},\quad
            \rho_t = \min(\gamma, 1/\sqrt t),\quad
            \alpha_t = \max(\epsilon_2, \mathrm{RMS}(\theta))\,\rho_t \\
        \theta &\leftarrow \theta (1 - \gamma\lambda) \\
        R &\leftarrow \mathrm{lerp}(R, \mathrm{mean}_{-1}(g^2), 1 - \hat\beta_{2,t}),\quad
        C \leftarrow \mathrm{lerp}(C, \mathrm{mean}_{-2}(g^2), 1 - \hat\beta_{2,t}),\quad
        \hat V = \frac{R\,C}{\max(\mathrm{mean}_{-2}(R), \epsilon_1)} \\
        &\text{(0-d and 1-d: } \hat V = V \leftarrow \mathrm{lerp}(V, g^2, 1 - \hat\beta_{2,t})) \\
        U &= g / \sqrt{\max(\hat V, \epsilon_1^2)},\quad
        \theta \leftarrow \theta - \frac{\alpha_t}{\max(1, \mathrm{RMS}(U)/d)}\,U
    """
    xp = array_namespace(param)
    if maximize:
        grad = -grad
    if eps1 is None:
        eps1 = _finfo_eps(xp, param.dtype)
    lr = to_scalar(lr)

    step_t = state["step"]
    step_t += 1
    state["step"] = step_t
    step_float = float(step_t)

    one_minus_beta2_t = step_float**beta2_decay
    rho_t = min(lr, 1 / (step_float**0.5))
    alpha = max(eps2, _norm_all(xp, param) / (numel(param) ** 0.5)) * rho_t

    # decoupled weight decay, after alpha has read the parameter's RMS
    if weight_decay != 0:
        param = mul_(param, scalar(1 - lr * weight_decay))

    if grad.ndim > 1:
        row_var = state["row_var"]
        col_var = state["col_var"]
        # torch: torch.norm(grad, dim=-1, keepdim=True).square_().div_(grad.size(-1))
        row_norm = _row_norm(xp, grad)
        row_mean = div(row_norm * row_norm, grad.shape[-1])
        row_var = lerp_(row_var, row_mean, one_minus_beta2_t)
        col_norm = _col_norm(xp, grad)
        col_mean = div(col_norm * col_norm, grad.shape[-2])
        col_var = lerp_(col_var, col_mean, one_minus_beta2_t)
        # row_var @ col_var: an outer product, one rounded multiply per element
        var_estimate = row_var * col_var
        row_var_mean = xp.maximum(_row_var_mean(xp, row_var), xp.asarray(eps1, dtype=param.dtype, device=device_of(param)))
        var_estimate = div(var_estimate, row_var_mean)
        state["row_var"] = row_var
        state["col_var"] = col_var
    else:
        variance = lerp_(state["variance"], grad * grad, one_minus_beta2_t)
        state["variance"] = variance
        var_estimate = xp.asarray(variance, copy=True)

    # eps1 is squared because the square root follows; rsqrt is 1 / sqrt in torch's kernel
    var_estimate = xp.maximum(var_estimate, xp.asarray(eps1 * eps1, dtype=param.dtype, device=device_of(param)))
    update = (1 / xp.sqrt(var_estimate)) * grad
    denom = max(1.0, _norm_all(xp, update) / ((numel(update) ** 0.5) * d))
    return add_(param, update, alpha=scalar(-alpha / denom))


def _finfo_eps(xp: Any, dtype: Any) -> float:
    """``torch.finfo(dtype).eps`` as a Python float."""
    return float(xp.finfo(dtype).eps)


class Adafactor(Optimizer):
    r"""Adafactor (``torch.optim.Adafactor``): Adam-like steps sized relative to the
    parameter's scale, with the second moment of a matrix kept as a row and a column
    factor (sublinear memory).

    .. math::
        \begin{aligned}
        &\textbf{input}: \gamma \text{ (lr)}, \tau \text{ (}\beta_2\text{ decay)},
            \theta_0, f(\theta), \epsilon_1, \epsilon_2 \text{ (eps)},
            d \text{ (clipping threshold)}, \lambda \text{ (weight decay)},
            \textit{maximize} \\
        &\textbf{initialize}: R_0 \leftarrow 0 \text{ (row factor)},
            C_0 \leftarrow 0 \text{ (column factor)}, \hat V_0 \leftarrow 0
            \text{ (vectors)} \\
        &\textbf{for } t = 1, 2, \ldots \textbf{ do} \\
        &\quad G_t \leftarrow \nabla_\theta f_t(\theta_{t-1}),\
            \text{negated if } \textit{maximize} \\
        &\quad \hat\beta_{2_t} \leftarrow 1 - t^{\tau},\quad
            \rho_t \leftarrow \min(\gamma, 1/\sqrt t),\quad
            \alpha_t \leftarrow \max(\epsilon_2, \mathrm{RMS}(\theta_{t-1}))\,\rho_t \\
        &\quad \theta_t \leftarrow \theta_{t-1} - \gamma\lambda\theta_{t-1} \\
        &\quad \textbf{if } \dim(G_t) > 1: \\
        &\qquad R_t \leftarrow \hat\beta_{2_t} R_{t-1}
            + (1 - \hat\beta_{2_t})\,\mathrm{mean}_{\text{cols}}(G_t \odot G_t),\quad
            C_t \leftarrow \hat\beta_{2_t} C_{t-1}
            + (1 - \hat\beta_{2_t})\,\mathrm{mean}_{\text{rows}}(G_t \odot G_t) \\
        &\qquad \hat V_t \leftarrow \frac{R_t C_t}{\max(\mathrm{mean}_{\text{rows}}(R_t),
            \epsilon_1)} \\
        &\quad \textbf{else}: \hat V_t \leftarrow \hat\beta_{2_t}\hat V_{t-1}
            + (1 - \hat\beta_{2_t})\, G_t \odot G_t \\
        &\quad U_t \leftarrow G_t / \max(\sqrt{\hat V_t}, \epsilon_1),\quad
            \hat U_t \leftarrow U_t / \max(1, \mathrm{RMS}(U_t)/d) \\
        &\quad \theta_t \leftarrow \theta_t - \alpha_t \hat U_t
        \end{aligned}

    with :math:`\mathrm{RMS}(x) = \lVert x\rVert_2 / \sqrt{\mathrm{numel}(x)}`. Matrices
    (and stacks of them: every dimension before the last two is a batch) are factored
    over their last two dimensions.

    Args:
        params (iterable): Parameters, ``(name, Parameter)`` pairs, or parameter-group dicts.
        lr (float or 0-d array): the cap of the relative step size :math:`\rho_t`, and the
            coefficient of the decoupled weight decay (default: 1e-2). A 0-d array stays an
            array through :math:`\rho_t` and :math:`\alpha_t` (computed in its dtype, as
            torch computes them with a tensor lr).
        beta2_decay (float): :math:`\tau`, the exponent of the second-moment decay
            :math:`\hat\beta_{2_t} = 1 - t^{\tau}` (default: -0.8).
        eps (tuple[float or None, float]): :math:`\epsilon_1`, floor of the variance
            estimate (``None``: the machine epsilon of the parameter's dtype), and
            :math:`\epsilon_2`, floor of the parameter's RMS in the step size
            (default: (None, 1e-3)).
        d (float): clipping threshold of the update's RMS (default: 1.0).
        weight_decay (float): decoupled weight decay :math:`\lambda` (default: 0.0).
        foreach (bool, optional): accepted for signature parity; refoptim always computes
            torch's single-tensor path (torch's ``foreach`` path orders some scalar
            products differently).
        maximize (bool): maximize the objective (default: False).

    State per parameter: ``step`` (0-d float32 array); for two or more dimensions
    ``row_var`` (the parameter's shape with the last dimension 1) and ``col_var`` (with
    the second-to-last dimension 1); for 0-d and 1-d ``variance`` (the parameter's
    shape). Arrays have the parameter's dtype.

    Torch quirks reproduced (each explained on the manual's page, "Reproducing torch
    exactly"):

    * :math:`1 - \hat\beta_{2_t} = t^{\tau}` computed directly, as the ``lerp`` weight;
    * :math:`\alpha_t` from the RMS *before* weight decay; the decay scaled by ``lr``;
    * ``eps1=None`` resolved once per group, from its first parameter with a gradient;
    * :math:`\epsilon_1` clamps the row factor's mean, :math:`\epsilon_1^2` the variance;
    * the row and column means: a norm squared, then divided;
    * ``rsqrt`` as ``1 / sqrt(x)``: two correctly rounded operations;
    * the update: ``add_(alpha=-alpha / denom)``, one fused rounding;
    * float32 ``step``: stops counting at :math:`2^{24}`;
    * complex parameters: torch's ``RuntimeError`` at ``step``, not at construction;
    * reductions: the summation order of torch's CPU kernels (its AVX2 build).

    Differences from torch (explained there too):

    * complex and size-0 parameters reported before anything changes;
    * not reproduced: the order of torch's non-contiguous, AVX-512 and multi-threaded
      reductions.
    """

    _unpacked_options = ("eps",)  # torch: eps1, eps2 = group["eps"], every group
    _complex_refusal = "Adafactor does not support complex parameters"

    def __init__(
        self,
        params: Any,
        lr: Any = 1e-2,
        beta2_decay: float = -0.8,
        eps: tuple[float | None, float] = (None, 1e-3),
        d: float = 1.0,
        weight_decay: float = 0.0,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
    ) -> None:
        check_lr(lr, "Learning rate should be >= 0 but is: {}")
        if not 0.0 >= beta2_decay:
            raise ValueError(f"beta2_decay should be <= 0 but is: {beta2_decay}")
        if eps[0] is not None and not 0.0 <= eps[0]:
            raise ValueError(f"epsilon1 should be >= 0 but is: {eps[0]}")
        if not 0.0 <= eps[1]:
            raise ValueError(f"epsilon2 should be >= 0 but is: {eps[1]}")
        if not 1.0 <= d:
            raise ValueError(f"Clipping threshold d should be >= 1 but is: {d}")
        check_weight_decay(weight_decay, "weight_decay should be >= 0 but is: {}")
        defaults = {
            "lr": lr,
            "beta2_decay": beta2_decay,
            "eps": eps,
            "d": d,
            "weight_decay": weight_decay,
            "foreach": foreach,
            "maximize": maximize,
        }
        super().__init__(params, defaults)

    _setstate_options = ("foreach",)
    _setstate_scalars = ("step",)

    def _options_unused(self, group: dict[str, Any]) -> tuple[str, ...]:
        # torch divides by zero at a size-0 first parameter before it reads d and
        # weight_decay (lr, eps and beta2_decay are read before the division)
        first = next((p for p in group["params"] if p.grad is not None), None)
        if first is not None and numel(first.data) == 0:
            return ("d", "weight_decay")
        return ()

    def _check_group(self, group: dict[str, Any], pairs: list[tuple[Any, Any]]) -> None:
        """torch's division by zero on a size-0 parameter: its loop divides at the first
        one of a group, before the next group is read."""
        if any(numel(p.data) == 0 for p, _ in pairs):
            raise ZeroDivisionError("float division by zero")

    def _init_state(self, p: Any, group: dict[str, Any]) -> dict[str, Any]:
        return adafactor_init(p.data)

    def _update(self, param: Any, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> Any:
        eps1, eps2 = group["eps"]
        if eps1 is None:
            # torch resolves eps1 from the first parameter of the group with a gradient
            first = next(p for p in group["params"] if p.grad is not None)
            eps1 = _finfo_eps(array_namespace(first.data), first.data.dtype)
        return adafactor_step(
            param,
            grad,
            state,
            lr=group["lr"],
            beta2_decay=group["beta2_decay"],
            eps1=eps1,
            eps2=eps2,
            d=group["d"],
            weight_decay=group["weight_decay"],
            maximize=group["maximize"],
        )
