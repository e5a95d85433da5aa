"""A few short float64 trajectories with torch 2.13's numbers written out.

The expected values were produced by ``torch.optim`` (``foreach=False``, CPU, float64 /
complex128) for the same inputs. They pin the torch quirks a reader can check by hand
(SGD's first momentum buffer skips dampening; Nesterov's look-ahead; Adam's eps after the
bias-corrected square root; a float32 tensor lr), to ~1e-14 relative; the bit-for-bit
comparison against live torch is the conformance suite's job.
"""

import numpy as np
import pytest

from refoptim import SGD, Adam, AdamW
from _support import run_class, to_np

CASES = {
    "sgd plain": (SGD, [1.0, -2.0], [[0.5, 0.25]], dict(lr=0.1),
                  [0.95, -2.025], {}),
    # step 1: buf = g (no dampening); then buf = 0.9 buf + 0.5 g
    "sgd momentum dampening": (SGD, [0.0], [[1.0], [1.0], [1.0]], dict(lr=0.1, momentum=0.9, dampening=0.5),
                               [-0.416], {"momentum_buffer": [1.76]}),
    "sgd nesterov": (SGD, [0.0], [[1.0], [1.0]], dict(lr=0.1, momentum=0.9, nesterov=True),
                     [-0.461], {"momentum_buffer": [1.9]}),
    "sgd weight decay maximize": (SGD, [1.0], [[0.25]], dict(lr=0.5, weight_decay=0.1, maximize=True),
                                  [1.075], {}),
    "adam": (Adam, [1.0, -1.0], [[2.0, -0.5], [1.0, 0.5], [-1.0, 0.25]], dict(lr=0.1),
             [0.7671115135621865, -0.9304065897387424],
             {"step": 3.0, "exp_avg": [0.15199999999999997, 0.0295],
              "exp_avg_sq": [0.0059910040000000055, 0.0005617502500000005]}),
    "adam amsgrad weight decay": (
        Adam, [1.0, -1.0], [[2.0, -0.5], [1.0, 0.5], [-1.0, 0.25]], dict(lr=0.1, amsgrad=True, weight_decay=0.1),
        [0.7618464325520506, -0.8904910455356697],
        {"step": 3.0, "exp_avg": [0.1762623951260808, 0.004433163754350211],
         "exp_avg_sq": [0.006433348629177805, 0.0005532401571843379],
         "max_exp_avg_sq": [0.006433348629177805, 0.0005532401571843379]}),
    "adamw": (AdamW, [1.0, -1.0], [[2.0, -0.5], [1.0, 0.5]], dict(lr=0.1, weight_decay=0.1),
              [0.7878820372035104, -0.8863631597694736],
              {"step": 2.0, "exp_avg": [0.2799999999999999, 0.005000000000000004],
               "exp_avg_sq": [0.004996000000000005, 0.0004997500000000004]}),
    # lr = torch.tensor(0.1) (float32): the step size is computed in float32
    "adam float32 array lr": (Adam, [1.0, -1.0], [[2.0, -0.5], [1.0, 0.5]], dict(lr="f32(0.1)"),
                              [0.8067820338747763, -0.9052631599776988],
                              {"step": 2.0, "exp_avg": [0.2799999999999999, 0.005000000000000004],
                               "exp_avg_sq": [0.004996000000000005, 0.0004997500000000004]}),
    "adam complex": (Adam, [1 + 2j], [[0.5 - 1j], [1 + 0.25j]], dict(lr=0.1),
                     [0.8034818006385094 + 2.1469468154765416j],
                     {"step": 2.0, "exp_avg": [0.14499999999999996 - 0.06499999999999999j],
                      "exp_avg_sq": [0.001249750000000001 + 0.001061500000000001j]}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_matches_torch_values(name, xp):
    cls, init, grads, cfg, expected_param, expected_state = CASES[name]
    dtype = "complex128" if isinstance(init[0], complex) else "float64"
    if not hasattr(xp, dtype):  # ndonnx has no complex dtypes
        pytest.skip(f"{getattr(xp, '__name__', xp)} has no {dtype}")
    cfg = dict(cfg)
    if cfg.get("lr") == "f32(0.1)":
        cfg["lr"] = xp.asarray(0.1, dtype=xp.float32)
    p, state, _ = run_class(cls, cfg, xp, np.array(init, dtype=dtype), [np.array(g, dtype=dtype) for g in grads])
    np.testing.assert_allclose(to_np(p), expected_param, rtol=1e-14, atol=0)
    assert set(state) == set(expected_state)
    for key, value in expected_state.items():
        np.testing.assert_allclose(to_np(state[key]), value, rtol=1e-14, atol=0, err_msg=key)
