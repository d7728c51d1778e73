// Live parts of the data pages: polling /api/... with fetch and updating the DOM in place.
// Every value from the gateway goes in with textContent (never innerHTML): device data is untrusted text.
"use strict";

(function () {
  // A poll that finds nobody (the gateway restarting for an applied config, the web server itself down) is tried
  // again less and less often, so that the pages left open do not all knock at full rate; at most this far apart,
  // so the page catches up soon after; back at the page's own pace at the first answer.
  var MAX_PAUSE_MS = 10000;

  // The one poller of every live page: `apply(doc)` gets each answer the gateway gave. `opts.gone()` (optional) is
  // called on a 404: what the page shows no longer exists, asking again cannot bring it back. `opts.refused(status,
  // doc)` (optional) is called on a 400, 401 or 403: asking again would be refused the same way, so the page stops
  // and says why. Without it, the page does what any page does: a 401 (the session ran out) goes to the login page,
  // a 403 for a password that must change first to the password page; any other 400 or 403 stops the polling and
  // says so in the page's words (`data-forbidden`, `data-refused`: the API's error is English for scripts), the
  // data shown kept. Polls are /api/ requests: the server does not count them as the user's activity, however
  // often they come.
  function poller(section, url, apply, opts) {
    opts = opts || {};
    var interval = parseInt(section.dataset.interval || "3000", 10);
    var busy = false;
    var stopped = false;
    var timer = null;
    var pause = 0;
    function schedule(ms) {
      window.clearTimeout(timer);
      if (!stopped) { timer = window.setTimeout(tick, ms); }
    }
    function missed(doc) {
      pause = Math.min(Math.max(2 * pause, 2 * interval), MAX_PAUSE_MS);
      section.classList.add("retrying");
      // only an answer that says the gateway is away carries a reason in the user's words (the page's server
      // translated it); any other error text is the API's, for scripts
      note(doc && doc.reachable === false && doc.error ? doc.error : section.dataset.lost || "");
      schedule(pause);
    }
    // asking again would be refused the same way: what the page shows stays, no longer refreshed
    function refusedHere(status, doc) {
      if (status === 403 && doc.error === "password change required") {
        window.location.assign("/password");
        return;
      }
      section.classList.remove("retrying");
      note((status === 403 ? section.dataset.forbidden : section.dataset.refused) || "");
    }
    function answered(doc) {
      pause = 0;
      section.classList.remove("retrying");
      note(null);
      schedule(interval);
      apply(doc);
    }
    function stop() { stopped = true; window.clearTimeout(timer); }
    function tick() {
      if (busy || stopped) { return; }
      if (document.hidden) { schedule(interval); return; }
      busy = true;
      fetch(url(), { headers: { "Accept": "application/json" }, credentials: "same-origin" })
        .then(function (r) {
          if (r.status === 401 && !opts.refused) {
            stop();
            window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname));
            return null;
          }
          if (r.status === 404 && opts.gone) { stop(); opts.gone(); return null; }
          if (r.status === 400 || r.status === 401 || r.status === 403) {
            stop();
            var refused = opts.refused || refusedHere;
            return r.json().catch(function () { return {}; }).then(function (doc) { refused(r.status, doc || {}); return null; });
          }
          return r.json().then(function (doc) { return { ok: r.ok, doc: doc }; });
        })
        .then(function (got) {
          if (!got) { return; }
          if (got.ok && got.doc && got.doc.reachable !== false) { answered(got.doc); } else { missed(got.doc); }
        }, function () { missed(null); })  // no answer at all, or none in JSON: the web server is not there
        .finally(function () { busy = false; });
    }
    schedule(interval);
    return {
      // now rather than at the next beat (a filter typed, a page opened): never two polls at once
      tick: function () { if (!busy) { window.clearTimeout(timer); tick(); } },
      stop: stop
    };
  }

  // The page's note that the data shown is not fresh: the gateway's reason (the web server said it does not
  // answer), or the page's own words when the web server did not answer at all; `null` hides it.
  function note(text) {
    var p = document.getElementById("unreachable");
    if (!p) { return; }
    if (text === null) {
      p.hidden = true;
    } else {
      p.textContent = text;
      p.hidden = false;
    }
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = text; }
    return e;
  }

  // --- dashboard -------------------------------------------------------------------------------
  function dashboard(section) {
    poller(section, function () { return section.dataset.poll; }, function (doc) {
      // adapters, uplinks or devices came or went (a config applied, the gateway back): draw the page anew
      var shown = Array.prototype.map.call(section.querySelectorAll("[data-live$='.state']"),
        function (cell) { return cell.dataset.live; }).sort().join("\n");
      var sent = Object.keys(doc.cells).filter(function (k) { return /\.state$/.test(k); }).sort().join("\n");
      if (shown !== sent || !document.getElementById("adapters")) { window.location.reload(); return; }
      section.querySelectorAll("[data-live]").forEach(function (cell) {
        var value = doc.cells[cell.dataset.live];
        if (value !== undefined && cell.textContent !== value) { cell.textContent = value; }
      });
      section.querySelectorAll("[data-meter]").forEach(function (meter) {
        var value = doc.meters[meter.dataset.meter];
        meter.value = value === null || value === undefined ? 0 : value;
      });
      var alerts = document.getElementById("alerts");
      if (alerts) {
        var items = doc.alerts.map(function (a) {
          var li = el("li", "alert level-" + a.severity.replace(/[^a-z0-9_-]/gi, ""));
          [["entity", a.entity_id], ["name", a.name], ["level", a.level], ["value", a.value], ["since", a.since]]
            .forEach(function (p) { li.appendChild(el("span", p[0], p[1])); li.appendChild(document.createTextNode(" ")); });
          return li;
        });
        if (!items.length) { items.push(el("li", "none", alerts.dataset.empty)); }
        alerts.replaceChildren.apply(alerts, items);
      }
      var alarms = document.getElementById("alarms");
      if (alarms && doc.alarms) {
        var rows = doc.alarms.map(function (a) {
          var li = el("li", "alert level-" + a.severity.replace(/[^a-z0-9_-]/gi, ""));
          [["level", a.level], ["name", a.title], ["value", a.detail], ["since", a.since]]
            .forEach(function (p) { li.appendChild(el("span", p[0], p[1])); li.appendChild(document.createTextNode(" ")); });
          return li;
        });
        if (!rows.length) { rows.push(el("li", "none", alarms.dataset.empty)); }
        alarms.replaceChildren.apply(alarms, rows);
      }
      var problems = document.getElementById("problems");
      if (problems) {
        problems.replaceChildren.apply(problems, doc.problems.map(function (p) { return el("li", null, p); }));
      }
    });
  }

  // --- live values -----------------------------------------------------------------------------
  function attrsCell(td, attributes) {
    var parts = [];
    attributes.forEach(function (a) {
      var span = el("span", "attr");
      span.appendChild(el("span", "name", a.name));
      span.appendChild(document.createTextNode(" "));
      span.appendChild(el("span", "value", a.value));
      if (a.symbol) {
        var unit = el("span", "unit", a.symbol);
        unit.title = a.unit;
        span.appendChild(document.createTextNode(" "));
        span.appendChild(unit);
      }
      a.quality.forEach(function (q) { span.appendChild(document.createTextNode(" ")); span.appendChild(el("span", "quality", q)); });
      parts.push(span, document.createTextNode(" "));
    });
    td.replaceChildren.apply(td, parts);
  }

  function entityRow(e) {
    var tr = el("tr", "entity");
    tr.dataset.entityId = e.entity_id;
    tr.appendChild(el("td", "id", e.entity_id));
    tr.appendChild(el("td", null, e.entity_type));
    tr.appendChild(el("td", null, e.adapter));
    tr.appendChild(el("td", null, e.device));
    tr.appendChild(el("td", "time"));
    tr.appendChild(el("td", "attrs"));
    return tr;
  }

  function live(section) {
    var input = document.getElementById("latest-filter");
    var sort = document.getElementById("latest-sort");
    var table = document.getElementById("latest");
    var count = document.getElementById("latest-count");
    if (!input || !table) { return; }
    var tbody = table.tBodies[0];

    function narrow() {
      var needle = input.value.trim().toLowerCase();
      Array.prototype.forEach.call(tbody.rows, function (tr) {
        // what the server's filter matches: entity id, type, adapter (kept once computed)
        var search = tr.dataset.search;
        if (search === undefined) {
          search = tr.dataset.search = (tr.cells[0].textContent + " " + tr.cells[1].textContent + " " +
            tr.cells[2].textContent).toLowerCase();
        }
        var hide = needle !== "" && search.indexOf(needle) < 0;
        if (tr.hidden !== hide) { tr.hidden = hide; }
      });
    }
    input.addEventListener("input", narrow);

    var p = poller(section, function () {
      return section.dataset.poll + "?filter=" + encodeURIComponent(input.value.trim()) +
        "&sort=" + encodeURIComponent(sort ? sort.value : "entity") +
        "&offset=" + encodeURIComponent(section.dataset.offset || "0");
    }, function (doc) {
      var existing = new Map();
      Array.prototype.forEach.call(tbody.rows, function (tr) { existing.set(tr.dataset.entityId, tr); });
      var fragment = document.createDocumentFragment();
      doc.entities.forEach(function (e) {
        var tr = existing.get(e.entity_id);
        if (tr) { existing.delete(e.entity_id); } else { tr = entityRow(e); }
        tr.dataset.search = (e.entity_id + " " + e.entity_type + " " + e.adapter).toLowerCase();
        if (tr.dataset.observed !== e.observed_at) {
          tr.dataset.observed = e.observed_at;
          tr.cells[4].textContent = e.observed;
          attrsCell(tr.cells[5], e.attributes);
        }
        fragment.appendChild(tr);
      });
      existing.forEach(function (tr) { tr.remove(); });
      tbody.appendChild(fragment);
      if (count) { count.textContent = doc.count; }
      narrow();
    });
    var debounce = null;
    input.addEventListener("input", function () {
      section.dataset.offset = "0";  // a new filter starts at its first page
      window.clearTimeout(debounce);
      debounce = window.setTimeout(p.tick, 400);
    });
  }

  // --- logs ------------------------------------------------------------------------------------
  function logs(section) {
    var level = document.getElementById("logs-level");
    var component = document.getElementById("logs-component");
    var table = document.getElementById("logs");
    if (!table) { return; }
    poller(section, function () {
      return section.dataset.poll + "?level=" + encodeURIComponent(level.value) + "&component=" + encodeURIComponent(component.value.trim());
    }, function (doc) {
      var rows = doc.lines.map(function (x) {
        var tr = el("tr", "log level-" + x.level.replace(/[^a-z]/g, ""));
        tr.appendChild(el("td", null, x.time));
        tr.appendChild(el("td", null, x.level));
        tr.appendChild(el("td", null, x.component));
        tr.appendChild(el("td", "message", x.message));
        return tr;
      });
      var tbody = table.tBodies[0];
      tbody.replaceChildren.apply(tbody, rows);
    });
  }

  // --- a tool's job ------------------------------------------------------------------------------
  function toolJob(section) {
    var out = document.getElementById("tool-progress");
    var state = document.getElementById("tool-state");
    var heading = section.querySelector("h1");
    var back = document.getElementById("tool-back");
    var next = 0;
    // the lines shown so far stay whatever ends the polling: the technician may still need to read or copy them
    function ended(noteId) {
      note(null);
      state.hidden = true;  // neither running nor ended: no longer known
      var p = document.getElementById(noteId);
      p.hidden = false;
      return p;
    }
    var p = poller(section, function () { return section.dataset.poll + "?after=" + next; }, function (doc) {
      // the page may have been rendered while the gateway did not answer: the server names its tool now
      if (heading && doc.heading && heading.textContent !== doc.heading) {
        heading.textContent = doc.heading;
        document.title = doc.heading + " — " + section.dataset.appName;  // as base.html's <title>
      }
      if (back && doc.back) { back.setAttribute("href", doc.back); }
      doc.lines.forEach(function (line) { out.appendChild(document.createTextNode(line + "\n")); });
      next = doc.next;
      if (doc.done) {
        state.textContent = doc.ok ? state.dataset.ok : state.dataset.failed;
        p.stop();
      }
    }, {
      // the gateway forgot the job (it restarted, or the link was typed)
      gone: function () { ended("tool-gone"); },
      // asking again would get the same answer: the session ran out (401), the account may no longer see tools or
      // must change its password first (403), the gateway turned the question down (400: a broken link, a gateway
      // older than this UI)
      refused: function (status, doc) {
        if (status === 401) {
          ended("tool-refused-session");
        } else if (status === 403) {
          ended(doc.error === "password change required" ? "tool-refused-password" : "tool-refused-forbidden");
        } else {
          ended("tool-refused-bad").querySelector(".detail").textContent = doc.error || "HTTP " + status;
        }
      }
    });
    p.tick();
  }

  // --- config: a click on an error's line selects that line in the editor ---------------------------
  function configErrors(list) {
    var text = document.getElementById("config-text");
    if (!text) { return; }
    list.addEventListener("click", function (event) {
      var li = event.target.closest("li[data-line]");
      if (!li) { return; }
      event.preventDefault();
      var lines = text.value.split("\n");
      var n = Math.min(parseInt(li.dataset.line, 10), lines.length) - 1;
      var start = 0;
      for (var i = 0; i < n; i++) { start += lines[i].length + 1; }
      text.focus();
      text.setSelectionRange(start, start + lines[n].length);
      var lineHeight = text.scrollHeight / Math.max(lines.length, 1);
      text.scrollTop = Math.max(0, (n - 3) * lineHeight);
    });
  }

  // --- buffer: one checkbox selects every dead letter on the page ----------------------------------
  function selectAll(box) {
    box.addEventListener("change", function () {
      document.querySelectorAll("#dead-letters input[name=ids]").forEach(function (c) { c.checked = box.checked; });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var section = document.getElementById("dashboard");
    if (section && section.dataset.poll) { dashboard(section); }
    section = document.getElementById("live");
    if (section) { live(section); }
    section = document.getElementById("logs-page");
    if (section) { logs(section); }
    section = document.getElementById("tool-job");
    if (section) { toolJob(section); }
    var all = document.getElementById("dead-letters-all");
    if (all) { selectAll(all); }
    var errors = document.getElementById("config-errors");
    if (errors) { configErrors(errors); }
  });
})();
