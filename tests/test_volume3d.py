"""The embedded 3D volume (4 mm Colin27 and lobes), its derivation, and the example's run-time cases."""

from __future__ import annotations

import hashlib
import json
import tempfile
import unittest
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segq_monai.data.make_demo import aal_region_classes
from segq_monai.data.make_volume3d import VOLUME3D_FILES, block_majority, block_mean, fill_lobes, make_volume3d_data
from segq_monai.data.volume3d import deform_case, prepare_volume3d, volume3d_dir

REPO_ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIR = REPO_ROOT.parent / "shared" / "data" / "colin27"  # CI keeps ../shared beside the clone


def _array(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj)


class TestBlockReductions(unittest.TestCase):
    def test_block_mean_by_hand(self):
        x = np.arange(27, dtype=float).reshape(3, 3, 3)
        # factor 2: padded to 4x4x4 with zeros; block (0,0,0) = voxels x,y,z in {0,1}
        expected = np.mean([x[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
        out = block_mean(x, 2)
        self.assertEqual(out.shape, (2, 2, 2))
        self.assertAlmostEqual(out[0, 0, 0], expected)
        self.assertAlmostEqual(out[1, 1, 1], x[2, 2, 2] / 8)  # one real voxel, seven zeros of padding

    def test_block_majority_and_ties(self):
        labels = np.zeros((2, 2, 2), dtype=np.uint8)
        labels[0, :, :] = 3  # 4 voxels of 3, 4 of 0: tie -> the lower class
        self.assertEqual(block_majority(labels, 2, 5)[0, 0, 0], 0)
        labels[1, 0, 0] = 3  # 5 of 3
        self.assertEqual(block_majority(labels, 2, 5)[0, 0, 0], 3)

    def test_fill_lobes_nearest_region(self):
        aal = np.zeros((8, 1, 1), dtype=np.int64)
        aal[0], aal[7] = 1, 2  # regions 1 and 2 at the two ends: voxels 1-3 are nearer 1, voxels 4-6 nearer 2
        brain = np.ones((8, 1, 1), dtype=bool)
        brain[5] = False
        lut = np.array([0, 1, 4], dtype=np.uint8)  # region 1 -> class 1, region 2 -> class 4
        self.assertEqual(fill_lobes(aal, brain, lut)[:, 0, 0].tolist(), [1, 1, 1, 1, 4, 0, 4, 4])


class TestEmbeddedVolume(unittest.TestCase):
    def test_grid_classes_and_size(self):
        folder = volume3d_dir()
        image, label = (nib.load(folder / VOLUME3D_FILES[k]) for k in ("image", "label"))
        self.assertEqual(image.shape, (46, 55, 46))
        self.assertEqual(label.shape, image.shape)
        np.testing.assert_allclose(image.affine, label.affine)
        np.testing.assert_allclose(np.diag(image.affine)[:3], [4.0, 4.0, 4.0])
        counts = np.bincount(_array(folder / VOLUME3D_FILES["label"]).ravel())
        self.assertEqual(len(counts), 5)
        self.assertTrue(np.all(counts[1:] > 2000), counts)  # every lobe survives at 4 mm
        size = sum(f.stat().st_size for f in folder.iterdir())
        self.assertLess(size, 300_000)
        self.assertIn("python -m segq_monai.data.make_volume3d", (folder / "README.md").read_text())


@unittest.skipUnless(SOURCE_DIR.is_dir(), f"Colin27 source not found at {SOURCE_DIR} (../shared beside the repo)")
class TestMakeVolume3dReproduces(unittest.TestCase):
    @pytest.mark.slow
    def test_same_bytes(self):
        with tempfile.TemporaryDirectory() as tmp:
            paths = make_volume3d_data(SOURCE_DIR, tmp)
            for key, path in paths.items():
                embedded = volume3d_dir() / VOLUME3D_FILES[key]
                self.assertEqual(hashlib.sha256(path.read_bytes()).hexdigest(),
                                 hashlib.sha256(embedded.read_bytes()).hexdigest(), key)  # fmt: skip

    def test_lobes_follow_aal_codes(self):
        lut = aal_region_classes(SOURCE_DIR / "aal.nii.txt")
        self.assertEqual((lut[1], lut[79], lut[91], lut[43]), (1, 2, 4, 3))  # precentral, Heschl, cerebellum, calcarine


class TestCases(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        folder = volume3d_dir()
        cls.image = _array(folder / VOLUME3D_FILES["image"]).astype(np.float32)
        cls.label = _array(folder / VOLUME3D_FILES["label"])

    def test_no_deformation_is_the_centred_crop(self):
        size = (24, 25, 24)  # (46 - 24) / 2 = 11, (55 - 25) / 2 = 15: whole-voxel offsets
        img, lab = deform_case(self.image, self.label, size, seed=3, max_rotation=0.0, max_scale=0.0, max_shift=0.0)
        np.testing.assert_allclose(img, self.image[11:35, 15:40, 11:35], atol=1e-3)
        np.testing.assert_array_equal(lab, self.label[11:35, 15:40, 11:35])

    def test_deformation_is_seeded(self):
        a = deform_case(self.image, self.label, (16, 16, 16), seed=5)
        b = deform_case(self.image, self.label, (16, 16, 16), seed=5)
        c = deform_case(self.image, self.label, (16, 16, 16), seed=6)
        np.testing.assert_array_equal(a[0], b[0])
        self.assertFalse(np.array_equal(a[1], c[1]))
        self.assertTrue(set(np.unique(a[1])) <= set(range(5)))

    def test_splits_files_and_artifacts(self):
        cases = {"training": 2, "validation": 5, "testing": 1}
        with tempfile.TemporaryDirectory() as tmp:
            path = prepare_volume3d(tmp, cases=cases, spatial_size=(16, 16, 16))
            content = json.loads(path.read_text())
            self.assertEqual({k: len(content[k]) for k in ("training", "validation", "testing")},
                             {"training": 2, "validation": 5, "testing": 1})  # fmt: skip
            self.assertNotIn("calibration", content)
            self.assertEqual(content["labels"]["4"], "cerebellum")
            self.assertEqual({i["severity"] for i in content["training"]}, {0.0})
            self.assertEqual(sorted(i["severity"] for i in content["validation"]), [0.0, 0.25, 0.5, 0.75, 1.0])
            self.assertTrue(content["testing"][0]["image"].startswith("imagesTs/"))
            first = _array(Path(tmp) / content["validation"][1]["image"])
            self.assertEqual(first.shape, (16, 16, 16))
            affine = nib.load(Path(tmp) / content["validation"][1]["label"]).affine
            np.testing.assert_allclose(np.diag(affine)[:3], [4.0, 4.0, 4.0])
            again = json.loads(prepare_volume3d(tmp, cases=cases, spatial_size=(16, 16, 16)).read_text())
            np.testing.assert_array_equal(first, _array(Path(tmp) / again["validation"][1]["image"]))

    def test_bad_splits(self):
        with tempfile.TemporaryDirectory() as tmp:
            with self.assertRaisesRegex(ValueError, "splits among"):
                prepare_volume3d(tmp, cases={"train": 3})
            with self.assertRaisesRegex(ValueError, "spatial_size"):
                prepare_volume3d(tmp, spatial_size=(4, 16, 16))


if __name__ == "__main__":
    unittest.main()
