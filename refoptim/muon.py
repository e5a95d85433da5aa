r"""Muon (torch 2.13's ``torch.optim.Muon``): momentum orthogonalized by Newton–Schulz.

Muon optimizes 2-D parameters (the weight matrices of hidden layers). Each step takes a
Nesterov momentum of the gradient, replaces it by an approximately orthogonal matrix of
the same shape (a quintic Newton–Schulz iteration, :func:`zeropower_via_newtonschulz`),
decays the parameter and adds the orthogonalized update with a shape-adjusted learning
rate.

torch runs the Newton–Schulz iteration in ``bfloat16``. The Array API has no bfloat16
dtype, so refoptim *emulates* it: bfloat16 values are held in float32 arrays, and every
result torch stores as a bfloat16 tensor is rounded to bfloat16 precision by
:func:`round_to_bfloat16` (round to nearest, ties to even, on 8 significant bits, with
bfloat16's subnormals and overflow), from ``+``, ``-``, ``*`` only. Each bfloat16 operation
is computed the way torch's CPU kernels compute it (measured on torch 2.13, x86-64 AVX2):
the operands widened to float32, the operation in float32 (matrix products accumulate in
float32; ``addmm``'s ``beta * C + alpha * (A @ B)`` is one fused multiply-add in float32),
and a single rounding to bfloat16 at the end. ``ns_dtype="param"`` (or ``"float32"``)
runs the iteration in full precision instead: a refoptim extension, not in torch.

**One answer on every machine.** The iteration's reductions are exact or run in an order
refoptim fixes; none depends on a BLAS's summation order (which changes with the CPU's
kernel and the thread count) or on a library's ``sum``:

- the Frobenius norm is :func:`refoptim._reduce.sum_squares` (squares formed exactly in
  float64, added in a fixed pairwise order, rounded to the working dtype once), then
  ``sqrt``;
- with ``ns_dtype="bfloat16"`` every matrix product is *the exact product, correctly
  rounded to float32* (:func:`refoptim._matmul.matmul_exact`): bfloat16 values have 8
  significant bits, so the operands split by magnitude into a few bands whose float64
  products are exact whatever the BLAS does, and their sum is rounded to float32 once.
  torch's CPU kernel accumulates the same products in float32, so it is the float32
  rounding of an inexact sum, where refoptim's is of the exact one: the two differ by a
  float32 unit or so, and in the rare element where that crosses a bfloat16 rounding
  boundary, by one bfloat16 unit (see :func:`zeropower_via_newtonschulz`);
- with ``"float32"`` and ``"param"`` the products have 24 or 53 significant bits and
  cannot be made exact this way: they are :func:`refoptim._matmul.matmul`, each element
  the fixed pairwise fold of its ``k`` products in float64 (float32 products exact, float64
  products rounded once), from elementwise operations only, rounded to the working dtype.

The price is speed. Measured on one thread of the shared 2-core CI machine, against the
BLAS products used before: a bfloat16 step takes about 2.5 times as long on small
matrices (2.6 ms instead of 1.1 ms on (64, 48)) and 3 to 6 times on large ones
(256 x 256: 0.18 s instead of 0.03 s; 768 x 768: 2.0 s instead of 0.64 s; 1024 x 1024:
4.9 s instead of 1.0 s); the fold of the other modes 25 to 70 times (float32, 256 x 256:
0.58 s instead of 0.012 s; 768 x 768: 14 s instead of 0.22 s), so those modes suit small
matrices and reference runs.
"""

from __future__ import annotations

import math
from typing import Any

from ._backend import (
    array_namespace,
    device_of,
    scalar,
    to_scalar,
)
from ._checks import check_lr, check_nonnegative, check_weight_decay
from ._matmul import matmul, matmul_exact
from ._primitives import add_, div, fma, lerp_, mul_
from ._reduce import sum_squares
from .optimizer import Optimizer

__all__ = [
    "DEFAULT_A",
    "DEFAULT_B",
    "DEFAULT_C",
    "DEFAULT_NS_STEPS",
    "EPS",
    "NS_DTYPES",
    "Muon",
    "adjust_lr",
    "muon_init",
    "muon_step",
    "round_to_bfloat16",
    "zeropower_via_newtonschulz",
]

# torch's constants (from Keller Jordan's Muon post).
EPS = 1e-7
DEFAULT_A = 3.4445
DEFAULT_B = -4.7750
DEFAULT_C = 2.0315
DEFAULT_NS_STEPS = 5

NS_DTYPES = ("bfloat16", "float32", "param")
"""Values of ``ns_dtype``: ``"bfloat16"`` (torch's, emulated), ``"float32"`` (the
iteration in float32, unrounded) and ``"param"`` (in the parameter's dtype)."""

# float32 constants of round_to_bfloat16
_SPLIT = 65537.0  # 2**16 + 1: x * _SPLIT rounds x * 2**16 + x on the grid of x's 8-bit quantum
_SHIFT = 65536.0  # 2**16
_BIG = 2.0**100  # above this, x * _SPLIT could overflow float32: scale down by 2**32 first
_SMALL = 2.0**-126  # below this, bfloat16 is subnormal: a fixed quantum of 2**-133
_MAGIC = 1.5 * 2.0**-110  # the float32 binade whose unit is 2**-133


def round_to_bfloat16(x: Any) -> Any:
    r"""torch's ``x.bfloat16()``, as a float32 array holding the bfloat16 values.

    Rounds each element to the nearest bfloat16 (8 significant bits, float32's exponent
    range), ties to even, exactly as torch's conversion (``c10::BFloat16``'s
    round-to-nearest-even on the top 16 bits of the float32). A float64 array is first
    rounded to float32, as torch converts ``double`` to ``bfloat16`` (so a float64 value just
    above a bfloat16 tie can round down: torch's double rounding, reproduced). Infinities,
    NaNs and signed zeros pass through; finite values round to infinity beyond bfloat16's
    range (``>= 2**128 * (1 - 2**-9)``), as in torch.

    The Array API has no bit casts, so this is arithmetic, in float32 only. With
    :math:`t = 2^{16} x` (exact) and :math:`u = \mathrm{fl}((2^{16} + 1)\,x)
    = \mathrm{fl}(t + x)`, :math:`u - t` (exact, Sterbenz) is :math:`x` rounded to the grid
    of its 8-bit quantum :math:`q`: :math:`t` lies on that grid and :math:`t/q` (x's 24-bit
    integer significand) is even at a tie, so float32's ties-to-even picks the even bfloat16
    (the textbook Veltkamp split ``u - (u - x)`` does not always break ties to even). Within
    256 units below a power of two :math:`u` crosses into the next binade, off :math:`t`'s
    grid; there (never a tie) the Veltkamp split is the nearer value, and is taken. Checked
    against the bit-level rounding on all 2**32 float32 values.
    Magnitudes from :math:`2^{100}` are scaled by :math:`2^{-32}` first (the product would
    overflow); below :math:`2^{-126}` bfloat16's subnormal quantum :math:`2^{-133}` is
    applied by adding and subtracting :math:`1.5 \cdot 2^{-110}`.
    """
    xp = array_namespace(x)
    if x.dtype != xp.float32:
        x = xp.astype(x, xp.float32)
    # Python scalars meet the float32 array as float32 values; every constant is exact.
    ax = xp.abs(x)
    big = ax >= _BIG
    xs = xp.where(big, x * 2.0**-32, x)
    u = xs * _SPLIT
    hi = u - xs * _SHIFT
    # Within 256 units below a power of two, u can cross into the next binade, whose
    # grid t is not on: there Veltkamp's u - (u - x) is the nearer one (never at a tie).
    veltkamp = u - (u - xs)
    hi = xp.where(xp.abs(xs - veltkamp) < xp.abs(xs - hi), veltkamp, hi)
    hi = xp.where(big, hi * 2.0**32, hi)
    lo = (x + _MAGIC) - _MAGIC
    out = xp.where(ax < _SMALL, lo, hi)
    # The sign of x, for the zeros the split loses (-0.0, and negatives that round to
    # zero); a non-zero result already has it. (Not xp.copysign: not every Array API
    # library has it, ndonnx for one.)
    out = xp.where(out == 0, x * 0.0, out)
    # inf and nan: the split gives nan for inf; keep both as they are.
    return xp.where(xp.isfinite(x), out, x)


def _as_float32(xp: Any, value: float) -> float:
    """A Python float rounded to float32, as torch casts a ``Scalar`` for a float kernel."""
    return float(xp.asarray(value, dtype=xp.float32))


def zeropower_via_newtonschulz(
    grad: Any,
    ns_coefficients: tuple[float, float, float],
    ns_steps: int,
    eps: float,
    *,
    ns_dtype: str = "bfloat16",
) -> Any:
    r"""torch's ``_zeropower_via_newtonschulz``: an approximate orthogonalization of ``grad``.

    .. math::
        X_0 &= G / \max(\lVert G \rVert_F, \varepsilon) \quad (G^\top \text{ if } G
            \text{ is tall}) \\
        A_k &= X_k X_k^\top,\qquad P_k = b\,A_k + c\,A_k A_k,\qquad
        X_{k+1} = a\,X_k + P_k X_k

    ``ns_steps`` times, transposed back at the end. The quintic's coefficients are chosen for
    a steep slope at zero, so the singular values land near (0.5, 1.5) rather than at 1.

    ``ns_dtype="bfloat16"`` (torch's): ``G`` is rounded to bfloat16 (``grad.bfloat16()``),
    the norm (the sum of squares accumulated in float64 in a fixed order and rounded to
    float32, then ``sqrt``) is rounded to bfloat16, ``div_``, ``@`` and ``torch.addmm`` are
    each computed in float32 and rounded once to bfloat16 (``addmm`` as
    ``fma(beta, C, alpha * (A @ B))`` in float32, the contraction torch's CPU kernel makes),
    and the result is a float32 array of bfloat16 values. Each product ``A @ B`` is the
    exact product correctly rounded to float32 (:func:`refoptim._matmul.matmul_exact`:
    exact band products in float64), so the result is the same on every machine and
    backend, and any implementation that rounds the exact product can reproduce it.
    ``"float32"`` and ``"param"`` run the same iteration unrounded, in float32 or in
    ``grad``'s dtype (a refoptim extension), with every product summed in the fixed
    pairwise fold of :func:`refoptim._matmul.matmul` (machine-independent too; much
    slower than a BLAS).

    torch's CPU kernel sums the same bfloat16 products in float32, in its own order (which
    even depends on the operands' memory layout: ``X @ X.T`` and ``X @ X.T.contiguous()``
    can differ). Where products cancel, that float32 sum can land on a bfloat16 tie that
    the exact sum is not on (measured: 0.0010032612 exactly, torch's float32 sum the tie
    0.0010032654, rounded up to 0.0010070801, refoptim's down to 0.0009994507); such an
    element then differs by one bfloat16 unit, and later iterations spread it. On
    (24, 40) and (64, 48) matrices about 94% of the parameter elements stay bit-identical
    to torch over 50 steps; on small ones all do.

    Raises ``ValueError`` with torch's messages, in torch's order: ``ns_steps >= 100``,
    ``grad`` not 2-D, ``ns_coefficients`` not of length 3.
    """
    if ns_steps >= 100:
        raise ValueError("Number of steps must be less than 100 for computational efficiency")
    if len(grad.shape) != 2:
        raise ValueError("Input tensor gradient must be a 2D matrix")
    if len(ns_coefficients) != 3:
        raise ValueError("Coefficients must be a tuple of exactly 3 values")
    if ns_dtype not in NS_DTYPES:
        raise ValueError(f"ns_dtype must be one of {NS_DTYPES}, but got {ns_dtype!r}")
    xp = array_namespace(grad)
    a, b, c = ns_coefficients
    tall = grad.shape[0] > grad.shape[1]

    if ns_dtype == "bfloat16":
        rnd = round_to_bfloat16
        mm = matmul_exact
        x = round_to_bfloat16(grad)
        # torch's CPU bfloat16 kernels compute in float32 with float32 scalars.
        a, b, c = (_as_float32(xp, v) for v in (a, b, c))
    else:
        def rnd(v: Any) -> Any:
            return v

        mm = matmul

        x = xp.astype(grad, xp.float32) if ns_dtype == "float32" else xp.asarray(grad, copy=True)
    dtype = x.dtype
    if tall:
        x = x.T
    # Ensure the spectral norm is at most 1: divide by the Frobenius norm, at least eps.
    norm = rnd(xp.sqrt(sum_squares(xp, x)))
    norm = xp.maximum(norm, rnd(xp.asarray(eps, dtype=dtype, device=device_of(x))))
    x = rnd(div(x, norm))  # a true division on every library (XLA would multiply by 1/norm)
    for _ in range(ns_steps):
        gram = rnd(mm(xp, x, x.T))
        if ns_dtype == "bfloat16":
            gram_update = rnd(fma(b, gram, c * mm(xp, gram, gram)))
            x = rnd(fma(a, x, mm(xp, gram_update, x)))
        else:
            gram_update = b * gram + c * mm(xp, gram, gram)
            x = a * x + mm(xp, gram_update, x)
    if tall:
        x = x.T
    return x


def adjust_lr(lr: Any, adjust_lr_fn: str | None, param_shape: tuple[int, ...]) -> Any:
    r"""torch's ``_adjust_lr``: the learning rate scaled for a matrix of shape ``(m, n)``.

    ``None`` or ``"original"`` (Keller Jordan's): :math:`\gamma\sqrt{\max(1, m/n)}`;
    ``"match_rms_adamw"`` (Moonshot's): :math:`0.2\,\gamma\sqrt{\max(m, n)}`; any other value
    leaves the rate as it is (torch's constructor rejects other values, but a parameter
    group added or loaded later can carry one: torch then scales by 1.0, and so does this).
    A 0-d array ``lr`` stays an array, and the product is computed in its dtype.
    """
    rows, cols = param_shape[:2]
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        ratio = math.sqrt(max(1, rows / cols))
    elif adjust_lr_fn == "match_rms_adamw":
        ratio = 0.2 * math.sqrt(max(rows, cols))
    else:
        ratio = 1.0
    return lr * ratio


def muon_init(param: Any) -> dict[str, Any]:
    """The state Muon starts a parameter with: ``momentum_buffer``, zeros like it."""
    xp = array_namespace(param)
    return {"momentum_buffer": xp.zeros_like(param)}


def muon_step(
    param: Any,
    grad: Any,
    state: dict[str, Any],
    *,
    lr: Any = 1e-3,
    weight_decay: float = 0.1,
    momentum: float = 0.95,
    nesterov: bool = True,
    ns_coefficients: tuple[float, float, float] = (DEFAULT_A, DEFAULT_B, DEFAULT_C),
    ns_steps: int = DEFAULT_NS_STEPS,
    eps: float = EPS,
    adjust_lr_fn: str | None = None,
    ns_dtype: str = "bfloat16",
) -> Any:
    r"""One Muon update of one 2-D parameter, in the order of torch's ``_single_tensor_muon``.

    ``state`` holds ``momentum_buffer`` (as :func:`muon_init` makes it); the new buffer is
    stored back into it. Returns the new parameter. Works on immutable arrays: keep what it
    returns.

    .. math::
        B &\leftarrow \mathrm{lerp}(B, g, 1 - \mu) = \mu B + (1 - \mu) g \\
        U &\leftarrow \mathrm{lerp}(g, B, \mu) \text{ if nesterov else } B \\
        O &\leftarrow \mathrm{NS}^{(a,b,c)}_k(U; \varepsilon) \\
        \theta &\leftarrow \theta\,(1 - \gamma\lambda) \\
        \theta &\leftarrow \theta - \mathrm{AdjustLR}(\gamma; m, n)\, O

    The weight decay uses the unadjusted ``lr``. ``O`` (bfloat16 in torch) is widened
    exactly to the parameter's dtype and added with one fused rounding (``add_(alpha=)``).
    Raises ``ValueError`` (torch's message) for a gradient that is not 2-D, and the errors
    of ``zeropower_via_newtonschulz``, before changing anything.
    """
    if len(grad.shape) != 2:
        raise ValueError("Param gradient must be a 2D matrix")
    xp = array_namespace(param)
    lr = to_scalar(lr)
    buf = lerp_(state["momentum_buffer"], grad, 1 - momentum)
    state["momentum_buffer"] = buf
    update = lerp_(xp.asarray(grad, copy=True), buf, momentum) if nesterov else buf
    update = zeropower_via_newtonschulz(update, ns_coefficients, ns_steps, eps, ns_dtype=ns_dtype)
    adjusted_lr = adjust_lr(lr, adjust_lr_fn, tuple(param.shape))
    param = mul_(param, 1 - lr * weight_decay)
    return add_(param, xp.astype(update, param.dtype), alpha=-scalar(adjusted_lr))


def _check_ns(grad: Any, ns_coefficients: Any, ns_steps: int) -> None:
    """The checks torch makes at a step, in its order, before anything changes."""
    if len(grad.shape) != 2:
        raise ValueError("Param gradient must be a 2D matrix")
    if ns_steps >= 100:
        raise ValueError("Number of steps must be less than 100 for computational efficiency")
    if len(ns_coefficients) != 3:
        raise ValueError("Coefficients must be a tuple of exactly 3 values")


class Muon(Optimizer):
    r"""Muon (``torch.optim.Muon``): momentum orthogonalized by Newton–Schulz, for 2-D
    parameters.

    .. math::
        \begin{aligned}
        &\textbf{input}: \gamma \text{ (lr)}, \lambda \text{ (weight decay)},
            \mu \text{ (momentum)}, \textit{nesterov}, (a, b, c) \text{ (NS coefficients)},
            \varepsilon \text{ (eps)}, k \text{ (NS steps)}, \theta_0 \in \mathbb{R}^{m\times n} \\
        &\textbf{initialize}: B_0 \leftarrow 0 \text{ (momentum buffer)} \\
        &\textbf{for } t = 1, 2, \ldots \textbf{ do} \\
        &\quad g_t \leftarrow \nabla_\theta f_t(\theta_{t-1}) \\
        &\quad B_t \leftarrow \mu B_{t-1} + (1 - \mu) g_t \\
        &\quad \widetilde B_t \leftarrow (1 - \mu) g_t + \mu B_t \text{ if } \textit{nesterov}
            \text{ else } B_t \\
        &\quad X \leftarrow \widetilde B_t / \max(\lVert \widetilde B_t \rVert_F, \varepsilon)
            \quad (\text{transposed when } m > n) \\
        &\quad \textbf{repeat } k \textbf{ times}: \ A \leftarrow X X^\top,\
            X \leftarrow a X + (b A + c A^2) X \\
        &\quad O_t \leftarrow X \quad (\text{transposed back}) \\
        &\quad \theta_t \leftarrow \theta_{t-1}(1 - \gamma\lambda) - \gamma' O_t, \qquad
            \gamma' = \begin{cases} \gamma \sqrt{\max(1, m/n)} & \text{original (default)} \\
            0.2\, \gamma \sqrt{\max(m, n)} & \text{match\_rms\_adamw} \end{cases}
        \end{aligned}

    Each letter has one meaning: :math:`m \times n` is the parameter's shape (rows,
    columns), :math:`B_t` the momentum buffer, :math:`(a, b, c)` the Newton–Schulz
    coefficients, :math:`A` the Gram matrix :math:`X X^\top` of the iteration. (torch's
    documentation writes the buffer as :math:`\mu B + g`; its code, and this, use
    ``lerp``: :math:`\mu B + (1 - \mu) g`.)

    Args:
        params (iterable): 2-D Parameters, ``(name, Parameter)`` pairs, or parameter-group
            dicts. Biases, embeddings and other non-matrix parameters belong to another
            optimizer (AdamW).
        lr (float or 0-d array): learning rate (default: 1e-3). A 0-d array is read as torch
            reads a tensor lr: the adjusted rate and ``1 - lr * weight_decay`` are computed in
            the array's dtype.
        weight_decay (float): decoupled weight decay, with the unadjusted lr (default: 0.1).
        momentum (float): momentum factor (default: 0.95).
        nesterov (bool): Nesterov momentum (default: True).
        ns_coefficients (tuple[float, float, float]): :math:`(a, b, c)` of the Newton–Schulz
            quintic (default: (3.4445, -4.775, 2.0315)).
        eps (float): lower bound of the norm the iteration divides by (default: 1e-7).
        ns_steps (int): Newton–Schulz iterations, fewer than 100 (default: 5).
        adjust_lr_fn (str or None): ``"original"`` (also ``None``) or ``"match_rms_adamw"``.
        ns_dtype (str, keyword-only): **a refoptim extension, not in torch.** The precision
            of the Newton–Schulz iteration: ``"bfloat16"`` (default: torch's, emulated in
            float32 arrays), ``"float32"``, or ``"param"`` (the parameter's dtype, no bfloat16
            rounding). It is an attribute of the optimizer, not a group option, so
            ``param_groups`` and ``state_dict`` keep torch's layout.

    State per parameter: ``momentum_buffer`` (the parameter's shape and dtype).

    Torch quirks reproduced (each explained on the manual's page, "Reproducing torch
    exactly"):

    * Newton–Schulz in bfloat16 whatever the dtype (a float64 gradient rounded twice);
    * torch's CPU bfloat16 kernels: widen to float32, compute, round once (the sums in
      refoptim's fixed order);
    * tall matrices orthogonalized transposed;
    * the weight decay with the unadjusted ``lr``, the update with the adjusted one;
    * 2-D parameters checked only by the constructor;
    * ``adjust_lr_fn`` checked only by the constructor (another value: ratio 1.0);
    * ``ns_steps`` and ``ns_coefficients`` checked only at the step; a negative ``eps``
      accepted;
    * complex parameters: accepted by the constructor, rejected at the step.

    Differences from torch (explained there too):

    * validate, then mutate: the step errors above raised before anything changes;
    * not reproduced: torch's oneDNN bfloat16 products (CPUs with AVX-512 BF16 or AMX).

    torch's Muon has no ``foreach``, ``fused`` or ``differentiable`` flags (its functional
    ``muon`` raises ``RuntimeError`` for ``foreach=True``), so neither has this class; its
    single-tensor path is the one reproduced.
    """

    _integer_options = ("ns_steps",)  # torch iterates range() over them
    _complex_refusal = "Muon does not support complex parameters"
    _length_messages = {"ns_coefficients": "Coefficients must be a tuple of exactly 3 values"}

    def _check_options(self, gi: int, group: dict[str, Any], *, lengths_only: bool, unused: tuple[str, ...]) -> None:
        """The base's checks, and torch's error for ``eps=None`` (its ``clamp`` of the
        norm raises it)."""
        if not lengths_only and "eps" in group and group["eps"] is None:
            raise RuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")
        super()._check_options(gi, group, lengths_only=lengths_only, unused=unused)

    def __init__(
        self,
        params: Any,
        lr: Any = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: tuple[float, float, float] = (DEFAULT_A, DEFAULT_B, DEFAULT_C),
        eps: float = EPS,
        ns_steps: int = DEFAULT_NS_STEPS,
        adjust_lr_fn: str | None = None,
        *,
        ns_dtype: str = "bfloat16",
    ) -> None:
        check_lr(lr, "Learning rate should be >= 0 but is: {}")
        check_nonnegative(momentum, "momentum should be >= 0 but is: {}")
        check_weight_decay(weight_decay, "weight decay should be >= 0 but is: {}")
        if adjust_lr_fn is not None and adjust_lr_fn not in ["original", "match_rms_adamw"]:
            raise ValueError(f"Adjust learning rate function {adjust_lr_fn} is not supported")
        if ns_dtype not in NS_DTYPES:
            raise ValueError(f"ns_dtype must be one of {NS_DTYPES}, but got {ns_dtype!r}")

        defaults = {
            "lr": lr,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "nesterov": nesterov,
            "ns_coefficients": ns_coefficients,
            "eps": eps,
            "ns_steps": ns_steps,
            "adjust_lr_fn": adjust_lr_fn,
        }
        super().__init__(params, defaults)
        self.ns_dtype = ns_dtype

        for group in self.param_groups:
            for p in group["params"]:
                if len(p.data.shape) != 2:
                    raise ValueError(
                        "Muon only supports 2D parameters whereas we found a parameter with size: "
                        f"torch.Size({list(p.data.shape)})"
                    )

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "ns_dtype": self.ns_dtype}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("ns_dtype", "bfloat16")

    def _check_group(self, group: dict[str, Any], pairs: list[tuple[Any, Any]]) -> None:
        """torch's Muon checks of a group, before any update: per parameter a 2-D gradient,
        ``ns_steps < 100`` and three coefficients."""
        for _, grad in pairs:
            _check_ns(grad, group["ns_coefficients"], group["ns_steps"])

    def _init_state(self, p: Any, group: dict[str, Any]) -> dict[str, Any]:
        return muon_init(p.data)

    def _update(self, param: Any, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> Any:
        return muon_step(
            param,
            grad,
            state,
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            momentum=group["momentum"],
            nesterov=group["nesterov"],
            ns_coefficients=group["ns_coefficients"],
            ns_steps=group["ns_steps"],
            eps=group["eps"],
            adjust_lr_fn=group["adjust_lr_fn"],
            ns_dtype=self.ns_dtype,
        )
