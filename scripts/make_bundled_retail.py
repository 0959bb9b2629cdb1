"""Build the Online Retail sample shipped inside the package (CC BY 4.0, UCI id 352).

Source: ../shared/datasets/online-retail/online_retail.parquet (541,909 invoice lines).
Kept: rows with a CustomerID (the rest cannot form a history) and every original column, so the
``online-retail`` adapter still sees cancellations and non-product codes and drops them itself.

Citation: D. Chen, S. L. Sain, K. Guo, "Data mining for the online retail industry: a case study
of RFM model-based customer segmentation using data mining", Journal of Database Marketing and
Customer Strategy Management 19(3), 2012. Licence: CC BY 4.0.

Usage: python scripts/make_bundled_retail.py [SOURCE] [OUT]
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "datasets" / "online-retail" / "online_retail.parquet"
OUT = ROOT / "src" / "chronorec" / "resources" / "online_retail.parquet"


def main() -> None:
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else SOURCE
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else OUT
    frame = pl.read_parquet(src).filter(pl.col("CustomerID").is_not_null())
    tmp = out.with_suffix(".tmp")
    frame.write_parquet(tmp, compression="zstd", compression_level=19, statistics=False)
    tmp.replace(out)
    print(f"{out}: {frame.height:,} rows, {out.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
