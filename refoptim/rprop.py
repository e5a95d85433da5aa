r"""Rprop, resilient backpropagation (torch 2.13's ``torch.optim.Rprop``)."""

from __future__ import annotations

from typing import Any

from ._backend import array_namespace, assign, back_to_complex, device_of, is_complex, real_views, scalar
from ._checks import check_lr
from ._docs import append_doc, flags_doc
from ._primitives import addcmul_, clamp_, masked_fill, mul_, sign
from .optimizer import Optimizer

__all__ = ["Rprop", "rprop_init", "rprop_step"]

_FLAGS_DOC = flags_doc(
    "Rprop",
    ("capturable", "foreach", "differentiable"),
    note=(
        "torch's ``capturable`` path selects with ``torch.where`` instead of masked assignment, with the same"
        " results."
    ),
)


def rprop_init(param: Any, lr: Any = 1e-2) -> dict[str, Any]:
    """The state Rprop starts a parameter with: ``step`` (0-d float32 zero), ``prev``
    (zeros like the parameter) and ``step_size`` filled with ``lr`` (``lr + lr*1j`` for a
    complex parameter, so the imaginary part gets a step size too).

    This is the only place ``lr`` is read: later changes to a group's ``lr`` (a scheduler)
    do not reach a parameter whose state exists.
    """
    xp = array_namespace(param)
    value = scalar(lr)
    if is_complex(xp, param):
        value = complex(value, value)
    return {
        "step": xp.zeros((), dtype=xp.float32, device=device_of(param)),
        "prev": xp.zeros_like(param),
        "step_size": xp.full(param.shape, value, dtype=param.dtype, device=device_of(param)),
    }


def rprop_step(
    param: Any,
    grad: Any,
    state: dict[str, Any],
    *,
    step_size_min: float = 1e-6,
    step_size_max: float = 50,
    etaminus: float = 0.5,
    etaplus: float = 1.2,
    maximize: bool = False,
) -> Any:
    r"""One Rprop update of one parameter, in the order of torch's ``_single_tensor_rprop``.

    ``state`` holds ``step``, ``prev`` and ``step_size`` as :func:`rprop_init` makes them;
    the new values are stored back into it. There is no ``lr`` argument: it only seeds
    ``step_size``. Returns the new parameter. Works on immutable arrays: keep what it
    returns.

    .. math::
        t &\leftarrow t + 1 \quad\text{(counted, never used)} \\
        s &\leftarrow \mathrm{sign}(g\, g_{\mathrm{prev}}) \\
        \eta &\leftarrow \eta_+ \text{ where } s > 0,\ \eta_- \text{ where } s < 0,\
            1 \text{ where } s = 0 \\
        \Delta &\leftarrow \min(\max(\Delta\,\eta, \Delta_{\min}), \Delta_{\max}) \\
        g &\leftarrow 0 \text{ where } \eta = \eta_- \\
        \theta &\leftarrow \theta - \mathrm{sign}(g)\,\Delta,\quad g_{\mathrm{prev}} \leftarrow g
    """
    xp = array_namespace(param)
    if maximize:
        grad = -grad
    prev = state["prev"]
    step_size = state["step_size"]
    step_t = state["step"]
    step_t += 1
    state["step"] = step_t

    complex_param = is_complex(xp, param)
    if complex_param:
        # Complex numbers are two independent real numbers to Rprop.
        originals = (param, prev, step_size)
        param, prev, step_size = real_views(xp, *originals)
        (grad,) = real_views(xp, grad)

    signs = sign(grad * prev)
    # torch's three masked assignments, in its order, each in the parameter's dtype.
    signs = masked_fill(signs, signs > 0, etaplus)
    signs = masked_fill(signs, signs < 0, etaminus)
    signs = masked_fill(signs, signs == 0, 1)

    step_size = mul_(step_size, signs)
    step_size = clamp_(step_size, step_size_min, step_size_max)

    # Where the sign flipped, forget the gradient: no step now, and no flip next time.
    grad = masked_fill(grad, signs == xp.asarray(etaminus, dtype=signs.dtype, device=device_of(signs)), 0)

    param = addcmul_(param, sign(grad), step_size, value=-1)
    prev = assign(prev, grad)

    if complex_param:
        param, prev, step_size = back_to_complex(xp, originals, (param, prev, step_size))
    state["prev"] = prev
    state["step_size"] = step_size
    return param


class Rprop(Optimizer):
    r"""Rprop (``torch.optim.Rprop``): per-element step sizes adapted by gradient signs.

    .. math::
        \begin{aligned}
        &\textbf{input}: \theta_0, f(\theta), \gamma \text{ (lr)}, \eta_-, \eta_+
            \text{ (etas)}, \Delta_{\min}, \Delta_{\max} \text{ (step sizes)},
            \textit{maximize} \\
        &\textbf{initialize}: g_{\mathrm{prev}} \leftarrow 0, \Delta_0 \leftarrow \gamma \\
        &\textbf{for } t = 1, 2, \ldots \textbf{ do} \\
        &\quad g_t \leftarrow \nabla_\theta f_t(\theta_{t-1}),\ \text{negated if } \textit{maximize} \\
        &\quad \textbf{where } g_t g_{\mathrm{prev}} > 0:\
            \Delta_t \leftarrow \min(\eta_+ \Delta_{t-1}, \Delta_{\max}) \\
        &\quad \textbf{where } g_t g_{\mathrm{prev}} < 0:\
            \Delta_t \leftarrow \max(\eta_- \Delta_{t-1}, \Delta_{\min}),\ g_t \leftarrow 0 \\
        &\quad \textbf{where } g_t g_{\mathrm{prev}} = 0:\ \Delta_t \leftarrow \Delta_{t-1}
            \text{ (clamped)} \\
        &\quad \theta_t \leftarrow \theta_{t-1} - \mathrm{sign}(g_t)\,\Delta_t,\quad
            g_{\mathrm{prev}} \leftarrow g_t
        \end{aligned}

    Args:
        params (iterable): Parameters, ``(name, Parameter)`` pairs, or parameter-group dicts.
        lr (float or 0-d array): the initial step size of every element (default: 1e-2).
        etas (tuple[float, float]): ``(etaminus, etaplus)``, the factors that shrink and
            grow a step size (default: (0.5, 1.2)); need ``0 < etaminus < 1 < etaplus``.
        step_sizes (tuple[float, float]): ``(min, max)`` step size (default: (1e-6, 50));
            not checked, as in torch.
        capturable (bool): accepted for signature parity (see below).
        foreach (bool, optional): accepted for signature parity (see below).
        maximize (bool): maximize the objective instead of minimizing (default: False).
        differentiable (bool): accepted for signature parity (see below).

    State per parameter: ``step`` (0-d float32 array), ``prev`` (the last gradient used,
    zeroed where its sign flipped) and ``step_size`` (each the parameter's shape and dtype).

    Torch quirks reproduced (each explained on the manual's page, "Reproducing torch
    exactly"):

    * ``lr`` only seeds ``step_size``: a scheduled lr changes nothing;
    * float32 ``step``: counted but never used;
    * the sign test ``sign(g * prev)`` in the parameter's dtype (underflow keeps the size);
    * the etas written in torch's order; ``step_sizes`` a clamp, ``hi`` winning;
    * a flipped sign zeroes the gradient, and ``prev`` keeps the zero;
    * complex parameters: two real numbers, ``step_size`` starting at ``lr + lr*1j``;
    * torch's ``sign``: 0 for NaN, so a NaN gradient element is skipped.
    """

    _sparse_grad_error = (RuntimeError, "Rprop does not support sparse gradients")
    _elementwise = True  # the rule may run piece by piece (refoptim._fastpath)
    _unpacked_options = ("etas", "step_sizes")  # torch unpacks both for every group

    def __init__(
        self,
        params: Any,
        lr: Any = 1e-2,
        etas: tuple[float, float] = (0.5, 1.2),
        step_sizes: tuple[float, float] = (1e-6, 50),
        *,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        check_lr(lr)
        if not 0.0 < etas[0] < 1.0 < etas[1]:
            raise ValueError(f"Invalid eta values: {etas[0]}, {etas[1]}")

        defaults = {
            "lr": lr,
            "etas": etas,
            "step_sizes": step_sizes,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "capturable": capturable,
        }
        super().__init__(params, defaults)

    _setstate_options = ("foreach", "maximize", "differentiable", "capturable")
    _setstate_scalars = ("step",)

    def _options_unused(self, group: dict[str, Any]) -> tuple[str, ...]:
        # torch reads lr only to fill a new state's step sizes
        stepping = [p for p in group["params"] if p.grad is not None]
        return ("lr",) if all(self.state.get(p) for p in stepping) else ()

    def _init_state(self, p: Any, group: dict[str, Any]) -> dict[str, Any]:
        return rprop_init(p.data, group["lr"])

    def _update(self, param: Any, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> Any:
        etaminus, etaplus = group["etas"]
        step_size_min, step_size_max = group["step_sizes"]
        return rprop_step(
            param,
            grad,
            state,
            step_size_min=step_size_min,
            step_size_max=step_size_max,
            etaminus=etaminus,
            etaplus=etaplus,
            maximize=group["maximize"],
        )


Rprop.__doc__ = append_doc(Rprop.__doc__, _FLAGS_DOC)
