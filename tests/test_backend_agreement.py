"""One answer on every array library: each backend of the registry that installs here runs
the fingerprint's configurations (every optimizer section, sampled; every scheduler and
swa_utils case) and must give NumPy's bits for every parameter and state entry after every
step, except where ``refoptim.testing.backends.DEVIATIONS`` names the section and the
measured cause.

Each backend runs in its own process (``python -m refoptim backends --backend NAME
--json -``): JAX's x64 switch is one per process, and a LocalCluster should not outlive its
test. The README's backend table is checked against the same registry and table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from refoptim.testing import backends

ROOT = Path(__file__).resolve().parents[1]

# Configurations per optimizer section and the subprocess's time limit: the eager
# libraries that dispatch every operation (JAX, ndonnx) or build a graph per operation
# (Dask) are slow, so they run a sample; NumPy-speed libraries run more of the matrix.
SAMPLE = {
    "array-api-strict": 4,
    "torch": 6,
    "jax": 2,
    "jax-x32": 2,
    "dask": 1,
    "dask-distributed": 1,
    "ndonnx": 1,
}
# dask-distributed takes about 4.5 minutes (every operation a round trip to the worker
# processes); tests/test_dask.py runs Adam and Adafactor on such a cluster every time, and
# REFOPTIM_SLOW_BACKENDS=1 adds the whole sample here.
SLOW = ("dask-distributed",)
CHECKED = tuple(
    pytest.param(n, marks=pytest.mark.skipif(
        n in SLOW and not os.environ.get("REFOPTIM_SLOW_BACKENDS"),
        reason=f"{n} takes minutes; REFOPTIM_SLOW_BACKENDS=1 runs it (tests/test_dask.py covers Adam and Adafactor there)",
    )) if n in SLOW else n
    for n in SAMPLE
)


def _agreement(name: str, per_section: int, extra_env: dict[str, str] | None = None, code: str | None = None) -> dict:
    env = dict(os.environ, PYTHONWARNINGS="ignore", **(extra_env or {}))
    if code is None:
        cmd = [sys.executable, "-m", "refoptim", "backends", "--backend", name, "--per-section", str(per_section), "--json", "-"]
    else:
        cmd = [sys.executable, "-c", code]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode in (0, 1), done.stderr[-3000:]
    start = done.stdout.index("\n{") + 1 if not done.stdout.startswith("{") else 0
    return json.loads(done.stdout[start:])


def _differing(verdicts: dict) -> dict[str, dict[str, str]]:
    return {
        section: bad
        for section, rows in verdicts.items()
        if (bad := {k: v for k, v in rows.items() if v != "identical" and not v.startswith("unsupported")})
    }


@pytest.mark.parametrize("name", CHECKED)
def test_backend_gives_numpys_bits(name):
    backend = backends.get_backend(name)
    if not backend.available and not name.startswith("jax"):
        pytest.skip(f"backend {name} is not available here: {backend.reason}")
    out = _agreement(name, SAMPLE[name])[name]
    if not out["available"]:
        pytest.skip(f"backend {name} is not available here: {out['reason']}")
    verdicts = out["verdicts"]
    # Every section ran something, but those NOT_RUN names for this backend (which ran
    # nothing) and those whose every case needs a dtype the backend lacks (swa_utils
    # without float64).
    for section, rows in verdicts.items():
        ran = any(not v.startswith("unsupported") for v in rows.values())
        if (name, section) in backends.NOT_RUN:
            assert not ran, (name, section)
        else:
            assert ran or all(v.startswith("unsupported: no ") for v in rows.values()), (name, section)
    allowed = backends.deviations_of(name)
    unexplained = {s: rows for s, rows in _differing(verdicts).items() if s not in allowed}
    assert not unexplained, f"{name} differs from NumPy without a listed cause: {unexplained}"


def test_deviations_name_known_backends_and_sections():
    from refoptim.fingerprint import SCHEDULERS, SWA_UTILS
    from refoptim.testing.matrix import configs

    from refoptim.fingerprint import section_of

    sections = {section_of(cfg) for cfg in configs(steps=2)} | {SCHEDULERS, SWA_UTILS}
    for (name, section), cause in [*backends.DEVIATIONS.items(), *backends.NOT_RUN.items()]:
        assert name in backends.BACKEND_NAMES, name
        assert section in sections, (name, section)
        assert len(cause) > 40, (name, section)


@pytest.mark.parametrize("page", ["README.md", "docs/backends.md"])
def test_backend_table_is_the_registrys(page):
    text = (ROOT / page).read_text()
    table = backends.backend_table()
    assert table in text, f"{page}'s backend table differs from refoptim.testing.backends.backend_table():\n" + table


_CORRECT_SQRT = """
import json, sys
import numpy as np
import torch
import array_api_compat.torch as ct
from refoptim import fingerprint

def correctly_rounded_sqrt(x):
    # NumPy's sqrt is IEEE's (correctly rounded) in every real dtype.
    return torch.from_numpy(np.asarray(np.sqrt(x.detach().resolve_conj().resolve_neg().numpy())))

ct.sqrt = correctly_rounded_sqrt
result = fingerprint.agreement("torch", steps=2, per_section=PER_SECTION)
print(json.dumps({"torch": {"available": True, "verdicts": result.verdicts}}))
"""


def test_torch_differs_from_numpy_only_through_its_sqrt():
    """The cause DEVIATIONS gives for torch tensors, checked: with a correctly rounded sqrt
    in torch's namespace, every sampled configuration has NumPy's bits."""
    pytest.importorskip("torch")
    out = _agreement("torch", SAMPLE["torch"], code=_CORRECT_SQRT.replace("PER_SECTION", str(SAMPLE["torch"])))
    assert not _differing(out["torch"]["verdicts"])
