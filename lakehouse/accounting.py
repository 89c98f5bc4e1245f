"""The silver accounting law, counted in the tables: where every landed row went.

Per source and ingest date: bronze rows = silver + quarantined + duplicates + superseded
(+ unchanged for snapshot sources). Counted from bronze, silver and silver.quarantine,
not from a step's own bookkeeping, so it checks what was written. The silver step
audits it for every day its write touched (a blocking check); `lakehouse status` shows it.
"""

from __future__ import annotations

import json

import pyarrow as pa
from pyiceberg.expressions import And, EqualTo, In

from lakehouse.iceberg import TableStore
from lakehouse.tables import QUARANTINE, bronze_table, silver_table
from lakehouse.transforms.bronze import INGEST_DATE
from lakehouse.transforms.silver import DUPLICATE, QUARANTINED, SILVER, SUPERSEDED, UNCHANGED

# Snapshot property of snapshot sources' silver writes: {ingest date: unchanged rows} of the days written.
UNCHANGED_PROP = "lakehouse.unchanged"
PARTS = (SILVER, QUARANTINED, DUPLICATE, SUPERSEDED, UNCHANGED)


def accounting(store: TableStore, source: str, days, silver_snapshot: int | None = None,
               unchanged: dict[str, int] | None = None) -> dict[str, dict[str, int]]:
    """{ingest date: {"bronze": n, "silver": n, "quarantine": n, "duplicate": n, "superseded": n, "unchanged": n}}.

    `silver_snapshot`: read silver at that snapshot (an audit branch head). `unchanged`:
    snapshot sources' unchanged rows per day, which no table holds (see `unchanged_by_day`).
    """
    days = sorted(days)
    if not days:
        return {}
    bronze = store.read(bronze_table(source).identifier, In(INGEST_DATE, days), (INGEST_DATE,))
    silver = store.read(silver_table(source).identifier, In(INGEST_DATE, days), (INGEST_DATE,), silver_snapshot)
    aside = store.read(QUARANTINE.identifier, And(EqualTo("source", source), In("ingest_date", days)),
                       ("ingest_date", "rules"))
    set_aside: dict[tuple[str, str], int] = {}
    for row in aside.to_pylist():
        key = (row["ingest_date"].isoformat(), ",".join(row["rules"] or []))
        set_aside[key] = set_aside.get(key, 0) + 1
    return tally(days, _day_counts(bronze, INGEST_DATE), _day_counts(silver, INGEST_DATE), set_aside, unchanged)


def tally(days, bronze: dict[str, int], silver: dict[str, int], set_aside: dict[tuple[str, str], int],
          unchanged: dict[str, int] | None = None) -> dict[str, dict[str, int]]:
    """The law's parts per day from rows per day (`bronze`, `silver`) and quarantined rows per
    (day, rules joined by commas): counted here from the tables, or by the engine in an audit."""
    out = {d: {"bronze": 0, **dict.fromkeys(PARTS, 0), UNCHANGED: (unchanged or {}).get(d, 0)} for d in days}
    for counts, name in ((bronze, "bronze"), (silver, SILVER)):
        for d, n in counts.items():
            out[d][name] = n
    for (d, rules), n in set_aside.items():
        # Set aside only as a duplicate or a superseded version: counted as that, not as quarantined.
        out[d][rules if rules in (DUPLICATE, SUPERSEDED) else QUARANTINED] += n
    return out


def balanced(counts: dict[str, int]) -> bool:
    return counts["bronze"] == sum(counts[p] for p in PARTS)


def unchanged_by_day(store: TableStore, source: str) -> dict[str, int]:
    """The latest recorded unchanged count of every day of a snapshot source (newest write wins)."""
    out: dict[str, int] = {}
    for snapshot in store.main_history(silver_table(source).identifier):
        summary = snapshot.summary.additional_properties if snapshot.summary else {}
        for day, n in json.loads(summary.get(UNCHANGED_PROP, "{}")).items():
            out.setdefault(day, int(n))
    return out


def _day_counts(table: pa.Table, column: str) -> dict[str, int]:
    if table.num_rows == 0:
        return {}
    grouped = table.group_by(column).aggregate([([], "count_all")])
    return {r[column].isoformat(): r["count_all"] for r in grouped.to_pylist()}
