r"""SGD: stochastic gradient descent, optionally with momentum (torch 2.13's ``torch.optim.SGD``)."""

from __future__ import annotations

from typing import Any

from ._backend import array_namespace, is_array, numel, scalar
from ._primitives import add, add_, mul_
from .optimizer import Optimizer
from .sparse import SparseGrad, add_sparse_

__all__ = ["SGD", "sgd_init", "sgd_step"]

_FLAGS_DOC = r"""
    ``foreach``, ``fused`` and ``differentiable`` pick one of torch's implementations;
    refoptim accepts them so signatures match (with torch's checks: ``fused`` with
    ``differentiable`` or with ``foreach=True`` raises ``RuntimeError``) and always
    computes torch's single-tensor (``foreach=False``) path, whose order of operations is
    the one it reproduces. torch's ``fused=True`` kernel rounds differently; refoptim does
    not emulate it.
"""


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

    ``grad`` may be a :class:`refoptim.SparseGrad` (see :class:`SGD` for what torch allows
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
        foreach, differentiable, fused: accepted for signature parity (see below).

    State per parameter: ``momentum_buffer`` (same shape and dtype as the parameter),
    only when ``momentum != 0``; no state at all otherwise. With sparse gradients the
    buffer is a :class:`refoptim.SparseGrad`, as torch's is a sparse tensor (see below).

    Torch quirks reproduced:

    * the first momentum buffer is the gradient itself (copied), so ``dampening`` is
      skipped on the first step;
    * with ``nesterov``, the step uses ``g + momentum * b``, computed with one rounding
      (torch's fused ``add(alpha=)``);
    * complex parameters are updated in complex arithmetic (SGD does not view them as
      real pairs).

    Sparse gradients (:class:`refoptim.SparseGrad`) are accepted, as torch accepts them:
    the step is ``param.add_(grad, alpha=-lr)`` with torch's CPU dense-plus-sparse kernel,
    which applies every stored entry in storage order with one fused multiply-add and does
    *not* coalesce: an index stored twice moves the parameter twice, each step rounded,
    which can differ in the last bit from one step with the summed gradient. Without
    duplicates and momentum the result is bit for bit the dense step with the densified
    gradient.

    With momentum and sparse gradients torch keeps a *sparse* momentum buffer, and so does
    refoptim (``state["momentum_buffer"]`` a :class:`refoptim.SparseGrad`, carried as such
    by ``state_dict()`` and ``load_state_dict()``), with torch 2.13's sparse arithmetic
    reproduced bit for bit, indices in the same order:

    * the first buffer is a clone of the gradient (its entries, uncoalesced);
    * ``buf.mul_(momentum)`` scales the values; torch's in-place product also clears the
      ``is_coalesced()`` flag when the buffer holds two entries or more;
    * ``buf.add_(grad, alpha=1 - dampening)`` and nesterov's ``grad.add(buf,
      alpha=momentum)`` are torch's sparse-sparse addition (:meth:`SparseGrad.add`): a
      merge walk over both entry lists in storage order that combines equal heads with a
      BLAS ``axpy`` and keeps every other entry. Nothing is ever coalesced, so the
      buffer's ``nnz`` grows with nearly every step (past the parameter's size: about 300
      entries for a 12-row table after 50 steps of 1 to 33 entries each), and each step
      costs time in proportion to it, in torch and here;
    * a parameter whose buffer is dense (earlier dense gradients) adds the sparse gradient
      into it with the dense-plus-sparse kernel and steps densely.

    As in torch, ``weight_decay != 0`` with a sparse gradient raises ``RuntimeError:
    add(sparse, dense) is not supported. Use add(dense, sparse) instead.``; so does a
    dense gradient for a parameter whose momentum buffer is sparse, and a sparse gradient
    with ``nesterov`` for one whose buffer is dense; ``fused=True`` raises
    ``RuntimeError: `_fused_sgd` does not support sparse gradients``. Unlike torch, these
    errors come before any parameter or buffer changes.
    """

    _supports_sparse_grad = True
    _elementwise = True  # the rule may run piece by piece (refoptim._fastpath)

    def _check_sparse_grad(self, p: Any, grad: SparseGrad, group: dict[str, Any]) -> None:
        if group["fused"]:
            raise RuntimeError("`_fused_sgd` does not support sparse gradients")
        if group["weight_decay"] != 0:
            raise RuntimeError(_SPARSE_WEIGHT_DECAY_ERROR)
        if group["momentum"] != 0 and group["nesterov"]:
            buf = self.state.get(p, {}).get("momentum_buffer")
            if buf is not None and not isinstance(buf, SparseGrad):
                # torch's grad.add(buf): a sparse gradient plus a dense buffer
                raise RuntimeError(_SPARSE_WEIGHT_DECAY_ERROR)

    def _check_dense_grad(self, p: Any, grad: Any, group: dict[str, Any]) -> None:
        if group["momentum"] != 0 and isinstance(self.state.get(p, {}).get("momentum_buffer"), SparseGrad):
            # torch's buf.add_(grad): a sparse buffer plus a dense gradient
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
        if is_array(lr) and numel(lr) != 1:
            raise ValueError("Tensor lr must be 1-element")
        if scalar(lr) < 0.0:
            raise ValueError(f"Invalid learning rate: {scalar(lr)}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if scalar(weight_decay) < 0.0:
            raise ValueError(f"Invalid weight_decay value: {scalar(weight_decay)}")

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

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("nesterov", False)
            group.setdefault("maximize", False)
            group.setdefault("foreach", None)
            group.setdefault("differentiable", False)
            group.setdefault("fused", False)

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


SGD.__doc__ = (SGD.__doc__ or "") + _FLAGS_DOC
