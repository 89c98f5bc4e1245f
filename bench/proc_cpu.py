"""The CPU time of the processes a bench starts, read with psutil while it runs.

For the benches that count what a `lakehouse run` or the test suite costs across every
process they start (the CLI, the daemon, the code server, run workers, JVMs), most of which
exit before the bench could ask for their children's times.
"""

from __future__ import annotations

import collections
import threading

import psutil


class CpuWatch:
    """Reads, every `interval` seconds until the `with` block ends, the command line and CPU
    seconds of each process `wanted` accepts. A process counts at its last reading: the last
    `interval` of a short one can be missed."""

    def __init__(self, wanted, interval: float, tag=None):
        """`tag(process)`, read once when a process is first seen: what `by_tag` sums it under."""
        self.wanted, self.interval, self.tag = wanted, interval, tag
        self.seen: dict[tuple[int, float], list] = {}  # (pid, start time) -> [command, CPU seconds, tag]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> CpuWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._read()  # what is still there at the end

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            self._read()

    def _read(self) -> None:
        for process in psutil.process_iter():
            try:
                key = (process.pid, process.create_time())  # a reused pid is another process
                if key not in self.seen:
                    if not self.wanted(process):
                        continue
                    self.seen[key] = [" ".join(process.cmdline()), 0.0, self.tag(process) if self.tag else None]
                times = process.cpu_times()
                self.seen[key][1] = times.user + times.system
            except psutil.Error:  # gone meanwhile, or not ours to read
                continue

    def by_kind(self, kind) -> collections.Counter:
        """CPU seconds summed by `kind(command line)`."""
        totals = collections.Counter()
        for command, cpu, _ in self.seen.values():
            totals[kind(command)] += cpu
        return totals

    def by_tag(self) -> collections.Counter:
        """CPU seconds summed by each process's tag."""
        totals = collections.Counter()
        for _, cpu, tag in self.seen.values():
            totals[tag] += cpu
        return totals

    def count_by_kind(self, kind) -> collections.Counter:
        """How many processes of each `kind(command line)` were seen (one living under `interval`
        may be missed)."""
        return collections.Counter(kind(command) for command, _, _ in self.seen.values())
