"""One declarative contract per source: the columns we expect, their types and keys.

Bronze uses the column names to report what a file lacks or adds; silver and the
data-quality checks are derived from the same declarations, so adding a source is
adding a contract.
"""

from lakehouse.contracts.model import Column, SourceContract
from lakehouse.contracts.retail import CONTRACTS

__all__ = ["Column", "SourceContract", "CONTRACTS", "contract_for"]


def contract_for(source: str) -> SourceContract:
    try:
        return CONTRACTS[source]
    except KeyError:
        raise KeyError(f"no contract for source {source!r}; known: {', '.join(CONTRACTS)}") from None
