// The page: markets, the followed instrument's ladder, depth chart, candles and tape, and (signed
// in) my account. Rendering happens once per animation frame, however many updates came.

import {Account, keepingFocus} from "./account.js";
import {drawCandles, drawDepth} from "./charts.js";
import {Feed} from "./feed.js";

const LADDER_LEVELS = 15;
let book = null, interval = "60", dirty = false, tapeDirty = false, rendered = 0;

const account = new Account(() => feed.restart());
const feed = new Feed({
  onstate(state) {
    const badge = document.getElementById("feed-state");
    badge.textContent = state === "resyncing" ? "re-syncing" : state;
    badge.className = `state ${state}`;
  },
  onmarkets: renderMarkets,
  onbook(b, trades) { book = b; dirty = true; tapeDirty = tapeDirty || trades; schedule(); },
  onaccount(m) {
    if (m.type === "signed_out") account.signedOut(m.reason);
    else { account.show(m.user); account.render(m); }
  },
});

function schedule() {
  if (!rendered) rendered = requestAnimationFrame(render);
}

function render() {
  rendered = 0;
  if (!book || !dirty) return;
  dirty = false;
  const bids = [...book.bids].map(([p, q]) => [+p, +q, p, q]).sort((a, b) => b[0] - a[0]);
  const asks = [...book.asks].map(([p, q]) => [+p, +q, p, q]).sort((a, b) => a[0] - b[0]);
  renderLadder(bids, asks);
  drawDepth(document.getElementById("depth-chart"), bids, asks, decimals(book.tick));
  if (tapeDirty) {
    tapeDirty = false;
    renderTape(book.trades);
    drawCandles(document.getElementById("candle-chart"), book.candles[interval] || [], decimals(book.tick));
  }
  document.getElementById("ladder").dataset.seq = book.seq;
}

function row(body, cells, className) {
  const tr = body.insertRow();
  if (className) tr.className = className;
  for (const [text, cls] of cells) {
    const td = tr.insertCell();
    td.textContent = text;
    if (cls) td.className = cls;
  }
  return tr;
}

function renderLadder(bids, asks) {
  const top = Math.max(0, ...bids.slice(0, LADDER_LEVELS).map((l) => l[1]), ...asks.slice(0, LADDER_LEVELS).map((l) => l[1])) || 1;
  const askBody = document.getElementById("asks"), bidBody = document.getElementById("bids");
  askBody.replaceChildren();
  bidBody.replaceChildren();
  for (const [, q, p, qty] of asks.slice(0, LADDER_LEVELS).reverse()) {
    const tr = row(askBody, [["", "num"], [p, "num ask"], [qty, "num ask-qty"]], "ask-row");
    tr.dataset.price = p;
    tr.cells[2].style.setProperty("--fill", `${Math.round(q / top * 100)}%`);
  }
  for (const [, q, p, qty] of bids.slice(0, LADDER_LEVELS)) {
    const tr = row(bidBody, [[qty, "num bid-qty"], [p, "num bid"], ["", "num"]], "bid-row");
    tr.dataset.price = p;
    tr.cells[0].style.setProperty("--fill", `${Math.round(q / top * 100)}%`);
  }
  const spread = bids.length && asks.length ? `spread ${(asks[0][0] - bids[0][0]).toFixed(decimals(book.tick))}` : "";
  document.getElementById("spread-cell").textContent = spread;
}

function decimals(step) {
  return step && step.includes(".") ? step.split(".")[1].length : 0;
}

function renderTape(trades) { // the feed keeps the role's tape length of them (web.tape_length)
  const body = document.querySelector("#tape tbody");
  body.replaceChildren();
  for (const t of trades) {
    const tr = row(body, [[new Date(t.ts).toISOString().slice(11, 19)], [t.price, "num"], [t.qty, "num"],
                          [t.taker_side === "BUY" ? "buy" : "sell", t.taker_side === "BUY" ? "bid" : "ask"]]);
    tr.dataset.tradeId = t.trade_id;
  }
}

function renderMarkets(markets) {
  keepingFocus(document.getElementById("markets"), () => renderMarketRows(markets));
  if (!feed.symbol && markets.length) choose(location.hash.slice(1) || markets[0].symbol);
}

function renderMarketRows(markets) {
  const body = document.querySelector("#markets tbody");
  body.replaceChildren();
  for (const m of markets) {
    const tr = body.insertRow();
    tr.dataset.symbol = m.symbol;
    if (m.symbol === feed.symbol) tr.className = "selected";
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = m.symbol;
    button.setAttribute("aria-pressed", String(m.symbol === feed.symbol));
    button.addEventListener("click", () => choose(m.symbol));
    tr.insertCell().append(button);
    const last = tr.insertCell(); last.textContent = m.last ?? "–"; last.className = "num";
    const change = tr.insertCell();
    change.textContent = m.change_24h === null ? "–" : `${m.change_24h}%`;
    change.className = `num ${m.change_24h && m.change_24h.startsWith("-") ? "ask" : "bid"}`;
  }
}

function choose(symbol) {
  book = null;
  location.hash = symbol;
  document.getElementById("book-symbol").textContent = symbol;
  document.getElementById("ticket-symbol").textContent = symbol;
  account.symbol = symbol;
  feed.follow(symbol);
  for (const tr of document.querySelectorAll("#markets tbody tr")) {
    tr.className = tr.dataset.symbol === symbol ? "selected" : "";
    tr.querySelector("button").setAttribute("aria-pressed", String(tr.dataset.symbol === symbol));
  }
  document.querySelector("#asks").replaceChildren();
  document.querySelector("#bids").replaceChildren();
}

for (const button of document.querySelectorAll(".intervals button")) {
  button.addEventListener("click", () => {
    interval = button.dataset.interval;
    for (const b of document.querySelectorAll(".intervals button")) b.setAttribute("aria-pressed", String(b === button));
    if (book) drawCandles(document.getElementById("candle-chart"), book.candles[interval] || [], decimals(book.tick));
  });
}

account.start();
