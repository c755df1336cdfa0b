"use strict";
// The diagnose page (see admin/ui/mod.rs): GET /admin/diagnose (the last report, or a new
// one) on load, POST /admin/diagnose (run the checks now) from the button.
(() => {
  const { el, fill, badge, ms } = sy;
  let busy = false;

  async function load(run) {
    if (busy) return;
    busy = true;
    const button = document.getElementById("run");
    button.disabled = true;
    fill("run-status", run ? "Running checks…" : "Loading…");
    try {
      const r = await sy.json("/admin/diagnose", run ? { method: "POST" } : {});
      if (!r.ok || !r.body || !Array.isArray(r.body.backends)) {
        const why = (r.body && r.body.error) || "status " + r.status;
        fill("run-status", el("span", { class: "error" }, "diagnose failed: " + why));
        return;
      }
      render(r.body);
      fill("run-status", r.body.cached ? "(the last report; run the checks again for a new one)" : "");
    } catch (e) {
      fill("run-status", el("span", { class: "error" }, String((e && e.message) || e)));
    } finally {
      busy = false;
      button.disabled = false;
    }
  }

  function render(doc) {
    const when = new Date(doc.generated_unix_ms);
    const t = fill("generated", when.toLocaleString() + " (checks took " + ms(doc.duration_ms) + ")");
    if (t) t.setAttribute("datetime", when.toISOString());
    renderConfig(doc.config || {});
    const body = document.querySelector("#backends tbody");
    const rows = doc.backends.map(row);
    if (rows.length === 0) rows.push(el("tr", {}, el("td", { colspan: 8, class: "dim" }, "No backends.")));
    body.replaceChildren(...rows);
  }

  function renderConfig(c) {
    const head = el("p", {},
      c.valid ? badge("ok", "valid") : badge("bad", "invalid"), " ",
      c.message || "", " ",
      el("span", { class: "dim" }, "version " + c.version + (c.file ? " · " + c.file : " · no config file")));
    const parts = [head];
    const errors = c.errors || [];
    if (errors.length > 0) {
      parts.push(el("table", { class: "config-errors" },
        el("thead", {}, el("tr", {}, el("th", { class: "num" }, "Line"), el("th", {}, "Section"),
          el("th", {}, "Key"), el("th", {}, "Problem"))),
        el("tbody", {}, errors.map((e) => el("tr", { class: "config-error" },
          el("td", { class: "num" }, e.line > 0 ? e.line : "–"),
          el("td", {}, e.section ? "[" + e.section + "]" : "–"),
          el("td", {}, el("code", {}, e.key || "–")),
          el("td", {}, e.message))))));
    }
    const pending = c.pending_changes || [];
    if (pending.length > 0) {
      parts.push(el("details", {}, el("summary", {}, pending.length + " difference(s) from the config in force"),
        el("ul", { class: "plain" }, pending.map((p) => el("li", {}, el("code", {}, p))))));
    }
    fill("config", ...parts);
    const box = document.getElementById("config");
    if (box) box.classList.remove("dim");
  }

  function row(b) {
    const p = b.probe || {};
    return el("tr", { "data-backend": b.name },
      el("td", {}, el("strong", {}, b.name),
        el("div", { class: "dim small" }, b.address + (b.resolved !== b.address ? " → " + b.resolved : "")),
        el("div", { class: "dim small" }, [b.source, b.protocol, b.tls ? "tls" : null].filter(Boolean).join(" · "))),
      el("td", { class: "health" }, health(b.health || {})),
      el("td", { class: "connect" }, connect(p.connect, p.resolve)),
      el("td", { class: "http" }, http(p.http)),
      el("td", { class: "models" }, models(p.models)),
      el("td", { class: "scrape" }, scrape(b.metrics)),
      el("td", { class: "pool" }, pool(b.pool || {})),
      el("td", { class: "errors" }, lastErrors(b.last_errors || [])));
  }

  function health(h) {
    const kind = h.state === "up" ? "ok" : "bad";
    const out = [badge(kind, h.state || "?")];
    for (const r of h.reasons || []) out.push(el("div", { class: "dim small" }, r));
    if (h.active) out.push(el("div", { class: "dim small" }, "check " + h.active.check + ": " + h.active.state));
    return out;
  }

  function connect(c, resolve) {
    if (!c) return "–";
    const out = [];
    if (resolve && !resolve.ok) out.push(el("div", {}, badge("bad", "dns"), " ", el("span", { class: "small" }, resolve.error)));
    if (c.ok) {
      out.push(badge("ok", ms(c.ms)));
      if (c.tls) out.push(el("div", { class: "dim small" }, "TLS " + ms(c.tls_ms)));
    } else {
      out.push(badge("bad", c.cause), el("div", { class: "small error-text" }, c.error));
    }
    return out;
  }

  function skipped(step) {
    return el("span", { class: "dim small" }, step.skipped);
  }

  function http(h) {
    if (!h) return "–";
    if (h.skipped) return skipped(h);
    if (h.status !== undefined) {
      return [badge(h.ok ? "ok" : "warn", String(h.status)),
        el("div", { class: "dim small" }, h.request + " · " + ms(h.ms))];
    }
    return [badge("bad", h.cause), el("div", { class: "small error-text" }, h.error)];
  }

  function models(m) {
    if (!m) return "–";
    if (m.skipped) return skipped(m);
    if (!m.ok) {
      // A backend that is not a model server (no list, or not one) is worth a note, not an alarm.
      const notServer = m.status === 404 || m.cause === "not_a_model_list";
      return [badge(notServer ? "warn" : "bad", m.cause || "failed"),
        el("div", { class: notServer ? "small dim" : "small error-text" }, m.error)];
    }
    const missing = m.declared_missing || [];
    const out = [badge(missing.length ? "warn" : "ok", m.count + " model" + (m.count === 1 ? "" : "s"))];
    if (m.ids.length) out.push(el("div", { class: "small" }, m.ids.slice(0, 6).join(", ") + (m.count > 6 ? " …" : "")));
    if (missing.length) out.push(el("div", { class: "small error-text" }, "not served: " + missing.join(", ")));
    return out;
  }

  function scrape(s) {
    if (!s) return el("span", { class: "dim" }, "no metrics");
    let kind = "ok";
    if (s.last_outcome === "failed") kind = "bad";
    else if (s.last_outcome !== "ok" || !s.fresh) kind = "warn";
    const age = s.last_scrape_age_s === null ? "never" : s.last_scrape_age_s + " s ago";
    const out = [badge(kind, s.last_outcome), el("div", { class: "dim small" }, age + " · " + s.scrapes_ok + " ok / " + s.scrapes_failed + " failed")];
    if (s.last_error) out.push(el("div", { class: "small error-text" }, s.last_error));
    return out;
  }

  function pool(p) {
    return el("div", { class: "small" },
      "in flight " + p.in_flight, el("br"),
      "opened " + p.connections_opened + " · reused " + p.connections_reused, el("br"),
      el("span", { class: "dim" }, "idle ≤ " + p.max_idle_per_thread + " per thread"));
  }

  function lastErrors(list) {
    if (list.length === 0) return badge("ok", "none");
    return el("details", { class: "last-errors" },
      el("summary", {}, badge("bad", String(list.length)), " ", el("span", { class: "small" }, list[0].cause)),
      el("ul", { class: "plain" }, list.map((e) => el("li", {},
        el("code", {}, e.cause), " ",
        el("span", { class: "dim small" }, new Date(e.unix_ms).toLocaleTimeString()), " ",
        el("div", { class: "small" }, e.message)))));
  }

  document.getElementById("run").addEventListener("click", () => load(true));
  load(false);
})();
