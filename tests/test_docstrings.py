"""Every public name has a docstring; every optimizer's carries its math and its quirks."""

import inspect

import pytest

import refoptim
import refoptim.checkpoint
import refoptim.fingerprint
import refoptim.functional
import refoptim.lr_scheduler
import refoptim.plot
import refoptim.registry
import refoptim.swa_utils
import refoptim.testing.backends
import refoptim.testing.inputs
import refoptim.testing.matrix
import refoptim.testing.metrics
import refoptim.testing.thresholds

MODULES = [refoptim, refoptim.checkpoint, refoptim.fingerprint, refoptim.functional, refoptim.lr_scheduler, refoptim.plot, refoptim.registry, refoptim.swa_utils, refoptim.testing.backends, refoptim.testing.inputs, refoptim.testing.matrix, refoptim.testing.metrics, refoptim.testing.thresholds]


def _public(module):
    for name in getattr(module, "__all__", []):
        obj = getattr(module, name)
        if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismodule(obj):
            yield f"{module.__name__}.{name}", obj


def _members(cls):
    for name, member in vars(cls).items():
        if name.startswith("_") or not (inspect.isfunction(member) or isinstance(member, property)):
            continue
        yield f"{cls.__qualname__}.{name}", member


PUBLIC = dict(item for m in MODULES for item in _public(m))
for _name, _obj in list(PUBLIC.items()):
    if inspect.isclass(_obj):
        PUBLIC.update(_members(_obj))


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_public_name_has_a_docstring(name):
    doc = inspect.getdoc(PUBLIC[name])
    assert doc and doc.strip(), f"{name} has no docstring"


OPTIMIZERS = [getattr(refoptim, n) for n in refoptim.__all__ if isinstance(getattr(refoptim, n), type)
              and issubclass(getattr(refoptim, n), refoptim.Optimizer) and n != "Optimizer"]


def test_every_optimizer_is_covered():
    # every registered optimizer, and no other Optimizer subclass (tests/test_registry.py
    # checks the registry holds all 15 of torch 2.13)
    assert len(OPTIMIZERS) == len(refoptim.registry.OPTIMIZERS)
    assert {c.__name__ for c in OPTIMIZERS} == set(refoptim.registry.names())


@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
def test_optimizer_docstring_has_math_and_quirks(cls):
    doc = cls.__doc__
    assert ".. math::" in doc
    assert "quirk" in doc.lower()
    for flag in ("foreach", "differentiable"):
        if flag in inspect.signature(cls).parameters:  # LBFGS, SparseAdam, Muon have neither, as in torch
            assert flag in doc, flag


SCHEDULERS = [n for n in refoptim.lr_scheduler.__all__ if isinstance(getattr(refoptim.lr_scheduler, n), type)
              and n not in ("LRScheduler", "_LRScheduler")]


def test_every_scheduler_is_covered():
    assert len(SCHEDULERS) == 15


@pytest.mark.parametrize("name", SCHEDULERS)
def test_scheduler_docstring_has_its_formula(name):
    assert ".. math::" in getattr(refoptim.lr_scheduler, name).__doc__, name
