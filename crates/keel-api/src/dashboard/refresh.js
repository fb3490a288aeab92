// Polls the number of pending approvals and, when it changes, offers a reload.
(function () {
  "use strict";
  var baseline = null;
  var banner = null;
  function show(n) {
    if (!banner) {
      banner = document.createElement("div");
      banner.className = "banner";
      banner.setAttribute("role", "status");
      document.body.insertBefore(banner, document.body.firstChild);
    }
    banner.textContent = n + " pending approval" + (n === 1 ? "" : "s") + " \u2014 ";
    var link = document.createElement("a");
    link.href = window.location.pathname + window.location.search;
    link.textContent = "reload";
    banner.appendChild(link);
  }
  function poll() {
    fetch("/ui/pending-count", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (j) {
        if (!j || typeof j.pending !== "number") { return; }
        if (baseline === null) { baseline = j.pending; } else if (j.pending !== baseline) { show(j.pending); }
      })
      .catch(function () {});
  }
  poll();
  window.setInterval(poll, 5000);
})();
