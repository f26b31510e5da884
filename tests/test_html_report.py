"""report.html (basereward/eval/html_report.py): self-contained (every src/href a data: URI or an anchor, a CSP
that forbids anything else), responses escaped, the JSON blob one entry per pair with the scored rewards, the
metrics tables cell for cell those of report.md, placeholders for missing or corrupt images. Then the page in a
real headless Chromium (playwright): no console or page errors, no request leaves the file, filters and margin
sort show the rows computed here from the rewards, and markup in a response stays text."""

from __future__ import annotations

import base64
import io
import json
import math
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from data_fixtures import picture
from test_eval_benchmarks import SAMPLES, needs_samples

from basereward.cli import main
from basereward.eval.html_report import THUMB_PX, json_blob, markdown_html, write_html_report
from basereward.eval.metrics import pairs_accuracy
from basereward.eval.report import Run
from basereward.types import ImageRef, PreferencePair

XSS_SCRIPT = "</script><script>window.__xss = 1</script> & <!-- <b>not bold</b>"
XSS_IMG = '<img src=x onerror="window.__xss = 2"> if (a < b && c > d) { return `x`; }'


class Page(HTMLParser):
    """The parts of a page the tests check: every attribute, the tables as cell texts, the JSON blob."""

    def __init__(self, text: str):
        super().__init__()
        self.attrs: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.tables: list[list[list[str]]] = []
        self.scripts: list[dict] = []
        self._cell: list[str] | None = None
        self._script: dict | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.attrs += [(tag, k, v or "") for k, v in attrs]
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "script":
            self._script = {**dict(attrs), "text": ""}
            self.scripts.append(self._script)

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "script":
            self._script = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._script is not None:
            self._script["text"] += data

    def blob(self) -> dict:
        (data,) = [s for s in self.scripts if s.get("type") == "application/json"]
        return json.loads(data["text"])


def md_tables(md: str) -> list[list[list[str]]]:
    """report.md's tables as cell texts (markdown emphasis and code marks removed, as the page renders them)."""
    tables, current = [], None
    for line in md.splitlines():
        if not line.startswith("|"):
            current = None
            continue
        if re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", line.strip()):
            continue
        if current is None:
            current = []
            tables.append(current)
        current.append(
            [c.strip().replace("**", "").replace("`", "") for c in line.strip().strip("|").split("|")]
        )
    return tables


def pair(i: int, chosen: str, rejected: str, images=(), category="cat-a") -> PreferencePair:
    return PreferencePair(
        id=f"p{i}",
        prompt=[{"role": "user", "content": "<image>\n" * len(images) + f"question {i} <b>&amp;</b>"}],
        chosen=chosen,
        rejected=rejected,
        images=list(images),
        source="unit",
        meta={"benchmark": "pairs", "category": category},
    )


@pytest.fixture
def unit_report(tmp_path):
    """A report written directly: a good image (shared by two pairs), a missing one, a corrupt one, image bytes,
    hostile responses, a tie and a NaN reward."""
    good = tmp_path / "good.png"
    picture(1, size=400).save(good)
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    buf = io.BytesIO()
    picture(2, size=50).save(buf, "PNG")
    pairs = [
        pair(0, XSS_SCRIPT, XSS_IMG, [ImageRef(path=str(good))]),
        pair(1, "right", "wrong", [ImageRef(path=str(good)), ImageRef(path=str(tmp_path / "gone.png"))]),
        pair(2, "tie a", "tie b", [ImageRef(path=str(tmp_path / "corrupt.jpg"))], category="cat-b"),
        pair(3, "nan", "x", [ImageRef(data=buf.getvalue())], category="cat-b"),
        pair(4, "see https://example.com/a.png", "text only"),
    ]
    pref, rej = [2.5, 1.0, 0.5, float("nan"), -1.0], [1.0, 3.0, 0.5, 0.0, -0.25]
    run = Run("unit-rm", pairs_accuracy(pref, rej, [p.meta["category"] for p in pairs]), pref, rej)
    md = "# Pair JSONL: unit-rm\n\n- Rule: `>`\n\n**T**\n\n| Model | Accuracy | n |\n|---|---|---|\n| unit-rm | 20.00 | 5 |\n"
    path = write_html_report(
        tmp_path / "report.html",
        benchmark="pairs",
        pairs=pairs,
        main=run,
        baseline=None,
        info={},
        markdown=md,
    )
    return path, pairs, pref, rej


def test_page_is_self_contained(unit_report):
    path, *_ = unit_report
    text = path.read_text()
    page = Page(text)
    links = [(tag, k, v) for tag, k, v in page.attrs if k in ("src", "href")]
    assert links and all(v.startswith(("data:", "#")) for _, _, v in links), links
    assert not [a for a in page.attrs if re.match(r"\s*(https?:)?//", a[2])]  # no URL in any attribute at all
    (csp,) = [v for tag, k, v in page.attrs if tag == "meta" and k == "content" and "default-src" in v]
    assert (
        "default-src 'none'" in csp
        and "img-src data:" in csp
        and "unsafe-inline" not in csp.split("script-src")[1]
    )
    # the thumbnails are in the blob as data: URIs, downscaled JPEGs (a 400 px picture to THUMB_PX, a 50 px one
    # kept at 50 px); the good file, shared by two pairs, is stored once
    from PIL import Image

    sizes = []
    for t in page.blob()["thumbs"]:
        if t["src"]:
            assert t["src"].startswith("data:image/jpeg;base64,")
            with Image.open(io.BytesIO(base64.b64decode(t["src"].split(",", 1)[1]))) as im:
                sizes.append((im.format, im.size))
    assert sizes == [("JPEG", (THUMB_PX, THUMB_PX)), ("JPEG", (50, 50))]


def test_responses_stay_text(unit_report):
    path, pairs, *_ = unit_report
    text = path.read_text()
    page = Page(text)
    # only the page's own two scripts: no response opened or closed one
    assert [s.get("type") for s in page.scripts] == ["application/json", None]
    assert text.lower().count("<script") == 2 and "window.__xss" not in page.scripts[1]["text"]
    assert "<img src=x" not in text and "onerror" not in {k for _, k, _ in page.attrs}
    # ...and the blob gives the exact strings back
    rows = page.blob()["pairs"]
    assert (rows[0]["chosen"], rows[0]["rejected"]) == (XSS_SCRIPT, XSS_IMG)
    assert rows[0]["prompt"] == pairs[0].prompt[0]["content"]
    blob_text = json_blob({"x": XSS_SCRIPT})
    assert "<" not in blob_text and ">" not in blob_text and "&" not in blob_text
    assert json.loads(blob_text) == {"x": XSS_SCRIPT}


def test_blob_has_one_row_per_pair_with_its_rewards(unit_report):
    path, pairs, pref, rej = unit_report
    blob = Page(path.read_text()).blob()
    rows = blob["pairs"]
    assert [r["id"] for r in rows] == [p.id for p in pairs]
    for r, p, c, w in zip(rows, pairs, pref, rej):
        assert r["chosen"] == p.chosen and r["rejected"] == p.rejected and r["cat"] == p.meta["category"]
        assert (r["lc"], r["lr"]) == (len(p.chosen), len(p.rejected))
        if math.isnan(c):  # JSON has no NaN: null, and wrong, as the metrics count it
            assert (r["rc"], r["m"], r["o"]) == (None, None, "wrong")
        else:
            assert (r["rc"], r["rr"], r["m"]) == (c, w, c - w)
    assert [r["o"] for r in rows] == ["correct", "wrong", "tie", "wrong", "wrong"]
    thumbs = blob["thumbs"]
    assert rows[0]["img"] == [rows[1]["img"][0]]  # one thumbnail for the shared file
    missing, corrupt = thumbs[rows[1]["img"][1]], thumbs[rows[2]["img"][0]]
    assert missing["src"] is None and missing["label"].endswith("gone.png") and "not found" in missing["why"]
    assert (
        corrupt["src"] is None and corrupt["label"].endswith("corrupt.jpg") and "unreadable" in corrupt["why"]
    )


def test_length_scatter_has_a_point_per_finite_reward(unit_report):
    path, *_ = unit_report
    page = Page(path.read_text())
    points = [v for tag, k, v in page.attrs if tag == "circle" and k == "data-i"]
    assert sorted(map(int, points)) == sorted([0, 0, 1, 1, 2, 2, 3, 4, 4])  # pair 3's chosen reward is NaN
    # the correlation is over the 9 finite rewards, and says it left one out
    import numpy as np

    _, pairs, pref, rej = unit_report
    xy = [(len(t), r) for p, c, w in zip(pairs, pref, rej) for t, r in ((p.chosen, c), (p.rejected, w))]
    x, y = np.array([a for a, b in xy if b == b]), np.array([b for a, b in xy if b == b])
    summary = re.search(r"Pearson r = (.*?)</li>", path.read_text()).group(1)
    assert (
        summary.startswith(f"{np.corrcoef(x, y)[0, 1]:.2f},")
        and "(1 non-finite reward(s) left out)" in summary
    )


def test_tie_policy_is_stated(tmp_path):
    pairs = [pair(0, "a", "b"), pair(1, "c", "dd")]
    run = Run("rm", pairs_accuracy([1.0, 2.0], [1.0, 1.0], ["x", "x"]), [1.0, 2.0], [1.0, 1.0])
    for info, words in (
        ({}, "wrong"),
        ({"tie_policy": "half"}, "half right"),
        ({"tie_policy": "drop"}, "left out"),
    ):
        path = write_html_report(
            tmp_path / "r.html", benchmark="pairs", pairs=pairs, main=run, baseline=None, info=info
        )
        policy = re.search(r'<p class="policy" id="tie-policy">(.*?)</p>', path.read_text()).group(1)
        assert words in policy and "1 tie(s)" in policy, policy


def test_markdown_is_escaped():
    out = markdown_html("- **a<b>** `x<y>` & c\n\n| M<1> | n |\n|---|---|\n| <i>r</i> | 2 |\n", Path("."))
    assert "<b>" not in out and "<i>" not in out and "<y>" not in out
    assert "<strong>a&lt;b&gt;</strong>" in out and "<code>x&lt;y&gt;</code>" in out
    assert "<th>M&lt;1&gt;</th>" in out and "<td>&lt;i&gt;r&lt;/i&gt;</td>" in out


# --- through `basereward eval` ----------------------------------------------------------------------------------


def vlrb_with_images(root: Path) -> tuple[Path, list[str]]:
    """The real VL-RewardBench sample rows, with a small picture at each image path, except every 7th row (its
    image is missing) and one corrupt file. Returns the data file and the image paths left broken."""
    root.mkdir(parents=True, exist_ok=True)
    data = root / "vl_rewardbench.jsonl"
    shutil.copy(SAMPLES / "vl_rewardbench.jsonl", data)
    rows = [json.loads(line) for line in data.read_text().splitlines() if line.strip()]
    broken = []
    for i, r in enumerate(rows):
        img = root / r["image_path"]
        if i % 7 == 3:
            broken.append(r["image_path"])
            continue
        img.parent.mkdir(parents=True, exist_ok=True)
        picture(i, size=200).save(img, "PNG")  # a PNG named .jpg: PIL reads the content, not the name
    (root / rows[1]["image_path"]).write_bytes(b"not an image")
    return data, [*broken, rows[1]["image_path"]]


@pytest.fixture(scope="module")
def vlrb_report(tmp_path_factory):
    from basereward.data.benchmarks import load_benchmark

    root = tmp_path_factory.mktemp("vlrb")
    data, broken = vlrb_with_images(root / "data")
    out = root / "out"
    assert (
        main(
            [
                "eval",
                "--benchmark",
                "vl-rewardbench",
                "--data",
                str(data),
                "--scorer",
                "length",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    pairs = load_benchmark("vl-rewardbench", data)
    return out, pairs, broken


@needs_samples
def test_eval_writes_report_html_with_report_md_tables(vlrb_report):
    out, pairs, broken = vlrb_report
    page = Page((out / "report.html").read_text())
    md = (out / "report.md").read_text()
    assert page.tables == md_tables(md) and len(page.tables) >= 3  # headline, other maps, per category
    # the three PNG plots are embedded
    pngs = [v for tag, k, v in page.attrs if tag == "img" and k == "src"]
    if (out / "reward_hist.png").exists():
        assert len(pngs) == 3 and all(v.startswith("data:image/png;base64,") for v in pngs)
    rows = page.blob()["pairs"]
    assert len(rows) == len(pairs) == 44
    assert [r["m"] for r in rows] == [len(p.chosen) - len(p.rejected) for p in pairs]
    labels = {t["label"] for t in page.blob()["thumbs"] if t["src"] is None}
    assert {Path(b).name for b in broken} == {Path(label).name for label in labels}


# --- in a real browser ----------------------------------------------------------------------------------------

CHROMIUM = os.environ.get("BASEREWARD_CHROMIUM", "/usr/bin/chromium")
# as root Chromium needs --no-sandbox; the rest keep it from calling Google's hosts on a closed network
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ModuleNotFoundError:
        pytest.skip("playwright is not installed (a dev dependency): pip install -e '.[dev]'")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: run `make browser` or apt-get install chromium")
    with sync_playwright() as pw:
        try:
            b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except Exception as e:  # a browser that will not start here is "no browser", not a report bug
            pytest.skip(f"Chromium at {CHROMIUM} did not start: {e}")
        yield b
        b.close()


def open_page(browser, path: Path):
    """The report loaded from file://, with every console error, page error and non-file request recorded."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems = []
    page.on(
        "console", lambda m: m.type in ("error", "warning") and problems.append(f"console {m.type}: {m.text}")
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    page.on("request", lambda r: r.url.startswith(("file:", "data:")) or problems.append(f"request: {r.url}"))
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-ready='1']")
    return page, problems


def shown(page) -> list[dict]:
    return page.eval_on_selector_all(
        "#rows .pair",
        "els => els.map(e => ({margin: e.dataset.margin, outcome: e.dataset.outcome,"
        " id: e.querySelector('.pid').textContent, text: e.textContent}))",
    )


@needs_samples
def test_browser_filters_and_sorts_the_pairs(browser, vlrb_report):
    out, pairs, broken = vlrb_report
    margins = [float(len(p.chosen) - len(p.rejected)) for p in pairs]
    wrong = [i for i, m in enumerate(margins) if m < 0]
    wrong_halluc = [i for i in wrong if pairs[i].meta["category"] == "hallucination"]
    assert 0 < len(wrong_halluc) < len(wrong) < len(pairs)  # each filter changes the count

    page, problems = open_page(browser, out / "report.html")
    assert page.text_content("#count") == "44" and len(shown(page)) == 44  # one page of 50
    page.select_option("#f-outcome", "wrong")
    rows = shown(page)
    assert page.text_content("#count") == str(len(wrong)) and len(rows) == len(wrong)
    assert {r["outcome"] for r in rows} == {"wrong"}
    assert [r["id"].split(" ", 1)[1] for r in rows] == [pairs[i].id for i in wrong]  # file order
    page.select_option("#f-cat", "hallucination")
    assert len(shown(page)) == len(wrong_halluc) == int(page.text_content("#count"))

    page.click("#reset")
    page.select_option("#sort", "margin-asc")
    rows = shown(page)
    assert float(rows[0]["margin"]) == min(margins) and [float(r["margin"]) for r in rows] == sorted(margins)
    page.select_option("#sort", "margin-desc")
    assert float(shown(page)[0]["margin"]) == max(margins)

    page.select_option("#page-size", "25")
    assert len(shown(page)) == 25 and page.text_content("#page") == "1 / 2"
    page.click("#next")
    assert len(shown(page)) == 19

    page.click("#reset")
    page.fill("#q", f"#{wrong[0] + 1}")  # "#N": the pair numbered N on the page
    (row,) = shown(page)
    assert row["id"] == f"#{wrong[0] + 1} {pairs[wrong[0]].id}"
    page.fill("#q", "")
    page.select_option("#page-size", "100")
    text = page.text_content("#rows")  # a placeholder names each missing or corrupt image
    assert all(Path(b).name in text for b in broken) and text.count("image not shown") == len(broken)
    assert page.locator("#rows .media img").count() == len(pairs) - len(broken)
    point = page.locator("#length-svg circle[data-i]").last  # drawn last: on top of any point it overlaps
    i = int(point.get_attribute("data-i"))
    point.click()  # a scatter point opens its pair
    (row,) = shown(page)
    assert row["id"] == f"#{i + 1} {pairs[i].id}"
    assert problems == []


def test_browser_keeps_markup_in_responses_as_text(browser, tmp_path):
    (tmp_path / "img").mkdir()
    recs = []
    for i in range(3):
        picture(i, size=64).save(tmp_path / "img" / f"{i}.png")
        recs.append(
            {
                "id": f"x{i}",
                "prompt": f"<image>\nQ{i}: what is <b>this</b>?",
                "images": [f"img/{i}.png"],
                "chosen": XSS_SCRIPT + "!" * i,
                "rejected": XSS_IMG,
                "meta": {"category": "xss"},
            }
        )
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    out = tmp_path / "out"
    assert (
        main(
            [
                "eval",
                "--benchmark",
                "pairs",
                "--data",
                str(tmp_path / "p.jsonl"),
                "--scorer",
                "length",
                "--out",
                str(out),
            ]
        )
        == 0
    )

    page, problems = open_page(browser, out / "report.html")
    assert page.evaluate("window.__xss") is None
    assert page.locator("script").count() == 2 and page.locator("[onerror]").count() == 0
    assert page.locator("#rows .pair img").count() == 3  # the thumbnails, and no other image
    texts = page.locator(".resp.chosen .resp-text").all_text_contents()
    assert texts == [XSS_SCRIPT + "!" * i for i in range(3)]
    assert page.locator(".resp.rejected .resp-text").all_text_contents() == [XSS_IMG] * 3
    assert page.locator(".prompt").first.text_content() == "<image>\nQ0: what is <b>this</b>?"
    assert problems == []
