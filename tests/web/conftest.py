"""A real mesh with the web role for the web tests (exchange.testing.mesh starts it), and a small
HTTP client that signs in as the page does: CSRF token from /api/session, cookies kept."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from exchange.config import load_config
from exchange.testing.mesh import Mesh, loopback_config, wait_until


def web_mesh_config(directory: Path, gateway: dict | None = None, users: dict[str, dict] | None = None,
                    **web_options) -> Path:
    """The demo config (accounts on) on free ports with a web section, its options replaced by
    ``web_options``, the gateway's by ``gateway`` and each named user's by ``users``. The gateway
    keeps its defaults otherwise: ZMQ clients prove who they are with CURVE keys (``zmq_auth: curve``)."""
    path = loopback_config(directory, accounts=True, web=True)
    options = {"max_logins": 1000, **web_options}  # the tests sign in often, all from 127.0.0.1
    text = path.read_text()
    assert "\n  zmq_auth: login\n" in text
    text = text.replace("\n  zmq_auth: login\n", "\n")
    text = text.replace("\ngateway:\n", "\ngateway:\n" + "".join(f"  {k}: {v}\n" for k, v in (gateway or {}).items()))
    for name, settings in (users or {}).items():
        text = text.replace(f"\n  - name: {name}\n", f"\n  - name: {name}\n"
                            + "".join(f"    {k}: {v}\n" for k, v in settings.items()))
    head, listen = text.split("\nweb:\n  listen: ", 1)
    listen, tail = listen.split("\n", 1)
    extra = "".join(f"  {key}: {value}\n" for key, value in options.items())
    path.write_text(f"{head}\nweb:\n  listen: {listen}\n{extra}{tail}")
    return path


class Browser(httpx.Client):
    """One browser: its cookies, and the CSRF token the server gave it."""

    def __init__(self, base_url: str):
        super().__init__(base_url=base_url, timeout=20.0)
        self.csrf = self.get("/api/session").json()["csrf"]

    def send_json(self, method: str, path: str, body=None, **kwargs) -> httpx.Response:
        headers = {"X-CSRF-Token": self.csrf, **kwargs.pop("headers", {})}
        response = self.request(method, path, json=body, headers=headers, **kwargs)
        if response.headers.get("content-type", "").startswith("application/json"):
            self.csrf = response.json().get("csrf", self.csrf)
        return response

    def sign_in(self, user: str, key: str | None = None) -> httpx.Response:
        return self.send_json("POST", "/api/login", {"user": user, "key": key or f"{user}-key"})

    def place(self, **ticket) -> httpx.Response:
        return self.send_json("POST", "/api/orders", ticket)


class WebMesh:
    def __init__(self, mesh: Mesh, config_path: Path):
        self.mesh = mesh
        self.config = load_config(config_path)
        self.base_url = f"http://{self.config.web.listen}"
        self.ws_url = f"ws://{self.config.web.listen}/ws"
        wait_until(self.live, timeout=60, what="the web role serving every instrument's book")

    def live(self) -> bool:
        """Whether the web role answers, with every instrument's book from the notifier (the mesh
        is ready once its engines answer, which may be before)."""
        try:
            markets = httpx.get(f"{self.base_url}/api/markets", timeout=5).json()["markets"]
        except httpx.HTTPError:
            return False
        return all(m["state"] == "live" for m in markets)

    def browser(self, user: str | None = None) -> Browser:
        browser = Browser(self.base_url)
        if user is not None:
            response = browser.sign_in(user)
            assert response.status_code == 200, response.text
        return browser


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    path = web_mesh_config(tmp_path_factory.mktemp("web"))
    with Mesh(path) as mesh:
        yield WebMesh(mesh, path)
