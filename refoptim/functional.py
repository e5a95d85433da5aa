"""The functional form: each optimizer's rule over one parameter, for any array library.

Each function takes ``(param, grad, state, **hyperparameters)``, returns the new parameter
and stores the new state values in ``state``. On NumPy and CuPy the arrays are updated in
place and returned; on immutable arrays (JAX) new arrays are returned. Keep what you get
back, and the same code serves both::

    state = adam_init(w)
    for _ in range(100):
        w = adam_step(w, grad_of(w), state, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                      weight_decay=0.0, amsgrad=False, maximize=False,
                      decoupled_weight_decay=False)
"""

from .adam import adam_init, adam_step
from .adamw import adamw_step
from .sgd import sgd_step

__all__ = ["adam_init", "adam_step", "adamw_step", "sgd_step"]
