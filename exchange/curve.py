"""CURVE keys and a process's one ZAP handler, which decides by the socket's ZAP domain.

ZAP is one endpoint per context, so one handler answers for every CURVE server socket of a process:

    users  the gateway's ZMQ order entry and the notifier's private feed: a client proves it holds
           the secret key whose public half the config lists for a user (``users[].curve_public_key``),
           and every message it sends (subscriptions included) carries that user's name as its
           ``User-Id``;
    mesh   the sockets a role binds for other roles, with ``mesh_curve`` on (exchange.mesh_curve):
           the public keys of the mesh's roles, nothing else.

A key is admitted only in its own domain (the config refuses a key that is both a user's and a
role's), and a CURVE socket in neither domain admits nobody. Unknown keys are refused during the
handshake, so they never see anything.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import zmq
from zmq.auth.thread import ThreadAuthenticator

from exchange.config import Config


def server_secret_key(path: str | Path) -> bytes:
    """The Z85 secret key stored at ``path``, made (readable by its owner only) if there is none."""
    path = Path(path)
    if not path.exists():
        # written aside, then linked into place: when several notifiers start at once, one key wins
        # and every one of them reads that key, never a half-written file
        path.parent.mkdir(parents=True, exist_ok=True)
        _, secret = zmq.curve_keypair()
        fd, draft = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # 0600, a new file
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(secret + b"\n")
            os.link(draft, path)
        except FileExistsError:
            pass  # another process made it first: theirs is the key
        except OSError:  # no hard links here: create it in place (a reader may then see it empty)
            _write_new(path, secret)
        finally:
            os.unlink(draft)
    return path.read_bytes().strip()


def _write_new(path: Path, secret: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as f:
        f.write(secret + b"\n")


def public_key(secret: bytes) -> bytes:
    return zmq.curve_public(secret)


USERS = "users"  # ZAP domain of the sockets users connect to with their CURVE keys
MESH = "mesh"  # ZAP domain of the sockets roles bind for each other


def user_keys(config: Config) -> dict[bytes, str]:
    """Z85 public key → user, for the users that have a CURVE key."""
    return {u.curve_public_key.encode(): u.name for u in config.users if u.curve_public_key}


class Authenticator(ThreadAuthenticator):
    """ZAP handler: a user's key in the users domain (User-Id: the user), a role's in the mesh domain."""

    def __init__(self, ctx: zmq.Context, users: dict[bytes, str], roles: dict[bytes, str]):
        super().__init__(ctx)
        self.admitted = {USERS: users, MESH: roles}

    def curve_user_id(self, client_public_key: bytes) -> str:
        # A role gets no User-Id: mesh sockets ignore it, and a non-empty one puts a credential message
        # into the pipe, which ZMQ_EVENTS counts as readable although recv() skips it: an asyncio PULL
        # then wakes and raises zmq.Again (libzmq pipe_t::check_read vs read).
        return self.admitted[USERS].get(zmq.utils.z85.encode(client_public_key), "")

    def callback(self, domain: str, key: bytes) -> bool:  # the credentials provider
        return key in self.admitted.get(domain, {})

    def start(self) -> None:
        super().start()
        for domain in self.admitted:  # any other domain (the empty one too) is "unknown": refused
            self.configure_curve_callback(domain=domain, credentials_provider=self)


def start_authenticator(ctx: zmq.Context, users: dict[bytes, str] | None = None,
                        roles: dict[bytes, str] | None = None) -> Authenticator:
    """Start the ZAP handler of ``ctx``: before any CURVE server binds, or libzmq admits every key."""
    auth = Authenticator(ctx, users or {}, roles or {})
    auth.start()
    return auth


def make_server(sock: zmq.Socket, secret: bytes) -> None:
    """Make ``sock`` (before it binds) a CURVE server for users."""
    sock.zap_domain = USERS.encode()
    sock.curve_server = True
    sock.curve_secretkey = secret
    sock.curve_publickey = public_key(secret)


def make_client(sock: zmq.Socket, server_public: bytes, public: bytes, secret: bytes) -> None:
    sock.curve_serverkey = server_public
    sock.curve_publickey = public
    sock.curve_secretkey = secret
