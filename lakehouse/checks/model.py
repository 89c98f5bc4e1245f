"""What a check is and what one evaluation of it found."""

from __future__ import annotations

from dataclasses import dataclass, field

WARN, ERROR = "WARN", "ERROR"


@dataclass(frozen=True)
class CheckSpec:
    """A check of one asset: its name, severity and threshold (from the quality config)."""

    name: str  # stable, e.g. rule:qty.out_of_range, keys_unique, references:customers
    severity: str  # WARN or ERROR; ERROR blocks the publish and everything downstream
    description: str
    max_rows: int | None = None  # passes while the observed count is <= max_rows
    max_share: float | None = None  # passes while the observed share is <= max_share
    options: dict = field(default_factory=dict)  # check-specific settings, e.g. max_age_hours

    @property
    def blocking(self) -> bool:
        return self.severity == ERROR

    @property
    def threshold(self) -> float | None:
        if self.max_share is not None:
            return self.max_share
        return self.max_rows if self.max_rows is not None else self.options.get("max_age_hours")


@dataclass(frozen=True)
class CheckOutcome:
    spec: CheckSpec
    passed: bool
    observed: float | int | None
    message: str
    sample: tuple = ()  # a few offending rows, as dicts
    details: dict = field(default_factory=dict)
    partition: str | None = None  # the day evaluated, when a check is per partition

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def blocking(self) -> bool:
        return self.spec.blocking

    @property
    def severity(self) -> str:
        return self.spec.severity
