r"""Adagrad (torch 2.13's ``torch.optim.Adagrad``): per-coordinate steps scaled by the
root of the summed squared gradients."""

from __future__ import annotations

import math
from typing import Any

from ._backend import (
    array_namespace,
    assign,
    back_to_complex,
    device_of,
    is_complex,
    real_views,
    scalar,
    to_scalar,
    view_as_complex,
    view_as_real,
)
from ._checks import check_eps, check_lr, check_nonnegative, check_weight_decay
from ._docs import append_doc, flags_doc
from ._primitives import add, addcdiv_, addcmul_, has_float64
from ._schedule_scalars import step_count
from .optimizer import Optimizer
from .sparse import SparseGrad, gather_rows, scatter_rows

__all__ = ["Adagrad", "adagrad_init", "adagrad_step"]

_FLAGS_DOC = flags_doc(
    "Adagrad",
    ("foreach", "fused", "differentiable"),
    note=(
        "torch's ``fused`` kernel rounds differently (and refuses complex parameters); refoptim does not "
        "emulate it."
    ),
)


def adagrad_init(param: Any, initial_accumulator_value: float = 0) -> dict[str, Any]:
    """The state Adagrad gives a parameter: ``step`` (0-d float32 zero) and ``sum``, the
    parameter's shape and dtype filled with ``initial_accumulator_value`` (``v + vj`` for
    a complex parameter, as torch's ``full_like(p, complex(v, v))``)."""
    xp = array_namespace(param)
    value = initial_accumulator_value
    if is_complex(xp, param):
        value = complex(value, value)
    return {
        "step": xp.zeros((), dtype=xp.float32, device=device_of(param)),
        "sum": xp.full_like(param, value),
    }


def adagrad_step(
    param: Any,
    grad: Any,
    state: dict[str, Any],
    *,
    lr: Any = 1e-2,
    weight_decay: float = 0,
    lr_decay: float = 0,
    eps: float = 1e-10,
    maximize: bool = False,
) -> Any:
    r"""One Adagrad update of one parameter, in the order of torch's ``_single_tensor_adagrad``.

    ``state`` holds ``step`` and ``sum`` as :func:`adagrad_init` makes them; the new
    values are stored back into it. Returns the new parameter. Works on immutable arrays:
    keep what it returns.

    .. math::
        t &\leftarrow t + 1 \\
        g &\leftarrow -g \text{ if maximize} \\
        g &\leftarrow g + \lambda\theta \quad (\lambda \ne 0) \\
        \tilde\gamma &\leftarrow \gamma / (1 + (t - 1)\eta) \\
        s &\leftarrow s + g^2 \\
        \theta &\leftarrow \theta - \tilde\gamma\, \frac{g}{\sqrt{s} + \epsilon}

    ``grad`` may be a :class:`refoptim.SparseGrad`: then only the rows it names change
    (see :class:`refoptim.Adagrad`).
    """
    xp = array_namespace(param)
    lr = to_scalar(lr)
    step_t = state["step"]
    step_t += 1
    state["step"] = step_t
    step = step_count(step_t)  # float(step_t); a stand-in under jax.jit (see _schedule_scalars)
    if maximize:
        grad = -grad

    if weight_decay != 0:
        if isinstance(grad, SparseGrad):
            raise RuntimeError(_SPARSE_WEIGHT_DECAY_ERROR)
        grad = add(grad, param, alpha=weight_decay)

    # A 0-d array lr stays an array here, as in torch: clr is then computed in its dtype.
    clr = lr / (1 + (step - 1) * lr_decay)

    if isinstance(grad, SparseGrad):
        return _sparse_adagrad_update(param, grad, state, clr=clr, eps=eps)

    state_sum = state["sum"]
    complex_param = is_complex(xp, param)
    if complex_param:
        originals = (param, state_sum)
        param, state_sum = real_views(xp, *originals)
        (grad,) = real_views(xp, grad)
    state_sum = addcmul_(state_sum, grad, grad, value=1)
    std = xp.sqrt(state_sum) + eps
    param = addcdiv_(param, grad, std, value=-scalar(clr))
    if complex_param:
        param, state_sum = back_to_complex(xp, originals, (param, state_sum))
    state["sum"] = state_sum
    return param


_SPARSE_WEIGHT_DECAY_ERROR = "weight_decay option is not compatible with sparse gradients"


def _complex_square(xp: Any, z: Any) -> Any:
    """``z * z`` for a complex array, as torch's vectorised CPU kernel rounds it: with
    ``z = a + bi``, ``(a*a - b*b) + (a*b + a*b) i``, each product rounded, then the sum.

    NumPy's own complex multiply fuses these multiply-adds or not depending on the SIMD
    target it dispatches to (AVX2 with FMA3 against the baseline gives different last
    bits), so it would make refoptim's result depend on the machine; part by part it
    does not.
    """
    pairs = view_as_real(xp, z)
    a, b = pairs[..., 0], pairs[..., 1]
    ab = a * b
    return view_as_complex(xp, xp.stack([a * a - b * b, ab + ab], axis=-1))


def _complex64_parts(xp: Any, z: Any) -> tuple[Any, Any]:
    """The real and imaginary parts of a complex64 array as float64 arrays (exact)."""
    pairs = view_as_real(xp, z)
    return xp.astype(pairs[..., 0], xp.float64), xp.astype(pairs[..., 1], xp.float64)


def _complex64_from(xp: Any, re: Any, im: Any) -> Any:
    """float64 parts rounded once each to float32, as a complex64 array."""
    return view_as_complex(xp, xp.stack([xp.astype(re, xp.float32), xp.astype(im, xp.float32)], axis=-1))


def _complex_sqrt(xp: Any, z: Any) -> Any:
    r"""The principal square root of a complex array, the same bits on every library.

    Each library computes a complex ``sqrt`` its own way (glibc's ``csqrtf``, XLA's,
    torch's vectorised kernel), so the last bits depend on it. For complex64, with
    :math:`z = x + iy`, the parts are evaluated in float64 (the squares of float32 parts
    are exact there) and rounded once to float32:

    .. math::
        m = \sqrt{x^2 + y^2},\quad t = \sqrt{(|x| + m)/2},\quad
        \sqrt z = \begin{cases} t + i\,y/(2t) & x \ge 0 \\
        |y|/(2t) + i\,\operatorname{sign}(y)\,t & x < 0 \end{cases}

    (:math:`t = 0` only at :math:`z = 0`, where the result is :math:`0 + iy`). Each
    float64 operation is IEEE's, so the result is the same wherever IEEE arithmetic is,
    within a unit of the correctly rounded root. Non-finite elements and complex128 keep
    the library's own ``sqrt`` (C99's special values; float64 has no wider type to
    evaluate in), and so does a namespace without float64 (JAX with x64 off).
    """
    if z.dtype != xp.complex64 or not has_float64(xp):
        return xp.sqrt(z)
    x, y = _complex64_parts(xp, z)
    m = xp.sqrt(x * x + y * y)
    t = xp.sqrt((xp.abs(x) + m) * 0.5)
    zero = t == 0
    half = xp.where(zero, 1.0, t + t)
    right = x >= 0
    re = xp.where(zero, 0.0, xp.where(right, t, xp.abs(y) / half))
    im = xp.where(zero, y, xp.where(right, y / half, xp.where(y < 0, -t, t)))
    out = _complex64_from(xp, re, im)
    finite = xp.isfinite(x) & xp.isfinite(y)
    return xp.where(finite, out, xp.sqrt(z))


def _complex_divide(xp: Any, v: Any, d: Any) -> Any:
    r"""``v / d`` for complex arrays, the same bits on every library.

    Libraries divide complex numbers by different algorithms (Smith's, scaled, or the
    textbook one, with or without fused multiply-adds). For complex64 the textbook form

    .. math:: \frac{a + ib}{c + id} = \frac{(ac + bd) + i(bc - ad)}{c^2 + d^2}

    is evaluated in float64, where the products of float32 parts are exact and nothing
    overflows, and each part is rounded once to float32. Complex128, and a namespace
    without float64, keep the library's division.
    """
    if v.dtype != xp.complex64 or not has_float64(xp):
        return v / d
    a, b = _complex64_parts(xp, v)
    c, e = _complex64_parts(xp, d)
    den = c * c + e * e
    return _complex64_from(xp, (a * c + b * e) / den, (b * c - a * e) / den)


def _sparse_adagrad_update(param: Any, grad: SparseGrad, state: dict[str, Any], *, clr: Any, eps: float) -> Any:
    r"""torch's sparse branch of ``_single_tensor_adagrad`` (``step`` already counted, the
    gradient already negated for ``maximize``)::

        grad = grad.coalesce()
        state_sum.add_(_make_sparse(grad, grad_indices, grad_values.pow(2)))
        std_values = state_sum.sparse_mask(grad)._values().sqrt_().add_(eps)
        param.add_(_make_sparse(grad, grad_indices, grad_values / std_values), alpha=-clr)

    On the rows ``i`` of the coalesced gradient: ``s_i += g_i * g_i``, then
    ``theta_i = fma(-clr, g_i / (sqrt(s_i) + eps), theta_i)``. A complex parameter stays
    complex here (no real view, unlike the dense path): ``s`` accumulates the complex
    square ``g * g`` and ``sqrt`` is the complex square root, as in torch. The square is
    computed part by part (:func:`_complex_square`), not with the library's complex
    multiply, whose rounding depends on the CPU; the complex ``sqrt`` and division likewise
    (:func:`_complex_sqrt`, :func:`_complex_divide`), whose algorithms depend on the library.
    """
    xp = array_namespace(param)
    grad = grad.coalesce()
    rows = grad.linear_indices()
    values = grad.values
    shape = tuple(param.shape)
    flat_shape = (math.prod(shape[: grad.sparse_dim]),) + shape[grad.sparse_dim :]

    state_sum = state["sum"]
    sum_flat = xp.reshape(state_sum, flat_shape)
    new_sum = gather_rows(sum_flat, rows) + (_complex_square(xp, values) if is_complex(xp, values) else values * values)
    sum_flat = scatter_rows(sum_flat, rows, new_sum)
    state["sum"] = assign(state_sum, xp.reshape(sum_flat, shape))

    if is_complex(xp, values):
        # complex sqrt and division in one fixed form (each library has its own)
        std_values = _complex_sqrt(xp, new_sum) + eps
        scaled = _complex_divide(xp, values, std_values)
    else:
        std_values = xp.sqrt(new_sum) + eps
        scaled = values / std_values
    param_flat = xp.reshape(param, flat_shape)
    updated = add(gather_rows(param_flat, rows), scaled, alpha=-scalar(clr))
    param_flat = scatter_rows(param_flat, rows, updated)
    return assign(param, xp.reshape(param_flat, shape))


class Adagrad(Optimizer):
    r"""Adagrad (``torch.optim.Adagrad``).

    .. math::
        \begin{aligned}
        &\textbf{input}: \gamma \text{ (lr)}, \theta_0 \text{ (params)}, f(\theta)
            \text{ (objective)}, \lambda \text{ (weight decay)},
            \tau \text{ (initial accumulator value)}, \eta \text{ (lr decay)},
            \epsilon, \textit{maximize} \\
        &\textbf{initialize}: s_0 \leftarrow \tau \\
        &\textbf{for } t = 1, 2, \ldots \textbf{ do} \\
        &\quad g_t \leftarrow \nabla_\theta f_t(\theta_{t-1}),\ \text{negated if } \textit{maximize} \\
        &\quad \tilde\gamma \leftarrow \gamma / (1 + (t - 1)\eta) \\
        &\quad \textbf{if } \lambda \ne 0:\ g_t \leftarrow g_t + \lambda\theta_{t-1} \\
        &\quad s_t \leftarrow s_{t-1} + g_t^2 \\
        &\quad \theta_t \leftarrow \theta_{t-1} - \tilde\gamma \frac{g_t}{\sqrt{s_t} + \epsilon}
        \end{aligned}

    Args:
        params (iterable): Parameters, ``(name, Parameter)`` pairs, or parameter-group dicts.
        lr (float or 0-d array): learning rate (default: 1e-2). A 0-d array is kept as an
            array, as torch keeps a tensor lr: ``lr / (1 + (t - 1) * lr_decay)`` is then
            computed in the array's dtype (float32 for ``torch.tensor(0.01)``).
        lr_decay (float): learning rate decay (default: 0).
        weight_decay (float): L2 penalty added to the gradient (default: 0).
        initial_accumulator_value (float): initial value of the sum of squared gradients
            (default: 0); see the quirks below for how torch reads it.
        eps (float): term added to the denominator (default: 1e-10).
        foreach (bool, optional): accepted for signature parity (see below).
        maximize (bool): maximize the objective instead of minimizing (default: False).
        differentiable (bool): accepted for signature parity (see below).
        fused (bool, optional): accepted for signature parity (see below).

    State per parameter: ``step`` (0-d float32 array) and ``sum`` (the parameter's shape
    and dtype), created by the constructor.

    Torch quirks reproduced (each explained on the manual's page, "Reproducing torch
    exactly"):

    * state created in the constructor, for every parameter;
    * ``initial_accumulator_value`` read from the constructor only, not from the groups;
    * complex parameters: ``sum`` starts at ``v + vj``; the rest on (real, imag) pairs;
    * lr decay with ``t - 1``: the first step takes the full lr;
    * float32 ``step``: stops counting at :math:`2^{24}`;
    * torch's roundings: fused ``addcmul`` into ``sum``; ``addcdiv`` by ``sqrt(sum) + eps``;
    * sparse gradients: coalesced, only their rows updated, complex arithmetic;
    * sparse errors: torch's ``RuntimeError`` messages, raised before anything changes;
    * not reproduced: torch's CPU ``sqrt`` (MKL), off by one unit on some elements.
    """

    _supports_sparse_grad = True
    _elementwise = True  # the rule may run piece by piece (refoptim._fastpath)

    def _check_sparse_grad(self, p: Any, grad: SparseGrad, group: dict[str, Any]) -> None:
        if group["weight_decay"] != 0:
            raise RuntimeError(_SPARSE_WEIGHT_DECAY_ERROR)
        if group["fused"]:
            raise RuntimeError("`fused` does not support sparse grad or complex param")

    def __init__(
        self,
        params: Any,
        lr: Any = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        check_lr(lr)
        check_nonnegative(lr_decay, "Invalid lr_decay value: {}")
        check_weight_decay(weight_decay)
        check_nonnegative(initial_accumulator_value, "Invalid initial_accumulator_value value: {}")
        check_eps(eps)

        defaults = {
            "lr": lr,
            "lr_decay": lr_decay,
            "eps": eps,
            "weight_decay": weight_decay,
            "initial_accumulator_value": initial_accumulator_value,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "fused": fused,
        }
        super().__init__(params, defaults)

        self._check_fused(fused, foreach, differentiable)

        # torch creates the state here, from the constructor's argument, for every group.
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p] = adagrad_init(p.data, initial_accumulator_value)

    _setstate_options = ("foreach", "maximize", "differentiable", "fused")
    _setstate_scalars = ("step",)

    def share_memory(self) -> None:
        """torch moves each ``sum`` to shared memory (``Tensor.share_memory_``) for
        multiprocess training; Array API arrays have no such notion, so this does nothing.
        Kept so code written for torch's Adagrad runs unchanged."""

    def _options_unused(self, group: dict[str, Any]) -> tuple[str, ...]:
        return ("initial_accumulator_value",)  # read by the constructor only, as in torch

    def _init_state(self, p: Any, group: dict[str, Any]) -> dict[str, Any]:
        # torch's lazy path (a parameter added after construction) reads the defaults,
        # not the group.
        return adagrad_init(p.data, self.defaults["initial_accumulator_value"])

    def _update(self, param: Any, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> Any:
        return adagrad_step(
            param,
            grad,
            state,
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            lr_decay=group["lr_decay"],
            eps=group["eps"],
            maximize=group["maximize"],
        )


Adagrad.__doc__ = append_doc(Adagrad.__doc__, _FLAGS_DOC)
