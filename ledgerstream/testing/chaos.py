"""The chaos suite: a whole merchant history through the whole pipeline, with kills and faults,
compared with an undisturbed run of the same history.

Each run has its own Kafka broker (same jars as the local stack, own ports and data, so it can
be killed), its own topics, groups and emulator data, and a Stripe double serving the history.
The history's events arrive as signed webhooks, shuffled, a quarter of them twice, each retried
as Stripe retries until it is answered 200.

The undisturbed run: one instance of each component, no faults. Each chaos round: two processor
workers and two NetSuite sinks (one group each), the emulator failing 20 % of requests
transiently (429, 503), committing 5 % of writes but dropping the answer, sending spurious 401s
and 2-second bursts of them; and at random moments one component is killed with SIGKILL and
restarted (webhook, router, payout contents, processor worker, NetSuite sink, Stripe metadata
writer, or the broker). A round passes when NetSuite holds exactly the undisturbed run's records
(same bodies, internal ids and timestamps aside; references compared by what they point at, no
record twice) and Stripe holds the same back-references; otherwise it fails and prints the
difference.

``python -m ledgerstream.testing.chaos --rounds 20`` (``make chaos``) runs the full suite and
prints its figures; ``tests/integration/test_chaos.py`` runs a reduced one.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from ledgerstream import settings
from ledgerstream.stack import Kafka
from ledgerstream.stripe_records import route
from ledgerstream.testing.fixtures import signed
from ledgerstream.testing.generator import History, Scenario, generate
from ledgerstream.testing.pipeline import AppThread, Pipeline, free_broker_ports, free_port
from ledgerstream.testing.reference import reference_booking
from ledgerstream.testing.stripe_double import StripeDouble

KILLABLE = ("webhook", "router", "payouts", "processor", "sink", "metadata", "broker")
COMMANDS = {
    "webhook": ("producer", "webhook"),
    "router": ("producer", "route"),
    "payouts": ("producer", "payout-contents"),
    "processor": ("processor", "worker"),
    "processor-2": ("processor", "worker"),
    "sink": ("sink", "netsuite"),
    "sink-2": ("sink", "netsuite"),
    "metadata": ("sink", "stripe-metadata"),
}
# a log line (after a restart) that shows the component is working again
READY_MARK = {
    "router": "router: partitions assigned",
    "payouts": "payout-contents: partitions assigned",
    "sink": "netsuite-sink: partitions assigned",
    "sink-2": "netsuite-sink: partitions assigned",
    "metadata": "stripe-metadata: partitions assigned",
    "processor": "Worker]: Ready",
    "processor-2": "Worker]: Ready",
}
FAULTS = {
    "LEDGER_EMULATOR_ERRORS": "429=0.1,503=0.1",
    "LEDGER_EMULATOR_DROP_AFTER_COMMIT_RATE": "0.05",
    "LEDGER_EMULATOR_SPURIOUS_401_RATE": "0.01",
    "LEDGER_EMULATOR_LATENCY_MS": "20",
    "LEDGER_EMULATOR_LATENCY_SIGMA": "0.5",
}
SMALL = Scenario(
    seed=11,
    customers=4,
    months=2,
    settlement_currencies=("usd", "jpy"),
    refund_rate=0.2,
    dispute_rate=0.15,
    credit_note_rate=0.2,
    credit_note_void_rate=0.3,
)
FULL = Scenario(
    seed=12,
    customers=10,
    months=3,
    settlement_currencies=("usd", "jpy"),
    refund_rate=0.2,
    dispute_rate=0.1,
    credit_note_rate=0.2,
    credit_note_void_rate=0.3,
)
DELIVERY_S = 20.0  # how long the webhooks of one run take to arrive
BANKS = {"LEDGER_NETSUITE_BANK_ACCOUNT_IDS": '{"USD": "102", "JPY": "107"}'}


@dataclass
class RoundResult:
    name: str
    kills: list[str] = field(default_factory=list)
    exits: list[str] = field(default_factory=list)  # components that stopped by themselves
    recovery_s: dict[str, list[float]] = field(default_factory=dict)
    webhooks: Counter[int] = field(default_factory=Counter)
    faults: dict[str, int] = field(default_factory=dict)
    records: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    different: list[str] = field(default_factory=list)
    backrefs_missing: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.different or self.backrefs_missing)


# ------------------------------------------------------------------ comparison
def normalized(records: list[dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    """Records by ``type/externalId`` with internal ids replaced by what they point at."""
    by_id = {str(r["id"]): f"{r['type']}/{r.get('externalId')}" for r in records}

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) <= {"id", "refName"} and str(value.get("id")) in by_id:
                return {"ref": by_id[str(value["id"])]}
            return {k: walk(v) for k, v in value.items() if k not in IGNORED}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    out: dict[str, Any] = {}
    twice = []
    for r in records:
        key = f"{r['type']}/{r.get('externalId')}"
        if key in out:
            twice.append(key)
        out[key] = walk(r)
    return out, twice


IGNORED = {"id", "createdDate", "lastModifiedDate", "version", "links", "tranId"}


def backrefs(double: StripeDouble, records: list[dict[str, Any]]) -> dict[str, str]:
    """``<stripe id>.<metadata key>`` → the record it names, for every object of the history."""
    by_id = {str(r["id"]): f"{r['type']}/{r.get('externalId')}" for r in records}
    found = {}
    for oid, obj in double.objects.items():
        for key, value in (obj.get("metadata") or {}).items():
            if key.startswith("netsuite_"):
                found[f"{oid}.{key}"] = by_id.get(str(value), f"unknown internal id {value}")
    return found


# ------------------------------------------------------------------ one run
class Run:
    """One pipeline with its own broker, fed one history by webhooks."""

    def __init__(
        self, workdir: Path, history: History, *, chaos: bool, seed: int, brokers: int = 1
    ):
        self.workdir = workdir
        self.history = history
        self.chaos = chaos
        self.rnd = random.Random(seed)
        self.double = StripeDouble(history)
        self.stripe = AppThread(self.double.app())
        base = free_broker_ports(brokers)
        cfg = settings.StackSettings(
            stack_state_dir=workdir / "stack",
            kafka_port=base,
            kafka_controller_port=base + 1,
            kafka_brokers=brokers,
        )
        self.nodes = [Kafka(cfg, n) for n in range(1, brokers + 1)]
        self.bootstrap = cfg.kafka_bootstrap()
        env = {
            **BANKS,
            "LEDGER_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "LEDGER_STRIPE_API_BASE": self.stripe.url,
            "LEDGER_STRIPE_MAX_REQUESTS_PER_S": "1000",
            "LEDGER_TOPIC_REPLICATION_FACTOR": "3" if brokers >= 3 else "1",
            **({**FAULTS, "LEDGER_EMULATOR_SEED": str(seed)} if chaos else {}),
        }
        self.pipe = Pipeline(workdir / "run", extra_env=env)
        self.ports = {"processor": self.pipe.worker_port, "processor-2": free_port()}
        self.result = RoundResult(workdir.name)
        self.delivered = threading.Event()
        self.wanted_backrefs = 0  # how many back-references the undisturbed run must see
        self.failure: str | None = None

    def component_env(self, name: str) -> dict[str, str]:
        if name.startswith("processor"):
            return {"LEDGER_WORKER_WEB_PORT": str(self.ports[name])}
        return {}

    def start(self, name: str) -> None:
        self.pipe.start(name, *COMMANDS[name], env=self.component_env(name))

    def up(self) -> None:
        if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
            raise SystemExit("the chaos suite runs its own broker; unset KAFKA_BOOTSTRAP_SERVERS")
        for node in self.nodes:
            assert node.start()
        for node in self.nodes:
            node.wait_ready()
        self.pipe.cli("topics")
        self.pipe.start("emulator", "emulator", "netsuite")
        names = ["webhook", "router", "payouts", "processor", "sink", "metadata"]
        if self.chaos:
            names += ["processor-2", "sink-2"]
        for name in names:
            self.start(name)
        self.pipe.wait_http(f"http://127.0.0.1:{self.pipe.webhook_port}/readyz", "webhook")
        self.pipe.wait_http(f"{self.pipe.emulator_url}/_emulator/records", "emulator")

    def down(self) -> None:
        self.pipe.stop()
        for node in self.nodes:
            node.stop()
        self.stripe.close()

    # -------------------------------------------------------------- inputs
    def deliveries(self) -> list[dict[str, Any]]:
        events = [e for e in self.history.events if route(e["type"]) is not None]
        again = self.rnd.sample(events, len(events) // 4)
        order = events + again
        self.rnd.shuffle(order)
        return order

    def deliver(self) -> None:
        """Every event until it is answered 200, as Stripe retries (503 while Kafka is down),
        spread over ``DELIVERY_S`` so that the kills land while webhooks still arrive."""
        order = self.deliveries()
        pause = DELIVERY_S / max(1, len(order))
        for event in order:
            time.sleep(pause)
            while True:
                body, header = signed(event, self.pipe.webhook_secret)
                try:
                    status = requests.post(
                        self.pipe.webhook_url,
                        data=body,
                        headers={"Stripe-Signature": header, "Content-Type": "application/json"},
                        timeout=30,
                    ).status_code
                except requests.RequestException:
                    status = 0  # the webhook server is down (killed): Stripe retries
                self.result.webhooks[status] += 1
                if status == 200:
                    break
                if 400 <= status < 500:
                    self.failure = f"webhook answered {status} to a valid event {event['id']}"
                    return
                time.sleep(0.5)
        self.delivered.set()

    # -------------------------------------------------------------- disturbances
    def kill(self, name: str, gap_s: float) -> None:
        """kill -9 one component (or the broker), wait ``gap_s``, restart it."""
        self.result.kills.append(name)
        if name == "broker":  # one node of the cluster (the only one, or one of three)
            node = self.rnd.choice(self.nodes)
            pid = node.pid()
            if pid is not None:
                os.killpg(pid, signal.SIGKILL)
            time.sleep(gap_s)
            node.start()
            # recovered: the webhook takes events again (its /readyz asks the broker)
            threading.Thread(
                target=self._watch_recovery, args=(name, None, 0, time.monotonic()), daemon=True
            ).start()
            if len(self.nodes) > 1:
                self.wait_whole(node)
            return
        if name in ("processor", "sink") and self.rnd.random() < 0.5:
            name += "-2"  # one of the two instances of the group
        proc = self.pipe.procs[name]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        time.sleep(gap_s)
        log = self.pipe.run_dir / f"{name}.log"
        offset = log.stat().st_size if log.exists() else 0
        restarted = time.monotonic()
        self.start(name)
        threading.Thread(
            target=self._watch_recovery, args=(name, log, offset, restarted), daemon=True
        ).start()

    def wait_whole(self, node: Kafka, timeout: float = 180) -> None:
        """One broker at a time, as in a rolling restart: the next kill waits until the
        restarted broker is back in the cluster and every partition is fully in sync again.
        Without this a second broker died while the first was still starting (two of three
        down: no controller quorum, partitions below ``min.insync.replicas``), and a webhook
        got a 503 for an outage the suite itself had made."""
        node.wait_ready()
        node.wait_in_sync(timeout)

    def _watch_recovery(self, name: str, log: Path | None, offset: int, since: float) -> None:
        deadline = since + 300
        kind = name.removesuffix("-2")
        while time.monotonic() < deadline:
            if name in ("webhook", "broker") or log is None:
                try:
                    url = f"http://127.0.0.1:{self.pipe.webhook_port}/readyz"
                    if requests.get(url, timeout=2).ok:
                        break
                except requests.RequestException:
                    pass
            else:
                with open(log, "rb") as f:
                    f.seek(offset)
                    if READY_MARK[name].encode() in f.read():
                        break
            time.sleep(0.1)
        else:
            return
        self.result.recovery_s.setdefault(kind, []).append(time.monotonic() - since)

    def wait_started(self, timeout: float = 180) -> None:
        """Kills start once every processor worker is up: a faust worker that loses its broker
        in the seconds in which it connects and declares its topics exits (its restart waits
        for the broker; see docs/reliability.md)."""
        deadline = time.monotonic() + timeout
        names = [n for n in self.pipe.procs if n.startswith("processor")]
        while time.monotonic() < deadline:
            if all(READY_MARK[n] in self.pipe.log(n) for n in names):
                return
            time.sleep(0.5)
        raise TimeoutError(f"processor workers not ready after {timeout:.0f}s")

    def bursts(self, stop: threading.Event) -> None:
        """2-second bursts of spurious 401s from the emulator, now and then."""
        while not stop.wait(self.rnd.uniform(3, 8)):
            try:
                requests.post(
                    f"{self.pipe.emulator_url}/_emulator/behaviour",
                    json={"spurious_401_burst_s": 2},
                    timeout=5,
                )
            except requests.RequestException:
                pass

    # -------------------------------------------------------------- the run
    def records(self) -> list[dict[str, Any]]:
        return self.pipe.records()

    def execute(
        self,
        kills: list[str],
        expected: tuple[dict[str, Any], dict[str, str]] | None,
        wanted: set[str],
        timeout: float,
    ) -> tuple[dict[str, Any], dict[str, str]]:
        started = time.monotonic()
        self.up()
        stop = threading.Event()
        feeder = threading.Thread(target=self.deliver, daemon=True)
        feeder.start()
        if self.chaos:
            threading.Thread(target=self.bursts, args=(stop,), daemon=True).start()
        try:
            self.wait_started()
            for name in kills:
                time.sleep(self.rnd.uniform(2, 8))
                self.kill(name, gap_s=self.rnd.uniform(0.5, 3))
            state, refs = self.settle(expected, wanted, timeout, feeder)
        finally:
            stop.set()
            self.result.seconds = time.monotonic() - started
            try:
                self.result.faults = dict(self.pipe.emulator_stats().get("faults", {}))
            except requests.RequestException:
                pass
            self.down()
        return state, refs

    def settle(
        self,
        expected: tuple[dict[str, Any], dict[str, str]] | None,
        wanted: set[str],
        timeout: float,
        feeder: threading.Thread,
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """Wait until NetSuite holds what it should (the baseline, or every wanted record with
        its back-references, unchanged for a few seconds); the last state seen."""
        deadline = time.monotonic() + timeout
        last: tuple[dict[str, Any], dict[str, str]] = ({}, {})
        stable_since = time.monotonic()
        while time.monotonic() < deadline:
            if self.failure:
                raise AssertionError(self.failure)
            for name, proc in list(self.pipe.procs.items()):
                if proc.poll() is not None:
                    if name not in COMMANDS:
                        raise RuntimeError(f"{name} exited with {proc.returncode}; see its log")
                    # as a supervisor (systemd, Kubernetes) would: restart it, and count it
                    self.result.exits.append(f"{name} ({proc.returncode})")
                    self.start(name)
            try:
                records = self.records()
            except requests.RequestException:
                time.sleep(1)
                continue
            state, twice = normalized(records)
            refs = backrefs(self.double, records)
            self.result.duplicated = twice
            if (state, refs) != last:
                last, stable_since = (state, refs), time.monotonic()
            done = not feeder.is_alive()
            if expected is not None:
                if done and state == expected[0] and refs == expected[1]:
                    return state, refs
            elif done and wanted <= set(state) and time.monotonic() - stable_since > 5:
                if len(refs) >= self.wanted_backrefs:
                    return state, refs
            time.sleep(1)
        return last


def compare(result: RoundResult, baseline: tuple[dict, dict], got: tuple[dict, dict]) -> None:
    want_records, want_refs = baseline
    records, refs = got
    result.records = len(records)
    result.lost = sorted(set(want_records) - set(records))
    result.different = sorted(
        k for k in set(want_records) & set(records) if want_records[k] != records[k]
    )
    result.backrefs_missing = sorted(
        k for k in set(want_refs) | set(refs) if want_refs.get(k) != refs.get(k)
    )
    extra = sorted(set(records) - set(want_records))
    result.different += [f"{k} (not in the undisturbed run)" for k in extra]


def explain(result: RoundResult, baseline: tuple[dict, dict], got: tuple[dict, dict]) -> str:
    lines = [f"round {result.name}: kills {result.kills}"]
    for what in ("lost", "duplicated", "different", "backrefs_missing"):
        items = getattr(result, what)
        if items:
            lines.append(f"  {what}: {items[:10]}")
    for key in result.different[:3]:
        if key in baseline[0] and key in got[0]:
            lines.append(f"  {key}: undisturbed {json.dumps(baseline[0][key], default=str)}")
            lines.append(f"  {key}: this round  {json.dumps(got[0][key], default=str)}")
    return "\n".join(lines)


# ------------------------------------------------------------------ the suite
def plan(
    rounds: int, kills_per_round: int, rnd: random.Random, killable: tuple[str, ...] = KILLABLE
) -> list[list[str]]:
    """Which components each round kills: every one as often as the others, in random order."""
    needed = rounds * kills_per_round
    pool = (list(killable) * (needed // len(killable) + 1))[:needed]
    rnd.shuffle(pool)
    return [pool[i * kills_per_round : (i + 1) * kills_per_round] for i in range(rounds)]


def run_suite(
    workdir: Path,
    scenario: Scenario,
    rounds: int,
    kills_per_round: int,
    seed: int = 1,
    timeout: float = 600,
    echo: Any = print,
    brokers: int = 1,
    killable: tuple[str, ...] = KILLABLE,
) -> tuple[RoundResult, list[RoundResult]]:
    history = generate(scenario)
    book = reference_booking(history, settings.AccountingSettings(**_banks()))
    wanted = set(book.commands)
    refs_wanted = {(c.stripe_id, c.metadata_key) for c in book.commands.values() if c.metadata_key}
    echo(
        f"history: {len(history.events)} events, {len(wanted)} NetSuite records, "
        f"{len(refs_wanted)} back-references"
    )
    base = Run(workdir / "undisturbed", history, chaos=False, seed=seed, brokers=brokers)
    base.wanted_backrefs = len(refs_wanted)
    baseline = base.execute([], None, wanted, timeout)
    missing = sorted(wanted - set(baseline[0]))
    if missing or len(baseline[1]) < len(refs_wanted):
        raise AssertionError(
            f"the undisturbed run did not book the reference: missing {missing[:10]}, "
            f"{len(baseline[1])} of {len(refs_wanted)} back-references"
        )
    base.result.records = len(baseline[0])
    echo(f"undisturbed: {len(baseline[0])} records in {base.result.seconds:.0f}s")
    results = []
    rnd = random.Random(seed)
    for i, kills in enumerate(plan(rounds, kills_per_round, rnd, killable)):
        run = Run(
            workdir / f"round-{i + 1:02d}",
            history,
            chaos=True,
            seed=seed * 1000 + i,
            brokers=brokers,
        )
        got = run.execute(kills, baseline, wanted, timeout)
        compare(run.result, baseline, got)
        results.append(run.result)
        status = "ok" if run.result.ok else "FAILED"
        echo(
            f"round {i + 1}: {status}, killed {run.result.kills}, exited {run.result.exits}, "
            f"recovery {_rounded(run.result.recovery_s)}, "
            f"{run.result.seconds:.0f}s"
        )
        if not run.result.ok:
            echo(explain(run.result, baseline, got))
    return base.result, results


def _rounded(values: dict[str, list[float]]) -> dict[str, list[float]]:
    return {k: [round(x, 1) for x in v] for k, v in values.items()}


def _banks() -> dict[str, Any]:
    return {"netsuite_bank_account_ids": json.loads(BANKS["LEDGER_NETSUITE_BANK_ACCOUNT_IDS"])}


def summary(base: RoundResult, results: list[RoundResult]) -> str:
    kills = Counter(k for r in results for k in r.kills)
    faults: Counter[str] = Counter()
    webhooks: Counter[int] = Counter()
    recovery: dict[str, list[float]] = {}
    for r in results:
        faults.update(r.faults)
        webhooks.update(r.webhooks)
        for k, v in r.recovery_s.items():
            recovery.setdefault(k, []).extend(v)
    lines = [
        f"rounds: {len(results)} ({sum(r.ok for r in results)} passed)",
        f"kills per component: {dict(sorted(kills.items()))}",
        f"components that stopped by themselves (restarted): "
        f"{[e for r in results for e in r.exits] or 'none'}",
        f"faults injected by the emulator: {dict(sorted(faults.items()))}",
        f"webhook answers (status: count, retries included): {dict(sorted(webhooks.items()))}",
        f"records per run: {base.records}",
        f"lost: {sum(len(r.lost) for r in results)}, "
        f"duplicated: {sum(len(r.duplicated) for r in results)}, "
        f"different: {sum(len(r.different) for r in results)}, "
        f"back-references wrong or missing: {sum(len(r.backrefs_missing) for r in results)}",
        "recovery after restart (s), median / max:",
    ]
    for name, values in sorted(recovery.items()):
        lines.append(
            f"  {name}: {statistics.median(values):.1f} / {max(values):.1f} (n={len(values)})"
        )
    return "\n".join(lines)


def main() -> None:
    os.environ.setdefault("LEDGER_PROFILE", "local")  # the emulator's set-up, stripe-mock's key
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--kills-per-round", type=int, default=1)
    parser.add_argument("--size", choices=("small", "full"), default="full")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--brokers", type=int, default=1, help="3: a three-node cluster; kills hit one at a time"
    )
    parser.add_argument(
        "--only", default="", help="comma-separated components to kill (default: all)"
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ledgerstream-chaos"))
    args = parser.parse_args()
    from ledgerstream import stack

    stack.up(echo=lambda line: print(f"[stack] {line}"))
    scenario = FULL if args.size == "full" else SMALL
    base, results = run_suite(
        args.workdir / time.strftime("%Y%m%dT%H%M%S"),
        scenario,
        args.rounds,
        args.kills_per_round,
        seed=args.seed,
        brokers=args.brokers,
        killable=tuple(args.only.split(",")) if args.only else KILLABLE,
    )
    print(summary(base, results))
    raise SystemExit(0 if all(r.ok for r in results) else 1)


if __name__ == "__main__":
    main()
