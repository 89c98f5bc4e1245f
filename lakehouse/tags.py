"""Run tags the project sets and reads: who asked for a run, and which landed files it loads.

Here, in a module of their own, because the landing sensor, `lakehouse backfill` and
`lakehouse run` all write or read them.
"""

TRIGGER_TAG = "lakehouse/trigger"  # what asked for the run: a sensor, `lakehouse backfill`, `lakehouse run`
LANDED_TAG = "lakehouse/landed-"  # + ingest date: the run key of that day's files a landing run loads
