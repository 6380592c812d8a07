"""``HostBinding``: an Ignite handler that binds a deployment to the host its fit was made on.

At ``Events.STARTED``, after the host's own handlers have loaded its weights (MONAI's ``CheckpointLoader`` acts on
``STARTED`` too, and the overlay appends this handler after the host's), it describes the host pipeline as it is
about to run (:func:`segq_monai.utils.host_binding.host_binding`: the weights' digest, the network's architecture,
the preprocessing and the inferer with every setting resolved) and

* with ``record=True`` (the fit's sample step) writes it to ``FIT/sample/host_binding.json``, which the fit copies
  into ``fit.json`` (``host_binding``);
* otherwise compares it with ``fit.json``'s and refuses a host that differs, naming each difference with both
  values and the fix, before any case is run. With ``allow_host_change=True`` it logs the differences as a WARNING
  instead and leaves them in ``engine.state.host_change`` (a list of lines), which :class:`CalibrationReport`
  writes into ``promise.json`` and :class:`CohortPage` shows on the cohort page.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monai.utils import min_version, optional_import

from segq_monai.utils.atomic import atomic_write_text
from segq_monai.utils.command_line import cli_value
from segq_monai.utils.host_binding import HOST_BINDING_FILE, binding_differences, host_binding

Events, _ = optional_import("ignite.engine", "0.4.11", min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", "0.4.11", min_version, "Engine")

__all__ = ["HostBinding", "check_host_binding", "loaded_weight_files"]

logger = logging.getLogger(__name__)


def loaded_weight_files(engine: Engine) -> list[str]:
    """The ``load_path`` of every MONAI ``CheckpointLoader`` attached to ``engine`` (the files its weights come from)."""
    from monai.handlers import CheckpointLoader

    handlers = engine._event_handlers.get(Events.STARTED, [])  # Ignite keeps (handler, args, kwargs) per event
    return [str(h.load_path) for h, *_ in handlers if isinstance(h, CheckpointLoader)]


def _fix(fit_dir: str | os.PathLike, fit: Mapping[str, Any]) -> str:
    overrides = fit.get("host_bundle", {}).get("overrides") or {}
    passed = " ".join(f"--{k} {shlex.quote(cli_value(v))}" for k, v in overrides.items())
    return (
        (f"The fit ran the host with {passed}: pass the same to this command if you left them out. " if passed else "")
        + f"If the host changed on purpose, fit again (python -m segq_monai fit ... --output_dir NEW_FIT) or, for the "
        f"same network with other settings, recalibrate ({fit_dir}: the fit command with --recalibrate on labelled "
        "cases run the new way). To deploy anyway, knowing the predicted Dice and its calibration may not hold, pass "
        "--segq#allow_host_change true."
    )


def check_host_binding(
    fit_dir: str | os.PathLike, fit: Mapping[str, Any], here: Mapping[str, Any], allow_host_change: bool = False
) -> list[str]:
    """Compare the binding of the pipeline at hand (``here``) with the fit's (``fit["host_binding"]``).

    Returns:
        the differences (one line each; ``[]`` when none), logged as a WARNING when ``allow_host_change``.

    Raises:
        ValueError: the host differs, or the fit has no binding (made before fits were bound), and
            ``allow_host_change`` is false; the message names each difference with both values and the fix.
    """
    fitted = fit.get("host_binding")
    if fitted is None:
        lines = [f"the fit in {fit_dir} was made before fits recorded their host (its fit.json has no host_binding)"]
    else:
        lines = binding_differences(fitted, here)
    if not lines:
        return []
    text = "; ".join(lines)
    name = fit.get("host_bundle", {}).get("name")
    if not allow_host_change:
        raise ValueError(
            f"This host is not the one the quality head in {fit_dir} was fitted to (bundle {name!r}): {text}. "
            + _fix(fit_dir, fit)
        )
    logger.warning(
        f"Deploying the fit in {fit_dir} on a host that differs from the fitted one (segq#allow_host_change): {text}. "
        "The predicted Dice, its intervals and the flag were calibrated on the fitted host and may not hold."
    )
    return lines


class HostBinding:
    """Records (fit) or checks (deployment) the host pipeline at ``Events.STARTED`` (module docstring).

    Args:
        fit_dir: the fit folder.
        fit: its ``fit.json`` as :func:`segq_monai.load_fit` returns it (``host_binding`` read from it).
        network, preprocessing, inferer: the host's, as the run builds them (``@network``, ``@preprocessing``,
            ``@inferer``; the inferer before ``UncertaintyInferer`` wraps it).
        weight_files: files the weights come from beside the ``CheckpointLoader``'s (e.g. an ensemble's).
        record: write the binding (the fit's sample step) instead of checking it.
        allow_host_change: deploy on a differing host with a WARNING instead of refusing.
    """

    def __init__(
        self,
        fit_dir: str | os.PathLike,
        fit: Mapping[str, Any],
        network: Any,
        preprocessing: Any,
        inferer: Any,
        weight_files: Sequence[str | os.PathLike] = (),
        record: bool = False,
        allow_host_change: bool = False,
    ) -> None:
        self.fit_dir = Path(fit_dir)
        self.fit = fit
        self.network = network
        self.preprocessing = preprocessing
        self.inferer = inferer
        self.weight_files = list(weight_files)
        self.record = record
        self.allow_host_change = allow_host_change

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        files = loaded_weight_files(engine) + [str(f) for f in self.weight_files]
        here = host_binding(self.network, self.preprocessing, self.inferer, files)
        if self.record:
            path = self.fit_dir / "sample" / HOST_BINDING_FILE
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(here, indent=1, sort_keys=True) + "\n")
            engine.state.host_change = []
            return
        engine.state.host_change = check_host_binding(self.fit_dir, self.fit, here, self.allow_host_change)
