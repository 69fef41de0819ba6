// Sortable, filterable tables for the HTML leaderboard and run reports (docs/viewer.md). A table of class
// "sortable" sorts by a column when its header (th[data-col]) is clicked: by each cell's data-v (a number;
// empty = undefined, always last) or its text. A select[data-filter=NAME][data-table=ID] keeps the rows of
// table ID whose data-NAME equals the chosen value. Inlined into each page: no file, no network.
"use strict";
(function () {
  function key(td) {
    if (!td) return null;
    if (td.dataset.v !== undefined) return td.dataset.v === "" ? null : parseFloat(td.dataset.v);
    return td.textContent.trim().toLowerCase();
  }
  function sortBy(table, th) {
    const col = +th.dataset.col, dir = th.classList.contains("sorted-desc") ? 1 : -1;
    const numeric = th.dataset.numeric === "1";
    const d = numeric ? dir : -dir;  // numbers: largest first on the first click; text: A first
    const body = table.tBodies[0], rows = Array.from(body.rows);
    rows.sort((a, b) => {
      const x = key(a.cells[col]), y = key(b.cells[col]);
      if (x === null) return y === null ? 0 : 1;
      if (y === null) return -1;
      return (x < y ? -1 : x > y ? 1 : 0) * d;
    });
    rows.forEach((r) => body.appendChild(r));
    table.querySelectorAll("th").forEach((h) => h.classList.remove("sorted-asc", "sorted-desc"));
    th.classList.add(d > 0 ? "sorted-asc" : "sorted-desc");
  }
  function filter(id) {
    const table = document.getElementById(id);
    const selects = Array.from(document.querySelectorAll(`select[data-table="${id}"]`));
    Array.from(table.tBodies[0].rows).forEach((r) => {
      r.hidden = selects.some((s) => s.value !== "" && r.dataset[s.dataset.filter] !== s.value);
    });
  }
  document.querySelectorAll("table.sortable").forEach((table) => {
    table.querySelectorAll("th[data-col]").forEach((th) => th.addEventListener("click", () => sortBy(table, th)));
  });
  document.querySelectorAll("select[data-filter]").forEach((s) => s.addEventListener("change", () => filter(s.dataset.table)));
  document.body.dataset.ready = "1";
})();
