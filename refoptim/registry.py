r"""The registry of optimizers: one declarative entry per optimizer, as torch's
``OptimizerInfo`` is for its tests.

Everything that lists optimizers is derived from :data:`OPTIMIZERS`: the exports of
:mod:`refoptim` and :mod:`refoptim.functional`, the conformance matrix
(:mod:`refoptim.testing.matrix`), the benchmark's list (:mod:`refoptim.bench`), the test
parametrisations, the index of the manual's optimizer pages and the parity tables. A test
(``tests/test_registry.py``) fails when a registered optimizer lacks its module, its class,
its functional rule, its page or its matrix entry, or when a hand-written table disagrees
with the registry.

The entries are in lineage order, the order of the manual: SGD, then what each descendant
adds over its ancestor (momentum and Nesterov live in SGD), Adagrad, RMSprop and Adadelta,
Adam, then Adam's variants, then the rest. Adding an optimizer means its module, its entry
here and its page: see ``CONTRIBUTING.md``.

This module imports no optimizer: :attr:`OptimizerInfo.cls` imports the class when asked.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

__all__ = ["OPTIMIZERS", "OptimizerInfo", "Paper", "get", "names"]

TORCH_SOURCE_ROOT = "https://github.com/pytorch/pytorch/blob/v2.13.0/"
"""Where torch 2.13's sources are read: an entry's ``torch_source`` is a path under it."""


@dataclass(frozen=True)
class Paper:
    """A reference: who and what (``citation``) and where to read it (``url``: arXiv, DOI,
    or the author's page where there is no paper)."""

    citation: str
    url: str


@dataclass(frozen=True)
class OptimizerInfo:
    """One optimizer: what it is, where it lives and how it is tested, benchmarked and
    documented.

    Attributes:
        name: the class name, as in ``torch.optim``.
        module: the module under :mod:`refoptim` that holds the class and its rule.
        summary: what it does, in a few words (the manual's index).
        state: the state each parameter keeps, in reStructuredText (the manual's index).
        parent: the optimizer it extends in the lineage (``None`` for a root).
        lineage: one sentence: what it adds over ``parent``, and why.
        papers: the papers it follows, first the one that introduced it.
        torch_source: the path of torch's implementation under :data:`TORCH_SOURCE_ROOT`.
        elementwise: its rule acts on each element on its own, so the base may run it
            piece by piece (:mod:`refoptim._fastpath`), and the elementwise conformance
            matrix and :func:`refoptim.testing.compare` cover it.
        sparse: its ``step`` accepts a :class:`refoptim.SparseGrad` (torch's SGD, Adagrad,
            SparseAdam).
        rules: the names of its ``(init, step)`` functions in :mod:`refoptim.functional`.
        bench: the options :mod:`refoptim.bench` runs it with (``None``: not benchmarked).
        bench_default: benchmarked when no optimizer is named.
        matrix: its conformance configurations: for an elementwise optimizer a dict with
            ``alone`` (option sets), ``crossed`` (a function returning more option sets),
            ``groups`` (per-group options), ``feedback`` (``(objective, options)`` pairs)
            and optionally ``min_steps``; for the others ``{"extension": <module>}``, the
            harness ``refoptim.testing.conformance_<module>``.
    """

    name: str
    module: str
    summary: str
    state: str
    parent: str | None
    lineage: str
    papers: tuple[Paper, ...]
    torch_source: str
    elementwise: bool
    sparse: bool = False
    rules: tuple[str, str] = ("", "")
    bench: dict[str, Any] | None = None
    bench_default: bool = False
    matrix: dict[str, Any] = field(default_factory=dict)

    @property
    def cls(self) -> type:
        """The class (imported on first use)."""
        return getattr(importlib.import_module(f"refoptim.{self.module}"), self.name)

    @property
    def page(self) -> str:
        """The manual's page, relative to ``docs/``."""
        return f"optimizers/{self.module}"

    @property
    def torch_url(self) -> str:
        """torch 2.13's implementation, on GitHub."""
        return TORCH_SOURCE_ROOT + self.torch_source


_ADAM_PAPER = Paper("Kingma & Ba, Adam: A Method for Stochastic Optimization, ICLR 2015", "https://arxiv.org/abs/1412.6980")

OPTIMIZERS: tuple[OptimizerInfo, ...] = (
    OptimizerInfo(
        name="SGD",
        module="sgd",
        summary="gradient descent, momentum, Nesterov, dampening",
        state="``momentum_buffer`` (with momentum)",
        parent=None,
        lineage=(
            "The root: step against the gradient. Momentum (Polyak's heavy ball) averages past "
            "gradients so that steps keep going along consistent directions and cancel across "
            "oscillating ones; Nesterov's variant looks ahead along the momentum."
        ),
        papers=(
            Paper("Robbins & Monro, A Stochastic Approximation Method, 1951", "https://doi.org/10.1214/aoms/1177729586"),
            Paper(
                "Sutskever, Martens, Dahl & Hinton, On the importance of initialization and momentum in deep learning, ICML 2013",
                "https://proceedings.mlr.press/v28/sutskever13.html",
            ),
        ),
        torch_source="torch/optim/sgd.py",
        elementwise=True,
        sparse=True,
        rules=("sgd_init", "sgd_step"),
        bench={"lr": 0.01, "momentum": 0.9},
        bench_default=True,
    ),
    OptimizerInfo(
        name="Adagrad",
        module="adagrad",
        summary="steps scaled by the summed squared gradients; sparse gradients",
        state="``step``, ``sum`` (from construction)",
        parent="SGD",
        lineage=(
            "One step size per coordinate: each is divided by the root of that coordinate's summed "
            "squared gradients, so rare features get large steps; the sum only grows, so steps only shrink."
        ),
        papers=(
            Paper(
                "Duchi, Hazan & Singer, Adaptive Subgradient Methods for Online Learning and Stochastic Optimization, JMLR 2011",
                "https://jmlr.org/papers/v12/duchi11a.html",
            ),
        ),
        torch_source="torch/optim/adagrad.py",
        elementwise=True,
        sparse=True,
        rules=("adagrad_init", "adagrad_step"),
        bench={"lr": 1e-2},
        bench_default=True,
    ),
    OptimizerInfo(
        name="RMSprop",
        module="rmsprop",
        summary="steps scaled by a running RMS; centered; momentum",
        state="``step``, ``square_avg`` (, ``momentum_buffer``, ``grad_avg``)",
        parent="Adagrad",
        lineage=(
            "Adagrad's sum replaced by an exponential moving average of squared gradients, so the "
            "step size forgets old gradients and no longer decays to zero."
        ),
        papers=(
            Paper(
                "Hinton, Srivastava & Swersky, Neural Networks for Machine Learning, lecture 6e, 2012",
                "https://www.cs.toronto.edu/~tijmen/csc321/slides/lecture_slides_lec6.pdf",
            ),
            Paper("Graves, Generating Sequences With Recurrent Neural Networks, 2013 (centered)", "https://arxiv.org/abs/1308.0850"),
        ),
        torch_source="torch/optim/rmsprop.py",
        elementwise=True,
        rules=("rmsprop_init", "rmsprop_step"),
        bench={"lr": 1e-3},
        bench_default=True,
    ),
    OptimizerInfo(
        name="Adadelta",
        module="adadelta",
        summary="ratio of two running RMS, of updates and of gradients",
        state="``step``, ``square_avg``, ``acc_delta``",
        parent="Adagrad",
        lineage=(
            "Also fixes Adagrad's ever-shrinking steps with a running average, and gives the update "
            "the units of the parameter: the RMS of past updates over the RMS of gradients."
        ),
        papers=(Paper("Zeiler, ADADELTA: An Adaptive Learning Rate Method, 2012", "https://arxiv.org/abs/1212.5701"),),
        torch_source="torch/optim/adadelta.py",
        elementwise=True,
        rules=("adadelta_init", "adadelta_step"),
        bench={},
    ),
    OptimizerInfo(
        name="Adam",
        module="adam",
        summary="first and second moments, bias-corrected; AMSGrad; decoupled decay",
        state="``step``, ``exp_avg``, ``exp_avg_sq`` (, ``max_exp_avg_sq``)",
        parent="RMSprop",
        lineage=(
            "RMSprop's running second moment plus a running first moment (momentum), both "
            "bias-corrected so that the first steps are not shrunk towards their zero start."
        ),
        papers=(
            _ADAM_PAPER,
            Paper("Reddi, Kale & Kumar, On the Convergence of Adam and Beyond, ICLR 2018 (AMSGrad)", "https://openreview.net/forum?id=ryQu7f-RZ"),
        ),
        torch_source="torch/optim/adam.py",
        elementwise=True,
        rules=("adam_init", "adam_step"),
        bench={"lr": 1e-3},
        bench_default=True,
    ),
    OptimizerInfo(
        name="AdamW",
        module="adamw",
        summary="Adam with decoupled weight decay (default 1e-2)",
        state="as Adam",
        parent="Adam",
        lineage=(
            "Weight decay taken out of the gradient and applied to the parameter directly: with "
            "Adam's L2 term the decay is divided by the root of the second moment, so weights with "
            "large gradients are barely decayed."
        ),
        papers=(Paper("Loshchilov & Hutter, Decoupled Weight Decay Regularization, ICLR 2019", "https://arxiv.org/abs/1711.05101"),),
        torch_source="torch/optim/adamw.py",
        elementwise=True,
        rules=("adamw_init", "adamw_step"),
        bench={"lr": 1e-3},
        bench_default=True,
    ),
    OptimizerInfo(
        name="Adamax",
        module="adamax",
        summary="Adam with an infinity norm",
        state="``step``, ``exp_avg``, ``exp_inf``",
        parent="Adam",
        lineage=(
            "Adam's second moment (an L2 norm of past gradients) replaced by an exponentially "
            "weighted infinity norm, a running maximum that needs no bias correction."
        ),
        papers=(_ADAM_PAPER,),
        torch_source="torch/optim/adamax.py",
        elementwise=True,
        rules=("adamax_init", "adamax_step"),
        bench={},
    ),
    OptimizerInfo(
        name="NAdam",
        module="nadam",
        summary="Adam with Nesterov momentum and a momentum schedule; NAdamW",
        state="``step``, ``mu_product``, ``exp_avg``, ``exp_avg_sq``",
        parent="Adam",
        lineage="Adam's momentum made Nesterov's: the step looks ahead along the next momentum, with a warm-up schedule for it.",
        papers=(Paper("Dozat, Incorporating Nesterov Momentum into Adam, ICLR 2016 workshop", "https://openreview.net/forum?id=OM0jvwB8jIp57ZJjtNEZ"),),
        torch_source="torch/optim/nadam.py",
        elementwise=True,
        rules=("nadam_init", "nadam_step"),
        bench={},
    ),
    OptimizerInfo(
        name="RAdam",
        module="radam",
        summary="Adam rectified once the variance estimate is reliable",
        state="``step``, ``exp_avg``, ``exp_avg_sq``",
        parent="Adam",
        lineage=(
            "Adam without a warm-up: while the second moment rests on too few gradients, it takes "
            "plain momentum steps, then scales Adam's step by a rectification term."
        ),
        papers=(
            Paper("Liu et al., On the Variance of the Adaptive Learning Rate and Beyond, ICLR 2020", "https://arxiv.org/abs/1908.03265"),
        ),
        torch_source="torch/optim/radam.py",
        elementwise=True,
        rules=("radam_init", "radam_step"),
        bench={},
    ),
    OptimizerInfo(
        name="ASGD",
        module="asgd",
        summary="SGD with a decaying step and an average of the iterates",
        state="``step``, ``eta``, ``mu``, ``ax``",
        parent="SGD",
        lineage="SGD with a decaying step size that also keeps the running average of its iterates, which converges faster than the iterates themselves.",
        papers=(
            Paper(
                "Polyak & Juditsky, Acceleration of Stochastic Approximation by Averaging, SIAM J. Control Optim. 1992",
                "https://doi.org/10.1137/0330046",
            ),
        ),
        torch_source="torch/optim/asgd.py",
        elementwise=True,
        rules=("asgd_init", "asgd_step"),
        bench={},
    ),
    OptimizerInfo(
        name="Rprop",
        module="rprop",
        summary="per-element step sizes driven by gradient signs",
        state="``step``, ``prev``, ``step_size``",
        parent="SGD",
        lineage="Only the sign of the gradient is used: each element's step size grows while the sign holds and shrinks when it flips (full-batch training).",
        papers=(
            Paper(
                "Riedmiller & Braun, A Direct Adaptive Method for Faster Backpropagation Learning: The RPROP Algorithm, ICNN 1993",
                "https://doi.org/10.1109/ICNN.1993.298623",
            ),
        ),
        torch_source="torch/optim/rprop.py",
        elementwise=True,
        rules=("rprop_init", "rprop_step"),
        bench={},
    ),
    OptimizerInfo(
        name="SparseAdam",
        module="sparse_adam",
        summary="Adam on the rows a sparse gradient names",
        state="``step`` (an int), ``exp_avg``, ``exp_avg_sq``",
        parent="Adam",
        lineage="Adam for embeddings: only the rows a sparse gradient names have their moments and values updated.",
        papers=(_ADAM_PAPER,),
        torch_source="torch/optim/sparse_adam.py",
        elementwise=False,
        sparse=True,
        rules=("sparse_adam_init", "sparse_adam_step"),
        matrix={"extension": "sparse"},
    ),
    OptimizerInfo(
        name="Adafactor",
        module="adafactor",
        summary="factored second moments, relative step sizes",
        state="``step``, ``row_var`` and ``col_var``, or ``variance``",
        parent="Adam",
        lineage="Adam's second moment of a matrix stored as its row and column sums, memory O(n+m) for O(nm), with a step size relative to the parameter's scale.",
        papers=(
            Paper("Shazeer & Stern, Adafactor: Adaptive Learning Rates with Sublinear Memory Cost, ICML 2018", "https://arxiv.org/abs/1804.04235"),
        ),
        torch_source="torch/optim/_adafactor.py",
        elementwise=False,
        rules=("adafactor_init", "adafactor_step"),
        matrix={"extension": "adafactor"},
    ),
    OptimizerInfo(
        name="Muon",
        module="muon",
        summary="momentum orthogonalized by Newton–Schulz (2-D parameters)",
        state="``momentum_buffer``",
        parent="SGD",
        lineage="SGD's momentum of a weight matrix replaced by its nearest semi-orthogonal matrix (a few Newton–Schulz iterations), so every direction of the update gets the same size.",
        papers=(
            Paper("Jordan et al., Muon: An optimizer for hidden layers in neural networks, 2024", "https://kellerjordan.github.io/posts/muon/"),
            Paper("Liu et al., Muon is Scalable for LLM Training, 2025 (match_rms_adamw)", "https://arxiv.org/abs/2502.16982"),
        ),
        torch_source="torch/optim/_muon.py",
        elementwise=False,
        rules=("muon_init", "muon_step"),
        matrix={"extension": "muon"},
    ),
    OptimizerInfo(
        name="LBFGS",
        module="lbfgs",
        summary="limited-memory BFGS with a closure, optional strong-Wolfe line search",
        state="global, on the first parameter",
        parent=None,
        lineage=(
            "A quasi-Newton method, not a descendant of SGD: it re-evaluates the loss through a "
            "closure and builds a curvature model from the last few steps and gradient changes."
        ),
        papers=(
            Paper(
                "Liu & Nocedal, On the limited memory BFGS method for large scale optimization, Math. Programming 1989",
                "https://doi.org/10.1007/BF01589116",
            ),
            Paper("Nocedal & Wright, Numerical Optimization, 2nd ed., Springer 2006 (Algorithms 7.4, 3.5, 3.6)", "https://doi.org/10.1007/978-0-387-40065-5"),
        ),
        torch_source="torch/optim/lbfgs.py",
        elementwise=False,
        rules=("lbfgs_init", "lbfgs_step"),
        matrix={"extension": "lbfgs"},
    ),
)
"""Every optimizer of torch 2.13, in lineage order (the manual's order)."""

_BY_NAME = {info.name: info for info in OPTIMIZERS}


def get(name: str) -> OptimizerInfo:
    """The entry of the optimizer called ``name`` (``KeyError`` naming the known ones)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no optimizer {name!r} is registered; known: {', '.join(_BY_NAME)}") from None


def names(*, elementwise: bool | None = None, sparse: bool | None = None) -> tuple[str, ...]:
    """The registered names, in lineage order; ``elementwise``/``sparse``: only those whose
    flag has that value."""
    return tuple(
        i.name
        for i in OPTIMIZERS
        if (elementwise is None or i.elementwise == elementwise) and (sparse is None or i.sparse == sparse)
    )
