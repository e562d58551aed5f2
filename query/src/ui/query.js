// The query page: runs the expression through /api/v1/query (table) or /api/v1/query_range
// (graph) and renders the answer. No libraries: the page must work without network access.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG_NS = "http://www.w3.org/2000/svg";
const COLORS = ["#0969da", "#cf222e", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#0598bc", "#bc4c00", "#57606a", "#2da44e"];
let tab = "table";

// Prometheus duration syntax (1h30m, 15s, 500ms) to seconds; null when it does not parse.
function parseDuration(s) {
  const units = { y: 31536000, w: 604800, d: 86400, h: 3600, m: 60, s: 1, ms: 0.001 };
  const re = /(\d+(?:\.\d+)?)(ms|y|w|d|h|m|s)/g;
  let total = 0, used = 0, m;
  s = s.trim();
  while ((m = re.exec(s)) !== null) {
    total += parseFloat(m[1]) * units[m[2]];
    used += m[0].length;
  }
  return used === s.length && used > 0 ? total : null;
}

// An evaluation time from the box: empty means now; unix seconds or anything Date parses.
function parseTime(s) {
  s = s.trim();
  if (s === "") return Date.now() / 1000;
  if (/^-?\d+(\.\d+)?$/.test(s)) return parseFloat(s);
  const ms = Date.parse(s);
  return isNaN(ms) ? null : ms / 1000;
}

function labelsText(metric) {
  const name = metric.__name__ || "";
  const rest = Object.keys(metric).filter((k) => k !== "__name__").map((k) => `${k}=${JSON.stringify(metric[k])}`);
  return rest.length || !name ? `${name}{${rest.join(", ")}}` : name;
}

async function api(path, params) {
  const body = new URLSearchParams(params);
  const resp = await fetch(path, { method: "POST", body });
  let json;
  try {
    json = await resp.json();
  } catch (e) {
    throw new Error(`HTTP ${resp.status}: the answer is not JSON`);
  }
  if (json.status !== "success") throw new Error(`${json.errorType}: ${json.error}`);
  return json;
}

function showStatus(el, text, cls) {
  el.textContent = text;
  el.className = cls || "";
}

function warningsText(json) {
  return (json.warnings || []).concat(json.infos || []).join("; ");
}

function saveUrl() {
  const q = new URLSearchParams({ expr: $("expr").value, tab, range: $("range").value });
  for (const id of ["time", "end", "step"]) if ($(id).value) q.set(id, $(id).value);
  history.replaceState(null, "", "?" + q.toString());
}

function loadUrl() {
  const q = new URLSearchParams(location.search);
  $("expr").value = q.get("expr") || "";
  for (const id of ["time", "range", "end", "step"]) if (q.has(id)) $(id).value = q.get(id);
  if (q.get("tab") === "graph") selectTab("graph");
}

function selectTab(name) {
  tab = name;
  $("tab-table").classList.toggle("active", name === "table");
  $("tab-graph").classList.toggle("active", name === "graph");
  $("table-view").hidden = name !== "table";
  $("graph-view").hidden = name !== "graph";
}

function addRow(tbody, left, right) {
  const tr = document.createElement("tr");
  const a = document.createElement("td");
  const b = document.createElement("td");
  a.textContent = left;
  b.textContent = right;
  b.className = "value";
  tr.append(a, b);
  tbody.append(tr);
}

async function runTable() {
  const status = $("status"), rows = $("rows");
  const time = parseTime($("time").value);
  rows.replaceChildren();
  if (time === null) return showStatus(status, "Cannot parse the evaluation time.", "error");
  showStatus(status, "Loading…");
  const started = performance.now();
  let json;
  try {
    json = await api("api/v1/query", { query: $("expr").value, time: time.toFixed(3) });
  } catch (e) {
    return showStatus(status, e.message, "error");
  }
  const { resultType, result } = json.data;
  if (resultType === "scalar" || resultType === "string") {
    addRow(rows, resultType, result[1]);
  } else if (resultType === "vector") {
    for (const s of result) addRow(rows, labelsText(s.metric), s.value[1]);
  } else {
    for (const s of result) addRow(rows, labelsText(s.metric), s.values.map((p) => `${p[1]} @${p[0]}`).join("\n"));
  }
  const count = resultType === "scalar" || resultType === "string" ? 1 : result.length;
  const warn = warningsText(json);
  showStatus(status, `${resultType}, ${count} result${count === 1 ? "" : "s"}, ${Math.round(performance.now() - started)} ms` + (warn ? ` — ${warn}` : ""), warn ? "warning" : "");
}

function svg(tag, attrs, parent) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  parent.append(el);
  return el;
}

// About `n` round tick values covering [lo, hi].
function ticks(lo, hi, n) {
  const span = hi - lo || Math.abs(hi) || 1;
  const raw = span / n;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((f) => f * mag).find((s) => s >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function timeLabel(t, span) {
  const d = new Date(t * 1000);
  const pad = (x) => String(x).padStart(2, "0");
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  if (span <= 600) return `${hm}:${pad(d.getSeconds())}`;
  return span > 86400 ? `${d.getMonth() + 1}-${pad(d.getDate())} ${hm}` : hm;
}

function drawGraph(series, start, end, step) {
  const chart = $("chart"), legend = $("legend"), tip = $("tooltip");
  chart.replaceChildren();
  legend.replaceChildren();
  const W = chart.clientWidth || 800, H = chart.clientHeight || 360;
  const pad = { l: 64, r: 12, t: 10, b: 24 };
  chart.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const parsed = series.map((s) => ({ name: labelsText(s.metric), points: s.values.map((p) => [p[0], parseFloat(p[1])]) }));
  let lo = Infinity, hi = -Infinity;
  for (const s of parsed) for (const [, v] of s.points) if (isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (lo === Infinity) { lo = 0; hi = 1; }
  if (lo === hi) { lo -= 1; hi += 1; }
  const x = (t) => pad.l + ((t - start) / (end - start || 1)) * (W - pad.l - pad.r);
  const y = (v) => H - pad.b - ((v - lo) / (hi - lo)) * (H - pad.t - pad.b);
  for (const v of ticks(lo, hi, 6)) {
    svg("line", { x1: pad.l, x2: W - pad.r, y1: y(v), y2: y(v), stroke: "#eaeef2" }, chart);
    svg("text", { x: pad.l - 6, y: y(v) + 4, "text-anchor": "end" }, chart).textContent = String(v);
  }
  for (const t of ticks(start, end, 8)) {
    svg("line", { x1: x(t), x2: x(t), y1: pad.t, y2: H - pad.b, stroke: "#eaeef2" }, chart);
    svg("text", { x: x(t), y: H - 6, "text-anchor": "middle" }, chart).textContent = timeLabel(t, end - start);
  }
  parsed.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    // A gap of more than one step breaks the line, as in Prometheus's graph.
    let d = "", prev = null;
    for (const [t, v] of s.points) {
      if (!isFinite(v)) { prev = null; continue; }
      d += `${prev === null || t - prev > step * 1.5 ? "M" : "L"}${x(t).toFixed(1)},${y(v).toFixed(1)}`;
      prev = t;
    }
    svg("path", { d, fill: "none", stroke: color, "stroke-width": 1.5 }, chart);
    const row = document.createElement("div");
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = color;
    row.append(sw, document.createTextNode(s.name));
    legend.append(row);
  });
  chart.onmousemove = (ev) => {
    const box = chart.getBoundingClientRect();
    const t = start + ((ev.clientX - box.left) * (W / box.width) - pad.l) / (W - pad.l - pad.r) * (end - start);
    const lines = [];
    parsed.forEach((s, i) => {
      let best = null;
      for (const p of s.points) if (best === null || Math.abs(p[0] - t) < Math.abs(best[0] - t)) best = p;
      if (best && Math.abs(best[0] - t) <= step) lines.push({ i, text: `${s.name}: ${best[1]}`, at: best[0] });
    });
    if (!lines.length) { tip.style.display = "none"; return; }
    tip.replaceChildren(document.createTextNode(new Date(lines[0].at * 1000).toISOString()));
    for (const l of lines.slice(0, 12)) {
      const div = document.createElement("div");
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = COLORS[l.i % COLORS.length];
      div.append(sw, document.createTextNode(l.text));
      tip.append(div);
    }
    tip.style.display = "block";
    tip.style.left = `${ev.clientX + 14}px`;
    tip.style.top = `${ev.clientY + 14}px`;
  };
  chart.onmouseleave = () => { tip.style.display = "none"; };
}

async function runGraph() {
  const status = $("graph-status");
  const range = parseDuration($("range").value);
  const end = parseTime($("end").value);
  if (range === null || range <= 0) return showStatus(status, "Cannot parse the range (e.g. 1h, 30m).", "error");
  if (end === null) return showStatus(status, "Cannot parse the end time.", "error");
  // Like Prometheus's graph: about 250 points unless a step is given.
  let step = $("step").value.trim() ? parseDuration($("step").value) : Math.max(Math.floor(range / 250), 1);
  if (step === null || step <= 0) return showStatus(status, "Cannot parse the step.", "error");
  const start = end - range;
  showStatus(status, "Loading…");
  const started = performance.now();
  let json;
  try {
    json = await api("api/v1/query_range", { query: $("expr").value, start: start.toFixed(3), end: end.toFixed(3), step: String(step) });
  } catch (e) {
    $("chart").replaceChildren();
    $("legend").replaceChildren();
    return showStatus(status, e.message, "error");
  }
  const result = json.data.result;
  drawGraph(result, start, end, step);
  const warn = warningsText(json);
  showStatus(status, `${result.length} series, step ${step}s, ${Math.round(performance.now() - started)} ms` + (warn ? ` — ${warn}` : ""), warn ? "warning" : "");
}

function execute() {
  saveUrl();
  if (!$("expr").value.trim()) return;
  if (tab === "table") runTable(); else runGraph();
}

$("execute").onclick = execute;
$("expr").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); execute(); }
});
$("tab-table").onclick = () => { selectTab("table"); execute(); };
$("tab-graph").onclick = () => { selectTab("graph"); execute(); };
for (const id of ["time", "range", "end", "step"]) {
  $(id).addEventListener("keydown", (ev) => { if (ev.key === "Enter") execute(); });
}
loadUrl();
if ($("expr").value) execute();

// The Bucket link, where the server also has the bucket page (strata standalone).
fetch("/bucket/api/v1/blocks").then(r => { if (r.ok) document.getElementById("bucket-link").hidden = false; }, () => {});
