"""Command-line applications of ``python -m segq_monai`` (each a subcommand): ``demo`` (the two-stage experiment),
``paths`` (where the shipped files lie), ``export`` (the bundle as a model-zoo archive)."""
