// The customer's page (/customer): a customer contact signs in and sees its own sites and
// contracts only — open and recently closed tickets with their clocks, the incident reports of
// restored tickets, and the contract's service reports. Read-only: it sends nothing but the
// sign-in and sign-out; the API scopes every answer to the account. Plain JavaScript; every
// string from the server goes in as text.
"use strict";

(function () {
  const API = "/api/v1";
  const LANG_KEY = "gateway.lang";
  const REFRESH_MS = 30000;
  const RECENT = 20;

  const I18N = {
    en: {
      title: "Service status", open: "Open tickets", recent: "Recently closed", reports: "Service reports",
      signIn: "Sign in", signOut: "Sign out", userName: "name", password: "password", badLogin: "Wrong name or password.",
      noOpen: "No open tickets.", noRecent: "No closed tickets.", noContracts: "No contract reports for this account.",
      site: "site", contract: "contract", since: "opened", closedAt: "closed", report: "Incident report", pdf: "PDF",
      monthly: "Monthly", quarterly: "Quarterly", yearly: "Yearly", sent: "sent", level: "L",
      response: "Response", dispatch: "Dispatch", solution: "Solution", on_site: "On site", restore: "Restore", report_clock: "Report",
      met: "met", breached: "breached", running: "running", paused: "paused", pending: "not started", stopped: "stopped",
      due: "due", left: "left", overdue: "overdue",
      st_open: "open", st_acknowledged: "acknowledged", st_solution_proposed: "solution proposed", st_on_site: "engineer on site",
      st_restored: "restored", st_closed: "closed",
    },
    zh: {
      title: "服务状态", open: "处理中的工单", recent: "最近关闭", reports: "服务报告",
      signIn: "登录", signOut: "退出", userName: "账号", password: "密码", badLogin: "账号或密码错误。",
      noOpen: "没有处理中的工单。", noRecent: "没有已关闭的工单。", noContracts: "此账号没有合同报告。",
      site: "站点", contract: "合同", since: "开单", closedAt: "关闭", report: "故障报告", pdf: "PDF",
      monthly: "月报", quarterly: "季报", yearly: "年报", sent: "已发送", level: "级",
      response: "响应", dispatch: "派工", solution: "方案", on_site: "到场", restore: "恢复", report_clock: "报告",
      met: "达标", breached: "超时", running: "计时中", paused: "暂停", pending: "未开始", stopped: "已停止",
      due: "截止", left: "剩余", overdue: "已超时",
      st_open: "待处理", st_acknowledged: "已响应", st_solution_proposed: "已给方案", st_on_site: "工程师到场",
      st_restored: "已恢复", st_closed: "已关闭",
    },
  };
  const state = { lang: localStorage.getItem(LANG_KEY) === "zh" ? "zh" : "en", me: null, timeZone: "", timer: null };
  const $ = (id) => document.getElementById(id);
  const t = (k) => (I18N[state.lang] && I18N[state.lang][k]) || I18N.en[k] || k;

  function el(tag, attrs, ...children) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") n.className = v;
      else if (k === "text") n.textContent = v;
      else if (k === "dataset") Object.assign(n.dataset, v);
      else n.setAttribute(k, String(v));
    }
    for (const c of children) if (c !== null && c !== undefined && c !== false) n.append(c instanceof Node ? c : String(c));
    return n;
  }

  function when(iso) {
    if (!iso) return "";
    const opts = { hour12: false, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" };
    if (state.timeZone) opts.timeZone = state.timeZone;
    return new Intl.DateTimeFormat(state.lang === "zh" ? "zh-CN" : "en-GB", opts).format(new Date(iso));
  }
  function span(sec) {
    const s = Math.abs(Math.round(sec));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    return (h ? h + "h " : "") + m + "m";
  }

  async function get(path) {
    const r = await fetch(API + path, { credentials: "same-origin", cache: "no-store" });
    if (r.status === 401) { const e = new Error("signed out"); e.status = 401; throw e; }
    if (!r.ok) throw new Error((await r.json().catch(() => ({}))).message || "HTTP " + r.status);
    return r.json();
  }

  // -- rendering -------------------------------------------------------------------------
  function clockChip(c) {
    const name = t(c.kind === "report" ? "report_clock" : c.kind);
    let text = name + " · ";
    if (c.breached) text += t("breached");
    else if (c.state === "met" || c.state === "stopped") text += t(c.state);
    else if (c.remaining_seconds !== null && c.remaining_seconds !== undefined) {
      text += (c.remaining_seconds < 0 ? t("overdue") + " " : t("left") + " ") + span(c.remaining_seconds)
        + (c.due_at ? " · " + t("due") + " " + when(c.due_at) : "");
    } else text += t(c.state) || c.state;
    return el("span", { class: "clock " + c.state + (c.breached ? " breached" : ""), dataset: { clock: c.kind, state: c.state }, text });
  }

  function reportLinks(tk) {
    if (tk.status !== "restored" && tk.status !== "closed") return null;
    const base = API + "/tickets/" + tk.id + "/report";
    return el("div", { class: "links" },
      el("a", { href: base + "?format=html", target: "_blank", rel: "noopener", dataset: { link: "incident-html" }, text: t("report") }),
      el("a", { href: base + "?format=pdf", target: "_blank", rel: "noopener", dataset: { link: "incident-pdf" }, text: t("pdf") }));
  }

  function ticketRow(tk) {
    return el("div", { class: "ticket l" + tk.level, dataset: { ticketId: String(tk.id), status: tk.status } },
      el("div", { class: "head" },
        el("span", { class: "chip l" + tk.level, text: state.lang === "zh" ? tk.level + t("level") : t("level") + tk.level }), " ",
        el("span", { class: "mono", text: "#" + tk.id }), " ",
        el("span", { class: "title", text: tk.title || tk.alarm_key }), " ",
        el("span", { class: "status-badge", text: t("st_" + tk.status) })),
      el("div", { class: "meta" },
        el("span", { text: tk.device }), " · ",
        tk.site ? el("span", { text: t("site") + " " + tk.site + " · " }) : null,
        el("span", { text: t("contract") + " " + tk.policy + " · " }),
        el("span", { text: t("since") + " " + when(tk.opened_at) }),
        tk.closed_at ? el("span", { text: " · " + t("closedAt") + " " + when(tk.closed_at) }) : null),
      el("div", { class: "clocks" }, ...(tk.clocks || []).map(clockChip)),
      reportLinks(tk));
  }

  function renderTickets(tickets) {
    const open = tickets.filter((x) => x.status !== "closed");
    const recent = tickets.filter((x) => x.status === "closed").slice(0, RECENT);
    $("open-count").textContent = open.length;
    $("recent-count").textContent = recent.length;
    $("open-tickets").replaceChildren(...(open.length ? open.map(ticketRow) : [el("p", { class: "empty", text: t("noOpen") })]));
    $("recent-tickets").replaceChildren(...(recent.length ? recent.map(ticketRow) : [el("p", { class: "empty", text: t("noRecent") })]));
  }

  function renderReports(idx) {
    const box = $("service-reports");
    if (!idx.contracts.length) { box.replaceChildren(el("p", { class: "empty", text: t("noContracts") })); return; }
    const sent = new Set(idx.sent.map((s) => s.contract + "|" + s.period));
    box.replaceChildren(...idx.contracts.map((c) => {
      const links = el("div", { class: "report-links" });
      for (const every of ["monthly", "quarterly", "yearly"]) {
        // Completed periods first: the current one is still running.
        for (const p of (idx.periods[every] || []).slice(1, every === "monthly" ? 4 : 3)) {
          const q = "?contract=" + encodeURIComponent(c.name) + "&period=" + encodeURIComponent(p);
          links.append(el("span", { class: "report", dataset: { contract: c.name, period: p } },
            t(every) + " " + p + (sent.has(c.name + "|" + p) ? " (" + t("sent") + ") " : " "),
            el("a", { href: API + "/reports/service" + q + "&format=html", target: "_blank", rel: "noopener", dataset: { link: "service-html" }, text: "HTML" }),
            el("a", { href: API + "/reports/service" + q + "&format=pdf", target: "_blank", rel: "noopener", dataset: { link: "service-pdf" }, text: "PDF" })));
        }
      }
      return el("div", { class: "contract", dataset: { contract: c.name } },
        el("h3", { text: c.name + (c.customer ? " · " + c.customer : "") }), links);
    }));
  }

  function translate() {
    document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
    for (const n of document.querySelectorAll("[data-i18n]")) n.textContent = t(n.dataset.i18n);
    for (const n of document.querySelectorAll("[data-i18n-placeholder]")) n.placeholder = t(n.dataset.i18nPlaceholder);
    $("lang").textContent = state.lang === "zh" ? "English" : "中文";
  }

  // -- loading ------------------------------------------------------------------------------
  async function load() {
    try {
      state.me = await get("/whoami");
    } catch (e) {
      if (e.status === 401) { askLogin(); return; }
      throw e;
    }
    $("login").hidden = true;
    $("sign-out").hidden = false;
    $("who").textContent = (state.me.display_name || state.me.name);
    const [tickets, idx] = await Promise.all([get("/tickets?limit=500"), get("/reports")]);
    state.timeZone = idx.timezone || "";
    renderTickets(tickets);
    renderReports(idx);
    $("now").textContent = when(new Date().toISOString());
    document.body.dataset.ready = "1";
    if (!state.timer) state.timer = setInterval(() => load().catch(() => {}), REFRESH_MS);
  }

  function askLogin(message) {
    document.body.dataset.ready = "0";
    $("sign-out").hidden = true;
    $("login-error").textContent = message || "";
    $("login").hidden = false;
    $("login-name").focus();
  }

  function init() {
    translate();
    $("login-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const body = { name: $("login-name").value.trim(), password: $("login-password").value };
      const r = await fetch(API + "/session", { method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-Requested-With": "gateway-board" }, body: JSON.stringify(body) });
      $("login-password").value = "";
      if (!r.ok) { $("login-error").textContent = r.status === 429 ? (await r.json()).message : t("badLogin"); return; }
      load().catch((e) => askLogin(e.message));
    });
    $("sign-out").addEventListener("click", async () => {
      await fetch(API + "/session", { method: "DELETE", credentials: "same-origin", headers: { "X-Requested-With": "gateway-board" } });
      state.me = null;
      askLogin();
    });
    $("lang").addEventListener("click", () => {
      state.lang = state.lang === "zh" ? "en" : "zh";
      localStorage.setItem(LANG_KEY, state.lang);
      translate();
      load().catch(() => {});
    });
    load().catch((e) => askLogin(e.message));
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init); else init();
})();
