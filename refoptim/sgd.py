r"""SGD: stochastic gradient descent, optionally with momentum (torch 2.13's ``torch.optim.SGD``)."""

from __future__ import annotations

from typing import Any

from ._backend import array_namespace, scalar
from ._checks import check_lr, check_nonnegative, check_weight_decay
from ._docs import append_doc, flags_doc
from ._primitives import add, add_, mul_
from .optimizer import Optimizer, _is_real
from .sparse import SparseGrad, add_sparse_

__all__ = ["SGD", "sgd_init", "sgd_step"]

_FLAGS_DOC = flags_doc(
    "SGD",
    ("foreach", "fused", "differentiable"),
    note="torch's ``fused=True`` kernel rounds differently; refoptim does not emulate it.",
    scalars=(),
)


def sgd_init(param: Any, momentum: float = 0) -> dict[str, Any]:
    """The state SGD starts a parameter with: none, ``{}``, with or without momentum.

    torch keeps ``momentum_buffer`` only when ``momentum != 0`` and creates it at the
    parameter's first step, as a copy of that step's gradient (so dampening skips the
    first step), not as zeros; :func:`sgd_step` does the same. ``momentum`` is accepted
    so the call reads like the other ``*_init`` functions; ``param`` must be an array.
    """
    array_namespace(param)  # an array of an Array API library, or TypeError
    return {}


def sgd_step(
    param: Any,
    grad: Any,
    state: dict[str, Any],
    *,
    lr: Any = 1e-3,
    momentum: float = 0,
    dampening: float = 0,
    weight_decay: Any = 0,
    nesterov: bool = False,
    maximize: bool = False,
) -> Any:
    r"""One SGD update of one parameter, in the order of torch's ``_single_tensor_sgd``.

    Returns the new parameter (the same array, updated in place, where it is writeable)
    and stores ``state["momentum_buffer"]`` when ``momentum != 0``. Works on immutable
    arrays too: keep what it returns and what it leaves in ``state``.

    .. math::
        g &\leftarrow -\nabla f(\theta) \text{ if maximize else } \nabla f(\theta) \\
        g &\leftarrow g + \lambda\,\theta \quad (\lambda \ne 0) \\
        b &\leftarrow g \text{ at the first step, else } \mu b + (1-\tau) g \quad (\mu \ne 0) \\
        g &\leftarrow g + \mu b \text{ if nesterov else } b \\
        \theta &\leftarrow \theta - \gamma g

    Quirk reproduced: the first momentum buffer is a copy of the gradient, so dampening
    does not act on the first step.

    ``grad`` may be a :class:`refoptim.SparseGrad` (see :class:`refoptim.SGD` for what torch allows
    with one).
    """
    if isinstance(grad, SparseGrad):
        return _sparse_sgd_step(
            param, grad, state, lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
            nesterov=nesterov, maximize=maximize,
        )
    xp = array_namespace(param)
    if maximize:
        grad = -grad
    if weight_decay != 0:
        grad = add(grad, param, alpha=scalar(weight_decay))
    if momentum != 0:
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = xp.asarray(grad, copy=True)
        else:
            buf = mul_(buf, momentum)
            buf = add_(buf, grad, alpha=1 - dampening)
        state["momentum_buffer"] = buf
        grad = add(grad, buf, alpha=momentum) if nesterov else buf
    return add_(param, grad, alpha=-scalar(lr))


_SPARSE_WEIGHT_DECAY_ERROR = "add(sparse, dense) is not supported. Use add(dense, sparse) instead."


def _sparse_sgd_step(
    param: Any,
    grad: SparseGrad,
    state: dict[str, Any],
    *,
    lr: Any,
    momentum: float,
    dampening: float,
    weight_decay: Any,
    nesterov: bool,
    maximize: bool,
) -> Any:
    r"""torch's ``_single_tensor_sgd`` with a sparse gradient, line by line.

    ``param.add_(g, alpha=-lr)`` applies every stored entry of ``g`` in storage order with
    a fused multiply-add, duplicates one after another (nothing is coalesced). With
    momentum the buffer is sparse too: a clone of the first gradient, then
    ``buf.mul_(momentum).add_(grad, alpha=1 - dampening)`` with torch's sparse-sparse
    addition (:meth:`SparseGrad.add`: a merge of the two entry lists, so the buffer's
    ``nnz`` grows with every step whose indices are not already in it, and is never
    coalesced); nesterov's ``grad.add(buf, alpha=momentum)`` is the same addition. A dense
    buffer (from earlier dense gradients) takes the sparse gradient with the dense-sparse
    addition, as torch's ``buf.add_(grad)`` does.
    """
    if weight_decay != 0:
        raise RuntimeError(_SPARSE_WEIGHT_DECAY_ERROR)
    if maximize:
        grad = -grad
    step: Any = grad
    if momentum != 0:
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = grad.clone()
        elif isinstance(buf, SparseGrad):
            buf = buf.mul_(momentum).add_(grad, alpha=1 - dampening)
        else:
            buf = add_sparse_(mul_(buf, momentum), grad, alpha=1 - dampening)
        state["momentum_buffer"] = buf
        if nesterov:
            if not isinstance(buf, SparseGrad):
                raise RuntimeError(_SPARSE_WEIGHT_DECAY_ERROR)
            step = grad.add(buf, alpha=momentum)
        else:
            step = buf
    if isinstance(step, SparseGrad):
        return add_sparse_(param, step, alpha=-scalar(lr))
    return add_(param, step, alpha=-scalar(lr))


class SGD(Optimizer):
    r"""Stochastic gradient descent, optionally with momentum (``torch.optim.SGD``).

    .. math::
        \begin{aligned}
        &\textbf{input}: \gamma \text{ (lr)}, \theta_0 \text{ (params)}, f(\theta)
            \text{ (objective)}, \lambda \text{ (weight decay)},
            \mu \text{ (momentum)}, \tau \text{ (dampening)}, \textit{nesterov}, \textit{maximize} \\
        &\textbf{for } t = 1, 2, \ldots \textbf{ do} \\
        &\quad g_t \leftarrow \nabla_\theta f_t(\theta_{t-1}),\ \text{negated if } \textit{maximize} \\
        &\quad \textbf{if } \lambda \ne 0:\ g_t \leftarrow g_t + \lambda \theta_{t-1} \\
        &\quad \textbf{if } \mu \ne 0: \\
        &\qquad b_t \leftarrow g_t \text{ if } t = 1 \text{ else } \mu b_{t-1} + (1 - \tau) g_t \\
        &\qquad g_t \leftarrow g_t + \mu b_t \text{ if } \textit{nesterov} \text{ else } b_t \\
        &\quad \theta_t \leftarrow \theta_{t-1} - \gamma g_t
        \end{aligned}

    Args:
        params (iterable): Parameters, ``(name, Parameter)`` pairs, or parameter-group dicts.
        lr (float or 0-d array): learning rate (default: 1e-3). A 0-d array is read as
            torch reads a tensor lr: at its own dtype's precision.
        momentum (float): momentum factor (default: 0).
        dampening (float): dampening for momentum (default: 0).
        weight_decay (float or 0-d array): L2 penalty added to the gradient (default: 0).
        nesterov (bool): Nesterov momentum; needs ``momentum > 0`` and ``dampening == 0``.
        maximize (bool): maximize the objective instead of minimizing (default: False).
        foreach (bool, optional): accepted for signature parity (see below).
        differentiable (bool): accepted for signature parity (see below).
        fused (bool, optional): accepted for signature parity (see below).

    State per parameter: ``momentum_buffer`` (same shape and dtype as the parameter),
    only when ``momentum != 0``; no state at all otherwise. With sparse gradients the
    buffer is a :class:`refoptim.SparseGrad`, as torch's is a sparse tensor.

    Torch quirks reproduced (each explained on the manual's page, "Reproducing torch
    exactly"):

    * first momentum buffer: a copy of the gradient, so ``dampening`` skips the first step;
    * Nesterov's ``g + momentum * b``: one rounding (fused ``add(alpha=)``);
    * complex parameters: complex arithmetic, not (real, imag) pairs;
    * sparse gradients: every stored entry added in storage order, never coalesced;
    * sparse momentum buffer: torch's uncoalesced sparse arithmetic, ``nnz`` growing;
    * sparse errors: torch's ``RuntimeError`` messages, raised before anything changes.
    """

    _supports_sparse_grad = True
    _elementwise = True  # the rule may run piece by piece (refoptim._fastpath)

    def _check_sparse_grad(self, p: Any, grad: SparseGrad, group: dict[str, Any]) -> None:
        if group["fused"]:
            raise RuntimeError("`_fused_sgd` does not support sparse gradients")
        weight_decay = group["weight_decay"]
        # torch's grad.add(param, alpha=weight_decay) parses alpha first: a weight_decay
        # that is not a number gets the option check's TypeError, not the sparse error
        if _is_real(weight_decay) and weight_decay != 0:
            raise RuntimeError(_SPARSE_WEIGHT_DECAY_ERROR)
        if group["momentum"] != 0 and group["nesterov"]:
            buf = self.state.get(p, {}).get("momentum_buffer")
            if buf is not None and not isinstance(buf, SparseGrad) and _is_real(group["momentum"]) and _is_real(group["dampening"]):
                # torch's grad.add(buf): a sparse gradient plus a dense buffer
                raise RuntimeError(_SPARSE_WEIGHT_DECAY_ERROR)

    def _check_dense_grad(self, p: Any, grad: Any, group: dict[str, Any]) -> None:
        if group["momentum"] != 0 and isinstance(self.state.get(p, {}).get("momentum_buffer"), SparseGrad):
            # torch's buf.mul_(momentum).add_(grad, alpha=1 - dampening): a sparse buffer
            # plus a dense gradient, once momentum and 1 - dampening were computed (an
            # option of the wrong type gets the options check's TypeError instead)
            if _is_real(group["momentum"]) and _is_real(group["dampening"]):
                raise RuntimeError(_SPARSE_WEIGHT_DECAY_ERROR)

    def __init__(
        self,
        params: Any,
        lr: Any = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: Any = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        # torch's SGD writes its checks ``x < 0.0``: NaN passes them
        check_lr(lr, allow_nan=True)
        check_nonnegative(momentum, "Invalid momentum value: {}", allow_nan=True)
        check_weight_decay(weight_decay, allow_nan=True)

        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "maximize": maximize,
            "foreach": foreach,
            "differentiable": differentiable,
            "fused": fused,
        }
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, defaults)

        self._check_fused(fused, foreach, differentiable)

    _setstate_options = ("nesterov", "maximize", "foreach", "differentiable", "fused")
    _setstate_values = {"fused": False}  # torch's SGD.__setstate__, not the signature's None

    def _options_unused(self, group: dict[str, Any]) -> tuple[str, ...]:
        # torch reads momentum and dampening only where a momentum buffer already exists
        # (buf.mul_(momentum).add_(grad, alpha=1 - dampening)), and momentum for nesterov
        try:
            if group["momentum"] == 0:
                return ("dampening",)
        except Exception:  # noqa: BLE001 - an option torch would compare alike: checked
            return ()
        has_buffer = any(
            self.state.get(p, {}).get("momentum_buffer") is not None
            for p in group["params"]
            if p.grad is not None
        )
        if has_buffer:
            return ()
        return ("dampening",) if group["nesterov"] else ("dampening", "momentum")

    def _step_group(self, group: dict[str, Any], pairs: list[tuple[Any, Any]]) -> None:
        """torch's quirk for a parameter listed twice (deprecated; both warn): torch reads
        every parameter's momentum buffer before the step, so a parameter without one gets
        a fresh buffer (a copy of its gradient) at each of its occurrences, and the last
        one is kept. Everything else: the base's step."""
        ids = [id(p) for p, _ in pairs]
        if group["momentum"] == 0 or len(set(ids)) == len(ids):
            return super()._step_group(group, pairs)
        fresh = {id(p) for p, _ in pairs if "momentum_buffer" not in self.state.get(p, {})}
        for p, grad in pairs:
            state = self.state.get(p) or self._init_state(p, group)
            if id(p) in fresh:
                state = {k: v for k, v in state.items() if k != "momentum_buffer"}
            self._update_plain(p, grad, state, group)
        return None

    def _update(self, param: Any, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> Any:
        return sgd_step(
            param,
            grad,
            state,
            lr=group["lr"],
            momentum=group["momentum"],
            dampening=group["dampening"],
            weight_decay=group["weight_decay"],
            nesterov=group["nesterov"],
            maximize=group["maximize"],
        )


SGD.__doc__ = append_doc(SGD.__doc__, _FLAGS_DOC)
