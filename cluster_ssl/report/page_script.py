# ruff: noqa: E501  (JavaScript and CSS inside strings: their lines are not Python's)
"""The page's inline CSS and JavaScript (vanilla, no network): gallery, map, histogram,
k curve, renaming and merging. ``report.html#selftest`` runs a self-check on load and
writes its outcome into ``<pre id="selftest">`` (the headless-browser test reads it)."""

STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1400px; }
table { border-collapse: collapse; }
td, th { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
.swatch { display: inline-block; width: 12px; height: 12px; margin-right: 6px; }
.bar { background: #4c78a8; height: 8px; }
.note { color: #555; max-width: 70em; }
.warning { background: #fff3cd; border: 1px solid #e0c060; padding: 6px 10px; max-width: 70em; }
.mixed { background: #d62728; color: white; padding: 1px 6px; border-radius: 3px; white-space: nowrap; }
#clusters td.pick { cursor: pointer; }
#clusters tr.active { background: #e8f0fa; }
#clusters tr.empty { color: #aaa; }
.tools { margin: 6px 0; }
.map-row { display: flex; gap: 16px; align-items: flex-start; flex-wrap: wrap; }
#map { border: 1px solid #ccc; width: 640px; height: 640px; cursor: crosshair; }
#legend { columns: 2; font-size: 13px; max-height: 640px; overflow: auto; }
#legend div { cursor: pointer; padding: 1px 4px; white-space: nowrap; break-inside: avoid; }
#legend div.active { background: #e8f0fa; font-weight: bold; }
#legend div.dim { opacity: 0.45; }
.cluster-block { margin: 12px 0 20px; border-top: 1px solid #ddd; padding-top: 6px; }
.cluster-block h3 { margin: 4px 0; font-size: 16px; }
.strip-label { font-size: 12px; color: #555; margin: 4px 0 2px; }
.thumbs { display: flex; flex-wrap: wrap; gap: 3px; }
.thumbs img { width: 64px; height: 64px; object-fit: contain; background: #f4f4f4;
  image-rendering: pixelated; cursor: zoom-in; border-bottom: 3px solid transparent; }
.thumbs img.low { border-bottom-color: #d62728; }
.thumbs .none { color: #999; font-size: 12px; }
#gallery-bar { position: sticky; top: 0; background: white; padding: 6px 0; z-index: 2; }
#overlay { position: fixed; inset: 0; background: rgba(0,0,0,0.8); display: flex;
  align-items: center; justify-content: center; z-index: 10; cursor: zoom-out; }
#overlay[hidden] { display: none; }
#overlay img { max-width: 80vw; max-height: 80vh; min-width: 256px; image-rendering: pixelated;
  background: white; }
#overlay figcaption { color: white; margin-top: 8px; font-family: monospace; word-break: break-all; }
#tooltip { position: fixed; pointer-events: none; background: white; border: 1px solid #888;
  padding: 4px; font-size: 12px; z-index: 5; max-width: 220px; word-break: break-all; }
#tooltip img { width: 96px; height: 96px; object-fit: contain; image-rendering: pixelated; display: block; }
canvas { border: 1px solid #eee; }
img { image-rendering: pixelated; }
"""

SCRIPT = r"""
(function () {
"use strict";
var D = JSON.parse(document.getElementById("report-data").textContent);
var N = D.labels.length, K = D.k, conf = D.conf;
var selftest = location.hash === "#selftest";
var errors = [];
window.addEventListener("error", function (e) { errors.push(String(e.message)); });
var $ = function (id) { return document.getElementById(id); };
function col(c) { return D.palette[c % D.palette.length]; }
var STRIP = 12, PAGE = 400;

// ---- state: names and merges (saved to the browser, downloaded as JSON) ----
var storeKey = "cluster-ssl:" + location.pathname;
var state = { names: {}, merge: [] };
try { var saved = JSON.parse(localStorage.getItem(storeKey) || "null");
  if (saved && saved.names && saved.merge) state = saved; } catch (e) {}
function persist() { try { localStorage.setItem(storeKey, JSON.stringify(state)); } catch (e) {} }
function nameOf(c) { return state.names[String(c)] || ""; }
function label(c) { var n = nameOf(c); return n ? c + ": " + n : "cluster " + c; }

// ---- members of each cluster, most confident first ----
var members = [], sizes = new Array(K).fill(0);
for (var c = 0; c < K; c++) members.push([]);
for (var i = 0; i < N; i++) { members[D.labels[i]].push(i); sizes[D.labels[i]]++; }
if (conf) members.forEach(function (m) { m.sort(function (a, b) { return conf[b] - conf[a] || a - b; }); });
function rng(seed) { return function () { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648; }; }
function randomSample(list, n, seed) {
  var r = rng(seed + 1), copy = list.slice(), out = [];
  for (var j = 0; j < n && copy.length; j++) out.push(copy.splice(Math.floor(r() * copy.length), 1)[0]);
  return out;
}

// ---- thumbnails ----
function thumbSrc(i) {
  if (!D.thumbs) return "";
  var s = String(i); while (s.length < 5) s = "0" + s;
  return D.thumbs + s + ".jpg";
}
function fullSrc(i) {
  if (!D.src) return thumbSrc(i);
  var rel = D.src.rel ? D.src.rel[i] : D.names[i];
  return D.src.base + rel.split("/").map(encodeURIComponent).join("/");
}
function describe(i) {
  return D.names[i] + " — cluster " + D.labels[i] + (conf ? " — confidence " + conf[i].toFixed(3) : "");
}
function thumb(i) {
  var img = document.createElement("img");
  img.loading = "lazy"; img.decoding = "async";
  img.src = thumbSrc(i); img.alt = D.names[i]; img.title = describe(i);
  img.dataset.i = i; img.dataset.c = D.labels[i];
  if (conf && conf[i] < D.low) img.className = "low";
  return img;
}
function strip(title, list) {
  var wrap = document.createElement("div");
  var head = document.createElement("div"); head.className = "strip-label"; head.textContent = title;
  var box = document.createElement("div"); box.className = "thumbs";
  list.forEach(function (i) { box.appendChild(thumb(i)); });
  if (!list.length) { var none = document.createElement("span"); none.className = "none"; none.textContent = "none"; box.appendChild(none); }
  wrap.appendChild(head); wrap.appendChild(box); return wrap;
}

// ---- gallery ----
var current = null, order = "desc", observer = null;
function clusterHeader(c, whole) {
  var h = document.createElement("h3");
  var sw = document.createElement("span"); sw.className = "swatch"; sw.style.background = col(c);
  h.appendChild(sw);
  var mean = "";
  if (conf && sizes[c]) { var s = 0; members[c].forEach(function (i) { s += conf[i]; }); mean = ", mean confidence " + (s / sizes[c]).toFixed(3); }
  h.appendChild(document.createTextNode(label(c) + " — " + sizes[c] + " images" + mean + " "));
  var row = document.querySelector("#clusters tr[data-cluster='" + c + "'] .mixed");
  if (row) { var m = row.cloneNode(true); h.appendChild(m); }
  if (!whole) {
    var b = document.createElement("button"); b.textContent = "browse all " + sizes[c] + " →";
    b.onclick = function () { select(c); $("gallery-title").scrollIntoView(); };
    h.appendChild(document.createTextNode(" ")); h.appendChild(b);
  }
  return h;
}
function block(c, whole) {
  var div = document.createElement("div"); div.className = "cluster-block"; div.dataset.cluster = c;
  div.appendChild(clusterHeader(c, whole));
  var m = members[c];
  if (m.length <= 3 * STRIP && !whole) {
    div.appendChild(strip(conf ? "all images, most confident first" : "all images", m));
  } else if (conf) {
    div.appendChild(strip("most confident", m.slice(0, STRIP)));
    div.appendChild(strip("least confident", m.slice(Math.max(STRIP, m.length - STRIP)).reverse()));
    div.appendChild(strip("random sample", randomSample(m.slice(STRIP, Math.max(STRIP, m.length - STRIP)), STRIP, c)));
  } else {
    div.appendChild(strip("first images", m.slice(0, STRIP)));
    div.appendChild(strip("random sample", randomSample(m.slice(STRIP), STRIP, c)));
  }
  if (whole) div.appendChild(fullList(c));
  return div;
}
function fullList(c) {
  var wrap = document.createElement("div");
  var list = members[c].slice();
  if (order === "asc") list.reverse();
  else if (order === "file") list.sort(function (a, b) { return a - b; });
  var head = document.createElement("div"); head.className = "strip-label";
  head.textContent = "all " + list.length + " images (" + {desc: "most confident first", asc: "least confident first", file: "in file order"}[order] + ")";
  var box = document.createElement("div"); box.className = "thumbs"; box.id = "full-list";
  var sentinel = document.createElement("button"); sentinel.textContent = "show more";
  var shown = 0;
  function more() {
    var end = Math.min(list.length, shown + PAGE), frag = document.createDocumentFragment();
    for (; shown < end; shown++) frag.appendChild(thumb(list[shown]));
    box.appendChild(frag);
    sentinel.hidden = shown >= list.length;
  }
  sentinel.onclick = more;
  more();
  if (observer) observer.disconnect();
  if ("IntersectionObserver" in window) {
    observer = new IntersectionObserver(function (entries) {
      if (entries.some(function (e) { return e.isIntersecting; }) && shown < list.length) more();
    }, { rootMargin: "600px" });
    observer.observe(sentinel);
  }
  wrap.appendChild(head); wrap.appendChild(box); wrap.appendChild(sentinel);
  return wrap;
}
function renderBar() {
  var bar = $("gallery-bar"); bar.textContent = "";
  var t = document.createElement("b");
  t.textContent = current === null ? "All clusters (most confident, least confident, random)" : "Showing " + label(current) + " ";
  bar.appendChild(t);
  if (current !== null) {
    var all = document.createElement("button"); all.textContent = "show all clusters"; all.id = "show-all";
    all.onclick = function () { select(null); };
    bar.appendChild(all);
    if (conf) {
      var sel = document.createElement("select"); sel.id = "order";
      [["desc", "most confident first"], ["asc", "least confident first"], ["file", "file order"]].forEach(function (o) {
        var opt = document.createElement("option"); opt.value = o[0]; opt.textContent = o[1]; sel.appendChild(opt);
      });
      sel.value = order; sel.onchange = function () { order = sel.value; renderGallery(); };
      bar.appendChild(document.createTextNode(" sort: ")); bar.appendChild(sel);
    }
  }
}
function renderGallery() {
  var g = $("gallery"); g.textContent = "";
  if (observer) { observer.disconnect(); observer = null; }
  renderBar();
  if (!D.thumbs) { g.textContent = "(no thumbnails: this dataset holds feature vectors, not pictures)"; return; }
  if (current === null) {
    for (var c = 0; c < K; c++) if (sizes[c]) g.appendChild(block(c, false));
  } else g.appendChild(block(current, true));
}
function select(c) {
  current = c;
  document.querySelectorAll("#clusters tr[data-cluster]").forEach(function (tr) {
    tr.classList.toggle("active", c !== null && Number(tr.dataset.cluster) === c);
  });
  renderGallery(); drawMap(); drawLegend(); drawHistogram();
}

// ---- overlay ----
$("gallery").addEventListener("click", function (e) {
  var t = e.target; if (t.tagName !== "IMG" || t.dataset.i === undefined) return;
  openOverlay(Number(t.dataset.i));
});
function openOverlay(i) {
  var img = $("overlay-img");
  img.onerror = function () { img.onerror = null; img.src = thumbSrc(i); };
  img.src = fullSrc(i);
  $("overlay-caption").textContent = (D.src ? decodeURI(fullSrc(i)) : D.names[i]) + "  |  " + describe(i);
  $("overlay").hidden = false;
}
$("overlay").onclick = function () { $("overlay").hidden = true; };
document.addEventListener("keydown", function (e) { if (e.key === "Escape") $("overlay").hidden = true; });

// ---- map ----
var mapCanvas = $("map"), M = D.map, px = [], py = [], SIDE = 640, PAD = 14;
function setupCanvas(cv) {
  var r = window.devicePixelRatio || 1, w = cv.width, h = cv.height;
  if (!cv.dataset.w) { cv.dataset.w = w; cv.dataset.h = h; cv.style.width = w + "px"; cv.style.height = h + "px";
    cv.width = w * r; cv.height = h * r; }
  var ctx = cv.getContext("2d"); ctx.setTransform(r, 0, 0, r, 0, 0);
  return { ctx: ctx, w: Number(cv.dataset.w), h: Number(cv.dataset.h) };
}
if (M) for (var j = 0; j < M.idx.length; j++) { px.push(PAD + M.x[j] * (SIDE - 2 * PAD)); py.push(PAD + (1 - M.y[j]) * (SIDE - 2 * PAD)); }
function drawMap() {
  if (!M || !mapCanvas) return;
  var s = setupCanvas(mapCanvas), ctx = s.ctx;
  ctx.fillStyle = "white"; ctx.fillRect(0, 0, s.w, s.h);
  var sx = new Array(K).fill(0), sy = new Array(K).fill(0), n = new Array(K).fill(0);
  for (var pass = 0; pass < 2; pass++) {
    for (var j = 0; j < M.idx.length; j++) {
      var c = D.labels[M.idx[j]], on = current === null || c === current;
      if ((pass === 0) === on && current !== null) continue;
      if (pass === 1 && current === null) continue;
      ctx.globalAlpha = on ? 0.85 : 0.12; ctx.fillStyle = col(c);
      ctx.beginPath(); ctx.arc(px[j], py[j], on ? 3 : 2, 0, 6.2832); ctx.fill();
      if (on) { sx[c] += px[j]; sy[c] += py[j]; n[c]++; }
    }
  }
  ctx.globalAlpha = 1; ctx.font = "bold 14px sans-serif"; ctx.textAlign = "center"; ctx.textBaseline = "middle";
  for (var c2 = 0; c2 < K; c2++) {
    if (!n[c2] || (current !== null && c2 !== current)) continue;
    var x = sx[c2] / n[c2], y = sy[c2] / n[c2], text = String(c2);
    ctx.fillStyle = "rgba(255,255,255,0.85)"; ctx.fillRect(x - 11, y - 9, 22, 18);
    ctx.strokeStyle = col(c2); ctx.strokeRect(x - 11, y - 9, 22, 18);
    ctx.fillStyle = "#111"; ctx.fillText(text, x, y);
  }
}
function nearest(e) {
  var r = mapCanvas.getBoundingClientRect(), x = e.clientX - r.left, y = e.clientY - r.top, best = -1, bd = 64;
  for (var j = 0; j < px.length; j++) {
    var d = (px[j] - x) * (px[j] - x) + (py[j] - y) * (py[j] - y);
    if (d < bd && (current === null || D.labels[M.idx[j]] === current)) { bd = d; best = j; }
  }
  return best < 0 ? -1 : M.idx[best];
}
if (M && mapCanvas) {
  var tip = $("tooltip");
  mapCanvas.addEventListener("mousemove", function (e) {
    var i = nearest(e);
    if (i < 0) { tip.hidden = true; return; }
    tip.textContent = "";
    if (D.thumbs) { var im = document.createElement("img"); im.src = thumbSrc(i); tip.appendChild(im); }
    tip.appendChild(document.createTextNode(describe(i)));
    tip.style.left = (e.clientX + 14) + "px"; tip.style.top = (e.clientY + 14) + "px"; tip.hidden = false;
  });
  mapCanvas.addEventListener("mouseleave", function () { tip.hidden = true; });
  mapCanvas.addEventListener("click", function (e) { var i = nearest(e); if (i >= 0) select(D.labels[i] === current ? null : D.labels[i]); });
}
function drawLegend() {
  var L = $("legend"); if (!L) return; L.textContent = "";
  for (var c = 0; c < K; c++) {
    if (!sizes[c]) continue;
    var d = document.createElement("div"); d.dataset.cluster = c;
    d.className = current === c ? "active" : (current !== null ? "dim" : "");
    var sw = document.createElement("span"); sw.className = "swatch"; sw.style.background = col(c);
    d.appendChild(sw); d.appendChild(document.createTextNode(label(c) + " (" + sizes[c] + ")"));
    d.onclick = (function (c) { return function () { select(current === c ? null : c); }; })(c);
    L.appendChild(d);
  }
}

// ---- histogram of confidence ----
function drawHistogram() {
  var cv = $("histogram"); if (!cv) return;
  var s = setupCanvas(cv), ctx = s.ctx, B = 20, all = new Array(B).fill(0), sel = new Array(B).fill(0);
  ctx.fillStyle = "white"; ctx.fillRect(0, 0, s.w, s.h);
  if (!conf) { ctx.fillStyle = "#666"; ctx.font = "13px sans-serif"; ctx.fillText("this method gives no confidence", 10, 20); return; }
  for (var i = 0; i < N; i++) { var b = Math.min(B - 1, Math.floor(conf[i] * B)); all[b]++; if (D.labels[i] === current) sel[b]++; }
  var top = Math.max.apply(null, all) || 1, W = s.w - 40, H = s.h - 30, bw = W / B;
  for (var k = 0; k < B; k++) {
    var h = H * all[k] / top; ctx.fillStyle = "#ccc"; ctx.fillRect(30 + k * bw + 1, 10 + H - h, bw - 2, h);
    if (current !== null) { var h2 = H * sel[k] / top; ctx.fillStyle = col(current); ctx.fillRect(30 + k * bw + 1, 10 + H - h2, bw - 2, h2); }
  }
  ctx.fillStyle = "#333"; ctx.font = "11px sans-serif"; ctx.textAlign = "center";
  for (var t = 0; t <= 4; t++) ctx.fillText((t / 4).toFixed(2), 30 + t * W / 4, s.h - 6);
  ctx.textAlign = "right"; ctx.fillText(String(top), 27, 16); ctx.fillText("0", 27, 10 + H);
  ctx.strokeStyle = "#d62728"; ctx.setLineDash([4, 3]); ctx.beginPath();
  ctx.moveTo(30 + D.low * W, 10); ctx.lineTo(30 + D.low * W, 10 + H); ctx.stroke(); ctx.setLineDash([]);
}

// ---- k curve ----
function drawK() {
  var el = $("k-data"), cv = $("k-curve"); if (!el || !cv) return;
  var scores = JSON.parse(el.textContent), ks = Object.keys(scores).map(Number).sort(function (a, b) { return a - b; });
  if (!ks.length) return;
  var s = setupCanvas(cv), ctx = s.ctx, vals = ks.map(function (k) { return scores[k]; });
  var lo = Math.min.apply(null, vals), hi = Math.max.apply(null, vals); if (hi - lo < 1e-9) { lo -= 0.05; hi += 0.05; }
  var best = ks[vals.indexOf(hi)], W = s.w - 70, H = s.h - 40;
  function X(k) { return 50 + (ks.length > 1 ? (k - ks[0]) / (ks[ks.length - 1] - ks[0]) : 0.5) * W; }
  function Y(v) { return 12 + (1 - (v - lo) / (hi - lo)) * H; }
  ctx.fillStyle = "white"; ctx.fillRect(0, 0, s.w, s.h);
  ctx.strokeStyle = "#4c78a8"; ctx.lineWidth = 2; ctx.beginPath();
  ks.forEach(function (k, j) { if (j) ctx.lineTo(X(k), Y(vals[j])); else ctx.moveTo(X(k), Y(vals[j])); }); ctx.stroke();
  ctx.font = "11px sans-serif"; ctx.textAlign = "center";
  ks.forEach(function (k, j) {
    ctx.fillStyle = k === best ? "#d62728" : "#4c78a8"; ctx.beginPath(); ctx.arc(X(k), Y(vals[j]), k === best ? 5 : 3, 0, 6.2832); ctx.fill();
    ctx.fillStyle = "#333"; ctx.fillText(String(k), X(k), s.h - 12);
  });
  ctx.textAlign = "right"; ctx.fillText(hi.toFixed(3), 45, Y(hi) + 4); ctx.fillText(lo.toFixed(3), 45, Y(lo) + 4);
  ctx.textAlign = "center"; ctx.fillText("k", s.w / 2, s.h - 1);
}

// ---- naming and merging ----
function mergeGroups(groups) {
  var parent = {};
  function find(x) { while (parent[x] !== undefined && parent[x] !== x) x = parent[x]; return x; }
  groups.forEach(function (g) { g.forEach(function (x) { if (parent[x] === undefined) parent[x] = x; });
    g.forEach(function (x) { var a = find(g[0]), b = find(x); if (a !== b) parent[Math.max(a, b)] = Math.min(a, b); }); });
  var out = {};
  Object.keys(parent).forEach(function (x) { var r = find(Number(x)); (out[r] = out[r] || []).push(Number(x)); });
  return Object.keys(out).map(function (r) { return out[r].sort(function (a, b) { return a - b; }); })
    .filter(function (g) { return g.length > 1; }).sort(function (a, b) { return a[0] - b[0]; });
}
function namesFile() {
  var names = {};
  Object.keys(state.names).sort(function (a, b) { return a - b; }).forEach(function (k) { if (state.names[k]) names[k] = state.names[k]; });
  return { names: names, merge: mergeGroups(state.merge) };
}
function showMerges() {
  var box = $("merges"); box.textContent = "";
  namesFile().merge.forEach(function (g, j) {
    var b = document.createElement("button"); b.textContent = "merged " + g.join(" + ") + " ✕"; b.title = "undo this merge";
    b.onclick = function () { state.merge = namesFile().merge; state.merge.splice(j, 1); persist(); showMerges(); };
    box.appendChild(b); box.appendChild(document.createTextNode(" "));
  });
}
document.querySelectorAll(".name-box").forEach(function (box) {
  box.value = nameOf(box.dataset.cluster);
  box.addEventListener("input", function () { state.names[box.dataset.cluster] = box.value.trim(); persist(); drawLegend(); renderBar(); });
});
$("merge-button").onclick = function () {
  var ticked = []; document.querySelectorAll(".merge-box:checked").forEach(function (b) { ticked.push(Number(b.dataset.cluster)); b.checked = false; });
  if (ticked.length < 2) { alert("Tick two or more clusters to merge."); return; }
  state.merge.push(ticked); state.merge = namesFile().merge; persist(); showMerges();
};
$("save-names").onclick = function () {
  var blob = new Blob([JSON.stringify(namesFile(), null, 2) + "\n"], { type: "application/json" });
  var a = document.createElement("a"); a.href = URL.createObjectURL(blob); a.download = "cluster_names.json";
  document.body.appendChild(a); a.click(); a.remove();
  setTimeout(function () { URL.revokeObjectURL(a.href); }, 1000);
};
document.querySelectorAll("#clusters td.pick").forEach(function (td) {
  td.onclick = function () { var c = Number(td.parentNode.dataset.cluster); if (sizes[c]) { select(c); $("gallery-title").scrollIntoView(); } };
});

// ---- start ----
showMerges(); drawK(); select(null);
var wanted = /^#cluster=(\d+)$/.exec(location.hash);
if (wanted && Number(wanted[1]) < K && sizes[Number(wanted[1])]) { select(Number(wanted[1])); $("gallery-title").scrollIntoView(); }

if (selftest) {
  var report = [], ok = true;
  function check(what, cond) { report.push((cond ? "ok " : "FAIL ") + what); if (!cond) ok = false; }
  try {
    var first = -1; for (var c3 = 0; c3 < K; c3++) if (sizes[c3]) { first = c3; break; }
    check("gallery shows images", document.querySelectorAll("#gallery img").length > 0);
    if (mapCanvas && M) {
      var d = mapCanvas.getContext("2d").getImageData(0, 0, mapCanvas.width, mapCanvas.height).data, coloured = 0;
      for (var q = 0; q < d.length; q += 4) if (d[q] < 250 || d[q + 1] < 250 || d[q + 2] < 250) coloured++;
      check("map drawn (" + coloured + " coloured pixels)", coloured > 50);
      check("legend lists clusters", document.querySelectorAll("#legend div").length > 0);
    }
    var entry = document.querySelector("#legend div[data-cluster='" + first + "']");
    if (entry) entry.click(); else select(first);
    var shown = document.querySelectorAll("#gallery img"), others = 0;
    shown.forEach(function (im) { if (Number(im.dataset.c) !== first) others++; });
    check("filter to cluster " + first + " shows " + shown.length + " of its images and " + others + " others",
      shown.length > 0 && others === 0);
    check("full list of cluster " + first, document.querySelectorAll("#full-list img").length === Math.min(sizes[first], PAGE));
    state.names = { "1": "shoes" }; state.merge = [[4, 1], [1, 5]];
    check("names file " + JSON.stringify(namesFile()), JSON.stringify(namesFile()) === '{"names":{"1":"shoes"},"merge":[[1,4,5]]}');
    state = { names: {}, merge: [] };
    select(null);
    check("back to all clusters", document.querySelectorAll("#gallery .cluster-block").length === sizes.filter(Boolean).length);
  } catch (e) { ok = false; report.push("exception " + e); }
  errors.forEach(function (m) { ok = false; report.push("error " + m); });
  var out = $("selftest"); out.hidden = false;
  out.textContent = "SELFTEST " + (ok ? "PASSED" : "FAILED") + "\n" + report.join("\n");
}
})();
"""
