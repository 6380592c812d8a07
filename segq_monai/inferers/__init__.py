"""Stage 1: the uncertainty sampler. :class:`UncertaintyInferer` wraps a MONAI inferer, draws samples of class
probabilities from a :class:`Sampler` (MC dropout, TTA, ensembles, the single pass, aleatoric logit noise) and
reduces them as they arrive into the segmentation and spatial uncertainty maps (:class:`StreamingUncertainty`)."""

from __future__ import annotations

from .aleatoric import AleatoricSampler, aleatoric_variance
from .confidence import confidence_map
from .ensemble import EnsembleSampler
from .foreground import ForegroundBandSampler, foreground_box
from .factory import PLAIN_NETWORK_SAMPLERS, SAMPLERS, build_sampler
from .inferer import UncertaintyInferer
from .samplers import MCDropoutSampler, Sampler, SinglePassSampler, TTASampler
from .streaming import MAPS, StreamingUncertainty, entropy
