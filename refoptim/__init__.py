"""refoptim: torch.optim without torch.

Every optimizer update rule of PyTorch 2.13, written once against the Python Array API
standard (NumPy, CuPy, array-api-strict, ...), and proven step by step against PyTorch.

    >>> import refoptim as optim
    >>> opt = optim.Adam([optim.Parameter(w)], lr=1e-3)   # doctest: +SKIP
"""

from . import functional, lr_scheduler, swa_utils
from ._fastpath import get_num_threads, set_num_threads
from .adadelta import Adadelta
from .adafactor import Adafactor
from .adagrad import Adagrad
from .adam import Adam
from .adamax import Adamax
from .adamw import AdamW
from .asgd import ASGD
from .checkpoint import load, save
from .lbfgs import LBFGS
from .muon import Muon
from .nadam import NAdam
from .optimizer import (
    Optimizer,
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
    required,
)
from .parameter import Parameter
from .radam import RAdam
from .rmsprop import RMSprop
from .rprop import Rprop
from .sgd import SGD
from .sparse import SparseGrad
from .sparse_adam import SparseAdam

__version__ = "0.1.0"
TORCH_VERSION = "2.13.0"
"""The PyTorch version whose semantics refoptim reproduces and checks against."""

__all__ = [
    "ASGD",
    "SGD",
    "SparseAdam",
    "SparseGrad",
    "Adadelta",
    "Adafactor",
    "Adagrad",
    "Adam",
    "AdamW",
    "LBFGS",
    "Muon",
    "Adamax",
    "NAdam",
    "RAdam",
    "RMSprop",
    "Rprop",
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
