"""The ports tests build their configs on: a port given once is never given again in the process.

A config's ports are only taken when its mesh starts, so a second config, a gateway replica or a
fault proxy chosen meanwhile could be given one of them (the partition tests once failed at load:
"endpoint tcp://127.0.0.2:39515 is used twice")."""

from __future__ import annotations

import socket

from exchange.testing.mesh import free_ports


def test_ports_given_by_separate_calls_never_repeat():
    given = [port for _ in range(60) for port in free_ports(20)]
    assert len(given) == len(set(given)) == 1200


def test_the_ports_given_are_free_to_bind():
    for port in free_ports(5):
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
