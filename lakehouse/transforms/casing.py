"""Upper and lower case as Python's `str.upper()`/`str.lower()` give them, on both engines.

Python applies Unicode's full case mapping: 'straße' upper-cases to 'STRASSE', 'ﬁ' to 'FI',
'İ' lower-cases to 'i̇' and a capital sigma ending a word to 'ς'. DuckDB maps each
character to one character ('STRAẞE', 'ﬁ', 'i', 'σ'), and Java (so Spark) decides a final
sigma by its own word rule ('A1Σ' to 'a1ς', where Python and Unicode give 'a1σ'). A key
normalised `upper` would be one customer on Spark and another on DuckDB. So on DuckDB a value
holding one of these characters is rewritten by two macros, defined on each connection that
runs the transforms (`define_duckdb_macros`), and on Spark a capital sigma is lower-cased
before Java sees it; a value without them costs one test.
"""

from __future__ import annotations

import functools

from lakehouse.transforms import on_duckdb

UPPER_MACRO, LOWER_MACRO = "lakehouse_upper", "lakehouse_lower"

# Python's rule for a capital sigma (unicodeobject.c, handle_capital_sigma; Unicode's
# Final_Sigma): it is final when, skipping case-ignorable characters, a cased character comes
# before it and none comes after. RE2 (DuckDB) has no lookaround, so the context is matched and
# put back (\1 and \2; $1 and $2 in java.util.regex, Spark, which reads the same pattern); a match
# ends on a character that is neither, so matches never overlap one another's context.
# Case-ignorable: marks, format characters, modifier letters and symbols, and the apostrophes,
# periods and colons that can sit inside a word (Word_Break MidLetter, MidNumLet, Single_Quote).
# Cased: letters with case, and the few others Unicode calls lowercase or uppercase (ª, º, Roman
# numerals, circled and squared letters).
_IGNORABLE = (r"\p{Mn}\p{Me}\p{Cf}\p{Lm}\p{Sk}'.:\x{B7}\x{387}\x{55F}\x{5F4}\x{2018}\x{2019}\x{2024}"
              r"\x{2027}\x{FE13}\x{FE52}\x{FE55}\x{FF07}\x{FF0E}\x{FF1A}")
_CASED = (r"\p{Lu}\p{Ll}\p{Lt}\x{AA}\x{BA}\x{2160}-\x{217F}\x{24B6}-\x{24E9}\x{1F130}-\x{1F149}"
          r"\x{1F150}-\x{1F169}\x{1F170}-\x{1F189}")
FINAL_SIGMA = f"([{_CASED}][{_IGNORABLE}]*)\u03a3([{_IGNORABLE}]*(?:[^{_CASED}{_IGNORABLE}]|$))"


@functools.cache
def special_upper() -> dict[str, str]:
    """Characters whose upper case is several characters (SpecialCasing.txt's unconditional
    mappings, 102 in Unicode 14: all in the Basic Multilingual Plane, below U+FB18)."""
    return {c: c.upper() for c in map(chr, range(0x10000)) if len(c.upper()) > 1}


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def duckdb_macros() -> list[str]:
    """The statements that define the two macros on a DuckDB connection (temporary: per connection)."""
    specials = special_upper()
    replaced = "v"
    for char, upper in specials.items():  # the characters first, then DuckDB's upper for the rest
        replaced = f"replace({replaced}, {_sql_text(char)}, {_sql_text(upper)})"
    any_special = "[" + "".join(f"\\x{{{ord(c):X}}}" for c in specials) + "]"
    return [
        f"CREATE OR REPLACE TEMP MACRO {UPPER_MACRO}(v) AS CASE WHEN regexp_matches(v, {_sql_text(any_special)}) "
        f"THEN upper({replaced}) ELSE upper(v) END",
        f"CREATE OR REPLACE TEMP MACRO {LOWER_MACRO}(v) AS CASE WHEN regexp_matches(v, '[\u0130\u03a3]') "
        f"THEN lower(regexp_replace(replace(v, '\u0130', 'i\u0307'), {_sql_text(FINAL_SIGMA)}, '\\1\u03c2\\2', 'g')) "
        "ELSE lower(v) END",
    ]


def define_duckdb_macros(conn) -> None:
    for statement in duckdb_macros():
        conn.execute(statement)


def upper(F, value):
    """Java's upper case is Python's (the characters of Unicode versions Java 17 lacks aside)."""
    return F.call_function(UPPER_MACRO, value) if on_duckdb(F) else F.upper(value)


def lower(F, value):
    if on_duckdb(F):
        return F.call_function(LOWER_MACRO, value)
    sigmas = F.regexp_replace(F.regexp_replace(value, FINAL_SIGMA, "$1\u03c2$2"), "\u03a3", "\u03c3")
    return F.when(value.contains("\u03a3"), F.lower(sigmas)).otherwise(F.lower(value))
