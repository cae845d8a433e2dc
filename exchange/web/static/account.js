// Signing in and out, the order ticket, and my orders, fills and balances. Every state-changing
// request sends the CSRF token the server gave (GET /api/session, or the sign-in answer).

let csrf = null;

export async function api(method, path, body) {
  const headers = {"Accept": "application/json"};
  if (method !== "GET") headers["X-CSRF-Token"] = csrf || "";
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body),
                                      credentials: "same-origin"});
  const data = await response.json().catch(() => ({error: {code: "INTERNAL", reason: `HTTP ${response.status}`}}));
  if (data.csrf) csrf = data.csrf;
  return [response.ok, data];
}

// Re-render `container` without losing the keyboard focus: the control focused before (known by
// its aria-label, or its text) is focused again afterwards, if it is still there.
export function keepingFocus(container, render) {
  const focused = container.contains(document.activeElement) ? document.activeElement : null;
  const name = focused && (focused.getAttribute("aria-label") || focused.textContent);
  render();
  if (!name) return;
  for (const control of container.querySelectorAll("button")) {
    if ((control.getAttribute("aria-label") || control.textContent) === name) { control.focus(); return; }
  }
}

export function problem(data) {
  return data.error ? `${data.error.code}: ${data.error.reason}` : "";
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text ?? "";
  if (className) td.className = className;
  return td;
}

export class Account {
  constructor(onSignedIn) {
    this.onSignedIn = onSignedIn;
    this.user = null;
    document.getElementById("signin").addEventListener("submit", (e) => { e.preventDefault(); this.signIn(); });
    document.getElementById("signout").addEventListener("click", () => this.signOut());
    document.getElementById("ticket").addEventListener("submit", (e) => { e.preventDefault(); this.place(); });
    document.getElementById("ticket-type").addEventListener("change", () => this.ticketShape());
    document.getElementById("ticket-post").addEventListener("change", () => this.ticketShape());
  }

  async start() {
    const [, data] = await api("GET", "/api/session");
    this.show(data.user);
  }

  show(user) {
    this.user = user;
    document.getElementById("signin").hidden = !!user;
    document.getElementById("signed-in").hidden = !user;
    document.getElementById("account-panel").hidden = !user;
    document.getElementById("user-name").textContent = user || "";
  }

  async signIn() {
    const user = document.getElementById("signin-user"), key = document.getElementById("signin-key");
    const error = document.getElementById("signin-error");
    error.textContent = "Signing in…";
    const [ok, data] = await api("POST", "/api/login", {user: user.value, key: key.value});
    key.value = "";
    if (!ok) { error.textContent = problem(data); return; }
    error.textContent = "";
    this.show(data.user);
    this.onSignedIn();
  }

  async signOut() {
    await api("POST", "/api/logout");
    this.show(null);
    this.onSignedIn();
  }

  signedOut(reason) {
    this.show(null);
    document.getElementById("signin-error").textContent = reason;
  }

  ticketShape() {
    const market = document.getElementById("ticket-type").value === "market";
    const post = document.getElementById("ticket-post");
    document.getElementById("ticket-price").disabled = market;
    post.disabled = market;
    if (market) post.checked = false;
    document.getElementById("ticket-tif").disabled = post.checked;
  }

  async place() {
    const form = document.getElementById("ticket"), result = document.getElementById("ticket-result");
    const data = new FormData(form), market = data.get("type") === "market";
    const order = {symbol: this.symbol, side: data.get("side"), type: data.get("type"), qty: data.get("qty").trim()};
    if (!market) order.price = data.get("price").trim();
    if (data.get("post_only")) order.post_only = true;
    else order.tif = data.get("tif") || (market ? "IOC" : "GTC");
    if (market && order.tif === "GTC") order.tif = "IOC";
    result.className = "";
    result.textContent = "Sending…";
    const [ok, reply] = await api("POST", "/api/orders", order);
    result.className = ok ? "ok" : "error";
    result.textContent = ok ? `Accepted ${reply.order_id}: ${reply.side} ${reply.qty} ${reply.symbol}` +
                              (reply.price ? ` @ ${reply.price} ${reply.tif}` : ` at market ${reply.tif}`) : problem(reply);
  }

  render(m) {
    const orders = document.getElementById("orders");
    keepingFocus(orders, () => this.renderOrders(m.orders));
    const fills = document.querySelector("#fills tbody");
    fills.replaceChildren();
    for (const f of m.fills) {
      const row = fills.insertRow();
      [f.trade_id, f.order_id, f.symbol, f.side, f.qty, f.price].forEach((t) => cell(row, t));
    }
    const balances = document.querySelector("#balances tbody");
    balances.replaceChildren();
    if (m.balances === null) cell(balances.insertRow(), "accounts are off on this exchange");
    // the gateway could not answer just now (a ledger shard busy, say): the last figures stay, marked so
    if (m.stale) cell(balances.insertRow(), `may be out of date (${m.stale}); asking again`);
    for (const b of m.balances || []) {
      const row = balances.insertRow();
      row.dataset.asset = b.asset;
      [b.asset, b.available, b.held].forEach((t, i) => cell(row, t, i ? "num" : ""));
    }
  }

  renderOrders(orders) {
    const body = document.querySelector("#orders tbody");
    body.replaceChildren();
    for (const o of orders) {
      const row = body.insertRow();
      row.dataset.orderId = o.order_id;
      [o.order_id, o.symbol, o.side, o.price ?? "market", o.leaves_qty, o.filled_qty].forEach((t) => cell(row, t));
      const actions = cell(row, "");
      const cancel = document.createElement("button");
      cancel.type = "button";
      cancel.textContent = "Cancel";
      cancel.setAttribute("aria-label", `Cancel order ${o.order_id}`);
      cancel.addEventListener("click", () => this.cancel(o.order_id));
      const replace = document.createElement("button");
      replace.type = "button";
      replace.textContent = "Replace";
      replace.setAttribute("aria-label", `Replace order ${o.order_id}`);
      replace.addEventListener("click", () => this.replace(o));
      actions.append(cancel, " ", replace);
    }
  }

  async cancel(orderId) {
    const [ok, reply] = await api("DELETE", `/api/orders/${encodeURIComponent(orderId)}`);
    document.getElementById("orders-error").textContent = ok ? "" : problem(reply);
  }

  async replace(order) {
    const places = order.leaves_qty.includes(".") ? order.leaves_qty.split(".")[1].length : 0;
    const ordered = (Number(order.filled_qty) + Number(order.leaves_qty)).toFixed(places);
    const qty = window.prompt(`New quantity for ${order.order_id}, what is filled included` +
                              ` (${order.filled_qty} is filled)`, ordered);
    if (qty === null) return;
    const price = window.prompt(`New price for ${order.order_id}`, order.price ?? "");
    if (price === null) return;
    const [ok, reply] = await api("POST", `/api/orders/${encodeURIComponent(order.order_id)}/replace`,
                                  {qty: qty.trim(), price: price.trim() || null});
    document.getElementById("orders-error").textContent = ok ? "" : problem(reply);
  }
}
