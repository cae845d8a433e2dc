"""CURVE key files of the client-facing servers (the gateway's ZMQ order entry, the notifier's private
feed), and making a socket a CURVE server or client.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
import zmq
from exchange.errors import ConfigError
from exchange.wire.security.zap import USERS


def server_secret_key(path: str | Path) -> bytes:
    """The Z85 secret key stored at ``path``, made (readable by its owner only) if there is none;
    ConfigError if the file holds something else."""
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
    secret = path.read_bytes().strip()
    try:
        zmq.curve_public(secret)  # what every use of it does first
    except ValueError:
        raise ConfigError(f"{path}: not a CURVE secret key (40 Z85 characters on one line); move it away to have"
                          " a new one made, and give its users the new public key") from None
    return secret


def _write_new(path: Path, secret: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as f:
        f.write(secret + b"\n")


def public_key(secret: bytes) -> bytes:
    return zmq.curve_public(secret)


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
