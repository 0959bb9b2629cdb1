"""The API half of `benchmarks/reliability.py`: the server process, hostile requests sent over a
raw socket (framing and header abuse reach the server as written), and schemathesis.

A hostile case's ``expect``: an int, that status with a JSON error body; ``"4xx"``: any 4xx with
a JSON error body; ``"2xx"``: accepted; ``"any"``: accepted or a JSON 4xx (odd but not wrong);
``"http"``: not a 5xx (any status or body, or the connection closed): a request that is not
well-formed HTTP, which uvicorn/httptools refuse or read as they can. A 5xx is always a defect.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from serve_load import TOKEN, free_port


class Service:
    """`chronorec serve` in its own process group on a loopback port, logging to ``log``."""

    def __init__(self, run: Path, db_url: str, log: Path, **env: str) -> None:
        self.run, self.db_url, self.log = run, db_url, log
        self.env = {**os.environ, "CHRONOREC_TOKEN": TOKEN, **env}
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 120.0) -> Service:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "chronorec.cli", "serve", str(self.run), "--db", self.db_url,
               "--port", str(port), "--log-level", "warning"]  # fmt: skip
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=fh, stderr=fh,
                                         start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if httpx.get(self.url + "/ready", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server not ready:\n{self.log.read_text()[-3000:]}")

    def kill9(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill9()

    def rss_mb(self) -> float:  # the server's resident memory
        assert self.proc is not None
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(status.split("VmRSS:")[1].split()[0]) / 1024

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def tracebacks(log: Path) -> list[str]:
    """Each traceback in a server's log, up to its exception line (the last 40 lines)."""
    text = log.read_text(errors="replace") if log.exists() else ""
    found = []
    for chunk in text.split("Traceback (most recent call last):")[1:]:
        lines = chunk.splitlines()
        end = next((i for i, x in enumerate(lines) if i and x and not x[0].isspace()), len(lines))
        found.append("Traceback (most recent call last):\n" + "\n".join(lines[1 : end + 1][-40:]))
    return found


DROP = object()  # a field value meaning "leave the field out"
Expect = int | str


@dataclass(frozen=True)
class Hostile:
    name: str
    method: str
    path: str
    body: bytes | None = None
    expect: Expect = "4xx"
    token: str | None = "TOKEN"  # "TOKEN": the service token; None: no Authorization header
    headers: tuple[tuple[str, str | None], ...] = ()  # override (None: remove) default headers
    raw: bytes | None = None  # the whole request, sent as written
    half_close: bool = False  # shut the write side after sending (a body shorter than declared)


def _bytes(body: object) -> bytes:  # a dict's DROP values are left out
    if isinstance(body, bytes | str):
        return body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
    body = {k: v for k, v in body.items() if v is not DROP} if isinstance(body, dict) else body
    return json.dumps(body).encode()


def post(name: str, path: str, body: object, expect: Expect = "4xx", **kw: Any) -> Hostile:
    return Hostile(name, "POST", path, _bytes(body), expect, **kw)


def get(name: str, path: str, expect: Expect = "4xx", **kw: Any) -> Hostile:
    return Hostile(name, "GET", path, None, expect, **kw)


def event(name: str, expect: Expect = "4xx", **fields: object) -> Hostile:
    return post(name, "/events", {"user_id": "h-user", "item_id": "sku1", **fields}, expect)


def history(name: str, expect: Expect = "4xx", **fields: object) -> Hostile:
    return post(name, "/recommendations", {"history": [{"item_id": "sku1"}], **fields}, expect)


def item(name: str, expect: Expect = "4xx", **fields: object) -> Hostile:
    return post(name, "/items", {"item_id": "h-item", "title": "t", **fields}, expect)


def raw(name: str, data: bytes, expect: Expect = "http", half_close: bool = False) -> Hostile:
    return Hostile(name, "RAW", "", None, expect, raw=data, half_close=half_close)


def _head(method: str, path: str, extra: str = "") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n{extra}\r\n".encode()


# fmt: off
# wrong wherever a timestamp is read (events and histories): 422
BAD_TIMES = {"1e300": 1e300, "9.3e18": 9.3e18, "2**63": 2**63, "10**30": 10**30, "-1": -1,
             "-1e300": -1e300, "''": "", "'NaN'": "NaN", "'Infinity'": "Infinity",
             "'1e300'": "1e300", "'yesterday'": "yesterday", "year 1": "0001-01-01T00:00:00",
             "past year 9999": "9999-12-31T23:59:59-14:00", "zone +25:00": "2020-01-01T00:00+25:00",
             "an object": {"s": 1}, "a list": [1], "'null'": "null"}
# odd but valid strings: stored (or a JSON 4xx) as ids, titles and path segments, never a 5xx
ODD = {"SQL injection": "u1'; DROP TABLE events;--", "emoji": "ユーザー😀", "NUL": "a\u0000b",
       "RTL and zero-width": "\u202eabc\u200b\ufeff", "control chars": "a\u0001\u001f\u007fb",
       "CRLF": "a\r\nb", "blank": "   ", "traversal": "../../etc/passwd", "256 chars": "u" * 256,
       "percent escapes": "%00%2e%2e", "backslashes": "..\\..\\x"}
WRONG_TYPES = {"an int": 123, "false": False, "a list": ["u1"], "an object": {"id": "u1"},
               "a float": 1.5}
BAD_K = {"0": "0", "-1": "-1", "1001": "1001", "10**30": "1" + "0" * 30, "1e3": "1e3",
         "NaN": "NaN", "empty": "", "ten": "ten", "1.5": "1.5"}
# fmt: on


def _cases_tables() -> list[Hostile]:
    r, cases = "/users/u1/recommendations", []
    # fmt: off
    for label, v in BAD_TIMES.items():
        cases += [event(f"event timestamp {label}", timestamp=v, expect=422),
                  history(f"history timestamp {label}", history=[{"item_id": "sku1",
                          "timestamp": v}], expect=422)]
    for label, v in ODD.items():
        cases += [event(f"{label} user_id", user_id=v, expect="any"),
                  event(f"{label} event_id", event_id=v, expect="any"),
                  item(f"{label} title", item_id=f"h-{label}", title=v, expect="any"),
                  item(f"{label} item_id", item_id=v, expect="any"),
                  get(f"{label} user id in the path", f"/users/{quote(v, safe='')}/"
                      "recommendations", "any")]
    for field, n in (("user_id", 256), ("item_id", 256), ("event_id", 256), ("behaviour", 64)):
        cases += [event(f"{field} {n + 1} chars", **{field: "x" * (n + 1)}, expect=422),
                  event(f"{field} empty", **{field: ""}, expect=422)]
    for label, v in WRONG_TYPES.items():
        cases += [event(f"{field} {label}", **{field: v}, expect=422)
                  for field in ("user_id", "item_id", "behaviour", "event_id")]
    # JSON that the schema's integer and boolean do not admit (true is not 1, "10" is not 10)
    for v in (0, 1, "false", "true", "yes", [True]):
        cases.append(history(f"exclude_seen {v!r}", exclude_seen=v, expect=422))
    for v in (True, "10", 10.5, [10], None, 2**64, "ten", 0):
        cases.append(history(f"k {v!r}", k=v, expect=422))
    for label, v in BAD_K.items():
        cases += [get(f"k={label}", f"{r}?k={v}", 422),
                  get(f"similar k={label}", f"/items/sku1/similar?k={v}", 422)]
    for v, want in {"0": 200, "1": 200, "false": 200, "off": 200, "maybe": 422, "2": 422}.items():
        cases.append(get(f"exclude_seen={v}", f"{r}?exclude_seen={v}", want))
    # fmt: on
    return cases


def _cases_json(max_body: int) -> list[Hostile]:
    ok = '{"user_id": "h-user", "item_id": "sku1"'
    ev, n = "/events", max_body // 230 + 10
    # fmt: off
    return [
        post("truncated JSON", ev, ok + ", ", 422), post("empty body", ev, b"", 422),
        *(post(f"JSON {v}", ev, v, 422) for v in ("null", "[]", '"u1"', "123", "true", "{}")),
        post("trailing garbage", ev, ok + "} xyz", 422),
        post("single quotes", ev, "{'user_id': 'u1', 'item_id': 'sku1'}", 422),
        post("JS comment", ev, '{/* c */ "user_id": "u1", "item_id": "sku1"}', 422),
        post("UTF-8 BOM", ev, b"\xef\xbb\xbf" + ok.encode() + b"}", "any"),
        post("UTF-16 body", ev, (ok + "}").encode("utf-16"), "any"),
        post("invalid UTF-8 in a string", ev, b'{"user_id": "\xff\xfe", "item_id": "sku1"}'),
        post("lone surrogate escape", ev, '{"user_id": "\\ud800", "item_id": "sku1"}', "any"),
        post("duplicate keys", ev, '{"user_id": "a", "user_id": "h-dup", "item_id": "sku1"}',
             "any"),
        post("list nested 100k deep", ev, '{"events": ' + "[" * 100_000 + "]" * 100_000 + "}"),
        post("list nested 900 deep", ev, '{"events": ' + "[" * 900 + "]" * 900 + "}"),
        post("object nested 50k deep", ev, '{"user_id": ' + '{"a": ' * 50_000 + "1"
             + "}" * 50_000 + ', "item_id": "sku1"}'),
        post("5000-digit integer", ev, ok + ', "timestamp": ' + "9" * 5000 + "}"),
        *(post(f"timestamp literal {v}", ev, ok + f', "timestamp": {v}}}', 422)
          for v in ("NaN", "Infinity", "-Infinity", "1e999999")),
        post("body over the size limit", ev, {"events": [{"user_id": "u" * 200, "item_id": "s"}]
             * n}, 413),
        event("timestamp 1e-300", timestamp=1e-300, expect="any"),
        event("timestamp true", timestamp=True, expect=422),
        event("timestamp year 2999", timestamp="2999-01-01T00:00:00", expect=409),
        event("user_id 100k chars", user_id="u" * 100_000, expect=422),
        event("user_id null", user_id=None),
        event("user_id missing", user_id=DROP, expect=422),
        event("item_id missing", item_id=DROP, expect=422),
        event("SQL injection item_id in an event", item_id="sku1' OR '1'='1", expect=404),
        event("unknown behaviour", behaviour="teleport", expect=404),
        event("uppercase behaviour", behaviour="VIEW", expect="any"),
        event("NUL in behaviour", behaviour="vi\u0000ew"),
        event("unknown field", colour="red", expect=422),
    ]
    # fmt: on


def _cases_batches_reads() -> list[Hostile]:
    e, r, ev = {"user_id": "h-user", "item_id": "sku1"}, "/users/u1/recommendations", "/events"
    # fmt: off
    return [
        post("empty batch", ev, {"events": []}, 422), post("batch of 1", ev, {"events": [1]}, 422),
        post("batch null", ev, {"events": None}, 422), post("batch {}", ev, {"events": {}}, 422),
        post("batch of 1001", ev, {"events": [e] * 1001}),
        post("batch and event fields mixed", ev, {"events": [e], "user_id": "x"}, 422),
        post("batch nested in batch", ev, {"events": [{"events": [e]}]}, 422),
        post("batch with one bad event", ev, {"events": [e, {**e, "timestamp": -1}]}, 422),
        post("one event_id twice in a batch", ev, {"events": [{**e, "event_id": "h2"}] * 2}, "2xx"),
        get("k=1000 (more than the catalogue)", r + "?k=1000", "2xx"),
        get("k given twice", r + "?k=1&k=2", "any"),
        get("unknown query parameter", r + "?colour=red", "any"),
        get("behaviour without a head", r + "?behaviour=buy", 409),
        get("block 1001 ids", r + "?block=" + ",".join(["sku1"] * 1001), 413),
        get("block unknown id", r + "?block=nope", 404),
        get("block only commas", r + "?block=,,,,", "2xx"),
        get("user id 257 chars", "/users/" + "u" * 257 + "/recommendations", 422),
        get("user id invalid UTF-8", "/users/%ff%fe/recommendations", "any"),
        get("user id lone surrogate", "/users/%ed%a0%80/recommendations", "any"),
        get("empty user id", "/users//recommendations"), get("trailing slash", r + "/", "any"),
        get("similar to unknown item", "/items/nope/similar", 404),
        get("similar traversal id", "/items/..%2F..%2Fadmin/similar"),
        history("history a string", history="sku1,sku2", expect=422),
        history("history of 1001", history=[{"item_id": "sku1"}] * 1001),
        history("history of empty objects", history=[{}], expect=422),
        history("history unknown item", history=[{"item_id": "nope"}], expect=404),
        history("history 1000 repeats", history=[{"item_id": "sku2"}] * 1000, expect="2xx"),
        history("history timestamps backwards", history=[{"item_id": f"sku{i}", "timestamp":
                2e9 - i * 1e6} for i in range(1, 20)], expect="2xx"),
        history("block 1001 ids in a history request", block=["sku1"] * 1001),
        history("block null", block=None, expect=422),
        history("unknown field in a history request", colour="red", expect=422),
    ]
    # fmt: on


def _cases_writes() -> list[Hostile]:
    reload, no_body = "/admin/reload", b""
    # fmt: off
    return [
        item("title 20001 chars", title="t" * 20_001, expect=422),
        item("existing item", item_id="sku1", expect=409),
        item("price -1", price=-1, expect=422), item("price 'NaN'", price="NaN", expect=422),
        item("price 1e308", item_id="h-price", price=1e308, expect="any"),
        item("21 extra fields", fields={f"f{i}": "x" for i in range(21)}, expect=422),
        item("field shadowing title", fields={"title": "x"}, expect=422),
        item("51 categories", categories=["c"] * 51, expect=422),
        item("no text at all", item_id="h-bare", title=DROP, expect="any"),
        item("item_id 257 chars", item_id="i" * 257, expect=422),
        item("fields value a list", fields={"colour": ["red"]}, expect=422),
        Hostile("DELETE unknown user", "DELETE", "/users/h-nobody", expect="2xx"),
        Hostile("DELETE id 257 chars", "DELETE", "/users/" + "u" * 257, expect=422),
        Hostile("DELETE without token", "DELETE", "/users/u1", expect=401, token=None),
        *(post(f"reload run {p!r}", reload, {"run": p}, 422) for p in (
            "../../../../../../etc", "/etc/passwd", "/proc/self", "/dev/zero", "/tmp/\u0000x",
            "r" * 4097, 1, ["/tmp"])),
        *(post(f"reload dataset {p!r}", reload, {"dataset": p}, 422) for p in (
            "../../../../etc", "\u0000", "/dev/zero")),
        post("reload body a list", reload, [], 422),
        post("reload unknown field", reload, {"colour": "red"}, 422),
        post("reload without token", reload, no_body, 401, token=None),
        post("reload with wrong token", reload, no_body, 403, token="wrong"),
    ]
    # fmt: on


def _cases_http(max_body: int) -> list[Hostile]:
    e, ev = _bytes({"user_id": "h-user", "item_id": "sku1"}), "/events"
    chunk = b"9\r\n" + b"[" * 9 + b"\r\n"  # a chunk of 9 bytes, repeated past the size limit
    auth, json_ct = "Authorization: Bearer TOKEN\r\n", "Content-Type: application/json\r\n"

    def hdr(name: str, expect: Expect, *headers: tuple[str, str | None], **kw: Any) -> Hostile:
        return Hostile(name, "POST", ev, e, expect, headers=headers, **kw)

    # fmt: off
    return [
        hdr("no token", 401, token=None), hdr("wrong token", 403, token="wrong"),
        *(hdr(f"Authorization {v!r}", 401, ("Authorization", v))
          for v in ("Bearer ", "Basic dTpw", "Token TOKEN", "TOKEN")),
        hdr("lowercase scheme", "any", ("Authorization", "bearer TOKEN")),
        *(hdr(f"token {t[:12]!r}", 403, token=t) for t in ("x" * 8192, "tökén", "TOKEN junk")),
        *(hdr(f"content type {t}", "any", ("Content-Type", t)) for t in (
            "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
            None, "application/json; charset=utf-16")),
        *(hdr(f"Content-Length {v!r}", "http", ("Content-Length", v))
          for v in ("abc", "-1", str(2**64), f"{len(e)}, 3", "10", "0x10", "1e3")),
        hdr("Content-Length 10**12", 413, ("Content-Length", str(10**12))),
        hdr("Content-Length larger than body", "http", ("Content-Length", "500"), half_close=True),
        hdr("Content-Length and chunked", "http", ("Transfer-Encoding", "chunked")),
        raw("chunked body", _head("POST", ev, auth + "Transfer-Encoding: chunked\r\n" + json_ct)
            + f"{len(e):x}\r\n".encode() + e + b"\r\n0\r\n\r\n", "2xx"),
        raw("chunked body over the limit", _head("POST", ev, auth + "Transfer-Encoding: chunked"
            "\r\n") + chunk * (max_body // 9 + 10) + b"0\r\n\r\n", 413),
        raw("bad chunk size", _head("POST", ev, "Transfer-Encoding: chunked\r\n") + b"zz\r\nx\r\n"),
        raw("garbage request line", b"GARBAGE\r\n\r\n"),
        raw("HTTP/0.9 request", b"GET /health\r\n\r\n"),  # httptools answers it
        *(raw(f"header {h!r}", _head("GET", "/health", h + "\r\n"))
          for h in ("NoColonHere", "Bad Name: x", ": empty name", "X-Nul: a\x00b")),
        raw("100 KB header", _head("GET", "/health", "X-Big: " + "a" * 100_000 + "\r\n"), "any"),
        raw("1000 headers", _head("GET", "/health", "".join(f"X-{i}: v\r\n" for i in range(1000))),
            "any"),
        raw("100 KB URL", _head("GET", "/users/" + "u" * 100_000 + "/recommendations")),
        raw("absolute-form target", _head("GET", "http://evil.example/health"), "any"),
        raw("unknown method", _head("BREW", ev)),  # httptools refuses it
        raw("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        Hostile("PUT /events", "PUT", ev, e, 405), Hostile("GET /events", "GET", ev, None, 405),
        Hostile("DELETE /items/sku1", "DELETE", "/items/sku1", None, 404),  # no such route
        Hostile("OPTIONS /events", "OPTIONS", ev, None, 405),
        Hostile("HEAD /health", "HEAD", "/health", None, "http"),  # a HEAD response has no body
        get("unknown route", "/nope", 404), get("traversal route", "/../../etc/passwd"),
        get("openapi.json without token", "/openapi.json", "2xx", token=None),
    ]
    # fmt: on


def hostile_cases(max_body: int = 1_000_000) -> list[Hostile]:
    return (_cases_tables() + _cases_json(max_body) + _cases_batches_reads() + _cases_writes()
            + _cases_http(max_body))  # fmt: skip


def request_bytes(case: Hostile, token: str) -> bytes:
    if case.raw is not None:
        return case.raw.replace(b"Bearer TOKEN", f"Bearer {token}".encode())
    headers: dict[str, str | None] = {"Host": "bench", "Connection": "close"}
    if case.body is not None:
        headers.update({"Content-Type": "application/json", "Content-Length": str(len(case.body))})
    if case.token is not None:
        headers["Authorization"] = "Bearer " + case.token.replace("TOKEN", token)
    for name, value in case.headers:
        headers[name] = value.replace("TOKEN", token) if value else value
    head = f"{case.method} {case.path} HTTP/1.1\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items() if v is not None)
    return head.encode("utf-8") + b"\r\n" + (case.body or b"")


def send(host: str, port: int, data: bytes, half_close: bool, timeout: float = 15.0) -> bytes:
    """Send ``data`` on a new connection; everything the server sent until it closed."""
    chunks = []
    with socket.create_connection((host, port), timeout=timeout) as s:
        try:
            s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except OSError:  # the server answered and closed before reading it all
            pass
        try:
            while block := s.recv(65536):
                chunks.append(block)
        except OSError:
            pass
    return b"".join(chunks)


def parse(response: bytes) -> tuple[int | None, bytes]:
    """The status and body of an HTTP/1.1 response (None: no response)."""
    head, _, body = response.partition(b"\r\n\r\n")
    status = (head.split(b" ") + [b""])[1]  # HTTP/1.1 200 OK
    return (int(status), body) if status.isdigit() else (None, b"")


def is_json_error(body: bytes) -> bool:
    try:
        err = json.loads(body)["error"]
        return all(isinstance(err[k], str) and err[k] for k in ("code", "message"))
    except (ValueError, KeyError, TypeError):
        return False


def judge(case: Hostile, status: int | None, body: bytes) -> str:
    """'ok', or what is wrong: '5xx', 'no response', 'not a JSON error', 'unexpected status'."""
    if status is not None and status >= 500:
        return "5xx"
    if case.expect == "http":
        return "ok"
    if status is None:
        return "no response"
    if 400 <= status < 500 and not is_json_error(body):
        return "not a JSON error"
    if isinstance(case.expect, int):
        return "ok" if status == case.expect else "unexpected status"
    low, high = {"4xx": (400, 500), "2xx": (200, 300), "any": (200, 500)}[case.expect]
    return "ok" if low <= status < high else "unexpected status"


def run_hostile(url: str, token: str, max_body: int = 1_000_000) -> dict[str, Any]:
    """Send every case to the server at ``url``; the counts, and each case that was wrong."""
    host, port = url.removeprefix("http://").split(":")
    counts = dict.fromkeys(("cases", "5xx", "no response", "not a JSON error",
                            "unexpected status"), 0)  # fmt: skip
    wrong: list[dict[str, object]] = []
    for case in hostile_cases(max_body):
        data = request_bytes(case, token)
        status, body = parse(send(host, int(port), data, case.half_close))
        verdict = judge(case, status, body)
        counts["cases"] += 1
        if verdict != "ok":
            counts[verdict] += 1
            wrong.append({"case": case.name, "expect": case.expect, "status": status,
                          "verdict": verdict, "request": data[:300].decode("latin-1"),
                          "body": body[:300].decode("utf-8", "replace")})  # fmt: skip
    return {**counts, "wrong": wrong}


def run_schemathesis(url: str, token: str, total: int) -> dict[str, Any]:
    """Fuzz every operation of the OpenAPI document, positive and negative cases, each response
    through every default check; /admin/reload only with a null body (reload the served run: a
    run path would swap the model). At least ``total`` cases shared evenly (10 for each operation
    with nothing to vary, which has no negative cases), topped up where hypothesis stops short."""
    import requests
    import schemathesis
    from schemathesis.generation import GenerationMode

    schema = schemathesis.openapi.from_dict(requests.get(url + "/openapi.json", timeout=10).json())
    ops = [r.ok() for r in schema.get_all_operations()]  # type: ignore[union-attr]  # Err: raises
    fixed = [op for op in ops if op.path in ("/health", "/ready", "/metrics", "/admin/reload")]
    varied = [op for op in ops if op not in fixed]
    tally: dict[str, Any] = {"cases": 0, "server_errors": 0, "failures": 0, "kinds": {},
                             "statuses": {}, "generation_errors": []}  # fmt: skip
    session, start, left = requests.Session(), time.perf_counter(), total - 10 * len(fixed)
    for round_ in range(3):
        for op in ops if round_ == 0 else varied:
            for mode in [GenerationMode.POSITIVE] + [GenerationMode.NEGATIVE] * (op in varied):
                n = 10 if op in fixed else max(1, left // (2 * len(varied)) + 1)
                try:
                    _fuzz(op, mode, n, url, {"Authorization": f"Bearer {token}"}, session, tally)
                except Exception as exc:  # hypothesis could not generate: say so, go on
                    tally["generation_errors"].append(f"{op.path} {mode}: {exc!r}"[:200])
        if (left := total - tally["cases"]) <= 0:
            break
    tally["seconds"] = round(time.perf_counter() - start, 1)
    return tally


def _fuzz(op: Any, mode: Any, n: int, url: str, auth: dict[str, str], session: Any,
          tally: dict[str, Any]) -> None:  # fmt: skip
    from hypothesis import HealthCheck, given, settings
    from schemathesis.core.failures import FailureGroup

    null = {"body": None} if op.path == "/admin/reload" else {}

    @settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy(generation_mode=mode, **null))
    def check(case: Any) -> None:
        tally["cases"] += 1
        response = case.call(base_url=url, session=session, headers=auth)
        status = str(response.status_code)
        tally["statuses"][status] = tally["statuses"].get(status, 0) + 1
        tally["server_errors"] += response.status_code >= 500
        try:  # what call_and_validate checks: no 5xx, status, headers and body as documented
            case.validate_response(response, headers=auth, transport_kwargs={
                "base_url": url, "headers": auth, "session": session})  # fmt: skip
        except (AssertionError, FailureGroup) as exc:
            tally["failures"] += 1
            for failure in getattr(exc, "exceptions", [exc]):
                title = getattr(failure, "title", type(failure).__name__)
                kind = tally["kinds"].setdefault(f"{op.method.upper()} {op.path}: {title}", {
                    "count": 0, "example": str(failure)[:500],
                    "curl": case.as_curl_command(headers=auth, base_url=url)[:500]})  # fmt: skip
                kind["count"] += 1

    check()
