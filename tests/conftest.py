"""Fixtures of the unit tests: the array namespaces they run on.

The unit tests need no torch; where they check torch's behaviour (exception types and
messages, defaults, signatures) the expected values were read from torch 2.13 and are
written out in the tests.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _support import NAMESPACES  # noqa: E402


@pytest.fixture(params=list(NAMESPACES), ids=list(NAMESPACES))
def xp(request):
    """An array namespace: array_api_compat.numpy, then array_api_strict."""
    return NAMESPACES[request.param]


@pytest.fixture
def other_xp(xp):
    """The other tested namespace than ``xp`` (for mixed-namespace errors)."""
    (other,) = [ns for ns in NAMESPACES.values() if ns is not xp]
    return other
