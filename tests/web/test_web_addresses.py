"""Where a browser is, as the web role tells the gateway: the connection's peer, unless that peer is
a configured trusted reverse proxy; then the last X-Forwarded-For hop that is not a trusted proxy."""

from __future__ import annotations

import pytest

from exchange.config import load_config
from exchange.errors import ConfigError
from exchange.testing.mesh import loopback_config
from exchange.web.security import ClientAddress

PROXIES = ClientAddress(["127.0.0.1", "10.1.0.0/16"])


@pytest.mark.parametrize("peer, headers, address", [
    ("198.51.100.7", ["203.0.113.1"], "198.51.100.7"),  # not a proxy: its header is anyone's say-so
    ("198.51.100.7", [], "198.51.100.7"),
    ("127.0.0.1", [], "127.0.0.1"),  # a trusted proxy that says nothing is the address
    ("127.0.0.1", ["203.0.113.1"], "203.0.113.1"),
    ("127.0.0.1", ["192.0.2.9, 203.0.113.1"], "203.0.113.1"),  # the browser wrote 192.0.2.9 itself
    ("127.0.0.1", ["192.0.2.9", "203.0.113.1"], "203.0.113.1"),  # the header twice reads as one list
    ("127.0.0.1", ["203.0.113.1, 10.1.2.3"], "203.0.113.1"),  # through two trusted proxies
    ("127.0.0.1", ["10.1.2.3, 10.1.2.4"], "10.1.2.3"),  # nothing but proxies: the furthest one
    ("127.0.0.1", ["203.0.113.1, not-an-address"], "127.0.0.1"),  # a hop that does not parse ends the walk
    ("127.0.0.1", [" 2001:db8::1 "], "2001:db8::1"),
    ("testclient", ["203.0.113.1"], "testclient"),  # a peer that is no IP address is nobody's proxy
])
def test_the_browsers_address_is_believed_from_trusted_proxies_only(peer, headers, address):
    assert PROXIES.of(peer, headers) == address


def test_without_trusted_proxies_the_header_is_never_read():
    assert ClientAddress([]).of("127.0.0.1", ["203.0.113.1"]) == "127.0.0.1"


def test_a_trusted_proxy_that_is_no_address_is_refused_with_its_place(tmp_path):
    path = loopback_config(tmp_path, web=True)
    path.write_text(path.read_text().replace("\nweb:\n", "\nweb:\n  trusted_proxies: [10.0.0.1, proxy.example]\n"))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value).endswith("'proxy.example' is not an IP address or network (like 10.0.0.5 or"
                                     " 10.0.0.0/24) - at `$.web.trusted_proxies[1]`")
