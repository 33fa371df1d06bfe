"""API keys (stored hashed), the authentication rules, admin routes and rate limits."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from mofsim_core.api_keys import KeyStore
from mofsim_core.config import Config
from mofsim_http.app import create_app
from mofsim_http.auth import TokenBuckets, check_bind, is_loopback_host
from spool import Spool
from spool.errors import NotFoundError, ValidationError


def store_for(root: Path) -> KeyStore:
    return KeyStore(root / "state" / "api_keys.json", Spool(root).paths)


@pytest_asyncio.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient]:
    config = Config(spool=str(tmp_path / "spool"), http_rate_limit=0)
    async with TestClient(TestServer(create_app(config))) as c:
        yield c


def test_keys_are_stored_hashed_and_verified(tmp_path: Path) -> None:
    store = store_for(tmp_path)
    assert not store.has_keys() and store.entries() == []
    entry, token = store.create("ci", admin=False)
    text = store.path.read_text()
    assert token not in text and token.split("_", 2)[2] not in text
    assert store.path.stat().st_mode & 0o777 == 0o600
    assert store.verify(token) == entry and entry["admin"] is False
    assert store.verify(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert store.verify("msk_" + "0" * 12 + "_x") is None and store.verify("junk") is None
    # Another process (the CLI) adds a key: a long-lived store sees it.
    other, token2 = store_for(tmp_path).create(None, admin=True)
    assert store.verify(token2) == other
    store_for(tmp_path).revoke(entry["id"])
    assert store.verify(token) is None and store.has_keys()
    assert [e["revoked_at"] is not None for e in store.entries()] == [True, False]
    with pytest.raises(NotFoundError):
        store.revoke("nope")
    assert "hash" not in json.dumps(store.entries())


def test_token_bucket() -> None:
    buckets = TokenBuckets(rate=2.0, burst=3)
    assert [buckets.take("a", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a", now=0.0) == pytest.approx(0.5)
    assert buckets.take("b", now=0.0) == 0.0  # buckets are per identity
    assert buckets.take("a", now=0.5) == 0.0  # one token back after 1/rate s
    assert TokenBuckets(rate=0, burst=3).take("a") == 0.0  # off


def test_loopback_hosts_and_bind_check(tmp_path: Path) -> None:
    assert all(map(is_loopback_host, ["127.0.0.1", "localhost", "::1", "[::1]", "127.9.0.1"]))
    assert not any(map(is_loopback_host, ["0.0.0.0", "192.168.1.4", "::", "example.org"]))
    store = store_for(tmp_path)
    check_bind("127.0.0.1", store)
    with pytest.raises(ValidationError) as exc:
        check_bind("0.0.0.0", store)
    assert "mofsim keys create" in exc.value.message and exc.value.field == "http"
    store.create("ops", admin=True)
    check_bind("0.0.0.0", store)


@pytest.mark.asyncio
async def test_no_keys_on_loopback_needs_no_key(client: TestClient) -> None:
    resp = await client.get("/api/v1/tasks")
    assert resp.status == 200
    # Keys are never managed anonymously (a local web page could lock the owner out).
    resp = await client.post("/api/v1/auth/keys", json={"admin": True})
    assert (resp.status, (await resp.json())["code"]) == (401, 20001)
    assert (await client.get("/api/v1/tasks")).status == 200


@pytest.mark.asyncio
async def test_with_keys_every_request_needs_one(client: TestClient, tmp_path: Path) -> None:
    store = store_for(tmp_path / "spool")
    user, user_token = store.create("user")
    admin, admin_token = store.create("admin", admin=True)
    resp = await client.get("/api/v1/tasks")
    body = await resp.json()
    assert (resp.status, body["code"]) == (401, 20001)
    assert "mofsim keys create" in body["error"]["detail"]
    resp = await client.get("/api/v1/tasks", headers={"X-API-Key": user_token + "x"})
    assert (resp.status, (await resp.json())["code"]) == (401, 20001)
    for headers in ({"X-API-Key": user_token}, {"Authorization": f"Bearer {user_token}"}):
        resp = await client.get("/api/v1/tasks", headers=headers)
        assert resp.status == 200, headers
    resp = await client.get("/api/v1/auth/keys", headers={"X-API-Key": user_token})
    assert (resp.status, (await resp.json())["code"]) == (403, 20002)
    resp = await client.get("/api/v1/auth/keys", headers={"Authorization": f"bearer {admin_token}"})
    assert resp.status == 200
    assert {k["id"] for k in (await resp.json())["data"]["items"]} == {user["id"], admin["id"]}
    # Credentials that contradict or do not parse are refused, never guessed at.
    for headers in (
        {"X-API-Key": admin_token, "Authorization": "Basic dXNlcjpwdw=="},
        {"X-API-Key": admin_token, "Authorization": "Bearer"},
        {"X-API-Key": admin_token, "Authorization": f"Bearer {user_token}"},
        {"Authorization": admin_token},
    ):
        resp = await client.get("/api/v1/auth/keys", headers=headers)
        assert (resp.status, (await resp.json())["code"]) == (401, 20001), headers
    same = {"X-API-Key": admin_token, "Authorization": f"Bearer {admin_token}"}
    assert (await client.get("/api/v1/auth/keys", headers=same)).status == 200
    # The documentation and the health probes stay public.
    assert (await client.get("/openapi.json")).status == 200
    assert (await client.get("/healthz", headers={"Authorization": "Basic x"})).status == 200
    # A key made over HTTP works at once and its secret is shown only there.
    resp = await client.post(
        "/api/v1/auth/keys", json={"name": "bot"}, headers={"X-API-Key": admin_token}
    )
    made = (await resp.json())["data"]
    assert resp.status == 201 and made["key"].startswith("msk_") and made["admin"] is False
    assert (await client.get("/api/v1/tasks", headers={"X-API-Key": made["key"]})).status == 200
    resp = await client.post(
        "/api/v1/auth/keys", json={"admin": "yes"}, headers={"X-API-Key": admin_token}
    )
    assert (await resp.json())["error"]["field"] == "admin"
    # A name is a label shown in terminals: what cannot be printed is kept, escaped.
    resp = await client.post(
        "/api/v1/auth/keys", json={"name": "ci\x1b[2J\n"}, headers={"X-API-Key": admin_token}
    )
    assert resp.status == 201 and (await resp.json())["data"]["name"] == "ci\\u001b[2J\\u000a"
    resp = await client.delete(
        f"/api/v1/auth/keys/{made['id']}", headers={"X-API-Key": admin_token}
    )
    assert resp.status == 200 and (await resp.json())["data"]["revoked_at"]
    resp = await client.get("/api/v1/tasks", headers={"X-API-Key": made["key"]})
    assert resp.status == 401


@pytest.mark.asyncio
async def test_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    config = Config(spool=str(tmp_path / "spool"), http_rate_limit=0.5, http_rate_burst=3)
    async with TestClient(TestServer(create_app(config))) as c:
        statuses = [(await c.get("/api/v1/tasks")).status for _ in range(3)]
        assert statuses == [200, 200, 200]
        resp = await c.get("/api/v1/tasks")
        body = await resp.json()
        assert (resp.status, body["code"]) == (429, 40005)
        assert int(resp.headers["Retry-After"]) >= 1
        # Health and documentation are not counted.
        assert (await c.get("/openapi.json")).status == 200
        # Another key has its own bucket.
        _, token = store_for(tmp_path / "spool").create("other")
        resp = await c.get("/api/v1/tasks", headers={"X-API-Key": token})
        assert resp.status == 200
