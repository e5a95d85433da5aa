r"""The functional form: each optimizer's rule over one parameter, for any array library.

Each ``<name>_step`` takes ``(param, grad, state, **hyperparameters)``, returns the new
parameter and stores the new state values in ``state``; ``<name>_init`` makes the state a
parameter starts with. On NumPy and CuPy the arrays are updated in place and returned; on
immutable arrays (JAX) new arrays are returned. Keep what you get back, and the same code
serves both::

    state = adam_init(w)
    for _ in range(100):
        w = adam_step(w, grad_of(w), state)            # torch.optim.Adam's defaults
        # or with your own: adam_step(w, g, state, lr=1e-2, beta2=0.99, amsgrad=True)

These are the functions the classes call (:class:`refoptim.Adam` calls :func:`adam_step`
once per parameter), so a step here is bit for bit a step of the class. The
hyper-parameters are keyword-only, and each defaults to the class constructor's default
in torch 2.13: ``adam_step``'s are ``torch.optim.Adam``'s, ``adamw_step``'s are
``torch.optim.AdamW``'s (``weight_decay=1e-2``). Where the class takes a pair, the rule
takes its two halves: ``betas`` is ``beta1, beta2``; Rprop's ``etas`` is ``etaminus,
etaplus`` and its ``step_sizes`` is ``step_size_min, step_size_max`` (Rprop's ``lr`` is
the initial step size, given to :func:`rprop_init`); Adafactor's ``eps`` is ``eps1, eps2``.
An ``*_init`` function's arguments default the same way (``adagrad_init``'s
``initial_accumulator_value``, ``asgd_init``'s ``lr``, ...).

L-BFGS works on all parameters at once, not one by one: :func:`lbfgs_step` moves one flat
vector ``x`` with a ``loss_and_grad(x) -> (loss, flat_grad)`` function in place of
torch's closure, and returns ``(x, loss)``::

    state = lbfgs_init(x)
    x, loss = lbfgs_step(x, loss_and_grad, state, line_search_fn="strong_wolfe")
"""

import functools
import importlib

from . import registry
from ._backend import quiet

__all__ = sorted(name for info in registry.OPTIMIZERS for name in info.rules)
"""Each registry entry's ``rules``, ``(init, step)``, defined in its module
(``adam_init``, ``adam_step`` in :mod:`refoptim.adam`)."""


def _quiet(rule):  # type: ignore[no-untyped-def]
    """``rule`` run inside :func:`refoptim._backend.quiet`: IEEE arithmetic on infinities
    and NaN without NumPy's warnings, as the classes' ``step`` runs it."""

    @functools.wraps(rule)
    def quiet_rule(*args, **kwargs):  # type: ignore[no-untyped-def]
        with quiet():
            return rule(*args, **kwargs)

    return quiet_rule


# The functions the classes call, each wrapped to run without NumPy's warnings (the
# classes' step already does). lbfgs_step calls the user's loss_and_grad inside: that
# runs quietly too.
for _info in registry.OPTIMIZERS:
    _module = importlib.import_module(f"refoptim.{_info.module}")
    for _name in _info.rules:
        globals()[_name] = _quiet(getattr(_module, _name))
del _info, _module, _name
