"""The team setup on one machine (`reelforge stack up | down | status | env`).

Five services, each a process this module starts, with its log in `<stack.dir>/logs/` and its pid in
`<stack.dir>/run/`:

- postgres: Debian's PostgreSQL, an unprivileged cluster in `<stack.dir>/pg` (run as the `postgres` user
  when started by root, which PostgreSQL refuses), listening on 127.0.0.1 only, with databases `mlflow` and
  `prefect`;
- mlflow: a tracking server on that database, serving artifacts from `stack.artifacts` (a local folder by
  default, or an `s3://` URL);
- prefect: a Prefect server on that database, with its UI;
- worker: a Prefect process worker on the work pool `stack.work_pool` (created if missing);
- ray: the Ray head on `serve.ray_port`, which `reelforge serve deploy` then uses.

`up` starts what is not running (and leaves what is), waits for each service's health check in order and
refuses a port another program holds. `down` stops only the processes `up` recorded. The stages find the
stack through the environment (`reelforge stack env`): MLFLOW_TRACKING_URI and PREFECT_API_URL.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from reelforge.config import ServeParams, StackParams

SERVICES = ("postgres", "mlflow", "prefect", "worker", "ray")
DATABASES = ("mlflow", "prefect")
PG_USER = "postgres"


class StackError(RuntimeError):
    """A service that cannot start: the message names it, and says why (a taken port, its log's tail)."""


@dataclass
class ServiceState:
    name: str
    state: str  # healthy | starting | down | unhealthy
    url: str
    pid: int | None


def _bin(name: str) -> str:
    """A console script of this environment (mlflow, prefect, ray), else the PATH's."""
    return shutil.which(name, path=str(Path(sys.executable).parent)) or name


def pg_bin() -> Path | None:
    """The newest installed PostgreSQL server's bin folder (Debian: /usr/lib/postgresql/N/bin), or None."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return versions[-1].parent if versions else None


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process (a postgres server run as `postgres`)
        return True
    state = Path(f"/proc/{pid}/stat")
    return not (state.exists() and state.read_text().split(")")[-1].split()[0] == "Z")


class Stack:
    def __init__(self, cfg: StackParams, serve: ServeParams, project: str | Path = ".") -> None:
        self.cfg, self.serve = cfg, serve
        self.project = Path(project).resolve()
        self.dir = (self.project / cfg.dir).resolve()
        self.logs, self.run_dir, self.pg_data = self.dir / "logs", self.dir / "run", self.dir / "pg"

    # -- where each service answers ------------------------------------------------------------------------
    def database_url(self, database: str, driver: str = "psycopg") -> str:
        return f"postgresql+{driver}://{PG_USER}@127.0.0.1:{self.cfg.postgres_port}/{database}"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.cfg.mlflow_port}"

    @property
    def prefect_api(self) -> str:
        return f"http://127.0.0.1:{self.cfg.prefect_port}/api"

    @property
    def artifacts(self) -> str:
        return self.cfg.artifacts or str(self.dir / "mlartifacts")

    def env(self) -> dict[str, str]:
        """What a shell, a stage or a test exports to use the stack instead of the embedded defaults."""
        return {
            "MLFLOW_TRACKING_URI": self.mlflow_url,
            "PREFECT_API_URL": self.prefect_api,
            "RAY_ADDRESS": f"127.0.0.1:{self.serve.ray_port}",
        }

    def urls(self) -> dict[str, str]:
        return {
            "postgres": f"postgresql://{PG_USER}@127.0.0.1:{self.cfg.postgres_port}",
            "mlflow": self.mlflow_url,
            "prefect": self.prefect_api.removesuffix("/api"),
            "worker": f"pool {self.cfg.work_pool}",
            "ray": f"127.0.0.1:{self.serve.ray_port}",
        }

    def ports(self) -> dict[str, int]:
        return {
            "postgres": self.cfg.postgres_port, "mlflow": self.cfg.mlflow_port,
            "prefect": self.cfg.prefect_port, "ray": self.serve.ray_port,
        }  # fmt: skip

    # -- health --------------------------------------------------------------------------------------------
    def healthy(self, name: str) -> bool:
        try:
            if name == "postgres":
                return self._pg_ready()
            if name == "mlflow":
                return httpx.get(f"{self.mlflow_url}/health", timeout=3).status_code == 200
            if name == "prefect":
                return httpx.get(f"{self.prefect_api}/health", timeout=3).status_code == 200
            if name == "worker":
                workers = httpx.post(
                    f"{self.prefect_api}/work_pools/{self.cfg.work_pool}/workers/filter", json={}, timeout=3
                )
                return workers.status_code == 200 and any(w["status"] == "ONLINE" for w in workers.json())
            if name == "ray":
                return port_open(self.serve.ray_port)
        except httpx.HTTPError:
            return False
        raise ValueError(name)

    def _pg_ready(self) -> bool:
        bin_ = pg_bin()
        if bin_ is None:
            return False
        cmd = [str(bin_ / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.cfg.postgres_port), "-U", PG_USER]
        return subprocess.run(cmd, capture_output=True).returncode == 0

    # -- pids ----------------------------------------------------------------------------------------------
    def _pid(self, name: str) -> int | None:
        if name == "postgres":  # pg_ctl daemonises the server: its pid is the data folder's first line
            pid_file = self.pg_data / "postmaster.pid"
            try:
                pid = int(pid_file.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                return None
        else:
            try:
                pid = json.loads((self.run_dir / f"{name}.json").read_text())["pid"]
            except (OSError, ValueError, KeyError):
                return None
        return pid if _alive(pid) else None

    def status(self) -> list[ServiceState]:
        out = []
        for name in SERVICES:
            pid, url = self._pid(name), self.urls()[name]
            if pid is None:
                out.append(ServiceState(name, "down", url, None))
            else:
                out.append(ServiceState(name, "healthy" if self.healthy(name) else "unhealthy", url, pid))
        return out

    # -- up ------------------------------------------------------------------------------------------------
    def up(self, timeout: float = 240, log: Callable[[str], object] = print) -> list[ServiceState]:
        """Start every service that is not running, in order, each once the one before is healthy."""
        self.logs.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for name in SERVICES:
            if self._pid(name) is not None:
                self._wait(name, timeout)
                log(f"{name:<9} already running")
                continue
            port = self.ports().get(name)
            if port is not None and port_open(port):
                raise StackError(
                    f"{name}: port {port} is taken by another program; free it or set stack ports in "
                    "params.yaml (stack.*_port, serve.ray_port)"
                )
            t0 = time.monotonic()
            getattr(self, f"_start_{name}")()
            self._wait(name, timeout)
            log(f"{name:<9} up in {time.monotonic() - t0:5.1f} s  {self.urls()[name]}")
        return self.status()

    def _wait(self, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.healthy(name):
                return
            if self._pid(name) is None and name != "postgres":
                raise StackError(f"{name} exited while starting:\n{self.log_tail(name)}")
            time.sleep(0.5)
        raise StackError(f"{name} was not healthy within {timeout:.0f} s:\n{self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.logs / f"{name}.log"
        text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else ["(no log)"]
        return "\n".join(f"  {line}" for line in text)

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> None:
        """Start a service in its own process group (so `down` stops it and its children) and record it."""
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 -- the child process keeps it open
        proc = subprocess.Popen(
            cmd, cwd=self.project, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        record = {"pid": proc.pid, "cmd": cmd, "started": time.time()}
        (self.run_dir / f"{name}.json").write_text(json.dumps(record))

    def _as_pg_user(self) -> list[str]:
        return ["runuser", "-u", PG_USER, "--"] if os.geteuid() == 0 else []

    def _start_postgres(self) -> None:
        bin_ = pg_bin()
        if bin_ is None:
            raise StackError(
                "postgres: Debian's postgresql is not installed (`make debian-tools` installs it)"
            )
        run = self._as_pg_user()
        if not (self.pg_data / "PG_VERSION").exists():
            self.pg_data.mkdir(parents=True, exist_ok=True)
            if run:  # the server refuses root: the cluster belongs to `postgres`, who must reach the folder
                shutil.chown(self.pg_data, PG_USER)
                self.pg_data.chmod(0o700)
            init = [
                *run,
                str(bin_ / "initdb"),
                "-D",
                str(self.pg_data),
                "-U",
                PG_USER,
                "--auth=trust",
                "-E",
                "UTF8",
            ]
            proc = subprocess.run(init, capture_output=True, text=True, cwd="/")
            if proc.returncode != 0:
                raise StackError(f"postgres: initdb failed:\n{proc.stdout}{proc.stderr}")
        log = self.logs / "postgres.log"
        if run:
            log.touch()
            shutil.chown(log, PG_USER)
        options = (
            f"-p {self.cfg.postgres_port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' "
            "-c max_connections=200"
        )
        start = [*run, str(bin_ / "pg_ctl"), "-D", str(self.pg_data), "-l", str(log), "-o", options, "start"]
        proc = subprocess.run(start, capture_output=True, text=True, cwd="/")
        if proc.returncode != 0:
            raise StackError(
                f"postgres: pg_ctl start failed:\n{proc.stdout}{proc.stderr}\n{self.log_tail('postgres')}"
            )
        self._wait("postgres", 60)
        self._create_databases()

    def _create_databases(self) -> None:
        import psycopg

        url = f"postgresql://{PG_USER}@127.0.0.1:{self.cfg.postgres_port}/postgres"
        with psycopg.connect(url, autocommit=True) as conn:
            for db in DATABASES:
                if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone():
                    conn.execute(f'CREATE DATABASE "{db}"')

    def _start_mlflow(self) -> None:
        if not self.cfg.artifacts:
            Path(self.artifacts).mkdir(parents=True, exist_ok=True)
        self._spawn("mlflow", [
            _bin("mlflow"), "server", "--backend-store-uri", self.database_url("mlflow"),
            "--artifacts-destination", self.artifacts, "--host", "127.0.0.1",
            "--port", str(self.cfg.mlflow_port), "--workers", "2",
        ])  # fmt: skip

    def _prefect_env(self) -> dict[str, str]:
        return {
            "PREFECT_HOME": str(self.dir / "prefect"),
            "PREFECT_API_URL": self.prefect_api,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }

    def _start_prefect(self) -> None:
        self._spawn(
            "prefect",
            [_bin("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(self.cfg.prefect_port)],
            self._prefect_env()
            | {"PREFECT_API_DATABASE_CONNECTION_URL": self.database_url("prefect", "asyncpg")},
        )

    def _start_worker(self) -> None:
        env = {**os.environ, **self._prefect_env()}
        pool = self.cfg.work_pool
        if subprocess.run(
            [_bin("prefect"), "work-pool", "inspect", pool], env=env, capture_output=True
        ).returncode:
            create = [_bin("prefect"), "work-pool", "create", pool, "--type", "process"]
            proc = subprocess.run(create, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise StackError(f"worker: creating work pool {pool} failed:\n{proc.stdout}{proc.stderr}")
        self._spawn(
            "worker",
            [
                _bin("prefect"),
                "worker",
                "start",
                "--pool",
                pool,
                "--type",
                "process",
                "--name",
                f"{pool}-worker",
            ],
            self._prefect_env(),
        )

    def _start_ray(self) -> None:
        # --block keeps the head in the foreground: stopping that process stops the Ray processes it started.
        self._spawn("ray", [
            _bin("ray"), "start", "--head", "--block", f"--port={self.serve.ray_port}",
            f"--num-cpus={os.cpu_count()}", "--include-dashboard=false", "--disable-usage-stats",
        ], {"RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "30"})  # fmt: skip

    # -- down ----------------------------------------------------------------------------------------------
    def down(self, timeout: float = 60, log: Callable[[str], object] = print) -> None:
        """Stop what `up` started, last first: process groups get SIGTERM, then SIGKILL after `timeout`."""
        for name in reversed(SERVICES):
            pid = self._pid(name)
            if pid is None:
                (self.run_dir / f"{name}.json").unlink(missing_ok=True)
                continue
            if name == "postgres":
                stop = [
                    *self._as_pg_user(),
                    str(pg_bin() / "pg_ctl"),
                    "-D",
                    str(self.pg_data),
                    "-m",
                    "fast",
                    "-w",
                    "stop",
                ]
                subprocess.run(stop, capture_output=True, cwd="/")
            else:
                _stop_group(pid, timeout)
                (self.run_dir / f"{name}.json").unlink(missing_ok=True)
            log(f"{name:<9} stopped")


def _stop_group(pid: int, timeout: float) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _group_alive(pid):
            return
        time.sleep(0.3)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def unreachable(tracking_uri: str, prefect_api: str | None) -> list[tuple[str, str, str]]:
    """(what, where, why) for each backend that does not answer: an MLflow server's /health, a PostgreSQL
    tracking database, the Prefect API's /health. Empty when all answer (SQLite and ephemeral Prefect
    always do)."""
    out = []
    if tracking_uri.startswith(("http://", "https://")):
        why = _http_problem(f"{tracking_uri.rstrip('/')}/health")
        if why:
            out.append(("MLflow tracking server", tracking_uri, why))
    elif tracking_uri.startswith("postgresql"):
        import psycopg

        try:
            psycopg.connect(tracking_uri.replace("+psycopg", ""), connect_timeout=5).close()
        except psycopg.Error as exc:
            out.append(("MLflow tracking database", tracking_uri, str(exc).strip().splitlines()[0]))
    if prefect_api:
        why = _http_problem(f"{prefect_api.rstrip('/')}/health")
        if why:
            out.append(("Prefect API", prefect_api, why))
    return out


def _http_problem(url: str) -> str | None:
    try:
        response = httpx.get(url, timeout=5)
    except httpx.HTTPError as exc:
        return f"does not answer ({type(exc).__name__})"
    return None if response.status_code == 200 else f"answers {response.status_code}"
