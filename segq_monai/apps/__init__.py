"""Applications built from the bundle's workflows."""

from __future__ import annotations
