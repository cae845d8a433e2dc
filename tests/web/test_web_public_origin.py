"""Behind a TLS-terminating reverse proxy the page is https://HOST while the proxy reaches the web role
by plain HTTP, so the browser's Origin is never the role's own scheme and host. ``web.public_origin``
names that origin: requests and sockets from it are this site's, any other origin is still refused,
and X-Forwarded-Proto and -Host change nothing. Without a mesh (tests/web/standalone.py)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from exchange.config import WebConfig, load_config
from exchange.errors import ConfigError
from exchange.testing.mesh import loopback_config
from .standalone import DEADLINE_S, serving

PUBLIC = "https://exchange.example"
PROXIED = {"X-Forwarded-For": "203.0.113.5"}  # from the proxy (127.0.0.1, trusted), for a browser elsewhere
CROSS_SITE = {"code": "CSRF", "reason": "requests from another site's page are refused"}


async def sign_in(browser: httpx.AsyncClient, origin: str, **headers) -> httpx.Response:
    csrf = (await browser.get("/api/session", headers=PROXIED)).json()["csrf"]
    return await browser.post("/api/login", json={"user": "alice", "key": "alice-key"},
                              headers={**PROXIED, "Origin": origin, "X-CSRF-Token": csrf, **headers})


def test_a_sign_in_from_the_public_origin_is_accepted_and_from_any_other_refused():
    async def scenario():
        async with serving(public_origin=PUBLIC, trusted_proxies=["127.0.0.1"], max_logins=100) as (web, address, _):
            async with httpx.AsyncClient(base_url=f"http://{address}", timeout=DEADLINE_S) as browser:
                for origin, headers in [
                        ("https://evil.example", {}),
                        ("http://exchange.example", {}),  # the public host by another scheme is another origin
                        ("https://exchange.example:8443", {}),
                        ("https://evil.example", {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}),
                        (f"https://{address}", {"X-Forwarded-Proto": "https"})]:  # the headers are not believed
                    refused = await sign_in(browser, origin, **headers)
                    assert refused.status_code == 403 and refused.json()["error"] == CROSS_SITE, (origin, refused.text)
                assert (await browser.get("/api/session")).json()["user"] is None
                accepted = await sign_in(browser, PUBLIC)
                assert accepted.status_code == 200, accepted.text
                assert (await browser.get("/api/session")).json()["user"] == "alice"
                # and what a signed-in page sends from there
                csrf = accepted.json()["csrf"]
                out = await browser.post("/api/logout", headers={**PROXIED, "Origin": PUBLIC, "X-CSRF-Token": csrf})
                assert out.status_code == 200, out.text

    asyncio.run(scenario())


def test_the_live_feed_opens_from_the_public_origin_and_not_from_another():
    async def scenario():
        async with serving(public_origin=PUBLIC, trusted_proxies=["127.0.0.1"]) as (web, address, _):
            async with connect(f"ws://{address}/ws", proxy=None, open_timeout=DEADLINE_S, origin=PUBLIC,
                               additional_headers=PROXIED) as ws:
                assert json.loads(await asyncio.wait_for(ws.recv(), DEADLINE_S))["type"] == "markets"
            for origin in ("https://evil.example", "http://exchange.example"):
                with pytest.raises(InvalidStatus):
                    async with connect(f"ws://{address}/ws", proxy=None, open_timeout=DEADLINE_S, origin=origin,
                                       additional_headers={**PROXIED, "X-Forwarded-Proto": "https"}):
                        pass
            assert web.sockets == 0

    asyncio.run(scenario())


def test_without_a_public_origin_the_proxys_https_origin_is_refused():
    async def scenario():
        async with serving(trusted_proxies=["127.0.0.1"], max_logins=100) as (web, address, _):
            async with httpx.AsyncClient(base_url=f"http://{address}", timeout=DEADLINE_S) as browser:
                refused = await sign_in(browser, PUBLIC, **{"X-Forwarded-Proto": "https"})
                assert refused.status_code == 403 and refused.json()["error"] == CROSS_SITE, refused.text

    asyncio.run(scenario())


@pytest.mark.parametrize("written, origin", [
    ("https://exchange.example", "https://exchange.example"),
    ("HTTPS://Exchange.Example:443", "https://exchange.example"),  # as a browser writes it
    ("http://10.0.0.5:8080", "http://10.0.0.5:8080"),
    ("http://[2001:db8::1]:80", "http://[2001:db8::1]"),
    (None, None),
])
def test_the_public_origin_is_kept_as_browsers_write_an_origin(written, origin):
    assert WebConfig(listen="127.0.0.1:8080", public_origin=written).origin() == origin


@pytest.mark.parametrize("value", [
    "exchange.example", "https://exchange.example/", "https://exchange.example/exchange", "ftp://exchange.example",
    "https://user@exchange.example", "https://exchange.example:0", "https://exchange.example:65536",
    "https://exchange.example?x", "https://", "''",
])
def test_a_public_origin_that_is_no_origin_is_refused_with_its_key(tmp_path, value):
    path = loopback_config(tmp_path, web=True)
    path.write_text(path.read_text().replace("\nweb:\n", f"\nweb:\n  public_origin: {value}\n"))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ") and message.endswith(
        " is not an origin: http or https, a host, maybe a port, and nothing after (like https://exchange.example"
        " or http://10.0.0.5:8080) - at `$.web.public_origin`"), message
