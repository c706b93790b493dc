"""API keys kept as hashes, reloaded on change; the per-key rate limit; no open endpoint off loopback."""

from __future__ import annotations

import time

import pytest

from serving.auth import AuthError, KeyRing, RateLimiter, add_key, hash_key, revoke_key
from serving.deploy import check_open_endpoint


def test_keys_are_stored_as_hashes_and_checked(tmp_path):
    path = tmp_path / "keys"
    key = add_key(path, "alice")
    assert key not in path.read_text() and hash_key(key) in path.read_text()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    ring = KeyRing(path, env="")
    assert ring.check(key) == "alice"
    with pytest.raises(AuthError, match="needs an API key"):
        ring.check(None)
    with pytest.raises(AuthError, match="not valid"):
        ring.check(key + "x")
    with pytest.raises(ValueError, match="exists"):
        add_key(path, "alice")


def test_adding_and_revoking_takes_effect_without_a_restart(tmp_path):
    path = tmp_path / "keys"
    ring = KeyRing(path, env="")
    assert not ring.enabled and ring.check(None) is None  # no keys: open
    alice = add_key(path, "alice")
    assert ring.check(alice) == "alice"
    bob = add_key(path, "bob")
    assert ring.check(bob) == "bob"
    assert revoke_key(path, "alice") and not revoke_key(path, "alice")
    with pytest.raises(AuthError):
        ring.check(alice)
    assert ring.check(bob) == "bob"


def test_keys_from_the_environment_and_malformed_entries(tmp_path):
    ring = KeyRing(None, env=f"ci:{hash_key('secret')}")
    assert ring.check("secret") == "ci"
    with pytest.raises(ValueError, match="REELFORGE_API_KEY_HASHES"):
        KeyRing(None, env="ci:plaintext-key").keys()
    bad = tmp_path / "keys"
    bad.write_text("# comment\nalice sha256:1234\n")
    with pytest.raises(ValueError, match="keys:2"):  # a typo must not open the endpoint
        KeyRing(bad, env="").keys()


def test_the_rate_limit_answers_when_to_retry():
    limiter = RateLimiter(per_minute=3)
    assert [limiter.acquire("alice") for _ in range(3)] == [0.0] * 3
    wait = limiter.acquire("alice")
    assert 19 < wait <= 20  # one token every 20 s
    assert limiter.acquire("bob") == 0.0  # per client
    assert RateLimiter(0).acquire("alice") == 0.0


def test_the_bucket_refills():
    limiter = RateLimiter(per_minute=600)  # 10 a second
    while limiter.acquire("a") == 0.0:
        pass
    time.sleep(0.15)
    assert limiter.acquire("a") == 0.0


def test_an_endpoint_without_keys_binds_to_loopback_only(tmp_path, monkeypatch):
    monkeypatch.delenv("REELFORGE_API_KEY_HASHES", raising=False)
    keys = tmp_path / "keys"
    for host in ("127.0.0.1", "localhost", "::1"):
        check_open_endpoint(host, keys)
    with pytest.raises(RuntimeError, match="no API key is configured"):
        check_open_endpoint("0.0.0.0", keys)
    add_key(keys, "ops")
    check_open_endpoint("0.0.0.0", keys)
