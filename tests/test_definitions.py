"""The code location loads cleanly and wires raw -> bronze as the design says."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from lakehouse.layout import SOURCES
from lakehouse.wiring import BRONZE_JOB, build_definitions

ROOT = Path(__file__).parents[1]


def test_dagster_validates_the_workspace_without_warnings_from_our_code(lakehouse_env):
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", str(ROOT / "workspace.yaml")],
        env=dict(os.environ), capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "All code locations passed validation" in output
    ours = [line for line in output.splitlines() if "Warning" in line and "/lakehouse/" in line]
    assert ours == []


def test_asset_graph_raw_to_bronze(lakehouse_env):
    defs = build_definitions(lakehouse_env)
    graph = defs.resolve_asset_graph()
    for source in SOURCES:
        bronze = dg.AssetKey(["bronze", source])
        node = graph.get(bronze)
        assert node.parent_keys == {dg.AssetKey(["raw", source])}
        assert node.group_name == "bronze" and node.owners and "iceberg" in node.kinds
        assert node.partitions_def is not None
        assert graph.get(dg.AssetKey(["raw", source])).is_external
    job = defs.resolve_job_def(BRONZE_JOB)
    assert {n.name for n in job.nodes} == {f"bronze__{s}" for s in SOURCES}
