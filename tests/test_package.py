"""The package's public names."""

from __future__ import annotations

import subprocess
import sys


def test_recommender_is_exported_and_import_stays_light():
    import chronorec
    from chronorec.recommender import Recommender

    assert chronorec.Recommender is Recommender
    # `import chronorec` alone must not pull in torch (the facade is loaded on first use)
    code = "import sys, chronorec; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
