"""The documentation: README within its budget, one page per purpose under docs/, and every relative link (files and
``#anchors``, GitHub's heading slugs) resolving."""

from __future__ import annotations

import re
import unittest
from pathlib import Path

from parameterized import parameterized
from segq_testing import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "bundle" / "docs" / "README.md"]
_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")


def github_slug(heading: str) -> str:
    """GitHub's anchor of a heading: markup dropped, lower case, punctuation other than ``-`` and ``_`` removed,
    spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images: their text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of ``page``; repeated slugs get ``-1``, ``-2`` ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for line in _FENCE.sub("", page.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = github_slug(m.group(1))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def relative_links(page: Path) -> list[str]:
    text = _CODE.sub("", _FENCE.sub("", page.read_text(encoding="utf-8")))
    return [t for t in _LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


class TestDocs(unittest.TestCase):
    def test_slug_rules(self):
        self.assertEqual(github_slug("Choosing the head (issue #12 item 3)"), "choosing-the-head-issue-12-item-3")
        self.assertEqual(github_slug("Maps (`segq_monai.inferers.streaming`), reduced"),
                         "maps-segq_monaiinferersstreaming-reduced")  # fmt: skip
        self.assertEqual(github_slug("3D example: Colin27 regions"), "3d-example-colin27-regions")

    @parameterized.expand([(str(p.relative_to(REPO)),) for p in PAGES])
    def test_relative_links_resolve(self, name):
        page = REPO / name
        links = relative_links(page)
        for link in links:
            path, _, anchor = link.partition("#")
            target = (page.parent / path).resolve() if path else page
            self.assertTrue(target.exists(), f"{name}: link {link!r} points to a missing {target}")
            if anchor:
                self.assertEqual(target.suffix, ".md", f"{name}: anchor {link!r} into a file without headings")
                self.assertIn(anchor, anchors(target), f"{name}: no heading {anchor!r} in {target.name}")

    def test_readme_budget_and_first_commands(self):
        readme = (REPO / "README.md").read_text(encoding="utf-8")
        self.assertLessEqual(len(readme.splitlines()), 200)
        block = _FENCE.search(readme).group(0).splitlines()  # what CI and the reader run first
        self.assertEqual(block[1:3], [
            'python3 -m venv .venv && .venv/bin/pip install torch==2.14.1 torchvision==0.29.1 && .venv/bin/pip '
            'install -e ".[test,monailabel]" && .venv/bin/python -m segq_monai demo',
            ".venv/bin/python -m pytest -q",
        ])  # fmt: skip
        for page in (REPO / "docs").glob("*.md"):
            self.assertLessEqual(len(page.read_text(encoding="utf-8").splitlines()), 320, page.name)
            self.assertIn(f"(docs/{page.name})", readme, f"README links every docs page: {page.name}")

    def test_every_figure_is_referenced(self):
        text = "".join(p.read_text(encoding="utf-8") for p in PAGES)
        for figure in (REPO / "docs" / "figures").glob("*.png"):
            self.assertIn(f"figures/{figure.name}", text, figure.name)


if __name__ == "__main__":
    unittest.main()
