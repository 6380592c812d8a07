"""Aleatoric uncertainty: a network that predicts the variance of its own logits (Kendall & Gal 2017).

Kendall & Gal, "What Uncertainties Do We Need in Bayesian Deep Learning for Computer Vision?" (NeurIPS 2017),
§3.3: the network predicts, per voxel and class, mean logits ``f`` and a log-variance ``s = log σ²``; the logits
are Gaussian, ``x̂ = f + σ ε`` with ``ε ~ N(0, 1)``, and training minimises the sampled-logit cross-entropy
(their Eq. 12)::

    L = -log (1/T) Σ_t softmax(x̂_t)[y],    x̂_t = f + σ ε_t

computed stably as ``log T - logsumexp_t (x̂_t[y] - logsumexp_c x̂_t[c])``. Where the labels are noisy the
network learns a larger σ² than where they are clean: σ² is *aleatoric* (data) uncertainty, which more
training data does not remove, unlike the *epistemic* (model) uncertainty that MC dropout estimates. Under the
softmax, smaller mean logits explain label noise as well as a larger σ² does, and the finite-T loss slightly
penalises σ², so the learned σ² can be small in absolute terms (0.01 against 0.001 logits² in the test's toy
task, whose noisy region instead gets |f_1 - f_0| ≈ 0.8 against ≈ 13): read it as a relative map.

Design (one way to do it, works with any MONAI network):

- build the backbone with ``out_channels = 2 * num_classes``: channels ``[0, C)`` are the mean logits ``f``,
  channels ``[C, 2C)`` the log-variances ``log σ²`` (natural log, logit units squared);
- wrap it in :class:`AleatoricNet`. In **train mode** ``forward`` returns the raw ``2C``-channel output, the
  input :class:`SampledLogitLoss` takes, so the wrapped network is trained directly (``SupervisedTrainer`` with
  ``loss_function=SampledLogitLoss()``; the checkpoint keys are those of the inference network). In **eval
  mode** ``forward`` returns the mean logits ``[B, C, ...]`` only, so the wrapper is a drop-in segmentation
  network for ``SimpleInferer`` / ``SlidingWindowInferer``, validation metrics and every
  :mod:`segq_monai.inferers.samplers` sampler (they all put the network in eval mode);
- :class:`AleatoricSampler` draws logit samples from ``N(f, σ²)`` (optionally together with MC dropout), and
  :func:`aleatoric_variance` gives the mean predicted σ² as one more map.
"""

from __future__ import annotations

from typing import Any

import torch

from segq_monai.networks.extra_output import ExtraOutputNet

__all__ = ["AleatoricNet", "split_mean_log_var"]


def split_mean_log_var(output: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a ``[B, 2C, *spatial]`` output into mean logits and log-variances, each ``[B, C, *spatial]``.

    A ``(mean, log_var)`` pair is returned as given (after a shape check).
    """
    if isinstance(output, (tuple, list)):
        if len(output) != 2 or output[0].shape != output[1].shape:
            raise ValueError(
                "Expected a pair (mean_logits, log_var) of equal shapes [B, C, ...], got "
                f"{[tuple(o.shape) for o in output]}."
            )
        return output[0], output[1]
    if not isinstance(output, torch.Tensor) or output.ndim < 3 or output.shape[1] % 2:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise ValueError(
            f"Expected the raw aleatoric output [B, 2C, ...] (mean logits then log-variances), got {shape}; build "
            "the backbone with out_channels = 2 * num_classes and use AleatoricNet in train mode (its eval-mode "
            "forward returns the C mean logits only)."
        )
    c = output.shape[1] // 2
    return output[:, :c], output[:, c:]



class AleatoricNet(ExtraOutputNet):
    """A segmentation network that also predicts the log-variance of its logits, per voxel and class.

    Args:
        backbone: any network mapping ``[B, C_in, *spatial]`` to ``[B, 2 * num_classes, *spatial]``, e.g.
            ``monai.networks.nets.UNet(..., out_channels=2 * num_classes)``.
        num_classes: C, the number of classes (softmax, channel 0 = background).

    ``forward(x)``: in train mode the raw ``[B, 2C, ...]`` output (for :class:`SampledLogitLoss`), in eval mode
    the mean logits ``[B, C, ...]`` (a drop-in segmentation network). ``forward_with_variance(x)`` returns
    ``(mean_logits, log_var)`` in either mode.

    Example::

        net = AleatoricNet(UNet(2, 1, 2 * 3, channels=(16, 32, 64), strides=(2, 2), dropout=0.1), num_classes=3)
        trainer = SupervisedTrainer(..., network=net, loss_function=SampledLogitLoss(num_samples=10))
        maps = UncertaintyInferer(AleatoricSampler(20, mc_dropout=True))(image, net)
    """

    layout = ("2 * num_classes", "mean logits, then log-variances")

    def extra_channels(self) -> int:
        return self.num_classes

    def forward_with_variance(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean_logits, log_var)``, each ``[B, C, *spatial]``; ``log_var = log σ²`` of the logits."""
        return split_mean_log_var(self._raw(x, *args, **kwargs))
