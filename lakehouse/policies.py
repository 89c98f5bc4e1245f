"""Least-privilege IAM policy documents, from the settings: `lakehouse policy job|dagster`.

- `job`: the role the Glue job (or EMR Serverless / EMR step) runs as. It reads the
  Pipes context and the artifacts, writes Pipes messages, reads and writes the
  warehouse and the lakehouse's four Glue databases, and writes its logs.
- `dagster`: what the Dagster deployment (webserver, daemon, run workers, `lakehouse
  deploy`) needs: the landing zone, the warehouse and catalog (bronze is written by
  Dagster itself), launching and stopping the jobs, passing the job role, deploying.

Both deny writes that ask for weaker encryption than the lakehouse requires, and any
request without TLS. Encryption at rest itself is the buckets' default encryption,
which `lakehouse deploy` sets and checks.
"""

from __future__ import annotations

import json

from lakehouse.settings import Settings, s3_parts

DATABASES = ("bronze", "silver", "gold", "ops")
CATALOG_READ = ["glue:GetDatabase", "glue:GetDatabases", "glue:GetTable", "glue:GetTables",
                "glue:GetPartition", "glue:GetPartitions"]
CATALOG_WRITE = ["glue:CreateDatabase", "glue:CreateTable", "glue:UpdateTable"]


def _objects(uri: str) -> str:
    bucket, key = s3_parts(uri)
    return f"arn:aws:s3:::{bucket}/{key + '/' if key else ''}*"


def _listing(uri: str) -> dict:
    bucket, key = s3_parts(uri)
    statement = {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{bucket}"}
    if key:
        statement["Condition"] = {"StringLike": {"s3:prefix": [key, f"{key}/*"]}}
    return statement


def _where(settings: Settings) -> tuple[str, str]:
    """Region and account of the ARNs: from the settings and the job role, else any."""
    account = "*"
    for arn in (settings.aws.glue_role_arn, settings.aws.emr_role_arn):
        if arn:
            account = arn.split(":")[4]
            break
    return settings.aws_region or "*", account


def _catalog(settings: Settings) -> dict:
    region, account = _where(settings)
    base = f"arn:aws:glue:{region}:{account}"
    resources = [f"{base}:catalog"]
    resources += [f"{base}:database/{db}" for db in DATABASES]
    resources += [f"{base}:table/{db}/*" for db in DATABASES]
    return {"Sid": "LakehouseCatalog", "Effect": "Allow", "Action": CATALOG_READ + CATALOG_WRITE,
            "Resource": resources}


def _encryption_guards(settings: Settings, uris: list[str]) -> list[dict]:
    objects = sorted({_objects(u) for u in uris})
    buckets = sorted({f"arn:aws:s3:::{s3_parts(u)[0]}" for u in uris})
    kms = settings.aws.kms_key_arn
    allowed = ["aws:kms", "aws:kms:dsse"] if kms else ["AES256", "aws:kms", "aws:kms:dsse"]
    guards = [
        {"Sid": "DenyWeakerEncryption", "Effect": "Deny", "Action": "s3:PutObject", "Resource": objects,
         "Condition": {"StringNotEqualsIfExists": {"s3:x-amz-server-side-encryption": allowed}}},
        {"Sid": "DenyWithoutTLS", "Effect": "Deny", "Action": "s3:*", "Resource": buckets + objects,
         "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
    ]
    if kms:
        guards.insert(1, {"Sid": "DenyOtherKeys", "Effect": "Deny", "Action": "s3:PutObject", "Resource": objects,
                          "Condition": {"StringNotEqualsIfExists": {
                              "s3:x-amz-server-side-encryption-aws-kms-key-id": kms}}})
    return guards


def _kms(settings: Settings) -> list[dict]:
    kms = settings.aws.kms_key_arn
    if not kms:
        return []
    return [{"Sid": "LakehouseKey", "Effect": "Allow", "Resource": kms,
             "Action": ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"]}]


def _require(settings: Settings) -> None:
    missing = [n for n, v in (("LAKEHOUSE_PIPES_URI", settings.aws.pipes_uri),
                              ("LAKEHOUSE_ARTIFACTS_URI", settings.aws.artifacts_uri)) if not v]
    if settings.profile != "aws" or missing:
        raise ValueError("the policies are for the aws profile with its S3 locations: set LAKEHOUSE_PROFILE=aws"
                         + "".join(f" and {n}" for n in missing))


def job_policy(settings: Settings) -> dict:
    """The job role's policy (Glue, EMR Serverless, EMR)."""
    _require(settings)
    aws = settings.aws
    region, account = _where(settings)
    statements = [
        {"Sid": "Warehouse", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
         "Resource": _objects(settings.warehouse_uri)},
        {"Sid": "PipesAndTemp", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
         "Resource": _objects(aws.pipes_uri)},
        {"Sid": "Artifacts", "Effect": "Allow", "Action": "s3:GetObject", "Resource": _objects(aws.artifacts_uri)},
        _listing(settings.warehouse_uri), _listing(aws.pipes_uri),
        _catalog(settings),
        {"Sid": "JobLogs", "Effect": "Allow",
         "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:AssociateKmsKey"],
         "Resource": [f"arn:aws:logs:{region}:{account}:log-group:/aws-glue/*",
                      f"arn:aws:logs:{region}:{account}:log-group:/aws/emr-serverless*"]},
        {"Sid": "JobMetrics", "Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*",
         "Condition": {"StringEquals": {"cloudwatch:namespace": "Glue"}}},
        *_kms(settings),
        *_encryption_guards(settings, [settings.warehouse_uri, aws.pipes_uri]),
    ]
    return {"Version": "2012-10-17", "Statement": statements}


def dagster_policy(settings: Settings) -> dict:
    """The Dagster deployment's policy: sensors, bronze, launching the jobs, `lakehouse deploy`."""
    _require(settings)
    aws = settings.aws
    region, account = _where(settings)
    written = [settings.warehouse_uri, aws.pipes_uri, aws.artifacts_uri]
    statements = [
        {"Sid": "WarehousePipesArtifacts", "Effect": "Allow",
         "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], "Resource": [_objects(u) for u in written]},
        *[_listing(u) for u in written],
        _catalog(settings),
        {"Sid": "BucketEncryption", "Effect": "Allow",
         "Action": ["s3:GetEncryptionConfiguration", "s3:PutEncryptionConfiguration"],
         "Resource": sorted({f"arn:aws:s3:::{s3_parts(u)[0]}" for u in written})},
        *_kms(settings),
    ]
    if settings.landing_is_s3:
        statements += [{"Sid": "Landing", "Effect": "Allow", "Action": "s3:GetObject",
                        "Resource": _objects(settings.landing_uri)}, _listing(settings.landing_uri)]
    if settings.alert_topic_arn:
        statements.append({"Sid": "Alerts", "Effect": "Allow", "Action": "sns:Publish",
                           "Resource": settings.alert_topic_arn})
    glue = f"arn:aws:glue:{region}:{account}"
    statements.append({"Sid": "GlueJob", "Effect": "Allow", "Resource": f"{glue}:job/{aws.glue_job}",
                       "Action": ["glue:StartJobRun", "glue:GetJobRun", "glue:GetJobRuns", "glue:BatchStopJobRun",
                                  "glue:GetJob", "glue:CreateJob", "glue:UpdateJob", "glue:TagResource"]})
    statements.append({"Sid": "GlueSecurityConfiguration", "Effect": "Allow", "Resource": "*",
                       "Action": ["glue:GetSecurityConfiguration", "glue:CreateSecurityConfiguration"]})
    passed = [(aws.glue_role_arn, "glue.amazonaws.com")]
    if aws.emr_serverless_app:
        statements.append({"Sid": "EmrServerless", "Effect": "Allow",
                           "Resource": [f"arn:aws:emr-serverless:{region}:{account}:/applications/"
                                        f"{aws.emr_serverless_app}",
                                        f"arn:aws:emr-serverless:{region}:{account}:/applications/"
                                        f"{aws.emr_serverless_app}/jobruns/*"],
                           "Action": ["emr-serverless:StartJobRun", "emr-serverless:GetJobRun",
                                      "emr-serverless:CancelJobRun", "emr-serverless:GetDashboardForJobRun",
                                      "emr-serverless:GetApplication", "emr-serverless:TagResource"]})
        passed.append((aws.emr_role_arn, "emr-serverless.amazonaws.com"))
    if settings.compute == "emr":
        statements.append({"Sid": "Emr", "Effect": "Allow", "Resource": "*",
                           "Action": ["elasticmapreduce:RunJobFlow", "elasticmapreduce:DescribeCluster",
                                      "elasticmapreduce:ListSteps", "elasticmapreduce:TerminateJobFlows",
                                      "elasticmapreduce:AddTags"]})
        passed += [(f"arn:aws:iam::{account}:role/{aws.emr_service_role}", "elasticmapreduce.amazonaws.com"),
                   (f"arn:aws:iam::{account}:role/{aws.emr_instance_profile}", "ec2.amazonaws.com")]
    for role, service in passed:
        if role:
            statements.append({"Effect": "Allow", "Action": "iam:PassRole", "Resource": role,
                               "Condition": {"StringEquals": {"iam:PassedToService": service}}})
    statements += _encryption_guards(settings, written)
    return {"Version": "2012-10-17", "Statement": statements}


POLICIES = {"job": job_policy, "dagster": dagster_policy}


def render_policy(settings: Settings, which: str) -> str:
    return json.dumps(POLICIES[which](settings), indent=2)
