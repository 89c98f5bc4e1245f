"""The archive of Spark's classes (lakehouse/spark_classes.py): a local Spark JVM maps it once it is
built, never a cut or a foreign one, and without it a session starts as before."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from lakehouse import spark_classes
from lakehouse.resources.engine import spark_config
from lakehouse.settings import SPARK_JAVA_OPTIONS, spark_class_archive_dir

MODULE = [sys.executable, "-m", "lakehouse.spark_classes"]


@pytest.fixture(scope="module")
def archive() -> os.PathLike:
    """The machine's archive for the default JVM options: `make test` builds it before the suite
    (a minute, once per machine); here it is built if a plain `pytest` finds none."""
    folder = spark_class_archive_dir()
    assert folder is not None, "LAKEHOUSE_SPARK_CLASS_ARCHIVE=off: these tests need the archive"
    path, _ = spark_classes.build(folder, SPARK_JAVA_OPTIONS)
    return path


def test_a_session_started_here_maps_the_archive(archive):
    """The option is in the session's settings, and the JVM has the file mapped (its /proc maps)."""
    assert f"{spark_classes.ARCHIVE_OPTION}{archive}" in spark_config()["spark.driver.extraJavaOptions"].split()
    child = ("from lakehouse.resources.engine import get_session\n"
             "session = get_session('spark')\n"
             "pid = session.sparkContext._jvm.java.lang.ProcessHandle.current().pid()\n"
             "print(sorted({line.split()[-1] for line in open(f'/proc/{pid}/maps') if line.rstrip().endswith('.jsa')}))")
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert str(archive) in done.stdout.strip().splitlines()[-1], done.stdout[-2000:]


def test_a_cut_archive_never_gets_the_archives_name(archive, tmp_path):
    """What a training JVM killed while writing leaves: a separate JVM fails to map it, so it is
    deleted and nothing is named as the archive; a whole copy passes the same check."""
    facts = json.loads(spark_classes.facts_path(archive).read_text())
    final = tmp_path / "spark-test.jsa"
    cut = tmp_path / "spark-test.1.tmp"
    with archive.open("rb") as source, cut.open("wb") as target:
        target.write(source.read(archive.stat().st_size // 2))
    with pytest.raises(spark_classes.ArchiveError, match="did not map"):
        spark_classes.promote(cut, final, facts, SPARK_JAVA_OPTIONS)
    assert not cut.exists() and not final.exists()

    whole = tmp_path / "spark-test.2.tmp"
    shutil.copyfile(archive, whole)
    spark_classes.promote(whole, final, facts, SPARK_JAVA_OPTIONS)
    assert final.is_file() and not whole.exists()
    assert json.loads(spark_classes.facts_path(final).read_text())["java_options"] == SPARK_JAVA_OPTIONS


def test_an_archive_belongs_to_its_java_jars_and_options(tmp_path, monkeypatch):
    key = spark_classes.archive_key(SPARK_JAVA_OPTIONS)
    assert key and key == spark_classes.archive_key(SPARK_JAVA_OPTIONS)
    assert spark_classes.archive_key(f"{SPARK_JAVA_OPTIONS} -Xmx2g") != key
    # Another Spark (here: pyspark's jars and one more) is another archive.
    home = tmp_path / "spark"
    (home / "jars").mkdir(parents=True)
    for jar in (spark_classes.spark_home() / "jars").glob("*.jar"):
        (home / "jars" / jar.name).symlink_to(jar)
    monkeypatch.setenv("SPARK_HOME", str(home))
    same_jars = spark_classes.archive_key(SPARK_JAVA_OPTIONS)
    (home / "jars" / "extra.jar").write_bytes(b"PK")
    assert spark_classes.archive_key(SPARK_JAVA_OPTIONS) not in (same_jars, key)
    # No java: no archive, and the options stay as given.
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    assert spark_classes.archive_key(SPARK_JAVA_OPTIONS) is None
    assert spark_classes.with_archive(SPARK_JAVA_OPTIONS) == SPARK_JAVA_OPTIONS


def test_sessions_use_an_archive_only_once_it_is_built_and_not_when_off(tmp_path, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_SPARK_CLASS_ARCHIVE", str(tmp_path))
    assert spark_classes.with_archive(SPARK_JAVA_OPTIONS) == SPARK_JAVA_OPTIONS
    assert spark_config()["spark.driver.extraJavaOptions"] == SPARK_JAVA_OPTIONS
    # A training's temporary file is not the archive.
    path = spark_classes.archive_path(tmp_path, SPARK_JAVA_OPTIONS)
    path.with_name(f"{path.stem}.{os.getpid()}.tmp").write_bytes(b"cut")
    assert spark_classes.usable_archive(SPARK_JAVA_OPTIONS) is None
    path.write_bytes(b"named only after the check")
    assert spark_config()["spark.driver.extraJavaOptions"] == f"{SPARK_JAVA_OPTIONS} -XX:SharedArchiveFile={path}"
    monkeypatch.setenv("LAKEHOUSE_SPARK_CLASS_ARCHIVE", "off")
    assert spark_config()["spark.driver.extraJavaOptions"] == SPARK_JAVA_OPTIONS


def test_a_failed_training_says_why_and_leaves_nothing(tmp_path):
    """A training that fails, or ends without its JVM having written the archive: an error with its words."""
    failing = "import sys; print('no Spark here', file=sys.stderr); sys.exit(3)"
    with pytest.raises(spark_classes.ArchiveError, match="(?s)training run failed \\(exit 3\\).*no Spark here"):
        spark_classes.build(tmp_path, SPARK_JAVA_OPTIONS, training=failing)
    silent = "import json; print(json.dumps({'exit': 0, 'java': 'java', 'classpath': '', 'jvm_args': []}))"
    with pytest.raises(spark_classes.ArchiveError, match="training run failed \\(its JVM wrote no archive\\)"):
        spark_classes.build(tmp_path, SPARK_JAVA_OPTIONS, training=silent)
    assert list(tmp_path.iterdir()) == []


def test_the_command_says_what_it_did_and_names_a_wrong_setting(archive, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "LAKEHOUSE_SPARK_CLASS_ARCHIVE"}
    up_to_date = subprocess.run(MODULE, env=env, capture_output=True, text=True, timeout=120)
    assert up_to_date.returncode == 0 and f"Spark class archive: {archive} (" in up_to_date.stdout, up_to_date
    assert "up to date" in up_to_date.stdout
    off = subprocess.run(MODULE, env={**env, "LAKEHOUSE_SPARK_CLASS_ARCHIVE": "off"}, capture_output=True, text=True,
                         timeout=120)
    assert off.returncode == 0 and "off (LAKEHOUSE_SPARK_CLASS_ARCHIVE=off)" in off.stdout, off
    wrong = subprocess.run(MODULE, env={**env, "LAKEHOUSE_SPARK_CLASS_ARCHIVE": "relative/folder"},
                           capture_output=True, text=True, timeout=120)
    assert wrong.returncode == 2 and "LAKEHOUSE_SPARK_CLASS_ARCHIVE='relative/folder' is not an absolute path" \
        in wrong.stderr, wrong
    assert "Traceback" not in wrong.stderr
    # A folder of its own, with a leftover of a training that was killed: removed at the next build.
    leftover = tmp_path / "spark-0000.99999999.tmp"
    leftover.write_bytes(b"cut")
    spark_classes._remove_leftovers(tmp_path)
    assert not leftover.exists()
