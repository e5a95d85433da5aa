"""Adafactor against torch 2.13: configurations and their runner (``matrix.EXTENSIONS``).

Adafactor's steps contain reductions (RMS of the parameter and of the update, row and
column means of the squared gradient, the mean of the row factor), so it is judged by
:func:`refoptim.testing.metrics.step_relative_error` against
``thresholds.ONE_STEP_REL["Adafactor"]`` rather than in ULP; refoptim follows torch's CPU
summation orders, and the measured figures are far inside (mostly exactly zero).

Parameters: 0-d, 1-d, 2-d (which skips its first steps and every seventh, so its state
starts late), a non-contiguous 2-d view, a 3-d stack of matrices (factored over its last
two dimensions) and a single-column matrix. No size-0 parameter: torch cannot step one
(``ZeroDivisionError``, checked by the conformance tests on its own). Needs torch.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from . import inputs, thresholds
from .inputs import ADAFACTOR as NAME
from .inputs import ADAFACTOR_SHAPES as SHAPES
from .inputs import adafactor_configs as configs
from .matrix import Config
from .metrics import relative_error, step_relative_error
from .inputs import Gradients
from .runner import Result, _group_key_errors, _layout_errors
from .torch_adapter import (
    TORCH_DTYPES,
    Twin,
    _groups,
    from_torch,
    numpy_state_dict,
    refoptim_class,
    refoptim_params,
    to_torch,
    torch_options,
)

__all__ = ["SHAPES", "build_refoptim", "build_twin", "configs", "initial_values", "run_config"]

# The configurations (shapes, option lists, ``configs``) live in the torch-free module
# refoptim.testing.inputs, imported above under their old names.


# ----------------------------------------------------------------------------- builders
def initial_values(cfg: Config) -> list[np.ndarray]:
    """The initial parameter values of a configuration, from its seed (Adafactor's shapes)."""
    return inputs.initial_values(cfg, SHAPES)


def build_refoptim(cfg: Config, values: list[np.ndarray]) -> Twin:
    """The refoptim side on NumPy, the view parameter a non-contiguous view."""
    params = refoptim_params(SHAPES, values)
    optimizer = refoptim_class(cfg.optimizer)(_groups(cfg, params), **{"foreach": False, **cfg.options})
    return Twin(params, optimizer)


def build_twin(cfg: Config, values: list[np.ndarray]) -> Twin:
    """The torch side (CPU, ``foreach=False``): the same values, the view a view too."""
    params = []
    for shape, value in zip(SHAPES, values):
        if shape == "view":
            t = torch.zeros((6, 9), dtype=TORCH_DTYPES[cfg.dtype])[::2, 1:5]
            with torch.no_grad():
                t.copy_(to_torch(value))
            t.requires_grad_(True)
        else:
            t = to_torch(value).requires_grad_(True)
        params.append(t)
    optimizer = torch.optim.Adafactor(_groups(cfg, params, torch_options), **{"foreach": False, **torch_options(cfg.options)})
    return Twin(params, optimizer)


# ----------------------------------------------------------------------------- runner
def run_config(cfg: Config, ulp: dict[str, float] | None = None) -> Result:
    """Run one configuration: torch twin, teacher-forced refoptim, free-running refoptim.

    The one-step figures (``param_ulp``/``state_ulp``, in the unit ``"rel"``) are
    :func:`step_relative_error` of the parameter and of every state entry after each
    teacher-forced step. Pass a dict as ``ulp`` to also receive the worst one-step
    error in ULP (``metrics.ulp_error``) under ``"param"`` and ``"state"``.
    """
    from .metrics import ulp_error

    start = time.perf_counter()
    result = Result(cfg)
    values = initial_values(cfg)
    twin = build_twin(cfg, values)
    forced = build_refoptim(cfg, values)
    free = build_refoptim(cfg, values)
    gradients = Gradients(cfg, values)
    ids = {id(p): k for k, p in enumerate(p for g in twin.optimizer.param_groups for p in g["params"])}
    state_id = [ids[id(p)] for p in twin.params]
    worst_ulp = {"param": 0.0, "state": 0.0}

    for step in range(cfg.steps):
        t_before = [from_torch(p) for p in twin.params]
        t_state_before = numpy_state_dict(twin.optimizer.state_dict())
        grads = gradients(step, t_before)

        # Teacher forcing: refoptim starts this step from torch's parameters and state.
        for i, (p, value) in enumerate(zip(forced.params, t_before)):
            p.data[...] = value
            entry = t_state_before["state"].get(state_id[i])
            if entry:
                forced.optimizer.state[p] = {
                    k: np.array(v, copy=True) if isinstance(v, np.ndarray) else v for k, v in entry.items()
                }
            else:
                forced.optimizer.state.pop(p, None)

        for tp, fp, g in zip(twin.params, forced.params, grads):
            tp.grad = None if g is None else to_torch(g)
            fp.grad = None if g is None else g.copy()
        twin.optimizer.step()
        forced.optimizer.step()

        t_state = twin.optimizer.state_dict()["state"]
        r_state = forced.optimizer.state_dict()["state"]
        for i, (tp, fp, g) in enumerate(zip(twin.params, forced.params, grads)):
            operands = [t_before[i]] + ([g] if g is not None else [])
            ours, theirs = np.asarray(fp.data), from_torch(tp)
            err = step_relative_error(ours, theirs, *operands)
            if err > result.param_ulp:
                result.param_ulp, result.param_where = err, f"step {step + 1}, param {SHAPES[i]}"
            worst_ulp["param"] = max(worst_ulp["param"], ulp_error(ours, theirs, *operands))
            t_entry = t_state.get(state_id[i], {})
            r_entry = r_state.get(state_id[i], {})
            if step == 0 or step == cfg.steps - 1:
                result.structure_errors += _layout_errors(f"step {step + 1}, param {SHAPES[i]}", r_entry, t_entry)
            before_entry = t_state_before["state"].get(state_id[i], {})
            for key, t_val in t_entry.items():
                if not isinstance(t_val, torch.Tensor) or key not in r_entry:
                    continue
                ops = [before_entry[key]] if key in before_entry else []
                if g is not None:
                    ops.append(g)
                ours_s, theirs_s = np.asarray(r_entry[key]), from_torch(t_val)
                err = step_relative_error(ours_s, theirs_s, *ops)
                if err > result.state_ulp:
                    result.state_ulp, result.state_where = err, f"step {step + 1}, param {SHAPES[i]}, {key}"
                worst_ulp["state"] = max(worst_ulp["state"], ulp_error(ours_s, theirs_s, *ops))

        # Free running: refoptim on its own parameters and gradients.
        f_grads = gradients(step, [np.asarray(p.data) for p in free.params])
        for fp, g in zip(free.params, f_grads):
            fp.grad = None if g is None else g
        free.optimizer.step()

    result.trajectory = max(
        relative_error(np.asarray(fp.data), from_torch(tp)) for fp, tp in zip(free.params, twin.params)
    )
    result.structure_errors += _group_key_errors(twin.optimizer, free.optimizer)
    if ulp is not None:
        ulp.update(worst_ulp)
    result.seconds = time.perf_counter() - start
    assert thresholds.one_step_limit(NAME, cfg.dtype)[1] == "rel"
    return result
