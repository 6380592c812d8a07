"""Say a library's repeated log message once per process.

MONAI 1.6 constructs its ``NvImgCodecPydicomReader`` inside every ``LoadImage`` (when pydicom is installed), and on a
machine without nvImageCodec and CUDA each construction logs the same warning: one demo run printed it 1,485 times.
:func:`say_once` lets the first such record through and drops its repeats; every other record passes untouched.
"""

from __future__ import annotations

import logging

__all__ = ["OnceFilter", "say_once"]

#: the logger and message of MONAI's warning that :mod:`segq_monai` shows once
NVIMGCODEC_LOGGER = "monai.data.nvimgcodec_pydicom_plugin"
NVIMGCODEC_MESSAGE = "nvImageCodec is not available; skipping pydicom decoder plugin registration."


class OnceFilter(logging.Filter):
    """A :class:`logging.Filter` that passes the first record whose message is ``message`` and drops the later ones."""

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message
        self.seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage() != self.message:
            return True
        if self.seen:
            return False
        self.seen = True
        return True


def say_once(logger: str = NVIMGCODEC_LOGGER, message: str = NVIMGCODEC_MESSAGE) -> OnceFilter:
    """Attach a :class:`OnceFilter` for ``message`` to the logger named ``logger`` (once: a second call returns the
    filter already attached)."""
    target = logging.getLogger(logger)
    for existing in target.filters:
        if isinstance(existing, OnceFilter) and existing.message == message:
            return existing
    once = OnceFilter(message)
    target.addFilter(once)
    return once
