"""``ledgerstream``: one command line for every component, the local stack and the demo.

Every option has a flag, a default and an environment variable (``LEDGER_…``); see ``--help``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from ledgerstream import settings


def _logging(level: str) -> None:
    from ledgerstream import logs, redact

    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if settings.ObservabilitySettings().log_format == "json":
        logs.use_json(logging.getLogger().handlers)
    # secrets never reach a log line, whatever the level (see ledgerstream.redact)
    redact.install(redact.configured_secrets())
    # an outage must not bury the log under one line per reconnect attempt
    logs.install()


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "LEDGER"}
)
@click.option("--log-level", default="info", show_default=True, envvar="LEDGER_LOG_LEVEL")
def main(log_level: str) -> None:
    """Stripe → Kafka → NetSuite, in real time."""
    _logging(log_level)


# --------------------------------------------------------------------------- stack
@main.group()
def stack() -> None:
    """The embedded local stack: Apache Kafka (KRaft), Apicurio Registry, stripe-mock."""


@stack.command("up")
@click.option(
    "--brokers",
    type=click.IntRange(1, 9),
    default=None,
    help="Kafka brokers (KRaft, each also a controller); 3 gives replication factor 3 and "
    "min.insync.replicas=2 (LEDGER_KAFKA_BROKERS; export it for the components too)",
)
def stack_up(brokers: int | None) -> None:
    """Fetch (cached), start and wait until every server answers a real request."""
    import os

    from ledgerstream import stack as local_stack

    if brokers is not None:
        os.environ["LEDGER_KAFKA_BROKERS"] = str(brokers)
        for cached in (settings.stack, settings.kafka):
            cached.cache_clear()
    try:
        started = local_stack.up(echo=click.echo)
    except local_stack.StackError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"stack up (started now: {', '.join(started) or 'nothing'}); "
        f"state in {settings.stack().stack_state_dir}"
    )


@stack.command("down")
@click.option(
    "--wipe",
    is_flag=True,
    help="then delete the state directory (the local stack's topics, schemas, logs); the "
    "download cache stays",
)
def stack_down(wipe: bool) -> None:
    """Stop exactly the processes `stack up` started."""
    import shutil

    from ledgerstream import stack as local_stack

    left = local_stack.down(echo=click.echo)
    if left:
        raise click.ClickException("processes of the stack are still running:\n" + "\n".join(left))
    if wipe:
        state = settings.stack().stack_state_dir
        if state.exists():
            try:
                shutil.rmtree(state)
            except OSError as exc:
                raise click.ClickException(f"could not remove {state}: {exc}") from exc
        click.echo(f"removed {state}")
        data = Path(settings.ProcessorSettings().processor_data_dir)
        if data.exists():  # a production setting: not the stack's to delete
            click.echo(
                f"kept the processor's tables in {data}: delete them too if a worker "
                "ran against this stack's topics"
            )


@stack.command("status")
def stack_status() -> None:
    """Each server, whether it answers, and its version. Exit 1 if one does not answer."""
    from ledgerstream import stack as local_stack

    rows = local_stack.status()
    for name, ok, detail in rows:
        click.echo(f"{name:12} {'up  ' if ok else 'DOWN'} {detail}")
    if not all(ok for _, ok, _ in rows):
        sys.exit(1)


# --------------------------------------------------------------------------- topics
@main.command("topics")
def topics_cmd() -> None:
    """Create every topic of the pipeline (idempotent) and register every schema."""
    from ledgerstream import topic_admin

    for line in [*topic_admin.ensure_all(), *topic_admin.register_schemas()]:
        click.echo(line)


# --------------------------------------------------------------------------- check
@main.command("check")
@click.option(
    "--timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="seconds each network request of the check may take",
)
def check_cmd(timeout: float) -> None:
    """Preflight against the configured NetSuite, Stripe, Kafka and schema registry: one row per
    check, ✔ or ✖ with the fix. Exit 1 if any row is ✖."""
    from ledgerstream import preflight

    # the table is the output: the HTTP clients' line per request would only repeat it
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        for name in ("httpx", "httpx2", "stripe"):
            logging.getLogger(name).setLevel(logging.WARNING)
    rows = preflight.run(timeout=timeout)
    click.echo(preflight.render(rows))
    sys.exit(preflight.exit_status(rows))


# --------------------------------------------------------------------------- producer
@main.group()
def producer() -> None:
    """Stripe-event producer."""


@producer.command("webhook")
@click.option("--host", default="127.0.0.1", show_default=True, envvar="LEDGER_WEBHOOK_HOST")
@click.option("--port", default=8000, show_default=True, envvar="LEDGER_WEBHOOK_PORT")
def producer_webhook(host: str, port: int) -> None:
    """Receive signed Stripe webhooks and publish them to the stripe.* topics."""
    from ledgerstream.producers.webhook import serve

    serve(host, port)


def _when(value: str) -> int:
    """A date (YYYY-MM-DD, UTC midnight), an ISO time, or unix seconds."""
    from datetime import UTC, datetime

    if value.isdigit():
        return int(value)
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


@producer.command("poll")
@click.option("--once", is_flag=True, help="one catch-up pass, then exit")
@click.option(
    "--interval",
    default=60.0,
    show_default=True,
    envvar="LEDGER_POLL_INTERVAL_S",
    help="seconds between passes",
)
@click.option(
    "--since",
    default=None,
    envvar="LEDGER_POLL_SINCE",
    help="start here when no cursor is stored yet (default: 30 days back)",
)
def producer_poll(once: bool, interval: float, since: str | None) -> None:
    """Catch up from the Events API after the last event seen (cursor kept in Kafka)."""
    import signal

    from ledgerstream.bootstrap import Bootstrap
    from ledgerstream.producers.cursor import CursorStore
    from ledgerstream.producers.poller import CatchUpPoller, StopFlag, serve_metrics

    boot = Bootstrap()
    api = boot.stripe_api()  # first: stops if the Stripe key is unset
    publisher = boot.publisher()
    poller = CatchUpPoller(api, publisher, CursorStore())
    try:
        if once:
            click.echo(str(poller.poll_once(_when(since) if since else None)))
            return
        stop = StopFlag()
        signal.signal(signal.SIGTERM, stop.set)
        signal.signal(signal.SIGINT, stop.set)
        serve_metrics(poller, interval)
        poller.run(interval, stop)
    finally:
        publisher.close()


@producer.command("backfill")
@click.option("--from", "start", required=True, help="YYYY-MM-DD, ISO time or unix seconds")
@click.option("--to", "end", default=None, help="exclusive end (default: now)")
@click.option(
    "--kinds",
    default=",".join(
        ["customers", "invoices", "charges", "refunds", "disputes", "credit_notes", "payouts"]
    ),
    show_default=True,
    help="comma-separated list endpoints",
)
@click.option("--window-days", default=7, show_default=True, help="size of a created window")
@click.option("--progress/--no-progress", default=True, show_default=True)
@click.option(
    "--over",
    is_flag=True,
    help="start over, even if an earlier run of this backfill stopped part way",
)
@click.option(
    "--write-seconds",
    type=float,
    default=0.5,
    show_default=True,
    help="one NetSuite write's time, for the estimate of the writes the backfill brings",
)
def producer_backfill(
    start: str,
    end: str | None,
    kinds: str,
    window_days: int,
    progress: bool,
    over: bool,
    write_seconds: float,
) -> None:
    """Publish history from the list endpoints, for any period (beyond 30 days).

    Resumes after the last completed window when the same backfill (period, types, window
    size) stopped part way (its position is kept in Kafka)."""
    from ledgerstream.bootstrap import Bootstrap
    from ledgerstream.producers.backfill import backfill, progress_key
    from ledgerstream.producers.cursor import CursorStore

    boot = Bootstrap()
    api = boot.stripe_api()  # first: stops if the Stripe key is unset
    publisher = boot.publisher()
    cursors = CursorStore()
    chosen = [k.strip() for k in kinds.split(",") if k.strip()]
    first, last = _when(start), _when(end) if end else None
    if over:
        cursors.save(progress_key(first, last, chosen, window_days * 86400), {"complete": True})
    try:
        counts = backfill(
            api,
            publisher,
            first,
            last,
            chosen,
            window_s=window_days * 86400,
            progress=progress,
            cursors=cursors,
            write_s=write_seconds,
        )
    finally:
        publisher.close()
    click.echo(" ".join(f"{k}={v}" for k, v in sorted(counts.items())))


@producer.command("route")
def producer_route() -> None:
    """Turn raw stripe.events into the typed object topics, fetching what events lack."""
    from ledgerstream.producers.router import run

    run()


@producer.command("payout-contents")
def producer_payout_contents() -> None:
    """Fetch and publish the balance transactions of every paid automatic payout."""
    from ledgerstream.producers.payouts import run

    run()


@producer.command("replay")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
def producer_replay(path: str) -> None:
    """Publish Stripe Event objects from a JSON-lines file (one event per line)."""
    from ledgerstream.producers.publisher import EventPublisher
    from ledgerstream.producers.replay import replay_lines

    publisher = EventPublisher()
    try:
        with click.open_file(path) as lines:
            counts, problems = replay_lines(publisher, lines)
    finally:
        publisher.close()
    for number, reason in problems[:20]:
        click.echo(f"line {number}: {reason}", err=True)
    click.echo(" ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    if problems:
        sys.exit(1)


# the generator's hard cases of real accounts, each a --<name>-rate option of stripe-double
_RATES = {
    "long_invoice_rate": "share of generated invoices with 25 or 250 lines (Stripe embeds the "
    "first 10)",
    "individual_rate": "share of person-named customers marked netsuite_customer_type=individual",
    "out_of_band_rate": "share of emailed invoices the merchant marks paid outside Stripe",
    "uncaptured_rate": "share of one-off charges authorised first and captured later",
    "refund_failure_rate": "share of refunds that fail days later (the money comes back)",
    "payout_failure_rate": "share of paid payouts the bank returns days later",
    "blocked_rate": "share of customers kept out of NetSuite (netsuite_block_integration)",
    "second_charge_rate": "share of invoices paid by card that the customer pays a second time",
    "balance_credit_rate": "share of post-payment credit notes credited to the customer's "
    "balance (taken off the next invoices) instead of refunded",
}


def _rate_options(command: Any) -> Any:
    for name, text in reversed(_RATES.items()):
        option = "--" + name.replace("_", "-")
        command = click.option(
            option, name, default=0.0, show_default=True, type=click.FloatRange(0, 1), help=text
        )(command)
    return command


@main.command("stripe-double")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=12180, show_default=True, envvar="LEDGER_STRIPE_DOUBLE_PORT")
@click.option("--seed", default=1, show_default=True)
@click.option("--customers", default=5, show_default=True)
@click.option("--months", default=3, show_default=True)
@click.option("--rate-limit", default=None, type=float, help="requests/s before 429")
@_rate_options
@click.option(
    "--history",
    "recorded",
    default=None,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="serve this recorded history (events.jsonl, objects.jsonl, payout_contents/, "
    "invoice_lines/; see "
    "ledgerstream/testing/recorded.py) instead of a generated one",
)
@click.option(
    "--save",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="write the generated history there in the recorded layout, and exit",
)
def stripe_double_cmd(
    host: str,
    port: int,
    seed: int,
    customers: int,
    months: int,
    rate_limit: float | None,
    recorded: Path | None,
    save: Path | None,
    **rates: float,
) -> None:
    """Serve a Stripe history on the endpoints the pipeline uses: a generated one (tests, demo)
    or a recorded one (an export of your own account)."""
    from ledgerstream.testing import recorded as files
    from ledgerstream.testing.generator import Scenario, generate
    from ledgerstream.testing.stripe_double import serve

    if recorded is not None:
        history = files.load(recorded)
    else:
        options: dict[str, Any] = {"seed": seed, "customers": customers, "months": months}
        history = generate(Scenario(**{**options, **rates}))
    if save is not None:
        files.save(history, save)
        click.echo(f"{len(history.events)} events, {len(history.objects)} objects -> {save}")
        return
    serve(history, host, port, rate_limit)


# --------------------------------------------------------------------------- processor
@main.group()
def processor() -> None:
    """Stream processors (faust)."""


@processor.command("worker")
@click.option("--web-port", default=6066, show_default=True, envvar="LEDGER_WORKER_WEB_PORT")
def processor_worker(web_port: int) -> None:
    """Run one faust worker; start several with the same LEDGER_APP_ID to scale out."""
    from ledgerstream.processors.app import run_worker

    # the level given to ``ledgerstream --log-level`` (faust sets up its own handlers)
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()
    run_worker(web_port=web_port, loglevel=level)


# --------------------------------------------------------------------------- sinks
@main.group()
def sink() -> None:
    """Sinks: NetSuite writer and Stripe metadata writer."""


@sink.command("netsuite")
def sink_netsuite() -> None:
    """Write NetSuite commands as PUT eid: upserts; emit back-references."""
    from ledgerstream.sinks.netsuite import run

    run()


@sink.command("stripe-metadata")
def sink_stripe_metadata() -> None:
    """Store NetSuite internal ids in the Stripe objects' metadata."""
    from ledgerstream.sinks.stripe_metadata import run

    run()


# --------------------------------------------------------------------------- emulator
@main.group()
def emulator() -> None:
    """Stand-ins for external systems."""


@emulator.command("netsuite")
@click.option("--host", default="127.0.0.1", show_default=True, envvar="LEDGER_EMULATOR_HOST")
@click.option("--port", default=8095, show_default=True, envvar="LEDGER_EMULATOR_PORT")
@click.option(
    "--data",
    default=None,
    envvar="LEDGER_EMULATOR_DATA",
    help="file that keeps the emulator's records across restarts "
    "[default: netsuite-emulator.sqlite in the stack's state directory]",
)
@click.option(
    "--concurrency-limit",
    default=0,
    show_default=True,
    envvar="LEDGER_EMULATOR_CONCURRENCY_LIMIT",
    help="concurrent requests allowed (429 beyond); 0 = no limit",
)
@click.option(
    "--account-concurrency-limit",
    default=5,
    show_default=True,
    envvar="LEDGER_EMULATOR_ACCOUNT_CONCURRENCY_LIMIT",
    help="the account's limit that governanceLimits reports when --concurrency-limit is 0 "
    "(5: Standard service tier, no SuiteCloud Plus); reported, not enforced",
)
@click.option(
    "--integration-concurrency-limit",
    default=0,
    show_default=True,
    envvar="LEDGER_EMULATOR_INTEGRATION_CONCURRENCY_LIMIT",
    help="a limit allocated to the integration, as governanceLimits reports it; 0 = none",
)
@click.option(
    "--latency-ms", default=0.0, envvar="LEDGER_EMULATOR_LATENCY_MS", help="median latency"
)
@click.option(
    "--latency-sigma",
    default=0.0,
    envvar="LEDGER_EMULATOR_LATENCY_SIGMA",
    help="log-normal spread of the latency (0 = fixed)",
)
@click.option(
    "--errors",
    default="",
    envvar="LEDGER_EMULATOR_ERRORS",
    help="injected error statuses and their rates, e.g. 429=0.05,503=0.05",
)
@click.option("--spurious-401-rate", default=0.0, envvar="LEDGER_EMULATOR_SPURIOUS_401_RATE")
@click.option(
    "--drop-after-commit-rate",
    default=0.0,
    envvar="LEDGER_EMULATOR_DROP_AFTER_COMMIT_RATE",
    help="share of writes that commit and then lose their response",
)
@click.option(
    "--async-processors",
    default=2,
    show_default=True,
    envvar="LEDGER_EMULATOR_ASYNC_PROCESSORS",
    help="REST async processors running batch jobs, one job each (0: jobs stay pending)",
)
@click.option(
    "--async-item-ms",
    default=None,
    type=float,
    envvar="LEDGER_EMULATOR_ASYNC_ITEM_MS",
    help="time one batch item takes in a processor [default: drawn like a request's latency]",
)
@click.option("--token-ttl-s", default=3600, envvar="LEDGER_EMULATOR_TOKEN_TTL_S")
@click.option("--seed", default=None, type=int, envvar="LEDGER_EMULATOR_SEED")
def emulator_netsuite(
    host: str,
    port: int,
    data: str | None,
    concurrency_limit: int,
    account_concurrency_limit: int,
    integration_concurrency_limit: int,
    latency_ms: float,
    latency_sigma: float,
    errors: str,
    spurious_401_rate: float,
    drop_after_commit_rate: float,
    async_processors: int,
    async_item_ms: float | None,
    token_ttl_s: int,
    seed: int | None,
) -> None:
    """NetSuite REST record API emulator (TBA and OAuth 2.0, eid: upserts, limits, faults,
    governanceLimits)."""
    from ledgerstream.testing.netsuite_emulator.server import Behaviour, serve

    rates = {}
    for item in filter(None, (e.strip() for e in errors.split(","))):
        status, _, rate = item.partition("=")
        rates[status.strip()] = float(rate)
    behaviour = Behaviour(
        concurrency_limit=concurrency_limit,
        account_concurrency_limit=account_concurrency_limit,
        integration_concurrency_limit=integration_concurrency_limit,
        latency_ms=latency_ms,
        latency_sigma=latency_sigma,
        error_rates=rates,
        spurious_401_rate=spurious_401_rate,
        drop_after_commit_rate=drop_after_commit_rate,
        async_processors=async_processors,
        async_item_ms=async_item_ms,
        token_ttl_s=token_ttl_s,
        seed=seed,
    )
    if data is None:
        state = settings.stack().stack_state_dir
        state.mkdir(parents=True, exist_ok=True)
        data = str(state / "netsuite-emulator.sqlite")
    serve(host, port, data, behaviour)


# --------------------------------------------------------------------------- demo
@main.command("replay")
@click.option(
    "--group",
    "component",
    required=True,
    type=click.Choice(["router", "payouts", "processor", "sink", "metadata"]),
    help="the component whose consumer group to move",
)
@click.option("--from-beginning", is_flag=True, help="to the first record each partition holds")
@click.option("--to-offset", type=int, default=None, help="to this offset in each partition")
@click.option(
    "--to-time",
    default=None,
    help="to the first record at or after this time (ISO 8601, e.g. 2026-11-01T00:00Z; UTC "
    "when no zone is given)",
)
@click.option("--topic", default=None, help="only this input topic of the component")
@click.option("--partition", type=int, default=None, help="only this partition")
@click.option("--dry-run", is_flag=True, help="print the plan, move nothing")
@click.option(
    "--write-seconds",
    type=float,
    default=0.5,
    show_default=True,
    help="the time one NetSuite write takes, for the dry run's estimate (the sink's log "
    "shows yours: writes per second times LEDGER_NETSUITE_CONCURRENCY)",
)
@click.option(
    "--resync",
    is_flag=True,
    help="(--group processor) send every command of the records read again, also those sent "
    "before: after a NetSuite restore, to write its lost records again",
)
def replay_cmd(
    component: str,
    from_beginning: bool,
    to_offset: int | None,
    to_time: str | None,
    topic: str | None,
    partition: int | None,
    dry_run: bool,
    write_seconds: float,
    resync: bool,
) -> None:
    """Read a period again: move a component's consumer group to an offset or a time.

    Refused while the group has live members (stop the component's instances first). Replays
    write nothing twice: every NetSuite write is an upsert on the Stripe id."""
    from ledgerstream.offsets import GroupBusy, apply, estimate, forget_emitted, plan

    if sum((from_beginning, to_offset is not None, to_time is not None)) != 1:
        raise click.UsageError("give exactly one of --from-beginning, --to-offset, --to-time")
    if resync and component != "processor":
        raise click.UsageError(
            "--resync is for --group processor: the processor decides what is sent again "
            "(the sink writes every command it reads, a replay of it needs no --resync)"
        )
    when = _moment(to_time, "--to-time")
    try:
        group, moves = plan(
            component, to_offset=to_offset, to_time=when, topic=topic, partition=partition
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(f"consumer group {group}:")
    for m in moves:
        current = "none" if m.current is None else str(m.current)
        click.echo(
            f"  {m.topic}[{m.partition}]: {current} -> {m.target} "
            f"(holds {m.low}..{m.high}; {m.reread:+d} records to read again)"
        )
    total = sum(max(0, m.reread) for m in moves)
    click.echo(f"{total} records to read again")
    guess = estimate(component, total, resync, write_seconds)
    minutes = guess.seconds / 60
    click.echo(
        f"NetSuite writes to expect: up to {guess.writes} ({guess.basis}), about "
        f"{minutes:.1f} min at {settings.NetSuiteSettings().netsuite_concurrency} at once "
        f"and {write_seconds:g} s per write"
    )
    if dry_run:
        click.echo("dry run: nothing moved")
        return
    try:
        apply(group, moves, echo=click.echo)
    except GroupBusy as exc:
        click.echo(f"refused: {exc}", err=True)
        sys.exit(2)
    if resync:
        forgotten = forget_emitted()
        click.echo(
            f"re-sync: the processor forgot the {forgotten} commands it had sent; the records "
            "it reads again send theirs again"
        )
    click.echo("moved; start the component to read them")


def _moment(value: str | None, name: str) -> Any:
    """An ISO 8601 time (UTC when no zone is given), or None."""
    from datetime import UTC, datetime

    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=name) from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@main.group("dlq")
def dlq_group() -> None:
    """Dead letters: list them, show one, send them back to their topics (redrive)."""


@dlq_group.command("list")
def dlq_list_cmd() -> None:
    """Every dead-letter topic, grouped by source topic and error class."""
    from ledgerstream import dlq

    letters = dlq.read()
    done = dlq.redriven()
    rows = dlq.summary(letters, done)
    if not rows:
        click.echo("no dead letters")
        return
    for row in rows:
        click.echo(
            f"{row['topic']}  {row['error_class']}: {row['count']} "
            f"({row['redriven']} redriven), {row['oldest']:%Y-%m-%d %H:%M:%S} .. "
            f"{row['newest']:%Y-%m-%d %H:%M:%S} UTC"
        )
        click.echo(f"    latest: {row['example'][:200]}")
    waiting = sum(1 for x in letters if x.ref not in done)
    click.echo(f"{len(letters)} dead letters, {waiting} not redriven")


@dlq_group.command("show")
@click.argument("what")
def dlq_show_cmd(what: str) -> None:
    """Show one dead letter (WHAT: its ref, <dlq topic>:<partition>:<offset>, as list and
    redrive print it) or every dead letter of a Stripe id: headers decoded, payload
    pretty-printed, configured secrets masked."""
    from ledgerstream import dlq

    match = dlq.REF.match(what)
    letters = dlq.read([match["topic"]] if match else None)
    if match:
        chosen = [
            x
            for x in letters
            if (x.partition, x.offset) == (int(match["partition"]), int(match["offset"]))
        ]
    else:
        chosen = [x for x in letters if what in x.stripe_ids()]
    if not chosen:
        click.echo(f"no dead letter {what}", err=True)
        sys.exit(1)
    done = dlq.redriven()
    click.echo("\n\n".join(dlq.describe(x, done) for x in chosen))


@dlq_group.command("redrive")
@click.option("--all", "everything", is_flag=True, help="every dead letter not redriven yet")
@click.option("--topic", default=None, help="only those from this topic (e.g. netsuite.commands)")
@click.option("--error-class", default=None, help="only this error class (as list prints it)")
@click.option("--stripe-id", default=None, help="only those of this Stripe id")
@click.option("--since", default=None, help="only those dead-lettered at or after (ISO 8601)")
@click.option("--until", default=None, help="only those dead-lettered before (ISO 8601)")
@click.option("--ref", "refs", multiple=True, help="this one (<dlq topic>:<partition>:<offset>)")
@click.option("--dry-run", is_flag=True, help="say what would be sent, send nothing")
def dlq_redrive_cmd(
    everything: bool,
    topic: str | None,
    error_class: str | None,
    stripe_id: str | None,
    since: str | None,
    until: str | None,
    refs: tuple[str, ...],
    dry_run: bool,
) -> None:
    """Send dead letters back to the topic they came from, for the stage that refused them
    to read them again (after the fix). Each is sent once: a dead letter redriven before is
    passed over."""
    from ledgerstream import dlq

    narrowed = any(v is not None for v in (topic, error_class, stripe_id, since, until))
    if not (everything or narrowed or refs):
        raise click.UsageError(
            "say which: --all, --ref, or any of --topic, --error-class, --stripe-id, "
            "--since, --until"
        )
    select = dlq.Selection(
        topic, error_class, stripe_id, _moment(since, "--since"), _moment(until, "--until")
    )
    letters = [x for x in dlq.read() if select(x) and (not refs or x.ref in refs)]
    result = dlq.redrive(letters, echo=click.echo, dry_run=dry_run)
    if dry_run:
        for letter in result.sent:
            click.echo(f"would redrive {letter.ref} -> {letter.source} ({letter.error_class})")
    click.echo(
        f"{'would redrive' if dry_run else 'redriven'}: {len(result.sent)}; redriven before, "
        f"passed over: {len(result.already)}; nothing to send: {len(result.empty)}"
    )


@main.command("status")
@click.argument("stripe_id")
def status_cmd(stripe_id: str) -> None:
    """Where a Stripe object is: received (event ids and times), processed (or waiting, on
    what, since when), the NetSuite commands sent for it, written (record type, internal id,
    link to NetSuite), its back-reference in Stripe, or failed (why, and the redrive)."""
    from ledgerstream import status

    entries = status.read(stripe_id)
    for line in status.describe(stripe_id, entries):
        click.echo(line)
    if not entries:
        sys.exit(1)


@main.command("ui")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    envvar="LEDGER_UI_HOST",
    help="address to listen on (no authentication: keep it on loopback or behind a proxy)",
)
@click.option("--port", default=8088, show_default=True, envvar="LEDGER_UI_PORT")
def ui_cmd(host: str, port: int) -> None:
    """A status web page: search by Stripe id, recent objects by state, payouts and their
    deposits, dead letters with redrive buttons, each component's lag and members."""
    from ledgerstream.ui import serve

    serve(host, port)


@main.command("config-reference")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="write it to this file (default: print it)",
)
def config_reference_cmd(output: Path | None) -> None:
    """The configuration reference (docs/configuration.md): every setting, from the code."""
    from ledgerstream.config_reference import render

    text = render()
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text)
        click.echo(f"wrote {output}")


@main.command("demo")
@click.option(
    "--keep-running",
    is_flag=True,
    help="afterwards, serve the status page on the run until Ctrl-C",
)
@click.option(
    "--slice",
    "slice_",
    is_flag=True,
    help="instead of the month, four webhooks (customer, invoice, charge, paid) and the three "
    "NetSuite records they make, printed in full",
)
@click.option(
    "--merchant",
    is_flag=True,
    help="instead of the month, a small generated merchant with every hard case: prints every "
    "deposit and what went to suspense",
)
def demo_cmd(keep_running: bool, slice_: bool, merchant: bool) -> None:
    """The main job on the local stack: a merchant month of signed webhooks in, NetSuite
    records out, every payout reconciled, and an HTML report."""
    from ledgerstream.demo import run_demo, run_merchant_demo, run_slice_demo

    if merchant:
        sys.exit(run_merchant_demo(echo=click.echo))
    if slice_:
        sys.exit(run_slice_demo(keep_running=keep_running, echo=click.echo))
    sys.exit(run_demo(keep_running=keep_running, echo=click.echo))


if __name__ == "__main__":
    main()
