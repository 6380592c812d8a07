from __future__ import annotations

import unittest

import numpy as np
import torch
from ignite.engine import Engine
from monai.handlers import from_engine
from parameterized import parameterized

from segq_monai.handlers import AURC, FailureAUROC, QualityRegression

# Two iterations of B = 2 cases, one foreground class: all cases
#   pred_dice (confidence) = [.9, .8, .7, .6], true dice = [1.0, .6, .8, .4], risk = 1 - dice = [0, .4, .2, .6]
BATCHES = [
    {"pred_dice": torch.tensor([[0.9], [0.8]]), "true_dice": torch.tensor([[1.0], [0.6]])},
    {"pred_dice": torch.tensor([[0.7], [0.6]]), "true_dice": torch.tensor([[0.8], [0.4]])},
]

CASES = [
    # |.9-1| + |.8-.6| + |.7-.8| + |.6-.4| = .1 + .2 + .1 + .2 = .6, / 4
    ("mae", lambda: QualityRegression("mae", output_transform=from_engine(["pred_dice", "true_dice"])), 0.15),
    # dp = [.15, .05, -.05, -.15], dt = [.3, -.1, .1, -.3]; dp.dt = .08, |dp|^2 = .05, |dt|^2 = .2 -> .08 / .1
    ("pearson", lambda: QualityRegression("pearson", output_transform=from_engine(["pred_dice", "true_dice"])), 0.8),
    # failures (dice < .7): conf .8 and .6; non-failures: conf .9 and .7
    # pairs with failure less confident: (.8<.9), (.6<.9), (.6<.7) = 3 of 4
    ("auroc", lambda: FailureAUROC(0.7, output_transform=from_engine(["pred_dice", "true_dice"])), 0.75),
    # selective risks: 0, .4/2, .6/3, 1.2/4 = 0, .2, .2, .3 -> mean .175
    ("aurc", lambda: AURC(output_transform=from_engine(["pred_dice", "true_dice"])), 0.175),
    # optimal order of risks [0, .2, .4, .6]: 0, .1, .2, .3 -> .15; .175 - .15
    ("eaurc", lambda: AURC(excess=True, output_transform=from_engine(["pred_dice", "true_dice"])), 0.025),
]


def run_engine(handlers: dict, batches: list, epochs: int = 1) -> Engine:
    engine = Engine(lambda engine, batch: batch)
    for name, handler in handlers.items():
        handler.attach(engine, name)
    engine.run(batches, max_epochs=epochs)
    return engine


class TestQualityMetricHandlers(unittest.TestCase):
    @parameterized.expand(CASES)
    def test_known_values(self, name, build, expected):
        engine = run_engine({name: build()}, BATCHES, epochs=2)  # reset each epoch: same value after two
        np.testing.assert_allclose(engine.state.metrics[name], expected, rtol=1e-6)
        y_pred, y = engine.state.metric_details[name]
        np.testing.assert_allclose(y_pred.squeeze(1), [0.9, 0.8, 0.7, 0.6])
        np.testing.assert_allclose(y.squeeze(1), [1.0, 0.6, 0.8, 0.4])

    def test_per_class(self):
        # class 0 as above; class 1 confidence ranks the risks [0, .1, .3, .5] perfectly -> e-AURC 0
        batches = [
            (torch.tensor([[0.9, 0.9], [0.8, 0.8]]), torch.tensor([[1.0, 1.0], [0.6, 0.9]])),
            (torch.tensor([[0.7, 0.7], [0.6, 0.6]]), torch.tensor([[0.8, 0.7], [0.4, 0.5]])),
        ]
        handlers = {"eaurc": AURC(excess=True, reduction="none"), "eaurc_mean": AURC(excess=True)}
        engine = run_engine(handlers, batches)
        np.testing.assert_allclose(engine.state.metrics["eaurc"], [0.025, 0.0], atol=1e-7)
        np.testing.assert_allclose(engine.state.metrics["eaurc_mean"], 0.0125, atol=1e-7)


if __name__ == "__main__":
    unittest.main()
