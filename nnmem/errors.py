"""The one error nnmem raises for bad input, naming each field at fault."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One bad value: the field it belongs to and a message a user can act on."""

    field: str
    message: str


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
    def single(cls, field: str, message: str) -> NnmemError:
        """Build the error for one bad field."""
        return cls([Problem(field, message)])

    @property
    def field(self) -> str:
        """The first field at fault."""
        return self.problems[0].field
