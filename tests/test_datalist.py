"""Datalists: clear errors for every bad input, relative paths that round-trip, atomic writes."""

from __future__ import annotations

import json
import os
import tempfile
import unittest
from pathlib import Path

from parameterized import parameterized

from segq_monai.data import demo_datalist_path, load_datalist, write_datalist


class TestDatalist(unittest.TestCase):
    def setUp(self) -> None:
        self._tmp = tempfile.TemporaryDirectory()
        self.root = Path(self._tmp.name)
        (self.root / "imgs").mkdir()
        for name in ("a.nii.gz", "a_seg.nii.gz", "b.nii.gz", "b_seg.nii.gz", "a_map.nii.gz"):
            (self.root / "imgs" / name).write_bytes(b"")

    def tearDown(self) -> None:
        self._tmp.cleanup()

    def _json(self, content, name="list.json") -> Path:
        p = self.root / name
        p.write_text(content if isinstance(content, str) else json.dumps(content))
        return p

    def test_missing_file(self):
        with self.assertRaisesRegex(FileNotFoundError, "does not exist"):
            load_datalist(self.root / "nope.json")

    @parameterized.expand(
        [
            ("invalid_json", "{not json", "not valid JSON"),
            ("not_object", "[1, 2]", "JSON object"),
            ("missing_key", {"validation": [{"image": "imgs/a.nii.gz"}]}, r"no section 'training'.*\['validation'\]"),
            ("empty", {"training": []}, "'training'.*is empty"),
            ("not_list", {"training": {"image": "imgs/a.nii.gz"}}, "not a list"),
            ("bare_strings", {"training": ["imgs/a.nii.gz"]}, "list of objects"),
        ]
    )
    def test_bad_content(self, _name, content, message):
        with self.assertRaisesRegex(ValueError, message):
            load_datalist(self._json(content))

    @parameterized.expand([("image", "imgs/zz.nii.gz"), ("label", "imgs/zz_seg.nii.gz")])
    def test_missing_referenced_file(self, key, missing):
        item = {"image": "imgs/a.nii.gz", "label": "imgs/a_seg.nii.gz", key: missing}
        path = self._json({"training": [item]})
        with self.assertRaises(FileNotFoundError) as ctx:
            load_datalist(path)
        msg = str(ctx.exception)
        self.assertIn(str(self.root / missing), msg)  # the file
        self.assertIn(str(path), msg)  # the datalist
        self.assertIn("fix the path", msg)  # the fix

    def test_extra_path_key_checked_when_asked(self):
        path = self._json({"training": [{"image": "imgs/a.nii.gz", "regions": "imgs/gone.nii.gz"}]})
        self.assertEqual(load_datalist(path)[0]["regions"], "imgs/gone.nii.gz")  # MONAI: joined only if it exists
        with self.assertRaisesRegex(FileNotFoundError, "gone.nii.gz"):
            load_datalist(path, path_keys=("image", "regions"))

    def test_absolute_paths_and_other_values(self):
        path = self._json(
            {
                "training": [{"image": "imgs/a.nii.gz", "label": "imgs/a_seg.nii.gz", "map": "imgs/a_map.nii.gz"}],
                "testing": [{"image": ["imgs/a.nii.gz", "imgs/b.nii.gz"], "true_dice": 0.5}],
                "test": ["imgs/b.nii.gz"],
            }
        )
        train = load_datalist(path)
        self.assertEqual(train[0]["image"], str(self.root / "imgs" / "a.nii.gz"))
        self.assertEqual(train[0]["map"], str(self.root / "imgs" / "a_map.nii.gz"))
        test = load_datalist(path, key="testing")
        self.assertEqual(test[0]["image"], [str(self.root / "imgs" / n) for n in ("a.nii.gz", "b.nii.gz")])
        self.assertEqual(test[0]["true_dice"], 0.5)
        self.assertEqual(load_datalist(path, key="test"), [{"image": str(self.root / "imgs" / "b.nii.gz")}])

    def test_round_trip_relative(self):
        items = [
            {"image": str(self.root / "imgs" / n), "label": str(self.root / "imgs" / f"{n[0]}_seg.nii.gz"), "fold": i}
            for i, n in enumerate(("a.nii.gz", "b.nii.gz"))
        ]
        items[0]["map"] = str(self.root / "imgs" / "a_map.nii.gz")
        out = write_datalist(self.root / "sub" / "dl.json", {"training": items}, metadata={"name": "t"})
        raw = json.loads(out.read_text())
        self.assertEqual(raw["name"], "t")
        self.assertEqual(raw["numTraining"], 2)
        self.assertEqual(raw["training"][0]["image"], "../imgs/a.nii.gz")
        self.assertEqual(raw["training"][0]["map"], "../imgs/a_map.nii.gz")
        self.assertEqual(raw["training"][1]["fold"], 1)
        self.assertEqual(load_datalist(out), items)

    def test_relative_input_is_cwd_relative(self):
        cwd = os.getcwd()
        try:
            os.chdir(self.root)
            out = write_datalist("lists/dl.json", {"training": [{"image": "imgs/a.nii.gz"}]})
        finally:
            os.chdir(cwd)
        self.assertEqual(json.loads(out.read_text())["training"][0]["image"], "../imgs/a.nii.gz")
        self.assertEqual(load_datalist(out)[0]["image"], str(self.root / "imgs" / "a.nii.gz"))

    def test_atomic_write_leaves_no_temp_file(self):
        target = self.root / "dl.json"
        target.write_text('{"old": true}')
        write_datalist(target, {"training": [{"image": str(self.root / "imgs" / "a.nii.gz")}]})
        self.assertEqual(sorted(p.name for p in self.root.iterdir()), ["dl.json", "imgs"])
        with self.assertRaises(TypeError):  # not JSON-serialisable: the old file stays, no temp file left
            write_datalist(target, {"training": [{"image": "imgs/a.nii.gz", "bad": object()}]})
        self.assertEqual(sorted(p.name for p in self.root.iterdir()), ["dl.json", "imgs"])
        self.assertIn("training", json.loads(target.read_text()))

    def test_bad_section(self):
        with self.assertRaisesRegex(ValueError, "list of dicts"):
            write_datalist(self.root / "dl.json", {"training": ["imgs/a.nii.gz"]})

    def test_demo_datalist_path(self):
        p = demo_datalist_path()
        self.assertTrue(p.is_file())
        self.assertEqual(p.name, "dataset.json")


if __name__ == "__main__":
    unittest.main()
