// After-sales panel of the NOC board: planned work due and overdue (inspections 巡检, return
// visits 回访, preventive maintenance), expiring warranties (30/60/90 days) and a device's repair
// history. Reads /api/v1/service/*; an operator token can complete planned work with a report.
// Standalone: it shares only the token and language the board keeps in localStorage.
"use strict";

(function () {
  const API = "/api/v1";
  const TOKEN_KEY = "gateway.token";
  const LANG_KEY = "gateway.lang";
  const REFRESH_MS = 60000;

  const I18N = {
    en: {
      title: "Planned work & warranty", overdue: "Overdue", due: "Due now", none: "Nothing due",
      expiring: "Warranties ending within", days: "days", noExpiring: "No warranty ends in this period",
      history: "Repair history", device: "device id", show: "Show", done: "Done…", reportPrompt: "Report (what was done, findings, advice):",
      inspection: "inspection", visit: "return visit", maintenance: "maintenance", left: "left", ends: "ends",
      replace: "Replace the unit", saved: "Completed", failed: "Failed", noHistory: "No history",
      ticketService: "Ticket: warranty and spare parts", ticketId: "ticket id", record: "Record", part: "part",
      paid: "paid service", loaner: "Loaner", back: "back", notBack: "not back", asOfStart: "as of its start",
    },
    zh: {
      title: "计划工作与保修", overdue: "已逾期", due: "待办", none: "暂无待办",
      expiring: "保修到期提醒(天内)", days: "天", noExpiring: "此期间无保修到期",
      history: "维修档案", device: "设备编号", show: "查看", done: "完成…", reportPrompt: "工作报告(内容、发现、维护建议):",
      inspection: "巡检", visit: "回访", maintenance: "预防性维护", left: "剩余", ends: "到期",
      replace: "应更换设备", saved: "已完成", failed: "失败", noHistory: "暂无记录",
      ticketService: "工单:保修与备件", ticketId: "工单号", record: "记录", part: "部件",
      paid: "有偿服务", loaner: "备用机", back: "已归还", notBack: "未归还", asOfStart: "按工单开始时",
    },
  };
  const lang = () => (localStorage.getItem(LANG_KEY) === "zh" ? "zh" : "en");
  const t = (k) => I18N[lang()][k] || I18N.en[k] || k;
  let within = 30;
  let canAct = false;

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  async function get(path) {
    const r = await fetch(API + path, { headers: { Authorization: "Bearer " + (localStorage.getItem(TOKEN_KEY) || "") }, cache: "no-store" });
    if (!r.ok) throw new Error((await r.json().catch(() => ({}))).message || "HTTP " + r.status);
    return r.json();
  }

  async function post(path, body) {
    const r = await fetch(API + path, {
      method: "POST", body: JSON.stringify(body),
      headers: { Authorization: "Bearer " + (localStorage.getItem(TOKEN_KEY) || ""), "Content-Type": "application/json" },
    });
    const doc = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(doc.message || "HTTP " + r.status);
    return doc;
  }

  function panel() {
    let p = document.getElementById("planned-panel");
    if (p) return p;
    p = el("section", "panel");
    p.id = "planned-panel";
    const cols = document.querySelectorAll("main .col");
    (cols[cols.length - 1] || document.querySelector("main") || document.body).appendChild(p);
    return p;
  }

  function itemRow(item) {
    const row = el("div", "alarm " + (item.state === "overdue" ? "l3 unacked" : "l4"));
    row.dataset.item = item.id;
    row.appendChild(el("span", "bar"));
    const body = el("div");
    body.appendChild(el("div", "title", `${t(item.kind)} · ${item.device} · ${item.title || ""}`));
    body.appendChild(el("div", "meta", `${item.due_date} · ${item.state === "overdue" ? t("overdue") : t("due")} · ${item.id}`));
    row.appendChild(body);
    if (canAct) {
      const b = el("button", "plain", t("done"));
      b.addEventListener("click", async () => {
        const text = window.prompt(t("reportPrompt"));
        if (!text) return;
        b.disabled = true;
        try {
          await post(`/service/planned/${item.id}/done`, { text, checks: Object.fromEntries((item.checklist || []).map((c) => [c, true])) });
          row.remove();
        } catch (e) {
          b.disabled = false;
          window.alert(t("failed") + ": " + e.message);
        }
      });
      row.appendChild(b);
    } else {
      row.appendChild(el("span"));
    }
    return row;
  }

  const ACTIONS = ["spare_requested", "spare_shipped", "repaired", "replacement_received", "part_replaced",
    "part_returned", "part_failed", "loaner_out", "loaner_back"];

  function showTicket(out, doc) {
    out.replaceChildren();
    const w = doc.warranty;
    const status = lang() === "zh" ? w.status_zh : w.status.replace(/_/g, " ");
    let line = `#${doc.ticket} · ${doc.device} · ${doc.contract} · ${status} (${t("asOfStart")} ${w.as_of})`;
    if (w.out_of_warranty && w.out_of_warranty.paid_service) line += ` · ${t("paid")}`;
    out.appendChild(el("div", "meta", line));
    const clocks = el("div", "clocks");
    for (const r of doc.spares) {
      const c = el("div", "clock " + ({ met: "met", late: "breached", overdue: "breached", reminder: "warning" }[r.state] || ""));
      c.dataset.clock = r.clock;
      c.dataset.state = r.state;
      c.appendChild(el("span", "name", `${r.clock} (${r.party})`));
      c.appendChild(el("span", "countdown", r.state));
      c.appendChild(el("span", "name", (r.due_at_local || "").slice(0, 16)));
      clocks.appendChild(c);
    }
    out.appendChild(clocks);
    if (doc.loaner) {
      out.appendChild(el("div", "meta", `${t("loaner")} ${doc.loaner.unit || ""}: ${doc.loaner.back_at ? t("back") : t("notBack")}`));
    }
  }

  function ticketSection(p) {
    const th = el("div", "level-head");
    th.appendChild(el("span", null, t("ticketService")));
    const id = el("input");
    id.id = "planned-ticket";
    id.placeholder = t("ticketId");
    id.size = 6;
    const show = el("button", "plain", t("show"));
    show.id = "planned-ticket-show";
    th.appendChild(id);
    th.appendChild(show);
    p.appendChild(th);
    const out = el("div");
    out.id = "planned-ticket-out";
    const load = async () => {
      try {
        showTicket(out, await get(`/service/tickets/${encodeURIComponent(id.value.trim())}`));
      } catch (e) {
        out.replaceChildren(el("div", "error", e.message));
      }
    };
    show.addEventListener("click", load);
    if (canAct) {
      const row = el("div", "actions");
      const sel = el("select");
      sel.id = "planned-action";
      for (const a of ACTIONS) {
        const o = el("option", null, a);
        o.value = a;
        sel.appendChild(o);
      }
      const part = el("input");
      part.id = "planned-part";
      part.placeholder = t("part");
      part.size = 10;
      const rec = el("button", "plain", t("record"));
      rec.id = "planned-record";
      rec.addEventListener("click", async () => {
        try {
          showTicket(out, await post(`/service/tickets/${encodeURIComponent(id.value.trim())}/actions`, { action: sel.value, part: part.value.trim() }));
        } catch (e) {
          out.replaceChildren(el("div", "error", e.message));
        }
      });
      row.appendChild(sel);
      row.appendChild(part);
      row.appendChild(rec);
      p.appendChild(row);
    }
    p.appendChild(out);
  }

  async function render() {
    if (!localStorage.getItem(TOKEN_KEY)) return;
    const p = panel();
    let overdue = [], due = [], expiring = [];
    try {
      const me = await get("/whoami").catch(() => null);
      canAct = !!(me && me.role === "operator");
      [overdue, due, expiring] = await Promise.all([
        get("/service/planned?state=overdue&limit=200"), get("/service/planned?state=due&limit=200"),
        get(`/service/warranty/expiring?within=${within}`),
      ]);
    } catch (e) {
      return; // the board shows connection problems; this panel just stays as it was
    }
    p.replaceChildren();
    const h = el("h2");
    h.appendChild(el("span", null, t("title")));
    h.appendChild(el("span", "count", String(overdue.length + due.length)));
    p.appendChild(h);
    const list = el("div");
    list.id = "planned-items";
    for (const item of [...overdue, ...due]) list.appendChild(itemRow(item));
    if (!overdue.length && !due.length) list.appendChild(el("div", "empty", t("none")));
    p.appendChild(list);

    const wh = el("div", "level-head");
    wh.appendChild(el("span", null, t("expiring")));
    const sel = el("select");
    sel.id = "planned-within";
    for (const d of [30, 60, 90]) {
      const o = el("option", null, String(d));
      o.value = String(d);
      if (d === within) o.selected = true;
      sel.appendChild(o);
    }
    sel.addEventListener("change", () => { within = Number(sel.value); render(); });
    wh.appendChild(sel);
    wh.appendChild(el("span", null, t("days")));
    p.appendChild(wh);
    const wl = el("div");
    wl.id = "planned-expiring";
    for (const w of expiring) {
      const row = el("div", "device");
      row.appendChild(el("span", "dot"));
      row.appendChild(el("span", null, `${w.device} · ${w.contract} · ${t("ends")} ${w.warranty_end} · ${t("left")} ${w.days_left} ${t("days")}`));
      wl.appendChild(row);
    }
    if (!expiring.length) wl.appendChild(el("div", "empty", t("noExpiring")));
    p.appendChild(wl);

    const hh = el("div", "level-head");
    hh.appendChild(el("span", null, t("history")));
    const input = el("input");
    input.id = "planned-device";
    input.placeholder = t("device");
    const go = el("button", "plain", t("show"));
    hh.appendChild(input);
    hh.appendChild(go);
    p.appendChild(hh);
    const out = el("div");
    out.id = "planned-history";
    p.appendChild(out);
    ticketSection(p);
    go.addEventListener("click", async () => {
      out.replaceChildren();
      try {
        const doc = await get(`/service/devices/${encodeURIComponent(input.value.trim())}/history`);
        const w = doc.warranty;
        out.appendChild(el("div", "meta", `${w.status_zh} / ${w.status} · ${(w.coverage && w.coverage.warranty_end) || "?"}`));
        for (const r of doc.replacement || []) out.appendChild(el("div", "tag new", `${t("replace")}: ${r.text}`));
        for (const e of doc.entries) {
          const when = new Date(e.ts * 1000).toISOString().slice(0, 16).replace("T", " ");
          out.appendChild(el("div", "meta", `${when} · ${e.kind} · ${e.what} ${e.ref !== null && e.ref !== undefined ? "[" + e.ref + "]" : ""} ${e.text || ""}`));
        }
        if (!doc.entries.length) out.appendChild(el("div", "empty", t("noHistory")));
      } catch (e) {
        out.appendChild(el("div", "error", e.message));
      }
    });
  }

  function start() {
    render();
    setInterval(render, REFRESH_MS);
    const langButton = document.getElementById("lang");
    if (langButton) langButton.addEventListener("click", () => setTimeout(render, 0));
    window.addEventListener("storage", (ev) => { if (ev.key === TOKEN_KEY || ev.key === LANG_KEY) render(); });
    const form = document.getElementById("token-form");
    if (form) form.addEventListener("submit", () => setTimeout(render, 500));
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
