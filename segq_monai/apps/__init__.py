"""Command-line applications of ``python -m segq_monai`` (each a subcommand: ``demo``, ``fit``, ``example3d``,
``paths`` where the shipped files lie, ``export`` the bundle as a model-zoo archive, ``pacs``
quality control of a study in a PACS over DICOMweb). The fit folder they write, and
the loaders a deployment reads it with, are :mod:`segq_monai.data.fit_folder`."""

from __future__ import annotations
