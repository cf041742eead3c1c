// NOC board: the service report of a contract and period (month, quarter, year), opened as a
// page or downloaded as a PDF (GET /api/v1/reports/service), and which scheduled reports were
// sent. Its own panel beside board.js, through window.Board. With a session cookie the links
// work as they are; with a bearer token the report is fetched and opened from memory.
"use strict";

(function () {
  const B = window.Board;
  if (!B) return;
  const API = "/api/v1";
  B.addStrings("en", { svcReports: "Service reports", svcContract: "contract", svcPeriod: "period", svcOpen: "Open",
                      svcPdf: "PDF", svcSent: "sent", monthly: "month", quarterly: "quarter", yearly: "year", svcNone: "No contracts." });
  B.addStrings("zh", { svcReports: "服务报告", svcContract: "合同", svcPeriod: "周期", svcOpen: "查看",
                      svcPdf: "PDF", svcSent: "已发送", monthly: "月", quarterly: "季", yearly: "年", svcNone: "没有合同。" });
  const { el, t } = B;
  let index = null;

  const panel = el("section", { class: "panel", id: "reports-panel" });
  const head = el("h2", {});
  const contract = el("select", { id: "svc-contract" });
  const period = el("select", { id: "svc-period" });
  const open = el("a", { id: "svc-html", target: "_blank", rel: "noopener", class: "button" });
  const pdf = el("a", { id: "svc-pdf", target: "_blank", rel: "noopener", class: "button" });
  const sent = el("div", { id: "svc-sent", class: "meta" });
  panel.append(head, el("div", { class: "filters" }, contract, period, open, pdf), sent);

  function url(format) {
    return API + "/reports/service?contract=" + encodeURIComponent(contract.value) + "&period="
      + encodeURIComponent(period.value) + "&format=" + format;
  }

  function update() {
    head.textContent = t("svcReports");
    open.textContent = t("svcOpen");
    pdf.textContent = t("svcPdf");
    open.href = url("html");
    pdf.href = url("pdf");
    pdf.setAttribute("download", "service-" + contract.value + "-" + period.value + ".pdf");
    const mine = (index ? index.sent : []).filter((s) => s.contract === contract.value);
    sent.textContent = mine.length ? t("svcSent") + ": " + mine.map((s) => s.period + " → " + s.connector).join(", ") : "";
  }

  function fill() {
    const keep = [contract.value, period.value];
    contract.replaceChildren(...index.contracts.map((c) =>
      el("option", { value: c.name, text: c.name + (c.customer ? " · " + c.customer : "") })));
    period.replaceChildren();
    for (const every of ["monthly", "quarterly", "yearly"]) {
      const group = el("optgroup", { label: t(every) });
      for (const p of index.periods[every] || []) group.append(el("option", { value: p, text: p }));
      period.append(group);
    }
    // Default: the last month that has ended (the current one is still running).
    const months = index.periods.monthly || [];
    if (keep[0] && index.contracts.some((c) => c.name === keep[0])) contract.value = keep[0];
    period.value = keep[1] || months[1] || months[0] || "";
    panel.hidden = !index.contracts.length;
    update();
  }

  async function load() {
    if (!B.state.me) return false;
    try { index = await B.api("GET", "/reports", undefined, true); } catch (e) { return false; }
    fill();
    return true;
  }

  // A bearer token does not travel with a plain link: fetch the report and open it from memory.
  async function viaToken(ev, format) {
    if (!B.state.token) return;  // a session cookie goes along with the link
    ev.preventDefault();
    const r = await fetch(url(format), { headers: { Authorization: "Bearer " + B.state.token } });
    if (!r.ok) return;
    const blob = URL.createObjectURL(await r.blob());
    const a = el("a", { href: blob, target: "_blank", rel: "noopener", download: format === "pdf" ? pdf.getAttribute("download") : null });
    a.click();
    setTimeout(() => URL.revokeObjectURL(blob), 60000);
  }

  function mount() {
    const cols = document.querySelectorAll("main .col");
    (cols[0] || document.querySelector("main") || document.body).append(panel);
    contract.addEventListener("change", update);
    period.addEventListener("change", update);
    open.addEventListener("click", (ev) => viaToken(ev, "html"));
    pdf.addEventListener("click", (ev) => viaToken(ev, "pdf"));
    update();
    // Until the board has signed in, look every 300 ms (no request before); then now and then.
    const wait = setInterval(async () => { if (!index && await load()) clearInterval(wait); }, 300);
    load().then((ok) => { if (ok) clearInterval(wait); });
    setInterval(load, 300000);
    new MutationObserver(() => { if (index) fill(); else update(); })
      .observe(document.documentElement, { attributes: true, attributeFilter: ["lang"] });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mount); else mount();
})();
