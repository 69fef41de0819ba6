// The results viewer of `c2s view` (docs/viewer.md): one page, three views chosen by the URL's hash
// (#/ the image table, #/image/N one image against its anchors, #/disagree, #/files), all drawn from
// window.C2S_DATA (data.js). No library, no network: it works from file://.
"use strict";
(function () {
  const D = window.C2S_DATA;
  const app = document.getElementById("app");
  if (!D) { app.textContent = "data.js is missing or failed to load: rebuild the site with c2s view."; return; }
  const I = D.images, N = I.image.length, RUNS = D.runs;
  const LEVELS = ["inferior", "worse", "similar", "better", "superior"];
  const PAGE = 100, K = 8;
  // numeric columns sort largest first on the first click; residual and rank error by magnitude
  const COLUMNS = [
    ["image", "Image", false], ["dataset", "Dataset", false], ["group", "Group", false], ["splits", "Splits", false],
    ["status", "Status", false], ["mos", "MOS", true], ["score", "Score", true], ["sd", "sd", true],
    ["residual", "Residual", true], ["rank_error", "Rank error", true]];
  const state = {run: 0, sort: null, dir: 1, page: 0, q: "", group: "", split: "", status: ""};

  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  const fmt = (x, d) => (x === null || x === undefined) ? "n/a" : x.toFixed(d === undefined ? 3 : d);
  const thumb = (t, cls) => t ? `<img class="${cls || "thumb"}" src="${esc(t)}" loading="lazy" alt="">` : `<div class="noimg" title="image unreadable"></div>`;
  const runName = (r) => `${r.label} (${r.profile}, ${r.mode})`;

  function value(key, i) {
    const r = RUNS[state.run];
    if (key === "residual" || key === "rank_error") return r[key][i] === null ? null : Math.abs(r[key][i]);
    if (key === "score" || key === "sd" || key === "status") return r[key][i];
    if (key === "mos") return I.mos[i];
    if (key === "splits") return I.splits[i].join(" ");
    return I[key][i];
  }

  function rows() {
    const r = RUNS[state.run], q = state.q.toLowerCase();
    const out = [];
    for (let i = 0; i < N; i++) {
      if (r.status[i] === null) continue;  // not in this run
      if (q && !I.image[i].toLowerCase().includes(q)) continue;
      if (state.group && I.group[i] !== state.group) continue;
      if (state.split && !I.splits[i].includes(state.split)) continue;
      if (state.status && r.status[i] !== state.status) continue;
      out.push(i);
    }
    if (state.sort) {
      const key = state.sort, dir = state.dir, v = new Array(N);
      for (const i of out) v[i] = value(key, i);
      out.sort((a, b) => {
        const x = v[a], y = v[b];
        if (x === null || x === undefined) return (y === null || y === undefined) ? a - b : 1;  // undefined last
        if (y === null || y === undefined) return -1;
        return (x < y ? -1 : x > y ? 1 : a - b) * dir;
      });
    }
    return out;
  }

  function options(values, chosen, all) {
    return `<option value="">${all}</option>` + values.map((v) => `<option${v === chosen ? " selected" : ""}>${esc(v)}</option>`).join("");
  }

  function cards(title, idx, id) {
    const r = RUNS[state.run];
    return `<h3>${title}</h3><div class="cards" id="${id}">` + idx.map((i) =>
      `<a class="card" href="#/image/${i}">${thumb(I.thumb[i])}<div>${esc(I.image[i])}</div><div>residual ${fmt(r.residual[i])}</div></a>`).join("") + "</div>";
  }

  function extremes() {
    const r = RUNS[state.run], idx = [];
    for (let i = 0; i < N; i++) if (r.residual[i] !== null) idx.push(i);
    idx.sort((a, b) => Math.abs(r.residual[b]) - Math.abs(r.residual[a]) || a - b);
    return cards(`Worst ${K} by |residual|`, idx.slice(0, K), "worst") +
      cards(`Best ${K} by |residual|`, idx.slice(-K).reverse(), "best");
  }

  function tableView() {
    const groups = [...new Set(I.group.filter((g) => g))].sort();
    const splits = [...new Set(I.splits.flat())].sort();
    const runSelect = RUNS.length > 1 ? `<label>Run <select id="run">${RUNS.map((r, k) => `<option value="${k}"${k === state.run ? " selected" : ""}>${esc(runName(r))}</option>`).join("")}</select></label>` : `<span>Run: ${esc(runName(RUNS[0]))}</span>`;
    app.innerHTML = `<div class="controls">${runSelect}
      <label>Image <input id="q" type="search" value="${esc(state.q)}" placeholder="name contains"></label>
      <label>Group <select id="group">${options(groups, state.group, "all")}</select></label>
      <label>Split <select id="split">${options(splits, state.split, "all")}</select></label>
      <label>Status <select id="status">${options(["ok", "failed"], state.status, "all")}</select></label></div>
      <div id="extremes">${extremes()}</div><div id="table"></div>`;
    const on = (id, ev, f) => document.getElementById(id).addEventListener(ev, (e) => { f(e.target.value); state.page = 0; drawTable(); });
    on("q", "input", (v) => { state.q = v; });
    on("group", "change", (v) => { state.group = v; });
    on("split", "change", (v) => { state.split = v; });
    on("status", "change", (v) => { state.status = v; });
    if (RUNS.length > 1) on("run", "change", (v) => { state.run = +v; document.getElementById("extremes").innerHTML = extremes(); });
    drawTable();
  }

  function drawTable() {
    const r = RUNS[state.run], idx = rows();
    const pages = Math.max(1, Math.ceil(idx.length / PAGE));
    state.page = Math.min(state.page, pages - 1);
    const head = COLUMNS.map(([key, title]) => `<th class="sortable${state.sort === key ? (state.dir > 0 ? " sorted-asc" : " sorted-desc") : ""}" data-key="${key}">${title}</th>`).join("");
    const body = idx.slice(state.page * PAGE, (state.page + 1) * PAGE).map((i) =>
      `<tr data-i="${i}" class="${r.status[i] === "failed" ? "failed" : ""}"><td><a href="#/image/${i}">${thumb(I.thumb[i])}</a></td>` +
      `<td class="name"><a href="#/image/${i}">${esc(I.image[i])}</a></td><td>${esc(I.dataset[i])}</td><td>${esc(I.group[i])}</td>` +
      `<td>${esc(I.splits[i].join(", "))}</td><td title="${esc(r.error[i] || "")}">${r.status[i]}</td><td class="num mos">${fmt(I.mos[i])}</td>` +
      `<td class="num score">${fmt(r.score[i])}</td><td class="num sd">${fmt(r.sd[i])}</td><td class="num residual">${fmt(r.residual[i])}</td>` +
      `<td class="num rank_error">${fmt(r.rank_error[i], 0)}</td></tr>`).join("");
    const el = document.getElementById("table");
    el.innerHTML = `<div class="pager">${idx.length} images; page <button id="prev">&lsaquo;</button>${state.page + 1} of ${pages}<button id="next">&rsaquo;</button></div>` +
      `<table id="images"><thead><tr><th></th>${head}</tr></thead><tbody>${body}</tbody></table>`;
    el.querySelectorAll("th.sortable").forEach((th) => th.addEventListener("click", () => {
      const key = th.dataset.key, numeric = COLUMNS.find((c) => c[0] === key)[2];
      state.dir = state.sort === key ? -state.dir : (numeric ? -1 : 1);
      state.sort = key; state.page = 0; drawTable();
    }));
    document.getElementById("prev").onclick = () => { state.page = Math.max(0, state.page - 1); drawTable(); };
    document.getElementById("next").onclick = () => { state.page += 1; drawTable(); };
  }

  function dist(p, r, i) {
    const [a, testFirst, lp, pref, err, cached] = p;
    const [h1, h2] = testFirst ? [I.hash[i], D.anchors[a].hash] : [D.anchors[a].hash, I.hash[i]];
    const order = testFirst ? "test image first, anchor second" : "anchor first, test image second";
    const bars = LEVELS.map((lv, k) => {
      const prob = lp[k] === null ? null : Math.exp(lp[k]);
      return `<div class="bar-row"><span class="lv">${lv}</span><div class="bar" style="width:${prob === null ? 0 : (prob * 12).toFixed(2)}em"></div><span class="p">${fmt(prob)}</span></div>`;
    }).join("");
    const better = pref === null ? "n/a" : `${fmt(pref)} (that the ${testFirst ? "anchor" : "test image"}, shown second, is better)`;
    return `<div class="dist" data-anchor="${a}" data-order="${testFirst}"><div><strong>${order}</strong>${cached ? " (from the pair cache)" : ""}</div>${bars}` +
      `<div>P(better): ${better}</div>` + (err ? `<div class="error">failed: ${esc(err)}</div>` : "") +
      `<div class="meta">cache key: ${esc(r.fingerprint_hash)} / ${esc(r.prompt_key)} / ${esc(h1 || "?")} / ${esc(h2 || "?")}</div></div>`;
  }

  function imageView(i) {
    if (!(i >= 0 && i < N)) { app.innerHTML = `<p>No image ${esc(i)}.</p>`; return; }
    let html = `<p><a href="#/">&larr; all images</a></p><h2>${esc(I.image[i])}</h2><div class="pair"><figure>${thumb(I.thumb[i], "big")}</figure>` +
      `<table><tr><th>Dataset</th><td>${esc(I.dataset[i])}</td></tr><tr><th>Group</th><td>${esc(I.group[i])}</td></tr>` +
      `<tr><th>Splits</th><td>${esc(I.splits[i].join(", "))}</td></tr><tr><th>MOS</th><td class="num">${fmt(I.mos[i])}</td></tr></table></div>`;
    html += `<h3>Across runs</h3><table id="across"><tr><th>Run</th><th>Status</th><th>Score &plusmn; sd</th><th>Residual</th><th>Rank error</th><th>Anchors ok</th><th>Failure</th></tr>` +
      RUNS.map((r) => r.status[i] === null ? `<tr><td>${esc(runName(r))}</td><td colspan="6">not in this run</td></tr>` :
        `<tr><td>${esc(runName(r))}</td><td>${r.status[i]}</td><td class="num">${fmt(r.score[i])} &plusmn; ${fmt(r.sd[i])}</td><td class="num">${fmt(r.residual[i])}</td>` +
        `<td class="num">${fmt(r.rank_error[i], 0)}</td><td class="num">${r.n_ok[i]}</td><td class="error">${esc(r.error[i] || "")}</td></tr>`).join("") + "</table>";
    RUNS.forEach((r, k) => {
      const pairs = D.pairs[k][i] || [];
      if (r.status[i] === null) return;
      html += `<h3>${esc(runName(r))}: ${pairs.length} judged pair(s)</h3><details><summary>Prompt (exact text)</summary><pre class="prompt">${esc(r.prompt)}</pre></details>`;
      const byAnchor = new Map();
      pairs.forEach((p) => { if (!byAnchor.has(p[0])) byAnchor.set(p[0], []); byAnchor.get(p[0]).push(p); });
      byAnchor.forEach((ps, a) => {
        const A = D.anchors[a];
        html += `<div class="pair anchor-pair"><figure>${thumb(I.thumb[i], "big")}<figcaption>test image</figcaption></figure>` +
          `<figure>${thumb(A.thumb, "big")}<figcaption>anchor ${esc(A.image)}<br>MOS ${fmt(A.mos)}</figcaption></figure>` +
          ps.map((p) => dist(p, r, i)).join("") + "</div>";
      });
    });
    app.innerHTML = html;
    window.scrollTo(0, 0);
  }

  function percentiles(r) {
    const idx = [];
    for (let i = 0; i < N; i++) if (r.status[i] === "ok" && r.score[i] !== null) idx.push(i);
    idx.sort((a, b) => r.score[a] - r.score[b]);
    const out = new Map();
    idx.forEach((i, k) => out.set(i, idx.length > 1 ? k / (idx.length - 1) : 0.5));
    return out;
  }

  function disagreeView() {
    if (RUNS.length < 2) { app.innerHTML = "<p>Give c2s view two or more runs to see where they disagree.</p>"; return; }
    const pct = RUNS.map(percentiles), spread = [];
    for (let i = 0; i < N; i++) {
      const v = pct.map((m) => m.get(i));
      if (v.some((x) => x === undefined)) continue;
      spread.push([i, Math.max(...v) - Math.min(...v), v]);
    }
    spread.sort((a, b) => b[1] - a[1] || a[0] - b[0]);
    app.innerHTML = `<h2>Where the runs disagree most</h2><p>Each run's score as a percentile rank among the images it scored; the spread is the largest minus the smallest.</p>` +
      `<table id="disagree"><tr><th></th><th>Image</th><th>MOS</th><th>Spread</th>${RUNS.map((r) => `<th>${esc(runName(r))}</th>`).join("")}</tr>` +
      spread.slice(0, 100).map(([i, s, v]) => `<tr><td><a href="#/image/${i}">${thumb(I.thumb[i])}</a></td><td><a href="#/image/${i}">${esc(I.image[i])}</a></td>` +
        `<td class="num">${fmt(I.mos[i])}</td><td class="num">${fmt(s, 2)}</td>${v.map((x) => `<td class="num">${fmt(x, 2)}</td>`).join("")}</tr>`).join("") + "</table>";
  }

  function filesView() {
    app.innerHTML = "<h2>Run files</h2>" + RUNS.map((r) => `<h3>${esc(runName(r))}</h3><p>run <code>${esc(r.run_id)}</code>, created ${esc(r.created)}, anchors ${esc(r.anchors)}` +
      (r.limit ? `, <strong>limited to the first ${r.limit} images</strong>` : "") + `</p><ul class="files">` +
      Object.entries(r.files).map(([name, href]) => `<li><a href="${esc(href)}">${esc(name)}</a></li>`).join("") + "</ul>" +
      `<table><tr><th>Dataset</th><th>SRCC</th><th>PLCC (logistic)</th></tr>` +
      Object.entries(r.headline).map(([ds, h]) => `<tr><td>${esc(ds)}</td><td class="num">${fmt(h.srcc)}</td><td class="num">${fmt(h.plcc)}</td></tr>`).join("") + "</table>").join("");
  }

  function route() {
    const h = location.hash.replace(/^#\/?/, "");
    if (h.startsWith("image/")) imageView(parseInt(h.slice(6), 10));
    else if (h === "disagree") disagreeView();
    else if (h === "files") filesView();
    else if (h.startsWith("run/")) {  // a leaderboard row's link: the table of that run
      const k = RUNS.findIndex((r) => r.run_id === decodeURIComponent(h.slice(4)));
      if (k >= 0) state.run = k;
      tableView();
      if (k < 0) app.insertAdjacentHTML("afterbegin", `<p class="error">Run ${esc(decodeURIComponent(h.slice(4)))} is not in this site: rebuild it with c2s view including that run.</p>`);
    }
    else tableView();
  }
  if (RUNS.length < 2) document.getElementById("nav-disagree").style.display = "none";
  window.addEventListener("hashchange", route);
  route();
  document.body.dataset.ready = "1";
})();
