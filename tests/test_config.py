"""Every configuration mistake stops start-up with the file, the key path and what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from exchange.config import hash_key, load_config, verify_key
from exchange.errors import ConfigError
from exchange.testing.mesh import toy_config, without_accounts

LOCAL = Path(__file__).resolve().parents[1] / "configs" / "local.yaml"


def test_the_shipped_local_config_loads():
    config = load_config(LOCAL)
    assert [e.name for e in config.engines] == ["e1", "e2"]
    assert sorted(config.instrument_map()) == ["AAPL", "BTC-USD", "ETH-USD"]
    assert config.gateway.text == "127.0.0.1:7001"
    assert config.gateway.zmq.endswith(":7002") and config.notifier.publish.endswith(":7003")
    assert {u.name for u in config.users} == {"alice", "bob", "carol", "ops"}
    assert verify_key("alice-key", config.key_hash("alice"))
    assert not verify_key("bob-key", config.key_hash("alice"))


@pytest.mark.parametrize("old, new, message", [
    ('tick_size: "0.01"', "tick_size: 0.01", "Expected `str`, got `float` - at `$.instruments[0].tick_size`"),
    ('lot_size: "1"', 'lot_size: "1"\n    min_qty: "0.5"', "min_qty 0.5 is not a multiple of lot_size 1"),
    ('lot_size: "1"', 'lot_size: "-1"', "at `$.instruments[2].lot_size`"),
    ("instruments: [AAPL]", "instruments: [AAPL, BTC-USD]", "instrument BTC-USD is owned by both e1 and e2"),
    ("instruments: [AAPL]", "instruments: [AAPL, DOGE]", "engine e2 names unknown instrument DOGE"),
    ("instruments: [AAPL]", "instruments: []", "instrument AAPL is owned by no engine"),
    ("tcp://127.0.0.1:7032", "tcp://127.0.0.1:7030", "endpoint tcp://127.0.0.1:7030 is used twice"),
    ("tcp://127.0.0.1:7032", "127.0.0.1:7032", "at `$.engines[1].replay`"),
    ("    id: 2\n", "    id: 1\n", "engine id 1 is used twice"),
    ("synchronous: NORMAL", "synchronous: OFF", "at `$.journal.synchronous`"),
    ("var_dir: ../var", "var_dir: ../var\nspeed: fast", "Object contains unknown field `speed`"),
    ("    key_hash: scrypt$16384$93b7", "    key_hash: plain-bob-key\n    x: scrypt$16384$93b7",
     "unknown field `x`"),
])
def test_a_bad_config_names_file_key_and_problem(tmp_path, old, new, message):
    text = LOCAL.read_text()
    assert old in text
    path = tmp_path / "bad.yaml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value).startswith(f"{path}: ")
    assert message in str(error.value)


def test_a_plain_text_key_is_refused(tmp_path):
    text = LOCAL.read_text()
    start = text.index("key_hash: scrypt", text.index("name: bob"))
    end = text.index("\n", start)
    path = tmp_path / "bad.yaml"
    path.write_text(text[:start] + "key_hash: bob-key" + text[end:])
    with pytest.raises(ConfigError, match=r"key_hash of bob is not scrypt.*exchange users add bob"):
        load_config(path)


def test_a_missing_file_and_bad_yaml_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the config"):
        load_config(tmp_path / "nope.yaml")
    path = tmp_path / "broken.yaml"
    path.write_text("instruments: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_a_key_given_twice_is_refused_with_its_lines_and_where(tmp_path):
    """YAML would keep the last silently: a `gateway:` section pasted twice would drop the first."""
    text = Path("configs/local.yaml").read_text()
    path = tmp_path / "twice.yaml"
    path.write_text(text + "\ngateway:\n  text: 127.0.0.1:7999\n")
    line = 1 + text.splitlines().index("gateway:")
    with pytest.raises(ConfigError, match=rf"twice.yaml: key `gateway` is given twice, on lines {line} and \d+;"
                                          r" only one may stay - at `\$`"):
        load_config(path)
    first = text.index("- name: e1")
    path.write_text(text[:first] + "- name: e0\n    " + text[first + 2:])
    with pytest.raises(ConfigError, match=r"key `name` is given twice.* - at `\$.engines\[0\]`"):
        load_config(path)


def test_yaml_aliases_are_not_keys_given_twice(tmp_path):
    path = tmp_path / "aliases.yaml"
    path.write_text(Path("configs/local.yaml").read_text().replace("engines:", "x-one: &one {a: 1}\nx-two: *one\nengines:", 1))
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert "given twice" not in str(refused.value)  # refused for the unknown keys, not for the alias


def test_key_hashes_are_salted_and_verify_only_their_key():
    first, second = hash_key("s3cret"), hash_key("s3cret")
    assert first != second and "s3cret" not in first
    assert verify_key("s3cret", first) and verify_key("s3cret", second)
    assert not verify_key("s3cret!", first)


REPLICAS = """  secret_key_file: ../var/notifier.key
  replicas:
    - name: b
      publish: tcp://127.0.0.1:7103
      private: tcp://127.0.0.1:7104
      snapshots: tcp://127.0.0.1:7105
"""


def with_replicas(tmp_path: Path, replicas: str = REPLICAS) -> Path:
    text = LOCAL.read_text()
    assert "  secret_key_file: ../var/notifier.key\n" in text
    path = tmp_path / "replicas.yaml"
    path.write_text(text.replace("  secret_key_file: ../var/notifier.key\n", replicas, 1))
    return path


def test_a_notifier_replica_is_one_more_role_on_its_own_endpoints(tmp_path):
    config = load_config(with_replicas(tmp_path))
    assert config.roles() == ["journal-writer", "engine-e1", "engine-e2", "ledger-0", "ledger-1", "notifier",
                              "notifier-b", "gateway", "web"]
    first, b = config.notifier.replica(None), config.notifier.replica("b")
    assert (first.publish, first.snapshots, first.private) == (
        "tcp://127.0.0.1:7003", "tcp://127.0.0.1:7005", "tcp://127.0.0.1:7004")
    assert (b.publish, b.snapshots, b.private) == ("tcp://127.0.0.1:7103", "tcp://127.0.0.1:7105", "tcp://127.0.0.1:7104")
    assert b.secret_key_file == first.secret_key_file and b.io_threads == first.io_threads  # one service, shared
    assert b.replicas == [] and first.replicas == []
    assert {"tcp://127.0.0.1:7103", "tcp://127.0.0.1:7104", "tcp://127.0.0.1:7105"} <= set(config.endpoints())
    with pytest.raises(ConfigError, match=r"no notifier replica named 'c'; the config has b - at"):
        config.notifier.replica("c")


@pytest.mark.parametrize("change, message", [
    (("7103", "7003"), "endpoint tcp://127.0.0.1:7003 is used twice"),
    (("7105", "7032"), "endpoint tcp://127.0.0.1:7032 is used twice"),
    (("- name: b", "- name: ../b"), "at `$.notifier.replicas[0].name`"),
    (("      snapshots: tcp://127.0.0.1:7105\n", ""), "missing required field `snapshots` - at `$.notifier.replicas[0]`"),
])
def test_a_bad_notifier_replica_names_file_key_and_problem(tmp_path, change, message):
    path = with_replicas(tmp_path, REPLICAS.replace(*change))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert message in str(error.value)


def test_two_notifier_replicas_cannot_share_a_name(tmp_path):
    twice = REPLICAS + """    - name: b
      publish: tcp://127.0.0.1:7203
      private: tcp://127.0.0.1:7204
      snapshots: tcp://127.0.0.1:7205
"""
    with pytest.raises(ConfigError, match="notifier replica name b is used twice"):
        load_config(with_replicas(tmp_path, twice))


def test_relative_paths_are_relative_to_the_config_file_wherever_a_command_runs(tmp_path, monkeypatch):
    folder = tmp_path / "deploy"
    folder.mkdir()
    text = LOCAL.read_text().replace("tcp://127.0.0.1:7030", "ipc://sockets/e2-commands")
    (folder / "mesh.yaml").write_text(text)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(Path("..") / "deploy" / "mesh.yaml")
    assert config.journal.path == str(tmp_path / "var" / "journal.db")  # ../var from deploy/
    assert config.var_dir == str(tmp_path / "var")
    assert config.notifier.secret_key_file == str(tmp_path / "var" / "notifier.key")
    assert config.gateway.secret_key_file == str(folder / "var" / "gateway.key")  # the default, also anchored
    assert config.engine("e2").commands == f"ipc://{folder / 'sockets' / 'e2-commands'}"
    assert config.engine("e1").commands == "tcp://127.0.0.1:7020"


def test_absolute_paths_stay_as_they_are(tmp_path):
    path = tmp_path / "mesh.yaml"
    path.write_text(LOCAL.read_text().replace("path: ../var/journal.db", "path: /srv/exchange/journal.db"))
    assert load_config(path).journal.path == "/srv/exchange/journal.db"


# -- accounts: assets, each instrument's base and quote, fees ----------------------------------------

ASSETS = """
assets:
  - name: USD
    unit: "0.000001"
  - name: BTC
    unit: "0.00000001"
  - name: ETH
    unit: "0.000001"
  - name: AAPL
    unit: "1"
fees:
  maker_bps: "1"
  taker_bps: "2.5"
ledgers:
  - shard: 0
    commands: tcp://127.0.0.1:7040
    settle: tcp://127.0.0.1:7041
    replay: tcp://127.0.0.1:7042
    publish: tcp://127.0.0.1:7043
  - shard: 1
    commands: tcp://127.0.0.1:7050
    settle: tcp://127.0.0.1:7051
    replay: tcp://127.0.0.1:7052
    publish: tcp://127.0.0.1:7053
"""
BASES = {"BTC-USD": "BTC", "ETH-USD": "ETH", "AAPL": "AAPL"}


def with_accounts(tmp_path: Path, change=("", "")) -> Path:
    text = without_accounts(LOCAL.read_text()) + ASSETS
    for symbol, base in BASES.items():
        text = text.replace(f"  - symbol: {symbol}\n", f"  - symbol: {symbol}\n    base: {base}\n    quote: USD\n")
    path = tmp_path / "accounts.yaml"
    path.write_text(text.replace(*change, 1))
    return path


def test_with_assets_accounts_are_on_and_every_instrument_has_exact_terms(tmp_path):
    config = load_config(with_accounts(tmp_path))
    assert config.accounts and load_config(LOCAL).accounts and not toy_config().accounts
    btc = config.terms()["BTC-USD"]
    assert (btc.base.name, btc.quote.name) == ("BTC", "USD")
    assert btc.base_amount(1) == 10_000  # a lot of 0.0001 BTC is 10,000 satoshis
    assert btc.notional(1, 1) == 1  # a lot at a tick is 0.000001 USD, one unit
    assert (btc.rates.maker, btc.rates.taker) == (100, 250)  # ppm
    assert [s.name for s in config.ledgers] == ["ledger-0", "ledger-1"]
    assert config.streams() == ["e1", "e2", "ledger-0", "ledger-1"]
    assert "ledger-1" in config.roles()
    assert {config.ledger_of(user).shard for user in ("alice", "bob", "carol")} == {0, 1}  # both shards used


@pytest.mark.parametrize("change, message", [
    (("  - shard: 1\n", "  - shard: 2\n"), "ledger shards must be listed in order 0 to 1; they are 0, 2 - at `$.ledgers`"),
    (("ledgers:\n", "unused:\n"), "accounts are on (`assets:`), so the config needs `ledgers:`"),
    (("  - name: e1\n", "  - name: ledger-9\n"), "engine name ledger-9: names starting ledger- are the ledger shards'"),
])
def test_ledger_shards_are_checked(tmp_path, change, message):
    path = with_accounts(tmp_path, change)
    if change[1] == "unused:\n":  # drop the whole section
        path.write_text(path.read_text().split("unused:\n")[0])
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert message in str(e.value)


def test_ledgers_without_assets_are_refused(tmp_path):
    path = tmp_path / "mesh.yaml"
    path.write_text(without_accounts(LOCAL.read_text()) + ASSETS.split("fees:")[0].replace("assets:", "ledgers:").replace(
        "  - name: USD\n    unit: \"0.000001\"", "  - shard: 0\n    commands: tcp://127.0.0.1:7040\n"
        "    settle: tcp://127.0.0.1:7041\n    replay: tcp://127.0.0.1:7042\n    publish: tcp://127.0.0.1:7043"
    ).split("  - name: BTC")[0])
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert "`ledgers:` without `assets:`" in str(e.value)


@pytest.mark.parametrize("change, message", [
    (('  - name: USD\n    unit: "0.000001"', '  - name: USD\n    unit: "0.01"'),
     "BTC-USD: one lot (0.0001) at one tick (0.01) is 0.000001 USD, finer than USD's unit 0.01"),
    (("    base: BTC\n", "    base: XRP\n"),
     "BTC-USD's base XRP is not one of the assets (USD, BTC, ETH, AAPL) - at `$.instruments[0].base`"),
    (("    quote: USD\n", ""), "BTC-USD needs a quote asset (accounts are on) - at `$.instruments[0]`"),
    (("    base: BTC\n", "    base: USD\n"), "BTC-USD has USD as both base and quote - at `$.instruments[0]`"),
    (('  taker_bps: "2.5"', '  taker_bps: "0.5"'), "the maker fee 1 bps is above the taker fee 0.5 bps; a buy holds the taker fee"),
    (("  - name: ETH\n", "  - name: BTC\n"), "asset BTC is defined twice - at `$.assets[2]`"),
    (('  maker_bps: "1"', '  maker_bps: "1.234"'), "at `$.fees.maker_bps`"),
])
def test_each_accounts_mistake_names_the_key_and_the_problem(tmp_path, change, message):
    with pytest.raises(ConfigError) as raised:
        load_config(with_accounts(tmp_path, change))
    assert message in str(raised.value)
    assert str(raised.value).startswith(f"{tmp_path / 'accounts.yaml'}: ")


def test_an_instrument_cannot_name_assets_while_accounts_are_off(tmp_path):
    path = tmp_path / "mesh.yaml"
    path.write_text(without_accounts(LOCAL.read_text()).replace("  - symbol: AAPL\n", "  - symbol: AAPL\n    base: AAPL\n"))
    with pytest.raises(ConfigError, match=r"AAPL names its base, quote or fees, but the config has no `assets:`"):
        load_config(path)


def test_the_feed_says_each_instruments_base_and_quote_when_accounts_are_on(tmp_path):
    from exchange.marketdata.notifier import instruments_frame
    from exchange.wire.messages import Decoder, Instruments

    specs = Decoder(Instruments).decode(instruments_frame(load_config(with_accounts(tmp_path)))).instruments
    assert [(s.symbol, s.base, s.quote) for s in specs] == [
        ("BTC-USD", "BTC", "USD"), ("ETH-USD", "ETH", "USD"), ("AAPL", "AAPL", "USD")]
    off = Decoder(Instruments).decode(instruments_frame(toy_config())).instruments
    assert {(s.base, s.quote) for s in off} == {(None, None)}


def test_opening_balances_are_in_known_assets_and_whole_units(tmp_path):
    path = with_accounts(tmp_path, ("  - name: carol\n", '  - name: carol\n    opening_balances: {USD: "100.5", BTC: "1"}\n'))
    assert load_config(path).user("carol").opening_balances == {"USD": "100.5", "BTC": "1"}
    path.write_text(path.read_text().replace('BTC: "1"', 'XRP: "1"'))
    with pytest.raises(ConfigError, match=r"carol's opening balance is in XRP, which is not one of the assets"):
        load_config(path)
    path.write_text(path.read_text().replace('XRP: "1"', 'AAPL: "0.5"'))
    with pytest.raises(ConfigError, match=r"not a multiple of AAPL's unit 1 - at `\$.users\[2\].opening_balances.AAPL`"):
        load_config(path)


def test_opening_balances_a_shard_could_not_take_in_are_refused(tmp_path):
    """A shard takes in at most 10^18 units of an asset (MAX_DEPOSITED): opening balances of its users
    that come to more would be refused at its start, so the config is refused instead."""
    from exchange.core.ledger import shard_of

    shards = len(load_config(with_accounts(tmp_path)).ledgers)
    first, second = [u for u in ("alice", "bob", "carol") if shard_of(u, shards) == shard_of("bob", shards)][:2]
    big = '{USD: "999999999999"}'  # 0.999... × 10^18 units of USD at 0.000001: each alone is taken
    path = with_accounts(tmp_path, (f"  - name: {first}\n", f"  - name: {first}\n    opening_balances: {big}\n"))
    load_config(path)
    path.write_text(path.read_text().replace(f"  - name: {second}\n", f"  - name: {second}\n    opening_balances: {big}\n", 1))
    with pytest.raises(ConfigError, match=rf"the opening balances of USD of ledger shard {shard_of('bob', shards)}'s"
                                          r" users come to more than 1000000000000.000000, the most a shard holds"):
        load_config(path)


def _ledgers(count: int) -> str:
    """A `ledgers:` section of ``count`` shards, each on its own four ports."""
    return "ledgers:\n" + "".join(
        f"  - shard: {n}\n"
        + "".join(f"    {name}: tcp://127.0.0.1:{7200 + 4 * n + k}\n"
                  for k, name in enumerate(("commands", "settle", "replay", "publish")))
        for n in range(count))


@pytest.mark.parametrize("count", [9, 10, 12])
def test_at_most_nine_ledger_shards(tmp_path, count):
    """Each shard takes in up to 10^18 units of an asset (MAX_DEPOSITED), and balances stay within the
    journal's signed 64 bits only while shards × 10^18 < 2^63: nine shards at most."""
    path = with_accounts(tmp_path)
    text = path.read_text()
    assert text.rstrip().endswith("publish: tcp://127.0.0.1:7053")  # `ledgers:` is the last section
    path.write_text(text[:text.index("ledgers:\n")] + _ledgers(count))
    if count <= 9:
        assert len(load_config(path).ledgers) == count
        return
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert str(raised.value).startswith(f"{path}: ")
    assert f"{count} ledger shards is more than the 9 a journal can take" in str(raised.value)
    assert str(raised.value).endswith("- at `$.ledgers`")
