"use strict";
// Shared by the switchyard admin pages: requests to the admin API, a small element builder
// and number formatting. Each page's own script uses `sy`.
const sy = (() => {
  // Every request names itself as coming from these pages: the admin plane requires that
  // header on state-changing requests authenticated by the session cookie (a cross-site form
  // cannot set it), and answers 401 when the session has expired.
  async function api(path, opts = {}) {
    const headers = Object.assign({ "x-switchyard-ui": "1" }, opts.headers || {});
    const init = Object.assign({}, opts, { headers, credentials: "same-origin", cache: "no-store" });
    const r = await fetch(path, init);
    if (r.status === 401) {
      location.href = "/admin/login?next=" + encodeURIComponent(location.pathname + location.search);
      throw new Error("the admin session has expired");
    }
    return r;
  }

  // `api`, the body parsed as JSON: { status, ok, body }.
  async function json(path, opts) {
    const r = await api(path, opts);
    const text = await r.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (e) { body = { error: text }; }
    return { status: r.status, ok: r.ok, body };
  }

  // el("td", {class: "num"}, "12", child, ...): an element with attributes and children.
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  // Replaces the children of the element with id `id`.
  function fill(id, ...children) {
    const e = document.getElementById(id);
    if (e) e.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
    return e;
  }

  function num(v, digits = 0) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    const a = Math.abs(v);
    if (a >= 1e9) return (v / 1e9).toFixed(1) + "G";
    if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (a >= 1e4) return (v / 1e3).toFixed(1) + "k";
    return v.toFixed(digits);
  }

  function ms(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    if (v >= 1000) return (v / 1000).toFixed(2) + " s";
    if (v >= 10) return v.toFixed(0) + " ms";
    return v.toFixed(2) + " ms";
  }

  function pct(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    return (v * 100).toFixed(v < 0.1 ? 2 : 1) + "%";
  }

  function badge(kind, text) {
    return el("span", { class: "badge " + kind }, text);
  }

  return { api, json, el, fill, num, ms, pct, badge };
})();
