"""The source declarations: `lakehouse/defs/sources/<source>/defs.yaml`, read into contracts.

Each file is an instance of the `RetailSource` Dagster component (lakehouse/components.py),
and this module is the one reader of its attributes. It uses plain YAML and the contract
dataclasses, not Dagster, so transforms and the generator can know the sources without
loading Dagster. A mistake in a file is an error that names the file, the field and the fix.
"""

from __future__ import annotations

import codecs
import dataclasses
import datetime as dt
import os
import re
from pathlib import Path

import yaml

from lakehouse import yamltext
from lakehouse.contracts.model import (EVENTS, FLAG, FORMATS, GRAINS, QUARANTINE, SNAPSHOT, Column, Landing, Lookup, Partition,
                                       SourceContract)

# LAKEHOUSE_SOURCES_DIR: declarations kept elsewhere (read at import, before any other setting).
SOURCES_DIR = Path(os.environ.get("LAKEHOUSE_SOURCES_DIR") or Path(__file__).resolve().parents[1] / "defs" / "sources")
COMPONENT_TYPE = "lakehouse.components.RetailSource"
TYPES = re.compile(r"^(string|int|long|date|timestamp|decimal\(\d+,\d+\))$")
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
DATE_FORMAT = re.compile(r"^(dd|MM|yyyy|[-/. ])+$")
PREFIX_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # plain folder names: safe as S3 keys and paths
RESERVED = ("quarantine", "rejected_files", "ingestion_log", "dq_results")  # tables lakehouse keeps beside the sources


def declaration_file(source: str, root: Path = SOURCES_DIR) -> Path:
    return root / source / "defs.yaml"


def misfit(source: str, why: str) -> str:
    """The words for a declaration its existing table cannot follow (`iceberg.refusal` says why)."""
    return f"source declaration {declaration_file(source)} does not fit its table: {why}"


class DeclarationError(ValueError):
    """A source declaration that cannot be used; the message names the file, the field and the fix."""


def _build(cls, values, where: str):
    if not isinstance(values, dict):
        raise DeclarationError(f"{where}: expected a mapping of {cls.__name__} fields, got {values!r}")
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise DeclarationError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
    missing = sorted(f.name for f in dataclasses.fields(cls) if f.name not in values
                     and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
    if missing:
        raise DeclarationError(f"{where}: missing required field(s) {', '.join(missing)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def _column_problem(column: Column) -> str | None:
    """What is wrong with one column's declaration (None: nothing), in words that say the fix."""
    if not NAME.match(column.name):
        return "a column name is lower-case letters, digits and _, starting with a letter"
    if not TYPES.match(column.type):
        return f"type {column.type!r} is not one of string, int, long, decimal(p,s), date, timestamp"
    if column.type == "timestamp" and column.parse != "epoch_ms":
        return "a timestamp column needs parse: epoch_ms (the one timestamp format the transforms read)"
    if column.type == "date" and column.parse is not None and not DATE_FORMAT.match(column.parse):
        return f"parse {column.parse!r} is not a date format made of dd, MM, yyyy and separators (e.g. dd/MM/yyyy)"
    if column.type not in ("date", "timestamp") and column.parse is not None:
        return f"parse applies to date and timestamp columns, not {column.type}"
    if column.normalize not in (None, "lower", "upper", "phone"):
        return f"normalize {column.normalize!r} must be lower, upper or phone"
    if column.pattern_action not in (QUARANTINE, FLAG):
        return f"pattern_action {column.pattern_action!r} must be {QUARANTINE} or {FLAG}"
    if column.accepted is not None and not all(isinstance(v, str) for v in column.accepted):
        return (f"accepted values must be text; quote them in YAML (yes, no, on, off and numbers are read "
                f"otherwise): {list(column.accepted)}")
    if column.pattern is not None:
        try:
            re.compile(column.pattern)
        except re.error as e:
            return f"pattern {column.pattern!r} is not a regular expression ({e})"
    for field in ("min_value", "max_value"):
        if (problem := _bound_problem(column, getattr(column, field))) is not None:
            return f"{field} {problem}"
    return None


def _bound_problem(column: Column, bound) -> str | None:
    """A bound the transforms could not compare would never quarantine anything: refused."""
    if bound is None:
        return None
    if column.type == "string":
        return "applies to numbers, dates and timestamps, not to a string column"
    if column.type in ("date", "timestamp"):
        if isinstance(bound, str) and re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", bound):
            try:
                dt.date.fromisoformat(bound)
                return None
            except ValueError:  # no such day
                pass
        return f"{bound!r} of a {column.type} column must be a date written YYYY-MM-DD, in quotes (e.g. '2020-01-01')"
    if isinstance(bound, bool) or not isinstance(bound, (int, float)):
        return f"{bound!r} of a {column.type} column must be a number"
    return None


def _landing_problem(landing: Landing) -> str | None:
    """What is wrong with a source's `landing:` (None: nothing), in words that say the fix."""
    if landing.prefix:
        segments = landing.prefix.split("/")
        if not landing.prefix.endswith("/") or not all(PREFIX_SEGMENT.match(p) for p in segments[:-1]):
            return (f"prefix {landing.prefix!r} must be folder names (letters, digits, . _ -) separated by '/' and "
                    f"ending in '/', relative to the landing root, e.g. crm/customers/")
    if not landing.formats or not set(landing.formats) <= set(FORMATS):
        return f"formats {list(landing.formats)} must name one or more of {', '.join(FORMATS)}"
    if landing.delimiter is not None and (len(landing.delimiter) != 1 or landing.delimiter in "\r\n\"'"):
        return f"delimiter {landing.delimiter!r} must be one character (not a quote or a line break); omit it to sniff"
    if landing.encoding is not None:
        try:
            codecs.lookup(landing.encoding)
        except LookupError:
            return f"encoding {landing.encoding!r} is not an encoding Python knows (e.g. utf-8, latin-1, cp1252)"
        if 'a;"b"\r\n'.encode(landing.encoding) != b'a;"b"\r\n':
            return (f"encoding {landing.encoding!r} does not write delimiters, quotes and line breaks as ASCII "
                    f"(UTF-16 and UTF-32 do not); the readers take ASCII-compatible encodings such as utf-8, "
                    f"latin-1, cp1252")
    if (landing.delimiter or landing.encoding) and "csv" not in landing.formats:
        return "delimiter and encoding apply to csv files, and formats does not list csv"
    return None


def contract_from_attributes(attributes: dict, where: str) -> SourceContract:
    """A SourceContract from a RetailSource's attributes; `where` names the file in errors."""
    if not isinstance(attributes, dict):
        raise DeclarationError(f"{where}: 'attributes' must be a mapping")
    values = dict(attributes)
    name = values.get("name", "?")
    values["columns"] = tuple(_build(Column, c, f"{where}: columns[{i}]") for i, c in enumerate(values.get("columns") or ()))
    values["derived"] = tuple(_build(Column, c, f"{where}: derived[{i}]") for i, c in enumerate(values.get("derived") or ()))
    values["lookups"] = tuple(_build(Lookup, lk, f"{where}: lookups[{i}]") for i, lk in enumerate(values.get("lookups") or ()))
    if values.get("partition") is not None:
        values["partition"] = _build(Partition, values["partition"], f"{where}: partition")
    if values.get("landing") is not None:
        values["landing"] = _build(Landing, values["landing"], f"{where}: landing")
    contract = _build(SourceContract, values, where)

    if not NAME.match(str(name)) or name in RESERVED:
        raise DeclarationError(f"{where}: name {name!r} must be lower-case letters, digits and _ (starting with a "
                               f"letter) and not one of {', '.join(RESERVED)}, which lakehouse tables use")
    if not contract.columns:
        raise DeclarationError(f"{where}: source {name!r} declares no columns")
    if not contract.keys:
        raise DeclarationError(f"{where}: keys is empty; name the column(s) that identify a record")
    for column in (*contract.columns, *contract.derived):
        problem = _column_problem(column)
        if problem:
            raise DeclarationError(f"{where}: column {column.name}: {problem}")
    for lookup in contract.lookups:
        if lookup.column not in contract.column_names:
            raise DeclarationError(f"{where}: lookup column {lookup.column!r} is not a declared column of {name}")
    names = contract.column_names
    every = [*names, *(c.name for c in contract.derived)]
    if len(set(every)) != len(every):
        raise DeclarationError(f"{where}: a column is declared twice in {every}")
    for key in contract.keys:
        if key not in names:
            raise DeclarationError(f"{where}: key {key!r} is not a declared column; declare it under columns")
    if contract.history not in (EVENTS, SNAPSHOT):
        raise DeclarationError(f"{where}: history {contract.history!r} must be {EVENTS} or {SNAPSHOT}")
    if contract.partition:
        dates = [c.name for c in (*contract.columns, *contract.derived) if c.type == "date"]
        if contract.partition.column not in dates:
            raise DeclarationError(f"{where}: partition column {contract.partition.column!r} is not a date column of "
                                   f"{name}; one of: {', '.join(dates) or 'none (declare a date column)'}")
        if contract.partition.grain not in GRAINS:
            raise DeclarationError(f"{where}: partition grain {contract.partition.grain!r} must be one of "
                                   f"{', '.join(GRAINS)}")
    if problem := _landing_problem(contract.landing):
        raise DeclarationError(f"{where}: landing: {problem}")
    if contract.dimension and contract.history != SNAPSHOT:
        raise DeclarationError(f"{where}: a dimension is kept of snapshot sources only; set history: snapshot "
                               f"or remove dimension")
    return contract


def load_declarations(root: Path = SOURCES_DIR) -> dict[str, SourceContract]:
    """Every `<root>/<source>/defs.yaml`, by source name, in folder order; lookups checked across sources."""
    contracts: dict[str, SourceContract] = {}
    for path in sorted(root.glob("*/defs.yaml")):
        where = str(path)
        try:
            document = yamltext.load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise DeclarationError(f"{where}: not valid YAML: {e}") from None
        if not isinstance(document, dict) or document.get("type") != COMPONENT_TYPE:
            raise DeclarationError(f"{where}: expected 'type: {COMPONENT_TYPE}' and 'attributes:'")
        contract = contract_from_attributes(document.get("attributes"), where)
        if contract.name != path.parent.name:
            raise DeclarationError(f"{where}: name {contract.name!r} differs from its folder {path.parent.name!r}; "
                                   "rename one so they match")
        contracts[contract.name] = contract
    if not contracts:
        raise DeclarationError(f"no source is declared: no {root}/<source>/defs.yaml")
    for contract in contracts.values():
        for lookup in contract.lookups:
            other = contracts.get(lookup.source)
            if other is None:
                raise DeclarationError(f"{root / contract.name / 'defs.yaml'}: lookup source {lookup.source!r} is not "
                                       f"declared; known: {', '.join(contracts)}")
            missing = [c for c in (lookup.key, *lookup.bring) if c not in other.column_names]
            if missing:
                raise DeclarationError(f"{root / contract.name / 'defs.yaml'}: lookup on {lookup.source} names "
                                       f"column(s) {', '.join(missing)} that {lookup.source} does not declare")
    in_dependency_order(contracts)  # refuses a cycle of lookups
    for contract in contracts.values():
        for other in contracts.values():
            if other is not contract and other.prefix.startswith(contract.prefix):
                raise DeclarationError(
                    f"{root / other.name / 'defs.yaml'} and {root / contract.name / 'defs.yaml'}: landing prefix "
                    f"{other.prefix!r} of {other.name} is inside {contract.prefix!r} of {contract.name}, so a file "
                    "there would belong to both; give them separate folders")
    return contracts


def in_dependency_order(contracts: dict[str, SourceContract]) -> list[str]:
    """Source names with every looked-up source before the sources that look it up."""
    done: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in done:
            return
        if name in path:
            raise DeclarationError(f"lookups form a cycle: {' -> '.join((*path, name))}")
        for lookup in contracts[name].lookups:
            visit(lookup.source, (*path, name))
        done.append(name)

    for name in contracts:
        visit(name, ())
    return done
