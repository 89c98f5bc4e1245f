import subprocess
import sys
from pathlib import Path

import pytest

from lakehouse.settings import SettingsError, load_settings


def test_defaults_live_under_lakehouse_home(tmp_path):
    s = load_settings({"LAKEHOUSE_HOME": str(tmp_path)})
    assert s.profile == "local" and s.engine == "duckdb"
    assert s.landing_uri == f"file://{tmp_path}/landing"
    assert s.catalog_uri == f"sqlite:///{tmp_path}/catalog.db"
    assert s.warehouse_uri == f"file://{tmp_path}/warehouse"
    assert s.dagster_home == tmp_path / "dagster"
    assert (tmp_path / "landing").is_dir()
    assert s.duckdb_memory_limit == "1GB"
    assert s.spark_java_options == "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=240m"
    assert s.spark_codegen is False


def test_values_are_normalised(tmp_path):
    s = load_settings({"LAKEHOUSE_HOME": str(tmp_path), "LAKEHOUSE_ENGINE": " Spark ",
                       "LAKEHOUSE_LANDING_URI": "s3://bucket/some/prefix/"})
    assert s.engine == "spark"
    assert load_settings({"LAKEHOUSE_HOME": str(tmp_path), "LAKEHOUSE_DUCKDB_MEMORY": " 512MiB "}).duckdb_memory_limit \
        == "512MiB"
    assert s.landing_uri == "s3://bucket/some/prefix" and s.landing_is_s3
    # Set but empty: the JVM's own defaults (C2 back, for a long local run).
    assert load_settings({"LAKEHOUSE_HOME": str(tmp_path), "LAKEHOUSE_SPARK_JAVA_OPTIONS": " "}).spark_java_options == ""
    assert load_settings({"LAKEHOUSE_HOME": str(tmp_path), "LAKEHOUSE_SPARK_CODEGEN": " True "}).spark_codegen is True


AWS = {"LAKEHOUSE_PROFILE": "aws", "LAKEHOUSE_WAREHOUSE_URI": "s3://lake/warehouse",
       "LAKEHOUSE_PIPES_URI": "s3://ops/pipes"}


@pytest.mark.parametrize(
    "env, names",
    [
        ({"LAKEHOUSE_PROFILE": "gcp"}, ["LAKEHOUSE_PROFILE", "local, aws"]),
        ({"LAKEHOUSE_ENGINE": "polars"}, ["LAKEHOUSE_ENGINE", "duckdb, spark"]),
        ({"LAKEHOUSE_LANDING_URI": "gs://bucket"}, ["LAKEHOUSE_LANDING_URI", "s3://"]),
        ({"LAKEHOUSE_LANDING_URI": "s3://"}, ["LAKEHOUSE_LANDING_URI", "no bucket"]),
        ({"LAKEHOUSE_CATALOG_URI": "thrift://hive:9083"}, ["LAKEHOUSE_CATALOG_URI", "sqlite:///"]),
        ({"LAKEHOUSE_WAREHOUSE_URI": "hdfs://nn/wh"}, ["LAKEHOUSE_WAREHOUSE_URI"]),
        ({"LAKEHOUSE_PROFILE": "aws"}, ["LAKEHOUSE_WAREHOUSE_URI", "s3://"]),
        ({"LAKEHOUSE_PROFILE": "aws", "LAKEHOUSE_WAREHOUSE_URI": "file:///tmp/x"}, ["LAKEHOUSE_WAREHOUSE_URI"]),
        ({"LAKEHOUSE_START_DATE": "01/01/2025"}, ["LAKEHOUSE_START_DATE", "YYYY-MM-DD"]),
        ({"LAKEHOUSE_COMPUTE": "lambda"}, ["LAKEHOUSE_COMPUTE", "local, glue"]),
        ({"LAKEHOUSE_COMPUTE": "glue"}, ["LAKEHOUSE_COMPUTE=glue", "LAKEHOUSE_PROFILE=aws"]),
        ({"LAKEHOUSE_COMPUTE": "glue", "LAKEHOUSE_PROFILE": "aws", "LAKEHOUSE_WAREHOUSE_URI": "s3://w/h"},
         ["LAKEHOUSE_PIPES_URI", "s3://bucket/prefix"]),
        ({"LAKEHOUSE_COMPUTE": "glue", "LAKEHOUSE_PROFILE": "aws", "LAKEHOUSE_WAREHOUSE_URI": "s3://w/h",
          "LAKEHOUSE_PIPES_URI": "/tmp/pipes"}, ["LAKEHOUSE_PIPES_URI"]),
        ({**AWS, "LAKEHOUSE_COMPUTE": "emr"}, ["LAKEHOUSE_ARTIFACTS_URI", "lakehouse deploy"]),
        ({**AWS, "LAKEHOUSE_COMPUTE": "emr-serverless", "LAKEHOUSE_ARTIFACTS_URI": "s3://ops/artifacts"},
         ["LAKEHOUSE_EMR_SERVERLESS_APP", "application"]),
        ({**AWS, "LAKEHOUSE_COMPUTE": "emr-serverless", "LAKEHOUSE_ARTIFACTS_URI": "s3://ops/artifacts",
          "LAKEHOUSE_EMR_SERVERLESS_APP": "00f1"}, ["LAKEHOUSE_EMR_ROLE_ARN", "execution role"]),
        ({"LAKEHOUSE_GLUE_ROLE_ARN": "lakehouse-role"}, ["LAKEHOUSE_GLUE_ROLE_ARN", "arn:aws:"]),
        ({"LAKEHOUSE_KMS_KEY_ARN": "alias/lake"}, ["LAKEHOUSE_KMS_KEY_ARN", "arn:aws:"]),
        ({"LAKEHOUSE_GLUE_WORKER_TYPE": "g.1x"}, ["LAKEHOUSE_GLUE_WORKER_TYPE", "G.1X, G.2X"]),
        ({"LAKEHOUSE_GLUE_WORKERS": "1"}, ["LAKEHOUSE_GLUE_WORKERS", "from 2"]),
        ({"LAKEHOUSE_ARTIFACTS_URI": "s3:/ops"}, ["LAKEHOUSE_ARTIFACTS_URI", "s3://bucket/prefix"]),
        ({"LAKEHOUSE_GIT_URL": "git@github.com:acme/lakehouse.git"}, ["LAKEHOUSE_GIT_URL", "https://github.com/"]),
        ({"LAKEHOUSE_GIT_URL": "https://bitbucket.org/acme/lake"}, ["LAKEHOUSE_GIT_URL", "GitHub and GitLab"]),
        ({"LAKEHOUSE_DUCKDB_MEMORY": "lots"}, ["LAKEHOUSE_DUCKDB_MEMORY", "1GB or 512MB"]),
        ({"LAKEHOUSE_DUCKDB_MEMORY": "2"}, ["LAKEHOUSE_DUCKDB_MEMORY", "a number and a unit"]),
        ({"LAKEHOUSE_DUCKDB_MEMORY": "0GB"}, ["LAKEHOUSE_DUCKDB_MEMORY", "from 64MB"]),
        ({"LAKEHOUSE_DUCKDB_MEMORY": "1KB"}, ["LAKEHOUSE_DUCKDB_MEMORY", "from 64MB"]),
        ({"LAKEHOUSE_DUCKDB_MEMORY": "10000000000TB"}, ["LAKEHOUSE_DUCKDB_MEMORY", "to 1000TB"]),
        ({"LAKEHOUSE_SPARK_JAVA_OPTIONS": "-Xmx2g C1"}, ["LAKEHOUSE_SPARK_JAVA_OPTIONS", "'C1' is not one"]),
        ({"LAKEHOUSE_SPARK_CODEGEN": "yes"}, ["LAKEHOUSE_SPARK_CODEGEN", "neither true nor false", "set it true"]),
    ],
)
def test_bad_values_name_the_variable_and_the_fix(tmp_path, env, names):
    with pytest.raises(SettingsError) as err:
        load_settings({"LAKEHOUSE_HOME": str(tmp_path), **env})
    for name in names:
        assert name in str(err.value)


def test_unusable_landing_directory(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(SettingsError, match="LAKEHOUSE_LANDING_URI.*cannot be created"):
        load_settings({"LAKEHOUSE_HOME": str(tmp_path), "LAKEHOUSE_LANDING_URI": f"file://{blocker}/landing"})


def _run(args, env_extra, tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")}
    env.update({"LAKEHOUSE_HOME": str(tmp_path / "home"), **env_extra})
    env.pop("DAGSTER_HOME", None)
    return subprocess.run(args, env=env, capture_output=True, text=True, cwd=tmp_path, timeout=300)


def test_cli_reports_bad_setting_without_traceback(tmp_path):
    lakehouse = Path(sys.executable).parent / "lakehouse"
    result = _run([str(lakehouse), "status"], {"LAKEHOUSE_ENGINE": "pandas"}, tmp_path)
    assert result.returncode == 2
    assert "LAKEHOUSE_ENGINE='pandas' is not supported" in result.stderr
    assert "Traceback" not in result.stderr


def test_definitions_fail_to_load_with_the_setting_named(tmp_path):
    dagster = Path(sys.executable).parent / "dagster"
    workspace = Path(__file__).parents[1] / "workspace.yaml"
    result = _run([str(dagster), "definitions", "validate", "-w", str(workspace)],
                  {"LAKEHOUSE_PROFILE": "azure"}, tmp_path)
    assert result.returncode != 0
    assert "LAKEHOUSE_PROFILE='azure' is not supported; set LAKEHOUSE_PROFILE to one of: local, aws" in (
        result.stdout + result.stderr
    )


def test_glue_compute_points_the_job_at_the_same_catalog_and_warehouse(tmp_path):
    from lakehouse.resources.compute import Compute

    settings = load_settings({"LAKEHOUSE_HOME": str(tmp_path), "LAKEHOUSE_PROFILE": "aws", "LAKEHOUSE_COMPUTE": "glue",
                              "LAKEHOUSE_WAREHOUSE_URI": "s3://lake/warehouse", "LAKEHOUSE_PIPES_URI": "s3://ops/pipes/",
                              "LAKEHOUSE_GLUE_JOB": "nightly-step"})
    compute = Compute.from_settings(settings)
    assert (compute.kind, compute.pipes_bucket, compute.pipes_prefix, compute.aws.glue_job) == (
        "glue", "ops", "pipes", "nightly-step")
    assert compute.remote_settings["LAKEHOUSE_WAREHOUSE_URI"] == "s3://lake/warehouse"
    assert compute.remote_settings["LAKEHOUSE_ENGINE"] == "spark" and compute.remote_settings["LAKEHOUSE_PROFILE"] == "aws"
    assert Compute.from_settings(load_settings({"LAKEHOUSE_HOME": str(tmp_path)})).local


def test_emr_serverless_compute_carries_the_application_role_and_artifacts(tmp_path):
    from lakehouse.resources.compute import Compute

    env = {"LAKEHOUSE_HOME": str(tmp_path), **AWS, "LAKEHOUSE_ARTIFACTS_URI": "s3://ops/artifacts/",
           "LAKEHOUSE_EMR_SERVERLESS_APP": "00f1", "LAKEHOUSE_EMR_ROLE_ARN": "arn:aws:iam::123456789012:role/job",
           "LAKEHOUSE_KMS_KEY_ARN": "arn:aws:kms:eu-west-1:123456789012:key/k"}
    settings = load_settings({**env, "LAKEHOUSE_COMPUTE": "emr-serverless"})
    job = Compute.from_settings(settings).emr_serverless_job("fact_orders 2026-03-01..2026-03-02")
    assert (job["applicationId"], job["executionRoleArn"]) == ("00f1", "arn:aws:iam::123456789012:role/job")
    assert job["jobDriver"]["sparkSubmit"]["entryPoint"] == "s3://ops/artifacts/run_step.py"
    assert Compute.from_settings(settings).remote_settings["LAKEHOUSE_KMS_KEY_ARN"].endswith(":key/k")
    # Spark opens the catalog PyIceberg uses (Glue, S3FileIO, SSE-KMS with the key) from the submitted settings.
    params = job["jobDriver"]["sparkSubmit"]["sparkSubmitParameters"]
    for conf in ("spark.sql.catalog.lakehouse=org.apache.iceberg.spark.SparkCatalog",
                 "spark.sql.catalog.lakehouse.catalog-impl=org.apache.iceberg.aws.glue.GlueCatalog",
                 "spark.sql.catalog.lakehouse.io-impl=org.apache.iceberg.aws.s3.S3FileIO",
                 f"spark.sql.catalog.lakehouse.warehouse={settings.warehouse_uri}",
                 "spark.sql.catalog.lakehouse.s3.sse.type=kms",
                 "spark.sql.catalog.lakehouse.s3.sse.key=arn:aws:kms:eu-west-1:123456789012:key/k"):
        assert f"--conf {conf}" in params
    emr = Compute.from_settings(load_settings({**env, "LAKEHOUSE_COMPUTE": "emr"})).emr_job_flow("fact_orders")
    args = emr["Steps"][0]["HadoopJarStep"]["Args"]
    assert "spark.sql.catalog.lakehouse.catalog-impl=org.apache.iceberg.aws.glue.GlueCatalog" in args
    local = Compute.from_settings(load_settings({"LAKEHOUSE_HOME": str(tmp_path)}))
    assert local.spark_catalog == {}  # a local SQLite catalog is opened by the step's own session


def test_spark_java_options_go_to_a_jvm_started_here_and_never_to_a_clusters(monkeypatch):
    from lakehouse.resources.engine import spark_config

    monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    monkeypatch.delenv("PYSPARK_SUBMIT_ARGS", raising=False)
    monkeypatch.delenv("LAKEHOUSE_SPARK_JAVA_OPTIONS", raising=False)
    assert spark_config()["spark.driver.extraJavaOptions"] == "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=240m"
    assert spark_config()["spark.sql.ui.explainMode"] == "simple"  # no UI here to read the long form
    monkeypatch.setenv("LAKEHOUSE_SPARK_JAVA_OPTIONS", "")  # the JVM's own defaults
    assert "spark.driver.extraJavaOptions" not in spark_config()
    monkeypatch.delenv("LAKEHOUSE_SPARK_JAVA_OPTIONS")
    monkeypatch.setenv("PYSPARK_SUBMIT_ARGS", "--master yarn pyspark-shell")  # spark-submit on a cluster started us
    assert "spark.driver.extraJavaOptions" not in spark_config()
    assert "spark.sql.ui.explainMode" not in spark_config()  # the cluster's UI keeps its own
