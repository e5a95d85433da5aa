r"""Stochastic Weight Averaging and EMA without torch: torch 2.13's ``torch.optim.swa_utils``.

- :class:`SWALR`: anneals each group's lr to a fixed ``swa_lr`` (a chainable
  :class:`~refoptim.lr_scheduler.LRScheduler`, torch's formula in torch's float order).
- :func:`get_ema_multi_avg_fn`, :func:`get_swa_multi_avg_fn`, :func:`get_ema_avg_fn`,
  :func:`get_swa_avg_fn`: torch's averaging functions, rounding as torch's CPU kernels round.
- :class:`AveragedModel`: torch's ``AveragedModel`` over a list of :class:`~refoptim.Parameter`
  s instead of an ``nn.Module`` (refoptim has no modules: no buffers, no ``forward``, and
  therefore no ``update_bn``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from copy import deepcopy
from typing import Any, Literal

from ._backend import array_namespace, assign, is_array
from ._primitives import div, lerp_
from .lr_scheduler import LRScheduler, _format_param
from .optimizer import Optimizer
from .parameter import Parameter

__all__ = [
    "SWALR",
    "AveragedModel",
    "get_ema_avg_fn",
    "get_ema_multi_avg_fn",
    "get_swa_avg_fn",
    "get_swa_multi_avg_fn",
]


def _is_inexact(xp: Any, x: Any) -> bool:
    """torch's ``is_floating_point(x) or is_complex(x)``."""
    return xp.isdtype(x.dtype, ("real floating", "complex floating"))


def _check_decay(decay: float) -> None:
    if decay < 0.0 or decay > 1.0:
        raise ValueError(f"Invalid decay value {decay} provided. Please provide a value in [0,1] range.")


def _default_float(xp: Any) -> Any:
    """torch's default dtype (float32): what ``int_tensor * python_float`` produces."""
    return xp.float32


def _copy_into(old: Any, new: Any) -> Any:
    """torch's ``old.copy_(new)``: ``new`` cast to ``old``'s dtype (float to int truncates)."""
    xp = array_namespace(old)
    if new.dtype != old.dtype:
        new = xp.astype(new, old.dtype)
    return assign(old, new)


def get_ema_multi_avg_fn(decay: float = 0.999) -> Callable[[list[Any], list[Any], Any], list[Any]]:
    r"""Get the function applying exponential moving average (EMA) across multiple params.

    The EMA is computed as:

    .. math::
        W_0^{\text{EMA}} = W_0^{\text{model}}

    .. math::
        W_{t+1}^{\text{EMA}} = \text{decay} \times W_t^{\text{EMA}}
            + (1 - \text{decay}) \times W_{t+1}^{\text{model}}

    Args:
        decay (float): decay rate in ``[0, 1]`` (default: 0.999); else ``ValueError``.

    Returns:
        ``ema_update(ema_param_list, current_param_list, num_averaged)``, which updates the
        arrays of ``ema_param_list`` in place and returns the list of updated arrays (on
        immutable arrays these are new arrays: keep what it returns).

    Rounding: torch calls ``torch._foreach_lerp_(ema, current, 1 - decay)``, i.e.
    refoptim's ``_primitives.lerp_`` with weight ``1 - decay`` (a fused multiply-add). For
    integer arrays torch computes ``ema * decay + current * (1 - decay)`` in float32 and copies
    the result back (truncating); so does this function.
    """
    _check_decay(decay)

    def ema_update(ema_param_list: list[Any], current_param_list: list[Any], _: Any) -> list[Any]:
        xp = array_namespace(ema_param_list[0])
        out = []
        if _is_inexact(xp, ema_param_list[0]):
            for p_ema, p_model in zip(ema_param_list, current_param_list, strict=True):
                out.append(lerp_(p_ema, p_model, 1 - decay))
        else:
            f = _default_float(xp)
            for p_ema, p_model in zip(ema_param_list, current_param_list, strict=True):
                new = xp.astype(p_ema, f) * decay + xp.astype(p_model, f) * (1 - decay)
                out.append(_copy_into(p_ema, new))
        return out

    return ema_update


def _swa_weight(xp: Any, num_averaged: Any) -> float:
    """torch's ``1 / (num_averaged + 1)``: float32-rounded when ``num_averaged`` is an
    (int64) array, as torch's true division of an integer tensor gives a float32 tensor."""
    if is_array(num_averaged):
        nx = array_namespace(num_averaged)
        one = nx.asarray(1.0, dtype=nx.float32)
        return float(one / nx.astype(num_averaged + 1, nx.float32))
    return 1 / (num_averaged + 1)


def _copy(x: Any) -> Any:
    """A new array with ``x``'s values (``deepcopy`` for anything that is not an array)."""
    return array_namespace(x).asarray(x, copy=True) if is_array(x) else deepcopy(x)


def get_swa_multi_avg_fn() -> Callable[[list[Any], list[Any], Any], list[Any]]:
    r"""Get the function applying stochastic weight average (SWA) across multiple params.

    .. math::
        W^{\text{SWA}} \leftarrow W^{\text{SWA}}
            + \frac{W^{\text{model}} - W^{\text{SWA}}}{n + 1}

    where :math:`n` is ``num_averaged``, the number of models averaged so far.

    Returns:
        ``swa_update(averaged_param_list, current_param_list, num_averaged)``, updating in
        place and returning the list of updated arrays.

    Rounding (torch's, reproduced): for floating/complex arrays torch calls
    ``torch._foreach_lerp_(averaged, current, 1 / (num_averaged + 1))``. When
    ``num_averaged`` is a tensor (as :class:`AveragedModel` passes it, int64) the weight is a
    **float32** tensor, so even float64 parameters are lerped with a float32-rounded weight
    (``1/3`` becomes ``0.3333333432674408``). For integer arrays: ``diff = current -
    averaged`` then ``averaged += diff / (num_averaged + 1)`` (a tensor ``num_averaged``) or
    ``averaged += (1.0 / (num_averaged + 1)) * diff`` (an int), cast back to the integer
    dtype.
    """

    def swa_update(averaged_param_list: list[Any], current_param_list: list[Any], num_averaged: Any) -> list[Any]:
        xp = array_namespace(averaged_param_list[0])
        out = []
        if _is_inexact(xp, averaged_param_list[0]):
            w = _swa_weight(xp, num_averaged)
            for p_avg, p_model in zip(averaged_param_list, current_param_list, strict=True):
                out.append(lerp_(p_avg, p_model, w))
        else:
            f = _default_float(xp)
            for p_avg, p_model in zip(averaged_param_list, current_param_list, strict=True):
                diff = p_model - p_avg
                if is_array(num_averaged):
                    new = xp.astype(p_avg, f) + div(xp.astype(diff, f), xp.astype(num_averaged + 1, f))
                else:
                    new = xp.astype(p_avg, f) + (1.0 / (num_averaged + 1)) * xp.astype(diff, f)
                out.append(_copy_into(p_avg, new))
        return out

    return swa_update


def get_ema_avg_fn(decay: float = 0.999) -> Callable[[Any, Any, Any], Any]:
    r"""Get the function applying exponential moving average (EMA) to a single param.

    .. math::
        W_{t+1}^{\text{EMA}} = \text{decay} \times W_t^{\text{EMA}}
            + (1 - \text{decay}) \times W_{t+1}^{\text{model}}

    Args:
        decay (float): decay rate in ``[0, 1]`` (default: 0.999); else ``ValueError``.

    Returns:
        ``ema_update(ema_param, current_param, num_averaged)`` returning a **new** array
        ``decay * ema_param + (1 - decay) * current_param``: two scalar products (the Python
        scalars rounded to float32 for float32 arrays, as torch's kernels do) and an
        unfused add, each rounded, exactly as torch's CPU evaluation.
    """
    _check_decay(decay)

    def ema_update(ema_param: Any, current_param: Any, num_averaged: Any) -> Any:
        xp = array_namespace(ema_param)
        if not _is_inexact(xp, ema_param):
            f = _default_float(xp)
            ema_param, current_param = xp.astype(ema_param, f), xp.astype(current_param, f)
        return decay * ema_param + (1 - decay) * current_param

    return ema_update


def get_swa_avg_fn() -> Callable[[Any, Any, Any], Any]:
    r"""Get the function applying stochastic weight average (SWA) to a single param.

    .. math::
        W^{\text{SWA}}_{\text{new}} = W^{\text{SWA}}
            + \frac{W^{\text{model}} - W^{\text{SWA}}}{n + 1}

    Returns:
        ``swa_update(averaged_param, current_param, num_averaged)`` returning a **new** array
        ``averaged + (current - averaged) / (num_averaged + 1)``: a subtraction, a true
        division (not a multiplication by the reciprocal) and an addition, each rounded. An
        int64 0-d ``num_averaged`` does not change the parameter's dtype (torch's
        promotion of a 0-d tensor); it is converted to that dtype before dividing.
    """

    def swa_update(averaged_param: Any, current_param: Any, num_averaged: Any) -> Any:
        xp = array_namespace(averaged_param)
        dtype = averaged_param.dtype if _is_inexact(xp, averaged_param) else _default_float(xp)
        if is_array(num_averaged):
            denom = xp.astype(xp.asarray(num_averaged + 1), dtype)
        else:
            denom = num_averaged + 1
        diff = current_param - averaged_param
        if not _is_inexact(xp, averaged_param):
            return xp.astype(averaged_param, dtype) + div(xp.astype(diff, dtype), denom)
        return averaged_param + div(diff, denom)

    return swa_update


def _arrays(params: Iterable[Any]) -> list[Any]:
    """The arrays of a list of Parameters (or of arrays)."""
    return [p.data if isinstance(p, Parameter) else p for p in params]


class AveragedModel:
    r"""Running averages (SWA or EMA) of a list of parameters: torch's ``AveragedModel``
    without a module.

    torch's ``torch.optim.swa_utils.AveragedModel`` deep-copies an ``nn.Module`` and
    averages its parameters. refoptim has no modules, so this class holds deep copies of a
    list of :class:`~refoptim.Parameter` s (``self.params``, also reachable as
    ``self.module``) and averages them with the same logic. Differences from torch: no
    ``forward``, no ``device`` argument, no buffers (``use_buffers`` is accepted and, as
    there are no buffers, changes nothing), no BatchNorm and so no ``update_bn``.

    With :math:`n` = ``n_averaged``, the number of models averaged so far, the default
    (SWA) update is an equally weighted average:

    .. math::
        W^{\text{SWA}}_{0} = W^{\text{model}}_{0}, \qquad
        W^{\text{SWA}} \leftarrow W^{\text{SWA}} + \frac{W^{\text{model}} - W^{\text{SWA}}}{n + 1}

    and with :func:`get_ema_multi_avg_fn` (EMA):

    .. math::
        W^{\text{EMA}} \leftarrow \text{decay}\, W^{\text{EMA}} + (1 - \text{decay})\, W^{\text{model}}

    Args:
        params (iterable of Parameter): the parameters to average (deep-copied).
        multi_avg_fn (callable, optional): ``fn(averaged_list, current_list, n_averaged)``
            updating the averaged arrays in place (it should return the list of updated
            arrays, as refoptim's do; needed for immutable arrays).
        avg_fn (callable, optional): ``fn(averaged, current, n_averaged)`` returning the new
            averaged array, called per parameter.
        use_buffers (bool): accepted for torch's signature; no effect (no buffers).

    Only one of ``avg_fn`` and ``multi_avg_fn`` may be given (``AssertionError``, torch's
    message). ``n_averaged`` is a 0-d int64 array, as torch's buffer.

    :meth:`update_parameters` follows torch: the first call (``n_averaged == 0``) copies
    the current values; later calls use ``multi_avg_fn`` if given, else ``avg_fn`` if given,
    else the default SWA. For the default, torch picks by device: on CPU it applies
    :func:`get_swa_avg_fn` per parameter (a true division); on CUDA it uses
    :func:`get_swa_multi_avg_fn` (a lerp with a float32-rounded weight). refoptim follows
    torch's **CPU** path on every backend. Then ``n_averaged`` increases by one.

    Example:
        >>> import numpy as np
        >>> import refoptim
        >>> from refoptim.swa_utils import AveragedModel
        >>> w = refoptim.Parameter(np.array([0.0, 3.0]))
        >>> swa = AveragedModel([w])
        >>> swa.update_parameters([w]); w.data[:] = [3.0, 0.0]; swa.update_parameters([w])
        >>> swa.params[0].data.tolist(), int(swa.n_averaged)
        ([1.5, 1.5], 2)
    """

    def __init__(
        self,
        params: Iterable[Any],
        multi_avg_fn: Callable[[list[Any], list[Any], Any], Any] | None = None,
        avg_fn: Callable[[Any, Any, Any], Any] | None = None,
        use_buffers: bool = False,
    ) -> None:
        if avg_fn is not None and multi_avg_fn is not None:
            raise AssertionError("Only one of avg_fn and multi_avg_fn should be provided")
        params = list(params)
        # torch deep-copies the module; here each array is copied through its namespace
        # (ndonnx arrays cannot be deep-copied), with the parameter's name.
        self.params: list[Parameter] = [
            Parameter(_copy(p.data), name=p.name) if isinstance(p, Parameter) else Parameter(_copy(p)) for p in params
        ]
        """The averaged parameters, deep copies of those given (torch's ``module``)."""
        xp = array_namespace(self.params[0].data) if self.params else None
        if xp is None:
            import numpy as xp
        self.n_averaged = xp.asarray(0, dtype=xp.int64)
        """The number of models averaged so far, a 0-d int64 array (torch's buffer)."""
        self.avg_fn = avg_fn
        self.multi_avg_fn = multi_avg_fn
        self.use_buffers = use_buffers

    @property
    def module(self) -> list[Parameter]:
        """The averaged parameters, :attr:`params` (torch's ``AveragedModel.module``)."""
        return self.params

    def parameters(self) -> list[Parameter]:
        """The averaged parameters, like ``nn.Module.parameters()``."""
        return list(self.params)

    def update_parameters(self, params: Iterable[Any]) -> None:
        """Average the current values of ``params`` (Parameters or arrays, in the order given
        at construction) into :attr:`params`, then increase :attr:`n_averaged` by one.

        The first call copies; later calls apply ``multi_avg_fn`` to the lists (grouped by
        dtype, as torch groups by device and dtype), or ``avg_fn`` per parameter, or the
        default SWA average (torch's CPU path: :func:`get_swa_avg_fn` per parameter). Like
        torch's ``zip(..., strict=False)``, extra parameters on either side are ignored.
        """
        self_params = self.params
        model_arrays = _arrays(params)
        pairs = list(zip(self_params, model_arrays))
        copy_param = bool(self.n_averaged == 0)
        if copy_param:
            for p_avg, m in pairs:
                p_avg.data = _copy_into(p_avg.data, m)
        if self.n_averaged > 0:
            if self.multi_avg_fn is not None or self.avg_fn is None:
                groups: dict[Any, list[tuple[Parameter, Any]]] = {}
                for p_avg, m in pairs:
                    groups.setdefault(str(p_avg.data.dtype), []).append((p_avg, m))
                for group in groups.values():
                    avg_list = [p.data for p, _ in group]
                    model_list = [m for _, m in group]
                    if self.multi_avg_fn:
                        result = self.multi_avg_fn(avg_list, model_list, self.n_averaged)
                        if isinstance(result, (list, tuple)) and len(result) == len(group):
                            for (p, _), new in zip(group, result):
                                p.data = _copy_into(p.data, new)
                    else:
                        avg_fn = get_swa_avg_fn()
                        for p, m in group:
                            p.data = _copy_into(p.data, avg_fn(p.data, m, self.n_averaged))
            else:
                for p_avg, m in pairs:
                    p_avg.data = _copy_into(p_avg.data, self.avg_fn(p_avg.data, m, self.n_averaged))
        self.n_averaged = self.n_averaged + 1


class SWALR(LRScheduler):
    r"""Anneals the learning rate in each parameter group to a fixed value (torch's ``SWALR``).

    Meant for Stochastic Weight Averaging (see :class:`AveragedModel`). At step :math:`s`
    (``_step_count - 1``; :math:`\max(1, s)` when ``anneal_epochs == 0``), with
    :math:`T` = ``max(1, anneal_epochs)``, the chainable update is

    .. math::
        t_{\text{prev}} = \operatorname{clip}\!\left(\tfrac{s - 1}{T}, 0, 1\right), \quad
        t = \operatorname{clip}\!\left(\tfrac{s}{T}, 0, 1\right), \quad
        \alpha(t) = \begin{cases} \frac{1 - \cos(\pi t)}{2} & \text{cos} \\ t & \text{linear}\end{cases}

    .. math::
        \eta_{\text{prev}} = \begin{cases}\eta_{\text{swa}} & \alpha(t_{\text{prev}}) = 1 \\
            \frac{\eta - \alpha(t_{\text{prev}})\, \eta_{\text{swa}}}{1 - \alpha(t_{\text{prev}})}
            & \text{otherwise}\end{cases}, \qquad
        \eta_{\text{new}} = \eta_{\text{swa}}\, \alpha(t) + \eta_{\text{prev}}\, (1 - \alpha(t))

    where :math:`\eta` is the group's current ``lr``: the previous step's interpolation is
    undone and redone one step further, so SWALR composes with other schedulers. Float
    operations are torch's, in torch's order, so the lrs equal torch's exactly.

    Args:
        optimizer (Optimizer): wrapped optimizer.
        swa_lr (float or list): the SWA learning rate for all groups, or one per group
            (``ValueError`` on a length mismatch); stored as ``group["swa_lr"]``.
        anneal_epochs (int): number of annealing epochs (default: 10); an int ``>= 0`` else
            ``ValueError``.
        anneal_strategy (str): ``"cos"`` (default) or ``"linear"``; else ``ValueError``.
        last_epoch (int): the index of the last epoch (default: -1).

    Calling :meth:`get_lr` outside :meth:`~refoptim.lr_scheduler.LRScheduler.step` warns (``UserWarning``) as torch does.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        swa_lr: float | list[float],
        anneal_epochs: int = 10,
        anneal_strategy: Literal["cos", "linear"] = "cos",
        last_epoch: int = -1,
    ) -> None:
        swa_lrs = _format_param("swa_lr", optimizer, swa_lr)
        for swa_lr_, group in zip(swa_lrs, optimizer.param_groups, strict=True):
            group["swa_lr"] = swa_lr_
        if anneal_strategy not in ["cos", "linear"]:
            raise ValueError(f"anneal_strategy must be one of 'cos' or 'linear', instead got {anneal_strategy}")
        self._set_anneal_func(anneal_strategy)
        if not isinstance(anneal_epochs, int) or anneal_epochs < 0:
            raise ValueError(f"anneal_epochs must be equal or greater than 0, got {anneal_epochs}")
        self.anneal_epochs = anneal_epochs
        super().__init__(optimizer, last_epoch)

    @staticmethod
    def _linear_anneal(t: float) -> float:
        return t

    @staticmethod
    def _cosine_anneal(t: float) -> float:
        return (1 - math.cos(math.pi * t)) / 2

    @staticmethod
    def _get_initial_lr(lr: Any, swa_lr: Any, alpha: float) -> Any:
        if alpha == 1:
            return swa_lr
        return (lr - alpha * swa_lr) / (1 - alpha)

    def get_lr(self) -> list[Any]:
        """The next learning rate of each group: the interpolation between ``group["lr"]``
        and ``group["swa_lr"]`` one step further (see the class docstring); ``swa_lr`` once
        ``anneal_epochs`` are done. Use
        :meth:`~refoptim.lr_scheduler.LRScheduler.get_last_lr` to read the current lrs."""
        if not self._get_lr_called_within_step:
            warnings.warn(
                "To get the last learning rate computed by the scheduler, please use `get_last_lr()`.",
                UserWarning,
                stacklevel=2,
            )
        step = self._step_count - 1
        if self.anneal_epochs == 0:
            step = max(1, step)
        prev_t = max(0, min(1, (step - 1) / max(1, self.anneal_epochs)))
        prev_alpha = self.anneal_func(prev_t)
        prev_lrs = [
            self._get_initial_lr(group["lr"], group["swa_lr"], prev_alpha) for group in self.optimizer.param_groups
        ]
        t = max(0, min(1, step / max(1, self.anneal_epochs)))
        alpha = self.anneal_func(t)
        return [
            group["swa_lr"] * alpha + lr * (1 - alpha)
            for group, lr in zip(self.optimizer.param_groups, prev_lrs, strict=True)
        ]

    def _set_anneal_func(self, anneal_strategy: str) -> None:
        self._anneal_strategy = anneal_strategy
        if anneal_strategy == "cos":
            self.anneal_func = self._cosine_anneal
        else:
            self.anneal_func = self._linear_anneal

    def state_dict(self) -> dict[str, Any]:
        """The scheduler's state: every entry of ``self.__dict__`` except the optimizer and
        ``anneal_func`` (torch's layout)."""
        return {key: value for key, value in self.__dict__.items() if key not in ("optimizer", "anneal_func")}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load the scheduler's state (an object returned by :meth:`state_dict`) and restore
        ``anneal_func`` from the saved strategy."""
        self.__dict__.update(state_dict)
        self._set_anneal_func(self._anneal_strategy)
