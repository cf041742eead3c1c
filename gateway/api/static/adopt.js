// NOC board: unknown senders seen in traffic, and an "Adopt" form that makes one an inventory
// device with a class, site and policy (POST /api/v1/devices/{key}/adopt). Its own panel and
// its own code, beside board.js. Plain browser JavaScript; server strings go in as text only.
"use strict";

(function () {
  const API = "/api/v1";
  const TOKEN_KEY = "gateway.token";
  const REFRESH_MS = 30000;
  const zh = () => document.documentElement.lang === "zh-CN";
  const T = {
    title: ["Unknown senders", "未登记设备"], none: ["No unknown senders.", "没有未登记的设备。"],
    adopt: ["Adopt", "登记"], id: ["Device id", "设备编号"], cls: ["Class", "类别"], site: ["Site", "站点"],
    policy: ["Policy", "合同"], save: ["Adopt", "登记"], cancel: ["Cancel", "取消"],
    done: ["Adopted as ", "已登记为 "],
  };
  const t = (k) => T[k][zh() ? 1 : 0];

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

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

  const panel = el("section", { class: "panel", id: "adopt-panel" });
  const head = el("h2");
  const title = el("span", {}, "");
  const count = el("span", { class: "count", id: "unknown-count" }, "0");
  head.append(title, " ", count);
  const list = el("div", { id: "unknown" });
  const status = el("p", { id: "adopt-status", role: "status" });
  panel.append(head, list, status);

  function form(key) {
    const f = el("form", { class: "adopt-form", "data-key": key });
    const fields = [["id", key], ["class", "network.switch"], ["site", ""], ["policy", ""]];
    for (const [name, value] of fields) {
      const label = el("label", {}, t(name === "class" ? "cls" : name) + " ");
      const input = el("input", { name, value, spellcheck: "false" });
      label.append(input);
      f.append(label, " ");
    }
    const save = el("button", { type: "submit", "data-action": "adopt-save" }, t("save"));
    const cancel = el("button", { type: "button", class: "plain" }, t("cancel"));
    cancel.addEventListener("click", () => { f.remove(); refresh(); });
    f.append(save, " ", cancel);
    f.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const v = (n) => f.elements.namedItem(n).value.trim();
      save.disabled = true;
      try {
        const dev = await api("POST", "/devices/" + encodeURIComponent(key) + "/adopt",
                              { id: v("id"), class: v("class"), site: v("site"), policy: v("policy") });
        status.textContent = t("done") + dev.id;
        status.className = "";
        f.remove();
        await refresh();
      } catch (e) {
        status.textContent = String(e.message || e);
        status.className = "error";
        save.disabled = false;
      }
    });
    return f;
  }

  async function refresh() {
    title.textContent = t("title");
    if (!localStorage.getItem(TOKEN_KEY)) return;
    let rows;
    try { rows = await api("GET", "/inventory/unknown?limit=200"); } catch (e) { return; }
    count.textContent = String(rows.length);
    if (list.querySelector("form.adopt-form")) return;  // someone is typing: the list waits
    list.replaceChildren();
    if (!rows.length) list.append(el("p", { class: "empty" }, t("none")));
    for (const r of rows) {
      const row = el("div", { class: "unknown-device", "data-device": r.id });
      const name = el("span", { class: "mono" }, r.id);
      const btn = el("button", { type: "button", "data-action": "adopt" }, t("adopt"));
      btn.addEventListener("click", () => { if (!row.querySelector("form")) row.append(form(r.id)); });
      row.append(name, " ", btn);
      list.append(row);
    }
  }

  function mount() {
    const devices = document.getElementById("devices-panel");
    if (devices && devices.parentNode) devices.parentNode.insertBefore(panel, devices.nextSibling);
    else document.body.append(panel);
    refresh();
    setInterval(refresh, REFRESH_MS);
    window.addEventListener("storage", refresh);
    new MutationObserver(() => { title.textContent = t("title"); })
      .observe(document.documentElement, { attributes: true, attributeFilter: ["lang"] });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mount);
  else mount();
  window.gatewayAdopt = { refresh };
})();
