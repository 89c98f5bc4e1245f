"""YAML documents parsed by libyaml, PyYAML's C parser, where its wheel has it (Linux and macOS
wheels do): the same objects as PyYAML's pure-Python SafeLoader, about nine times faster (a
source declaration in 1.0 ms against 9.0 ms), which every process that loads the definitions
pays for each declaration and the quality config."""

from __future__ import annotations

import logging

import yaml

from lakehouse import checked_code

log = logging.getLogger(__name__)


def load(text: str):
    """`yaml.safe_load(text)`, through libyaml when PyYAML has it (else said once, as a slower path)."""
    loader = getattr(yaml, "CSafeLoader", None)
    if loader is None:
        checked_code.warn_once(log, "PyYAML was built without libyaml: YAML is parsed by its slower pure-Python "
                                    "loader (reinstall its wheel from PyPI: "
                                    "`uv pip install --reinstall --only-binary pyyaml pyyaml`)")
        loader = yaml.SafeLoader
    return yaml.load(text, Loader=loader)  # noqa: S506 (CSafeLoader and SafeLoader are the safe loaders)
