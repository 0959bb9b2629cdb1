"""What the service's clock does to other users' rankings: on a replayed past log, one event is
posted without a timestamp, the service reloads, and another user's top 10 is compared with
before, under ``--clock wall`` and ``--clock log``.

In process on the two-shop catalogue of the service tests (a GRU over item ids),
served blended with recent popularity (``popular-recent``, the baseline a timestamp moves most).
Counts the users (of the first 40) whose top 10 changed, and by how many items.

Usage: python benchmarks/clock_reload.py [--no-append]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "service"))
from _common import markdown_table, record_results  # noqa: E402
from helpers import TOKEN, train_run, two_shop_dataset  # noqa: E402


def top10s(client, users: list[str]) -> dict[str, list[str]]:  # noqa: ANN001
    out = {}
    for u in users:
        got = client.get(f"/users/{u}/recommendations?k=10").json()["items"]
        out[u] = [x["item_id"] for x in got]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-append", action="store_true", help="print only")
    args = ap.parse_args()
    from fastapi.testclient import TestClient

    from chronorec.service import ServiceSettings, create_app

    rows, table = [], []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = two_shop_dataset(n_users=200).save(root / "data")
        run = train_run(data, root / "run", "id", None, epochs=4)
        others = [f"u{u}" for u in range(2, 42)]
        for clock in ("wall", "log"):
            settings = ServiceSettings(
                run_dir=str(run), db_url=f"sqlite:///{root}/{clock}.db", token=TOKEN,
                clock=clock, blend="popular-recent=1",
            )  # fmt: skip
            auth = {"Authorization": f"Bearer {TOKEN}"}
            with TestClient(create_app(settings)) as c:
                before = top10s(c, others)
                c.post("/events", json={"user_id": "u1", "item_id": "i3"}, headers=auth)
                assert c.post("/admin/reload", headers=auth).status_code == 200
                after = top10s(c, others)
            moved = [len(set(before[u]) ^ set(after[u])) // 2 for u in others]
            changed = sum(m > 0 for m in moved)
            rows.append(
                {
                    "clock": clock,
                    "users": len(others),
                    "users_changed": changed,
                    "items_changed_mean": sum(moved) / len(moved),
                    "max_items": max(moved),
                }
            )
            table.append([clock, f"{changed} of {len(others)}", f"{sum(moved) / len(moved):.2f}",
                          max(moved)])  # fmt: skip
    print("one event posted without a timestamp to u1, then a reload; others' top 10:")
    print(markdown_table(["clock", "users whose top 10 changed", "items changed (mean)", "max"],
                         table))  # fmt: skip
    record_results("clock_reload", rows, append=not args.no_append)


if __name__ == "__main__":
    main()
