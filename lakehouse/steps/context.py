"""What a step works with and hands back: its context (tables, engine, run) and its result."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
from pyiceberg.expressions import AlwaysTrue, BooleanExpression

from lakehouse.checks.model import CheckOutcome
from lakehouse.contracts.declared import misfit
from lakehouse.iceberg import IncompatibleChange, TableStore, WriteResult
from lakehouse.partitions import partition_props
from lakehouse.resources.engine import Engine
from lakehouse.tables import TableDef


AFFECTED = "lakehouse.affected."  # snapshot property prefix: the dates a write touched
# Snapshot property of a fact write: the silver orders snapshot it was built from, so a mart
# audits against that silver and not one a later silver write has moved on since.
BUILT_FROM_SILVER = "lakehouse.built-from.silver-orders"
COLUMNS = "lakehouse.columns"  # snapshot property: the columns of what was written (schema drift)
# A partition that touched no dates still runs, as a no-op write, so every check reports.
NO_DATES = ["1900-01-01"]


@dataclass
class StepResult:
    table: TableDef
    write: WriteResult | None
    counts: dict[str, int] = field(default_factory=dict)
    affected_dates: list[str] = field(default_factory=list)
    by_day: dict[str, dict[str, int]] = field(default_factory=dict)  # per-partition counts of a range run

    @property
    def checks(self) -> list[CheckOutcome]:
        return self.write.audit if self.write else []

    @property
    def snapshot_id(self) -> int | None:
        return self.write.snapshot_id if self.write else None

    @property
    def published(self) -> bool:
        return self.write is None or self.write.published

    @property
    def branch(self) -> str | None:
        return self.write.branch if self.write else None


@dataclass(frozen=True)
class StepContext:
    store: TableStore
    engine: Engine | None  # None for steps that need no engine (bronze)
    run_id: str

    def props(self, asset: str, keys: list[str] | None) -> dict[str, str]:
        return {"dagster.run_id": self.run_id, "dagster.asset_key": asset, **partition_props(keys)}

    def ensure(self, *tables: TableDef) -> None:
        for t in tables:
            try:
                self.store.ensure_table(t.identifier, t.schema, t.partition_by, declared=dict(t.declared))
            except IncompatibleChange as exc:
                if not t.declared:
                    raise
                source = t.identifier.split(".", 1)[1]  # a declared table: name the file to fix
                raise IncompatibleChange(misfit(source, str(exc))) from None

    def read(self, table: TableDef, where: BooleanExpression = AlwaysTrue(), columns=("*",), snapshot_id=None) -> pa.Table:
        self.ensure(table)
        return self.store.read(table.identifier, where, tuple(columns), snapshot_id)
