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
