"""Transforms: array classes and their dictionary twins."""
