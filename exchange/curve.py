"""CURVE keys and the ZAP authenticator that turns a client's public key into a user name.

The notifier's private feed is a CURVE server: a client proves it holds the secret key whose public
half the config lists for a user (``users[].curve_public_key``), and every message it sends —
subscriptions included — carries that user's name as its ``User-Id``. Unknown keys are refused
during the handshake, so they never see anything.
"""

from __future__ import annotations

import os
from pathlib import Path

import zmq
from zmq.auth.thread import ThreadAuthenticator

from exchange.config import Config


def server_secret_key(path: str | Path) -> bytes:
    """The Z85 secret key stored at ``path``, made (readable by its owner only) if there is none."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _, secret = zmq.curve_keypair()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secret + b"\n")
    return path.read_bytes().strip()


def public_key(secret: bytes) -> bytes:
    return zmq.curve_public(secret)


class UserAuthenticator(ThreadAuthenticator):
    """ZAP handler: allows the CURVE keys of configured users; their User-Id is the user's name."""

    def __init__(self, ctx: zmq.Context, config: Config):
        super().__init__(ctx)
        self.users = {u.curve_public_key.encode(): u.name for u in config.users if u.curve_public_key}

    def curve_user_id(self, client_public_key: bytes) -> str:
        return self.users[zmq.utils.z85.encode(client_public_key)]

    def callback(self, domain: str, key: bytes) -> bool:  # the credentials provider
        return key in self.users

    def start(self) -> None:
        super().start()
        self.configure_curve_callback(domain="*", credentials_provider=self)


def make_server(sock: zmq.Socket, secret: bytes) -> None:
    sock.curve_server = True
    sock.curve_secretkey = secret
    sock.curve_publickey = public_key(secret)


def make_client(sock: zmq.Socket, server_public: bytes, public: bytes, secret: bytes) -> None:
    sock.curve_serverkey = server_public
    sock.curve_publickey = public
    sock.curve_secretkey = secret
