"""The private feed's server key: made once, even when several notifiers start at the same moment."""

import multiprocessing
import stat
import time

import zmq
from exchange.wire.security.curve_keys import server_secret_key



def read_key(path, barrier, results):
    barrier.wait()  # every process finds the file missing at about the same time
    try:
        results.put(server_secret_key(path))
    except Exception as e:  # noqa: BLE001 - the test reports it
        results.put(repr(e))


def slow_keypair(keypair=zmq.curve_keypair):
    time.sleep(0.05)  # every process is past its "is there a key?" check before any writes one
    return keypair()


def test_notifiers_starting_together_all_get_the_one_key_that_is_on_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(zmq, "curve_keypair", slow_keypair)
    path = tmp_path / "keys" / "notifier.key"
    mp = multiprocessing.get_context("fork")
    barrier, results = mp.Barrier(8), mp.Queue()
    workers = [mp.Process(target=read_key, args=(path, barrier, results)) for _ in range(8)]
    for worker in workers:
        worker.start()
    keys = {results.get(timeout=20) for _ in workers}
    for worker in workers:
        worker.join(10)
    assert keys == {path.read_bytes().strip()}
    assert len(zmq.curve_public(keys.pop())) == 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["notifier.key"]  # no drafts left behind


def test_an_existing_key_is_kept(tmp_path):
    path = tmp_path / "notifier.key"
    first = server_secret_key(path)
    assert server_secret_key(path) == first
