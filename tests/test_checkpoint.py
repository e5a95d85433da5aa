"""refoptim.save / refoptim.load: checkpoints without pickle (refoptim/checkpoint.py).

What is checked: every kind of value a state dict holds comes back with its type and bits;
every scheduler's state dict round-trips; every optimizer, saved after 3 steps (with a
scheduler, two parameter groups) and resumed in fresh objects, ends its next 3 steps with
the bits of an uninterrupted 6-step run, on NumPy and array-api-strict; loading never
unpickles (a pickle payload that would create a file does not run); truncated and corrupted
files raise CheckpointError and nothing else; a save killed midway leaves the previous file.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import os
import pickle
import re
import struct
import subprocess
import sys
import textwrap
import time
import zipfile
from collections import Counter, OrderedDict

import array_api_strict
import numpy as np
import pytest
from _support import to_np

import refoptim as optim
from refoptim import checkpoint, lr_scheduler, registry, swa_utils
from refoptim.checkpoint import CheckpointError
from refoptim.testing import backends

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------------------- helpers
def assert_same(a, b, where="obj"):
    """``a`` and ``b`` are the same tree: same types (an int is not a float, a tuple not a
    list, a 0-d array not a scalar), same dict keys in the same order, floats and arrays
    with the same bits, arrays of the same array type."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float):
        assert struct.pack("<d", a) == struct.pack("<d", b), f"{where}: {a!r} != {b!r}"
    elif isinstance(a, complex):
        assert_same(a.real, b.real, where)
        assert_same(a.imag, b.imag, where)
    elif isinstance(a, optim.SparseGrad):
        assert a.shape == b.shape and a.is_coalesced() == b.is_coalesced(), where
        assert_same(a.indices, b.indices, f"{where}.indices")
        assert_same(a.values, b.values, f"{where}.values")
    elif isinstance(a, np.generic) or optim._backend.is_array(a):
        x, y = to_np(a), to_np(b)
        assert x.dtype == y.dtype and x.shape == y.shape, f"{where}: {x.dtype}{x.shape} != {y.dtype}{y.shape}"
        assert x.tobytes() == y.tobytes(), f"{where}: values differ\n{x!r}\n{y!r}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def round_trip(obj, tmp_path, **kwargs):
    path = tmp_path / "ckpt.npz"
    optim.save(obj, path)
    return optim.load(path, **kwargs)


NAN_PAYLOAD = struct.unpack("<d", struct.pack("<Q", 0xFFF0000000000123))[0]  # a negative NaN with a payload


def values_tree():
    """One of everything a checkpoint holds."""
    shared = np.arange(4.0)
    return {
        "none": None, "true": True, "false": False, "int": 3, "big": 2**70, "neg": -7,
        "float": 0.1, "whole": 2.0, "zero": -0.0, "inf": math.inf, "-inf": -math.inf, "nan": math.nan,
        "nan_payload": NAN_PAYLOAD, "tiny": 5e-324, "complex": complex(1.5, -math.inf), "str": "é $x \u2603",
        "list": [1, [2.0, (3, "x")]], "tuple": (1.0, (2,), []), "empty": {}, "$dollar": {"$tuple": 1},
        "counter": Counter({2: 1, 4: 2}), "ordered": OrderedDict([("b", 1), ("a", np.ones(1))]),
        "int_keys": {0: "a", 5: "b", -1: "c"}, "mixed_keys": {None: 1, True: 2, 7: 3, 1.5: 4, (1, "a"): 5, "s": 6},
        "zero_d": np.asarray(1.0, dtype=np.float32), "scalar32": np.float32(1.0), "scalar_bool": np.bool_(True),
        "arrays": [np.zeros((0,), np.float64), np.ones((2, 0, 3), np.float32), np.arange(6, dtype=np.int64).reshape(2, 3)],
        "f_order": np.asfortranarray(np.arange(6.0).reshape(2, 3)), "view": np.arange(10.0)[::3],
        "big_endian": np.arange(3, dtype=">f8"),
        "dtypes": [np.asarray([1, 0, 1], dtype=d) for d in ("bool", "int8", "uint16", "int32", "uint64", "float16")],
        "complex_arrays": [np.asarray([1 + 2j, complex(0.0, -0.0)], dtype=d) for d in ("complex64", "complex128")],
        "nonfinite": np.asarray([np.inf, -np.inf, np.nan, -0.0], dtype=np.float32),
        "shared": [shared, shared],
        "sparse": optim.SparseGrad(np.array([[2, 0]]), np.array([[1.0, 2.0], [3.0, 4.0]]), (3, 2), is_coalesced=False),
    }


# ---------------------------------------------------------------------------- values and format
def test_every_kind_of_value_round_trips(tmp_path):
    tree = values_tree()
    back = round_trip(tree, tmp_path)
    expected = dict(tree, big_endian=np.arange(3, dtype="f8"))  # native byte order on load
    assert_same(expected, back)
    assert back["shared"][0] is back["shared"][1]  # one array object saved twice loads as one
    assert back["zero_d"].shape == () and type(back["float"]) is float and type(back["int"]) is int
    assert back["view"].flags.writeable and back["view"].flags.c_contiguous


def test_arrays_load_into_the_namespace_asked_for(tmp_path):
    tree = {"a": np.asarray(1.0, np.float32), "s": optim.SparseGrad(np.array([[1]]), np.array([2.0]), (3,)),
            "n": np.float64(2.0), "f": 1.5}
    path = tmp_path / "c.npz"
    optim.save(tree, path)
    for xp in (array_api_strict, "array-api-strict"):
        back = optim.load(path, xp=xp)
        assert type(back["a"]) is type(array_api_strict.asarray(1.0))
        assert back["a"].dtype == array_api_strict.float32 and back["a"].shape == ()
        assert type(back["s"].values) is type(back["a"]) and type(back["s"].indices) is type(back["a"])
        assert type(back["n"]) is np.float64 and type(back["f"]) is float  # host values stay host values
    assert optim.load(path, device="cpu")["a"].dtype == np.float32
    with pytest.raises(ValueError, match="unknown backend"):
        optim.load(path, xp="no-such-backend")
    with pytest.raises(TypeError, match="xp must be"):
        optim.load(path, xp=42)


class Float32Only:
    """A namespace without float64, as JAX is without x64: asarray makes float32."""

    float32, float64 = np.float32, np.float64

    @staticmethod
    def asarray(a, **kwargs):
        return np.asarray(a, dtype=np.float32 if a.dtype == np.float64 else a.dtype)


def test_load_refuses_to_change_a_dtype(tmp_path):
    path = tmp_path / "c.npz"
    optim.save({"a": np.ones(2, np.float32)}, path)
    assert optim.load(path, xp=Float32Only)["a"].dtype == np.float32
    optim.save({"a": np.ones(2, np.float64)}, path)
    with pytest.raises(TypeError, match="dtype float64 into one of dtype float32.*xp=None"):
        optim.load(path, xp=Float32Only)


def test_arrays_of_other_backends_are_saved_from_the_host(tmp_path):
    strict = array_api_strict.asarray(np.asarray([[1.0, -0.0]], dtype=np.float32))
    back = round_trip({"w": strict}, tmp_path)
    assert_same(back["w"], np.asarray([[1.0, -0.0]], dtype=np.float32))


def test_layout_is_a_zip_with_a_json_header_and_npy_members(tmp_path):
    path = tmp_path / "c.npz"
    optim.save({0: np.ones(2), "t": (1,)}, path, metadata={"optimizer": "Adam"})
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        assert [i.filename for i in infos] == ["refoptim-checkpoint.json", "arrays/0.npy"]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
        header = json.loads(zf.read("refoptim-checkpoint.json"))
    assert header["format"] == "refoptim-checkpoint" and header["format_version"] == checkpoint.FORMAT_VERSION == 1
    assert header["refoptim_version"] == optim.__version__
    assert header["metadata"] == {"optimizer": "Adam"} and header["arrays"] == ["arrays/0.npy"]
    assert header["object"] == {"$dict": [[0, {"$array": 0, "dtype": "float64", "shape": [2]}], ["t", {"$tuple": [1]}]]}
    with np.load(path, allow_pickle=False) as npz:  # also a valid .npz
        assert npz["arrays/0"].tolist() == [1.0, 1.0]
    assert checkpoint.read_metadata(path) == {"format_version": 1, "refoptim_version": optim.__version__,
                                              "metadata": {"optimizer": "Adam"}}


def test_the_same_object_saves_to_the_same_bytes(tmp_path):
    optim.save(values_tree(), tmp_path / "a")
    time.sleep(0.01)
    optim.save(values_tree(), tmp_path / "b")
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


class Opaque:
    pass


@pytest.mark.parametrize(
    ("obj", "error", "match"),
    [
        ({"f": lambda e: e}, TypeError, r"obj\['f'\], a builtins.function"),
        ({"p": [optim.Parameter(np.ones(1))]}, TypeError, r"save p.data"),
        ({"o": np.array([Opaque()], dtype=object)}, TypeError, "dtype object"),
        ({"s": np.array(["a"])}, TypeError, "dtype <U1"),
        ({"k": {frozenset(): 1}}, TypeError, "key frozenset"),
        ({"k": {(1, np.float64(2)): 1}}, TypeError, r"key \(1, np.float64\(2.0\)\)"),
        ({"set": {1}}, TypeError, "builtins.set"),
        ({"b": b"bytes"}, TypeError, "builtins.bytes"),
    ],
)
def test_save_refuses_what_it_cannot_store_before_touching_the_disk(tmp_path, obj, error, match):
    path = tmp_path / "c.npz"
    optim.save({"old": 1}, path)
    before = path.read_bytes()
    with pytest.raises(error, match=match):
        optim.save(obj, path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["c.npz"]


def test_save_refuses_cycles_and_non_json_metadata(tmp_path):
    loop = []
    loop.append(loop)
    with pytest.raises(ValueError, match="contains itself"):
        optim.save(loop, tmp_path / "c")
    with pytest.raises(TypeError, match="metadata"):
        optim.save({}, tmp_path / "c", metadata={"x": np.ones(1)})
    with pytest.raises(TypeError, match="metadata"):
        optim.save({}, tmp_path / "c", metadata={"x": math.inf})
    with pytest.raises(TypeError, match="metadata"):
        optim.save({}, tmp_path / "c", metadata={1: "x"})
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------- schedulers
class Factor:
    """A callable object: LambdaLR/CyclicLR save its __dict__."""

    def __init__(self, factor):
        self.factor = factor

    def __call__(self, epoch):
        return self.factor**epoch


def _sgd():
    a, b = optim.Parameter(np.ones(2)), optim.Parameter(np.ones(3))
    return optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.2}], lr=0.1, momentum=0.9)


SCHEDULERS = {
    "LambdaLR": lambda o: lr_scheduler.LambdaLR(o, [Factor(0.9), lambda e: 0.5]),
    "MultiplicativeLR": lambda o: lr_scheduler.MultiplicativeLR(o, Factor(0.95)),
    "StepLR": lambda o: lr_scheduler.StepLR(o, step_size=2, gamma=0.5),
    "MultiStepLR": lambda o: lr_scheduler.MultiStepLR(o, milestones=[2, 4], gamma=0.3),
    "ConstantLR": lambda o: lr_scheduler.ConstantLR(o, factor=0.5, total_iters=3),
    "LinearLR": lambda o: lr_scheduler.LinearLR(o, start_factor=0.25, total_iters=4),
    "ExponentialLR": lambda o: lr_scheduler.ExponentialLR(o, gamma=0.9),
    "SequentialLR": lambda o: lr_scheduler.SequentialLR(
        o, [lr_scheduler.ConstantLR(o, factor=0.5, total_iters=2), lr_scheduler.ExponentialLR(o, gamma=0.9)], milestones=[2]),
    "PolynomialLR": lambda o: lr_scheduler.PolynomialLR(o, total_iters=6, power=2.0),
    "CosineAnnealingLR": lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=5, eta_min=0.001),
    "ChainedScheduler": lambda o: lr_scheduler.ChainedScheduler(
        [lr_scheduler.ExponentialLR(o, gamma=0.9), lr_scheduler.StepLR(o, step_size=2)]),
    "ReduceLROnPlateau": lambda o: lr_scheduler.ReduceLROnPlateau(o, patience=1, mode="max"),
    "CyclicLR": lambda o: lr_scheduler.CyclicLR(o, 0.01, [0.1, 0.2], step_size_up=2, scale_fn=Factor(0.9)),
    "CosineAnnealingWarmRestarts": lambda o: lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=2),
    "OneCycleLR": lambda o: lr_scheduler.OneCycleLR(o, max_lr=[0.1, 0.3], total_steps=20, three_phase=True),
    "SWALR": lambda o: swa_utils.SWALR(o, swa_lr=0.05, anneal_epochs=3, anneal_strategy="linear"),
}


def test_every_scheduler_is_listed():
    names = {n for n in lr_scheduler.__all__ if n != "LRScheduler"} | {"SWALR"}
    assert names == set(SCHEDULERS)


def _advance(opt, sched, steps):
    for k in range(steps):
        opt.step()
        sched.step(1.0 + (k % 2)) if isinstance(sched, lr_scheduler.ReduceLROnPlateau) else sched.step()


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_every_scheduler_state_dict_round_trips(tmp_path, name):
    opt = _sgd()
    sched = SCHEDULERS[name](opt)
    _advance(opt, sched, 3)
    state = sched.state_dict()
    back = round_trip({"scheduler": state, "optimizer": opt.state_dict()}, tmp_path)
    assert_same(state, back["scheduler"])
    # fresh objects resumed from the file go on as the original does
    opt2 = _sgd()
    sched2 = SCHEDULERS[name](opt2)
    opt2.load_state_dict(back["optimizer"])
    sched2.load_state_dict(back["scheduler"])
    _advance(opt, sched, 4)
    _advance(opt2, sched2, 4)
    assert_same([g["lr"] for g in opt.param_groups], [g["lr"] for g in opt2.param_groups])
    assert_same(sched.state_dict(), sched2.state_dict())


def test_plateau_best_inf_round_trips(tmp_path):
    sched = lr_scheduler.ReduceLROnPlateau(_sgd())
    assert sched.state_dict()["best"] == math.inf
    assert_same(sched.state_dict(), round_trip(sched.state_dict(), tmp_path))


# ---------------------------------------------------------------------------- resume bit for bit
# Options per optimizer; a registered optimizer not listed runs with its defaults.
_OPTIONS = {
    "SGD": {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
    "Adam": {"amsgrad": True},
    "AdamW": {},
    "Adagrad": {"lr_decay": 0.01},
    "Adadelta": {},
    "Adamax": {},
    "ASGD": {"t0": 1},
    "NAdam": {},
    "RAdam": {},
    "RMSprop": {"momentum": 0.5, "centered": True},
    "Rprop": {},
    "SparseAdam": {},
    "LBFGS": {"history_size": 3, "max_iter": 3},
    "Muon": {},
    "Adafactor": {},
}
OPTIMIZERS = {info.name: (info.cls, _OPTIONS.get(info.name, {})) for info in registry.OPTIMIZERS}

# torch's load_state_dict casts every state array but ``step`` to a floating parameter's
# dtype, the float32 scalars NAdam (mu_product) and ASGD (eta, mu) keep included: float64
# runs of those two go on in float64 after a resume, so they differ from an uninterrupted
# run. torch does the same; the file changes nothing (it equals an in-memory
# load_state_dict, checked for every case).
RESUME_DIFFERS = {("NAdam", "float64"), ("ASGD", "float64")}


def test_every_optimizer_is_listed():
    assert {n for n in optim.__all__ if isinstance(getattr(optim, n), type) and issubclass(getattr(optim, n), optim.Optimizer)
            and n != "Optimizer"} == set(OPTIMIZERS)


def _initial(name, dtype):
    rng = np.random.default_rng(7)
    shapes = [(3, 2), (2, 4)] if name in ("Muon", "LBFGS") else [(3, 2), (2, 4), (5,)]
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


def _build(name, backend, values):
    cls, kwargs = OPTIMIZERS[name]
    params = [optim.Parameter(v if not isinstance(v, np.ndarray) else backend.from_numpy(v)) for v in values]
    if name == "LBFGS":  # torch's LBFGS takes one parameter group
        opt = cls(params, lr=0.5, **kwargs)
    else:
        opt = cls([{"params": params[:1]}, {"params": params[1:], "lr": 0.02}], lr=0.01, **kwargs)
    return params, opt, lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)


def _grad(name, backend, p, t, i):
    noise = np.random.default_rng(100 * t + i).standard_normal(tuple(p.data.shape)).astype(to_np(p.data).dtype)
    g = p.data * 0.5 + backend.from_numpy(noise)
    if name != "SparseAdam":
        return g
    rows = np.array([[t % p.data.shape[0], (t + 1) % p.data.shape[0]]])
    xp = backend.namespace()
    return optim.SparseGrad(backend.from_numpy(rows), xp.take(g, backend.from_numpy(rows[0]), axis=0), tuple(p.data.shape))


def _advance_opt(name, backend, params, opt, sched, steps):
    for t in steps:
        opt.zero_grad()
        if name == "LBFGS":
            def closure(t=t):
                for i, p in enumerate(params):
                    p.grad = _grad(name, backend, p, t, i)
                return float(sum(float(np.sum(to_np(p.data) ** 2)) for p in params))
            opt.step(closure)
        else:
            for i, p in enumerate(params):
                p.grad = _grad(name, backend, p, t, i)
            opt.step()
        sched.step()


@pytest.mark.parametrize("backend_name", ["numpy", "array-api-strict"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_resume_from_a_checkpoint_is_bit_identical(tmp_path, name, dtype, backend_name):
    backend = backends.get_backend(backend_name)
    if not backend.available:
        pytest.skip(backend.reason)
    xp = None if backend_name == "numpy" else backend.namespace()

    params, opt, sched = _build(name, backend, _initial(name, dtype))
    _advance_opt(name, backend, params, opt, sched, range(6))

    params_a, opt_a, sched_a = _build(name, backend, _initial(name, dtype))
    _advance_opt(name, backend, params_a, opt_a, sched_a, range(3))
    path = tmp_path / "ckpt.npz"
    optim.save({"optimizer": opt_a.state_dict(), "scheduler": sched_a.state_dict(),
                "params": [p.data for p in params_a], "step": 3}, path)
    memory = copy.deepcopy({"optimizer": opt_a.state_dict(), "scheduler": sched_a.state_dict(),
                            "params": [p.data for p in params_a]})
    del params_a, opt_a, sched_a

    resumed = []
    for ckpt in (optim.load(path, xp=xp), memory):
        if ckpt is not memory:
            assert ckpt["step"] == 3 and all(type(a) is type(params[0].data) for a in ckpt["params"])
        params_b, opt_b, sched_b = _build(name, backend, ckpt["params"])
        opt_b.load_state_dict(ckpt["optimizer"])
        sched_b.load_state_dict(ckpt["scheduler"])
        _advance_opt(name, backend, params_b, opt_b, sched_b, range(3, 6))
        resumed.append({"params": [p.data for p in params_b], "opt": opt_b.state_dict(), "sched": sched_b.state_dict()})

    assert_same(resumed[0], resumed[1], "file vs memory")
    uninterrupted = {"params": [p.data for p in params], "opt": opt.state_dict(), "sched": sched.state_dict()}
    if (name, dtype) in RESUME_DIFFERS:
        with pytest.raises(AssertionError):
            assert_same(uninterrupted, resumed[0])
    else:
        assert_same(uninterrupted, resumed[0], "uninterrupted vs resumed")


# ---------------------------------------------------------------------------- nothing executes
def _marker_payload(marker):
    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))  # unpickling would create the marker file

    return Payload()


def test_a_pickle_file_is_refused_and_not_run(tmp_path):
    marker, path = tmp_path / "marker", tmp_path / "ckpt.npz"
    path.write_bytes(pickle.dumps({"state": _marker_payload(marker)}))
    with pytest.raises(CheckpointError, match=r"ckpt.npz.*is a pickle file.*never unpickles"):
        optim.load(path)
    assert not marker.exists()


def test_an_object_array_member_is_refused_and_not_run(tmp_path):
    marker, path = tmp_path / "marker", tmp_path / "ckpt.npz"
    optim.save({"w": np.ones(2)}, path)
    with zipfile.ZipFile(path) as zf:
        header = zf.read("refoptim-checkpoint.json")
    evil = tmp_path / "evil.npy"
    np.save(evil, np.array([_marker_payload(marker)], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("refoptim-checkpoint.json", header.replace(b'"float64"', b'"object"'))
        zf.writestr("arrays/0.npy", evil.read_bytes())
    with pytest.raises(CheckpointError, match="dtype object.*pickled"):
        optim.load(path)
    assert not marker.exists()


def test_a_plain_npz_and_a_torch_save_file_are_refused(tmp_path):
    marker = tmp_path / "marker"
    np.savez(tmp_path / "plain.npz", a=np.array([_marker_payload(marker)], dtype=object))
    with pytest.raises(CheckpointError, match="without 'refoptim-checkpoint.json'"):
        optim.load(tmp_path / "plain.npz")
    with zipfile.ZipFile(tmp_path / "model.pt", "w") as zf:  # torch.save's layout
        zf.writestr("archive/data.pkl", pickle.dumps(_marker_payload(marker)))
        zf.writestr("archive/version", "3\n")
    with pytest.raises(CheckpointError, match="torch.save file"):
        optim.load(tmp_path / "model.pt")
    (tmp_path / "text").write_text("hello")
    with pytest.raises(CheckpointError, match="not a ZIP archive"):
        optim.load(tmp_path / "text")
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(CheckpointError, match="is empty"):
        optim.load(tmp_path / "empty")
    assert not marker.exists()
    with pytest.raises(FileNotFoundError):
        optim.load(tmp_path / "missing")


def _rewrite_header(path, edit):
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    header = json.loads(members["refoptim-checkpoint.json"])
    edit(header)
    members["refoptim-checkpoint.json"] = json.dumps(header).encode()
    with zipfile.ZipFile(path, "w") as zf:
        for n, data in members.items():
            zf.writestr(n, data)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda h: h.update(format_version=2), "format version 2, written by a newer refoptim"),
        (lambda h: h.update(format="other"), "header"),
        (lambda h: h.update(object={"$code": "print(1)"}), "unknown or malformed entry '\\$code'"),
        (lambda h: h.update(object={"$array": 5, "dtype": "float64", "shape": [2]}), "does not hold"),
        (lambda h: h.update(object={"$array": 0, "dtype": "float32", "shape": [2]}), "not as its header says"),
    ],
)
def test_malformed_headers_are_refused(tmp_path, edit, match):
    path = tmp_path / "c.npz"
    optim.save(np.ones(2), path)
    _rewrite_header(path, edit)
    with pytest.raises(CheckpointError, match=match):
        optim.load(path)


def test_a_compressed_member_is_refused(tmp_path):
    path = tmp_path / "c.npz"
    optim.save({"w": np.ones(2)}, path)
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for n, data in members.items():
            zf.writestr(n, data)
    with pytest.raises(CheckpointError, match="uncompressed"):
        optim.load(path)


# ---------------------------------------------------------------------------- damaged files
def _small_checkpoint(tmp_path):
    w = optim.Parameter(np.array([[1.0, -2.0], [0.5, 3.0]], dtype=np.float32))
    opt = optim.Adam([w], lr=0.1)
    w.grad = w.data * 2
    opt.step()
    obj = {"optimizer": opt.state_dict(), "epoch": 1, "best": math.inf}
    path = tmp_path / "c.npz"
    optim.save(obj, path)
    return path, obj, path.read_bytes()


def test_truncated_files_raise_checkpoint_error(tmp_path):
    path, _, data = _small_checkpoint(tmp_path)
    for n in sorted({*range(64), *range(64, len(data) - 64, 5), *range(len(data) - 64, len(data))}):
        path.write_bytes(data[:n])
        with pytest.raises(CheckpointError, match=re.escape(repr(str(path)))):
            optim.load(path)


def test_corrupted_bytes_raise_checkpoint_error_or_change_nothing(tmp_path):
    """A byte flipped anywhere: CheckpointError, or (a byte no reader uses, such as a
    local header's timestamp) the intact content; never another exception, never other
    content (ZIP's CRC-32 covers every member)."""
    path, obj, data = _small_checkpoint(tmp_path)
    refused = 0
    for i in range(len(data)):
        for flip in (0xFF, 0x01) if i % 7 == 0 else (0xFF,):
            damaged = bytearray(data)
            damaged[i] ^= flip
            path.write_bytes(bytes(damaged))
            try:
                back = optim.load(path)
            except CheckpointError:
                refused += 1
            else:
                assert_same(obj, back, f"byte {i} ^ {flip:#x}")
    assert refused > len(data) // 2  # most bytes matter


# ---------------------------------------------------------------------------- atomic write
def _child(script, *args):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
                            stdout=subprocess.PIPE, env=env, text=True)


def test_a_save_killed_midway_leaves_the_old_checkpoint(tmp_path):
    path = tmp_path / "ckpt.npz"
    old = {"version": 1, "w": np.full(1000, 1.0)}
    optim.save(old, path)
    before = path.read_bytes()
    child = _child("""
        import sys, time
        import numpy as np
        import refoptim
        write_array = np.lib.format.write_array
        def stall(*args, **kwargs):
            write_array(*args, **kwargs)
            print("writing", flush=True)
            time.sleep(60)
        np.lib.format.write_array = stall
        refoptim.save({"version": 2, "w": np.full(1000, 2.0), "v": np.zeros(5)}, sys.argv[1])
    """, path)
    try:
        assert child.stdout.readline().strip() == "writing"
        leftovers = [n for n in os.listdir(tmp_path) if n != "ckpt.npz"]
        assert len(leftovers) == 1 and re.fullmatch(r"\.ckpt\.npz\.tmp-[0-9a-f]{8}", leftovers[0])
    finally:
        child.kill()
        child.wait()
    assert path.read_bytes() == before
    assert_same(old, optim.load(path))
    with pytest.raises(CheckpointError):  # the partial temporary file is no checkpoint
        optim.load(tmp_path / leftovers[0])


def test_saves_killed_at_any_moment_leave_a_whole_checkpoint(tmp_path):
    path = tmp_path / "ckpt.npz"
    optim.save({"version": 0, "w": np.zeros(1 << 20)}, path)
    child = _child("""
        import sys
        import numpy as np
        import refoptim
        for k in range(1, 10**6):
            refoptim.save({"version": k, "w": np.full(1 << 20, float(k))}, sys.argv[1])
            print(k, flush=True)
    """, path)
    try:
        for _ in range(3):
            assert child.stdout.readline()
        time.sleep(0.05)
    finally:
        child.kill()
        child.wait()
    back = optim.load(path)
    assert back["version"] >= 3 and np.all(back["w"] == back["version"])


def test_a_failed_write_removes_its_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    optim.save({"old": np.ones(2)}, path)
    before = path.read_bytes()

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np.lib.format, "write_array", full)
    with pytest.raises(OSError, match="No space"):
        optim.save({"new": np.zeros(2)}, path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["ckpt.npz"]


def test_save_fsyncs_the_file_and_its_directory(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def record(fd):
        synced.append(os.path.realpath(f"/proc/self/fd/{fd}") if os.path.isdir("/proc/self/fd") else fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", record)
    path = tmp_path / "ckpt.npz"
    optim.save({"w": np.ones(2)}, path)
    assert len(synced) == 2
    if os.path.isdir("/proc/self/fd"):
        assert re.fullmatch(r".*/\.ckpt\.npz\.tmp-[0-9a-f]{8}", synced[0])
        assert synced[1] == os.path.realpath(tmp_path)
    assert os.listdir(tmp_path) == ["ckpt.npz"]


def test_save_writes_through_a_symlink_and_keeps_new_file_permissions(tmp_path):
    target = tmp_path / "real.npz"
    optim.save({"v": 1}, target)
    link = tmp_path / "link.npz"
    link.symlink_to(target)
    optim.save({"v": 2}, link)
    assert link.is_symlink() and optim.load(target) == {"v": 2}
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


# ---------------------------------------------------------------------------- docs
@pytest.mark.parametrize("name", checkpoint.__all__)
def test_public_names_have_docstrings(name):
    obj = getattr(checkpoint, name)
    if inspect.isclass(obj) or inspect.isfunction(obj):
        assert (inspect.getdoc(obj) or "").strip()
    assert optim.save is checkpoint.save and optim.load is checkpoint.load
