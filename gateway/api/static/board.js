// NOC board: a snapshot from /api/v1/board, live changes from the SSE stream, SLA countdowns.
// Built for 3 a.m.: live tickets apart from restored ones, nearest deadline first with an
// "about to breach" lane, filters, sound and desktop notices, confirmations with a note.
// Plain browser JavaScript, no build step. Every string from the server goes in as text.
// Extensions (small scripts loaded after this one) use window.Board.
"use strict";

(function () {
  const API = "/api/v1";
  const TOKEN_KEY = "gateway.token";
  const LANG_KEY = "gateway.lang";
  const ALERTS_KEY = "gateway.alerts";
  const THEME_KEY = "gateway.theme";
  const REFRESH_MS = 30000;   // snapshot refresh: business calendars and drift
  const RETRY_MS = 2000;
  const SOON_S = 15 * 60;     // a live ticket whose nearest deadline is this close: "about to breach"

  const I18N = {
    en: {
      title: "NOC board", alarms: "Active alarms", tickets: "Open tickets", devices: "Devices",
      online: "live", offline: "offline", reconnecting: "reconnecting…", liveTitle: "live change stream",
      level1: "Level 1 · critical", level2: "Level 2 · major", level3: "Level 3 · minor", level4: "Level 4 · warning",
      noAlarms: "No active alarms.", noTickets: "No open tickets.", noDevices: "No devices.", noMatch: "No ticket matches the filters.",
      ack: "Ack", ackAlarm: "Ack", arrive: "Arrive", resolve: "Resolve", take: "Take", assign: "Assign…", hand_over: "Hand over…",
      details: "Timeline", unacked: "new", count: "×",
      ticket: "ticket", site: "site", customer: "customer", contract: "contract", lastSeen: "last", since: "since",
      owner: "owner", unowned: "unowned", team: "team",
      late: "arrived late", lateTitle: "came from the site's edge after a WAN cut; its times are the site's own",
      response: "Response", dispatch: "Dispatch", solution: "Solution", on_site: "On site", restore: "Restore", report: "Report",
      st_open: "open", st_acknowledged: "acknowledged", st_solution_proposed: "solution proposed",
      st_on_site: "on site", st_restored: "restored", st_closed: "closed", paused: "paused",
      cs_met: "met", cs_breached: "breached", cs_paused: "paused", cs_waiting: "not started", cs_not_needed: "not needed",
      overdue: "overdue",
      lv_alive: "alive", lv_lost: "lost", lv_unmonitored: "unmonitored",
      laneSoon: "About to breach", laneLive: "Live", laneRestored: "Restored · awaiting report",
      search: "Search: id, title, device, site…", all_site: "All sites", all_customer: "All customers",
      all_policy: "All contracts", all_level: "All levels", all_owner: "Any owner", f_unowned: "(nobody)",
      tokenTitle: "API token", save: "Save", forget: "Forget token", signIn: "Sign in", signOut: "Sign out",
      userName: "name", password: "password", badLogin: "Wrong name or password.",
      tokenHelp: "Or enter a token from [[api.tokens]]. A viewer token shows the board; an operator token can also act. It is kept in this browser only.",
      badToken: "Sign in again: the token or session was refused.", viewerOnly: "This account or token cannot act (viewer).",
      done: "done", failed: "failed", queue: "queue", shed: "shed", store: "store", storeBad: "STORE DOWN",
      warningMsg: "SLA warning", breachMsg: "SLA BREACH", newL1: "NEW LEVEL 1", dropped: "stream dropped",
      role_viewer: "viewer", role_operator: "operator", role_admin: "admin", role_customer: "customer",
      alertsTitle: "sound and desktop notice on a new level 1 and on a breach", themeTitle: "light / dark",
      alertsOn: "on", alertsOff: "off", onCall: "on call",
      confirm: "Confirm", cancel: "Cancel", note: "Note", assignTo: "To",
      confirmResolve: "Resolve ticket", confirmArrive: "Engineer on site", confirmAssign: "Assign ticket", confirmHandOver: "Hand over ticket",
      stillActive: "The alarm of this ticket is still ACTIVE: the device has not recovered. Resolve anyway?",
    },
    zh: {
      title: "NOC 监控看板", alarms: "活动告警", tickets: "未关闭工单", devices: "设备",
      online: "实时", offline: "离线", reconnecting: "重新连接中…", liveTitle: "实时变更流",
      level1: "一级故障", level2: "二级故障", level3: "三级故障", level4: "四级故障",
      noAlarms: "没有活动告警。", noTickets: "没有未关闭的工单。", noDevices: "没有设备。", noMatch: "没有符合筛选条件的工单。",
      ack: "响应", ackAlarm: "确认", arrive: "到场", resolve: "恢复", take: "认领", assign: "指派…", hand_over: "交接…",
      details: "时间线", unacked: "未确认", count: "×",
      ticket: "工单", site: "站点", customer: "客户", contract: "合同", lastSeen: "最近", since: "开始",
      owner: "负责人", unowned: "无人负责", team: "班组",
      late: "延迟到达", lateTitle: "WAN 中断后由站点边缘网关补传；时间为现场原始时间",
      response: "响应", dispatch: "派工", solution: "方案", on_site: "到场", restore: "恢复", report: "报告",
      st_open: "待响应", st_acknowledged: "已响应", st_solution_proposed: "已提方案",
      st_on_site: "已到场", st_restored: "已恢复", st_closed: "已关闭", paused: "已暂停",
      cs_met: "达标", cs_breached: "超时", cs_paused: "暂停", cs_waiting: "未开始", cs_not_needed: "无需",
      overdue: "已超时",
      lv_alive: "在线", lv_lost: "失联", lv_unmonitored: "未监测",
      laneSoon: "即将超时", laneLive: "处理中", laneRestored: "已恢复 · 待提交报告",
      search: "搜索：编号、标题、设备、站点…", all_site: "全部站点", all_customer: "全部客户",
      all_policy: "全部合同", all_level: "全部级别", all_owner: "全部负责人", f_unowned: "（无人负责）",
      tokenTitle: "API 令牌", save: "保存", forget: "清除令牌", signIn: "登录", signOut: "退出登录",
      userName: "用户名", password: "密码", badLogin: "用户名或密码错误。",
      tokenHelp: "或输入配置中 [[api.tokens]] 的令牌。viewer 令牌可查看看板，operator 令牌还可操作。令牌只保存在本浏览器中。",
      badToken: "请重新登录：令牌或会话无效。", viewerOnly: "此账号或令牌为只读，不能操作。",
      done: "完成", failed: "失败", queue: "队列", shed: "丢弃", store: "存储", storeBad: "存储故障",
      warningMsg: "SLA 预警", breachMsg: "SLA 超时", newL1: "新一级故障", dropped: "实时流被断开",
      role_viewer: "只读", role_operator: "值班员", role_admin: "管理员", role_customer: "客户",
      alertsTitle: "新一级故障和超时时响铃并弹出桌面通知", themeTitle: "浅色 / 深色",
      alertsOn: "开", alertsOff: "关", onCall: "值班",
      confirm: "确认", cancel: "取消", note: "备注", assignTo: "交给",
      confirmResolve: "恢复工单", confirmArrive: "工程师到场", confirmAssign: "指派工单", confirmHandOver: "交接工单",
      stillActive: "该工单的告警仍处于活动状态：设备尚未恢复。仍要恢复吗？",
    },
  };

  const state = {
    lang: localStorage.getItem(LANG_KEY) || ((navigator.language || "").toLowerCase().startsWith("zh") ? "zh" : "en"),
    token: localStorage.getItem(TOKEN_KEY) || "",
    alerts: localStorage.getItem(ALERTS_KEY) === "1",
    theme: localStorage.getItem(THEME_KEY) || "",
    me: null,
    alarms: new Map(),
    tickets: new Map(),
    devices: [],
    deviceNames: new Map(),
    customers: {},
    titles: [],          // [{id, re, fields, zh}] from /rules/titles
    teams: [],
    health: null,
    instance: "",
    timeZone: "",  // the gateway's (gateway.timezone, from the snapshot): every time is shown in it
    loading: false,
    loaded: false,
    pending: [],
    stream: null,
    renderQueued: false,
    filters: { q: "", site: "", customer: "", policy: "", level: "", owner: null },
    open: new Set(),      // tickets whose timeline is shown
    timelines: new Map(),
    alerted: new Set(),   // "l1:<id>" / "breach:<id>:<clock>": each notice once
    dialog: null,
  };
  const listeners = [];

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
  // One format per language: en "dd/mm, HH:MM:SS" (en-GB), zh "MM/DD HH:MM:SS" (zh-CN).
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

  // -- rule titles in the reader's language ---------------------------------------------------
  // A title carries the English rendering of its rule's template; the template turned into a
  // pattern gives back the fields, which fill the Chinese template. No match: English.
  function compileTitle(r) {
    const fields = [];
    let re = "^";
    let last = 0;
    const tokens = /\{([A-Za-z_][\w.-]*)\}/g;
    let m;
    while ((m = tokens.exec(r.title))) {
      re += r.title.slice(last, m.index).replace(/[.*+?^${}()|[\]\\]/g, "\\$&") + "(.*?)";
      fields.push(m[1]);
      last = m.index + m[0].length;
    }
    re += r.title.slice(last).replace(/[.*+?^${}()|[\]\\]/g, "\\$&") + "$";
    return { id: r.id, re: new RegExp(re, "s"), fields, zh: r.title_zh };
  }
  const translated = new Map();
  function titleOf(text, rule) {
    if (!text || state.lang !== "zh" || !state.titles.length) return text;
    const key = (rule || "") + "|" + text;
    if (translated.has(key)) return translated.get(key);
    let out = text;
    const cands = rule ? state.titles.filter((x) => x.id === rule).concat(state.titles) : state.titles;
    for (const c of cands) {
      const m = c.re.exec(text);
      if (!m) continue;
      const vals = {};
      c.fields.forEach((f, i) => { vals[f] = m[i + 1]; });
      out = c.zh.replace(/\{([A-Za-z_][\w.-]*)\}/g, (_, f) => (f in vals ? vals[f] : "?"));
      break;
    }
    translated.set(key, out);
    return out;
  }

  // -- HTTP --------------------------------------------------------------------------------
  async function api(method, path, body, quiet) {
    // The session cookie goes along by itself; writes say they come from the board.
    const headers = { "X-Requested-With": "gateway-board" };
    if (state.token) headers.Authorization = "Bearer " + state.token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(API + path, { method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body) });
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    if (r.status === 401 && !quiet) { askToken(t("badToken")); throw new Error(t("badToken")); }
    if (!r.ok) { const e = new Error((data && data.message) || r.status + " " + r.statusText); e.status = r.status; throw e; }
    return data;
  }

  // -- alerts: sound and desktop notice ------------------------------------------------------
  let audio = null;
  function beep(urgent) {
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      if (audio.state === "suspended") audio.resume();
      const now = audio.currentTime;
      for (let i = 0; i < (urgent ? 3 : 2); i++) {
        const o = audio.createOscillator(); const g = audio.createGain();
        o.frequency.value = urgent ? 880 : 660;
        g.gain.setValueAtTime(0.2, now + i * 0.3); g.gain.exponentialRampToValueAtTime(0.001, now + i * 0.3 + 0.25);
        o.connect(g); g.connect(audio.destination); o.start(now + i * 0.3); o.stop(now + i * 0.3 + 0.26);
      }
      return true;
    } catch (e) {
      return false;
    }
  }
  function notifyDesktop(title, body, tag) {
    try {
      if (!("Notification" in window) || Notification.permission !== "granted") return false;
      new Notification(title, { body, tag });
      return true;
    } catch (e) {
      return false;
    }
  }
  window.__boardAlerts = [];  // what was announced (kind, ticket, sound, desktop): for tests and extensions
  function announce(kind, tk, text) {
    const key = kind + ":" + tk.id + (kind === "breach" ? ":" + (text || "") : "");
    if (state.alerted.has(key)) return;
    state.alerted.add(key);
    if (!state.alerts) return;
    const title = (kind === "breach" ? t("breachMsg") : t("newL1")) + " · #" + tk.id;
    const body = titleOf(tk.title || tk.alarm_key || "", tk.rule) + (tk.device ? " · " + deviceName(tk.device) : "");
    const sound = beep(kind === "l1" || kind === "breach");
    const desktop = notifyDesktop(title, body, key);
    window.__boardAlerts.push({ kind, ticket: tk.id, sound, desktop, title, body });
    emit("alert", { kind, ticket: tk.id });
  }
  function setAlerts(on) {
    state.alerts = on;
    localStorage.setItem(ALERTS_KEY, on ? "1" : "0");
    if (on) {
      beep(false);  // a click is a user gesture: the audio context may start now
      if ("Notification" in window && Notification.permission === "default") Notification.requestPermission().catch(() => {});
    }
    renderHeader();
  }

  // -- theme -----------------------------------------------------------------------------------
  function applyTheme() {
    const dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: light)").matches ? "light" : "dark";
    document.documentElement.dataset.theme = state.theme || dark;
  }

  // -- data --------------------------------------------------------------------------------
  const OPEN_ALARM = new Set(["active", "pending", "suppressed"]);

  function putAlarm(a, force) {
    const old = state.alarms.get(a.id);
    if (!force && old && old.last_seen > a.last_seen) return;
    if (OPEN_ALARM.has(a.state)) state.alarms.set(a.id, a); else state.alarms.delete(a.id);
    if (a.device_name) state.deviceNames.set(a.device, a.device_name);
  }
  function putTicket(tk, force, live) {
    const old = state.tickets.get(tk.id);
    if (!force && old && old.updated_at > tk.updated_at) return;
    tk._at = performance.now();
    if (tk.status === "closed") state.tickets.delete(tk.id); else state.tickets.set(tk.id, tk);
    if (live && !old && tk.level === 1 && tk.status === "open") announce("l1", tk);
    if (!state.loaded) for (const c of tk.clocks || []) if (c.breached) state.alerted.add("breach:" + tk.id + ":" + c.kind);
  }
  function deviceName(id) { return state.deviceNames.get(id) || id; }
  function customerOf(tk) { return state.customers[tk.policy] || ""; }

  async function loadSnapshot() {
    if (!state.me) return;
    state.loading = true;
    try {
      const b = await api("GET", "/board");
      state.instance = b.instance;
      setTimeZone(b.timezone);
      state.customers = b.customers || {};
      state.alarms = new Map();
      state.tickets = new Map();
      for (const d of b.devices) if (d.name) state.deviceNames.set(d.id, d.name);
      for (const a of b.alarms) putAlarm(a, true);
      for (const tk of b.tickets) {
        putTicket(tk, true, false);
        state.alerted.add("l1:" + tk.id);  // already there when the board opened: not new
      }
      state.devices = b.devices;
      state.health = b.health;
      state.loaded = true;
    } finally {
      state.loading = false;
      const pending = state.pending; state.pending = [];
      for (const m of pending) applyMessage(m.type, m.data);
      queueRender();
    }
  }

  async function loadExtras() {
    try {
      // The most specific pattern first (the most literal text): "(medium)" before "({severity})".
      const lit = (r) => r.title.replace(/\{[^}]*\}/g, "").length;
      state.titles = (await api("GET", "/rules/titles", undefined, true)).sort((a, b) => lit(b) - lit(a)).map(compileTitle);
      translated.clear();
    } catch (e) { state.titles = []; }
    try { state.teams = await api("GET", "/teams", undefined, true); } catch (e) { state.teams = []; }
    queueRender();
  }

  function applyMessage(type, data) {
    if (state.loading) { state.pending.push({ type, data }); return; }
    if (type === "alarm") putAlarm(data, false);
    else if (type === "ticket") { putTicket(data, false, true); state.timelines.delete(data.id); }
    else if (type === "sla.warning" || type === "sla.breach") {
      const breach = type === "sla.breach";
      toast((breach ? t("breachMsg") : t("warningMsg")) + " · #" + data.ticket_id + " " + t(data.clock) + " · " + titleOf(data.title),
            breach ? "breach" : "warn");
      if (breach) announce("breach", state.tickets.get(data.ticket_id) || { id: data.ticket_id, title: data.title }, data.clock);
    } else if (type === "overflow") {
      toast(t("dropped"), "err");
    }
    emit(type, data);
    queueRender();
  }

  // -- SSE over fetch (so a token goes in a header, never in a URL) --------------------------
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
        const headers = { Accept: "text/event-stream" };
        if (state.token) headers.Authorization = "Bearer " + state.token;
        const r = await fetch(API + "/events/stream", { headers, signal: ctl.signal, cache: "no-store", credentials: "same-origin" });
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
  function canAct() { return !!(state.me && (state.me.role === "operator" || state.me.role === "admin")); }

  async function act(ticketId, action, button, body) {
    if (!canAct()) { toast(t("viewerOnly"), "err"); return; }
    if (button) button.disabled = true;
    try {
      const tk = await api("POST", "/tickets/" + ticketId + "/" + action, body || { note: "" });
      putTicket(tk, true, false);
      state.timelines.delete(ticketId);
      toast("#" + ticketId + " " + t(action === "acknowledge" ? "ack" : action) + " · " + t("done"));
    } catch (e) {
      toast("#" + ticketId + " " + action + ": " + e.message, "err");
    } finally {
      if (button) button.disabled = false;
      queueRender();
    }
  }

  function activeAlarmOf(tk) {
    for (const a of state.alarms.values()) if (a.ticket_id === tk.id && a.state === "active") return a;
    return null;
  }

  // Resolve, arrive, assign and hand over ask first, with a note (and a name for the last two).
  function confirmAction(tk, action, button) {
    if (!canAct()) { toast(t("viewerOnly"), "err"); return; }
    const titles = { resolve: "confirmResolve", arrive: "confirmArrive", assign: "confirmAssign", hand_over: "confirmHandOver" };
    state.dialog = { id: tk.id, action, button };
    $("act-title").textContent = t(titles[action]) + " #" + tk.id + " · " + titleOf(tk.title || tk.alarm_key, tk.rule);
    const warn = action === "resolve" && activeAlarmOf(tk);
    $("act-warning").hidden = !warn;
    $("act-warning").textContent = warn ? t("stillActive") : "";
    const needsTo = action === "assign" || action === "hand_over";
    $("act-to-label").hidden = !needsTo;
    $("act-to").required = needsTo;
    $("act-to").value = "";
    $("act-note").value = "";
    $("act-dialog").hidden = false;
    (needsTo ? $("act-to") : $("act-note")).focus();
  }
  function closeDialog() { $("act-dialog").hidden = true; state.dialog = null; }

  async function ackAlarm(alarmId, button) {
    if (!canAct()) { toast(t("viewerOnly"), "err"); return; }
    if (button) button.disabled = true;
    try {
      putAlarm(await api("POST", "/alarms/" + alarmId + "/ack"), true);
    } catch (e) {
      toast("alarm " + alarmId + ": " + e.message, "err");
      if (button) button.disabled = false;
    }
    queueRender();
  }

  async function toggleTimeline(tk) {
    if (state.open.has(tk.id)) { state.open.delete(tk.id); queueRender(); return; }
    state.open.add(tk.id);
    try {
      const d = await api("GET", "/tickets/" + tk.id);
      state.timelines.set(tk.id, d.timeline || []);
    } catch (e) { toast(e.message, "err"); }
    queueRender();
  }

  // -- rendering ---------------------------------------------------------------------------
  function queueRender() {
    if (state.renderQueued) return;
    state.renderQueued = true;
    requestAnimationFrame(() => { state.renderQueued = false; render(); });
  }

  function levelChip(level) { return el("span", { class: "chip l" + level, text: t("level" + level) }); }
  function devLabel(id, name) {
    const full = name ? name + " (" + id + ")" : id;
    return el("span", { class: "devname", title: full, text: full });
  }

  function alarmAcked(a) {
    if (a.acked) return true;
    const tk = a.ticket_id ? state.tickets.get(a.ticket_id) : null;
    return !!(tk && tk.status !== "open");
  }

  // An alarm or ticket whose event came late from a site's edge (after a WAN cut): how late.
  function lateTag(s) {
    if (typeof s !== "number" || !(s > 0)) return null;
    return el("span", { class: "tag late", title: t("lateTitle"), dataset: { lateS: String(s) },
      text: t("late") + " +" + hms(s) });
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
        const ackBtn = acked ? null : el("button", {
          type: "button", class: "ack-alarm", disabled: !canAct(), title: canAct() ? null : t("viewerOnly"),
          dataset: { action: "ack-alarm" },
          onclick: (ev) => (a.ticket_id && state.tickets.has(a.ticket_id))
            ? act(a.ticket_id, "acknowledge", ev.currentTarget) : ackAlarm(a.id, ev.currentTarget),
        }, t("ackAlarm"));
        g.append(el("div", { class: "alarm l" + a.level + (acked ? " acked" : " unacked"), dataset: { alarmId: String(a.id), key: a.key } },
          el("span", { class: "bar" }),
          el("div", {},
            el("div", { class: "title" }, acked ? null : el("span", { class: "tag new", text: t("unacked") }), " ",
              el("span", { class: "title-text", text: titleOf(a.title || a.key, a.rule) })),
            el("div", { class: "meta" },
              devLabel(a.device, a.device_name), a.site ? el("span", { text: t("site") + " " + a.site }) : null,
              el("span", { text: t("count") + a.count }),
              el("span", { text: t("lastSeen") + " " + localTime(a.last_seen) }),
              a.ticket_id ? el("span", { text: t("ticket") + " #" + a.ticket_id }) : null,
              lateTag(a.late_s))),
          el("div", { class: "actions" }, ackBtn)));
      }
      box.append(g);
    }
  }

  // Seconds to the ticket's nearest running deadline now (negative: overdue); null: none runs.
  function nearest(tk) {
    const nowMs = performance.now();
    let best = null;
    for (const c of tk.clocks || []) {
      if (c.remaining_seconds === null || c.remaining_seconds === undefined) continue;
      const rem = c.remaining_seconds - (c.ticking ? (nowMs - tk._at) / 1000 : 0);
      if (best === null || rem < best) best = rem;
    }
    return best;
  }
  function lane(tk) {
    if (tk.status === "restored") return "restored";
    const n = nearest(tk);
    return n !== null && n > 0 && n <= SOON_S ? "soon" : "live";
  }

  function matches(tk) {
    const f = state.filters;
    if (f.site && tk.site !== f.site) return false;
    if (f.policy && tk.policy !== f.policy) return false;
    if (f.customer && customerOf(tk) !== f.customer) return false;
    if (f.level && String(tk.level) !== f.level) return false;
    if (f.owner !== null && (tk.owner || "") !== f.owner) return false;
    if (f.q) {
      const q = f.q.toLowerCase();
      const hay = ["#" + tk.id, String(tk.id), tk.title, titleOf(tk.title, tk.rule), tk.device, deviceName(tk.device), tk.site,
        tk.policy, customerOf(tk), tk.owner, tk.alarm_key].join(" ").toLowerCase();
      if (!hay.includes(q)) return false;
    }
    return true;
  }

  function fillSelect(sel, key, values, label) {
    const cur = sel.value;
    const opts = [el("option", { value: "", text: t("all_" + key) })];
    for (const v of values) opts.push(el("option", { value: v.value, text: v.text }));
    sel.replaceChildren(...opts);
    sel.value = [...sel.options].some((o) => o.value === cur) ? cur : "";
    sel.hidden = values.length === 0;
    sel.title = label;
  }

  function renderFilters() {
    const tickets = [...state.tickets.values()];
    const uniq = (xs) => [...new Set(xs.filter(Boolean))].sort();
    fillSelect($("f-site"), "site", uniq(tickets.map((x) => x.site)).map((v) => ({ value: v, text: v })), t("site"));
    fillSelect($("f-customer"), "customer", uniq(tickets.map(customerOf)).map((v) => ({ value: v, text: v })), t("customer"));
    fillSelect($("f-contract"), "policy", uniq(tickets.map((x) => x.policy)).map((v) => ({ value: v, text: v })), t("contract"));
    fillSelect($("f-level"), "level", [1, 2, 3, 4].map((v) => ({ value: String(v), text: t("level" + v) })), t("level1"));
    const owners = uniq(tickets.map((x) => x.owner)).map((v) => ({ value: "=" + v, text: v }));
    owners.unshift({ value: "=", text: t("f_unowned") });
    fillSelect($("f-owner"), "owner", owners, t("owner"));
    $("search").placeholder = t("search");
  }

  function ticketCard(tk) {
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
    const btn = (action, label, enabled, onclick) => el("button", {
      type: "button", dataset: { action }, disabled: !canAct() || !enabled, title: canAct() ? null : t("viewerOnly"),
      onclick: onclick || ((ev) => act(tk.id, action, ev.currentTarget)),
    }, t(label));
    const stopped = (kind) => { const c = tk.clocks.find((x) => x.kind === kind); return c && c.stopped_at; };
    const mine = state.me && tk.owner && tk.owner === state.me.name;
    const owner = el("span", { class: "owner" + (tk.owner ? (mine ? " mine" : "") : " none"), dataset: { owner: tk.owner || "" },
      text: tk.owner ? t("owner") + " " + tk.owner : t("unowned") });
    const customer = customerOf(tk);
    const card = el("div", {
      class: "ticket l" + tk.level + (breach ? " has-breach" : "") + (warning ? " has-warning" : ""),
      dataset: { ticketId: String(tk.id), status: tk.status, lane: lane(tk) },
    },
      el("div", { class: "head" }, levelChip(tk.level), el("span", { class: "mono", text: "#" + tk.id }),
        el("span", { class: "title title-text", text: titleOf(tk.title || tk.alarm_key, tk.rule) }),
        el("span", { class: "status-badge", text: status }), owner),
      el("div", { class: "meta" },
        devLabel(tk.device, state.deviceNames.get(tk.device)),
        tk.site ? el("span", { text: t("site") + " " + tk.site }) : null,
        customer ? el("span", { text: t("customer") + " " + customer }) : null,
        el("span", { text: t("contract") + " " + tk.policy }),
        tk.team ? el("span", { text: t("team") + " " + tk.team }) : null,
        el("span", { text: t("since") + " " + localTime(tk.opened_at) }),
        lateTag(tk.late_s)),
      clocks,
      el("div", { class: "actions" },
        btn("acknowledge", "ack", tk.status === "open"),
        btn("take", "take", !mine && tk.status !== "restored", (ev) => act(tk.id, "take", ev.currentTarget, { note: "" })),
        tk.owner ? btn("hand_over", "hand_over", true, () => confirmAction(tk, "hand_over"))
          : btn("assign", "assign", true, () => confirmAction(tk, "assign")),
        btn("arrive", "arrive", !stopped("on_site") && tk.status !== "restored" && tk.clocks.some((c) => c.kind === "on_site"),
          (ev) => confirmAction(tk, "arrive", ev.currentTarget)),
        btn("resolve", "resolve", tk.status !== "restored", (ev) => confirmAction(tk, "resolve", ev.currentTarget)),
        el("button", { type: "button", class: "plain", dataset: { action: "details" }, "aria-expanded": state.open.has(tk.id) ? "true" : "false",
          onclick: () => toggleTimeline(tk) }, t("details"))));
    if (state.open.has(tk.id)) {
      const list = el("ul", { class: "timeline" });
      for (const e of state.timelines.get(tk.id) || []) {
        list.append(el("li", { class: e.kind, dataset: { kind: e.kind } },
          el("span", { class: "mono", text: localTime(e.ts) }), el("span", { class: "who", text: e.actor }),
          el("span", { text: e.kind + (e.note ? " · " + e.note : "") })));
      }
      card.append(list);
    }
    return card;
  }

  function renderTickets() {
    const all = [...state.tickets.values()];
    $("ticket-count").textContent = all.length;
    const shown = all.filter(matches);
    const byDue = (x, y) => {
      const a = nearest(x); const b = nearest(y);
      if (a === null && b === null) return (x.level - y.level) || (x.id - y.id);
      if (a === null) return 1;
      if (b === null) return -1;
      return (a - b) || (x.level - y.level);
    };
    const lanes = { soon: [], live: [], restored: [] };
    for (const tk of shown) lanes[lane(tk)].push(tk);
    for (const [name, list] of Object.entries(lanes)) {
      list.sort(byDue);
      const box = $("lane-" + name);
      const body = box.querySelector(".lane-body");
      body.replaceChildren(...list.map(ticketCard));
      $(name + "-count").textContent = list.length;
      box.classList.toggle("empty-lane", list.length === 0);
    }
    const none = !shown.length;
    let empty = $("tickets-empty");
    if (none && !empty) { empty = el("div", { id: "tickets-empty", class: "empty" }); $("tickets").prepend(empty); }
    if (empty) {
      if (none) empty.textContent = all.length ? t("noMatch") : t("noTickets"); else empty.remove();
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
    // A ticket moving into (or out of) the last 15 minutes changes lanes.
    for (const node of document.querySelectorAll(".ticket[data-lane]")) {
      const tk = state.tickets.get(Number(node.dataset.ticketId));
      if (tk && lane(tk) !== node.dataset.lane) { queueRender(); break; }
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
      const label = (d.name || d.id) + " · " + t("lv_" + d.liveness) + (d.open_alarms ? " · " + d.open_alarms + "⚠" : "");
      list.append(el("div", { class: "device " + d.liveness, dataset: { device: d.id, liveness: d.liveness },
        title: [d.name ? d.name + " (" + d.id + ")" : d.id, d.class, d.site, d.region].filter(Boolean).join(" · ") },
        el("span", { class: "dot" }),
        el("span", { class: "label", text: label })));
    }
    box.append(list);
  }

  function renderHeader() {
    document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
    document.title = t("title");
    for (const n of document.querySelectorAll("[data-i18n]")) n.textContent = t(n.dataset.i18n);
    for (const n of document.querySelectorAll("[data-i18n-title]")) n.title = t(n.dataset.i18nTitle);
    for (const n of document.querySelectorAll("[data-i18n-placeholder]")) n.placeholder = t(n.dataset.i18nPlaceholder);
    $("lang").textContent = state.lang === "zh" ? "English" : "中文";
    $("instance").textContent = state.instance;
    const who = state.me ? (state.me.display_name || state.me.name) + " (" + t("role_" + state.me.role) + ")" : t("signIn");
    $("who").textContent = who;
    $("alerts").textContent = "♪ " + t(state.alerts ? "alertsOn" : "alertsOff");
    $("alerts").setAttribute("aria-pressed", state.alerts ? "true" : "false");
    const h = state.health;
    const hb = $("health");
    hb.replaceChildren();
    if (h) {
      hb.append(t("queue") + " " + h.queue_depth + "/" + h.queue_capacity + " · " + t("shed") + " " + h.shed + " · ");
      hb.append(h.store_healthy ? el("span", { text: t("store") + " OK" }) : el("span", { class: "bad", text: t("storeBad") }));
    }
    // Who is on call, per team (the rota decides who is told when nobody owns a ticket).
    $("oncall").textContent = state.teams.filter((x) => x.on_call).map((x) => t("onCall") + " " + x.name + ": " + x.on_call).join(" · ");
    const people = $("people");
    const names = new Set();
    for (const team of state.teams) for (const n of [team.lead, ...(team.members || [])]) if (n) names.add(n);
    people.replaceChildren(...[...names].sort().map((n) => el("option", { value: n })));
    if (document.body.dataset.live !== "1") setLive(false);
    else setLive(true);
  }

  function render() {
    renderHeader();
    renderFilters();
    renderAlarms();
    renderTickets();
    renderDevices();
    emit("render", null);
  }

  // -- sign-in -----------------------------------------------------------------------------
  function askToken(message) {
    $("token-error").textContent = message || "";
    $("token-input").value = "";
    $("token-dialog").hidden = false;
    $("login-name").focus();
  }

  async function start() {
    try {
      state.me = await api("GET", "/whoami", undefined, true);
    } catch (e) {
      state.me = null;
      askToken(state.token ? t("badToken") : "");
      return;
    }
    $("token-dialog").hidden = true;
    queueRender();
    loadExtras();
    runStream();
  }

  async function signOut() {
    try { await api("DELETE", "/session", undefined, true); } catch (e) { /* signed out anyway */ }
    localStorage.removeItem(TOKEN_KEY);
    state.token = ""; state.me = null;
    if (state.stream) state.stream.abort();
    askToken("");
    queueRender();
  }

  function emit(type, data) { for (const fn of listeners) { try { fn(type, data); } catch (e) { console.error(e); } } }

  function init() {
    applyTheme();
    $("login-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        const body = { name: $("login-name").value.trim(), password: $("login-password").value };
        const r = await fetch(API + "/session", { method: "POST", credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-Requested-With": "gateway-board" }, body: JSON.stringify(body) });
        if (!r.ok) { $("token-error").textContent = t("badLogin"); return; }
        $("login-password").value = "";
        localStorage.removeItem(TOKEN_KEY);
        state.token = "";
        start();
      } catch (e) { $("token-error").textContent = e.message; }
    });
    $("token-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const v = $("token-input").value.trim();
      if (!v) return;
      state.token = v;
      localStorage.setItem(TOKEN_KEY, v);
      $("token-dialog").hidden = true;
      start();
    });
    $("token-forget").addEventListener("click", signOut);
    $("who").addEventListener("click", () => askToken(""));
    $("lang").addEventListener("click", () => {
      state.lang = state.lang === "zh" ? "en" : "zh";
      localStorage.setItem(LANG_KEY, state.lang);
      translated.clear();
      render();
    });
    $("alerts").addEventListener("click", () => setAlerts(!state.alerts));
    $("theme").addEventListener("click", () => {
      state.theme = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
      localStorage.setItem(THEME_KEY, state.theme);
      applyTheme();
    });
    $("search").addEventListener("input", (ev) => { state.filters.q = ev.target.value.trim(); queueRender(); });
    for (const sel of document.querySelectorAll("#filters select")) {
      sel.addEventListener("change", () => {
        const key = sel.dataset.filter;
        state.filters[key] = key === "owner" ? (sel.value ? sel.value.slice(1) : null) : sel.value;
        queueRender();
      });
    }
    $("act-cancel").addEventListener("click", closeDialog);
    $("act-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const d = state.dialog;
      if (!d) return;
      const body = { note: $("act-note").value.trim() };
      if (d.action === "assign" || d.action === "hand_over") {
        body.to = $("act-to").value.trim();
        if (!body.to) return;
      }
      closeDialog();
      act(d.id, d.action, d.button, body);
    });
    document.addEventListener("keydown", (ev) => { if (ev.key === "Escape" && !$("act-dialog").hidden) closeDialog(); });
    setInterval(() => {
      tickCountdowns();
      // Only once the gateway's zone is known: the browser's would be the wrong clock.
      $("now").textContent = state.timeZone ? format(true).format(new Date()) : "";
    }, 1000);
    setInterval(() => { if (state.me) loadSnapshot().catch(() => {}); }, REFRESH_MS);
    render();
    start();
  }

  // The hook for extensions: read the state, call the API, re-render, hear every change.
  window.Board = {
    state, api, t, el, render: queueRender, localTime, titleOf,
    on(fn) { listeners.push(fn); },
    addStrings(lang, strings) { Object.assign(I18N[lang] || (I18N[lang] = {}), strings); },
  };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init); else init();
})();
