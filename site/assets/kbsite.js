/* KD Atlas site behaviour: sortable tables, the paper-index filters, the taxonomy tree buttons.
   Plain DOM code, no library, no network. Data only ever enters the page as text. */
(function () {
  "use strict";

  function cellKey(row, index, numeric) {
    var cell = row.cells[index];
    if (!cell) return numeric ? -Infinity : "";
    var raw = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent;
    if (numeric) {
      var n = parseFloat(raw);
      return isNaN(n) ? -Infinity : n;
    }
    return raw.trim().toLowerCase();
  }

  function sortBy(table, index, th) {
    var body = table.tBodies[0];
    if (!body) return;
    var numeric = th.getAttribute("data-type") === "number";
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellKey(a, index, numeric), y = cellKey(b, index, numeric);
      var c = x < y ? -1 : x > y ? 1 : 0;
      return ascending ? c : -c;
    });
    Array.prototype.forEach.call(th.parentNode.cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    rows.forEach(function (r) { body.appendChild(r); });
  }

  function initSortable() {
    document.querySelectorAll("table.kb-sortable").forEach(function (table) {
      if (!table.tHead) return;
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
        var button = document.createElement("button");
        button.type = "button";
        button.className = "kb-sort";
        button.title = "Sort by this column";
        while (th.firstChild) button.appendChild(th.firstChild);
        th.appendChild(button);
        button.addEventListener("click", function () { sortBy(table, index, th); });
      });
    });
  }

  function initFilters() {
    var form = document.getElementById("kb-paper-filters");
    var table = document.getElementById("kb-paper-index");
    var count = document.getElementById("kb-paper-count");
    if (!form || !table) return;
    var rows = Array.prototype.slice.call(table.tBodies[0].rows);

    function value(name) {
      var el = form.elements[name];
      if (!el) return "";
      if (el.type === "checkbox") return el.checked ? el.value : "";
      return el.value.trim().toLowerCase();
    }
    function hasWord(attr, word) {
      return (" " + (attr || "") + " ").indexOf(" " + word + " ") >= 0;
    }
    function apply() {
      var f = {
        pillar: value("pillar"), node: value("node"), year: value("year"), venue: value("venue"),
        teacher: value("teacher"), objective: value("objective"), code: value("code"),
        text: value("text"), basis: value("basis"), origin: value("origin")
      };
      var shown = 0;
      rows.forEach(function (row) {
        var d = row.dataset;
        var ok = (!f.pillar || hasWord(d.pillars, f.pillar)) &&
          (!f.node || hasWord(d.nodes, f.node)) &&
          (!f.year || d.year === f.year) &&
          (!f.venue || d.venue === f.venue) &&
          (!f.teacher || ("|" + d.teachers + "|").indexOf("|" + f.teacher + "|") >= 0) &&
          (!f.objective || hasWord(d.objectives, f.objective)) &&
          (!f.code || d.code === "yes") &&
          (!f.basis || hasWord(d.bases, f.basis)) &&
          (!f.origin || hasWord(d.origins, f.origin)) &&
          (!f.text || (d.text || "").indexOf(f.text) >= 0);
        row.hidden = !ok;
        if (ok) shown += 1;
      });
      if (count) count.textContent = shown + " of " + rows.length + " papers";
    }
    var params = new URLSearchParams(window.location.search);
    params.forEach(function (v, k) {
      var el = form.elements[k];
      if (!el) return;
      if (el.type === "checkbox") el.checked = v === el.value;
      else el.value = v;
    });
    form.addEventListener("input", apply);
    form.addEventListener("change", apply);
    form.addEventListener("reset", function () { window.setTimeout(apply, 0); });
    form.addEventListener("submit", function (e) { e.preventDefault(); });
    apply();
  }

  function initTree() {
    document.querySelectorAll("[data-kb-tree]").forEach(function (button) {
      button.addEventListener("click", function () {
        var open = button.getAttribute("data-kb-tree") === "open";
        document.querySelectorAll(".kb-tree details").forEach(function (d) { d.open = open; });
      });
    });
  }

  function init() {
    initSortable();
    initFilters();
    initTree();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
