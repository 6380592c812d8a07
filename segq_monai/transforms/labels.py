"""Check a case's label against its image before the true Dice is computed: one grid, the host's classes."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

__all__ = ["CheckLabel", "CheckLabeld", "CheckLabelD", "CheckLabelDict"]


def _name(x: NdarrayOrTensor, fallback: str) -> str:
    if isinstance(x, MetaTensor) and x.meta.get("filename_or_obj"):
        return str(x.meta["filename_or_obj"])
    return fallback


def _affine(x: NdarrayOrTensor) -> np.ndarray | None:
    return x.affine.detach().cpu().double().numpy() if isinstance(x, MetaTensor) else None


class CheckLabel(Transform):
    """A label must lie on its image's grid and hold only the host network's classes.

    Args:
        num_classes: the network's output channels: classes including background (softmax), or mask channels
            (``multi_label``).
        multi_label: the label is ``[num_classes, *spatial]`` binary masks (a sigmoid network's classes).
        class_names: the foreground classes' names, for the message.

    ``__call__(label, reference)``: ``label`` ``[1, *spatial]`` class indices (multi-label ``[C, *spatial]``
    masks); ``reference`` ``[C_r, *spatial]`` on the image's input grid (e.g. the segmentation after ``Invertd``),
    a MetaTensor naming the image file. Returns ``label`` unchanged.

    Raises:
        ValueError: the spatial shapes or the affines differ (both files, shapes and affines named); the label
            holds values that are not the host's classes (the file, the values and the classes named).
    """

    def __init__(self, num_classes: int, multi_label: bool = False, class_names: Sequence[str] | None = None) -> None:
        self.num_classes = num_classes
        self.multi_label = multi_label
        self.class_names = list(class_names) if class_names else None

    def __call__(self, label: NdarrayOrTensor, reference: NdarrayOrTensor) -> NdarrayOrTensor:
        label_file, image_file = _name(label, "the label"), _name(reference, "its image")
        a_lab, a_ref = _affine(label), _affine(reference)
        same_affine = a_lab is None or a_ref is None or np.allclose(a_lab, a_ref, rtol=1e-5, atol=1e-4)
        if tuple(label.shape[1:]) != tuple(reference.shape[1:]) or not same_affine:
            raise ValueError(
                f"Label {label_file} does not lie on the grid of its image {image_file}: label shape "
                f"{tuple(label.shape[1:])}, image shape {tuple(reference.shape[1:])}; label affine\n{a_lab}\nimage "
                f"affine\n{a_ref}\nResample the label onto the image (e.g. monai.transforms.ResampleToMatch with "
                "mode='nearest') or pair the image with its own label in the datalist."
            )
        t = torch.as_tensor(label)
        if self.multi_label:
            ok = t.shape[0] == self.num_classes and bool(((t == 0) | (t == 1)).all())
            allowed = f"{self.num_classes} channels of 0/1 masks"
        else:
            ok = t.shape[0] == 1 and bool(((t >= 0) & (t < self.num_classes) & (t == torch.round(t))).all())
            allowed = f"class indices 0..{self.num_classes - 1}"
        if not ok:
            values = [int(v) if float(v).is_integer() else v for v in torch.unique(t)[:12].tolist()]
            names = f" (background, {', '.join(self.class_names)})" if self.class_names and not self.multi_label else ""
            raise ValueError(
                f"Label {label_file} (shape {tuple(t.shape)}, values {values}) is not in the host network's classes: "
                f"it outputs {allowed}{names}. Remap the label values (e.g. MapLabelValued, or a label transform "
                "such as ConvertToMultiChannelBasedOnBratsClassesd through segq#label_transforms), or check that "
                "this is the host's label set."
            )
        return label


class CheckLabeld(MapTransform):
    """Dictionary twin of :class:`CheckLabel`: checks ``label_key`` against ``reference_key``."""

    def __init__(
        self,
        num_classes: int,
        label_key: str = "label",
        reference_key: str = "seg",
        multi_label: bool = False,
        class_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__(keys=[label_key, reference_key])
        self.label_key, self.reference_key = label_key, reference_key
        self.check = CheckLabel(num_classes, multi_label, class_names)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        self.check(d[self.label_key], d[self.reference_key])
        return d


CheckLabelD = CheckLabelDict = CheckLabeld
