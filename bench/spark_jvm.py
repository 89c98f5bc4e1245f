"""Benchmark: a local Spark session's defaults against the alternative, in one run: the JVM's
options (LAKEHOUSE_SPARK_JAVA_OPTIONS's default against the JVM's own defaults), Spark's code
generation (LAKEHOUSE_SPARK_CODEGEN's default, off, against on), or this tree against a commit.

    python bench/spark_jvm.py                      # JVM options: 3 small days and the dimensions, 2 rounds
    python bench/spark_jvm.py --compare codegen    # code generation off (the default) against on
    python bench/spark_jvm.py --days 2 --rounds 3
    python bench/spark_jvm.py --options "-XX:+UseSerialGC"   # the default against other JVM options
    python bench/spark_jvm.py --compare tree --baseline HEAD~1   # this tree against a commit

Each round processes --days dirty generated days (the demo's scale) and the dimensions on the
spark engine, in process (tests/pipeline_helpers), in a fresh child process and home: once
with the project's default and once with the alternative (or this tree and the commit, checked
out in a temporary git worktree, both with this tree's defaults of the two settings),
alternating. It counts the CPU time of the child's JVM (with its Python workers) and the wall
time of the steps. Prints one JSON document: medians over the rounds and the ratios (default,
or this tree, / alternative).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from small_days import CHILD_SETUP, ROOT, baseline_tree, tree_env  # bench/, this script's folder

CHILD = CHILD_SETUP + r"""
import psutil
started = time.perf_counter()
with contextlib.redirect_stdout(io.StringIO()):
    for day in days:
        pipeline_helpers.process_day(settings, "spark", day)
    pipeline_helpers.process_dimensions(settings, "spark")
wall = time.perf_counter() - started
cpu = 0.0
for child in psutil.Process().children(recursive=True):
    with contextlib.suppress(psutil.Error):
        cpu += sum(child.cpu_times()[:2])
print(json.dumps({"wall_s": wall, "jvm_cpu_s": cpu}))
"""


def one_round(setting: dict[str, str], days: int, root=ROOT) -> dict:
    # Spark's Python workers import the project's code (the functions of mapInArrow): from `root`.
    env = {**tree_env(root), **setting}
    done = subprocess.run([sys.executable, "-c", CHILD, str(root), str(days)], capture_output=True, text=True,
                          timeout=1800, env=env)
    if done.returncode != 0:
        raise SystemExit(f"the run in {root} with {setting} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    from lakehouse.settings import SPARK_JAVA_OPTIONS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", choices=("options", "codegen", "tree"), default="options",
                        help="the JVM's options (default), Spark's code generation, or this tree against --baseline")
    parser.add_argument("--baseline", default="HEAD~1", help="with --compare tree: the git revision (default HEAD~1)")
    parser.add_argument("--options", default="",
                        help="with --compare options: the JVM options to compare the default with (else the JVM's own)")
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    # Both sides pin both settings: the compared one differs, the other is the project's default.
    defaults = {"LAKEHOUSE_SPARK_JAVA_OPTIONS": SPARK_JAVA_OPTIONS, "LAKEHOUSE_SPARK_CODEGEN": "false"}
    sides = {"options": {"default": defaults, "other_options" if args.options else "jvm_defaults":
                                                 {**defaults, "LAKEHOUSE_SPARK_JAVA_OPTIONS": args.options}},
             "codegen": {"default": defaults, "codegen_on": {**defaults, "LAKEHOUSE_SPARK_CODEGEN": "true"}},
             "tree": {"default": defaults, "baseline": defaults}}[args.compare]
    other_name = next(name for name in sides if name != "default")
    runs: dict[str, list[dict]] = {name: [] for name in sides}
    with baseline_tree(args.baseline if args.compare == "tree" else None) as baseline:
        roots = {"default": ROOT, other_name: baseline}
        for _ in range(args.rounds):  # alternating, so both see the same machine noise
            for name, setting in sides.items():
                runs[name].append(one_round(setting, args.days, roots[name]))
    medians = {name: {k: round(statistics.median(r[k] for r in rounds), 1) for k in ("wall_s", "jvm_cpu_s")}
               for name, rounds in runs.items()}
    print(json.dumps({
        "compare": args.compare, **({"baseline": args.baseline} if args.compare == "tree" else {}),
        "days": args.days, "rounds": args.rounds, "sides": sides, "medians": medians,
        "ratio_jvm_cpu": round(medians["default"]["jvm_cpu_s"] / medians[other_name]["jvm_cpu_s"], 2),
        "ratio_wall": round(medians["default"]["wall_s"] / medians[other_name]["wall_s"], 2),
        "rounds_detail": runs,
    }, indent=2))


if __name__ == "__main__":
    main()
