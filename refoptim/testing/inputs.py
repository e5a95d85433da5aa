"""The torch-free inputs of the conformance harnesses: configuration lists, parameter
shapes, initial values and the builders of refoptim's side.

Everything here imports only NumPy and refoptim, so tools that must run without torch
(``python -m refoptim fingerprint``, :mod:`refoptim.fingerprint`) enumerate the same
configurations as ``python -m refoptim conformance``. The torch-side modules
(:mod:`!refoptim.testing.torch_adapter`, ``conformance_lbfgs``, ``conformance_muon``,
``conformance_adafactor``, ``conformance_sparse``, :mod:`!refoptim.testing.schedulers`,
:mod:`!refoptim.testing.swa`) import their names back from here, so every old name still
works there.
"""

from __future__ import annotations

import importlib
import itertools
import math
from typing import Any

import numpy as np

import refoptim

from . import backends, thresholds
from .matrix import SHAPES, Config, _lr_array

__all__ = [
    "ADAFACTOR",
    "ADAFACTOR_DTYPES",
    "ADAFACTOR_SHAPES",
    "AVERAGING_SETUPS",
    "AVERAGING_UPDATES",
    "EXTENSION_CONFIGS",
    "LBFGS_OBJECTIVES",
    "MUON_DTYPES",
    "MUON_LARGE_SHAPES",
    "MUON_SHAPES",
    "NUMPY_DTYPES",
    "SCHEDULER_CONFIGS",
    "SCHEDULER_DEFAULT_STEPS",
    "SCHEDULER_LRS",
    "SCHEDULER_STEPS",
    "SPARSE_OBJECTIVES",
    "SPARSE_SHAPES",
    "SWALR_CASES",
    "SWALR_STEPS",
    "SWALR_SWA_LRS",
    "SWA_GROUP_LRS",
    "Gradients",
    "Scale",
    "Twin",
    "adafactor_configs",
    "averaging_kwargs",
    "build_refoptim",
    "from_real_flat",
    "has_grad",
    "initial_values",
    "lbfgs_configs",
    "muon_configs",
    "muon_shapes",
    "real_flat",
    "refoptim_class",
    "refoptim_params",
    "rosenbrock_grad",
    "sparse_configs",
]

NUMPY_DTYPES = {"float32": np.float32, "float64": np.float64, "complex64": np.complex64}
"""The NumPy dtype of each configuration dtype name."""


# =========================================================================== builders
def _map_leaves(value: Any, is_leaf: Any, convert: Any) -> Any:
    """``convert`` applied to every leaf of nested dicts, lists and tuples."""
    if is_leaf(value):
        return convert(value)
    if isinstance(value, dict):
        return {k: _map_leaves(v, is_leaf, convert) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_map_leaves(v, is_leaf, convert) for v in value)
    return value


def real_flat(x: np.ndarray) -> np.ndarray:
    """``x`` flattened, complex as (real, imag) pairs (torch's ``view_as_real(x).view(-1)``):
    one weight vector of a flat objective (LBFGS's logistic regression)."""
    x = np.ascontiguousarray(x)
    if np.iscomplexobj(x):
        x = np.stack([x.real, x.imag], axis=-1)
    return x.reshape(-1)


def from_real_flat(flat: np.ndarray, like: np.ndarray) -> np.ndarray:
    """The inverse of :func:`real_flat`, shaped and typed like ``like``; a complex value is
    assembled part by part (no complex arithmetic, which would lose ``-0.0`` real parts and
    mix infinities into NaNs)."""
    like = np.asarray(like)
    if np.iscomplexobj(like):
        pairs = flat.reshape(like.shape + (2,))
        out = np.empty(like.shape, dtype=like.dtype)
        out.real = pairs[..., 0]
        out.imag = pairs[..., 1]
        return out
    return flat.reshape(like.shape).astype(like.dtype)


def initial_values(cfg: Config, shapes: tuple[Any, ...] = SHAPES) -> list[np.ndarray]:
    """The initial parameter values of a configuration, from its seed: one per shape of
    ``shapes`` (the matrix's by default; ``"view"`` is a (3, 4) value)."""
    rng = np.random.default_rng(cfg.seed)
    dtype = NUMPY_DTYPES[cfg.dtype]
    out = []
    for shape in shapes:
        shape = (3, 4) if shape == "view" else shape
        x = rng.standard_normal(shape)
        if cfg.objective == "rosenbrock":
            x = 0.5 + 0.25 * x
        if np.dtype(dtype).kind == "c":
            x = x + 1j * rng.standard_normal(shape)
        out.append(np.asarray(x, dtype=dtype))
    return out


# =========================================================================== gradients
def has_grad(step: int, index: int) -> bool:
    """Parameter 2 (the 2-d one) gets no gradient for its first three steps and every
    seventh step after: its state starts late and its step count lags, as in torch."""
    return not (index == 2 and (step < 3 or step % 7 == 0))


def _pow10(exponents: np.ndarray) -> np.ndarray:
    """``10 ** exponents`` element by element through C's ``pow`` (``math.pow``), not NumPy's
    ``power``, whose SIMD kernels (SVML on AVX-512) round differently on other CPUs: the
    inputs, and the golden corpus written from them, are the same bits on every machine."""
    flat = np.asarray(exponents, dtype=np.float64).reshape(-1)
    return np.array([math.pow(10.0, float(e)) for e in flat], dtype=np.float64).reshape(np.shape(exponents))


class Gradients:
    """The gradient source of a configuration, seeded from it (``cfg.seed + 1``): call it
    with the step index (from 0) and the current parameter values (NumPy) to get one
    gradient per parameter, ``None`` where the parameter gets none at that step
    (:func:`has_grad`).

    ``"fixed"`` draws a sequence up front (per-parameter scales from 1e-3 to 10);
    ``"quadratic"`` and ``"rosenbrock"`` are objectives with feedback, evaluated at the
    values given. The torch runner, :func:`refoptim.testing.compare` and the golden corpus
    all draw from this one source, so their inputs cannot drift apart.
    """

    def __init__(self, cfg: Config, values: list[np.ndarray]) -> None:
        self.cfg = cfg
        dtype = NUMPY_DTYPES[cfg.dtype]
        rng = np.random.default_rng(cfg.seed + 1)
        complex_ = np.dtype(dtype).kind == "c"

        def normal(shape: tuple) -> np.ndarray:
            x = rng.standard_normal(shape)
            if complex_:
                x = x + 1j * rng.standard_normal(shape)
            return np.asarray(x, dtype=dtype)

        shapes = [v.shape for v in values]
        if cfg.objective == "fixed":
            # Per-parameter scales from 1e-3 to 10, so small and large gradients both occur.
            scales = [10.0 ** rng.uniform(-3, 1) for _ in shapes]
            self.sequence = [[normal(s) * dtype(c) for s, c in zip(shapes, scales)] for _ in range(cfg.steps)]
        elif cfg.objective == "quadratic":
            # f = sum a/2 |x - c|^2 with curvatures a from 0.1 to 10 (ill-conditioned).
            self.curvature = [np.asarray(_pow10(rng.uniform(-1, 1, s)), dtype=dtype) for s in shapes]
            self.center = [normal(s) for s in shapes]

    def __call__(self, step: int, params: list[np.ndarray]) -> list[np.ndarray | None]:
        if self.cfg.objective == "fixed":
            grads = [g.copy() for g in self.sequence[step]]
        elif self.cfg.objective == "quadratic":
            grads = [a * (x - c) for a, x, c in zip(self.curvature, params, self.center)]
        else:
            grads = [rosenbrock_grad(x) for x in params]
        return [g if has_grad(step, i) else None for i, g in enumerate(grads)]


def rosenbrock_grad(x: np.ndarray) -> np.ndarray:
    """Gradient of sum_i 100 (x[i+1] - x[i]^2)^2 + (1 - x[i])^2 over the flattened array."""
    flat = np.ascontiguousarray(x).reshape(-1)
    g = np.zeros_like(flat)
    if flat.size >= 2:
        xi, xn = flat[:-1], flat[1:]
        t = xn - xi * xi
        g[:-1] += -400 * xi * t - 2 * (1 - xi)
        g[1:] += 200 * t
    elif flat.size == 1:
        g += 2 * (flat - 1)
    return g.reshape(x.shape)


class Twin:
    """Parameters and an optimizer of one configuration on one side (refoptim or torch)."""

    def __init__(self, params: list[Any], optimizer: Any) -> None:
        self.params = params
        self.optimizer = optimizer


def _groups(cfg: Config, params: list[Any], convert: Any = None) -> list[Any]:
    """The params argument: a plain list, or groups taking parameters round-robin, each
    group's options passed through ``convert`` (e.g. ``torch_adapter.torch_options``) when given."""
    if not cfg.groups:
        return params
    groups = [{"params": [], **(convert(g) if convert else g)} for g in cfg.groups]
    for i, p in enumerate(params):
        groups[i % len(groups)]["params"].append(p)
    return groups


def refoptim_class(name: str) -> type:
    """refoptim's optimizer class of a torch.optim name: ``refoptim.<name>``, or found in
    its own module ``refoptim.<name lowercased>`` before it is exported."""
    cls = getattr(refoptim, name, None)
    if cls is None:
        cls = getattr(importlib.import_module(f"refoptim.{name.lower()}"), name)
    return cls


def refoptim_params(shapes: Any, values: list[np.ndarray], backend: str = "numpy") -> list[Any]:
    """refoptim Parameters holding copies of ``values`` as arrays of ``backend`` (a name of
    :mod:`refoptim.testing.backends`); where ``shapes`` says ``"view"``, a non-contiguous
    view (every other row, columns 1 to 4, of a (6, 9) array)."""
    b = backends.require_backend(backend)
    params = []
    for shape, value in zip(shapes, values):
        if shape == "view":
            # The values are placed before the base crosses to the backend, so immutable
            # arrays (JAX) get the same view; mutable ones get a true view into ``base``.
            base_np = np.zeros((6, 9), dtype=value.dtype)
            base_np[::2, 1:5] = value
            data = b.from_numpy(base_np)[::2, 1:5]
        else:
            data = b.from_numpy(value)
        params.append(refoptim.Parameter(data))
    return params


def build_refoptim(cfg: Config, values: list[np.ndarray], backend: str = "numpy") -> Twin:
    """The refoptim side on ``backend`` (a name of :mod:`refoptim.testing.backends`;
    default NumPy), the view parameter a non-contiguous view. On another backend than NumPy
    the array options (a 0-d ``lr``) become that backend's arrays too."""
    params = refoptim_params(SHAPES, values, backend)
    convert = None
    if backend != "numpy":
        b = backends.require_backend(backend)

        def convert(opts: dict[str, Any]) -> dict[str, Any]:
            return _map_leaves(opts, lambda v: isinstance(v, np.ndarray), b.from_numpy)

    options = {"foreach": False, **(convert(cfg.options) if convert else cfg.options)}
    optimizer = refoptim_class(cfg.optimizer)(_groups(cfg, params, convert), **options)
    return Twin(params, optimizer)


# =========================================================================== LBFGS
LBFGS_OBJECTIVES = ("quadratic", "rosenbrock", "logistic")
"""The objectives of the LBFGS configurations, all with feedback (the gradient depends on
the parameters)."""


_LBFGS_SW = {"line_search_fn": "strong_wolfe"}

# (objective, options, steps) per dtype: every option alone and with the line search, the
# tolerances chosen so that they end inner loops early in these runs, ``history_size``
# small enough that the history rolls over.
#
# How long a run can be is set by L-BFGS's sensitivity to rounding, not by refoptim: torch
# against itself, with only the summation order of its dot products changed, drifts apart
# just as far (measured: float64 Rosenbrock with strong Wolfe, free-running, 1.8e-12 after
# two steps of 20 iterations and 1.8e-10 after four; float32, with torch's default
# tolerances far below float32's resolution, one step of 20 iterations differs by up to
# 1e-4 in the parameters and 1e-3 to 1 in the state, with different iteration counts).
# So float64 runs use torch's defaults, Rosenbrock for one long step or several short
# ones; float32 runs keep to a few iterations per step and tolerances float32 can resolve.
_LBFGS_ENTRIES: dict[str, list[tuple[str, dict[str, Any], int]]] = {
    "float64": [
        # defaults; the line search
        ("quadratic", {}, 4),
        ("quadratic", dict(_LBFGS_SW), 4),
        ("rosenbrock", dict(_LBFGS_SW), 1),
        ("logistic", {}, 3),
        ("logistic", dict(_LBFGS_SW), 3),
        # lr (a float and a 0-d float32 array)
        ("quadratic", {"lr": 0.5}, 4),
        ("rosenbrock", {"lr": 0.1, "max_iter": 10}, 3),
        ("logistic", {"lr": _lr_array(0.5)}, 3),
        ("quadratic", {"lr": _lr_array(0.8), **_LBFGS_SW}, 3),
        # max_iter, max_eval (the max_eval test ends the loop; with a line search it also
        # limits the search's evaluations)
        ("quadratic", {"max_iter": 5}, 6),
        ("rosenbrock", {"max_iter": 7, "max_eval": 9, **_LBFGS_SW}, 2),
        ("logistic", {"max_iter": 10, "max_eval": 6}, 4),
        ("quadratic", {"max_iter": 1, **_LBFGS_SW}, 8),
        ("rosenbrock", {"max_eval": 3, **_LBFGS_SW}, 6),
        # tolerance_grad, tolerance_change ending inner loops early
        ("quadratic", {"tolerance_grad": 1e-2}, 4),
        ("logistic", {"tolerance_grad": 1e-3, **_LBFGS_SW}, 3),
        ("quadratic", {"tolerance_change": 1e-2}, 4),
        ("rosenbrock", {"tolerance_change": 0.05, **_LBFGS_SW}, 2),
        ("logistic", {"tolerance_change": 1e-4}, 3),
        # history_size small: the history rolls over
        ("quadratic", {"history_size": 2}, 4),
        ("rosenbrock", {"history_size": 3, **_LBFGS_SW}, 1),
        ("logistic", {"history_size": 2, "max_iter": 8}, 4),
        # several options at once
        ("rosenbrock", {"lr": 0.5, "max_iter": 8, "history_size": 4, "tolerance_change": 1e-6, **_LBFGS_SW}, 2),
        # a long free-running Rosenbrock run: ill-conditioned, in the non-gating sensitivity
        # section (thresholds.SENSITIVITY)
        ("rosenbrock", {"max_iter": 20, **_LBFGS_SW}, 4),
    ],
    "float32": [
        ("quadratic", {"max_iter": 5}, 2),
        ("quadratic", {"max_iter": 5, **_LBFGS_SW}, 2),
        ("rosenbrock", {"max_iter": 5, **_LBFGS_SW}, 2),
        ("logistic", {"max_iter": 5}, 2),
        ("logistic", {"max_iter": 5, **_LBFGS_SW}, 2),
        ("quadratic", {"lr": 0.5, "max_iter": 5}, 2),
        ("rosenbrock", {"lr": 0.1, "max_iter": 5}, 2),
        ("logistic", {"lr": _lr_array(0.5), "max_iter": 5}, 2),
        ("quadratic", {"lr": _lr_array(0.8), "max_iter": 4, **_LBFGS_SW}, 2),
        ("rosenbrock", {"max_iter": 4, "max_eval": 5, **_LBFGS_SW}, 3),
        ("logistic", {"max_iter": 10, "max_eval": 6}, 2),
        ("quadratic", {"max_iter": 1, **_LBFGS_SW}, 8),
        ("rosenbrock", {"max_eval": 3, **_LBFGS_SW}, 6),
        ("quadratic", {"tolerance_grad": 0.3, "max_iter": 8}, 2),
        ("logistic", {"tolerance_grad": 3e-2, "max_iter": 8, **_LBFGS_SW}, 2),
        ("quadratic", {"tolerance_change": 0.1, "max_iter": 8}, 2),
        ("rosenbrock", {"tolerance_change": 0.5, "max_iter": 8, **_LBFGS_SW}, 2),
        ("quadratic", {"history_size": 2, "max_iter": 6}, 2),
        ("rosenbrock", {"history_size": 2, "max_iter": 6, **_LBFGS_SW}, 2),
        ("logistic", {"history_size": 2, "max_iter": 4}, 2),
        # well-conditioned stand-ins for the four cases above that torch's own summation
        # order moves (thresholds.SENSITIVITY): fewer iterations per step, so the gating
        # matrix keeps the logistic objective without a line search, max_eval and a
        # rolling history, and the quadratic with an lr
        ("logistic", {"max_iter": 3}, 2),
        ("logistic", {"max_iter": 4, "max_eval": 3}, 2),
        ("logistic", {"history_size": 2, "max_iter": 3}, 2),
        ("quadratic", {"lr": 0.5, "max_iter": 3}, 2),
        # torch's defaults in float32: ill-conditioned (thresholds.SENSITIVITY), reported in
        # the non-gating sensitivity section so that their figures stay visible
        ("quadratic", {}, 2),
        ("logistic", dict(_LBFGS_SW), 2),
    ],
}
# complex64: 2 * 29 real unknowns, which reach float32's resolution sooner; real-valued
# objectives of complex parameters only (no Rosenbrock).
_LBFGS_ENTRIES["complex64"] = [
    ("quadratic", {"max_iter": 4}, 2),
    ("quadratic", {"max_iter": 4, **_LBFGS_SW}, 2),
    ("logistic", {"max_iter": 4}, 1),
    ("logistic", {"max_iter": 4, **_LBFGS_SW}, 2),
    ("quadratic", {"lr": 0.5, "max_iter": 3}, 2),
    ("logistic", {"lr": _lr_array(0.5), "max_iter": 4}, 2),
    ("quadratic", {"max_iter": 6, "max_eval": 4}, 2),
    ("quadratic", {"max_iter": 1, **_LBFGS_SW}, 8),
    ("quadratic", {"tolerance_grad": 0.3, "max_iter": 8}, 2),
    ("quadratic", {"tolerance_change": 0.1, "max_iter": 8}, 2),
    ("quadratic", {"history_size": 2, "max_iter": 4}, 2),
    ("logistic", {"history_size": 2, "max_iter": 4}, 1),
]


def lbfgs_configs(optimizers: list[str] | None, dtypes: tuple[str, ...], steps: int) -> list[Config]:
    """The LBFGS configurations, if ``"LBFGS"`` is among ``optimizers``.

    Each entry runs in the requested dtypes that ``thresholds.ONE_STEP_REL["LBFGS"]``
    names (complex ones on the quadratic and logistic objectives only), for its own
    number of ``step(closure)`` calls, at most ``steps``.
    """
    if optimizers is not None and "LBFGS" not in optimizers:
        return []
    limits = thresholds.ONE_STEP_REL["LBFGS"]
    out = []
    for dtype in dtypes:
        if dtype not in limits or dtype not in _LBFGS_ENTRIES:
            continue
        for objective_name, options, n in _LBFGS_ENTRIES[dtype]:
            out.append(Config("LBFGS", dict(options), dtype, (), objective_name, max(1, min(n, steps))))
    return out



# =========================================================================== Muon
MUON_SHAPES: tuple[Any, ...] = ((3, 4), (4, 3), (5, 5), (1, 6), "view")
"""The parameters of every Muon configuration but the ``"large"`` ones; ``"view"`` is a
non-contiguous (3, 4) view of a (6, 9) array."""

MUON_LARGE_SHAPES: tuple[Any, ...] = ((24, 40), (64, 48))
"""The parameters of the ``"large"`` objective (a fixed gradient sequence), matrices whose
products sum enough terms that torch's float32 sums land on a bfloat16 rounding boundary
where refoptim's exact products do not, so a few elements round to the neighbouring
bfloat16 (a known deviation, see thresholds.KNOWN_DEVIATIONS)."""


def muon_shapes(cfg: Config) -> tuple[Any, ...]:
    """The parameters of a Muon configuration (all 2-D): :data:`MUON_LARGE_SHAPES` for
    the ``"large"`` objective, else :data:`MUON_SHAPES`."""
    return MUON_LARGE_SHAPES if cfg.objective == "large" else MUON_SHAPES

MUON_DTYPES = ("float32", "float64")


_MUON_ALONE: list[dict[str, Any]] = [
    {},
    {"lr": 1e-2},
    {"lr": _lr_array(2e-2)},
    {"weight_decay": 0.0},
    {"weight_decay": 0.5},
    {"momentum": 0.9},
    {"momentum": 0.0},
    {"nesterov": False},
    {"ns_coefficients": (2.0, -1.5, 0.5)},
    {"eps": 1e-3},
    {"eps": 10.0},  # larger than the norm: the division by eps path
    {"ns_steps": 1},
    {"ns_steps": 0},
    {"ns_steps": 10},
    {"adjust_lr_fn": "original"},
    {"adjust_lr_fn": "match_rms_adamw"},
]


def _muon_crossed() -> list[dict[str, Any]]:
    return [
        {"lr": 2e-2, "nesterov": nesterov, "adjust_lr_fn": fn, "weight_decay": wd, "momentum": mom}
        for nesterov, fn, wd, mom in itertools.product(
            (True, False), (None, "match_rms_adamw"), (0.0, 0.1), (0.9, 0.95)
        )
    ]


_MUON_GROUPS = (
    {"lr": 2e-2},
    {"lr": 1e-2, "weight_decay": 0.0, "nesterov": False, "adjust_lr_fn": "match_rms_adamw"},
    {"lr": 5e-2, "momentum": 0.8, "ns_steps": 3, "eps": 1e-3},
)

_MUON_FEEDBACK: list[dict[str, Any]] = [
    {"lr": 2e-2},
    {"lr": 5e-2, "adjust_lr_fn": "match_rms_adamw", "weight_decay": 0.01},
    {"lr": 2e-2, "nesterov": False, "momentum": 0.9},
]


def muon_configs(optimizers: list[str] | None, dtypes: tuple[str, ...], steps: int) -> list[Config]:
    """Muon's configurations in the requested real dtypes (float32, float64): every option
    alone, crossings of nesterov x adjust_lr_fn x weight_decay x momentum, three groups,
    and the quadratic objective (with feedback)."""
    if optimizers is not None and "Muon" not in optimizers:
        return []
    entries: list[tuple[dict[str, Any], tuple[dict[str, Any], ...], str]] = []
    entries += [(o, (), "fixed") for o in _MUON_ALONE + _muon_crossed()]
    entries += [({}, _MUON_GROUPS, "fixed"), ({}, _MUON_GROUPS, "quadratic")]
    entries += [(o, (), "quadratic") for o in _MUON_FEEDBACK]
    entries += [({"lr": 2e-2}, (), "large")]
    out, seen = [], set()
    for dtype in dtypes:
        if dtype not in MUON_DTYPES:
            continue
        for options, groups, objective in entries:
            # the large matrices' known deviation first shows at step 44: they always run 50
            n_steps = max(steps, 50) if objective == "large" else steps
            cfg = Config("Muon", dict(options), dtype, groups, objective, n_steps)
            if cfg.id not in seen:
                seen.add(cfg.id)
                out.append(cfg)
    return out



# =========================================================================== Adafactor
ADAFACTOR = "Adafactor"

ADAFACTOR_SHAPES: tuple[Any, ...] = ((), (5,), (3, 4), "view", (2, 3, 4), (7, 1))
"""The parameters of every Adafactor configuration; ``"view"`` is a (3, 4) non-contiguous
view (every other row, four inner columns) of a (6, 9) array. Index 2, the (3, 4) one,
gets no gradient on its first three steps and every seventh (:func:`has_grad`)."""

ADAFACTOR_DTYPES = ("float32", "float64")


_ADAFACTOR_ALONE: list[dict[str, Any]] = [
    {},
    {"lr": 1e-3},
    {"lr": 0.5},  # rho_t = 1/sqrt(t) from step 5 on
    {"lr": _lr_array(1e-2)},
    {"lr": _lr_array(0.5), "weight_decay": 0.1},
    {"beta2_decay": -0.5},
    {"beta2_decay": 0.0},  # 1 - beta2_t = 1: the factors are the last gradient's means
    {"beta2_decay": -1.0},
    {"eps": (1e-3, 1e-3)},
    {"eps": (1e-30, 1e-1)},
    {"eps": (None, 0.5)},  # the eps2 floor of the RMS acts
    {"eps": (0.1, 1e-3)},  # eps1 clamps both the row mean and the variance estimate
    {"d": 2.0},
    {"d": 1e6},  # no clipping
    {"weight_decay": 0.1},
    {"maximize": True},
]


def _adafactor_crossed() -> list[dict[str, Any]]:
    return [
        {"lr": 5e-2, "weight_decay": wd, "maximize": mx, "d": d, "eps": (eps1, 1e-3)}
        for wd, mx, d, eps1 in itertools.product((0.0, 0.1), (False, True), (1.0, 1.5), (None, 1e-2))
    ]


_ADAFACTOR_GROUPS = (
    {"lr": 1e-2},
    {"lr": 5e-2, "weight_decay": 0.1, "eps": (1e-3, 1e-3)},
    {"lr": 1e-3, "maximize": True, "d": 2.0, "beta2_decay": -0.5},
)

_ADAFACTOR_FEEDBACK: list[tuple[str, dict[str, Any]]] = [
    ("quadratic", {}),
    ("quadratic", {"lr": 5e-2, "weight_decay": 0.01}),
    ("rosenbrock", {"lr": 1e-3}),
]


def adafactor_configs(optimizers: list[str] | None, dtypes: tuple[str, ...] = ADAFACTOR_DTYPES, steps: int = 50) -> list[Config]:
    """Adafactor's configurations in the requested real dtypes ([] unless asked for)."""
    if optimizers is not None and ADAFACTOR not in optimizers:
        return []
    entries: list[tuple[dict[str, Any], tuple[dict[str, Any], ...], str]] = []
    entries += [(o, (), "fixed") for o in _ADAFACTOR_ALONE]
    entries += [(o, (), "fixed") for o in _adafactor_crossed()]
    entries.append(({}, _ADAFACTOR_GROUPS, "fixed"))
    entries.append(({}, _ADAFACTOR_GROUPS, "quadratic"))
    entries += [(o, (), objective) for objective, o in _ADAFACTOR_FEEDBACK]
    out: list[Config] = []
    seen: set[str] = set()
    for dtype in dtypes:
        if dtype not in ADAFACTOR_DTYPES:
            continue  # torch's Adafactor rejects complex parameters
        for options, groups, objective in entries:
            cfg = Config(ADAFACTOR, dict(options), dtype, groups, objective, steps)
            if cfg.id not in seen:
                seen.add(cfg.id)
                out.append(cfg)
    return out



# =========================================================================== sparse gradients
SPARSE_OBJECTIVES = ("sparse",)
"""The gradient source this module owns (a seeded sequence of sparse gradients)."""

SPARSE_SHAPES: tuple[tuple[tuple[int, ...], int], ...] = (((12, 4), 1), ((15,), 1), ((4, 5, 3), 2))
"""(shape, sparse_dim) of the parameters of every configuration."""


_SPARSE_ADAM = [
    {},
    {"lr": 1e-2},
    {"lr": _lr_array(1e-2)},
    {"betas": (0.8, 0.99)},
    {"betas": (0.0, 0.0)},
    {"eps": 1e-3},
    {"maximize": True},
    {"lr": 5e-2, "betas": (0.5, 0.9), "eps": 1e-6, "maximize": True},
]
_SPARSE_ADAM_GROUPS = (
    {"lr": 1e-2},
    {"lr": 3e-3, "betas": (0.5, 0.9)},
    {"lr": 2e-2, "eps": 1e-4, "maximize": True},
)
_SPARSE_SGD = [
    {},
    {"lr": 0.1},
    {"lr": _lr_array(1e-2)},
    {"maximize": True},
    {"lr": 0.05, "maximize": True},
    # momentum: a sparse momentum buffer (torch's sparse-sparse addition)
    {"lr": 0.1, "momentum": 0.9},
    {"lr": 0.05, "momentum": 0.9, "dampening": 0.1},
    {"lr": 0.05, "momentum": 0.5, "dampening": 0.5, "maximize": True},
    {"lr": 0.1, "momentum": 0.9, "nesterov": True},
    {"lr": _lr_array(2e-2), "momentum": 0.8, "nesterov": True, "maximize": True},
    {"momentum": 1.0},
]
_SPARSE_SGD_GROUPS = (
    {"lr": 0.1},
    {"lr": 0.05, "maximize": True, "momentum": 0.5, "dampening": 0.2},
    {"lr": 0.2, "momentum": 0.9, "nesterov": True},
)
_SPARSE_ADAGRAD = [
    {},
    {"lr": 0.1},
    {"lr": _lr_array(1e-1)},
    {"lr_decay": 0.1},
    {"eps": 1e-3},
    {"initial_accumulator_value": 0.5},
    {"maximize": True},
    {"lr": 0.1, "lr_decay": 0.05, "initial_accumulator_value": 0.1, "eps": 1e-6, "maximize": True},
]
_SPARSE_ADAGRAD_GROUPS = ({"lr": 0.1}, {"lr": 0.05, "lr_decay": 0.1}, {"lr": 0.2, "eps": 1e-3, "maximize": True})

_SPARSE_TABLE = {
    "SparseAdam": (_SPARSE_ADAM, _SPARSE_ADAM_GROUPS, ("float32", "float64")),
    "SGD": (_SPARSE_SGD, _SPARSE_SGD_GROUPS, ("float32", "float64", "complex64")),
    "Adagrad": (_SPARSE_ADAGRAD, _SPARSE_ADAGRAD_GROUPS, ("float32", "float64", "complex64")),
}


def sparse_configs(optimizers: list[str] | None = None, dtypes: tuple[str, ...] = ("float32", "float64", "complex64"),
            steps: int = 50) -> list[Config]:
    """SparseAdam's configurations, and SGD's and Adagrad's with sparse gradients, for the
    named optimizers (torch class names) in the dtypes torch supports for each: SparseAdam
    refuses complex parameters; SGD and Adagrad take complex sparse gradients."""
    names = list(optimizers) if optimizers is not None else list(_SPARSE_TABLE)
    out = []
    for name in names:
        if name not in _SPARSE_TABLE:
            continue
        alone, groups, supported = _SPARSE_TABLE[name]
        for dtype in dtypes:
            if dtype not in supported:
                continue
            for options in alone:
                out.append(Config(name, dict(options), dtype, (), "sparse", steps))
            out.append(Config(name, {}, dtype, tuple(groups), "sparse", steps))
    return out




EXTENSION_CONFIGS: dict[str, Any] = {
    "adafactor": adafactor_configs,
    "lbfgs": lbfgs_configs,
    "muon": muon_configs,
    "sparse": sparse_configs,
}
"""The ``configs(optimizers, dtypes, steps)`` function of each ``matrix.EXTENSIONS``
module, importable without torch (``refoptim.testing.conformance_<module>.configs`` is
the same function)."""


# =========================================================================== schedulers
SCHEDULER_LRS = [0.1, 0.05, 0.3]
"""The initial lr of each of the (up to three) parameter groups of a scheduler case."""

SCHEDULER_DEFAULT_STEPS = 120
"""Steps of a scheduler case not listed in :data:`SCHEDULER_STEPS`."""


class Scale:
    """A callable object (its state is saved by state_dict)."""

    def __init__(self, k):
        self.k = k

    def __call__(self, epoch):
        return self.k ** epoch


SCHEDULER_CONFIGS = {
    "LambdaLR-fn": lambda ns, o: ns.LambdaLR(o, lambda e: 0.95 ** e),
    "LambdaLR-floor": lambda ns, o: ns.LambdaLR(o, lambda e: 1.0 / (1 + e // 7)),
    "LambdaLR-obj": lambda ns, o: ns.LambdaLR(o, Scale(0.97)),
    "LambdaLR-list": lambda ns, o: ns.LambdaLR(o, [(lambda e, j=j: (0.9 + 0.03 * j) ** e)
                                                   for j in range(len(o.param_groups))]),
    "MultiplicativeLR": lambda ns, o: ns.MultiplicativeLR(o, lambda e: 0.95),
    "MultiplicativeLR-var": lambda ns, o: ns.MultiplicativeLR(o, lambda e: 1.0 - 0.01 * (e % 5)),
    "StepLR-3": lambda ns, o: ns.StepLR(o, step_size=3),
    "StepLR-7-0.7": lambda ns, o: ns.StepLR(o, step_size=7, gamma=0.7),
    "StepLR-1-0.99": lambda ns, o: ns.StepLR(o, step_size=1, gamma=0.99),
    "MultiStepLR": lambda ns, o: ns.MultiStepLR(o, milestones=[5, 12, 30], gamma=0.3),
    "MultiStepLR-rep": lambda ns, o: ns.MultiStepLR(o, milestones=[30, 8, 8, 50], gamma=0.7),
    "ConstantLR": lambda ns, o: ns.ConstantLR(o),
    "ConstantLR-0.3-17": lambda ns, o: ns.ConstantLR(o, factor=0.3, total_iters=17),
    "ConstantLR-1": lambda ns, o: ns.ConstantLR(o, factor=1.0, total_iters=4),
    "LinearLR": lambda ns, o: ns.LinearLR(o),
    "LinearLR-0.1-1-23": lambda ns, o: ns.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=23),
    "LinearLR-down": lambda ns, o: ns.LinearLR(o, start_factor=1.0, end_factor=0.05, total_iters=37),
    "ExponentialLR": lambda ns, o: ns.ExponentialLR(o, gamma=0.93),
    "ExponentialLR-1.01": lambda ns, o: ns.ExponentialLR(o, gamma=1.01),
    "PolynomialLR": lambda ns, o: ns.PolynomialLR(o),
    "PolynomialLR-2-40": lambda ns, o: ns.PolynomialLR(o, total_iters=40, power=2.0),
    "PolynomialLR-0.5-13": lambda ns, o: ns.PolynomialLR(o, total_iters=13, power=0.5),
    "CosineAnnealingLR-10": lambda ns, o: ns.CosineAnnealingLR(o, T_max=10),
    "CosineAnnealingLR-7-eta": lambda ns, o: ns.CosineAnnealingLR(o, T_max=7, eta_min=0.001),
    "CosineAnnealingLR-1": lambda ns, o: ns.CosineAnnealingLR(o, T_max=1, eta_min=0.01),
    "CAWR-5": lambda ns, o: ns.CosineAnnealingWarmRestarts(o, T_0=5),
    "CAWR-3-2": lambda ns, o: ns.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2, eta_min=1e-3),
    "CAWR-2-3": lambda ns, o: ns.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=3, eta_min=0),
    "CyclicLR-tri": lambda ns, o: ns.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=7),
    "CyclicLR-tri-updown": lambda ns, o: ns.CyclicLR(o, base_lr=0.001, max_lr=0.2, step_size_up=4,
                                                     step_size_down=9, base_momentum=0.7, max_momentum=0.95),
    "CyclicLR-tri2": lambda ns, o: ns.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=5, mode="triangular2"),
    "CyclicLR-exp": lambda ns, o: ns.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=6, mode="exp_range",
                                              gamma=0.98),
    "CyclicLR-custom": lambda ns, o: ns.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=5,
                                                 scale_fn=lambda x: 1.0 / (1.0 + 0.1 * x), scale_mode="iterations"),
    "CyclicLR-custom-cycle": lambda ns, o: ns.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=5,
                                                       scale_fn=Scale(0.8)),
    "CyclicLR-nomom": lambda ns, o: ns.CyclicLR(o, base_lr=0.02, max_lr=0.3, step_size_up=3,
                                                cycle_momentum=False),
    "CyclicLR-lists": lambda ns, o: ns.CyclicLR(o, base_lr=[0.01 * (i + 1) for i in range(len(o.param_groups))],
                                                max_lr=[0.1 * (i + 1) for i in range(len(o.param_groups))],
                                                step_size_up=8),
    "OneCycleLR": lambda ns, o: ns.OneCycleLR(o, max_lr=0.1, total_steps=100),
    "OneCycleLR-lin": lambda ns, o: ns.OneCycleLR(o, max_lr=0.5, total_steps=77, anneal_strategy="linear",
                                                  pct_start=0.25),
    "OneCycleLR-3ph": lambda ns, o: ns.OneCycleLR(o, max_lr=0.2, epochs=10, steps_per_epoch=9, three_phase=True),
    "OneCycleLR-3ph-lin": lambda ns, o: ns.OneCycleLR(o, max_lr=0.2, total_steps=64, three_phase=True,
                                                      anneal_strategy="linear", div_factor=10.0,
                                                      final_div_factor=100.0),
    "OneCycleLR-nomom-lists": lambda ns, o: ns.OneCycleLR(
        o, max_lr=[0.1 * (i + 1) for i in range(len(o.param_groups))], total_steps=50, cycle_momentum=False),
    "OneCycleLR-mom-lists": lambda ns, o: ns.OneCycleLR(
        o, max_lr=0.3, total_steps=60, base_momentum=[0.8, 0.7, 0.6][:len(o.param_groups)],
        max_momentum=[0.9, 0.95, 0.99][:len(o.param_groups)]),
    # composites
    "chainable-Const+Exp": lambda ns, o: [ns.ConstantLR(o, factor=0.1, total_iters=5), ns.ExponentialLR(o, 0.9)],
    "chainable-Linear+Cos": lambda ns, o: [ns.LinearLR(o, start_factor=0.2, total_iters=10),
                                           ns.CosineAnnealingLR(o, T_max=15)],
    "chainable-Step+MultiStep+Poly": lambda ns, o: [ns.StepLR(o, 4, 0.8), ns.MultiStepLR(o, [10, 20]),
                                                    ns.PolynomialLR(o, total_iters=30, power=1.5)],
    "Chained": lambda ns, o: ns.ChainedScheduler([ns.ConstantLR(o, factor=0.1, total_iters=2),
                                                  ns.ExponentialLR(o, gamma=0.9)]),
    "Chained-opt": lambda ns, o: ns.ChainedScheduler([ns.LinearLR(o, 0.5, 1.0, 7), ns.StepLR(o, 5, 0.5)],
                                                     optimizer=o),
    "Sequential": lambda ns, o: ns.SequentialLR(o, [ns.ConstantLR(o, factor=0.1, total_iters=2),
                                                    ns.ExponentialLR(o, gamma=0.9)], milestones=[2]),
    "Sequential-3": lambda ns, o: ns.SequentialLR(o, [ns.LinearLR(o, 0.1, 1.0, 10), ns.CosineAnnealingLR(o, 20),
                                                      ns.StepLR(o, 5, 0.5)], milestones=[10, 30]),
    "Sequential-nested": lambda ns, o: ns.SequentialLR(o, [
        ns.ChainedScheduler([ns.ConstantLR(o, 0.5, 3), ns.ExponentialLR(o, 0.95)]),
        ns.PolynomialLR(o, total_iters=15, power=2.0)], milestones=[8]),
    "Sequential-Multi-Lambda": lambda ns, o: ns.SequentialLR(o, [
        ns.MultiStepLR(o, [3, 6]), ns.LambdaLR(o, lambda e: 0.9 ** e)], milestones=[12]),
}
"""Every scheduler configuration by name; ``factory(namespace, optimizer)`` builds the
scheduler(s) from ``namespace`` (``torch.optim.lr_scheduler`` or ``refoptim.lr_scheduler``)."""

SCHEDULER_STEPS = {"OneCycleLR": 100, "OneCycleLR-lin": 77, "OneCycleLR-3ph": 90, "OneCycleLR-3ph-lin": 64,
         "OneCycleLR-nomom-lists": 50, "OneCycleLR-mom-lists": 60}
"""Steps of the scheduler cases that do not run :data:`SCHEDULER_DEFAULT_STEPS`."""


# =========================================================================== swa_utils
SWA_GROUP_LRS = [0.1, 0.05, 0.3]
"""The initial lr of each parameter group of a SWALR case."""

SWALR_SWA_LRS = [0.01, 0.2, 0.003]
"""The per-group ``swa_lr`` of a SWALR case that gives a list."""

SWALR_STEPS = 40
"""Steps of every SWALR case."""

AVERAGING_UPDATES = 20
"""``update_parameters`` calls of every averaging case."""

SWALR_CASES: list[tuple[str, int, int, bool]] = list(
    itertools.product(["cos", "linear"], [0, 1, 3, 10, 25], [1, 2, 3], [False, True])
)
"""(anneal_strategy, anneal_epochs, groups, swa_lr given per group) for every SWALR case."""

AVERAGING_SETUPS: dict[str, tuple[str, str, tuple[Any, ...]] | None] = {
    "swa-default": None,
    "swa-multi": ("multi_avg_fn", "get_swa_multi_avg_fn", ()),
    "swa-single": ("avg_fn", "get_swa_avg_fn", ()),
    "ema-multi": ("multi_avg_fn", "get_ema_multi_avg_fn", ()),
    "ema-multi-0.9": ("multi_avg_fn", "get_ema_multi_avg_fn", (0.9,)),
    "ema-multi-0.3": ("multi_avg_fn", "get_ema_multi_avg_fn", (0.3,)),
    "ema-single": ("avg_fn", "get_ema_avg_fn", ()),
    "ema-single-0.9": ("avg_fn", "get_ema_avg_fn", (0.9,)),
}
"""Averaging setups by name, each ``(keyword of AveragedModel, factory function, its
arguments)`` or ``None`` for AveragedModel's default (an equal-weight SWA average)."""


def averaging_kwargs(name: str, namespace: Any) -> dict[str, Any]:
    """The keyword arguments of ``AveragedModel`` for setup ``name`` of
    :data:`AVERAGING_SETUPS`, with the averaging function taken from ``namespace``
    (``torch.optim.swa_utils`` or ``refoptim.swa_utils``)."""
    setup = AVERAGING_SETUPS[name]
    if setup is None:
        return {}
    keyword, factory, args = setup
    return {keyword: getattr(namespace, factory)(*args)}
