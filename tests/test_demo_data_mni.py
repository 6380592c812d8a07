"""The embedded MNI152 slices (second subject): files, grids shared with Colin27, masks, and the source mapping."""

from __future__ import annotations

import tempfile
import unittest
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from parameterized import parameterized
from scipy import ndimage

from segq_monai.data import demo_datalist_path, load_datalist

MNI_DIR = demo_datalist_path().parent / "mni152"
REPO_ROOT = Path(__file__).resolve().parents[1]
SOURCE = REPO_ROOT.parent / "shared" / "data"  # CI keeps ../shared beside the clone
MNI_SOURCE, COLIN_SOURCE = SOURCE / "mni152", SOURCE / "colin27"
T1 = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
KEYS = ("image", "label", "regions")
PLANES = {"axial": (2, (96, 112), 10), "coronal": (1, (96, 96), 8), "sagittal": (0, (112, 96), 8)}
MNI_ORIGIN = (-98.0, -134.0, -72.0)  # the template's affine: world = index + origin (mm)
LOBE_CLASS = {"2": 1, "8": 2, "5": 3, "6": 3, "9": 4}  # AAL code's leading digit -> merged class (others: 0)


def _array(path: str) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj)


def _items(plane: str) -> list[dict]:
    return load_datalist(MNI_DIR / "dataset.json", plane, KEYS)


class TestMni152Slices(unittest.TestCase):
    def test_files_notices_and_datalist(self):
        for name in ("dataset.json", "README.md", "MNI152_NOTICE.txt", "AAL_NOTICE.txt", "debian-copyright.txt"):
            self.assertTrue((MNI_DIR / name).is_file(), name)
        notice = (MNI_DIR / "MNI152_NOTICE.txt").read_text()
        self.assertIn("Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre", notice)
        self.assertIn("Fonov", notice)
        readme = (MNI_DIR / "README.md").read_text()
        for phrase in ("python -m segq_monai.data.make_demo_mni", "`T1 > 0`", "no skull", "McConnell"):
            self.assertIn(phrase, readme)
        listed = {Path(i[k]).name for plane in PLANES for i in _items(plane) for k in KEYS}
        self.assertEqual(listed, {f.name for f in MNI_DIR.glob("*.nii.gz")})  # every file listed, no stray file
        self.assertEqual({p: len(_items(p)) for p in PLANES}, {p: n for p, (_, _, n) in PLANES.items()})

    @parameterized.expand([(plane,) for plane in PLANES])
    def test_grids_values_and_position(self, plane):
        axis, size, _ = PLANES[plane]
        outside = labelled = 0
        for item in _items(plane):
            self.assertEqual(item["plane"], plane)
            images = {k: nib.load(item[k]) for k in KEYS}
            for key, img in images.items():
                self.assertEqual(img.shape, size, item[key])
                self.assertEqual(img.get_data_dtype(), np.uint8)
                np.testing.assert_allclose(img.affine, images["image"].affine)
            affine = images["image"].affine
            np.testing.assert_allclose(np.abs(affine[:3, :3]).sum(axis=0), [2.0, 2.0, 2.0])  # 2 mm in every column
            self.assertEqual(affine[axis, 3], item["position_mm"])  # the plane's MNI coordinate
            index = int(Path(item["image"]).name.split("_")[1][1:])
            self.assertEqual(index + MNI_ORIGIN[axis], item["position_mm"])  # named by the template's voxel index
            image, brain, regions = (_array(item[k]) for k in KEYS)
            self.assertTrue(set(np.unique(brain)) <= {0, 1})
            self.assertGreater(int(brain.sum()), 100, item["label"])
            self.assertTrue(set(np.unique(regions)) <= set(range(5)))
            # brain-extracted: every brain pixel is bright, nothing lies beyond two pixels of the mask (a 2 mm average
            # can catch a 1 mm sliver of brain that the nearest-neighbour mask misses)
            self.assertTrue(np.all(image[brain > 0] > 0))
            self.assertFalse(np.any((image > 0) & ~ndimage.binary_dilation(brain > 0, iterations=2)))
            outside += int(((regions > 0) & (brain == 0)).sum())
            labelled += int((regions > 0).sum())
        # regions mostly inside the mask (AAL, drawn on Colin27, fits the template approximately and is not cut to
        # the mask: 5 to 6 % outside per plane, up to 18 % in the outermost sagittal slice; Colin27's own: 9 to 10 %)
        self.assertLess(outside, 0.1 * labelled)

    def test_same_grids_as_colin27(self):
        """Each slice has the shape and affine of the Colin27 slice at the same MNI coordinate (axial: one of the 72
        training slices; coronal, sagittal: 8 of the 22 of each plane)."""
        colin = {"axial": load_datalist(demo_datalist_path(), "training", KEYS)}
        for item in load_datalist(demo_datalist_path(), "cross_plane", KEYS):
            colin.setdefault(item["plane"], []).append(item)
        for plane, (axis, _, _) in PLANES.items():
            by_position = {float(nib.load(i["image"]).affine[axis, 3]): i for i in colin[plane]}
            for item in _items(plane):
                twin = nib.load(by_position[item["position_mm"]]["image"])
                mine = nib.load(item["image"])
                self.assertEqual(mine.shape, twin.shape)
                np.testing.assert_allclose(mine.affine, twin.affine)
            if plane != "axial":  # 8 of the 22 Colin27 slices of the plane, spread as they are
                self.assertLessEqual({i["position_mm"] for i in _items(plane)}, set(by_position))

    def test_all_region_classes_present_and_small(self):
        regions = [_array(i["regions"]) for plane in PLANES for i in _items(plane)]
        self.assertTrue(np.all(sum(np.bincount(r.ravel(), minlength=5) for r in regions) > 0))
        self.assertLess(sum(f.stat().st_size for f in MNI_DIR.iterdir()), 500_000)


@unittest.skipUnless(
    MNI_SOURCE.is_dir() and COLIN_SOURCE.is_dir(), f"MNI152 / Colin27 source not found under {SOURCE} (../shared)"
)
class TestMakeMni152(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        t1 = nib.load(MNI_SOURCE / T1)
        aal = nib.load(COLIN_SOURCE / "aal.nii.gz")
        cls.t1, cls.t1_inverse = np.asarray(t1.dataobj).astype(float), np.linalg.inv(t1.affine)
        cls.aal, cls.aal_inverse = np.asarray(aal.dataobj).astype(int), np.linalg.inv(aal.affine)
        rows = [line.split() for line in (COLIN_SOURCE / "aal.nii.txt").read_text().splitlines() if line.strip()]
        cls.aal_names = {int(i): name for i, name, _ in rows}
        cls.lut = np.zeros(max(cls.aal_names) + 1, dtype=int)
        for index, _, code in rows:
            cls.lut[int(index)] = LOBE_CLASS.get(code[0], 0)

    @pytest.mark.slow
    def test_reproduces_byte_for_byte(self):
        from segq_monai.data.make_demo_mni import make_mni152_demo_data

        with tempfile.TemporaryDirectory() as tmp:
            make_mni152_demo_data(MNI_SOURCE, COLIN_SOURCE, tmp)
            made = sorted(p.name for p in Path(tmp).iterdir())
            self.assertEqual(made, sorted(p.name for p in MNI_DIR.iterdir()))
            for name in made:
                self.assertEqual((Path(tmp) / name).read_bytes(), (MNI_DIR / name).read_bytes(), name)

    def test_notice_is_the_sources(self):
        source = " ".join(line.lstrip("> ").strip() for line in (MNI_SOURCE / "README.md").read_text().splitlines())
        notice = (MNI_DIR / "MNI152_NOTICE.txt").read_text().split("Its notice:")[1].split("Cite:")[0]
        self.assertIn(" ".join(notice.split()), " ".join(source.split()))

    def _voxels(self, inverse: np.ndarray, world: np.ndarray) -> np.ndarray:
        voxels = inverse @ world
        np.testing.assert_allclose(voxels, np.rint(voxels), atol=1e-6)  # the 2 mm lattice lies on voxel centres
        return np.rint(voxels[:3]).astype(int)

    @parameterized.expand([(plane,) for plane in PLANES])
    def test_every_pixel_maps_to_the_sources(self, plane):
        """Each pixel's world point, through the source affines: brain = template T1 > 0 there, regions = the AAL
        label there merged by its lobe digit (0 outside Colin27's grid), image = the 2 mm box average of the T1."""
        for item in _items(plane):
            image, brain, regions = (_array(item[k]).astype(int) for k in KEYS)
            affine = nib.load(item["image"]).affine
            grid = np.indices(image.shape).reshape(2, -1)
            world = affine @ np.vstack([grid, np.zeros_like(grid[0]), np.ones_like(grid[0])])
            mni = self._voxels(self.t1_inverse, world)
            inside = np.all((mni >= 0) & (mni < np.array(self.t1.shape)[:, None]), axis=0)
            expected = np.zeros(grid.shape[1], dtype=int)
            expected[inside] = self.t1[tuple(mni[:, inside])] > 0
            np.testing.assert_array_equal(brain.ravel(), expected, item["label"])
            colin = self._voxels(self.aal_inverse, world)
            inside = np.all((colin >= 0) & (colin < np.array(self.aal.shape)[:, None]), axis=0)
            expected = np.zeros(grid.shape[1], dtype=int)
            expected[inside] = self.lut[self.aal[tuple(colin[:, inside])]]
            np.testing.assert_array_equal(regions.ravel(), expected, item["regions"])
            centre = np.flatnonzero(brain.ravel())[::97]  # a spread of brain pixels: the image there
            in_plane = [a for a in range(3) if a != PLANES[plane][0]]
            average = np.zeros(centre.size)
            for du in (-1, 0, 1):
                for dv in (-1, 0, 1):
                    shifted = mni[:, centre].copy()
                    shifted[in_plane[0]] += du
                    shifted[in_plane[1]] += dv
                    average += (0.5 if du == 0 else 0.25) * (0.5 if dv == 0 else 0.25) * self.t1[tuple(shifted)]
            np.testing.assert_array_equal(image.ravel()[centre], np.clip(np.rint(average), 0, 255))

    @parameterized.expand([
        ("axial", (-40, 31, 29), "Frontal_Mid_L", 1),
        ("axial", (-58, -25, -21), "Temporal_Inf_L", 2),
        ("axial", (40, -89, -7), "Occipital_Inf_R", 3),
        ("coronal", (-40, -29, 51), "Postcentral_L", 3),
        ("coronal", (10, -69, -35), "Cerebelum_8_R", 4),
        ("sagittal", (-42, -29, 51), "Postcentral_L", 3),
    ])  # fmt: skip
    def test_hand_picked_mni_points(self, plane, point, aal_name, region_class):
        """A known MNI point: its AAL region (by name, hand-picked) and merged class is what the slice holds."""
        voxel = self._voxels(self.aal_inverse, np.array([*point, 1.0]))
        self.assertEqual(self.aal_names[int(self.aal[tuple(voxel)])], aal_name)
        axis = PLANES[plane][0]
        (item,) = [i for i in _items(plane) if i["position_mm"] == point[axis]]
        i, j, k = self._voxels(np.linalg.inv(nib.load(item["image"]).affine), np.array([*point, 1.0]))
        self.assertEqual(k, 0)
        self.assertEqual(int(_array(item["regions"])[i, j]), region_class)
        self.assertEqual(int(_array(item["label"])[i, j]), 1)  # inside the template's brain


if __name__ == "__main__":
    unittest.main()
