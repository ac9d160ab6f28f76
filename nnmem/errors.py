"""The one error nnmem raises for bad input, naming each field at fault.

A problem's ``loc`` is the path to the bad value, as pydantic gives it: ``("batch_size",)``
for a setting, ``("config", "hidden_size")`` for a key of a config.json,
``("cnn", "layers", 0, "kernel")`` for a layer's value. Callers place a problem from its
``loc`` (the page puts it next to the control ``loc[0]`` names), never from its message.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence

Loc = tuple[str | int, ...]

_STEP = re.compile(r"\[(\d+)\]|\.?([^.\[]+)")


def as_loc(path: str | Sequence[str | int]) -> Loc:
    """A path as a ``loc`` tuple: ``"cnn.layers[0].kernel"`` is ``("cnn", "layers", 0, "kernel")``.

    >>> as_loc("cnn.layers[0].kernel"), as_loc(("config", "hidden_size"))
    (('cnn', 'layers', 0, 'kernel'), ('config', 'hidden_size'))
    """
    if not isinstance(path, str):
        return tuple(path)
    return tuple(int(i) if i else name for i, name in _STEP.findall(path))


def dotted(loc: Loc) -> str:
    """A ``loc`` as people write it: ``cnn.layers[0].kernel``."""
    return "".join(
        f"[{step}]" if isinstance(step, int) else f".{step}" if n else step
        for n, step in enumerate(loc)
    )


@dataclasses.dataclass(frozen=True, init=False)
class Problem:
    """One bad value: where it is, a message a user can act on, and the value given.

    >>> Problem("cnn.layers[0].kernel", "Kernel must be at least 1 (got 0).", 0).loc
    ('cnn', 'layers', 0, 'kernel')
    """

    loc: Loc
    message: str
    input: object = dataclasses.field(compare=False)  # the value as given; not part of equality

    def __init__(self, loc: str | Sequence[str | int], message: str, input: object = None):
        object.__setattr__(self, "loc", as_loc(loc))
        object.__setattr__(self, "message", message)
        object.__setattr__(self, "input", input)

    @property
    def field(self) -> str:
        """The path as one string: ``batch_size``, ``config.hidden_size``."""
        return dotted(self.loc)

    @property
    def key(self) -> str:
        """The top-level key the bad value sits under: the input or control to fix."""
        return str(self.loc[0]) if self.loc else ""


class NnmemError(ValueError):
    """Bad input, with every problem found, each naming its field.

    >>> err = NnmemError.single("batch_size", "Batch size must be a whole number (got 0).")
    >>> err.field, str(err)
    ('batch_size', 'Batch size must be a whole number (got 0).')
    """

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        if not self.problems:
            raise ValueError("NnmemError needs at least one problem")
        super().__init__(" ".join(p.message for p in self.problems))

    @classmethod
    def single(cls, field: str | Sequence[str | int], message: str) -> NnmemError:
        """Build the error for one bad field."""
        return cls([Problem(field, message)])

    @property
    def field(self) -> str:
        """The first field at fault."""
        return self.problems[0].field


def plain_fatal(error: BaseException) -> str:
    """What a page says when answering failed for a reason that is not a bad value: plain
    words, never the exception's class name, its text cut short.

    >>> plain_fatal(RecursionError("maximum recursion depth exceeded"))
    'The input is nested too deeply to read: simplify it and try again.'
    >>> plain_fatal(ZeroDivisionError("division by zero"))
    'nnmem could not answer this input (division by zero); the last result stays.'
    """
    if isinstance(error, RecursionError):
        return "The input is nested too deeply to read: simplify it and try again."
    if isinstance(error, MemoryError):
        return "The input is too large to work out here: try smaller values."
    why = " ".join(str(error).split())[:200] or "an internal error"
    return f"nnmem could not answer this input ({why}); the last result stays."
