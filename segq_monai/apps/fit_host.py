"""The host bundle of a fit: a user's model-zoo bundle, read (never edited) for what the segq overlays need."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser

from segq_monai.networks.signature import network_signature
from segq_monai.utils.host_binding import plain_value

__all__ = ["HOST_IDS", "HostBundle"]

#: ids of the host's inference.json the overlays use: what for, and an override that supplies a missing one.
HOST_IDS = {
    "network_def": ("the network sampled by stage 1", "--host_override 'network_def={\"_target_\": ...}'"),
    "network": ("the network on its device", "--host_override 'network=$@network_def.to(@device)'"),
    "preprocessing": ("the transforms whose inverse brings the maps to the input grid",
                      "--host_override 'preprocessing={\"_target_\": \"Compose\", \"transforms\": [...]}'"),
    "inferer": ("the inferer wrapped by UncertaintyInferer",
                "--host_override 'inferer={\"_target_\": \"SlidingWindowInferer\", ...}'"),
    "postprocessing": ("the host's own outputs, kept at deployment",
                       "--host_override 'postprocessing={\"_target_\": \"Compose\", \"transforms\": []}'"),
    "dataset": ("the cases to run (its data is replaced by the labelled datalist)",
                "--host_override 'dataset={\"_target_\": \"Dataset\", \"data\": [], \"transform\": \"@preprocessing\"}'"),
    "handlers": ("the evaluator's handlers (segq appends its writer)", "--host_override 'handlers=[]'"),
    "evaluator": ("the SupervisedEvaluator whose inferer and postprocessing segq replaces",
                  "--host_override 'evaluator={\"_target_\": \"SupervisedEvaluator\", ...}'"),
    "output_dir": ("where the host writes its outputs", "--host_override output_dir=OUT"),
}  # fmt: skip

#: return annotations of a network's ``forward`` that mean several outputs per pass
_SEVERAL_OUTPUTS = re.compile(r"(typing\.)?(dict|Dict|Mapping|tuple|Tuple|list|List)\b")


def _parse_override(text: str) -> tuple[str, Any]:
    """``ID=VALUE``: ``VALUE`` as JSON (``false``, ``[1, 2]``), else as a Python literal as ``python -m monai.bundle
    run`` reads one (``False``, ``None``), else the string itself (``$torch.device('cpu')``, ``@network_def``)."""
    from fire.parser import DefaultParseValue

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--host_override takes ID=VALUE (VALUE as JSON, else a string), got {text!r}.")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        literal = DefaultParseValue(value)
        return key, value if isinstance(literal, str) else literal


def _resolved(parser: ConfigParser, key: str) -> Any:
    """The value of the config id ``key``: a ``$`` expression evaluated where it gives a plain value (a number, a
    string, a bool, a small array; e.g. ``device`` as ``'cpu'``), else the config value itself."""
    value = parser.get(key)
    if isinstance(value, str) and value.startswith("$"):
        plain = plain_value(parser.get_parsed_content(key))
        return value if plain is None else plain
    return value


@contextmanager
def _importable(root: Path) -> Iterator[None]:
    """``root`` on ``sys.path`` while the host's config is parsed: ``monai.bundle run`` puts the bundle root there, so
    a host's ``scripts.networks...`` targets resolve in its steps; the fit reads the host before them."""
    sys.path.insert(1, str(root))
    try:
        yield
    finally:
        if str(root) in sys.path:
            sys.path.remove(str(root))


class HostBundle:
    """The host bundle: its inference config, checked for the ids the overlays use, and what the fit records.

    Args:
        root: the bundle folder (model-zoo layout).
        config_file: its inference config; default ``root/configs/inference.json``.
        overrides: ``ID=VALUE`` strings (``VALUE`` JSON, else a string) applied in every step and at deployment.
        run_id: the id that runs the evaluator; default ``run``, or the one top-level list calling ``.run()``.
        activation: ``softmax`` / ``sigmoid``; default ``sigmoid`` when the postprocessing applies one.
        class_names: foreground class names; default from ``configs/metadata.json``'s ``channel_def``.
        sampler: the fit's sampler (``mc_dropout`` is refused for a network without dropout); ``None``: not checked.

    Raises:
        FileNotFoundError: no config. ValueError: an id the overlays need is missing (the id and an override
            that supplies it are named), the run id cannot be told, or the fit cannot serve the host (a network
            returning several outputs per pass, such as HoVerNet; one output channel under softmax; MC dropout on a
            network without dropout): the host, the
            reason and what to do are named, before anything is written.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        config_file: str | os.PathLike | None = None,
        overrides: Sequence[str] = (),
        run_id: str | None = None,
        activation: str | None = None,
        class_names: Sequence[str] | None = None,
        sampler: str | None = None,
    ) -> None:
        self.root = Path(root).expanduser().resolve()
        self.config = Path(config_file).resolve() if config_file else self.root / "configs" / "inference.json"
        if not self.config.is_file():
            raise FileNotFoundError(
                f"No host config at {self.config}; --host_bundle takes a bundle folder in model-zoo layout "
                "(configs/inference.json), or name the config with --host_config."
            )
        self.overrides = dict(_parse_override(o) for o in overrides)
        parser = ConfigParser()
        parser.read_config(str(self.config))
        parser.update(self.overrides)
        if "bundle_root" in parser:
            parser["bundle_root"] = str(self.root)  # as the fit's runs set it (paths of weights, of DiNTS' arch code)
        for key, (what, override) in HOST_IDS.items():
            if key not in parser:
                raise ValueError(
                    f"Host config {self.config} has no id {key!r}, which the segq overlays need ({what}); supply it "
                    f"with {override}."
                )
        for key in ("evaluator#inferer", "evaluator#postprocessing"):
            if key not in parser:
                raise ValueError(
                    f"Host config {self.config} has no id {key!r} (segq replaces it with its own); supply it with "
                    f"--host_override '{key}=@{key.split('#')[1]}'."
                )
        meta = self.root / "configs" / "metadata.json"
        self.metadata = json.loads(meta.read_text()) if meta.is_file() else {}
        self.name = str(self.metadata.get("name", self.root.name))
        self._check_evaluator(parser)
        with _importable(self.root):  # the host's own modules (scripts/...), as monai.bundle run finds them
            self._check_network_output(parser)
            network = parser.get_parsed_content("network_def")
        self._check_image_key(parser)
        self._check_sampler(network, sampler)
        self._check_weights(parser)
        self.run_id = run_id or self._run_id(parser)
        #: every override as the host config resolves it (``fit.json``'s ``host_binding.overrides``)
        self.resolved_overrides = {key: _resolved(parser, key) for key in self.overrides}
        self.signature = network_signature(network)
        self.activation = activation or self._activation(parser.get("postprocessing"))
        self._check_classes()
        self.class_names = list(class_names) if class_names else self._class_names()

    @staticmethod
    def _component(parser: ConfigParser, key: str) -> tuple[Any, type | None]:
        """The ``_target_`` of the component ``key`` and the class it names (``None`` where it names none)."""
        import importlib
        import pydoc

        from monai.bundle.config_item import ComponentLocator

        target = parser.get(f"{key}#_target_") if isinstance(parser.get(key), dict) else None
        module = ComponentLocator().get_component_module_name(target) if isinstance(target, str) else None
        if isinstance(module, str):
            return target, getattr(importlib.import_module(module), target.rsplit(".", 1)[-1], None)
        if isinstance(module, list):  # a name MONAI exports from several modules: the first, as ConfigComponent does
            return target, getattr(importlib.import_module(module[0]), target, None)
        return target, pydoc.locate(target) if isinstance(target, str) and "." in target else None

    def _refuse(self, reason: str, fix: str) -> ValueError:
        return ValueError(f"The fit cannot serve the host bundle {self.root.name!r} ({self.config}): {reason}. {fix}.")

    def _check_network_output(self, parser: ConfigParser) -> None:
        """The host network returns one map ``[B, C, spatial]`` per pass, read from its class's ``forward`` return
        annotation before the network is built: a network returning a dict, tuple or list of outputs (HoVerNet's
        nucleus, horizontal-vertical and type branches) is refused."""
        import inspect

        target, cls = self._component(parser, "network_def")
        forward = getattr(cls, "forward", None) if isinstance(cls, type) else None
        returns = inspect.signature(forward).return_annotation if callable(forward) else inspect.Signature.empty
        text = returns if isinstance(returns, str) else str(returns)
        if returns is not inspect.Signature.empty and _SEVERAL_OUTPUTS.match(text):
            raise self._refuse(
                f"its network {target} returns {text}: several outputs per pass (e.g. HoVerNet's nucleus_prediction, "
                "horizontal_vertical and type_prediction branches), not one class map [B, C, H, W[, D]]; segq samples "
                "one class-probability map per pass and measures the Dice of each class of its segmentation",
                "Give the fit a network that returns the one map your segmentation is read from (e.g. a module around "
                "yours returning that branch's logits, --host_override 'network_def={\"_target_\": ...}'), and a "
                "postprocessing that turns that map into the segmentation",
            )

    def _check_sampler(self, network: Any, sampler: str | None) -> None:
        """MC dropout needs dropout: a network without a dropout module of p > 0 is refused for ``mc_dropout`` (the
        default sampler) before any case is sampled."""
        from segq_monai.inferers.modes import dropout_modules

        if sampler == "mc_dropout" and not dropout_modules(network):
            raise self._refuse(
                f"its network {type(network).__name__} has no dropout module with p > 0, so MC dropout (--sampler "
                "mc_dropout, the default) would repeat one prediction",
                "Pass --sampler tta (flips and 90 degree rotations, mapped back), --sampler ensemble (checkpoints "
                "models/fold*/model.pt) or --sampler single_pass",
            )

    def _check_image_key(self, parser: ConfigParser) -> None:
        """The host's preprocessing loads the datalist's ``image`` (segq's cases give each image as ``image``, a list
        of files for several modalities, and invert the maps to its grid): a host loading other keys is refused."""
        transforms = parser.get("preprocessing#transforms") if isinstance(parser.get("preprocessing"), dict) else None
        for i, t in enumerate(transforms if isinstance(transforms, list) else []):
            if not (isinstance(t, dict) and re.search(r"LoadImage(d|D|Dict)$", str(t.get("_target_", "")))):
                continue
            keys = parser.get_parsed_content(f"preprocessing#transforms#{i}#keys")
            keys = [keys] if isinstance(keys, str) else list(keys)
            if "image" not in keys:
                raise self._refuse(
                    f"its preprocessing loads the keys {keys}, not 'image' (preprocessing#transforms#{i}); segq gives "
                    "each labelled case as {'image': ..., 'label': ...} and inverts the maps to the grid of 'image'",
                    "Give the fit an inference config (--host_config) whose preprocessing loads 'image' (several "
                    "modalities or phases: 'image' as a list of files, stacked as channels by LoadImaged + "
                    "EnsureChannelFirstd) and inverts to it",
                )
            return

    def _check_classes(self) -> None:
        """A softmax host has a background and at least one class: one output channel under softmax is refused."""
        if self.activation == "softmax" and self.signature["out_channels"] < 2:
            raise self._refuse(
                "its network has 1 output channel and its postprocessing applies no sigmoid; a softmax over one "
                "channel is 1 everywhere, so there is no class map to sample",
                "If the network is a binary one read through a sigmoid, pass --activation sigmoid; otherwise give the "
                "fit a network with a background channel",
            )

    def _check_evaluator(self, parser: ConfigParser) -> None:
        """The host's ``evaluator`` is a MONAI ``SupervisedEvaluator`` (segq replaces its inferer and postprocessing)."""
        from monai.engines import SupervisedEvaluator

        target, cls = self._component(parser, "evaluator")
        if not (isinstance(cls, type) and issubclass(cls, SupervisedEvaluator)):
            raise ValueError(
                f"Host config {self.config}: its 'evaluator' is {target!r}, not a monai.engines.SupervisedEvaluator; "
                "segq samples the host network by replacing the evaluator's inferer and postprocessing. Give the "
                "fit an inference config whose evaluator is a SupervisedEvaluator (--host_config), or supply one with "
                "--host_override 'evaluator={\"_target_\": \"SupervisedEvaluator\", ...}'."
            )

    def _check_weights(self, parser: ConfigParser) -> None:
        """Each ``CheckpointLoader`` of the host's ``handlers`` finds its weights file."""
        handlers = parser.get("handlers")
        for i, h in enumerate(handlers if isinstance(handlers, list) else []):
            if not (isinstance(h, dict) and str(h.get("_target_", "")).endswith("CheckpointLoader")):
                continue
            path = Path(str(parser.get_parsed_content(f"handlers#{i}#load_path")))
            if not path.is_absolute():
                path = self.root / path
            if not path.is_file():
                raise FileNotFoundError(
                    f"The host bundle {self.root} has no saved weights at {path} (its CheckpointLoader's load_path); "
                    "train the host network first or download its weights into models/, or point the loader at "
                    "them with --host_override 'handlers#" + str(i) + "#load_path=/path/to/model.pt'."
                )

    def _run_id(self, parser: ConfigParser) -> str:
        """``run``, or the one top-level list that runs the evaluator (model-zoo bundles also use ``evaluating``)."""
        if "run" in parser:
            return "run"
        found = [
            k for k, v in parser.get().items()
            if isinstance(v, list) and any(isinstance(x, str) and ".run()" in x for x in v)
        ]  # fmt: skip
        if len(found) != 1:
            raise ValueError(
                f"Cannot tell which id of {self.config} runs the evaluator (no 'run'; candidates {found}); pass "
                "--run_id."
            )
        return found[0]

    @staticmethod
    def _activation(postprocessing: Any) -> str:
        """``sigmoid`` when the host's postprocessing applies a sigmoid (a multi-label network), else ``softmax``."""
        text = json.dumps(postprocessing)
        return "sigmoid" if re.search(r'"sigmoid":\s*true', text) else "softmax"

    def _class_names(self) -> list[str] | None:
        """Foreground class names from the host metadata's ``network_data_format.outputs.pred.channel_def``."""
        outputs = self.metadata.get("network_data_format", {}).get("outputs", {})
        channel_def = next((o.get("channel_def") for o in outputs.values() if isinstance(o, dict)), None)
        if not isinstance(channel_def, dict):
            return None
        first = 0 if self.activation == "sigmoid" else 1
        indices = range(first, self.signature["out_channels"])
        if any(str(i) not in channel_def for i in indices):
            return None
        return [re.sub(r"\W+", "_", str(channel_def[str(i)]).strip()).strip("_").lower() for i in indices]

    def record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.metadata.get("version"),
            "bundle_root": str(self.root),
            "config_file": str(self.config),
            "run_id": self.run_id,
            "overrides": self.overrides,
        }
