"use strict";
// The dashboard page (see admin/ui/mod.rs): every 2 seconds while the tab is visible, reads
// /stats, /admin/alerts and /history and redraws the tiles, charts, backend table and alerts.
(() => {
  const REFRESH_MS = 2000;
  const GLOBAL = ["requests_per_second", "error_rate", "latency_p50_ms", "latency_p99_ms", "active_connections"];
  // Per-backend in-flight series summed into the connections chart; more backends than this
  // are left out of the sum rather than making every refresh heavier.
  const MAX_BACKEND_SERIES = 32;
  const $ = (id) => document.getElementById(id);
  let timer = null;
  let busy = false;
  // The series /history offered last time: per-backend series are asked for only once there.
  let available = null;

  // A number with as many decimals as its size needs: 0, 0.05, 2.5, 120, 12.3k.
  function short(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    const a = Math.abs(v);
    if (a === 0) return "0";
    if (a < 1) return String(Number(v.toFixed(2)));
    if (a < 10) return String(Number(v.toFixed(1)));
    return sy.num(v, 0);
  }
  const FORMAT = {
    rps: (v) => short(v) + "/s",
    latency: (v) => (v === 0 ? "0" : v < 1000 ? short(v) + " ms" : sy.ms(v)),
    errors: (v) => (v === 0 ? "0%" : sy.pct(v)),
    count: short,
  };

  async function get(path) {
    const where = path.split("?")[0];
    let r;
    try {
      r = await sy.json(path);
    } catch (e) {
      throw new Error(`${where}: ${e.message}`);
    }
    if (!r.ok) {
      const e = new Error(`${where}: ${(r.body && r.body.error) || "HTTP " + r.status}`);
      e.body = r.body;
      e.status = r.status;
      throw e;
    }
    return r.body;
  }

  async function history(names, since) {
    const ask = (list) => get(`/history?since=${since}&series=${list.map(encodeURIComponent).join(",")}`);
    try {
      return await ask(names);
    } catch (e) {
      // A backend left between two refreshes: ask again for what is still there.
      if (e.status !== 400 || !e.body || !Array.isArray(e.body.available)) throw e;
      available = e.body.available;
      return ask(names.filter((n) => available.includes(n)));
    }
  }

  // The per-time sum of several series (a time with no value in any of them is null).
  function sum(list) {
    const at = new Map();
    for (const points of list) {
      for (const [t, v] of points) {
        if (!at.has(t)) at.set(t, null);
        if (v !== null) at.set(t, (at.get(t) || 0) + v);
      }
    }
    return [...at.entries()].sort((a, b) => a[0] - b[0]);
  }

  function tile(key, label, value, kind) {
    return sy.el("div", { class: "tile" + (kind ? " " + kind : ""), "data-tile": key, id: "tile-" + key },
      sy.el("div", { class: "v" }, value), sy.el("div", { class: "k" }, label));
  }

  function renderTiles(stats, alerts, series) {
    const now = (name) => (series && series[name] ? syChart.latest(series[name].points) : null);
    const tiles = [
      tile("rps", "requests / s", FORMAT.rps(now("requests_per_second"))),
      tile("errors", "error rate", sy.pct(now("error_rate")), now("error_rate") > 0.01 ? "bad" : ""),
      tile("p99", "p99 latency", sy.ms(now("latency_p99_ms"))),
    ];
    if (stats) {
      const up = stats.backends.filter((b) => b.up).length;
      tiles.push(
        tile("connections", "active connections", sy.num(stats.totals.connections.active)),
        tile("backends", "backends up", `${up} / ${stats.backends.length}`, up < stats.backends.length ? "warn" : ""),
        tile("config", "config version", String(stats.config.version)),
      );
    }
    if (alerts) {
      const worst = (level) => alerts.firing.some((a) => a.severity === level);
      const kind = worst("critical") ? "bad" : worst("warning") ? "warn" : "";
      tiles.push(tile("alerts", "alerts firing", String(alerts.firing.length), kind));
    }
    sy.fill("tiles", tiles);
  }

  function renderCharts(series, since) {
    const pts = (name) => (series[name] ? series[name].points : []);
    let to = 0;
    for (const s of Object.values(series)) for (const [t] of s.points) if (t > to) to = t;
    if (!to) to = Date.now();
    const from = to - since * 1000;
    const chart = (id, format, list, floor) => syChart.draw($(id), { from, to, format, floor, series: list });
    chart("chart-rps", FORMAT.rps, [{ name: "requests/s", points: pts("requests_per_second") }], 1);
    chart("chart-latency", FORMAT.latency, [
      { name: "p50", points: pts("latency_p50_ms") },
      { name: "p99", points: pts("latency_p99_ms") },
    ], 10);
    chart("chart-errors", FORMAT.errors, [{ name: "5xx share", points: pts("error_rate") }], 0.01);
    const inflight = Object.keys(series).filter((n) => n.endsWith(":in_flight")).map(pts);
    const conns = [{ name: "client connections", points: pts("active_connections") }];
    if (inflight.length) conns.push({ name: "requests in flight to backends", points: sum(inflight) });
    chart("chart-connections", FORMAT.count, conns, 1);
  }

  function health(b) {
    if (!b.up) return sy.badge("bad", b.health && b.health.state === "down" ? "down (check)" : "down");
    if (b.penalized) return sy.badge("warn", "penalized");
    if (b.health && b.health.state === "unknown") return sy.badge("warn", "checking");
    return sy.badge("ok", "up");
  }

  function renderBackends(stats) {
    const rows = stats.backends.map((b) => {
      const e = b.engine && b.engine.fresh ? b.engine : null;
      const queue = e && e.waiting !== null
        ? sy.el("td", { class: "num" }, short(e.waiting))
        : sy.el("td", { class: "num dim", title: "estimated from requests in flight" }, "~" + short(b.queue_estimate));
      return sy.el("tr", { "data-backend": b.name },
        sy.el("td", {}, b.name),
        sy.el("td", { class: "dim" }, b.address),
        sy.el("td", {}, health(b)),
        sy.el("td", { class: "num" }, short(b.in_flight)),
        queue,
        sy.el("td", { class: "num" }, e && e.kv_cache_usage !== null ? sy.pct(e.kv_cache_usage) : "–"),
        sy.el("td", { class: "num" }, e && e.gpu_util !== null ? sy.pct(e.gpu_util) : "–"),
        sy.el("td", {}, b.models.length ? b.models.join(", ") : sy.el("span", { class: "dim" }, "any")),
        sy.el("td", { class: "num" }, sy.num(b.requests)),
        sy.el("td", { class: "num" + (b.errors ? " error" : "") }, sy.num(b.errors)));
    });
    if (!rows.length) rows.push(sy.el("tr", {}, sy.el("td", { colspan: 10, class: "dim" }, "No backends.")));
    $("backends").tBodies[0].replaceChildren(...rows);
  }

  function age(since) {
    const s = Math.max(0, Math.round((Date.now() - Date.parse(since)) / 1000));
    if (Number.isNaN(s)) return "";
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
    return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  }

  function renderAlerts(alerts) {
    const kind = { critical: "bad", warning: "warn", info: "info" };
    const items = alerts.firing.map((a) => sy.el("li", { "data-alert": a.alert, "data-series": a.series },
      sy.badge(kind[a.severity] || "warn", a.severity), " ",
      sy.el("b", {}, a.alert), " ",
      sy.el("span", { class: "dim" }, `${a.series} = ${short(a.value)}, for ${age(a.since)}`)));
    if (!items.length) items.push(sy.el("li", { class: "none dim" }, "None firing."));
    sy.fill("alerts", items);
    $("alert-rules").textContent = `(${alerts.rules.length} rule${alerts.rules.length === 1 ? "" : "s"} watched)`;
  }

  async function refresh() {
    const since = Number($("window").value) || 300;
    const problems = [];
    const soft = (p) => p.catch((e) => { problems.push(e.message); return null; });
    const backendSeries = (available || []).filter((n) => n.endsWith(":in_flight")).slice(0, MAX_BACKEND_SERIES);
    const [stats, alerts, hist] = await Promise.all([
      soft(get("/stats")),
      soft(get("/admin/alerts")),
      soft(history(GLOBAL.concat(backendSeries), since)),
    ]);
    if (hist) {
      available = hist.available;
      renderCharts(hist.series, since);
    }
    renderTiles(stats, alerts, hist && hist.series);
    if (stats) renderBackends(stats);
    if (alerts) renderAlerts(alerts);
    const error = $("error");
    error.textContent = problems.length ? "Could not refresh: " + problems.join("; ") : "";
    error.hidden = !problems.length;
    if (!problems.length) {
      const now = new Date();
      $("updated").dateTime = now.toISOString();
      $("updated").textContent = now.toLocaleTimeString();
    }
  }

  function schedule() {
    clearTimeout(timer);
    timer = document.hidden ? null : setTimeout(tick, REFRESH_MS);
  }

  async function tick() {
    if (busy) return;
    busy = true;
    try {
      await refresh();
    } catch (e) {
      const error = $("error");
      error.textContent = "Could not refresh: " + e.message;
      error.hidden = false;
    } finally {
      busy = false;
      schedule();
    }
  }

  document.addEventListener("visibilitychange", () => {
    if (document.hidden) {
      clearTimeout(timer);
      timer = null;
    } else {
      tick();
    }
  });
  $("window").addEventListener("change", tick);
  let resizing = false;
  window.addEventListener("resize", () => {
    if (resizing) return;
    resizing = true;
    requestAnimationFrame(() => {
      resizing = false;
      for (const c of document.querySelectorAll(".chart")) if (c._chart) syChart.draw(c, c._chart);
    });
  });
  tick();
})();
