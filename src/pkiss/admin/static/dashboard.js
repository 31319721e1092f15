// The dashboard reads the same REST API as `pkiss status | peers | calls | bans | cdr`.
// Nothing is built from HTML strings: every value goes in through textContent.
"use strict";

const REFRESH_MS = 2000;
let token = sessionStorage.getItem("pkiss-token") || "";

function headers() {
  return token ? { Authorization: "Bearer " + token } : {};
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers() });
  if (response.status === 401) {
    document.getElementById("token-form").hidden = false;
    throw new Error("a token is needed");
  }
  if (!response.ok) throw new Error(path + ": " + response.status);
  return response.json();
}

function seconds(value) {
  value = Math.floor(value);
  if (value >= 3600) return Math.floor(value / 3600) + "h" + String(Math.floor(value % 3600 / 60)).padStart(2, "0") + "m";
  if (value >= 60) return Math.floor(value / 60) + "m" + String(value % 60).padStart(2, "0") + "s";
  return value + "s";
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (cls) td.className = cls;
  return td;
}

function fill(id, rows, render) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren(...rows.map((row) => {
    const tr = document.createElement("tr");
    tr.append(...render(row));
    return tr;
  }));
}

function card(label, value) {
  const div = document.createElement("div");
  div.className = "card";
  const b = document.createElement("b");
  b.textContent = String(value);
  div.append(b, document.createTextNode(label));
  return div;
}

async function unban(address) {
  try {
    await api("/api/bans/" + encodeURIComponent(address), { method: "DELETE" });
  } catch (error) {
    document.getElementById("state").textContent = String(error.message);
  }
  refresh();
}

async function write(path) {
  try {
    await api(path, { method: "POST" });
  } catch (error) {
    document.getElementById("state").textContent = String(error.message);
  }
  refresh();
}

function button(text, action) {
  const b = document.createElement("button");
  b.textContent = text;
  b.addEventListener("click", action);
  return b;
}

// drain or undrain a peer ("peers") or a host ("hosts")
function steer(kind, name, drained) {
  const verb = drained ? "undrain" : "drain";
  return button(drained ? "Undrain" : "Drain",
    () => write("/api/" + kind + "/" + encodeURIComponent(name) + "/" + verb));
}

function hangup(call) {
  return button("Hang up", () => {
    if (confirm("Hang up the call from " + call.from + " to " + call.to + "?")) {
      write("/api/calls/" + encodeURIComponent(call.id) + "/hangup");
    }
  });
}

// ------------------------------------------------------------------ filters
const filters = { peer: "", number: "", status: "" };

function cdrQuery() {
  const query = new URLSearchParams({ limit: "20" });
  if (filters.peer) query.set("peer", filters.peer);
  if (filters.number) query.set("number", filters.number);
  if (filters.status) query.set("status", filters.status);
  return "/api/cdr?" + query.toString();
}

function callShown(c) {
  if (filters.peer && c.caller_peer !== filters.peer && c.callee_peer !== filters.peer) return false;
  if (filters.number && !String(c.from || "").includes(filters.number) &&
    !String(c.to || "").includes(filters.number)) return false;
  return !filters.status;  // a call in progress has no final status yet
}

function peerChoices(peers) {
  const select = document.getElementById("f-peer");
  const names = peers.map((p) => p.name);
  const have = [...select.options].slice(1).map((o) => o.value);
  if (names.join("\n") === have.join("\n")) return;
  select.replaceChildren(select.options[0], ...names.map((name) => {
    const option = document.createElement("option");
    option.value = option.textContent = name;
    return option;
  }));
  select.value = names.includes(filters.peer) ? filters.peer : "";
}

document.getElementById("filters").addEventListener("submit", (event) => {
  event.preventDefault();
  filters.peer = document.getElementById("f-peer").value;
  filters.number = document.getElementById("f-number").value.trim();
  const status = document.getElementById("f-status").value.trim();
  filters.status = /^[0-9]{1,3}$/.test(status) ? status : "";
  refresh();
});

document.getElementById("filters").addEventListener("reset", () => {
  filters.peer = filters.number = filters.status = "";
  setTimeout(refresh, 0);
});

// ------------------------------------------------------------------ charts (inline SVG)
const STEPS = { 60: 1, 300: 1, 900: 5, 3600: 10 };  // window (s) -> seconds a point

function statsQuery() {
  const window = Number(document.getElementById("window").value) || 3600;
  return "/api/stats?window=" + window + "&step=" + (STEPS[window] || 10);
}

function niceMax(value) {
  if (value <= 1) return 1;
  const power = Math.pow(10, Math.floor(Math.log10(value)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * power >= value) return m * power;
  return 10 * power;
}

function clock(t, seconds) {
  const parts = { hour: "2-digit", minute: "2-digit" };
  if (seconds) parts.second = "2-digit";
  return new Date(t * 1000).toLocaleTimeString([], parts);
}

function drawChart(stats) {
  const box = document.getElementById("traffic-svg");
  const W = 900, H = 220, left = 44, right = 8, top = 10, bottom = 22;
  const points = stats.calls.length;
  const top_ = niceMax(Math.max(...stats.calls, ...stats.failed, ...stats.answered, 0));
  const x = (i) => left + (points <= 1 ? 0 : (W - left - right) * i / (points - 1));
  const y = (v) => top + (H - top - bottom) * (1 - v / top_);
  box.replaceChildren();
  for (const v of [0, top_ / 2, top_]) {
    box.append(svg("line", { x1: left, x2: W - right, y1: y(v), y2: y(v), class: v ? "grid" : "axis" }));
    box.append(svg("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end" },
      String(Math.round(v * 100) / 100)));
  }
  for (let k = 0; k <= 6; k++) {
    const i = Math.round((points - 1) * k / 6);
    const t = stats.start + (i + 1) * stats.step;
    box.append(svg("text", { x: x(i), y: H - 6, "text-anchor": k === 0 ? "start" : k === 6 ? "end" : "middle" },
      clock(t, stats.window <= 900)));
  }
  for (const name of ["answered", "failed", "calls"]) {
    const values = stats[name];
    box.append(svg("polyline", {
      class: name, "data-nonzero": values.filter((v) => v > 0).length,
      points: values.map((v, i) => x(i).toFixed(1) + "," + y(v).toFixed(1)).join(" "),
    }));
  }
  const sum = (values) => values.reduce((a, b) => a + b, 0) * stats.step;
  document.getElementById("chart-note").textContent = "  " + Math.round(sum(stats.calls)) +
    " calls, " + Math.round(sum(stats.failed)) + " failed in the window; a point every " +
    stats.step + " s";
}

function ms(value) {
  return value === null || value === undefined ? "-" : Math.round(value * 1000) + " ms";
}

function drawSetup(setup) {
  const minutes = Math.round(setup.window / 60);
  document.getElementById("setup").replaceChildren(
    card("setup p50", ms(setup.p50)), card("setup p90", ms(setup.p90)),
    card("setup p99", ms(setup.p99)),
    card("answered, last " + minutes + " min", setup.count),
  );
}

function drawHealth(stats) {
  const area = document.getElementById("health");
  if (!stats.hosts.length) {
    const none = document.createElement("p");
    none.className = "muted";
    none.textContent = "no host is probed (peers' health checks are off)";
    area.replaceChildren(none);
    return;
  }
  const W = 600, start = stats.end - stats.window, end = stats.now;
  const x = (t) => Math.max(0, Math.min(W, W * (t - start) / (end - start)));
  area.replaceChildren(...stats.hosts.map((h) => {
    const row = document.createElement("div");
    row.className = "host";
    row.dataset.host = h.host;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = h.peer + " " + h.host;
    const strip = svg("svg", { viewBox: "0 0 " + W + " 14", preserveAspectRatio: "none" });
    strip.append(svg("rect", { x: 0, y: 0, width: W, height: 14, class: "unknown" },));
    h.history.forEach(([at, state], i) => {
      const until = i + 1 < h.history.length ? h.history[i + 1][0] : end;
      const x1 = x(at), x2 = x(until);
      const rect = svg("rect", { x: x1, y: 0, width: Math.max(1, x2 - x1), height: 14, class: state });
      rect.append(svg("title", {}, state + " from " + clock(at, true)));
      strip.append(rect);
    });
    const now = document.createElement("span");
    now.className = "now " + h.state;
    const downs = h.history.filter(([at, state], i) => state === "down" && (i > 0 || at >= start)).length;
    now.textContent = h.state + (downs ? " (" + downs + " down)" : "");
    row.append(name, strip, now);
    return row;
  }));
}

async function refresh() {
  try {
    const [status, peers, calls, bans, cdr, stats] = await Promise.all([
      api("/api/status"), api("/api/peers"), api("/api/calls"), api("/api/bans"),
      api(cdrQuery()), api(statsQuery()),
    ]);
    drawChart(stats);
    drawSetup(stats.setup);
    drawHealth(stats);
    peerChoices(peers);
    const shown = calls.filter(callShown);
    const active = [filters.peer && "peer " + filters.peer, filters.number && "number " + filters.number,
      filters.status && "status " + filters.status].filter(Boolean);
    document.getElementById("f-note").textContent = active.length
      ? "showing " + shown.length + " of " + calls.length + " calls in progress and the last records with " + active.join(", ")
      : "";
    document.getElementById("summary").replaceChildren(
      card("calls now", status.calls_in_progress),
      card("calls since start", status.calls.calls),
      card("answered", status.calls.answered),
      card("failed", status.calls.failed),
      card("bans", status.bans),
      card("dropped packets", status.dropped),
      card("uptime", seconds(status.uptime)),
    );
    fill("peers", peers, (p) => {
      const hosts = cell("");
      for (const h of p.hosts) {
        const div = document.createElement("div");
        const span = document.createElement("span");
        span.className = h.state.startsWith("not") ? "not-probed" : h.state.split(" ")[0];
        span.textContent = h.address + " " + h.state + (h.drained ? " drained " : " ");
        div.append(span);
        // a host drained by its peer comes back with the peer
        if (h.state !== "registered" && !p.drained) div.append(steer("hosts", h.address, h.drained));
        hosts.append(div);
      }
      const limit = p.limits && p.limits.calls ? p.calls + "/" + p.limits.calls : p.calls;
      const name = cell(p.name + (p.drained ? " (drained) " : " "));
      name.append(steer("peers", p.name, p.drained));
      return [name, cell(p.role), hosts, cell(limit), cell(p.registration || "")];
    });
    fill("calls", shown, (c) => {
      const action = cell("");
      action.append(button("Ladder", () => openTrace(c.id)), hangup(c));
      return [cell(c.from), cell(c.to), cell(c.caller_peer), cell(c.callee_peer || "-"),
        cell(c.state), cell(seconds(c.duration)), action];
    });
    fill("bans", bans, (b) => {
      const action = cell("");
      action.append(button("Unban", () => unban(b.address)));
      return [cell(b.address), cell(seconds(b.remaining)), cell(b.reason), action];
    });
    fill("cdr", cdr.slice().reverse(), (r) => {
      const action = cell("");
      action.append(button("Ladder", () => openTrace(r.call_id)));
      return [cell(r.started_at.slice(0, 19).replace("T", " ")),
        cell(r.caller), cell(r.called), cell(r.source_peer), cell(r.dest_peer || "-"),
        cell(r.status), cell(seconds(r.duration)), cell(r.reason), action];
    });
    if (!document.getElementById("trace-q").value) await listTraces("");
    document.getElementById("state").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (error) {
    document.getElementById("state").textContent = String(error.message);
  }
}

// ------------------------------------------------------------------ the call trace
async function listTraces(query) {
  const path = "/api/traces?limit=10" + (query ? "&q=" + encodeURIComponent(query) : "");
  const traces = await api(path);
  fill("traces", traces, (t) => {
    const action = cell("");
    action.append(button("Ladder", () => openTrace(t.call_ids[0])));
    const when = t.started_at ? new Date(t.started_at * 1000).toISOString() : "";
    return [cell(when.slice(0, 19).replace("T", " ")), cell(t.from), cell(t.to),
      cell(t.status === null ? (t.ended ? "-" : "in progress") : t.status),
      cell(t.messages), action];
  });
}

const SVG = "http://www.w3.org/2000/svg";

function svg(name, attributes, text) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

// the two legs side by side: the caller's side, the node, the callee's side(s)
function lanesOf(trace) {
  const node = new Set();
  for (const m of trace.messages) node.add(m.direction === "in" ? m.dst : m.src);
  const others = [];
  for (const m of trace.messages) {
    const far = m.direction === "in" ? m.src : m.dst;
    if (!others.includes(far)) others.push(far);
  }
  return { node, lanes: [others[0], "SBC", ...others.slice(1)] };
}

async function openTrace(callId) {
  let trace;
  try {
    trace = await api("/api/calls/" + encodeURIComponent(callId) + "/trace");
  } catch (error) {
    document.getElementById("state").textContent = String(error.message);
    return;
  }
  const { node, lanes } = lanesOf(trace);
  const lane = (address) => (node.has(address) ? 1 : Math.max(0, lanes.indexOf(address)));
  const width = 260, left = 90, top = 40, step = 26;
  const box = document.getElementById("ladder-svg");
  const height = top + step * (trace.messages.length + 1);
  box.setAttribute("width", left * 2 + width * (lanes.length - 1));
  box.setAttribute("height", height);
  box.replaceChildren(svg("defs", {}));
  const marker = svg("marker", { id: "head", markerWidth: 8, markerHeight: 8, refX: 8, refY: 4,
    orient: "auto" });
  marker.append(svg("path", { d: "M0,0 L8,4 L0,8 z", fill: "#1d2733" }));
  box.firstChild.append(marker);
  lanes.forEach((name, i) => {
    const x = left + i * width;
    box.append(svg("text", { x, y: 16, "text-anchor": "middle", class: "lane" }, name));
    box.append(svg("line", { x1: x, y1: 24, x2: x, y2: height, class: "life" }));
  });
  const start = trace.messages.length ? trace.messages[0].at : 0;
  const text = document.getElementById("ladder-message");
  trace.messages.forEach((m, i) => {
    const y = top + step * i;
    const x1 = left + lane(m.src) * width, x2 = left + lane(m.dst) * width;
    box.append(svg("line", { x1, y1: y + 6, x2, y2: y + 6, class: "arrow " + m.direction,
      "marker-end": "url(#head)" }));
    const label = svg("text", { x: (x1 + x2) / 2, y, "text-anchor": "middle", class: "msg" },
      m.first_line.replace(/ SIP\/2\.0$/, "").slice(0, 38));
    label.addEventListener("click", () => {
      text.textContent = "+" + ((m.at - start) * 1000).toFixed(1) + " ms  " + m.transport +
        "  " + m.src + " -> " + m.dst + "\n\n" + m.message;
    });
    box.append(label);
    box.append(svg("text", { x: 4, y: y + 10, class: "muted" },
      "+" + ((m.at - start) * 1000).toFixed(0) + " ms"));
  });
  document.getElementById("ladder-title").textContent = "Call " + trace.call_ids.join(" / ") +
    (trace.truncated ? " (" + trace.truncated + " more messages not kept)" : "");
  document.getElementById("ladder-pcap").href =
    "/api/calls/" + encodeURIComponent(callId) + "/trace.pcap";
  text.textContent = "click a message to read it";
  document.getElementById("ladder").hidden = false;
}

document.getElementById("trace-search").addEventListener("submit", (event) => {
  event.preventDefault();
  listTraces(document.getElementById("trace-q").value.trim()).catch((error) => {
    document.getElementById("state").textContent = String(error.message);
  });
});

document.getElementById("window").addEventListener("change", () => refresh());

document.getElementById("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  token = document.getElementById("token").value;
  sessionStorage.setItem("pkiss-token", token);
  document.getElementById("token-form").hidden = true;
  refresh();
});

refresh();
setInterval(refresh, REFRESH_MS);
