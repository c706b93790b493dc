"""A throwaway PostgreSQL cluster from Debian's `postgresql` package (the Makefile installs it): initdb in a
temporary folder, a server on a free port bound to 127.0.0.1, one database, removed afterwards. Run as the
`postgres` user when the tests run as root (the server refuses root)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from reelforge.stack import pg_bin


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def temporary_cluster(database: str = "reelforge") -> Iterator[str]:
    """Yield a SQLAlchemy URL (psycopg) of a fresh database on a fresh local cluster."""
    bin_ = pg_bin()
    assert bin_, "Debian's postgresql is missing: `make test` installs it (apt-get install postgresql)"
    root = Path(tempfile.mkdtemp(prefix="reelforge-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
    data, port = root / "data", _free_port()

    def run(*cmd: str) -> None:
        subprocess.run([*as_user, *cmd], check=True, capture_output=True, text=True, cwd=root)

    run(str(bin_ / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300"
    run(str(bin_ / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "start", "-o", options)
    try:
        run(str(bin_ / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", database)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/{database}"
    finally:
        run(str(bin_ / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)
