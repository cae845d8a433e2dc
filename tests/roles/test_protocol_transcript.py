"""The transcript in docs/protocol.md is what a fresh demo mesh really says, line for line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from exchange.client.text import TextClient
from exchange.errors import RejectCode

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
LINE = re.compile(r"(?P<user>[a-z]+)(?P<way>[<>]) (?P<text>.*)")
NOTHING_MORE_S = 0.5  # how long each user listens for lines the transcript does not show


class Step:
    """One transcript line: ``user`` sends (``>``) or receives (``<``) ``text``; ``number`` is its doc line."""

    def __init__(self, number: int, user: str, way: str, text: str):
        self.number, self.user, self.way, self.text = number, user, way, text

    def __repr__(self) -> str:
        return f"docs/protocol.md:{self.number}: {self.user}{self.way} {self.text}"


def transcript(doc: str) -> list[Step]:
    """The steps of the one ```text block under '## Transcript'; any other line in it is an error."""
    lines = doc.splitlines()
    start = lines.index("## Transcript")
    opening = next(i for i in range(start, len(lines)) if lines[i].startswith("```"))
    assert lines[opening] == "```text", f"docs/protocol.md:{opening + 1}: the transcript must be a ```text block"
    closing = next(i for i in range(opening + 1, len(lines)) if lines[i].startswith("```"))
    assert not any(line.startswith("```") for line in lines[closing + 1:]), "one code block in ## Transcript"
    steps = []
    for index in range(opening + 1, closing):
        line = lines[index]
        if not line.strip() or line.startswith("-- "):
            continue
        match = LINE.fullmatch(line)
        assert match, (f"docs/protocol.md:{index + 1}: not 'user> line', 'user< line', '-- comment'"
                       f" or blank: {line!r}")
        steps.append(Step(index + 1, match["user"], match["way"], match["text"]))
    return steps


STEPS = transcript(DOC.read_text())


def test_the_transcript_runs_line_for_line_on_a_fresh_mesh(demo_mesh):
    mesh = demo_mesh  # the demo as shipped, price bands and all
    users = list(dict.fromkeys(step.user for step in STEPS))
    clients = {user: TextClient(mesh.host, mesh.port, timeout=10) for user in users}
    try:
        for step in STEPS:
            client = clients[step.user]
            if step.way == ">":
                client.send_line(step.text)
                continue
            try:
                received = client.read_line()
            except (TimeoutError, ConnectionError) as e:
                pytest.fail(f"{step!r}\n  expected that line, but {step.user} received nothing: {e}")
            assert received == step.text, f"{step!r}\n  {step.user} received instead: {received}"
        for user, client in clients.items():
            with pytest.raises(TimeoutError):
                extra = client.read_line(timeout=NOTHING_MORE_S)
                pytest.fail(f"after the transcript {user} received a line it does not show: {extra}")
    finally:
        for client in clients.values():
            client.close()


def _sent(verb: str) -> bool:
    return any(s.way == ">" and s.text.split()[0].upper() == verb for s in STEPS)


def _received(pattern: str) -> bool:
    return any(s.way == "<" and re.fullmatch(pattern, s.text) for s in STEPS)


def test_the_transcript_shows_every_verb_pushed_line_and_reject_it_promises():
    for verb in ("LOGIN", "BUY", "SELL", "CANCEL", "REPLACE", "CANCELALL", "STATUS", "ORDERS", "BOOK", "PING"):
        assert _sent(verb), f"the transcript never sends {verb}"
    for pattern in (r"OK LOGIN \w+", r"ACK \S+ .* MKT IOC", r"ACK \S+ .* (GTC|IOC|FOK|POST)",
                    r"ACK .* REPLACED .*", r"FILL .*", r"OUT \S+( #\S+)? FILLED", r"OUT \S+( #\S+)? CANCELED",
                    r"OUT .* CANCELED CANCEL_ALL", r"OUT .* EXPIRED IOC", r"OUT .* EXPIRED FOK",
                    r"OUT .* EXPIRED MARKET", r"REDUCED .*",
                    r"OK CANCELALL \d+", r"STATE .*", r"PONG", r"END ORDERS \d+ OF \d+", r"BOOK \S+", r"BID \S+ \S+",
                    r"ASK \S+ \S+", r"END BOOK \S+"):
        assert _received(pattern), f"the transcript never shows a line like {pattern!r}"
    assert any(s.way == ">" and " MKT" in s.text.upper() for s in STEPS), "the transcript never sends MKT"
    for code in ("NOT_LOGGED_IN", "BAD_LOGIN", "ALREADY_LOGGED_IN", "BAD_PRICE", "BAD_QTY", "BAD_TIF",
                 "UNKNOWN_SYMBOL", "UNKNOWN_VERB", "MALFORMED", "DUPLICATE_ID", "NOT_YOUR_ORDER", "WOULD_CROSS",
                 "NO_LIQUIDITY"):
        assert _received(rf"REJ (#\S+ )?{code} .+"), f"the transcript never shows REJ {code}"
    # bob is refused alice's order, by its id and by her client order id
    alice_ids = {s.text.split()[1] for s in STEPS if s.user == "alice" and s.text.startswith("ACK ")}
    alice_cids = {word for s in STEPS if s.user == "alice" and s.way == ">"
                  for word in s.text.split() if word.startswith("#")}
    refused = [s for s in STEPS if s.user == "bob" and s.way == ">" and s.text.split()[0] == "CANCEL"]
    assert {s.text.split()[1] for s in refused} & alice_ids, "bob never tries to cancel alice's order by id"
    assert {s.text.split()[1] for s in refused} & alice_cids, "bob never tries alice's #client-order-id"


def test_the_error_table_lists_every_reject_code():
    doc = DOC.read_text()
    table = doc[doc.index("## Errors"):doc.index("## ZMQ form")]
    for code in RejectCode:
        assert f"| `{code.value}` |" in table, f"docs/protocol.md ## Errors has no row for {code.value}"
