"""The constructor checks the optimizers share, with torch 2.13's exception types and messages.

torch writes each check out in each optimizer's ``__init__``; refoptim writes it once here,
and each optimizer calls the checks in torch's order for that optimizer (which differs:
Adam checks ``eps`` before the betas, RMSprop ``momentum`` before ``weight_decay``, SGD
lets NaN through). The message of each call is torch's text, so it can be found in the
module that raises it.

A value is compared and shown as torch compares and shows a 1-element tensor: as its
Python number (``f"{tensor}"`` of a 0-d tensor is ``f"{tensor.item()}"``), so a float32
array ``-0.1`` reads ``-0.10000000149011612``, as in torch.
"""

from __future__ import annotations

from typing import Any

from ._backend import is_array, numel, scalar

__all__ = ["check_betas", "check_eps", "check_lr", "check_nonnegative", "check_tensor", "check_weight_decay"]


def check_tensor(name: str, value: Any, foreach: bool | None = None, capturable: bool = False) -> None:
    """torch's checks on a hyper-parameter given as an array (a tensor in torch): refused
    with ``foreach=True`` and ``capturable=False`` (Adam checks it for ``lr`` and the
    betas; without ``foreach`` it is skipped), then it must hold one element. Anything else passes."""
    if is_array(value):
        if foreach and not capturable:
            raise ValueError(f"{name} as a Tensor is not supported for capturable=False and foreach=True")
        if numel(value) != 1:
            raise ValueError(f"Tensor {name} must be 1-element")


def check_nonnegative(value: Any, message: str, *, positive: bool = False, allow_nan: bool = False) -> None:
    """``ValueError(message.format(value))`` unless ``value >= 0``: torch's
    ``if not 0.0 <= value``. ``positive``: ``if not 0.0 < value`` (SparseAdam's lr and
    eps). ``allow_nan``: ``if value < 0.0`` (SGD's checks), which lets NaN through."""
    value = scalar(value)
    if allow_nan:
        bad = value < 0.0
    elif positive:
        bad = not 0.0 < value
    else:
        bad = not 0.0 <= value
    if bad:
        raise ValueError(message.format(value))


def check_lr(
    lr: Any,
    message: str = "Invalid learning rate: {}",
    *,
    foreach: bool | None = None,
    capturable: bool = False,
    positive: bool = False,
    allow_nan: bool = False,
) -> None:
    """torch's learning-rate checks: an array ``lr`` (:func:`check_tensor`, with
    ``foreach``/``capturable`` where torch checks them), then its sign
    (:func:`check_nonnegative`); ``message`` is torch's for a negative ``lr``."""
    check_tensor("lr", lr, foreach, capturable)
    check_nonnegative(lr, message, positive=positive, allow_nan=allow_nan)


def check_eps(eps: Any, *, positive: bool = False) -> None:
    """torch's ``Invalid epsilon value`` check (``positive``: SparseAdam's ``eps > 0``)."""
    check_nonnegative(eps, "Invalid epsilon value: {}", positive=positive)


def check_betas(betas: Any) -> None:
    """torch's ``0 <= beta < 1`` check of ``betas[0]``, then of ``betas[1]``."""
    for index in (0, 1):
        beta = scalar(betas[index])
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"Invalid beta parameter at index {index}: {beta}")


def check_weight_decay(
    weight_decay: Any, message: str = "Invalid weight_decay value: {}", *, allow_nan: bool = False
) -> None:
    """torch's weight-decay check; ``message`` where torch words it otherwise (Muon's,
    Adafactor's), ``allow_nan`` as :func:`check_nonnegative` (SGD's)."""
    check_nonnegative(weight_decay, message, allow_nan=allow_nan)
