"""Reusable conformance machinery: thresholds, error metrics, the configuration matrix,
the torch-free inputs (configuration lists, builders of refoptim's side), the torch
adapter and the runners behind ``python -m refoptim conformance``, and the committed
digests of ``python -m refoptim fingerprint`` (``fingerprint.json``).

Only :mod:`refoptim.testing.torch_adapter`, :mod:`refoptim.testing.runner` and the
harnesses built on them (``conformance_*``, ``schedulers``, ``swa``) need torch;
importing this package does not.
"""
