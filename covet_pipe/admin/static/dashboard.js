// covet-pipe dashboard: live state of the plugin manager from the admin API.
// No framework and no build step. Text goes in with textContent only (plugin names, versions and
// errors come from plugins). The token is read from the form, posted once and dropped; the session
// lives in an HttpOnly cookie, and state-changing calls carry X-Covet-Pipe: 1.
"use strict";

(function () {
  // the admin API's /_plugins below wherever the app is mounted: /_plugins or /ops/_plugins
  const base = location.pathname.replace(/\/dashboard\/?$/, "");
  const POLL_MS = 2000;           // the fallback's period when EventSource fails
  const SSE_RETRY_MS = 30000;     // while polling, try the event stream again this often
  const $ = (id) => document.getElementById(id);
  let source = null;
  let pollTimer = null;
  let sseTimer = null;
  let last = null;                // the latest snapshot
  const busy = new Set();         // plugins with a reload in flight

  function el(tag, opts, children) {
    const node = document.createElement(tag);
    const o = opts || {};
    if (o.text !== undefined && o.text !== null) node.textContent = String(o.text);
    if (o.cls) node.className = o.cls;
    if (o.label) node.dataset.label = o.label;
    if (o.title) node.title = o.title;
    for (const child of children || []) node.appendChild(child);
    return node;
  }

  function dash(value) { return value === undefined || value === null || value === "" ? "\u2014" : value; }

  function micros(value) {
    if (typeof value !== "number") return "\u2014";
    return (value >= 1000 ? (value / 1000).toFixed(2) + " ms" : value.toFixed(1) + " \u00b5s");
  }

  function when(at) {
    if (typeof at !== "number") return dash(at);
    const d = new Date(at * 1000);
    return d.toLocaleTimeString();
  }

  function api(path, options) {
    const o = Object.assign({ credentials: "same-origin", cache: "no-store" }, options || {});
    return fetch(base + path, o);
  }

  // -- session ------------------------------------------------------------------------------------

  function showLogin(message) {
    stopUpdates();
    $("board").hidden = true;
    $("logout").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    setLive("signed out", false);
    $("overall").textContent = "\u2026";
    $("overall").className = "pill";
    $("token").focus();
  }

  async function openSession(event) {
    event.preventDefault();
    const input = $("token");
    const token = input.value.trim();
    input.value = "";
    if (!token) return;
    let r;
    try {
      r = await api("/session?path=" + encodeURIComponent(base),
        { method: "POST", headers: { "Authorization": "Bearer " + token } });
    } catch (e) {
      $("login-error").textContent = "the admin API did not answer";
      return;
    }
    if (r.ok) {
      $("login-error").textContent = "";
      start();
    } else if (r.status === 429) {
      $("login-error").textContent = "too many failed attempts from this address; wait a minute";
    } else {
      $("login-error").textContent = "that token was refused (" + r.status + ")";
    }
  }

  async function closeSession() {
    stopUpdates();
    try {
      await api("/session?path=" + encodeURIComponent(base),
        { method: "DELETE", headers: { "X-Covet-Pipe": "1" } });
    } finally {
      showLogin("signed out");
    }
  }

  // -- updates ------------------------------------------------------------------------------------

  function setLive(text, on) {
    $("live").textContent = text;
    $("live").className = on ? "live on" : "live";
  }

  function stopUpdates() {
    if (source) { source.close(); source = null; }
    clearTimeout(pollTimer); pollTimer = null;
    clearTimeout(sseTimer); sseTimer = null;
  }

  async function start() {
    stopUpdates();
    let probe;
    try {
      probe = await (await api("/session")).json();
    } catch (e) {
      setLive("the admin API did not answer; retrying", false);
      pollTimer = setTimeout(start, POLL_MS);
      return;
    }
    if (!probe.open) { showLogin(); return; }
    $("login").hidden = true;
    $("board").hidden = false;
    $("logout").hidden = false;
    connect();
  }

  function connect() {
    if (!window.EventSource) { poll(); return; }
    let failures = 0;                         // errors in a row without a message in between
    source = new EventSource(base + "/events", { withCredentials: true });
    source.onmessage = (e) => { failures = 0; render(JSON.parse(e.data)); setLive("live", true); };
    source.addEventListener("session-ended", () => showLogin("the session ended; open a new one"));
    source.addEventListener("snapshot-failed", () => setLive("the server could not read its state (see its log)", false));
    source.onerror = () => {
      failures += 1;
      if (source && (source.readyState === EventSource.CLOSED || failures >= 3)) {
        source.close();
        source = null;
        poll();                               // refused, or the stream keeps failing: poll instead
        sseTimer = setTimeout(() => { if (!source) { clearTimeout(pollTimer); connect(); } }, SSE_RETRY_MS);
      } else if (failures >= 2) {            // one is the server ending a stream: it lasts 10 s
        setLive("reconnecting", false);
      }
    };
  }

  async function poll() {
    clearTimeout(pollTimer);
    try {
      const r = await api("/dashboard/snapshot");
      if (r.status === 401 || r.status === 403) { showLogin("the session ended; open a new one"); return; }
      if (r.ok) { render(await r.json()); setLive("polling", true); } else setLive("error " + r.status, false);
    } catch (e) {
      setLive("the admin API did not answer", false);
    }
    if (!source && !$("board").hidden) pollTimer = setTimeout(poll, POLL_MS);   // not once the stream is back
  }

  async function reload(name, button) {
    busy.add(name);
    button.disabled = true;
    const out = $("reload-result");
    out.className = "result";
    out.textContent = "reloading " + name + "\u2026";
    try {
      const r = await api("/" + encodeURIComponent(name) + "/reload",
        { method: "POST", headers: { "X-Covet-Pipe": "1" } });
      const body = await r.json().catch(() => ({}));
      if (r.ok) {
        out.textContent = "reloaded " + name + ": now " + dash(body.version);
        out.className = "result ok";
      } else {
        out.textContent = r.status + ": " + (body.error || "refused") + (body.serving ? " (" + body.serving + ")" : "");
        out.className = "result bad";
        out.dataset.status = String(r.status);
      }
    } catch (e) {
      out.textContent = "reloading " + name + ": the admin API did not answer";
      out.className = "result bad";
    } finally {
      busy.delete(name);
      if (last) render(last);
    }
  }

  // -- rendering ----------------------------------------------------------------------------------

  function render(snap) {
    last = snap;
    renderSummary(snap);
    renderChains(snap);
    renderPlugins(snap);
    renderReloads(snap.reloads);
    renderErrors(snap.errors);
  }

  function renderSummary(snap) {
    const h = snap.health || {};
    const overall = $("overall");
    overall.textContent = dash(h.status);
    overall.className = "pill " + (h.status || "");
    const items = [
      ["plugins", (snap.plugins || []).length], ["manager", h.manager], ["chain generation", h.chain_generation],
      ["in flight", h.inflight], ["updated", when(snap.at)],
    ];
    if (h.watcher) items.push(["file reloads", h.watcher.reloads]);
    if (snap.workers) items.push(["workers", snap.workers.filter((w) => w.answered).length + " of " + snap.workers.length + " (summed)"]);
    $("summary").replaceChildren(...items.map(([k, v]) =>
      el("div", {}, [el("dt", { text: k }), el("dd", { text: dash(v) })])));
  }

  function renderChains(snap) {
    const chain = snap.chain || {};
    if (!changed("chains", chain)) return;
    const byProto = chain.by_protocol || {};
    const state = Object.fromEntries((chain.middleware || []).map((e) => [e.name, e]));
    const boxes = Object.keys(byProto).map((proto) => {
      const names = byProto[proto];
      const list = names.length
        ? el("ol", {}, names.map((n) => el("li", { cls: "state-" + (state[n] ? state[n].state : ""),
          text: n + " " + (state[n] ? state[n].version : ""), title: state[n] ? state[n].state : "" })))
        : el("p", { cls: "empty", text: "no middleware" });
      return el("div", { cls: "chain" }, [el("h3", { text: proto }), list]);
    });
    if ((chain.protocols || []).length) {
      boxes.push(el("div", { cls: "chain" }, [el("h3", { text: "protocol plugins" }),
        el("ol", {}, chain.protocols.map((n) => el("li", { text: n })))]));
    }
    $("chains").replaceChildren(...boxes);
  }

  function ordered(snap) {
    // the chain's order first (request order), then the plugins that are not middleware, by name
    const order = new Map((snap.chain && snap.chain.middleware || []).map((e, i) => [e.name, i]));
    return (snap.plugins || []).slice().sort((a, b) => {
      const ia = order.has(a.name) ? order.get(a.name) : Infinity;
      const ib = order.has(b.name) ? order.get(b.name) : Infinity;
      return ia !== ib ? ia - ib : (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
    });
  }

  // a plugin's row is built once and updated in place: a click that spans an update (mouse down on
  // one button, up on its replacement) would otherwise be lost
  const COLUMNS = [["pos", "#", "num pos"], ["name", "plugin", "name"], ["kind", "kind", ""],
    ["version", "version", "version"], ["style", "style", ""], ["sandboxed", "sandboxed", ""],
    ["state", "state", "state"], ["calls", "calls", "num"], ["errors", "errors", "num"],
    ["p50", "p50 hook", "num"], ["p99", "p99 hook", "num"], ["helpers", "helpers", "num"],
    ["restarts", "restarts", "num"], ["reloads", "reloads", "num"], ["action", "", "action"]];
  const rows = new Map();         // plugin name -> {tr, cells, button}

  function pluginRow(name) {
    let row = rows.get(name);
    if (row) return row;
    const tr = el("tr");
    tr.dataset.plugin = name;
    const cells = {};
    for (const [key, label, cls] of COLUMNS) tr.appendChild(cells[key] = el("td", { label: label, cls: cls }));
    cells.reloads.title = "reloads that worked / that failed";
    const button = el("button", { text: "Reload" });
    button.type = "button";
    button.dataset.plugin = name;
    button.addEventListener("click", () => reload(name, button));
    cells.action.appendChild(button);
    row = { tr: tr, cells: cells, button: button };
    rows.set(name, row);
    return row;
  }

  function setText(node, text) {
    const value = String(text);
    if (node.textContent !== value) node.textContent = value;
  }

  function renderPlugins(snap) {
    const health = (snap.health && snap.health.plugins) || {};
    const shown = ordered(snap).map((p, i) => {
      const h = health[p.name] || {};
      const s = p.stats || {};
      const sb = h.sandbox || null;
      const { tr, cells, button } = pluginRow(p.name);
      tr.className = p.state === "failed" ? "failed" : "";
      tr.dataset.state = p.state;
      setText(cells.pos, i + 1);
      cells.name.dataset.label = "#" + (i + 1);
      setText(cells.name, p.name);
      setText(cells.kind, (p.kinds || []).join(", ") || p.source);
      setText(cells.version, p.version);
      setText(cells.style, dash(p.style));
      setText(cells.sandboxed, sb ? "yes" : "no");
      const state = [el("span", { cls: "state-" + p.state, text: p.state })];
      const why = p.error || h.reload_error;
      if (why) state.push(el("span", { cls: "why", text: (h.reload_error && !p.error ? "last reload: " : "") + why }));
      if (sb && sb.state && sb.state !== "serving") state.push(el("span", { cls: "why", text: "helpers " + sb.state }));
      const stateKey = JSON.stringify([p.state, why, sb && sb.state]);
      if (cells.state.dataset.key !== stateKey) {          // unchanged: keep it (and any text selected in it)
        cells.state.dataset.key = stateKey;
        cells.state.replaceChildren(...state);
      }
      setText(cells.calls, dash(s.calls));
      setText(cells.errors, dash(s.errors));
      cells.errors.className = "num" + (s.errors ? " bad" : "");
      setText(cells.p50, micros(s.p50_hook_us));
      setText(cells.p99, micros(s.p99_hook_us));
      setText(cells.helpers, sb ? (sb.helpers || []).length + "/" + dash(sb.pool_size) : "\u2014");
      setText(cells.restarts, sb ? dash(sb.restarts) : "\u2014");
      setText(cells.reloads, reloadCount(snap.reload_counts, p.name));
      setText(button, busy.has(p.name) ? "reloading\u2026" : "Reload");
      button.disabled = busy.has(p.name);
      return tr;
    });
    const names = new Set((snap.plugins || []).map((p) => p.name));
    for (const name of [...rows.keys()]) if (!names.has(name)) rows.delete(name);    // unloaded
    const body = $("plugins").tBodies[0];
    const current = [...body.children];
    if (current.length !== shown.length || current.some((tr, i) => tr !== shown[i])) body.replaceChildren(...shown);
  }

  function reloadCount(counts, name) {
    if (!counts) return "\u2014";                 // this manager keeps no counts
    const c = counts[name] || {};
    return (c.ok || 0) + " / " + (c.failed || 0);
  }

  function pick(entry, ...keys) {
    for (const k of keys) if (entry[k] !== undefined && entry[k] !== null) return entry[k];
    return null;
  }

  const drawn = {};                // what each list and the chains were last drawn from

  function changed(what, data) {
    const key = JSON.stringify(data === undefined ? null : data);
    if (drawn[what] === key) return false;
    drawn[what] = key;
    return true;
  }

  function renderList(rows, table, none, absent, empty, cells) {
    if (!changed(table, rows)) return;
    const note = $(none);
    if (rows === null || rows === undefined) {
      $(table).tBodies[0].replaceChildren();
      $(table).parentElement.hidden = true;
      note.hidden = false;
      note.textContent = absent;
      return;
    }
    note.hidden = rows.length > 0;
    note.textContent = empty;
    $(table).parentElement.hidden = rows.length === 0;
    $(table).tBodies[0].replaceChildren(...rows.slice().sort((a, b) => (pick(b, "at") || 0) - (pick(a, "at") || 0)).slice(0, 50).map((r) => el("tr", {}, cells(r))));
  }

  function renderReloads(reloads) {
    renderList(reloads, "reloads", "reloads-none", "this manager keeps no reload history",
      "no reloads yet", (r) => {
        const ok = pick(r, "ok");
        return [
          el("td", { label: "at", text: when(pick(r, "at")) }),
          el("td", { label: "plugin", text: dash(pick(r, "name", "plugin")) }),
          el("td", { label: "from", text: dash(pick(r, "old_version", "old")) }),
          el("td", { label: "to", text: dash(pick(r, "new_version", "new")) }),
          el("td", { label: "result", cls: ok ? "state-active" : "bad", text: ok ? "ok" : "failed" }),
          el("td", { label: "took", cls: "num", text: typeof r.duration_s === "number" ? (r.duration_s * 1000).toFixed(1) + " ms" : "\u2014" }),
          el("td", { label: "error", cls: "error", text: dash(pick(r, "error")) }),
        ];
      });
  }

  function renderErrors(errors) {
    renderList(errors, "errors", "errors-none", "this manager keeps no error history", "no recent errors",
      (r) => [
        el("td", { label: "at", text: when(pick(r, "at")) }),
        el("td", { label: "plugin", text: dash(pick(r, "plugin", "name")) }),
        el("td", { label: "hook", text: dash(pick(r, "hook")) }),
        el("td", { label: "error", cls: "error", text: dash(pick(r, "error", "text")) }),
      ]);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", openSession);
    $("logout").addEventListener("click", closeSession);
    start();
  });
})();
