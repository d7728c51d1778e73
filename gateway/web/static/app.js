// edgegw admin UI: the little script the pages need, loaded from a file (the CSP allows no inline script).
// - forms with data-confirm ask before submitting (removing a user, discarding dead letters);
// - edgegw.csrf(): the page's CSRF token, for fetch() POSTs (sent as X-CSRF-Token).
// The live parts' polling is static/live.js's one poller, with its backoff.
"use strict";

(function () {
  function csrf() {
    var field = document.querySelector("input[name=csrf_token]");
    return field ? field.value : "";
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });

  window.edgegw = { csrf: csrf };
})();
