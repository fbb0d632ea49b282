"use strict";
(function () {
  var form = document.getElementById("filter");
  var status = document.getElementById("details-status");
  var body = document.querySelector("#details-table tbody");
  var prev = document.getElementById("prev");
  var next = document.getElementById("next");
  var limit = 50;
  if (!form || !status || !body) { return; }
  function query(offset) {
    var p = new URLSearchParams();
    ["ip", "port", "proto", "dst", "asn", "country", "label", "nolabel"].forEach(function (k) {
      var v = form.elements[k] ? form.elements[k].value.trim() : "";
      if (v) { p.set(k, v); }
    });
    if (offset > 0) { p.set("offset", String(offset)); }
    return p;
  }
  function pager(link, offset, show) {
    link.hidden = !show;
    link.dataset.offset = String(offset);
    link.href = "?" + query(offset).toString();
  }
  function load(offset, push) {
    var p = query(offset);
    p.set("limit", String(limit));
    fetch("/api/details?" + p.toString(), { credentials: "same-origin" })
      .then(function (r) {
        return r.json().then(function (j) {
          if (!r.ok) { throw new Error(j.error || r.statusText); }
          return j;
        });
      })
      .then(function (j) {
        body.textContent = "";
        j.rows.forEach(function (d) {
          var tr = document.createElement("tr");
          var c = j.columns || {};
          var cells = [[d.proto], [d.port === null ? "-" : d.port, "n"], [d.src]];
          // The enrichment columns the server has (ASN, country, labels).
          if (c.asn) { cells.push([d.asn === null ? "" : "AS" + d.asn, "asn"], [d.org || "", "org"]); }
          if (c.country) { cells.push([d.country || "", "country"]); }
          if (c.labels) { cells.push([(d.labels || []).join(", "), "labels"]); }
          cells.push([d.first_seen], [d.last_day], [d.days, "n"], [d.destinations, "n"]);
          cells.forEach(function (cell) {
            var td = document.createElement("td");
            td.textContent = String(cell[0]);
            if (cell[1]) { td.className = cell[1]; }
            tr.appendChild(td);
          });
          body.appendChild(tr);
        });
        var to = j.offset + j.rows.length;
        status.textContent = j.total + " matching rows; showing " +
          (j.rows.length ? j.offset + 1 : 0) + "\u2013" + to + ".";
        status.dataset.loaded = "api";
        status.dataset.total = String(j.total);
        pager(prev, Math.max(0, j.offset - limit), j.offset > 0);
        pager(next, to, to < j.total);
        if (push) { history.pushState(null, "", "?" + query(offset).toString()); }
      })
      .catch(function (e) {
        status.textContent = "Filter failed: " + e.message;
        status.dataset.loaded = "error";
      });
  }
  form.addEventListener("submit", function (e) { e.preventDefault(); load(0, true); });
  [prev, next].forEach(function (link) {
    link.addEventListener("click", function (e) {
      e.preventDefault();
      load(parseInt(link.dataset.offset || "0", 10), true);
    });
  });
  window.addEventListener("popstate", function () { location.reload(); });
  var start = parseInt(new URLSearchParams(location.search).get("offset") || "0", 10);
  load(isNaN(start) ? 0 : start, false);
})();
// The time-of-day view: a click on a series or spike row shows that day and
// port by hour, drawn by the server (/hours.svg) and swapped in.
(function () {
  var figure = document.getElementById("hours-chart");
  if (!figure) { return; }
  function show(day, proto, port) {
    var p = new URLSearchParams({ day: day, proto: proto });
    if (port && port !== "-") { p.set("port", port); }
    fetch("/hours.svg?" + p.toString(), { credentials: "same-origin" })
      .then(function (r) {
        if (!r.ok) { throw new Error(r.statusText); }
        return r.text();
      })
      .then(function (text) {
        var svg = new DOMParser().parseFromString(text, "image/svg+xml").documentElement;
        svg = document.importNode(svg, true);
        // As the inline charts: no namespace URL in the page (HTML supplies it).
        svg.removeAttribute("xmlns");
        figure.replaceChildren(svg);
        figure.dataset.shown = [day, proto, port].join(" ");
        // In the URL too, so the view can be shared (other parameters kept).
        var q = new URLSearchParams(location.search);
        q.set("hours", [day, proto, port].join("/"));
        history.replaceState(history.state, "", "?" + q.toString());
      })
      .catch(function (e) { figure.dataset.shown = "error: " + e.message; });
  }
  function clickable(id, cellsOf) {
    var table = document.getElementById(id);
    if (!table) { return; }
    table.classList.add("clickable");
    table.tBodies[0].addEventListener("click", function (e) {
      var row = e.target.closest("tr");
      if (row) { show.apply(null, cellsOf(row, table)); }
    });
  }
  function text(row, i) { return row.cells[i].textContent.trim(); }
  // Spikes: date, protocol, port; series: (swatch), protocol, port on the newest day.
  clickable("spike-table", function (row) { return [text(row, 0), text(row, 1), text(row, 2)]; });
  clickable("series-table", function (row, table) {
    return [table.dataset.day, text(row, 1), text(row, 2)];
  });
  // ?hours=DATE/PROTO/PORT: show that one from the start.
  var asked = (new URLSearchParams(location.search).get("hours") || "").split("/");
  if (asked.length === 3) { show(asked[0], asked[1], asked[2]); }
})();
