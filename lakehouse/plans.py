"""A DuckDB step's SQL for a pure transform, kept as a template of its inputs' view names.

sqlframe builds a transform's SQL anew on every call, copying its growing query tree on each
operation: silver's classification alone was 13% of a small day's CPU (py-spy), for SQL that
is the same every day but for the names of the views it reads. `Engine.planned` runs the
transform once per process and input shape, keeps the statements it made (the views and
tables of its `cut`s, then the result) with every view name of ours replaced by a slot, and
later only fills the slots with the new names. Pure string work, no DuckDB here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PLANS_KEPT = 1_000  # plans kept per process (a few per transform and source); beyond, they are forgotten and made again
# How sqlframe and the Engine write the name of a view or table of ours: quoted, `_lh_` and a number.
# (A string literal holding such a quoted name would be taken for one: our transforms' literals are
# contract values and labels, never names of ours.)
_OURS = re.compile(r'"(_lh_\d+)"')


@dataclass(frozen=True)
class Plan:
    """The statements of one transform: `made` the CREATE statements of its intermediates (kind,
    template), in order, then the query of its result; a template is text parts and slot numbers,
    slot i being the i-th frame given (a frame given twice has two), then the intermediates in the
    order they were made."""

    made: tuple[tuple[str, tuple], ...]
    result: tuple


def template(sql: str, slots: dict[str, int]) -> tuple | None:
    """`sql` with each name of ours replaced by its slot; None if it names one that is not in `slots`
    (a view the transform reached some other way: its SQL cannot be reused)."""
    parts = _OURS.split(sql)  # text, name, text, name, ..., text
    out: list = []
    for i, part in enumerate(parts):
        if i % 2 == 0:
            out.append(part)
        elif part in slots:
            out.append(slots[part])
        else:
            return None
    return tuple(out)


def plan_of(inputs: list[str], made: list[tuple[str, str, str]], result: str) -> Plan | None:
    """The plan of a transform that read the views `inputs`, made the intermediates `made`
    ((kind, its SELECT, its name), in order) and ended with the query `result`; None if any of
    its SQL names a view of ours that is neither."""
    slots = {name: i for i, name in enumerate(inputs)}  # a frame given twice: either of its slots, the same view
    steps = []
    for k, (kind, sql, name) in enumerate(made):
        shape = template(sql, slots)
        if shape is None:
            return None
        steps.append((kind, shape))
        slots[name] = len(inputs) + k  # where the replay puts it: after every input, repeats included
    final = template(result, slots)
    return None if final is None else Plan(tuple(steps), final)


def render(shape: tuple, names: list[str]) -> str:
    """A template's SQL with slot i as the quoted name `names[i]`."""
    return "".join(part if isinstance(part, str) else f'"{names[part]}"' for part in shape)
