"""Where ingest's inputs come from: a folder (recursive) or a list file of paths and URLs.

Local files are checked against the input root after resolving symlinks; `http(s)://` and any fsspec URL
(`s3://`, `gs://`, ...; the matching fsspec extra must be installed) are copied to a local temporary file
with the size limit enforced while copying.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from reelforge.data.video import VIDEO_EXTENSIONS

CHUNK = 1 << 20


@dataclass(frozen=True)
class Source:
    """One input. `uri` is what manifests record: the path under the input root, or the URL."""

    uri: str
    root: str  # resolved input root that local files must stay inside

    @property
    def remote(self) -> bool:
        return "://" in self.uri and not self.uri.startswith("file://")


class SourceRejected(Exception):
    """The input cannot be read as given; `reason` is the reject code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def list_sources(input_path: str | Path) -> list[Source]:
    """A folder: every file with a video extension (any case) below it, symlinks included but not
    followed into directories, in a stable order. A file: one path or URL per line (blank lines and `#`
    comments skipped); relative paths are relative to the list file's folder, which is the input root."""
    path = Path(input_path)
    if path.is_dir():
        root = path.resolve()
        found = []
        for dirpath, _, files in os.walk(root):
            for name in files:
                if Path(name).suffix.lower() in VIDEO_EXTENSIONS:
                    found.append(str((Path(dirpath) / name).relative_to(root)))
        return [Source(uri, str(root)) for uri in sorted(found)]
    if path.is_file():
        root = path.parent.resolve()
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
        return [Source(ln, str(root)) for ln in lines if ln and not ln.startswith("#")]
    raise FileNotFoundError(f"input {path} does not exist (give a folder of videos or a list file)")


@contextmanager
def local_copy(source: Source, max_bytes: int) -> Iterator[Path]:
    """Yield a readable local path for `source`; raise SourceRejected when it is missing, escapes the
    input root, or is larger than `max_bytes` (checked before reading, and while copying remote data)."""
    if source.remote:
        with tempfile.TemporaryDirectory(prefix="reelforge-fetch-") as tmp:
            yield _fetch(source.uri, Path(tmp) / "video", max_bytes)
        return
    uri = source.uri.removeprefix("file://")
    try:
        path = (Path(source.root) / uri).resolve()  # absolute `uri` stays absolute
    except (RuntimeError, OSError) as exc:  # a symlink loop: RuntimeError up to Python 3.12, OSError after
        raise SourceRejected("symlink_loop", f"{type(exc).__name__}: {exc}"[:300]) from None
    if not path.is_relative_to(source.root):
        raise SourceRejected("outside_input_root", f"resolves to {path}, outside {source.root}")
    if not path.is_file():
        raise SourceRejected("missing", f"{path} is not a readable file")
    size = path.stat().st_size
    if size == 0:
        raise SourceRejected("empty_file", "the file is 0 bytes")
    if size > max_bytes:
        raise SourceRejected("file_too_large", f"{size / 2**20:.0f} MiB > ingest.max_file_mb")
    yield path


def _fetch(url: str, dest: Path, max_bytes: int) -> Path:
    import fsspec

    try:
        with fsspec.open(url, "rb") as src, open(dest, "wb") as out:
            copied = 0
            while chunk := src.read(CHUNK):
                copied += len(chunk)
                if copied > max_bytes:
                    raise SourceRejected("file_too_large", f"over {max_bytes / 2**20:.0f} MiB downloaded")
                out.write(chunk)
    except SourceRejected:
        raise
    except Exception as exc:  # noqa: BLE001 - any transport failure is this input's reject reason
        raise SourceRejected("fetch_error", f"{type(exc).__name__}: {exc}"[:300]) from None
    if copied == 0:
        raise SourceRejected("empty_file", "the download is 0 bytes")
    return dest
