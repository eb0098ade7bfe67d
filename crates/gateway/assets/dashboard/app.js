// toolgate dashboard: plain JavaScript, no framework, no build step.
//
// Served under a strict CSP (script-src 'self', style-src 'self', connect-src 'self'): no
// inline scripts, styles or handlers, no eval. Data from the API reaches the DOM only through
// textContent and attributes, never innerHTML.
//
// The admin token lives in sessionStorage (this tab only) and is sent as
// `Authorization: Bearer` on every request; cookies are never used (credentials: "omit"), so
// no CSRF token is needed. The audit stream is read with fetch() and a stream reader, since
// EventSource cannot send that header.
"use strict";

(() => {
  const TOKEN_KEY = "toolgate.adminToken";
  const STATUS_EVERY_MS = 2000;
  const APPROVALS_EVERY_MS = 1500;
  const TOOLS_EVERY_MS = 15000;
  const LOG_MAX_ROWS = 500;
  const LOG_INITIAL = 100;
  const STATES = [
    ["allow", "Allow"],
    ["rate_limit", "Rate limit"],
    ["require_approval", "Require approval"],
    ["deny", "Deny"],
    ["hide", "Hide"],
  ];
  const SEVERITIES = ["low", "medium", "high", "critical"];

  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------------------------------
  // DOM helpers

  /** el("td", {className: "x", dataset: {seq: 1}, title: "t"}, "text", childNode, …) */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    if (attrs) {
      for (const [key, value] of Object.entries(attrs)) {
        if (value === undefined || value === null || value === false) continue;
        if (key === "dataset") {
          for (const [k, v] of Object.entries(value)) node.dataset[k] = String(v);
        } else if (key === "className") {
          node.className = value;
        } else if (key === "text") {
          node.textContent = String(value);
        } else if (key in node && typeof node[key] !== "function") {
          node[key] = value;
        } else {
          node.setAttribute(key, value === true ? "" : String(value));
        }
      }
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function show(node, visible) {
    node.hidden = !visible;
  }

  function clear(node) {
    node.replaceChildren();
  }

  function pad(n, width = 2) {
    return String(n).padStart(width, "0");
  }

  function fmtTime(ms) {
    if (typeof ms !== "number") return "";
    const d = new Date(ms);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  }

  function fmtDateTime(ms) {
    if (typeof ms !== "number") return "";
    const d = new Date(ms);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function fmtIn(ms) {
    if (typeof ms !== "number") return "";
    const s = Math.round((ms - Date.now()) / 1000);
    if (s <= 0) return "now";
    if (s < 120) return `in ${s} s`;
    if (s < 7200) return `in ${Math.round(s / 60)} min`;
    return `in ${Math.round(s / 3600)} h`;
  }

  function fmtNumber(value, digits = 0) {
    if (typeof value !== "number" || !Number.isFinite(value)) return "–";
    return value.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
  }

  function compactJson(value, max = 160) {
    let text;
    try {
      text = JSON.stringify(value);
    } catch {
      text = String(value);
    }
    if (text === undefined) text = "";
    return text.length > max ? `${text.slice(0, max - 1)}…` : text;
  }

  // ---------------------------------------------------------------------------------------
  // Errors: a banner listing one message per source; a source's message goes away when the
  // source succeeds again.

  const errors = new Map();

  function setError(source, message) {
    errors.set(source, message);
    renderBanner();
  }

  function clearError(source) {
    if (errors.delete(source)) renderBanner();
  }

  function renderBanner() {
    const list = $("banner-list");
    clear(list);
    for (const [source, message] of errors) {
      list.append(el("li", { dataset: { source } }, el("strong", null, `${source}: `), message));
    }
    show($("banner"), errors.size > 0);
  }

  let flashTimer = null;
  function flash(message) {
    const node = $("flash");
    node.textContent = message;
    show(node, true);
    clearTimeout(flashTimer);
    flashTimer = setTimeout(() => show(node, false), 4000);
  }

  // ---------------------------------------------------------------------------------------
  // The API

  class ApiError extends Error {
    constructor(status, message, body) {
      super(message);
      this.status = status;
      this.body = body;
    }
  }

  let token = null;
  let me = null;

  async function request(method, path, { body, signal, auth } = {}) {
    const headers = { Accept: "application/json", Authorization: `Bearer ${auth || token}` };
    const init = { method, headers, credentials: "omit", cache: "no-store", signal };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      if (err && err.name === "AbortError") throw err;
      throw new ApiError(0, `the gateway did not answer (${err && err.message ? err.message : err})`, null);
    }
    return response;
  }

  async function readJson(response) {
    const text = await response.text();
    if (!text) return null;
    try {
      return JSON.parse(text);
    } catch {
      return { error: text.slice(0, 300) };
    }
  }

  /** A JSON request; a 401 (token revoked meanwhile) signs out. */
  async function api(method, path, body) {
    const response = await request(method, path, { body });
    const data = await readJson(response);
    if (!response.ok) {
      const message = (data && data.error) || `HTTP ${response.status}`;
      const err = new ApiError(response.status, message, data);
      if (response.status === 401 && token) signOut("Your admin token was refused (unknown or revoked); sign in again.");
      throw err;
    }
    return data;
  }

  /** One entry of a 422's `errors`: a string, or an object naming a pointer and a message. */
  function describeItem(e) {
    if (typeof e === "string") return e;
    if (e && typeof e === "object") {
      const where = e.pointer ?? e.path ?? e.at ?? null;
      const what = e.message ?? e.error ?? e.expected ?? null;
      if (what !== null) return where !== null ? `${where}: ${what}` : String(what);
    }
    return compactJson(e, 300);
  }

  function describe(err) {
    if (err instanceof ApiError) {
      const prefix = err.status ? `${err.status} ` : "";
      let text = `${prefix}${err.message}`;
      const list = err.body && Array.isArray(err.body.errors) ? err.body.errors : [];
      if (list.length) {
        text += ": " + list.map(describeItem).join("; ");
      }
      return text;
    }
    return String(err && err.message ? err.message : err);
  }

  const enc = encodeURIComponent;

  /** Wraps an async refresh so that calls made while it runs are folded into one more run
   *  after it, never run concurrently and never lost. */
  function coalesced(fn) {
    let running = null;
    let again = false;
    const run = async (...args) => {
      if (running) {
        again = true;
        return running;
      }
      running = (async () => {
        try {
          do {
            again = false;
            await fn(...args);
          } while (again);
        } finally {
          running = null;
        }
      })();
      return running;
    };
    return run;
  }

  // ---------------------------------------------------------------------------------------
  // Sign in / out

  const timers = [];

  async function signIn(candidate) {
    const errorNode = $("signin-error");
    show(errorNode, false);
    const submit = $("signin-submit");
    submit.disabled = true;
    try {
      const response = await request("GET", "/api/v1/whoami", { auth: candidate });
      const data = await readJson(response);
      if (response.status === 401) {
        throw new Error("unknown or revoked admin token");
      }
      if (!response.ok) {
        throw new Error((data && data.error) || `HTTP ${response.status}`);
      }
      token = candidate;
      me = data || {};
      try {
        sessionStorage.setItem(TOKEN_KEY, candidate);
      } catch {
        // Storage may be unavailable (privacy settings): the tab still works until reload.
      }
      $("token").value = "";
      start();
    } catch (err) {
      errorNode.textContent = describe(err);
      show(errorNode, true);
    } finally {
      submit.disabled = false;
    }
  }

  function signOut(message) {
    token = null;
    me = null;
    try {
      sessionStorage.removeItem(TOKEN_KEY);
    } catch {
      // ignore
    }
    while (timers.length) clearInterval(timers.pop());
    stopLog();
    errors.clear();
    renderBanner();
    clear($("approvals-body"));
    clear($("tools-body"));
    clear($("server-list"));
    clear($("tools-meta"));
    clear($("log-body"));
    approvalRows.clear();
    show($("app"), false);
    show($("whoami"), false);
    show($("signout"), false);
    show($("signin"), true);
    const errorNode = $("signin-error");
    if (message) {
      errorNode.textContent = message;
      show(errorNode, true);
    } else {
      show(errorNode, false);
    }
    $("token").focus();
  }

  function canApprove() {
    return me && (me.role === "admin" || me.role === "policy_manager");
  }

  function canEditPolicy() {
    return me && me.role !== "viewer";
  }

  function start() {
    show($("signin"), false);
    show($("app"), true);
    const who = $("whoami");
    who.textContent = `${me.name || "?"} · ${me.role || "?"}`;
    who.title = me.id || "";
    show(who, true);
    show($("signout"), true);
    refreshStatus();
    refreshApprovals();
    loadServers();
    restartLog();
    refreshConnections();
    timers.push(setInterval(refreshConnections, APPROVALS_EVERY_MS * 5));
    timers.push(setInterval(refreshStatus, STATUS_EVERY_MS));
    timers.push(setInterval(refreshApprovals, APPROVALS_EVERY_MS));
    timers.push(setInterval(() => refreshTools(false), TOOLS_EVERY_MS));
  }

  // ---------------------------------------------------------------------------------------
  // Status

  const refreshStatus = coalesced(async () => {
    if (!token) return;
    try {
      const s = await api("GET", "/api/v1/status");
      if (!token) return;
      clearError("status");
      renderStatus(s || {});
    } catch (err) {
      if (token) setError("status", describe(err));
    }
  });

  function setStat(name, text) {
    const node = document.querySelector(`[data-stat="${name}"]`);
    if (node) node.textContent = text;
  }

  function renderStatus(s) {
    const calls = typeof s.calls === "number" ? s.calls : null;
    const denied = typeof s.denied === "number" ? s.denied : null;
    setStat("calls_per_minute", fmtNumber(s.calls_per_minute, 2));
    setStat("calls", fmtNumber(calls));
    setStat("denied", fmtNumber(denied));
    let pct = "–";
    if (calls !== null && denied !== null) pct = calls > 0 ? `${fmtNumber((100 * denied) / calls, 1)} %` : "0 %";
    setStat("deny_pct", pct);
    setStat("pending_approvals", fmtNumber(s.pending_approvals));
    $("status-window").textContent = typeof s.since_ms === "number" ? `since ${fmtDateTime(s.since_ms)}` : "";
    show($("audit-off"), s.audit === false);
    const list = $("top-deny-rules");
    clear(list);
    const rules = Array.isArray(s.top_deny_rules) ? s.top_deny_rules : [];
    for (const r of rules) {
      list.append(el("li", null, el("code", { text: r.rule ?? "" }), el("span", { className: "rule-count", text: ` ×${r.count ?? "?"}` })));
    }
    if (!rules.length) list.append(el("li", { className: "muted", text: "none" }));
  }

  // ---------------------------------------------------------------------------------------
  // Approvals: rows are kept (not rebuilt) across polls, so a deny reason being typed
  // survives a refresh.

  const approvalRows = new Map();
  const refreshApprovals = coalesced(async () => {
    if (!token) return;
    try {
      const data = await api("GET", "/api/v1/approvals");
      if (!token) return;
      clearError("approvals");
      renderApprovals(Array.isArray(data && data.approvals) ? data.approvals : []);
    } catch (err) {
      if (token) setError("approvals", describe(err));
    }
  });

  function renderApprovals(list) {
    const body = $("approvals-body");
    const seen = new Set();
    for (const a of list) {
      if (!a || typeof a.id !== "string") continue;
      seen.add(a.id);
      let row = approvalRows.get(a.id);
      if (!row) {
        row = buildApprovalRow(a);
        approvalRows.set(a.id, row);
      }
      updateApprovalRow(row, a);
      body.append(row.tr); // keeps the API's order; moving an existing node keeps its state
    }
    for (const [id, row] of approvalRows) {
      if (!seen.has(id)) {
        row.tr.remove();
        approvalRows.delete(id);
      }
    }
    const pending = list.filter((a) => a && a.status === "pending").length;
    $("approvals-count").textContent = list.length ? `(${pending} pending)` : "";
    show($("approvals-empty"), list.length === 0);
    show($("approvals-table"), list.length > 0);
  }

  function buildApprovalRow(a) {
    const who = a.identity && a.identity !== a.grant ? `${a.grant ?? ""} / ${a.identity}` : a.grant ?? "";
    const args = compactJson(a.arguments ?? {}, 200);
    const approvers = el("td", { className: "col-approvers" });
    const expires = el("td", { className: "col-expires" });
    const approve = el("button", { type: "button", className: "btn btn-ok", dataset: { action: "approve" }, text: "Approve" });
    const deny = el("button", { type: "button", className: "btn btn-danger", dataset: { action: "deny" }, text: "Deny" });
    const reason = el("input", {
      type: "text",
      className: "reason",
      placeholder: "reason (the agent reads it)",
      dataset: { role: "deny-reason" },
      maxLength: 500,
      required: true,
      "aria-label": "Reason for denying",
    });
    const confirm = el("button", { type: "button", className: "btn btn-danger", dataset: { action: "confirm-deny" }, text: "Deny call" });
    const cancel = el("button", { type: "button", className: "btn btn-quiet", dataset: { action: "cancel-deny" }, text: "Cancel" });
    const denyForm = el("div", { className: "deny-form" }, reason, confirm, cancel);
    denyForm.hidden = true;
    const statusText = el("span", { className: "approval-status" });
    const buttons = el("div", { className: "actions" }, approve, deny);
    const tr = el(
      "tr",
      { dataset: { approval: a.id } },
      el("td", { className: "col-tool" }, el("strong", { text: a.tool ?? "" }), el("div", { className: "muted small mono", text: a.id })),
      el("td", { className: "col-server", text: a.server ?? "" }),
      el("td", { className: "col-who", text: who }),
      el("td", { className: "col-args" }, el("code", { className: "args", text: args, title: compactJson(a.arguments ?? {}, 5000) })),
      el("td", { className: "col-rule" }, el("code", { text: a.rule ?? "" })),
      approvers,
      expires,
      el("td", { className: "col-decide" }, statusText, buttons, denyForm),
    );
    const row = { tr, approvers, expires, approve, deny, reason, confirm, cancel, denyForm, buttons, statusText, busy: false, status: null };

    approve.addEventListener("click", () => decide(row, a.id, "approve"));
    deny.addEventListener("click", () => {
      show(denyForm, true);
      show(buttons, false);
      reason.focus();
    });
    cancel.addEventListener("click", () => {
      reason.value = "";
      reason.classList.remove("invalid");
      show(denyForm, false);
      show(buttons, true);
    });
    const submitDeny = () => {
      const text = reason.value.trim();
      if (!text) {
        reason.classList.add("invalid");
        reason.focus();
        return;
      }
      reason.classList.remove("invalid");
      decide(row, a.id, "deny", text);
    };
    confirm.addEventListener("click", submitDeny);
    reason.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter") {
        ev.preventDefault();
        submitDeny();
      } else if (ev.key === "Escape") {
        cancel.click();
      }
    });
    return row;
  }

  function updateApprovalRow(row, a) {
    const got = Array.isArray(a.approvers) ? a.approvers.length : 0;
    const need = typeof a.approvers_needed === "number" ? a.approvers_needed : 1;
    row.approvers.textContent = `${got} / ${need}${got ? ` (${a.approvers.join(", ")})` : ""}`;
    row.expires.textContent = fmtIn(a.expires_at_ms);
    row.expires.title = fmtDateTime(a.expires_at_ms);
    row.status = a.status;
    const pending = a.status === "pending";
    row.statusText.textContent = pending ? "" : a.status ?? "";
    show(row.statusText, !pending);
    const allowed = canApprove();
    for (const b of [row.approve, row.deny, row.confirm]) {
      b.disabled = row.busy || !pending || !allowed;
      b.title = allowed ? "" : "needs role policy_manager or admin";
    }
    if (!pending) {
      show(row.buttons, false);
      show(row.denyForm, false);
    } else if (row.denyForm.hidden) {
      show(row.buttons, true);
    }
  }

  async function decide(row, id, verb, reason) {
    if (row.busy) return;
    row.busy = true;
    for (const b of [row.approve, row.deny, row.confirm]) b.disabled = true;
    try {
      const body = verb === "deny" ? { reason } : undefined;
      const result = await api("POST", `/api/v1/approvals/${enc(id)}/${verb}`, body);
      clearError("approvals");
      const status = result && result.status ? result.status : verb === "approve" ? "approved" : "denied";
      flash(`${row.tr.querySelector(".col-tool strong").textContent}: ${status}`);
    } catch (err) {
      if (err.status === 409) {
        flash("That call is no longer waiting for a decision.");
      } else if (token) {
        setError("approvals", describe(err));
      }
    } finally {
      row.busy = false;
      refreshApprovals();
    }
  }

  // ---------------------------------------------------------------------------------------
  // Upstream connections (servers with `auth = "oauth"`): shown only when there are any.

  const refreshConnections = coalesced(async () => {
    if (!token) return;
    let list;
    try {
      const data = await api("GET", "/api/v1/connections");
      list = Array.isArray(data && data.connections) ? data.connections : [];
      clearError("connections");
    } catch (err) {
      if (token) setError("connections", describe(err));
      return;
    }
    if (!token) return;
    renderConnections(list);
  });

  function renderConnections(list) {
    const body = $("connections-body");
    clear(body);
    const admin = me && me.role === "admin";
    for (const c of list) {
      const state = c.connected ? "connected" : "not connected";
      const action = c.connected
        ? el("button", { type: "button", className: "btn btn-danger", dataset: { action: "disconnect" }, text: "Disconnect" })
        : el("button", { type: "button", className: "btn btn-ok", dataset: { action: "connect" }, text: "Connect" });
      action.disabled = !admin;
      action.title = admin ? "" : "needs role admin";
      action.addEventListener("click", () => connection(c, action));
      body.append(
        el(
          "tr",
          { dataset: { server: c.server, identity: c.identity } },
          el("td", { text: c.server ?? "" }),
          el("td", { text: c.identity ?? "" }),
          el("td", { dataset: { role: "connection-state" } }, el("span", { className: c.connected ? "pill good" : "pill", text: state })),
          el("td", { className: "mono", text: c.subject ?? "" }),
          el("td", { text: c.connected ? fmtIn(c.expires_at_ms) : c.connect ?? "" }),
          el("td", {}, action),
        ),
      );
    }
    show($("connections"), list.length > 0);
  }

  async function connection(c, button) {
    button.disabled = true;
    const link = $("connections-link");
    try {
      const path = `/api/v1/servers/${enc(c.server)}/connections/${enc(c.identity)}`;
      if (c.connected) {
        const r = await api("DELETE", path);
        flash(`${c.identity} disconnected from ${c.server}${r && r.revocation && r.revocation !== "revoked" ? ` (${r.revocation})` : ""}`);
      } else {
        const r = await api("POST", path);
        clear(link);
        link.append(
          `Open this link as ${c.identity} to connect it to ${c.server} (valid 10 minutes): `,
          el("a", { href: r.authorization_url, target: "_blank", rel: "noopener noreferrer", text: "authorize", dataset: { role: "authorization-url" } }),
        );
        show(link, true);
      }
      clearError("connections");
    } catch (err) {
      if (token) setError("connections", describe(err));
    } finally {
      refreshConnections();
    }
  }

  // ---------------------------------------------------------------------------------------
  // Servers and tools

  let servers = [];
  let currentServer = null;
  let toolsEditing = 0; // rows with an open rate-limit form or a request in flight

  async function loadServers() {
    try {
      const data = await api("GET", "/api/v1/servers");
      if (!token) return;
      clearError("servers");
      servers = Array.isArray(data && data.servers) ? data.servers : [];
    } catch (err) {
      if (token) setError("servers", describe(err));
      return;
    }
    renderServers();
    fillServerFilter();
    if (!currentServer || !servers.some((s) => s.name === currentServer)) {
      currentServer = servers.length ? servers[0].name : null;
    }
    markCurrentServer();
    refreshTools(true);
  }

  function renderServers() {
    const list = $("server-list");
    clear(list);
    for (const s of servers) {
      const includes = Array.isArray(s.include) ? s.include.map((i) => i.server) : null;
      const where = s.url || (includes ? `virtual server: tools of ${includes.join(", ")}` : s.transport || "");
      const button = el(
        "button",
        { type: "button", className: "server", role: "tab", dataset: { server: s.name } },
        el("strong", { text: s.name }),
        el("span", { className: "muted small", text: ` ${s.transport ?? ""}` }),
        includes ? el("span", { className: "small muted", dataset: { role: "includes" }, text: ` (${includes.join(" + ")})` }) : null,
        el("span", { className: "small", text: ` · policy ${s.policy ?? "none"}` }),
        el("span", { className: "small", text: ` · ${typeof s.tools === "number" ? s.tools : "?"} tools` }),
        s.pinning ? el("span", { className: "small muted", text: ` · pinning ${s.pinning}` }) : null,
      );
      button.title = where;
      button.addEventListener("click", () => {
        currentServer = s.name;
        markCurrentServer();
        refreshTools(true);
      });
      list.append(button);
    }
    if (!servers.length) list.append(el("p", { className: "empty", text: "No servers are configured." }));
  }

  function markCurrentServer() {
    for (const b of $("server-list").querySelectorAll("[data-server]")) {
      const on = b.dataset.server === currentServer;
      b.classList.toggle("current", on);
      b.setAttribute("aria-selected", on ? "true" : "false");
    }
  }

  const loadTools = coalesced(async () => {
    if (!token || !currentServer) return;
    const server = currentServer;
    try {
      const data = await api("GET", `/api/v1/servers/${enc(server)}/tools`);
      if (!token || server !== currentServer) return;
      clearError("tools");
      renderTools(data || {});
    } catch (err) {
      if (token) setError("tools", describe(err));
    }
  });

  /** Reloads the tools view; a periodic refresh (force false) skips while a row is edited. */
  function refreshTools(force) {
    if (!force && (toolsEditing > 0 || isEditingTools())) return Promise.resolve();
    return loadTools();
  }

  function isEditingTools() {
    const active = document.activeElement;
    return !!(active && $("tools-body").contains(active) && active.tagName !== "BUTTON");
  }

  function severityClass(sev) {
    const s = String(sev || "").toLowerCase();
    return SEVERITIES.includes(s) ? `sev-${s}` : "sev-unknown";
  }

  function renderTools(data) {
    const meta = $("tools-meta");
    clear(meta);
    meta.append(
      el("span", null, "policy ", el("strong", { text: data.policy ?? "none" })),
      data.policy_version ? el("span", { className: "muted mono", title: data.policy_version, text: ` version ${String(data.policy_version).slice(0, 12)}` }) : null,
      data.grade
        ? el("span", {
            className: `grade grade-${String(data.grade).toLowerCase()}`,
            title: Array.isArray(data.grade_reasons) && data.grade_reasons.length ? data.grade_reasons.join("\n") : "scan grade",
            text: `grade ${data.grade}`,
          })
        : null,
      Array.isArray(data.grade_reasons) && data.grade_reasons.length
        ? el("span", { className: "muted small", text: data.grade_reasons.join(" · ") })
        : null,
    );
    const body = $("tools-body");
    clear(body);
    const tools = Array.isArray(data.tools) ? data.tools : [];
    for (const t of tools) body.append(buildToolRow(data, t));
    show($("tools-empty"), tools.length === 0);
    show($("tools-table"), tools.length > 0);
  }

  function buildToolRow(data, t) {
    const scan = t.scan || {};
    const signals = Array.isArray(scan.signals) ? scan.signals : [];
    const severity = scan.severity ?? "unknown";
    const riskCell = el(
      "td",
      { className: "col-risk" },
      el("span", { className: `badge ${severityClass(severity)}`, dataset: { role: "risk" }, text: severity }),
      el("div", { className: "small", dataset: { role: "category" }, text: scan.category ?? "" }),
      typeof scan.confidence === "number" ? el("div", { className: "muted small", text: `confidence ${Math.round(scan.confidence * 100)} %` }) : null,
    );
    const signalList = el("ul", { className: "signals", dataset: { role: "signals" } });
    for (const s of signals) {
      signalList.append(el("li", { title: s.id ?? "", text: s.message ?? s.id ?? "" }));
    }
    const recommended = recommendedLabel(scan.recommended);
    if (recommended) {
      signalList.append(el("li", { className: "muted", dataset: { role: "recommended" }, text: `recommended: ${recommended}` }));
    }
    const pinText = t.pin === "held" ? "held (definition changed)" : t.pin === "approved" ? "approved" : "–";
    const pinCell = el("td", { className: `col-pin pin-${t.pin || "none"}`, text: pinText });

    const select = el("select", { className: `state state-${t.state}`, dataset: { role: "state" }, "aria-label": `state of ${t.name}` });
    for (const [value, label] of STATES) select.append(el("option", { value, text: label }));
    if (!STATES.some(([v]) => v === t.state)) select.append(el("option", { value: t.state, text: String(t.state) }));
    select.value = t.state;
    select.disabled = !canEditPolicy() || !data.policy;
    if (!data.policy) select.title = "this server has no policy";
    else if (!canEditPolicy()) select.title = "needs a higher role";

    const max = el("input", { type: "number", className: "rate-max", min: 1, step: 1, value: "30", dataset: { role: "rate-max" }, "aria-label": "calls per minute" });
    const apply = el("button", { type: "button", className: "btn btn-primary", dataset: { action: "apply-rate" }, text: "Apply" });
    const cancel = el("button", { type: "button", className: "btn btn-quiet", dataset: { action: "cancel-rate" }, text: "Cancel" });
    const rateForm = el("div", { className: "rate-form" }, max, el("span", { className: "small", text: "per minute" }), apply, cancel);
    rateForm.hidden = true;

    const tr = el(
      "tr",
      { dataset: { tool: t.name, state: t.state } },
      el(
        "td",
        { className: "col-name" },
        el("strong", { className: "mono", text: t.name }),
        t.upstream ? el("div", { className: "muted small mono", dataset: { role: "upstream" }, text: `from ${t.upstream}` }) : null,
        t.description ? el("div", { className: "desc muted small", title: t.description, text: t.description }) : null,
      ),
      riskCell,
      el("td", { className: "col-signals" }, signalList),
      pinCell,
      el("td", { className: "col-rule" }, el("code", { text: t.rule ?? "" })),
      el("td", { className: "col-state" }, select, rateForm),
    );

    let editing = false;
    const setEditing = (on) => {
      if (on !== editing) toolsEditing += on ? 1 : -1;
      editing = on;
    };
    const closeRate = () => {
      show(rateForm, false);
      setEditing(false);
    };
    select.addEventListener("change", () => {
      const value = select.value;
      if (value === t.state) {
        closeRate();
        return;
      }
      if (value === "rate_limit") {
        show(rateForm, true);
        setEditing(true);
        max.focus();
        max.select();
        return;
      }
      closeRate();
      changeState(data.policy, t, { state: value }, select, setEditing);
    });
    const submitRate = () => {
      const n = Number(max.value);
      if (!Number.isInteger(n) || n < 1) {
        max.classList.add("invalid");
        max.focus();
        return;
      }
      max.classList.remove("invalid");
      show(rateForm, false);
      changeState(data.policy, t, { state: "rate_limit", max: n, window: "minute" }, select, setEditing);
    };
    apply.addEventListener("click", submitRate);
    max.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter") {
        ev.preventDefault();
        submitRate();
      } else if (ev.key === "Escape") {
        cancel.click();
      }
    });
    cancel.addEventListener("click", () => {
      select.value = t.state;
      closeRate();
    });
    return tr;
  }

  /** The scanner's recommendation: a state name, or the starter policy's rule for the tool
   *  (`{}`, `{"limits": […]}`, `{"action": …}`, `"hide"`). */
  function recommendedLabel(rec) {
    if (rec === undefined || rec === null || rec === "") return "";
    if (typeof rec === "string") return labelOf(rec);
    if (typeof rec !== "object" || Array.isArray(rec)) return compactJson(rec, 80);
    if (rec.action === "deny" || rec.action === "require_approval") return labelOf(rec.action);
    if (Array.isArray(rec.limits) && rec.limits.length) {
      const l = rec.limits[0] || {};
      const win = typeof l.window === "number" ? `${l.window} s` : l.window;
      return typeof l.max === "number" ? `Rate limit (${l.max} per ${win ?? "window"})` : "Rate limit";
    }
    return labelOf("allow");
  }

  function labelOf(state) {
    const found = STATES.find(([v]) => v === state);
    return found ? found[1] : String(state);
  }

  async function changeState(policy, tool, body, select, setEditing) {
    setEditing(true);
    select.disabled = true;
    try {
      const result = await api("PUT", `/api/v1/policies/${enc(policy)}/tools/${enc(tool.name)}`, body);
      clearError("policy");
      const version = result && result.version ? ` (version ${String(result.version).slice(0, 12)})` : "";
      flash(`${tool.name}: ${labelOf(body.state)} in policy ${policy}${version}`);
    } catch (err) {
      select.value = tool.state;
      if (token) setError("policy", `${tool.name} → ${labelOf(body.state)}: ${describe(err)}`);
    } finally {
      select.disabled = false;
      setEditing(false);
    }
    await refreshTools(true);
  }

  // ---------------------------------------------------------------------------------------
  // Live log: the last LOG_INITIAL records, then the stream after the last seq, with
  // reconnects. Changing a filter restarts it.

  let logGeneration = 0;
  let logFilters = null;
  let logAbort = null;
  let lastSeq = 0;

  function fillServerFilter() {
    const select = $("f-server");
    const keep = select.value;
    clear(select);
    select.append(el("option", { value: "", text: "all" }));
    for (const s of servers) select.append(el("option", { value: s.name, text: s.name }));
    select.value = servers.some((s) => s.name === keep) ? keep : "";
  }

  function filterQuery() {
    const params = new URLSearchParams();
    const server = $("f-server").value;
    const tool = $("f-tool").value.trim();
    const decision = $("f-decision").value;
    const kind = $("f-kind").value;
    if (server) params.set("server", server);
    if (tool) params.set("tool", tool);
    if (decision) params.set("decision", decision);
    if (kind) params.set("kind", kind);
    return params;
  }

  function setLogState(text, cls) {
    const node = $("log-state");
    node.textContent = text;
    node.className = `pill ${cls || ""}`;
  }

  function stopLog() {
    logGeneration += 1;
    if (logAbort) logAbort.abort();
    logAbort = null;
    setLogState("idle", "");
  }

  function restartLog() {
    stopLog();
    clear($("log-body"));
    show($("log-empty"), true);
    lastSeq = 0;
    logFilters = filterQuery().toString();
    const generation = logGeneration;
    const controller = new AbortController();
    logAbort = controller;
    runLog(generation, controller.signal).catch((err) => {
      if (generation === logGeneration && token && !(err && err.name === "AbortError")) {
        setError("live log", describe(err));
      }
    });
  }

  const sleep = (ms, signal) =>
    new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      if (signal) signal.addEventListener("abort", () => { clearTimeout(t); resolve(); }, { once: true });
    });

  async function runLog(generation, signal) {
    const alive = () => generation === logGeneration && token && !signal.aborted;
    const filters = filterQuery();
    // 1. The newest records.
    let backoff = 1000;
    for (;;) {
      if (!alive()) return;
      const params = new URLSearchParams(filters);
      params.set("limit", String(LOG_INITIAL));
      try {
        setLogState("loading", "");
        const response = await request("GET", `/api/v1/audit?${params}`, { signal });
        const data = await readJson(response);
        if (!alive()) return;
        if (response.status === 401) {
          signOut("Your admin token was refused (unknown or revoked); sign in again.");
          return;
        }
        if (!response.ok) throw new ApiError(response.status, (data && data.error) || `HTTP ${response.status}`, data);
        clearError("live log");
        const records = Array.isArray(data && data.records) ? data.records : [];
        records.sort((a, b) => (a.seq ?? 0) - (b.seq ?? 0));
        for (const r of records) addRecord(r);
        break;
      } catch (err) {
        if (err && err.name === "AbortError") return;
        if (!alive()) return;
        setError("live log", describe(err));
        setLogState("retrying", "bad");
        await sleep(backoff, signal);
        backoff = Math.min(backoff * 2, 10000);
      }
    }
    // 2. The stream, reconnecting after the last seen record.
    backoff = 1000;
    for (;;) {
      if (!alive()) return;
      const params = new URLSearchParams(filters);
      params.set("after", String(lastSeq));
      let gotAny = false;
      try {
        const response = await request("GET", `/api/v1/audit/stream?${params}`, { signal });
        if (!alive()) return;
        if (response.status === 401) {
          signOut("Your admin token was refused (unknown or revoked); sign in again.");
          return;
        }
        if (!response.ok || !response.body) {
          const data = await readJson(response);
          throw new ApiError(response.status, (data && data.error) || `HTTP ${response.status}`, data);
        }
        clearError("live log");
        setLogState("live", "good");
        backoff = 1000;
        await readSse(response.body, signal, (event) => {
          if (!alive()) return;
          gotAny = true;
          if (event.id && /^\d+$/.test(event.id) && Number(event.id) > lastSeq && !event.data) lastSeq = Number(event.id);
          if (event.type === "error") {
            let message = event.data;
            try {
              message = JSON.parse(event.data).error || event.data;
            } catch {
              // plain text
            }
            setError("live log", `stream: ${message}`);
            return;
          }
          if ((event.type === "record" || event.type === "message") && event.data) {
            let record;
            try {
              record = JSON.parse(event.data);
            } catch {
              return;
            }
            clearError("live log");
            addRecord(record);
          }
        });
        if (!alive()) return;
        setLogState("reconnecting", "bad");
      } catch (err) {
        if (err && err.name === "AbortError") return;
        if (!alive()) return;
        setError("live log", `stream: ${describe(err)}`);
        setLogState("reconnecting", "bad");
      }
      await sleep(gotAny ? 500 : backoff, signal);
      if (!gotAny) backoff = Math.min(backoff * 2, 10000);
    }
  }

  /** Reads a text/event-stream body, calling onEvent({type, id, data}) per event. Lines may be
   *  split across chunks; CR, LF and CRLF all end a line. */
  async function readSse(body, signal, onEvent) {
    const reader = body.getReader();
    const decoder = new TextDecoder("utf-8");
    let buffer = "";
    let type = "";
    let id = "";
    let data = [];
    const onLine = (line) => {
      if (line === "") {
        if (data.length || id) onEvent({ type: type || "message", id, data: data.join("\n") });
        type = "";
        data = [];
        id = "";
        return;
      }
      if (line.startsWith(":")) return; // comment, e.g. keep-alive
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "data") data.push(value);
      else if (field === "event") type = value;
      else if (field === "id") id = value;
    };
    const abort = () => reader.cancel().catch(() => {});
    signal.addEventListener("abort", abort, { once: true });
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let start = 0;
        for (let i = 0; i < buffer.length; i++) {
          const c = buffer[i];
          if (c === "\n" || c === "\r") {
            // A CR at the very end may be the first half of a CRLF: wait for more.
            if (c === "\r" && i === buffer.length - 1) break;
            onLine(buffer.slice(start, i));
            if (c === "\r" && buffer[i + 1] === "\n") i++;
            start = i + 1;
          }
        }
        buffer = buffer.slice(start);
      }
      buffer += decoder.decode();
      // An event not ended by a blank line is dropped, as EventSource does.
    } finally {
      signal.removeEventListener("abort", abort);
      try {
        reader.releaseLock();
      } catch {
        // ignore
      }
    }
  }

  function addRecord(r) {
    if (!r || typeof r.seq !== "number") return;
    if (r.seq <= lastSeq) return;
    lastSeq = r.seq;
    const body = $("log-body");
    const who = r.approver ? `${r.identity ?? r.grant_label ?? ""}${r.identity || r.grant_label ? " · " : ""}by ${r.approver}` : r.identity && r.grant_label && r.identity !== r.grant_label ? `${r.grant_label} / ${r.identity}` : r.identity ?? r.grant_label ?? "";
    const decision = r.decision ?? "";
    const tr = el(
      "tr",
      { dataset: { seq: r.seq, kind: r.kind ?? "", decision } },
      el("td", { className: "col-seq mono", text: r.seq }),
      el("td", { className: "col-time mono", title: fmtDateTime(r.at_ms), text: fmtTime(r.at_ms) }),
      el("td", { className: "col-kind", text: r.kind ?? "" }),
      el("td", { className: "col-server", text: r.server ?? "" }),
      el("td", { className: "col-tool mono", title: r.method ?? "", text: r.tool ?? r.method ?? "" }),
      el("td", { className: `col-decision ${decision ? `dec-${decision}` : ""}`, text: decision }),
      el("td", { className: "col-rule" }, r.rule ? el("code", { text: r.rule }) : null),
      el("td", { className: "col-message", title: r.message ?? "", text: r.message ?? "" }),
      el("td", { className: "col-who", text: who }),
      el("td", { className: `col-outcome ${r.outcome ? `out-${r.outcome}` : ""}`, text: r.outcome ?? "" }),
    );
    // Newest on top.
    body.prepend(tr);
    while (body.rows.length > LOG_MAX_ROWS) body.lastElementChild.remove();
    show($("log-empty"), false);
  }

  // ---------------------------------------------------------------------------------------
  // Wiring

  function init() {
    $("signin-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const value = $("token").value.trim();
      if (!value) {
        const errorNode = $("signin-error");
        errorNode.textContent = "paste an admin token first";
        show(errorNode, true);
        return;
      }
      signIn(value);
    });
    $("signout").addEventListener("click", () => signOut(null));
    $("banner-close").addEventListener("click", () => {
      errors.clear();
      renderBanner();
    });
    $("tools-reload").addEventListener("click", () => loadServers());
    const filters = $("log-filters");
    filters.addEventListener("submit", (ev) => ev.preventDefault());
    let toolTimer = null;
    const filtersChanged = () => {
      clearTimeout(toolTimer);
      if (token && filterQuery().toString() !== logFilters) restartLog();
    };
    for (const id of ["f-server", "f-decision", "f-kind", "f-tool"]) {
      $(id).addEventListener("change", filtersChanged);
    }
    $("f-tool").addEventListener("input", () => {
      clearTimeout(toolTimer);
      toolTimer = setTimeout(filtersChanged, 400);
    });

    let saved = null;
    try {
      saved = sessionStorage.getItem(TOKEN_KEY);
    } catch {
      saved = null;
    }
    if (saved) {
      show($("signin"), false);
      signIn(saved).then(() => {
        if (!token) {
          try {
            sessionStorage.removeItem(TOKEN_KEY);
          } catch {
            // ignore
          }
          show($("signin"), true);
        }
      });
    } else {
      show($("signin"), true);
      $("token").focus();
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
