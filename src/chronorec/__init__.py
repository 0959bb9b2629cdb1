"""chronorec: time-aware sequential recommendation with pretrained item-text encoders."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chronorec.data.dataset import PreparedDataset, load_prepared
from chronorec.errors import ChronorecError, DataError

if TYPE_CHECKING:
    from chronorec.recommender import Recommender

__version__ = "0.1.0"

__all__ = [
    "ChronorecError",
    "DataError",
    "PreparedDataset",
    "Recommender",
    "load_prepared",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # The facade imports torch; load it on first use so that `import chronorec` (and the CLI's
    # --help) stays fast.
    if name == "Recommender":
        from chronorec.recommender import Recommender

        return Recommender
    raise AttributeError(f"module 'chronorec' has no attribute {name!r}")
