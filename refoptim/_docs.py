"""Docstring fragments the optimizers share, as torch shares ``_foreach_doc`` and friends.

:func:`flags_doc` writes the paragraph on the flags that only pick one of torch's
implementations (``foreach``, ``fused``, ``capturable``, ``differentiable``), from the flags a
class has and what torch's other paths do differently for it; :func:`append_doc` adds it to
the class docstring::

    _FLAGS_DOC = flags_doc("Adamax", ("foreach", "capturable", "differentiable"), note=...)
    Adamax.__doc__ = append_doc(Adamax.__doc__, _FLAGS_DOC)
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

__all__ = ["append_doc", "flags_doc"]

_FUSED_CHECKS = (
    "``fused`` with ``differentiable`` or with ``foreach=True`` raises ``RuntimeError``, once the "
    "parameters are read"
)


def _literals(names: Sequence[str]) -> str:
    """``a``, ``b`` and ``c``."""
    quoted = [f"``{n}``" for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def flags_doc(
    name: str,
    flags: Sequence[str],
    *,
    checks: str = "",
    note: str = "",
    scalars: Sequence[str] = ("step",),
) -> str:
    """The paragraph on an optimizer's implementation flags, unindented, for :func:`append_doc`.

    Args:
        name: the class name (``"RAdam"``): "torch's RAdam has no ``fused``".
        flags: the class's implementation flags, in the order to name them.
        checks: torch's checks on the flags besides ``fused``'s (which ``fused`` in
            ``flags`` brings), as a clause: Adam's "a 0-d array lr with foreach=True and
            capturable=False raises ValueError", in reST.
        note: what torch's other paths do differently for this class (sentences).
        scalars: the state entries that stay 0-d float32 arrays whatever the flags say
            (none for SGD).
    """
    checks_said = [_FUSED_CHECKS] if "fused" in flags else []
    checks_said += [checks] if checks else []
    path = "single-tensor (``foreach=False``)" + (", non-capturable" if "capturable" in flags else "") + " path"
    if "fused" not in flags:
        path += f" (torch's {name} has no ``fused``)"
    them, pick = ("it", "picks") if len(flags) == 1 else ("them", "pick")
    if checks_said:
        accepts = f"so signatures match, applies torch's checks on {them} ({'; '.join(checks_said)}), and"
    else:
        accepts = "so signatures match and"
    text = (
        f"{_literals(flags)} {pick} one of torch's implementations; refoptim accepts {them} {accepts} "
        f"always computes torch's {path}."
    )
    if note:
        text += " " + note.strip()
    if scalars:
        stays = "stays a 0-d float32 array" if len(scalars) == 1 else "stay 0-d float32 arrays"
        text += f" {_literals(scalars)} {stays} whatever the flags say."
    return textwrap.fill(text, width=88, break_long_words=False, break_on_hyphens=False)


def append_doc(doc: str | None, fragment: str) -> str:
    """``doc`` with ``fragment`` (unindented text) as its last paragraph, indented as the
    body of ``doc`` is (a class docstring keeps its indentation before Python 3.13, which
    strips it), so the result stays one reST document."""
    doc = doc or ""
    body = [line for line in doc.expandtabs().splitlines()[1:] if line.strip()]
    indent = " " * min((len(line) - len(line.lstrip()) for line in body), default=0)
    return doc.rstrip() + "\n\n" + textwrap.indent(fragment.strip("\n"), indent) + "\n" + indent
