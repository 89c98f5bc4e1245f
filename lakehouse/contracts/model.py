"""The shape of a contract. Plain frozen dataclasses: easy to read, diff and test.

A column declares its target type and the rules a value must meet. Rules that
fail send the row to `silver.quarantine` (action "quarantine") or keep it with the
value nulled and a flag set (action "flag"). Rule names are stable
(`<column>.<rule>`): they appear in the quarantine table, metadata and checks.
"""

from __future__ import annotations

from dataclasses import dataclass

QUARANTINE, FLAG = "quarantine", "flag"
SNAPSHOT, EVENTS = "snapshot", "events"

# Rule kinds, in the order they are evaluated and listed.
REQUIRED = "required"  # no value at all (null, empty or only spaces)
INVALID = "invalid"  # a value that does not parse as the column's type
NOT_ACCEPTED = "not_accepted"  # parsed, but not one of the accepted values
PATTERN = "pattern"  # parsed, but does not match the pattern
OUT_OF_RANGE = "out_of_range"  # parsed, but outside [min, max]
IN_FUTURE = "in_future"  # a date after the day it was ingested
MALFORMED = "record.malformed"  # the record itself did not parse in bronze


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # string | int | long | decimal(p,s) | date | timestamp
    description: str
    required: bool = False
    aliases: tuple[str, ...] = ()  # other header names that mean this column
    parse: str | None = None  # date format such as dd/MM/yyyy, or epoch_ms for timestamps
    normalize: str | None = None  # lower | upper | phone
    accepted: tuple[str, ...] | None = None
    pattern: str | None = None  # regular expression the normalised value must match
    pattern_action: str = QUARANTINE
    min_value: float | str | None = None  # a number, or an ISO date for date columns
    min_exclusive: bool = False
    max_value: float | str | None = None
    not_after_ingest: bool = False  # dates: a record cannot be dated after the day it landed

    def rule(self, kind: str) -> str:
        return f"{self.name}.{kind}"

    def rules(self) -> list[tuple[str, str]]:
        """(rule name, action) for every rule this column declares."""
        out = []
        if self.required:
            out.append((self.rule(REQUIRED), QUARANTINE))
        if self.type != "string":
            out.append((self.rule(INVALID), QUARANTINE))
        if self.accepted:
            out.append((self.rule(NOT_ACCEPTED), QUARANTINE))
        if self.pattern:
            out.append((self.rule(PATTERN), self.pattern_action))
        if self.min_value is not None or self.max_value is not None:
            out.append((self.rule(OUT_OF_RANGE), QUARANTINE))
        if self.not_after_ingest:
            out.append((self.rule(IN_FUTURE), QUARANTINE))
        return out


@dataclass(frozen=True)
class Lookup:
    """Enrich from another source's current version, as of the row's ingest date.

    A key with no match is kept and flagged `flag`, never dropped.
    """

    column: str  # our column holding the key
    source: str  # the source looked up
    key: str  # its key column
    bring: tuple[str, ...]  # its columns copied onto our rows
    flag: str  # e.g. unknown_customer


GRAINS = ("day", "month", "year")  # Iceberg partition transforms a silver table may be stored by


@dataclass(frozen=True)
class Partition:
    """How silver.<source> is stored: an Iceberg transform of one date column (declared or derived)."""

    column: str
    grain: str = "month"  # day | month | year


FORMATS = ("csv", "json", "parquet")  # csv: .csv and .txt; json: .json, .ndjson, .jsonl; each also .gz
DEFAULT_DOMAIN = "retail"  # a source's files land under retail/<source>/ unless it declares a prefix


@dataclass(frozen=True)
class Landing:
    """Where a source's files land, `<prefix>ingest_date=YYYY-MM-DD/<file>`, and how they are read."""

    prefix: str = ""  # under the landing root, '/'-separated, ending in '/'; "" is retail/<source>/
    formats: tuple[str, ...] = FORMATS  # the file formats accepted; another is rejected with the reason
    delimiter: str | None = None  # delimited text: None sniffs ',', ';', '|' or tab file by file
    encoding: str | None = None  # delimited text: None reads UTF-8 and falls back to Windows-1252 (Latin-1's superset)


@dataclass(frozen=True)
class SourceContract:
    name: str
    description: str
    columns: tuple[Column, ...]
    keys: tuple[str, ...]
    history: str = EVENTS  # events: immutable facts; snapshot: full daily copies, latest ingest wins
    lookups: tuple[Lookup, ...] = ()
    owner: str = "team:data-platform"
    landed_as: str = ""  # how the files usually arrive, for docs and the UI
    partition: Partition | None = None  # silver's storage partitioning; none: unpartitioned
    dimension: str | None = None  # gold keeps a current-version dimension of it, gold.<dimension>
    derived: tuple[Column, ...] = ()  # columns silver computes (transforms/silver.py `derive`): name, type, description
    landing: Landing = Landing()

    @property
    def prefix(self) -> str:
        """Where the source's ingest-date folders are, relative to the landing root."""
        return self.landing.prefix or f"{DEFAULT_DOMAIN}/{self.name}/"

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")

    def rules(self) -> list[tuple[str, str]]:
        """Every (rule, action) of the contract, the record rule first."""
        return [(MALFORMED, QUARANTINE)] + [r for c in self.columns for r in c.rules()]

    def quarantine_rules(self) -> list[str]:
        return [name for name, action in self.rules() if action == QUARANTINE]

    def flags(self) -> list[str]:
        return [name for name, action in self.rules() if action == FLAG] + [lk.flag for lk in self.lookups]
