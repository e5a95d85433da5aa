"""The README stays true, and the CLI behaves without torch."""

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from refoptim.__main__ import main

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_has_the_two_commands():
    text = README.read_text()
    assert 'pip install -e ".[test]" && python -m refoptim conformance' in text
    assert 'pip install -e ".[test]" && pytest' in text


def test_ci_builds_the_manual_as_the_readme_says():
    """The README's docs commands are the ones CI runs (nitpicky, warnings are errors, doctests)."""
    text = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    html = "python -m sphinx -n -W --keep-going -b html docs docs/_build/html"
    doctest = "python -m sphinx -W --keep-going -b doctest docs docs/_build/doctest"
    assert f'pip install -e ".[docs]" && {html}' in text and doctest in text
    assert 'pip install --quiet -e ".[docs]"' in ci and html in ci and doctest in ci


def test_readme_example_runs_and_converges():
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "the README has no Python example"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    np.testing.assert_allclose(namespace["w"].data, [1.0, -2.0, 0.5], atol=1e-3)


def test_pyproject_pins_torch_exactly():
    text = (README.parent / "pyproject.toml").read_text()
    assert '"torch==2.13.0"' in text
    assert not re.search(r'"torch(>|<|~|!|\s*")', text)


class _NoTorch:
    """A meta-path finder that makes ``import torch`` fail, as on a machine without it."""

    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"No module named {name!r}")
        return None


def test_conformance_without_torch_says_how_to_install(monkeypatch, capsys):
    for name in [m for m in sys.modules if m == "torch" or m.startswith("torch.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_NoTorch(), *sys.meta_path])
    assert main(["conformance"]) == 2
    err = capsys.readouterr().err
    assert "pip install torch==2.13.0" in err


def test_unknown_command_is_an_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["nonsense"])
    assert info.value.code == 2
