r"""L-BFGS (torch 2.13's ``torch.optim.LBFGS``): limited-memory BFGS over one flat vector of
all parameters, with torch's optional strong-Wolfe line search.

Unlike the elementwise optimizers, one step of L-BFGS runs several inner iterations, each
calling the closure (which re-evaluates the loss and sets the gradients), and it reads all
parameters as one flat vector: dot products and norms run over every parameter at once.
The module keeps torch's structure: :func:`cubic_interpolate` and :func:`strong_wolfe` are
torch's ``_cubic_interpolate`` and ``_strong_wolfe`` (ported from ``polyinterp.lua`` and
``lswolfe.lua`` of Lua torch), line by line and in torch's float order; :func:`lbfgs_step`
is the body of torch's ``LBFGS.step`` (the two-loop recursion, the step length, the moves
and the termination tests) over one flat vector, and the class's ``step(closure)`` gathers
its parameters into that vector and calls it: one code path for both.

Scalars are kept as torch keeps them: where torch has a 0-d tensor (a dot product, ``ro``,
``H_diag``, the first step length) refoptim has a 0-d array of the parameters' dtype, and
where torch has a Python number (the loss read with ``float``, ``prev_loss``, the integer
counters, an ``lr`` given as a float) refoptim has the same Python number. Arithmetic
between them then rounds as torch rounds it: a Python float meeting a float32 array is cast
to float32 first, in comparisons too (torch's wrapped numbers, NumPy 2's NEP 50 and the
Array API's scalar rule all agree on this).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import _reduce
from ._backend import (
    array_namespace,
    assign,
    is_array,
    is_complex,
    is_floating,
    numel,
    quiet,
    scalar,
    to_scalar,
    view_as_complex,
    view_as_real,
)
from ._checks import check_lr
from ._fastpath import shares_memory
from ._primitives import add, add_
from .optimizer import Optimizer
from .parameter import Parameter

__all__ = ["LBFGS", "cubic_interpolate", "lbfgs_init", "lbfgs_step", "strong_wolfe"]


def _dot(xp: Any, a: Any, b: Any) -> Any:
    """torch's ``a.dot(b)`` of two real 1-d arrays: a 0-d array of their dtype, summed in
    refoptim's fixed order (:func:`refoptim._reduce.dot`).

    torch's CPU ``dot`` is MKL's, whose summation order (blocked, vectorised, with fused
    multiply-adds) is not documented and depends on the CPU; a BLAS ``dot`` (what
    ``xp.vecdot`` calls on NumPy) depends on the kernel OpenBLAS picks for the CPU. refoptim
    sums the products in a fixed pairwise order, float32 accumulated in float64 (exact
    products, one rounding at the end): the same bits on every machine and backend, and
    closer to the exact value than torch's. The two differ by a few units of the dtype,
    which is what ``thresholds.ONE_STEP_REL["LBFGS"]`` allows for.
    """
    return _reduce.dot(xp, a, b)


def _abs_max(xp: Any, v: Any) -> Any:
    """torch's ``v.abs().max()``: a 0-d array; torch's error when ``v`` is empty."""
    if numel(v) == 0:
        raise RuntimeError(
            "max(): Expected reduction dim to be specified for input.numel() == 0. "
            "Specify the reduction dim with the 'dim' argument."
        )
    return xp.max(xp.abs(v))


def _mul(xp: Any, v: Any, s: Any) -> Any:
    """torch's ``v.mul(s)`` for a 1-d array ``v`` and a scalar ``s`` (a Python number or a
    0-d array): the result keeps ``v``'s dtype, as torch's type promotion keeps a tensor's
    dtype against a 0-d tensor of the same category (NumPy would promote it)."""
    if is_array(s) and s.dtype != v.dtype:
        s = xp.astype(xp.asarray(s), v.dtype)
    return v * s


def _sqrt(x: Any) -> Any:
    """torch's ``x.sqrt()`` of a 0-d tensor."""
    return array_namespace(x).sqrt(x)


def cubic_interpolate(
    x1: Any, f1: Any, g1: Any, x2: Any, f2: Any, g2: Any, bounds: tuple[Any, Any] | None = None
) -> Any:
    r"""The minimiser of the cubic through two points with their values and slopes, clamped
    to ``bounds`` (torch's ``_cubic_interpolate``, in its float order).

    With :math:`x_2` the farther point,

    .. math::
        d_1 &= g_1 + g_2 - 3\,\frac{f_1 - f_2}{x_1 - x_2}, \qquad
        d_2 = \sqrt{d_1^2 - g_1 g_2} \\
        x &= x_2 - (x_2 - x_1)\,\frac{g_2 + d_2 - d_1}{g_2 - g_1 + 2 d_2},
        \text{ clamped to } [x_{\min}, x_{\max}]

    and the midpoint of the bounds when :math:`d_1^2 - g_1 g_2 < 0` (or NaN). The bounds
    default to the interval between the two points. Arguments may be Python numbers or 0-d
    arrays, mixed as torch mixes them (the slopes are always arrays in the line search).
    """
    if bounds is not None:
        xmin_bound, xmax_bound = bounds
    else:
        xmin_bound, xmax_bound = (x1, x2) if x1 <= x2 else (x2, x1)

    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    if d2_square >= 0:
        d2 = _sqrt(d2_square)
        if x1 <= x2:
            min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        return min(max(min_pos, xmin_bound), xmax_bound)
    else:
        return (xmin_bound + xmax_bound) / 2.0


def strong_wolfe(
    obj_func: Callable[[Any, Any, Any], tuple[float, Any]],
    x: Any,
    t: Any,
    d: Any,
    f: float,
    g: Any,
    gtd: Any,
    c1: float = 1e-4,
    c2: float = 0.9,
    tolerance_change: float = 1e-9,
    max_ls: int = 25,
) -> tuple[float, Any, Any, int]:
    r"""torch's ``_strong_wolfe`` line search: a step ``t`` along ``d`` that satisfies the
    strong Wolfe conditions

    .. math::
        f(x + t d) \le f(x) + c_1\, t\, \nabla f(x)^\top d, \qquad
        |\nabla f(x + t d)^\top d| \le -c_2\, \nabla f(x)^\top d,

    found by bracketing (extrapolating with :func:`cubic_interpolate` between ``t + 0.01 (t -
    t_prev)`` and ``10 t``) then zooming (cubic interpolation inside the bracket, pulled
    ``0.1`` of the bracket's length away from an end when it makes too little progress),
    with at most ``max_ls`` evaluations of ``obj_func(x, t, d) -> (loss, flat_grad)``.

    Returns ``(f_new, g_new, t, ls_func_evals)``: the loss and flat gradient at the step
    found (the bracket's low point when the search stops early), the step, and the number
    of evaluations. Quirks of torch's kept: the bracket-length test uses
    ``tolerance_change`` times ``max|d|`` (and LBFGS never passes its own
    ``tolerance_change``, so it is always ``1e-9``); when ``max_ls`` evaluations run out
    while bracketing, the bracket becomes ``[0, t]``; with ``max_ls < 0`` torch fails with
    ``UnboundLocalError`` and so does this port.
    """
    xp = array_namespace(d)
    d_norm = _abs_max(xp, d)
    g = xp.asarray(g, copy=True)
    # evaluate objective and gradient using initial step
    f_new, g_new = obj_func(x, t, d)
    ls_func_evals = 1
    gtd_new = _dot(xp, g_new, d)

    # bracket an interval containing a point satisfying the Wolfe criteria
    t_prev, f_prev, g_prev, gtd_prev = 0, f, g, gtd
    done = False
    ls_iter = 0
    while ls_iter < max_ls:
        # check conditions
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket = [t_prev, t]
            bracket_f = [f_prev, f_new]
            bracket_g = [g_prev, g_new]
            bracket_gtd = [gtd_prev, gtd_new]
            break

        if abs(gtd_new) <= -c2 * gtd:
            bracket = [t]
            bracket_f = [f_new]
            bracket_g = [g_new]
            done = True
            break

        if gtd_new >= 0:
            bracket = [t_prev, t]
            bracket_f = [f_prev, f_new]
            bracket_g = [g_prev, g_new]
            bracket_gtd = [gtd_prev, gtd_new]
            break

        # interpolate
        min_step = t + 0.01 * (t - t_prev)
        max_step = t * 10
        tmp = t
        t = cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(min_step, max_step))

        # next step
        t_prev = tmp
        f_prev = f_new
        g_prev = g_new
        gtd_prev = gtd_new
        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = _dot(xp, g_new, d)
        ls_iter += 1

    # reached max number of iterations?
    if ls_iter == max_ls:
        bracket = [0, t]
        bracket_f = [f, f_new]
        bracket_g = [g, g_new]

    # zoom phase: we now have a point satisfying the criteria, or a bracket around it;
    # refine the bracket until we find the exact point satisfying the criteria
    insuf_progress = False
    # find high and low points in bracket
    low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        # line-search bracket is so small
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break

        # compute new trial value
        t = cubic_interpolate(
            bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1]
        )

        # test that we are making sufficient progress: if `t` is so close to the boundary
        # (within 0.1 of the bracket's length) and we made insufficient progress in the
        # last step too, or `t` is at a boundary, move `t` 0.1 of the bracket's length away
        # from the nearest boundary point
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            # interpolation close to boundary
            if insuf_progress or t >= max(bracket) or t <= min(bracket):
                # evaluate at 0.1 away from boundary
                if abs(t - max(bracket)) < abs(t - min(bracket)):
                    t = max(bracket) - eps
                else:
                    t = min(bracket) + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False

        # evaluate new point
        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = _dot(xp, g_new, d)
        ls_iter += 1

        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low_pos]:
            # Armijo condition not satisfied or not lower than lowest point
            bracket[high_pos] = t
            bracket_f[high_pos] = f_new
            bracket_g[high_pos] = g_new
            bracket_gtd[high_pos] = gtd_new
            low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                # Wolfe conditions satisfied
                done = True
            elif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0:
                # old high becomes new low
                bracket[high_pos] = bracket[low_pos]
                bracket_f[high_pos] = bracket_f[low_pos]
                bracket_g[high_pos] = bracket_g[low_pos]
                bracket_gtd[high_pos] = bracket_gtd[low_pos]

            # new point becomes new low
            bracket[low_pos] = t
            bracket_f[low_pos] = f_new
            bracket_g[low_pos] = g_new
            bracket_gtd[low_pos] = gtd_new

    # return stuff
    t = bracket[low_pos]
    f_new = bracket_f[low_pos]
    g_new = bracket_g[low_pos]
    return f_new, g_new, t, ls_func_evals


def _check_flat(xp: Any, x: Any) -> None:
    """``x`` must be a real floating 1-d array (the flat vector of :func:`lbfgs_step`)."""
    if not is_array(x):
        raise TypeError(f"L-BFGS: x must be an array, got {type(x).__name__}")
    if len(x.shape) != 1:
        raise ValueError(f"L-BFGS: x must be a flat 1-d array, got shape {tuple(x.shape)}")
    if not is_floating(xp, x.dtype) or is_complex(xp, x):
        raise TypeError(
            f"L-BFGS: x must have a real floating dtype, got {x.dtype} (view a complex vector "
            "as (real, imag) pairs first, as the LBFGS class does)"
        )


def _check_flat_grad(x: Any, g: Any) -> None:
    """The gradient ``loss_and_grad`` returned must be an array like ``x``."""
    if not is_array(g):
        raise TypeError(f"L-BFGS: loss_and_grad must return (loss, gradient array), got a {type(g).__name__}")
    if tuple(g.shape) != tuple(x.shape) or g.dtype != x.dtype:
        raise ValueError(
            f"L-BFGS: loss_and_grad returned a gradient of shape {tuple(g.shape)} and dtype {g.dtype}; "
            f"x has shape {tuple(x.shape)} and dtype {x.dtype}"
        )


def lbfgs_init(x: Any) -> dict[str, Any]:
    """The state L-BFGS starts the flat vector ``x`` with: torch's two counters,
    ``{"func_evals": 0, "n_iter": 0}``.

    Everything else (the direction ``d``, the step ``t``, the history ``old_dirs``,
    ``old_stps``, ``ro``, ``al``, and ``H_diag``, ``prev_flat_grad``, ``prev_loss``) is
    created by the first :func:`lbfgs_step`, as torch creates it; an empty dict works as
    well (the step adds the counters). ``x`` must be a real floating 1-d array.
    """
    _check_flat(array_namespace(x), x)
    return {"func_evals": 0, "n_iter": 0}


def lbfgs_step(
    x: Any,
    loss_and_grad: Callable[[Any], tuple[Any, Any]],
    state: dict[str, Any],
    *,
    lr: Any = 1,
    max_iter: int = 20,
    max_eval: int | None = None,
    tolerance_grad: float = 1e-7,
    tolerance_change: float = 1e-9,
    history_size: int = 100,
    line_search_fn: str | None = None,
) -> tuple[Any, Any]:
    r"""One L-BFGS step (up to ``max_iter`` iterations) over the flat vector ``x``: the
    body of torch's ``LBFGS.step``, in its order. :class:`~refoptim.LBFGS` calls this with all its
    parameters gathered into ``x``; the defaults are the class's.

    ``loss_and_grad(point) -> (loss, flat_grad)`` evaluates the objective at a 1-d array
    ``point`` (``x`` itself or a trial point ``x + t d``) and returns the loss (a Python
    number or a 0-d array, read with ``float``) and the gradient (an array of ``x``'s
    shape and dtype). It plays the part of torch's closure: it is called once at the
    start, once after each move without line search (except after the last iteration of
    ``max_iter``), and at every trial point of the line search. The rule may update a
    point in place after ``loss_and_grad`` returns: copy it to keep it.

    Returns ``(x, loss)``: the new vector (``x`` itself, updated in place, where it is
    writeable; a new array for immutable arrays: keep what it returns) and what the
    *first* call of ``loss_and_grad`` returned as loss, unchanged (torch returns the first
    loss). The new state is stored in ``state`` (:func:`lbfgs_init`, or ``{}``). If
    anything raises (``loss_and_grad``, a gradient of the wrong shape or dtype, torch's
    errors below), ``x`` and ``state`` are left as they were and the exception propagates.

    With :math:`g` the gradient and :math:`\gamma` = ``lr``, each iteration is

    .. math::
        \begin{aligned}
        &\textbf{direction}: \text{first iteration ever: } d \leftarrow -g,\
            H_0 \leftarrow 1; \text{ otherwise} \\
        &\quad y \leftarrow g - g_{\text{prev}},\ s \leftarrow t\,d,\
            \textbf{if } y^\top s > 10^{-10}: \text{push } (y, s, \rho = 1/y^\top s)
            \text{ (dropping the oldest beyond history\_size)},\
            H_0 \leftarrow \frac{y^\top s}{y^\top y} \\
        &\quad q \leftarrow -g;\ \textbf{for } i = m-1, \ldots, 0:\
            \alpha_i \leftarrow \rho_i\, s_i^\top q,\ q \leftarrow q - \alpha_i y_i \\
        &\quad r \leftarrow H_0\, q;\ \textbf{for } i = 0, \ldots, m-1:\
            \beta_i \leftarrow \rho_i\, y_i^\top r,\ r \leftarrow r + (\alpha_i - \beta_i) s_i;
            \quad d \leftarrow r \\
        &\textbf{step length}: t \leftarrow \min(1, 1/\lVert g\rVert_1)\,\gamma
            \text{ at the first iteration ever, else } t \leftarrow \gamma;\
            \textbf{stop if } g^\top d > -\text{tolerance\_change} \\
        &\textbf{move}: \text{strong Wolfe: } t, f, g \text{ from } \texttt{strong\_wolfe}
            \text{, then } x \leftarrow x + t\,d;\
            \text{none: } x \leftarrow x + t\,d, \text{ then } f, g \leftarrow
            \text{loss\_and\_grad}(x) \text{ unless this is the last iteration} \\
        &\textbf{stop if}: \text{max\_iter iterations, max\_eval evaluations},\
            \max|g| \le \text{tolerance\_grad},\ \max|t\,d| \le \text{tolerance\_change},\
            |f - f_{\text{prev}}| < \text{tolerance\_change}
        \end{aligned}

    and a step whose first gradient has :math:`\max|g| \le` ``tolerance_grad`` returns
    at once, counting one evaluation. Every move is torch's ``add_(d, alpha=t)``, one fused
    multiply-add per element (``t`` read as a Python float); every dot product and the L1
    norm run in refoptim's fixed order (``refoptim/_reduce.py``). ``max_eval=None`` means
    ``max_iter * 5 // 4``, as the class resolves it.

    **State** (torch's keys, kept as torch 2.13 keeps them): ``func_evals`` and ``n_iter``
    (Python ints, over all steps), ``d`` and ``prev_flat_grad`` (flat arrays), ``t`` (a
    Python number, or a 0-d array after the first iteration's step length), ``old_dirs``
    and ``old_stps`` (lists of flat arrays :math:`y`, :math:`s`), ``ro`` (list of 0-d
    arrays), ``al`` (``history_size`` slots, 0-d arrays or ``None``, created at the second
    iteration), ``H_diag`` (the int ``1`` until the first history update, then a 0-d
    array), ``prev_loss`` (Python float).

    Torch quirks reproduced (see :class:`refoptim.LBFGS` for the full list): "first iteration ever"
    reads ``state["n_iter"] == 1``, not the first of each call; the history is updated
    only when :math:`y^\top s > 10^{-10}`, an absolute threshold; the line search always
    uses ``c1 = 1e-4``, ``c2 = 0.9`` and a bracket tolerance of ``1e-9`` and gets
    ``max_eval - current_evals`` evaluations; an unknown ``line_search_fn`` raises
    ``RuntimeError("only 'strong_wolfe' is supported")`` only at the first move;
    ``history_size=0`` fails with ``IndexError`` at the first history update; an empty
    ``x`` fails with torch's ``max()`` error.

    Example: the minimiser of :math:`\sum_i a_i (x_i - 1)^2 / 2`, in one step (15
    iterations; ``loss`` is the value at the start).

    >>> import numpy as np
    >>> from refoptim.functional import lbfgs_init, lbfgs_step
    >>> a = np.array([1.0, 10.0, 100.0])
    >>> def loss_and_grad(x):
    ...     return float(a @ (x - 1) ** 2 / 2), a * (x - 1)
    >>> x = np.zeros(3)
    >>> state = lbfgs_init(x)
    >>> x, loss = lbfgs_step(x, loss_and_grad, state, line_search_fn="strong_wolfe")
    >>> loss, x.round(4).tolist(), state["n_iter"], len(state["old_dirs"])
    (55.5, [1.0, 1.0, 1.0], 15, 14)
    """
    return _lbfgs(
        x, loss_and_grad, state, lr=lr, max_iter=max_iter, max_eval=max_eval, tolerance_grad=tolerance_grad,
        tolerance_change=tolerance_change, history_size=history_size, line_search_fn=line_search_fn, settle=None,
    )


def _lbfgs(
    x: Any,
    loss_and_grad: Callable[[Any], tuple[Any, Any]],
    state: dict[str, Any],
    *,
    lr: Any,
    max_iter: int,
    max_eval: int | None,
    tolerance_grad: float,
    tolerance_change: float,
    history_size: int,
    line_search_fn: str | None,
    settle: Callable[[Any], Any] | None,
) -> tuple[Any, Any]:
    """The body of :func:`lbfgs_step`. ``settle(point)``, when given, is applied to every
    point the iterations move to (and every trial point of the line search) before it is
    used: :class:`LBFGS` rounds there the parts of the flat vector whose parameters have a
    narrower dtype than the vector's, as torch's ``p.add_(...)`` rounds each parameter at
    every move."""
    if settle is None:
        def settle(point: Any) -> Any:
            return point

    xp = array_namespace(x)
    _check_flat(xp, x)
    lr = to_scalar(lr)
    if max_eval is None:
        max_eval = max_iter * 5 // 4

    def evaluate(point: Any) -> tuple[Any, Any]:
        loss, flat_grad = loss_and_grad(point)
        _check_flat_grad(point, flat_grad)
        return loss, flat_grad

    # Work on a copy of x and on local copies of the state (counters, history lists) and
    # store them only at the end: a step that raises leaves x and state as they were.
    x_in = x
    x = xp.asarray(x, copy=True)
    func_evals = state.get("func_evals", 0)
    total_iter = state.get("n_iter", 0)

    # evaluate initial f(x) and df/dx
    orig_loss, flat_grad = evaluate(x)
    loss = float(orig_loss)
    current_evals = 1
    func_evals += 1

    opt_cond = _abs_max(xp, flat_grad) <= tolerance_grad

    # optimal condition
    if opt_cond:
        state["func_evals"] = func_evals
        state["n_iter"] = total_iter
        return x_in, orig_loss

    # arrays cached in state
    d = state.get("d")
    t = state.get("t")
    old_dirs = _copy_list(state.get("old_dirs"))
    old_stps = _copy_list(state.get("old_stps"))
    ro = _copy_list(state.get("ro"))
    al = _copy_list(state.get("al"))
    H_diag = state.get("H_diag")
    prev_flat_grad = state.get("prev_flat_grad")
    prev_loss = state.get("prev_loss")

    n_iter = 0
    # optimize for a max of max_iter iterations
    while n_iter < max_iter:
        # keep track of nb of iterations
        n_iter += 1
        total_iter += 1

        # ---------------------------------------------------------- direction
        if total_iter == 1:
            d = -flat_grad
            old_dirs = []
            old_stps = []
            ro = []
            H_diag = 1
        else:
            # do lbfgs update (update memory)
            y = flat_grad - prev_flat_grad
            s = _mul(xp, d, t)
            ys = _dot(xp, y, s)  # y*s
            if ys > 1e-10:
                # updating memory
                if len(old_dirs) == history_size:
                    # shift history by one (limited-memory)
                    old_dirs.pop(0)
                    old_stps.pop(0)
                    ro.pop(0)

                # store new direction/step
                old_dirs.append(y)
                old_stps.append(s)
                ro.append(_as_state(xp, 1.0 / ys))

                # update scale of initial Hessian approximation
                H_diag = _as_state(xp, ys / _dot(xp, y, y))  # (y*y)

            # the approximate (L-BFGS) inverse Hessian times the gradient
            num_old = len(old_dirs)

            if al is None:
                al = [None] * history_size

            # iteration in L-BFGS loop collapsed to use just one buffer
            q = -flat_grad
            for i in range(num_old - 1, -1, -1):
                al[i] = _as_state(xp, _dot(xp, old_stps[i], q) * ro[i])
                q = add_(q, old_dirs[i], alpha=-float(al[i]))

            # multiply by initial Hessian; r/d is the final direction
            d = r = _mul(xp, q, H_diag)
            for i in range(num_old):
                be_i = _dot(xp, old_dirs[i], r) * ro[i]
                r = add_(r, old_stps[i], alpha=float(al[i] - be_i))
            d = r

        # torch: prev_flat_grad = flat_grad.clone() the first time, then
        # prev_flat_grad.copy_(flat_grad); a fresh copy is the same values
        prev_flat_grad = xp.asarray(flat_grad, copy=True)
        prev_loss = loss

        # ---------------------------------------------------------- step length
        # reset initial guess for step size
        if total_iter == 1:
            t = min(1.0, 1.0 / _reduce.sum_abs(xp, flat_grad)) * lr
        else:
            t = lr

        # directional derivative
        gtd = _dot(xp, flat_grad, d)  # g * d

        # directional derivative is below tolerance
        if gtd > -tolerance_change:
            break

        # optional line search: user function
        ls_func_evals = 0
        if line_search_fn is not None:
            # perform line search, using user function
            if line_search_fn != "strong_wolfe":
                raise RuntimeError("only 'strong_wolfe' is supported")

            def obj_func(x: Any, t: Any, d: Any) -> tuple[float, Any]:
                # torch's _directional_evaluate: loss and flat gradient at x + t d
                f_new, g_new = evaluate(settle(add(x, d, alpha=scalar(t))))
                return float(f_new), g_new

            loss, flat_grad, t, ls_func_evals = strong_wolfe(
                obj_func, x, t, d, loss, flat_grad, gtd, max_ls=max_eval - current_evals
            )
            x = settle(add_(x, d, alpha=scalar(t)))
            opt_cond = _abs_max(xp, flat_grad) <= tolerance_grad
        else:
            # no line search, simply move with fixed-step
            x = settle(add_(x, d, alpha=scalar(t)))
            if n_iter != max_iter:
                # re-evaluate function only if not in last iteration (in a stochastic
                # setting, no use to re-evaluate that function here)
                new_loss, flat_grad = evaluate(x)
                loss = float(new_loss)
                opt_cond = _abs_max(xp, flat_grad) <= tolerance_grad
                ls_func_evals = 1

        # update func eval
        current_evals += ls_func_evals
        func_evals += ls_func_evals

        # ---------------------------------------------------------- conditions
        if n_iter == max_iter:
            break

        if current_evals >= max_eval:
            break

        # optimal condition
        if opt_cond:
            break

        # lack of progress
        if _abs_max(xp, _mul(xp, d, t)) <= tolerance_change:
            break

        if abs(loss - prev_loss) < tolerance_change:
            break

    # store the state, in the order torch creates its keys
    state["func_evals"] = func_evals
    state["n_iter"] = total_iter
    if al is not None:
        state["al"] = al
    state["d"] = d
    state["t"] = _as_state(xp, t)
    state["old_dirs"] = old_dirs
    state["old_stps"] = old_stps
    state["ro"] = ro
    state["H_diag"] = H_diag
    state["prev_flat_grad"] = prev_flat_grad
    state["prev_loss"] = prev_loss
    return assign(x_in, x), orig_loss


def _copy_list(value: Any) -> Any:
    """A shallow copy of a history list from the state (``None`` stays ``None``), so the
    step can update it and store it only when it succeeds."""
    return list(value) if value is not None else None


class LBFGS(Optimizer):
    r"""L-BFGS (``torch.optim.LBFGS``), heavily inspired by minFunc, with torch's optional
    strong-Wolfe line search.

    All parameters form one flat vector :math:`x` (complex ones as (real, imag) pairs) and
    their gradients one flat vector :math:`g`. ``step(closure)`` gathers them and calls
    the rule ``lbfgs_step`` (also :func:`refoptim.functional.lbfgs_step`), which runs up
    to ``max_iter`` iterations of

    .. math::
        \begin{aligned}
        &\textbf{direction}: \text{first iteration ever: } d \leftarrow -g,\
            H_0 \leftarrow 1; \text{ otherwise} \\
        &\quad y \leftarrow g - g_{\text{prev}},\ s \leftarrow t\,d,\
            \textbf{if } y^\top s > 10^{-10}: \text{push } (y, s, \rho = 1/y^\top s)
            \text{ (dropping the oldest beyond history\_size)},\
            H_0 \leftarrow \frac{y^\top s}{y^\top y} \\
        &\quad q \leftarrow -g;\ \textbf{for } i = m-1, \ldots, 0:\
            \alpha_i \leftarrow \rho_i\, s_i^\top q,\ q \leftarrow q - \alpha_i y_i \\
        &\quad r \leftarrow H_0\, q;\ \textbf{for } i = 0, \ldots, m-1:\
            \beta_i \leftarrow \rho_i\, y_i^\top r,\ r \leftarrow r + (\alpha_i - \beta_i) s_i;
            \quad d \leftarrow r \\
        &\textbf{step length}: t \leftarrow \min(1, 1/\lVert g\rVert_1)\,\gamma
            \text{ at the first iteration ever, else } t \leftarrow \gamma;\
            \textbf{stop if } g^\top d > -\text{tolerance\_change} \\
        &\textbf{move}: \text{strong Wolfe: } t \text{ from } \texttt{strong\_wolfe}
            \text{, then } x \leftarrow x + t\,d;\
            \text{none: } x \leftarrow x + t\,d, \text{ then } f, g \leftarrow
            \text{closure() unless this is the last iteration} \\
        \end{aligned}

    where :math:`\gamma` is ``lr``. The strong Wolfe conditions the line search meets are
    :math:`f(x + t d) \le f(x) + 10^{-4}\, t\, g^\top d` and
    :math:`|\nabla f(x + t d)^\top d| \le -0.9\, g^\top d` (see ``strong_wolfe``).

    Args:
        params (iterable): Parameters, ``(name, Parameter)`` pairs, or one group dict.
            Real or complex: complex parameters are viewed as (real, imag) pairs.
        lr (float or 1-element array): learning rate (default: 1).
        max_iter (int): maximal number of iterations per optimization step (default: 20).
        max_eval (int, optional): maximal number of function evaluations per optimization
            step (default: ``max_iter * 5 // 4``, torch's "``max_iter * 1.25``").
        tolerance_grad (float): termination tolerance on first order optimality,
            :math:`\max_i |g_i|` (default: 1e-7).
        tolerance_change (float): termination tolerance on function value / parameter
            changes (default: 1e-9).
        history_size (int): update history size (default: 100).
        line_search_fn (str, optional): ``'strong_wolfe'`` or ``None`` (default: None).

    torch's LBFGS has no ``foreach``, ``fused``, ``capturable`` or ``differentiable``
    flags, and neither has this class: it computes torch's single code path.

    **The closure.** ``step(closure)`` needs it: a callable that sets every parameter's
    ``.grad`` for the current parameter values and returns the loss, a Python number or a
    0-d array. It is called once at the start of a step and again at every trial point.
    ``step`` returns what the *first* call returned, unchanged (torch returns the first
    loss tensor); every other use reads the loss with ``float(...)``, as torch does.

    **State** (torch keeps the optimizer's global state on the first parameter, and so does
    refoptim: ``state[params[0]]``): ``func_evals`` and ``n_iter`` (Python ints, counting
    closure calls and iterations over all steps), ``d`` (the last direction, flat array),
    ``t`` (the last step length: a Python number, or a 0-d array when it came from the
    first iteration's :math:`\min(1, 1/\lVert g\rVert_1)` or from a line search
    interpolating from it), ``old_dirs`` and ``old_stps`` (lists of flat arrays :math:`y`,
    :math:`s`), ``ro`` (list of 0-d arrays), ``al`` (list of ``history_size`` 0-d arrays
    or ``None``, created at the second iteration), ``H_diag`` (the Python int ``1`` until
    the first history update, then a 0-d array), ``prev_flat_grad`` (flat array) and
    ``prev_loss`` (Python float). ``state_dict`` / ``load_state_dict`` carry them in
    torch's layout, so a torch ``state_dict`` converted to NumPy loads here and the reverse.

    Torch quirks reproduced (each explained on the manual's page, "Reproducing torch
    exactly"):

    * the first iteration *ever*: :math:`d = -g`, step length
      :math:`\min(1, 1/\lVert g\rVert_1)\,\gamma`; later ones ``t = lr``;
    * the history updated only when :math:`y^\top s > 10^{-10}` (absolute threshold);
    * torch's order of the tests that end the inner loop;
    * ``func_evals``: every closure call; no re-evaluation after the last iteration;
    * ``max_eval``: ``max_iter * 5 // 4``, shared with the line search;
    * the line search's fixed ``c1``, ``c2`` and tolerance (not ``tolerance_change``);
    * ``history_size=0`` accepted, ``IndexError`` at the first history update;
    * an unknown ``line_search_fn``: ``RuntimeError`` only at the first move;
    * one parameter group: torch's ``ValueError`` and ``AssertionError``;
    * a parameter without ``.grad``: zeros in the flat gradient.

    Differences from torch, each deliberate (explained there too):

    * a failed step leaves the parameters and the state as they were;
    * gradients checked on every closure call; non-contiguous ones accepted;
    * dot products and the L1 norm in one fixed order, not MKL's;
    * parameters of different dtypes: each part rounded to its dtype at every move.
    """

    _integer_options = ("max_iter", "max_eval", "history_size")

    def _options_unused(self, group: dict[str, Any]) -> tuple[str, ...]:
        # no element at all: torch's max() of the empty flat gradient raises first
        if all(numel(p.data) == 0 for p in group["params"]):
            return ("tolerance_grad",)
        return ()

    @classmethod
    def _option_templates(cls) -> dict[str, Any]:
        # the constructor turns max_eval=None into max_iter * 5 // 4: a group's max_eval is an int
        return {**super()._option_templates(), "max_eval": 0}

    def __init__(
        self,
        params: Any,
        lr: Any = 1,
        max_iter: int = 20,
        max_eval: int | None = None,
        tolerance_grad: float = 1e-7,
        tolerance_change: float = 1e-9,
        history_size: int = 100,
        line_search_fn: str | None = None,
    ) -> None:
        check_lr(lr)
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        defaults = {
            "lr": lr,
            "max_iter": max_iter,
            "max_eval": max_eval,
            "tolerance_grad": tolerance_grad,
            "tolerance_change": tolerance_change,
            "history_size": history_size,
            "line_search_fn": line_search_fn,
        }
        super().__init__(params, defaults)

        if len(self.param_groups) != 1:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")

    @property
    def _params(self) -> list[Parameter]:
        """The parameters of the one group (torch's ``self._params``; a property here, so it
        survives ``load_state_dict`` and pickling)."""
        return self.param_groups[0]["params"]

    # ------------------------------------------------------------------ flat vectors
    def _gather_flat_grad(self) -> Any:
        """torch's ``_gather_flat_grad``: every parameter's gradient flattened (complex as
        (real, imag) pairs) and concatenated; zeros for a parameter without gradient.
        Every gradient is checked first (see :meth:`Optimizer._params_with_grad`)."""
        plan = self._params_with_grad()
        grads = {id(p): g for _, pairs in plan for p, g in pairs}
        if not grads:  # torch reads the options whatever the gradients: zeros here
            group = self.param_groups[0]
            self._check_options(0, group, lengths_only=False, unused=self._options_unused(group))
        views = []
        for p in self._params:
            xp = array_namespace(p.data)
            g = grads.get(id(p))
            if g is None:
                g = xp.zeros_like(p.data)
            elif getattr(g, "is_sparse", False):
                g = g.to_dense()
            if is_complex(xp, g):
                g = view_as_real(xp, g)
            views.append(xp.reshape(g, (-1,)))
        xp = array_namespace(views[0])
        return xp.concat(views, axis=0)

    def _gather_flat_param(self) -> Any:
        """The parameters as the flat vector :func:`lbfgs_step` moves: each flattened
        (complex as (real, imag) pairs) and concatenated, in the order of
        :meth:`_gather_flat_grad`."""
        views = []
        for p in self._params:
            xp = array_namespace(p.data)
            v = view_as_real(xp, p.data) if is_complex(xp, p.data) else p.data
            views.append(xp.reshape(v, (-1,)))
        xp = array_namespace(views[0])
        return xp.concat(views, axis=0)

    def _set_flat_param(self, flat: Any) -> None:
        """Store the flat vector's values into the parameters (in place where they are
        writeable). torch moves each parameter with ``p.add_(update.view_as(p),
        alpha=t)``; :func:`lbfgs_step` makes the same fused multiply-add on the flat
        vector, element by element, so the values are the same bits."""
        offset = 0
        for p in self._params:
            xp = array_namespace(p.data)
            if is_complex(xp, p.data):
                shape = tuple(p.data.shape) + (2,)
                n = numel(p.data) * 2
                value = view_as_complex(xp, xp.reshape(flat[offset : offset + n], shape))
            else:
                n = numel(p.data)
                value = xp.reshape(flat[offset : offset + n], p.data.shape)
            if value.dtype != p.data.dtype:
                # parameters of mixed dtypes: the flat vector has the promoted dtype
                value = xp.astype(value, p.data.dtype)
            data = assign(p.data, value)
            if data is value:
                # not written in place (an immutable array): never alias the flat vector,
                # which the rule goes on updating
                data = xp.asarray(value, copy=True)
            p.data = data
            offset += n

    def _check_loaded_state(self, p: Any, state: dict[Any, Any], group: dict[str, Any], label: Any) -> None:
        """L-BFGS keeps one state, under the first parameter, over the flat vector of all
        parameters: every array in it (``d``, ``prev_flat_grad``, the entries of
        ``old_dirs``, ``old_stps``) must be 0-d or have the flat vector's length (complex
        parameters count twice, as their real pairs)."""
        total = sum(numel(q.data) * (2 if is_complex(array_namespace(q.data), q.data) else 1) for q in self._params)

        def check(key: Any, value: Any) -> None:
            if isinstance(value, (list, tuple)):
                for item in value:
                    check(key, item)
            elif is_array(value) and len(value.shape) > 0 and tuple(value.shape) != (total,):
                raise ValueError(
                    f"state entry '{key}' of parameter {label} has shape {tuple(value.shape)}, "
                    f"but LBFGS keeps flat vectors of shape {(total,)} for these parameters"
                )

        for key, value in state.items():
            check(key, value)

    def _clone_param(self) -> list[Any]:
        """torch's ``_clone_param``: a copy of every parameter."""
        return [array_namespace(p.data).asarray(p.data, copy=True) for p in self._params]

    def _set_param(self, params_data: list[Any]) -> None:
        """torch's ``_set_param``: copy saved values back into the parameters."""
        for p, pdata in zip(self._params, params_data, strict=True):
            p.data = assign(p.data, pdata)

    # ------------------------------------------------------------------ stepping
    def step(self, closure: Callable[[], Any]) -> Any:  # type: ignore[override]
        """Perform a single optimization step (up to ``max_iter`` L-BFGS iterations).

        Args:
            closure (Callable): re-evaluates the model: sets every parameter's ``.grad``
                and returns the loss (a Python number or a 0-d array). Required.

        Parameters that share memory (one listed twice, two over one array) raise
        ``ValueError`` before the closure runs: torch moves each in turn with ``add_`` and
        copies the saved values back one by one, so under aliasing its parameters are not
        the flat vector that refoptim's rule moves (a difference from torch, not reproduced).

        Returns what the first call of ``closure`` returned. If anything raises (the
        closure, a gradient check, torch's errors), the parameters and the state are put
        back as they were before the step, and the exception propagates.
        """
        if len(self.param_groups) != 1:
            raise AssertionError(f"Expected exactly one param_group, but got {len(self.param_groups)}")
        params = self._params
        if shares_memory([(p, None) for p in params]):
            raise ValueError(
                "LBFGS: two of its parameters share memory (a parameter listed twice, or two "
                "Parameters over one array); torch moves each in turn, which refoptim's flat "
                "vector does not reproduce: list each array once"
            )
        first = params[0]
        had_state = first in self.state
        state = self.state[first]
        saved_state = {k: list(v) if isinstance(v, list) else v for k, v in state.items()}
        saved_params = self._clone_param()
        try:
            import numpy

            caller = numpy.geterr()

            def user_closure() -> Any:  # the caller's own warning settings
                with numpy.errstate(**caller):
                    return closure()

            with quiet():
                return self._step(user_closure, state)
        except BaseException:
            self._set_param(saved_params)
            state.clear()
            state.update(saved_state)
            if not had_state:
                del self.state[first]
            raise

    def _step(self, closure: Callable[[], Any], state: dict[str, Any]) -> Any:
        """The body of :meth:`step`: the parameters gathered into one flat vector, moved
        by :func:`lbfgs_step` (the rule, shared with :mod:`refoptim.functional`), whose
        ``loss_and_grad`` puts a point into the parameters, calls the closure and gathers
        the gradients, as torch's closure calls and ``_directional_evaluate`` do."""
        group = self.param_groups[0]

        def loss_and_grad(flat: Any) -> tuple[Any, Any]:
            self._set_flat_param(flat)
            loss = closure()
            return loss, self._gather_flat_grad()

        flat, orig_loss = _lbfgs(
            self._gather_flat_param(),
            loss_and_grad,
            state,
            lr=group["lr"],
            max_iter=group["max_iter"],
            max_eval=group["max_eval"],
            tolerance_grad=group["tolerance_grad"],
            tolerance_change=group["tolerance_change"],
            history_size=group["history_size"],
            line_search_fn=group["line_search_fn"],
            # parameters of one dtype (the usual case) need no rounding between moves
            settle=self._settle if len({self._real_dtype(p.data) for p in self._params}) > 1 else None,
        )
        self._set_flat_param(flat)
        return orig_loss

    def _real_dtype(self, x: Any) -> Any:
        """The dtype of ``x``'s part of the flat vector (complex as its real pairs)."""
        xp = array_namespace(x)
        if is_complex(xp, x):
            return xp.float32 if x.dtype == xp.complex64 else xp.float64
        return x.dtype

    def _settle(self, flat: Any) -> Any:
        """``flat`` with each parameter's part rounded to the parameter's dtype where it is
        narrower than the flat vector's. Used only for parameters of mixed dtypes: torch
        moves each parameter with ``p.add_(update, alpha=t)``, computed in the promoted
        dtype and rounded to ``p``'s at every move, so later moves start from rounded
        values."""
        xp = array_namespace(flat)
        pieces, offset = [], 0
        for p in self._params:
            n = numel(p.data) * (2 if is_complex(xp, p.data) else 1)
            piece = flat[offset : offset + n]
            real = self._real_dtype(p.data)
            if real != flat.dtype:
                piece = xp.astype(xp.astype(piece, real), flat.dtype)
            pieces.append(piece)
            offset += n
        return assign(flat, xp.concat(pieces, axis=0))


def _as_state(xp: Any, value: Any) -> Any:
    """A scalar kept in the state: a 0-d array stays an array (NumPy's reductions give
    NumPy scalars, stored as 0-d arrays like torch's 0-d tensors); Python numbers and
    ``None`` stay as they are."""
    if is_array(value):
        return xp.asarray(value)
    return value

