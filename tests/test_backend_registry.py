"""The backend registry (refoptim/testing/backends.py): which backends run here, their
namespaces, bit-exact round trips to and from NumPy, the CuPy probe, and the ``xp``
fixture built from it."""

import sys
import types

import array_api_strict
import numpy as np
import pytest
from _support import BACKENDS, NAMESPACES, backend_param, cnp, to_np

import refoptim
from refoptim.testing import backends

ROUND_TRIP_DTYPES = ("float32", "float64", "complex64", "complex128", "int64", "bool")


def _awkward(dtype):
    """Values whose bits a careless conversion would change: -0.0, NaN with a payload,
    infinities, subnormals; a non-contiguous view."""
    rng = np.random.default_rng(7)
    base = rng.standard_normal((6, 9)) * 1e3
    if dtype == "bool":
        return base[::2, 1:5] > 0
    if dtype == "int64":
        return (base[::2, 1:5]).astype(np.int64)
    a = base.astype(dtype)
    flat = a.reshape(-1)
    real = np.dtype(dtype).type(0).real.dtype
    flat.real[:5] = np.array([-0.0, np.inf, -np.inf, np.finfo(real).smallest_subnormal, 1.0], dtype=real)
    nan = np.frombuffer(
        np.array([0x7FC00123 if real == np.float32 else 0x7FF8000000000123], dtype=np.uint32 if real == np.float32 else np.uint64).tobytes(),
        dtype=real,
    )[0]
    flat.real[5] = nan
    return a[::2, 1:5]


def test_registry_names_and_order():
    assert backends.BACKEND_NAMES == (
        "numpy", "array-api-strict", "cupy", "jax", "jax-x32", "dask", "dask-distributed", "torch", "torch-cuda", "ndonnx",
    )
    assert list(BACKENDS)[:3] == ["numpy", "array-api-strict", "cupy"]
    assert [b.name for b in backends.available_backends()][:2] == ["numpy", "array-api-strict"]


def test_cpu_backends_are_available_with_their_namespaces():
    np_backend, strict = backends.get_backend("numpy"), backends.get_backend("array-api-strict")
    assert np_backend.available and np_backend.reason == ""
    assert strict.available and strict.reason == ""
    assert np_backend.namespace() is cnp is NAMESPACES["numpy"]
    assert strict.namespace() is array_api_strict is NAMESPACES["array_api_strict"]
    assert np_backend.device == strict.device == "cpu"
    assert backends.get_backend("cupy").device == "cuda"


@pytest.mark.parametrize("dtype", ROUND_TRIP_DTYPES)
@pytest.mark.parametrize("name", ["numpy", "array-api-strict"])
def test_round_trip_keeps_every_bit(name, dtype):
    backend = backends.get_backend(name)
    a = _awkward(dtype)
    x = backend.from_numpy(a)
    assert type(x) is (np.ndarray if name == "numpy" else array_api_strict._array_object.Array)
    back = backend.to_numpy(x)
    assert isinstance(back, np.ndarray)
    assert back.dtype == a.dtype and back.shape == a.shape
    assert back.tobytes() == np.ascontiguousarray(a).tobytes()
    # Both directions copy: writing to one side leaves the other as it was.
    back[...] = back[::-1]
    assert backend.to_numpy(x).tobytes() == np.ascontiguousarray(a).tobytes()
    assert np.shares_memory(a, back) is False
    assert backends.to_numpy(x).tobytes() == np.ascontiguousarray(a).tobytes()


def test_zero_d_and_empty_round_trip():
    strict = backends.get_backend("array-api-strict")
    for a in (np.asarray(np.float32(2.5)), np.zeros((0, 3), np.complex64)):
        back = strict.to_numpy(strict.from_numpy(a))
        assert back.shape == a.shape and back.dtype == a.dtype and back.tobytes() == a.tobytes()


@pytest.mark.parametrize("dtype", ROUND_TRIP_DTYPES)
@pytest.mark.parametrize("name", ["jax", "dask", "torch", "ndonnx"])
def test_round_trip_keeps_every_bit_on_the_other_cpu_libraries(name, dtype):
    backend = backends.get_backend(name)
    if not backend.available:
        pytest.skip(f"backend {name} is not available here: {backend.reason}")
    if dtype.startswith("complex") and name == "ndonnx":
        pytest.skip("ndonnx has no complex dtypes")
    a = _awkward(dtype)
    x = backend.from_numpy(a)
    assert type(x).__module__.split(".")[0] in (name, "jaxlib")
    back = backends.to_numpy(x)  # found by the array's type
    assert back.dtype == a.dtype and back.shape == a.shape
    assert back.tobytes() == np.ascontiguousarray(a).tobytes()


def test_to_numpy_dispatches_by_type_and_rejects_strangers():
    assert to_np(array_api_strict.asarray([1.0, 2.0])).tolist() == [1.0, 2.0]
    assert backends.to_numpy(np.float32(3.0)).dtype == np.float32
    with pytest.raises(TypeError, match="x of type builtins.list"):
        backends.to_numpy([1.0])


def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match=r"name='mxnet'.*numpy, array-api-strict, cupy, jax"):
        backends.get_backend("mxnet")


def _fake_cupy(monkeypatch, count):
    """Install a module named cupy whose runtime reports ``count`` devices (or raises it)."""
    fake = types.ModuleType("cupy")

    def get_device_count():
        if isinstance(count, Exception):
            raise count
        return count

    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=get_device_count))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(backends, "_PROBED", {})


def test_cupy_without_a_device_is_unavailable_with_the_reason(monkeypatch):
    _fake_cupy(monkeypatch, RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected"))
    cupy = backends.get_backend("cupy")
    assert not cupy.available
    assert "finds no CUDA device" in cupy.reason and "cudaErrorNoDevice" in cupy.reason
    with pytest.raises(backends.BackendUnavailable, match="backend 'cupy' is not available: .*cudaErrorNoDevice"):
        backends.require_backend("cupy")
    assert "cupy" not in [b.name for b in backends.available_backends()]


def test_cupy_with_zero_devices_is_unavailable(monkeypatch):
    _fake_cupy(monkeypatch, 0)
    assert not backends.get_backend("cupy").available
    assert backends.get_backend("cupy").reason == "cupy imports but reports 0 CUDA devices"


def test_cupy_with_a_device_is_available(monkeypatch):
    _fake_cupy(monkeypatch, 1)
    assert backends.get_backend("cupy").available
    assert backends.require_backend("cupy").name == "cupy"


def test_cupy_that_does_not_import_is_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy raises ImportError
    monkeypatch.setattr(backends, "_PROBED", {})
    cupy = backends.get_backend("cupy")
    assert not cupy.available and cupy.reason.startswith("cupy does not import (ModuleNotFoundError")


def test_xp_fixture_skips_cupy_with_its_reason_when_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    monkeypatch.setattr(backends, "_PROBED", {})
    param = backend_param("cupy")
    (mark,) = param.marks
    assert mark.name == "skip"
    assert mark.kwargs["reason"].startswith("CuPy with a CUDA GPU is not available: cupy does not import")
    assert backend_param("numpy").marks == ()


def test_xp_fixture_runs_every_backend(request, xp):
    """Runs once per available backend (the CuPy case is skipped without a GPU)."""
    name = request.node.callspec.params["xp"]
    assert xp is BACKENDS[name].namespace()
    p = refoptim.Parameter(xp.asarray(np.array([1.0, 2.0])))
    p.grad = xp.asarray(np.array([0.5, -0.5]))
    refoptim.SGD([p], lr=0.5).step()
    assert to_np(p.data).tolist() == [0.75, 2.25]


def test_other_xp_is_a_different_namespace(xp, other_xp):
    assert other_xp is not xp
    assert any(other_xp is b.namespace() for b in backends.available_backends())
