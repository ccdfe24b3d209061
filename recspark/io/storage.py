"""Paths on any Hadoop file system, atomic publication of output folders, and the scratch
folders of a run: named by their owner, removed when the run ends, and cleaned up by the
next run when a killed run left them behind.

Outputs are written into a staging folder and moved into place with one rename, so a run
killed half-way never leaves a half-written dataset where readers look. The Hadoop
``FileSystem`` API (through the JVM) makes the same code work on local disk, HDFS and object
stores that support rename.

**Scratch folders** carry the process that owns them in their name, ``<owner>`` =
``<host>-<pid>-<8 hex>`` (the driver's host name and Python process id):

==================================  ==========================================================
``<target>._staging-<owner>``       an output being written (:func:`staged`), beside its
                                    target or in a folder of staging folders
``<target>._old-<owner>``           the previous output, moved aside while publishing
``<name>._checkpoints-<owner>``     a run's checkpoint folder (:func:`checkpoints`)
==================================  ==========================================================

A run removes its own when it ends, also when it fails; only a killed process leaves them.
:func:`clean_scratch` (called by every job on the folders it writes to, before it starts)
removes the ones whose owner is gone, and logs each:

- owned by a process of this host that no longer runs: removed at once;
- owned by another host, or without an owner in the name (an older recspark): removed once
  untouched for :data:`FOREIGN_MAX_AGE` (24 h); a run on another host cannot be told alive
  or dead from here, so it is given a day;
- an ``_old`` folder whose target is missing (the kill came between the two renames of
  :func:`publish`) is moved back to its target instead: the previous output returns.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import time
import uuid
from typing import Iterator

from pyspark.sql import SparkSession

from recspark.config import expand

_logger = logging.getLogger(__name__)


def _fs_path(spark: SparkSession, path: str):  # -> (FileSystem, Path) JVM objects
    jvm = spark.sparkContext._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    fs = hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    return fs, hpath


def exists(spark: SparkSession, path: str) -> bool:
    """True if ``path`` exists."""
    fs, hpath = _fs_path(spark, path)
    return bool(fs.exists(hpath))


def delete(spark: SparkSession, path: str) -> None:
    """Remove ``path`` recursively if it exists."""
    fs, hpath = _fs_path(spark, path)
    if fs.exists(hpath):
        fs.delete(hpath, True)


def list_dir(spark: SparkSession, path: str) -> list[str]:
    """Names of the entries directly under ``path`` (empty if it does not exist)."""
    fs, hpath = _fs_path(spark, path)
    if not fs.exists(hpath):
        return []
    return sorted(str(s.getPath().getName()) for s in fs.listStatus(hpath))


def write_bytes(spark: SparkSession, path: str, data: bytes) -> None:
    """Write a small binary file (a PNG, a report) through the Hadoop file system."""
    fs, hpath = _fs_path(spark, path)
    out = fs.create(hpath, True)
    try:
        out.write(bytearray(data))
    finally:
        out.close()


def write_text(spark: SparkSession, path: str, text: str) -> None:
    """Write a small text file (config, markers) through the Hadoop file system."""
    write_bytes(spark, path, text.encode("utf-8"))


def read_bytes(spark: SparkSession, path: str) -> bytes:
    """Read a small file (a PNG) whole through the Hadoop file system."""
    fs, hpath = _fs_path(spark, path)
    stream = fs.open(hpath)
    try:
        return bytes(spark.sparkContext._jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
    finally:
        stream.close()


def read_first_line(spark: SparkSession, path: str) -> str | None:
    """The first line of a text file (without its line ending), or None when it is empty.

    Reads through a buffered reader, so only the first block of a large file is fetched.
    Decoded as UTF-8 (bytes that are not valid UTF-8 become U+FFFD): for header lines.
    """
    fs, hpath = _fs_path(spark, path)
    jvm = spark.sparkContext._jvm
    stream = fs.open(hpath)
    try:
        reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(stream, "UTF-8"))
        line = reader.readLine()
        return None if line is None else str(line)
    finally:
        stream.close()


def read_text(spark: SparkSession, path: str) -> str:
    """Read a small text file written by :func:`write_text`."""
    return read_bytes(spark, path).decode("utf-8")


def publish(spark: SparkSession, staging: str, target: str) -> None:
    """Replace ``target`` by ``staging``: the old folder is moved aside, then removed.

    Readers see either the old complete folder or the new complete one. Between the two
    renames the target is briefly absent, never partial.
    """
    fs, src = _fs_path(spark, staging)
    _, dst = _fs_path(spark, target)
    parent = dst.getParent()
    if parent is not None and not fs.exists(parent):
        fs.mkdirs(parent)
    trash = None
    if fs.exists(dst):
        trash = spark.sparkContext._jvm.org.apache.hadoop.fs.Path(scratch_name(target, OLD))
        if not fs.rename(dst, trash):
            raise OSError(f"could not move the previous {target} aside")
    if not fs.rename(src, dst):
        if trash is not None:
            fs.rename(trash, dst)
        raise OSError(f"could not move {staging} to {target}")
    if trash is not None:
        fs.delete(trash, True)
    _logger.info("published %s", target)


@contextlib.contextmanager
def staged(spark: SparkSession, target: str, *, under: str | None = None) -> Iterator[str]:
    """Yield a staging path for ``target`` (beside it, or in the folder ``under``); publish
    it on success, delete it on failure."""
    staging = scratch_name(target, STAGING)
    if under is not None:
        staging = f"{under.rstrip('/')}/{staging.rsplit('/', 1)[-1]}"
    try:
        yield staging
    except BaseException:
        delete(spark, staging)
        raise
    publish(spark, staging, target)


# --------------------------------------------------------------------------- scratch folders

STAGING, OLD, CHECKPOINTS = "staging", "old", "checkpoints"
#: How long a scratch folder of another host (or of no known owner) must be untouched
#: before :func:`clean_scratch` removes it.
FOREIGN_MAX_AGE = 24 * 3600.0
_OWNED = re.compile(
    rf"^(?P<target>.+)\._(?P<kind>{STAGING}|{OLD}|{CHECKPOINTS})"
    r"-(?P<host>.+)-(?P<pid>\d+)-[0-9a-f]{8}$"
)
_UNOWNED = re.compile(rf"^(?P<target>.+)\._(?P<kind>{STAGING}|{OLD})-[0-9a-f]{{8}}$")


def owner() -> str:
    """This process as scratch names record it: ``<host>-<pid>``."""
    return f"{socket.gethostname()}-{os.getpid()}"


def scratch_name(path: str, kind: str) -> str:
    """``<path>._<kind>-<host>-<pid>-<8 hex>``: a new scratch folder of this process."""
    return f"{path.rstrip('/')}._{kind}-{owner()}-{uuid.uuid4().hex[:8]}"


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's process: it exists
        return False
    return False


def _untouched_seconds(spark: SparkSession, path: str, now: float) -> float:
    """Seconds since ``path`` or an entry directly in it last changed."""
    fs, hpath = _fs_path(spark, path)
    times = [fs.getFileStatus(hpath).getModificationTime()]
    if fs.getFileStatus(hpath).isDirectory():
        times += [s.getModificationTime() for s in fs.listStatus(hpath)]
    return now - max(times) / 1000.0


def clean_scratch(
    spark: SparkSession, folder: str, *, all_scratch: bool = False, now: float | None = None
) -> list[str]:
    """Remove the scratch folders under ``folder`` that killed runs left (module docstring);
    returns their names. ``all_scratch``: every entry of ``folder`` is scratch (a folder of
    staging folders), so an entry without an owner in its name is judged by its age too.
    ``now``: the current time in epoch seconds (tests)."""
    now = time.time() if now is None else now
    host = socket.gethostname()
    removed = []
    for name in list_dir(spark, folder):
        m = _OWNED.match(name) or _UNOWNED.match(name)
        if m is None and not all_scratch:
            continue
        path = f"{folder.rstrip('/')}/{name}"
        owned = m is not None and "pid" in m.groupdict()
        if owned and m["host"] == host:
            if not _process_gone(int(m["pid"])):
                continue
            why = f"process {m['pid']} of this host is gone"
        else:
            age = _untouched_seconds(spark, path, now)
            where = f"host {m['host']}" if owned else "an unknown process"
            if age < FOREIGN_MAX_AGE:
                _logger.info(
                    "kept %s (of %s): untouched for %.1f h only; removed after %.0f h",
                    path, where, age / 3600, FOREIGN_MAX_AGE / 3600,
                )
                continue
            why = f"left by {where}, untouched for {age / 3600:.1f} h"
        target = f"{folder.rstrip('/')}/{m['target']}" if m is not None else None
        if m is not None and m["kind"] == OLD and not exists(spark, target):
            fs, src = _fs_path(spark, path)
            fs.rename(src, _fs_path(spark, target)[1])
            _logger.warning("restored %s from %s, moved aside by a killed run (%s)", target, name, why)
        else:
            delete(spark, path)
            _logger.warning("removed %s, left behind by a killed run (%s)", path, why)
        removed.append(name)
    return removed


@contextlib.contextmanager
def checkpoints(spark: SparkSession, checkpoint_dir: str, *, work_dir: str, name: str) -> Iterator[str]:
    """Checkpoint into a folder of this run inside the block; yield its path.

    The folder is ``<checkpoint_dir or work_dir>/<name>._checkpoints-<owner>`` (Spark adds one
    sub-folder per SparkContext): ``checkpoint_dir`` is ``spark.checkpoint_dir``, and when it
    is empty the run's working folder ``work_dir`` stands in (on a cluster it is on shared
    storage, as checkpoints must be). Scratch that killed runs left there is cleaned first
    (:func:`clean_scratch`); the folder is removed when the block ends, also on failure, and
    the SparkContext's previous checkpoint directory is restored. Every iterative fit in the
    block (recspark's loop, MLlib's ALS) cuts its lineage there.
    """
    folder = (expand(checkpoint_dir) if checkpoint_dir else work_dir).rstrip("/")
    clean_scratch(spark, folder)
    sc = spark.sparkContext
    previous = sc.getCheckpointDir()
    path = scratch_name(f"{folder}/{name}", CHECKPOINTS)
    sc.setCheckpointDir(path)
    try:
        yield path
    finally:
        # setCheckpointDir always makes a new sub-folder of its argument; to put back the very
        # folder the context had (or none) the field behind it is set directly.
        getattr(sc._jsc.sc(), "checkpointDir_$eq")(sc._jvm.scala.Option.apply(previous))
        delete(spark, path)
