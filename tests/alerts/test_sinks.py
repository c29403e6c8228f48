"""Sinks against a REAL HTTP server on 127.0.0.1 (random free port): exact Alertmanager v2 JSON,
server down -> spooled -> drained in order, crash/restart from the spool, timeouts, 5xx/4xx,
background delivery; plus the callback and JSON lines sinks. Loopback addresses only."""

import json
import socket
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telcoanalytics.alerts.manager import Alert, AlertManager, Notification
from telcoanalytics.alerts.sinks import (
    CallbackSink,
    JsonlSink,
    PermanentSinkError,
    RetryPolicy,
    Spool,
    WebhookSink,
    redact_url,
)

T0 = 1_790_000_000_000
FAST = RetryPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=0.04)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # client gone after a timeout: expected
        pass


class AlertServer:
    """A stand-in Alertmanager: records every POST; ``codes`` are answered first, then 200."""

    def __init__(self, port: int | None = None):
        self.port = port if port is not None else free_port()
        self.requests: list[tuple[str, dict, object, int]] = []
        self.codes: list[int] = []
        self.delay_s = 0.0
        self._srv = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def accepted(self):
        return [body for _, _, body, code in self.requests if code == 200]

    def start(self):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                if outer.delay_s:
                    time.sleep(outer.delay_s)
                code = outer.codes.pop(0) if outer.codes else 200
                outer.requests.append((self.path, dict(self.headers), body, code))
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self._srv = _Server(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def stop(self):
        if self._srv is not None:
            self._srv.shutdown()
            self._srv.server_close()
            self._srv = None


@pytest.fixture
def server():
    srv = AlertServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def down_server():
    """A server object whose port refuses connections until ``start()``."""
    srv = AlertServer()
    yield srv
    srv.stop()


def note(i: int, n_alerts: int = 1, state="firing") -> Notification:
    alerts = tuple(
        Alert(
            {"alertname": "css_cell", "element": str(1000 + k), "site": "100", "severity": "major", "seq": str(i)},
            {"summary": f"notification {i} alert {k}"},
            starts_at_ms=T0 + i,
            ends_at_ms=T0 + i + 60_000 if state == "resolved" else -1,
            state=state,
            generator_url="http://127.0.0.1/graph",
        )
        for k in range(n_alerts)
    )
    return Notification(f'{{site="100",n="{i}"}}', {"site": "100"}, alerts, T0 + i, T0 + i + 3_600_000)


def seqs(bodies):
    """The notification number of every alert received, in order (bodies may coalesce several)."""
    return [a["labels"]["seq"] for b in bodies for a in b]


class FakeSleep:
    """Records backoff delays; runs ``on_call[k]`` at the k-th sleep (e.g. start the server)."""

    def __init__(self, on_call=None):
        self.delays = []
        self.on_call = on_call or {}

    def __call__(self, s):
        self.delays.append(s)
        fn = self.on_call.get(len(self.delays))
        if fn:
            fn()


# ---- webhook ---------------------------------------------------------------------------------
def test_webhook_posts_exact_alertmanager_v2_json(server):
    sink = WebhookSink(server.url, background=False)
    firing = Alert(
        {"alertname": "css_site", "site": "100", "region": "1", "severity": "page"},
        {"summary": "call_setup_success_rate = 0.9 breaches threshold 0.95 on site 100"},
        starts_at_ms=1_700_000_000_123,
        generator_url="http://127.0.0.1:9090/sla",
    )
    resolved = Alert(
        {"alertname": "css_site", "site": "101", "region": "1", "severity": "page"},
        {"summary": "back"},
        starts_at_ms=1_700_000_000_000,
        ends_at_ms=1_700_000_060_000,
        state="resolved",
    )
    sink.submit(
        [
            Notification(
                '{site="100"}', {"site": "100"}, (firing, resolved), 1_700_000_100_000, 1_700_000_100_000 + 7_200_000
            )
        ]
    )
    assert sink.stats["delivered"] == 1
    [(path, headers, body, code)] = server.requests
    assert path == "/api/v2/alerts" and headers["Content-Type"] == "application/json"
    assert body == [
        {
            "labels": {"alertname": "css_site", "site": "100", "region": "1", "severity": "page"},
            "annotations": {"summary": "call_setup_success_rate = 0.9 breaches threshold 0.95 on site 100"},
            "startsAt": "2023-11-14T22:13:20.123Z",
            "endsAt": "2023-11-15T00:15:00.000Z",
            "generatorURL": "http://127.0.0.1:9090/sla",
        },
        {
            "labels": {"alertname": "css_site", "site": "101", "region": "1", "severity": "page"},
            "annotations": {"summary": "back"},
            "startsAt": "2023-11-14T22:13:20.000Z",
            "endsAt": "2023-11-14T22:14:20.000Z",
            "generatorURL": "",
        },
    ]
    assert sink.close() is True
    full = WebhookSink(server.url + "/custom/path", background=False, headers={"X-Token": "t"})
    full.submit(note(1))
    assert server.requests[-1][0] == "/custom/path" and server.requests[-1][1]["X-Token"] == "t"
    full.close()


def test_server_down_spools_then_drains_in_order(down_server, tmp_path):
    sleep = FakeSleep()
    sink = WebhookSink(
        down_server.url, spool_dir=tmp_path / "spool", background=False, retry=FAST, sleep=sleep, timeout_s=2
    )
    for i in range(3):
        sink.submit(note(i))  # each: 3 refused attempts
    assert sink.stats["failures"] == 9 and sink.stats["delivered"] == 0 and sink.pending == 3
    assert "cannot reach" in sink.last_error
    assert sleep.delays == [0.01, 0.02] * 3  # exponential, per notification
    lines = (tmp_path / "spool" / "spool.jsonl").read_text().splitlines()
    assert [json.loads(x)["seq"] for x in lines] == [1, 2, 3]
    down_server.start()
    sink.submit(note(3))  # the backlog goes first
    assert seqs(down_server.accepted) == ["0", "1", "2", "3"]
    assert len(down_server.requests) == 1 and sink.stats["posts"] == 10  # coalesced drain
    assert sink.pending == 0 and sink.flush(1) is True
    assert json.loads((tmp_path / "spool" / "ack.json").read_text())["seq"] == 4
    assert sink.close() is True


def test_drain_without_coalescing_posts_each_notification(down_server, tmp_path):
    sink = WebhookSink(
        down_server.url, spool_dir=tmp_path / "s", background=False, retry=FAST, sleep=FakeSleep(), coalesce=1
    )
    sink.submit([note(0), note(1, n_alerts=2), note(2)])
    down_server.start()
    assert sink.flush(5) is True
    assert [seqs([b]) for b in down_server.accepted] == [["0"], ["1", "1"], ["2"]]
    assert json.loads((tmp_path / "s" / "ack.json").read_text())["seq"] == 3
    sink.close()
    with pytest.raises(ValueError, match="coalesce"):
        WebhookSink(down_server.url, coalesce=0)


def test_rejected_coalesced_post_isolates_the_bad_notification(down_server, tmp_path):
    sink = WebhookSink(down_server.url, spool_dir=tmp_path / "s", background=False, retry=FAST, sleep=FakeSleep())
    sink.submit([note(0), note(1), note(2)])
    down_server.codes = [400, 200, 400, 200]  # batch rejected; then 0 ok, 1 bad, 2 ok
    down_server.start()
    assert sink.flush(5) is True
    assert seqs(down_server.accepted) == ["0", "2"] and sink.stats["dead_lettered"] == 1
    assert json.loads((tmp_path / "s" / "dead.jsonl").read_text())["record"]["alerts"][0]["labels"]["seq"] == "1"
    down_server.codes = [400, 503]  # batch rejected, then a transient error
    failures = sink.stats["failures"]
    sink.submit([note(3), note(4)])  # isolating hit 503: retried later
    assert sink.stats["failures"] == failures + 1 and sink.stats["dead_lettered"] == 1
    assert sink.pending == 0 and seqs(down_server.accepted) == ["0", "2", "3", "4"]
    sink.close()


def test_backoff_until_the_server_returns(down_server, tmp_path):
    sleep = FakeSleep(on_call={3: down_server.start})  # back during the 3rd wait
    sink = WebhookSink(
        down_server.url,
        background=False,
        sleep=sleep,
        retry=RetryPolicy(max_attempts=10, base_delay_s=0.5, max_delay_s=1.5),
    )
    sink.submit(note(0))
    assert sleep.delays == [0.5, 1.0, 1.5]  # bounded by max_delay_s
    assert sink.stats["attempts"] == 4 and sink.stats["delivered"] == 1
    assert seqs(down_server.accepted) == ["0"]
    sink.close()


def test_crash_and_restart_resume_from_the_spool(down_server, tmp_path):
    spool = tmp_path / "spool"
    down_server.start()
    a = WebhookSink(down_server.url, spool_dir=spool, background=False, retry=FAST, sleep=FakeSleep())
    a.submit([note(0), note(1)])  # delivered and acknowledged
    down_server.stop()
    a.submit([note(2), note(3), note(4)])  # spooled, server down
    assert a.pending == 3
    del a  # crash: no close, no flush
    b = WebhookSink(down_server.url, spool_dir=spool, background=False, retry=FAST, sleep=FakeSleep())
    assert b.stats["recovered"] == 3 and b.pending == 3
    down_server.start()
    assert b.flush(5) is True
    b.submit(note(5))
    assert seqs(down_server.accepted) == ["0", "1", "2", "3", "4", "5"]  # none lost, none twice
    assert b.close() is True
    c = WebhookSink(down_server.url, spool_dir=spool, background=False)
    assert c.stats["recovered"] == 0 and c.pending == 0
    c.submit(note(6))  # sequence continues after restart
    assert json.loads((spool / "ack.json").read_text())["seq"] == 7
    c.close()


def test_torn_and_unreadable_spool_lines(tmp_path, down_server):
    spool = tmp_path / "spool"
    a = WebhookSink(down_server.url, spool_dir=spool, background=False, retry=FAST, sleep=FakeSleep())
    a.submit(note(0))
    a.close(timeout_s=0.1)
    with open(spool / "spool.jsonl", "ab") as f:
        f.write(b"this is not json\n")  # damaged complete line
        f.write(b'{"seq": 9, "record": {"gro')  # crash in the middle of a write
    b = WebhookSink(down_server.url, spool_dir=spool, background=False, retry=FAST, sleep=FakeSleep())
    assert b.stats["torn_records"] == 1 and b.stats["unreadable_records"] == 1 and b.pending == 1
    dead = [json.loads(x) for x in (spool / "dead.jsonl").read_text().splitlines()]
    assert dead[0]["record"] == {"raw": "this is not json\n"} and "unreadable" in dead[0]["reason"]
    assert (spool / "spool.jsonl").read_bytes().endswith(b"\n")
    down_server.start()
    assert b.flush(5) and seqs(down_server.accepted) == ["0"]
    b.close()


def test_spool_compaction_and_crash_during_compaction(tmp_path, server):
    spool_dir = tmp_path / "spool"
    sink = WebhookSink(server.url, spool_dir=spool_dir, background=False)
    sink._spool.compact_bytes = 1
    sink.submit([note(0), note(1)])
    assert (spool_dir / "spool.jsonl").stat().st_size == 0
    assert json.loads((spool_dir / "ack.json").read_text()) == {"offset": 0, "seq": 2}
    sink.close()
    # crash after truncating but before the ack was rewritten: nothing is resent
    (spool_dir / "ack.json").write_text(json.dumps({"offset": 99_999, "seq": 2}))
    again = WebhookSink(server.url, spool_dir=spool_dir, background=False)
    assert again.pending == 0
    again.submit(note(2))
    assert seqs(server.accepted) == ["0", "1", "2"]
    again.close()
    (spool_dir / "ack.json").write_text("garbage")
    with pytest.raises(ValueError, match="ack file .* is unreadable"):
        Spool(spool_dir)


def test_timeout_is_retried(server):
    server.delay_s = 3.0  # far beyond the client's timeout
    sleep = FakeSleep(on_call={1: lambda: setattr(server, "delay_s", 0.0)})
    sink = WebhookSink(server.url, timeout_s=0.2, background=False, retry=FAST, sleep=sleep)
    t = time.monotonic()
    sink.submit(note(0))
    assert time.monotonic() - t < 2.5  # the client gave up at its timeout
    assert sink.stats["failures"] == 1 and sink.stats["delivered"] == 1
    assert "timed out" in sink.last_error
    # the retry was answered at once; the slow copy may still land later (at-least-once,
    # harmless: Alertmanager deduplicates by labels)
    assert seqs(server.accepted) == ["0"]
    sink.close()


def test_5xx_retried_4xx_dead_lettered(server, tmp_path):
    server.codes = [503, 500]
    sink = WebhookSink(server.url, spool_dir=tmp_path / "s", background=False, retry=FAST, sleep=FakeSleep())
    sink.submit(note(0))
    assert [r[3] for r in server.requests] == [503, 500, 200] and sink.stats["delivered"] == 1
    assert "HTTP 500" in sink.last_error
    server.codes = [400, 400]  # the POST of 1+2, then 1 alone
    sink.submit([note(1), note(2)])  # 1 is rejected for good, 2 goes on
    assert sink.stats["dead_lettered"] == 1 and seqs(server.accepted) == ["0", "2"]
    dead = json.loads((tmp_path / "s" / "dead.jsonl").read_text())
    assert "HTTP 400" in dead["reason"] and dead["record"]["alerts"][0]["labels"]["seq"] == "1"
    server.codes = [429]
    sink.submit(note(3))
    assert seqs(server.accepted)[-1] == "3" and sink.stats["dead_lettered"] == 1
    sink.close()


def test_background_delivery_does_not_block(down_server, tmp_path):
    sink = WebhookSink(down_server.url, spool_dir=tmp_path / "s", retry=FAST, timeout_s=1)
    t = time.monotonic()
    for i in range(5):
        sink.submit(note(i))
    assert time.monotonic() - t < 2.0  # spooled, not delivered inline
    assert sink.flush(0.2) is False and sink.pending == 5
    with pytest.raises(RuntimeError, match="background thread"):
        sink.pump()
    down_server.start()
    assert sink.flush(10) is True
    sink.submit(note(5))
    assert sink.flush(10) is True and seqs(down_server.accepted) == [str(i) for i in range(6)]
    assert sink.close() is True and sink.close() is True
    with pytest.raises(RuntimeError, match="closed"):
        sink.submit(note(6))


def test_background_close_with_server_down_keeps_spool(down_server, tmp_path):
    sink = WebhookSink(down_server.url, spool_dir=tmp_path / "s", retry=FAST)
    sink.submit(note(0))
    assert sink.close(timeout_s=0.1) is False
    nxt = WebhookSink(down_server.url, spool_dir=tmp_path / "s", retry=FAST)
    assert nxt.stats["recovered"] == 1
    down_server.start()
    assert nxt.close(timeout_s=10) is True and seqs(down_server.accepted) == ["0"]


def test_manager_sends_40_cells_as_one_post(server):
    mgr = AlertManager(None, [WebhookSink(server.url)], group_wait_ms=30_000)
    cells = [
        Alert(
            {
                "alertname": "anomaly_prb_util_pct",
                "scope": "element",
                "element": str(e),
                "site": "100",
                "region": "1",
                "classification": "crowd",
            },
            starts_at_ms=T0,
        )
        for e in range(1000, 1040)
    ]
    mgr.ingest(cells, T0)
    mgr.tick(T0 + 30_000)
    assert mgr.close(T0 + 30_001) is True
    [(_, _, body, _)] = server.requests
    assert len(body) == 40 and {b["labels"]["site"] for b in body} == {"100"}
    assert all(b["endsAt"] == "2026-09-21T22:13:50.000Z" for b in body)  # valid for 2 x 4 h


# ---- callback and JSON lines -----------------------------------------------------------------
def test_callback_sink_retries_and_dead_letters():
    calls = []

    def flaky(n):
        calls.append(n)
        if len(calls) <= 2:
            raise ConnectionError("receiver busy")
        if n.alerts[0].labels["seq"] == "9":
            raise PermanentSinkError("receiver refuses seq 9")

    sleep = FakeSleep()
    sink = CallbackSink(flaky, retry=FAST, sleep=sleep)
    sink.submit(note(0))
    assert len(calls) == 3 and isinstance(calls[-1], Notification) and calls[-1] == note(0)
    assert sink.stats["retries"] == 2 and sleep.delays == [0.01, 0.02]
    sink.submit(note(9))
    assert sink.dead_letters[0]["reason"] == "receiver refuses seq 9"
    with pytest.raises(TypeError, match="needs a callable"):
        CallbackSink("not callable")
    stuck = CallbackSink(lambda n: 1 / 0, retry=RetryPolicy(max_attempts=1), sleep=sleep)
    stuck.submit(note(1))
    assert stuck.pending == 1 and stuck.flush(0) is False
    assert stuck.close(timeout_s=0) is False and stuck.stats["undelivered_at_close"] == 1


def test_jsonl_sink_content(tmp_path):
    path = tmp_path / "out" / "alerts.jsonl"
    sink = JsonlSink(path)
    sink.submit([note(0, n_alerts=2), note(1, state="resolved")])
    sink.submit([])
    empty = CallbackSink(print)
    empty.submit([])
    assert empty.stats["submitted"] == 0
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(rows) == 3 and sink.stats["lines"] == 3 and sink.stats["notifications"] == 2
    r = rows[0]
    assert r["status"] == "firing" and r["labels"]["element"] == "1000" and r["group_key"] == '{site="100",n="0"}'
    assert r["startsAt"] == "2026-09-21T14:13:20.000Z" and r["endsAt"] == "2026-09-21T15:13:20.000Z"
    assert r["notified_ms"] == T0 and r["fingerprint"] == note(0, 2).alerts[0].fingerprint
    assert rows[2]["status"] == "resolved" and rows[2]["ends_at_ms"] == T0 + 1 + 60_000
    assert sink.flush() is True
    sink.close()
    sink.close()
    per_note = JsonlSink(tmp_path / "n.jsonl", mode="notification", fsync=False)
    per_note.submit(note(2, n_alerts=3))
    [d] = [json.loads(x) for x in (tmp_path / "n.jsonl").read_text().splitlines()]
    assert Notification.from_dict(d) == note(2, n_alerts=3) and d["status"] == "firing"
    per_note.close()
    with pytest.raises(ValueError, match="mode 'csv'"):
        JsonlSink(tmp_path / "x", mode="csv")


def test_sink_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="base_delay_s <= max_delay_s"):
        RetryPolicy(base_delay_s=2, max_delay_s=1)
    with pytest.raises(ValueError, match="multiplier"):
        RetryPolicy(multiplier=0.5)
    with pytest.raises(ValueError, match="must be http"):
        WebhookSink("ftp://127.0.0.1/x")
    with pytest.raises(ValueError, match="timeout_s"):
        WebhookSink("http://127.0.0.1:1", timeout_s=0)


@settings(max_examples=30)
@given(
    st.lists(
        st.tuples(st.sampled_from(["submit", "down", "up", "restart", "pump"]), st.integers(1, 3)),
        min_size=1,
        max_size=25,
    )
)
def test_spool_delivers_everything_once_in_order(ops):
    """Any schedule of submissions, outages and crashes (a new sink over the same spool,
    the old one dropped without close) delivers every notification exactly once, in order."""
    with tempfile.TemporaryDirectory() as d:
        up = [True]
        got = []

        def receiver(n):
            if not up[0]:
                raise ConnectionError("receiver down")
            got.append(n.alerts[0].labels["seq"])

        def make():
            return CallbackSink(
                receiver,
                spool_dir=d,
                sleep=lambda s: None,
                retry=RetryPolicy(max_attempts=2, base_delay_s=0, max_delay_s=0),
            )

        sink, sent = make(), []
        for op, k in ops:
            if op == "submit":
                batch = [note(len(sent) + j) for j in range(k)]
                sent += [str(len(sent) + j) for j in range(k)]
                sink.submit(batch)
            elif op in ("down", "up"):
                up[0] = op == "up"
            elif op == "restart":
                sink = make()
            else:
                sink.pump()
        up[0] = True
        final = make()
        assert final.flush() is True
        assert got == sent
        final.close()


# ---- credentials ----------------------------------------------------------------------------
SECRET_USER, SECRET_PASS, SECRET_TOKEN = "opsuser", "pa55-w0rd!xyz", "tok3n-5ecret-42"


class EchoServer(AlertServer):
    """Rejects (400) every POST, echoing the request line and the Authorization header."""

    def start(self):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests.append((self.path, dict(self.headers), None, 400))
                msg = f"bad request {self.path} auth={self.headers.get('Authorization')}".encode()
                self.send_response(400)
                self.send_header("Content-Length", str(len(msg)))
                self.end_headers()
                self.wfile.write(msg)

            def log_message(self, *args):
                pass

        self._srv = _Server(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self


def _secret_url(port: int) -> str:
    return f"http://{SECRET_USER}:{SECRET_PASS.replace('!', '%21')}@127.0.0.1:{port}/api/v2/alerts?token={SECRET_TOKEN}"


def _assert_no_secret(text: str) -> None:
    import base64

    b64 = base64.b64encode(f"{SECRET_USER}:{SECRET_PASS}".encode()).decode()
    for s in (SECRET_PASS, SECRET_PASS.replace("!", "%21"), SECRET_TOKEN, b64, SECRET_USER):
        assert s not in text, s


def test_user_info_becomes_basic_auth_and_is_sent_to_the_host(server):
    import base64

    sink = WebhookSink(_secret_url(server.port), background=False)
    sink.submit([note(1)])
    sink.pump()
    path, headers, body, code = server.requests[0]
    assert code == 200 and path == f"/api/v2/alerts?token={SECRET_TOKEN}"  # the token is still sent
    assert headers["Authorization"] == "Basic " + base64.b64encode(f"{SECRET_USER}:{SECRET_PASS}".encode()).decode()
    assert sink.url == f"http://127.0.0.1:{server.port}/api/v2/alerts?token=***"  # user info is in the header
    _assert_no_secret(repr(sink) + sink.url)


def test_secrets_appear_in_no_log_line_dead_letter_or_file(tmp_path, caplog):
    import logging

    srv = EchoServer().start()
    down = AlertServer()  # nothing listens: transient failures, retried and logged
    try:
        caplog.set_level(logging.DEBUG)
        dead = WebhookSink(_secret_url(srv.port), background=False, spool_dir=tmp_path / "a")
        dead.submit([note(1)])
        dead.pump()
        assert dead.stats["dead_lettered"] == 1
        retry = WebhookSink(
            _secret_url(down.port), background=False, spool_dir=tmp_path / "b", retry=RetryPolicy(max_attempts=3)
        )
        retry.submit([note(2)])
        retry.pump(max_attempts=3)
        assert retry.stats["failures"] >= 1
        texts = [caplog.text, dead.last_error, retry.last_error, repr(dead.dead_letters), repr(dict(dead.stats))]
        texts += [p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file()]
        assert "auth=***" in (tmp_path / "a" / "dead.jsonl").read_text()  # the echo was scrubbed, not lost
        for t in texts:
            _assert_no_secret(t)
        with pytest.raises(ValueError, match=r"\*\*\*@") as e:
            WebhookSink(f"ftp://{SECRET_USER}:{SECRET_PASS}@host/?token={SECRET_TOKEN}", background=False)
        _assert_no_secret(str(e.value))
    finally:
        srv.stop()


def test_redact_url():
    assert redact_url("http://a:b@h:1/p?x=1&y") == "http://***@h:1/p?x=***&***"
    assert redact_url("http://h/p") == "http://h/p"
    assert redact_url("http://[::1") == "<unparseable url>"
