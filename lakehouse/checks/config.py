"""The quality config: severities and thresholds per check, editable without code changes."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import yaml

from lakehouse import yamltext
from lakehouse.checks.model import ERROR, WARN, CheckSpec

DEFAULT_PATH = Path(__file__).resolve().parents[1] / "contracts" / "quality.yaml"
OVERRIDE_VARIABLE = "LAKEHOUSE_DQ_CONFIG"


class QualityConfigError(ValueError):
    pass


def _load(path: Path) -> dict:
    try:
        return yamltext.load(path.read_text()) or {}
    except OSError as exc:
        raise QualityConfigError(f"{OVERRIDE_VARIABLE}: cannot read {path} ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise QualityConfigError(f"{path} is not valid YAML: {exc}") from None


@lru_cache(maxsize=4)
def quality_config(path: str = "") -> dict:
    """Defaults from quality.yaml, then `path` (LAKEHOUSE_DQ_CONFIG) on top."""
    config = _load(DEFAULT_PATH)
    if path:
        extra = _load(Path(path))
        for section in ("defaults", "assets"):
            for key, value in (extra.get(section) or {}).items():
                merged = dict(config.setdefault(section, {}).get(key) or {})
                merged.update(value or {})
                config[section][key] = merged
    return config


def spec(asset: str, name: str, description: str) -> CheckSpec:
    """The CheckSpec of check `name` on `asset`, from the config."""
    config = quality_config(os.environ.get(OVERRIDE_VARIABLE) or "")
    kind = name.split(":", 1)[0]
    settings = dict((config.get("defaults") or {}).get(kind) or {})
    for key in (kind, name):
        settings.update(((config.get("assets") or {}).get(asset) or {}).get(key) or {})
    severity = str(settings.pop("severity", "warn")).upper()
    if severity not in (WARN, ERROR):
        raise QualityConfigError(f"{asset} {name}: severity {severity!r} must be warn or error")
    max_rows = settings.pop("max_rows", None)
    max_share = settings.pop("max_share", None)
    return CheckSpec(name, severity, description, max_rows, max_share, settings)
