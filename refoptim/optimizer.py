"""``Optimizer``: torch 2.13's ``torch.optim.Optimizer`` over refoptim ``Parameter`` s.

Parameter groups, per-parameter state, ``state_dict``/``load_state_dict`` in torch's layout,
``zero_grad``, and every hook torch offers, with torch's checks and messages. Subclasses
declare defaults and validation and, for the elementwise optimizers, two methods:
``_init_state(p, group)`` (the lazy state) and ``_update(param, grad, state, group)``
(call the rule, return the new parameter). The base ``step`` validates every parameter and
gradient of every group before it changes anything (validate, then mutate).
"""

from __future__ import annotations

import functools
import inspect
import numbers
import warnings
import weakref
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable
from copy import deepcopy
from itertools import chain
from typing import Any

from ._backend import (
    array_namespace,
    assign,
    device_of,
    is_array,
    is_complex,
    is_floating,
    namespace_name,
    typename,
)
from ._backend import quiet
from ._fastpath import ELEMENTWISE, PLAIN, PlainStrategy
from ._schedule_scalars import LazyFloat
from .parameter import Parameter
from .sparse import SparseGrad

__all__ = [
    "Optimizer",
    "RemovableHandle",
    "register_optimizer_step_post_hook",
    "register_optimizer_step_pre_hook",
    "required",
]


class _RequiredParameter:
    """Singleton class representing a required parameter for an Optimizer."""

    def __repr__(self) -> str:
        return "<required parameter>"


required = _RequiredParameter()
"""Sentinel for a default with no value: a group must then give it (torch's ``required``)."""


class RemovableHandle:
    """A handle that removes the hook it was returned for (torch's ``RemovableHandle``).

    Use ``handle.remove()``, or the handle as a context manager.
    """

    _next_id = 0

    def __init__(self, hooks_dict: dict) -> None:
        self.hooks_dict_ref = weakref.ref(hooks_dict)
        self.id = RemovableHandle._next_id
        RemovableHandle._next_id += 1

    def remove(self) -> None:
        """Remove the hook; removing twice is harmless."""
        hooks_dict = self.hooks_dict_ref()
        if hooks_dict is not None and self.id in hooks_dict:
            del hooks_dict[self.id]

    def __enter__(self) -> "RemovableHandle":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


_global_optimizer_pre_hooks: "OrderedDict[int, Callable]" = OrderedDict()
_global_optimizer_post_hooks: "OrderedDict[int, Callable]" = OrderedDict()


def register_optimizer_step_pre_hook(hook: Callable) -> RemovableHandle:
    """Register a pre hook common to all optimizers: ``hook(optimizer, args, kwargs)``.

    It may return ``None`` or a tuple ``(new_args, new_kwargs)``. Global pre hooks run
    before each optimizer's own pre hooks.
    """
    handle = RemovableHandle(_global_optimizer_pre_hooks)
    _global_optimizer_pre_hooks[handle.id] = hook
    return handle


def register_optimizer_step_post_hook(hook: Callable) -> RemovableHandle:
    """Register a post hook common to all optimizers: ``hook(optimizer, args, kwargs)``.

    Global post hooks run after each optimizer's own post hooks.
    """
    handle = RemovableHandle(_global_optimizer_post_hooks)
    _global_optimizer_post_hooks[handle.id] = hook
    return handle


def _hooked_step(func: Callable) -> Callable:
    """Wrap a ``step`` with torch's hook protocol (its ``profile_hook_step``)."""

    @functools.wraps(func)
    def step(*args: Any, **kwargs: Any) -> Any:
        self = args[0]
        for pre_hook in chain(_global_optimizer_pre_hooks.values(), self._optimizer_step_pre_hooks.values()):
            result = pre_hook(self, args, kwargs)
            if result is not None:
                if isinstance(result, tuple) and len(result) == 2:
                    args, kwargs = result
                else:
                    raise RuntimeError(
                        f"{func} must return None or a tuple of (new_args, new_kwargs), but got {result}."
                    )
        out = func(*args, **kwargs)
        for post_hook in chain(self._optimizer_step_post_hooks.values(), _global_optimizer_post_hooks.values()):
            post_hook(self, args, kwargs)
        return out

    step.hooked = True  # type: ignore[attr-defined]
    return step


class _Label:
    """How an error names a parameter (:meth:`Optimizer._label`), built only when an error
    message is: a step checks every parameter, and formatting each name would cost more
    than the checks themselves."""

    __slots__ = ("args",)

    def __init__(self, *args: Any) -> None:
        self.args = args

    def __str__(self) -> str:
        optimizer, *rest = self.args
        return optimizer._label(*rest)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


class Optimizer:
    r"""Base class for all optimizers, with torch 2.13's behaviour.

    Args:
        params (iterable): an iterable of :class:`Parameter` s, of ``(name, Parameter)``
            pairs, or of dicts defining parameter groups (``{"params": [...], "lr": ...}``;
            options a group leaves out are taken from ``defaults``).
        defaults (dict): default values of the optimization options.

    Parameters must come in an ordered collection (not a set), every parameter in at most
    one group, and all parameters of one optimizer share one array namespace and one
    device, with a real or complex floating dtype.

    ``state`` maps each :class:`Parameter` to its state dict; ``param_groups`` is the list
    of group dicts, exactly as in torch.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        step = cls.__dict__.get("step")
        if step is not None and not getattr(step, "hooked", False):
            cls.step = _hooked_step(step)  # type: ignore[method-assign]

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        self.defaults = defaults
        self._optimizer_step_pre_hooks: OrderedDict[int, Callable] = OrderedDict()
        self._optimizer_step_post_hooks: OrderedDict[int, Callable] = OrderedDict()
        self._optimizer_state_dict_pre_hooks: OrderedDict[int, Callable] = OrderedDict()
        self._optimizer_state_dict_post_hooks: OrderedDict[int, Callable] = OrderedDict()
        self._optimizer_load_state_dict_pre_hooks: OrderedDict[int, Callable] = OrderedDict()
        self._optimizer_load_state_dict_post_hooks: OrderedDict[int, Callable] = OrderedDict()

        if isinstance(params, Parameter) or is_array(params):
            raise TypeError(
                "params argument given to the optimizer should be "
                "an iterable of Parameters or dicts, but got " + typename(params)
            )

        self.state: defaultdict[Parameter, Any] = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []

        param_groups = list(params)
        if len(param_groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]

        for param_group in param_groups:
            self.add_param_group(param_group)

    @staticmethod
    def _check_fused(fused: bool | None, foreach: bool | None, differentiable: bool) -> None:
        """torch's checks on ``fused=True``, which refoptim accepts but does not emulate."""
        if fused:
            if differentiable:
                raise RuntimeError("`fused` does not support `differentiable`")
            if foreach:
                raise RuntimeError("`fused` and `foreach` cannot be `True` together.")

    # ------------------------------------------------------------------ pickling, repr
    def __getstate__(self) -> dict[str, Any]:
        return {"defaults": self.defaults, "state": self.state, "param_groups": self.param_groups}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        for name in (
            "_optimizer_step_pre_hooks",
            "_optimizer_step_post_hooks",
            "_optimizer_state_dict_pre_hooks",
            "_optimizer_state_dict_post_hooks",
            "_optimizer_load_state_dict_pre_hooks",
            "_optimizer_load_state_dict_post_hooks",
        ):
            if name not in self.__dict__:
                setattr(self, name, OrderedDict())
        self.defaults.setdefault("differentiable", False)
        self._setstate_group_defaults()
        if self._setstate_scalars:
            self._scalar_state_as_arrays(*self._setstate_scalars)

    _setstate_options: tuple[str, ...] = ()
    """The group options torch's ``__setstate__`` of this optimizer fills in for a group
    that lacks them (a state dict saved before the option existed), in torch's order:
    ``("amsgrad", "maximize", "foreach", ...)`` for Adam, none for SparseAdam, LBFGS and
    Muon (torch's base ``__setstate__``), only ``foreach`` for Adafactor."""

    _setstate_values: dict[str, Any] = {}
    """Values of :attr:`_setstate_options` where torch's ``__setstate__`` does not use the
    constructor's default (SGD's ``fused``: ``False``, where the signature says ``None``)."""

    _setstate_scalars: tuple[str, ...] = ()
    """The state entries torch's ``__setstate__`` turns from Python numbers into 0-d
    float32 tensors (:meth:`_scalar_state_as_arrays`): ``("step",)`` for most."""

    def _setstate_group_defaults(self) -> None:
        """torch's ``group.setdefault(option, default)`` for each of
        :attr:`_setstate_options`. The default is the one in the signature of the class
        that names the options, as in torch, where that class's ``__setstate__`` sets
        them: AdamW's groups get Adam's ``decoupled_weight_decay=False`` (which AdamW's
        own ``__setstate__`` then overrides with ``True``)."""
        if not self._setstate_options:
            return
        owner = next(c for c in type(self).__mro__ if "_setstate_options" in c.__dict__)
        values = {**owner._option_templates(), **self._setstate_values}
        for group in self.param_groups:
            for name in self._setstate_options:
                group.setdefault(name, values[name])

    def __repr__(self) -> str:
        format_string = self.__class__.__name__ + " ("
        for i, group in enumerate(self.param_groups):
            format_string += "\n"
            format_string += f"Parameter Group {i}\n"
            for key in sorted(group.keys()):
                if key != "params":
                    format_string += f"    {key}: {group[key]}\n"
        format_string += ")"
        return format_string

    # ------------------------------------------------------------------ parameter groups
    def _label(self, group_index: int, index: int, p: Parameter, group: dict | None = None) -> str:
        """How an error names a parameter: its name if it has one, else its position."""
        group = group if group is not None else self.param_groups[group_index]
        names = group.get("param_names")
        name = names[index] if names is not None and index < len(names) else p.name
        where = f"param_groups[{group_index}]['params'][{index}]"
        return f"'{name}' ({where})" if name is not None else where

    def _reference(self) -> tuple[Any, Any] | None:
        """The namespace and device of the optimizer's first parameter."""
        for group in self.param_groups:
            for p in group["params"]:
                return array_namespace(p.data), device_of(p.data)
        return None

    def _check_param(self, p: Parameter, label: str, reference: tuple[Any, Any] | None) -> None:
        """A parameter's data: floating dtype, the optimizer's namespace and device."""
        xp = array_namespace(p.data)
        if not is_floating(xp, p.data.dtype):
            raise TypeError(
                f"parameter {label} has dtype {p.data.dtype}; optimizers only update real or "
                "complex floating-point parameters"
            )
        if reference is not None:
            ref_xp, ref_device = reference
            if xp is not ref_xp:
                raise TypeError(
                    f"parameter {label} is an array of {namespace_name(xp)} but the optimizer's "
                    f"parameters are arrays of {namespace_name(ref_xp)}; all parameters of one "
                    "optimizer must share one array namespace"
                )
            if device_of(p.data) != ref_device:
                raise RuntimeError(
                    f"parameter {label} is on device {device_of(p.data)} but the optimizer's "
                    f"parameters are on device {ref_device}; all parameters of one optimizer "
                    "must share one device"
                )

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group to the optimizer's ``param_groups`` (torch's checks and messages).

        Args:
            param_group (dict): specifies the Parameters to optimize (``"params"``) and
                group-specific options; options it leaves out take the defaults.
        """
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group)}")

        params = param_group["params"]
        if isinstance(params, Parameter):
            param_group["params"] = [params]
        elif isinstance(params, set):
            raise TypeError(
                "optimizer parameters need to be organized in ordered collections, but "
                "the ordering of tensors in sets will change between runs. Please use a list instead."
            )
        else:
            param_group["params"] = list(params)

        extracted_params = []
        extracted_names = []
        for param in param_group["params"]:
            if isinstance(param, tuple):
                extracted_names.append(param[0])
                extracted_params.append(param[1])
            else:
                extracted_params.append(param)
        param_group["params"] = extracted_params
        if len(extracted_names) != 0:
            if len(extracted_names) == len(extracted_params):
                param_group["param_names"] = extracted_names
            else:
                raise ValueError(
                    "all optimizer params should be with/without names. Some param names are missing"
                )

        reference = self._reference()
        for index, param in enumerate(param_group["params"]):
            if not isinstance(param, Parameter):
                raise TypeError(
                    "optimizer can only optimize Parameters, but one of the params is " + typename(param)
                )
            label = self._label(len(self.param_groups), index, param, param_group)
            self._check_param(param, label, reference)
            if reference is None:
                reference = (array_namespace(param.data), device_of(param.data))

        for name, default in self.defaults.items():
            if default is required and name not in param_group:
                raise ValueError(
                    f"parameter group didn't specify a value of required optimization parameter {name}"
                )
            param_group.setdefault(name, default)

        params = param_group["params"]
        if len(params) != len({id(p) for p in params}):
            warnings.warn(
                "optimizer contains a parameter group with duplicate parameters; "
                "in future, this will cause an error; "
                "see github.com/pytorch/pytorch/issues/40967 for more information",
                stacklevel=3,
            )

        param_set: set[int] = set()
        for group in self.param_groups:
            param_set.update(id(p) for p in group["params"])
            if ("param_names" in param_group) != ("param_names" in group):
                current_group_txt = "with names" if "param_names" in param_group else "without names"
                raise ValueError(
                    "all optimizer param groups should be with/without names. "
                    f"cannot add param group {current_group_txt} to the optimizer"
                )

        if not param_set.isdisjoint(id(p) for p in param_group["params"]):
            raise ValueError("some parameters appear in more than one parameter group")

        self.param_groups.append(param_group)

    # ------------------------------------------------------------------ gradients
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of all optimized Parameters.

        Args:
            set_to_none (bool): set each ``.grad`` to ``None`` (the default) instead of
                filling it with zeros. A step skips parameters whose gradient is ``None``
                but steps with a zero gradient, which are different things (weight decay
                and momentum still act).
        """
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    if set_to_none:
                        p.grad = None
                    else:
                        if isinstance(p.grad, SparseGrad):
                            # torch's sparse grad.zero_(): no entries left
                            p.grad = p.grad.zero_()
                        else:
                            # torch's grad.zero_(): in place where writeable
                            p.grad = assign(p.grad, array_namespace(p.grad).zeros_like(p.grad))

    # ------------------------------------------------------------------ option checks
    _integer_options: tuple[str, ...] = ()
    """Options that must be Python integers (Muon's ``ns_steps``, LBFGS's ``max_iter``)."""

    def _options_unused(self, group: dict[str, Any]) -> tuple[str, ...]:
        """Options torch does not read at this step of ``group`` (Adagrad's
        ``initial_accumulator_value``, read only by the constructor; Rprop's ``lr`` once
        every parameter has its state; RAdam's ``eps`` before the rectified branch): a
        value of the wrong type there raises nothing in torch, so not here either."""
        return ()

    _length_messages: dict[str, str] = {}
    """torch's own ``ValueError`` message for a tuple option of the wrong length, where
    torch checks it itself (Muon's ``ns_coefficients``)."""

    _unpacked_options: tuple[str, ...] = ()
    """Tuple options torch unpacks at the top of every group's step, whether or not a
    parameter of the group has a gradient (Adam's ``beta1, beta2 = group["betas"]``): their
    length is checked for every group; every other check only for a group with a gradient
    to step (torch's rule functions read nothing for an empty list)."""

    @classmethod
    def _option_templates(cls) -> dict[str, Any]:
        """The constructor's keyword defaults (the signature's, not the instance's
        ``defaults``, which hold whatever the constructor accepted): each option's value
        must have its default's type (:func:`_check_option`)."""
        templates = _TEMPLATES.get(cls)
        if templates is None:
            sig = inspect.signature(cls.__init__)
            templates = {
                k: p.default for k, p in sig.parameters.items() if p.default is not inspect.Parameter.empty
            }
            _TEMPLATES[cls] = templates
        return templates

    def _check_group_options(self, groups: list[dict[str, Any]] | None = None) -> None:
        """Every option of every group in ``groups`` (default: ``param_groups``), all
        checks (:meth:`_check_options`); ``load_state_dict`` checks the saved groups so."""
        for gi, group in enumerate(self.param_groups if groups is None else groups):
            self._check_options(gi, group, lengths_only=False, unused=())

    def _check_options(self, gi: int, group: dict[str, Any], *, lengths_only: bool, unused: tuple[str, ...]) -> None:
        """One group's options against the types their constructor defaults have, before
        anything changes (validate, then mutate).

        An option whose default is a real number must be a real number (or an array, or a
        per-step value under ``jax.jit``); one whose default is a tuple must unpack into as
        many real numbers (``None`` where the default has ``None``). ``lengths_only``: only
        the lengths of :attr:`_unpacked_options`. Options in ``unused`` (not read by torch
        at this step: :meth:`_options_unused`) are skipped. torch raises the same exception
        types, but only when the step reaches the option, after earlier groups and
        parameters have moved; refoptim raises before, naming the group and option. Values
        are not range-checked here: torch accepts, say, a negative ``lr`` set after
        construction, and so does refoptim.
        """
        templates = self._option_templates()
        keys = self._unpacked_options if lengths_only else self.defaults
        for key in keys:
            default = templates.get(key)
            value = group.get(key, default)
            if value is default or type(value) is float or key in unused:
                continue
            try:
                _check_option(
                    f"param_groups[{gi}]['{key}']", value, default, key in self._integer_options, lengths_only
                )
            except ValueError:
                if key in self._length_messages:
                    raise ValueError(self._length_messages[key]) from None
                raise

    # ------------------------------------------------------------------ stepping
    def _params_with_grad(self) -> list[tuple[dict[str, Any], list[tuple[Parameter, Any]]]]:
        """Every group's (parameter, gradient) pairs, each checked before anything changes.

        Checks each parameter that has a gradient: a floating dtype, the optimizer's
        namespace and device; and its gradient: an array of the same namespace, device,
        dtype and shape, or a :class:`SparseGrad` whose values are (only for an optimizer
        with ``_supports_sparse_grad``; any other raises torch's ``_sparse_grad_error``).
        The first failure raises, naming the parameter. Group by group, in torch's order:
        the lengths of the options torch unpacks first (:attr:`_unpacked_options`), then the
        parameters, then, where a parameter has a gradient, the options' types
        (:meth:`_check_options`) and the state the options ask for
        (:meth:`_required_state`).
        """
        reference = self._reference()
        plan = []
        # The common case, checked in a few comparisons: a dense gradient of the same array
        # type (so namespace), dtype, shape and device as its parameter, which has the
        # reference's type and device and a floating dtype. Anything else takes the full
        # checks below, which name what is wrong.
        if reference is not None:
            ref_xp, ref_device = reference
            ref_kind = next(type(p.data) for g in self.param_groups for p in g["params"])
        dense_hook = type(self)._check_dense_grad is not Optimizer._check_dense_grad
        complex_refusal = self._complex_refusal
        for gi, group in enumerate(self.param_groups):
            if self._unpacked_options:
                self._check_options(gi, group, lengths_only=True, unused=())
            pairs = []
            for i, p in enumerate(group["params"]):
                grad = p.grad
                if grad is None:
                    continue
                data = p.data
                if (
                    type(grad) is ref_kind
                    and type(data) is ref_kind
                    and grad.dtype == data.dtype
                    and grad.shape == data.shape
                    and is_floating(ref_xp, data.dtype)
                    and device_of(data) == ref_device
                    and device_of(grad) == ref_device
                ):
                    if complex_refusal and is_complex(ref_xp, data):
                        raise RuntimeError(complex_refusal)
                    if dense_hook:  # the one check below these conditions leave open
                        self._check_dense_grad(p, grad, group)
                    pairs.append((p, grad))
                    continue
                label = _Label(self, gi, i, p, group)
                self._check_param(p, label, reference)
                # torch's _init_group refuses a complex parameter first, before its sparse
                # gradient and before the update function reads any option.
                if complex_refusal and is_complex(array_namespace(data), data):
                    raise RuntimeError(complex_refusal)
                if isinstance(grad, SparseGrad):
                    if not type(self)._supports_sparse_grad:
                        error, message = self._sparse_grad_message()
                        raise error(message)
                    self._check_grad_array(grad.values, grad.dtype, grad.shape, p, label)
                    self._check_sparse_grad(p, grad, group)
                    pairs.append((p, grad))
                    continue
                self._check_dense_grad(p, grad, group)
                if not is_array(grad):
                    raise TypeError(f"gradient of parameter {label} is a {typename(grad)}, not an array")
                self._check_grad_array(grad, grad.dtype, grad.shape, p, label)
                pairs.append((p, grad))
            if pairs:
                self._check_options(gi, group, lengths_only=False, unused=self._options_unused(group))
                required = self._required_state(group)
                if required:
                    for p, _ in pairs:
                        state = self.state.get(p)
                        if state:
                            for key in required:
                                if key not in state:
                                    raise KeyError(key)  # torch's _init_group: state[key]
                self._check_group(group, pairs)
            plan.append((group, pairs))
        return plan

    def _check_group(self, group: dict[str, Any], pairs: list[tuple[Parameter, Any]]) -> None:
        """An optimizer's own checks of one group with gradients, run after the base's
        checks of that group and before the next group is read: torch raises them in its
        update of the group, so an error of an earlier group comes first (Adafactor's
        division by zero, Muon's Newton–Schulz checks)."""

    def _required_state(self, group: dict[str, Any]) -> tuple[str, ...]:
        """State entries a parameter that already has state must hold for ``group``'s
        options, in the order torch reads them (Adam's ``max_exp_avg_sq`` once
        ``amsgrad`` is switched on): torch raises ``KeyError`` for a missing one, and so
        does refoptim, before anything changes."""
        return ()

    @staticmethod
    def _check_grad_array(grad: Any, dtype: Any, shape: tuple, p: Parameter, label: str) -> None:
        """A gradient (a sparse gradient's values) against its parameter: namespace,
        device, dtype (``dtype``) and shape (``shape``, the dense shape)."""
        xp = array_namespace(p.data)
        if array_namespace(grad) is not xp:
            raise TypeError(
                f"gradient of parameter {label} is an array of {namespace_name(array_namespace(grad))} "
                f"but the parameter is an array of {namespace_name(xp)}"
            )
        if device_of(grad) != device_of(p.data):
            raise RuntimeError(
                f"gradient of parameter {label} is on device {device_of(grad)} "
                f"but the parameter is on device {device_of(p.data)}"
            )
        if dtype != p.data.dtype:
            raise RuntimeError(
                f"gradient of parameter {label} has dtype {dtype} "
                f"but the parameter has dtype {p.data.dtype}"
            )
        if tuple(shape) != tuple(p.data.shape):
            raise RuntimeError(
                f"gradient of parameter {label} has shape {tuple(shape)} "
                f"but the parameter has shape {tuple(p.data.shape)}"
            )

    # ------------------------------------------------------------------ sparse gradients
    _elementwise: bool = False
    """True for optimizers whose rule updates each element from that element alone (plus
    scalars); the base may then run the rule piece by piece, with the same bits
    (:mod:`refoptim._fastpath`)."""

    @property
    def _strategy(self) -> PlainStrategy:
        """How :meth:`step` runs a group (:mod:`refoptim._fastpath`): the fast paths
        (:data:`~refoptim._fastpath.ELEMENTWISE`) for an elementwise rule, else each
        parameter by the plain rule (:data:`~refoptim._fastpath.PLAIN`)."""
        return ELEMENTWISE if self._elementwise else PLAIN

    _supports_sparse_grad: bool = False
    """Whether ``step`` accepts a :class:`refoptim.SparseGrad` (torch's SGD, Adagrad and
    SparseAdam do)."""

    _sparse_grad_error: tuple[type[Exception], str] | None = None
    """torch's error for a sparse gradient given to an optimizer that refuses it, as
    ``(type, message)``; ``None`` means ``RuntimeError("<class name> does not support sparse
    gradients")``, the message most of torch's optimizers use."""

    _complex_refusal: str | None = None
    """torch's message for a complex parameter, for an optimizer that refuses them (Muon,
    Adafactor); the base refuses it as torch's ``_init_group`` does: parameter by parameter,
    before its sparse gradient and before any option of the group is checked."""

    def _sparse_grad_message(self) -> tuple[type[Exception], str]:
        if self._sparse_grad_error is not None:
            return self._sparse_grad_error
        return RuntimeError, f"{type(self).__name__} does not support sparse gradients"

    def _check_sparse_grad(self, p: Parameter, grad: SparseGrad, group: dict[str, Any]) -> None:
        """Checks an optimizer that accepts sparse gradients makes on one before the step
        changes anything (torch's errors for options a sparse gradient cannot meet)."""

    def _check_dense_grad(self, p: Parameter, grad: Any, group: dict[str, Any]) -> None:
        """Checks on a dense gradient before the step (SparseAdam refuses them)."""

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform a single optimization step and return the closure's loss (or ``None``).

        Args:
            closure (Callable, optional): re-evaluates the model, sets the gradients and
                returns the loss. It is called first, before any parameter changes.

        Every parameter and gradient is checked first; a bad one raises an error that
        names it and leaves every parameter and state entry as it was. Parameters whose
        ``.grad`` is ``None`` are skipped: no state is created and no step is counted.
        """
        loss = None
        if closure is not None:
            loss = closure()
        plan = self._params_with_grad()
        with quiet():  # IEEE arithmetic on inf and NaN, as torch's, without NumPy's warnings
            for group, pairs in plan:
                self._step_group(group, pairs)
        return loss

    def _step_group(self, group: dict[str, Any], pairs: list[tuple[Parameter, Any]]) -> None:
        """Update one group's parameters: by the plain rule or, with the same bits, by the
        fast paths, as :attr:`_strategy` decides (:mod:`refoptim._fastpath`)."""
        self._strategy.step_group(self, group, pairs)

    step = _hooked_step(step)

    def _update_plain(self, p: Parameter, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        """One parameter by the plain rule (:meth:`refoptim._fastpath.PlainStrategy.update`):
        read-only NumPy arrays replaced by writeable copies first; the state is stored when
        it is not empty."""
        PlainStrategy.update(self, p, grad, state, group)

    def _scalar_state_as_arrays(self, *keys: str) -> None:
        """torch's ``__setstate__`` conversion: state scalars loaded as Python numbers
        (``step``, and ASGD's ``eta``/``mu``, NAdam's ``mu_product``) become 0-d float32
        arrays of the parameter's namespace and device."""
        for group in self.param_groups:
            for p in group["params"]:
                p_state = self.state.get(p)
                if not p_state:
                    continue
                xp = array_namespace(p.data)
                for key in keys:
                    if not is_array(p_state[key]):
                        p_state[key] = xp.asarray(float(p_state[key]), dtype=xp.float32, device=device_of(p.data))

    def _init_state(self, p: Parameter, group: dict[str, Any]) -> dict[str, Any]:
        """The state a parameter starts with at its first step (empty by default: a
        parameter whose state stays empty gets no entry in ``state``, as in torch's SGD
        without momentum)."""
        return {}

    def _update(self, param: Any, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> Any:
        """Apply the optimizer's rule to one parameter; return the new parameter array."""
        raise NotImplementedError

    # ------------------------------------------------------------------ hooks
    def register_step_pre_hook(self, hook: Callable) -> RemovableHandle:
        """Register ``hook(optimizer, args, kwargs) -> None or (new_args, new_kwargs)``,
        called before each ``step``, after the global pre hooks."""
        handle = RemovableHandle(self._optimizer_step_pre_hooks)
        self._optimizer_step_pre_hooks[handle.id] = hook
        return handle

    def register_step_post_hook(self, hook: Callable) -> RemovableHandle:
        """Register ``hook(optimizer, args, kwargs) -> None``, called after each ``step``,
        before the global post hooks."""
        handle = RemovableHandle(self._optimizer_step_post_hooks)
        self._optimizer_step_post_hooks[handle.id] = hook
        return handle

    @staticmethod
    def _register(hooks: "OrderedDict[int, Callable]", hook: Callable, prepend: bool) -> RemovableHandle:
        handle = RemovableHandle(hooks)
        hooks[handle.id] = hook
        if prepend:
            hooks.move_to_end(handle.id, last=False)
        return handle

    def register_state_dict_pre_hook(self, hook: Callable, prepend: bool = False) -> RemovableHandle:
        """Register ``hook(optimizer) -> None``, called before ``state_dict`` builds its dict.

        With ``prepend=True`` it runs before the hooks already registered."""
        return self._register(self._optimizer_state_dict_pre_hooks, hook, prepend)

    def register_state_dict_post_hook(self, hook: Callable, prepend: bool = False) -> RemovableHandle:
        """Register ``hook(optimizer, state_dict) -> state_dict or None``, called on the dict
        ``state_dict`` returns; a returned dict replaces it."""
        return self._register(self._optimizer_state_dict_post_hooks, hook, prepend)

    def register_load_state_dict_pre_hook(self, hook: Callable, prepend: bool = False) -> RemovableHandle:
        """Register ``hook(optimizer, state_dict) -> state_dict or None``, called on a
        shallow copy of the dict given to ``load_state_dict`` before it is read."""
        return self._register(self._optimizer_load_state_dict_pre_hooks, hook, prepend)

    def register_load_state_dict_post_hook(self, hook: Callable, prepend: bool = False) -> RemovableHandle:
        """Register ``hook(optimizer) -> None``, called after ``load_state_dict`` has loaded."""
        return self._register(self._optimizer_load_state_dict_post_hooks, hook, prepend)

    # ------------------------------------------------------------------ state dicts
    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state as a dict, in torch's layout.

        * ``state``: per-parameter state keyed by an int id; ids run over the parameters
          of all groups in order. As in torch, the entries are the optimizer's own state
          dicts and arrays, not copies: copy them (``copy.deepcopy``) to keep a snapshot
          while the optimizer goes on.
        * ``param_groups``: each group's options, with ``params`` as the list of ids and
          ``param_names`` where the parameters were given names.
        """
        for pre_hook in self._optimizer_state_dict_pre_hooks.values():
            pre_hook(self)

        param_mappings: dict[int, int] = {}
        start_index = 0

        def pack_group(group: dict[str, Any]) -> dict[str, Any]:
            nonlocal start_index
            packed = {k: v for k, v in group.items() if k != "params"}
            param_mappings.update(
                {id(p): i for i, p in enumerate(group["params"], start_index) if id(p) not in param_mappings}
            )
            packed["params"] = [param_mappings[id(p)] for p in group["params"]]
            start_index += len(packed["params"])
            return packed

        param_groups = [pack_group(g) for g in self.param_groups]
        packed_state = {
            (param_mappings[id(k)] if isinstance(k, Parameter) else k): v for k, v in self.state.items()
        }
        state_dict = {"state": packed_state, "param_groups": param_groups}

        for post_hook in self._optimizer_state_dict_post_hooks.values():
            hook_result = post_hook(self, state_dict)
            if hook_result is not None:
                state_dict = hook_result
        return state_dict

    def _check_loaded_state(self, p: Parameter, state: dict[Any, Any], group: dict[str, Any], label: Any) -> None:
        """A parameter's loaded state (already cast) against the state this optimizer
        starts it with (:meth:`_init_state` under the loaded group's options): every entry
        of that is present, each array has its shape (and, when not 0-d, is complex where
        that is: torch keeps a loaded complex parameter's state dtype as it is), and
        an entry the rule creates later (SGD's momentum buffer) has the parameter's shape.
        An empty state (a parameter not stepped yet) is fine. torch checks none of this
        and fails at the next step instead, after some state has moved; refoptim refuses
        the whole dict first, naming the parameter and the entry. Missing entries raise
        ``KeyError`` (torch's type when it meets one), everything else ``ValueError``.
        """
        if not state:
            return
        expected = self._init_state(p, {**self.defaults, **group})
        name = type(self).__name__
        for key in expected:
            if key not in state:
                raise KeyError(
                    f"state of parameter {label} has no entry '{key}' "
                    f"({name} keeps {', '.join(repr(k) for k in expected)})"
                )
        for key, value in state.items():
            want = expected.get(key)
            if isinstance(value, SparseGrad) or is_array(value):
                shape = tuple(value.shape)
                if is_array(want):
                    want_shape = tuple(want.shape)
                elif want is None and len(shape) > 0:
                    want_shape = tuple(p.data.shape)
                else:
                    want_shape = shape
                if shape != want_shape:
                    raise ValueError(
                        f"state entry '{key}' of parameter {label} has shape {shape}, "
                        f"but {name} keeps one of shape {want_shape} for this parameter"
                    )
                if is_array(want) and len(shape) > 0 and is_array(value):
                    xp = array_namespace(value)
                    if is_complex(xp, want) != is_complex(xp, value):
                        kind = "complex" if is_complex(xp, want) else "real"
                        raise ValueError(
                            f"state entry '{key}' of parameter {label} has dtype {value.dtype}, "
                            f"but {name} keeps a {kind} one ({want.dtype}) for this parameter"
                        )
            elif is_array(want) and len(tuple(want.shape)) > 0:
                raise ValueError(
                    f"state entry '{key}' of parameter {label} is a {typename(value)}, "
                    f"but {name} keeps an array of shape {tuple(want.shape)} for this parameter"
                )

    @staticmethod
    def _process_value_according_to_param_policy(
        param: Parameter, value: Any, param_id: Any, param_groups: list[dict[str, Any]], key: Any = None
    ) -> Any:
        """torch's casting rule for a loaded state array.

        ``step`` keeps its dtype; any other array takes the parameter's dtype when the
        parameter is real floating (complex parameters keep the array's dtype), and always
        the parameter's namespace and device. The array is copied.
        """
        xp = array_namespace(param.data)
        if key == "step":
            dtype = None
        elif xp.isdtype(param.data.dtype, "real floating"):
            dtype = param.data.dtype
        else:
            dtype = None
        return _to(xp, value, dtype, device_of(param.data))

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load the optimizer state from a dict made by :meth:`state_dict` (this optimizer's,
        another refoptim optimizer's, or torch's converted by ``refoptim.testing``).

        Raises ``ValueError`` when the number of groups or of parameters per group differs.
        State arrays are cast as torch casts them (see
        ``_process_value_according_to_param_policy``) and copied; options of each
        group are taken from the dict; ``param_names`` in the dict replace the current ones.
        """
        state_dict = state_dict.copy()
        for pre_hook in self._optimizer_load_state_dict_pre_hooks.values():
            hook_result = pre_hook(self, state_dict)
            if hook_result is not None:
                state_dict = hook_result

        groups = self.param_groups
        saved_groups = deepcopy(state_dict["param_groups"])

        if len(groups) != len(saved_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        param_lens = (len(g["params"]) for g in groups)
        saved_lens = (len(g["params"]) for g in saved_groups)
        if any(p_len != s_len for p_len, s_len in zip(param_lens, saved_lens)):
            raise ValueError(
                "loaded state dict contains a parameter group that doesn't match the size of optimizer's group"
            )

        id_map = dict(
            zip(
                chain.from_iterable(g["params"] for g in saved_groups),
                chain.from_iterable(g["params"] for g in groups),
            )
        )

        def _cast(param: Parameter, value: Any, param_id: Any = None, key: Any = None) -> Any:
            if isinstance(value, SparseGrad):  # SGD's sparse momentum buffer: values cast, flag kept
                xp = array_namespace(param.data)
                return SparseGrad(
                    _to(xp, value.indices, None, device_of(param.data)),
                    Optimizer._process_value_according_to_param_policy(
                        param, value.values, param_id, state_dict["param_groups"], key
                    ),
                    value.shape,
                    is_coalesced=value.is_coalesced(),
                )
            if is_array(value):
                return Optimizer._process_value_according_to_param_policy(
                    param, value, param_id, state_dict["param_groups"], key
                )
            if isinstance(value, dict):
                return {k: _cast(param, v, param_id=param_id, key=k) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return type(value)(_cast(param, v, param_id=param_id) for v in value)
            return value

        # Validate everything before anything changes: the groups' options, then each
        # parameter's state (cast to the parameter as torch casts it) against the layout
        # the optimizer keeps for it.
        self._check_group_options(saved_groups)
        where = {
            id(p): (gi, i, saved)
            for gi, (group, saved) in enumerate(zip(groups, saved_groups))
            for i, p in enumerate(group["params"])
        }
        state: defaultdict[Any, dict[Any, Any]] = defaultdict(dict)
        for k, v in state_dict["state"].items():
            if k in id_map:
                param = id_map[k]
                state[param] = _cast(param, v, param_id=k)
                gi, i, saved = where[id(param)]
                label = _Label(self, gi, i, param, {**saved, "params": groups[gi]["params"]})
                if not isinstance(state[param], dict):
                    raise TypeError(f"state of parameter {label} is a {typename(state[param])}, not a dict")
                self._check_loaded_state(param, state[param], saved, label)
            else:
                state[k] = v

        def update_group(group: dict[str, Any], new_group: dict[str, Any]) -> dict[str, Any]:
            new_group["params"] = group["params"]
            if "param_names" in group and "param_names" not in new_group:
                new_group["param_names"] = group["param_names"]
            return new_group

        param_groups = [update_group(g, ng) for g, ng in zip(groups, saved_groups)]
        before = {name: self.__dict__[name] for name in ("state", "param_groups", "defaults")}
        defaults = dict(self.defaults)
        try:
            self.__setstate__({"state": state, "param_groups": param_groups})
        except BaseException:  # a subclass's conversion failed: the optimizer as it was
            self.__dict__.update(before)
            self.defaults.clear()
            self.defaults.update(defaults)
            raise

        for post_hook in self._optimizer_load_state_dict_post_hooks.values():
            post_hook(self)


def _to(xp: Any, value: Any, dtype: Any, device: Any) -> Any:
    """A copy of ``value`` as an array of ``xp`` on ``device``, cast to ``dtype`` if given."""
    if array_namespace(value) is not xp:
        value = xp.asarray(_to_host(value), device=device)
    out = xp.asarray(value, device=device, copy=True)
    if dtype is not None and out.dtype != dtype:
        out = xp.astype(out, dtype)
    return out


def _to_host(value: Any) -> Any:
    """An array of another namespace in a form any namespace's ``asarray`` accepts."""
    import numpy as np

    try:
        return np.asarray(value)
    except TypeError:
        # CuPy refuses implicit host copies; it has .get().
        return value.get()



def _is_real(value: Any) -> bool:
    """Whether an option is a real number as torch reads one: a Python or NumPy real, an
    array or a lazy scalar, not a complex number."""
    if isinstance(value, complex):
        return False
    return isinstance(value, numbers.Real) or is_array(value) or isinstance(value, LazyFloat)


_TEMPLATES: dict[type, dict[str, Any]] = {}


def _check_option(name: str, value: Any, default: Any, integer: bool, lengths_only: bool = False) -> None:
    """``value`` against the type of ``default`` (see :meth:`Optimizer._check_options`);
    ``lengths_only``: only whether a tuple option unpacks into as many values."""
    if isinstance(default, bool) or default is None or isinstance(default, str):
        return
    if isinstance(default, numbers.Real):
        if lengths_only:
            return
        if integer:
            if isinstance(value, numbers.Integral) and not isinstance(value, bool):
                return
            raise TypeError(f"{name} must be an int, not {typename(value)}")
        if not _is_real(value):
            raise TypeError(f"{name} must be a real number, not {typename(value)}")
        return
    if isinstance(default, tuple):
        n = len(default)
        if not isinstance(value, Iterable):
            raise TypeError(f"{name} must be a tuple of {n} numbers; cannot unpack non-iterable {typename(value)} object")
        items = list(value)
        if len(items) != n:
            detail = (
                f"too many values to unpack (expected {n})"
                if len(items) > n
                else f"not enough values to unpack (expected {n}, got {len(items)})"
            )
            raise ValueError(f"{name} must be a tuple of {n} numbers, got {len(items)}: {detail}")
        if lengths_only:
            return
        for i, (item, item_default) in enumerate(zip(items, default)):
            if item is None and item_default is None:
                continue
            if not _is_real(item):
                raise TypeError(f"{name}[{i}] must be a real number, not {typename(item)}")
