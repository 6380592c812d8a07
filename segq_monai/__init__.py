"""segq-monai: uncertainty maps and predicted segmentation quality for MONAI pipelines.

Stage 1 (:mod:`segq_monai.samplers`, :mod:`segq_monai.streaming`, :mod:`segq_monai.inferer`) samples a
segmentation network and reduces the samples to a segmentation and spatial uncertainty maps.
"""

from __future__ import annotations

from segq_monai.inferer import UncertaintyInferer
from segq_monai.samplers import EnsembleSampler, MCDropoutSampler, Sampler, SoftmaxSampler, TTASampler
from segq_monai.streaming import MAPS, StreamingUncertainty, entropy

__version__ = "0.1.0"

__all__ = [
    "MAPS",
    "EnsembleSampler",
    "MCDropoutSampler",
    "Sampler",
    "SoftmaxSampler",
    "StreamingUncertainty",
    "TTASampler",
    "UncertaintyInferer",
    "entropy",
]
