"""Where notifications go: a JSON lines file, an Alertmanager v2 webhook, a Python callback.

Every sink takes ``submit(notifications)`` from :class:`telcoanalytics.alerts.manager.AlertManager`
and offers ``flush(timeout_s)``, ``close()`` and a ``stats`` counter.

Remote delivery is at-least-once and never silent about loss:

* ``submit`` appends each notification to a spool (append-only JSON lines) when the sink has
  a ``spool_dir``, written to the operating system before ``submit`` returns (so it survives a
  crash or kill of the process), and ``fsync``-ed by the delivery side before the first
  delivery attempt (so nothing is sent that a power loss could take back; the pipeline thread
  never waits for the disk);
* delivery runs in a background thread (or synchronously when ``background=False``, for
  deterministic tests), in submission order, with exponential backoff capped at
  ``RetryPolicy.max_delay_s`` on transient failures (connection refused, timeout, HTTP 408,
  429 and 5xx, any callback exception);
* after each success the acknowledged byte offset is written atomically next to the spool, so
  a new sink over the same directory (after a crash or restart) resends exactly the
  unacknowledged notifications, oldest first, before any new one;
* a permanent failure (HTTP 4xx other than 408/429) goes to ``dead.jsonl`` with the reason and
  is counted, instead of blocking the queue forever.

A crash between a successful delivery and its acknowledgement resends that one notification
(at-least-once); Alertmanager deduplicates alerts by their labels, so this is harmless there.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path

from telcoanalytics.alerts.manager import Notification, postable_alert, rfc3339_ms

__all__ = [
    "SinkError",
    "PermanentSinkError",
    "RetryPolicy",
    "Spool",
    "QueuedSink",
    "WebhookSink",
    "CallbackSink",
    "JsonlSink",
    "redact_url",
]

log = logging.getLogger(__name__)


def redact_url(url: str) -> str:
    """``url`` with its user info and every query-string value replaced by ``***`` (for logs).

    >>> redact_url("https://ops:s3cret@am.example:9093/api/v2/alerts?token=abc&team=noc")
    'https://***@am.example:9093/api/v2/alerts?token=***&team=***'
    """
    try:
        p = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    netloc = p.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = "&".join((kv.split("=", 1)[0] + "=***") if "=" in kv else "***" for kv in p.query.split("&") if kv)
    return urllib.parse.urlunsplit((p.scheme, netloc, p.path, query, ""))


class SinkError(Exception):
    """A delivery failed but may succeed later (the notification is retried)."""


class PermanentSinkError(SinkError):
    """A delivery failed for good (e.g. HTTP 400): the notification is dead-lettered."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: the k-th retry waits ``min(max_delay_s, base_delay_s * multiplier**k)``.

    Parameters
    ----------
    max_attempts : int
        Attempts per notification in one synchronous ``pump`` before it stops (the notification
        stays queued and spooled). The background thread never gives up on a transient error; it
        keeps retrying at the capped delay.
    base_delay_s, max_delay_s, multiplier : float
        Backoff schedule, bounded by ``max_delay_s``.

    Examples
    --------
    >>> [RetryPolicy(base_delay_s=0.1, max_delay_s=0.5).delay_s(k) for k in range(4)]
    [0.1, 0.2, 0.4, 0.5]
    """

    max_attempts: int = 5
    base_delay_s: float = 0.05
    max_delay_s: float = 5.0
    multiplier: float = 2.0

    def __post_init__(self):
        if self.max_attempts < 1:
            raise ValueError(f"RetryPolicy max_attempts must be >= 1, got {self.max_attempts}")
        if not (0 <= self.base_delay_s <= self.max_delay_s):
            raise ValueError(
                f"RetryPolicy needs 0 <= base_delay_s <= max_delay_s, got {self.base_delay_s} and {self.max_delay_s}"
            )
        if self.multiplier < 1:
            raise ValueError(f"RetryPolicy multiplier must be >= 1, got {self.multiplier}")

    def delay_s(self, retry: int) -> float:
        return min(self.max_delay_s, self.base_delay_s * self.multiplier**retry)


class Spool:
    """Durable FIFO of JSON records: ``spool.jsonl`` (append-only) + ``ack.json`` (offset).

    Parameters
    ----------
    directory : path
        Created if missing; one spool per sink.
    fsync : bool
        ``fsync`` the spool before delivering what was appended (:meth:`sync`) and the ack file
        after each update (default).
    compact_bytes : int
        When every record is acknowledged and the spool is larger than this, it is truncated.

    Notes
    -----
    ``ack.json`` holds ``{"offset": bytes, "seq": last acknowledged sequence}`` and is replaced
    atomically (write temp, fsync, ``os.replace``). On open, a torn last line (a crash during
    ``append``, before ``submit`` returned) is cut off and counted; an unreadable complete line
    is moved to ``dead.jsonl``.
    """

    def __init__(self, directory, *, fsync: bool = True, compact_bytes: int = 1 << 20):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "spool.jsonl"
        self.ack_path = self.dir / "ack.json"
        self.dead_path = self.dir / "dead.jsonl"
        self.fsync = fsync
        self.compact_bytes = int(compact_bytes)
        self.torn_records = 0
        self.unreadable_records = 0
        self._unsynced = False
        self.acked_offset, self.acked_seq = 0, 0
        if self.ack_path.exists():
            try:
                d = json.loads(self.ack_path.read_text())
                self.acked_offset, self.acked_seq = int(d["offset"]), int(d["seq"])
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(
                    f"spool ack file {self.ack_path} is unreadable ({e}); it holds "
                    "the delivered position: restore it or remove the spool directory "
                    "after checking spool.jsonl by hand"
                ) from None
        self._fh = open(self.path, "ab")

    def load(self) -> list[tuple[int, int, dict]]:
        """Unacknowledged records as ``(seq, end_offset, record)``, oldest first."""
        data = self.path.read_bytes()
        if self.acked_offset > len(data):  # crash between truncation and ack: all delivered
            self.acked_offset = 0
        end = data.rfind(b"\n") + 1
        if end < len(data):
            self.torn_records += 1
            log.warning("spool %s: cutting a torn last record of %d bytes", self.path, len(data) - end)
            self._fh.truncate(end)
            data = data[:end]
        out = []
        pos = self.acked_offset
        while pos < len(data):
            nl = data.index(b"\n", pos) + 1
            line = data[pos:nl]
            try:
                d = json.loads(line)
                out.append((int(d["seq"]), nl, d["record"]))
            except (ValueError, KeyError, TypeError) as e:
                self.unreadable_records += 1
                self.dead_letter({"raw": line.decode("utf-8", "replace")}, f"unreadable spool line: {e}")
            pos = nl
        return out

    def append(self, items: Sequence[tuple[int, dict]]) -> list[int]:
        """Append ``(seq, record)`` pairs (written to the OS, see :meth:`sync`); returns each
        record's end offset."""
        offs = []
        pos = self._fh.seek(0, os.SEEK_END)
        buf = bytearray()
        for seq, rec in items:
            buf += json.dumps({"seq": seq, "record": rec}, separators=(",", ":")).encode() + b"\n"
            offs.append(pos + len(buf))
        self._fh.write(buf)
        self._fh.flush()
        self._unsynced = True
        return offs

    def sync(self) -> None:
        """``fsync`` the appended records (no-op when nothing new or ``fsync=False``)."""
        if self._unsynced:
            self._unsynced = False
            if self.fsync:
                os.fsync(self._fh.fileno())

    def ack(self, end_offset: int, seq: int) -> None:
        """Record that everything up to ``end_offset`` (sequence ``seq``) is delivered."""
        self.acked_offset, self.acked_seq = int(end_offset), int(seq)
        tmp = self.ack_path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            f.write(json.dumps({"offset": self.acked_offset, "seq": self.acked_seq}))
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
        os.replace(tmp, self.ack_path)

    def compact_if_drained(self) -> bool:
        """Truncate the spool when all of it is acknowledged and it exceeds ``compact_bytes``."""
        size = self._fh.seek(0, os.SEEK_END)
        if size == 0 or self.acked_offset != size or size < self.compact_bytes:
            return False
        self._fh.truncate(0)
        if self.fsync:
            os.fsync(self._fh.fileno())
        self.ack(0, self.acked_seq)
        return True

    def dead_letter(self, record: dict, reason: str) -> None:
        with open(self.dead_path, "ab") as f:
            f.write(json.dumps({"reason": reason, "record": record}).encode() + b"\n")
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())

    def close(self) -> None:
        self.sync()
        self._fh.close()


class QueuedSink:
    """Base of remote sinks: ordered queue, optional durable spool, retries, background thread.

    Subclasses implement ``_deliver(record)`` for one notification dict
    (:meth:`Notification.to_dict`), raising :class:`SinkError` (or any exception) to retry and
    :class:`PermanentSinkError` to dead-letter; a subclass that can send several queued
    notifications in one request sets ``max_batch`` and overrides ``_deliver_batch`` (a
    permanent failure of a batch is then retried notification by notification, so only the
    rejected one is dead-lettered). The spool acknowledgement is written once per delivery.

    Parameters
    ----------
    spool_dir : path, optional
        Durable spool directory (see :class:`Spool`). Without it the queue lives in memory and
        is lost on a crash (``close`` reports what was left).
    retry : RetryPolicy, optional
    background : bool
        Deliver from a daemon thread (default): ``submit`` returns after spooling, never
        waiting for the network. False delivers inside ``submit``/``pump``/``flush`` in the
        caller's thread, fully deterministic.
    sleep : callable (seconds) -> None, optional
        Backoff wait, injectable for tests. Default: an interruptible wait (``close`` wakes it).
    fsync : bool
        Forwarded to the spool.

    Attributes
    ----------
    stats : Counter
        submitted, delivered, attempts, failures (transient), dead_lettered, recovered (loaded
        from the spool at start), torn_records, unreadable_records.
    last_error : str
    """

    name = "queued"
    max_batch = 1

    def __init__(
        self,
        *,
        spool_dir=None,
        retry: RetryPolicy | None = None,
        background: bool = True,
        sleep: Callable[[float], None] | None = None,
        fsync: bool = True,
    ):
        self.retry = retry or RetryPolicy()
        self.background = bool(background)
        self._cond = threading.Condition()
        self._queue: deque = deque()
        self._wake = threading.Event()
        self._sleep = sleep if sleep is not None else (lambda s: self._wake.wait(s))
        self.stats: Counter = Counter()
        self.last_error = ""
        self.dead_letters: list[dict] = []
        self._busy = False
        self._closing = False
        self._stop_now = False
        self._seq = 0
        self._spool = Spool(spool_dir, fsync=fsync) if spool_dir is not None else None
        if self._spool is not None:
            pending = self._spool.load()
            self._queue.extend(pending)
            self._seq = max([self._spool.acked_seq] + [s for s, _, _ in pending])
            self.stats["recovered"] += len(pending)
            self.stats["torn_records"] += self._spool.torn_records
            self.stats["unreadable_records"] += self._spool.unreadable_records
        self._thread = None
        if self.background:
            self._thread = threading.Thread(target=self._run, name=f"{self.name}-delivery", daemon=True)
            self._thread.start()

    # ---- producer side --------------------------------------------------------------------
    def submit(self, notifications) -> None:
        """Queue notifications (durably when spooled) and return without waiting for delivery.

        Raises
        ------
        RuntimeError
            The sink is closed.
        """
        if isinstance(notifications, (Notification, dict)):
            notifications = [notifications]
        recs = [n.to_dict() if isinstance(n, Notification) else n for n in notifications]
        if not recs:
            return
        with self._cond:
            if self._closing:
                raise RuntimeError(
                    f"{self.name} sink is closed; create a new sink over the same spool_dir to continue delivering"
                )
            seqs = list(range(self._seq + 1, self._seq + 1 + len(recs)))
            self._seq += len(recs)
            offs = self._spool.append(list(zip(seqs, recs))) if self._spool is not None else [-1] * len(recs)
            self._queue.extend(zip(seqs, offs, recs))
            self.stats["submitted"] += len(recs)
            self._cond.notify_all()
        if not self.background:
            self.pump()

    @property
    def pending(self) -> int:
        """Notifications submitted (or recovered) and not yet delivered."""
        with self._cond:
            return len(self._queue)

    # ---- delivery -------------------------------------------------------------------------
    def _deliver(self, record: dict) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _deliver_batch(self, records: list[dict]) -> None:
        """Deliver several queued notifications at once (default: one, see ``max_batch``)."""
        for r in records:
            self._deliver(r)

    def _head(self) -> list:
        # caller holds self._cond
        k = min(len(self._queue), self.max_batch)
        return [self._queue[i] for i in range(k)]

    def _attempt(self, items: list) -> int:
        """One delivery attempt of the queue head; returns how many items are done (delivered
        or dead-lettered), 0 on a transient failure."""
        self.stats["attempts"] += 1
        if self._spool is not None:
            self._spool.sync()
        try:
            self._deliver_batch([it[2] for it in items])
        except PermanentSinkError as e:
            if len(items) > 1:  # isolate the rejected one(s): retry one by one
                done = 0
                for it in items:
                    k = self._attempt([it])
                    if not k:
                        break
                    done += 1
                return done
            self.last_error = f"{type(e).__name__}: {e}"
            self.stats["dead_lettered"] += 1
            log.error("%s: dead-lettering notification seq %d: %s", self.name, items[0][0], e)
            if self._spool is not None:
                self._spool.dead_letter(items[0][2], str(e))
            else:
                self.dead_letters.append({"reason": str(e), "record": items[0][2]})
            return 1
        except Exception as e:  # transient by default: retried, never dropped
            self.last_error = f"{type(e).__name__}: {e}"
            self.stats["failures"] += 1
            log.warning("%s: delivery of seq %d.. failed (%s); will retry", self.name, items[0][0], e)
            return 0
        self.stats["delivered"] += len(items)
        return len(items)

    def _done(self, k: int) -> None:
        # caller holds self._cond; the first k queued items are delivered
        for _ in range(k):
            item = self._queue.popleft()
        if self._spool is not None:
            self._spool.ack(item[1], item[0])
            if not self._queue:
                self._spool.compact_if_drained()
        self._cond.notify_all()

    def pump(self, max_attempts: int | None = None) -> int:
        """Deliver queued notifications in the caller's thread (``background=False`` only).

        Each delivery gets up to ``max_attempts`` (default ``retry.max_attempts``) attempts
        with backoff; when one still fails, pumping stops and it stays queued.

        Returns
        -------
        int
            Notifications delivered or dead-lettered by this call.

        Raises
        ------
        RuntimeError
            The sink has a background thread (it does the pumping).
        """
        if self.background:
            raise RuntimeError(
                f"{self.name} sink delivers in a background thread; call flush(timeout_s) instead of pump()"
            )
        limit = int(max_attempts or self.retry.max_attempts)
        n = 0
        while True:
            with self._cond:
                if not self._queue:
                    return n
                items = self._head()
            for k in range(limit):
                done = self._attempt(items)
                if done:
                    break
                if k + 1 < limit:
                    self.stats["retries"] += 1
                    self._sleep(self.retry.delay_s(k))
            else:
                return n
            with self._cond:
                self._done(done)
            n += done

    def _run(self) -> None:
        retry = 0
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if self._stop_now or (self._closing and not self._queue):
                    return
                items = self._head()
                self._busy = True
            done = self._attempt(items)
            with self._cond:
                self._busy = False
                if done:
                    self._done(done)
                    retry = 0
                    continue
                if self._stop_now:  # pragma: no cover - close() raced with a failing attempt
                    return
            self.stats["retries"] += 1
            self._sleep(self.retry.delay_s(retry))
            retry += 1

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until everything queued is delivered; True if drained within ``timeout_s``.

        Without a background thread this pumps once (bounded by the retry policy).
        """
        if not self.background:
            self.pump()
            with self._cond:
                return not self._queue
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while self._queue or self._busy:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def close(self, timeout_s: float | None = 5.0) -> bool:
        """Flush (up to ``timeout_s``), stop the thread, close the spool.

        Returns True when nothing was left undelivered. What is left stays in the spool for the
        next sink over the same directory; without a spool it is counted in
        ``stats["undelivered_at_close"]`` and logged.
        """
        with self._cond:
            if self._closing:
                return not self._queue
        drained = self.flush(timeout_s)
        with self._cond:
            self._closing = True
            self._stop_now = True
            left = len(self._queue)
            self._cond.notify_all()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=max(1.0, timeout_s or 1.0))
        if left and self._spool is None:
            self.stats["undelivered_at_close"] += left
            log.error("%s: closing with %d undelivered notifications and no spool", self.name, left)
        if self._spool is not None:
            self._spool.close()
        return drained and not left


class WebhookSink(QueuedSink):
    """POST each notification's alerts to an Alertmanager API v2 endpoint.

    Parameters
    ----------
    url : str
        ``http(s)://host:port`` (the path ``/api/v2/alerts`` is appended when the URL has no
        path) or the full endpoint URL.
    timeout_s : float
        Socket timeout of one request (connect and read).
    headers : dict, optional
        Extra HTTP headers (e.g. Authorization).

    Credentials: ``user:password@`` in the URL is sent as an HTTP Basic ``Authorization``
    header (not as part of the host name); the URL's user info and query-string values (e.g.
    ``?token=...``), and the values of ``Authorization`` / ``*token*`` / ``*key*`` headers, are
    replaced by ``***`` in every log line, error message, dead letter and ``repr`` (``self.url``
    is the redacted form).
    coalesce : int
        When notifications queue up (a backlog, or the spool draining after an outage), up to
        this many are sent in one POST, alerts in queue order (default 64; 1 = one POST per
        notification). A single queued notification is always one POST.
    **kwargs
        :class:`QueuedSink` options (``spool_dir``, ``retry``, ``background``, ``sleep``).

    Notes
    -----
    The body is a JSON list of ``{labels, annotations, startsAt, endsAt, generatorURL}``
    (Alertmanager OpenAPI ``postableAlerts``), with RFC 3339 times. Uses ``urllib`` only and
    ignores proxy environment variables (alerts go straight to the configured host).

    Raises
    ------
    ValueError
        The URL is not http(s) with a host.
    """

    name = "webhook"

    def __init__(self, url: str, *, timeout_s: float = 5.0, headers: dict | None = None, coalesce: int = 64, **kwargs):
        if int(coalesce) < 1:
            raise ValueError(f"coalesce must be >= 1 notifications per POST, got {coalesce}")
        self.max_batch = int(coalesce)
        try:
            p = urllib.parse.urlsplit(url)
            host_ok = p.scheme in ("http", "https") and bool(p.hostname)
            p.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            host_ok = False
        if not host_ok:
            raise ValueError(
                f"webhook url {redact_url(url)!r} must be http(s)://[user:password@]host[:port][/path], "
                "e.g. http://127.0.0.1:9093"
            )
        if p.path in ("", "/"):
            p = p._replace(path="/api/v2/alerts")
        secrets: list[str] = []
        auth = None
        if p.username is not None or p.password is not None:
            user = urllib.parse.unquote(p.username or "")
            password = urllib.parse.unquote(p.password or "")
            auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            secrets += [x for x in (p.username, p.password, user, password) if x]
            p = p._replace(netloc=p.netloc.rsplit("@", 1)[1])
        for kv in p.query.split("&"):
            if "=" in kv and kv.split("=", 1)[1]:
                v = kv.split("=", 1)[1]
                secrets += [v, urllib.parse.unquote_plus(v)]
        self._endpoint = urllib.parse.urlunsplit(p)  # what is requested: no user info, query kept
        self.url = redact_url(urllib.parse.urlunsplit(p))  # what is shown
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0 seconds, got {timeout_s}")
        self.timeout_s = float(timeout_s)
        self.headers = {"Content-Type": "application/json", "User-Agent": "telcoanalytics-alerts"}
        if auth is not None:
            self.headers["Authorization"] = auth
        self.headers.update(headers or {})
        for k, v in self.headers.items():
            if k.lower() == "authorization" or "token" in k.lower() or "key" in k.lower():
                secrets += [str(v)] + str(v).split()[1:]
        # longest first, so a secret that contains another is replaced whole
        self._secrets = sorted({x for x in secrets if len(x) >= 3}, key=len, reverse=True)
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        super().__init__(**kwargs)

    @staticmethod
    def body(records: list[dict]) -> bytes:
        """The request body for notification dicts: their alerts in order, as one list."""
        return json.dumps(
            [
                postable_alert(
                    a["labels"],
                    a["annotations"],
                    a["status"],
                    a["starts_at_ms"],
                    a["ends_at_ms"],
                    a["generator_url"],
                    r["valid_until_ms"],
                )
                for r in records
                for a in r["alerts"]
            ]
        ).encode()

    def _scrub(self, text: str) -> str:
        """``text`` with every credential of this sink replaced by ``***``."""
        for x in self._secrets:
            text = text.replace(x, "***")
        return text

    def __repr__(self) -> str:
        return f"WebhookSink({self.url!r})"

    def _deliver_batch(self, records: list[dict]) -> None:
        self.stats["posts"] += 1
        req = urllib.request.Request(self._endpoint, data=self.body(records), headers=self.headers, method="POST")
        try:
            with self._opener.open(req, timeout=self.timeout_s) as resp:
                resp.read()
        except urllib.error.HTTPError as e:
            msg = self._scrub(f"HTTP {e.code} from {self.url}: {e.read()[:200]!r}")
            if e.code in (408, 429) or e.code >= 500:
                raise SinkError(msg) from None
            raise PermanentSinkError(msg) from None
        except (urllib.error.URLError, TimeoutError, OSError, HTTPException, ValueError) as e:
            raise SinkError(self._scrub(f"cannot reach {self.url}: {e}")) from None


class CallbackSink(QueuedSink):
    """Call ``fn(notification)`` for each :class:`Notification` (synchronously by default).

    An exception from ``fn`` is retried with backoff (``PermanentSinkError`` dead-letters);
    with ``spool_dir`` the undelivered notifications survive a restart like the webhook's.
    """

    name = "callback"

    def __init__(self, fn: Callable[[Notification], object], *, background: bool = False, **kwargs):
        if not callable(fn):
            raise TypeError(f"CallbackSink needs a callable, got {type(fn).__name__}")
        self.fn = fn
        super().__init__(background=background, **kwargs)

    def _deliver(self, record: dict) -> None:
        self.fn(Notification.from_dict(record))


def jsonl_lines(notifications, mode: str = "alert") -> list[str]:
    """The JSON lines of :class:`JsonlSink` for a list of notifications: one per alert (its labels,
    annotations, RFC 3339 times, group key and notification time), or one per notification with
    ``mode="notification"``."""
    lines = []
    for n in notifications:
        if mode == "notification":
            lines.append(json.dumps(n.to_dict(), sort_keys=True))
            continue
        for a in n.alerts:
            d = a.to_dict()
            v2 = a.to_v2(n.valid_until_ms)
            d.update(
                startsAt=v2["startsAt"],
                endsAt=v2.get("endsAt", ""),
                group_key=n.group_key,
                notified_ms=int(n.t_ms),
                notified_at=rfc3339_ms(n.t_ms),
            )
            lines.append(json.dumps(d, sort_keys=True))
    return lines


class JsonlSink:
    """Append notifications to a JSON lines file, synchronously.

    Parameters
    ----------
    path : path
        File, created (with parents) if missing, appended to otherwise.
    mode : {"alert", "notification"}
        ``alert``: one line per alert entry of a notification (its :meth:`Alert.to_dict` plus
        ``startsAt``/``endsAt``, ``group_key`` and ``notified_ms``), easy to grep and count.
        ``notification``: one line per notification (Alertmanager webhook v4 shape).
    fsync : bool
        ``fsync`` after each ``submit`` (default True).

    Raises
    ------
    ValueError
        Unknown mode.
    """

    name = "jsonl"

    def __init__(self, path, *, mode: str = "alert", fsync: bool = True):
        if mode not in ("alert", "notification"):
            raise ValueError(f"JsonlSink mode {mode!r} is unknown; use 'alert' or 'notification'")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.mode = mode
        self.fsync = fsync
        self.stats: Counter = Counter()
        self._fh = open(self.path, "a", encoding="utf-8")

    def submit(self, notifications) -> None:
        if isinstance(notifications, Notification):
            notifications = [notifications]
        lines = jsonl_lines(notifications, self.mode)
        if not lines:
            return
        self._fh.write("\n".join(lines) + "\n")
        self._fh.flush()
        if self.fsync:
            os.fsync(self._fh.fileno())
        self.stats["notifications"] += len(notifications)
        self.stats["lines"] += len(lines)

    def flush(self, timeout_s: float | None = None) -> bool:
        return True

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()
