"""Every relative link in README.md and docs/*.md points at a file of the repository, and every
`#anchor` at a heading of its target (GitHub's heading slugs). Markdown is parsed with
markdown-it, so links inside code spans and code blocks are not links."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
MD = MarkdownIt("commonmark")


def _inline_tokens(text: str):
    for tok in MD.parse(text):
        if tok.type == "inline":
            yield tok, tok.children or []


def links(text: str) -> list[str]:
    """Targets of the links and images of a markdown text, in order."""
    out = []
    for _, children in _inline_tokens(text):
        for child in children:
            if child.type == "link_open":
                out.append(child.attrs.get("href", ""))
            elif child.type == "image":
                out.append(child.attrs.get("src", ""))
    html_refs = re.findall(r"""<(?:a|img)\s[^>]*?(?:href|src)=["']([^"']+)["']""", text)
    return out + html_refs


def anchors(text: str) -> set[str]:
    """GitHub's slugs of a page's headings: lower case, punctuation dropped, spaces to '-',
    repeats numbered -1, -2, ..."""
    seen: dict[str, int] = {}
    out = set()
    tokens = MD.parse(text)
    for i, tok in enumerate(tokens):
        if tok.type != "heading_open":
            continue
        title = "".join(c.content for c in tokens[i + 1].children or [] if c.type in ("text", "code_inline"))
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    text = page.read_text()
    bad = []
    for target in links(text):
        url = urlparse(target)
        if url.scheme or target.startswith("//"):
            continue  # external: not checked here (tests never reach the internet)
        dest = page if not url.path else (page.parent / unquote(url.path)).resolve()
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif url.fragment and dest.suffix == ".md" and url.fragment not in anchors(dest.read_text()):
            bad.append(f"{target}: no heading #{url.fragment} in {dest.relative_to(root)}")
        elif root not in dest.parents:
            bad.append(f"{target}: outside the repository")
    return bad


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_relative_link_resolves(page):
    assert broken_links(page) == [], f"{page.relative_to(ROOT)} has broken links"


def test_the_link_check_finds_broken_links_and_anchors(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "b.md").write_text("# Data versions and DVC\n## Data versions and DVC\n")
    page = tmp_path / "README.md"
    page.write_text(
        "[ok](docs/b.md) [ok](docs/b.md#data-versions-and-dvc) [ok](docs/b.md#data-versions-and-dvc-1)\n"
        "[gone](docs/missing.md) [bad anchor](docs/b.md#nothing) [web](https://example.org/x)\n"
        "![img](docs/none.png) [self](#top)\n\n# Top\n\n`[code](docs/not-a-link.md)`\n\n"
        "    [indented code](docs/not-a-link-either.md)\n[out](../elsewhere.md)\n"
    )
    (tmp_path.parent / "elsewhere.md").write_text("x")
    assert broken_links(page, tmp_path) == [
        "docs/missing.md: no such file",
        "docs/b.md#nothing: no heading #nothing in docs/b.md",
        "docs/none.png: no such file",
        "../elsewhere.md: outside the repository",
    ]
