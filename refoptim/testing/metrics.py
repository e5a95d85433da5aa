"""Error metrics between refoptim's arrays and torch's, measured on the host in NumPy.

``ulp_error`` is the one-step figure of the design: the difference between two results of
one step, in units in the last place (ULP) of the operands' scale, element by element.
The scale of an element is the largest magnitude among the array before the step, the
array after it (torch's) and the gradient; so a result that cancels to nearly zero is not
judged by its own tiny ULP, and a result of normal size is judged by its own.
Complex arrays are compared as (real, imag) pairs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["as_real", "relative_error", "step_relative_error", "ulp_error", "update_ulp_error"]


def as_real(x: Any) -> np.ndarray:
    """A NumPy array, complex viewed as real pairs on a last axis of size 2."""
    a = np.asarray(x)
    if np.iscomplexobj(a):
        return np.stack([a.real, a.imag], axis=-1)
    return a


def ulp_error(ours: Any, theirs: Any, *operands: Any) -> float:
    """Worst ``|ours - theirs|`` over all elements, in ULP of each element's scale.

    Args:
        ours, theirs: the two results (same shape and dtype).
        operands: arrays whose magnitudes set the scale (the value before the step, the
            gradient); operands whose shape differs from the result's are ignored.

    NaN against NaN and equal infinities count as agreement; any other disagreement
    involving a non-finite value is infinite error.
    """
    a, b = as_real(ours), as_real(theirs)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    dtype = a.dtype
    scale = np.abs(b)
    for op in operands:
        o = as_real(op)
        if o.shape == a.shape:
            scale = np.maximum(scale, np.abs(o).astype(dtype))
    scale = np.maximum(scale, np.abs(a))
    both_nan = np.isnan(a) & np.isnan(b)
    equal = (a == b) | both_nan
    finite = np.isfinite(a) & np.isfinite(b)
    if np.any(~equal & ~finite):
        return float("inf")
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    ulp = np.spacing(scale.astype(dtype)).astype(np.float64)
    err = np.where(equal, 0.0, diff / ulp)
    return float(np.max(err))


def relative_error(ours: Any, theirs: Any) -> float:
    """``max|ours - theirs| / max|theirs|`` (absolute when ``theirs`` is all zero)."""
    a, b = as_real(ours).astype(np.float64), as_real(theirs).astype(np.float64)
    if a.size == 0:
        return 0.0
    if np.array_equal(a, b, equal_nan=True):
        return 0.0
    denom = float(np.max(np.abs(b)))
    diff = float(np.max(np.abs(a - b)))
    if not np.isfinite(diff):
        return float("inf")
    return diff / denom if denom > 0 else diff


def step_relative_error(ours: Any, theirs: Any, *operands: Any) -> float:
    """Worst ``|ours - theirs|`` over the largest magnitude among ``theirs``, ``ours`` and
    the operands of the same shape: the one-step figure of the optimizers that are not
    elementwise (see ``thresholds.ONE_STEP_REL``).

    NaN against NaN and equal infinities count as agreement; any other disagreement
    involving a non-finite value is infinite error. All-zero operands give the absolute error.
    """
    a, b = as_real(ours), as_real(theirs)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    both_nan = np.isnan(a) & np.isnan(b)
    equal = (a == b) | both_nan
    if np.all(equal):
        return 0.0
    if np.any(~equal & ~(np.isfinite(a) & np.isfinite(b))):
        return float("inf")
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    scale = max(float(np.max(np.abs(a64))), float(np.max(np.abs(b64))))
    for op in operands:
        o = as_real(op)
        if o.shape == a.shape and o.size:
            scale = max(scale, float(np.max(np.abs(o.astype(np.float64)))))
    diff = float(np.max(np.where(equal, 0.0, np.abs(a64 - b64))))
    return diff / scale if scale > 0 else diff


def update_ulp_error(ours: Any, theirs: Any, before: Any) -> float:
    r"""Worst error of a step's *update* (the parameter after minus the parameter before), in
    ULP of the update's own magnitude: the largest update of the array.

    :func:`ulp_error` judges a result at the operands' scale: a parameter of magnitude 1
    moved by 1e-6 sets a unit of 1.2e-7 in float32, so an update 10% wrong passes it. This
    figure judges the same two results at the scale of the update:

    .. math::
        e = \max_i \frac{\max\bigl(0,\; |x'_{ours,i} - x'_{theirs,i}| - u(x'_i)\bigr)}{u(\Delta)},
        \qquad \Delta = \max_i \max(|x'_{ours,i} - x_i|,\; |x'_{theirs,i} - x_i|),

    where :math:`x` is the parameter before, :math:`x'` after, and :math:`u(y)` the spacing
    of the dtype at :math:`|y|` (``np.spacing``).

    - The allowance :math:`u(x'_i)` is the final rounding of the parameter: two updates
      that differ in their last bit can still round to neighbouring parameters, one unit of
      :math:`x'` apart, however small the update. An update error smaller than a unit of
      the parameter is not visible in the parameter at all.
    - The scale is the array's largest update, not each element's own: an element whose
      update cancels (a gradient nearly balanced by weight decay) has an update far smaller
      than the rounding errors of its terms, and would be judged by the ULP of a
      cancellation no correct implementation controls (measured: 128 ULP per element for a
      faithful float32 reordering of Adam with weight decay).

    Differences are taken in float64 (exact for float32 operands). Equal results (NaN
    against NaN, equal infinities) agree; any other disagreement involving a non-finite
    value is infinite. Complex arrays are compared as (real, imag) pairs.
    """
    a, b, x = as_real(ours), as_real(theirs), as_real(before)
    if a.shape != b.shape or x.shape != a.shape:
        raise ValueError(f"shapes differ: {a.shape}, {b.shape}, before {x.shape}")
    if a.size == 0:
        return 0.0
    dtype = b.dtype
    both_nan = np.isnan(a) & np.isnan(b)
    equal = (a == b) | both_nan
    if np.all(equal):
        return 0.0
    if np.any(~equal & ~(np.isfinite(a) & np.isfinite(b) & np.isfinite(x))):
        return float("inf")
    a64, b64, x64 = a.astype(np.float64), b.astype(np.float64), x.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        finite = np.isfinite(a64) & np.isfinite(b64) & np.isfinite(x64)
        update = np.where(finite, np.maximum(np.abs(a64 - x64), np.abs(b64 - x64)), 0.0)
        update_unit = float(np.spacing(np.asarray(np.max(update)).astype(dtype)))
        result_unit = np.spacing(np.maximum(np.abs(a), np.abs(b)).astype(dtype)).astype(np.float64)
        excess = np.where(equal, 0.0, np.maximum(np.abs(a64 - b64) - result_unit, 0.0))
    return float(np.max(excess)) / update_unit
