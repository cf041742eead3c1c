// NOC board: a snapshot from /api/v1/board, live changes from the SSE stream, SLA countdowns.
// Plain browser JavaScript, no build step. Every string from the server goes in as text.
"use strict";

(function () {
  const API = "/api/v1";
  const TOKEN_KEY = "gateway.token";
  const LANG_KEY = "gateway.lang";
  const REFRESH_MS = 30000;   // snapshot refresh: business calendars and drift
  const RETRY_MS = 2000;

  const I18N = {
    en: {
      title: "NOC board", alarms: "Active alarms", tickets: "Open tickets", devices: "Devices",
      online: "live", offline: "offline", reconnecting: "reconnecting…", liveTitle: "live change stream",
      level1: "Level 1 · critical", level2: "Level 2 · major", level3: "Level 3 · minor", level4: "Level 4 · warning",
      noAlarms: "No active alarms.", noTickets: "No open tickets.", noDevices: "No devices.",
      ack: "Ack", ackAlarm: "Ack", arrive: "Arrive", resolve: "Resolve", unacked: "new", count: "×",
      ticket: "ticket", site: "site", lastSeen: "last", since: "since",
      response: "Response", dispatch: "Dispatch", solution: "Solution", on_site: "On site", restore: "Restore", report: "Report",
      st_open: "open", st_acknowledged: "acknowledged", st_solution_proposed: "solution proposed",
      st_on_site: "on site", st_restored: "restored", st_closed: "closed", paused: "paused",
      cs_met: "met", cs_breached: "breached", cs_paused: "paused", cs_waiting: "not started", cs_not_needed: "not needed",
      overdue: "overdue",
      lv_alive: "alive", lv_lost: "lost", lv_unmonitored: "unmonitored",
      tokenTitle: "API token", save: "Save", forget: "Forget token",
      tokenHelp: "Enter a token from [[api.tokens]]. A viewer token shows the board; an operator token can also act. It is kept in this browser only.",
      badToken: "This token was refused.", viewerOnly: "This token is a viewer: acting needs an operator token.",
      done: "done", failed: "failed", queue: "queue", shed: "shed", store: "store", storeBad: "STORE DOWN",
      warningMsg: "SLA warning", breachMsg: "SLA BREACH", dropped: "stream dropped",
      role_viewer: "viewer", role_operator: "operator",
    },
    zh: {
      title: "NOC 监控看板", alarms: "活动告警", tickets: "未关闭工单", devices: "设备",
      online: "实时", offline: "离线", reconnecting: "重新连接中…", liveTitle: "实时变更流",
      level1: "一级故障", level2: "二级故障", level3: "三级故障", level4: "四级故障",
      noAlarms: "没有活动告警。", noTickets: "没有未关闭的工单。", noDevices: "没有设备。",
      ack: "响应", ackAlarm: "确认", arrive: "到场", resolve: "恢复", unacked: "未确认", count: "×",
      ticket: "工单", site: "站点", lastSeen: "最近", since: "开始",
      response: "响应", dispatch: "派工", solution: "方案", on_site: "到场", restore: "恢复", report: "报告",
      st_open: "待响应", st_acknowledged: "已响应", st_solution_proposed: "已提方案",
      st_on_site: "已到场", st_restored: "已恢复", st_closed: "已关闭", paused: "已暂停",
      cs_met: "达标", cs_breached: "超时", cs_paused: "暂停", cs_waiting: "未开始", cs_not_needed: "无需",
      overdue: "已超时",
      lv_alive: "在线", lv_lost: "失联", lv_unmonitored: "未监测",
      tokenTitle: "API 令牌", save: "保存", forget: "清除令牌",
      tokenHelp: "请输入配置中 [[api.tokens]] 的令牌。viewer 令牌可查看看板，operator 令牌还可操作。令牌只保存在本浏览器中。",
      badToken: "令牌无效。", viewerOnly: "此令牌为只读（viewer），操作需要 operator 令牌。",
      done: "完成", failed: "失败", queue: "队列", shed: "丢弃", store: "存储", storeBad: "存储故障",
      warningMsg: "SLA 预警", breachMsg: "SLA 超时", dropped: "实时流被断开",
      role_viewer: "只读", role_operator: "值班员",
    },
  };

  const state = {
    lang: localStorage.getItem(LANG_KEY) || ((navigator.language || "").toLowerCase().startsWith("zh") ? "zh" : "en"),
    token: localStorage.getItem(TOKEN_KEY) || "",
    me: null,
    alarms: new Map(),
    tickets: new Map(),
    devices: [],
    health: null,
    instance: "",
    timeZone: "",  // the gateway's (gateway.timezone, from the snapshot): every time is shown in it
    loading: false,
    pending: [],
    stream: null,
    renderQueued: false,
  };

  const $ = (id) => document.getElementById(id);
  const t = (k) => (I18N[state.lang] && I18N[state.lang][k]) || I18N.en[k] || k;

  function el(tag, attrs, ...children) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") n.className = v;
      else if (k === "text") n.textContent = v;
      else if (k.startsWith("on")) n.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(n.dataset, v);
      else n.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      n.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return n;
  }

  function toast(text, kind) {
    const m = el("div", { class: "msg " + (kind || "") , text });
    $("toast").append(m);
    setTimeout(() => m.remove(), kind === "breach" ? 12000 : 5000);
  }

  // -- time formatting -------------------------------------------------------------------
  function hms(sec) {
    const neg = sec < 0;
    let s = Math.floor(Math.abs(sec));
    const d = Math.floor(s / 86400); s -= d * 86400;
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    const pad = (x) => String(x).padStart(2, "0");
    const core = (d ? d + "d " + pad(h) : String(h)) + ":" + pad(m) + ":" + pad(s);
    return (neg ? "-" : "") + core;
  }
  // Times are shown in the gateway's time zone, not the browser's: a NOC screen in another
  // zone must read the same clock as the CLI, the reports and the contract's calendars.
  const formats = new Map();
  function format(withZone) {
    const key = state.lang + "|" + state.timeZone + "|" + withZone;
    let f = formats.get(key);
    if (!f) {
      const opts = { hour12: false, month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" };
      if (state.timeZone) opts.timeZone = state.timeZone;
      if (withZone) opts.timeZoneName = "shortOffset";
      f = new Intl.DateTimeFormat(state.lang === "zh" ? "zh-CN" : "en-GB", opts);
      formats.set(key, f);
    }
    return f;
  }
  function localTime(iso) {
    if (!iso) return "";
    return format(false).format(new Date(iso));
  }
  function setTimeZone(tz) {
    if (!tz || tz === state.timeZone) return;
    try {
      new Intl.DateTimeFormat("en", { timeZone: tz });
    } catch (e) {
      return;  // unknown to this browser: keep what we had
    }
    state.timeZone = tz;
    $("now").title = tz;
  }

  // -- HTTP --------------------------------------------------------------------------------
  async function api(method, path, body) {
    const headers = { Authorization: "Bearer " + state.token };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(API + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    if (r.status === 401) { askToken(t("badToken")); throw new Error(t("badToken")); }
    if (!r.ok) throw new Error((data && data.message) || r.status + " " + r.statusText);
    return data;
  }

  // -- data --------------------------------------------------------------------------------
  const OPEN_ALARM = new Set(["active", "pending", "suppressed"]);

  function putAlarm(a, force) {
    const old = state.alarms.get(a.id);
    if (!force && old && old.last_seen > a.last_seen) return;
    if (OPEN_ALARM.has(a.state)) state.alarms.set(a.id, a); else state.alarms.delete(a.id);
  }
  function putTicket(tk, force) {
    const old = state.tickets.get(tk.id);
    if (!force && old && old.updated_at > tk.updated_at) return;
    tk._at = performance.now();
    if (tk.status === "closed") state.tickets.delete(tk.id); else state.tickets.set(tk.id, tk);
  }

  async function loadSnapshot() {
    if (!state.token) return;
    state.loading = true;
    try {
      const b = await api("GET", "/board");
      state.instance = b.instance;
      setTimeZone(b.timezone);
      state.alarms = new Map();
      state.tickets = new Map();
      for (const a of b.alarms) putAlarm(a, true);
      for (const tk of b.tickets) putTicket(tk, true);
      state.devices = b.devices;
      state.health = b.health;
    } finally {
      state.loading = false;
      const pending = state.pending; state.pending = [];
      for (const m of pending) applyMessage(m.type, m.data);
      queueRender();
    }
  }

  function applyMessage(type, data) {
    if (state.loading) { state.pending.push({ type, data }); return; }
    if (type === "alarm") putAlarm(data, false);
    else if (type === "ticket") putTicket(data, false);
    else if (type === "sla.warning" || type === "sla.breach") {
      const breach = type === "sla.breach";
      toast((breach ? t("breachMsg") : t("warningMsg")) + " · #" + data.ticket_id + " " + t(data.clock) + " · " + data.title,
            breach ? "breach" : "warn");
    } else if (type === "overflow") {
      toast(t("dropped"), "err");
    }
    queueRender();
  }

  // -- SSE over fetch (so the token goes in a header, never in a URL) -----------------------
  function setLive(on, text) {
    document.body.dataset.live = on ? "1" : "0";
    $("live").className = "live " + (on ? "on" : "off");
    $("live-text").textContent = text || t(on ? "online" : "offline");
  }

  async function runStream() {
    if (state.stream) state.stream.abort();
    const ctl = new AbortController();
    state.stream = ctl;
    while (!ctl.signal.aborted) {
      try {
        const r = await fetch(API + "/events/stream", { headers: { Authorization: "Bearer " + state.token, Accept: "text/event-stream" }, signal: ctl.signal, cache: "no-store" });
        if (r.status === 401) { setLive(false); askToken(t("badToken")); return; }
        if (!r.ok || !r.body) throw new Error("stream " + r.status);
        const reader = r.body.getReader();
        const dec = new TextDecoder();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          let i;
          while ((i = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, i); buf = buf.slice(i + 2);
            let ev = "message"; const lines = [];
            for (const line of block.split("\n")) {
              if (line.startsWith("event:")) ev = line.slice(6).trim();
              else if (line.startsWith("data:")) lines.push(line.slice(5).replace(/^ /, ""));
            }
            if (!lines.length) continue;
            if (ev === "hello") { setLive(true); loadSnapshot().catch((e) => toast(e.message, "err")); continue; }
            let data; try { data = JSON.parse(lines.join("\n")); } catch (e) { continue; }
            applyMessage(ev, data);
          }
        }
      } catch (e) {
        if (ctl.signal.aborted) return;
      }
      setLive(false, t("reconnecting"));
      await new Promise((res) => setTimeout(res, RETRY_MS));
    }
  }

  // -- actions -----------------------------------------------------------------------------
  async function act(ticketId, action, button) {
    if (!state.me || state.me.role !== "operator") { toast(t("viewerOnly"), "err"); return; }
    if (button) button.disabled = true;
    try {
      const tk = await api("POST", "/tickets/" + ticketId + "/" + action, { note: "" });
      putTicket(tk, true);
      toast("#" + ticketId + " " + t(action === "acknowledge" ? "ack" : action) + " · " + t("done"));
    } catch (e) {
      toast("#" + ticketId + " " + action + ": " + e.message, "err");
    } finally {
      if (button) button.disabled = false;
      queueRender();
    }
  }

  async function ackAlarm(alarmId, button) {
    if (!state.me || state.me.role !== "operator") { toast(t("viewerOnly"), "err"); return; }
    if (button) button.disabled = true;
    try {
      putAlarm(await api("POST", "/alarms/" + alarmId + "/ack"), true);
    } catch (e) {
      toast("alarm " + alarmId + ": " + e.message, "err");
      if (button) button.disabled = false;
    }
    queueRender();
  }

  // -- rendering ---------------------------------------------------------------------------
  function queueRender() {
    if (state.renderQueued) return;
    state.renderQueued = true;
    requestAnimationFrame(() => { state.renderQueued = false; render(); });
  }

  function canAct() { return !!(state.me && state.me.role === "operator"); }

  function levelChip(level) { return el("span", { class: "chip l" + level, text: t("level" + level) }); }

  function alarmAcked(a) {
    if (a.acked) return true;
    const tk = a.ticket_id ? state.tickets.get(a.ticket_id) : null;
    return !!(tk && tk.status !== "open");
  }

  function renderAlarms() {
    const box = $("alarms");
    box.replaceChildren();
    const alarms = [...state.alarms.values()];
    $("alarm-count").textContent = alarms.length;
    if (!alarms.length) { box.append(el("div", { class: "empty", text: t("noAlarms") })); return; }
    for (const level of [1, 2, 3, 4]) {
      const group = alarms.filter((a) => a.level === level);
      if (!group.length) continue;
      group.sort((x, y) => (alarmAcked(x) - alarmAcked(y)) || (y.last_seen > x.last_seen ? 1 : y.last_seen < x.last_seen ? -1 : 0));
      const g = el("div", { class: "level-group", dataset: { level: String(level) } },
        el("div", { class: "level-head" }, levelChip(level), el("span", { class: "count", text: group.length })));
      for (const a of group) {
        const acked = alarmAcked(a);
        const dev = a.device_name ? a.device_name + " (" + a.device + ")" : a.device;
        const ackBtn = acked ? null : el("button", {
          type: "button", class: "ack-alarm", disabled: !canAct(), title: canAct() ? null : t("viewerOnly"),
          dataset: { action: "ack-alarm" },
          onclick: (ev) => (a.ticket_id && state.tickets.has(a.ticket_id))
            ? act(a.ticket_id, "acknowledge", ev.currentTarget) : ackAlarm(a.id, ev.currentTarget),
        }, t("ackAlarm"));
        g.append(el("div", { class: "alarm l" + a.level + (acked ? " acked" : " unacked"), dataset: { alarmId: String(a.id), key: a.key } },
          el("span", { class: "bar" }),
          el("div", {},
            el("div", { class: "title" }, acked ? null : el("span", { class: "tag new", text: t("unacked") }), " ", a.title || a.key),
            el("div", { class: "meta" },
              dev, a.site ? " · " + t("site") + " " + a.site : "", " · ", t("count"), a.count,
              " · " + t("lastSeen") + " " + localTime(a.last_seen),
              a.ticket_id ? " · " + t("ticket") + " #" + a.ticket_id : "")),
          el("div", { class: "actions" }, ackBtn)));
      }
      box.append(g);
    }
  }

  function renderTickets() {
    const box = $("tickets");
    box.replaceChildren();
    const tickets = [...state.tickets.values()].sort((x, y) => (x.level - y.level) || (x.opened_at < y.opened_at ? -1 : 1));
    $("ticket-count").textContent = tickets.length;
    if (!tickets.length) { box.append(el("div", { class: "empty", text: t("noTickets") })); return; }
    for (const tk of tickets) {
      const breach = tk.clocks.some((c) => c.breached);
      const warning = !breach && tk.clocks.some((c) => c.warning);
      const clocks = el("div", { class: "clocks" });
      for (const c of tk.clocks) {
        const cls = ["clock", c.state, c.warning && !c.breached ? "warning" : "", c.breached ? "breached" : ""].join(" ");
        clocks.append(el("div", { class: cls, dataset: { clock: c.kind, state: c.state, ticket: String(tk.id) } },
          el("span", { class: "name", text: t(c.kind) + (c.due_at && c.remaining_seconds !== null ? " · " + localTime(c.due_at) : "")
            + (c.breached && c.remaining_seconds !== null ? " · " + t("overdue") : "") }),
          el("span", { class: "countdown", text: "" })));
      }
      const status = t("st_" + tk.status) + (tk.paused ? " · " + t("paused") : "");
      const btn = (action, label, enabled) => el("button", {
        type: "button", dataset: { action }, disabled: !canAct() || !enabled, title: canAct() ? null : t("viewerOnly"),
        onclick: (ev) => act(tk.id, action, ev.currentTarget),
      }, t(label));
      const stopped = (kind) => { const c = tk.clocks.find((x) => x.kind === kind); return c && c.stopped_at; };
      box.append(el("div", {
        class: "ticket l" + tk.level + (breach ? " has-breach" : "") + (warning ? " has-warning" : ""),
        dataset: { ticketId: String(tk.id), status: tk.status },
      },
        el("div", { class: "head" }, levelChip(tk.level), el("span", { class: "mono", text: "#" + tk.id }),
          el("span", { class: "title", text: tk.title || tk.alarm_key }),
          el("span", { class: "status-badge", text: status })),
        el("div", { class: "meta", text: tk.device + (tk.site ? " · " + t("site") + " " + tk.site : "") + " · " + tk.policy + " · " + t("since") + " " + localTime(tk.opened_at) }),
        clocks,
        el("div", { class: "actions" },
          btn("acknowledge", "ack", tk.status === "open"),
          btn("arrive", "arrive", !stopped("on_site") && tk.status !== "restored" && tk.clocks.some((c) => c.kind === "on_site")),
          btn("resolve", "resolve", tk.status !== "restored"))));
    }
    tickCountdowns();
  }

  function tickCountdowns() {
    const nowMs = performance.now();
    for (const node of document.querySelectorAll(".clock[data-clock]")) {
      const tk = state.tickets.get(Number(node.dataset.ticket));
      if (!tk) continue;
      const c = tk.clocks.find((x) => x.kind === node.dataset.clock);
      const out = node.querySelector(".countdown");
      if (!c) continue;
      if (c.remaining_seconds === null || c.remaining_seconds === undefined) {
        out.textContent = t("cs_" + c.state);
        continue;
      }
      const rem = c.remaining_seconds - (c.ticking ? (nowMs - tk._at) / 1000 : 0);
      let text = hms(rem);
      if (c.state === "paused") text += " (" + t("cs_paused") + ")";
      if (rem < 0 && !node.classList.contains("breached")) node.classList.add("breached");
      out.textContent = text;
    }
  }

  function renderDevices() {
    const box = $("devices");
    box.replaceChildren();
    const hd = state.health && state.health.devices;
    $("device-count").textContent = hd ? hd.total + (hd.lost ? " · " + t("lv_lost") + " " + hd.lost : "") : state.devices.length;
    if (!state.devices.length) { box.append(el("div", { class: "empty", text: t("noDevices") })); return; }
    const list = el("div", { class: "devices" });
    const rank = { lost: 0, alive: 1, unmonitored: 2 };
    const devices = [...state.devices].sort((a, b) => (rank[a.liveness] - rank[b.liveness]) || a.id.localeCompare(b.id));
    for (const d of devices) {
      list.append(el("div", { class: "device " + d.liveness, dataset: { device: d.id, liveness: d.liveness },
        title: [d.class, d.site, d.region].filter(Boolean).join(" · ") },
        el("span", { class: "dot" }),
        el("span", { text: (d.name || d.id) + " · " + t("lv_" + d.liveness) + (d.open_alarms ? " · " + d.open_alarms + "⚠" : "") })));
    }
    box.append(list);
  }

  function renderHeader() {
    document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
    document.title = t("title");
    for (const n of document.querySelectorAll("[data-i18n]")) n.textContent = t(n.dataset.i18n);
    for (const n of document.querySelectorAll("[data-i18n-title]")) n.title = t(n.dataset.i18nTitle);
    $("lang").textContent = state.lang === "zh" ? "English" : "中文";
    $("instance").textContent = state.instance;
    $("who").textContent = state.me ? state.me.name + " (" + t("role_" + state.me.role) + ")" : "🔑";
    const h = state.health;
    const hb = $("health");
    hb.replaceChildren();
    if (h) {
      hb.append(t("queue") + " " + h.queue_depth + "/" + h.queue_capacity + " · " + t("shed") + " " + h.shed + " · ");
      hb.append(h.store_healthy ? el("span", { text: t("store") + " OK" }) : el("span", { class: "bad", text: t("storeBad") }));
    }
    if (document.body.dataset.live !== "1") setLive(false);
    else setLive(true);
  }

  function render() {
    renderHeader();
    renderAlarms();
    renderTickets();
    renderDevices();
  }

  // -- token -------------------------------------------------------------------------------
  function askToken(message) {
    $("token-error").textContent = message || "";
    $("token-input").value = "";
    $("token-dialog").hidden = false;
    $("token-input").focus();
  }

  async function start() {
    if (!state.token) { askToken(""); return; }
    try {
      state.me = await api("GET", "/whoami");
    } catch (e) {
      return;  // api() asked for a token on 401
    }
    $("token-dialog").hidden = true;
    queueRender();
    runStream();
  }

  function init() {
    $("token-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const v = $("token-input").value.trim();
      if (!v) return;
      state.token = v;
      localStorage.setItem(TOKEN_KEY, v);
      $("token-dialog").hidden = true;
      start();
    });
    $("token-forget").addEventListener("click", () => {
      localStorage.removeItem(TOKEN_KEY);
      state.token = ""; state.me = null;
      if (state.stream) state.stream.abort();
      askToken("");
      queueRender();
    });
    $("who").addEventListener("click", () => askToken(""));
    $("lang").addEventListener("click", () => {
      state.lang = state.lang === "zh" ? "en" : "zh";
      localStorage.setItem(LANG_KEY, state.lang);
      render();
    });
    setInterval(() => {
      tickCountdowns();
      // Only once the gateway's zone is known: the browser's would be the wrong clock.
      $("now").textContent = state.timeZone ? format(true).format(new Date()) : "";
    }, 1000);
    setInterval(() => { if (state.me) loadSnapshot().catch(() => {}); }, REFRESH_MS);
    render();
    start();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init); else init();
})();
