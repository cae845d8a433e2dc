"""A private-feed subscriber that leaves costs the notifier nothing (no crash, no re-sync for anyone)."""

from __future__ import annotations

from test_market_data import feed, private, trade_some, wait_private_joined, wait_synced

from exchange.testing.mesh import role_pid


def test_a_private_subscriber_leaving_keeps_the_notifier_up_and_nobody_resyncs(mesh):
    with mesh.login("alice") as alice, mesh.login("bob") as bob:
        book = feed(mesh)
        try:
            wait_synced(book)
            pid = role_pid(mesh.log(), "notifier")
            for _ in range(3):  # each one's unsubscribe arrives after its connection is gone
                leaving = private(mesh, "alice")
                wait_private_joined(alice, leaving)
                leaving.close()
            staying = private(mesh, "bob")  # joins only through a notifier that still reads subscriptions
            try:
                wait_private_joined(bob, staying)
            finally:
                staying.close()
            trade_some(alice, bob, 3)
            assert role_pid(mesh.log(), "notifier") == pid
            assert "notifier exited" not in mesh.log()
            book.poll(0.5)
            assert book.resyncs == 0
        finally:
            book.close()
