"""CURVE keys and a process's one ZAP handler, which decides by the socket's ZAP domain.

ZAP is one endpoint per context, so one handler answers for every CURVE server socket of a process:

    users  the gateway's ZMQ order entry and the notifier's private feed: a client proves it holds
           the secret key whose public half the config lists for a user (``users[].curve_public_key``),
           and every message it sends (subscriptions included) carries that user's name as its
           ``User-Id``;
    mesh   the sockets a role binds for other roles, with ``mesh_curve`` on (exchange.wire.security.mesh_keys):
           the public keys of the mesh's roles, nothing else.

A key is admitted only in its own domain (the config refuses a key that is both a user's and a
role's), and a CURVE socket in neither domain admits nobody. Unknown keys are refused during the
handshake, so they never see anything.
"""

from __future__ import annotations

import zmq
from zmq.auth.thread import ThreadAuthenticator
from exchange.config import Config


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
