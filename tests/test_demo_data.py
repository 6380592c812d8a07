"""The embedded Colin27 demo set: files, grids, labels, datalist, size, and reproducibility from the source."""

from __future__ import annotations

import tempfile
import unittest
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from monai.transforms import LoadImage

from segq_monai.data import demo_datalist_path, load_datalist, make_demo_data

DEMO_DIR = demo_datalist_path().parent
REPO_ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIR = REPO_ROOT.parent / "shared" / "data" / "colin27"  # CI keeps ../shared beside the clone
NUM_REGION_CLASSES = 5  # 0 background, 1 frontal, 2 temporal, 3 parietal+occipital, 4 cerebellum


def _load(path: str):
    return LoadImage(image_only=True, ensure_channel_first=True)(path)


class TestDemoData(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.items = load_datalist(demo_datalist_path(), path_keys=("image", "label", "regions"))

    def test_files_and_docs(self):
        for name in ("dataset.json", "README.md", "debian-copyright.txt", "AAL_NOTICE.txt"):
            self.assertTrue((DEMO_DIR / name).is_file(), name)
        self.assertIn("Tzourio-Mazoyer", (DEMO_DIR / "AAL_NOTICE.txt").read_text())
        self.assertIn("python -m segq_monai.data.make_demo", (DEMO_DIR / "README.md").read_text())

    def test_ordered_by_z_and_enough_cases(self):
        zs = [int(Path(i["image"]).name[7:10]) for i in self.items]
        self.assertEqual(zs, sorted(zs))
        self.assertGreaterEqual(len(zs), 50)
        self.assertEqual(set(np.diff(zs)), {2})

    def test_grids_and_values(self):
        for item in self.items:
            img, brain, regions = _load(item["image"]), _load(item["label"]), _load(item["regions"])
            self.assertEqual(tuple(img.shape), (1, 96, 112))
            self.assertEqual(img.shape, brain.shape)
            self.assertEqual(img.shape, regions.shape)
            np.testing.assert_allclose(brain.affine, img.affine)
            np.testing.assert_allclose(regions.affine, img.affine)
            np.testing.assert_allclose(np.diag(img.affine)[:2], [2.0, 2.0])
            self.assertTrue(set(np.unique(brain.numpy())) <= {0.0, 1.0})
            self.assertTrue(set(np.unique(regions.numpy())) <= set(range(NUM_REGION_CLASSES)))
            self.assertGreater(float(brain.sum()), 0.0, item["label"])  # every slice goes through the brain
            self.assertGreaterEqual(float(img.min()), 0.0)
            self.assertLessEqual(float(img.max()), 255.0)

    def test_world_z_follows_slice_index(self):
        for item in self.items[:3]:
            z = int(Path(item["image"]).name[7:10])
            self.assertAlmostEqual(float(_load(item["image"]).affine[2, 3]), z - 71.0)  # source origin z = -71 mm

    def test_all_region_classes_present(self):
        counts = sum(np.bincount(_load(i["regions"]).numpy().astype(int).ravel(), minlength=5) for i in self.items)
        self.assertTrue(np.all(counts > 0), counts)

    def test_folder_small(self):
        size = sum(f.stat().st_size for f in DEMO_DIR.rglob("*") if f.is_file())
        self.assertLess(size, 3_000_000)


@unittest.skipUnless(SOURCE_DIR.is_dir(), f"Colin27 source not found at {SOURCE_DIR} (../shared beside the repo)")
@pytest.mark.slow
class TestMakeDemoReproduces(unittest.TestCase):
    def test_same_arrays(self):
        with tempfile.TemporaryDirectory() as tmp:
            items = load_datalist(make_demo_data(SOURCE_DIR, tmp), path_keys=("image", "label", "regions"))
            embedded = load_datalist(demo_datalist_path(), path_keys=("image", "label", "regions"))
            self.assertEqual(len(items), len(embedded))
            for i in (len(items) // 3, 2 * len(items) // 3):
                for key in ("image", "label", "regions"):
                    self.assertEqual(Path(items[i][key]).name, Path(embedded[i][key]).name)
                    new, old = _load(items[i][key]), _load(embedded[i][key])
                    np.testing.assert_array_equal(new.numpy(), old.numpy())
                    np.testing.assert_allclose(new.affine, old.affine)


class TestPrepareDemo(unittest.TestCase):
    """The experiment's splits. Axial alone: 72 slices in 12 blocks of 6, every 3rd block held out (blocks 1, 4, 7,
    10: 24 slices), two thirds of those (16 slices) to calibration, the other 8 to testing, disjoint by slice."""

    @pytest.mark.slow
    def test_splits(self):
        from segq_monai.data.demo import prepare_demo

        with tempfile.TemporaryDirectory() as d:
            paths = prepare_demo(d, variants=1, held_out_variants=2, geometric_variants=1, planes=("axial",),
                                 cross_subject_variants=0)  # fmt: skip
            stage1 = load_datalist(paths["stage1"], "training")
            sections = {k: load_datalist(paths["dataset"], k) for k in ("training", "calibration", "testing")}
            self.assertEqual({k: len(v) for k, v in sections.items()}, {"training": 96, "calibration": 32, "testing": 16})
            # one plain and one turned copy per development slice, next to each other: the folds, cut by groups in
            # order of first appearance, stay those of stage 1
            self.assertEqual(list(dict.fromkeys(i["group"] for i in sections["training"])), [i["group"] for i in stage1])
            self.assertEqual({frozenset(i) for i in sections["training"]}, {frozenset(stage1[0]) | {"artifact", "severity"}})
            turned = [i for i in sections["training"] if Path(i["image"]).name.endswith("_g0.nii.gz")]
            self.assertEqual(len(turned), 48)
            for item in turned[:3]:
                self.assertTrue(Path(item["label"]).name.startswith(item["group"] + "_g0"))  # its own label
                self.assertEqual(_load(item["image"]).shape, _load(item["label"]).shape)
            groups = {k: {i["group"] for i in v} for k, v in sections.items()}
            self.assertEqual([len(groups[k]) for k in ("training", "calibration", "testing")], [48, 16, 8])
            self.assertEqual({i["group"] for i in stage1}, groups["training"])
            self.assertFalse(groups["calibration"] & groups["testing"])
            self.assertFalse(groups["training"] & (groups["calibration"] | groups["testing"]))
            names = [Path(i["image"]).name for i in load_datalist(demo_datalist_path())]
            held_out = {n.replace("_image.nii.gz", "") for k, n in enumerate(names) if (k // 6) % 3 == 1}
            self.assertEqual(groups["calibration"] | groups["testing"], held_out)
            for item in sections["testing"][:2]:
                self.assertEqual(_load(item["image"]).shape, _load(item["label"]).shape)
            again = prepare_demo(Path(d) / "again", variants=1, held_out_variants=2, geometric_variants=0,
                                 planes=("axial",), cross_subject_variants=0)  # fmt: skip
            self.assertEqual({i["group"] for i in load_datalist(again["dataset"], "calibration")}, groups["calibration"])

    def test_every_plane(self):
        """Each plane in 12 contiguous blocks, every 3rd held out: axial as above; of the 22 coronal (and sagittal)
        slices, slice k in block 12k // 22: positions 2, 3, 8, 9, 13, 14, 19, 20 held out (8 of 22)."""
        from segq_monai.data.demo import prepare_demo

        with tempfile.TemporaryDirectory() as d:
            paths = prepare_demo(d, variants=1, held_out_variants=1, shift_variants=0, cross_subject_variants=0)
            stage1 = load_datalist(paths["stage1"], "training")
            self.assertEqual(Counter(i["plane"] for i in stage1), {"axial": 48, "coronal": 14, "sagittal": 14})
            held = {i["group"] for k in ("calibration", "testing") for i in load_datalist(paths["dataset"], k)}
            others = load_datalist(demo_datalist_path(), "cross_plane")
            for plane in ("coronal", "sagittal"):
                names = [Path(i["image"]).name.replace("_image.nii.gz", "") for i in others if i["plane"] == plane]
                self.assertEqual(len(names), 22)
                self.assertEqual(sorted(names.index(g) for g in held if g in names), [2, 3, 8, 9, 13, 14, 19, 20])
            self.assertFalse(held & {i["group"] for i in stage1})
            shapes = {i["plane"]: tuple(_load(i["image"]).shape[1:]) for i in stage1}
            self.assertEqual(shapes, {"axial": (96, 112), "coronal": (96, 96), "sagittal": (112, 96)})

    @pytest.mark.slow
    def test_development_kinds(self):
        """The default: eight kinds for the development copies, each in turn with every severity; the held-out copies
        (their artifact, severity and image files) are those of a run whose development copies take MONAI's five."""
        from segq_monai.data.demo import DEVELOPMENT_KINDS, prepare_demo
        from segq_monai.transforms.artifacts import ARTIFACT_KINDS, EXTRA_ARTIFACT_KINDS

        self.assertEqual(DEVELOPMENT_KINDS, ARTIFACT_KINDS + EXTRA_ARTIFACT_KINDS)
        with tempfile.TemporaryDirectory() as d:
            args = dict(variants=2, held_out_variants=1, shift_variants=0, cross_subject_variants=0, planes=("axial",))
            default = prepare_demo(Path(d) / "a", development_kinds=ARTIFACT_KINDS, **args)
            broad = prepare_demo(Path(d) / "b", **args)
            train = load_datalist(broad["dataset"], "training")
            self.assertEqual(len(train), 96)
            # the graded plan: every (kind, severity) pair once in each 8 cycles of 5 copies
            self.assertEqual(len({(i["artifact"], i["severity"]) for i in train[:40]}), 40)
            for section in ("calibration", "testing"):
                ours, theirs = (load_datalist(p["dataset"], section) for p in (broad, default))
                self.assertEqual([(i["artifact"], i["severity"]) for i in ours],
                                 [(i["artifact"], i["severity"]) for i in theirs])  # fmt: skip
                for a, b in zip(ours[:3], theirs[:3]):
                    self.assertEqual(Path(a["image"]).read_bytes(), Path(b["image"]).read_bytes())

    @pytest.mark.slow
    def test_cross_subject_split(self):
        """The MNI152 slices (10 axial, 8 coronal, 8 sagittal), two copies each with their own labels (the second
        turned by 90°), groups apart from every Colin27 slice."""
        from segq_monai.data.demo import prepare_demo

        with tempfile.TemporaryDirectory() as d:
            paths = prepare_demo(d, variants=1, held_out_variants=1, shift_variants=0, cross_subject_variants=2)
            cross = load_datalist(paths["dataset"], "cross_subject")
            self.assertEqual(len(cross), 52)
            self.assertEqual(Counter(i["plane"] for i in cross), {"axial": 20, "coronal": 16, "sagittal": 16})
            self.assertEqual(len({i["group"] for i in cross}), 26)
            colin = {i["group"] for k in ("training", "calibration", "testing")
                     for i in load_datalist(paths["dataset"], k)}  # fmt: skip
            self.assertFalse({i["group"] for i in cross} & colin)
            self.assertEqual([i["shift"] for i in cross[:4]], ["none", "rotate90", "none", "rotate90"])
            kept, turned = _load(cross[0]["label"]), _load(cross[1]["label"])  # one slice, the second copy turned
            self.assertEqual(turned.shape[1:], kept.shape[1:][::-1])
            self.assertEqual(float(turned.sum()), float(kept.sum()))  # a 90° turn moves every pixel, loses none
            for item in cross[::8]:
                self.assertTrue(item["group"].startswith(f"mni152_{item['plane']}"))
                image, label = _load(item["image"]), _load(item["label"])
                self.assertEqual(image.shape, label.shape)
                self.assertGreater(float(label.sum()), 0.0)


class TestCrossPlaneSlices(unittest.TestCase):
    def test_planes_and_world_position(self):
        """A coronal slice's affine maps its pixels to world points of one y; a sagittal one's to one x."""
        items = load_datalist(demo_datalist_path(), "cross_plane", path_keys=("image", "label", "regions"))
        self.assertEqual(len(items), 44)
        for item in items:
            img = _load(item["image"])
            world = img.affine.numpy() @ np.array([[0, 0, 0, 1], [95, 0, 0, 1], [0, 95, 0, 1]], dtype=float).T
            fixed = 1 if item["plane"] == "coronal" else 0
            index = int(Path(item["image"]).name.split("_")[1][1:])
            np.testing.assert_allclose(world[fixed], world[fixed][0])  # the plane holds one world coordinate
            source_origin = {0: -90.0, 1: -125.0}[fixed]  # ch2's affine: x = index - 90, y = index - 125 mm
            self.assertAlmostEqual(float(world[fixed][0]), index + source_origin)
            self.assertGreater(float(_load(item["label"]).sum()), 100.0)


if __name__ == "__main__":
    unittest.main()
