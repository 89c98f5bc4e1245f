"""`lakehouse deploy` and `lakehouse policy` as a user runs them, against the S3 and Glue APIs on 127.0.0.1.

The dry run plans and changes nothing; --apply encrypts the buckets, uploads the wheel
and the entry script and creates the Glue security configuration and job; a second
--apply finds nothing to do; a changed setting plans an update of only what changed.
"""

import io
import json
import logging
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import boto3
import pytest

from lakehouse.settings import load_settings

SCRIPT = Path(__file__).parents[1] / "lakehouse" / "cluster" / "run_step.py"
ROLE = "arn:aws:iam::123456789012:role/lakehouse-glue"


@pytest.fixture
def aws_env(s3_bucket, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")}
    env.update({
        "LAKEHOUSE_HOME": str(tmp_path / "home"), "DAGSTER_HOME": str(tmp_path / "home" / "dagster"),
        "LAKEHOUSE_WAREHOUSE_URI": f"s3://{s3_bucket}/warehouse",
        "LAKEHOUSE_PIPES_URI": f"s3://{s3_bucket}/pipes",
        "LAKEHOUSE_ARTIFACTS_URI": f"s3://{s3_bucket}/artifacts",
        "LAKEHOUSE_GLUE_ROLE_ARN": ROLE,
        "LAKEHOUSE_GLUE_JOB": f"step-{s3_bucket}",  # the Glue API server is shared by the session
        "LAKEHOUSE_GLUE_WORKER_TYPE": "G.2X", "LAKEHOUSE_GLUE_WORKERS": "5",
    })
    return env


def lakehouse(env, *args):
    return subprocess.run([sys.executable, "-m", "lakehouse.cli", *args], env=env, capture_output=True,
                          text=True, timeout=300)


def actions(output: str) -> dict[str, str]:
    """{item target: action} from the plan's lines."""
    rows = {}
    for line in output.splitlines():
        words = line.split()
        if line.startswith("  ") and words and words[0] in ("create", "update", "unchanged", "missing"):
            rows[" ".join(w for w in words[1:] if not w.startswith("("))[:80]] = words[0]
    return rows


def test_dry_run_plans_apply_creates_and_a_second_apply_changes_nothing(aws_env, s3_bucket):
    s3, glue = boto3.client("s3"), boto3.client("glue")
    job = aws_env["LAKEHOUSE_GLUE_JOB"]

    dry = lakehouse(aws_env, "deploy", "--profile", "aws", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "dry run: nothing is changed" in dry.stdout and "5 change(s) to make" in dry.stdout
    planned = actions(dry.stdout)
    assert sorted(planned.values()) == ["create"] * 5, dry.stdout
    assert any(k.startswith(f"glue job {job}") for k in planned)
    assert "KeyCount" not in s3.list_objects_v2(Bucket=s3_bucket, Prefix="artifacts/") or \
        s3.list_objects_v2(Bucket=s3_bucket, Prefix="artifacts/")["KeyCount"] == 0
    with pytest.raises(glue.exceptions.EntityNotFoundException):
        glue.get_job(JobName=job)

    applied = lakehouse(aws_env, "deploy", "--profile", "aws", "--apply")
    assert applied.returncode == 0, applied.stderr
    assert "Applied 5 change(s)." in applied.stdout

    definition = glue.get_job(JobName=job)["Job"]
    assert definition["GlueVersion"] == "5.0"
    assert (definition["WorkerType"], definition["NumberOfWorkers"]) == ("G.2X", 5)
    assert definition["Role"] == ROLE and definition["MaxRetries"] == 0
    assert definition["Command"]["ScriptLocation"] == f"s3://{s3_bucket}/artifacts/run_step.py"
    arguments = definition["DefaultArguments"]
    assert arguments["--datalake-formats"] == "iceberg"
    # Glue takes one --conf: the extensions, then the catalog PyIceberg uses, chained as AWS documents.
    confs = arguments["--conf"].split(" --conf ")
    assert confs[0] == "spark.sql.extensions=org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions"
    catalog = dict(c.split("=", 1) for c in confs[1:])
    assert catalog["spark.sql.catalog.lakehouse"] == "org.apache.iceberg.spark.SparkCatalog"
    assert catalog["spark.sql.catalog.lakehouse.catalog-impl"] == "org.apache.iceberg.aws.glue.GlueCatalog"
    assert catalog["spark.sql.catalog.lakehouse.io-impl"] == "org.apache.iceberg.aws.s3.S3FileIO"
    assert catalog["spark.sql.catalog.lakehouse.warehouse"].startswith("s3://")
    wheel_uri = arguments["--additional-python-modules"]
    assert wheel_uri.startswith(f"s3://{s3_bucket}/artifacts/lakehouse-") and wheel_uri.endswith(".whl")
    assert definition["SecurityConfiguration"] == f"{job}-sse-s3"
    security = glue.get_security_configuration(Name=f"{job}-sse-s3")["SecurityConfiguration"]
    assert security["EncryptionConfiguration"]["S3Encryption"] == [{"S3EncryptionMode": "SSE-S3"}]

    script = s3.get_object(Bucket=s3_bucket, Key="artifacts/run_step.py")
    assert script["Body"].read() == SCRIPT.read_bytes()
    assert script["ServerSideEncryption"] == "AES256"
    wheel = s3.get_object(Bucket=s3_bucket, Key=wheel_uri.split("/", 3)[3])["Body"].read()
    names = zipfile.ZipFile(io.BytesIO(wheel)).namelist()
    assert "lakehouse/cluster/run_step.py" in names and "lakehouse/contracts/quality.yaml" in names
    rules = s3.get_bucket_encryption(Bucket=s3_bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    before = {o["Key"]: o["LastModified"] for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix="artifacts/")["Contents"]}

    again = lakehouse(aws_env, "deploy", "--profile", "aws", "--apply")
    assert again.returncode == 0, again.stderr
    assert "Nothing to change: deployed as planned." in again.stdout
    assert set(actions(again.stdout).values()) == {"unchanged"}, again.stdout
    after = {o["Key"]: o["LastModified"] for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix="artifacts/")["Contents"]}
    assert after == before  # nothing was uploaded again (a rebuilt wheel differs only in timestamps)

    bigger = lakehouse({**aws_env, "LAKEHOUSE_GLUE_WORKERS": "10"}, "deploy", "--profile", "aws", "--dry-run")
    changed = {k: v for k, v in actions(bigger.stdout).items() if v != "unchanged"}
    assert list(changed.values()) == ["update"] and "NumberOfWorkers" in bigger.stdout, bigger.stdout


def test_the_wheel_is_the_same_built_by_uv_or_by_pip(tmp_path, monkeypatch, caplog):
    """deploy builds with the uv `make install` put next to the interpreter, else with pip: the
    same wheel, member for member (deploy compares wheels by that digest)."""
    from lakehouse import checked_code, deploy

    command = deploy.wheel_command(tmp_path, tmp_path)
    assert Path(command[0]).name == "uv", f"no uv beside {sys.executable}: `make install` puts it there ({command})"
    fast = deploy.build_wheel(tmp_path / "uv")
    # A Python with no uv beside it: pip, said as a slower path.
    elsewhere, choose = str(tmp_path / "bin" / "python"), deploy.wheel_command
    monkeypatch.setattr(checked_code, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="lakehouse.deploy"):
        command = choose(tmp_path, tmp_path, python=elsewhere)
    assert command[:4] == [elsewhere, "-m", "pip", "wheel"], command
    assert "the wheel is built with pip" in caplog.text  # and recorded for `lakehouse status` (checked_code)
    # that command, run by this interpreter (which has pip)
    monkeypatch.setattr(deploy, "wheel_command", lambda source, out: [sys.executable, *choose(source, out, elsewhere)[1:]])
    slow = deploy.build_wheel(tmp_path / "pip")
    assert fast.name == slow.name and deploy.content_digest(fast) == deploy.content_digest(slow)
    assert "lakehouse/cluster/run_step.py" in zipfile.ZipFile(fast).namelist()


def test_deploy_names_what_is_missing(aws_env):
    local = lakehouse(aws_env, "deploy", "--profile", "local", "--dry-run")
    assert local.returncode == 2 and "--profile aws" in local.stderr and "Traceback" not in local.stderr
    no_role = {k: v for k, v in aws_env.items() if k != "LAKEHOUSE_GLUE_ROLE_ARN"}
    missing = lakehouse(no_role, "deploy", "--profile", "aws", "--dry-run")
    assert missing.returncode == 2 and "LAKEHOUSE_GLUE_ROLE_ARN is not set" in missing.stderr
    assert "Traceback" not in missing.stderr
    neither = lakehouse(aws_env, "deploy", "--profile", "aws")
    assert neither.returncode == 2 and "--dry-run" in neither.stderr  # one of the two modes is required


def test_emr_compute_plans_the_python_environment_it_cannot_build(aws_env):
    env = {**aws_env, "LAKEHOUSE_COMPUTE": "emr"}
    dry = lakehouse(env, "deploy", "--profile", "aws", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "missing" in actions(dry.stdout).values()
    assert "Still needed: python environment" in dry.stdout and "lakehouse-venv.tar.gz" in dry.stdout


def _statements(policy, sid):
    return [s for s in policy["Statement"] if s.get("Sid") == sid]


def test_policies_are_scoped_to_the_lakehouse_and_require_encryption(aws_env, s3_bucket):
    kms = "arn:aws:kms:us-east-1:123456789012:key/1111-2222"
    env = {**aws_env, "LAKEHOUSE_KMS_KEY_ARN": kms, "AWS_REGION": "us-east-1"}
    job = json.loads(lakehouse(env, "policy", "--profile", "aws", "job").stdout)
    dagster = json.loads(lakehouse(env, "policy", "--profile", "aws", "dagster").stdout)

    (warehouse,) = _statements(job, "Warehouse")
    assert warehouse["Resource"] == f"arn:aws:s3:::{s3_bucket}/warehouse/*"
    (artifacts,) = _statements(job, "Artifacts")
    assert artifacts["Action"] == "s3:GetObject"  # the job cannot change what it runs
    (catalog,) = _statements(job, "LakehouseCatalog")
    assert "arn:aws:glue:us-east-1:123456789012:table/silver/*" in catalog["Resource"]
    assert not any(r.endswith(":table/*/*") or r == "*" for r in catalog["Resource"])
    for policy in (job, dagster):
        actions_allowed = [a for s in policy["Statement"] if s["Effect"] == "Allow"
                           for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])]
        assert not any(a.endswith(":*") or a == "*" for a in actions_allowed)
        (weak,) = _statements(policy, "DenyWeakerEncryption")
        assert weak["Condition"]["StringNotEqualsIfExists"]["s3:x-amz-server-side-encryption"] == [
            "aws:kms", "aws:kms:dsse"]
        (key,) = _statements(policy, "DenyOtherKeys")
        assert key["Condition"]["StringNotEqualsIfExists"]["s3:x-amz-server-side-encryption-aws-kms-key-id"] == kms
        assert _statements(policy, "DenyWithoutTLS")
    (launch,) = _statements(dagster, "GlueJob")
    assert launch["Resource"] == f"arn:aws:glue:us-east-1:123456789012:job/{aws_env['LAKEHOUSE_GLUE_JOB']}"
    passes = [s for s in dagster["Statement"] if s["Action"] == "iam:PassRole"]
    assert passes == [{"Effect": "Allow", "Action": "iam:PassRole", "Resource": ROLE,
                       "Condition": {"StringEquals": {"iam:PassedToService": "glue.amazonaws.com"}}}]

    # Valid policy documents, as IAM's API accepts them.
    iam = boto3.client("iam")
    for name, policy in (("job", job), ("dagster", dagster)):
        iam.create_policy(PolicyName=f"lakehouse-{name}-{s3_bucket}", PolicyDocument=json.dumps(policy))


def test_with_a_kms_key_every_iceberg_file_is_written_sse_kms(aws_env, s3_bucket, s3_endpoint):
    """With LAKEHOUSE_KMS_KEY_ARN, the table layer's data and metadata files are SSE-KMS with that key."""
    import pyarrow as pa

    from lakehouse.iceberg import TableStore, build_catalog

    key = boto3.client("kms").create_key()["KeyMetadata"]["Arn"]
    settings = load_settings({**aws_env, "LAKEHOUSE_KMS_KEY_ARN": key})
    catalog = build_catalog("local", f"sqlite:///{settings.home}/catalog.db", settings.warehouse_uri,
                            "us-east-1", s3_endpoint, settings.aws.kms_key_arn)
    store = TableStore(catalog)
    schema = pa.schema([pa.field("id", pa.int64())])
    store.ensure_table("ops.kms_probe", schema)
    store.load("ops.kms_probe").append(pa.table({"id": [1, 2, 3]}, schema=schema))

    s3 = boto3.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix="warehouse/")["Contents"]]
    assert any(k.endswith(".parquet") for k in keys) and any(k.endswith(".metadata.json") for k in keys)
    for k in keys:
        head = s3.head_object(Bucket=s3_bucket, Key=k)
        assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", key), k
