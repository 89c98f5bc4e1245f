"""Spark's classes archived once per machine (Java's class-data sharing), mapped by every local Spark JVM.

A local Spark session's JVM reads, parses and links thousands of classes from about 250 jars
before its first query, and more as new operators come: seconds of CPU each time a process
starts a session (README, Engines). Java 17 can write the classes a JVM loaded into an archive
as it exits (`-XX:ArchiveClassesAtExit`), which later JVMs map instead (`-XX:SharedArchiveFile`).
An archive fits one Java build, one set of Spark jars and one set of JVM options; its name is a
digest of them, so another JDK, pyspark or LAKEHOUSE_SPARK_JAVA_OPTIONS looks for (and builds)
another archive and never maps a wrong one.

The archive is written by a training JVM as it exits, which a kill can cut short, and a cut
archive makes every JVM that maps it crash at start (SIGBUS). So the training writes a
temporary file, and only once that JVM has exited and a separate JVM has mapped the file with
every region's checksum verified (`-Xshare:on -XX:+VerifySharedSpaces`) is it renamed to the
archive's name, atomically. Sessions only ever use a file of that name; without one they start
as before.

`python -m lakehouse.spark_classes` (run by `make test`, or `make spark-classes`) builds the
archive when there is none: two small generated days and the dimensions through the daily and
dimension jobs on the spark engine, in a temporary home, about a minute once per machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lakehouse.settings import SettingsError, spark_class_archive_dir, spark_java_options

ARCHIVE_OPTION = "-XX:SharedArchiveFile="
# Variables that change the classpath Spark's launcher gives the JVM (the archive records it).
CLASSPATH_VARIABLES = ("SPARK_HOME", "SPARK_CONF_DIR", "SPARK_CLASSPATH", "HADOOP_CONF_DIR", "YARN_CONF_DIR")

TRAINING = r"""
import datetime as dt, json, logging, os, sys
logging.disable(logging.WARNING)
from lakehouse.generate import generate
from lakehouse.resources.landing import open_landing_zone
from lakehouse.runner import open_instance
from lakehouse.settings import load_settings
from lakehouse.wiring import DAILY_JOB, DIMENSIONS_JOB, build_definitions

settings = load_settings()
first = dt.date(2026, 1, 5)
generate(open_landing_zone(settings.landing_uri), days=2, start=first, seed=5, scale=0.02, dirty=True)
defs = build_definitions(settings)
quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
with open_instance(settings) as instance:
    for day in (first, first + dt.timedelta(days=1)):
        defs.resolve_job_def(DAILY_JOB).execute_in_process(instance=instance, partition_key=day.isoformat(),
                                                           run_config=quiet)
    defs.resolve_job_def(DIMENSIONS_JOB).execute_in_process(instance=instance, run_config=quiet)
from pyspark import SparkContext
gateway = SparkContext._gateway
system = gateway.jvm.java.lang.System
runtime = gateway.jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
facts = {"java": os.path.join(system.getProperty("java.home"), "bin", "java"),
         "classpath": system.getProperty("java.class.path"),
         # As Spark's launcher gave them (it adds the heap, module openings...), less the training's own.
         "jvm_args": [a for a in runtime.getInputArguments()
                      if not a.startswith(("-XX:ArchiveClassesAtExit=", "-XX:+VerifySharedSpaces"))]}
if SparkContext._active_spark_context is not None:
    SparkContext._active_spark_context.stop()
# Spark's gateway JVM exits when its Python closes its standard input, and writes the archive then.
gateway.proc.stdin.close()
facts["exit"] = gateway.proc.wait(timeout=600)
print(json.dumps(facts), flush=True)
os._exit(0)  # the JVM is gone: py4j's own shutdown would only complain about it
"""


class ArchiveError(Exception):
    """The archive could not be built; the message says why and what to do."""


def java_binary() -> Path | None:
    """The java Spark's launcher runs: JAVA_HOME's, else the first on PATH."""
    home = os.environ.get("JAVA_HOME")
    found = os.path.join(home, "bin", "java") if home else shutil.which("java")
    return Path(found).resolve() if found and os.path.isfile(found) else None


def spark_home() -> Path:
    """SPARK_HOME, else pyspark's own folder (where its launcher finds the jars)."""
    if os.environ.get("SPARK_HOME"):
        return Path(os.environ["SPARK_HOME"])
    import importlib.util

    spec = importlib.util.find_spec("pyspark")
    return Path(next(iter(spec.submodule_search_locations)))


def archive_key(java_options: str) -> str | None:
    """A digest of what an archive fits: the Java build, Spark's jars, the JVM options, the
    classpath variables (None without a java). Stat only: a few milliseconds per session."""
    java = java_binary()
    if java is None:
        return None
    digest = hashlib.sha256()
    release = java.parent.parent / "release"  # the JDK's version file, beside bin/
    files = [java, *([release] if release.is_file() else []), *sorted((spark_home() / "jars").glob("*.jar"))]
    for path in files:
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    digest.update(java_options.encode())
    for name in CLASSPATH_VARIABLES:
        digest.update(f"\n{name}={os.environ.get(name, '')}".encode())
    return digest.hexdigest()[:16]


def archive_path(folder: Path, java_options: str) -> Path | None:
    key = archive_key(java_options)
    return folder / f"spark-{key}.jsa" if key else None


def usable_archive(java_options: str) -> Path | None:
    """The archive a JVM started with `java_options` maps, if it has been built (and is not off)."""
    folder = spark_class_archive_dir()
    path = archive_path(folder, java_options) if folder is not None else None
    return path if path is not None and path.is_file() else None


def with_archive(java_options: str) -> str:
    """`java_options` plus the option that maps the archive, when there is one."""
    archive = usable_archive(java_options)
    return f"{java_options} {ARCHIVE_OPTION}{archive}".strip() if archive else java_options


def facts_path(archive: Path) -> Path:
    """Beside the archive: the java and classpath it was trained with (what `promote` checks it with)."""
    return archive.with_suffix(".json")


def promote(written: Path, archive: Path, facts: dict, java_options: str) -> None:
    """Give `written` the archive's name only if a separate JVM (`facts`: the java, options and classpath
    of the training's JVM) maps it with every checksum right; otherwise delete it and raise ArchiveError."""
    probe = subprocess.run([facts["java"], *facts["jvm_args"], f"{ARCHIVE_OPTION}{written}", "-Xshare:on",
                            "-XX:+VerifySharedSpaces", "-cp", facts["classpath"], "-version"],
                           capture_output=True, text=True, timeout=300)
    if probe.returncode != 0:
        written.unlink(missing_ok=True)
        raise ArchiveError(f"the archive the training wrote ({written}) did not map (java exited with "
                           f"{probe.returncode}: {(probe.stderr or probe.stdout).strip()[-600:]}); it was deleted, "
                           "and Spark sessions start without one")
    facts_path(archive).write_text(json.dumps({**facts, "java_options": java_options}, indent=1) + "\n")
    os.replace(written, archive)


def _remove_leftovers(folder: Path) -> None:
    """Temporary files of trainings whose process is gone (a kill, a crash)."""
    for path in folder.glob("spark-*.*.tmp"):
        pid = path.name.split(".")[-2]
        if not pid.isdigit() or not _alive(int(pid)):
            path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def build(folder: Path, java_options: str, timeout: float = 1200, training: str = TRAINING) -> tuple[Path, bool]:
    """The archive for `java_options` in `folder`, trained now (by the Python code `training`) unless
    it exists; (path, built now)."""
    archive = archive_path(folder, java_options)
    if archive is None:
        raise ArchiveError("no java found (JAVA_HOME, or java on PATH): the spark engine needs Java 17")
    if archive.is_file():
        return archive, False
    folder.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(folder)
    written = archive.with_name(f"{archive.stem}.{os.getpid()}.tmp")
    with tempfile.TemporaryDirectory(prefix="lakehouse-spark-classes-") as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LAKEHOUSE_", "DAGSTER_"))}
        env.update({"LAKEHOUSE_HOME": home, "DAGSTER_HOME": os.path.join(home, "dagster"),
                    "LAKEHOUSE_LANDING_URI": f"file://{home}/landing", "LAKEHOUSE_START_DATE": "2026-01-05",
                    "LAKEHOUSE_ENGINE": "spark", "LAKEHOUSE_SPARK_CLASS_ARCHIVE": "off",
                    "LAKEHOUSE_SPARK_JAVA_OPTIONS": f"{java_options} -XX:ArchiveClassesAtExit={written} "
                                                    "-XX:+VerifySharedSpaces".strip()})
        try:
            done = subprocess.run([sys.executable, "-c", training], env=env, capture_output=True, text=True,
                                  timeout=timeout, cwd=home)
        except subprocess.TimeoutExpired:
            written.unlink(missing_ok=True)
            raise ArchiveError(f"the training run took longer than {timeout:.0f}s; Spark sessions start without an "
                               "archive") from None
    lines = done.stdout.strip().splitlines()
    facts = json.loads(lines[-1]) if done.returncode == 0 and lines and lines[-1].startswith("{") else None
    if facts is None or facts["exit"] != 0 or not written.is_file():
        written.unlink(missing_ok=True)
        what = (f"exit {done.returncode}" if facts is None else
                f"its JVM exited with {facts['exit']}" if facts["exit"] else "its JVM wrote no archive")
        said = (done.stderr.strip() or done.stdout.strip())[-2000:]
        raise ArchiveError(f"the training run failed ({what}); Spark sessions start without an archive. "
                           f"It said:\n{said}")
    promote(written, archive, facts, java_options)
    return archive, True


def main() -> int:
    try:
        folder, java_options = spark_class_archive_dir(), spark_java_options()
    except SettingsError as exc:
        print(f"lakehouse: {exc}", file=sys.stderr)
        return 2
    if folder is None:
        print("Spark class archive: off (LAKEHOUSE_SPARK_CLASS_ARCHIVE=off): local Spark JVMs load their classes "
              "from the jars")
        return 0
    started = time.monotonic()
    try:
        archive, built = build(folder, java_options)
    except ArchiveError as exc:
        print(f"Spark class archive: not built: {exc}\nSet LAKEHOUSE_SPARK_CLASS_ARCHIVE=off to go on without one.",
              file=sys.stderr)
        return 1
    size = f"{archive.stat().st_size / 2**20:.0f} MB"
    if built:
        print(f"Spark class archive: built {archive} ({size}) in {time.monotonic() - started:.0f}s; local Spark "
              "JVMs map it at start")
    else:
        print(f"Spark class archive: {archive} ({size}), up to date")
    others = [p for p in folder.glob("spark-*.jsa") if p != archive]
    if others:
        print(f"  {len(others)} other archive(s) in {folder} ({sum(p.stat().st_size for p in others) / 2**20:.0f} MB), "
              "for other Java or Spark versions or JVM options; delete them if those are gone")
    return 0


if __name__ == "__main__":
    sys.exit(main())
