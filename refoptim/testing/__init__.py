"""Reusable conformance machinery: thresholds, error metrics, the configuration matrix,
the torch-free inputs (configuration lists, the seeded gradient source, builders of
refoptim's side), the comparison of another implementation with refoptim
(:func:`compare`, :func:`assert_conforms`), the torch adapter and the runners behind
``python -m refoptim conformance``, and the committed digests of ``python -m refoptim
fingerprint`` (``fingerprint.json``).

Only :mod:`!refoptim.testing.torch_adapter`, :mod:`!refoptim.testing.runner` and the
harnesses built on them (``conformance_*``, ``schedulers``, ``swa``) need torch;
importing this package does not.
"""

from .comparison import Entry, Report, Stateful, Unsupported, assert_conforms, compare, counter, scaled

__all__ = ["Entry", "Report", "Stateful", "Unsupported", "assert_conforms", "compare", "counter", "scaled"]
