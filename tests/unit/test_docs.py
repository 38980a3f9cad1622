"""The README stays a front door: short, and every relative link in it and in docs/ lands.

A link is `[text](target)` outside code; a target with a scheme (https:, mailto:) is not
ours to check. A `#fragment` must name a heading of the file it points to, spelled as
GitHub spells heading anchors.
"""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_CHARS = 15_000

_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def prose(text: str) -> str:
    """The text without fenced blocks and inline code, where `](` is not a link."""
    return _CODE.sub("", _FENCE.sub("", text))


def links(text: str) -> list[str]:
    return _LINK.findall(prose(text))


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to hyphens."""
    heading = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    return {anchor(h) for h in _HEADING.findall(_FENCE.sub("", text))}


def broken_links(page: Path) -> list[str]:
    """Each relative link in page whose file, or heading, does not exist."""
    broken = []
    for target in links(page.read_text()):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue
        path, _, fragment = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no file {dest}")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest.read_text()):
            broken.append(f"{target}: no heading #{fragment} in {dest.name}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_lands(page):
    assert broken_links(page) == []


def test_readme_is_short():
    size = len(README.read_text())
    assert size < README_MAX_CHARS, f"README.md is {size} characters; move detail into docs/"


def test_readme_links_every_docs_page():
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in links(README.read_text())}
    assert [p.name for p in PAGES[1:] if p.resolve() not in linked] == []


def test_the_checker_catches_a_missing_file_and_a_missing_heading(tmp_path):
    (tmp_path / "other.md").write_text("# Other\n\n## A `code` heading, here\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n[ok](other.md#a-code-heading-here) [ok](#page) [ok](https://x.org/none)\n"
        "`[not a link](gone.md)`\n\n```\n[not a link](gone.md)\n```\n"
        "[bad](gone.md) [bad](other.md#nowhere) [bad](#nowhere)\n"
    )
    assert [b.split(":")[0] for b in broken_links(page)] == [
        "gone.md", "other.md#nowhere", "#nowhere"]
