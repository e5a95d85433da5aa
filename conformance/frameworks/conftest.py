"""optax and Keras 3 (JAX backend) against torch.optim through refoptim: the tests need the
``frameworks`` extra (``pip install -e ".[frameworks]"``); without it every test module here
skips itself (``pytest.importorskip``).

Each test runs JAX in both modes inside one process with ``jax.enable_x64(False/True)``
(``measure.py``, which makes the published tables, runs each mode in its own process;
``test_x64_context_matches_a_separate_process`` checks the two agree).
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
