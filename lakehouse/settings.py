"""Every LAKEHOUSE_* setting, read and validated in one place.

A wrong value fails here, at load time, with a message that names the variable,
what was given and what is allowed, so nobody meets it later as a traceback deep
inside a run.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping
from urllib.parse import urlparse

PROFILES = ("local", "aws")
ENGINES = ("duckdb", "spark")
COMPUTES = ("local", "glue", "emr-serverless", "emr")  # where silver and gold steps run (resources/compute.py)
GLUE_WORKER_TYPES = ("G.1X", "G.2X", "G.4X", "G.8X")
DUCKDB_MEMORY_LIMIT = "1GB"  # LAKEHOUSE_DUCKDB_MEMORY's default
# LAKEHOUSE_SPARK_JAVA_OPTIONS's default: the JVM of a Spark session started on this machine
# compiles with C1 only. Measured (bench/spark_jvm.py, README Engines): three small days and the
# dimensions took 97.5 s of the JVM's CPU, about half in C2's compiler threads, and 67.8 s with
# these options, in the same wall time. A long local run on millions of rows may want C2 back:
# set the variable empty.
SPARK_JAVA_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=240m"
# LAKEHOUSE_SPARK_CODEGEN's default: our steps on a local Spark session interpret their queries
# (resources/engine.py, NO_CODEGEN, says why and how; measured in README, Engines).
SPARK_CODEGEN = False


def s3_parts(uri: str) -> tuple[str, str]:
    """s3://bucket/some/prefix -> ("bucket", "some/prefix")."""
    bucket, _, key = uri[len("s3://"):].partition("/")
    return bucket, key.strip("/")


class SettingsError(ValueError):
    """A setting has a value we cannot work with; the message says which and how to fix it."""


@dataclass(frozen=True)
class AwsSettings:
    """Where and how silver and gold run on AWS, and what `lakehouse deploy` creates."""

    pipes_uri: str | None = None  # s3://bucket/prefix for Pipes context and messages
    artifacts_uri: str | None = None  # s3://bucket/prefix for the wheel and the entry script
    glue_job: str = "lakehouse-step"
    glue_role_arn: str | None = None
    glue_worker_type: str = "G.1X"
    glue_workers: int = 2
    emr_serverless_app: str | None = None  # application id
    emr_role_arn: str | None = None  # EMR Serverless job execution role
    emr_release: str = "emr-7.5.0"
    emr_instance_type: str = "m5.xlarge"
    emr_instances: int = 3
    emr_service_role: str = "EMR_DefaultRole"
    emr_instance_profile: str = "EMR_EC2_DefaultRole"
    kms_key_arn: str | None = None  # SSE-KMS for everything written; unset: the buckets' default SSE


@dataclass(frozen=True)
class Settings:
    home: Path
    landing_uri: str
    profile: str
    engine: str
    catalog_uri: str
    warehouse_uri: str
    dagster_home: Path
    start_date: dt.date
    aws_region: str | None
    aws_endpoint_url: str | None
    sensor_interval_seconds: int = 30
    landing_lookback_days: int = 3
    landing_sweep_prefixes: int = 8
    alert_topic_arn: str | None = None
    ui_url: str = "http://127.0.0.1:3000"
    compute: str = "local"
    aws: AwsSettings = AwsSettings()
    git_url: str | None = None  # the UI links code to this repository instead of local files
    git_branch: str = "main"
    duckdb_memory_limit: str = DUCKDB_MEMORY_LIMIT  # DuckDB spills to disk beyond it (README, Benchmarks)
    # The local Spark driver's JVM (not a cluster's); checked here at load, read by spark_config() through
    # spark_java_options(), which has no settings object (dagster-pyspark's resource and get_session call it).
    spark_java_options: str = SPARK_JAVA_OPTIONS
    spark_codegen: bool = SPARK_CODEGEN  # the same, through spark_codegen()
    plan_cache: Path | None = None  # the same, through plan_cache_dir() (the engine has no settings object)

    @property
    def landing_is_s3(self) -> bool:
        return self.landing_uri.startswith("s3://")


def _file_path(uri: str) -> Path:
    return Path(urlparse(uri).path) if uri.startswith("file://") else Path(uri)


def _make_dir(variable: str, value: str, path: Path, alternative: str = "") -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SettingsError(
            f"{variable}={value!r} cannot be created ({exc.strerror}); "
            f"point it at a writable directory{alternative}"
        ) from None


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    value = value.strip().lower()
    if value not in allowed:
        raise SettingsError(
            f"{name}={value!r} is not supported; set {name} to one of: {', '.join(allowed)}"
        )
    return value


def _check_landing(uri: str) -> str:
    parsed = urlparse(uri)
    name = "LAKEHOUSE_LANDING_URI"
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise SettingsError(f"{name}={uri!r} has no bucket; use s3://bucket[/prefix]")
        return uri.rstrip("/")
    if parsed.scheme not in ("file", ""):
        raise SettingsError(
            f"{name}={uri!r} has scheme {parsed.scheme!r}; use file:///absolute/path "
            "or s3://bucket[/prefix]"
        )
    path = _file_path(uri).expanduser().resolve()
    _make_dir(name, uri, path, " or an s3:// bucket")
    if not path.is_dir() or not os.access(path, os.R_OK | os.X_OK):
        raise SettingsError(
            f"{name}={uri!r} is not a readable directory; point it at a readable directory "
            "or an s3:// bucket"
        )
    return f"file://{path}"


def _check_catalog(uri: str, profile: str) -> str:
    name = "LAKEHOUSE_CATALOG_URI"
    if profile == "aws":
        # The aws profile uses the Glue catalog; the URI, if given, is `glue://` or empty.
        if uri and not uri.startswith("glue"):
            raise SettingsError(
                f"{name}={uri!r} does not fit LAKEHOUSE_PROFILE=aws, which uses the Glue "
                "Data Catalog; unset it or set it to glue://"
            )
        return uri or "glue://"
    if not uri.startswith(("sqlite:", "postgresql", "mysql")):
        raise SettingsError(
            f"{name}={uri!r} is not a SQL catalog URI; use sqlite:///path/catalog.db "
            "(or a postgresql:// URL)"
        )
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    return uri


def _check_warehouse(uri: str, profile: str) -> str:
    name = "LAKEHOUSE_WAREHOUSE_URI"
    scheme = urlparse(uri).scheme
    if profile == "aws" and scheme != "s3":
        raise SettingsError(f"{name}={uri!r} must be an s3:// URI with LAKEHOUSE_PROFILE=aws")
    if scheme == "s3":
        return uri.rstrip("/")
    if scheme not in ("file", ""):
        raise SettingsError(f"{name}={uri!r} must be file:///path or s3://bucket/prefix")
    path = _file_path(uri).expanduser().resolve()
    _make_dir(name, uri, path, " or an s3:// URI")
    return f"file://{path}"


def _check_date(name: str, value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        raise SettingsError(f"{name}={value!r} is not a date; use YYYY-MM-DD") from None


def _check_int(name: str, value: str, low: int, high: int) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        number = None
    if number is None or not low <= number <= high:
        raise SettingsError(f"{name}={value!r} is not a whole number from {low} to {high}; set it to one")
    return number


_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$", re.IGNORECASE)
_UNITS = {"kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
MIN_DUCKDB_MEMORY = 64 * 10**6  # below it a step's first query runs out of memory


def memory_bytes(name: str, value: str) -> int:
    """`value` (such as 1GB or 512MiB) in bytes; a SettingsError naming `name` if it is not a usable limit."""
    found = _SIZE.match(value.strip())
    size = float(found.group(1)) * _UNITS[found.group(2).lower()] if found else 0
    if not found or not MIN_DUCKDB_MEMORY <= size <= 10**15:
        raise SettingsError(f"{name}={value!r} is not an amount of memory from 64MB to 1000TB; use a number and a "
                            "unit, such as 1GB or 512MB")
    return int(size)


def duckdb_memory_limit(env: Mapping[str, str] | None = None) -> str:
    """LAKEHOUSE_DUCKDB_MEMORY (default DUCKDB_MEMORY_LIMIT), checked."""
    env = os.environ if env is None else env
    value = (env.get("LAKEHOUSE_DUCKDB_MEMORY") or DUCKDB_MEMORY_LIMIT).strip()
    memory_bytes("LAKEHOUSE_DUCKDB_MEMORY", value)
    return value


def spark_java_options(env: Mapping[str, str] | None = None) -> str:
    """LAKEHOUSE_SPARK_JAVA_OPTIONS (default SPARK_JAVA_OPTIONS; set but empty: none), checked."""
    env = os.environ if env is None else env
    value = env.get("LAKEHOUSE_SPARK_JAVA_OPTIONS")
    value = SPARK_JAVA_OPTIONS if value is None else value.strip()
    wrong = [option for option in value.split() if not option.startswith("-")]
    if wrong or "\n" in value:
        what = repr(wrong[0]) if wrong else "a line break"
        raise SettingsError(f"LAKEHOUSE_SPARK_JAVA_OPTIONS={value!r} is not a list of JVM options ({what} is not one); "
                            f"give options separated by spaces, such as {SPARK_JAVA_OPTIONS!r}, or set it empty for "
                            "the JVM's defaults")
    return value


def plan_cache_dir(env: Mapping[str, str] | None = None) -> Path | None:
    """LAKEHOUSE_PLAN_CACHE: the folder where DuckDB steps keep their transforms' plans for later
    processes (lakehouse/plan_cache.py); default `cache/plans` in LAKEHOUSE_HOME; `off`: none, each
    process plans its own. The folder must be the user's own (a plan is SQL a step runs)."""
    env = os.environ if env is None else env
    raw = (env.get("LAKEHOUSE_PLAN_CACHE") or "").strip()
    if raw.lower() == "off":
        return None
    if not raw:
        return home_dir(env) / "cache" / "plans"
    path = Path(raw).expanduser()
    if not path.is_absolute():
        raise SettingsError(f"LAKEHOUSE_PLAN_CACHE={raw!r} is not an absolute path; give a folder of your own, such "
                            "as ~/.cache/lakehouse/plans, or off to plan in each process")
    if path.exists() and not path.is_dir():
        raise SettingsError(f"LAKEHOUSE_PLAN_CACHE={raw!r} is a file, not a folder; give a folder, or off")
    return path


def spark_codegen(env: Mapping[str, str] | None = None) -> bool:
    """LAKEHOUSE_SPARK_CODEGEN (default SPARK_CODEGEN), checked: whether our steps on a Spark session
    started here use Spark's code generation."""
    env = os.environ if env is None else env
    raw = env.get("LAKEHOUSE_SPARK_CODEGEN") or ("true" if SPARK_CODEGEN else "false")
    value = raw.strip().lower()
    if value not in ("true", "false"):
        raise SettingsError(f"LAKEHOUSE_SPARK_CODEGEN={raw!r} is neither true nor false; set it true for Spark's "
                            "code generation in a Spark session started here (a long local run of millions of rows), "
                            "or false (the default) for small days")
    return value == "true"


_SNS_ARN = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$")


def _check_topic(value: str | None) -> str | None:
    if not value:
        return None
    if not _SNS_ARN.match(value.strip()):
        raise SettingsError(
            f"LAKEHOUSE_ALERT_TOPIC_ARN={value!r} is not an SNS topic ARN; use "
            "arn:aws:sns:<region>:<account>:<topic>, or unset it to log failures instead"
        )
    return value.strip()


def _check_url(name: str, value: str, example: str = "http://127.0.0.1:3000") -> str:
    if urlparse(value).scheme not in ("http", "https") or not urlparse(value).netloc:
        raise SettingsError(f"{name}={value!r} is not an http(s) URL; use e.g. {example}")
    return value.rstrip("/")


def _check_git_url(value: str | None) -> str | None:
    if not value:
        return None
    url = _check_url("LAKEHOUSE_GIT_URL", value, "https://github.com/<org>/<repo>")
    if "github" not in url and "gitlab" not in url:  # the hosts Dagster builds code links for
        raise SettingsError(f"LAKEHOUSE_GIT_URL={value!r}: code links are built for GitHub and GitLab URLs only; "
                            "use https://github.com/<org>/<repo> or https://gitlab.com/<group>/<repo>, or unset it")
    return url


_S3_PREFIX = re.compile(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?")
_ARN = re.compile(r"^arn:aws[a-z-]*:(iam|kms):[a-z0-9-]*:\d{12}:[A-Za-z0-9+=,.@_/:-]+$")


def _check_s3_prefix(name: str, value: str | None, why: str) -> str | None:
    if value is None:
        return None
    if not _S3_PREFIX.fullmatch(value.strip()):
        raise SettingsError(f"{name}={value!r} is not an s3://bucket/prefix URI; {why}")
    return value.strip().rstrip("/")


def _check_arn(name: str, value: str | None, what: str) -> str | None:
    if not value:
        return None
    if not _ARN.match(value.strip()):
        raise SettingsError(f"{name}={value!r} is not an ARN; set it to the {what}, arn:aws:...")
    return value.strip()


def _check_compute(env: Mapping[str, str], profile: str) -> tuple[str, AwsSettings]:
    compute = _check_choice("LAKEHOUSE_COMPUTE", env.get("LAKEHOUSE_COMPUTE") or "local", COMPUTES)
    aws = AwsSettings(
        pipes_uri=_check_s3_prefix("LAKEHOUSE_PIPES_URI", env.get("LAKEHOUSE_PIPES_URI") or None,
                                   "Dagster Pipes exchanges context and messages with the job there"),
        artifacts_uri=_check_s3_prefix("LAKEHOUSE_ARTIFACTS_URI", env.get("LAKEHOUSE_ARTIFACTS_URI") or None,
                                       "`lakehouse deploy` uploads the wheel and the entry script there"),
        glue_job=env.get("LAKEHOUSE_GLUE_JOB") or "lakehouse-step",
        glue_role_arn=_check_arn("LAKEHOUSE_GLUE_ROLE_ARN", env.get("LAKEHOUSE_GLUE_ROLE_ARN"),
                                 "IAM role the Glue job runs as"),
        glue_worker_type=env.get("LAKEHOUSE_GLUE_WORKER_TYPE") or "G.1X",
        glue_workers=_check_int("LAKEHOUSE_GLUE_WORKERS", env.get("LAKEHOUSE_GLUE_WORKERS") or "2", 2, 1000),
        emr_serverless_app=env.get("LAKEHOUSE_EMR_SERVERLESS_APP") or None,
        emr_role_arn=_check_arn("LAKEHOUSE_EMR_ROLE_ARN", env.get("LAKEHOUSE_EMR_ROLE_ARN"),
                                "EMR Serverless job execution role"),
        emr_release=env.get("LAKEHOUSE_EMR_RELEASE") or "emr-7.5.0",
        emr_instance_type=env.get("LAKEHOUSE_EMR_INSTANCE_TYPE") or "m5.xlarge",
        emr_instances=_check_int("LAKEHOUSE_EMR_INSTANCES", env.get("LAKEHOUSE_EMR_INSTANCES") or "3", 1, 1000),
        emr_service_role=env.get("LAKEHOUSE_EMR_SERVICE_ROLE") or "EMR_DefaultRole",
        emr_instance_profile=env.get("LAKEHOUSE_EMR_INSTANCE_PROFILE") or "EMR_EC2_DefaultRole",
        kms_key_arn=_check_arn("LAKEHOUSE_KMS_KEY_ARN", env.get("LAKEHOUSE_KMS_KEY_ARN"), "KMS key for SSE-KMS"),
    )
    # Glue's names for its worker types are case-sensitive.
    if aws.glue_worker_type not in GLUE_WORKER_TYPES:
        raise SettingsError(f"LAKEHOUSE_GLUE_WORKER_TYPE={aws.glue_worker_type!r} is not a Glue 5 worker type; "
                            f"set it to one of: {', '.join(GLUE_WORKER_TYPES)}")
    if compute == "local":
        return compute, aws
    if profile != "aws":
        raise SettingsError(f"LAKEHOUSE_COMPUTE={compute} needs LAKEHOUSE_PROFILE=aws: the job on AWS reads and "
                            "writes the tables through the Glue catalog, not a catalog on this machine")
    needed = {"LAKEHOUSE_PIPES_URI": (aws.pipes_uri, "s3://bucket/prefix where Dagster Pipes exchanges context "
                                                     "and messages with the job")}
    if compute in ("emr-serverless", "emr"):
        needed["LAKEHOUSE_ARTIFACTS_URI"] = (aws.artifacts_uri, "s3://bucket/prefix holding the entry script "
                                                                "and the Python environment (see `lakehouse deploy`)")
    if compute == "emr-serverless":
        needed["LAKEHOUSE_EMR_SERVERLESS_APP"] = (aws.emr_serverless_app, "id of the EMR Serverless Spark application")
        needed["LAKEHOUSE_EMR_ROLE_ARN"] = (aws.emr_role_arn, "ARN of the job execution role")
    for name, (value, what) in needed.items():
        if not value:
            raise SettingsError(f"{name} is not set: LAKEHOUSE_COMPUTE={compute} needs the {what}")
    return compute, aws


def home_dir(env: Mapping[str, str] | None = None) -> Path:
    """LAKEHOUSE_HOME (default ./.lakehouse), absolute; not created here."""
    env = os.environ if env is None else env
    return Path(env.get("LAKEHOUSE_HOME") or "./.lakehouse").expanduser().resolve()


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read the settings from `env` (default: the process environment)."""
    env = os.environ if env is None else env
    home = home_dir(env)
    _make_dir("LAKEHOUSE_HOME", str(home), home)
    profile = _check_choice("LAKEHOUSE_PROFILE", env.get("LAKEHOUSE_PROFILE") or "local", PROFILES)
    engine = _check_choice("LAKEHOUSE_ENGINE", env.get("LAKEHOUSE_ENGINE") or "duckdb", ENGINES)
    landing = _check_landing(env.get("LAKEHOUSE_LANDING_URI") or f"file://{home}/landing")
    default_catalog = "" if profile == "aws" else f"sqlite:///{home}/catalog.db"
    catalog = _check_catalog(env.get("LAKEHOUSE_CATALOG_URI") or default_catalog, profile)
    warehouse_default = "" if profile == "aws" else f"file://{home}/warehouse"
    warehouse_raw = env.get("LAKEHOUSE_WAREHOUSE_URI") or warehouse_default
    if not warehouse_raw:
        raise SettingsError(
            "LAKEHOUSE_WAREHOUSE_URI is required with LAKEHOUSE_PROFILE=aws; "
            "set it to s3://bucket/warehouse"
        )
    warehouse = _check_warehouse(warehouse_raw, profile)
    dagster_home = Path(env.get("DAGSTER_HOME") or home / "dagster").expanduser().resolve()
    _make_dir("DAGSTER_HOME", str(dagster_home), dagster_home, " or unset it")  # dagster needs it to exist
    start = _check_date("LAKEHOUSE_START_DATE", env.get("LAKEHOUSE_START_DATE") or "2025-01-01")
    compute, aws = _check_compute(env, profile)
    return Settings(
        home=home,
        landing_uri=landing,
        profile=profile,
        engine=engine,
        catalog_uri=catalog,
        warehouse_uri=warehouse,
        dagster_home=dagster_home,
        start_date=start,
        aws_region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
        aws_endpoint_url=env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL"),
        sensor_interval_seconds=_check_int(
            "LAKEHOUSE_SENSOR_INTERVAL", env.get("LAKEHOUSE_SENSOR_INTERVAL") or "30", 1, 86400),
        landing_lookback_days=_check_int(
            "LAKEHOUSE_LANDING_LOOKBACK_DAYS", env.get("LAKEHOUSE_LANDING_LOOKBACK_DAYS") or "3", 1, 366),
        landing_sweep_prefixes=_check_int(
            "LAKEHOUSE_LANDING_SWEEP_PREFIXES", env.get("LAKEHOUSE_LANDING_SWEEP_PREFIXES") or "8", 0, 10000),
        alert_topic_arn=_check_topic(env.get("LAKEHOUSE_ALERT_TOPIC_ARN")),
        ui_url=_check_url("LAKEHOUSE_UI_URL", env.get("LAKEHOUSE_UI_URL") or "http://127.0.0.1:3000"),
        compute=compute,
        aws=aws,
        git_url=_check_git_url(env.get("LAKEHOUSE_GIT_URL")),
        git_branch=env.get("LAKEHOUSE_GIT_BRANCH") or "main",
        duckdb_memory_limit=duckdb_memory_limit(env),
        spark_java_options=spark_java_options(env),
        spark_codegen=spark_codegen(env),
        plan_cache=plan_cache_dir(env),
    )
