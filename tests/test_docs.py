"""The documentation: README within its budget, one page per purpose under docs/, and every relative link (files and
``#anchors``, GitHub's heading slugs) resolving."""

from __future__ import annotations

import re
import unittest
from pathlib import Path

from parameterized import parameterized
from segq_testing import REPO, chain

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


class TestFitOverrides(unittest.TestCase):
    """Every override docs/fit.md prints reads on the command line as it means: parsed by MONAI's entry point (Python
    Fire) and by ``fit --host_override``, each ``$`` expression valid Python; the DiNTS ``arch_ckpt`` override loads
    search code holding numpy arrays under torch's ``weights_only`` default, which the override it replaces cannot."""

    TEXT = (REPO / "docs" / "fit.md").read_text(encoding="utf-8")

    def overrides(self) -> list[tuple[str, object]]:
        """``(id, value)`` of every ``--host_override ID=VALUE`` and ``--id VALUE`` in the page's code spans, after the
        shell's quoting; the deploy commands of code blocks are parsed whole."""
        import shlex

        from segq_testing import parse_bundle_command

        from segq_monai.apps.fit_host import _parse_override

        found = []
        for span in _CODE.findall(_FENCE.sub("", self.TEXT)):
            words = shlex.split(span.strip("`"))
            for flag, value in zip(words, words[1:]):
                if flag == "--host_override" and "=" in value:
                    found.append(_parse_override(value))
        for block in _FENCE.findall(self.TEXT):
            for command in re.findall(r"python -m monai\.bundle run.*?(?:\n(?!\s)|$)", block.replace("\\\n", " "), re.S):
                found += [(k, v) for k, v in parse_bundle_command(command.strip()).items() if "#" in k]
        return found

    def test_every_override_parses(self):
        found = dict(self.overrides())
        for key in ("arch_ckpt", "dints_space#device", "device", "network_def", "segq#fit_dir"):
            self.assertIn(key, found)
        self.assertIsInstance(found["network_def"], dict)
        for key, value in found.items():
            if isinstance(value, str) and value.startswith("$"):
                compile(re.sub(r"@[\w#]+", "ref", value[1:]), key, "eval")  # a SyntaxError names the override

    def test_dints_arch_ckpt(self):
        import tempfile

        import numpy as np
        import torch
        from monai.bundle import ConfigParser

        path = Path(tempfile.mkdtemp()) / "search_code.pt"
        torch.save({"node_a": np.ones((2, 3), bool), "arch_code_a": np.zeros(3)}, path)
        documented = dict(self.overrides())["arch_ckpt"]
        loaded = ConfigParser({"arch_ckpt_path": str(path), "arch_ckpt": documented}).get_parsed_content("arch_ckpt")
        np.testing.assert_array_equal(loaded["node_a"], np.ones((2, 3), bool))
        before = "$torch.load(@arch_ckpt_path, map_location=torch.device('cpu'))"  # what the page said until 2026-12-06
        with self.assertRaises(Exception) as refused:
            ConfigParser({"arch_ckpt_path": str(path), "arch_ckpt": before}).get_parsed_content("arch_ckpt")
        self.assertIn("weights_only", chain(refused.exception))
