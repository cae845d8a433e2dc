"""The one YAML file that describes a mesh, decoded into frozen, typed objects.

``load_config(path)`` is the only reader of the file. Every mistake raises ConfigError naming
the file, the key path and the problem. Decimal values (tick and lot sizes, limits) are quoted
strings; API keys appear only as salted scrypt hashes (``exchange users add NAME`` makes one).
Relative paths in the file (the journal, key files, ``var_dir``, ``ipc://`` endpoints) are relative
to the file's folder, so every command means the same files wherever it runs from.
"""

from __future__ import annotations

import hashlib
import ipaddress
import hmac
import os
import re
import secrets
import socket
import decimal
from pathlib import Path
from typing import Annotated

import msgspec
import yaml
from msgspec import Meta

from exchange.core.assets import Asset, FeeRates, Terms, grid_problem
from exchange.core.instruments import GridError, Instrument
from exchange.core.ledger import MAX_DEPOSITED, shard_of
from exchange.core.orders import SelfTradePrevention
from exchange.errors import ConfigError

ZMQ_ENDPOINT = r"^(tcp://[A-Za-z0-9.\-]+:[0-9]{1,5}|ipc://.+)$"
HOST_PORT = r"^[A-Za-z0-9.\-]+:[0-9]{1,5}$"
Endpoint = Annotated[str, Meta(pattern=ZMQ_ENDPOINT, description="tcp://host:port or ipc://path")]
Decimal = Annotated[str, Meta(pattern=r"^[0-9]{1,12}(\.[0-9]{1,12})?$", description="a quoted decimal")]
Name = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}$")]
CurveKey = Annotated[str, Meta(pattern=r"^[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}$",
                               description="a CURVE public key: 40 Z85 characters")]


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


# seconds: the longest most durations in the file may be. Without a bound, .inf or 1e300 would pass and
# then break each role that turns the value into nanoseconds or whole seconds (int(), math.ceil)
_DAY = 86400
# requests per second: far above what a session (or the whole mesh) takes, and finite (a rate of .inf
# would make the token buckets' arithmetic fail)
MAX_RATE = 1_000_000.0
# ledger shards: each takes in up to MAX_DEPOSITED of an asset, and all of them together must stay
# below 2^63 so that every balance (and *external, *clearing) fits the journal's signed 64 bits: 9
MAX_LEDGER_SHARDS = (2**63 - 1) // MAX_DEPOSITED


AssetName = Annotated[str, Meta(pattern=r"^[A-Z0-9][A-Z0-9.\-]{0,11}$", description="an asset's name, like USD")]
Bps = Annotated[str, Meta(pattern=r"^-?[0-9]{1,5}(\.[0-9]{1,2})?$", description="basis points, like 2.5 or -1")]


class AssetConfig(_Section):
    """A thing held in accounts, and its smallest unit ("0.01" for cents)."""

    name: AssetName
    unit: Decimal


class FeesConfig(_Section):
    """Maker and taker fee rates in basis points; a negative maker rate is a rebate."""

    maker_bps: Bps = "0"
    taker_bps: Bps = "0"

    def rates(self) -> FeeRates:
        return FeeRates(self.maker_bps, self.taker_bps)


class InstrumentConfig(_Section):
    symbol: Annotated[str, Meta(pattern=r"^[A-Z0-9][A-Z0-9.\-/]{0,23}$")]
    tick_size: Decimal
    lot_size: Decimal
    min_qty: Decimal | None = None
    max_qty: Decimal | None = None
    max_price: Decimal | None = None
    stp_default: SelfTradePrevention = SelfTradePrevention.CANCEL_NEWEST
    max_notional: Decimal | None = None  # largest price × quantity of one order, in the quote currency
    price_band: Decimal | None = None  # percent: limit prices this far from the last trade at most
    reference_price: Decimal | None = None  # the band's centre until the instrument first trades
    max_open_orders: Annotated[int, Meta(ge=1)] | None = None  # per user on this instrument
    base: AssetName | None = None  # with `assets:`, what is bought and sold ...
    quote: AssetName | None = None  # ... and what it is paid in
    fees: FeesConfig | None = None  # None: the config's `fees`

    def build(self) -> Instrument:
        return Instrument(self.symbol, self.tick_size, self.lot_size, self.min_qty, self.max_qty,
                          self.max_price, self.stp_default, self.max_notional, self.price_band,
                          self.reference_price, self.max_open_orders)


class EngineConfig(_Section):
    name: Name
    id: Annotated[int, Meta(ge=1, le=9999)]  # goes into every order and trade id: "<id>-<n>"
    instruments: list[str]
    commands: Endpoint  # PULL, bound: commands from gateways
    replay: Endpoint  # ROUTER, bound: the journal writer fetches missed event batches here; a notifier that
    # starts, the books
    max_undurable_events: Annotated[int, Meta(ge=1000)] = 200_000  # beyond this: stop reading commands
    checkpoint_every: Annotated[int, Meta(ge=100)] = 100_000  # events between checkpoints in the journal
    # bytes of state per checkpoint part (one part per event batch), far below the 64 MiB message cap
    checkpoint_part_size: Annotated[int, Meta(ge=1024, le=32 * 1024 * 1024)] = 4 * 1024 * 1024
    # seconds after its acceptance (and while its order is open) a client order id may not be reused
    client_order_id_window: Annotated[float, Meta(ge=0, le=7 * 86400)] = 300.0
    host: Name | None = None  # with `hosts:`, the host it runs on (docs/deployment.md)

    @property
    def role(self) -> str:
        return f"engine-{self.name}"


class LedgerConfig(_Section):
    """One ledger shard: the accounts of the users ``shard_of(user, len(ledgers)) == shard`` (docs/accounts.md)."""

    shard: Annotated[int, Meta(ge=0, le=999)]
    commands: Endpoint  # PULL, bound: gateways' requests for this shard's users
    settle: Endpoint  # PULL, bound: every engine's released event batches, to settle
    replay: Endpoint  # ROUTER, bound: the journal writer fetches missed batches here
    publish: Endpoint  # PUB, bound: balance changes for the private feed, read by the notifier
    max_undurable_events: Annotated[int, Meta(ge=1000)] = 200_000  # beyond this: stop reading requests
    checkpoint_every: Annotated[int, Meta(ge=100)] = 100_000  # events between checkpoints in the journal
    checkpoint_part_size: Annotated[int, Meta(ge=1024, le=32 * 1024 * 1024)] = 4 * 1024 * 1024
    host: Name | None = None  # with `hosts:`, the host it runs on (docs/deployment.md)

    @property
    def name(self) -> str:
        """Its journal stream and its role: ``ledger-<shard>``."""
        return f"ledger-{self.shard}"

    @property
    def role(self) -> str:
        return self.name


class GatewayReplicaConfig(_Section):
    """One more gateway process: its own order entry endpoints and replies, the first gateway's rules."""

    name: Name  # its role is gateway-<name>; its requests carry this name
    text: Annotated[str, Meta(pattern=HOST_PORT)]
    zmq: Endpoint
    replies: Endpoint
    host: Name | None = None  # with `hosts:`, the host it runs on (docs/deployment.md)


class GatewayConfig(_Section):
    text: Annotated[str, Meta(pattern=HOST_PORT)]  # host:port of the text protocol (TCP)
    zmq: Endpoint  # ROUTER, bound: order entry for programs (DEALER + msgpack)
    replies: Endpoint  # PULL, bound: acks, fills and order updates from engines
    # ROUTER, bound (first gateway only): ZMQ order entry for the gateway's trusted front ends (the web
    # role), a mesh-internal endpoint; their LOGIN (user + key) may say where the user is
    front_end: Endpoint | None = None
    name: Name = "gateway"
    max_line: Annotated[int, Meta(ge=64, le=65536)] = 1024  # longest accepted request line, bytes
    # seconds to wait for an engine's answer; also the engines' and shards' oldest order (half of it, in ns) and
    # how far back the journal writer passes batches on again when it starts: an hour at most, and finite
    request_timeout: Annotated[float, Meta(gt=0, le=3600)] = 10.0
    max_in_flight: Annotated[int, Meta(ge=1)] = 5000  # unanswered orders per engine before BUSY
    # who may connect, and how much: docs/security.md
    zmq_auth: Annotated[str, Meta(pattern="^(curve|login)$")] = "curve"  # ZMQ clients: CURVE key, or LOGIN
    secret_key_file: str = "var/gateway.key"  # CURVE secret of the zmq endpoint; made if missing
    max_connections: Annotated[int, Meta(ge=1)] = 1000  # text connections + ZMQ sessions, all users
    max_sessions_per_user: Annotated[int, Meta(ge=1)] = 20  # a user's own max_sessions overrides it
    max_rate: Annotated[float, Meta(gt=0, le=MAX_RATE)] = 1000.0  # requests per second per session, sustained
    max_burst: Annotated[int, Meta(ge=1)] = 2000  # requests a session may send at once (bucket size)
    idle_timeout: Annotated[float, Meta(ge=0, le=_DAY)] = 300.0  # seconds without a request; 0: never
    zmq_login_timeout: Annotated[float, Meta(gt=0, le=_DAY)] = 5.0  # the same, for a ZMQ session nobody logged in on
    max_write_buffer: Annotated[int, Meta(ge=65536)] = 1024 * 1024  # unread reply bytes before a disconnect
    max_unanswered: Annotated[int, Meta(ge=16)] = 8192  # a session's requests not yet answered: reading stops
    login_failure_delay: Annotated[float, Meta(ge=0, le=30)] = 1.0  # seconds before a BAD_LOGIN answer
    max_failed_logins: Annotated[int, Meta(ge=1)] = 5  # per user name from one address, in the window (4x per address or name)
    failed_login_window: Annotated[float, Meta(gt=0, le=_DAY)] = 60.0  # seconds
    host: Name | None = None  # with `hosts:`, the host it runs on (docs/deployment.md)
    replicas: list[GatewayReplicaConfig] = []  # more gateway processes taking orders at once

    def replica(self, name: str | None) -> GatewayConfig:
        """The section as the gateway ``name`` runs it: its own name and endpoints (None: the first's)."""
        if name is None:
            return msgspec.structs.replace(self, replicas=[])
        for replica in self.replicas:
            if replica.name == name:
                return msgspec.structs.replace(self, name=replica.name, text=replica.text, zmq=replica.zmq,
                                               replies=replica.replies, host=replica.host, replicas=[],
                                               front_end=None)
        raise ConfigError(f"no gateway replica named {name!r}; the config has"
                          f" {', '.join(r.name for r in self.replicas) or 'none'} - at `$.gateway.replicas`")

    def all(self) -> list[tuple[str, GatewayConfig]]:
        """(role, section as it runs) of every gateway: gateway, then gateway-<name> for each replica."""
        return [("gateway", self.replica(None)), *((f"gateway-{r.name}", self.replica(r.name)) for r in self.replicas)]

    def roles(self) -> list[str]:
        return [role for role, _ in self.all()]


class JournalConfig(_Section):
    path: str  # the SQLite file
    events: Endpoint  # PULL, bound: event batches from engines
    watermarks: Endpoint  # PUB, bound: durable sequence numbers, read by engines
    recovery: Endpoint  # ROUTER, bound: engines get their epoch here, gateways the journal's positions
    history: Endpoint  # ROUTER, bound: what starting roles read of the journal (exchange.journal.history)
    synchronous: Annotated[str, Meta(pattern="^(FULL|NORMAL)$")] = "NORMAL"
    host: Name | None = None  # with `hosts:`, the host it runs on (docs/deployment.md)


class NotifierReplicaConfig(_Section):
    """One more notifier process: the same feeds (same chan_seqs) for its own subscribers."""

    name: Name  # its role is notifier-<name>
    publish: Endpoint
    private: Endpoint
    snapshots: Endpoint
    lanes: list[Endpoint] = []
    host: Name | None = None  # with `hosts:`, the host it runs on (docs/deployment.md)


class NotifierConfig(_Section):
    publish: Endpoint  # XPUB, bound: public market data for anyone
    private: Endpoint  # XPUB with CURVE, bound: each user's own order updates, for that user only
    snapshots: Endpoint  # ROUTER, bound: book snapshots for subscribers and for other notifiers
    # XPUB, bound: more endpoints with the same public feed; each message goes out on publish and every
    # lane, a different one first each time, so that no lane's subscribers are always served first
    lanes: list[Endpoint] = []
    secret_key_file: str = "var/notifier.key"  # CURVE secret of the private feed (every replica's); made if missing
    io_threads: Annotated[int, Meta(ge=1, le=16)] = 1  # per notifier process
    replicas: list[NotifierReplicaConfig] = []  # more notifier processes, to spread many subscribers
    host: Name | None = None  # with `hosts:`, the host it runs on (docs/deployment.md)

    def replica(self, name: str | None) -> NotifierConfig:
        """The section as the notifier ``name`` runs it: its own endpoints (None: the first notifier's)."""
        if name is None:
            return msgspec.structs.replace(self, replicas=[])
        for replica in self.replicas:
            if replica.name == name:
                return msgspec.structs.replace(self, publish=replica.publish, private=replica.private,
                                               snapshots=replica.snapshots, lanes=replica.lanes, replicas=[],
                                               host=replica.host)
        raise ConfigError(f"no notifier replica named {name!r}; the config has"
                          f" {', '.join(r.name for r in self.replicas) or 'none'} - at `$.notifier.replicas`")

    def roles(self) -> list[str]:
        """notifier, then notifier-<name> for each replica."""
        return ["notifier", *(f"notifier-{r.name}" for r in self.replicas)]


class UserConfig(_Section):
    name: Name
    key_hash: str  # scrypt$<n>$<salt hex>$<hash hex>, made by `exchange users add`
    curve_public_key: CurveKey | None = None
    max_open_orders: Annotated[int, Meta(ge=1)] | None = None  # per instrument, besides the instrument's own
    max_sessions: Annotated[int, Meta(ge=1)] | None = None  # None: gateway.max_sessions_per_user
    max_rate: Annotated[float, Meta(gt=0, le=MAX_RATE)] | None = None  # None: gateway.max_rate (and max_burst)
    cancel_on_disconnect: bool = False  # default for the user's sessions; LOGIN … CANCEL_ON_DISCONNECT asks too
    admin: bool = False  # may DEPOSIT and WITHDRAW for any user (with accounts on); an admin does not trade
    # with accounts on: asset → amount deposited once, when the user's ledger shard first starts with
    # this user (reference ``opening:<user>:<asset>``; changing it later deposits nothing more)
    opening_balances: dict[str, Decimal] = {}


class MeshCurveConfig(_Section):
    """CURVE on every mesh-internal link (docs/security.md); without this section, links are plain."""

    secret_key_dir: str  # holds <role>.key_secret; each host needs only the files of its own roles
    public_keys: dict[str, CurveKey]  # role (journal-writer, engine-<name>, gateway, notifier) → public key


class WebConfig(_Section):
    """The browser view (`exchange web`, docs/web.md): where it listens, its sessions and its limits."""

    listen: Annotated[str, Meta(pattern=HOST_PORT)]  # host:port of its HTTP and WebSocket server
    session_expiry: Annotated[float, Meta(gt=0, le=_DAY)] = 1800.0  # seconds a signed-in browser may stay silent
    max_sessions: Annotated[int, Meta(ge=1)] = 200  # signed-in browsers at once; each holds one gateway session
    max_sockets: Annotated[int, Meta(ge=1)] = 1000  # WebSockets open at once
    max_rate: Annotated[float, Meta(gt=0, le=MAX_RATE)] = 20.0  # requests per second per signed-in browser, sustained
    max_burst: Annotated[int, Meta(ge=1)] = 40  # requests a signed-in browser may send at once
    max_logins: Annotated[int, Meta(ge=1)] = 10  # sign-in attempts per client address per minute
    tape_length: Annotated[int, Meta(ge=1, le=1000)] = 50  # trades the page's tape shows
    # reverse proxies (IP addresses or networks) whose X-Forwarded-For names the browser; from any other
    # peer the header is ignored and the browser is the peer itself
    trusted_proxies: list[str] = []
    # the origin browsers load the page from when it is not the role's own address, as behind a TLS-terminating
    # proxy (https://exchange.example): a request whose Origin is this one is not refused as another site's
    public_origin: str | None = None
    host: Name | None = None  # with `hosts:`, the host it runs on (docs/deployment.md)

    _ORIGIN = re.compile(r"(https?)://([A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(?::([0-9]{1,5}))?", re.IGNORECASE)

    def check(self) -> None:
        """ValueError naming the key of a trusted proxy that is not an IP address or network, or of a
        public origin that is not one."""
        for n, proxy in enumerate(self.trusted_proxies):
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ValueError(f"{proxy!r} is not an IP address or network (like 10.0.0.5 or 10.0.0.0/24)"
                                 f" - at `$.web.trusted_proxies[{n}]`") from None
        self.origin()

    def origin(self) -> str | None:
        """``public_origin`` as a browser's Origin header says it (scheme and host in lower case, no
        default port: https://exchange.example for HTTPS://Exchange.example:443); ValueError naming the
        key if it is not an origin."""
        if self.public_origin is None:
            return None
        match = self._ORIGIN.fullmatch(self.public_origin)
        port = int(match.group(3)) if match and match.group(3) else None
        if match is None or port is not None and not 1 <= port <= 65535:
            raise ValueError(f"{self.public_origin!r} is not an origin: http or https, a host, maybe a port, and"
                             f" nothing after (like https://exchange.example or http://10.0.0.5:8080)"
                             f" - at `$.web.public_origin`")
        scheme, host = match.group(1).lower(), match.group(2).lower()
        default = 443 if scheme == "https" else 80
        return f"{scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


# -- placement: which host each role runs on -------------------------------------------------

Address = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9.\-]{0,252}$", description="an IP address or host name")]


class HostConfig(_Section):
    """One machine of the mesh: the address its roles bind their endpoints on."""

    address: Address  # every endpoint its roles bind uses it, and the other hosts reach it there
    public: Address | None = None  # client-facing endpoints (order entry, market data) may bind here instead


class Placed(msgspec.Struct, frozen=True):
    """A role's section as placed: its role name, where it is in the file, its host and what it binds."""

    role: str
    at: str  # its key path, like `$.engines[0]`
    host: str | None
    bound: list[tuple[str, str, bool]]  # (key, endpoint, client-facing)


def plain(value: float) -> str:
    """A number of the config as a person writes it, for messages: 1000000, 0.5, 2.25 (never 1e+06)."""
    if isinstance(value, int) or value.is_integer():
        return str(int(value))
    return format(decimal.Decimal(repr(value)), "f")


def placed_roles(config: Config) -> list[Placed]:
    """Every role of the mesh (as Config.roles() names them, and the web role if configured) with its
    host and bound endpoints."""
    def one(role: str, at: str, section, mesh: list[str], clients: list[str]) -> Placed:
        bound = [(key, getattr(section, key), False) for key in mesh]
        bound += [(key, getattr(section, key), True) for key in clients]
        bound += [(f"lanes[{i}]", lane, True) for i, lane in enumerate(getattr(section, "lanes", []))]
        if role.startswith("gateway"):
            bound.append(("text", f"tcp://{section.text}", True))
        if role == "web":
            bound.append(("listen", f"tcp://{section.listen}", True))
        return Placed(role, at, section.host, bound)

    notifier_keys = ["publish", "private", "snapshots"]
    return ([one("journal-writer", "$.journal", config.journal, ["events", "watermarks", "recovery", "history"], [])]
            + [one(e.role, f"$.engines[{n}]", e, ["commands", "replay"], [])
               for n, e in enumerate(config.engines)]
            + [one(s.role, f"$.ledgers[{n}]", s, ["commands", "settle", "replay", "publish"], [])
               for n, s in enumerate(config.ledgers)]
            + [one("notifier", "$.notifier", config.notifier, [], notifier_keys)]
            + [one(f"notifier-{r.name}", f"$.notifier.replicas[{n}]", r, [], notifier_keys)
               for n, r in enumerate(config.notifier.replicas)]
            + [one("gateway", "$.gateway", config.gateway, ["replies", *(["front_end"] if config.gateway.front_end
                                                                          else [])], ["zmq"])]
            + [one(f"gateway-{r.name}", f"$.gateway.replicas[{n}]", r, ["replies"], ["zmq"])
               for n, r in enumerate(config.gateway.replicas)]
            + ([one("web", "$.web", config.web, [], [])] if config.web is not None else []))


_UNSPECIFIED = "0.0.0.0"  # binds every address of its machine; `*` (ZMQ's spelling) means it too


def canonical_address(address: str) -> str:
    """``address`` as bind() takes it: ``localhost`` is 127.0.0.1, ``*`` and the other spellings of
    the unspecified address are 0.0.0.0, an IPv4 address in any form inet_aton reads (127.1, 0) its
    dotted quad; host names as they are (in lower case)."""
    address = address.lower()
    if address in ("localhost", "*"):
        return "127.0.0.1" if address == "localhost" else _UNSPECIFIED
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        pass
    if re.fullmatch(r"[0-9.]+", address):
        try:
            return socket.inet_ntoa(socket.inet_aton(address))  # 127.1, 0: what bind() makes of them
        except OSError:
            pass
    return address


def _is_loopback(address: str) -> bool:
    """Whether the canonical ``address`` is a loopback IP address (127.0.0.0/8): only its own machine reaches it."""
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # a host name: whatever it resolves to elsewhere


def bound_at(endpoint: str) -> tuple[str, int] | None:
    """(canonical address, port) of a tcp:// endpoint; None for ipc://."""
    if not endpoint.startswith("tcp://"):
        return None
    address, port = endpoint[len("tcp://"):].rsplit(":", 1)
    return canonical_address(address), int(port)


def check_endpoints(config: Config) -> None:
    """Every port a role binds is 1-65535, and no two endpoints bind the same port of one machine:
    not the same address under two spellings (localhost and 127.0.0.1), nor 0.0.0.0 (every address
    of its machine) beside any other address. Roles on different hosts are on different machines,
    unless every host is a loopback address (then they are all this machine). ipc:// paths are
    compared as they stand: as written while the file is decoded, then once more after load_config
    has made them absolute, so that one file under two spellings is caught."""
    addresses = [canonical_address(host.address) for host in config.hosts.values()]
    one_machine = not addresses or all(_is_loopback(address) for address in addresses)
    seen: dict[tuple[str | None, int | str], list[tuple[str, str, str]]] = {}  # → (address, endpoint, key)
    for placed in placed_roles(config):
        machine = None if one_machine else placed.host
        for key, endpoint, _ in placed.bound:
            at = f"`{placed.at}.{key}`"
            where = bound_at(endpoint)
            if where is None:
                address, port = endpoint, endpoint
            else:
                address, port = where
                if not 1 <= port <= 65535:
                    raise ValueError(f"port {port} of {endpoint} is not between 1 and 65535 - at {at}")
            for other_address, other, other_at in seen.get((machine, port), []):
                if other == endpoint:
                    raise ValueError(f"endpoint {endpoint} is used twice - at {other_at} and {at}")
                if address == other_address:
                    raise ValueError(f"{other} and {endpoint} bind the same address and port - at {other_at} and {at}")
                if _UNSPECIFIED in (address, other_address):
                    (wildcard, wildcard_at), (beside, beside_at) = (((endpoint, at), (other, other_at))
                                                                     if address == _UNSPECIFIED
                                                                     else ((other, other_at), (endpoint, at)))
                    raise ValueError(f"{wildcard} binds port {port} on every address of its machine, {beside} too"
                                     f" - at {wildcard_at} and {beside_at}")
            seen.setdefault((machine, port), []).append((address, endpoint, at))


def _check_host_addresses(config: Config) -> None:
    """Each host has an address of its own; with several hosts, one the others reach it at: not the
    unspecified address (every address of whichever machine reads it, so any machine passes
    `--host`), and a loopback address only if every host has one (hosts that are all this machine)."""
    seen: dict[str, str] = {}
    for name, host in config.hosts.items():
        address = canonical_address(host.address)
        if address in seen:
            raise ValueError(f"host {name} has the address {host.address} of host {seen[address]}; each"
                             f" host has its own - at `$.hosts.{name}.address`")
        seen[address] = name
    if len(config.hosts) < 2:
        return
    elsewhere = [(name, host.address) for name, host in config.hosts.items()
                 if not _is_loopback(canonical_address(host.address))]
    for name, host in config.hosts.items():
        address = canonical_address(host.address)
        if address == _UNSPECIFIED:
            raise ValueError(f"host {name}'s address {host.address} is every address of its machine, not one the"
                             f" other hosts can reach it at; give the address they reach it at (its `public:` may"
                             f" be 0.0.0.0) - at `$.hosts.{name}.address`")
        if _is_loopback(address) and elsewhere:
            other, other_address = elsewhere[0]
            raise ValueError(f"host {name}'s address {host.address} is a loopback address, which only its own"
                             f" machine reaches, but host {other} ({other_address}) is elsewhere: loopback"
                             f" addresses only if every host has one - at `$.hosts.{name}.address`")


def roles_on(config: Config, host: str) -> list[str]:
    """The roles placed on ``host``, in start order."""
    return [placed.role for placed in placed_roles(config) if placed.host == host]


def check_placement(config: Config, require_curve: bool = True) -> None:
    """Without `hosts:`, no role names a host. With it: each host has an address of its own, one the
    other hosts can reach (_check_host_addresses), every role names one of them, binds only on its
    address (or, client-facing, its public one), and roles on two hosts or more need mesh CURVE
    (unless not ``require_curve``: `exchange keys mesh` loads the config to make those keys)."""
    placed = placed_roles(config)
    known = ", ".join(config.hosts) or "none"
    _check_host_addresses(config)
    for role in placed:
        if not config.hosts and role.host is not None:
            raise ValueError(f"{role.role} names host {role.host}, but the config has no `hosts:` section"
                             f" - at `{role.at}.host`")
        if config.hosts and role.host is None:
            raise ValueError(f"{role.role} names no host; with `hosts:` every role names one ({known})"
                             f" - at `{role.at}.host`")
        if config.hosts and role.host not in config.hosts:
            raise ValueError(f"{role.role} is placed on host {role.host}, which `hosts:` does not name"
                             f" ({known}) - at `{role.at}.host`")
    used = sorted({role.host for role in placed if role.host is not None})
    for role in placed:
        if role.host is None:
            continue
        host = config.hosts[role.host]
        for key, endpoint, client_facing in role.bound:
            allowed = [host.address, *([host.public] if client_facing and host.public else [])]
            if endpoint.startswith("ipc://") and len(used) > 1:
                raise ValueError(f"{role.role} binds {endpoint}, but ipc:// reaches only its own machine and the"
                                 f" roles are on {len(used)} hosts; use tcp:// on {host.address}"
                                 f" - at `{role.at}.{key}`")
            address = endpoint.split("://", 1)[1].rsplit(":", 1)[0]
            if endpoint.startswith("tcp://") and address not in allowed:
                raise ValueError(f"{role.role} is on host {role.host} ({' or '.join(allowed)}) but binds"
                                 f" {endpoint} - at `{role.at}.{key}`")
    if len(used) > 1 and config.mesh_curve is None and require_curve:
        raise ValueError(f"roles are placed on {len(used)} hosts ({', '.join(used)}), so the mesh's links cross"
                         f" machines and must be encrypted: add a `mesh_curve` section (`exchange keys mesh`"
                         f" makes it) - at `$.mesh_curve`")


class Config(_Section):
    instruments: list[InstrumentConfig]
    engines: list[EngineConfig]
    gateway: GatewayConfig
    journal: JournalConfig
    notifier: NotifierConfig
    users: list[UserConfig] = []
    var_dir: str = "var"  # per-role log files go here
    mesh_curve: MeshCurveConfig | None = None  # None: internal links are plain (fine on one host)
    assets: list[AssetConfig] = []  # with assets, accounts are on (docs/accounts.md); without, pure matching
    fees: FeesConfig = FeesConfig()  # the default fee rates, with accounts on
    ledgers: list[LedgerConfig] = []  # the ledger shards, with accounts on: shards 0, 1, … once each
    web: WebConfig | None = None  # the browser view; None: no `web` role
    hosts: dict[Name, HostConfig] = {}  # where roles run (docs/deployment.md); none: all on this machine

    def __post_init__(self) -> None:
        if not self.instruments:
            raise ValueError("the config has no instruments; a mesh needs at least one - at `$.instruments`")
        symbols = [i.symbol for i in self.instruments]
        for symbol in symbols:
            if symbols.count(symbol) > 1:
                raise ValueError(f"instrument {symbol} is defined twice - at `$.instruments`")
        owners: dict[str, str] = {}
        for n, engine in enumerate(self.engines):
            for symbol in engine.instruments:
                if symbol not in symbols:
                    raise ValueError(f"engine {engine.name} names unknown instrument {symbol}"
                                     f" - at `$.engines[{n}].instruments`")
                if symbol in owners:
                    raise ValueError(f"instrument {symbol} is owned by both {owners[symbol]} and"
                                     f" {engine.name} - at `$.engines[{n}].instruments`")
                owners[symbol] = engine.name
        for symbol in symbols:
            if symbol not in owners:
                raise ValueError(f"instrument {symbol} is owned by no engine - at `$.engines`")
        for n, engine in enumerate(self.engines):
            if not engine.instruments:  # a notifier follows each engine's books and cannot start without one
                raise ValueError(f"engine {engine.name} owns no instruments; give it one or remove it"
                                 f" - at `$.engines[{n}].instruments`")
        for what, values in (("engine name", [e.name for e in self.engines]),
                             ("engine id", [e.id for e in self.engines]),
                             ("user", [u.name for u in self.users]),
                             ("notifier replica name", [r.name for r in self.notifier.replicas]),
                             ("gateway name", [self.gateway.name, *(r.name for r in self.gateway.replicas)])):
            for value in values:
                if values.count(value) > 1:
                    raise ValueError(f"{what} {value} is used twice")
        check_endpoints(self)
        if self.web is not None:
            self.web.check()
        if self.web is not None and self.gateway.front_end is None:
            raise ValueError("the web role signs browsers in through the gateway's endpoint for front ends; add one"
                             " (front_end: tcp://127.0.0.1:7015, say) - at `$.gateway.front_end`")
        for n, user in enumerate(self.users):
            match = _KEY_HASH.fullmatch(user.key_hash)
            if not match:
                raise ValueError(f"key_hash of {user.name} is not scrypt$<n>$<salt>$<hash>; make one with"
                                 f" `exchange users add {user.name}` - at `$.users[{n}].key_hash`")
            if not _scrypt_cost_ok(match.group(1)):
                raise ValueError(f"key_hash of {user.name} has scrypt cost n={match.group(1)[:12]}, which is not a"
                                 f" power of two from 2 to {_SCRYPT_MAX_N}, so no login could be checked; make one"
                                 f" with `exchange users add {user.name}` - at `$.users[{n}].key_hash`")

    def endpoints(self) -> list[str]:
        """Every address a role binds (tcp://host:port or ipc://path; the gateways' text ports and the
        web page's listen as tcp://), in the order of placed_roles."""
        return [endpoint for placed in placed_roles(self) for _, endpoint, _ in placed.bound]

    def roles(self) -> list[str]:
        """Every role's name, as its log file and its mesh key are named: journal-writer, engine-<name>, …"""
        return ["journal-writer", *(e.role for e in self.engines), *(s.role for s in self.ledgers),
                *self.notifier.roles(), *self.gateway.roles(), *(["web"] if self.web is not None else [])]

    def streams(self) -> list[str]:
        """Every journal stream: each engine's (its name), then each ledger shard's (``ledger-<shard>``)."""
        return [*(e.name for e in self.engines), *(s.name for s in self.ledgers)]

    @property
    def accounts(self) -> bool:
        """Whether accounts are on: funds held before matching and settled after (an `assets:` section)."""
        return bool(self.assets)

    def asset_map(self) -> dict[str, Asset]:
        return {a.name: Asset(a.name, a.unit) for a in self.assets}

    def terms(self) -> dict[str, Terms]:
        """Each instrument's money terms (base, quote, fee rates); empty with accounts off."""
        if not self.accounts:
            return {}
        assets, instruments = self.asset_map(), self.instrument_map()
        return {i.symbol: Terms(instruments[i.symbol], assets[i.base], assets[i.quote], (i.fees or self.fees).rates())
                for i in self.instruments}

    def ledger(self, name: str) -> LedgerConfig:
        """The ledger shard ``name`` ("1" or "ledger-1")."""
        for ledger in self.ledgers:
            if name in (str(ledger.shard), ledger.name):
                return ledger
        raise ConfigError(f"no ledger shard {name!r}; the config has"
                          f" {', '.join(str(s.shard) for s in self.ledgers) or 'none (accounts are off)'}")

    def ledger_of(self, user: str) -> LedgerConfig:
        """The ledger shard that holds ``user``'s accounts (accounts on)."""
        return self.ledgers[shard_of(user, len(self.ledgers))]

    def instrument_map(self) -> dict[str, Instrument]:
        return {i.symbol: i.build() for i in self.instruments}

    def engine(self, name: str) -> EngineConfig:
        for engine in self.engines:
            if engine.name == name:
                return engine
        raise ConfigError(f"no engine named {name!r}; the config has {', '.join(e.name for e in self.engines)}")

    def engine_of(self, symbol: str) -> EngineConfig:
        return next(e for e in self.engines if symbol in e.instruments)

    def key_hash(self, user: str) -> str | None:
        return next((u.key_hash for u in self.users if u.name == user), None)

    def user(self, name: str) -> UserConfig | None:
        return next((u for u in self.users if u.name == name), None)


def repeated_key(text: bytes) -> str | None:
    """The first key that a mapping of the YAML ``text`` gives twice, said with its lines and where
    it is; None if there is none. YAML keeps the last of them silently, so a section pasted twice
    (a second `gateway:`) would quietly replace the first."""
    try:
        root = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        return None  # the decoder has said what is wrong already, or will

    seen: set[int] = set()  # an alias is the node it names: each is walked once (and a loop ends)

    def walk(node, where: str) -> str | None:
        if id(node) in seen:
            return None
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            lines: dict = {}
            for key, value in node.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else None
                if name in lines:
                    return (f"key `{name}` is given twice, on lines {lines[name]} and {key.start_mark.line + 1};"
                            f" only one may stay - at `{where}`")
                if name is not None:
                    lines[name] = key.start_mark.line + 1
                found = walk(value, f"{where}.{name}")
                if found:
                    return found
        elif isinstance(node, yaml.SequenceNode):
            for n, item in enumerate(node.value):
                found = walk(item, f"{where}[{n}]")
                if found:
                    return found
        return None

    return walk(root, "$")


def load_config(path: str | Path, mesh_keys: bool = True) -> Config:
    """Read and validate the YAML file at ``path``; ConfigError says what is wrong and where.

    ``mesh_keys=False`` skips the check that ``mesh_curve`` lists a key for every role, for
    `exchange keys mesh`, which makes those keys.
    """
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config: {e.strerror}") from None
    repeated = repeated_key(text)
    if repeated:
        raise ConfigError(f"{path}: {repeated}")
    try:
        config = msgspec.yaml.decode(text, type=Config)
    except msgspec.ValidationError as e:
        raise ConfigError(f"{path}: {e}") from None
    except msgspec.DecodeError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    for n, instrument in enumerate(config.instruments):
        try:
            instrument.build()
        except ValueError as e:
            raise ConfigError(f"{path}: {e} - at `$.instruments[{n}]`") from None
    try:
        _check_accounts(config)
    except ValueError as e:
        raise ConfigError(f"{path}: {e}") from None
    try:
        check_placement(config, require_curve=mesh_keys)
    except ValueError as e:
        raise ConfigError(f"{path}: {e}") from None
    if config.mesh_curve is not None and mesh_keys:
        try:
            _check_mesh_keys(config, config.mesh_curve)
        except ValueError as e:
            raise ConfigError(f"{path}: {e}") from None
    try:
        # replacing the paths runs Config.__post_init__ again, now on absolute ipc:// paths: one file
        # written two ways (ipc://mesh.sock, ipc://./mesh.sock) is one endpoint used twice
        return _anchored(config, path.parent)
    except ValueError as e:
        raise ConfigError(f"{path}: {e}") from None


_PATH_FIELDS = {"path", "var_dir", "secret_key_file", "secret_key_dir"}  # file and folder names in the file


def _anchored(section, folder: Path):
    """``section`` with every relative path and ``ipc://`` endpoint made absolute from ``folder``."""
    changes = {}
    for name in section.__struct_fields__:
        value = getattr(section, name)
        if isinstance(value, msgspec.Struct):
            changes[name] = _anchored(value, folder)
        elif isinstance(value, list) and value and isinstance(value[0], msgspec.Struct):
            changes[name] = [_anchored(item, folder) for item in value]
        elif isinstance(value, list) and any(isinstance(item, str) and item.startswith("ipc://") for item in value):
            changes[name] = [_ipc_anchored(item, folder) for item in value]  # notifier lanes
        elif isinstance(value, str) and value.startswith("ipc://"):
            changes[name] = _ipc_anchored(value, folder)
        elif isinstance(value, str) and name in _PATH_FIELDS:
            changes[name] = _absolute(value, folder)
    return msgspec.structs.replace(section, **changes) if changes else section


def _ipc_anchored(endpoint: str, folder: Path) -> str:
    """An ``ipc://`` endpoint with its path made absolute from ``folder``; any other as it is."""
    return "ipc://" + _absolute(endpoint[len("ipc://"):], folder) if endpoint.startswith("ipc://") else endpoint


def _absolute(path: str, folder: Path) -> str:
    """``path`` from ``folder`` if relative, normalised either way (/a/./b and /a/x/../b are /a/b)."""
    return os.path.normpath(os.path.join(os.path.abspath(folder), path))


def _check_accounts(config: Config) -> None:
    """With assets: each instrument names a base and a quote among them, settles exactly in their
    units, and has fee rates that can be used. Without: no instrument names an asset or fees."""
    shards = [s.shard for s in config.ledgers]
    if config.assets and not config.ledgers:
        raise ValueError("accounts are on (`assets:`), so the config needs `ledgers:` (at least shard 0) - at `$`")
    if config.ledgers and not config.assets:
        raise ValueError("`ledgers:` without `assets:`: accounts are off, so no ledger would run - at `$.ledgers`")
    if shards != list(range(len(shards))):
        raise ValueError(f"ledger shards must be listed in order 0 to {len(shards) - 1}; they are"
                         f" {', '.join(map(str, shards))} - at `$.ledgers`")
    if len(shards) > MAX_LEDGER_SHARDS:
        raise ValueError(f"{len(shards)} ledger shards is more than the {MAX_LEDGER_SHARDS} a journal can take: each"
                         f" shard takes in up to 10^18 units of an asset, and the balances of more shards could"
                         f" pass the journal's 64-bit integers - at `$.ledgers`")
    for n, engine in enumerate(config.engines):
        if engine.name.startswith("ledger-"):
            raise ValueError(f"engine name {engine.name}: names starting ledger- are the ledger shards'"
                             f" - at `$.engines[{n}].name`")
    assets = {}
    for n, asset in enumerate(config.assets):
        if asset.name in assets:
            raise ValueError(f"asset {asset.name} is defined twice - at `$.assets[{n}]`")
        assets[asset.name] = Asset(asset.name, asset.unit)
    try:
        config.fees.rates()
    except ValueError as e:
        raise ValueError(f"{e} - at `$.fees`") from None
    opened: dict[tuple[int, str], int] = {}  # (shard, asset) → the opening balances of its users so far
    for n, user in enumerate(config.users):
        for name, amount in user.opening_balances.items():
            at = f"`$.users[{n}].opening_balances.{name}`"
            if name not in assets:
                raise ValueError(f"{user.name}'s opening balance is in {name}, which is not one of the assets"
                                 f" ({', '.join(assets) or 'none: accounts are off'}) - at {at}")
            try:
                units = assets[name].to_units(amount)
            except GridError as e:
                raise ValueError(f"{e.reason} - at {at}") from None
            key = (shard_of(user.name, len(config.ledgers)), name)
            opened[key] = opened.get(key, 0) + units
            if opened[key] > MAX_DEPOSITED:  # the shard would refuse this deposit at its start
                raise ValueError(f"the opening balances of {name} of ledger shard {key[0]}'s users come to more than"
                                 f" {assets[name].format(MAX_DEPOSITED)}, the most a shard holds of an asset"
                                 f" - at {at}")
    for n, instrument in enumerate(config.instruments):
        at = f"`$.instruments[{n}]`"
        if not assets:
            if instrument.base or instrument.quote or instrument.fees:
                raise ValueError(f"{instrument.symbol} names its base, quote or fees, but the config has no"
                                 f" `assets:` (accounts are off) - at {at}")
            continue
        for what in ("base", "quote"):
            name = getattr(instrument, what)
            if name is None:
                raise ValueError(f"{instrument.symbol} needs a {what} asset (accounts are on) - at {at}")
            if name not in assets:
                raise ValueError(f"{instrument.symbol}'s {what} {name} is not one of the assets"
                                 f" ({', '.join(assets)}) - at `$.instruments[{n}].{what}`")
        if instrument.base == instrument.quote:
            raise ValueError(f"{instrument.symbol} has {instrument.base} as both base and quote - at {at}")
        problem = grid_problem(instrument.build(), assets[instrument.base], assets[instrument.quote])
        if problem:
            raise ValueError(f"{problem} - at {at}")
        if instrument.fees is not None:
            try:
                instrument.fees.rates()
            except ValueError as e:
                raise ValueError(f"{e} - at `$.instruments[{n}].fees`") from None


def _check_mesh_keys(config: Config, section: MeshCurveConfig) -> None:
    """One valid key per role, none shared with another role or a user, and no key for no role."""
    at = "`$.mesh_curve.public_keys"
    roles = config.roles()
    for role in roles:
        if role not in section.public_keys:
            raise ValueError(f"no public key for {role}; `exchange keys mesh` makes one per role - at {at}`")
    owners: dict[str, str] = {u.curve_public_key: f"user {u.name}" for u in config.users if u.curve_public_key}
    for role, key in section.public_keys.items():
        if role not in roles:
            raise ValueError(f"{role} is not a role of this mesh; the roles are {', '.join(roles)} - at {at}`")
        if not _is_z85_key(key):
            raise ValueError(f"the key of {role} is not a valid Z85 CURVE key - at {at}.{role}`")
        if key in owners:
            raise ValueError(f"{role} has the same key as {owners[key]}; each role needs its own key pair"
                             f" - at {at}.{role}`")
        owners[key] = role


_Z85 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"


def _is_z85_key(text: str) -> bool:
    """Whether ``text`` is 40 Z85 characters that decode to 32 bytes (each 5-character group < 2**32)."""
    if len(text) != 40 or any(c not in _Z85 for c in text):
        return False
    for start in range(0, 40, 5):
        value = 0
        for c in text[start:start + 5]:
            value = value * 85 + _Z85.index(c)
        if value >= 2**32:
            return False
    return True


# -- API keys ---------------------------------------------------------------------------------

_KEY_HASH = re.compile(r"scrypt\$([0-9]+)\$[0-9a-f]{32}\$[0-9a-f]{64}")
DEFAULT_SCRYPT_N = 2**14  # the cost of the key hashes `exchange users add` makes
# hashlib.scrypt refuses an n that is not a power of two above 1, and (with r=8, under its default
# memory limit of 32 MiB) one above 2**14: verify_key could check no key against such a hash
_SCRYPT_MAX_N = 2**14


def _scrypt_cost_ok(digits: str) -> bool:
    """Whether the n of a key_hash (its digits) is a cost verify_key can compute."""
    if len(digits) > 12:  # far beyond the bound, and int() refuses thousands of digits
        return False
    n = int(digits)
    return 2 <= n <= _SCRYPT_MAX_N and n & (n - 1) == 0


def hash_key(key: str, salt: bytes | None = None, n: int = DEFAULT_SCRYPT_N) -> str:
    """A salted scrypt hash of an API key, in the form the config stores."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(key.encode(), salt=salt, n=n, r=8, p=1, dklen=32)
    return f"scrypt${n}${salt.hex()}${digest.hex()}"


def verify_key(key: str, key_hash: str) -> bool:
    """Whether ``key`` matches ``key_hash``, compared in constant time."""
    _, n, salt, expected = key_hash.split("$")
    actual = hash_key(key, bytes.fromhex(salt), int(n)).split("$")[3]
    return hmac.compare_digest(actual, expected)


def new_key() -> str:
    """A fresh random API key."""
    return secrets.token_urlsafe(24)
