"""Transforms: functions from data to data, with no Dagster and no storage inside."""
