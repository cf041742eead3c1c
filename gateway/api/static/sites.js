// Sites panel of a central's NOC board: every site with its edge's link (up, silent, down,
// unknown) and the backlog the edge buffers (from its heartbeat), from /api/v1/sites, which a
// partitioned central serves. Follows the board's site/customer/contract filters. Elsewhere
// the endpoint answers 501 and the panel stays hidden.
"use strict";

(function () {
  const REFRESH_MS = 5000;
  let timer = null;

  function strings(B) {
    B.addStrings("en", { sites: "Sites", link_up: "link up", link_silent: "silent", link_down: "unreachable",
      link_unknown: "not heard", link_no_edge: "no edge", backlog: "buffered", partition: "partition",
      openAlarms: "open alarms", noSites: "No site matches the filters." });
    B.addStrings("zh", { sites: "站点", link_up: "链路正常", link_silent: "无心跳", link_down: "不可达",
      link_unknown: "未收到", link_no_edge: "无边缘网关", backlog: "缓存", partition: "分区",
      openAlarms: "活动告警", noSites: "没有符合筛选条件的站点。" });
  }

  function panel(B) {
    let p = document.getElementById("sites-panel");
    if (p) return p;
    p = B.el("section", { class: "panel", id: "sites-panel", hidden: true });
    const first = document.querySelector("main .col");
    (first || document.querySelector("main") || document.body).prepend(p);
    return p;
  }

  function render(B, rows) {
    const p = panel(B);
    const f = B.state.filters || {};
    const shown = rows.filter((s) => (!f.site || s.site === f.site)
      && (!f.customer || (s.customers || []).includes(f.customer))
      && (!f.policy || (s.contracts || []).includes(f.policy)));
    const down = shown.filter((s) => s.link === "down").length;
    const list = B.el("div", { class: "sites" });
    for (const s of shown) {
      const backlog = s.backlog === null || s.backlog === undefined ? "" : B.t("backlog") + " " + s.backlog;
      list.append(B.el("div", { class: "site link-" + s.link, dataset: { site: s.site } },
        B.el("span", { class: "site-dot" }),
        B.el("span", { class: "site-name", text: s.site }),
        B.el("span", { class: "site-link", text: B.t("link_" + s.link) }),
        B.el("span", { class: "site-backlog mono", text: backlog }),
        B.el("span", { class: "site-meta", text: (s.customers || []).join(", ") + " · " + B.t("partition") + " " + s.partition
          + (s.open_alarms ? " · " + B.t("openAlarms") + " " + s.open_alarms : "") })));
    }
    if (!shown.length) list.append(B.el("div", { class: "empty", text: B.t("noSites") }));
    p.replaceChildren(B.el("h2", {}, B.el("span", { text: B.t("sites") }),
      B.el("span", { class: "count", text: down ? down + " / " + shown.length : String(shown.length) })), list);
    p.hidden = false;
  }

  async function load(B) {
    if (!B.state.me) return;
    try {
      const doc = await B.api("GET", "/sites", undefined, true);
      B.state.sites = doc.sites;
      render(B, doc.sites);
    } catch (e) {
      if (e.status === 501 || e.status === 404) {  // not a partitioned central: no panel, no polling
        panel(B).hidden = true;
        clearInterval(timer);
      }
    }
  }

  function start() {
    const B = window.Board;
    if (!B) return;
    strings(B);
    const first = () => { if (B.state.me) load(B); else setTimeout(first, 300); };  // once signed in
    first();
    timer = setInterval(() => load(B), REFRESH_MS);
    for (const sel of document.querySelectorAll("#filters select")) {
      sel.addEventListener("change", () => { if (B.state.sites) render(B, B.state.sites); });
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
