"""refoptim: torch.optim without torch.

Every optimizer update rule of PyTorch 2.13, written once against the Python Array API
standard (NumPy, CuPy, array-api-strict, ...), and proven step by step against PyTorch.

    >>> import refoptim as optim
    >>> opt = optim.Adam([optim.Parameter(w)], lr=1e-3)   # doctest: +SKIP
"""

from . import functional, lr_scheduler, registry, swa_utils
from ._fastpath import get_num_threads, set_num_threads
from .checkpoint import load, save
from .optimizer import (
    Optimizer,
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
    required,
)
from .parameter import Parameter
from .sparse import SparseGrad

__version__ = "0.1.0"
TORCH_VERSION = "2.13.0"
"""The PyTorch version whose semantics refoptim reproduces and checks against."""

# One class per registry entry (refoptim.registry, in its order): refoptim.Adam is
# refoptim.adam.Adam. tests/test_registry.py checks each is there.
for _info in registry.OPTIMIZERS:
    globals()[_info.name] = _info.cls
del _info

__all__ = [
    *registry.names(),
    "SparseGrad",
    "Optimizer",
    "Parameter",
    "TORCH_VERSION",
    "functional",
    "get_num_threads",
    "set_num_threads",
    "lr_scheduler",
    "swa_utils",
    "register_optimizer_step_post_hook",
    "register_optimizer_step_pre_hook",
    "required",
    "save",
    "load",
]
