"""The shape of a contract. Plain frozen dataclasses: easy to read, diff and test."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # target type in silver: string, long, int, decimal(12,2), date, timestamp
    description: str
    required: bool = False


@dataclass(frozen=True)
class SourceContract:
    name: str
    description: str
    columns: tuple[Column, ...]
    keys: tuple[str, ...]
    owner: str = "team:data-platform"
    landed_as: str = ""  # how the files usually arrive, for docs and the UI
    extra: dict = field(default_factory=dict)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")
