"""optax and Keras 3 (JAX backend) optimizers as candidates of
:func:`refoptim.testing.compare`: the hyper-parameter mapping from torch's
constructor keywords and the state mapping to torch's state names.

Every framework optimizer is wrapped in a :class:`~refoptim.testing.Stateful`:

- ``init(param, **torch_options)`` builds the framework's optimizer from torch's keywords
  (raising :class:`~refoptim.testing.Unsupported` where the framework cannot express
  them) and returns its state for ``param``;
- ``update`` runs one step **under** ``jax.jit``, the way both frameworks run in training
  (optax's ``update`` inside a jitted train step; Keras's JAX trainer jit-compiles the step).
  Eager execution rounds differently: XLA fuses the elementwise chain under ``jit``
  (``test_causes.py::test_jit_and_eager_round_differently``);
- ``read`` / ``write`` give the state's entries by the framework's names, and
  :data:`OPTAX` / :data:`KERAS` map torch's names onto them (``state_map``).

torch's ``maximize=True`` is expressed by negating the gradient before the framework's
update (neither framework has the flag; torch does exactly that first). A tensor ``lr``
(a 0-d float32 array) is passed as its value, a Python float.

JAX runs in float32 only unless x64 is on (``JAX_ENABLE_X64=1``, or the
``jax.enable_x64(True)`` context): a float64 configuration with x64 off is
``Unsupported`` (JAX would silently make the arrays float32).

Nothing here imports torch.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from refoptim.testing import Entry, Stateful, Unsupported, counter, scaled  # noqa: E402

__all__ = ["Case", "KERAS", "MODES", "OPTAX", "TEST_OPTIONS", "check_pinned", "options_for_tests", "run_case", "worst", "x64"]


def x64() -> bool:
    """Whether JAX runs with 64-bit types (``JAX_ENABLE_X64`` or ``jax.enable_x64``)."""
    return bool(jax.config.jax_enable_x64)


def _require_dtype(param: np.ndarray) -> None:
    if param.dtype == np.float64 and not x64():
        raise Unsupported("JAX x64 is off: float64 arrays become float32 (set JAX_ENABLE_X64=1)")
    if np.iscomplexobj(param):
        raise Unsupported("complex parameters are not mapped")


def _lr(options: dict[str, Any]) -> float:
    return float(np.asarray(options["lr"]))


def _key(options: dict[str, Any], param: np.ndarray) -> tuple:
    return (repr(sorted((k, repr(v)) for k, v in options.items())), str(param.dtype), param.shape, x64())


# ------------------------------------------------------------------------------ optax
def _optax_leaves(state: Any, prefix: str = "") -> dict[str, Any]:
    """The array fields of optax's (nested tuple of NamedTuple) state, by field name."""
    out: dict[str, Any] = {}
    if hasattr(state, "_fields"):
        for name in state._fields:
            value = getattr(state, name)
            if hasattr(value, "_fields") or isinstance(value, tuple):
                out.update(_optax_leaves(value))
            else:
                if name in out:
                    raise ValueError(f"optax state has two fields {name!r}")
                out[name] = value
    elif isinstance(state, tuple):
        for s in state:
            for name, value in _optax_leaves(s).items():
                if name in out:
                    raise ValueError(f"optax state has two fields {name!r}")
                out[name] = value
    return out


def _optax_replace(state: Any, entries: dict[str, Any]) -> Any:
    if hasattr(state, "_fields"):
        changes = {}
        for name in state._fields:
            value = getattr(state, name)
            if hasattr(value, "_fields") or isinstance(value, tuple):
                changes[name] = _optax_replace(value, entries)
            elif name in entries:
                changes[name] = jnp.asarray(entries[name], dtype=jnp.asarray(value).dtype)
        return state._replace(**changes)
    if isinstance(state, tuple):
        return tuple(_optax_replace(s, entries) for s in state)
    return state


@dataclass
class _OptaxOpaque:
    tx: Any
    state: Any
    step: Callable[..., Any]
    extra: dict[str, Any] = field(default_factory=dict)


def optax_candidate(
    build: Callable[[dict[str, Any]], Any],
    read_extra: Callable[[dict[str, Any], _OptaxOpaque], dict[str, Any]] | None = None,
    write_extra: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]] | None = None,
) -> Stateful:
    """A :class:`Stateful` around the optax transformation ``build(torch_options)``.

    ``read_extra``/``write_extra`` adjust the entries for state that optax keeps in other
    terms than torch (Rprop's previous update)."""
    import optax

    cache: dict[tuple, tuple[Any, Callable[..., Any]]] = {}

    def compiled(param: np.ndarray, options: dict[str, Any]) -> tuple[Any, Callable[..., Any]]:
        key = _key(options, param)
        if key not in cache:
            tx = build(options)
            maximize = bool(options.get("maximize", False))

            def step(p, g, s):
                if maximize:
                    g = -g
                updates, s = tx.update(g, s, p)
                return optax.apply_updates(p, updates), s, g

            cache[key] = (tx, jax.jit(step))
        return cache[key]

    def init(param: np.ndarray, **options: Any) -> _OptaxOpaque:
        _require_dtype(param)
        tx, step = compiled(param, options)
        return _OptaxOpaque(tx, tx.init(jnp.asarray(param)), step)

    def update(param: np.ndarray, grad: np.ndarray, opaque: _OptaxOpaque, **options: Any):
        new_p, new_s, g = opaque.step(jnp.asarray(param), jnp.asarray(grad), opaque.state)
        return np.array(new_p), _OptaxOpaque(opaque.tx, new_s, opaque.step, {"grad": np.asarray(g)})

    def read(opaque: _OptaxOpaque) -> dict[str, Any]:
        out = {k: np.asarray(v) for k, v in _optax_leaves(opaque.state).items()}
        if read_extra is not None:
            out.update(read_extra(out, opaque))
        return out

    def write(entries: dict[str, Any], opaque: _OptaxOpaque) -> _OptaxOpaque:
        if write_extra is not None:
            entries = write_extra(dict(entries), {k: np.asarray(v) for k, v in _optax_leaves(opaque.state).items()})
        return _OptaxOpaque(opaque.tx, _optax_replace(opaque.state, entries), opaque.step)

    return Stateful(init, update, read, write)


def _decayed(options: dict[str, Any], tx: Any) -> Any:
    """torch's coupled (L2) weight decay, ``g + weight_decay * param``, before ``tx``."""
    import optax

    wd = float(options.get("weight_decay", 0.0))
    return optax.chain(optax.add_decayed_weights(wd), tx) if wd != 0 else tx


def _optax_sgd(o: dict[str, Any]) -> Any:
    import optax

    if o["dampening"] != 0:
        raise Unsupported("optax.trace has no dampening")
    momentum = o["momentum"] if o["momentum"] != 0 else None
    return _decayed(o, optax.sgd(_lr(o), momentum=momentum, nesterov=o["nesterov"]))


def _optax_adam(o: dict[str, Any]) -> Any:
    import optax

    if o["amsgrad"]:
        raise Unsupported(
            "optax.amsgrad keeps the maximum of the bias-corrected second moment; torch keeps the maximum "
            "of the raw one and divides by the current 1 - beta2**t"
        )
    b1, b2 = (float(np.asarray(b)) for b in o["betas"])
    if o.get("decoupled_weight_decay") and o["weight_decay"] != 0:
        return optax.adamw(_lr(o), b1=b1, b2=b2, eps=o["eps"], weight_decay=o["weight_decay"])
    return _decayed(o, optax.adam(_lr(o), b1=b1, b2=b2, eps=o["eps"]))


def _optax_adamw(o: dict[str, Any]) -> Any:
    return _optax_adam({**o, "decoupled_weight_decay": True})


def _optax_adamax(o: dict[str, Any]) -> Any:
    import optax

    b1, b2 = (float(np.asarray(b)) for b in o["betas"])
    return _decayed(o, optax.adamax(_lr(o), b1=b1, b2=b2, eps=o["eps"]))


def _optax_adagrad(o: dict[str, Any]) -> Any:
    import optax

    lr, decay = _lr(o), float(o["lr_decay"])
    # torch: clr = lr / (1 + (step - 1) * lr_decay); optax's schedule gets the count before
    # this step. Built as a schedule also for lr_decay=0, so that the state has a count to
    # teacher-force: lr / (1 + count * 0.0) is lr exactly, and scale_by_schedule multiplies
    # by it as scale(-lr) does (test_causes.py::test_adagrad_schedule_form_is_exact).
    return _decayed(
        o,
        optax.adagrad(
            lambda count: lr / (1 + count * decay),
            initial_accumulator_value=o["initial_accumulator_value"],
            eps=o["eps"],
        ),
    )


def _optax_adagrad_eps0(o: dict[str, Any]) -> Any:
    if o["eps"] != 0:
        raise Unsupported("this row runs eps=0 only")
    return _optax_adagrad(o)


def _optax_adadelta(o: dict[str, Any]) -> Any:
    import optax

    return optax.adadelta(_lr(o), rho=o["rho"], eps=o["eps"], weight_decay=o["weight_decay"])


def _optax_rmsprop(eps_in_sqrt: bool) -> Callable[[dict[str, Any]], Any]:
    def build(o: dict[str, Any]) -> Any:
        import optax

        momentum = o["momentum"] if o["momentum"] != 0 else None
        return _decayed(
            o,
            optax.rmsprop(
                _lr(o), decay=o["alpha"], eps=o["eps"], eps_in_sqrt=eps_in_sqrt, centered=o["centered"],
                momentum=momentum,
            ),
        )

    return build


def _optax_radam(o: dict[str, Any]) -> Any:
    import optax
    from optax._src import transform

    b1, b2 = (float(np.asarray(b)) for b in o["betas"])
    if o.get("decoupled_weight_decay") and o["weight_decay"] != 0:
        return optax.chain(
            transform.scale_by_radam(b1=b1, b2=b2, eps=o["eps"], threshold=5.0),
            optax.add_decayed_weights(o["weight_decay"]),
            optax.scale_by_learning_rate(_lr(o)),
        )
    return _decayed(o, optax.radam(_lr(o), b1=b1, b2=b2, eps=o["eps"], threshold=5.0))


def _optax_nadam(o: dict[str, Any]) -> Any:
    import optax

    b1, b2 = (float(np.asarray(b)) for b in o["betas"])
    if o.get("decoupled_weight_decay") and o["weight_decay"] != 0:
        return optax.nadamw(_lr(o), b1=b1, b2=b2, eps=o["eps"], weight_decay=o["weight_decay"])
    return _decayed(o, optax.nadam(_lr(o), b1=b1, b2=b2, eps=o["eps"]))


def _optax_rprop(o: dict[str, Any]) -> Any:
    import optax

    eta_minus, eta_plus = o["etas"]
    lo, hi = o["step_sizes"]
    return optax.rprop(_lr(o), eta_minus=eta_minus, eta_plus=eta_plus, min_step_size=lo, max_step_size=hi)


def _rprop_read(entries: dict[str, Any], opaque: _OptaxOpaque) -> dict[str, Any]:
    # optax keeps the previous *update*, step_size * sign(g) (0 where the sign flipped);
    # torch keeps the previous gradient (0 where the sign flipped) and only ever uses its
    # sign. Expressed in torch's terms with the gradient of the step just taken:
    prev_updates = entries["prev_updates"]
    grad = opaque.extra.get("grad")
    if grad is None:
        return {"prev": np.zeros_like(prev_updates)}
    return {"prev": np.where(prev_updates == 0, np.zeros_like(grad), grad).astype(prev_updates.dtype)}


def _rprop_write(entries: dict[str, Any], fresh: dict[str, Any]) -> dict[str, Any]:
    prev = entries.pop("prev")
    step_sizes = entries.get("step_sizes", fresh["step_sizes"])
    entries["prev_updates"] = (step_sizes * np.sign(prev)).astype(step_sizes.dtype)
    return entries


# ------------------------------------------------------------------------------ Keras
@dataclass
class _KerasOpaque:
    names: list[str]
    values: list[Any]
    step: Callable[..., Any]


def _keras_names(opt: Any) -> list[str]:
    names = []
    u_product = getattr(opt, "_u_product", None)
    for v in opt.variables:
        if v is u_product:
            names.append("u_product")
            continue
        name = v.path.split("/")[-1]
        names.append(re.sub(r"^variable(_\d+)?_", "", name))
    if len(set(names)) != len(names):
        raise ValueError(f"Keras optimizer variables with the same name: {names}")
    return names


def keras_candidate(build: Callable[[dict[str, Any]], Any]) -> Stateful:
    """A :class:`Stateful` around the Keras optimizer ``build(torch_options)``, stepped with
    ``optimizer.stateless_apply`` under ``jax.jit`` (as Keras's JAX trainer does).

    Keras keeps its learning rate in a ``floatx()`` variable; for float64 parameters the
    optimizer is built with ``floatx`` float64 (otherwise its float64 updates use the
    learning rate rounded to float32)."""
    import keras

    cache: dict[tuple, tuple[Any, list[str], list[Any], Callable[..., Any]]] = {}

    def compiled(param: np.ndarray, options: dict[str, Any]):
        key = _key(options, param)
        if key not in cache:
            floatx = keras.config.floatx()
            keras.config.set_floatx(str(param.dtype))
            try:
                opt = build(options)
                var = keras.Variable(np.zeros(param.shape, param.dtype), dtype=str(param.dtype))
                opt.build([var])
            finally:
                keras.config.set_floatx(floatx)
            maximize = bool(options.get("maximize", False))

            def step(values, p, g):
                if maximize:
                    g = -g
                new_vars, new_values = opt.stateless_apply(values, [g], [p])
                return new_vars[0], new_values

            cache[key] = (opt, _keras_names(opt), [jnp.asarray(v.value) for v in opt.variables], jax.jit(step))
        return cache[key]

    def init(param: np.ndarray, **options: Any) -> _KerasOpaque:
        _require_dtype(param)
        _, names, values, step = compiled(param, options)
        return _KerasOpaque(names, list(values), step)

    def update(param: np.ndarray, grad: np.ndarray, opaque: _KerasOpaque, **options: Any):
        new_p, values = opaque.step(opaque.values, jnp.asarray(param), jnp.asarray(grad))
        return np.array(new_p), _KerasOpaque(opaque.names, list(values), opaque.step)

    def read(opaque: _KerasOpaque) -> dict[str, Any]:
        return {n: np.asarray(v) for n, v in zip(opaque.names, opaque.values)}

    def write(entries: dict[str, Any], opaque: _KerasOpaque) -> _KerasOpaque:
        values = [
            jnp.asarray(entries[n], dtype=jnp.asarray(v).dtype) if n in entries else v
            for n, v in zip(opaque.names, opaque.values)
        ]
        return _KerasOpaque(opaque.names, values, opaque.step)

    return Stateful(init, update, read, write)


def _no_l2(o: dict[str, Any], name: str) -> None:
    if o.get("weight_decay", 0) != 0:
        raise Unsupported(f"keras.optimizers.{name}'s weight_decay is decoupled (var -= var*wd*lr); torch's is L2")


def _keras_sgd(o: dict[str, Any]) -> Any:
    import keras

    if o["dampening"] != 0:
        raise Unsupported("Keras SGD has no dampening")
    _no_l2(o, "SGD")
    return keras.optimizers.SGD(learning_rate=_lr(o), momentum=float(o["momentum"]), nesterov=o["nesterov"])


def _keras_adam(o: dict[str, Any]) -> Any:
    import keras

    b1, b2 = (float(np.asarray(b)) for b in o["betas"])
    if o.get("decoupled_weight_decay") and o["weight_decay"] != 0:
        return keras.optimizers.AdamW(
            learning_rate=_lr(o), weight_decay=o["weight_decay"], beta_1=b1, beta_2=b2, epsilon=o["eps"],
            amsgrad=o["amsgrad"],
        )
    _no_l2(o, "Adam")
    return keras.optimizers.Adam(learning_rate=_lr(o), beta_1=b1, beta_2=b2, epsilon=o["eps"], amsgrad=o["amsgrad"])


def _keras_adamw(o: dict[str, Any]) -> Any:
    import keras

    b1, b2 = (float(np.asarray(b)) for b in o["betas"])
    return keras.optimizers.AdamW(
        learning_rate=_lr(o), weight_decay=o["weight_decay"], beta_1=b1, beta_2=b2, epsilon=o["eps"],
        amsgrad=o["amsgrad"],
    )


def _keras_adamax(o: dict[str, Any]) -> Any:
    import keras

    _no_l2(o, "Adamax")
    b1, b2 = (float(np.asarray(b)) for b in o["betas"])
    return keras.optimizers.Adamax(learning_rate=_lr(o), beta_1=b1, beta_2=b2, epsilon=o["eps"])


def _keras_adagrad(o: dict[str, Any]) -> Any:
    import keras

    _no_l2(o, "Adagrad")
    lr = _lr(o)
    if o["lr_decay"] != 0:
        # lr / (1 + lr_decay * iterations): torch's lr / (1 + (step - 1) * lr_decay)
        lr = keras.optimizers.schedules.InverseTimeDecay(lr, decay_steps=1, decay_rate=o["lr_decay"])
    return keras.optimizers.Adagrad(
        learning_rate=lr, initial_accumulator_value=o["initial_accumulator_value"], epsilon=o["eps"]
    )


def _keras_adagrad_eps0(o: dict[str, Any]) -> Any:
    if o["eps"] != 0:
        raise Unsupported("this row runs eps=0 only")
    return _keras_adagrad(o)


def _keras_adadelta(o: dict[str, Any]) -> Any:
    import keras

    _no_l2(o, "Adadelta")
    return keras.optimizers.Adadelta(learning_rate=_lr(o), rho=o["rho"], epsilon=o["eps"])


def _keras_rmsprop(o: dict[str, Any]) -> Any:
    import keras

    _no_l2(o, "RMSprop")
    return keras.optimizers.RMSprop(
        learning_rate=_lr(o), rho=o["alpha"], momentum=float(o["momentum"]), epsilon=o["eps"], centered=o["centered"]
    )


def _keras_nadam(o: dict[str, Any]) -> Any:
    import keras

    if o["momentum_decay"] != 1.0:
        raise Unsupported(
            "Keras's momentum schedule is beta1 * (1 - 0.5 * 0.96**t), torch's momentum_decay=1.0; "
            f"torch's momentum_decay={o['momentum_decay']} cannot be expressed"
        )
    if o["weight_decay"] != 0:
        raise Unsupported("Keras Nadam's weight_decay is decoupled and applied as var -= var*wd*lr")
    b1, b2 = (float(np.asarray(b)) for b in o["betas"])
    return keras.optimizers.Nadam(learning_rate=_lr(o), beta_1=b1, beta_2=b2, epsilon=o["eps"])


# ------------------------------------------------------------------------------ cases
@dataclass(frozen=True)
class Case:
    """One framework optimizer against one torch optimizer."""

    name: str
    """The framework's optimizer as a user writes it (``optax.adam``)."""
    torch: str
    """torch.optim's class."""
    candidate: Stateful = field(repr=False, compare=False)
    state_map: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    mapping: str = ""
    """The hyper-parameter mapping, as the docs table prints it."""
    options: tuple[dict[str, Any], ...] | None = None
    """Option sets to run; None: the conformance matrix's."""
    note: str = ""


_KERAS_STEP = counter("iteration")


def _as_float32(value: Any, options: dict[str, Any]) -> Any:
    return np.asarray(value, dtype=np.float32)


def _minus_eps(value: Any, options: dict[str, Any]) -> Any:
    a = np.asarray(value)
    return (a - a.dtype.type(options["eps"])).astype(a.dtype)


def _plus_eps(value: Any, options: dict[str, Any]) -> Any:
    a = np.asarray(value)
    return (a + a.dtype.type(options["eps"])).astype(a.dtype)


_KERAS_NORM = Entry("norm", to_candidate=_minus_eps, from_candidate=_plus_eps)
"""Keras's Adamax ``norm`` is ``max(beta_2 * u, |g|)`` and it adds ``epsilon`` at the
division; torch's ``exp_inf`` is ``max(beta2 * exp_inf, |g| + eps)``: norm = exp_inf - eps."""


def _trace_factor(options: dict[str, Any]) -> float:
    return -_lr(options)


def _lr_factor(options: dict[str, Any]) -> float:
    return _lr(options)


_ADAM_STATE = {"step": counter("count"), "exp_avg": "mu", "exp_avg_sq": "nu"}

OPTAX: list[Case] = [
    Case(
        "optax.sgd", "SGD", optax_candidate(_optax_sgd),
        {"momentum_buffer": "trace"},
        "learning_rate=lr, momentum=momentum or None, nesterov=nesterov; weight_decay: "
        "chain(add_decayed_weights(wd), sgd); dampening: none",
    ),
    Case(
        "optax.adam", "Adam", optax_candidate(_optax_adam), _ADAM_STATE,
        "learning_rate=lr, b1, b2=betas, eps=eps; weight_decay: chain(add_decayed_weights(wd), adam); "
        "decoupled_weight_decay: optax.adamw; amsgrad: none (optax.amsgrad is another rule)",
    ),
    Case(
        "optax.adamw", "AdamW", optax_candidate(_optax_adamw), _ADAM_STATE,
        "learning_rate=lr, b1, b2=betas, eps=eps, weight_decay=weight_decay; amsgrad: none",
    ),
    Case(
        "optax.adamax", "Adamax", optax_candidate(_optax_adamax),
        {"step": counter("count"), "exp_avg": "mu", "exp_inf": "nu"},
        "learning_rate=lr, b1, b2=betas, eps=eps; weight_decay: chain(add_decayed_weights(wd), adamax)",
    ),
    Case(
        "optax.adagrad", "Adagrad", optax_candidate(_optax_adagrad),
        {"step": counter("count"), "sum": "sum_of_squares"},
        "learning_rate=lr (lr_decay: the schedule lr / (1 + count * lr_decay)), "
        "initial_accumulator_value, eps=eps; weight_decay: chain(add_decayed_weights(wd), adagrad)",
    ),
    Case(
        "optax.adagrad (eps=0)", "Adagrad", optax_candidate(_optax_adagrad_eps0),
        {"step": counter("count"), "sum": "sum_of_squares"},
        "as above, eps=0 on both sides",
        options=(
            {"eps": 0.0}, {"eps": 0.0, "lr": 0.1}, {"eps": 0.0, "initial_accumulator_value": 0.1},
            {"eps": 0.0, "weight_decay": 0.1, "maximize": True},
        ),
    ),
    Case(
        "optax.adadelta", "Adadelta", optax_candidate(_optax_adadelta),
        {"step": None, "square_avg": "e_g", "acc_delta": "e_x"},
        "learning_rate=lr, rho=rho, eps=eps, weight_decay=weight_decay",
    ),
    Case(
        "optax.rmsprop (eps_in_sqrt=False)", "RMSprop", optax_candidate(_optax_rmsprop(False)),
        {"step": None, "square_avg": "nu", "grad_avg": "mu", "momentum_buffer": scaled("trace", _trace_factor)},
        "learning_rate=lr, decay=alpha, eps=eps, eps_in_sqrt=False, centered=centered, momentum=momentum "
        "or None; weight_decay: chain(add_decayed_weights(wd), rmsprop)",
    ),
    Case(
        "optax.rmsprop (eps_in_sqrt=True, the default)", "RMSprop", optax_candidate(_optax_rmsprop(True)),
        {"step": None, "square_avg": "nu", "grad_avg": "mu", "momentum_buffer": scaled("trace", _trace_factor)},
        "as above with eps_in_sqrt=True",
    ),
    Case(
        "optax.radam", "RAdam", optax_candidate(_optax_radam), _ADAM_STATE,
        "learning_rate=lr, b1, b2=betas, eps=eps, threshold=5; weight_decay: add_decayed_weights before "
        "(decoupled: between scale_by_radam and the learning rate, as optax.adamw)",
    ),
    Case(
        "optax.nadam", "NAdam", optax_candidate(_optax_nadam),
        {"step": counter("count"), "mu_product": None, "exp_avg": "mu", "exp_avg_sq": "nu"},
        "learning_rate=lr, b1, b2=betas, eps=eps (decoupled weight decay: optax.nadamw); "
        "momentum_decay: none (optax has no momentum schedule)",
    ),
    Case(
        "optax.rprop", "Rprop", optax_candidate(_optax_rprop, _rprop_read, _rprop_write),
        {"step": None, "step_size": "step_sizes", "prev": "prev"},
        "learning_rate=lr, eta_minus, eta_plus=etas, min_step_size, max_step_size=step_sizes; "
        "torch's prev (last gradient) ↔ prev_updates = step_sizes × sign(prev)",
    ),
]

_KERAS_NADAM_OPTIONS = (
    {"momentum_decay": 1.0},
    {"momentum_decay": 1.0, "lr": 1e-2},
    {"momentum_decay": 1.0, "betas": (0.8, 0.99), "eps": 1e-6},
    {"momentum_decay": 1.0, "maximize": True},
    {"momentum_decay": 1.0, "eps": 0.1},
)

KERAS: list[Case] = [
    Case(
        "keras.optimizers.SGD", "SGD", keras_candidate(_keras_sgd),
        {"step": _KERAS_STEP, "momentum_buffer": scaled("momentum", _trace_factor)},
        "learning_rate=lr, momentum, nesterov; dampening, weight_decay (L2): none",
    ),
    Case(
        "keras.optimizers.Adam", "Adam", keras_candidate(_keras_adam),
        {"step": _KERAS_STEP, "exp_avg": "momentum", "exp_avg_sq": "velocity", "max_exp_avg_sq": "velocity_hat"},
        "learning_rate=lr, beta_1, beta_2=betas, epsilon=eps, amsgrad; decoupled_weight_decay: "
        "keras.optimizers.AdamW; weight_decay (L2): none",
    ),
    Case(
        "keras.optimizers.AdamW", "AdamW", keras_candidate(_keras_adamw),
        {"step": _KERAS_STEP, "exp_avg": "momentum", "exp_avg_sq": "velocity", "max_exp_avg_sq": "velocity_hat"},
        "learning_rate=lr, weight_decay, beta_1, beta_2=betas, epsilon=eps, amsgrad",
    ),
    Case(
        "keras.optimizers.Adamax", "Adamax", keras_candidate(_keras_adamax),
        {"step": _KERAS_STEP, "exp_avg": "momentum", "exp_inf": _KERAS_NORM},
        "learning_rate=lr, beta_1, beta_2=betas, epsilon=eps; weight_decay (L2): none; "
        "norm = exp_inf - eps",
    ),
    Case(
        "keras.optimizers.Adagrad", "Adagrad", keras_candidate(_keras_adagrad),
        {"step": _KERAS_STEP, "sum": "accumulator"},
        "learning_rate=lr (lr_decay: InverseTimeDecay(lr, 1, lr_decay)), initial_accumulator_value, "
        "epsilon=eps; weight_decay (L2): none",
    ),
    Case(
        "keras.optimizers.Adagrad (eps=0)", "Adagrad", keras_candidate(_keras_adagrad_eps0),
        {"step": _KERAS_STEP, "sum": "accumulator"},
        "as above, eps=0 on both sides",
        options=({"eps": 0.0}, {"eps": 0.0, "lr": 0.1}, {"eps": 0.0, "initial_accumulator_value": 0.1},
                 {"eps": 0.0, "maximize": True}),
    ),
    Case(
        "keras.optimizers.Adadelta", "Adadelta", keras_candidate(_keras_adadelta),
        {"step": _KERAS_STEP, "square_avg": "accumulated_grad", "acc_delta": "accumulated_delta_var"},
        "learning_rate=lr, rho=rho, epsilon=eps; weight_decay (L2): none",
    ),
    Case(
        "keras.optimizers.RMSprop", "RMSprop", keras_candidate(_keras_rmsprop),
        {"step": _KERAS_STEP, "square_avg": "velocity", "grad_avg": "average_gradient",
         "momentum_buffer": scaled("momentum", _lr_factor)},
        "learning_rate=lr, rho=alpha, momentum, epsilon=eps, centered; weight_decay (L2): none",
    ),
    Case(
        "keras.optimizers.Nadam", "NAdam", keras_candidate(_keras_nadam),
        {"step": _KERAS_STEP, "mu_product": Entry("u_product", from_candidate=_as_float32), "exp_avg": "momentum", "exp_avg_sq": "velocity"},
        "learning_rate=lr, beta_1, beta_2=betas, epsilon=eps; only torch's momentum_decay=1.0 "
        "(Keras's schedule is beta_1 (1 - 0.5 · 0.96^t))",
        options=_KERAS_NADAM_OPTIONS,
    ),
]


# ------------------------------------------------------------------------------ tests' helpers
MODES = (("x64 off", False, "float32"), ("x64 on", True, "float32"), ("x64 on", True, "float64"))
"""(JAX mode, x64 flag, dtype): with x64 off JAX runs float32 only."""

SHAPES = ((3, 4),)
"""The tests' parameters (the published tables use the matrix's five shapes)."""

STEPS = 10
"""The tests' steps per configuration (the published tables use the matrix's 50); RAdam's
rectified update starts at step 6."""


TEST_OPTIONS: dict[str, list[dict[str, Any]]] = {
    "SGD": [{}, {"lr": 1e-2, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1}, {"momentum": 0.9, "maximize": True}],
    "Adam": [{}, {"lr": 1e-2, "weight_decay": 0.1, "decoupled_weight_decay": True}],
    "AdamW": [{}, {"lr": 1e-2, "weight_decay": 0.1}],
    "Adamax": [{}, {"lr": 1e-2, "maximize": True}],
    "Adagrad": [{}, {"lr": 0.1, "lr_decay": 0.5}],
    "Adadelta": [{}, {"lr": 0.5, "rho": 0.5}],
    "RMSprop": [{}, {"lr": 1e-2, "centered": True, "momentum": 0.9}],
    "RAdam": [{}, {"lr": 1e-2, "weight_decay": 0.1, "decoupled_weight_decay": True}],
    "NAdam": [{}],
    "Rprop": [{}, {"etas": (0.3, 1.5)}],
}
"""The tests' option sets per torch optimizer (a case with its own ``options`` runs its
first two): a subset of the matrix, so that the framework tests stay within minutes."""


def options_for_tests(case: Case) -> list[dict[str, Any]]:
    """The option sets the tests run for ``case``."""
    return list(case.options[:2]) if case.options else TEST_OPTIONS[case.torch]


def run_case(case, options, x64: bool, dtype: str, steps: int = STEPS, shapes=SHAPES):
    """``compare`` of one adapter case in one JAX mode and dtype: the report."""
    from refoptim.testing import compare

    with jax.enable_x64(x64):
        return compare(
            case.candidate, case.torch, options=list(options), dtypes=(dtype,), steps=steps, shapes=shapes,
            state_map=case.state_map, name=case.name,
        )


def worst(report) -> tuple[float, float]:
    """The worst operand-scale and update-scale one-step errors of a report."""
    ran = [r for r in report.results if r.status != "skipped"]
    assert ran, f"nothing ran: {[r.skipped for r in report.results]}"
    return max(r.param_ulp for r in ran), max(r.update_ulp for r in ran)


def check_pinned(report, expected) -> None:
    """``expected`` is ``"pass"`` or ``(param_ulp, update_ulp)``: the recorded figures of a
    known difference; the measured ones must be within a factor of 2 of them (a 0 recorded
    figure must stay at most 4 ULP), and the run must not pass."""
    if expected == "pass":
        assert report.passed, str(report)
        return
    param, update = worst(report)
    assert not report.passed, f"a recorded difference no longer shows (fixed upstream?):\n{report}"
    for name, got, want in (("param", param, expected[0]), ("update", update, expected[1])):
        if want == 0:
            assert got <= 4, f"{name}: {got:.3g} ULP, recorded 0\n{report}"
        else:
            assert want / 2 <= got <= want * 2, f"{name}: {got:.3g} ULP, recorded {want:.3g}\n{report}"
