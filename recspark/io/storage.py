"""Paths on any Hadoop file system, and atomic publication of output folders.

Outputs are written into a staging folder beside the target and moved into place with
one rename, so a run killed half-way never leaves a half-written dataset where readers
look. The Hadoop ``FileSystem`` API (through the JVM) makes the same code work on local
disk, HDFS and object stores that support rename.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from typing import Iterator

from pyspark.sql import SparkSession

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
        trash = spark.sparkContext._jvm.org.apache.hadoop.fs.Path(
            f"{target.rstrip('/')}._old-{uuid.uuid4().hex[:8]}"
        )
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
def staged(spark: SparkSession, target: str) -> Iterator[str]:
    """Yield a staging path beside ``target``; publish it on success, delete it on failure."""
    staging = f"{target.rstrip('/')}._staging-{uuid.uuid4().hex[:8]}"
    try:
        yield staging
    except BaseException:
        delete(spark, staging)
        raise
    publish(spark, staging, target)
