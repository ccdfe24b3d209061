"""Download, verification and data-folder resolution against a local HTTP server."""

from __future__ import annotations

import functools
import hashlib
import http.server
import logging
import socket
import threading
import zipfile
from pathlib import Path
from typing import Iterator

import pytest

from recspark.config import DATA_ENV, DataConfig
from recspark.errors import DataNotFoundError, DownloadError
from recspark.io.download import (
    KNOWN_ARCHIVES,
    KnownArchive,
    archive_url,
    download_dataset,
    resolve_data_dir,
    verify_files,
)

RATINGS = b"userId,movieId,rating,timestamp\n1,1,4.0,964982703\n"
MOVIES = b'movieId,title,genres\n1,"Toy Story, The (1995)",Comedy\n'


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, folder it serves) for a throwaway HTTP server on an ephemeral port."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/datasets", root
    finally:
        httpd.shutdown()
        httpd.server_close()


def _publish(root: Path, name: str, folder: str, *, md5: str | None = "auto") -> str:
    """Write ``<name>.zip`` (files under ``folder/``) and optionally ``<name>.zip.md5``."""
    (root / "datasets").mkdir(exist_ok=True)
    archive = root / "datasets" / f"{name}.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(f"{folder}/ratings.csv", RATINGS)
        zf.writestr(f"{folder}/movies.csv", MOVIES)
    digest = hashlib.md5(archive.read_bytes()).hexdigest()
    if md5 is not None:
        value = digest if md5 == "auto" else md5
        (root / "datasets" / f"{name}.zip.md5").write_text(f"MD5 ({name}.zip) = {value}\n")
    return digest


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed when the block exits: connections are refused


def test_download_success_with_published_md5(server: tuple[str, Path], tmp_path: Path) -> None:
    base, root = server
    _publish(root, "ml-tiny", "ml-tiny")
    cache = tmp_path / "cache"
    folder = download_dataset("ml-tiny", base_url=base, cache_dir=str(cache), known={})
    assert folder == cache / "ml-tiny"
    assert (folder / "ratings.csv").read_bytes() == RATINGS
    assert (folder / "movies.csv").read_bytes() == MOVIES
    assert sorted(p.name for p in cache.iterdir()) == ["ml-tiny"]  # no temp files left


def test_download_pinned_archive_and_file_md5s(server: tuple[str, Path], tmp_path: Path) -> None:
    base, root = server
    digest = _publish(root, "ml-tiny", "ml-Tiny100", md5=None)  # nothing published: pins only
    known = {
        "ml-tiny": KnownArchive(
            folder="ml-Tiny100",
            archive_md5=digest,
            file_md5={"ratings.csv": hashlib.md5(RATINGS).hexdigest()},
        )
    }
    folder = download_dataset("ml-tiny", base_url=base, cache_dir=str(tmp_path / "c"), known=known)
    assert folder.name == "ml-Tiny100" and (folder / "ratings.csv").is_file()
    # resolve_data_dir finds the archive's own folder name in the cache without downloading.
    cfg = DataConfig(dataset="ml-tiny", cache_dir=str(tmp_path / "c"), base_url="http://unused")
    assert resolve_data_dir(cfg, environ={}, known=known) == str(folder)


def test_checksum_mismatch_leaves_nothing(server: tuple[str, Path], tmp_path: Path) -> None:
    base, root = server
    _publish(root, "ml-tiny", "ml-tiny", md5="0" * 32)
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError) as err:
        download_dataset("ml-tiny", base_url=base, cache_dir=str(cache), known={})
    message = str(err.value)
    assert "checksum mismatch" in message and "0" * 32 in message
    assert archive_url(base, "ml-tiny") in message and str(cache) in message
    assert list(cache.iterdir()) == []


def test_pinned_file_md5_mismatch_leaves_nothing(server: tuple[str, Path], tmp_path: Path) -> None:
    base, root = server
    _publish(root, "ml-tiny", "ml-tiny")
    known = {"ml-tiny": KnownArchive(folder="ml-tiny", file_md5={"ratings.csv": "f" * 32})}
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match="ratings.csv has md5"):
        download_dataset("ml-tiny", base_url=base, cache_dir=str(cache), known=known)
    assert list(cache.iterdir()) == []


def test_published_and_pinned_md5_must_agree(server: tuple[str, Path], tmp_path: Path) -> None:
    base, root = server
    _publish(root, "ml-tiny", "ml-tiny")
    known = {"ml-tiny": KnownArchive(folder="ml-tiny", archive_md5="1" * 32)}
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match="recspark pins 1{32}: the archive changed"):
        download_dataset("ml-tiny", base_url=base, cache_dir=str(cache), known=known)
    assert list(cache.iterdir()) == []


def test_progress_lines_in_the_log(
    server: tuple[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    base, root = server
    (root / "datasets").mkdir()
    with zipfile.ZipFile(root / "datasets" / "ml-big.zip", "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("ml-big/ratings.csv", RATINGS)
        zf.writestr("ml-big/padding.bin", bytes(range(256)) * 12_000)  # ~3 MB: 1 MB chunks
    with caplog.at_level(logging.INFO, logger="recspark.io.download"):
        download_dataset("ml-big", base_url=base, cache_dir=str(tmp_path / "c"), known={})
    progress = [r.getMessage() for r in caplog.records if "ml-big.zip:" in r.getMessage()]
    assert len(progress) >= 3 and progress[-1].endswith("(100%)")
    assert any("NOT be verified" in r.getMessage() for r in caplog.records)


def test_unreachable_server_gives_clear_error(tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{_closed_port()}/datasets"
    cfg = DataConfig(
        dataset="ml-tiny", cache_dir=str(tmp_path / "cache"), base_url=base, download_timeout=5
    )
    with pytest.raises(DownloadError) as err:
        resolve_data_dir(cfg, environ={}, known={})
    message = str(err.value)
    assert "refused" in message.lower()
    assert f"Download {base}/ml-tiny.zip by hand" in message
    assert f"unzip it into {tmp_path / 'cache'}" in message
    assert DATA_ENV in message and "--set data.dir" in message
    assert list((tmp_path / "cache").iterdir()) == []


def test_missing_archive_http_404(server: tuple[str, Path], tmp_path: Path) -> None:
    base, _ = server
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_dataset("ml-none", base_url=base, cache_dir=str(tmp_path / "cache"), known={})


def test_resolution_order(tmp_path: Path) -> None:
    explicit, env_root, cache = tmp_path / "explicit", tmp_path / "env", tmp_path / "cache"
    for folder in (explicit, env_root / "ml-x", cache / "ml-x"):
        folder.mkdir(parents=True)
        (folder / "ratings.csv").write_bytes(RATINGS)
    cfg = DataConfig(dataset="ml-x", cache_dir=str(cache), download=False)
    env = {DATA_ENV: str(env_root)}
    assert resolve_data_dir(DataConfig(dataset="ml-x", dir=str(explicit)), environ=env) == str(
        explicit
    )
    assert resolve_data_dir(cfg, environ=env) == str(env_root / "ml-x")
    assert resolve_data_dir(cfg, environ={}) == str(cache / "ml-x")
    with pytest.raises(DataNotFoundError, match="data.download is false"):
        resolve_data_dir(
            DataConfig(dataset="ml-y", cache_dir=str(cache), download=False), environ={}
        )
    with pytest.raises(DataNotFoundError, match=f"{DATA_ENV}"):
        resolve_data_dir(DataConfig(dataset="ml-y"), environ=env)
    with pytest.raises(DataNotFoundError, match="does not exist"):
        resolve_data_dir(DataConfig(dir=str(tmp_path / "nope")), environ={})


def test_pinned_ml_latest_small_md5s_match_the_sample(sample_dir: Path) -> None:
    verify_files(sample_dir, KNOWN_ARCHIVES["ml-latest-small"].file_md5)
    with pytest.raises(DownloadError, match="links.csv has md5"):
        verify_files(sample_dir, {"links.csv": "0" * 32})
