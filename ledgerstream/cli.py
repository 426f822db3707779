"""``ledgerstream``: one command line for every component, the local stack and the demo.

Every option has a flag, a default and an environment variable (``LEDGER_…``); see ``--help``.
"""

from __future__ import annotations

import logging
import sys

import click

from ledgerstream import settings


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


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
def stack_up() -> None:
    """Fetch (cached), start and wait until every server answers a real request."""
    from ledgerstream import stack as local_stack

    try:
        started = local_stack.up(echo=click.echo)
    except local_stack.StackError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"stack up (started now: {', '.join(started) or 'nothing'}); "
        f"state in {settings.stack().stack_state_dir}"
    )


@stack.command("down")
def stack_down() -> None:
    """Stop exactly the processes `stack up` started."""
    from ledgerstream import stack as local_stack

    left = local_stack.down(echo=click.echo)
    if left:
        raise click.ClickException("processes of the stack are still running:\n" + "\n".join(left))


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
    from ledgerstream import topics

    for line in topics.ensure_all():
        click.echo(line)


# --------------------------------------------------------------------------- producer
@main.group()
def producer() -> None:
    """Stripe-event producer."""


@producer.command("webhook")
@click.option("--host", default="127.0.0.1", show_default=True, envvar="LEDGER_WEBHOOK_HOST")
@click.option("--port", default=8000, show_default=True, envvar="LEDGER_WEBHOOK_PORT")
def producer_webhook(host: str, port: int) -> None:
    """Receive signed Stripe webhooks and publish them to the stripe.* topics."""
    from producers.webhook import serve

    serve(host, port)


# --------------------------------------------------------------------------- processor
@main.group()
def processor() -> None:
    """Stream processors (faust)."""


@processor.command("worker")
@click.option("--web-port", default=6066, show_default=True, envvar="LEDGER_WORKER_WEB_PORT")
def processor_worker(web_port: int) -> None:
    """Run one faust worker; start several with the same LEDGER_APP_ID to scale out."""
    from processors.app import run_worker

    run_worker(web_port=web_port)


# --------------------------------------------------------------------------- sinks
@main.group()
def sink() -> None:
    """Sinks: NetSuite writer and Stripe metadata writer."""


@sink.command("netsuite")
def sink_netsuite() -> None:
    """Write NetSuite commands as PUT eid: upserts; emit back-references."""
    from sinks.netsuite import run

    run()


@sink.command("stripe-metadata")
def sink_stripe_metadata() -> None:
    """Store NetSuite internal ids in the Stripe objects' metadata."""
    from sinks.stripe_metadata import run

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
    default=".stack/netsuite-emulator.sqlite",
    show_default=True,
    envvar="LEDGER_EMULATOR_DATA",
    help="file that keeps the emulator's records across restarts",
)
def emulator_netsuite(host: str, port: int, data: str) -> None:
    """NetSuite REST record API emulator (OAuth 1.0a, eid: upserts, o:errorDetails)."""
    from ledgerstream.netsuite_emulator.server import serve

    serve(host, port, data)


# --------------------------------------------------------------------------- demo
@main.command("demo")
@click.option("--keep-running", is_flag=True, help="leave the components running afterwards")
def demo_cmd(keep_running: bool) -> None:
    """The main job on the local stack: signed webhooks in, NetSuite records out."""
    from ledgerstream.demo import run_demo

    sys.exit(run_demo(keep_running=keep_running, echo=click.echo))


if __name__ == "__main__":
    main()
