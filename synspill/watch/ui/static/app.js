// synspill dashboard: refresh the live parts in place and send actions with the CSRF token.
"use strict";
(function () {
  const meta = (n) => document.querySelector(`meta[name="${n}"]`)?.content;
  const csrf = meta("csrf-token");
  const every = 1000 * parseFloat(meta("refresh-seconds") || "2");

  async function refresh() {
    for (const el of document.querySelectorAll("[data-refresh]")) {
      if (el.contains(document.activeElement) && document.activeElement !== document.body) continue;
      try {
        const r = await fetch(el.dataset.refresh, { credentials: "same-origin", cache: "no-store" });
        if (r.status === 401) { location.href = "/login?next=" + encodeURIComponent(location.pathname); return; }
        if (r.ok) {
          const html = await r.text();
          if (el.dataset.last !== html) { el.innerHTML = html; el.dataset.last = html; }
        }
      } catch (e) { /* server restarting: try again next tick */ }
    }
  }

  document.addEventListener("click", async (ev) => {
    const btn = ev.target.closest("button.act");
    if (!btn) return;
    ev.preventDefault();
    const form = btn.closest("form");
    if (btn.dataset.confirm && !window.confirm(btn.dataset.confirm)) return;
    btn.disabled = true;
    const r = await fetch(form.action, { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf } });
    if (!r.ok) { alert("failed: " + (await r.text())); btn.disabled = false; return; }
    if (document.querySelector("[data-refresh]")) { await refresh(); } else { location.reload(); }
  });

  if (document.querySelector("[data-refresh]")) setInterval(refresh, every);
})();
