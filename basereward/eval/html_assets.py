"""The stylesheet, script and pair-browser controls of `report.html` (html_report.py writes the page around
them). Kept in a Python module, not in .css/.js files, so they ship with the package without package-data
settings.

The script renders the per-pair browser from the JSON blob with `textContent` only, never `innerHTML`: prompts
and responses are untrusted text (code, markdown, HTML) and must stay text. It renders one page of rows at a
time, so a 5,000-pair benchmark filters and sorts at once.
"""

# The pair browser's controls: the script reads them by id. A filter <select> lists its values from the data
# (value "" = all); the script hides one whose field no pair has (f-base without a length baseline).
CONTROLS = (
    '<div class="controls">'
    + "".join(
        f'<label>{label}<select id="{id_}"><option value="">all</option></select></label>'
        for id_, label in (
            ("f-bench", "benchmark"),
            ("f-src", "source"),
            ("f-cat", "category"),
            ("f-outcome", "outcome"),
            ("f-base", "length baseline"),
        )
    )
    + '<label>search (text, or #N)<input id="q" type="search" placeholder="id, prompt or response"></label>'
    + '<label>sort<select id="sort"><option value="file">file order</option>'
    + '<option value="margin-asc">margin, lowest first</option>'
    + '<option value="margin-desc">margin, highest first</option></select></label>'
    + '<button id="reset" type="button">reset</button>'
    + '<div class="pager"><span><b id="count" class="num">0</b> pairs, showing <span id="range">0</span></span>'
    + '<label>per page<select id="page-size"><option>25</option><option selected>50</option><option>100</option>'
    + "<option>250</option></select></label>"
    + '<button id="prev" type="button">&#8592;</button><span id="page" class="num"></span>'
    + '<button id="next" type="button">&#8594;</button></div>'
    + "</div>"
)

CSS = """
:root { --ok: #1a7f37; --bad: #c62828; --tie: #9a6700; --line: #d0d7de; --muted: #57606a; --bg2: #f6f8fa; }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
section { scroll-margin-top: 40px; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328; margin: 0; }
main { max-width: 1320px; margin: 0 auto; padding: 12px 24px 48px; }
nav { position: sticky; top: 0; z-index: 2; background: #fff; border-bottom: 1px solid var(--line);
  padding: 8px 24px; display: flex; gap: 18px; align-items: baseline; }
nav b { margin-right: 8px; }
nav a { color: #0969da; text-decoration: none; }
h1 { font-size: 22px; margin: 14px 0 6px; }
h2 { font-size: 18px; margin: 28px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
code { font: 12.5px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: var(--bg2);
  padding: 1px 4px; border-radius: 4px; overflow-wrap: anywhere; }
.muted { color: var(--muted); }
.num { font-variant-numeric: tabular-nums; }
.facts { display: flex; flex-wrap: wrap; gap: 8px 28px; margin: 8px 0; }
.facts div b { display: block; font-size: 20px; }
.policy { background: #fff8c5; border: 1px solid #d4a72c66; border-radius: 6px; padding: 6px 10px; }
.md ul { padding-left: 20px; margin: 6px 0; }
.md p { margin: 8px 0; }
.table-wrap { overflow-x: auto; margin: 6px 0 14px; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid var(--line); padding: 4px 10px; text-align: right; white-space: nowrap; }
th { background: var(--bg2); }
th:first-child, td:first-child { text-align: left; white-space: normal; min-width: 9em; }
tbody tr:nth-child(even) { background: #fbfcfd; }
.plots { display: flex; flex-wrap: wrap; gap: 12px; }
.plots img { width: calc(50% - 6px); max-width: 640px; border: 1px solid var(--line); border-radius: 4px; }
.controls { position: sticky; top: 37px; z-index: 1; background: #fff; display: flex; flex-wrap: wrap;
  gap: 6px 14px; align-items: end; padding: 8px 0; border-bottom: 1px solid var(--line); }
.controls label { display: flex; flex-direction: column; font-size: 12px; color: var(--muted); }
.controls select, .controls input, .controls button { font: inherit; padding: 3px 6px; max-width: 16em; }
.controls input { width: 15em; }
.pager { display: flex; gap: 8px; align-items: center; margin-left: auto; }
.pair { border: 1px solid var(--line); border-left: 5px solid var(--line); border-radius: 6px;
  margin: 10px 0; background: #fff; }
.pair.o-correct { border-left-color: var(--ok); }
.pair.o-wrong { border-left-color: var(--bad); }
.pair.o-tie { border-left-color: var(--tie); }
.pair-head { display: flex; flex-wrap: wrap; gap: 4px 12px; align-items: baseline; padding: 6px 10px;
  background: var(--bg2); border-bottom: 1px solid var(--line); border-radius: 6px 6px 0 0; }
.pid { font-weight: 600; overflow-wrap: anywhere; }
.badge { font-size: 11px; font-weight: 700; text-transform: uppercase; color: #fff; border-radius: 10px;
  padding: 1px 8px; }
.badge.correct { background: var(--ok); } .badge.wrong { background: var(--bad); }
.badge.tie { background: var(--tie); }
.tag { font-size: 12px; border: 1px solid var(--line); border-radius: 10px; padding: 0 8px; background: #fff; }
.tag.warn { border-color: var(--tie); color: var(--tie); }
.margin { margin-left: auto; font-weight: 600; }
.pair-body { display: flex; gap: 12px; padding: 10px; }
.media { flex: 0 0 auto; display: flex; flex-direction: column; gap: 6px; width: 164px; }
.media img { max-width: 160px; max-height: 160px; border-radius: 4px; border: 1px solid var(--line); }
.media .missing, .media .video { width: 160px; font-size: 11px; padding: 6px; border: 1px dashed var(--bad);
  border-radius: 4px; color: var(--bad); overflow-wrap: anywhere; }
.media .video { border-color: var(--muted); color: var(--muted); }
.pair-text { flex: 1 1 auto; min-width: 0; }
.prompt { white-space: pre-wrap; overflow-wrap: anywhere; max-height: 9em; overflow: auto; margin-bottom: 8px; }
.two { display: grid; grid-template-columns: 1fr 1fr; gap: 10px; align-items: start; }
.resp { border: 1px solid var(--line); border-radius: 4px; min-width: 0; }
.resp.chosen { border-top: 3px solid var(--ok); } .resp.rejected { border-top: 3px solid var(--bad); }
.resp-head { display: flex; gap: 10px; font-size: 12px; padding: 3px 8px; background: var(--bg2); }
.resp-kind { font-weight: 700; }
.resp-text { white-space: pre-wrap; overflow-wrap: anywhere; font-size: 13px; padding: 6px 8px;
  max-height: 16em; overflow: auto; }
.length-view { display: flex; flex-wrap: wrap; gap: 8px 24px; align-items: start; }
.length-view svg { max-width: 100%; height: auto; }
.length-view ul { flex: 1 1 320px; margin: 0; }
.empty { padding: 24px; text-align: center; color: var(--muted); }
svg text { font: 11px system-ui, sans-serif; fill: #1f2328; }
svg .c { fill: #2ca02c; } svg .r { fill: #d62728; } svg circle { fill-opacity: 0.55; cursor: pointer; }
svg circle:hover { fill-opacity: 1; stroke: #000; }
@media (max-width: 800px) {
  .two { grid-template-columns: 1fr; } .pair-body { flex-direction: column; } .plots img { width: 100%; }
}
"""

JS = r"""
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("pair-data").textContent);
  var P = D.pairs, T = D.thumbs;
  var $ = function (id) { return document.getElementById(id); };
  // select id -> the pair field it filters on
  var FILTERS = [["f-bench", "bench"], ["f-src", "src"], ["f-cat", "cat"], ["f-outcome", "o"], ["f-base", "bo"]];
  var page = 0, view = [];

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }
  function fmt(x) {
    if (x === null || x === undefined) return "NaN";
    var a = Math.abs(x);
    if (a !== 0 && (a >= 1e6 || a < 1e-3)) return x.toExponential(3);
    return String(Math.round(x * 1e4) / 1e4);
  }
  function fillSelect(id, key) {
    var counts = {}, sel = $(id);
    P.forEach(function (p) { if (p[key] !== undefined && p[key] !== "") counts[p[key]] = (counts[p[key]] || 0) + 1; });
    var names = Object.keys(counts).sort();
    if (!names.length) { sel.parentNode.hidden = true; return; }
    names.forEach(function (v) {
      var o = el("option", null, v + " (" + counts[v] + ")");
      o.value = v;
      sel.appendChild(o);
    });
  }
  function hay(p) {
    if (p._hay === undefined) p._hay = [p.id, p.prompt, p.chosen, p.rejected].join("\n").toLowerCase();
    return p._hay;
  }
  function matches(p, q) {
    for (var i = 0; i < FILTERS.length; i++) {
      var v = $(FILTERS[i][0]).value;
      if (v !== "" && String(p[FILTERS[i][1]]) !== v) return false;
    }
    if (!q) return true;
    if (/^#\d+$/.test(q)) return p.i + 1 === +q.slice(1);  // "#12": that pair, as numbered on the page
    return hay(p).indexOf(q.toLowerCase()) >= 0;
  }
  function order(list) {
    var s = $("sort").value;
    if (s === "file") return list;
    var dir = s === "margin-asc" ? 1 : -1;
    return list.slice().sort(function (a, b) {  // NaN margins (null) last either way
      if (a.m === null) return b.m === null ? a.i - b.i : 1;
      if (b.m === null) return -1;
      return dir * (a.m - b.m) || a.i - b.i;
    });
  }
  function media(p) {
    if (!p.img.length && !p.vid.length) return null;
    var box = el("div", "media");
    p.img.forEach(function (k) {
      var t = T[k];
      if (t.src) {
        var im = el("img");
        im.src = t.src;
        im.alt = im.title = t.label;
        box.appendChild(im);
      } else {
        box.appendChild(el("div", "missing", "image not shown: " + t.label + (t.why ? " (" + t.why + ")" : "")));
      }
    });
    p.vid.forEach(function (name) { box.appendChild(el("div", "video", "video frames: " + name)); });
    return box;
  }
  function response(kind, text, reward, len) {
    var d = el("div", "resp " + kind), h = el("div", "resp-head");
    h.appendChild(el("span", "resp-kind", kind));
    h.appendChild(el("span", "num", "reward " + fmt(reward)));
    h.appendChild(el("span", "muted", len + " chars"));
    d.appendChild(h);
    d.appendChild(el("div", "resp-text", text));
    return d;
  }
  function row(p) {
    var a = el("article", "pair o-" + p.o);
    a.setAttribute("data-margin", p.m === null ? "NaN" : String(p.m));
    a.setAttribute("data-outcome", p.o);
    var h = el("header", "pair-head");
    h.appendChild(el("span", "badge " + p.o, p.o));
    h.appendChild(el("span", "pid", "#" + (p.i + 1) + " " + p.id));
    h.appendChild(el("span", "tag", p.cat));
    if (p.src && p.src !== p.bench) h.appendChild(el("span", "tag", p.src));
    if (p.bo) h.appendChild(el("span", "tag", "length baseline: " + p.bo));
    if (p.dup) h.appendChild(el("span", "tag warn", "repeats an earlier pair: counted once"));
    h.appendChild(el("span", "margin num", "margin " + fmt(p.m)));
    a.appendChild(h);
    var body = el("div", "pair-body"), text = el("div", "pair-text"), two = el("div", "two");
    var m = media(p);
    if (m) body.appendChild(m);
    text.appendChild(el("div", "prompt", p.prompt));
    two.appendChild(response("chosen", p.chosen, p.rc, p.lc));
    two.appendChild(response("rejected", p.rejected, p.rr, p.lr));
    text.appendChild(two);
    body.appendChild(text);
    a.appendChild(body);
    return a;
  }
  function render() {
    var size = +$("page-size").value, pages = Math.max(1, Math.ceil(view.length / size));
    page = Math.max(0, Math.min(page, pages - 1));
    var start = page * size, rows = view.slice(start, start + size), box = $("rows");
    var frag = document.createDocumentFragment();
    rows.forEach(function (p) { frag.appendChild(row(p)); });
    box.textContent = "";
    box.appendChild(rows.length ? frag : el("div", "empty", "No pair matches these filters."));
    $("count").textContent = String(view.length);
    $("range").textContent = view.length ? (start + 1) + "-" + (start + rows.length) : "0";
    $("page").textContent = (page + 1) + " / " + pages;
    $("prev").disabled = page === 0;
    $("next").disabled = page >= pages - 1;
  }
  function update() {
    var q = $("q").value.trim();
    view = order(P.filter(function (p) { return matches(p, q); }));
    page = 0;
    render();
  }

  FILTERS.forEach(function (f) { fillSelect(f[0], f[1]); $(f[0]).addEventListener("change", update); });
  $("sort").addEventListener("change", update);
  $("page-size").addEventListener("change", render);
  $("q").addEventListener("input", update);
  $("prev").addEventListener("click", function () { page--; render(); });
  $("next").addEventListener("click", function () { page++; render(); });
  $("reset").addEventListener("click", function () {
    FILTERS.forEach(function (f) { $(f[0]).value = ""; });
    $("q").value = "";
    $("sort").value = "file";
    update();
  });
  var svg = $("length-svg");
  if (svg) svg.addEventListener("click", function (e) {  // a point opens its pair in the browser
    var i = e.target.getAttribute("data-i");
    if (i === null) return;
    FILTERS.forEach(function (f) { $(f[0]).value = ""; });
    $("q").value = "#" + (+i + 1);
    update();
    $("pairs").scrollIntoView();
  });
  update();
  document.body.setAttribute("data-ready", "1");
})();
"""
