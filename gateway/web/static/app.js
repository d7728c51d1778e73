// edgegw admin UI: the little script the pages need, loaded from a file (the CSP allows no inline script).
// - forms with data-confirm ask before submitting (removing a user, discarding dead letters);
// - edgegw.poll(url, interval, onData): JSON polling for the live parts, paused while the tab is hidden;
// - edgegw.csrf(): the page's CSRF token, for fetch() POSTs (sent as X-CSRF-Token).
"use strict";

(function () {
  function csrf() {
    var field = document.querySelector("input[name=csrf_token]");
    return field ? field.value : "";
  }

  function poll(url, intervalMs, onData) {
    var timer = null;
    var stopped = false;
    function tick() {
      if (stopped) return;
      if (document.hidden) { timer = setTimeout(tick, intervalMs); return; }
      fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) {
          if (r.status === 401) { window.location.assign("/login?next=" + encodeURIComponent(location.pathname)); return null; }
          if (!r.ok) throw new Error(url + ": HTTP " + r.status);
          return r.json();
        })
        .then(function (data) { if (data !== null) onData(data); })
        .catch(function (err) { document.documentElement.dataset.pollError = String(err); })
        .then(function () { timer = setTimeout(tick, intervalMs); });
    }
    tick();
    return function stop() { stopped = true; if (timer) clearTimeout(timer); };
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });

  window.edgegw = { poll: poll, csrf: csrf };
})();
