from __future__ import annotations

import numpy as np
import pytest

from chronorec.text import ItemEncoder, TextConfig


@pytest.mark.slow
def test_packaged_model_puts_similar_products_closer() -> None:
    encoder = ItemEncoder.load(TextConfig(progress=False))  # the packaged all-MiniLM-L6-v2
    cable, charger, hose = encoder.encode_texts(
        ["USB charging cable", "USB charger cord", "garden hose"]
    )
    assert encoder.dim == 384
    np.testing.assert_allclose(np.linalg.norm([cable, charger, hose], axis=1), 1.0, atol=1e-4)
    assert float(cable @ charger) > float(cable @ hose) + 0.2
