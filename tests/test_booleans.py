"""Boolean config ids as the bundle command line passes them (Python Fire keeps ``false`` a string)."""

from __future__ import annotations

import unittest

from monai.bundle import ConfigParser
from segq_testing import BUNDLE

from segq_monai.utils.booleans import as_bool


class TestAsBool(unittest.TestCase):
    def test_values(self):
        for value, want in ((True, True), (False, False), ("true", True), ("False", False), ("FALSE", False)):
            self.assertIs(as_bool(value, "x"), want, value)
        with self.assertRaisesRegex(ValueError, "resume must be true or false, got 'no'"):
            as_bool("no", "resume")
        with self.assertRaisesRegex(TypeError, "resume must be true or false, got 0"):
            as_bool(0, "resume")

    def test_bundle_ids(self):
        # `--resume false` from the command line arrives as the string 'false'; sample.json and inference.json read
        # `skip_existing` through the same as_bool
        for config, value, want in (("train_segmentation.json", "false", False), ("train_quality.json", "false", False),
                                    ("train_segmentation.json", "True", True)):
            parser = ConfigParser()
            parser.read_config(str(BUNDLE / "configs" / config))
            parser["resume"] = value
            self.assertIs(_resume_flag(parser), want, (config, value))


def _resume_flag(parser: ConfigParser) -> bool:
    """The ``resume`` argument the config gives its ResumeCheckpoint handler."""
    handlers = parser.get("train#handlers")
    (index,) = [i for i, h in enumerate(handlers) if h.get("_target_", "").endswith("ResumeCheckpoint")]
    return parser.get_parsed_content(f"train#handlers#{index}#resume")


if __name__ == "__main__":
    unittest.main()
