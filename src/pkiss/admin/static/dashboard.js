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

async function refresh() {
  try {
    const [status, peers, calls, bans, cdr] = await Promise.all([
      api("/api/status"), api("/api/peers"), api("/api/calls"), api("/api/bans"),
      api("/api/cdr?limit=20"),
    ]);
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
    fill("calls", calls, (c) => {
      const action = cell("");
      action.append(hangup(c));
      return [cell(c.from), cell(c.to), cell(c.caller_peer), cell(c.callee_peer || "-"),
        cell(c.state), cell(seconds(c.duration)), action];
    });
    fill("bans", bans, (b) => {
      const action = cell("");
      action.append(button("Unban", () => unban(b.address)));
      return [cell(b.address), cell(seconds(b.remaining)), cell(b.reason), action];
    });
    fill("cdr", cdr.slice().reverse(), (r) => [cell(r.started_at.slice(0, 19).replace("T", " ")),
      cell(r.caller), cell(r.called), cell(r.source_peer), cell(r.dest_peer || "-"),
      cell(r.status), cell(seconds(r.duration)), cell(r.reason)]);
    document.getElementById("state").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (error) {
    document.getElementById("state").textContent = String(error.message);
  }
}

document.getElementById("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  token = document.getElementById("token").value;
  sessionStorage.setItem("pkiss-token", token);
  document.getElementById("token-form").hidden = true;
  refresh();
});

refresh();
setInterval(refresh, REFRESH_MS);
