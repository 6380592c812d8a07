"""``segq-monai export``: the bundle as a model-zoo archive, ``<name>_v<version>.zip``.

The archive is laid out as Project-MONAI/model-zoo publishes bundles: one top folder named after the bundle
(``name`` in its metadata) holding ``configs/`` (the workflows, ``metadata.json``, ``logging.conf``), ``docs/``
(model card, data licence), ``LICENSE`` and, with ``--models_dir``, ``models/`` (the trained weights:
``fold<k>/model.pt``, ``fold<k>/temperature.json``, ``quality_<variant>/model.pt``, ...; the ``resume/`` folders
of interrupted runs are left out). ``python -m monai.bundle run --bundle_root <unzipped>/<name> ...`` runs it
with segq-monai installed.

Before writing, the metadata is checked by model-zoo's rules: ``version`` and ``changelog`` present, the version
the first (newest) key of the changelog, and the whole file valid against the schema copy shipped with the
package (``segq-monai paths schema``: MONAI's metadata schema, which cannot be downloaded here). The archive is
written whole or not at all, with fixed timestamps and sorted entries, so the same inputs give the same bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import uuid
import zipfile
from pathlib import Path
from typing import Any

import jsonschema

from segq_monai.apps.arguments import add_subcommand, bundle_root_arg
from segq_monai.utils.resources import bundle_root, check_bundle, packaged
from segq_monai.utils.atomic import writable_dir

__all__ = ["add_parser", "archive_members", "check_metadata", "export_bundle", "run"]

_BUNDLE_PARTS = ("configs", "docs", "LICENSE")  # what of a bundle folder goes into the archive
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can hold: reproducible archives


def check_metadata(meta_file: str | os.PathLike, schema_file: str | os.PathLike | None = None) -> dict[str, Any]:
    """The bundle metadata in ``meta_file``, after model-zoo's checks; ``ValueError`` naming the file otherwise.

    Checks: ``version`` and ``changelog`` present, ``version`` the first key of ``changelog`` (model-zoo lists
    the newest release first), and the whole file valid against ``schema_file`` (default: the schema copy shipped
    with the package), every violation listed with its path.
    """
    meta = json.loads(Path(meta_file).read_text())
    for key in ("version", "changelog"):
        if key not in meta:
            raise ValueError(f"{meta_file}: '{key}' is missing; model-zoo bundles need 'version' and 'changelog'.")
    first = next(iter(meta["changelog"]), None)
    if first != meta["version"]:
        raise ValueError(
            f"{meta_file}: version {meta['version']!r} must be the first key of 'changelog' (the newest release "
            f"first), found {first!r}; add a changelog entry for it at the top."
        )
    schema = json.loads(Path(schema_file or packaged("_configs", "schema", "meta_schema.json")).read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(meta), key=lambda e: list(e.path))
    if errors:
        listed = "; ".join(f"{'#'.join(map(str, e.path)) or '(top)'}: {e.message}" for e in errors)
        raise ValueError(f"{meta_file} does not match the metadata schema: {listed}.")
    return meta


def archive_members(root: Path, models_dir: Path | None = None) -> dict[str, Path]:
    """The files of the archive by their path inside its top folder (``configs/inference.json``: ``Path``), sorted."""
    members: dict[str, Path] = {}
    for part in _BUNDLE_PARTS:
        path = root / part
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else []
        members.update({p.relative_to(root).as_posix(): p for p in files})
    if models_dir is not None:
        for p in sorted(models_dir.rglob("*")):
            rel = p.relative_to(models_dir)
            if p.is_file() and "resume" not in rel.parts and not p.name.endswith(".tmp"):
                members[f"models/{rel.as_posix()}"] = p
    return dict(sorted(members.items()))


def export_bundle(
    output_dir: str | os.PathLike,
    root: str | os.PathLike | None = None,
    models_dir: str | os.PathLike | None = None,
) -> Path:
    """Write ``output_dir/<name>_v<version>.zip`` from the bundle at ``root`` (default: the shipped one).

    Args:
        output_dir: the folder of the archive (created when missing).
        root: a segq bundle folder (``configs/metadata.json``, ``configs/inference.json``).
        models_dir: trained weights to put under ``models/`` (e.g. the demo's ``segq_output/models``); ``None``:
            an archive of the configs and docs only.

    Returns the archive's path. Raises ``FileNotFoundError`` (not a bundle, no ``models_dir``) or ``ValueError``
    (metadata against model-zoo's rules) before anything is written.
    """
    root = check_bundle(root if root is not None else bundle_root())
    meta = check_metadata(root / "configs" / "metadata.json")
    models = None
    if models_dir is not None:
        models = Path(models_dir).expanduser().resolve()
        if not models.is_dir():
            raise FileNotFoundError(f"--models_dir {models} is not a folder; pass the folder the training wrote.")
    name = meta.get("name") or root.name
    out = writable_dir(Path(output_dir).expanduser().resolve())
    target = out / f"{name}_v{meta['version']}.zip"
    tmp = out / f".{target.name}.{uuid.uuid4().hex}.tmp"
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
            for arcname, path in archive_members(root, models).items():
                info = zipfile.ZipInfo(f"{name}/{arcname}", date_time=_ZIP_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                z.writestr(info, path.read_bytes())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``export`` on the subcommands ``sub`` of the ``segq-monai`` parser."""
    p = add_subcommand(sub, "export", "write the bundle as a model-zoo archive <name>_v<version>.zip", __doc__, run)
    p.add_argument("--output_dir", default=".", help="where the archive goes (default: the current folder)")
    p.add_argument("--bundle_root", type=bundle_root_arg, default=None,
                   help="the bundle to export (default: the one shipped with segq-monai)")
    p.add_argument("--models_dir", default=None, help="trained weights to include as models/ (e.g. segq_output/models)")
    return p


def run(args: argparse.Namespace) -> None:
    """``segq-monai export``: print the archive's path (bad input ends on its message, see ``segq_monai.__main__``)."""
    print(export_bundle(args.output_dir, args.bundle_root, args.models_dir))
