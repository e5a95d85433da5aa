"""Fixtures of the unit tests: the array namespaces they run on.

The unit tests need no torch; where they check torch's behaviour (exception types and
messages, defaults, signatures) the expected values were read from torch 2.13 and are
written out in the tests.

``xp`` runs over every backend of ``refoptim.testing.backends``: NumPy and array-api-strict
always, CuPy where it imports and sees a CUDA GPU; elsewhere the CuPy cases are skipped
with the reason, so ``pytest -ra`` shows them.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _support import BACKENDS, backend_param  # noqa: E402


@pytest.fixture(params=[backend_param(name) for name in BACKENDS])
def xp(request):
    """An array namespace: array_api_compat.numpy, array_api_strict, then
    array_api_compat.cupy (skipped without CuPy and a GPU)."""
    return BACKENDS[request.param].namespace()


@pytest.fixture
def other_xp(xp):
    """Another available namespace than ``xp`` (for mixed-namespace errors): the first
    available backend, in registry order, whose namespace is not ``xp``'s."""
    for backend in BACKENDS.values():
        if backend.available:
            ns = backend.namespace()
            if ns is not xp:
                return ns
    pytest.skip("mixed-namespace tests need a second available backend")


@pytest.fixture(autouse=True)
def _skip_dtypes_the_namespace_lacks(request):
    """A test parametrized by ``dtype`` on an ``xp`` that has no such dtype (ndonnx: no
    complex; JAX without x64: no float64) is skipped with that reason."""
    params = getattr(getattr(request.node, "callspec", None), "params", {})
    dtype = params.get("dtype")
    if params.get("xp") not in BACKENDS or not isinstance(dtype, str):
        return  # not the xp fixture (some tests parametrize xp with namespaces)
    from refoptim.fingerprint import backend_dtypes

    backend = BACKENDS[params["xp"]]
    if dtype in ("float32", "float64", "complex64") and dtype not in backend_dtypes(backend):
        pytest.skip(f"{params['xp']} has no {dtype}")
