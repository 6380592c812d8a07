"""A PACS over DICOMweb (``dicomweb-client``): find a study's image series, pull one into a folder, store (STOW-RS)
a case's SEG and SR back.

Every failure is refused with a message that names the server (its URL), the study or series, and the fix: a server
that cannot be reached or answers with an error, a study without a series of the expected modality (the modalities
it holds named), a STOW the server rejects. A pulled series lands in its folder whole or not at all (a temporary
folder, renamed); the SEG is stored before the SR, and an SR the server rejects leaves no SEG behind where the
server lets it be deleted (DICOMweb DELETE), else the message names the SEG left there.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset

__all__ = ["connect", "image_series", "pull_series", "store_objects"]

#: DICOM attribute tags, as DICOMweb's JSON names them
_SERIES_UID, _MODALITY = "0020000E", "00080060"


def _first(entry: dict, tag: str) -> str:
    values = entry.get(tag, {}).get("Value") or [""]
    return str(values[0])


def _refused(url: str, what: str, error: Exception) -> ValueError:
    if isinstance(error, requests.ConnectionError):
        return ValueError(f"Cannot reach the PACS at {url} ({what}: no connection); check the URL (the DICOMweb "
                          "root, e.g. http://HOST:PORT/dicom-web) and that the server runs, then rerun.")
    if isinstance(error, requests.HTTPError) and error.response is not None:
        status = error.response.status_code
        return ValueError(f"The PACS at {url} answered {what} with HTTP {status} ({error.response.reason}); check "
                          "the URL, the study UID and the server's log, then rerun.")
    return ValueError(f"The PACS at {url} failed {what} ({type(error).__name__}: {error}); check the server, "
                      "then rerun.")


def connect(url: str, timeout: float = 30.0) -> DICOMwebClient:
    """A DICOMweb client of the server at ``url`` (its DICOMweb root), checked by one QIDO query.

    Args:
        url: e.g. ``http://127.0.0.1:8042/dicom-web``.
        timeout: seconds to wait for each answer.

    Raises:
        ValueError: the server cannot be reached or does not answer a QIDO query (the URL and the fix named).
    """
    session = requests.Session()
    session.request = _with_timeout(session.request, timeout)  # type: ignore[method-assign]
    client = DICOMwebClient(url=url.rstrip("/"), session=session)
    client.set_http_retry_params(retry=False)  # its default retries any failure for 30 s: refuse at once instead
    try:
        client.search_for_studies(limit=1)
    except (requests.RequestException, OSError) as e:
        raise _refused(url, "a study query (QIDO-RS)", e) from e
    return client


def _with_timeout(request: Any, timeout: float) -> Any:
    def call(method: str, url: str, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", timeout)
        return request(method, url, **kwargs)

    return call


def image_series(client: DICOMwebClient, study: str, modality: str, series: str | None = None) -> str:
    """The one series of ``modality`` in ``study`` (or ``series``, checked to be one), by QIDO-RS.

    Raises:
        ValueError: the study has no series (unknown UID), none of ``modality`` (the modalities it holds named),
            several (their UIDs named: pass ``--series``), or ``series`` is not among them.
    """
    url = client.base_url
    try:
        found = client.search_for_series(study_instance_uid=study)
    except (requests.RequestException, OSError) as e:
        raise _refused(url, f"a series query of study {study}", e) from e
    if not found:
        raise ValueError(f"The PACS at {url} holds no study {study}; check the StudyInstanceUID (e.g. in the PACS's "
                         "worklist) and rerun.")
    kinds = {_first(e, _SERIES_UID): _first(e, _MODALITY) for e in found}
    matching = sorted(uid for uid, kind in kinds.items() if kind == modality)
    if series is not None:
        if kinds.get(series) != modality:
            raise ValueError(f"Study {study} on {url} has no {modality} series {series}; its series: {kinds}. Pass "
                             f"one of its {modality} series as --series.")
        return series
    if not matching:
        raise ValueError(f"Study {study} on {url} has no {modality} series (it holds {sorted(set(kinds.values()))}); "
                         f"the host segments {modality} images: pass a study with a {modality} series, or --modality "
                         "if the host reads another.")
    if len(matching) > 1:
        raise ValueError(f"Study {study} on {url} has {len(matching)} {modality} series ({', '.join(matching)}); "
                         "pass the one to segment as --series.")
    return matching[0]


def pull_series(client: DICOMwebClient, study: str, series: str, folder: str | os.PathLike) -> list[Path]:
    """Retrieve every instance of ``series`` (WADO-RS) into ``folder`` (``<SOPInstanceUID>.dcm``), whole or not at
    all: into a temporary folder beside it, renamed once complete. An existing ``folder`` is replaced.

    Returns:
        the files written.
    """
    url = client.base_url
    try:
        datasets = client.retrieve_series(study, series)
    except (requests.RequestException, OSError) as e:
        raise _refused(url, f"the retrieval (WADO-RS) of series {series}", e) from e
    target = Path(folder)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
    try:
        tmp.mkdir()
        for ds in datasets:
            ds.save_as(tmp / f"{ds.SOPInstanceUID}.dcm", write_like_original=False)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return sorted(target.iterdir())


def _store(client: DICOMwebClient, dataset: Dataset, what: str) -> None:
    url = client.base_url
    try:
        response = client.store_instances([dataset])
    except (requests.RequestException, OSError) as e:
        raise _refused(url, f"the storage (STOW-RS) of the {what}", e) from e
    failed = response.get("FailedSOPSequence") if response is not None else None
    reasons = [str(item.get("FailureReason", "?")) for item in failed or []]
    if not reasons:  # a server may answer success and drop the object (Orthanc's filters do): ask for it
        try:
            held = client.search_for_instances(dataset.StudyInstanceUID, dataset.SeriesInstanceUID,
                                               search_filters={"SOPInstanceUID": dataset.SOPInstanceUID})
        except (requests.RequestException, OSError) as e:
            raise _refused(url, f"the check of the stored {what}", e) from e
        reasons = [] if held else ["answered success, but does not hold it"]
    if reasons:
        raise ValueError(f"The PACS at {url} rejected the {what} {dataset.SOPInstanceUID} (STOW-RS: "
                         f"{', '.join(reasons)}); check what the server accepts (SOP classes, filters, storage), then "
                         "rerun.")


def store_objects(client: DICOMwebClient, objects: Sequence[tuple[Dataset, str]]) -> None:
    """Store ``objects`` (``(dataset, what it is)``, e.g. the SEG then the SR) one STOW-RS request each, in order.
    Where one is rejected, those stored before it are deleted again (DICOMweb DELETE) so that the study holds all
    or none of them; a server without DELETE leaves them, and the message names them.

    Raises:
        ValueError: a rejected or failed STOW (the server, the object and the fix named).
    """
    stored: list[Dataset] = []
    for dataset, what in objects:
        try:
            _store(client, dataset, what)
        except ValueError as e:
            left = []
            for done in stored:
                try:
                    client.delete_instance(done.StudyInstanceUID, done.SeriesInstanceUID, done.SOPInstanceUID)
                except Exception:  # noqa: BLE001 - any failure of the clean-up leaves the object: say so
                    left.append(str(done.SOPInstanceUID))
            if left:
                raise ValueError(f"{e} The server could not delete what this run stored before it ({', '.join(left)}); "
                                 "delete those instances on the server by hand.") from e
            raise
        stored.append(dataset)
