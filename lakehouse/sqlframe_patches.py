"""Adjustments to sqlframe 4.10: three let it run on sqlglot's compiled build (sqlglotc), three
remove copying it throws away; and sqlglot's own node copy, shortened for the whole process.

sqlframe plans every DataFrame operation by copying and generating sqlglot trees: half of
a small day's time (py-spy: 52% of four small days), and sqlglotc, sqlglot's own mypyc
build, makes a small day 30% faster (README, Benchmarks). sqlframe does not support it, for
three reasons fixed here (a reviewer compared about 400 functions' SQL with the pure-Python
sqlglot's):

- A compiled class cannot be instantiated through a Python subclass, and sqlframe has two:
  - for DuckDB 2 it subclasses sqlglot's DuckDB generator, only to write lambdas as
    `lambda x: ...` (DuckDB 2 no longer reads `x -> ...`); the same rule is applied here
    by a dialect (which stays a Python class) before generating;
  - it subclasses sqlglot's type annotator to give a map lookup (`m['k']`) its value's
    type, for any bracket (`getItem`, `element_at`); here a wrapper does it after the
    annotator's pass.
- The compiled `to_column` checks its declared return type, so `col("*")`, which sqlframe
  (and PySpark's own `select("*", ...)` idiom) relies on, raises where the Python build
  returns a star. Where the compiled check fails, the Python build's steps are taken.

All three behave the same with the pure-Python sqlglot, so the project does too with or
without sqlglotc.

Three more remove copies, and a lookup, whose results sqlframe throws away, measured (py-spy,
four small days) at about 7% of a small day's time; the SQL it generates is unchanged:

- `BaseDataFrame.copy(**kwargs)` deep-copied every attribute, then replaced those in `kwargs`
  (a new expression, every operation), so each operation copied the old query tree once for nothing;
- a DataFrame's step into a CTE copied the query with all its CTEs only to drop them;
- `dialect_to_string`, on every `F.*` call, rebuilt sqlglot's map of dialects, which tries
  to import every dialect module while a dialect of ours (below) is registered; here a
  dialect's name is looked up once, among those already loaded.

And sqlglot's node copy hands each node's position, comments and type to `copy.deepcopy`:
`flat_deepcopy` (below) stands in for it in sqlglot's expression module, which names it as a
global (`sqlglot.expressions.core.deepcopy`, read at each call by its compiled build too).

And one fix: sqlframe's CTE names could collide, merging two different CTEs of a query
(`cte_name`).

Applied when a DuckDB session is made (`resources/engine.py`, `lineage.py`). A sqlframe
without the names replaced here is refused, not silently left unpatched, and so is one whose
CTE naming is not the code the fix was checked against (a digest of its source); the copy
savings replace sqlframe's own functions whole, so they are applied only to the code they
were checked against, and skipped with a warning on any other.
"""

from __future__ import annotations

import copy as _copy
import hashlib
import logging
import re
from uuid import uuid4

import sqlglot
import sqlglot.errors
import sqlglot.expressions as exp
from sqlglot.dialects import DuckDB
from sqlglot.dialects.dialect import Dialect
from sqlglot.expressions.core import Expr as _Node
from sqlglot.optimizer.annotate_types import TypeAnnotator

from lakehouse import checked_code
from lakehouse.memo import remembered

log = logging.getLogger(__name__)
# sha256 (first 16 hex digits) of the source of each function replaced whole, in sqlframe 4.10.0.
CHECKED_SOURCES = {
    "BaseDataFrame.copy": "2de6c5a36e1ad478",
    "BaseDataFrame._create_cte_from_expression": "09bc32ff1d081865",
    "BaseDataFrame._convert_leaf_to_cte": "75697e414274bda2",  # the only caller of the one above
    # Not replaced, but `leaf_to_cte` relies on them: the first returns a copy (so its query is the
    # call's own to change in place), the other two build new nodes from it.
    "BaseDataFrame._resolve_pending_hints": "4c56c60888651c8c",
    "BaseDataFrame._add_ctes_to_expression": "9d967ddb751f8b1b",
    "BaseDataFrame._get_outer_select_columns": "fee7e1fe760c711e",
    "dialect_to_string": "0eecc424df2d6c73",
}
# The CTE naming fix (`cte_name`): a correctness fix, so a sqlframe whose naming differs is refused.
CHECKED_NAMING = {"BaseDataFrame._create_hash_from_expression": "a2482d098e36cb34"}


class ColonLambdaDuckDB(DuckDB):
    """sqlglot's DuckDB dialect, writing every lambda in the `lambda x: ...` form."""

    def generate(self, expression, copy=True, **opts):
        if any(not node.args.get("colon") for node in expression.find_all(exp.Lambda)):
            expression = expression.copy()  # never the caller's tree
            for node in expression.find_all(exp.Lambda):
                node.set("colon", True)
            copy = False
        return super().generate(expression, copy=copy, **opts)


class ContainerTypes:
    """sqlframe's ContainerTypeAnnotator (`sqlframe/base/transforms.py`) by wrapping sqlglot's annotator:
    after its pass, a bracket on a map takes the map's value type, innermost first so that
    chained lookups keep their container types."""

    def __init__(self, *args, **kwargs):
        self._annotator = TypeAnnotator(*args, **kwargs)

    def annotate(self, expression):
        expression = self._annotator.annotate(expression)
        for bracket in reversed(list(expression.find_all(exp.Bracket))):  # breadth-first, reversed: inner first
            container = bracket.this.type
            if container is not None and container.is_type(exp.DataType.Type.MAP) and len(container.expressions) > 1:
                bracket.type = container.expressions[1]
        return expression


_COMPILED_TO_COLUMN = exp.to_column
_NAME = re.compile(r"[A-Za-z0-9_]+")  # one name, a canonical header's characters (`2024` too)


_PARSED_COLUMNS: dict = {}  # (path, quoted, id(dialect)) -> (dialect, node): see `to_column`


def to_column(sql_path, quoted=None, dialect=None, copy=True, **kwargs):
    """sqlglot's `to_column`; a path it parses to a node other than a column (`*`) is returned as
    parsed, as the Python build does.

    A name is parsed once per process and dialect, and each call gets a copy of that node: sqlframe
    parses the same few dozen column names again for every operation (`F.col`, each CTE's outer
    columns, each table its catalog is told of), 4.5% of a small day's time (py-spy), where a
    copy costs a fraction of a parse. Keyed by the dialect object itself (kept in the value, so
    its id is not reused), as a dialect's settings may change how it parses."""
    if kwargs or not isinstance(sql_path, str):
        return _parsed_column(sql_path, quoted, dialect, copy, **kwargs)
    return remembered(_PARSED_COLUMNS, (sql_path, quoted, id(dialect)), dialect,
                      lambda: _parsed_column(sql_path, quoted, dialect, copy)).copy()


def _parsed_column(sql_path, quoted=None, dialect=None, copy=True, **kwargs):
    try:
        node = _COMPILED_TO_COLUMN(sql_path, quoted=quoted, dialect=dialect, copy=copy, **kwargs)
    except TypeError:
        if not isinstance(sql_path, str):
            raise
        node = exp.maybe_parse(sql_path, into=exp.Column, dialect=dialect)
        for key, value in kwargs.items():
            node.set(key, value)
        if quoted:
            for identifier in node.find_all(exp.Identifier):
                identifier.set("quoted", True)
    if isinstance(sql_path, str) and _NAME.fullmatch(sql_path) and not _reads_as_column(sql_path, dialect):
        # A column named as SQL reads a keyword, a value, a number or a function (`comment`, `desc`,
        # `null`, `2024`, `current_date`: a landed file's header can be any of them) is a column,
        # quoted. sqlframe put such a name in its SQL as it is: its catalog failed on `null`,
        # `2024` and `current_date`, its table reader on `comment`.
        node = exp.column(sql_path, quoted=True)
        for key, value in kwargs.items():
            node.set(key, value)
        return node
    return node


def _reads_as_column(name: str, dialect) -> bool:
    try:
        return isinstance(sqlglot.parse_one(name, read=dialect), exp.Column)
    except sqlglot.errors.ParseError:
        return False


def copy_frame(self, **kwargs):
    """sqlframe's `BaseDataFrame.copy`: every attribute copied (as sqlglot's `object_to_dict` does),
    except those `kwargs` replaces."""
    kwargs["join_on_uuid"] = str(uuid4())
    kept = {key: value.copy() if hasattr(value, "copy") else _copy.copy(value)
            for key, value in vars(self).items() if key not in kwargs}
    return self.__class__(**kept, **kwargs)


def _cte_without_copying_ctes(create):
    """sqlframe's `_create_cte_from_expression`, which copies `expression` and then drops its CTEs
    from the copy: here they are set aside while it copies. Its only caller, `_convert_leaf_to_cte`,
    passes a copy of its own, read afterwards only for its CTEs (restored here); the CTE's name is
    the hash of the whole expression, as before."""
    def create_cte(self, expression, branch_id, sequence_id, name=None, **kwargs):
        ctes = expression.args.get("with_")
        if ctes is None:
            return create(self, expression, branch_id, sequence_id, name=name, **kwargs)
        name = name or self._create_hash_from_expression(expression)
        expression.set("with_", None)
        try:
            return create(self, expression, branch_id, sequence_id, name=name, **kwargs)
        finally:
            expression.set("with_", ctes)
    create_cte.__wrapped__ = create
    return create_cte


def leaf_to_cte(self, sequence_id=None, name=None):
    """sqlframe's `_convert_leaf_to_cte` (4.10.0), which copies the whole query three times more
    than it needs: the frame `_resolve_pending_hints` returns is already a copy whose query is
    this call's own, and the new select it builds (every CTE in it) is this call's too, so its
    FROM and SELECT are set in place instead of on copies. Otherwise line for line sqlframe's."""
    from sqlframe.base.util import get_tables_from_expression_with_join

    df = self._resolve_pending_hints()
    sequence_id = sequence_id or df.sequence_id
    expression = df.expression  # sqlframe: df.expression.copy()
    from_sequence_ids: set[str] = set()
    if expression.args.get("joins"):
        from_table_names = {table.alias_or_name for table in get_tables_from_expression_with_join(expression)}
        from_sequence_ids = {cte.args["sequence_id"] for cte in expression.ctes
                             if cte.alias_or_name in from_table_names and "sequence_id" in cte.args}
    cte_expression, cte_name = df._create_cte_from_expression(
        expression=expression, branch_id=self.branch_id, sequence_id=sequence_id, name=name)
    new_expression = df._add_ctes_to_expression(exp.Select(), expression.ctes + [cte_expression])
    if expression.args.get("with_") and expression.args["with_"].args.get("recursive"):
        new_expression.args["with_"].set("recursive", True)
    sel_columns = df._get_outer_select_columns(cte_expression)
    new_expression = new_expression.from_(cte_name, copy=False).select(  # sqlframe: copy=True, twice
        *[x.expression for x in sel_columns], copy=False)
    if from_sequence_ids:
        for seq_ids in df.session.name_to_sequence_id_mapping.values():
            if any(sid in from_sequence_ids for sid in seq_ids) and sequence_id not in seq_ids:
                seq_ids.append(sequence_id)
    return df.copy(expression=new_expression, sequence_id=sequence_id)


def cte_name(self, expression):
    """sqlframe's `_create_hash_from_expression` with a name that does not collide: a CTE's name
    is a digest of its SQL, and sqlframe keeps one CTE per name in a query and points every
    reference at it. Its name was `t` and the first 8 decimal digits of a CRC32 of the SQL
    (about 3e7 names), so two different CTEs of one query could share it and be merged, an
    error where their columns differed (seen once, in a silver step's query) and wrong rows
    where they did not. Here: the first 16 hex digits of a SHA-256."""
    from sqlframe.base.session import _BaseSession

    value = expression.sql(dialect=_BaseSession().input_dialect).encode("utf-8")
    return self.session._normalize_string(f"t{hashlib.sha256(value).hexdigest()[:16]}")


def _remembered(dialect_to_string):
    """sqlframe's `dialect_to_string`, each dialect class's name looked up once, among the dialects
    loaded so far where it is one of them (the session's own always is): sqlframe's first imports
    every dialect sqlglot has, 0.3 s of CPU in each process, each run's included."""
    names: dict[type, str] = {}

    def lookup(dialect):
        kind = type(dialect)
        if kind not in names:
            # As sqlframe's own map of class to name does, the last name a class is registered under.
            registry = getattr(Dialect, "_classes", {})  # sqlglot's own, private: without it, sqlframe's lookup
            loaded = [name for name, cls in list(registry.items()) if cls is kind]
            names[kind] = loaded[-1] if loaded else dialect_to_string(dialect)
        return names[kind]
    lookup.__wrapped__ = dialect_to_string
    return lookup


_ATOMS = frozenset({str, int, float, bool, type(None)})


def flat_deepcopy(x, memo=None):
    """`copy.deepcopy`, short for a flat dict or list of plain values (a new one with the same
    values) and for a sqlglot node (its own `__deepcopy__`, without deepcopy's bookkeeping).

    sqlglot's node copy hands each node's position (`{"line", "col", "start", "end"}`, set
    by its parser on every identifier), comments and type to `copy.deepcopy`, which copies a
    four-int dict in a dozen Python calls: most of a small day's planning time (cProfile,
    four small days: 4.4 of the 6.1 s in node copies). The results are the same. Anything
    else, or a call with a memo (where deepcopy keeps shared references shared), goes to
    `copy.deepcopy`.
    """
    if memo is None:
        kind = type(x)
        if kind is dict:
            for k, v in x.items():  # a loop, not all(...): this runs half a million times a day
                if type(k) is not str or type(v) not in _ATOMS:
                    return _copy.deepcopy(x)
            return dict(x)
        if kind is list:
            for v in x:
                if type(v) not in _ATOMS:
                    return _copy.deepcopy(x)
            return list(x)
        if isinstance(x, _Node):
            return x.__deepcopy__({})  # what deepcopy calls, with the memo it would then drop
    return _copy.deepcopy(x, memo)


def apply() -> None:
    import sqlframe
    import sqlframe.base.dataframe as dataframe
    import sqlframe.base.util as util
    import sqlframe.duckdb.session as duckdb_session

    for module, name in ((duckdb_session, "_DuckDBV2"), (dataframe, "ContainerTypeAnnotator")):
        if not hasattr(module, name):
            raise RuntimeError(f"sqlframe {getattr(sqlframe, '__version__', '?')} has no {module.__name__}.{name}, "
                               "which lakehouse/sqlframe_patches.py replaces: check that module against this "
                               "sqlframe, or install the version in requirements.lock")
    duckdb_session._DuckDBV2 = ColonLambdaDuckDB
    dataframe.ContainerTypeAnnotator = ContainerTypes
    exp.to_column = to_column
    _name_ctes(dataframe.BaseDataFrame, getattr(sqlframe, "__version__", "?"))
    _save_copies(dataframe.BaseDataFrame, util)
    _flat_copies()


def _name_ctes(frame, version: str) -> None:
    """`cte_name` in place of sqlframe's CTE naming, once per process; a sqlframe whose naming is not the
    code checked is refused: its names may collide, and a collision merges two CTEs (wrong rows)."""
    if frame._create_hash_from_expression is cte_name:
        return
    (name, digest), = CHECKED_NAMING.items()
    found = checked_code.source_digest(frame, name)
    if found != digest:
        if found is None:
            raise RuntimeError(f"sqlframe {version}'s BaseDataFrame._create_hash_from_expression has no readable source "
                               "(installed without .py files?), so lakehouse/sqlframe_patches.py cannot check that its "
                               "CTE-name fix replaces the code it was written for: install sqlframe with its sources, "
                               "the version in requirements.lock")
        raise RuntimeError(f"sqlframe {version}'s BaseDataFrame._create_hash_from_expression is not the code "
                           "lakehouse/sqlframe_patches.py checked (sqlframe 4.10.0's, whose CTE names collide): check "
                           "whether this sqlframe's CTE names can still collide and update CHECKED_NAMING, or install "
                           "the version in requirements.lock")
    cte_name.__wrapped__ = frame._create_hash_from_expression
    frame._create_hash_from_expression = cte_name


def _flat_copies() -> None:
    """sqlglot's node copy with `flat_deepcopy` (its module's own name for `copy.deepcopy`), once per process."""
    import sqlglot.expressions.core as core

    current = getattr(core, "deepcopy", None)
    if current is flat_deepcopy:
        return
    if current is not _copy.deepcopy:
        checked_code.warn_once(log, "sqlglot's expressions no longer copy through copy.deepcopy (sqlglot.expressions."
                               "core.deepcopy is %s.%s): lakehouse/sqlframe_patches.py's shorter copy is not applied "
                               "(planning is slower, results the same)", getattr(current, "__module__", "?"),
                               getattr(current, "__qualname__", type(current).__name__))
        return
    core.deepcopy = flat_deepcopy


_saving_checked = False


def _save_copies(frame, util) -> None:
    """The three replacements that save copies, once per process, where sqlframe's code is the one checked."""
    global _saving_checked
    if _saving_checked or frame.copy is copy_frame:
        return
    _saving_checked = True
    changed = checked_code.changed(CHECKED_SOURCES, lambda name: util if name == "dialect_to_string" else frame)
    if changed:
        checked_code.warn_once(log, "sqlframe's %s differ from the code lakehouse/sqlframe_patches.py was checked "
                               "against: its copy savings are not applied (planning is slower, results the same)",
                               ", ".join(changed))
        return
    util.dialect_to_string = _remembered(util.dialect_to_string)
    frame._create_cte_from_expression = _cte_without_copying_ctes(frame._create_cte_from_expression)
    leaf_to_cte.__wrapped__ = frame._convert_leaf_to_cte
    frame._convert_leaf_to_cte = leaf_to_cte
    copy_frame.__wrapped__ = frame.copy
    frame.copy = copy_frame
