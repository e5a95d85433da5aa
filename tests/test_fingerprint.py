"""One answer on every machine: ``python -m refoptim fingerprint`` gives the committed
digests under every variant this machine can run (NumPy's SIMD dispatch cut down with
``NPY_DISABLE_CPU_FEATURES``, 1, 2 and 3 threads, array-api-strict), without torch; and the
serialisation canonicalises NaNs, keeps signed zeros and sees a one-ULP change.

The variants run in subprocesses, two at a time. ``OPENBLAS_CORETYPE`` and
``OPENBLAS_L2_SIZE`` are never set here (they select OpenBLAS kernels this CPU may lack).
"""

import dataclasses
import hashlib
import importlib.util
import json
import math
import os
import platform
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from refoptim import fingerprint as fpm

from _support import NO_TORCH

ROOT = Path(__file__).resolve().parent.parent


def npy_feature_groups() -> tuple[list[str], list[str]]:
    """The names ``NPY_DISABLE_CPU_FEATURES`` accepts for the AVX-512 group and for the
    AVX2 group (:func:`refoptim.fingerprint.numpy_dispatch_groups`: this NumPy's dispatch
    targets minus its baseline; the AVX-512 names are accepted, and change nothing, on a
    CPU without AVX-512, so they are always included; elsewhere than x86 the other
    targets stand in for the AVX2 group)."""
    groups = fpm.numpy_dispatch_groups()
    return groups["avx512"], groups["avx2"] + groups["other"]


def _variants() -> dict[str, tuple[dict[str, str], list[str]]]:
    avx512, avx2 = npy_feature_groups()
    variants: dict[str, tuple[dict[str, str], list[str]]] = {
        # the slowest first, so that it overlaps the others
        "array-api-strict": ({}, ["--backend", "array-api-strict", "--steps", str(fpm.QUICK_STEPS)]),
        "plain": ({}, []),
    }
    if avx512:
        variants["npy-no-avx512"] = ({"NPY_DISABLE_CPU_FEATURES": " ".join(avx512)}, [])
    if avx512 + avx2:
        variants["npy-no-avx512-no-avx2"] = ({"NPY_DISABLE_CPU_FEATURES": " ".join(avx512 + avx2)}, [])
    for n in (1, 2, 3):
        variants[f"threads-{n}"] = ({"REFOPTIM_NUM_THREADS": str(n)}, [])
    # every call on scratch buffers (refoptim/_scratch.py; by default only calls of 8192+
    # elements, and the fingerprint's parameters are small), and none at all
    variants["scratch-everywhere"] = ({"REFOPTIM_SCRATCH_MIN_ELEMENTS": "0"}, [])
    variants["no-scratch"] = ({"REFOPTIM_SCRATCH": "0"}, [])
    if importlib.util.find_spec("numba") is not None:
        # the opt-in compiled evaluation (whole rules fused, refoptim/_fuse.py; the compiled
        # float32 fma where a rule is not) on every call, compiled for this CPU and for a
        # generic x86-64 (no AVX): LLVM's vector code must not change a bit
        numba_on = {"REFOPTIM_NUMBA": "1", "REFOPTIM_SCRATCH_MIN_ELEMENTS": "0"}
        variants["numba-everywhere"] = (numba_on, [])
        if platform.machine() in ("x86_64", "AMD64"):
            variants["numba-generic-cpu"] = ({**numba_on, "NUMBA_CPU_NAME": "generic"}, [])
    return variants


VARIANTS = _variants()


def _run(name: str, tmp: Path) -> dict:
    env_extra, args = VARIANTS[name]
    env = {k: v for k, v in os.environ.items() if k not in ("NPY_DISABLE_CPU_FEATURES", "REFOPTIM_NUM_THREADS", "NUMBA_CPU_NAME")}
    env.update(env_extra)
    out = tmp / f"{name}.json"
    proc = subprocess.run(
        [sys.executable, "-c", NO_TORCH, "fingerprint", "--json", str(out), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    data = json.loads(out.read_text()) if out.exists() else None
    return {"rc": proc.returncode, "output": proc.stdout + proc.stderr, "json": data, "env": env_extra, "args": args}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fingerprint")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(_run, name, tmp) for name in VARIANTS}
        return {name: f.result() for name, f in futures.items()}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_gives_the_committed_digests(runs, name):
    run = runs[name]
    assert run["rc"] == 0, f"{name} ({run['env']} {run['args']}): exit {run['rc']}\n{run['output'][-4000:]}"
    expected = fpm.expected_for(fpm.load_expected(), run["json"]["runs"][0]["steps"])
    got = run["json"]["runs"][0]
    differ = [s for s, d in got["sections"].items() if expected["sections"].get(s) != d]
    assert got["total"] == expected["total"] and not differ, f"{name}: sections differ: {differ}"
    env = run["json"]["environment"]
    disabled = run["env"].get("NPY_DISABLE_CPU_FEATURES", "").split()
    assert not set(disabled) & set(env["numpy_cpu_dispatch_active"]), "NumPy did not disable what was asked"
    if "REFOPTIM_NUM_THREADS" in run["env"]:
        assert env["threads"] == int(run["env"]["REFOPTIM_NUM_THREADS"])


def test_the_avx_groups_are_known_to_this_numpy():
    """On x86-64 both groups are non-empty (NumPy 2.4: X86_V4, AVX512_ICL, AVX512_SPR and
    X86_V3), none of them is a baseline feature, and NumPy accepts them all without a
    warning; elsewhere the variants that have no names are left out."""
    import platform

    avx512, avx2 = npy_feature_groups()
    if platform.machine() in ("x86_64", "AMD64"):
        assert avx512 and avx2
    env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": " ".join(avx512 + avx2)}
    code = "import warnings; warnings.simplefilter('error'); import numpy"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


# --------------------------------------------------------------------------- in process
def _sha(value) -> str:
    return hashlib.sha256(fpm.canonical_bytes(value)).hexdigest()


def test_nan_is_canonical():
    """x86 makes negative default NaNs, ARM positive; payloads vary: one bit pattern."""
    for dtype, uint in ((np.float32, np.uint32), (np.float64, np.uint64), (np.float16, np.uint16)):
        a = np.array([1.0, np.nan, -0.0], dtype=dtype)
        b = a.copy()
        b.view(uint)[1] = b.view(uint)[1] | (uint(1) << uint(8 * a.itemsize - 1)) | uint(1)  # negative, payload 1
        assert np.isnan(b[1]) and a.tobytes() != b.tobytes()
        assert fpm.canonical_bytes(a) == fpm.canonical_bytes(b), dtype
    c = np.array([complex(np.nan, 1.0), complex(2.0, -np.nan)], dtype=np.complex64)
    d = np.array([complex(-np.nan, 1.0), complex(2.0, np.nan)], dtype=np.complex64)
    assert fpm.canonical_bytes(c) == fpm.canonical_bytes(d)
    negative_nan = struct.unpack("<d", struct.pack("<Q", 0xFFF8000000000001))[0]
    assert math.isnan(negative_nan)
    assert fpm.canonical_bytes(negative_nan) == fpm.canonical_bytes(math.nan)
    assert fpm.canonical_bytes({"x": [np.float32(-np.nan)]}) == fpm.canonical_bytes({"x": [np.float32(np.nan)]})
    # the NaN's position still counts
    assert fpm.canonical_bytes(np.array([np.nan, 1.0])) != fpm.canonical_bytes(np.array([1.0, np.nan]))


def test_signed_zeros_are_kept():
    assert fpm.canonical_bytes(-0.0) != fpm.canonical_bytes(0.0)
    assert fpm.canonical_bytes(np.array([-0.0], dtype=np.float32)) != fpm.canonical_bytes(np.array([0.0], dtype=np.float32))
    assert fpm.canonical_bytes(np.complex64(complex(0.0, -0.0))) != fpm.canonical_bytes(np.complex64(0))


def test_one_ulp_changes_the_digest():
    rng = np.random.default_rng(0)
    state = {"step": np.asarray(3.0, dtype=np.float32), "exp_avg": rng.random((3, 4)).astype(np.float32), "lr": 0.01}
    outputs = [rng.random(5), state, [np.zeros(0), None, 7]]
    before = _sha(outputs)
    bumped = state["exp_avg"].copy()
    bumped[1, 2] = np.nextafter(bumped[1, 2], np.float32(2))
    changed = [outputs[0], {**state, "exp_avg": bumped}, outputs[2]]
    assert _sha(changed) != before
    assert _sha([outputs[0], {**state, "lr": math.nextafter(0.01, 1)}, outputs[2]]) != before
    assert _sha(outputs) == before


def test_serialisation_is_typed_and_ordered():
    """dtype, shape, Python type and key order are part of the bytes; dict insertion order
    is not."""
    x = np.arange(6, dtype=np.float64)
    assert fpm.canonical_bytes(x) != fpm.canonical_bytes(x.reshape(2, 3))
    assert fpm.canonical_bytes(x) != fpm.canonical_bytes(x.astype(np.float32))
    assert fpm.canonical_bytes(1) != fpm.canonical_bytes(1.0) != fpm.canonical_bytes(True)
    assert fpm.canonical_bytes({"a": 1, "b": 2}) == fpm.canonical_bytes({"b": 2, "a": 1})
    assert fpm.canonical_bytes(x[::2]) == fpm.canonical_bytes(np.ascontiguousarray(x[::2]))
    assert fpm.canonical_bytes(np.asarray(x, dtype=">f8")) == fpm.canonical_bytes(x)  # little-endian bytes


def test_tree_sum_is_a_fixed_pairwise_order():
    x = np.array([1.0, 1e16, -1e16, 1.0, 3.0])
    # ((1 + 1e16) + (-1e16 + 1)) + 3, pairwise: 1e16 absorbs both ones
    assert tree_sum_reference(x) == fpm.tree_sum(x) == 3.0
    m = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(fpm.tree_sum(m, axis=0), m.sum(axis=0))
    np.testing.assert_array_equal(fpm.tree_sum(m, axis=1), m.sum(axis=1))
    assert fpm.tree_sum(np.zeros(0)) == 0


def tree_sum_reference(x):
    values = list(x)
    while len(values) > 1:
        values = [values[i] + values[i + 1] for i in range(0, len(values) - 1, 2)] + values[len(values) - len(values) % 2:]
    return values[0]


def test_the_committed_file_covers_every_section():
    """A new optimizer or section in the matrix needs ``--write`` (and a commit saying why)."""
    from refoptim.testing.matrix import configs

    committed = fpm.load_expected()
    assert committed is not None, f"{fpm.EXPECTED_PATH} is missing: python -m refoptim fingerprint --write"
    sections = {fpm.section_of(c) for c in configs()} | {fpm.SCHEDULERS, fpm.SWA_UTILS}
    for steps in (fpm.DEFAULT_STEPS, fpm.QUICK_STEPS):
        entry = fpm.expected_for(committed, steps)
        assert entry is not None, f"no committed digests for {steps} steps"
        assert set(entry["sections"]) == sections


def test_compare_names_what_differs():
    fp = fpm.Fingerprint(total="t", sections={"Adam": "a", "SGD": "s"}, counts={"Adam": 1, "SGD": 1},
                         configurations={}, steps=3)
    expected = {"digests": {"3": {"total": "x", "sections": {"Adam": "a", "SGD": "other"}}}}
    assert fpm.compare(fp, expected) == {"Adam": True, "SGD": False, "total": False}
    assert fpm.compare(fp, {"digests": {"4": {}}}) == {"Adam": None, "SGD": None, "total": None}


def test_one_configuration_is_reproducible_and_sensitive():
    """Two runs of one configuration give one digest; another configuration another."""
    from refoptim.testing import backends
    from refoptim.testing.matrix import configs

    numpy = backends.require_backend("numpy")
    adam = [dataclasses.replace(c, steps=4) for c in configs(["Adam"], ("float32",)) if c.objective == "quadratic"][:2]
    first = fpm._config_digest(adam[0], numpy, "numpy")
    assert first == fpm._config_digest(adam[0], numpy, "numpy")
    assert first != fpm._config_digest(adam[1], numpy, "numpy")


def test_write_and_load_round_trip(tmp_path):
    fp = fpm.Fingerprint(total="t", sections={"Adam": "a"}, counts={"Adam": 2}, configurations={}, steps=5)
    path = tmp_path / "fingerprint.json"
    fpm.write_expected(fp, path)
    fpm.write_expected(fpm.Fingerprint(total="u", sections={"Adam": "b"}, counts={"Adam": 2}, configurations={}, steps=2), path)
    data = fpm.load_expected(path)
    assert set(data["digests"]) == {"5", "2"} and data["numpy"] == np.__version__
    assert fpm.compare(fp, data) == {"Adam": True, "total": True}


def _fake_run(monkeypatch, committed_sections):
    from refoptim import __main__ as cli

    fp = fpm.Fingerprint(total="t", sections={"Adam": "a", "SGD": "s"}, counts={"Adam": 3, "SGD": 4},
                         configurations={"Adam": {"Adam-x": "a"}, "SGD": {"SGD-y": "s"}}, steps=fpm.DEFAULT_STEPS)
    total = "t" if committed_sections == fp.sections else "other"
    expected = {"numpy": np.__version__, "digests": {str(fpm.DEFAULT_STEPS): {"total": total, "sections": committed_sections}}}
    monkeypatch.setattr(fpm, "compute", lambda steps, backend: dataclasses.replace(fp, steps=steps))
    monkeypatch.setattr(fpm, "load_expected", lambda path=None: expected)
    return cli


def test_cli_exit_status_names_what_differs(monkeypatch, capsys):
    cli = _fake_run(monkeypatch, {"Adam": "a", "SGD": "s"})
    assert cli.main(["fingerprint"]) == 0
    assert "every digest matches" in capsys.readouterr().out
    cli = _fake_run(monkeypatch, {"Adam": "a", "SGD": "changed"})
    assert cli.main(["fingerprint"]) == 1
    out = capsys.readouterr().out
    assert "DIFFERS from the committed digests" in out and "SGD, total" in out
    assert cli.main(["fingerprint", "--steps", "3"]) == 1
    assert "no committed digests for 3 steps" in capsys.readouterr().out


def test_cli_json_to_stdout(monkeypatch, capsys):
    cli = _fake_run(monkeypatch, {"Adam": "a", "SGD": "s"})
    assert cli.main(["fingerprint", "--json", "-"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)  # the table went to stderr
    assert data["runs"][0]["sections"] == {"Adam": "a", "SGD": "s"}
    assert data["runs"][0]["configurations"]["SGD"] == {"SGD-y": "s"}
    assert data["runs"][0]["committed"] == {"Adam": True, "SGD": True, "total": True}
    assert data["environment"]["threads"] >= 1 and "NPY_DISABLE_CPU_FEATURES" in data["environment"]
    assert "every digest matches" in captured.err
