"""Reusable conformance machinery: thresholds, error metrics, the configuration matrix,
the torch adapter and the runner behind ``python -m refoptim conformance``.

Only :mod:`refoptim.testing.torch_adapter` and :mod:`refoptim.testing.runner` need torch;
importing this package does not.
"""
