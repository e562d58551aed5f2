// The Stores page: every StoreAPI endpoint of /api/v1/stores, grouped by component, with its
// health, external label sets, time range and last error; refreshed every 10 seconds.
"use strict";

function text(tag, content, cls) {
  const e = document.createElement(tag);
  e.textContent = content;
  if (cls) e.className = cls;
  return e;
}

// Milliseconds as an ISO time; the "no data" sentinels Thanos uses as words.
function time(ms) {
  if (ms >= 9223372036854775000) return "+∞";
  if (ms <= -9223372036854775000) return "−∞";
  return new Date(ms).toISOString();
}

function labelSets(sets) {
  return (sets || []).map(s => "{" + Object.keys(s).sort().map(k => `${k}="${s[k]}"`).join(", ") + "}").join("\n");
}

async function load() {
  const status = document.getElementById("status");
  try {
    const r = await fetch("/api/v1/stores");
    const body = await r.json();
    if (body.status !== "success") throw new Error(body.error || r.statusText);
    const root = document.getElementById("stores");
    root.replaceChildren();
    const groups = Object.keys(body.data).sort();
    for (const component of groups) {
      root.appendChild(text("h2", component));
      const table = document.createElement("table");
      const head = document.createElement("tr");
      for (const h of ["Endpoint", "Health", "Last check", "Labels", "Min time", "Max time", "Last error"]) head.appendChild(text("th", h));
      table.appendChild(head);
      for (const s of body.data[component]) {
        const row = document.createElement("tr");
        row.appendChild(text("td", s.name));
        row.appendChild(text("td", s.lastError ? "DOWN" : "UP", s.lastError ? "down" : "up"));
        row.appendChild(text("td", s.lastCheck));
        const labels = text("td", labelSets(s.labelSets));
        labels.style.whiteSpace = "pre-wrap";
        row.appendChild(labels);
        row.appendChild(text("td", time(s.minTime)));
        row.appendChild(text("td", time(s.maxTime)));
        row.appendChild(text("td", s.lastError || ""));
        table.appendChild(row);
      }
      root.appendChild(table);
    }
    status.textContent = groups.length ? `Updated ${new Date().toLocaleTimeString()}` : "No StoreAPI endpoints have answered yet.";
  } catch (e) {
    status.textContent = "Could not load /api/v1/stores: " + e.message;
  }
}

load();
setInterval(load, 10000);

// The Bucket link, where the server also has the bucket page (strata standalone).
fetch("/bucket/api/v1/blocks").then(r => { if (r.ok) document.getElementById("bucket-link").hidden = false; }, () => {});
