"""One progress bar over the three steps of a fit: cases sampled, epochs trained, cases calibrated, and the time left.

The bar counts units of work: the sample step's labelled cases, the head's epochs, the calibration cases (its total
is their sum). Each step's workflow advances it through :class:`segq_monai.handlers.ProgressUpdate` (attached by the
overlays when ``segq#progress`` / ``progress`` is set, as the fit sets it; the printed command lines leave it out),
and at each step's end the bar is set to that step's end, so a step skipped on a rerun (or cases skipped by the
sample step) count as done. The time left is tqdm's estimate from the rate so far.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tqdm import tqdm

__all__ = ["FitProgress"]


class FitProgress:
    """A tqdm bar (on stderr) over steps ``(name, total, unit)``, e.g. ``[("sample", 20, "cases"), ("train", 5,
    "epochs"), ("calibrate", 20, "cases")]``; its description names the step and its count:
    ``2/3 train 3/5 epochs |####      | 23/45 [00:40<00:38]``.

    Args:
        steps: each step's name, number of units and unit name, in order.
        disable: no bar (tqdm's ``disable``).
    """

    def __init__(self, steps: Sequence[tuple[str, int, str]], disable: bool = False) -> None:
        self.steps = [(str(name), int(total), str(unit)) for name, total, unit in steps]
        self.bar = tqdm(total=sum(t for _, t, _ in self.steps), disable=disable, dynamic_ncols=True, desc="fit",
                        bar_format="{desc} |{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]")  # fmt: skip
        self.index, self.done = 0, 0

    @classmethod
    def of_fit(cls, fit: Mapping[str, Any], disable: bool = False) -> FitProgress:
        """The bar of a fit from its ``fit.json`` content: training cases, the head's epochs, calibration cases."""
        data = fit["datalist"]
        steps = [("sample", data["n_training"], "cases"), ("train", fit["head"]["epochs"], "epochs"),
                 ("calibrate", data["n_calibration"], "cases")]  # fmt: skip
        return cls(steps, disable)

    def _describe(self) -> None:
        name, total, unit = self.steps[self.index]
        self.bar.set_description_str(f"{self.index + 1}/{len(self.steps)} {name} {self.done}/{total} {unit}", False)

    def start(self, index: int) -> None:
        """Step ``index`` (0-based) begins: the bar stands at the end of the steps before it."""
        self.index, self.done = index, 0
        self.bar.n = sum(t for _, t, _ in self.steps[:index])
        self._describe()
        self.bar.refresh()

    def update(self, n: int = 1) -> None:
        """``n`` more units of the current step done (not beyond its total)."""
        n = max(0, min(n, self.steps[self.index][1] - self.done))
        self.done += n
        self._describe()
        self.bar.update(n)
        self.bar.refresh()  # the step's count and the bar together (tqdm redraws an update at most every 0.1 s)

    def finish(self) -> None:
        """The current step is done (also when it was skipped, or skipped some of its cases)."""
        self.done = self.steps[self.index][1]
        self.bar.n = sum(t for _, t, _ in self.steps[: self.index + 1])
        self._describe()
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> FitProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
