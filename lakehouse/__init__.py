"""A Dagster medallion lakehouse on Apache Iceberg."""

import pyarrow as _pa

# Arrow's default pool (mimalloc) keeps freed memory for reuse, so one 10M-row step
# leaves gigabytes resident for the rest of the run. The system allocator returns
# large blocks to the OS on free, which keeps a run's peak near its largest step.
_pa.set_memory_pool(_pa.system_memory_pool())
