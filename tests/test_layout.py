"""Modules stay small: no module of ``segq_monai/`` is over :data:`MAX_LINES` lines (CONTRIBUTING.md: small modules
doing one thing; a module that grows is split by idea, not by line count)."""

from __future__ import annotations

import unittest
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "segq_monai"
MAX_LINES = 400


def module_lines(package: Path = PACKAGE) -> dict[str, int]:
    """``{path relative to the package: its number of lines}`` for every ``.py`` file of the package."""
    return {p.relative_to(package).as_posix(): len(p.read_text().splitlines()) for p in package.rglob("*.py")}


class TestModuleSize(unittest.TestCase):
    def test_no_module_over_the_limit(self):
        lines = module_lines()
        self.assertGreater(len(lines), 50)  # the package was found
        over = {m: n for m, n in lines.items() if n > MAX_LINES}
        self.assertEqual(over, {}, f"split these modules by idea to at most {MAX_LINES} lines")


if __name__ == "__main__":
    unittest.main()
