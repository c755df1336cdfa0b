"use strict";
// The config editor at /admin/config/ui: the INI in force (secrets redacted) in a text area,
// validated by a dry run of POST /admin/config (every error listed by line), a text diff
// against the running config drawn here and the server's summary of what would change, then
// apply or roll back. Nothing changes on the server until Apply or Roll back is pressed.
(() => {
  const editor = document.getElementById("editor");
  const gutter = document.getElementById("gutter");
  let running = "";
  let badLines = new Set();

  function setState(text) {
    sy.fill("state", text);
  }

  function drawGutter() {
    const n = editor.value.split("\n").length;
    const parts = [];
    for (let i = 1; i <= n; i++) {
      parts.push(badLines.has(i) ? sy.el("span", { class: "bad" }, String(i)) : String(i));
      parts.push("\n");
    }
    gutter.replaceChildren(...parts.map((p) => (p instanceof Node ? p : document.createTextNode(p))));
    gutter.scrollTop = editor.scrollTop;
  }

  // The longest common subsequence of lines, as a list of [op, line] with op " ", "-" or "+".
  function lineDiff(a, b) {
    const n = a.length, m = b.length;
    if (n * m > 4000000) return null;
    const w = m + 1;
    const t = new Uint32Array((n + 1) * w);
    for (let i = n - 1; i >= 0; i--) {
      for (let j = m - 1; j >= 0; j--) {
        t[i * w + j] = a[i] === b[j] ? t[(i + 1) * w + j + 1] + 1 : Math.max(t[(i + 1) * w + j], t[i * w + j + 1]);
      }
    }
    const out = [];
    let i = 0, j = 0;
    while (i < n && j < m) {
      if (a[i] === b[j]) { out.push([" ", a[i], i + 1, j + 1]); i++; j++; }
      else if (t[(i + 1) * w + j] >= t[i * w + j + 1]) { out.push(["-", a[i], i + 1, null]); i++; }
      else { out.push(["+", b[j], null, j + 1]); j++; }
    }
    while (i < n) { out.push(["-", a[i], i + 1, null]); i++; }
    while (j < m) { out.push(["+", b[j], null, j + 1]); j++; }
    return out;
  }

  // The diff with two lines of context around each change.
  function drawDiff() {
    const a = running.replace(/\n$/, "").split("\n");
    const b = editor.value.replace(/\n$/, "").split("\n");
    const ops = lineDiff(a, b);
    if (ops === null) {
      sy.fill("diff", "The config is too large to diff here.");
      return 0;
    }
    const changed = ops.map((o) => o[0] !== " ");
    const near = (k) => changed.slice(Math.max(0, k - 2), k + 3).some(Boolean);
    const lines = [];
    let gap = false, count = 0;
    ops.forEach((o, k) => {
      if (o[0] !== " ") count++;
      if (!near(k)) { gap = true; return; }
      if (gap && lines.length) lines.push(sy.el("span", { class: "hunk" }, "…\n"));
      gap = false;
      const cls = o[0] === "+" ? "add" : o[0] === "-" ? "del" : null;
      const where = o[0] === "+" ? o[3] : o[2];
      lines.push(sy.el("span", { class: cls, "data-line": where }, `${o[0]} ${o[1]}\n`));
    });
    const d = document.getElementById("diff");
    d.classList.toggle("dim", count === 0);
    if (count === 0) sy.fill("diff", "No edits.");
    else sy.fill("diff", lines);
    return count;
  }

  function showErrors(errors) {
    badLines = new Set(errors.map((e) => e.line).filter((l) => l > 0));
    drawGutter();
    const box = document.getElementById("errors");
    box.classList.toggle("dim", errors.length === 0);
    if (errors.length === 0) {
      sy.fill("errors", sy.badge("ok", "valid"), " The config is valid.");
      return;
    }
    const items = errors.map((e) => {
      const where = [e.line > 0 ? `line ${e.line}` : null, e.section ? `[${e.section}]` : null, e.key]
        .filter(Boolean).join(" ");
      return sy.el("li", { "data-line": e.line, onclick: () => goToLine(e.line) },
        sy.el("span", { class: "where" }, where || "config"), e.message);
    });
    sy.fill("errors", sy.badge("bad", `${errors.length} error${errors.length === 1 ? "" : "s"}`),
      sy.el("ul", { id: "error-list" }, items));
  }

  function goToLine(line) {
    if (!(line > 0)) return;
    const lines = editor.value.split("\n");
    let start = 0;
    for (let i = 0; i < line - 1 && i < lines.length; i++) start += lines[i].length + 1;
    const end = start + (lines[line - 1] || "").length;
    editor.focus();
    editor.setSelectionRange(start, end);
    editor.scrollTop = Math.max(0, (line - 5) * 18);
    drawGutter();
  }

  function showChanges(body) {
    if (body === null) {
      document.getElementById("changes").classList.add("dim");
      sy.fill("changes", "The config is invalid: nothing would be applied.");
      return;
    }
    const changes = (body && body.changes) || [];
    const restart = (body && body.restart_required) || [];
    const box = document.getElementById("changes");
    box.classList.toggle("dim", changes.length === 0 && restart.length === 0);
    const parts = [];
    if (changes.length === 0) parts.push("No change to the running config.");
    else parts.push(sy.el("ul", { id: "change-list" }, changes.map((c) => sy.el("li", {}, c))));
    if (restart.length) {
      parts.push(sy.el("p", {}, sy.badge("warn", "restart"), " These keep their running value until a restart:"));
      parts.push(sy.el("ul", {}, restart.map((c) => sy.el("li", {}, c))));
    }
    sy.fill("changes", parts);
  }

  async function post(path) {
    return sy.json(path, { method: "POST", headers: { "content-type": "text/plain; charset=utf-8" }, body: editor.value });
  }

  async function validate() {
    setState("validating…");
    drawDiff();
    try {
      const r = await post("/admin/config?format=ini&dry_run=1");
      if (r.ok) { showErrors([]); showChanges(r.body); setState("valid"); }
      else { showErrors((r.body && r.body.errors) || []); showChanges(null); setState("invalid"); }
      return r.ok;
    } catch (e) {
      setState("cannot reach the admin API: " + e.message);
      return false;
    }
  }

  function showResult(kind, text, body) {
    const items = [];
    if (body && body.changes) items.push(sy.el("ul", {}, body.changes.map((c) => sy.el("li", {}, c))));
    document.getElementById("result").classList.remove("dim");
    sy.fill("result", sy.badge(kind, kind === "ok" ? "applied" : "refused"), " ", text, items);
  }

  async function apply() {
    setState("applying…");
    try {
      const r = await post("/admin/config?format=ini");
      if (r.ok) {
        showErrors([]);
        showResult("ok", `version ${r.body.version} is in force.`, r.body);
        await load();
      } else {
        showErrors((r.body && r.body.errors) || []);
        showResult("bad", "the running config is unchanged.", null);
        setState("invalid: nothing applied");
      }
    } catch (e) {
      setState("cannot reach the admin API: " + e.message);
    }
  }

  async function rollback() {
    if (!window.confirm("Roll back to the previous config?")) return;
    setState("rolling back…");
    try {
      const r = await sy.json("/admin/config/rollback", { method: "POST" });
      if (r.ok) {
        showResult("ok", `rolled back: version ${r.body.version} is in force.`, r.body);
        await load();
      } else {
        const msg = ((r.body && r.body.errors) || []).map((e) => e.message).join("; ");
        showResult("bad", msg || `rollback refused (${r.status})`, null);
        setState("");
      }
    } catch (e) {
      setState("cannot reach the admin API: " + e.message);
    }
  }

  async function loadStats() {
    try {
      const r = await sy.json("/stats");
      const c = (r.body && r.body.config) || {};
      sy.fill("version", c.version === undefined ? "–" : String(c.version));
      sy.fill("reloads", sy.num(c.reloads));
      sy.fill("reload-failures", sy.num(c.reload_failures));
      sy.fill("last-reload", c.last_reload_unix ? new Date(c.last_reload_unix * 1000).toLocaleTimeString() : "never");
    } catch (e) {
      setState("cannot reach the admin API: " + e.message);
    }
  }

  // Reads the running config into the editor (discarding edits).
  async function load() {
    const r = await sy.api("/admin/config?format=ini");
    running = await r.text();
    editor.value = running;
    badLines = new Set();
    drawGutter();
    drawDiff();
    setState("showing the running config");
    await loadStats();
  }

  let timer = null;
  editor.addEventListener("input", () => {
    drawGutter();
    clearTimeout(timer);
    timer = setTimeout(() => { const n = drawDiff(); setState(n ? `${n} line${n === 1 ? "" : "s"} edited` : "no edits"); }, 250);
  });
  editor.addEventListener("scroll", () => { gutter.scrollTop = editor.scrollTop; });
  editor.addEventListener("keydown", (e) => {
    if (e.key === "Tab") {
      e.preventDefault();
      editor.setRangeText("    ", editor.selectionStart, editor.selectionEnd, "end");
    }
  });
  document.getElementById("validate").addEventListener("click", validate);
  document.getElementById("apply").addEventListener("click", apply);
  document.getElementById("rollback").addEventListener("click", rollback);
  document.getElementById("revert").addEventListener("click", () => {
    load().catch((e) => setState("cannot reach the admin API: " + e.message));
  });
  load().catch((e) => setState("cannot reach the admin API: " + e.message));
})();
