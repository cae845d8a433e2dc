"""The page in a real browser (Playwright driving Chromium) against a real mesh: alice signs in and
rests an order, bob takes it from another browser, both pages show the trade, the ladder and the
balances move, alice cancels a resting order, and a wrong key is refused.

Chromium is Debian's (/usr/bin/chromium; scripts/install puts it there). The screenshots go to
``$WEB_SCREENSHOTS`` when set (docs/images/ holds the ones docs/web.md shows), else to tmp_path.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is installed by scripts/install")
from playwright.sync_api import expect, sync_playwright  # noqa: E402

from .chromium import ARGS, CHROMIUM as DEBIAN_CHROMIUM  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM", DEBIAN_CHROMIUM)
WAIT_MS = 15_000

pytestmark = pytest.mark.skipif(shutil.which(CHROMIUM) is None,
                                reason=f"no Chromium at {CHROMIUM}; scripts/install installs Debian's")


@pytest.fixture(scope="module")
def chromium():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def shots(tmp_path) -> Path:
    directory = Path(os.environ.get("WEB_SCREENSHOTS", tmp_path))
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def open_page(chromium, web, viewport=(1280, 720)):
    context = chromium.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # a refused request (400) is the page working; anything else in red is not
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "status of 400" not in m.text
            else None)
    page.goto(f"{web.base_url}/#BTC-USD")
    expect(page.locator("#feed-state")).to_have_text("live", timeout=WAIT_MS)
    return context, page, errors


def sign_in(page, user: str, key: str) -> None:
    page.fill("#signin-user", user)
    page.fill("#signin-key", key)
    page.press("#signin-key", "Enter")  # by keyboard


def place(page, side: str, qty: str, price: str, tif: str = "GTC") -> str:
    page.check(f"#ticket input[name=side][value={side}]")
    page.fill("#ticket-qty", qty)
    page.fill("#ticket-price", price)
    page.select_option("#ticket-tif", tif)
    page.click("#ticket-submit")
    result = page.locator("#ticket-result")
    expect(result).to_contain_text("Accepted", timeout=WAIT_MS)
    return result.inner_text().split()[1].rstrip(":")


def balance_cell(page, asset: str, column: int):
    return page.locator(f"#balances tr[data-asset={asset}] td").nth(column)


def test_two_users_trade_through_their_browsers(chromium, web, shots):
    alice_context, alice, alice_errors = open_page(chromium, web)
    bob_context, bob, bob_errors = open_page(chromium, web)
    try:
        sign_in(alice, "alice", "alice-key")
        expect(alice.locator("#user-name")).to_have_text("alice", timeout=WAIT_MS)
        expect(balance_cell(alice, "BTC", 1)).to_have_text("1000.00000000", timeout=WAIT_MS)

        resting = place(alice, "SELL", "0.5", "43000.10")
        kept = place(alice, "SELL", "0.3", "43100.00")
        ask = alice.locator('#asks tr[data-price="43000.10"] td').nth(2)
        expect(ask).to_have_text("0.5000", timeout=WAIT_MS)
        expect(alice.locator(f'#orders tr[data-order-id="{resting}"]')).to_be_visible(timeout=WAIT_MS)
        expect(balance_cell(alice, "BTC", 2)).to_have_text("0.80000000", timeout=WAIT_MS)

        sign_in(bob, "bob", "bob-key")
        expect(bob.locator("#user-name")).to_have_text("bob", timeout=WAIT_MS)
        expect(bob.locator('#asks tr[data-price="43000.10"] td').nth(2)).to_have_text("0.5000", timeout=WAIT_MS)
        place(bob, "BUY", "0.2", "43000.10", tif="IOC")
        place(bob, "BUY", "0.4", "42990.00")  # rests below alice's asks

        for page in (alice, bob):  # the trade on both pages, and the ladder moved
            expect(page.locator("#tape tbody tr").first.locator("td").nth(1)).to_have_text("43000.10", timeout=WAIT_MS)
            expect(page.locator("#tape tbody tr").first.locator("td").nth(2)).to_have_text("0.2000")
            expect(page.locator('#asks tr[data-price="43000.10"] td').nth(2)).to_have_text("0.3000", timeout=WAIT_MS)
        expect(alice.locator("#fills tbody tr").first).to_contain_text(resting, timeout=WAIT_MS)
        expect(bob.locator("#fills tbody tr").first).to_contain_text("BUY", timeout=WAIT_MS)
        expect(balance_cell(alice, "BTC", 2)).to_have_text("0.60000000", timeout=WAIT_MS)
        expect(balance_cell(bob, "BTC", 1)).to_have_text("1000.20000000", timeout=WAIT_MS)
        expect(balance_cell(bob, "USD", 2)).not_to_have_text("0.000000", timeout=WAIT_MS)  # the bid holds USD
        expect(bob.locator(f'#orders tr[data-order-id="{resting}"]')).to_have_count(0)  # alice's, not bob's
        expect(alice.locator('#bids tr[data-price="42990.00"] td').first).to_have_text("0.4000", timeout=WAIT_MS)
        expect(alice.locator("#spread-cell")).to_have_text("spread 10.10")
        for page in (alice, bob):  # the instrument list has the last price
            expect(page.locator('#markets tr[data-symbol="BTC-USD"] td').nth(1)).to_have_text("43000.10",
                                                                                            timeout=WAIT_MS)
        alice.screenshot(path=shots / "web-alice.png", full_page=True)
        bob.screenshot(path=shots / "web-bob.png", full_page=True)

        alice.click(f'button[aria-label="Cancel order {kept}"]')
        expect(alice.locator(f'#orders tr[data-order-id="{kept}"]')).to_have_count(0, timeout=WAIT_MS)
        expect(alice.locator('#asks tr[data-price="43100.00"]')).to_have_count(0, timeout=WAIT_MS)
        expect(bob.locator('#asks tr[data-price="43100.00"]')).to_have_count(0, timeout=WAIT_MS)
        expect(balance_cell(alice, "BTC", 2)).to_have_text("0.30000000", timeout=WAIT_MS)

        answers = ["0.45", "43050.00"]  # Replace asks for the new quantity (0.2 filled of it), then the price
        alice.on("dialog", lambda dialog: dialog.accept(answers.pop(0)))
        alice.click(f'button[aria-label="Replace order {resting}"]')
        for page in (alice, bob):
            expect(page.locator('#asks tr[data-price="43050.00"] td').nth(2)).to_have_text("0.2500", timeout=WAIT_MS)
            expect(page.locator('#asks tr[data-price="43000.10"]')).to_have_count(0, timeout=WAIT_MS)
        expect(alice.locator(f'#orders tr[data-order-id="{resting}"] td').nth(3)).to_have_text("43050.00")

        alice.fill("#ticket-price", "43000.105")
        alice.click("#ticket-submit")
        expect(alice.locator("#ticket-result")).to_have_text("BAD_PRICE: price 43000.105 is not a multiple of tick 0.01",
                                                             timeout=WAIT_MS)
        assert alice_errors == [] and bob_errors == []
    finally:
        alice_context.close()
        bob_context.close()


def test_a_wrong_key_is_refused_on_the_page(chromium, web, shots):
    context, page, errors = open_page(chromium, web)
    try:
        sign_in(page, "carol", "not-carols-key")
        expect(page.locator("#signin-error")).to_have_text("BAD_LOGIN: unknown user or wrong key", timeout=WAIT_MS)
        expect(page.locator("#account-panel")).to_be_hidden()
        assert page.locator("#signin-key").input_value() == ""
        page.screenshot(path=shots / "web-wrong-key.png")
    finally:
        context.close()


def test_the_page_fits_a_phone_sized_window(chromium, web, shots):
    context, page, errors = open_page(chromium, web, viewport=(390, 844))
    try:
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390
        expect(page.locator("#ladder")).to_be_visible()
        page.screenshot(path=shots / "web-phone.png", full_page=True)
        assert errors == []
    finally:
        context.close()


def test_the_keyboard_reaches_an_instrument_and_keeps_its_place_as_prices_move(chromium, web):
    context, page, errors = open_page(chromium, web)
    try:
        page.focus("#signin button[type=submit]")
        page.keyboard.press("Tab")  # the first instrument, then the next
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "ETH-USD"
        page.keyboard.press("Enter")
        expect(page.locator("#book-symbol")).to_have_text("ETH-USD")
        expect(page.locator("#feed-state")).to_have_text("live", timeout=WAIT_MS)
        alice, bob = web.browser("alice"), web.browser("bob")
        bob.place(side="SELL", symbol="AAPL", qty="3", price="191.00")
        alice.place(side="BUY", symbol="AAPL", qty="3", price="191.00", tif="IOC")
        expect(page.locator('#markets tr[data-symbol="AAPL"] td').nth(1)).to_have_text("191.00", timeout=WAIT_MS)
        assert page.evaluate("document.activeElement.textContent") == "ETH-USD"  # the list was redrawn around it
        assert errors == []
    finally:
        context.close()
