"""The conformance suite needs torch 2.13; without it, every test here is skipped.

It also registers the hypothesis profiles of the differential fuzzer
(``conformance/test_fuzz.py``):

- ``ci``: the fixed budget of a default run (about 60 s on a 2-core machine), the same
  examples on every run (``derandomize=True``), no deadline, no example database;
- ``long``: a deeper, random run (``pytest conformance/test_fuzz.py
  --hypothesis-profile=long``, or ``HYPOTHESIS_PROFILE=long``).

Registering loads nothing: the fuzzer applies ``ci`` (or ``$HYPOTHESIS_PROFILE``) to its own
tests only, so the unit tests' hypothesis settings are not changed. ``--hypothesis-profile``
loads the named profile for the whole session, as hypothesis' pytest plugin does; the fuzzer
then uses it.
"""

import pytest

pytest.importorskip("torch", reason="conformance needs torch==2.13.0 (pip install -e '.[test]')")

from hypothesis import HealthCheck, settings

_FUZZ_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much, HealthCheck.large_base_example]

settings.register_profile(
    "ci",
    max_examples=200,  # per optimizer (15 tests): about 60 s on 2 cores while refoptim agrees
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=_FUZZ_HEALTH,
)
settings.register_profile(
    "long",
    max_examples=2000,  # per optimizer
    deadline=None,
    print_blob=True,
    suppress_health_check=_FUZZ_HEALTH,
)
