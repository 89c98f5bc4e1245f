"""The `lakehouse` command: generate sample data, run the pipeline, inspect the tables."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time

from lakehouse.contracts.declared import DeclarationError
from lakehouse.settings import Settings, SettingsError, load_settings


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date; use YYYY-MM-DD") from None


def _positive_int(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive whole number")
    return int(value)


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if number <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive number")
    return number


def cmd_generate(settings: Settings, args) -> int:
    from lakehouse.generate import generate
    from lakehouse.resources.landing import open_landing_zone

    started = time.perf_counter()
    report = generate(
        open_landing_zone(settings.landing_uri),
        days=args.days, start=args.start, seed=args.seed, scale=args.scale, dirty=args.dirty,
    )
    path = settings.home / "generation_report.json"
    path.write_text(json.dumps(report.as_dict(), indent=2))
    last = report.start + dt.timedelta(days=report.days - 1)
    print(
        f"Generated {len(report.files)} files for {report.start} .. {last} into {settings.landing_uri} "
        f"in {time.perf_counter() - started:.1f}s"
    )
    print("Rows written: " + ", ".join(f"{s} {n:,}" for s, n in report.rows.items()))
    if report.dirty:
        print("Defects injected: " + ", ".join(f"{k} {v}" for k, v in report.defect_counts().items()))
    print(f"Report: {path}")
    return 0


def cmd_run(settings: Settings, args) -> int:
    from lakehouse.runner import run_pending

    outcome = run_pending(settings, timeout=args.timeout, echo=lambda line: print(line, flush=True))
    return _report(outcome)


def _report(outcome) -> int:
    """Print how `lakehouse run` (or backfill) ended; a configuration error goes to stderr. The exit code."""
    from lakehouse.runner import EXIT_CONFIG

    print(outcome.render(), file=sys.stderr if outcome.exit_code == EXIT_CONFIG else sys.stdout, flush=True)
    return outcome.exit_code


def cmd_demo(settings: Settings, args) -> int:
    code = cmd_generate(settings, args)
    return code or cmd_run(settings, args)


def cmd_backfill(settings: Settings, args) -> int:
    from lakehouse.backfill import BackfillError, launch_backfill, plan_backfill
    from lakehouse.preflight import declaration_problem
    from lakehouse.runner import run_pending

    if problem := declaration_problem(settings):  # before the backfill is queued, not after
        print(f"lakehouse backfill: {problem}", file=sys.stderr)
        return 2
    try:
        request = plan_backfill(settings, args.start, args.end, args.select)
        backfill_id = launch_backfill(settings, request)
    except BackfillError as exc:
        print(f"lakehouse backfill: {exc}", file=sys.stderr)
        return 2
    print(f"Backfill {backfill_id} launched: {request.title}: "
          + ", ".join(k.to_user_string() for k in request.assets), flush=True)
    print(f"Follow it in the UI: {settings.ui_url}/runs/b/{backfill_id}", flush=True)
    if args.no_wait:
        return 0
    outcome = run_pending(settings, timeout=args.timeout, echo=lambda line: print(line, flush=True),
                          backfill_id=backfill_id)
    return _report(outcome)


def cmd_status(settings: Settings, args) -> int:
    from lakehouse.iceberg import TableStore, catalog_from_settings
    from lakehouse.runner import open_instance
    from lakehouse.summary import (
        render_all_checks,
        render_fallbacks,
        render_recovered,
        render_scratch,
        render_stuck_work,
        render_summary,
    )

    store = TableStore(catalog_from_settings(settings))
    if args.checks:
        print(render_all_checks(store))
        return 0
    with open_instance(settings) as instance:
        print(render_summary(store, instance) + "\n\n" + render_stuck_work(store, instance) + "\n\n"
              + render_recovered(instance) + "\n\n" + render_scratch() + "\n\n" + render_fallbacks(settings.home))
    return 0


def cmd_query(settings: Settings, args) -> int:
    from lakehouse.query import QueryError, run_query

    try:
        print(run_query(settings, args.sql, args.branch, args.as_of))
    except QueryError as exc:
        print(f"query failed: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_deploy(settings: Settings, args) -> int:
    from lakehouse.deploy import DeployError, deploy

    try:
        return deploy(settings, apply=args.apply)
    except DeployError as exc:
        print(f"lakehouse deploy: {exc}", file=sys.stderr)
        return 2


def cmd_policy(settings: Settings, args) -> int:
    from lakehouse.policies import render_policy

    try:
        print(render_policy(settings, args.role))
    except ValueError as exc:
        print(f"lakehouse policy: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_lineage(settings: Settings, args) -> int:
    from lakehouse import lineage

    if args.write:
        tables = lineage.write()
        print(f"Stored the column lineage of {len(tables)} tables in {lineage.STORED}")
        return 0
    tables = lineage.current()
    if args.table and args.table not in tables:
        print(f"lakehouse lineage: no lineage for {args.table!r}; tables: {', '.join(sorted(tables))}",
              file=sys.stderr)
        return 2
    for table, columns in tables.items():
        if args.table in (None, table):
            print(table)
            for column, deps in columns.items():
                print(f"  {column} <- {', '.join(f'{t}.{c}' for t, c in deps) or '(computed from no column)'}")
    return 0


def cmd_ui(settings: Settings, args) -> int:
    """The Dagster UI and daemon over the instance; on an instance with no runs, the demo first."""
    from urllib.parse import urlsplit

    import dagster as dg

    from lakehouse.daemon_watch import lock_holder
    from lakehouse.runner import Daemon, prepare_instance

    workspace = prepare_instance(settings)
    instance = dg.DagsterInstance.from_config(str(settings.dagster_home))
    empty = not instance.get_runs(limit=1)
    instance.dispose()
    if empty and not args.no_demo:
        print(f"No runs in {settings.dagster_home} yet: running the demo first, so the UI has history to show.",
              flush=True)
        code = cmd_demo(settings, args)
        if code:
            return code
    url = urlsplit(settings.ui_url)
    host = args.host or url.hostname or "127.0.0.1"
    port = args.port or url.port or (443 if url.scheme == "https" else 80)
    webserver = os.path.join(os.path.dirname(sys.executable), "dagster-webserver")
    # The daemon holds the instance's lock (it waits while a `lakehouse run` daemon holds it,
    # and takes over when that one ends) and stops with its group when the webserver ends:
    # the webserver inherits the write end of the daemon's watch pipe.
    holder = lock_holder(settings.dagster_home)
    daemon = Daemon(settings, workspace, sensor_interval=None)
    os.set_inheritable(daemon.watch_fd, True)
    waiting = (f"; it starts when the daemon running now (pid {holder}) ends" if holder else "")
    print(f"dagster-daemon pid {daemon.pid}, log {daemon.log_path}{waiting}", flush=True)
    print(f"Dagster UI on http://{host}:{port} (LAKEHOUSE_UI_URL, or --host/--port); Ctrl-C stops it and the daemon.",
          flush=True)
    # exec: Ctrl-C and a service manager's signals reach the webserver; its end stops the daemon.
    os.execv(webserver, [webserver, "-w", str(workspace), "-h", host, "-p", str(port)])
    return 0


def _profile_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", choices=("local", "aws"), help="overrides LAKEHOUSE_PROFILE")


def _generate_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--days", type=_positive_int, default=7, help="ingest days to write (default 7)")
    parser.add_argument("--start", type=_date, help="first ingest date (default: so the last day is today)")
    parser.add_argument("--seed", type=int, default=42, help="random seed; same seed, same files")
    parser.add_argument("--scale", type=_positive_float, default=1.0, help="multiply rows per day")
    parser.add_argument("--dirty", action="store_true", help="inject realistic defects in known counts")


RUN_EXIT_CODES = ("exit codes: 0 done, every run succeeded; 1 a run failed, a sensor tick failed, the daemon died "
                  "or --timeout passed; 2 configuration (a bad setting, a landing zone that cannot be listed); "
                  "130/143 stopped by SIGINT/SIGTERM, with the daemon and the runs it started")


def _run_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=_positive_float, default=1800,
                        help="seconds to wait for the daemon to finish (default 1800)")
    parser.epilog = RUN_EXIT_CODES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lakehouse", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write sample files into the landing zone")
    _generate_args(gen)
    gen.set_defaults(func=cmd_generate)
    run = sub.add_parser("run", help="let the sensors and automation process the landing zone, then summarise")
    _run_args(run)
    run.set_defaults(func=cmd_run)
    demo = sub.add_parser("demo", help="generate + run + summary")
    _generate_args(demo)
    _run_args(demo)
    demo.set_defaults(func=cmd_demo)
    backfill = sub.add_parser(
        "backfill", help="(re)process a range of ingest dates as one Dagster backfill, one run per range",
        description="Launch a Dagster backfill of the ingest dates --start..--end (the same as the UI's "
                    "'Materialize selected' over a range), then run the daemon until it is done.")
    backfill.add_argument("--start", type=_date, required=True, help="first ingest date, YYYY-MM-DD")
    backfill.add_argument("--end", type=_date, required=True, help="last ingest date, YYYY-MM-DD (inclusive)")
    backfill.add_argument("--select", help="Dagster asset selection, e.g. 'group:silver or group:gold' or "
                                           "'key:silver/orders+' (default: every asset)")
    backfill.add_argument("--no-wait", action="store_true",
                          help="launch only; a running daemon (make ui) carries it out")
    _run_args(backfill)
    backfill.set_defaults(func=cmd_backfill)
    status = sub.add_parser("status", help="tables, partitions, row counts, accounting, sales and stuck work")
    status.add_argument("--checks", action="store_true", help="list the last result of every check instead")
    status.set_defaults(func=cmd_status)
    query = sub.add_parser("query", help="DuckDB SQL over the Iceberg tables, e.g. 'select count(*) from bronze.orders'")
    query.add_argument("sql")
    at = query.add_mutually_exclusive_group()
    at.add_argument("--branch", help="read tables at this audit branch (as named by a failed check) instead of main")
    at.add_argument("--as-of", help="time travel: a snapshot id (as a materialization's metadata shows) or an "
                                    "ISO time such as 2026-03-02T10:00:00Z")
    query.set_defaults(func=cmd_query)
    ui = sub.add_parser(
        "ui", help="start the Dagster UI and daemon on LAKEHOUSE_UI_URL (the demo first on an empty instance)",
        description="Run the Dagster webserver and a daemon over DAGSTER_HOME at the host and port of "
                    "LAKEHOUSE_UI_URL. When the instance has no runs yet, run the demo first (the options "
                    "below shape it), so lineage, checks and materializations have something to show.")
    _generate_args(ui)
    _run_args(ui)
    ui.add_argument("--no-demo", action="store_true", help="start on an empty instance as it is")
    ui.add_argument("--host", help="address to serve on (default: the host of LAKEHOUSE_UI_URL)")
    ui.add_argument("--port", type=_positive_int, help="port to serve on (default: the port of LAKEHOUSE_UI_URL)")
    ui.set_defaults(func=cmd_ui)
    lineage = sub.add_parser(
        "lineage", help="which input columns every silver and gold column is computed from",
        description="Column lineage, derived from the transforms (the UI shows it as dagster/column_lineage).")
    lineage.add_argument("table", nargs="?", help="one table, e.g. gold.mart_daily_sales (default: all)")
    lineage.add_argument("--write", action="store_true",
                         help="derive it again and store it in lakehouse/column_lineage.json")
    lineage.set_defaults(func=cmd_lineage)
    deploy = sub.add_parser(
        "deploy", help="upload the wheel and entry script, create or update the Glue job (idempotent)",
        description="Compare what the Spark jobs need on AWS with what exists, and with --apply make the "
                    "differences: bucket default encryption, the wheel and run_step.py under "
                    "LAKEHOUSE_ARTIFACTS_URI, the Glue security configuration and job LAKEHOUSE_GLUE_JOB.")
    _profile_arg(deploy)
    mode = deploy.add_mutually_exclusive_group(required=True)
    mode.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    mode.add_argument("--apply", action="store_true", help="make the planned changes")
    deploy.set_defaults(func=cmd_deploy)
    policy = sub.add_parser("policy", help="print a least-privilege IAM policy document for the settings")
    _profile_arg(policy)
    policy.add_argument("role", choices=("job", "dagster"),
                        help="job: the role Glue/EMR runs the steps as; dagster: the Dagster deployment's")
    policy.set_defaults(func=cmd_policy)
    return parser


def main(argv: list[str] | None = None) -> int:
    from lakehouse import collector
    from lakehouse.daemon_watch import unblock_stops

    collector.tune()  # before the imports of Dagster and PyIceberg (lakehouse/collector.py)
    unblock_stops("lakehouse")
    args = build_parser().parse_args(argv)
    env = dict(os.environ)
    if getattr(args, "profile", None):
        env["LAKEHOUSE_PROFILE"] = args.profile
    try:
        settings = load_settings(env)
        from lakehouse.contracts import CONTRACTS  # noqa: F401  the source declarations, checked here once
    except SettingsError as exc:
        print(f"lakehouse: configuration error: {exc}", file=sys.stderr)
        return 2
    except DeclarationError as exc:
        print(f"lakehouse: source declaration error: {exc}", file=sys.stderr)
        return 2
    os.environ.setdefault("DAGSTER_HOME", str(settings.dagster_home))
    try:
        return args.func(settings, args)
    except DeclarationError as exc:  # found once the transforms load (a derived column with no code)
        print(f"lakehouse: source declaration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C outside `lakehouse run`'s own handling: no traceback
        print("lakehouse: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
