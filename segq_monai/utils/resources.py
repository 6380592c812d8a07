"""Where the files a user runs lie: the bundle, the overlays, the schema, the demo data, the MONAI Label app.

They are package data of ``segq_monai``, found through :mod:`importlib.resources`, so one lookup serves every
install. In a checkout (or an editable install) ``segq_monai/_bundle`` and ``segq_monai/_configs`` are symbolic
links to the repository's top-level ``bundle/`` and ``configs/``, which stay the one source; building a wheel
copies the files they point to into the package (``[tool.setuptools.package-data]`` in ``pyproject.toml``), so
``pip install segq_monai-*.whl`` carries them. Trained weights (``bundle/models/``) are not package data: the
commands write them under their ``--output_dir``, never into the installed package.

``segq-monai paths`` prints these paths (``--json`` for scripts, ``segq-monai paths NAME`` for one of them).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

__all__ = [
    "BUNDLE_FILES",
    "bundle_root",
    "check_bundle",
    "configs_dir",
    "overlay_path",
    "overlays",
    "packaged",
    "paths",
]

#: The files a folder must hold to be a segq bundle (relative to its root), as the commands read them.
BUNDLE_FILES: tuple[str, ...] = ("configs/metadata.json", "configs/inference.json")


def packaged(*parts: str) -> Path:
    """The absolute path of ``segq_monai/<parts...>`` in the installed package, symbolic links resolved.

    Raises ``FileNotFoundError`` naming the path and the fix when it is missing (a wheel built without its
    package data, or a checkout whose symbolic links were not checked out as links).
    """
    path = Path(str(resources.files("segq_monai").joinpath(*parts))).resolve()
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing from the segq_monai package; reinstall segq-monai (a wheel carries it as package "
            "data; a checkout needs git's symbolic links: git config core.symlinks true, then check out again)."
        )
    return path


def bundle_root() -> Path:
    """The segq MONAI bundle shipped with the package (a checkout: the repository's ``bundle/``)."""
    return packaged("_bundle")


def configs_dir() -> Path:
    """The overlays shipped with the package (a checkout: the repository's ``configs/``)."""
    return packaged("_configs")


def overlays() -> dict[str, Path]:
    """Every overlay config, by name (the file name without ``.json``): ``{"segq_overlay": Path(...), ...}``."""
    return {p.stem: p for p in sorted(configs_dir().glob("*.json"))}


def overlay_path(name: str) -> Path:
    """The overlay called ``name`` (``"segq_overlay"`` or ``"segq_overlay.json"``), to pass to ``--config_file``."""
    known = overlays()
    stem = name[: -len(".json")] if name.endswith(".json") else name
    if stem not in known:
        raise KeyError(f"No overlay {name!r} in {configs_dir()}; the overlays are: {', '.join(known)}.")
    return known[stem]


def check_bundle(root: str | os.PathLike) -> Path:
    """``root`` resolved, after checking that it holds every file of :data:`BUNDLE_FILES`.

    Raises ``FileNotFoundError`` naming the folder, the missing file and where the shipped bundle lies.
    """
    folder = Path(root).expanduser().resolve()
    missing = [f for f in BUNDLE_FILES if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{folder} is not a segq bundle: {' and '.join(missing)} missing. Pass the root folder of a bundle "
            f"in model-zoo layout (configs/, docs/, models/); the one shipped with segq-monai is {bundle_root()} "
            "(segq-monai paths bundle_root)."
        )
    return folder


def paths() -> dict[str, str]:
    """Every path :mod:`segq_monai.utils.resources` knows, by name, as strings (``segq-monai paths --json``).

    ``package`` (the ``segq_monai`` folder in use), ``bundle_root`` (for ``--bundle_root``), ``bundle_configs``,
    one entry per overlay (for ``--config_file``), ``schema`` (the metadata schema copy), ``demo_datalist`` and
    ``monailabel_app`` (for ``--app``).
    """
    root = bundle_root()
    found = {"package": packaged(), "bundle_root": root, "bundle_configs": root / "configs"}
    found.update(overlays())
    found["schema"] = packaged("_configs", "schema", "meta_schema.json")
    found["demo_datalist"] = packaged("demo_data", "dataset.json")
    found["monailabel_app"] = packaged("monailabel", "app")
    return {name: str(path) for name, path in found.items()}
