"""`RetailSource`: the Dagster component type of a source declaration
(`lakehouse/defs/sources/<source>/defs.yaml`, `type: lakehouse.components.RetailSource`).

Its fields are the YAML's schema, which Dagster shows in the UI's docs; the values are read
into the source's contract by `lakehouse.contracts.declared`, the one reader (plain YAML, so
transforms need no Dagster), which also checks them across sources.

The component builds its source's assets: the raw landing prefix, the bronze load with its
checks and the silver table with its checks. Loaded alone (`build_defs`, as Dagster's
component loader does), its bronze is a step of its own; in the project's code location
(`lakehouse/wiring.py`) the bronze of every source is one step per ingest date, so that a
day's sources reach automation together.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Optional

import dagster as dg

from lakehouse import yamltext
from lakehouse.contracts.declared import contract_from_attributes, declaration_file
from lakehouse.contracts.model import Column, Landing, Lookup, Partition, SourceContract
from lakehouse.settings import Settings, load_settings

# The asset modules are imported where the assets are built: they read every declaration on
# import, and `dg check yaml` imports this module to check each file against the schema.


def _as_is(context, value):  # the contract dataclasses are validated by pydantic already
    return value


def _typed(annotation):
    return Annotated[annotation, dg.Resolver(_as_is, model_field_type=annotation)]


class RetailSource(dg.Component, dg.Model, dg.Resolvable):
    """A source of the landing zone, `<landing root>/<prefix>ingest_date=YYYY-MM-DD/<file>`.

    Declares where its files land and how they are read (prefix, formats, delimiter,
    encoding), its columns (types, parse formats, rules), business keys, history, silver's
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
    landing: _typed(Optional[Landing]) = None

    def contract(self) -> SourceContract:
        where = str(declaration_file(self.name))
        return contract_from_attributes(self.model_dump(exclude_unset=True), where)

    def raw_spec(self, settings: Settings, partitions: dg.PartitionsDefinition) -> dg.AssetSpec:
        from lakehouse.assets.raw import raw_spec

        return raw_spec(self.contract(), settings.landing_uri, partitions)

    def silver_asset(self, settings: Settings, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
        from lakehouse.assets.silver import build_silver_asset

        return build_silver_asset(self.contract(), partitions, settings.engine)

    def definitions(self, settings: Settings) -> dg.Definitions:
        """This source alone, raw to silver, under `settings`."""
        from lakehouse.assets.bronze import build_bronze_assets
        from lakehouse.partitions import daily_partitions

        partitions = daily_partitions(settings.start_date)
        return dg.Definitions(assets=[
            self.raw_spec(settings, partitions),
            build_bronze_assets(partitions, [self.contract()], name=f"bronze_{self.name}"),
            self.silver_asset(settings, partitions),
        ])

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return self.definitions(load_settings())


def declared_sources() -> list[RetailSource]:
    """Each `defs.yaml` as its component, resolved from its attributes as Dagster's loader does.

    The code location builds these itself rather than walking Dagster's component tree,
    whose load imports every installed component library (about 1 s per process, paid by
    each run worker); tests/test_declarations.py shows both give the same assets.
    """
    from lakehouse.contracts import CONTRACTS  # checked across sources first, errors naming the file

    return list(_resolved(tuple(declaration_file(name).read_text("utf-8") for name in CONTRACTS)))


@lru_cache(maxsize=4)
def _resolved(texts: tuple[str, ...]) -> tuple[RetailSource, ...]:
    """The components of these declarations' texts, resolved once per process for the same texts:
    Dagster's resolution writes each document out as YAML and parses it again to locate its
    errors (pure-Python PyYAML), about half of `build_definitions`, which tests call again and
    again. The components are shared: callers read them, never change them."""
    return tuple(RetailSource.resolve_from_dict(yamltext.load(text)["attributes"]) for text in texts)


def component_docs() -> dict:
    """Code-location metadata from which the UI's docs show `RetailSource` (its schema and an example).

    Dagster 1.13 puts this entry on definitions loaded through its component tree, which
    this project does not use at load (the tree costs about 2 s per load, paid by every run
    worker); the entry is built here the same way, for this one component, once per process
    (its JSON schema and example YAML were a quarter of `build_definitions`); each call gets a dict
    of its own around the one shared, unchanged value.
    """
    return dict(_component_docs())


@lru_cache(maxsize=1)
def _component_docs() -> dict:
    from dagster.components.core.snapshot import get_package_entry_snap
    from dagster_shared.serdes.objects.package_entry import EnvRegistryKey, json_for_all_components

    snap = get_package_entry_snap(EnvRegistryKey(namespace=__name__, name=RetailSource.__name__), RetailSource)
    return {"plugin_component_types_json": dg.MetadataValue.json(json_for_all_components([snap]))}
