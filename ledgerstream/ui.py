"""``ledgerstream ui``: a small status web page for operators.

Server-rendered HTML (Jinja2 templates in ``templates/ui``, every value escaped), no scripts, no
build step:

- ``/`` searches by Stripe id, counts objects by state and lists the most recent ones (filtered
  by state), with the lag and health of each component;
- ``/object/<stripe id>`` shows an object's entries as ``ledgerstream status`` prints them, its
  NetSuite links and, when a write failed, the dead-letter topic and a redrive button;
- ``/payouts`` lists every payout with its deposit's composition (payments, refunds, fees by
  type, currency conversion, suspense…), the total against the payout's amount, and its status;
- ``/dlq`` lists the dead letters by source topic and error class with redrive buttons
  (``POST /dlq/redrive`` redrives and redirects back with how many went);
- ``/health`` shows each component's consumer group: members, and per partition the committed
  offset, the end offset and the lag.

Where the data comes from. The components report what they do with each Stripe object to the
compacted ``ledgerstream.status`` topic (see ``ledgerstream.status``). A background task reads
that topic from the beginning (partitions assigned, no consumer group, nothing committed) and
keeps on reading it into an in-memory table (a tombstone deletes its key), so a request reads
only that table: nothing scans the pipeline's topics per request. The dead-letter page and the
health figures are small reads of the ``.dlq`` topics and of the groups' offsets, done in a
thread and kept for a few seconds.

There is no authentication: the server binds 127.0.0.1 by default; to reach it from elsewhere,
put it behind a proxy that authenticates (docs/deployment.md). A POST from another site's page is
refused (``Origin`` / ``Sec-Fetch-Site``), and the pages forbid scripts and framing (CSP).
Configured secrets are masked in every value shown (``ledgerstream.redact``).
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import math
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Generic, TypeVar
from urllib.parse import quote, urlencode, urlsplit

import jinja2
from aiohttp import web
from confluent_kafka import Consumer, KafkaException, TopicPartition

from ledgerstream import dlq, money, offsets, redact, settings, status
from ledgerstream.kafka_util import is_real_error, watermarks

log = logging.getLogger(__name__)

# an object's state, from what its entries say (see ObjectView.summarize)
STATES = ("received", "waiting", "processed", "sent", "written", "backref", "failed")
# the order of a deposit's kinds on the payouts page (any other kind after these, by name)
_KIND_ORDER = ("payments", "refunds", "fee", "currency conversion", "suspense")
RECENT = 100  # objects on the overview
LETTERS_PER_GROUP = 50  # dead letters shown per topic and error class (the newest)
HEALTH_TTL_S = 3.0  # how long lag figures and dead letters are kept before being read again
DLQ_TTL_S = 3.0
OVERVIEW_HEALTH_WAIT_S = 2.0  # the overview does not wait longer for the lag figures


# --------------------------------------------------------------------------- the status table
@dataclass
class Entry:
    """One key of the status topic: ``<stripe id>|<stage>[|<detail>]`` and its JSON fields."""

    stage: str
    detail: str
    fields: dict[str, Any]

    @property
    def at(self) -> str:
        return str(self.fields.get("at") or "")


@dataclass
class ObjectView:
    """Everything the status topic holds on one Stripe object."""

    stripe_id: str
    entries: dict[str, Entry] = field(default_factory=dict)  # "<stage>[|<detail>]" -> entry
    state: str = "received"
    last_at: str = ""
    is_payout: bool = False

    def ordered(self) -> list[Entry]:
        """Oldest first, as ``ledgerstream status`` prints them."""
        return sorted(self.entries.values(), key=lambda e: e.at)

    def of(self, stage: str) -> list[Entry]:
        return [e for e in self.entries.values() if e.stage == stage]

    def summarize(self) -> None:
        """State and time of the latest entry, from the entries.

        ``failed`` while a write of it is dead-lettered (the sink removes the failure when a
        later write succeeds); ``waiting`` while the processor waits for something; otherwise
        how far it got: ``backref`` or ``written`` once every command sent for it is written,
        ``sent``, ``processed`` (booked), ``received``."""
        self.last_at = max((e.at for e in self.entries.values()), default="")
        sent = {e.detail for e in self.of("sent")}
        written = {e.detail for e in self.of("written")}
        processed = self.entries.get("processed")
        if self.of("failed"):
            self.state = "failed"
        elif processed is not None and processed.fields.get("state") == "waiting":
            self.state = "waiting"
        elif written and sent <= written:
            self.state = "backref" if "backref" in self.entries else "written"
        elif sent:
            self.state = "sent"
        elif processed is not None:
            self.state = "processed"
        else:
            self.state = "received"
        self.is_payout = any(
            e.fields.get("record_type") == "deposit" for e in self.of("sent")
        ) or any(str(e.fields.get("type", "")).startswith("payout.") for e in self.of("event"))


class StatusTable:
    """The status topic as a table: latest value per key, grouped by Stripe id.

    Fed by one task on the server's event loop (``StatusFeed``) and read by the request
    handlers on the same loop: no locks needed."""

    def __init__(self) -> None:
        self.objects: dict[str, ObjectView] = {}
        self.counts: Counter[str] = Counter()
        self.applied = 0  # records read
        self.caught_up = False  # read up to the end offsets seen at start
        self.error: str | None = None  # why the topic is not (yet) read

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One record of the topic: an entry set (JSON object) or deleted (tombstone)."""
        self.applied += 1
        if not key:
            return
        stripe_id, _, rest = key.decode("utf-8", "replace").partition(status.SEP)
        if not stripe_id or not rest:
            return
        fields: dict[str, Any] | None = None
        if value is not None:
            try:
                loaded = json.loads(value)
            except ValueError:
                log.warning("status entry %r is not JSON: ignored", key)
                return
            if not isinstance(loaded, dict):
                log.warning("status entry %r is not a JSON object: ignored", key)
                return
            fields = loaded
        view = self.objects.get(stripe_id)
        if view is None:
            if fields is None:
                return  # a tombstone for something never seen (compacted away)
            view = self.objects[stripe_id] = ObjectView(stripe_id)
        else:
            self.counts[view.state] -= 1
        if fields is None:
            view.entries.pop(rest, None)
        else:
            stage, _, detail = rest.partition(status.SEP)
            view.entries[rest] = Entry(stage, detail, fields)
        if not view.entries:
            del self.objects[stripe_id]
            return
        view.summarize()
        self.counts[view.state] += 1

    def reset(self) -> None:
        self.objects.clear()
        self.counts.clear()
        self.applied = 0
        self.caught_up = False
        self.error = None

    def get(self, stripe_id: str) -> ObjectView | None:
        return self.objects.get(stripe_id)

    def recent(self, state: str | None = None, limit: int = RECENT) -> list[ObjectView]:
        """The objects with the latest entries (of one state), newest first."""
        chosen: Iterable[ObjectView] = self.objects.values()
        if state is not None:
            chosen = (o for o in chosen if o.state == state)
        return heapq.nlargest(limit, chosen, key=lambda o: o.last_at)

    def search(self, query: str, limit: int = 50) -> list[ObjectView]:
        """Objects whose Stripe id contains ``query`` (any case), or whose NetSuite external
        or internal id is ``query``; newest first."""
        q = query.strip()
        if not q:
            return []
        low = q.lower()
        found = [
            o
            for o in self.objects.values()
            if low in o.stripe_id.lower()
            or any(
                q in (str(e.fields.get("external_id")), str(e.fields.get("internal_id")))
                for e in o.entries.values()
            )
        ]
        return heapq.nlargest(limit, found, key=lambda o: o.last_at)

    def payouts(self) -> list[PayoutView]:
        """Every payout the pipeline has seen, newest first."""
        views = [payout_view(o) for o in self.objects.values() if o.is_payout]
        return sorted(views, key=lambda p: p.last_at, reverse=True)


class StatusFeed:
    """Reads the status topic into a ``StatusTable``, from its beginning and on, until stopped.

    The consumer's blocking calls run in a thread, one at a time; the records are applied on
    the event loop. A failure is logged and the topic read again from its beginning (replaying
    a compacted topic in order gives the same latest values)."""

    POLL_S = 0.5  # one consume call waits at most this long for records (then checks stop)
    RETRY_S = 5.0  # after a failure, or while the topic does not exist yet

    def __init__(self, table: StatusTable, topic: str | None = None) -> None:
        self.table = table
        self.topic = topic or status.topic()
        self._stop = asyncio.Event()

    async def run(self) -> None:
        while not self._stop.is_set():
            try:
                await self._read()
            except Exception as exc:  # noqa: BLE001 - reported on the page, read again
                self.table.error = f"reading {self.topic}: {exc}"
                log.exception("reading the status topic %s failed; reading it again", self.topic)
            if not self._stop.is_set():
                # a pause before the next try (a missing topic, a broker away): wakes on stop
                try:
                    await asyncio.wait_for(self._stop.wait(), self.RETRY_S)
                except TimeoutError:
                    pass

    def stop(self) -> None:
        self._stop.set()

    async def _read(self) -> None:
        consumer = Consumer(
            {
                **settings.kafka().client_config(),
                "group.id": "ledgerstream-ui-unused",  # assign() only, never committed
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        try:
            ends = await asyncio.to_thread(self._assign, consumer)
            if ends is None:
                return  # the topic does not exist (yet): try again later
            self.table.reset()  # read again after a failure: from nothing, as at the start
            while not self._stop.is_set():
                messages, positions = await asyncio.to_thread(self._consume, consumer)
                for msg in messages:
                    if msg.error():
                        if is_real_error(msg):
                            log.warning("status topic: %s", msg.error())
                        continue
                    self.table.apply(msg.key(), msg.value())
                if not self.table.caught_up and all(
                    positions.get(p, 0) >= end for p, end in ends.items()
                ):
                    self.table.caught_up = True
                    log.info(
                        "status table caught up: %d objects from %d records",
                        len(self.table.objects),
                        self.table.applied,
                    )
        finally:
            await asyncio.to_thread(consumer.close)

    def _assign(self, consumer: Consumer) -> dict[int, int] | None:
        """Assign every partition from its first record; the end offsets seen now of those
        that hold records (how far the table must read to be caught up), or None when the
        topic does not exist."""
        md = consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
        if md is None or md.error is not None:
            self.table.error = (
                f"the status topic {self.topic} does not exist yet (`ledgerstream topics` "
                "creates it); waiting for it"
            )
            return None
        marks = {p: watermarks(consumer, self.topic, p) for p in sorted(md.partitions)}
        consumer.assign([TopicPartition(self.topic, p, low) for p, (low, _) in marks.items()])
        log.info(
            "reading %s into the status table: %d partitions, %d records up to now",
            self.topic,
            len(marks),
            sum(high - low for low, high in marks.values()),
        )
        # the partitions holding records (an empty one has no position to reach)
        return {p: high for p, (low, high) in marks.items() if high > low}

    def _consume(self, consumer: Consumer) -> tuple[list[Any], dict[int, int]]:
        messages = consumer.consume(1000, self.POLL_S)
        # the positions after them (past any record Kafka does not hand out, unlike offsets)
        positions = {tp.partition: tp.offset for tp in consumer.position(consumer.assignment())}
        return messages, positions


# --------------------------------------------------------------------------- payouts
@dataclass
class DepositPart:
    key: str  # the command key, deposit/<payout id>[-n]
    state: str  # sent, written or failed
    internal_id: str | None
    link: str | None
    reason: str | None


@dataclass
class PayoutView:
    stripe_id: str
    currency: str
    payout_amount: int | None
    lines: list[tuple[str, int]]  # kind, signed minor units
    total: int
    parts: list[DepositPart]
    status: str
    last_at: str
    waiting_for: str | None = None

    @property
    def matches(self) -> bool | None:
        """Does the deposit add up to the payout? None until both are known."""
        if self.payout_amount is None or not self.parts:
            return None
        return self.total == self.payout_amount


def _kind_rank(kind: str) -> tuple[int, str]:
    head = kind.split(":")[0]
    return (_KIND_ORDER.index(head) if head in _KIND_ORDER else len(_KIND_ORDER), kind)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def payout_view(view: ObjectView) -> PayoutView:
    """A payout's deposit, summed over its parts (a big payout's deposit is split into parts
    ``deposit/<po id>``, ``deposit/<po id>-2``…; only the first carries the payout amount)."""
    lines: dict[str, int] = defaultdict(int)
    total = 0
    currency = ""
    amount: int | None = None
    parts = []
    written = {e.detail: e.fields for e in view.of("written")}
    failed = {e.detail: e.fields for e in view.of("failed")}
    for sent in sorted(view.of("sent"), key=lambda e: e.detail):
        f = sent.fields
        if f.get("record_type") != "deposit":
            continue
        currency = currency or str(f.get("currency") or "")
        amount = amount if amount is not None else _int(f.get("payout_amount"))
        for kind, minor in (f.get("lines") or {}).items():
            lines[str(kind)] += _int(minor) or 0
        total += _int(f.get("total")) or 0
        done = written.get(sent.detail)
        wrong = failed.get(sent.detail)
        internal = str(done["internal_id"]) if done and done.get("internal_id") else None
        parts.append(
            DepositPart(
                sent.detail,
                "failed" if wrong else "written" if done else "sent",
                internal,
                status.netsuite_link("deposit", internal) if internal else None,
                str(wrong.get("reason")) if wrong else None,
            )
        )
    processed = view.entries.get("processed")
    waiting = processed is not None and processed.fields.get("state") == "waiting"
    if any(p.state == "failed" for p in parts):
        state = "failed"
    elif waiting:
        state = "waiting"
    elif parts and all(p.state == "written" for p in parts):
        state = "written"
    elif parts:
        state = "sent"
    else:
        state = "processed" if processed is not None else "received"
    return PayoutView(
        view.stripe_id,
        currency,
        amount,
        sorted(lines.items(), key=lambda kv: _kind_rank(kv[0])),
        total,
        parts,
        state,
        view.last_at,
        str(processed.fields.get("reason")) if waiting and processed is not None else None,
    )


def amount(minor: Any, currency: str) -> str:
    """Minor units as the currency's amount (``1,234.50 USD``); as given when not a number."""
    value = _int(minor)
    if value is None:
        return "—" if minor is None else str(minor)
    if not currency:
        return f"{value:,} (minor units)"
    decimal: Decimal = money.to_decimal(value, currency)
    return f"{decimal:,f} {currency.upper()}"


# --------------------------------------------------------------------------- health
@dataclass
class PartitionLag:
    topic: str
    partition: int
    committed: int | None  # None: the group committed nothing here (it reads from the start)
    low: int
    end: int

    @property
    def lag(self) -> int:
        return self.end - (self.low if self.committed is None else self.committed)


@dataclass
class GroupHealth:
    component: str
    group: str
    members: list[str] = field(default_factory=list)
    partitions: list[PartitionLag] = field(default_factory=list)
    error: str | None = None

    @property
    def lag(self) -> int:
        return sum(max(0, p.lag) for p in self.partitions)

    @property
    def state(self) -> str:
        """``ok`` (members, nothing to read), ``catching up`` (members, lag), ``stopped``
        (no members, records to read), ``idle`` (no members, nothing to read) or ``unknown``."""
        if self.error is not None:
            return "unknown"
        if self.members:
            return "ok" if self.lag == 0 else "catching up"
        return "stopped" if self.lag else "idle"


def read_health() -> list[GroupHealth]:
    """Each component's consumer group: its members and, per input partition, the committed
    offset against the end offset (``ledgerstream replay --group`` names them the same)."""
    out = []
    for component, spec in offsets.COMPONENTS.items():
        group = spec.group()
        health = GroupHealth(component, group)
        try:
            _, moves = offsets.plan(component)
            health.partitions = [
                PartitionLag(m.topic, m.partition, m.current, m.low, m.high) for m in moves
            ]
            health.members = offsets.members(group)
        except Exception as exc:  # noqa: BLE001 - shown for that group, the others go on
            health.error = redact.scrub(str(exc))
        out.append(health)
    return out


# --------------------------------------------------------------------------- dead letters
@dataclass
class DeadLetters:
    letters: list[dlq.DeadLetter]
    done: dict[str, dict[str, Any]]  # ref -> {"at", "to"} of those redriven


def read_dead_letters() -> DeadLetters:
    letters = dlq.read()
    try:
        done = dlq.redriven()
    except KafkaException:  # the marks topic not created yet: nothing redriven
        done = {}
    return DeadLetters(letters, done)


@dataclass(frozen=True)
class RedriveRequest:
    """Which dead letters a redrive button sends (as ``ledgerstream dlq redrive`` selects)."""

    refs: tuple[str, ...] = ()
    topic: str | None = None
    error_class: str | None = None
    stripe_id: str | None = None
    everything: bool = False

    @property
    def narrowed(self) -> bool:
        return bool(self.refs or self.topic or self.error_class or self.stripe_id)


def run_redrive(request: RedriveRequest) -> dlq.Redrive:
    select = dlq.Selection(request.topic, request.error_class, request.stripe_id)
    letters = [x for x in dlq.read() if select(x) and (not request.refs or x.ref in request.refs)]
    return dlq.redrive(letters, echo=log.info)


# --------------------------------------------------------------------------- caching
T = TypeVar("T")


class Cached(Generic[T]):
    """A blocking read, done in a thread, its result kept ``ttl`` seconds; one read at a time.
    A failed read keeps the last value and says why (``error``)."""

    def __init__(self, load: Callable[[], T], ttl: float) -> None:
        self._load = load
        self._ttl = ttl
        self._value: T | None = None
        self._at = -math.inf
        self._generation = 0
        self._task: asyncio.Task[None] | None = None
        self.error: str | None = None

    async def get(self, wait: float | None = None) -> T | None:
        """The value, read again when older than the ttl; waiting at most ``wait`` seconds for
        a read (then the last value, or None)."""
        if self._value is not None and time.monotonic() - self._at < self._ttl:
            return self._value
        if self._task is None:
            self._task = asyncio.create_task(self._refresh(self._generation))
        try:
            await asyncio.wait_for(asyncio.shield(self._task), wait)
        except TimeoutError:
            pass
        return self._value

    def clear(self) -> None:
        """Read again next time (a read under way now is not kept)."""
        self._generation += 1
        self._at = -math.inf
        self._task = None

    async def _refresh(self, generation: int) -> None:
        try:
            value = await asyncio.to_thread(self._load)
        except Exception as exc:  # noqa: BLE001 - shown on the page; the last value stays
            log.warning("reading for the status page failed: %s", exc)
            if generation == self._generation:
                self.error = redact.scrub(str(exc))
                self._task = None
            return
        if generation == self._generation:
            self._value, self._at, self.error = value, time.monotonic(), None
            self._task = None


# --------------------------------------------------------------------------- pages
NAV = (("/", "Overview"), ("/payouts", "Payouts"), ("/dlq", "Dead letters"), ("/health", "Health"))


def _scrub(value: Any) -> Any:
    """Every value a page shows passes here: configured secrets masked."""
    return redact.scrub(value) if isinstance(value, str) else value


def _counted(n: int, noun: str) -> str:
    """``1 dead letter``, ``2 dead letters``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def object_href(stripe_id: str) -> str:
    return "/object/" + quote(stripe_id, safe="")


def _short(at: str) -> str:
    """An ISO time to the second, as the pages show it."""
    return at[:19].replace("T", " ") if at else ""


def _entry_text(e: Entry) -> tuple[str, str, str | None]:
    """label, what, NetSuite link: as ``ledgerstream status`` says it."""
    f = e.fields
    if e.stage == "event":
        return (
            "received",
            f"{f.get('type')} {f.get('event_id') or '(backfill)'} (created "
            f"{f.get('created')}), routed to {f.get('topic')}",
            None,
        )
    if e.stage == "processed":
        if f.get("state") == "waiting":
            return "waiting", f"for {f.get('reason')} (since {f.get('since')})", None
        return "processed", "booked", None
    if e.stage == "sent":
        return "sent", f"{f.get('record_type')} {f.get('external_id')}", None
    if e.stage == "written":
        internal = str(f.get("internal_id"))
        return (
            "written",
            f"NetSuite {f.get('record_type')} {f.get('external_id')} internal id {internal}",
            status.netsuite_link(str(f.get("record_type")), internal),
        )
    if e.stage == "backref":
        return "backref", f"Stripe metadata {f.get('metadata')}", None
    if e.stage == "failed":
        return "FAILED", f"{f.get('record_type')} {f.get('external_id')}: {f.get('reason')}", None
    shown = {k: v for k, v in f.items() if k != "at"}
    return e.stage, f"{e.detail} {shown}".strip(), None


def _latest(view: ObjectView) -> str:
    entries = view.ordered()
    if not entries:
        return ""
    label, text, _ = _entry_text(entries[-1])
    return f"{label}: {text}"


def _redrive_notice(query: Any) -> str | None:
    if "redriven" not in query:
        return None
    if query.get("error"):
        return f"Redrive failed: {query['error']}"

    def n(name: str) -> int:
        value = str(query.get(name, "0"))
        return int(value) if value.isdigit() else 0

    return (
        f"{n('redriven')} redriven; {n('already')} redriven before, passed over; "
        f"{n('empty')} with nothing to send"
    )


def _local_path(value: Any, default: str) -> str:
    """A path of this server to go back to (never another site: no scheme, no host)."""
    text = str(value or "")
    parts = urlsplit(text)
    if not text.startswith("/") or text.startswith("//") or parts.scheme or parts.netloc:
        return default
    return parts.path


@web.middleware
async def _headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """No scripts, no framing, no form posted elsewhere, no referrer sent to other sites."""
    response = await handler(request)
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'",
    )
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _same_site(request: web.Request) -> None:
    """Refuse a POST sent by another site's page (the server has no login to protect it)."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        raise web.HTTPForbidden(text="cross-site request refused")
    origin = request.headers.get("Origin")
    if origin is not None and urlsplit(origin).netloc != request.host:
        raise web.HTTPForbidden(text="cross-site request refused")


@dataclass
class Sources:
    """Where the pages read what the status table does not hold (replaceable in tests)."""

    health: Callable[[], list[GroupHealth]] = read_health
    dead_letters: Callable[[], DeadLetters] = read_dead_letters
    redrive: Callable[[RedriveRequest], dlq.Redrive] = run_redrive


class StatusPages:
    def __init__(self, table: StatusTable, sources: Sources) -> None:
        self.table = table
        self.sources = sources
        self.health = Cached(sources.health, HEALTH_TTL_S)
        self.letters = Cached(sources.dead_letters, DLQ_TTL_S)
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("ledgerstream", "templates/ui"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            finalize=_scrub,
        )
        self.env.globals.update(nav=NAV, money=amount, object_href=object_href, table=table)
        self.env.filters["counted"] = _counted

    def render(self, name: str, http_status: int = 200, **context: Any) -> web.Response:
        context.setdefault("query", "")
        context.setdefault("here", "")
        html = self.env.get_template(name).render(**context)
        return web.Response(
            text=html, status=http_status, content_type="text/html", charset="utf-8"
        )

    def _row(self, view: ObjectView) -> dict[str, Any]:
        return {
            "stripe_id": view.stripe_id,
            "href": object_href(view.stripe_id),
            "state": view.state,
            "at": _short(view.last_at),
            "latest": _latest(view),
        }

    # ----------------------------------------------------------------- handlers
    async def overview(self, request: web.Request) -> web.Response:
        state = request.query.get("state") or None
        if state is not None and state not in STATES:
            raise web.HTTPBadRequest(text=f"no state {state!r}; states: {', '.join(STATES)}")
        health = await self.health.get(wait=OVERVIEW_HEALTH_WAIT_S)
        return self.render(
            "overview.html",
            title="Overview",
            here="/",
            state=state,
            states=STATES,
            counts={s: self.table.counts.get(s, 0) for s in STATES},
            total=len(self.table.objects),
            recent=[self._row(o) for o in self.table.recent(state)],
            health=health,
            health_error=self.health.error,
        )

    async def search(self, request: web.Request) -> web.Response:
        query = request.query.get("q", "").strip()
        if not query:
            raise web.HTTPSeeOther("/")
        if query in self.table.objects:
            raise web.HTTPSeeOther(object_href(query))
        found = self.table.search(query)
        if len(found) == 1:
            raise web.HTTPSeeOther(object_href(found[0].stripe_id))
        return self.render(
            "search.html",
            title=f"Search {query}",
            query=query,
            found=[self._row(o) for o in found],
        )

    async def object(self, request: web.Request) -> web.Response:
        stripe_id = request.match_info["stripe_id"]
        view = self.table.get(stripe_id)
        rows = []
        for e in view.ordered() if view else []:
            label, text, link = _entry_text(e)
            rows.append(
                {
                    "label": label,
                    "cls": e.stage,
                    "at": _short(e.at),
                    "text": text,
                    "link": link,
                    "dlq": e.fields.get("dlq") if e.stage == "failed" else None,
                }
            )
        payout = payout_view(view) if view is not None and view.is_payout else None
        return self.render(
            "object.html",
            title=stripe_id,
            query=stripe_id,
            here=object_href(stripe_id),
            stripe_id=stripe_id,
            state=view.state if view else "unknown",
            rows=rows,
            payout=payout,
            notice=_redrive_notice(request.query),
            http_status=404 if view is None else 200,
        )

    async def payouts(self, request: web.Request) -> web.Response:
        shown = []
        for p in self.table.payouts():
            shown.append(
                {
                    **p.__dict__,
                    "href": object_href(p.stripe_id),
                    "at": _short(p.last_at),
                    "matches": p.matches,
                }
            )
        return self.render("payouts.html", title="Payouts", here="/payouts", payouts=shown)

    async def dead_letters(self, request: web.Request) -> web.Response:
        data = await self.letters.get()
        groups = []
        total = waiting = 0
        if data is not None:
            done = data.done
            total = len(data.letters)
            waiting = sum(1 for x in data.letters if x.ref not in done)
            by_group: dict[tuple[str, str], list[dlq.DeadLetter]] = defaultdict(list)
            for letter in data.letters:
                by_group[(letter.source, letter.error_class)].append(letter)
            for row in dlq.summary(data.letters, done):
                letters = sorted(
                    by_group[(row["topic"], row["error_class"])],
                    key=lambda x: x.timestamp_ms,
                    reverse=True,
                )
                shown = letters[:LETTERS_PER_GROUP]
                groups.append(
                    {
                        **row,
                        "oldest": f"{row['oldest']:%Y-%m-%d %H:%M:%S} UTC",
                        "newest": f"{row['newest']:%Y-%m-%d %H:%M:%S} UTC",
                        "more": len(letters) - len(shown),
                        "letters": [
                            {
                                "ref": x.ref,
                                "at": f"{x.time:%Y-%m-%d %H:%M:%S}",
                                "ids": sorted(x.stripe_ids()),
                                "reason": x.reason,
                                "details": dlq.describe(x, done),
                                "redriven": _short(str(done[x.ref].get("at", "")))
                                if x.ref in done
                                else None,
                                "redrivable": x.redrivable,
                            }
                            for x in shown
                        ],
                    }
                )
        return self.render(
            "dlq.html",
            title="Dead letters",
            here="/dlq",
            groups=groups,
            total=total,
            waiting=waiting,
            notice=_redrive_notice(request.query),
            dlq_error=self.letters.error,
        )

    async def redrive(self, request: web.Request) -> web.Response:
        _same_site(request)
        form = await request.post()

        def text(name: str) -> str | None:
            value = form.get(name)
            return (str(value).strip() or None) if value is not None else None

        wanted = RedriveRequest(
            refs=tuple(str(v) for v in form.getall("ref", [])),
            topic=text("topic"),
            error_class=text("error_class"),
            stripe_id=text("stripe_id"),
            everything=form.get("all") == "1",
        )
        if not (wanted.narrowed or wanted.everything):
            raise web.HTTPBadRequest(text="say which dead letters: ref, topic, error_class, …")
        back = _local_path(form.get("back"), "/dlq")
        try:
            result = await asyncio.to_thread(self.sources.redrive, wanted)
        except Exception as exc:  # noqa: BLE001 - shown to the person who pressed the button
            log.exception("redrive %s failed", wanted)
            raise web.HTTPSeeOther(
                f"{back}?{urlencode({'redriven': 0, 'error': redact.scrub(str(exc))})}"
            ) from None
        finally:
            self.letters.clear()
        log.info(
            "redrive from the status page (%s): %d sent, %d redriven before, %d empty",
            wanted,
            len(result.sent),
            len(result.already),
            len(result.empty),
        )
        counts = {
            "redriven": len(result.sent),
            "already": len(result.already),
            "empty": len(result.empty),
        }
        raise web.HTTPSeeOther(f"{back}?{urlencode(counts)}")

    async def health_page(self, request: web.Request) -> web.Response:
        health = await self.health.get()
        return self.render(
            "health.html",
            title="Health",
            here="/health",
            health=health,
            health_error=self.health.error,
            objects=len(self.table.objects),
            status_topic=status.topic(),
        )

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(self, request: web.Request) -> web.Response:
        """Ready once the status table has read the topic up to where it ended at start."""
        if self.table.caught_up:
            return web.Response(text="ready\n")
        return web.Response(status=503, text="reading the status topic\n")


def make_app(
    table: StatusTable | None = None, sources: Sources | None = None, feed: bool = True
) -> web.Application:
    """The status page; with ``feed``, a task reads the status topic into ``table``."""
    redact.add(redact.configured_secrets())
    table = table if table is not None else StatusTable()
    pages = StatusPages(table, sources or Sources())
    app = web.Application(middlewares=[_headers])
    app.router.add_get("/", pages.overview)
    app.router.add_get("/search", pages.search)
    app.router.add_get(r"/object/{stripe_id:.+}", pages.object)
    app.router.add_get("/payouts", pages.payouts)
    app.router.add_get("/dlq", pages.dead_letters)
    app.router.add_post("/dlq/redrive", pages.redrive)
    app.router.add_get("/health", pages.health_page)
    app.router.add_get("/healthz", pages.healthz)
    app.router.add_get("/readyz", pages.readyz)
    if feed:

        async def reading(app: web.Application) -> Any:
            reader = StatusFeed(table)
            task = asyncio.create_task(reader.run())
            yield
            reader.stop()
            await task

        app.cleanup_ctx.append(reading)
    return app


def serve(host: str, port: int) -> None:
    log.info("status page on http://%s:%d/ (no authentication: keep it private)", host, port)
    web.run_app(make_app(), host=host, port=port, print=None, access_log=None)
