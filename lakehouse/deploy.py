"""`lakehouse deploy`: put what the silver and gold jobs need on AWS, idempotently.

A plan compares what should exist with what does, item by item, and `--apply` makes
only the differences:
- default encryption on every bucket the lakehouse writes (warehouse, Pipes, artifacts);
- the project wheel and the job's entry script under LAKEHOUSE_ARTIFACTS_URI, compared by
  a digest of their contents (a rebuilt wheel differs only in zip timestamps);
- a Glue security configuration that encrypts what the job writes (S3, logs, bookmarks);
- the Glue 5 job LAKEHOUSE_GLUE_JOB, Iceberg enabled, sized by the settings.
A second `--apply` with nothing changed has nothing to do.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from lakehouse import checked_code
from lakehouse.resources.spark_iceberg import EXTENSIONS
from lakehouse.resources.compute import EMR, EMR_SERVERLESS, ENTRY_SCRIPT, PYTHON_ARCHIVE, spark_catalog
from lakehouse.settings import Settings, s3_parts

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).resolve().parent / "cluster" / "run_step.py"
log = logging.getLogger(__name__)
DIGEST = "lakehouse-sha256"  # S3 object metadata: the digest of what was uploaded
GLUE_VERSION = "5.0"
MAX_CONCURRENT_RUNS = 32  # one run per asset and partition range at a time; Dagster's queue limits the rest
JOB_TIMEOUT_MINUTES = 480


class DeployError(ValueError):
    """Deploy cannot go on; the message names the setting or the step that fixes it."""


@dataclass
class Change:
    item: str  # what kind of thing
    target: str  # which one
    action: str  # create | update | unchanged | missing (a step deploy cannot do for you)
    detail: str = ""
    make: Callable[[], None] | None = None

    @property
    def pending(self) -> bool:
        return self.action in ("create", "update")


def _require(settings: Settings) -> None:
    aws = settings.aws
    if settings.profile != "aws":
        raise DeployError("deploy targets AWS: run `lakehouse deploy --profile aws` (or set LAKEHOUSE_PROFILE=aws)")
    missing = [(name, why) for name, value, why in [
        ("LAKEHOUSE_ARTIFACTS_URI", aws.artifacts_uri, "s3://bucket/prefix for the wheel and the entry script"),
        ("LAKEHOUSE_PIPES_URI", aws.pipes_uri, "s3://bucket/prefix for Pipes messages and Glue's temporary files"),
        ("LAKEHOUSE_GLUE_ROLE_ARN", aws.glue_role_arn, "the IAM role the Glue job runs as "
                                                       "(`lakehouse policy job` prints its policy)"),
    ] if not value]
    if missing:
        raise DeployError("; ".join(f"{name} is not set: set it to {why}" for name, why in missing))


def build_wheel(out_dir: Path) -> Path:
    """The project's wheel, built from a clean copy of this source tree (no dependencies bundled).

    A copy: setuptools reuses an in-tree build/ folder, which can carry modules that
    no longer exist into the wheel.
    """
    if not (PROJECT_ROOT / "pyproject.toml").exists():
        raise DeployError(f"no pyproject.toml in {PROJECT_ROOT}: deploy builds the wheel from a source "
                          "checkout; run it from the repository (pip install -e .)")
    source = out_dir / "source"
    shutil.copytree(PROJECT_ROOT / "lakehouse", source / "lakehouse",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(PROJECT_ROOT / name, source / name)
    result = subprocess.run(wheel_command(source, out_dir), capture_output=True, text=True)
    wheels = sorted(out_dir.glob("lakehouse-*.whl"))
    if result.returncode != 0 or not wheels:
        raise DeployError(f"building the wheel failed:\n{result.stderr.strip()[-2000:]}")
    return wheels[-1]


def wheel_command(source: Path, out_dir: Path, python: str | None = None) -> list[str]:
    """uv's build where `make install` put it (next to `python`, this interpreter by default), else
    pip's, said as a slower path. Both build with the project's own backend (setuptools, pinned in
    pyproject.toml) in an isolated environment; uv keeps setuptools in its cache, where pip
    downloads and installs it anew for every wheel: about a third of pip's time (README, Deploy)."""
    python = python or sys.executable
    uv = Path(python).with_name("uv")
    if uv.is_file():
        return [str(uv), "build", "--wheel", "--quiet", "--python", python, "--out-dir", str(out_dir), str(source)]
    checked_code.warn_once(log, "no uv beside %s (`make install` puts one there): the wheel is built with pip, "
                           "about three times slower", python)
    return [python, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out_dir), str(source)]


def content_digest(path: Path) -> str:
    """sha256 of a file, or of a wheel's members and their contents (not its zip timestamps)."""
    digest = hashlib.sha256()
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as wheel:
            for name in sorted(wheel.namelist()):
                digest.update(name.encode() + b"\0" + wheel.read(name) + b"\0")
    else:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _encryption_args(settings: Settings) -> dict:
    if settings.aws.kms_key_arn:
        return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": settings.aws.kms_key_arn}
    return {"ServerSideEncryption": "AES256"}


def _upload(s3, settings: Settings, label: str, path: Path, uri: str) -> Change:
    bucket, key = s3_parts(uri)
    digest = content_digest(path)
    try:
        current = s3.head_object(Bucket=bucket, Key=key).get("Metadata", {}).get(DIGEST)
    except s3.exceptions.ClientError as exc:
        if exc.response["Error"]["Code"] not in ("404", "NoSuchKey", "NotFound"):
            raise
        current = None
    action = "unchanged" if current == digest else "update" if current else "create"

    def make():
        s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes(), Metadata={DIGEST: digest},
                      **_encryption_args(settings))

    return Change(label, uri, action, f"sha256 {digest[:12]}", make)


def _bucket_encryption(s3, settings: Settings, bucket: str) -> Change:
    """Default encryption on the bucket: SSE-KMS with the key if one is set, else at least SSE-S3."""
    kms = settings.aws.kms_key_arn
    try:
        rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    except s3.exceptions.ClientError as exc:
        if exc.response["Error"]["Code"] != "ServerSideEncryptionConfigurationNotFoundError":
            raise
        rules = []
    defaults = [r.get("ApplyServerSideEncryptionByDefault", {}) for r in rules]
    ok = any(d.get("SSEAlgorithm") == "aws:kms" and d.get("KMSMasterKeyID") == kms for d in defaults) if kms \
        else any(d.get("SSEAlgorithm") in ("AES256", "aws:kms", "aws:kms:dsse") for d in defaults)
    wanted = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": kms} if kms else {"SSEAlgorithm": "AES256"}

    def make():
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
            {"ApplyServerSideEncryptionByDefault": wanted, "BucketKeyEnabled": bool(kms)}]})

    detail = f"SSE-KMS {kms}" if kms else "SSE-S3 (AES256) or stronger"
    return Change("bucket encryption", f"s3://{bucket}", "unchanged" if ok else "update" if rules else "create",
                  detail, make)


def security_configuration(settings: Settings) -> tuple[str, dict]:
    """Glue's encryption settings for the job's own writes; immutable in Glue, so the name says what it is."""
    kms = settings.aws.kms_key_arn
    if kms:
        name = f"{settings.aws.glue_job}-sse-kms-{hashlib.sha256(kms.encode()).hexdigest()[:8]}"
        config = {"S3Encryption": [{"S3EncryptionMode": "SSE-KMS", "KmsKeyArn": kms}],
                  "CloudWatchEncryption": {"CloudWatchEncryptionMode": "SSE-KMS", "KmsKeyArn": kms},
                  "JobBookmarksEncryption": {"JobBookmarksEncryptionMode": "CSE-KMS", "KmsKeyArn": kms}}
    else:
        name = f"{settings.aws.glue_job}-sse-s3"
        config = {"S3Encryption": [{"S3EncryptionMode": "SSE-S3"}],
                  "CloudWatchEncryption": {"CloudWatchEncryptionMode": "DISABLED"},
                  "JobBookmarksEncryption": {"JobBookmarksEncryptionMode": "DISABLED"}}
    return name, config


def _security_configuration(glue, settings: Settings) -> Change:
    name, config = security_configuration(settings)
    try:
        glue.get_security_configuration(Name=name)
        action = "unchanged"
    except glue.exceptions.EntityNotFoundException:
        action = "create"
    mode = config["S3Encryption"][0]["S3EncryptionMode"]
    return Change("glue security configuration", name, action, f"job writes {mode}",
                  lambda: glue.create_security_configuration(Name=name, EncryptionConfiguration=config))


def job_definition(settings: Settings, wheel_name: str) -> dict:
    """The Glue job, as create_job/update_job take it (without its name)."""
    aws = settings.aws
    pipes_bucket, pipes_prefix = s3_parts(aws.pipes_uri)
    return {
        "Description": "lakehouse: one silver or gold step per run (lakehouse/cluster/run_step.py), driven by "
                       "Dagster Pipes",
        "Role": aws.glue_role_arn,
        "Command": {"Name": "glueetl", "ScriptLocation": f"{aws.artifacts_uri}/{ENTRY_SCRIPT}",
                    "PythonVersion": "3"},
        "DefaultArguments": {
            # Iceberg's runtime (Glue 5: Iceberg 1.7), its SQL extensions and the catalog PyIceberg
            # uses (Glue, S3FileIO). Glue takes one --conf argument: further settings are chained
            # inside its value with " --conf ", as AWS documents for Iceberg.
            "--datalake-formats": "iceberg",
            "--conf": " --conf ".join([f"spark.sql.extensions={EXTENSIONS}",
                                       *(f"{k}={v}" for k, v in spark_catalog(settings).items())]),
            # The wheel, and from PyPI its dependencies; Glue brings Spark (PySpark is an extra).
            "--additional-python-modules": f"{aws.artifacts_uri}/{wheel_name}",
            "--job-language": "python",
            "--enable-metrics": "true",
            "--enable-continuous-cloudwatch-log": "true",
            "--TempDir": f"s3://{pipes_bucket}/{pipes_prefix}/glue-temp/",
        },
        "GlueVersion": GLUE_VERSION,
        "WorkerType": aws.glue_worker_type,
        "NumberOfWorkers": aws.glue_workers,
        "ExecutionProperty": {"MaxConcurrentRuns": MAX_CONCURRENT_RUNS},
        "MaxRetries": 0,  # Dagster decides about retries
        "Timeout": JOB_TIMEOUT_MINUTES,
        "SecurityConfiguration": security_configuration(settings)[0],
    }


def _differences(wanted: dict, current: dict) -> list[str]:
    diffs = []
    for key, value in wanted.items():
        have = current.get(key)
        if isinstance(value, dict) and isinstance(have, dict):
            diffs += [f"{key}.{k}" for k in sorted(set(value) | set(have)) if value.get(k) != have.get(k)]
        elif value != have:
            diffs.append(key)
    return diffs


def _glue_job(glue, settings: Settings, wheel_name: str) -> Change:
    name, wanted = settings.aws.glue_job, job_definition(settings, wheel_name)
    try:
        current = glue.get_job(JobName=name)["Job"]
    except glue.exceptions.EntityNotFoundException:
        current = None
    size = f"Glue {GLUE_VERSION}, {wanted['NumberOfWorkers']} x {wanted['WorkerType']}, Iceberg"
    if current is None:
        return Change("glue job", name, "create", size,
                      lambda: glue.create_job(Name=name, Tags={"lakehouse": "step"}, **wanted))
    diffs = _differences(wanted, current)
    if not diffs:
        return Change("glue job", name, "unchanged", size)
    return Change("glue job", name, "update", f"{size}; changes {', '.join(diffs)}",
                  lambda: glue.update_job(JobName=name, JobUpdate=wanted))


def _python_environment(s3, settings: Settings) -> Change | None:
    """EMR runs the script in a packed Python environment deploy cannot build here (README)."""
    if settings.compute not in (EMR, EMR_SERVERLESS):
        return None
    uri = f"{settings.aws.artifacts_uri}/{PYTHON_ARCHIVE}"
    bucket, key = s3_parts(uri)
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return Change("python environment", uri, "unchanged", "for EMR")
    except s3.exceptions.ClientError:
        return Change("python environment", uri, "missing",
                      "build it on Amazon Linux 2023 with Python 3.11 (README, Running on AWS) and upload it")


def plan(settings: Settings, s3, glue, build_dir: Path) -> list[Change]:
    """Everything deploy manages, each with what it would do."""
    _require(settings)
    wheel = build_wheel(build_dir)
    aws = settings.aws
    buckets = dict.fromkeys(s3_parts(u)[0] for u in (settings.warehouse_uri, aws.pipes_uri, aws.artifacts_uri))
    changes = [_bucket_encryption(s3, settings, b) for b in buckets]
    changes.append(_upload(s3, settings, "wheel", wheel, f"{aws.artifacts_uri}/{wheel.name}"))
    changes.append(_upload(s3, settings, "entry script", SCRIPT, f"{aws.artifacts_uri}/{ENTRY_SCRIPT}"))
    changes.append(_security_configuration(glue, settings))
    changes.append(_glue_job(glue, settings, wheel.name))
    environment = _python_environment(s3, settings)
    if environment:
        changes.append(environment)
    return changes


def render(changes: list[Change]) -> str:
    width = max(len(c.item) for c in changes)
    return "\n".join(f"  {c.action:<9} {c.item:<{width}}  {c.target}" + (f"  ({c.detail})" if c.detail else "")
                     for c in changes)


def deploy(settings: Settings, apply: bool, s3=None, glue=None, echo=print) -> int:
    """Print the plan; with `apply`, make its changes. Exit code: 0, or 2 for a setting to fix."""
    import boto3

    s3 = s3 or boto3.client("s3")
    glue = glue or boto3.client("glue")
    with tempfile.TemporaryDirectory(prefix="lakehouse-deploy-") as tmp:
        changes = plan(settings, s3, glue, Path(tmp))
        pending = [c for c in changes if c.pending]
        echo(f"lakehouse deploy to {settings.aws.artifacts_uri}, Glue job {settings.aws.glue_job}"
             + ("" if apply else " (dry run: nothing is changed)"))
        echo(render(changes))
        if apply:
            for change in pending:
                change.make()
            echo(f"Applied {len(pending)} change(s)." if pending else "Nothing to change: deployed as planned.")
        else:
            echo(f"{len(pending)} change(s) to make; run with --apply to make them." if pending
                 else "Nothing to change: deployed as planned.")
        for change in changes:
            if change.action == "missing":
                echo(f"Still needed: {change.item} {change.target}: {change.detail}")
    return 0
