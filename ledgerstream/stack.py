"""The embedded local stack: a real Apache Kafka broker, Apicurio Registry and stripe-mock.

No Docker: the servers come from the registries this machine reaches. Kafka's broker and
Apicurio are Maven Central artifacts (collected with Maven into a cache directory), stripe-mock
is built with ``go install``. Downloads are cached (``LEDGER_STACK_CACHE_DIR``, default
``~/.cache/ledgerstream``); logs, pid files and data live in one state directory
(``LEDGER_STACK_STATE_DIR``, default ``~/.local/state/ledgerstream``: XDG, never the checkout).

A server whose address is given in the environment (``KAFKA_BOOTSTRAP_SERVERS``,
``SCHEMA_REGISTRY_URL``, ``STRIPE_MOCK_URL``) is external: it is checked, never started or
stopped. ``down`` stops exactly the processes whose pid files ``up`` wrote, after checking that
each pid still runs the command we started.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tarfile
import textwrap
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import requests

from ledgerstream import settings

LOG4J_VERSION = "2.24.3"


class StackError(RuntimeError):
    pass


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding.

    Like Kafka's own ``Uuid.randomUuid``, ids starting with "-" are drawn again: command-line
    parsers take them for an option.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _run(cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-4000:]
        raise StackError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _wait(
    check: Callable[[], str | None],
    timeout: float,
    what: str,
    log: Path | None,
    progress: Callable[[], str | None] | None = None,
    report: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Poll ``check`` until it returns a description (ready) or time runs out.

    ``progress`` (optional) describes how far the server's start-up has got; while that keeps
    changing the server is working, not stuck, so each change moves the deadline to ``timeout``
    from then, and ``report`` hears the latest description at most every 10 s."""
    deadline = clock() + timeout
    last_error: Exception | None = None
    seen: str | None = None
    reported_at = -1e9
    while clock() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - any failure just means "not ready yet"
            last_error = exc
        now = clock()
        step = progress() if progress is not None else None
        if step is not None and step != seen:
            seen, deadline = step, now + timeout
            if report is not None and now - reported_at >= 10:
                report(f"{what}: {step}")
                reported_at = now
        sleep(0.5)
    tail = ""
    if log and log.exists():
        tail = (
            "\n--- last lines of "
            + str(log)
            + " ---\n"
            + "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        )
    raise StackError(f"{what} not ready after {timeout:.0f}s (last error: {last_error}){tail}")


@dataclass
class Server:
    """One server of the stack: how to fetch it, start it, and tell that it is ready."""

    name: str
    cfg: settings.StackSettings

    # the variables that name an external server (a ClassVar: a dataclass field would give
    # every instance the empty default and hide the subclasses' names)
    external_env: ClassVar[tuple[str, ...]] = ()
    log_offset: int = 0  # where this start's lines begin in the log file

    @property
    def state(self) -> Path:
        return self.cfg.stack_state_dir / self.name

    @property
    def pid_file(self) -> Path:
        return self.state / "pid"

    @property
    def log_file(self) -> Path:
        return self.state / "server.log"

    def external(self) -> bool:
        return any(os.environ.get(var) for var in self.external_env)

    # -- to be provided by each server
    def fetch(self) -> None:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Create configuration and data directories before the first start."""

    def probe(self) -> str:
        """A real round trip; returns a one-line description (with version) or raises."""
        raise NotImplementedError

    ports: tuple[int, ...] = ()
    ready_timeout: float = 120.0

    # -- shared behaviour
    def pid(self) -> int | None:
        """The pid we started, if that process is still running our command."""
        try:
            pid = int(self.pid_file.read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except FileNotFoundError:
            return None
        marker = self.pid_file.read_text().split(maxsplit=1)[1:] or [""]
        return pid if marker[0].strip() in cmdline else None

    def start(self) -> bool:
        """Start unless already running; return True if this call started it."""
        if self.external():
            return False
        if self.pid() is not None:
            return False
        busy = [p for p in self.ports if _port_open(p)]
        if busy:
            raise StackError(
                f"{self.name}: port(s) {busy} already in use by a process this stack did not "
                f"start; stop it or point the environment at it ({', '.join(self.external_env)})"
            )
        self.fetch()
        self.state.mkdir(parents=True, exist_ok=True)
        self.prepare()
        cmd = self.command()
        self.log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.state,
            )
        # the marker lets `down` check that the pid was not reused by another program
        self.pid_file.write_text(f"{proc.pid} {self.marker()}\n")
        return True

    def marker(self) -> str:
        return str(self.state)

    def wait_ready(self, report: Callable[[str], None] | None = None) -> str:
        return _wait(self._ready, self.ready_timeout, self.name, self.log_file)

    def _ready(self) -> str | None:
        if not self.external() and self.pid() is None:
            raise StackError(f"{self.name} exited; see {self.log_file}")
        return self.probe()

    def stop(self, timeout: float = 30.0) -> bool:
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            if _zombie(pid):
                break
            time.sleep(0.2)
        if Path(f"/proc/{pid}").exists() and not _zombie(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.pid_file.unlink(missing_ok=True)
        return True


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except (FileNotFoundError, IndexError):
        return True


def _java_major(java: Path) -> int:
    release = java.parent.parent / "release"
    try:
        for line in release.read_text().splitlines():
            if line.startswith("JAVA_VERSION="):
                return int(line.split("=", 1)[1].strip('"').split(".")[0])
    except (OSError, ValueError):
        pass
    return 0


def find_java(minimum: int) -> str:
    """A ``java`` of at least ``minimum``: $LEDGER_JAVA_HOME, $JAVA_HOME, PATH, /usr/lib/jvm/*."""
    candidates = [
        Path(home) / "bin" / "java"
        for home in (os.environ.get("LEDGER_JAVA_HOME"), os.environ.get("JAVA_HOME"))
        if home
    ]
    on_path = shutil.which("java")
    if on_path:
        candidates.append(Path(on_path).resolve())
    candidates += sorted(Path("/usr/lib/jvm").glob("*/bin/java"), reverse=True)
    for java in candidates:
        if java.exists() and _java_major(java) >= minimum:
            return str(java)
    raise StackError(
        f"a Java {minimum}+ runtime is needed (found: {[str(c) for c in candidates]}); "
        "set LEDGER_JAVA_HOME"
    )


def _maven(args: list[str], cwd: Path) -> None:
    if not shutil.which("mvn"):
        raise StackError("Maven (mvn) is required to fetch the Kafka and Apicurio artifacts")
    _run(["mvn", "-B", "-q", *args], cwd=cwd)


class LogLoading:
    """How far a starting broker is with loading its partitions' logs, read from its log."""

    DONE = re.compile(rb"\((\d+)/(\d+) completed in ")
    LOADED = re.compile(rb"Loaded (\d+) logs in (\d+)ms")

    def __init__(self, log: Path, offset: int = 0):
        self.log, self.position = log, offset
        self.state: str | None = None

    def __call__(self) -> str | None:
        if not self.log.exists():
            return self.state
        with open(self.log, "rb") as f:
            f.seek(self.position)
            new = f.read()
        complete = new.rfind(b"\n") + 1  # a line still being written is read next time
        self.position += complete
        lines = new[:complete]
        done = self.DONE.findall(lines)
        if done:
            count, total = done[-1]
            self.state = f"loading partition logs: {int(count)} of {int(total)}"
        loaded = self.LOADED.findall(lines)
        if loaded:
            logs, ms = loaded[-1]
            self.state = f"partition logs loaded ({int(logs)} in {int(ms) / 1000:.1f}s)"
        return self.state


class Kafka(Server):
    external_env = ("KAFKA_BOOTSTRAP_SERVERS", "LEDGER_KAFKA_BOOTSTRAP_SERVERS")

    def __init__(self, cfg: settings.StackSettings, node: int = 1):
        super().__init__("kafka" if node == 1 else f"kafka-{node}", cfg)
        self.node = node
        self.count = max(cfg.kafka_brokers, node)  # nodes of the cluster
        self.port, self.controller_port = cfg.kafka_node_ports(node)
        self.ports = (self.port, self.controller_port)
        self.home = cfg.stack_cache_dir / f"kafka_2.13-{cfg.kafka_version}"

    def fetch(self) -> None:
        libs = self.home / "libs"
        if (self.home / ".complete").exists():
            return
        self.home.mkdir(parents=True, exist_ok=True)
        pom = f"""\
            <project xmlns="http://maven.apache.org/POM/4.0.0">
              <modelVersion>4.0.0</modelVersion>
              <groupId>ledgerstream.local</groupId>
              <artifactId>kafka-broker-classpath</artifactId>
              <version>1</version>
              <dependencies>
                <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
                  <version>{self.cfg.kafka_version}</version></dependency>
                <dependency><groupId>org.apache.logging.log4j</groupId>
                  <artifactId>log4j-api</artifactId><version>{LOG4J_VERSION}</version></dependency>
                <dependency><groupId>org.apache.logging.log4j</groupId>
                  <artifactId>log4j-core</artifactId><version>{LOG4J_VERSION}</version></dependency>
                <dependency><groupId>org.apache.logging.log4j</groupId>
                  <artifactId>log4j-slf4j-impl</artifactId><version>{LOG4J_VERSION}</version>
                </dependency>
              </dependencies>
            </project>"""
        (self.home / "pom.xml").write_text(textwrap.dedent(pom))
        _maven(
            [
                "org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies",
                f"-DoutputDirectory={libs}",
                "-DincludeScope=runtime",
            ],
            cwd=self.home,
        )
        (self.home / ".complete").write_text(self.cfg.kafka_version)

    def _java(self, main: str, *args: str, heap: str = "-Xmx512m") -> list[str]:
        return [
            "java",
            "-Xms256m",
            heap,
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.state / 'log4j2.properties'}",
            "-cp",
            str(self.home / "libs" / "*"),
            main,
            *args,
        ]

    def prepare(self) -> None:
        data = self.state / "data"
        props = self.state / "server.properties"
        cfg = self.cfg
        voters = ",".join(
            f"{n}@127.0.0.1:{cfg.kafka_node_ports(n)[1]}" for n in range(1, self.count + 1)
        )
        # one broker: every internal topic on it; three or more: each partition on three, and a
        # write acknowledged by two (one broker may be lost without losing or refusing writes)
        rf, isr = (3, 2) if self.count >= 3 else (1, 1)
        cluster = (
            "broker.session.timeout.ms=3000\nbroker.heartbeat.interval.ms=1000\n"
            if self.count > 1
            else ""
        )
        props.write_text(
            textwrap.dedent(
                f"""\
                process.roles=broker,controller
                node.id={self.node}
                controller.quorum.voters={voters}
                listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}
                advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}
                controller.listener.names=CONTROLLER
                inter.broker.listener.name=PLAINTEXT
                listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
                log.dirs={data}
                num.partitions=3
                default.replication.factor={rf}
                min.insync.replicas={isr}
                offsets.topic.replication.factor={rf}
                offsets.topic.num.partitions=10
                transaction.state.log.replication.factor={rf}
                transaction.state.log.min.isr={isr}
                share.coordinator.state.topic.replication.factor={rf}
                share.coordinator.state.topic.min.isr={isr}
                group.initial.rebalance.delay.ms=0
                auto.create.topics.enable=true
                log.retention.hours=-1
                """
            )
            + cluster
        )
        (self.state / "log4j2.properties").write_text(
            textwrap.dedent(
                """\
                status = warn
                appender.out.type = Console
                appender.out.name = OUT
                appender.out.layout.type = PatternLayout
                appender.out.layout.pattern = [%d] %p %m (%c)%n
                rootLogger.level = INFO
                rootLogger.appenderRef.out.ref = OUT
                logger.kafka.name = kafka
                logger.kafka.level = WARN
                logger.state.name = state.change.logger
                logger.state.level = WARN
                logger.apache.name = org.apache.kafka
                logger.apache.level = WARN
                logger.logs.name = kafka.log.LogManager
                logger.logs.level = INFO
                """
            )
        )
        if not (data / "meta.properties").exists():
            cluster_id = self.cluster_id()
            _run(
                self._java(
                    "kafka.tools.StorageTool",
                    "format",
                    f"--cluster-id={cluster_id}",
                    f"--config={props}",
                ),
                cwd=self.state,
            )

    def cluster_id(self) -> str:
        """One id for every node of the cluster, kept beside the first node's state."""
        path = self.cfg.stack_state_dir / "kafka" / "cluster-id"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(new_cluster_id())
        return path.read_text().strip()

    def command(self) -> list[str]:
        return self._java("kafka.Kafka", str(self.state / "server.properties"))

    def version(self) -> str:
        if self.external():
            return "external"
        return f"Apache Kafka {self.cfg.kafka_version}"

    def wait_ready(self, report: Callable[[str], None] | None = None) -> str:
        """Ready once it answers with every node registered. A broker restarted on thousands of
        partitions first loads (and after a kill, recovers) each partition's log, which can
        outlast any fixed timeout: it is waited for as long as loading progresses, and
        ``report`` hears how far it is (from the broker's log manager lines)."""
        progress = None if self.external() else LogLoading(self.log_file, self.log_offset)
        return _wait(self._ready, self.ready_timeout, self.name, self.log_file, progress, report)

    def _metadata(self) -> Any:
        from confluent_kafka.admin import AdminClient

        conf = settings.kafka().client_config()
        if not self.external():
            conf["bootstrap.servers"] = f"127.0.0.1:{self.port}"
        admin = AdminClient({**conf, "log_level": 0})  # "connection refused" is expected here
        return admin.list_topics(timeout=5), conf

    def under_replicated(self) -> list[str]:
        """Partitions whose in-sync replicas are fewer than their replicas (as the brokers'
        ``UnderReplicatedPartitions`` metric counts them). A rolling restart takes the next
        broker down only once this is empty: before, the restarted broker is not yet a full
        copy, and losing another one leaves partitions below ``min.insync.replicas``."""
        md, _ = self._metadata()
        return sorted(
            f"{topic.topic}-{p.id}"
            for topic in md.topics.values()
            for p in topic.partitions.values()
            if len(p.isrs) < len(p.replicas)
        )

    def wait_in_sync(self, timeout: float = 180) -> str:
        """Until no partition of the cluster is under-replicated."""

        def in_sync() -> str | None:
            lagging = self.under_replicated()
            if lagging:
                raise StackError(f"{len(lagging)} under-replicated, e.g. {lagging[:5]}")
            return "every partition in sync"

        return _wait(in_sync, timeout, f"{self.name}: replicas", self.log_file)

    def probe(self) -> str:
        md, conf = self._metadata()
        if not md.brokers:
            raise StackError("no broker in metadata")
        if not self.external() and len(md.brokers) < self.count:
            raise StackError(f"{len(md.brokers)} of {self.count} brokers registered")
        return (
            f"{self.version()} at {conf['bootstrap.servers']}, cluster {md.cluster_id}, "
            f"{len(md.brokers)} broker(s), {len(md.topics)} topic(s)"
        )


class Registry(Server):
    external_env = ("SCHEMA_REGISTRY_URL", "LEDGER_SCHEMA_REGISTRY_URL")
    ready_timeout = 180.0

    def __init__(self, cfg: settings.StackSettings):
        super().__init__("registry", cfg)
        self.ports = (cfg.registry_port, cfg.registry_management_port)
        self.home = cfg.stack_cache_dir / f"apicurio-registry-{cfg.apicurio_version}"

    def fetch(self) -> None:
        if (self.home / ".complete").exists():
            return
        self.home.mkdir(parents=True, exist_ok=True)
        artifact = f"io.apicurio:apicurio-registry-app:{self.cfg.apicurio_version}:tar.gz:all"
        _maven(
            [
                "org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy",
                f"-Dartifact={artifact}",
                f"-DoutputDirectory={self.home}",
            ],
            cwd=self.home,
        )
        archive = next(self.home.glob("*.tar.gz"))
        with tarfile.open(archive) as tar:
            tar.extractall(self.home / "app", filter="data")
        archive.unlink()
        (self.home / ".complete").write_text(self.cfg.apicurio_version)

    def command(self) -> list[str]:
        jar = next((self.home / "app").rglob("quarkus-run.jar"))
        db = self.state / "db" / "registry"
        return [
            find_java(21),  # Apicurio 3.3 is built for Java 21
            "-Xms128m",
            "-Xmx384m",
            "-Dquarkus.http.host=127.0.0.1",
            f"-Dquarkus.http.port={self.cfg.registry_port}",
            "-Dquarkus.management.host=127.0.0.1",
            f"-Dquarkus.management.port={self.cfg.registry_management_port}",
            # file-backed H2: schemas survive a restart, like the records that reference them
            "-Dapicurio.storage.kind=sql",
            "-Dapicurio.storage.sql.kind=h2",
            f"-Dapicurio.datasource.url=jdbc:h2:file:{db};DB_CLOSE_ON_EXIT=FALSE",
            "-Dapicurio.datasource.username=sa",
            "-Dapicurio.datasource.password=sa",
            "-Dquarkus.log.level=WARN",
            '-Dquarkus.log.category."io.apicurio".level=INFO',
            "-jar",
            str(jar),
        ]

    def base_url(self) -> str:
        url = settings.kafka().schema_registry_url
        return url.split("/apis/")[0]

    def probe(self) -> str:
        url = settings.kafka().schema_registry_url
        requests.get(f"{url}/subjects", timeout=5).raise_for_status()
        info = requests.get(f"{self.base_url()}/apis/registry/v3/system/info", timeout=5)
        name = "schema registry"
        if info.ok:
            body = info.json()
            name = f"{body.get('name', 'Apicurio Registry')} {body.get('version', '')}".strip()
        return f"{name} at {url}"


class StripeMock(Server):
    external_env = ("STRIPE_MOCK_URL", "LEDGER_STRIPE_MOCK_URL")

    def __init__(self, cfg: settings.StackSettings):
        super().__init__("stripe-mock", cfg)
        self.ports = (cfg.stripe_mock_port, cfg.stripe_mock_https_port)
        self.bin_dir = cfg.stack_cache_dir / f"stripe-mock-{cfg.stripe_mock_version}"

    @property
    def binary(self) -> Path:
        return self.bin_dir / "stripe-mock"

    def fetch(self) -> None:
        if self.binary.exists():
            return
        if not shutil.which("go"):
            raise StackError("Go is required to build stripe-mock (go install)")
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, GOBIN=str(self.bin_dir), CGO_ENABLED="0")
        _run(
            ["go", "install", f"github.com/stripe/stripe-mock@{self.cfg.stripe_mock_version}"],
            env=env,
        )

    def marker(self) -> str:
        return f"{self.binary} -http-addr 127.0.0.1:{self.cfg.stripe_mock_port}"

    def command(self) -> list[str]:
        return [
            str(self.binary),
            "-http-addr",
            f"127.0.0.1:{self.cfg.stripe_mock_port}",
            "-https-addr",
            f"127.0.0.1:{self.cfg.stripe_mock_https_port}",
        ]

    def probe(self) -> str:
        url = url_of_stripe_mock()
        resp = requests.get(
            f"{url}/v1/customers", headers={"Authorization": "Bearer sk_test_123"}, timeout=5
        )
        resp.raise_for_status()
        version = "external" if self.external() else self.cfg.stripe_mock_version
        return f"stripe-mock {version} at {url}"


def url_of_stripe_mock() -> str:
    return (
        os.environ.get("LEDGER_STRIPE_MOCK_URL")
        or os.environ.get("STRIPE_MOCK_URL")
        or f"http://127.0.0.1:{settings.stack().stripe_mock_port}"
    )


def servers(cfg: settings.StackSettings | None = None, earlier: bool = False) -> list[Server]:
    """The stack's servers; ``earlier``: also cluster nodes a previous ``up`` started (so that
    ``down`` and ``status`` see a cluster whatever LEDGER_KAFKA_BROKERS says now)."""
    cfg = cfg or settings.stack()
    found = [
        int(p.name.split("-")[1])
        for p in cfg.stack_state_dir.glob("kafka-*")
        if earlier and p.name.split("-")[1].isdigit()
    ]
    nodes = max([cfg.kafka_brokers, *found])
    brokers: list[Server] = [Kafka(cfg, n) for n in range(1, nodes + 1)]
    return [*brokers, Registry(cfg), StripeMock(cfg)]


def up(echo: Callable[[str], None] = print) -> list[str]:
    """Fetch (cached), start and wait for every server; return the names this call started."""
    started: list[str] = []
    _reset_if_resized(settings.stack())
    stack = servers()
    try:
        for server in stack:
            if server.external():
                echo(f"{server.name}: external, not started")
                continue
            if server.pid() is not None:
                echo(f"{server.name}: already running (pid {server.pid()})")
                continue
            echo(f"{server.name}: fetching (cached after the first time) and starting ...")
            if server.start():
                started.append(server.name)
        for server in stack:
            echo(f"{server.name}: ready: {server.wait_ready(report=echo)}")
    except BaseException:
        for server in stack:
            if server.name in started:
                server.stop()
        raise
    _write_started(started)
    return started


def _reset_if_resized(cfg: settings.StackSettings) -> None:
    """A cluster of another size cannot reuse the old one's KRaft metadata: start afresh (the
    local stack's topics go; the stack must be down)."""
    record = cfg.stack_state_dir / "kafka" / "cluster-nodes"
    if record.exists() and record.read_text().strip() != str(cfg.kafka_brokers):
        nodes = [s for s in servers(cfg, earlier=True) if isinstance(s, Kafka)]
        if any(node.pid() is not None for node in nodes):
            raise StackError(
                f"the local Kafka runs {record.read_text().strip()} broker(s); "
                f"`ledgerstream stack down` first to start {cfg.kafka_brokers}"
            )
        for node in nodes:
            shutil.rmtree(node.state / "data", ignore_errors=True)
        (cfg.stack_state_dir / "kafka" / "cluster-id").unlink(missing_ok=True)
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(str(cfg.kafka_brokers))


def _write_started(started: list[str]) -> None:
    state = settings.stack().stack_state_dir
    state.mkdir(parents=True, exist_ok=True)
    (state / "started.json").write_text(json.dumps(started))


def down(only: list[str] | None = None, echo: Callable[[str], None] = print) -> list[str]:
    """Stop our servers; return the command lines of any of our processes still running."""
    for server in reversed(servers(earlier=True)):
        if only is not None and server.name not in only:
            continue
        if server.stop():
            echo(f"{server.name}: stopped")
        else:
            echo(f"{server.name}: not running (nothing of ours to stop)")
    if only is not None:
        return []
    return leftovers()


def leftovers() -> list[str]:
    """Processes whose command line names this stack's state directory or server binaries."""
    markers = [server.marker() for server in servers(earlier=True)]
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if any(marker in cmdline for marker in markers) and not _zombie(int(proc.name)):
            found.append(f"{proc.name}: {cmdline[:160]}")
    return found


def status() -> list[tuple[str, bool, str]]:
    rows = []
    for server in servers(earlier=True):
        pid = server.pid()
        where = "external" if server.external() else (f"pid {pid}" if pid else "not running")
        try:
            detail = server.probe()
            ok = True
        except Exception as exc:  # noqa: BLE001 - status reports, it does not fail
            detail = f"not answering ({type(exc).__name__})"
            ok = False
        rows.append((server.name, ok, f"{where}: {detail}"))
    return rows
