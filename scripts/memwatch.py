"""Run a command and report its wall time and the peak memory of its whole process tree.

    python scripts/memwatch.py -- python jobs/ingest.py --set data.dir=...

Spark in local mode is a Python driver, a JVM and forked Python workers; the peak that
matters is their sum. A thread polls Σ RSS and Σ PSS (PSS does not double-count pages the
forked workers share) over the tree from /proc every 0.2 s. ``getrusage`` cannot do this:
it reports the largest single process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(name))
    return kids


def process_tree(root: int) -> list[int]:
    """``root`` and all its live descendants."""
    kids = _children_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def _field_kb(path: str, key: str) -> int:
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class TreeMemory(threading.Thread):
    """Polls Σ RSS and Σ PSS of a process tree; keeps the peaks (in kB)."""

    def __init__(self, root: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.peak_rss = self.peak_pss = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            pids = process_tree(self.root)
            rss = sum(_field_kb(f"/proc/{p}/status", "VmRSS:") for p in pids)
            pss = sum(_field_kb(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids)
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss)
            self.stop.wait(self.interval)


def main(argv: list[str]) -> int:
    if "--" in argv:
        argv = argv[argv.index("--") + 1 :]
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    start = time.perf_counter()
    proc = subprocess.Popen(argv)
    watch = TreeMemory(proc.pid)
    watch.start()
    code = proc.wait()
    watch.stop.set()
    watch.join()
    print(
        f"memwatch: exit {code}, wall {time.perf_counter() - start:.1f} s, "
        f"peak tree RSS {watch.peak_rss / 2**20:.2f} GiB, peak tree PSS {watch.peak_pss / 2**20:.2f} GiB",
        file=sys.stderr,
    )
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
