"""Partitions and other broken links between the hosts of a three-host mesh with CURVE and two
gateways, under load from two sessions on each gateway (exchange.testing.partition, which
``scripts/partition_soak`` runs for longer).

Each test breaks one link once, for 2 s (and until the gateway it spares has had its ACKs): the
connections reset and refused, or stalled (kept open and silent), or slowed by 0.3 s each way and
then dropped; the link heals by itself and the load goes on. Afterwards every check of the
scenario holds: soak's five and `exchange journal verify`; the feed's trades and books are the
journal's; the gateway the fault spared kept getting ACKs while it lasted; and what was placed
through one gateway is answered alike by STATUS through the other.
"""

from __future__ import annotations

import pytest

from exchange.testing.partition import PROGRESS, run

PARTITION_S = 2.0


def partitioned(tmp_path, link: str, fault: str):
    report = run(tmp_path, [(link, fault, PARTITION_S)])
    assert report.faults == [], "\n".join(report.faults)
    [cycle] = report.cycles
    assert cycle.resumed
    assert sum(len(observed.fills) for observed in report.observed.values()), "no order crossed: the load is too thin"
    return report, cycle


@pytest.mark.parametrize("fault", ["reset", "stall", "delay-drop"])
def test_a_broken_link_between_one_gateway_and_an_engine_loses_nothing_and_the_other_gateway_trades_on(
        tmp_path, fault):
    report, cycle = partitioned(tmp_path, "gateway-engine", fault)
    assert cycle.acks["gateway-g2"] >= PROGRESS
    if fault != "delay-drop":
        assert cycle.felt["gateway"] > 0, "the partition was felt on the gateway it cut off"
    if fault != "stall":
        assert report.accepted["gateway-engine"] >= 2, "the gateway reconnected through the proxy"
    assert report.feed_missed == 0


@pytest.mark.parametrize("fault", ["reset", "stall"])
def test_a_partition_between_journal_and_notifier_shows_subscribers_every_trade_they_missed(tmp_path, fault):
    # Market data is best effort (docs/market-data.md): what the journal writer releases while its
    # link to the notifier is cut is lost to the feed, not replayed; the promise is that a subscriber
    # can tell (a gap in chan_seq, or a new epoch) and re-sync its book (the scenario's checks).
    report, cycle = partitioned(tmp_path, "journal-notifier", fault)
    assert cycle.acks["gateway"] >= PROGRESS and cycle.acks["gateway-g2"] >= PROGRESS
    if fault == "reset":
        assert report.accepted["journal-notifier"] >= 2, "the notifier reconnected through the proxy"


@pytest.mark.parametrize("fault", ["reset", "stall"])
def test_a_partition_of_the_journal_writer_from_one_gateway_loses_nothing_and_the_other_trades_on(
        tmp_path, fault):
    report, cycle = partitioned(tmp_path, "journal-gateway", fault)
    assert cycle.acks["gateway"] >= PROGRESS
    assert cycle.felt["gateway-g2"] > 0, "the partition was felt on the gateway it cut off"


@pytest.mark.parametrize("fault", ["reset", "stall"])
def test_a_partition_of_the_engines_from_the_journal_loses_nothing(tmp_path, fault):
    report, cycle = partitioned(tmp_path, "engine-journal", fault)
    assert cycle.felt["gateway"] + cycle.felt["gateway-g2"] > 0, "the partition was felt"
    if fault == "reset":
        assert report.accepted["engine-journal"] >= 2, "the engines reconnected through the proxy"


def test_a_gateway_whose_released_batches_were_lost_on_the_wire_still_knows_every_order(tmp_path):
    """Batches the journal writer passed on that a dropped link lost: the gateway takes them from the
    journal writer's history service, so its order views, STATUS and the FILLs it pushes miss nothing."""
    report = run(tmp_path, [("journal-gateway", "delay-drop", PARTITION_S)])
    assert report.faults == [], "\n".join(report.faults)
