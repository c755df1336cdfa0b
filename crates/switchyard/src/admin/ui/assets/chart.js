"use strict";
// Small SVG line charts for the admin pages: time on x, an auto-scaled y from zero with a few
// labelled ticks, one line per series, a legend with each series' latest value and a hover
// readout (the legend then shows the values at the time under the pointer).
//
//   syChart.draw(container, { from, to, format, series: [{ name, points: [[unixMs, v|null]] }] })
//
// Each line is a <path class="series" data-points="N">, N being the points drawn; a null
// value breaks the line. Colours come from the stylesheet (.s1 … .s6).
const syChart = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const HEIGHT = 180;
  const PAD = { left: 58, right: 12, top: 10, bottom: 22 };

  function node(tag, attrs, text) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // A round step (1, 2 or 5 times a power of ten) giving about `n` ticks over `range`.
  function niceStep(range, n) {
    const raw = range / n;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const f = raw / mag;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
  }

  const TIME_STEPS = [5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600].map((s) => s * 1000);

  function clock(ms, seconds) {
    const d = new Date(ms);
    const two = (n) => String(n).padStart(2, "0");
    return two(d.getHours()) + ":" + two(d.getMinutes()) + (seconds ? ":" + two(d.getSeconds()) : "");
  }

  // The value of `points` nearest to time `t` (within two steps), or null.
  function at(points, t) {
    let best = null;
    let dist = Infinity;
    for (const [pt, v] of points) {
      const d = Math.abs(pt - t);
      if (d < dist) { dist = d; best = v; }
    }
    const step = points.length > 1 ? (points[points.length - 1][0] - points[0][0]) / (points.length - 1) : Infinity;
    return dist <= 2 * step ? best : null;
  }

  function latest(points) {
    for (let i = points.length - 1; i >= 0; i--) if (points[i][1] !== null) return points[i][1];
    return null;
  }

  function legend(container, spec, t) {
    const box = container.querySelector(".legend");
    const items = spec.series.map((s, i) => {
      const v = t === null ? latest(s.points) : at(s.points, t);
      return sy.el("span", {}, sy.el("i", { class: "s" + ((i % 6) + 1) }), s.name + " ",
        sy.el("b", {}, v === null ? "–" : spec.format(v)));
    });
    if (t !== null) items.unshift(sy.el("span", { class: "when" }, clock(t, true)));
    box.replaceChildren(...items);
  }

  function draw(container, spec) {
    container._chart = spec;
    let svg = container.querySelector("svg");
    if (!svg) {
      svg = node("svg", { role: "img" });
      container.replaceChildren(svg, sy.el("div", { class: "legend" }));
      svg.addEventListener("mousemove", (ev) => hover(container, ev));
      svg.addEventListener("mouseleave", () => hover(container, null));
    }
    const width = Math.max(container.clientWidth || 0, 300);
    svg.setAttribute("viewBox", `0 0 ${width} ${HEIGHT}`);
    svg.setAttribute("aria-label", spec.series.map((s) => s.name).join(", "));
    const x0 = PAD.left, x1 = width - PAD.right, y0 = HEIGHT - PAD.bottom, y1 = PAD.top;
    let max = 0;
    for (const s of spec.series) for (const [, v] of s.points) if (v !== null && v > max) max = v;
    const top = Math.max(max, spec.floor || 0) || 1;
    const yStep = niceStep(top, 4);
    const yMax = Math.ceil(top / yStep - 1e-9) * yStep;
    const span = Math.max(spec.to - spec.from, 1);
    const x = (t) => x0 + ((t - spec.from) / span) * (x1 - x0);
    const y = (v) => y0 - (v / yMax) * (y0 - y1);
    const parts = [];
    for (let v = 0; v <= yMax + yStep / 2; v += yStep) {
      parts.push(node("line", { class: "gridline", x1: x0, x2: x1, y1: y(v), y2: y(v) }));
      parts.push(node("text", { class: "tick", x: x0 - 6, y: y(v) + 4, "text-anchor": "end" }, spec.format(v)));
    }
    const tStep = TIME_STEPS.find((s) => span / s <= 6) || TIME_STEPS[TIME_STEPS.length - 1];
    for (let t = Math.ceil(spec.from / tStep) * tStep; t <= spec.to; t += tStep) {
      parts.push(node("line", { class: "gridline", x1: x(t), x2: x(t), y1: y0, y2: y0 + 4 }));
      parts.push(node("text", { class: "tick", x: x(t), y: HEIGHT - 6, "text-anchor": "middle" }, clock(t, tStep < 60000)));
    }
    parts.push(node("line", { class: "axis", x1: x0, x2: x1, y1: y0, y2: y0 }));
    spec.series.forEach((s, i) => {
      let d = "";
      let n = 0;
      let pen = "M";
      for (const [t, v] of s.points) {
        if (v === null || t < spec.from) { pen = "M"; continue; }
        d += `${pen}${x(t).toFixed(1)},${y(v).toFixed(1)}`;
        pen = "L";
        n++;
      }
      const path = node("path", { class: "series s" + ((i % 6) + 1), "data-points": n, "data-name": s.name });
      if (d) path.setAttribute("d", d);
      parts.push(path);
    });
    parts.push(node("line", { class: "cursor", x1: -10, x2: -10, y1: y1, y2: y0 }));
    svg.replaceChildren(...parts);
    container._geometry = { x0, x1, from: spec.from, span, width };
    legend(container, spec, container._hoverT === undefined ? null : container._hoverT);
  }

  function hover(container, ev) {
    const spec = container._chart, g = container._geometry;
    const svg = container.querySelector("svg");
    const cursor = svg && svg.querySelector(".cursor");
    if (!spec || !g || !cursor) return;
    let t = null;
    if (ev) {
      const r = svg.getBoundingClientRect();
      const px = ((ev.clientX - r.left) / r.width) * g.width;
      if (px >= g.x0 && px <= g.x1) t = g.from + ((px - g.x0) / (g.x1 - g.x0)) * g.span;
    }
    container._hoverT = t === null ? undefined : t;
    const cx = t === null ? -10 : g.x0 + ((t - g.from) / g.span) * (g.x1 - g.x0);
    cursor.setAttribute("x1", cx);
    cursor.setAttribute("x2", cx);
    legend(container, spec, t);
  }

  return { draw, latest };
})();
