"""Dagster component instances: `sources/<source>/defs.yaml` declares a source (see lakehouse/components.py)."""
