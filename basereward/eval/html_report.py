"""`report.html`: one self-contained page beside report.md, for reading a run rather than quoting it.

It holds report.md's tables (rendered from report.md's own text, so the numbers are the same) with its PNG plots
embedded, a per-pair browser (filter by benchmark, source, category, outcome; sort by margin = reward(chosen) -
reward(rejected); thumbnails, prompt, both responses and rewards) and a length-bias scatter drawn here as inline
SVG (matplotlib is optional). Nothing is fetched: CSS and script are inline, images are `data:` URIs, and a
Content-Security-Policy forbids any other source, so the file opens from a mail attachment or an air-gapped box.

Pairs travel as a JSON blob in a `<script type="application/json">` tag; the script (html_assets.py) renders them
as text. Thumbnails are JPEGs of at most THUMB_PX pixels, each distinct image stored once however many pairs show
it. An image that is missing or unreadable becomes a placeholder naming its path: a report never fails on one.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from basereward.eval.html_assets import CONTROLS, CSS, JS
from basereward.eval.metrics import Result, pearson, spearman
from basereward.eval.tally import TIE_RULES
from basereward.types import MAX_IMAGE_PIXELS, ImageRef, PreferencePair

THUMB_PX = 160
THUMB_QUALITY = 60  # at 160 px a photo is ~4-5 KB (~5-6 KB as base64); 70 adds ~15 %


class Run(Protocol):
    """What this module reads of a `report.Run` (not imported from there: report.py imports this module, and
    tests/test_layering.py forbids import cycles)."""

    label: str
    result: Result
    pref: list[float]
    rej: list[float]


# --- thumbnails -----------------------------------------------------------------------------------------------


def thumbnail(ref: ImageRef, px: int = THUMB_PX) -> dict:
    """{"src": data URI, "label"} for a readable image, else {"src": None, "label", "why"}. Never raises: one
    bad image must not cost the whole report."""
    label = ref.describe()
    try:
        from PIL import Image

        with Image.open(ref.path if ref.path is not None else io.BytesIO(ref.data)) as im:
            if im.width * im.height > MAX_IMAGE_PIXELS:
                return {"src": None, "label": label, "why": f"too large: {im.width}x{im.height}"}
            im.draft("RGB", (2 * px, 2 * px))  # JPEGs decode at a reduced scale: fast on 1,000s of photos
            im.thumbnail((px, px))
            buf = io.BytesIO()
            im.convert("RGB").save(buf, "JPEG", quality=THUMB_QUALITY, optimize=True)
    except Exception as e:  # any decoder failure (PIL raises many kinds) is a placeholder, by design
        why = "file not found" if isinstance(e, FileNotFoundError) else f"unreadable: {type(e).__name__}"
        return {"src": None, "label": label, "why": why}
    return {"src": "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode(), "label": label}


class _Thumbs:
    """Distinct images -> one thumbnail each (benchmarks reuse an image across several pairs)."""

    def __init__(self, px: int):
        self.px, self.items, self._index = px, [], {}

    def add(self, ref: ImageRef) -> int:
        key = ref.path if ref.path is not None else hashlib.sha1(ref.data or b"").hexdigest()
        if key not in self._index:
            self._index[key] = len(self.items)
            self.items.append(thumbnail(ref, self.px))
        return self._index[key]


# --- per-pair data --------------------------------------------------------------------------------------------


def _finite(x: float) -> float | None:
    # JSON has no NaN/Infinity (JSON.parse rejects them): a non-finite reward travels as null
    return float(x) if math.isfinite(x) else None


def outcome(chosen: float, rejected: float) -> str:
    """The metrics' strict rule: right iff chosen > rejected; equal rewards are a tie; NaN is wrong."""
    return "correct" if chosen > rejected else "tie" if chosen == rejected else "wrong"


def prompt_text(pair: PreferencePair) -> str:
    if len(pair.prompt) == 1:
        return str(pair.prompt[0]["content"])
    return "\n\n".join(f"[{m['role']}] {m['content']}" for m in pair.prompt)


def pair_rows(
    pairs: Sequence[PreferencePair],
    main: Run,
    baseline: Run | None,
    *,
    benchmark: str,
    category_map: str | None,
    thumbs: _Thumbs,
) -> list[dict]:
    """One JSON-ready dict per pair, in file order. `dup` marks a row whose pair key repeats an earlier row's
    (VL-RewardBench): the metrics count it once, the browser still shows it."""
    rows, seen = [], set()
    for i, (p, rc, rr) in enumerate(zip(pairs, main.pref, main.rej, strict=True)):
        by_map = p.meta.get("category_by_map") or {}
        cat = by_map.get(category_map) or p.meta.get("category") or "(none)"
        key = p.meta.get("pair_key")
        row = {
            "i": i,
            "id": p.id,
            "bench": p.meta.get("benchmark") or benchmark,
            "src": str(p.meta.get("query_source") or p.source or ""),
            "cat": str(cat),
            "prompt": prompt_text(p),
            "chosen": p.chosen,
            "rejected": p.rejected,
            "rc": _finite(rc),
            "rr": _finite(rr),
            "m": _finite(rc - rr),
            "o": outcome(rc, rr),
            "lc": len(p.chosen),
            "lr": len(p.rejected),
            "img": [thumbs.add(ref) for ref in p.images],
            "vid": [Path(v.frames_dir).name if v.frames_dir else f"{len(v.frames)} frames" for v in p.videos],
        }
        if baseline is not None:
            row["bo"] = outcome(baseline.pref[i], baseline.rej[i])
        if key is not None:
            key = tuple(key)
            row["dup"] = key in seen
            seen.add(key)
        rows.append(row)
    return rows


def json_blob(doc: dict) -> str:
    """JSON safe inside <script>: every `<`, `>` and `&` as a \\u escape, so no response can close the tag or
    open a comment that changes how the HTML parser reads it."""
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# --- report.md -> HTML (only what report.md uses: headings, bullets, tables, images, **bold**, `code`) ---------


def _inline(text: str) -> str:
    parts = text.split("`")
    for k, part in enumerate(parts):
        part = html.escape(part)
        parts[k] = f"<code>{part}</code>" if k % 2 else re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", part)
    return "".join(parts)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _embed_png(path: Path, alt: str) -> str:
    try:
        data = base64.b64encode(path.read_bytes()).decode()
    except OSError:
        return f'<p class="muted">({html.escape(alt)}: {html.escape(path.name)} not found)</p>'
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def markdown_html(text: str, base_dir: Path) -> str:
    """report.md as HTML, every piece of text escaped; `![alt](file.png)` lines become embedded images."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i])
                i += 1
            rows = [_cells(r) for r in block if not re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", r.strip())]
            head = "".join(f"<th>{_inline(c)}</th>" for c in rows[0])
            body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
            out.append(
                f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
            )
            continue
        if line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(lines[i][2:])}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
            continue
        images = re.findall(r"!\[([^\]]*)\]\(([^)\s]+)\)", line)
        if images and re.fullmatch(r"(\s*!\[[^\]]*\]\([^)\s]+\))+\s*", line):
            # plots sit one per line in report.md: gather consecutive ones into one row of images
            pics = []
            while i < len(lines) and re.fullmatch(r"(\s*!\[[^\]]*\]\([^)\s]+\))+\s*", lines[i]):
                pics += [
                    _embed_png(base_dir / src, alt)
                    for alt, src in re.findall(r"!\[([^\]]*)\]\(([^)\s]+)\)", lines[i])
                ]
                i += 1
            out.append('<div class="plots">' + "".join(pics) + "</div>")
            continue
        m = re.match(r"#{1,6} (.*)", line)
        if m:  # the page has its own <h1> and <h2> sections: report.md's headings go below them
            out.append(f"<h3>{_inline(m.group(1))}</h3>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
        i += 1
    return "\n".join(out)


# --- length bias: reward vs response length, as inline SVG ----------------------------------------------------


def _step(lo: float, hi: float, n: int) -> float:
    raw = (hi - lo) / max(1, n - 1)
    mag = 10 ** math.floor(math.log10(raw))
    return next(s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw)


def nice_range(lo: float, hi: float, n: int = 6) -> tuple[float, float]:
    """[lo, hi] widened to round tick values, so the axis ends on a labelled tick."""
    if hi <= lo:
        lo, hi = lo - 1, hi + 1
    step = _step(lo, hi, n)
    return math.floor(lo / step) * step, math.ceil(hi / step) * step


def nice_ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 x 10^k apart) within [lo, hi]."""
    if hi <= lo:
        return [lo]
    step = _step(lo, hi, n)
    first = math.ceil(lo / step) * step
    return [first + k * step for k in range(int((hi - first) / step + 1e-9) + 1)]


def length_svg(rows: list[dict], width: int = 760, height: int = 380) -> str:
    """A scatter of reward (y) against response length in characters (x), chosen and rejected responses in two
    colours; each point carries its pair's index (data-i) so a click opens that pair. Linear axes, as in the
    PNG: Pearson measures a linear relation, and the picture should show what it measures."""
    pts = [(r[f"l{k}"], r[f"r{k}"], k, r["i"]) for r in rows for k in ("c", "r") if r[f"r{k}"] is not None]
    if not pts:
        return '<p class="muted">No finite rewards to plot.</p>'
    left, right, top, bottom = 64, 16, 26, 44
    x0, x1 = nice_range(0.0, max(p[0] for p in pts))
    y0, y1 = nice_range(min(p[1] for p in pts), max(p[1] for p in pts))
    w, h = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * w

    def sy(y: float) -> float:
        return top + (y1 - y) / (y1 - y0) * h

    out = [
        f'<svg id="length-svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        'aria-label="reward against response length">',
        f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="#fff" stroke="#d0d7de"/>',
    ]
    for t in nice_ticks(x0, x1):
        out.append(f'<line x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{top}" y2="{top + h}" stroke="#eee"/>')
        out.append(f'<text x="{sx(t):.1f}" y="{top + h + 16}" text-anchor="middle">{t:g}</text>')
    for t in nice_ticks(y0, y1):
        out.append(f'<line x1="{left}" x2="{left + w}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{left - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">{t:.4g}</text>')
    out.append(
        f'<text x="{left + w / 2}" y="{height - 6}" text-anchor="middle">response length (characters)</text>'
        f'<text transform="translate(14 {top + h / 2}) rotate(-90)" text-anchor="middle">reward</text>'
    )
    # rejected first, then chosen on top; 4,000 pairs are 8,000 small circles, which Chromium draws at once
    for kind in ("r", "c"):
        out += [
            f'<circle class="{k}" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" data-i="{i}"/>'
            for x, y, k, i in pts
            if k == kind
        ]
    lx, ly = left + 4, top - 12  # the legend sits above the plot area, never on a point
    out.append(
        f'<circle class="c" cx="{lx}" cy="{ly}" r="4"/><text x="{lx + 8}" y="{ly + 4}">chosen</text>'
        f'<circle class="r" cx="{lx + 70}" cy="{ly}" r="4"/><text x="{lx + 78}" y="{ly + 4}">rejected</text>'
    )
    out.append("</svg>")
    return "".join(out)


def length_summary(rows: list[dict]) -> str:
    def share(k: int, n: int) -> str:
        return f"{k} of {n} ({100 * k / n:.1f} %)" if n else "0 of 0"

    def fmt(v: float | None) -> str:
        return "—" if v is None else f"{v:.2f}"

    n = len(rows)
    differ = [r for r in rows if r["lc"] != r["lr"]]
    longer = sum(r["lc"] > r["lr"] for r in rows)
    # a tie or a NaN margin ranks neither response higher, so it does not agree with the length order
    agree = sum(r["m"] is not None and r["m"] != 0 and (r["m"] > 0) == (r["lc"] > r["lr"]) for r in differ)
    # over the finite rewards (report.md shows "—" when any is NaN; here the left-out count is stated instead)
    points = [(float(r["l" + k]), r["r" + k]) for r in rows for k in "cr" if r["r" + k] is not None]
    lengths, rewards = [x for x, _ in points], [y for _, y in points]
    left_out = 2 * n - len(points)
    return (
        "<ul>"
        f"<li>Mean length: chosen {sum(r['lc'] for r in rows) / max(n, 1):.0f} chars, "
        f"rejected {sum(r['lr'] for r in rows) / max(n, 1):.0f} chars.</li>"
        f"<li>The chosen response is the longer one in {share(longer, n)} pairs.</li>"
        f"<li>The reward ranks the longer response higher in {share(agree, len(differ))} pairs whose lengths "
        "differ.</li>"
        f"<li>Reward vs length over all responses: Pearson r = {fmt(pearson(lengths, rewards))}, "
        f"Spearman rho = {fmt(spearman(lengths, rewards))}"
        + (f" ({left_out} non-finite reward(s) left out)" if left_out else "")
        + ".</li>"
        "</ul>"
    )


# --- the page -------------------------------------------------------------------------------------------------


def _summary(rows: list[dict], main: Run, info: dict) -> str:
    counts = {o: sum(r["o"] == o for r in rows) for o in ("correct", "wrong", "tie")}
    policy = str(info.get("tie_policy", "wrong"))
    ties = main.result.headline.get("ties", counts["tie"])
    dups = sum(bool(r.get("dup")) for r in rows)
    facts = [
        ("pairs", len(rows)),
        ("correct", counts["correct"]),
        ("wrong", counts["wrong"]),
        ("ties", counts["tie"]),
    ]
    return (
        '<div class="facts">'
        + "".join(
            f'<div><b class="num">{v}</b><span class="muted">{html.escape(k)}</span></div>' for k, v in facts
        )
        + "</div>"
        + f'<p class="policy" id="tie-policy">Tie policy: <b>{html.escape(policy)}</b> '
        f"({html.escape(TIE_RULES.get(policy, 'see metrics.json'))}); {ties} tie(s) in the metrics. A pair is "
        "right iff reward(chosen) &gt; reward(rejected); margin = reward(chosen) &minus; reward(rejected)."
        + (
            f" The pairs below include {dups} row(s) repeating an earlier pair, which the metrics count once."
            if dups
            else ""
        )
        + "</p>"
    )


def write_html_report(
    path: str | Path,
    *,
    benchmark: str,
    pairs: Sequence[PreferencePair],
    main: Run,
    baseline: Run | None,
    info: dict,
    markdown: str | None = None,
    thumb_px: int = THUMB_PX,
) -> Path:
    """Write report.html at `path`. `pairs` are the scored pairs in the order of `main`'s rewards; `markdown` is
    report.md's text (its tables and plots are shown; plot paths are relative to `path`'s folder)."""
    path = Path(path)
    if len(pairs) != len(main.pref):
        raise ValueError(f"{len(pairs)} pairs but {len(main.pref)} rewards")
    thumbs = _Thumbs(thumb_px)
    cmap = (info.get("category_map") or {}).get("name")
    rows = pair_rows(pairs, main, baseline, benchmark=benchmark, category_map=cmap, thumbs=thumbs)
    title, md = f"{benchmark}: {main.label}", markdown or ""
    if md.startswith("# "):  # report.md's title ("VL-RewardBench: my-rm") is the page's <h1>
        first, _, md = md.partition("\n")
        title = first[2:].strip()
    script_hash = base64.b64encode(hashlib.sha256(JS.encode()).digest()).decode()
    # the policy enforces "self-contained" in the browser too: nothing loads from anywhere but data: URIs, and
    # only this page's own script (by hash) runs, so even markup that slipped through escaping could not execute
    csp = f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{script_hash}'"
    blob = json_blob({"benchmark": benchmark, "pairs": rows, "thumbs": thumbs.items})
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<link rel="icon" href="data:,">
<title>{html.escape(title)}</title>
<style>{CSS}</style>
</head>
<body>
<nav><b>basereward eval</b><a href="#metrics">Metrics</a><a href="#pairs">Pairs</a><a href="#length">Length bias</a></nav>
<main>
<h1>{html.escape(title)}</h1>
{_summary(rows, main, info)}
<section id="metrics"><h2>Metrics</h2><div class="md">{markdown_html(md, path.parent)}</div></section>
<section id="pairs"><h2>Pairs</h2>{CONTROLS}<div id="rows"></div></section>
<section id="length"><h2>Length bias: reward vs response length</h2>
<p class="muted">Each point is one response; click a point to open its pair above.</p>
<div class="length-view">{length_svg(rows)}{length_summary(rows)}</div></section>
</main>
<script type="application/json" id="pair-data">{blob}</script>
<script>{JS}</script>
</body>
</html>
"""
    path.write_text(page, encoding="utf-8")
    return path
