"""The golden corpus (``python -m refoptim golden``): one manifest on every machine, the
committed digest, the schema, and readers that need neither refoptim nor torch (NumPy
with ``json`` and ``numpy.load``; a C99 program).

The Adam corpus (98 configurations, 50 steps, about 3600 files and 6 MB, 7-8 s on a 2-core
machine) is generated in subprocesses, torch refused, under every variant this machine can
run: twice as is, with 3 threads, and with NumPy's SIMD dispatch cut down by
``NPY_DISABLE_CPU_FEATURES`` (the AVX-512 targets, then every dispatch target).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from refoptim import golden
from refoptim.__main__ import main
from refoptim.fingerprint import numpy_dispatch_groups

from _support import NO_TORCH

ROOT = Path(__file__).resolve().parent.parent
C_SOURCE = ROOT / "conformance" / "golden" / "check_adam.c"
ADAM_KEY = "optimizers=Adam dtypes=float32,float64,complex64 steps=50"



def _variants() -> dict[str, dict[str, str]]:
    groups = numpy_dispatch_groups()
    every = groups["avx512"] + groups["avx2"] + groups["other"]
    variants = {"plain": {}, "plain-again": {}, "threads-3": {"REFOPTIM_NUM_THREADS": "3"}}
    if groups["avx512"]:
        variants["npy-no-avx512"] = {"NPY_DISABLE_CPU_FEATURES": " ".join(groups["avx512"])}
    if every:
        variants["npy-no-dispatch"] = {"NPY_DISABLE_CPU_FEATURES": " ".join(every)}
    return variants


VARIANTS = _variants()


def _generate(name: str, tmp: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("NPY_DISABLE_CPU_FEATURES", "REFOPTIM_NUM_THREADS")}
    env.update(VARIANTS[name])
    out = tmp / name
    proc = subprocess.run(
        [sys.executable, "-c", NO_TORCH, "golden", "--optimizer", "Adam", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    return {"rc": proc.returncode, "output": proc.stdout + proc.stderr, "out": out, "env": VARIANTS[name]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("golden")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(_generate, name, tmp) for name in VARIANTS}
        return {name: f.result() for name, f in futures.items()}


@pytest.fixture(scope="module")
def corpus(runs) -> Path:
    run = runs["plain"]
    assert run["rc"] == 0, run["output"][-4000:]
    return run["out"]


# --------------------------------------------------------------------------- one answer
@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_writes_the_same_manifest(runs, corpus, name):
    run = runs[name]
    assert run["rc"] == 0, f"{name} {run['env']}: exit {run['rc']}\n{run['output'][-4000:]}"
    assert (run["out"] / "manifest.json").read_bytes() == (corpus / "manifest.json").read_bytes(), name


def test_every_file_is_what_the_manifest_says(corpus):
    manifest = json.loads((corpus / "manifest.json").read_text())
    seen = 0
    for path, entry in _files(manifest):
        data = (corpus / path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], path
        array = np.load(io.BytesIO(data))
        assert list(array.shape) == entry["shape"] and array.dtype.str == entry["descr"], path
        seen += 1
    on_disk = sorted(str(p.relative_to(corpus)) for p in corpus.rglob("*.npy"))
    assert seen == len(on_disk) == manifest["totals"]["files"]
    assert sorted(p for p, _ in _files(manifest)) == on_disk


def test_the_manifest_matches_the_committed_digest(corpus, runs):
    """``refoptim/testing/golden_digests.json`` holds the SHA-256 of the Adam manifest
    (``python -m refoptim golden --optimizer Adam --out DIR --write-digest`` regenerates it;
    the commit must say why it moved). The manifest holds every file's SHA-256."""
    committed = json.loads(golden.DIGESTS_PATH.read_text())["digests"][ADAM_KEY]
    assert hashlib.sha256((corpus / "manifest.json").read_bytes()).hexdigest() == committed
    assert "matches the committed digest" in runs["plain"]["output"]
    assert committed in (ROOT / "docs" / "golden.md").read_text(), "docs/golden.md quotes the committed digest"


def test_the_layout_of_the_adam_corpus(corpus):
    manifest = json.loads((corpus / "manifest.json").read_text())
    assert manifest["schema_version"] == golden.SCHEMA_VERSION
    assert manifest["torch_version"] == "2.13.0" and manifest["torch"] is None
    assert manifest["selection"] == {"optimizers": ["Adam"], "dtypes": ["float32", "float64", "complex64"], "steps": 50}
    assert manifest["left_out"] == []
    configs = manifest["configurations"]
    assert len(configs) == 98 and [c["directory"] for c in configs[:2]] == ["Adam/float32/000", "Adam/float32/001"]
    first = configs[0]
    assert first["options"] == {
        "lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-08, "weight_decay": 0, "amsgrad": False,
        "maximize": False, "decoupled_weight_decay": False,
    }
    assert first["thresholds"]["one_step"] == 4.0 and first["thresholds"]["one_step_unit"] == "ULP"
    assert [p["shape"] for p in first["parameters"]] == [[], [5], [3, 4], [0], [3, 4]]
    assert [p["view"] for p in first["parameters"]] == [False, False, False, False, True]
    p2 = first["parameters"][2]
    assert p2["param"]["shape"] == [51, 3, 4] and p2["grad"]["shape"] == [50, 3, 4]
    assert sorted(p2["state"]) == ["exp_avg", "exp_avg_sq", "step"]
    assert p2["state"]["step"] == {**p2["state"]["step"], "dtype": "float32", "shape": []}
    present = np.load(corpus / p2["state_present"]["path"])
    has_grad = np.load(corpus / p2["has_grad"]["path"])
    # the (3, 4) parameter gets no gradient for three steps: its state appears after step 4
    assert not has_grad[:3].any() and has_grad[3] and not present[:4].any() and present[4:].all()
    tensor_lr = next(c for c in configs if c["options_given"].get("lr", {}) == {"array": 0.0010000000474974513, "dtype": "float32"})
    assert tensor_lr["groups"][0]["lr"] == {"array": 0.0010000000474974513, "dtype": "float32"}
    grouped = next(c for c in configs if c["groups_given"])
    assert [p["group"] for p in grouped["parameters"]] == [0, 1, 2, 0, 1]
    assert grouped["groups"][2]["betas"] == [0.5, 0.9] and grouped["groups"][2]["maximize"] is True


# --------------------------------------------------------------------------- schema
SUPPORTED = {"$schema", "$id", "title", "description", "type", "required", "additionalProperties", "properties",
             "items", "enum", "pattern", "minimum", "$ref", "$defs", "anyOf"}


def _check_keywords(schema) -> None:
    """The tiny validator below knows every keyword the schema uses."""
    if isinstance(schema, dict):
        unknown = set(schema) - SUPPORTED
        assert not unknown, unknown
        for key in ("properties", "$defs"):
            for sub in schema.get(key, {}).values():
                _check_keywords(sub)
        for key in ("items", "additionalProperties"):
            if isinstance(schema.get(key), dict):
                _check_keywords(schema[key])
        for sub in schema.get("anyOf", []):
            _check_keywords(sub)


_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def validate(instance, schema, root=None, where="$") -> list[str]:
    """The subset of JSON Schema the golden schema uses; a list of errors."""
    root = root if root is not None else schema
    if "$ref" in schema:
        target = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        return validate(instance, target, root, where)
    errors = []
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](instance) for t in types):
            return [f"{where}: {instance!r:.60} is not {types}"]
    if "enum" in schema and instance not in schema["enum"]:
        errors.append(f"{where}: {instance!r} not in {schema['enum']}")
    if "anyOf" in schema and all(validate(instance, s, root, where) for s in schema["anyOf"]):
        errors.append(f"{where}: matches none of anyOf")
    if isinstance(instance, dict):
        errors += [f"{where}: missing {k!r}" for k in schema.get("required", []) if k not in instance]
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, value in instance.items():
            if key in props:
                errors += validate(value, props[key], root, f"{where}.{key}")
            elif extra is False:
                errors.append(f"{where}: unexpected {key!r}")
            elif isinstance(extra, dict):
                errors += validate(value, extra, root, f"{where}.{key}")
    if isinstance(instance, list) and "items" in schema:
        for i, value in enumerate(instance):
            errors += validate(value, schema["items"], root, f"{where}[{i}]")
    if isinstance(instance, str) and "pattern" in schema and not re.search(schema["pattern"], instance):
        errors.append(f"{where}: {instance!r} does not match {schema['pattern']}")
    if _TYPES["number"](instance) and "minimum" in schema and instance < schema["minimum"]:
        errors.append(f"{where}: {instance} < {schema['minimum']}")
    return errors


def test_the_manifest_follows_the_schema(corpus):
    schema = json.loads(golden.SCHEMA_PATH.read_text())
    _check_keywords(schema)
    manifest = json.loads((corpus / "manifest.json").read_text())
    assert validate(manifest, schema) == []
    broken = json.loads(json.dumps(manifest))
    broken["configurations"][0]["parameters"][0]["param"]["sha256"] = "xyz"
    del broken["configurations"][1]["thresholds"]
    assert len(validate(broken, schema)) == 2
    try:
        import jsonschema
    except ImportError:
        return  # the subset validator above has checked it
    jsonschema.validate(manifest, schema)


def test_the_schema_ships_with_the_package():
    text = (ROOT / "pyproject.toml").read_text()
    line = next(l for l in text.splitlines() if l.startswith('"refoptim.testing" ='))
    assert "golden.schema.json" in line and "golden_digests.json" in line
    assert golden.SCHEMA_PATH.is_file() and golden.DIGESTS_PATH.is_file()


# --------------------------------------------------------------------------- a reader with json and numpy.load only
# Nothing below imports refoptim: this is what a reader of the corpus writes.
def _files(manifest):
    """(path, file entry) of every .npy file the manifest lists."""
    for config in manifest["configurations"]:
        for p in config["parameters"]:
            entries = [p["param"], p["grad"], p["has_grad"], p["state_present"]]
            entries += [s["file"] for s in p["state"].values()]
            if "torch" in p:
                entries += [p["torch"]["param"], p["torch"]["state_present"]]
                entries += [s["file"] for s in p["torch"]["state"].values()]
            for entry in entries:
                yield entry["path"], entry


def _f32(x: float) -> np.float32:
    return np.float32(x)


def _fma32(a, b, c):
    """float32 fused multiply-add: exact product and sum in float64, rounded once (double
    rounding is possible in rare cases, within the threshold)."""
    return (np.float64(a) * np.asarray(b, np.float64) + np.asarray(c, np.float64)).astype(np.float32)


def _ulp(ours, stored, *operands):
    scale = np.abs(stored)
    for op in operands:
        scale = np.maximum(scale, np.abs(op))
    scale = np.maximum(scale, np.abs(ours))
    equal = (ours == stored) | (np.isnan(ours) & np.isnan(stored))
    diff = np.abs(ours.astype(np.float64) - stored.astype(np.float64))
    err = np.where(equal, 0.0, diff / np.spacing(scale.astype(np.float32)).astype(np.float64))
    return float(err.max()) if err.size else 0.0


def replay_adam_float32(root: Path) -> tuple[int, float]:
    """Recompute every float32 Adam step of the corpus at ``root`` (float lr) in NumPy, in
    torch's single-tensor order; return (steps checked, worst error in ULP), and assert
    each is within the manifest's threshold."""
    manifest = json.loads((root / "manifest.json").read_text())
    checked, worst = 0, 0.0
    for config in manifest["configurations"]:
        if config["optimizer"] != "Adam" or config["dtype"] != "float32":
            continue
        limit = config["thresholds"]["one_step"]
        for p in config["parameters"]:
            o = config["groups"][p["group"]]
            if isinstance(o["lr"], dict):
                continue  # a float32 tensor lr: torch divides it in float32; not replayed here
            load = lambda entry: np.load(root / entry["path"])  # noqa: E731
            param, grad, has_grad, present = load(p["param"]), load(p["grad"]), load(p["has_grad"]), load(p["state_present"])
            state = {name: load(s["file"]) for name, s in p["state"].items()}
            lr, (beta1, beta2), eps, wd = o["lr"], o["betas"], o["eps"], o["weight_decay"]
            for t in range(1, len(has_grad) + 1):
                if not has_grad[t - 1]:
                    assert np.array_equal(param[t], param[t - 1])
                    continue
                before = {k: (v[t - 1] if present[t - 1] else np.zeros_like(v[t - 1])) for k, v in state.items()}
                x, g0 = param[t - 1].copy(), grad[t - 1]
                g = -g0 if o["maximize"] else g0
                if wd != 0:
                    if o["decoupled_weight_decay"]:
                        x = x * _f32(1 - lr * wd)
                    else:
                        g = _fma32(_f32(wd), x, g)
                step = before["step"] + np.float32(1)
                w = _f32(1 - beta1)
                m = _fma32(w, g - before["exp_avg"], before["exp_avg"])
                v = _fma32(_f32(1 - beta2) * g, g, before["exp_avg_sq"] * _f32(beta2))
                vhat = v
                if o["amsgrad"]:
                    vhat = np.maximum(before["max_exp_avg_sq"], v)
                bc1, bc2 = 1 - beta1 ** float(step), 1 - beta2 ** float(step)
                denom = np.sqrt(vhat) / _f32(bc2**0.5) + _f32(eps)
                x = x + (_f32(-(lr / bc1)) * m) / denom
                errors = [
                    _ulp(x, param[t], param[t - 1], g0),
                    _ulp(m, state["exp_avg"][t], before["exp_avg"], g0),
                    _ulp(v, state["exp_avg_sq"][t], before["exp_avg_sq"], g0),
                    _ulp(step, state["step"][t], before["step"]),
                ]
                if o["amsgrad"]:
                    errors.append(_ulp(vhat, state["max_exp_avg_sq"][t], before["max_exp_avg_sq"], g0))
                assert max(errors) <= limit, (config["id"], p["index"], t, errors)
                worst = max(worst, *errors)
                checked += 1
    return checked, worst


def test_a_numpy_reader_replays_every_float32_adam_step(corpus):
    checked, worst = replay_adam_float32(corpus)
    assert checked > 5000
    assert worst <= 4.0


# --------------------------------------------------------------------------- a reader in C
def _compiler() -> str | None:
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def check_adam(tmp_path_factory) -> Path:
    cc = _compiler()
    if cc is None:
        pytest.skip("no C compiler (cc, gcc or clang) on PATH")
    exe = tmp_path_factory.mktemp("c") / "check_adam"
    proc = subprocess.run(
        [cc, "-std=c99", "-O2", "-Wall", "-ffp-contract=off", "-o", str(exe), str(C_SOURCE), "-lm"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return exe


def _c_arguments(group: dict, limit: float) -> list[str]:
    b1, b2 = group["betas"]
    return [repr(float(group["lr"])), repr(float(b1)), repr(float(b2)), repr(float(group["eps"])),
            repr(float(group["weight_decay"])), str(int(group["amsgrad"])), str(int(group["maximize"])),
            str(int(group["decoupled_weight_decay"])), repr(float(limit))]


def test_the_c_reader_checks_every_float32_adam_record(corpus, check_adam):
    manifest = json.loads((corpus / "manifest.json").read_text())
    calls = 0
    for config in manifest["configurations"]:
        if config["dtype"] != "float32":
            continue
        for p in config["parameters"]:
            group = config["groups"][p["group"]]
            if isinstance(group["lr"], dict):
                continue
            record = corpus / p["param"]["path"].rsplit("/", 1)[0]
            proc = subprocess.run(
                [str(check_adam), *_c_arguments(group, config["thresholds"]["one_step"]), str(record)],
                capture_output=True, text=True, timeout=60,
            )
            assert proc.returncode == 0, f"{config['id']} p{p['index']}: {proc.stdout}{proc.stderr}"
            assert "worst error" in proc.stdout and ": ok" in proc.stdout
            calls += 1
    assert calls > 100


def test_the_c_reader_sees_a_wrong_step(corpus, check_adam, tmp_path):
    manifest = json.loads((corpus / "manifest.json").read_text())
    config = manifest["configurations"][0]
    p = config["parameters"][1]
    record = corpus / p["param"]["path"].rsplit("/", 1)[0]
    args = _c_arguments(config["groups"][0], config["thresholds"]["one_step"])
    wrong_lr = [repr(float(args[0]) * 1.001), *args[1:]]
    proc = subprocess.run([str(check_adam), *wrong_lr, str(record)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "FAIL" in proc.stdout
    # one stored element off by one unit is seen (1 ULP of its scale)
    copy = tmp_path / "p1"
    shutil.copytree(record, copy)
    param = np.load(copy / "param.npy")
    raw = bytearray((copy / "param.npy").read_bytes())
    offset = len(raw) - param.nbytes + 4 * (7 * 5 + 2)  # row 7, element 2
    value = np.frombuffer(bytes(raw[offset:offset + 4]), "<f4")[0]
    raw[offset:offset + 4] = np.nextafter(value, np.float32(np.inf)).astype("<f4").tobytes()
    (copy / "param.npy").write_bytes(bytes(raw))
    proc = subprocess.run([str(check_adam), *args[:-1], "0", str(copy)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and re.search(r"param, step [78], element 2", proc.stdout), proc.stdout
    proc = subprocess.run([str(check_adam), *args[:-1], "0", str(record)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "worst error 0 ULP" in proc.stdout, proc.stdout
    proc = subprocess.run([str(check_adam), *args[:3]], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "usage" in proc.stderr


# --------------------------------------------------------------------------- in process
def test_npy_files_are_written_by_hand_and_read_by_numpy():
    rng = np.random.default_rng(0)
    arrays = [
        np.array(1.5, np.float32), np.zeros(0, np.float64), rng.random((3, 4)).astype(np.float32),
        (rng.random((2, 3)) + 1j * rng.random((2, 3))).astype(np.complex64), np.array([True, False, True]),
        np.asarray(rng.random((2, 5)), dtype=">f8"), rng.random((6, 9))[::2, 1:5], np.zeros((51, 0, 2), np.float32),
    ]
    for a in arrays:
        data = golden.npy_bytes(a)
        assert data[:8] == b"\x93NUMPY\x01\x00"
        header_len = int.from_bytes(data[8:10], "little")
        assert (10 + header_len) % 64 == 0 and data[10 + header_len - 1:10 + header_len] == b"\n"
        back = np.load(io.BytesIO(data))
        assert back.dtype == a.dtype.newbyteorder("<") and back.shape == a.shape
        np.testing.assert_array_equal(back, a)
        assert back.dtype.str in ("<f4", "<f8", "<c8", "|b1")
    nan = np.array([np.nan, -np.nan, 1.0], np.float32)
    nan.view(np.uint32)[1] |= 1  # a negative NaN with a payload
    back = np.load(io.BytesIO(golden.npy_bytes(nan)))
    assert list(back.view(np.uint32)[:2]) == [0x7FC00000, 0x7FC00000]
    zeros = np.load(io.BytesIO(golden.npy_bytes(np.array([-0.0, 0.0]))))
    assert math.copysign(1, zeros[0]) == -1


def test_full_options_fill_torch_defaults_and_drop_the_flags():
    from refoptim.testing.matrix import Config

    options = golden.full_options(Config("AdamW", {"amsgrad": True, "foreach": False}))
    assert options == {"lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-08, "weight_decay": 0.01, "amsgrad": True, "maximize": False}
    rprop = golden.full_options(Config("Rprop", {"lr": np.asarray(1e-3, np.float32)}))
    assert rprop["lr"] == {"array": float(np.float32(1e-3)), "dtype": "float32"} and rprop["step_sizes"] == [1e-06, 50]


def test_unknown_optimizer_exits_2(tmp_path, capsys):
    assert main(["golden", "--optimizer", "Adamm", "--out", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err
    assert "unknown optimizer(s): Adamm" in err and "known: SGD" in err
    assert not (tmp_path / "g").exists()


def test_with_torch_without_torch_exits_2(tmp_path, monkeypatch, capsys):
    class _NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError(f"No module named {name!r}")
            return None

    for name in [m for m in sys.modules if m == "torch" or m.startswith("torch.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_NoTorch(), *sys.meta_path])
    assert main(["golden", "--optimizer", "SGD", "--with-torch", "--out", str(tmp_path / "g")]) == 2
    assert "--with-torch needs PyTorch 2.13.0" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()


def test_left_out_optimizers_are_named(tmp_path, capsys):
    assert main(["golden", "--optimizer", "LBFGS", "--out", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "LBFGS is left out" in err and "covers: SGD, Adam" in err and "Adafactor" in err
    out = tmp_path / "mixed"
    assert main(["golden", "--optimizer", "SGD", "LBFGS", "--dtype", "float32", "--steps", "3", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert re.search(r"left out \(listed in the manifest\): .*SGD \(sparse\) \(12 configurations\): sparse", text)
    assert "LBFGS (26 configurations): a step is a closure" in text
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(e["section"] for e in manifest["left_out"]) == ["LBFGS", "SGD (sparse)"]
    assert {c["optimizer"] for c in manifest["configurations"]} == {"SGD"}
    assert all(c["steps"] == 3 and c["objective"] != "sparse" for c in manifest["configurations"])


def test_a_previous_corpus_is_replaced_and_other_folders_are_refused(tmp_path, capsys):
    out = tmp_path / "g"
    assert main(["golden", "--optimizer", "Adafactor", "--dtype", "float64", "--steps", "2", "--out", str(out)]) == 0
    first = json.loads((out / "manifest.json").read_text())
    assert first["configurations"][0]["shapes"] == [[], [5], [3, 4], [3, 4], [2, 3, 4], [7, 1]]
    assert sorted(first["configurations"][0]["parameters"][3]["state"]) == ["col_var", "row_var", "step"]
    assert first["configurations"][0]["thresholds"]["one_step_unit"] == "rel"
    (out / "notes.txt").write_text("kept")
    assert main(["golden", "--optimizer", "Rprop", "--dtype", "float32", "--steps", "2", "--out", str(out)]) == 0
    assert not (out / "Adafactor").exists() and (out / "Rprop").is_dir() and (out / "notes.txt").read_text() == "kept"
    assert sum(1 for _ in out.rglob("*.npy")) == json.loads((out / "manifest.json").read_text())["totals"]["files"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "x").write_text("")
    capsys.readouterr()
    assert main(["golden", "--optimizer", "Rprop", "--out", str(other)]) == 2
    assert "not empty" in capsys.readouterr().err


def test_the_digest_file_is_regenerated_by_write(tmp_path, monkeypatch):
    path = tmp_path / "digests.json"
    selection = {"optimizers": ["Adam"], "dtypes": ["float32", "float64", "complex64"], "steps": 50}
    golden.write_digest(selection, "ab" * 32, path)
    assert golden.committed_digest(selection, path) == "ab" * 32
    assert golden.selection_key(selection) == ADAM_KEY
    assert json.loads(golden.DIGESTS_PATH.read_text())["digests"].keys() >= {ADAM_KEY}
