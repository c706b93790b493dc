"""Files every stage writes and identifies: atomic outputs, and the sha256 logged for lineage.

`atomic_dir` and `write_json_atomic` are how every stage avoids leaving output a rerun would trust after a
crash; `file_sha256` / `dir_sha256` identify data, weights and every metric they produce.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a scratch dir that replaces `path` only when the block ends: a crash leaves nothing trusted."""
    final = Path(path)
    tmp = final.with_name(final.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    yield tmp
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)


def write_json_atomic(path: str | Path, obj: object) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, read in 1 MiB blocks (weights files can be GBs)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def dir_sha256(path: str | Path) -> str:
    """sha256 over the relative paths and sha256s of every file under a directory (a model folder)."""
    root = Path(path)
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(root)}\0{file_sha256(f)}\n".encode())
    return h.hexdigest()
