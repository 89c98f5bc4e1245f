"""Can the landing zone be listed? Asked before `lakehouse run` starts the daemon, and again
when a landing sensor tick fails, so the message says what to fix instead of a traceback.

The landing sensor lists the zone on every tick; with a wrong endpoint, credentials or
bucket each tick fails and the error is only in the daemon's log. Listing one page of
the prefix here, with the same boto3 chain the sensor uses, finds that at once.
Secrets are never printed: only where boto3 found the credentials (its `method`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlparse

# Seconds and attempts for the one listing: an unreachable endpoint fails in seconds, not minutes.
CONNECT_TIMEOUT, READ_TIMEOUT, ATTEMPTS = 5, 10, 2

_CONNECTION = {"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError",
               "SSLError", "ProxyConnectionError", "HTTPClientError", "InvalidEndpointError", "ValueError"}
_CREDENTIALS = {"NoCredentialsError", "PartialCredentialsError", "ProfileNotFound", "CredentialRetrievalError",
                "InvalidConfigError", "SSOTokenLoadError", "UnauthorizedSSOTokenError", "TokenRetrievalError"}
_REJECTED = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "TokenRefreshRequired",
             "InvalidClientTokenId", "UnrecognizedClientException", "AuthFailure"}
_DENIED = {"AccessDenied", "AllAccessDisabled", "Forbidden", "403"}
_REGION = {"PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException", "301"}


def credential_source() -> str:
    """Where boto3's chain finds credentials (env, shared-credentials-file, iam-role, sso, ...)."""
    profile = os.environ.get("AWS_PROFILE")
    where = f"AWS_PROFILE={profile}" if profile else "AWS_PROFILE unset"
    try:
        import boto3

        credentials = boto3.Session().get_credentials()
    except Exception as exc:  # a broken profile or config file: say so, it is the thing to fix
        return f"none usable: {type(exc).__name__}: {exc} ({where})"
    if credentials is None:
        return f"none found in boto3's chain (environment, shared credentials and config files, SSO, " \
               f"container or instance role; {where})"
    return f"{credentials.method} (boto3's credential chain; {where})"


def endpoint(client=None) -> str:
    """The S3 endpoint boto3 uses, and why: AWS_ENDPOINT_URL(_S3) or boto3's default."""
    for variable in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        if os.environ.get(variable):
            return f"{os.environ[variable]} ({variable})"
    url = getattr(getattr(client, "meta", None), "endpoint_url", None) or "https://s3.amazonaws.com"
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return f"{url} (AWS S3, boto3's default{f' for {region}' if region else ''}; AWS_ENDPOINT_URL unset)"


def describe_landing(uri: str, client=None) -> list[str]:
    """The facts needed to fix access to the landing zone, one per line, no secrets."""
    lines = [f"landing zone: {uri} (LAKEHOUSE_LANDING_URI)"]
    if uri.startswith("s3://"):
        lines += [f"endpoint:     {endpoint(client)}", f"credentials:  {credential_source()}"]
    return lines


def _fix(code: str, uri: str, bucket: str) -> str:
    if code in _CONNECTION:
        return ("nothing usable answers at that endpoint: check AWS_ENDPOINT_URL (unset it to use AWS S3), "
                "that the server runs, and the network or proxy")
    if code in _CREDENTIALS:
        return ("give boto3 credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE with "
                "~/.aws/credentials or SSO (aws sso login), or run where a container or instance role is attached")
    if code in _REJECTED:
        return "the endpoint refuses these credentials: check the key, secret and session token, or refresh them"
    if code in _DENIED:
        return (f"these credentials may not list {uri}: grant s3:ListBucket on bucket {bucket} for that prefix "
                "(`lakehouse policy --profile aws dagster` prints the policy)")
    if code == "NoSuchBucket":
        return (f"bucket {bucket} does not exist at this endpoint: create it (aws s3 mb s3://{bucket}) "
                "or fix LAKEHOUSE_LANDING_URI")
    if code in _REGION:
        return f"bucket {bucket} is in another region: set AWS_REGION (or AWS_DEFAULT_REGION) to the bucket's region"
    return "check LAKEHOUSE_LANDING_URI, AWS_ENDPOINT_URL and the credentials above"


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error") or {}
        return str(error.get("Code") or response.get("ResponseMetadata", {}).get("HTTPStatusCode") or "")
    return type(exc).__name__


def _s3_problem(uri: str) -> str | None:
    import boto3
    from botocore.config import Config

    parsed = urlparse(uri)
    bucket, prefix = parsed.netloc, parsed.path.strip("/")
    client = None
    try:
        config = Config(connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT,
                        retries={"max_attempts": ATTEMPTS, "mode": "standard"})
        client = boto3.client("s3", config=config)
        client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/" if prefix else "", MaxKeys=1)
        return None
    except Exception as exc:  # any failure to list is the user's to fix; the message says how
        code = _error_code(exc)
        return _message(uri, f"{type(exc).__name__}: {exc}", _fix(code, uri, bucket), client)


def _local_problem(uri: str) -> str | None:
    root = Path(urlparse(uri).path if uri.startswith("file://") else uri)
    if not root.exists():
        return None  # nothing landed yet: the sensor finds nothing, `lakehouse run` says so
    if not root.is_dir():
        return _message(uri, f"{root} is not a directory", "point LAKEHOUSE_LANDING_URI at a directory")
    if not os.access(root, os.R_OK | os.X_OK):
        return _message(uri, f"{root} cannot be read by this user", f"make {root} readable, or run as its owner")
    return None


def _message(uri: str, error: str, fix: str, client=None) -> str:
    lines = ["the landing zone cannot be listed, so the landing sensor fails on every tick."]
    lines += [f"  {line}" for line in describe_landing(uri, client)]
    lines += [f"  error:        {' '.join(error.split())}", f"  fix:          {fix}"]
    return "\n".join(lines)


def landing_problem(uri: str) -> str | None:
    """None when one page of the landing prefix can be listed; otherwise what failed and what to fix."""
    return _s3_problem(uri) if uri.startswith("s3://") else _local_problem(uri)


def declaration_problem(settings) -> str | None:
    """Every source declaration that its existing silver table cannot follow (`iceberg.refusal`):
    found before the daemon starts or a backfill is launched, so the command exits with the
    fix instead of every step of those sources failing with it. None when all can follow.
    """
    from lakehouse.contracts import CONTRACTS
    from lakehouse.contracts.declared import misfit
    from lakehouse.iceberg import catalog_from_settings, has_rows, refusal
    from lakehouse.tables import silver_table

    tables = {source: silver_table(source) for source in CONTRACTS}
    try:
        catalog = catalog_from_settings(settings)
        existing = {s: catalog.load_table(t.identifier) for s, t in tables.items() if catalog.table_exists(t.identifier)}
    except Exception as exc:  # noqa: BLE001  the catalog is unreachable: not a declaration problem
        # The steps meet the same error and report it; say here that the check was not made.
        print(f"lakehouse: could not check the declarations against the tables ({type(exc).__name__}: {exc})",
              file=sys.stderr)
        return None
    problems = []
    for source, table in existing.items():
        declared = tables[source]
        why = refusal(declared.identifier, declared.schema, table.schema().as_arrow(), table.properties,
                      dict(declared.declared), has_rows(table))
        if why:
            problems.append(misfit(source, why))
    return "\n".join(problems) + "\nNothing was run." if problems else None
