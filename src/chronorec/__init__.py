"""chronorec: time-aware sequential recommendation with pretrained item-text encoders."""

from chronorec.data.dataset import PreparedDataset, load_prepared
from chronorec.errors import ChronorecError, DataError

__version__ = "0.1.0"

__all__ = ["ChronorecError", "DataError", "PreparedDataset", "load_prepared", "__version__"]
