"""Find the raw MovieLens folder, downloading and verifying the GroupLens archive if needed.

Resolution order (:func:`resolve_data_dir`): ``data.dir`` if set, else
``$RECSPARK_DATA/<dataset>`` if that variable is set, else ``<cache_dir>/<dataset>``, which is
downloaded from ``<base_url>/<dataset>.zip`` when missing and ``data.download`` is true.

Downloading, checking and unzipping are pooch's (:func:`pooch.retrieve` with an
:class:`pooch.HTTPDownloader` and the :class:`pooch.Unzip` processor). What recspark adds:

1. the expected md5 of the archive: the ``<dataset>.zip.md5`` file GroupLens publishes
   beside it (when the server has one) and the md5 pinned in :data:`KNOWN_ARCHIVES`; when
   both exist they must agree, and pooch checks the download against it;
2. after extraction, files with pinned md5s (ml-latest-small's CSVs) must match too;
3. atomicity: the archive is downloaded and unzipped in a temporary folder inside the cache
   and the data folder is moved into place with one rename, so an interrupted or failed
   download leaves nothing behind that looks like a data set;
4. errors that say which URL to fetch by hand and where to unzip it, and progress lines in
   the job's log.

The download runs on the driver into a local folder: on a cluster, executors can read it only
if ``cache_dir`` is on a shared mount. Otherwise put the files on the cluster's file system
(HDFS, S3, ...) and set ``data.dir`` or ``$RECSPARK_DATA`` to it.
"""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import pooch
import requests

from recspark.config import DATA_ENV, DataConfig, expand
from recspark.errors import DataNotFoundError, DownloadError
from recspark.io.layouts import ratings_files

_logger = logging.getLogger(__name__)
# pooch logs INFO lines ("Downloading data from ...", "Unzipping ...") through a handler of
# its own, outside the job's log format; ours say the same. Keep its warnings.
pooch.get_logger().setLevel(logging.WARNING)

_MD5_RE = re.compile(r"\b([0-9a-fA-F]{32})\b")
_URI_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_CHUNK = 1 << 20  # bytes per read: progress and hashing in 1 MB steps


@dataclass(frozen=True)
class KnownArchive:
    """What we know of a GroupLens archive before downloading it.

    ``folder`` is the top-level folder inside the zip (``ml-10m.zip`` unpacks to
    ``ml-10M100K``); ``archive_md5`` the md5 of the zip, ``file_md5`` the md5s of extracted
    files by name. ``None``/empty means "not pinned".
    """

    folder: str
    archive_md5: str | None = None
    file_md5: Mapping[str, str] = field(default_factory=dict)


#: Pinned checksums. Archive md5s are the values GroupLens publishes in ``<name>.zip.md5``
#: (cross-checked against several independent projects that pin them); the ml-latest-small
#: file md5s were computed on the September 2018 release. ml-latest-small's zip md5 is not
#: pinned: its CSVs are checked instead.
KNOWN_ARCHIVES: Mapping[str, KnownArchive] = {
    "ml-latest-small": KnownArchive(
        folder="ml-latest-small",
        file_md5={
            "ratings.csv": "ac0cf1d26aed3a5b6777a295231976ad",
            "movies.csv": "b252328d16b085936b56eefad880ef9d",
            "tags.csv": "5d095828cb668ec2fae1e2cf0d99c671",
            "links.csv": "bc5292d5185e8c5fd8dc9a83fb2198d2",
        },
    ),
    "ml-100k": KnownArchive(folder="ml-100k", archive_md5="0e33842e24a9c977be4e0107933c0723"),
    "ml-1m": KnownArchive(folder="ml-1m", archive_md5="c4d9eecfca2ab87c1945afe126590906"),
    "ml-10m": KnownArchive(folder="ml-10M100K", archive_md5="ce571fd55effeba0271552578f2648bd"),
    "ml-25m": KnownArchive(folder="ml-25m", archive_md5="6b51fb2759a8657d3bfcbfc42b592ada"),
    "ml-32m": KnownArchive(folder="ml-32m", archive_md5="d472be332d4daa821edc399621853b57"),
}


def archive_url(base_url: str, dataset: str) -> str:
    """``<base_url>/<dataset>.zip``."""
    return f"{base_url.rstrip('/')}/{dataset}.zip"


def _folder_names(dataset: str, known: Mapping[str, KnownArchive]) -> list[str]:
    names = [dataset]
    if dataset in known and known[dataset].folder != dataset:
        names.append(known[dataset].folder)
    return names


def _has_ratings(folder: Path) -> bool:
    return any((folder / name).is_file() for name in ratings_files())


def _manual_hint(
    dataset: str, base_url: str, cache: Path, known: Mapping[str, KnownArchive]
) -> str:
    url = archive_url(base_url, dataset)
    folder = _folder_names(dataset, known)[-1]
    return (
        f"Download {url} by hand and unzip it into {cache} (so that {cache / folder} holds the "
        f"data files), or point recspark at an existing copy: set {DATA_ENV}=<folder holding "
        f"{dataset}/> or pass --set data.dir=<the {dataset} folder>."
    )


def resolve_data_dir(
    data: DataConfig,
    *,
    environ: Mapping[str, str] | None = None,
    known: Mapping[str, KnownArchive] = KNOWN_ARCHIVES,
) -> str:
    """The folder holding the raw files of ``data.dataset``, downloading it if configured.

    ``data.dir`` and ``$RECSPARK_DATA`` may name any Hadoop file system (``hdfs://``,
    ``s3a://``); such URIs are returned unchecked and the readers report a missing file.
    Local folders are checked here. Raises :class:`DataNotFoundError` when the folder is
    missing and cannot be downloaded, :class:`DownloadError` when a download fails.
    """
    environ = os.environ if environ is None else environ
    if data.dir:
        path = expand(data.dir)
        if not _URI_RE.match(path) and not Path(path).is_dir():
            raise DataNotFoundError(
                f"data.dir = {data.dir!r}: folder {path} does not exist. Set data.dir to the "
                f"folder holding the {data.dataset} files (e.g. ratings.csv), or leave it empty "
                f"to use ${DATA_ENV} or the download cache."
            )
        return path
    root_env = environ.get(DATA_ENV, "")
    if root_env:
        root = expand(root_env)
        if _URI_RE.match(root):
            return f"{root.rstrip('/')}/{data.dataset}"
        for name in _folder_names(data.dataset, known):
            if (Path(root) / name).is_dir():
                return str(Path(root) / name)
        raise DataNotFoundError(
            f"${DATA_ENV} = {root_env!r} but it has no {data.dataset} folder. "
            f"{_manual_hint(data.dataset, data.base_url, Path(root), known)} "
            f"(Or unset {DATA_ENV} to use the download cache {expand(data.cache_dir)}.)"
        )
    cache = Path(expand(data.cache_dir))
    for name in _folder_names(data.dataset, known):
        if _has_ratings(cache / name):
            return str(cache / name)
        if (cache / name).exists():
            raise DataNotFoundError(
                f"{cache / name} exists but holds no ratings file (looked for "
                f"{', '.join(ratings_files())}). Delete it to download {data.dataset} again, or "
                f"set data.dir to the folder that holds the files."
            )
    if not data.download:
        raise DataNotFoundError(
            f"{data.dataset} is not in the cache {cache} and data.download is false. "
            f"{_manual_hint(data.dataset, data.base_url, cache, known)} "
            f"Or allow the download with --set data.download=true."
        )
    return str(
        download_dataset(
            data.dataset,
            base_url=data.base_url,
            cache_dir=str(cache),
            known=known,
            timeout=data.download_timeout,
        )
    )


# --------------------------------------------------------------------------- download


class _LogProgress:
    """A pooch progress bar that writes log lines: every 10 %, or every 5 s when the size is
    unknown or the link slow. pooch sets ``total`` and calls ``update``, ``reset``, ``close``."""

    def __init__(self, name: str) -> None:
        self.name, self.total, self.done = name, 0, 0
        self._next_pct, self._last = 10, time.monotonic()

    def update(self, n: int) -> None:
        self.done = min(self.done + n, self.total) if self.total else self.done + n
        pct = 100 * self.done // self.total if self.total else 0
        now = time.monotonic()
        if (self.total and pct >= self._next_pct) or now - self._last >= 5.0:
            size = f" of {self.total / 1e6:.1f} MB ({pct}%)" if self.total else ""
            _logger.info("  %s: %.1f MB%s", self.name, self.done / 1e6, size)
            self._last, self._next_pct = now, (pct // 10 + 1) * 10

    def reset(self) -> None:
        # pooch resets, then adds the total once the stream ends: the 100 % line, unless the
        # last chunk already logged it.
        self.done = 0

    def close(self) -> None:
        pass


def _http_error(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code} {exc.response.reason}"
    return str(exc)


def _published_md5(url: str, *, timeout: float, hint: str) -> str | None:
    """The md5 in the ``.md5`` file at ``url``; None when the server has no such file."""
    buffer = io.BytesIO()
    try:
        pooch.HTTPDownloader(timeout=timeout)(url, buffer, None)
    except requests.HTTPError as exc:
        _logger.info("no published checksum at %s (%s)", url, _http_error(exc))
        return None
    except requests.RequestException as exc:
        raise DownloadError(f"could not reach {url}: {_http_error(exc)}. {hint}") from exc
    text = buffer.getvalue()[:4096].decode("ascii", errors="replace")
    match = _MD5_RE.search(text)
    if match is None:
        _logger.warning("%s holds no md5 (got %r); ignoring it", url, text[:80])
        return None
    return match.group(1).lower()


def _expected_md5(
    url: str, pinned: KnownArchive | None, *, timeout: float, hint: str
) -> str | None:
    """The md5 the archive must have (published and pinned must agree); None: not known."""
    published = _published_md5(url + ".md5", timeout=timeout, hint=hint)
    pin = pinned.archive_md5.lower() if pinned is not None and pinned.archive_md5 else None
    if published and pin and published != pin:
        raise DownloadError(
            f"checksum mismatch for {url}: GroupLens publishes md5 {published} in {url}.md5 but "
            f"recspark pins {pin}: the archive changed. Nothing was downloaded. {hint}"
        )
    expected = published or pin
    if expected:
        _logger.info("expecting md5 %s (%s)", expected, f"{url}.md5" if published else "pinned")
    elif pinned is None or not pinned.file_md5:
        _logger.warning("no checksum is published or pinned for %s: it will NOT be verified", url)
    return expected


def _fetch_and_unzip(
    url: str, md5: str | None, *, tmp: Path, timeout: float, hint: str, cache: Path
) -> Path:
    """Download ``url`` into ``tmp`` (checked against ``md5``), unzip it into
    ``tmp/extracted``; return that folder. pooch removes a download that fails its check."""
    name = url.rsplit("/", 1)[-1]
    downloader = pooch.HTTPDownloader(
        progressbar=_LogProgress(name), chunk_size=_CHUNK, timeout=timeout
    )
    _logger.info("downloading %s", url)
    try:
        pooch.retrieve(
            url,
            known_hash=f"md5:{md5}" if md5 else None,
            fname=name,
            path=tmp,
            downloader=downloader,
            processor=pooch.Unzip(extract_dir="extracted"),
        )
    except requests.RequestException as exc:
        raise DownloadError(f"could not download {url}: {_http_error(exc)}. {hint}") from exc
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"{url} is not a valid zip archive ({exc}). {hint}") from exc
    except ValueError as exc:  # pooch: the hash of the download does not match
        raise DownloadError(
            f"checksum mismatch for {url}: {exc} The download is corrupt or the archive "
            f"changed; nothing was kept in {cache}. Retry later, or: {hint}"
        ) from exc
    except OSError as exc:
        raise DownloadError(f"could not download {url}: {exc}. {hint}") from exc
    return tmp / "extracted"


def file_md5(path: str | Path) -> str:
    """md5 of a local file."""
    return pooch.file_hash(str(path), alg="md5")


def verify_files(folder: str | Path, expected: Mapping[str, str]) -> None:
    """Check the md5 of each ``name -> md5`` in ``expected`` under ``folder``.

    Raises :class:`DownloadError` naming every missing or mismatching file.
    """
    folder = Path(folder)
    problems = []
    for name, md5 in sorted(expected.items()):
        path = folder / name
        if not path.is_file():
            problems.append(f"{name} is missing")
            continue
        actual = file_md5(path)
        if actual != md5.lower():
            problems.append(f"{name} has md5 {actual}, expected {md5.lower()}")
    if problems:
        raise DownloadError(f"files in {folder} failed verification: {'; '.join(problems)}")


def _data_folder(extracted: Path) -> Path | None:
    """The folder (the extraction root or one level below) that holds a ratings file."""
    if _has_ratings(extracted):
        return extracted
    for child in sorted(p for p in extracted.iterdir() if p.is_dir()):
        if _has_ratings(child):
            return child
    return None


def download_dataset(
    dataset: str,
    *,
    base_url: str,
    cache_dir: str,
    known: Mapping[str, KnownArchive] = KNOWN_ARCHIVES,
    timeout: float = 60.0,
) -> Path:
    """Download, verify and unpack ``<base_url>/<dataset>.zip`` into ``<cache_dir>/<dataset>``.

    Returns the data folder. Nothing is left in the cache when any step fails: the archive
    and the extraction live in a temporary folder inside ``cache_dir`` (same file system, so
    the final move is one atomic rename) that is always removed. Raises
    :class:`DownloadError` (unreachable server, HTTP error, truncated download, checksum
    mismatch, not a zip, no ratings file inside) with the manual-download instructions.
    Member paths are sanitised by :mod:`zipfile` (no absolute paths, no ``..``).
    """
    cache = Path(expand(cache_dir))
    cache.mkdir(parents=True, exist_ok=True)
    url = archive_url(base_url, dataset)
    hint = _manual_hint(dataset, base_url, cache, known)
    pinned = known.get(dataset)
    target = cache / (pinned.folder if pinned is not None else dataset)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dataset}.download-", dir=cache))
    try:
        md5 = _expected_md5(url, pinned, timeout=timeout, hint=hint)
        extracted = _fetch_and_unzip(url, md5, tmp=tmp, timeout=timeout, hint=hint, cache=cache)
        folder = _data_folder(extracted)
        if folder is None:
            raise DownloadError(
                f"{url} holds no ratings file (looked for {', '.join(ratings_files())}). "
                f"Is data.dataset = {dataset!r} a MovieLens data set?"
            )
        if pinned is not None and pinned.file_md5:
            try:
                verify_files(folder, pinned.file_md5)
            except DownloadError as exc:
                raise DownloadError(
                    f"{url}: {exc}. This is not the release recspark knows; nothing was kept "
                    f"in {cache}. {hint}"
                ) from None
            _logger.info("verified %d files against pinned md5s", len(pinned.file_md5))
        if target.exists():
            # Another process finished the same download first; keep its copy.
            _logger.info("%s appeared meanwhile; keeping it", target)
        else:
            os.rename(folder, target)
            _logger.info("%s unpacked into %s", dataset, target)
        return target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
