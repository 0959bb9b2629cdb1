"""Data shipped inside the package (Online Retail, CC BY 4.0 — see resources/ATTRIBUTION.md)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

BUNDLED = {"online-retail": "online_retail.parquet"}


def bundled_path(name: str = "online-retail") -> Path:
    """Path of a bundled dataset file (``online-retail``: UCI Online Retail, customers only)."""
    if name not in BUNDLED:
        raise KeyError(f"no bundled dataset {name!r}; available: {', '.join(BUNDLED)}")
    return Path(str(resources.files("chronorec") / "resources" / BUNDLED[name]))
