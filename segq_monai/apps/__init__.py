"""Command-line applications of ``python -m segq_monai`` (each a subcommand)."""
