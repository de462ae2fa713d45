// The report's one script: no library, nothing from the internet. Each page's data is a script in
// data/ (browsers read scripts from disk, where they refuse fetch), loaded when the page is opened.
"use strict";
const catdog = (() => {
  const PAGES = { overview: "Overview", label_issues: "Label issues", outliers: "Outliers",
                  duplicates: "Near-duplicates", model: "Model", map: "Feature map", unreadable: "Unreadable" };
  const PER_PAGE = 100;  // rows on one page of a list: a page never holds more
  const FILTERS = { label_issues: ["split", "given"], outliers: ["split", "label"], duplicates: ["split_a", "split_b"],
                    model: ["split", "given"], unreadable: ["error"], map: ["label", "split"] };
  const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  const data = {}, waiting = {}, views = {};
  const main = () => document.getElementById("main");
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

  function loaded(name, content) {
    data[name] = content;
    (waiting[name] || []).forEach((then) => then());
    delete waiting[name];
  }

  function need(name, then) {
    if (data[name]) return then();
    const first = !waiting[name];
    (waiting[name] = waiting[name] || []).push(then);
    if (!first) return;
    const script = document.createElement("script");
    script.src = `data/${name}.js`;
    script.onerror = () => { main().innerHTML = `<p class="error">data/${esc(name)}.js is missing</p>`; };
    document.body.appendChild(script);
  }

  function route() {
    const name = (location.hash.slice(1) || "overview").split("?")[0];
    const page = PAGES[name] ? name : "overview";
    document.getElementById("nav").innerHTML = Object.entries(PAGES)
      .map(([key, title]) => `<a href="#${key}" class="${key === page ? "here" : ""}">${title}</a>`).join("");
    document.title = `catdog report: ${PAGES[page]}`;
    need(page, () => {
      (page === "overview" ? overview() : page === "map" ? map() : page === "model" ? model() : list(page));
      main().dataset.page = page;  // drawn: until then #main still holds the page before (a hash change keeps the document)
    });
  }

  function image(src, css = "thumb") {
    return src ? `<img class="${css}" loading="lazy" src="${esc(src)}" alt="">` : `<div class="noimage">no image here</div>`;
  }

  function overview() {
    const o = data.overview;
    const splits = o.splits, classes = o.classes;
    const counts = `<table><tr><th>split</th>${classes.map((c) => `<th>${esc(c)}</th>`).join("")}<th>all</th></tr>` +
      splits.map((s) => `<tr><td>${esc(s)}</td>${classes.map((c) => `<td>${o.counts[s][c]}</td>`).join("")}` +
        `<td>${classes.reduce((n, c) => n + o.counts[s][c], 0)}</td></tr>`).join("") + "</table>";
    const f = o.features, a = o.audit || {};
    const cost = o.last_run.cost && o.last_run.cost.per_thousand ? JSON.stringify(o.last_run.cost.per_thousand) : "";
    main().innerHTML = `<h2>Overview</h2>
      <p id="totals"><b>${o.images}</b> images, <b>${o.errors}</b> unreadable, ${classes.length} classes, ${splits.length} splits — ${esc(o.out)}</p>
      ${counts}
      <h3>How the features were made</h3>
      <p>${esc(f.backbone || "vgg16")}, ${esc(f.pooling || "flatten")}, ${esc((f.input_size || [])[0])} px, preprocess ${esc(f.preprocess)},
         ${esc(f.precision)} → ${esc(f.dtype)}, ${f.feature_dim} values per image, weights ${esc((f.weights || {}).source)}</p>
      <h3>Last run</h3><p>${esc(o.last_run.updated)}, generation ${o.last_run.generation} ${esc(cost)}</p>
      <h3>What the audit found</h3>
      <ul><li><a href="#label_issues">${a.label_issues} likely label errors</a></li>
          <li><a href="#outliers">${a.outliers} outliers</a></li>
          <li><a href="#duplicates">${a.duplicates} near-duplicate pairs, ${a.across_splits} across splits</a></li>
          <li><a href="#unreadable">${o.errors} unreadable images</a></li></ul>
      ${(o.notes || []).map((n) => `<p class="note">${esc(n)}</p>`).join("")}`;
  }

  function view(name) {
    return views[name] = views[name] || { filters: {}, sort: null, page: 0, across: false };
  }

  function rowsOf(name) {
    const d = data[name], v = view(name), cols = d.columns;
    let rows = d.rows.filter((r) => Object.entries(v.filters).every(([col, want]) => !want || r[cols.indexOf(col)] === want));
    if (name === "duplicates" && v.across) rows = rows.filter((r) => r[cols.indexOf("across_splits")] === 1);
    if (v.sort) {
      const i = cols.indexOf(v.sort.col), dir = v.sort.dir;
      rows = rows.slice().sort((a, b) => (a[i] < b[i] ? -dir : a[i] > b[i] ? dir : 0));
    }
    return rows;
  }

  function controls(name) {
    const d = data[name], v = view(name);
    const selects = (FILTERS[name] || []).map((col) => {
      const i = d.columns.indexOf(col);
      const values = [...new Set(d.rows.map((r) => r[i]))].sort();
      return `<label>${esc(col)} <select data-filter="${esc(col)}"><option value="">all</option>` +
        values.map((x) => `<option ${v.filters[col] === x ? "selected" : ""}>${esc(x)}</option>`).join("") + "</select></label>";
    }).join("");
    const across = name === "duplicates" ? `<label><input type="checkbox" id="across" ${v.across ? "checked" : ""}> across splits only</label>` : "";
    return `<div class="controls">${selects}${across}<span id="pager"></span></div>`;
  }

  function cell(col, value) {
    if (col === "image" || col.startsWith("image_")) return `<td>${image(value)}</td>`;
    if (col === "gradcam") return `<td>${value ? `<img class="cam" loading="lazy" src="${esc(value)}" alt="">` : ""}</td>`;
    if (col === "across_splits") return `<td class="${value ? "across" : ""}">${value ? "leak" : ""}</td>`;
    return `<td>${esc(typeof value === "number" ? +value.toFixed(4) : value)}</td>`;
  }

  function table(name, rows, columns, extra) {
    const v = view(name);
    const head = columns.map((c) => `<th class="sortable" data-sort="${esc(c)}">${esc(c)}${v.sort && v.sort.col === c ? (v.sort.dir > 0 ? " ▲" : " ▼") : ""}</th>`).join("");
    const body = rows.map((r) => `<tr>${columns.map((c, i) => cell(c, r[i])).join("")}${extra ? `<td>${extra(r)}</td>` : ""}</tr>`).join("");
    return `<table id="rows"><thead><tr>${head}${extra ? "<th>nearest images</th>" : ""}</tr></thead><tbody>${body}</tbody></table>`;
  }

  function strip(r) {
    const near = r[r.length - 1] || [];
    return `<div class="strip">${near.map(([path, label, cosine, thumb]) =>
      `<figure title="${esc(path)}">${image(thumb, "small")}<figcaption>${esc(label)} ${cosine.toFixed(3)}</figcaption></figure>`).join("")}</div>`;
  }

  function list(name) {
    const d = data[name], v = view(name);
    const rows = rowsOf(name), pages = Math.max(1, Math.ceil(rows.length / PER_PAGE));
    v.page = Math.min(v.page, pages - 1);
    const shown = rows.slice(v.page * PER_PAGE, (v.page + 1) * PER_PAGE);
    const extra = name === "label_issues" || name === "outliers" ? strip : null;
    main().innerHTML = `<h2>${PAGES[name]}</h2>${controls(name)}` +
      (rows.length ? table(name, shown, d.columns, extra) : `<p class="note" id="empty">nothing to show</p>`);
    document.getElementById("pager").innerHTML = `<button id="prev" ${v.page ? "" : "disabled"}>previous</button>
      page <b id="pageno">${v.page + 1}</b> of ${pages} (<span id="count">${rows.length}</span> rows)
      <button id="next" ${v.page + 1 < pages ? "" : "disabled"}>next</button>`;
    wire(name, () => list(name));
  }

  function wire(name, again) {
    const v = view(name);
    main().querySelectorAll("select[data-filter]").forEach((s) => s.addEventListener("change", () => {
      v.filters[s.dataset.filter] = s.value; v.page = 0; again();
    }));
    main().querySelectorAll("th[data-sort]").forEach((th) => th.addEventListener("click", () => {
      const col = th.dataset.sort;
      v.sort = { col, dir: v.sort && v.sort.col === col ? -v.sort.dir : 1 }; v.page = 0; again();
    }));
    const across = document.getElementById("across");
    if (across) across.addEventListener("change", () => { v.across = across.checked; v.page = 0; again(); });
    const prev = document.getElementById("prev"), next = document.getElementById("next");
    if (prev) prev.addEventListener("click", () => { v.page -= 1; again(); });
    if (next) next.addEventListener("click", () => { v.page += 1; again(); });
  }

  function model() {
    const m = data.model;
    if (m.absent) { main().innerHTML = `<h2>Model</h2><p class="note">${esc(m.absent)}: catdog report OUT --model M</p>`; return; }
    const metrics = ["n", "accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "log_loss"];
    const splits = Object.keys(m.splits);
    const summary = `<table id="metrics"><tr><th>split</th>${metrics.map((k) => `<th>${k}</th>`).join("")}</tr>` +
      splits.map((s) => `<tr><td>${esc(s)}</td>${metrics.map((k) => `<td>${m.splits[s][k] == null ? "" : +(+m.splits[s][k]).toFixed(4)}</td>`).join("")}</tr>`).join("") + "</table>";
    const confusion = splits.map((s) => m.splits[s].confusion_matrix ? `<h4>${esc(s)}</h4><table class="confusion"><tr><th>true \\ predicted</th>${m.classes.map((c) => `<th>${esc(c)}</th>`).join("")}</tr>` +
      m.splits[s].confusion_matrix.map((row, i) => `<tr><th>${esc(m.classes[i])}</th>${row.map((n) => `<td>${n}</td>`).join("")}</tr>`).join("") + "</table>" : "").join("");
    const v = view("model"), rows = rowsOf("model"), pages = Math.max(1, Math.ceil(rows.length / PER_PAGE));
    main().innerHTML = `<h2>Model: ${esc(m.model)} (${esc(m.kind)})</h2>${summary}<h3>Confusion</h3>${confusion}
      <h3>Most confidently wrong</h3>${controls("model")}` +
      (rows.length ? table("model", rows.slice(v.page * PER_PAGE, (v.page + 1) * PER_PAGE), m.columns) : `<p class="note" id="empty">no wrong predictions</p>`);
    document.getElementById("pager").innerHTML = `page <b id="pageno">${v.page + 1}</b> of ${pages} (<span id="count">${rows.length}</span> rows)`;
    wire("model", model);
  }

  function map() {
    const d = data.map, v = view("map"), cols = d.columns;
    const labels = [...new Set(d.rows.map((r) => r[2]))].sort();
    main().innerHTML = `<h2>Feature map</h2><p class="note">${d.rows.length} images placed by the first two principal components of their features; point at one to see it.</p>
      ${controls("map")}<div class="legend">${labels.map((l, i) => `<span><i style="background:${COLOURS[i % COLOURS.length]}"></i>${esc(l || "unlabelled")}</span>`).join("")}</div>
      <canvas id="map" width="900" height="600"></canvas><div id="tip"></div>`;
    const rows = rowsOf("map"), canvas = document.getElementById("map"), ctx = canvas.getContext("2d"), pad = 12;
    const at = (r) => [pad + r[0] * (canvas.width - 2 * pad), pad + (1 - r[1]) * (canvas.height - 2 * pad)];
    rows.forEach((r) => { const [x, y] = at(r); ctx.fillStyle = COLOURS[labels.indexOf(r[2]) % COLOURS.length]; ctx.fillRect(x - 2, y - 2, 4, 4); });
    const tip = document.getElementById("tip");
    canvas.addEventListener("mousemove", (e) => {
      const box = canvas.getBoundingClientRect(), mx = (e.clientX - box.left) * canvas.width / box.width, my = (e.clientY - box.top) * canvas.height / box.height;
      let best = null, bestD = 64;
      rows.forEach((r) => { const [x, y] = at(r), dd = (x - mx) ** 2 + (y - my) ** 2; if (dd < bestD) { best = r; bestD = dd; } });
      if (!best) { tip.style.display = "none"; return; }
      tip.innerHTML = `${image(best[5])}<div>${esc(best[4])}<br>${esc(best[2])} · ${esc(best[3])}</div>`;
      tip.style.left = `${e.clientX + 12}px`; tip.style.top = `${e.clientY + 12}px`; tip.style.display = "block";
    });
    canvas.addEventListener("mouseleave", () => { tip.style.display = "none"; });
    document.getElementById("pager").textContent = `${rows.length} points`;
    wire("map", map);
  }

  document.addEventListener("DOMContentLoaded", route);
  window.addEventListener("hashchange", route);
  return { loaded, route };
})();
