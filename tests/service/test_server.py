"""The service as deployed: `chronorec serve` in a subprocess on loopback, a real SQLite file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import TOKEN, Server, free_port

from chronorec import load_prepared
from chronorec.recommender import Recommender


def ids(response: dict) -> list[str]:
    return [x["item_id"] for x in response["items"]]


def user_history(dataset_dir: Path, user_id: str) -> list[dict]:
    ds = load_prepared(dataset_dir)
    user = ds.users.filter(ds.users["user_id"] == user_id)["user"][0]
    ev = ds.events.filter(ds.events["user"] == user).sort("position")
    names = ds.behaviours
    item_ids = ds.item_ids()
    return [
        {"item_id": item_ids[i - 1], "behaviour": names[b - 1], "timestamp": t}
        for i, b, t in zip(ev["item"], ev["behaviour"], ev["timestamp"], strict=True)
    ]


def test_parity_with_offline_recommend(server: Server, text_run: Path, dataset_dir: Path) -> None:
    rec = Recommender.load(text_run)
    users = [f"u{i}" for i in range(7, 15)]
    offline_ids, offline_scores = rec.recommend(users, k=5)
    with server.client() as c:
        for user, want_ids, want_scores in zip(users, offline_ids, offline_scores, strict=True):
            got = c.get(f"/users/{user}/recommendations", params={"k": 5}).json()
            assert got["source"] == "model"
            assert ids(got) == want_ids
            np.testing.assert_allclose([x["score"] for x in got["items"]], want_scores, rtol=1e-5)
        # an explicit history is the same model path as the offline ad-hoc one
        history = ["i1", "i2", "i3", "i4"]
        want, _ = rec.recommend_histories([history], k=5)
        got = c.post(
            "/recommendations", json={"history": [{"item_id": i} for i in history], "k": 5}
        ).json()
        assert ids(got) == want[0]


def test_read_your_writes(server: Server) -> None:
    with server.client() as c:
        before = c.get("/users/u21/recommendations", params={"k": 3}).json()
        top = before["items"][0]["item_id"]
        r = c.post("/events", json={"user_id": "u21", "item_id": top, "behaviour": "buy"})
        assert r.status_code == 201, r.text
        after = c.get("/users/u21/recommendations", params={"k": 3}).json()
        assert after["n_events"] == before["n_events"] + 1
        assert top not in ids(after)  # now seen, so excluded


def test_read_your_writes_under_concurrent_clients(server: Server) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def session(worker: int) -> list[int]:
        user = f"rw-{worker}"
        seen = []
        with server.client() as c:
            for step in range(4):
                item = f"i{(worker + step) % 24 + 1}"
                assert c.post("/events", json={"user_id": user, "item_id": item}).status_code == 201
                seen.append(c.get(f"/users/{user}/recommendations").json()["n_events"])
        return seen

    with ThreadPoolExecutor(6) as pool:
        for counts in pool.map(session, range(6)):
            assert counts == [1, 2, 3, 4]  # every read saw the write just before it


def test_event_survives_kill9_and_state_reflects_it(server: Server, dataset_dir: Path) -> None:
    event = {
        "user_id": "u23",
        "item_id": "i20",
        "behaviour": "view",
        "timestamp": 1_700_000_000,
        "event_id": "evt-kill9",
    }
    with server.client() as c:
        r = c.post("/events", json={"events": [event]})
        assert r.status_code == 201 and r.json()["stored"] == 1
    server.kill9()  # no shutdown, no flush: only what was committed before the 2xx survives
    server.start()
    history = user_history(dataset_dir, "u23") + [
        {k: event[k] for k in ("item_id", "behaviour", "timestamp")}
    ]
    with server.client() as c:
        got = c.get("/users/u23/recommendations", params={"k": 5}).json()
        want = c.post("/recommendations", json={"history": history, "k": 5}).json()
        assert got["n_events"] == len(history)
        assert ids(got) == ids(want)
        assert "i20" not in ids(got)
        replay = c.post("/events", json=event).json()  # idempotent across restarts
        assert replay == {"stored": 0, "duplicates": 1, "results": ["duplicate"]}


def test_new_item_is_recommended_to_text_similar_users(server: Server) -> None:
    garden_users = [f"u{i}" for i in range(31, 51, 2)]  # odd users shop in the garden
    cable_users = [f"u{i}" for i in range(32, 52, 2)]
    item = {"item_id": "hose-2000", "title": "lawn watering hose reel"}
    with server.client() as c:
        assert c.post("/items", json=item).status_code == 201
        assert c.post("/items", json=item).status_code == 409  # already there

        def rank(user: str) -> int:
            got = ids(c.get(f"/users/{user}/recommendations", params={"k": 25}).json())
            return got.index("hose-2000") if "hose-2000" in got else 25

        garden = [rank(u) for u in garden_users]
        cable = [rank(u) for u in cable_users]
        assert np.mean(garden) + 2 < np.mean(cable), (garden, cable)
        assert np.median(garden) < 5, garden
        similar = ids(c.get("/items/hose-2000/similar", params={"k": 5}).json())
        assert sum(int(i[1:]) <= 12 for i in similar) >= 4, similar  # garden items are i1..i12
        # the new item is an input too: an event on it is accepted and read
        assert c.post("/events", json={"user_id": "u60", "item_id": "hose-2000"}).status_code == 201
        assert c.get("/users/u60/recommendations").json()["n_events"] > 0


def test_forget_user(server: Server) -> None:
    with server.client() as c:
        assert c.post("/events", json={"user_id": "u25", "item_id": "i3"}).status_code == 201
        r = c.delete("/users/u25")
        assert r.status_code == 200 and r.json()["deleted_events"] == 1
        got = c.get("/users/u25/recommendations").json()
        assert got["n_events"] == 0 and got["source"] == "popularity"


def test_auth_refusals(server: Server) -> None:
    event = {"user_id": "u26", "item_id": "i1"}
    with server.client(token=None) as c:
        assert c.post("/events", json=event).status_code == 401
        assert c.post("/items", json={"item_id": "x", "title": "x"}).status_code == 401
        assert c.delete("/users/u26").status_code == 401
        assert c.post("/admin/reload").status_code == 401
        r = c.post("/events", json=event, headers={"Authorization": "Basic dTpw"})
        assert r.status_code == 401
        r = c.post("/events", json=event, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
        # reads are open
        assert c.get("/users/u26/recommendations").status_code == 200
        assert c.get("/health").status_code == 200


def test_a_read_token_makes_user_reads_private(text_run: Path, tmp_path: Path) -> None:
    """With CHRONOREC_READ_TOKEN set, every read that reveals what a user did needs it (or the
    write token); the read token cannot write; /health, /ready and /metrics stay open."""
    srv = Server(text_run, tmp_path / "e.db", tmp_path / "log", CHRONOREC_READ_TOKEN="read-tok")
    srv.start()
    reads = [
        ("GET", "/users/u1/recommendations", None),
        ("POST", "/recommendations", {"history": [{"item_id": "i1"}]}),
        ("GET", "/items/i1/similar", None),
    ]
    try:
        with srv.client(token=None) as c:
            for method, path, body in reads:
                assert c.request(method, path, json=body).status_code == 401, path
                wrong = {"Authorization": "Bearer nope"}
                assert c.request(method, path, json=body, headers=wrong).status_code == 403
            for path in ("/health", "/ready", "/metrics"):
                assert c.get(path).status_code == 200
        for token in ("read-tok", TOKEN):
            with srv.client(token=token) as c:
                for method, path, body in reads:
                    assert c.request(method, path, json=body).status_code == 200, (token, path)
        with srv.client(token="read-tok") as c:
            r = c.post("/events", json={"user_id": "u1", "item_id": "i2"})
            assert r.status_code == 403  # reading is not writing
        with srv.client(token=None) as c:
            metrics = c.get("/metrics").text + c.get("/ready").text
        assert "u1" not in metrics  # routes are counted by template, never by user
    finally:
        srv.stop()


def test_dev_mode_warns_when_bound_beyond_loopback(text_run: Path, tmp_path: Path) -> None:
    log = tmp_path / "log"
    srv = Server(text_run, tmp_path / "e.db", log)
    srv.env.pop("CHRONOREC_TOKEN")
    port = free_port()
    cmd = [sys.executable, "-m", "chronorec.cli", "serve", str(text_run), "--dev",
           "--db", srv.db_url, "--host", "0.0.0.0", "--port", str(port)]  # fmt: skip
    proc = subprocess.Popen(cmd, env=srv.env, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        lines = []
        for line in proc.stderr:  # until the warning, or the server is up without one
            lines.append(line)
            if "warning: --dev" in line or "startup complete" in line:
                break
        assert any("warning: --dev with no token on 0.0.0.0" in x for x in lines), lines
    finally:
        proc.terminate()
        proc.wait(10)


def test_refuses_to_start_without_token(text_run: Path, monkeypatch, capsys) -> None:
    from chronorec.cli import main

    monkeypatch.delenv("CHRONOREC_TOKEN", raising=False)
    assert main(["serve", str(text_run), "--port", "1"]) == 2
    assert "refusing to start without a token" in capsys.readouterr().err


BAD = [
    ("unknown field", "POST", "/events", {"user_id": "u1", "item_id": "i1", "colour": "red"}, 422),
    ("wrong type", "POST", "/events", {"user_id": "u1", "item_id": ["i1"]}, 422),
    ("missing field", "POST", "/events", {"user_id": "u1"}, 422),
    (
        "NaN timestamp",
        "POST",
        "/events",
        '{"user_id": "u1", "item_id": "i1", "timestamp": NaN}',
        422,
    ),
    (
        "Infinity timestamp",
        "POST",
        "/events",
        '{"user_id": "u1", "item_id": "i1", "timestamp": Infinity}',
        422,
    ),
    (
        "far-future timestamp",
        "POST",
        "/events",
        {"user_id": "u1", "item_id": "i1", "timestamp": 4_102_444_800},
        409,
    ),
    (
        "far-future ISO timestamp",
        "POST",
        "/events",
        {"user_id": "u1", "item_id": "i1", "timestamp": "2999-01-01T00:00:00"},
        409,
    ),
    (
        "negative timestamp",
        "POST",
        "/events",
        {"user_id": "u1", "item_id": "i1", "timestamp": -5},
        422,
    ),
    (
        "garbage timestamp",
        "POST",
        "/events",
        {"user_id": "u1", "item_id": "i1", "timestamp": "yesterday"},
        422,
    ),
    ("unknown item", "POST", "/events", {"user_id": "u1", "item_id": "nope"}, 404),
    (
        "unknown behaviour",
        "POST",
        "/events",
        {"user_id": "u1", "item_id": "i1", "behaviour": "teleport"},
        404,
    ),
    ("empty batch", "POST", "/events", {"events": []}, 422),
    (
        "batch over the limit",
        "POST",
        "/events",
        {"events": [{"user_id": "u1", "item_id": "i1"}] * 60},
        413,
    ),
    (
        "body over the limit",
        "POST",
        "/events",
        {"events": [{"user_id": "u" * 250, "item_id": "i1"}] * 100},
        413,
    ),
    ("invalid JSON", "POST", "/events", '{"user_id": "u1", ', 422),
    ("empty id", "POST", "/events", {"user_id": "", "item_id": "i1"}, 422),
    ("k = 0", "GET", "/users/u1/recommendations?k=0", None, 422),
    ("k not a number", "GET", "/users/u1/recommendations?k=ten", None, 422),
    ("k over the cap", "GET", "/users/u1/recommendations?k=100000", None, 422),
    ("unknown history item", "POST", "/recommendations", {"history": [{"item_id": "nope"}]}, 404),
    ("history wrong type", "POST", "/recommendations", {"history": "i1,i2"}, 422),
    (
        "history timestamp 1e300",
        "POST",
        "/recommendations",
        {"history": [{"item_id": "i1", "timestamp": 1e300}]},
        422,
    ),
    (
        "history timestamp past int64",
        "POST",
        "/recommendations",
        {"history": [{"item_id": "i1", "timestamp": 9.3e18}]},
        422,
    ),
    (
        "history timestamp after year 9999",
        "POST",
        "/recommendations",
        {"history": [{"item_id": "i1", "timestamp": 253_402_300_800}]},
        422,
    ),
    (
        "event timestamp 1e300",
        "POST",
        "/events",
        {"user_id": "u", "item_id": "i1", "timestamp": 1e300},
        422,
    ),  # fmt: skip
    ("exclude_seen 0", "POST", "/recommendations", {"history": [], "exclude_seen": 0}, 422),
    ("k true", "POST", "/recommendations", {"history": [], "k": True}, 422),
    ("k as a string", "POST", "/recommendations", {"history": [], "k": "10"}, 422),
    (
        "timestamp true",
        "POST",
        "/events",
        {"user_id": "u", "item_id": "i1", "timestamp": True},
        422,
    ),  # fmt: skip
    ("price true", "POST", "/items", {"item_id": "p", "title": "t", "price": True}, 422),
    ("NUL in a user id", "POST", "/events", {"user_id": "a\u0000b", "item_id": "i1"}, 422),
    ("NUL in an item title", "POST", "/items", {"item_id": "n", "title": "a\u0000b"}, 422),
    ("NUL in a path", "GET", "/users/a%00b/recommendations", None, 422),
    (
        "block over the query limit",
        "GET",
        "/users/u1/recommendations?block=" + "i1," * 1_334,
        None,
        422,
    ),  # fmt: skip
    (
        "exclude_seen 'false'",
        "POST",
        "/recommendations",
        {"history": [], "exclude_seen": "false"},
        422,
    ),  # fmt: skip
    ("behaviour without a head", "GET", "/users/u1/recommendations?behaviour=buy", None, 409),
    ("item with bad price", "POST", "/items", {"item_id": "p", "title": "t", "price": -1}, 422),
    ("item with unknown field", "POST", "/items", {"item_id": "p", "colour": "red"}, 422),
    ("similar to unknown item", "GET", "/items/nope/similar", None, 404),
    ("reload of a missing run", "POST", "/admin/reload", {"run": "/nonexistent/run"}, 422),
    ("unknown route", "GET", "/nope", None, 404),
]


@pytest.mark.parametrize("name,method,path,body,status", BAD, ids=[b[0] for b in BAD])
def test_malformed_requests_get_a_clear_4xx(server: Server, name, method, path, body, status):
    with server.client() as c:
        if isinstance(body, str):
            r = c.request(
                method, path, content=body.encode(), headers={"content-type": "application/json"}
            )
        else:
            r = c.request(method, path, json=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] and err["message"]


def test_health_ready_metrics(server: Server) -> None:
    with server.client(token=None) as c:
        ready = c.get("/ready").json()
        assert ready["status"] == "ready" and ready["n_items"] >= 24
        text = c.get("/metrics").text
    assert 'chronorec_requests_total{method="GET",route="/ready",status="200"}' in text
    assert "chronorec_events_ingested_total" in text
    assert f'chronorec_model_info{{version="{ready["model_version"]}"}} 1' in text


def test_schemathesis_finds_no_server_error_and_no_conformance_failure(server: Server) -> None:
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from schemathesis.core.failures import FailureGroup

    with server.client() as c:
        spec = c.get("/openapi.json").json()
    schema = schemathesis.openapi.from_dict(spec)
    failures: list[tuple[str, str, int, str]] = []
    auth = {"Authorization": f"Bearer {TOKEN}"}

    def fuzz(op):  # noqa: ANN001, ANN202
        @settings(
            max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(case=op.as_strategy())
        def check(case):  # noqa: ANN001, ANN202
            try:  # every default check: no 5xx, and status, headers and body as documented
                case.call_and_validate(base_url=server.url, headers=auth)
            except (AssertionError, FailureGroup) as exc:
                failures.append((op.method, op.path, str(exc)[:600]))

        check()

    for result in schema.get_all_operations():
        op = result.ok()
        if op.path != "/admin/reload":  # a valid body swaps the model; the reload test covers it
            fuzz(op)
    assert not failures, json.dumps(failures[:5], indent=1)


def test_finetune_on_the_live_store_then_reload(
    text_run: Path, dataset_dir: Path, tmp_path: Path
) -> None:
    """Online learning end to end: events reach a running server, `chronorec finetune` reads its
    store while it serves and swaps the new weights in (--reload: POST /admin/reload); the
    user's history counts each event once, and the served ranking is the fine-tuned model's
    offline one."""
    import os
    import subprocess
    import sys

    srv = Server(text_run, tmp_path / "events.db", tmp_path / "server.log").start()
    tuned = tmp_path / "tuned"
    posted = [{"item_id": f"i{i}", "behaviour": "buy", "timestamp": 1_700_000_000 + 60 * i}
              for i in (2, 4, 6, 8)]  # fmt: skip
    try:
        with srv.client() as c:
            for user in ("u3", "u5", "u7"):
                events = [{"user_id": user, **e} for e in posted]
                assert c.post("/events", json={"events": events}).status_code == 201
            before = c.get("/users/u3/recommendations", params={"k": 5}).json()
            cmd = [sys.executable, "-m", "chronorec.cli", "finetune", str(text_run),
                   "--out", str(tuned), "--db", srv.db_url, "--epochs", "3", "--no-progress",
                   "--reload", srv.url, "--json"]  # fmt: skip
            env = {**os.environ, "CHRONOREC_TOKEN": TOKEN}
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
            assert done.returncode == 0, done.stderr
            out = json.loads(done.stdout)
            assert out["new_events"] == 12
            reloaded = out["reloaded"]  # the service's own answer to POST /admin/reload
            assert reloaded["previous_version"] == before["model_version"]
            after = c.get("/users/u3/recommendations", params={"k": 5}).json()
            ready = c.get("/ready").json()
    finally:
        srv.stop()
    assert after["model_version"] == reloaded["model_version"] != before["model_version"]
    assert after["n_events"] == before["n_events"]  # the stored events count once, not twice
    assert ready["fine_tuned"] == 1 and ready["fine_tuned_at"]
    history = user_history(dataset_dir, "u3") + posted
    rec = Recommender.load(tuned)
    want, scores = rec.recommend_histories(
        [[h["item_id"] for h in history]],
        k=5,
        timestamps=[[h["timestamp"] for h in history]],
        behaviours=[[h["behaviour"] for h in history]],
    )
    assert ids(after) == want[0]
    np.testing.assert_allclose([x["score"] for x in after["items"]], scores[0], rtol=1e-5)
