"""CURVE on the mesh's internal links: each role's key pair, the peer each link expects, the key files.

With a ``mesh_curve`` section in the config, every socket a role binds for other roles is a CURVE
server in the ZAP domain ``mesh``, where the process's ZAP handler (exchange.wire.security.zap.Authenticator)
admits only the public keys the section lists for roles, never a user's. Every socket a role
connects to another role is a CURVE client with the role's own key pair that expects the public key
of the role bound at the other end. Without the section nothing here runs: plain links, no ZAP thread.

A role's secret key is the file ``<secret_key_dir>/<role>.key_secret`` (Z85, mode 0600), so a host
needs the files of its own roles only, plus the shared config.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from exchange.config import Config
from exchange.errors import ConfigError
from exchange.wire.security.zap import MESH

log = logging.getLogger(__name__)

SECRET_SUFFIX = ".key_secret"


def secret_key_path(directory: str | Path, role: str) -> Path:
    return Path(directory) / f"{role}{SECRET_SUFFIX}"


@dataclass(frozen=True)
class MeshSecurity:
    """One role's CURVE keys for the mesh, and every role's public key (its peers' and those ZAP admits)."""

    role: str
    public: bytes
    secret: bytes = field(repr=False)  # never in a log line, even by accident
    public_keys: dict[str, bytes]  # role → Z85 public key

    @classmethod
    def for_role(cls, config: Config, role: str) -> MeshSecurity | None:
        """The role's keys from its secret key file; None when the config leaves the mesh plain."""
        section = config.mesh_curve
        if section is None:
            return None
        path = secret_key_path(section.secret_key_dir, role)
        try:
            secret = path.read_bytes().strip()
            mode = path.stat().st_mode
        except OSError as e:
            raise ConfigError(f"{path}: cannot read the mesh secret key of {role}: {e.strerror}; make the"
                              f" keys with `exchange keys mesh`") from None
        public_keys = {name: key.encode() for name, key in section.public_keys.items()}
        try:
            public = zmq.curve_public(secret)
        except (ValueError, zmq.ZMQError):
            raise ConfigError(f"{path}: not a Z85 CURVE secret key") from None
        if public != public_keys[role]:
            raise ConfigError(f"{path}: this secret key does not belong to the public key the config lists"
                              f" for {role} - at `$.mesh_curve.public_keys.{role}`")
        if mode & 0o077:
            log.warning("%s can be read by others than its owner; chmod 600 it", path)
        return cls(role, public, secret, public_keys)

    def role_keys(self) -> dict[bytes, str]:
        """Z85 public key → role: whom the ZAP handler admits on mesh sockets."""
        return {key: role for role, key in self.public_keys.items()}

    def serve(self, sock: zmq.Socket) -> None:
        """Make ``sock`` (before it binds) a CURVE server that admits mesh roles only."""
        sock.zap_domain = MESH.encode()
        sock.curve_server = True
        sock.curve_publickey = self.public
        sock.curve_secretkey = self.secret

    def client_of(self, sock: zmq.Socket, peer: str) -> None:
        """Make ``sock``'s next connect a CURVE client that expects role ``peer`` at the other end."""
        sock.curve_serverkey = self.public_keys[peer]
        sock.curve_publickey = self.public
        sock.curve_secretkey = self.secret


def make_key_pairs(config: Config, directory: str | Path,
                   force: bool = False) -> tuple[dict[str, bytes], list[str]]:
    """Every role's public key, writing ``<role>.key_secret`` (mode 0600) for each role that has none.

    A secret key file that exists is kept (its public key is returned), unless ``force``: then
    every role gets a new pair. Returns (role → public key, the roles whose files were kept).
    """
    directory = Path(directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    public_keys, kept = {}, []
    for role in config.roles():
        path = secret_key_path(directory, role)
        if path.exists() and not force:
            try:
                public_keys[role] = zmq.curve_public(path.read_bytes().strip())
            except (ValueError, zmq.ZMQError):
                raise ConfigError(f"{path}: not a Z85 CURVE secret key; remove it or use --force") from None
            kept.append(role)
            continue
        public, secret = zmq.curve_keypair()
        temporary = path.with_name(path.name + ".new")
        temporary.unlink(missing_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secret + b"\n")
        os.replace(temporary, path)  # a reader sees the old key or the new one, never half a file
        public_keys[role] = public
    return public_keys, kept


def config_section(directory: str | Path, public_keys: dict[str, bytes]) -> str:
    """The ``mesh_curve`` section of the config for these keys, as YAML to paste; a relative ``directory``
    is read from the config's folder."""
    # always a double-quoted YAML string: a bare null, no, 123 or 2024-01-01 would read as no string at all
    # quoted as JSON, which YAML reads; not as ASCII: YAML reads no JSON surrogate pair (a character past U+FFFF)
    lines = ["mesh_curve:", f"  secret_key_dir: {json.dumps(str(directory), ensure_ascii=False)}", "  public_keys:"]
    lines += [f"    {role}: '{key.decode()}'" for role, key in public_keys.items()]
    return "\n".join(lines) + "\n"
