"""Data-quality checks: built from the contracts and the quality config, evaluated per write."""
