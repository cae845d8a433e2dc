"""The blocking text client against a gateway that answers late: a request that timed out does not
shift the replies of those after it (each gets its own), and the session stays usable."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from exchange.client.text import TextClient

LATE_S = 0.5  # how late the stand-in gateway answers a line that starts with SLOW


class LateGateway:
    """A TCP server on a free loopback port answering each line in order, as the gateway does:
    ``SLOW x`` is answered ``ANSWER x`` after LATE_S, ``BOOK x`` with a three-line block, ``PUSH``
    with a FILL pushed before its answer, anything else ``ANSWER <line>`` at once."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        connection, _ = self.server.accept()
        with connection, connection.makefile("rb") as lines:
            for raw in lines:
                line = raw.decode().strip()
                words = line.split()
                if words[0] == "SLOW":
                    time.sleep(LATE_S)
                    answer = [f"ANSWER {words[1]}"]
                elif words[0] == "BOOK":
                    time.sleep(LATE_S if words[1] == "slow" else 0)
                    answer = [f"BOOK {words[1]}", "BID 1 @ 1", "END BOOK"]
                elif words[0] == "PUSH":
                    answer = ["FILL 1-1 1 @ 1 LEAVES 0 TRADE 1-1", f"ANSWER {line}"]
                else:
                    answer = [f"ANSWER {line}"]
                connection.sendall("".join(f"{a}\n" for a in answer).encode())

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def client():
    gateway = LateGateway()
    with TextClient("127.0.0.1", gateway.port, timeout=5) as client:
        yield client
    gateway.close()


def test_a_reply_that_came_too_late_is_not_the_next_requests(client):
    with pytest.raises(TimeoutError):
        client.request("SLOW 1", timeout=0.05)
    assert client.request("PING") == "ANSWER PING"  # not ANSWER 1
    assert client.request("PING again") == "ANSWER PING again"


def test_the_rest_of_a_block_that_came_too_late_is_not_the_next_requests(client):
    with pytest.raises(TimeoutError):
        client.request_block("BOOK slow", timeout=0.05)
    assert client.request_block("BOOK fast") == ["BOOK fast", "BID 1 @ 1", "END BOOK"]
    assert client.request("PING") == "ANSWER PING"


def test_pushed_lines_are_kept_while_late_replies_are_dropped(client):
    with pytest.raises(TimeoutError):
        client.request("SLOW 2", timeout=0.05)
    assert client.request("PUSH") == "ANSWER PUSH"
    assert client.next_pushed() == "FILL 1-1 1 @ 1 LEAVES 0 TRADE 1-1"
