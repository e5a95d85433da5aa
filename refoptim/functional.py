"""The functional form: each optimizer's rule over one parameter, for any array library.

Each ``<name>_step`` takes ``(param, grad, state, **hyperparameters)``, returns the new
parameter and stores the new state values in ``state``; ``<name>_init`` makes the state a
parameter starts with. On NumPy and CuPy the arrays are updated in place and returned; on
immutable arrays (JAX) new arrays are returned. Keep what you get back, and the same code
serves both::

    state = adam_init(w)
    for _ in range(100):
        w = adam_step(w, grad_of(w), state, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                      weight_decay=0.0, amsgrad=False, maximize=False,
                      decoupled_weight_decay=False)
"""

from .adadelta import adadelta_init, adadelta_step
from .adafactor import adafactor_init, adafactor_step
from .adagrad import adagrad_init, adagrad_step
from .adam import adam_init, adam_step
from .adamax import adamax_init, adamax_step
from .adamw import adamw_step
from .asgd import asgd_init, asgd_step
from .muon import muon_init, muon_step
from .nadam import nadam_init, nadam_step
from .radam import radam_init, radam_step
from .rmsprop import rmsprop_init, rmsprop_step
from .rprop import rprop_init, rprop_step
from .sgd import sgd_step
from .sparse_adam import sparse_adam_init, sparse_adam_step

__all__ = [
    "adadelta_init",
    "adadelta_step",
    "adafactor_init",
    "adafactor_step",
    "adagrad_init",
    "adagrad_step",
    "adam_init",
    "adam_step",
    "adamax_init",
    "adamax_step",
    "adamw_step",
    "asgd_init",
    "asgd_step",
    "muon_init",
    "muon_step",
    "nadam_init",
    "nadam_step",
    "radam_init",
    "radam_step",
    "rmsprop_init",
    "rmsprop_step",
    "rprop_init",
    "rprop_step",
    "sgd_step",
    "sparse_adam_init",
    "sparse_adam_step",
]
