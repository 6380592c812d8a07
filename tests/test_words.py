"""One word per idea: CONTRIBUTING.md's "Words" table against the code.

Each ``segq_monai.…`` name of the table's "where" column must exist (a module, or an attribute of one); no word of
its "retired" column may be left in the package's source or in the configs. Two words are checked apart: the
``"flagged"`` literal beside ``FLAG_COLUMN``, and ``quality.csv`` column names built by hand instead of with
``column_name``.
"""

from __future__ import annotations

import ast
import importlib
import re
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "segq_monai"
#: a markdown code span: the same run of backticks opens and closes it
_CODE = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)")


def words_table(text: str) -> list[dict[str, str]]:
    """The rows of the "## Words" section's table as ``{column: cell}``."""
    section = text.split("\n## Words\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = []
    for line in lines[2:]:
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip("|"))]
        rows.append(dict(zip(header, cells)))
    return rows


def code_spans(cell: str) -> list[str]:
    return [m.group(2).strip() for m in _CODE.finditer(cell)]


def resolve(dotted: str) -> object:
    """The object a dotted ``segq_monai.…`` name names: the longest importable module, then attributes."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        return obj
    raise ModuleNotFoundError(dotted)


def retired_pattern(word: str) -> re.Pattern[str]:
    """``word`` as a whole word: not inside a longer identifier (``true_quality`` is not ``add_true_quality``)."""
    before = r"(?<!\w)" if re.match(r"\w", word) else ""
    after = r"(?!\w)" if re.search(r"\w$", word) else ""
    return re.compile(before + re.escape(word) + after)


def sources() -> dict[str, str]:
    files = [p for p in PACKAGE.rglob("*.py") if not {"_bundle", "_configs"} & set(p.parts)]
    files += sorted((ROOT / "bundle" / "configs").glob("*.json")) + sorted((ROOT / "configs").glob("*.json"))
    return {str(p.relative_to(ROOT)): p.read_text() for p in files}


def hits(pattern: re.Pattern[str], texts: dict[str, str]) -> list[str]:
    return [f"{name}:{text.count(chr(10), 0, m.start()) + 1}" for name, text in texts.items()
            for m in pattern.finditer(text)]  # fmt: skip


class TestWordsTable(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.rows = words_table((ROOT / "CONTRIBUTING.md").read_text())
        cls.sources = sources()

    def test_table_shape(self):
        self.assertGreaterEqual(len(self.rows), 10)
        for row in self.rows:
            self.assertEqual(list(row), ["word", "meaning", "where", "retired"], row)
            self.assertTrue(row["meaning"], row)

    def test_named_code_exists(self):
        names = [n for row in self.rows for n in code_spans(row["where"]) if n.startswith("segq_monai.")]
        self.assertIn("segq_monai.metrics.quality.FAILURE_DICE", names)
        for name in names:
            with self.subTest(name=name):
                resolve(name)  # raises when the table names code that is gone
        self.assertEqual(resolve("segq_monai.metrics.quality.FAILURE_DICE"), 0.8)

    def test_retired_words_are_gone(self):
        retired = [w for row in self.rows for w in code_spans(row["retired"])]
        self.assertIn("true_quality", retired)
        for word in retired:
            with self.subTest(word=word):
                self.assertEqual(hits(retired_pattern(word), self.sources), [])

    def test_retired_pattern_is_a_whole_word(self):
        text = {"a.py": "def add_true_quality(x):\n    true_quality = 1\n", "b.json": '"quality_calibration.json"'}
        self.assertEqual(hits(retired_pattern("true_quality"), text), ["a.py:2"])
        self.assertEqual(hits(retired_pattern("calibration.json"), text), [])
        floats = {"c.py": "t: float = 0.85\nu: float = 0.8\n"}
        self.assertEqual(hits(retired_pattern(": float = 0.8"), floats), ["c.py:2"])
        self.assertEqual(code_spans("`a`, ` ``lambda`` ` and `b c`"), ["a", "``lambda``", "b c"])


def _imports(tree: ast.Module, name: str) -> bool:
    return any(isinstance(n, ast.ImportFrom) and any(a.name == name for a in n.names) for n in ast.walk(tree))


class TestWordsCheckedApart(unittest.TestCase):
    def test_flag_literal_beside_flag_column(self):
        offenders = []
        for path in PACKAGE.rglob("*.py"):
            tree = ast.parse(path.read_text())
            if _imports(tree, "FLAG_COLUMN"):
                offenders += [f"{path.name}:{n.lineno}" for n in ast.walk(tree)
                              if isinstance(n, ast.Constant) and n.value == "flagged"]  # fmt: skip
        self.assertEqual(offenders, [])

    def test_column_names_come_from_column_name(self):
        """No f-string ``f"pred_dice_{c}"`` or ``"_".join(...)`` builds a column name in evaluation or handlers."""
        from segq_monai.data.columns import QUALITY_KINDS

        def built(node: ast.AST) -> bool:
            if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
                return any(str(node.values[0].value).startswith(k + "_") for k in QUALITY_KINDS)
            return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "join"
                    and isinstance(node.func.value, ast.Constant) and node.func.value.value == "_")  # fmt: skip

        offenders = [
            f"{path.relative_to(PACKAGE)}:{n.lineno}"
            for room in ("evaluation", "handlers")
            for path in (PACKAGE / room).glob("*.py")
            for n in ast.walk(ast.parse(path.read_text()))
            if built(n)
        ]
        self.assertEqual(offenders, [])
        self.assertTrue(built(ast.parse('f"pred_dice_{c}"').body[0].value))  # the check can fail
        self.assertTrue(built(ast.parse('"_".join(parts)').body[0].value))


if __name__ == "__main__":
    unittest.main()
