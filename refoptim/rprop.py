r"""Rprop, resilient backpropagation (torch 2.13's ``torch.optim.Rprop``)."""

from __future__ import annotations

from typing import Any

from ._backend import array_namespace, assign, back_to_complex, device_of, is_array, is_complex, numel, real_views, scalar
from ._primitives import addcmul_, clamp_, masked_fill, mul_, sign
from .optimizer import Optimizer

__all__ = ["Rprop", "rprop_init", "rprop_step"]

_FLAGS_DOC = r"""
    ``capturable``, ``foreach`` and ``differentiable`` pick one of torch's
    implementations; refoptim accepts them so signatures match and always computes
    torch's single-tensor, non-capturable path (torch's Rprop has no ``fused``). The
    capturable path selects with ``torch.where`` instead of masked assignment, with the
    same results; ``step`` stays a 0-d float32 array whatever the flags say.
"""


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
        capturable, foreach, maximize, differentiable: ``maximize`` maximizes the objective
            (default: False); the others are accepted for signature parity (below).

    State per parameter: ``step`` (0-d float32 array), ``prev`` (the last gradient used,
    zeroed where its sign flipped) and ``step_size`` (each the parameter's shape and dtype).

    Torch quirks reproduced:

    * ``lr`` only seeds ``step_size`` at a parameter's first step; changing a group's
      ``lr`` afterwards (an lr scheduler) changes nothing for that parameter.
    * ``step`` is counted (a float32 scalar) but never used.
    * the sign test is ``sign(g * prev)`` in the parameter's dtype: a product that
      underflows to zero counts as "no sign information" and keeps the step size.
    * the etas are written into the sign array in torch's order (``> 0`` then ``< 0``
      then ``== 0``) in the parameter's dtype, and the gradient is zeroed where the result
      equals ``etaminus`` in that dtype; ``step_sizes`` is a clamp ``min(max(x, lo), hi)``,
      so with ``lo > hi`` every step size becomes ``hi``.
    * where the sign flips the gradient is set to zero: the parameter does not move
      there, and ``prev`` stores the zero, so the next step cannot flip again.
    * complex parameters are two independent real numbers: ``step_size`` starts at
      ``lr + lr*1j``, and everything is computed on (real, imag) pairs.
    * torch's ``sign`` is ``(0 < x) - (x < 0)``: 0 for NaN (the Array API's ``sign``
      gives NaN) and ``+0.0`` for ``-0.0``. So a NaN gradient element is skipped: its
      step size is kept and the parameter does not move, but the NaN is stored in
      ``prev``, which makes the next step's sign test 0 there too.
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
        if is_array(lr) and numel(lr) != 1:
            raise ValueError("Tensor lr must be 1-element")
        if not 0.0 <= scalar(lr):
            raise ValueError(f"Invalid learning rate: {scalar(lr)}")
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

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("foreach", None)
            group.setdefault("maximize", False)
            group.setdefault("differentiable", False)
            group.setdefault("capturable", False)
        self._scalar_state_as_arrays("step")

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


Rprop.__doc__ = (Rprop.__doc__ or "") + _FLAGS_DOC
