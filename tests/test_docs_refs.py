"""The design notes the code cites live in docs/: every `docs/PAGE.md §N` reference in the code, configs, scripts
and README names a page that exists and a section that page has (a heading `## N.` or `### N.M`), and nothing
still points at notes outside the repository."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REF = re.compile(r"docs/([a-z-]+\.md)(?:,? §\s*(\d+(?:\.\d+)?[a-z]?))?")


def cited_files() -> list[Path]:
    out = [ROOT / "README.md", ROOT / "Makefile"]
    for folder, pattern in (("basereward", "*.py"), ("tests", "*.py"), ("scripts", "*.py"), ("configs", "*")):
        out += [p for p in (ROOT / folder).rglob(pattern) if p.is_file() and "__pycache__" not in p.parts]
    return out


def sections(page: Path) -> set[str]:
    """'2', '2.3', '2.3a' ... from the page's numbered headings and bold-numbered list items (`- **2.3a ...`)."""
    found = set()
    for m in re.finditer(r"^(?:#{2,4} |- \*\*)(\d+(?:\.\d+)?[a-z]?)[.\s]", page.read_text(), re.M):
        number = m.group(1)
        found.add(number)
        found.add(number.split(".")[0])
    return found


def test_every_docs_reference_resolves():
    problems, seen = [], 0
    for path in cited_files():
        text = path.read_text(errors="replace")
        for m in REF.finditer(text):
            seen += 1
            page, section = ROOT / "docs" / m.group(1), m.group(2)
            where = f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}"
            if not page.is_file():
                problems.append(f"{where}: {m.group(0)}: no such page")
            elif section and section.rstrip(".") not in sections(page):
                problems.append(f"{where}: {m.group(0)}: the page has no section {section}")
    assert seen > 40, f"only {seen} references found: is the pattern still right?"
    assert not problems, "\n".join(problems)


def test_nothing_cites_notes_outside_the_repository():
    stale = re.compile(r"\bspecs/[a-z-]+\.md|\bDESIGN\.md|\.\./shared/")
    hits = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in cited_files()
        for i, line in enumerate(p.read_text(errors="replace").splitlines(), 1)
        if stale.search(line)
    ]
    assert not hits, hits
