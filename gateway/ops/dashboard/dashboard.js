// Proofless live dashboard: polls /dashboard/data.json every second and draws tiles, an SVG
// chart and tables. No dependencies, no network beyond this origin; data is written with
// textContent only (never innerHTML), so a hostile label cannot inject markup.
"use strict";

(function () {
  const DATA_URL = "/dashboard/data.json";
  const REFRESH_MS = 1000;
  const TIMEOUT_MS = 2500;
  const STALE_AFTER_MS = 3500;
  const SVG_NS = "http://www.w3.org/2000/svg";

  const DEPARTMENTS_ZH = {
    household: "户籍 · 公安",
    public_security: "户籍 · 公安",
    social_security: "社保 · 人社",
    hrss: "社保 · 人社",
    property: "不动产 · 自然资源",
    real_estate: "不动产 · 自然资源",
  };
  const BREAKER_TEXT = {
    closed: "CLOSED 正常",
    half_open: "HALF-OPEN 半开",
    open: "OPEN 熔断",
    unknown: "UNKNOWN 未知",
  };

  let lastOk = 0;
  let lastData = null;

  const $ = (id) => document.getElementById(id);

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function fmtNumber(v, digits) {
    if (v === null || v === undefined || Number.isNaN(v)) return "—";
    if (Math.abs(v) >= 10000) return Math.round(v).toLocaleString("en-US");
    return v.toLocaleString("en-US", {
      minimumFractionDigits: digits,
      maximumFractionDigits: digits,
    });
  }

  function fmtMs(v) {
    if (v === null || v === undefined) return "—";
    return fmtNumber(v, v < 10 ? 2 : v < 100 ? 1 : 0);
  }

  function fmtPct(v) {
    if (v === null || v === undefined) return "—";
    return (v * 100).toFixed(v >= 0.1 ? 1 : 2) + "%";
  }

  function fmtAge(s) {
    if (s === null || s === undefined) return "never";
    if (s < 60) return s.toFixed(1);
    const m = Math.floor(s / 60);
    return m + "m " + Math.floor(s % 60) + "s";
  }

  function setTile(key, text, level) {
    const value = document.querySelector('[data-key="' + key + '"]');
    if (!value) return;
    value.textContent = text;
    const tile = value.parentElement;
    tile.classList.toggle("warn", level === "warn");
    tile.classList.toggle("bad", level === "bad");
  }

  function setFoot(key, text) {
    const foot = document.querySelector('[data-foot="' + key + '"]');
    if (foot) foot.textContent = text;
  }

  function renderTiles(d) {
    const t = d.tiles;
    setTile("requests_per_second", fmtNumber(t.requests_per_second, 1));
    setFoot("requests_total", fmtNumber(t.requests_total, 0) + " total · 累计");
    setTile("p50_ms", fmtMs(t.p50_ms));
    setTile("p99_ms", fmtMs(t.p99_ms), t.p99_ms > 1000 ? "bad" : t.p99_ms > 250 ? "warn" : "");
    setTile(
      "error_rate",
      fmtPct(t.error_rate),
      t.error_rate >= 0.05 ? "bad" : t.error_rate >= 0.01 ? "warn" : "",
    );
    setFoot("window", "last " + Math.round(d.window_seconds) + " s · 近" + Math.round(d.window_seconds) + "秒");
    setTile("in_flight", fmtNumber(t.in_flight, 0));
    setTile("audit_tree_size", fmtNumber(t.audit_tree_size, 0));
    setFoot("proofs_signed_total", fmtNumber(t.proofs_signed_total, 0) + " proofs · 已签证明");
    const age = t.checkpoint_age_seconds;
    setTile("checkpoint_age_seconds", fmtAge(age), age === null ? "warn" : age > 300 ? "bad" : age > 60 ? "warn" : "");
  }

  // ---- chart -------------------------------------------------------------------------

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const k in attrs) node.setAttribute(k, attrs[k]);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function path(xs, ys, x, y) {
    let d = "";
    let pen = false;
    for (let i = 0; i < xs.length; i++) {
      if (ys[i] === null || ys[i] === undefined) {
        pen = false;
        continue;
      }
      d += (pen ? "L" : "M") + x(xs[i]).toFixed(1) + "," + y(ys[i]).toFixed(1);
      pen = true;
    }
    return d;
  }

  function area(xs, ys, x, y, base) {
    if (xs.length === 0) return "";
    let d = "M" + x(xs[0]).toFixed(1) + "," + base;
    for (let i = 0; i < xs.length; i++) d += "L" + x(xs[i]).toFixed(1) + "," + y(ys[i] || 0).toFixed(1);
    return d + "L" + x(xs[xs.length - 1]).toFixed(1) + "," + base + "Z";
  }

  function renderChart(d) {
    const chart = $("chart");
    const W = 1200, H = 300, L = 56, R = 62, T = 12, B = 28;
    while (chart.firstChild) chart.removeChild(chart.firstChild);
    const s = d.series;
    const now = d.generated_at;
    const span = Math.max(60, Math.min(300, now - (s.t.length ? s.t[0] : now)));
    const x = (t) => L + ((t - (now - span)) / span) * (W - L - R);
    const rpsMax = niceMax(Math.max(1, ...s.rps));
    const lat = s.p99_ms.concat(s.p50_ms).filter((v) => v !== null);
    const msMax = niceMax(Math.max(1, ...lat));
    const yL = (v) => H - B - (v / rpsMax) * (H - T - B);
    const yR = (v) => H - B - (v / msMax) * (H - T - B);

    for (let i = 0; i <= 4; i++) {
      const gy = T + (i * (H - T - B)) / 4;
      chart.appendChild(svg("line", { x1: L, x2: W - R, y1: gy, y2: gy, class: "grid-line" }));
      chart.appendChild(svg("text", { x: L - 8, y: gy + 4, "text-anchor": "end", class: "axis" }, fmtNumber(rpsMax * (1 - i / 4), rpsMax < 10 ? 1 : 0)));
      chart.appendChild(svg("text", { x: W - R + 8, y: gy + 4, class: "axis" }, fmtNumber(msMax * (1 - i / 4), msMax < 10 ? 1 : 0) + " ms"));
    }
    for (let back = 0; back <= span; back += span > 120 ? 60 : 15) {
      const gx = x(now - back);
      chart.appendChild(svg("line", { x1: gx, x2: gx, y1: T, y2: H - B, class: "grid-line" }));
      chart.appendChild(svg("text", { x: gx, y: H - 8, "text-anchor": "middle", class: "axis" }, back === 0 ? "now" : "-" + back + "s"));
    }
    if (s.t.length < 2) {
      chart.appendChild(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "nodata" }, "collecting samples · 正在采集数据…"));
      return;
    }
    const base = (H - B).toFixed(1);
    chart.appendChild(svg("path", { d: area(s.t, s.rps, x, yL, base), class: "area-rps" }));
    chart.appendChild(svg("path", { d: area(s.t, s.errors_per_second, x, yL, base), class: "area-err" }));
    chart.appendChild(svg("path", { d: path(s.t, s.p50_ms, x, yR), class: "line-p50" }));
    chart.appendChild(svg("path", { d: path(s.t, s.p99_ms, x, yR), class: "line-p99" }));
  }

  // ---- tables ------------------------------------------------------------------------

  function renderDepartments(rows) {
    const body = $("departments").tBodies[0];
    const fresh = document.createElement("tbody");
    if (rows.length === 0) {
      const tr = el("tr", "empty");
      const td = el("td", "", "No department calls yet · 暂无部门调用");
      td.colSpan = 6;
      tr.appendChild(td);
      fresh.appendChild(tr);
    }
    for (const r of rows) {
      const tr = el("tr");
      const name = el("td", "", r.department);
      if (DEPARTMENTS_ZH[r.department]) name.appendChild(el("span", "dept-zh", DEPARTMENTS_ZH[r.department]));
      tr.appendChild(name);
      tr.appendChild(el("td", "num", fmtNumber(r.calls_per_second, 1)));
      tr.appendChild(el("td", "num " + (r.error_rate >= 0.05 ? "err-bad" : r.error_rate >= 0.01 ? "err-warn" : ""), fmtPct(r.error_rate)));
      tr.appendChild(el("td", "num", fmtMs(r.p99_ms)));
      tr.appendChild(el("td", "num", fmtNumber(r.calls_total, 0)));
      const state = BREAKER_TEXT[r.breaker] ? r.breaker : "unknown";
      const cell = el("td");
      cell.appendChild(el("span", "breaker " + state, BREAKER_TEXT[state]));
      tr.appendChild(cell);
      fresh.appendChild(tr);
    }
    body.replaceWith(fresh);
  }

  function renderBars(id, items, emptyText, classOf) {
    const list = $(id);
    const max = Math.max(1, ...items.map((i) => i.total));
    const nodes = [];
    for (const item of items) {
      const li = el("li");
      li.appendChild(el("span", "name", item.name));
      li.appendChild(el("span", "count", fmtNumber(item.total, 0) + (item.suffix || "")));
      const bar = el("div", "bar");
      const fill = el("span", classOf ? classOf(item) : "");
      fill.style.width = ((100 * item.total) / max).toFixed(1) + "%";
      bar.appendChild(fill);
      li.appendChild(bar);
      nodes.push(li);
    }
    if (nodes.length === 0) nodes.push(el("li", "empty", emptyText));
    list.replaceChildren(...nodes);
  }

  function render(d) {
    $("version").textContent = d.version ? "v" + d.version : "";
    renderTiles(d);
    renderChart(d);
    renderDepartments(d.departments);
    renderBars(
      "denials",
      d.denials.map((r) => ({ name: r.reason, total: r.total, suffix: r.per_second > 0 ? "  (" + fmtNumber(r.per_second, 1) + "/s)" : "" })),
      "No denials · 暂无拒绝",
    );
    renderBars("callers", d.totals.caller, "No requests yet · 暂无请求");
    renderBars("items", d.totals.service_item, "No requests yet · 暂无请求");
    renderBars("outcomes", d.totals.outcome, "No requests yet · 暂无请求", (i) => i.name);
    renderBars("rpcs", d.totals.rpc, "No requests yet · 暂无请求");
  }

  function setLive(ok) {
    const pill = $("live");
    const stale = !ok && Date.now() - lastOk > STALE_AFTER_MS;
    document.body.classList.toggle("is-stale", stale);
    if (ok) {
      pill.className = "pill ok";
      pill.textContent = "LIVE · 实时";
    } else if (stale) {
      pill.className = "pill stale";
      pill.textContent = "STALE · 数据过期";
    }
    if (lastOk) $("updated").textContent = "updated 更新于 " + new Date(lastOk).toLocaleTimeString("zh-CN", { hour12: false });
  }

  async function tick() {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
    try {
      const response = await fetch(DATA_URL, { cache: "no-store", signal: abort.signal });
      if (!response.ok) throw new Error("HTTP " + response.status);
      lastData = await response.json();
      lastOk = Date.now();
      render(lastData);
      setLive(true);
    } catch (err) {
      setLive(false);
    } finally {
      clearTimeout(timer);
      setTimeout(tick, REFRESH_MS);
    }
  }

  document.addEventListener("DOMContentLoaded", tick);
})();
