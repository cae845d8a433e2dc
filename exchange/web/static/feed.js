// The live feed over one WebSocket: the instrument list, the followed instrument's book (snapshot,
// then updates numbered seq + 1; anything else asks for a new snapshot) and, when signed in, the
// account. Reconnects by itself; `onstate` hears "live", "resyncing" or "disconnected".

export class Feed {
  constructor(handlers) {
    this.handlers = handlers;
    this.symbol = null;
    this.book = null; // {symbol, seq, tick, lot, tapeLength, bids: Map, asks: Map, trades: [], candles: {}}
    this.retry = 500;
    this.connect();
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    this.ws = new WebSocket(`${scheme}://${location.host}/ws`);
    this.ws.onopen = () => {
      this.retry = 500;
      if (this.symbol) this.send("subscribe", this.symbol);
    };
    this.ws.onmessage = (e) => this.receive(JSON.parse(e.data));
    this.ws.onclose = () => {
      if (this.restarting) { this.restarting = false; this.connect(); return; }
      this.state("disconnected");
      setTimeout(() => this.connect(), this.retry);
      this.retry = Math.min(this.retry * 2, 5000);
    };
  }

  restart() { // signed in or out: a new socket carries the session's cookie
    this.restarting = true;
    this.ws.close();
  }

  send(type, symbol) {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({type, symbol}));
  }

  follow(symbol) {
    this.symbol = symbol;
    this.book = null;
    this.state("resyncing");
    this.send("subscribe", symbol);
  }

  state(name) { this.handlers.onstate(name); }

  receive(m) {
    switch (m.type) {
      case "markets": this.handlers.onmarkets(m.markets); break;
      case "snapshot": this.snapshot(m); break;
      case "update": this.update(m); break;
      case "status": if (m.symbol === this.symbol) this.state(m.state); break;
      case "account": case "signed_out": this.handlers.onaccount(m); break;
      case "error": console.warn("feed:", m.reason); break;
    }
  }

  snapshot(m) {
    if (m.symbol !== this.symbol) return;
    // the tape keeps as many trades as the role's (web.tape_length), also when it starts empty
    this.book = {symbol: m.symbol, seq: m.seq, tick: m.tick_size, lot: m.lot_size, tapeLength: m.tape_length,
                 bids: new Map(m.bids), asks: new Map(m.asks), trades: m.trades, candles: m.candles};
    this.state(m.state === "live" ? "live" : "resyncing");
    this.handlers.onbook(this.book, true);
  }

  update(m) {
    const book = this.book;
    if (!book || m.symbol !== book.symbol) return;
    if (m.seq !== book.seq + 1) { // missed something: start again from a snapshot
      this.book = null;
      this.state("resyncing");
      this.send("resync", m.symbol);
      return;
    }
    book.seq = m.seq;
    for (const [side, price, qty] of m.levels) {
      const levels = side === "BUY" ? book.bids : book.asks;
      if (Number(qty) === 0) levels.delete(price); else levels.set(price, qty);
    }
    if (m.trades.length) book.trades = [...m.trades.slice().reverse(), ...book.trades].slice(0, book.tapeLength);
    for (const [interval, candle] of Object.entries(m.candles)) {
      const series = book.candles[interval] || (book.candles[interval] = []);
      if (series.length && series[series.length - 1][0] === candle[0]) series[series.length - 1] = candle;
      else series.push(candle);
    }
    this.state("live");
    this.handlers.onbook(book, m.trades.length > 0);
  }
}
