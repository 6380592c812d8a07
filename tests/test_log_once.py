"""MONAI's repeated nvImageCodec warning is said once per process (:mod:`segq_monai.utils.log_once`)."""

from __future__ import annotations

import logging
import unittest

from monai.transforms import LoadImage

import segq_monai  # noqa: F401  (attaches the filter)
from segq_monai.utils.log_once import NVIMGCODEC_LOGGER, NVIMGCODEC_MESSAGE, OnceFilter, say_once


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


class TestOnceFilter(unittest.TestCase):
    def test_first_passes_repeats_dropped_others_untouched(self):
        logger = logging.getLogger("segq_test_log_once")
        records = _Records()
        logger.addHandler(records)
        logger.addFilter(OnceFilter("again"))
        try:
            for message in ("again", "other", "again", "other", "again"):
                logger.warning(message)
        finally:
            logger.removeHandler(records)
        self.assertEqual(records.messages, ["again", "other", "other"])

    def test_attached_once_to_monais_logger(self):
        self.assertIs(say_once(), say_once())
        filters = [f for f in logging.getLogger(NVIMGCODEC_LOGGER).filters if isinstance(f, OnceFilter)]
        self.assertEqual([f.message for f in filters], [NVIMGCODEC_MESSAGE])

    def test_loadimage_constructions_log_it_at_most_once(self):
        """The real MONAI (pydicom installed, no nvImageCodec): without the filter two ``LoadImage`` constructions
        log the warning twice or more; with it, five more add no repeat."""
        records = _Records()
        logger = logging.getLogger(NVIMGCODEC_LOGGER)
        once = say_once()
        logger.addHandler(records)
        try:
            logger.removeFilter(once)
            LoadImage(image_only=True), LoadImage(image_only=True)
            unfiltered = records.messages.count(NVIMGCODEC_MESSAGE)
            logger.addFilter(once)
            for _ in range(5):
                LoadImage(image_only=True)
        finally:
            logger.addFilter(once)  # a second add is a no-op
            logger.removeHandler(records)
        self.assertGreaterEqual(unfiltered, 2)
        self.assertLessEqual(records.messages.count(NVIMGCODEC_MESSAGE) - unfiltered, 1)


if __name__ == "__main__":
    unittest.main()
