"""A Ray session for the stages that can fan work out to Ray (ingest, the latent cache)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def ray_session(address: str | None, num_cpus: int) -> Iterator[None]:
    """Ray at `address`, or a private local one with `num_cpus` CPUs when None; left as found on exit.

    A local one is always private: a plain ray.init() would join any cluster on the machine (e.g. the serving
    one `reelforge serve deploy` leaves up). Ray 2.60 would also write ~/.ray/auth_token for it, after which
    every `ray start` head demands a token its clients do not send (serve deploy then fails): a private
    loopback cluster does not need one."""
    import ray

    started, env_before = not ray.is_initialized(), dict(os.environ)
    if started:
        if not address:
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(address=address or "local", num_cpus=None if address else num_cpus, include_dashboard=False)
    try:
        yield
    finally:
        if started:  # leave the process as it was (ray.init exports RAY_ADDRESS to later subprocesses)
            ray.shutdown()
            os.environ.clear()
            os.environ.update(env_before)
