"""One declaration per source, `lakehouse/defs/sources/<source>/defs.yaml`: its columns, types,
rules, keys, history, partitioning, lookups and dimension.

Bronze uses the column names to report what a file lacks or adds; silver, the tables, the
checks, the landing sensor and the dimensions are derived from the same declarations, so
adding a source is adding a folder with one file (README, "Adding a source").
"""

from lakehouse.contracts.declared import DeclarationError, in_dependency_order, load_declarations
from lakehouse.contracts.model import Column, SourceContract

__all__ = ["Column", "SourceContract", "CONTRACTS", "DeclarationError", "contract_for", "in_dependency_order"]

_loaded: dict[str, SourceContract] | None = None


def __getattr__(name: str):
    """`CONTRACTS`, read on first use (so a wrong declaration is an error the caller can report,
    not an import failure of every module that names the package); one dict per process."""
    global _loaded
    if name == "CONTRACTS":
        if _loaded is None:
            _loaded = load_declarations()
        return _loaded
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def contract_for(source: str) -> SourceContract:
    contracts = __getattr__("CONTRACTS")  # a module's own code does not go through its __getattr__
    try:
        return contracts[source]
    except KeyError:
        raise KeyError(f"no contract for source {source!r}; known: {', '.join(contracts)}") from None
