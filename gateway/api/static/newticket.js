// NOC board: the "New ticket" form, for faults a customer reports by phone, e-mail or help desk,
// and what the ticket cards show of such reports (who reported it, how, a back-dated start and
// its reason) with the Dispatch and "No on-site visit" actions. Standalone beside board.js
// (same token and language, kept in this browser's storage): the new ticket reaches the board
// through the live stream like any other, and the cards board.js draws are annotated after each
// drawing. Every string from the server goes in as text. Plain browser JavaScript, no build step.
"use strict";

(function () {
  const API = "/api/v1";
  const TOKEN_KEY = "gateway.token";
  const LANG_KEY = "gateway.lang";

  const I18N = {
    en: {
      newTicket: "New ticket", newTitle: "New ticket (reported by a customer)",
      device: "Device", level: "Level", titleField: "What is wrong", reportedBy: "Reported by",
      channel: "Channel", phone: "phone", email: "e-mail", helpdesk: "help desk",
      reportedAt: "Reported at (empty: now)", reason: "Reason for the earlier start",
      reasonHelp: "Clocks start when the customer told us. A time more than a minute back needs a reason.",
      cancel: "Cancel", open: "Open ticket", opened: "ticket opened",
      level1: "1 · critical", level2: "2 · major", level3: "3 · minor", level4: "4 · warning",
      noToken: "Enter an operator token first (🔑).",
      reportedVia: "reported by {who} via {channel}", backdated: "clocks from the report; entered {at}: {reason}",
      dispatch: "Dispatch", noVisit: "No visit needed", alarmsLinked: "alarms",
    },
    zh: {
      newTicket: "新建工单", newTitle: "新建工单（客户报修）",
      device: "设备", level: "故障级别", titleField: "故障描述", reportedBy: "报修人",
      channel: "报修方式", phone: "电话", email: "邮件", helpdesk: "服务台",
      reportedAt: "报修时间（留空为现在）", reason: "补录原因",
      reasonHelp: "计时从客户报修时开始。早于现在一分钟以上的时间须填写补录原因。",
      cancel: "取消", open: "创建工单", opened: "工单已创建",
      level1: "一级 · 严重", level2: "二级 · 重要", level3: "三级 · 次要", level4: "四级 · 警告",
      noToken: "请先输入 operator 令牌（🔑）。",
      reportedVia: "{who} 通过{channel}报修", backdated: "按报修时间计时；补录于 {at}：{reason}",
      dispatch: "派工", noVisit: "无需到场", alarmsLinked: "关联告警",
    },
  };
  const lang = () => (localStorage.getItem(LANG_KEY) === "zh" ? "zh" : (localStorage.getItem(LANG_KEY) ? "en" :
    ((navigator.language || "").toLowerCase().startsWith("zh") ? "zh" : "en")));
  const t = (k) => I18N[lang()][k] || I18N.en[k] || k;

  function el(tag, attrs, ...children) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") n.className = v;
      else if (k === "text") n.textContent = v;
      else if (k.startsWith("on")) n.addEventListener(k.slice(2), v);
      else n.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) if (c !== null && c !== undefined) n.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return n;
  }
  const label = (key, field) => el("label", { class: "nt-field" }, el("span", { "data-nt": key, text: t(key) }), field);

  async function api(method, path, body) {
    const token = localStorage.getItem(TOKEN_KEY) || "";
    const headers = { Authorization: "Bearer " + token };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(API + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    if (!r.ok) throw new Error((data && data.message) || r.status + " " + r.statusText);
    return data;
  }

  function build() {
    const device = el("select", { id: "nt-device", required: true });
    const level = el("select", { id: "nt-level", required: true },
      ...[1, 2, 3, 4].map((n) => el("option", { value: n, "data-nt": "level" + n, text: t("level" + n), selected: n === 3 })));
    const channel = el("select", { id: "nt-channel", required: true },
      ...["phone", "email", "helpdesk"].map((c) => el("option", { value: c, "data-nt": c, text: t(c) })));
    const form = el("form", { id: "nt-form", class: "dialog" },
      el("h2", { "data-nt": "newTitle", text: t("newTitle") }),
      label("device", device),
      label("level", level),
      label("titleField", el("input", { id: "nt-title", required: true, maxlength: 500, autocomplete: "off" })),
      label("reportedBy", el("input", { id: "nt-reported-by", required: true, maxlength: 200, autocomplete: "off" })),
      label("channel", channel),
      label("reportedAt", el("input", { id: "nt-reported-at", type: "datetime-local", step: 60 })),
      label("reason", el("input", { id: "nt-reason", maxlength: 1000, autocomplete: "off" })),
      el("p", { class: "hint", "data-nt": "reasonHelp", text: t("reasonHelp") }),
      el("p", { id: "nt-error", class: "error" }),
      el("div", { class: "buttons" },
        el("button", { type: "button", id: "nt-cancel", class: "plain", "data-nt": "cancel", text: t("cancel") }),
        el("button", { type: "submit", id: "nt-submit", "data-nt": "open", text: t("open") })));
    const overlay = el("div", { id: "nt-dialog", class: "overlay", hidden: true }, form);
    document.body.append(overlay);
    const button = el("button", { type: "button", id: "new-ticket", class: "plain", "data-nt": "newTicket", text: t("newTicket") });
    const h2 = document.querySelector("#tickets-panel h2");
    (h2 || document.querySelector("header .status") || document.body).append(button);

    button.addEventListener("click", () => show().catch((e) => { $error().textContent = e.message; }));
    form.querySelector("#nt-cancel").addEventListener("click", () => { overlay.hidden = true; });
    form.addEventListener("submit", (ev) => { ev.preventDefault(); submit().catch(() => {}); });
    // board.js switches the language on this button; follow it after its handler ran.
    const langButton = document.getElementById("lang");
    if (langButton) langButton.addEventListener("click", () => setTimeout(translate, 0));  // why: after board.js stored the choice
  }
  const $error = () => document.getElementById("nt-error");

  function translate() {
    for (const n of document.querySelectorAll("[data-nt]")) n.textContent = t(n.dataset.nt);
  }

  async function show() {
    translate();
    $error().textContent = "";
    const overlay = document.getElementById("nt-dialog");
    overlay.hidden = false;
    if (!localStorage.getItem(TOKEN_KEY)) { $error().textContent = t("noToken"); return; }
    const select = document.getElementById("nt-device");
    if (!select.options.length) {
      const devices = await api("GET", "/devices");
      for (const d of devices.filter((x) => x.known)) {
        select.append(el("option", { value: d.id, text: d.id + (d.name ? " · " + d.name : "") + (d.policy ? " · " + d.policy : "") }));
      }
    }
    document.getElementById("nt-title").focus();
  }

  async function submit() {
    const v = (id) => document.getElementById(id).value.trim();
    const body = {
      device: v("nt-device"), level: Number(v("nt-level")), title: v("nt-title"),
      reported_by: v("nt-reported-by"), channel: v("nt-channel"), reason: v("nt-reason"),
    };
    // A datetime-local value has no offset: the gateway reads it in its own time zone.
    if (v("nt-reported-at")) body.reported_at = v("nt-reported-at");
    const submitButton = document.getElementById("nt-submit");
    submitButton.disabled = true;
    $error().textContent = "";
    try {
      const tk = await api("POST", "/tickets", body);
      document.getElementById("nt-dialog").hidden = true;
      for (const id of ["nt-title", "nt-reported-by", "nt-reported-at", "nt-reason"]) document.getElementById(id).value = "";
      const toast = document.getElementById("toast");
      if (toast) {
        const m = el("div", { class: "msg", text: t("opened") + " · #" + tk.id + " " + tk.title });
        toast.append(m);
        setTimeout(() => m.remove(), 5000);  // why: a toast disappears after a while
      }
    } catch (e) {
      $error().textContent = e.message;
      throw e;
    } finally {
      submitButton.disabled = false;
    }
  }

  // -- reported tickets on the board's cards ------------------------------------------------
  const known = new Map();   // ticket id -> the fields shown here, from GET /tickets
  let me = null;
  let fetching = null;

  function fill(text, values) { return text.replace(/\{(\w+)\}/g, (_, k) => values[k] ?? ""); }
  function shortTime(iso) {
    const d = new Date(iso);
    const pad = (x) => String(x).padStart(2, "0");
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + pad(d.getHours()) + ":" + pad(d.getMinutes());
  }

  async function refresh() {
    if (fetching) return fetching;
    fetching = (async () => {
      try {
        if (!me) me = await api("GET", "/whoami");
        const rows = await api("GET", "/tickets?closed=false&limit=5000");
        known.clear();
        for (const tk of rows) known.set(tk.id, tk);
      } catch (e) {
        /* no token yet, or the gateway is away: the cards stay as board.js drew them */
      } finally {
        fetching = null;
      }
    })();
    return fetching;
  }

  function decorate(card, tk) {
    if (card.querySelector(".nt-extra")) return;
    const parts = [];
    if (tk.origin && tk.origin !== "alarm") {
      parts.push(el("div", { class: "nt-reported", text: fill(t("reportedVia"), { who: tk.reported_by, channel: t(tk.origin) }) }));
      if (tk.entered_at) {
        parts.push(el("div", { class: "nt-backdated", text: fill(t("backdated"), { at: shortTime(tk.entered_at), reason: tk.backdate_reason }) }));
      }
    }
    if (tk.alarm_ids && tk.alarm_ids.length > 1) {
      parts.push(el("div", { class: "nt-alarms", text: t("alarmsLinked") + " " + tk.alarm_ids.map((a) => "#" + a).join(", ") }));
    }
    const running = (kind) => tk.clocks.some((c) => c.kind === kind && !c.stopped_at && c.state !== "waiting");
    const operator = me && me.role === "operator";
    const buttons = [];
    if (running("dispatch")) buttons.push(["dispatch", "dispatch"]);
    if (running("on_site")) buttons.push(["no_on_site", "noVisit"]);
    const actions = card.querySelector(".actions");
    for (const [action, key] of buttons) {
      const b = el("button", { type: "button", class: "nt-action", "data-action": action, disabled: !operator, "data-nt": key, text: t(key) });
      b.addEventListener("click", () => {
        b.disabled = true;
        api("POST", "/tickets/" + tk.id + "/" + action, { note: "" })
          .catch((e) => { b.disabled = false; note(e.message); });
      });
      if (actions) actions.append(b);
    }
    if (parts.length) card.append(el("div", { class: "nt-extra meta" }, ...parts));
    else card.append(el("span", { class: "nt-extra", hidden: true }));
  }

  function note(text) {
    const toast = document.getElementById("toast");
    if (!toast) return;
    const m = el("div", { class: "msg err", text });
    toast.append(m);
    setTimeout(() => m.remove(), 5000);  // why: a toast disappears after a while
  }

  function annotate(again) {
    for (const card of document.querySelectorAll("#tickets .ticket[data-ticket-id]")) {
      if (again) for (const n of card.querySelectorAll(".nt-extra, .nt-action")) n.remove();
      const tk = known.get(Number(card.dataset.ticketId));
      if (tk) decorate(card, tk);
    }
  }

  // At most one list fetch a second while the board redraws (a storm redraws it often).
  let timer = null;
  let lastFetch = 0;
  function schedule() {
    if (timer) return;
    const wait = Math.max(0, 1000 - (Date.now() - lastFetch));
    timer = setTimeout(() => {  // why: throttles the list fetch to one a second
      timer = null;
      lastFetch = Date.now();
      refresh().then(() => annotate(true));
    }, wait);
  }

  function watch() {
    const box = document.getElementById("tickets");
    if (!box) return;
    let queued = false;
    // board.js redraws the list on every change: annotate the new cards once it is done.
    // Cards sit in lanes below #tickets (subtree); our own additions do not count as a redraw.
    const ours = (n) => n.nodeType === 1 && (n.classList.contains("nt-extra") || n.classList.contains("nt-action"));
    new MutationObserver((muts) => {
      if (muts.every((m) => [...m.addedNodes, ...m.removedNodes].every(ours))) return;
      if (queued) return;
      queued = true;
      queueMicrotask(() => { queued = false; annotate(false); schedule(); });
    }).observe(box, { childList: true, subtree: true });
  }

  function init() { build(); watch(); }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init); else init();
})();
