// gatehouse admin UI: plain ES module, no dependencies, no inline code (the
// page's CSP allows only this origin's scripts and styles). It calls only the
// companion API (/api/v1/...) with the session cookie and listens on the
// admin socket (/api/v1/ws). Everything shown from the server goes through
// textContent; nothing from the server is ever parsed as HTML.

const $ = (id) => document.getElementById(id);

/** Builds an element: h("td", {class: "num"}, "3"). Children: strings or nodes. */
function h(tag, attrs = {}, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const kid of kids.flat()) {
    if (kid === undefined || kid === null || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

const fmtTime = (t) => {
  if (t === null || t === undefined || t === "") return "—";
  const d = typeof t === "number" ? new Date(t * 1000) : new Date(t);
  return isNaN(d) ? String(t) : d.toLocaleString();
};
const fmtAge = (secs) => {
  if (secs < 90) return `${Math.round(secs)} s`;
  if (secs < 5400) return `${Math.round(secs / 60)} min`;
  if (secs < 172800) return `${Math.round(secs / 3600)} h`;
  return `${Math.round(secs / 86400)} d`;
};

// ---- API -------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || "http_" + status;
    this.detail = e;
  }
}

function toLogin() {
  location.assign("/login?rd=" + encodeURIComponent(location.href));
}

async function api(method, path, body) {
  const opts = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  let data = null;
  try {
    data = await r.json();
  } catch {
    data = null;
  }
  if (r.status === 401) {
    // After the socket said this access ended, stay (the banner offers a new login).
    if (!ended) toLogin();
    throw new ApiError(401, data);
  }
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

/** An error as nodes: the message, the lines or parameters it names, a step-up link. */
function errorNodes(e) {
  const d = e.detail || {};
  const out = [h("span", {}, e.message)];
  if (Array.isArray(d.lines)) {
    out.push(h("ul", { class: "lines" }, d.lines.map((l) => h("li", {}, `line ${l.line}: ${l.message}`))));
  }
  if (Array.isArray(d.params)) {
    out.push(h("ul", { class: "lines" }, d.params.map((p) => h("li", {}, `${p.name}: ${p.message}`))));
  }
  if (d.login_url) out.push(" ", h("a", { href: d.login_url }, "Log in again with a second factor"));
  return out;
}

function showError(el, e) {
  el.replaceChildren(...(e ? errorNodes(e) : []));
}

// ---- State -----------------------------------------------------------------

let me = null;
let ended = false; // the admin socket was closed with 1008: this login is over
let hasActions = false; // any configured action this caller may run
let lastStats = null;
let current = null; // { id, refresh, topics }
const can = (p) => !!me && me.permissions.includes(p);
const canAny = (...ps) => ps.some(can);

const PAGES = [
  { id: "overview", title: "Overview", allowed: () => can("status:read"), render: overview },
  { id: "sessions", title: "Sessions", allowed: () => can("sessions:read"), render: sessions },
  { id: "allowlist", title: "Allowlist", allowed: () => can("allowlist:read"), render: allowlist },
  { id: "bans", title: "Bans", allowed: () => can("bans:read"), render: bans },
  { id: "audit", title: "Audit", allowed: () => can("audit:read"), render: audit },
  { id: "monitoring", title: "Monitoring", allowed: () => can("monitoring:read"), render: monitoring },
  {
    id: "controls",
    title: "Controls",
    allowed: () => canAny("control:services", "control:kill", "power:read"),
    render: controls,
  },
  { id: "actions", title: "Actions", allowed: () => hasActions, render: actions },
];

// ---- The confirmation modal -----------------------------------------------

/**
 * Asks before a change. `phrase`: the exact text to type (null: none);
 * `body`: nodes saying what will happen; `run(phrase)` does it and may throw
 * (the error stays in the modal). Resolves with run's result, or null.
 */
function confirmModal({ title, body, phrase, label, ok = "Confirm", run }) {
  const dlg = $("modal");
  const input = $("modal-phrase");
  const err = $("modal-error");
  $("modal-title").textContent = title;
  $("modal-body").replaceChildren(...body);
  $("modal-ok").textContent = ok;
  showError(err, null);
  input.value = "";
  const p = input.closest("p");
  p.hidden = !phrase;
  input.required = !!phrase;
  $("modal-phrase-label").textContent = phrase ? label || `Type ${phrase} to confirm` : "";
  return new Promise((resolve) => {
    const form = $("modal-form");
    const done = (v) => {
      form.removeEventListener("submit", submit);
      $("modal-cancel").removeEventListener("click", cancel);
      dlg.removeEventListener("cancel", cancel);
      if (dlg.open) dlg.close();
      resolve(v);
    };
    const cancel = (ev) => {
      ev.preventDefault();
      done(null);
    };
    const submit = async (ev) => {
      ev.preventDefault();
      $("modal-ok").disabled = true;
      showError(err, null);
      try {
        done(await run(input.value.trim()));
      } catch (e) {
        showError(err, e);
        (phrase ? input : $("modal-ok")).focus();
      } finally {
        $("modal-ok").disabled = false;
      }
    };
    form.addEventListener("submit", submit);
    $("modal-cancel").addEventListener("click", cancel);
    dlg.addEventListener("cancel", cancel);
    dlg.showModal();
    (phrase ? input : $("modal-ok")).focus();
  });
}

/** A phrase checked here, for operations whose API takes none (a service's name). */
function mustType(expected, typed) {
  if (typed !== expected) throw new ApiError(400, { error: { message: `type ${expected} exactly` } });
}

// ---- Small building blocks --------------------------------------------------

function table(columns, rows, empty = "Nothing here.") {
  if (!rows.length) return h("p", { class: "muted" }, empty);
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : null }, c.title)))),
      h(
        "tbody",
        {},
        rows.map((r) => h("tr", {}, columns.map((c) => h("td", { class: c.num ? "num" : null }, c.cell(r))))),
      ),
    ),
  );
}

function card(title, ...kids) {
  return h("section", { class: "card" }, h("h2", {}, title), ...kids);
}

/** A data area that reloads itself, showing errors in place. */
function loader(fill) {
  const box = h("div", { "aria-live": "polite" });
  const refresh = async () => {
    try {
      box.replaceChildren(...[await fill()].flat());
    } catch (e) {
      box.replaceChildren(h("p", { class: "error" }, ...errorNodes(e)));
    }
  };
  return { box, refresh };
}

function field(label, input) {
  return h("label", {}, label, input);
}

function stateClass(s) {
  return { running: "ok", on: "ok", On: "ok", ok: "ok", succeeded: "ok", stopped: "muted", off: "muted", Off: "muted" }[s] ||
    (s === "failed" || s === "timed_out" || s === "refused" ? "bad" : "warn");
}

/** What an operation did: its result and each step (service stops, commands, power steps). */
function outcomeNodes(o) {
  if (!o) return [];
  const steps = Array.isArray(o.steps) ? o.steps : [...(o.services || []), ...(o.after || [])];
  const text = (v) => (v === undefined || v === null ? "" : typeof v === "string" ? v : JSON.stringify(v));
  return [
    h("p", {}, "Result: ", h("strong", { class: stateClass(o.result || o.state) }, o.result || o.state || "?")),
    steps.length
      ? h("ul", { class: "lines" }, steps.map((s) =>
          h("li", {}, [s.step || s.service || (s.argv || []).join(" "), s.result, text(s.detail)].filter(Boolean).join(" — "))))
      : null,
  ];
}

// ---- Pages -----------------------------------------------------------------

function overview(main) {
  const stats = h("div", { class: "grid", id: "live-stats" });
  const data = loader(async () => {
    const s = await api("GET", "/api/v1/status");
    const chain = s.audit || {};
    const v = chain.last_verification;
    return h(
      "div",
      { class: "grid" },
      card("gatehouse", h("p", {}, `version ${s.version}`), h("p", { class: "muted" }, `up ${fmtAge(s.uptime_secs)}`)),
      card(
        "Store",
        h("p", { class: s.store.reachable ? "ok" : "bad" }, `${s.store.backend}: ${s.store.reachable ? "reachable" : "unreachable"}`),
      ),
      card(
        "Issuers",
        h("ul", { class: "lines" }, (s.issuers || []).map((i) => h("li", { class: i.keys_loaded ? "" : "bad" }, `${i.issuer}: ${i.keys} key(s)`))),
      ),
      card(
        "Audit chain",
        h("p", {}, `${chain.entries} entries, ${chain.since_checkpoint} since the last checkpoint`),
        v ? h("p", { class: v.ok ? "ok" : "bad" }, `last verified ${fmtTime(v.at)}: ${v.ok ? "intact" : "BROKEN"}`) : h("p", { class: "muted" }, "not verified yet"),
      ),
      card("Sessions", h("p", { class: "big" }, String(s.sessions.active)), h("p", { class: "muted" }, "active")),
      card(
        "Services",
        (s.services || []).length
          ? h("ul", { class: "lines" }, s.services.map((x) => h("li", {}, `${x.name}: `, h("span", { class: stateClass(x.state) }, x.state))))
          : h("p", { class: "muted" }, "none configured"),
      ),
      card(
        "Power",
        (s.power || []).length
          ? h("ul", { class: "lines" }, s.power.map((m) => h("li", {}, `${m.name}: `, h("span", { class: stateClass(m.power_state) }, m.power_state || "?"))))
          : h("p", { class: "muted" }, "none configured"),
      ),
    );
  });
  main.append(h("h1", {}, "Overview"), h("h2", {}, "Live"), stats, h("h2", {}, "Status"), data.box);
  showStats();
  askStats();
  return { refresh: data.refresh, topics: ["control", "sessions", "audit"] };
}

/** Fills the overview's live cards from the last stats_update. */
function showStats() {
  const box = document.getElementById("live-stats");
  if (!box) return;
  const s = lastStats;
  if (!s) {
    box.replaceChildren(h("p", { class: "muted" }, "waiting for the live stream…"));
    return;
  }
  const d = s.decisions_per_second || {};
  const total = Math.round(((d.allow || 0) + (d.unauthenticated || 0) + (d.forbidden || 0)) * 10) / 10;
  box.replaceChildren(
    card(
      "Decisions / s",
      h("p", { class: "big", id: "stat-decisions" }, String(total)),
      h("p", { class: "muted" }, `allowed ${d.allow || 0} · unauthenticated ${d.unauthenticated || 0} · forbidden ${d.forbidden || 0}`),
    ),
    card("Active sessions", h("p", { class: "big", id: "stat-sessions" }, String(s.active_sessions))),
    card("Bans in force", h("p", { class: "big" }, String(s.bans))),
    card("Allowlist entries", h("p", { class: "big" }, String(s.allowlist_entries))),
    card("Kill switch", h("p", { class: s.kill_switch.engaged ? "bad big" : "ok big", id: "stat-kill" }, s.kill_switch.engaged ? "ENGAGED" : "off")),
  );
}

function sessions(main) {
  const filter = h("input", { id: "session-user", type: "search", placeholder: "user", autocomplete: "off" });
  const data = loader(async () => {
    const user = filter.value.trim();
    const q = user ? "?user=" + encodeURIComponent(user) : "";
    const list = (await api("GET", "/api/v1/sessions" + q)).sessions;
    const now = Date.now() / 1000;
    const cols = [
      { title: "User", cell: (s) => s.user },
      { title: "Client", cell: (s) => s.client_addr || "—" },
      { title: "Second factor", cell: (s) => ((s.amr || []).length ? s.amr.join(", ") : s.acr || "—") },
      { title: "Started", cell: (s) => fmtTime(s.created_at) },
      { title: "Last seen", cell: (s) => `${fmtAge(now - s.last_seen)} ago` },
      { title: "Expires", cell: (s) => fmtTime(s.expires_at) },
    ];
    if (can("sessions:terminate")) {
      cols.push({
        title: "",
        cell: (s) =>
          h("button", { type: "button", "data-session": s.id, "aria-label": `Terminate ${s.user}'s session from ${s.client_addr || "unknown"}`, onclick: () => terminate(s) }, "Terminate"),
      });
    }
    return [h("p", { class: "muted" }, `${list.length} live session(s)`), table(cols, list, "No live sessions.")];
  });
  const terminate = (s) =>
    confirmModal({
      title: `Terminate ${s.user}'s session?`,
      body: [h("p", {}, `The browser at ${s.client_addr || "an unknown address"} is refused from its next request, and its admin socket closes.`)],
      phrase: null,
      ok: "Terminate",
      run: () => api("DELETE", "/api/v1/sessions/" + encodeURIComponent(s.id)),
    }).then((r) => r && data.refresh());
  const all = () => {
    const user = filter.value.trim();
    return confirmModal({
      title: user ? `Terminate every session of ${user}?` : "Terminate every session?",
      body: [
        h("p", {}, user ? `Every browser session of ${user} ends, and every token issued to ${user} up to now is refused.` : "Every browser session ends, yours too: everybody must log in again."),
      ],
      phrase: user || "TERMINATE_ALL",
      run: (typed) => {
        mustType(user || "TERMINATE_ALL", typed);
        return api("POST", "/api/v1/sessions/terminate-all" + (user ? "?user=" + encodeURIComponent(user) : ""), {});
      },
    }).then((r) => r && data.refresh());
  };
  filter.addEventListener("input", debounce(data.refresh, 300));
  main.append(
    h("h1", {}, "Sessions"),
    h(
      "form",
      { class: "inline", onsubmit: (e) => e.preventDefault() },
      field("Filter by user", filter),
      can("sessions:terminate") ? h("button", { type: "button", id: "terminate-all", class: "danger", onclick: all }, "Terminate all…") : null,
    ),
    data.box,
  );
  return { refresh: data.refresh, topics: ["sessions"] };
}

function allowlist(main) {
  const data = loader(async () => {
    const l = await api("GET", "/api/v1/allowlist");
    const cols = [
      { title: "Network", cell: (e) => h("code", {}, e.cidr) },
      { title: "Description", cell: (e) => e.description },
      { title: "Added by", cell: (e) => e.created_by },
      { title: "Expires", cell: (e) => (e.expired ? h("span", { class: "bad" }, "expired") : fmtTime(e.expires_at)) },
    ];
    if (can("allowlist:write")) {
      cols.push({
        title: "",
        cell: (e) =>
          e.read_only
            ? h("span", { class: "muted" }, "configuration")
            : h("button", { type: "button", "data-remove": e.cidr, "aria-label": `Remove ${e.cidr}`, onclick: () => remove(e) }, "Remove"),
      });
    }
    return [
      h("p", {}, "Enforced: ", h("strong", { class: l.enforced ? "ok" : "muted" }, l.enforced ? "yes — only these addresses pass" : "no (the list is kept, not enforced)")),
      table(cols, l.entries, "No entries."),
    ];
  });
  const remove = (e) =>
    confirmModal({
      title: `Remove ${e.cidr}?`,
      body: [h("p", {}, removalNote())],
      phrase: null,
      ok: "Remove",
      run: () => api("DELETE", "/api/v1/allowlist/" + encodeURIComponent(e.id)),
    }).then((r) => r && data.refresh());
  main.append(h("h1", {}, "Allowlist"));
  if (can("allowlist:write")) {
    const cidr = h("input", { id: "allow-cidr", required: true, placeholder: "192.0.2.0/24", autocomplete: "off" });
    const desc = h("input", { id: "allow-desc", placeholder: "office", maxlength: 256 });
    const exp = h("input", { id: "allow-expires", type: "datetime-local" });
    const err = h("p", { class: "error", role: "alert" });
    const add = async (ev) => {
      ev.preventDefault();
      showError(err, null);
      try {
        const body = { cidr: cidr.value.trim(), description: desc.value.trim() };
        if (exp.value) body.expires_at = new Date(exp.value).toISOString().replace(/\.\d{3}Z$/, "Z");
        await api("POST", "/api/v1/allowlist", body);
        cidr.value = desc.value = exp.value = "";
        data.refresh();
      } catch (e) {
        showError(err, e);
      }
    };
    const text = h("textarea", { id: "allow-import", placeholder: "192.0.2.0/24  # office\n2001:db8::/32 # lab" });
    const ierr = h("div", { class: "error", role: "alert", id: "import-errors" });
    const importAll = async (ev) => {
      ev.preventDefault();
      showError(ierr, null);
      // Sent as JSON (a cookie-authenticated change must be JSON); the
      // server's entry numbers are mapped back to the lines typed here.
      const lines = [];
      text.value.split("\n").forEach((l, i) => {
        const [c, ...rest] = l.split("#");
        if (c.trim()) lines.push({ line: i + 1, entry: { cidr: c.trim(), description: rest.join("#").trim() } });
      });
      try {
        const r = await api("POST", "/api/v1/allowlist/import", lines.map((x) => x.entry));
        text.value = "";
        ierr.replaceChildren(h("span", { class: "ok" }, `imported ${r.imported} entries`));
        data.refresh();
      } catch (e) {
        if (Array.isArray(e.detail.lines)) e.detail.lines = e.detail.lines.map((x) => ({ ...x, line: lines[x.line - 1] ? lines[x.line - 1].line : x.line }));
        showError(ierr, e);
      }
    };
    main.append(
      h("form", { class: "inline", onsubmit: add, "aria-label": "Add an entry" }, field("Network (CIDR)", cidr), field("Description", desc), field("Expires (optional)", exp), h("button", { type: "submit", class: "primary", id: "allow-add" }, "Add")),
      err,
    );
    main.append(
      h("details", {}, h("summary", {}, "Import many (one network a line, # comment = description; all or nothing)"),
        h("form", { onsubmit: importAll }, h("label", { for: "allow-import" }, "Networks"), text, h("p", {}, h("button", { type: "submit", id: "allow-import-go" }, "Import")), ierr)),
    );
  }
  main.append(data.box);
  return { refresh: data.refresh, topics: ["allowlist"] };
}

function removalNote() {
  return "Addresses in this network are no longer allowed through it (if the allowlist is enforced, they are refused from their next request).";
}

function bans(main) {
  const data = loader(async () => {
    const list = (await api("GET", "/api/v1/bans")).bans;
    const cols = [
      { title: "Kind", cell: (b) => b.kind },
      { title: "Who", cell: (b) => h("code", {}, b.value) },
      { title: "Reason", cell: (b) => b.reason },
      { title: "Failures", num: true, cell: (b) => String(b.failures ?? "") },
      { title: "Since", cell: (b) => fmtTime(b.created_at) },
      { title: "Until", cell: (b) => fmtTime(b.expires_at) },
    ];
    if (can("bans:write")) {
      cols.push({
        title: "",
        cell: (b) =>
          h("button", { type: "button", "aria-label": `Lift the ban of ${b.value}`, onclick: () => lift(b) }, "Lift"),
      });
    }
    return table(cols, list, "No bans in force.");
  });
  const lift = (b) =>
    confirmModal({
      title: `Lift the ban of ${b.value}?`,
      body: [h("p", {}, "Its next request is decided as any other.")],
      phrase: null,
      ok: "Lift",
      run: () => api("DELETE", "/api/v1/bans/" + encodeURIComponent(b.id)),
    }).then((r) => r && data.refresh());
  main.append(h("h1", {}, "Bans"));
  if (can("bans:write")) {
    const kind = h("select", { id: "ban-kind" }, h("option", { value: "ip" }, "address"), h("option", { value: "user" }, "user"));
    const value = h("input", { id: "ban-value", required: true, autocomplete: "off" });
    const dur = h("input", { id: "ban-duration", value: "1h", size: 6 });
    const reason = h("input", { id: "ban-reason", placeholder: "why" });
    const err = h("p", { class: "error", role: "alert" });
    const add = async (ev) => {
      ev.preventDefault();
      showError(err, null);
      try {
        await api("POST", "/api/v1/bans", { kind: kind.value, value: value.value.trim(), duration: dur.value.trim(), reason: reason.value.trim() || undefined });
        value.value = reason.value = "";
        data.refresh();
      } catch (e) {
        showError(err, e);
      }
    };
    main.append(
      h("form", { class: "inline", onsubmit: add, "aria-label": "Ban" }, field("Kind", kind), field("Address or user", value), field("For", dur), field("Reason", reason), h("button", { type: "submit", class: "danger" }, "Ban")),
      err,
    );
  }
  main.append(data.box);
  return { refresh: data.refresh, topics: ["bans"] };
}

function audit(main) {
  const actor = h("input", { id: "audit-actor", type: "search", autocomplete: "off" });
  const action = h("input", { id: "audit-action", type: "search", placeholder: "e.g. session.terminate", autocomplete: "off" });
  const verifyOut = h("div", { id: "audit-verify", role: "status" });
  let before = null;
  const pages = [];
  const data = loader(async () => {
    const q = new URLSearchParams({ limit: "50" });
    if (actor.value.trim()) q.set("actor", actor.value.trim());
    if (action.value.trim()) q.set("action", action.value.trim());
    if (before) q.set("before", before);
    const r = await api("GET", "/api/v1/audit?" + q);
    const cols = [
      { title: "#", num: true, cell: (e) => String(e.seq) },
      { title: "Time", cell: (e) => fmtTime(e.time) },
      { title: "Actor", cell: (e) => `${e.actor}${e.actor_addr ? " (" + e.actor_addr + ")" : ""}` },
      { title: "Action", cell: (e) => h("code", {}, e.action) },
      { title: "Target", cell: (e) => e.target },
      { title: "Result", cell: (e) => h("span", { class: stateClass(e.result) }, e.result) },
      { title: "Details", cell: (e) => h("code", {}, JSON.stringify(e.details)) },
    ];
    const nav = h(
      "p",
      { class: "actions" },
      pages.length ? h("button", { type: "button", onclick: () => { before = pages.pop(); data.refresh(); } }, "Newer") : null,
      r.next_before ? h("button", { type: "button", onclick: () => { pages.push(before); before = r.next_before; data.refresh(); } }, "Older") : null,
    );
    return [table(cols, r.entries, "No entries match."), nav];
  });
  const verify = async () => {
    verifyOut.replaceChildren(h("span", { class: "muted" }, "verifying…"));
    try {
      const v = await api("GET", "/api/v1/audit/verify");
      verifyOut.replaceChildren(h("p", { class: v.ok ? "ok" : "bad" }, v.message));
    } catch (e) {
      showError(verifyOut, e);
    }
  };
  const search = debounce(() => { before = null; pages.length = 0; data.refresh(); }, 300);
  actor.addEventListener("input", search);
  action.addEventListener("input", search);
  main.append(
    h("h1", {}, "Audit log"),
    h("form", { class: "inline", onsubmit: (e) => e.preventDefault() }, field("Actor", actor), field("Action", action), h("button", { type: "button", id: "audit-verify-go", onclick: verify }, "Verify the chain")),
    verifyOut,
    data.box,
  );
  return { refresh: () => (before ? null : data.refresh()), topics: ["audit", "sessions", "bans", "allowlist", "control"] };
}

function monitoring(main) {
  const windowSel = h("select", { id: "usage-window" }, ["15m", "1h", "6h", "24h", "7d"].map((w) => h("option", { value: w, selected: w === "1h" }, w)));
  const data = loader(async () => {
    const u = await api("GET", "/api/v1/monitoring/usage?window=" + windowSel.value);
    const group = (title, rows) =>
      h("section", {}, h("h2", {}, title), table(
        [
          { title: "", cell: (r) => r.key },
          { title: "Requests", num: true, cell: (r) => String(r.requests) },
          { title: "Denials", num: true, cell: (r) => String(r.denials) },
        ],
        rows.slice(0, 20),
        "None.",
      ));
    return [
      h("div", { class: "grid" }, card("Requests", h("p", { class: "big" }, String(u.requests))), card("Denials", h("p", { class: "big bad" }, String(u.denials)))),
      h("h2", {}, `Over time (${u.series.step_secs / 60} min slots)`),
      chart(u.series, u.window),
      h("p", { class: "legend" }, h("span", { class: "req" }, "requests"), h("span", { class: "den" }, "denials")),
      h("div", { class: "grid" }, group("By user", u.by_user), group("By host", u.by_host), group("By rule", u.by_rule), group("By reason", u.by_reason)),
    ];
  });
  windowSel.addEventListener("change", data.refresh);
  main.append(h("h1", {}, "Monitoring"), h("form", { class: "inline" }, field("Window", windowSel)), data.box);
  return { refresh: data.refresh, topics: [] };
}

/** Requests and denials per slot as SVG bars (attributes, not inline styles). */
function chart(series, win) {
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  const from = Date.parse(win.from) / 1000;
  const to = Date.parse(win.to) / 1000;
  const step = series.step_secs;
  const slots = Math.max(1, Math.ceil((to - from) / step));
  const max = Math.max(1, ...series.points.map((p) => p.requests));
  svg.setAttribute("viewBox", `0 0 ${slots * 10} 100`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `requests and denials over time, at most ${max} requests in one slot`);
  const bar = (cls, i, v) => {
    const r = document.createElementNS(NS, "rect");
    const hgt = (v / max) * 96;
    r.setAttribute("class", cls);
    r.setAttribute("x", String(i * 10 + 1));
    r.setAttribute("width", "8");
    r.setAttribute("y", String(100 - hgt));
    r.setAttribute("height", String(hgt));
    const t = document.createElementNS(NS, "title");
    t.textContent = `${v} ${cls === "req" ? "requests" : "denials"}`;
    r.append(t);
    svg.append(r);
  };
  for (const p of series.points) {
    const i = Math.min(slots - 1, Math.floor((Date.parse(p.from) / 1000 - from) / step));
    bar("req", i, p.requests);
    if (p.denials) bar("den", i, p.denials);
  }
  return svg;
}

function controls(main) {
  main.append(h("h1", {}, "Controls"));
  const outcome = h("div", { id: "control-outcome", role: "status", "aria-live": "polite" });
  const parts = [];
  if (can("control:kill")) {
    const kill = loader(async () => {
      const k = await api("GET", "/api/v1/control/kill-switch");
      return card(
        "Kill switch",
        h("p", { class: k.engaged ? "bad big" : "ok big", id: "kill-state" }, k.engaged ? "ENGAGED" : "off"),
        k.engaged ? h("p", {}, `by ${k.engaged_by} at ${fmtTime(k.engaged_at)}`) : null,
        h("p", { class: "muted" }, `Stops: ${k.services.length ? k.services.join(", ") : "no services"}${k.engage_deny ? "; every request is denied while engaged" : ""}.`),
        h(
          "div",
          { class: "actions" },
          k.engaged
            ? h("button", { type: "button", id: "kill-release", onclick: () => release() }, "Release…")
            : h("button", { type: "button", id: "kill-press", class: "danger", onclick: () => press(k) }, "Emergency stop…"),
        ),
      );
    });
    const reason = h("input", { id: "kill-reason", maxlength: 500, placeholder: "what is wrong" });
    const press = (k) =>
      confirmModal({
        title: "Emergency stop",
        body: [
          h("p", {}, "This will:"),
          h("ul", { class: "lines" },
            k.services.map((s) => h("li", {}, `stop ${s}`)),
            k.engage_deny ? h("li", {}, "deny every request through the proxies until released") : null),
          h("p", {}, field("Reason (for the audit log)", reason)),
        ],
        phrase: "CONFIRM_EMERGENCY_STOP",
        ok: "Stop everything",
        run: (typed) => api("POST", "/api/v1/control/kill-switch", { confirm: typed, reason: reason.value.trim() || undefined }),
      }).then((r) => {
        if (r) outcome.replaceChildren(h("h2", {}, "Kill switch"), ...outcomeNodes(r.run || r));
        kill.refresh();
      });
    const release = () =>
      confirmModal({
        title: "Release the kill switch?",
        body: [h("p", {}, "Requests are decided by the rules again. Stopped services stay stopped until started.")],
        phrase: null,
        ok: "Release",
        run: () => api("POST", "/api/v1/control/kill-switch/release", {}),
      }).then(() => kill.refresh());
    parts.push(kill);
    main.append(kill.box);
  }
  if (can("control:services")) {
    const svc = loader(async () => {
      const list = (await api("GET", "/api/v1/control/services")).services;
      return [h("h2", {}, "Services"), table(
        [
          { title: "Service", cell: (s) => s.name },
          { title: "State", cell: (s) => h("span", { class: stateClass(s.state) }, s.state + (s.sub_state ? ` (${s.sub_state})` : "")) },
          { title: "Since", cell: (s) => fmtTime(s.since) },
          { title: "Last action", cell: (s) => (s.last_action ? `${s.last_action.action} by ${s.last_action.by}: ${s.last_action.result}` : "—") },
          {
            title: "",
            cell: (s) => h("div", { class: "actions" }, ["start", "stop", "restart"].map((a) =>
              h("button", { type: "button", "data-service": s.name, "data-op": a, onclick: () => act(s, a) }, a))),
          },
        ],
        list,
        "No services configured.",
      )];
    });
    const act = (s, a) =>
      confirmModal({
        title: `${a[0].toUpperCase() + a.slice(1)} ${s.name}?`,
        body: [h("p", {}, `Runs the configured ${a} of ${s.name} (${s.backend}); it is now ${s.state}.`)],
        phrase: s.name,
        label: `Type the service's name, ${s.name}, to confirm`,
        ok: a,
        run: (typed) => {
          mustType(s.name, typed);
          return api("POST", `/api/v1/control/services/${encodeURIComponent(s.name)}/${a}`, {});
        },
      }).then((r) => {
        if (r) outcome.replaceChildren(h("h2", {}, `${s.name}: ${a}`), ...outcomeNodes(r.outcome || r));
        svc.refresh();
      });
    parts.push(svc);
    main.append(svc.box);
  }
  if (can("power:read")) {
    const power = loader(async () => {
      const list = (await api("GET", "/api/v1/control/power")).machines;
      return [h("h2", {}, "Power"), table(
        [
          { title: "Machine", cell: (m) => m.name },
          { title: "Via", cell: (m) => m.backend },
          { title: "Power", cell: (m) => h("span", { class: stateClass(m.power_state) }, m.power_state + (m.error ? ` — ${m.error}` : "")) },
          { title: "Services on it", cell: (m) => m.services.join(", ") || "—" },
          {
            title: "",
            cell: (m) => can("power:control")
              ? h("div", { class: "actions" }, ["on", "off", "reset"].map((op) => h("button", { type: "button", "data-machine": m.name, "data-op": op, class: op === "on" ? null : "danger", onclick: () => powerOp(m, op) }, op)))
              : null,
          },
        ],
        list,
        "No machines configured.",
      )];
    });
    const force = h("input", { type: "checkbox", id: "power-force" });
    const powerOp = (m, op) => {
      const phrase = { on: m.name, off: "CONFIRM_POWER_OFF", reset: "CONFIRM_POWER_RESET" }[op];
      force.checked = false;
      const what = {
        on: [h("p", {}, `Powers ${m.name} on.`)],
        off: [
          h("p", {}, `Stops ${m.services.join(", ") || "no services"} first, then shuts ${m.name} down gracefully.`),
          h("p", {}, h("label", {}, force, " Force: cut the power at once, without stopping anything")),
        ],
        reset: [h("p", {}, `Resets ${m.name} at once: whatever runs on it is interrupted.`)],
      }[op];
      return confirmModal({
        title: `Power ${op}: ${m.name}`,
        body: what,
        phrase,
        label: op === "on" ? `Type the machine's name, ${m.name}, to confirm` : undefined,
        ok: `Power ${op}`,
        run: (typed) => {
          if (op === "on") {
            mustType(m.name, typed);
            return api("POST", `/api/v1/control/power/${encodeURIComponent(m.name)}/on`, {});
          }
          return api("POST", `/api/v1/control/power/${encodeURIComponent(m.name)}/${op}`, { confirm: typed, force: op === "off" && force.checked });
        },
      }).then((r) => {
        if (r) outcome.replaceChildren(h("h2", {}, `${m.name}: power ${op}`), ...outcomeNodes(r.outcome || r));
        power.refresh();
      });
    };
    parts.push(power);
    main.append(power.box);
  }
  main.append(outcome);
  return { refresh: () => parts.forEach((p) => p.refresh()), topics: ["control"] };
}

function actions(main) {
  const out = h("div", { id: "action-run", role: "status", "aria-live": "polite" });
  const data = loader(async () => {
    const list = (await api("GET", "/api/v1/actions")).actions;
    if (!list.length) return h("p", { class: "muted" }, "No actions you may run.");
    return h("div", { class: "grid" }, list.map(actionCard));
  });
  const actionCard = (a) => {
    const inputs = {};
    const err = h("div", { class: "error", role: "alert" });
    const fields = Object.entries(a.params || {}).map(([name, p]) => {
      let input;
      if (p.type === "enum") input = h("select", { name }, p.values.map((v) => h("option", { value: v }, v)));
      else if (p.type === "integer") input = h("input", { name, type: "number", min: p.min, max: p.max, required: true });
      else input = h("input", { name, pattern: p.pattern, maxlength: p.max_len, required: true, autocomplete: "off" });
      inputs[name] = [input, p.type];
      return field(`${name}${p.description ? " — " + p.description : ""}`, input);
    });
    const run = async (ev) => {
      ev.preventDefault();
      showError(err, null);
      const params = {};
      for (const [n, [input, type]] of Object.entries(inputs)) params[n] = type === "integer" ? Number(input.value) : input.value;
      try {
        const r = await api("POST", `/api/v1/actions/${encodeURIComponent(a.name)}/run`, { params });
        follow(r.id);
      } catch (e) {
        showError(err, e);
      }
    };
    return h("form", { class: "card", onsubmit: run, "aria-label": a.name },
      h("h2", {}, a.name), a.description ? h("p", { class: "muted" }, a.description) : null,
      ...fields, h("p", {}, h("button", { type: "submit", class: "primary" }, "Run")), err);
  };
  const follow = async (id) => {
    for (;;) {
      const r = (await api("GET", "/api/v1/actions/runs/" + encodeURIComponent(id))).run;
      out.replaceChildren(
        h("h2", {}, `${r.action}: `, h("span", { class: stateClass(r.state) }, r.state), r.exit_code !== null ? ` (exit ${r.exit_code})` : ""),
        h("pre", { class: "output" }, r.output || "(no output)"),
      );
      if (r.state !== "running") return;
      await new Promise((res) => setTimeout(res, 1000));
    }
  };
  main.append(h("h1", {}, "Actions"), data.box, out);
  return { refresh: data.refresh, topics: [] };
}

// ---- Live: the admin socket --------------------------------------------------

function debounce(f, ms) {
  let t = null;
  return (...a) => {
    clearTimeout(t);
    t = setTimeout(() => f(...a), ms);
  };
}

// Refreshes the page an event was for, unless the user has moved on since.
const refreshSoon = debounce((id) => current && current.id === id && current.refresh && current.refresh(), 300);

function setLive(state, text) {
  const el = $("live");
  el.className = "live " + state;
  el.textContent = text;
  el.dataset.state = state;
}

let attempt = 0;
let socket = null;

/** Fresh numbers for the overview now, not at the next interval. */
function askStats() {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "get_stats" }));
}

function connect() {
  const url = (location.protocol === "https:" ? "wss:" : "ws:") + "//" + location.host + "/api/v1/ws";
  const ws = new WebSocket(url);
  socket = ws;
  let opened = false;
  ws.addEventListener("open", () => {
    opened = true;
    attempt = 0;
    setLive("connected", "live");
  });
  ws.addEventListener("message", (m) => {
    let msg;
    try {
      msg = JSON.parse(m.data);
    } catch {
      return;
    }
    if (msg.type === "stats_update") {
      lastStats = msg;
      showStats();
    } else if (msg.type === "connection_established") {
      ws.send(JSON.stringify({ type: "get_stats" }));
    } else if (msg.type === "event" && current && current.topics.includes(msg.topic)) {
      refreshSoon(current.id);
      if (current.id === "overview") askStats();
    }
  });
  ws.addEventListener("close", async (ev) => {
    if (ev.code === 1008) {
      ended = true;
      setLive("ended", `closed: ${ev.reason} (1008)`);
      const b = $("banner");
      b.replaceChildren(`Your access has ended (${ev.reason}). `, h("a", { href: "/login?rd=" + encodeURIComponent(location.href) }, "Log in again"));
      b.hidden = false;
      return;
    }
    // Reconnect with exponential backoff and jitter; the view may be stale meanwhile.
    attempt += 1;
    const delay = Math.min(30000, 1000 * 2 ** Math.min(attempt - 1, 5)) * (0.5 + Math.random() / 2);
    setLive("stale", `reconnecting in ${Math.ceil(delay / 1000)} s — the view may be stale`);
    if (!opened) {
      // Refused before the upgrade (the browser cannot tell why): is the login gone?
      try {
        await api("GET", "/api/v1/me");
      } catch {
        return;
      }
    }
    setTimeout(connect, delay);
  });
}

// ---- Start -------------------------------------------------------------------

function route() {
  const allowed = PAGES.filter((p) => p.allowed());
  const id = location.hash.replace(/^#\/?/, "");
  const page = allowed.find((p) => p.id === id) || allowed[0];
  for (const a of $("nav").querySelectorAll("a")) {
    if (a.dataset.page === page.id) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const main = $("main");
  main.replaceChildren();
  document.title = `${page.title} — gatehouse admin`;
  current = { id: page.id, ...page.render(main) };
  if (current.refresh) current.refresh();
  $("nav").classList.remove("open");
  $("menu").setAttribute("aria-expanded", "false");
}

async function start() {
  try {
    me = await api("GET", "/api/v1/me");
  } catch (e) {
    if (e.status !== 401) $("main").replaceChildren(h("p", { class: "error" }, ...errorNodes(e)));
    return;
  }
  $("user").textContent = me.user;
  try {
    hasActions = me.permissions.length > 0 && (await api("GET", "/api/v1/actions")).actions.length > 0;
  } catch {
    hasActions = false;
  }
  $("logout").href = "/logout?rd=" + encodeURIComponent(location.origin + "/ui/");
  const allowed = PAGES.filter((p) => p.allowed());
  if (!allowed.length) {
    $("main").replaceChildren(h("h1", {}, "No access"), h("p", {}, `${me.user} holds no admin permission.`));
    return;
  }
  $("nav").replaceChildren(...allowed.map((p) => h("a", { href: `#/${p.id}`, "data-page": p.id }, p.title)));
  $("menu").addEventListener("click", () => {
    const open = $("nav").classList.toggle("open");
    $("menu").setAttribute("aria-expanded", String(open));
  });
  window.addEventListener("hashchange", route);
  route();
  connect();
}

start();
