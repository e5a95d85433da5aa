"""The conformance suite needs torch 2.13; without it, every test here is skipped."""

import pytest

pytest.importorskip("torch", reason="conformance needs torch==2.13.0 (pip install -e '.[test]')")
