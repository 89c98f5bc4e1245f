"""`RetailSource`: the Dagster component type of a source declaration
(`lakehouse/defs/sources/<source>/defs.yaml`, `type: lakehouse.components.RetailSource`).

Its fields are the YAML's schema, which Dagster shows in the UI's docs; the values are read
into the source's contract by `lakehouse.contracts.declared`, the one reader (plain YAML, so
transforms need no Dagster), which also checks them across sources.
"""

from __future__ import annotations

from typing import Annotated, Optional

import dagster as dg

from lakehouse.contracts.declared import SOURCES_DIR, contract_from_attributes
from lakehouse.contracts.model import Column, Lookup, Partition, SourceContract


def _as_is(context, value):  # the contract dataclasses are validated by pydantic already
    return value


def _typed(annotation):
    return Annotated[annotation, dg.Resolver(_as_is, model_field_type=annotation)]


class RetailSource(dg.Component, dg.Model, dg.Resolvable):
    """A source of the landing zone, `<landing>/retail/<name>/ingest_date=YYYY-MM-DD/<file>`.

    Declares its columns (types, parse formats, rules), business keys, history, silver's
    partitioning, lookups and dimension. Raw, bronze and silver assets, their checks and
    tables, the landing sensor's known sources, the snapshot schedule and the dimensions
    follow from it (README, "Adding a source").
    """

    name: str
    description: str
    columns: _typed(list[Column])
    keys: list[str]
    history: str = "events"
    lookups: _typed(list[Lookup]) = []
    owner: str = "team:data-platform"
    landed_as: str = ""
    partition: _typed(Optional[Partition]) = None
    dimension: Optional[str] = None
    derived: _typed(list[Column]) = []

    def contract(self) -> SourceContract:
        where = str(SOURCES_DIR / self.name / "defs.yaml")
        return contract_from_attributes(self.model_dump(exclude_unset=True), where)

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        # The project's Definitions (lakehouse/wiring.py) build every source's assets from
        # the declarations with the run's settings; here the declaration is checked.
        self.contract()
        return dg.Definitions()


def component_docs() -> dict:
    """Code-location metadata from which the UI's docs show `RetailSource` (its schema and an example).

    Dagster 1.13 puts this entry on definitions loaded through its component tree, which
    this project does not use at load (the tree costs about 2 s per load, paid by every run
    worker); the entry is built here the same way, for this one component.
    """
    from dagster.components.core.snapshot import get_package_entry_snap
    from dagster_shared.serdes.objects.package_entry import EnvRegistryKey, json_for_all_components

    snap = get_package_entry_snap(EnvRegistryKey(namespace=__name__, name=RetailSource.__name__), RetailSource)
    return {"plugin_component_types_json": dg.MetadataValue.json(json_for_all_components([snap]))}
