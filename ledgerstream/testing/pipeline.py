"""Run the whole pipeline as separate processes (the demo and the end-to-end tests use this).

Each component runs through the real command line, with its settings in the environment,
exactly as an operator would run it; logs go to one directory per run.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import requests

from ledgerstream.stack import url_of_stripe_mock


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_broker_ports(brokers: int = 1) -> int:
    """A base port for a stack of ``brokers`` KRaft nodes: node n listens on base + 10(n-1)
    and its controller one above (``StackSettings.kafka_node_ports``), all free.

    Chosen below the kernel's ephemeral range: a port picked inside it (as ``free_port`` does)
    may become the local port of any client connection before the broker binds it, and
    only the base was checked — a three-node test failed with "Address already in use" on
    the base's controller port, base + 1."""
    low, _ = _ephemeral_range()
    rnd = random.Random()
    for _ in range(200):
        base = rnd.randrange(10_000, low - 10 * brokers - 2)
        wanted = [base + 10 * i + j for i in range(brokers) for j in (0, 1)]
        socks: list[socket.socket] = []
        try:
            for port in wanted:
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
        return base
    raise RuntimeError(f"no {2 * brokers} free ports for {brokers} broker(s) below {low}")


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


# the run ids (topic prefixes) this process made up, so that a test deletes the topics of its
# own runs only: other sessions may share the broker (a test that deleted every topic created
# while it ran also deleted a concurrently running benchmark's, which then crashed)
RUN_IDS: set[str] = set()


def new_run_id(kind: str = "run") -> str:
    """A fresh run id (``<kind><8 hex digits>``), remembered in :data:`RUN_IDS`."""
    run_id = kind + secrets.token_hex(4)
    RUN_IDS.add(run_id)
    return run_id


@dataclass
class Pipeline:
    """One isolated pipeline: its own topic prefix, consumer groups, ports and emulator data."""

    run_dir: Path
    name: str = field(default_factory=new_run_id)
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    metrics_ports: dict[str, int] = field(default_factory=dict)  # component -> its port

    def __post_init__(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.webhook_port = free_port()
        self.emulator_port = free_port()
        self.worker_port = free_port()
        self.webhook_secret = "whsec_" + secrets.token_hex(16)
        # generated per run: the emulator accepts exactly the sink's credentials
        self.netsuite = {
            "LEDGER_NETSUITE_ACCOUNT_ID": "TSTDRV" + secrets.token_hex(3).upper() + "_SB1",
            "LEDGER_NETSUITE_CONSUMER_KEY": secrets.token_hex(32),
            "LEDGER_NETSUITE_CONSUMER_SECRET": secrets.token_hex(32),
            "LEDGER_NETSUITE_TOKEN_ID": secrets.token_hex(32),
            "LEDGER_NETSUITE_TOKEN_SECRET": secrets.token_hex(32),
            # OAuth 2.0 M2M as well: the emulator accepts both, LEDGER_NETSUITE_AUTH picks one
            "LEDGER_NETSUITE_CLIENT_ID": secrets.token_hex(32),
            "LEDGER_NETSUITE_CERTIFICATE_ID": secrets.token_urlsafe(32),
            "LEDGER_NETSUITE_PRIVATE_KEY_FILE": str(self._private_key()),
        }

    def _private_key(self) -> Path:
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.hazmat.primitives.serialization import (
            Encoding,
            NoEncryption,
            PrivateFormat,
        )

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        path = self.run_dir / "netsuite-m2m-key.pem"
        path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
        path.chmod(0o600)
        return path

    @property
    def prefix(self) -> str:
        return f"{self.name}."

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.webhook_port}/webhooks/stripe"

    @property
    def emulator_url(self) -> str:
        return f"http://127.0.0.1:{self.emulator_port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.netsuite)
        env.update(
            {
                "LEDGER_TOPIC_PREFIX": self.prefix,
                "LEDGER_APP_ID": f"{self.name}-processor",
                "LEDGER_SINK_GROUP_ID": f"{self.name}-netsuite-sink",
                "LEDGER_METADATA_GROUP_ID": f"{self.name}-stripe-metadata",
                "LEDGER_PROCESSOR_DATA_DIR": str(self.run_dir / "faust"),
                "LEDGER_NETSUITE_BASE_URL": self.emulator_url,
                "LEDGER_STRIPE_WEBHOOK_SECRETS": self.webhook_secret,
                "LEDGER_WEBHOOK_PORT": str(self.webhook_port),
                "LEDGER_EMULATOR_PORT": str(self.emulator_port),
                "LEDGER_EMULATOR_DATA": str(self.run_dir / "netsuite.sqlite"),
                "LEDGER_WORKER_WEB_PORT": str(self.worker_port),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.setdefault("LEDGER_STRIPE_API_BASE", url_of_stripe_mock())
        # the emulator's set-up ids and stripe-mock's key (production has no defaults)
        env.setdefault("LEDGER_PROFILE", "local")
        env.update(self.extra_env)
        return env

    def run_cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``ledgerstream <args>`` with this pipeline's settings, whatever its exit status."""
        return subprocess.run(
            [sys.executable, "-m", "ledgerstream.cli", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def cli(self, *args: str, timeout: float = 120) -> str:
        out = self.run_cli(*args, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"ledgerstream {' '.join(args)} failed:\n{out.stdout}{out.stderr}")
        return out.stdout

    def start(
        self, name: str, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``ledgerstream <args>`` as ``name``; ``env`` overrides settings for it alone."""
        log = open(self.run_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the process
        # one stable identity per component: restarted, it takes its partitions back at once;
        # and its own metrics port (the default, 9400, is one per host)
        self.metrics_ports[name] = free_port()
        identity = {
            "LEDGER_KAFKA_GROUP_INSTANCE_ID": f"{self.name}-{name}",
            "LEDGER_METRICS_PORT": str(self.metrics_ports[name]),
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "ledgerstream.cli", *args],
            env={**self.env(), **identity, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def start_all(self) -> None:
        self.cli("topics")
        self.start("emulator", "emulator", "netsuite")
        self.start("webhook", "producer", "webhook")
        self.start("router", "producer", "route")
        self.start("payouts", "producer", "payout-contents")
        self.start("processor", "processor", "worker")
        self.start("sink", "sink", "netsuite")
        self.start("metadata", "sink", "stripe-metadata")
        self.wait_http(f"http://127.0.0.1:{self.webhook_port}/readyz", "webhook")
        self.wait_http(f"{self.emulator_url}/_emulator/records", "emulator")

    def wait_consumers_ready(self, timeout: float = 120) -> None:
        """Every consumer of ``start_all`` has its partitions (its ``/readyz`` answers): a
        measurement started now does not measure faust's recovery or the first rebalances."""
        self.wait_http(f"http://127.0.0.1:{self.worker_port}/readyz", "processor", timeout)
        for name in ("router", "payouts", "sink", "metadata"):
            url = f"http://127.0.0.1:{self.metrics_ports[name]}/readyz"
            self.wait_http(url, name, timeout)

    def wait_http(self, url: str, name: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if requests.get(url, timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"{name} did not answer at {url}; see {self.run_dir}/{name}.log")

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.run_dir / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")

    def records(self, rtype: str | None = None) -> list[dict[str, Any]]:
        params = {"type": rtype} if rtype else {}
        resp = requests.get(f"{self.emulator_url}/_emulator/records", params=params, timeout=10)
        resp.raise_for_status()
        return list(json.loads(resp.text, parse_float=Decimal)["records"])

    def wait_for_records(self, want: dict[str, int], timeout: float = 180) -> list[dict[str, Any]]:
        """Wait until the emulator holds at least ``want[type]`` records of each type."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            records = self.records()
            have = {t: sum(1 for r in records if r["type"] == t) for t in want}
            if all(have[t] >= n for t, n in want.items()):
                return records
            if time.monotonic() > deadline:
                raise TimeoutError(f"emulator holds {have}, wanted {want}; logs in {self.run_dir}")
            time.sleep(0.5)

    def emulator_stats(self) -> dict[str, Any]:
        resp = requests.get(f"{self.emulator_url}/_emulator/stats", timeout=10)
        resp.raise_for_status()
        return dict(resp.json())

    def log(self, name: str) -> str:
        return (self.run_dir / f"{name}.log").read_text(errors="replace")

    def stop(self, timeout: float = 30) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


class AppThread:
    """An aiohttp application served on a free loopback port from a background thread."""

    def __init__(self, app: Any):
        import asyncio

        from aiohttp import web

        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(app)
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.runner.setup())
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            self.loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        if not ready.wait(10):
            raise RuntimeError("server did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        import asyncio

        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if not self.thread.is_alive():
            self.loop.close()  # else a ResourceWarning: unclosed event loop
