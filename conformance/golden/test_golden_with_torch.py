"""``python -m refoptim golden --with-torch``: torch's own values beside refoptim's.

Every ``torch_*`` file holds torch 2.13 (CPU, ``foreach=False``) after one step from
refoptim's stored parameter, state and gradient; they must agree with refoptim's stored
``after`` values within the manifest's one-step thresholds, with torch's state layout.
"""

import json

import numpy as np
import pytest

from refoptim.__main__ import main
from refoptim.golden import covered_optimizers
from refoptim.testing.metrics import step_relative_error, ulp_error
from refoptim.testing.torch_kernels import torch_fuses

OPTIMIZERS = [n for n in covered_optimizers() if n != "ASGD"]
"""Every optimizer the corpus covers but ASGD, whose configurations run at least 120 steps
(conformance/test_conformance.py checks it against torch)."""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("golden") / "corpus"
    code = main(["golden", "--optimizer", *OPTIMIZERS, "--steps", "3", "--with-torch", "--out", str(out)])
    assert code == 0
    return out


def test_torch_agrees_with_refoptim_one_step_at_a_time(corpus):
    manifest = json.loads((corpus / "manifest.json").read_text())
    assert manifest["torch"]["version"].startswith("2.13") and manifest["torch"]["foreach"] is False
    assert {c["optimizer"] for c in manifest["configurations"]} == set(OPTIMIZERS)
    misses = []
    for config in manifest["configurations"]:
        limit, unit = config["thresholds"]["one_step"], config["thresholds"]["one_step_unit"]
        measure = ulp_error if unit == "ULP" else step_relative_error
        for p in config["parameters"]:
            def load(entry):
                return np.load(corpus / entry["path"])

            param, grad, has_grad, present = load(p["param"]), load(p["grad"]), load(p["has_grad"]), load(p["state_present"])
            torch_param, torch_present = load(p["torch"]["param"]), load(p["torch"]["state_present"])
            assert sorted(p["torch"]["state"]) == sorted(p["state"]), config["id"]
            np.testing.assert_array_equal(torch_present, present[1:])
            states = {k: (load(s["file"]), load(p["torch"]["state"][k]["file"])) for k, s in p["state"].items()}
            for t in range(1, config["steps"] + 1):
                g = [grad[t - 1]] if has_grad[t - 1] else []
                errors = {"param": measure(param[t], torch_param[t - 1], param[t - 1], *g)}
                for name, (ours, theirs) in states.items():
                    if present[t]:
                        before = [ours[t - 1]] if present[t - 1] else []
                        errors[name] = measure(ours[t], theirs[t - 1], *before, *g)
                for name, error in errors.items():
                    if error > limit:
                        misses.append(f"{config['id']} p{p['index']} step {t} {name}: {error:.3g} {unit}")
    if misses and not torch_fuses():
        pytest.skip(f"torch's CPU kernels do not fuse on this machine ({len(misses)} misses; see torch_kernels)")
    assert not misses, "\n".join(misses[:20])
