"""Event logs and item catalogues: readers, preprocessing, storage and splits."""

from chronorec.data.dataset import PreparedDataset, load_prepared
from chronorec.data.splits import Split, leave_one_out, temporal_split

__all__ = ["PreparedDataset", "Split", "leave_one_out", "load_prepared", "temporal_split"]
