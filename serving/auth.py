"""API keys, stored only as hashes, and a per-key rate limit.

Keys come from a file (`serve.api_keys_file`, one `NAME sha256:HEX` per line, written by
`reelforge serve key add|revoke`) and from the environment variable REELFORGE_API_KEY_HASHES
(`NAME:sha256:HEX,...`). A replica re-reads the file when it changes, so adding or revoking a key takes
effect on the next request, without a restart. The key itself is shown once, when it is made.

Clients send `Authorization: Bearer <key>`. With no keys configured the endpoint is open, which
`serving.deploy` allows only on a loopback address.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import os
import re
import secrets
import threading
import time
from pathlib import Path

ENV = "REELFORGE_API_KEY_HASHES"
_LINE = re.compile(r"^(?P<name>[A-Za-z0-9_.@-]+)\s+(?P<hash>sha256:[0-9a-f]{64})$")


class AuthError(Exception):
    """Missing or wrong credentials: a 401."""


def hash_key(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parse_file(path: Path) -> dict[str, str]:
    """hash -> name; a malformed line is an error naming the line (a typo must not open the endpoint)."""
    keys = {}
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if not m:
            raise ValueError(f"{path}:{n}: expected `NAME sha256:<64 hex>`, got {line[:40]!r}")
        keys[m["hash"]] = m["name"]
    return keys


def _parse_env(value: str) -> dict[str, str]:
    keys = {}
    for item in filter(None, (v.strip() for v in value.split(","))):
        name, _, digest = item.partition(":")
        if not _LINE.match(f"{name} {digest}"):
            raise ValueError(f"{ENV}: expected `NAME:sha256:<64 hex>` items, got {item[:40]!r}")
        keys[digest] = name
    return keys


class KeyRing:
    def __init__(self, path: str | Path | None, env: str | None = None):
        self.path = Path(path) if path else None
        self.env = os.environ.get(ENV, "") if env is None else env
        self._stamp: tuple | None = None
        self._keys: dict[str, str] = {}
        self._lock = threading.Lock()

    def keys(self) -> dict[str, str]:
        """hash -> name, the file re-read whenever its size or mtime changed."""
        stamp = None
        if self.path is not None and self.path.exists():
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            if stamp != self._stamp or self._stamp is None:
                keys = _parse_env(self.env)
                if stamp is not None:
                    keys |= _parse_file(self.path)
                self._keys, self._stamp = keys, stamp
            return self._keys

    @property
    def enabled(self) -> bool:
        return bool(self.keys())

    def check(self, token: str | None) -> str | None:
        """The name of the key `token` (the bearer token); None on an open endpoint (no keys configured);
        AuthError otherwise."""
        keys = self.keys()
        if not keys:
            return None
        if not token or not token.strip():
            raise AuthError("this endpoint needs an API key: send `Authorization: Bearer <key>`")
        digest = hash_key(token.strip())
        for known, name in keys.items():
            if hmac.compare_digest(known, digest):
                return name
        raise AuthError("the API key is not valid (unknown or revoked)")


def add_key(path: str | Path, name: str) -> str:
    """Make a key named `name`, append its hash to the file, and return the key (shown once)."""
    path = Path(path)
    if not _LINE.match(f"{name} sha256:{'0' * 64}"):
        raise ValueError(f"key name {name!r}: use letters, digits and _.@-")
    existing = _parse_file(path) if path.exists() else {}
    if name in existing.values():
        raise ValueError(f"a key named {name!r} exists; revoke it first")
    key = "rf_" + secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(f"{name} {hash_key(key)}\n")
    os.chmod(path, 0o600)
    return key


def revoke_key(path: str | Path, name: str) -> bool:
    """Remove the key named `name`; False when there is none."""
    path = Path(path)
    if not path.exists():
        return False
    lines = path.read_text().splitlines()
    kept = [ln for ln in lines if ln.split()[:1] != [name]]
    if len(kept) == len(lines):
        return False
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text("".join(f"{ln}\n" for ln in kept))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return True


# The keys of this process's replica (one replica per process), set by its reconfigure and read by the
# routes' dependency; a module of its own is pickled by reference, so each replica has its own.
RING = KeyRing(None, env="")


class RateLimiter:
    """A token bucket per client (key name, or address on an open endpoint): `per_minute` requests a
    minute on average, bursts up to the same number. 0 turns it off."""

    def __init__(self, per_minute: int):
        self.rate, self.burst = per_minute / 60.0, float(per_minute)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def acquire(self, client: str) -> float:
        """0 when allowed; otherwise the seconds until a request would be (for Retry-After)."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._buckets[client] = (tokens - 1, now)
                return 0.0
            self._buckets[client] = (tokens, now)
            return math.ceil((1 - tokens) / self.rate * 1000) / 1000
