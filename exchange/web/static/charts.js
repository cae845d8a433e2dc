// The depth chart and the candle chart, drawn on canvases (no libraries).

function fit(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || canvas.width, height = canvas.clientHeight || canvas.height;
  if (canvas.width !== Math.round(width * ratio)) { canvas.width = Math.round(width * ratio); canvas.height = Math.round(height * ratio); }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  return [ctx, width, height];
}

function label(ctx, text, x, y, align = "left") {
  ctx.fillStyle = "#9aa4b2";
  ctx.font = "11px system-ui, sans-serif";
  ctx.textAlign = align;
  ctx.fillText(text, x, y);
}

function range(lo, hi) { // a little room around the values; some room even around one value
  const pad = (hi - lo) * 0.05 || Math.abs(hi) * 0.002 || 1;
  return [lo - pad, hi + pad];
}

export function drawDepth(canvas, bids, asks, places = 2) {
  const [ctx, w, h] = fit(canvas);
  const b = bids.slice(0, 50), a = asks.slice(0, 50);
  if (!b.length && !a.length) { label(ctx, "no orders", w / 2, h / 2, "center"); return; }
  let sum = 0;
  const cb = b.map(([p, q]) => [p, (sum += q)]);
  sum = 0;
  const ca = a.map(([p, q]) => [p, (sum += q)]);
  const prices = [...cb, ...ca].map(([p]) => p);
  const [lo, hi] = range(Math.min(...prices), Math.max(...prices)), span = hi - lo;
  const top = Math.max(cb.length ? cb[cb.length - 1][1] : 0, ca.length ? ca[ca.length - 1][1] : 0) || 1;
  const x = (p) => 4 + (p - lo) / span * (w - 8), y = (q) => h - 16 - q / top * (h - 28);
  const area = (points, color) => {
    if (!points.length) return;
    ctx.beginPath(); // a step for each level: the quantity up to it holds until the next
    ctx.moveTo(x(points[0][0]), h - 16);
    let last = 0;
    for (const [p, q] of points) { ctx.lineTo(x(p), y(last)); ctx.lineTo(x(p), y(q)); last = q; }
    const edge = points === cb ? lo : hi;
    ctx.lineTo(x(edge), y(last));
    ctx.lineTo(x(edge), h - 16);
    ctx.closePath();
    ctx.fillStyle = color + "55"; ctx.fill();
    ctx.strokeStyle = color; ctx.stroke();
  };
  area(cb, "#2ebd85");
  area(ca, "#f6465d");
  label(ctx, lo.toFixed(places), 4, h - 3);
  label(ctx, hi.toFixed(places), w - 4, h - 3, "right");
}

export function drawCandles(canvas, candles, places = 2) {
  const [ctx, w, h] = fit(canvas);
  const shown = candles.slice(-60).map(([t, o, hi, lo, c, v]) => [t, +o, +hi, +lo, +c, +v]);
  if (!shown.length) { label(ctx, "no trades yet", w / 2, h / 2, "center"); return; }
  const [low, high] = range(Math.min(...shown.map((c) => c[3])), Math.max(...shown.map((c) => c[2])));
  const span = high - low, step = (w - 50) / Math.max(shown.length, 20);
  const y = (p) => 8 + (high - p) / span * (h - 30);
  shown.forEach(([t, o, hi, lo, c], i) => {
    const cx = 4 + i * step + step / 2, color = c >= o ? "#2ebd85" : "#f6465d";
    ctx.strokeStyle = color; ctx.fillStyle = color;
    ctx.beginPath(); ctx.moveTo(cx, y(hi)); ctx.lineTo(cx, y(lo)); ctx.stroke();
    const top = y(Math.max(o, c)), bottom = y(Math.min(o, c));
    ctx.fillRect(cx - step * 0.35, top, step * 0.7, Math.max(1, bottom - top));
  });
  label(ctx, high.toFixed(places), w - 4, 14, "right");
  label(ctx, low.toFixed(places), w - 4, h - 20, "right");
  label(ctx, new Date(shown[0][0] * 1000).toISOString().slice(11, 16) + " UTC", 4, h - 3);
}
