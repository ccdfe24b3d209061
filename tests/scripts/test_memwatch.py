"""scripts/memwatch.py: the process-tree sampler sees a grandchild's memory and CPU time."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
BUFFER = 200 << 20  # bytes a grandchild allocates and touches

# A child that starts a grandchild; the grandchild fills BUFFER bytes (so the pages are
# resident, not just reserved), says "ready" and holds them until its stdin closes.
GRANDCHILD = (
    f"import sys; b = bytearray(b'x') * {BUFFER}; "
    "print('ready', flush=True); sys.stdin.read()"
)
CHILD = (
    "import subprocess, sys; "
    f"sys.exit(subprocess.run([sys.executable, '-c', {GRANDCHILD!r}]).returncode)"
)


@pytest.fixture(scope="module")
def memwatch():
    spec = importlib.util.spec_from_file_location("memwatch", REPO / "scripts" / "memwatch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sample_sees_a_grandchilds_buffer(memwatch):
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        assert len(memwatch.process_tree(proc.pid)) == 2
        watch = memwatch.TreeMemory(proc.pid, role=lambda p: "root" if p.pid == proc.pid else "rest")
        watch.sample(pss=True)
    finally:
        proc.stdin.close()
        proc.wait()
    assert proc.returncode == 0
    assert watch.peak_rss >= BUFFER
    assert watch.peak_pss >= BUFFER  # the buffer is private: PSS counts it whole
    assert watch.peak_parts["rest"] >= BUFFER > watch.peak_parts["root"]
    assert watch.peak_rss == watch.peak_parts["rest"] + watch.peak_parts["root"]
    watch.reset()
    assert (watch.peak_rss, watch.peak_pss, watch.peak_parts) == (0, 0, {})
    watch.sample()  # the tree is gone: nothing to read, no error
    assert watch.peak_rss == 0


def test_main_reports_the_peak_of_the_whole_tree(memwatch, capfd):
    # The grandchild holds its buffer for 2 s, ten polling intervals.
    hold = f"import time; b = bytearray(b'x') * {BUFFER}; time.sleep(2)"
    child = f"import subprocess, sys; sys.exit(subprocess.run([sys.executable, '-c', {hold!r}]).returncode)"
    assert memwatch.main(["--", sys.executable, "-c", child]) == 0
    line = next(x for x in capfd.readouterr().err.splitlines() if x.startswith("memwatch:"))
    assert line.startswith("memwatch: exit 0, wall ")
    rss_gib = float(line.split("peak tree RSS ")[1].split(" GiB")[0])
    assert rss_gib * 2**30 >= BUFFER * 0.99  # printed with 2 decimals: allow the rounding
    assert "peak tree PSS" in line


def test_tree_cpu_seconds_counts_a_busy_child(memwatch):
    busy = ("import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass\n"
            "print('done', flush=True)\ninput()")
    proc = subprocess.Popen([sys.executable, "-c", busy], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "done"
        assert memwatch.tree_cpu_seconds(proc.pid) >= 0.5
    finally:
        proc.stdin.close()
        proc.wait()
