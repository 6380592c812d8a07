"""The ``segq-monai`` subcommands: ``paths`` (where the shipped files lie), ``export`` (a model-zoo archive)."""

from __future__ import annotations
