"""The product as a user installs it: the wheel in a fresh virtualenv, outside the checkout.

The wheel is built from a copy of the source tree (the build writes nothing into the checkout),
installed with its dependencies into a new virtualenv in a temporary directory, and run from
another temporary directory with nothing of the checkout on the path and a home of its own:
``ledgerstream --help``, ``ledgerstream topics`` against the stack, the webhook receiver
publishing a signed event, and a processor worker without NetSuite ids refusing to start.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import requests
from confluent_kafka.admin import AdminClient

from ledgerstream import settings, topics
from ledgerstream.avro import Serde, schema_names
from ledgerstream.testing.fixtures import signed, slice_events
from ledgerstream.testing.pipeline import free_port, new_run_id
from tests import CHECKOUT
from tests.integration.helpers import consume_all

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("local_stack")]

_NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv with the wheel installed; returns its ``bin`` directory."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    shutil.copytree(CHECKOUT, src, symlinks=True, ignore=_NOT_SOURCE)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", root / "dist", src])
    (wheel,) = (root / "dist").glob("ledgerstream-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "ledgerstream/producers/webhook.py" in names
    assert "ledgerstream/processors/app.py" in names
    assert "ledgerstream/sinks/netsuite.py" in names
    assert {f"ledgerstream/schemas/{n}.avsc" for n in schema_names()} <= set(names)
    # one namespace: nothing installs as a top-level producers/processors/sinks/schemas
    tops = {n.split("/", 1)[0] for n in names if ".dist-info/" not in n}
    assert tops == {"ledgerstream"}, tops
    run([sys.executable, "-m", "venv", root / "venv"])
    run([root / "venv" / "bin" / "pip", "install", "-q", wheel])
    return root / "venv" / "bin"


def run(cmd: list[object], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(c) for c in cmd],
        capture_output=True,
        text=True,
        **kwargs,  # type: ignore[call-overload]
    )
    assert done.returncode == 0, f"{cmd}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture
def user(tmp_path: Path, installed: Path) -> dict[str, str]:
    """The environment of a user of the installed wheel: a home of its own, the stack's
    servers, a fresh topic prefix, and nothing of the checkout (no PYTHONPATH, no profile)."""
    home = tmp_path / "home"
    home.mkdir()
    kafka = settings.kafka()
    return {
        "PATH": f"{installed}:/usr/bin:/bin",
        "HOME": str(home),
        "KAFKA_BOOTSTRAP_SERVERS": kafka.kafka_bootstrap_servers,
        "SCHEMA_REGISTRY_URL": kafka.schema_registry_url,
        "LEDGER_TOPIC_PREFIX": f"{new_run_id('w')}.",
    }


def test_the_installed_package_runs_outside_the_checkout(
    installed: Path, user: dict[str, str], tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cli = installed / "ledgerstream"

    helped = run([cli, "--help"], cwd=elsewhere, env=user)
    for command in ("producer", "processor", "sink", "topics", "stack"):
        assert command in helped.stdout

    where = run(
        [
            installed / "python",
            "-c",
            "import json, ledgerstream.producers.webhook as w, ledgerstream.avro as a, "
            "ledgerstream.settings as s; print(json.dumps([w.__file__, a.schema_names(), "
            "str(s.stack().stack_state_dir), s.ProcessorSettings().processor_data_dir]))",
        ],
        cwd=elsewhere,
        env=user,
    )
    module, names, state_dir, data_dir = json.loads(where.stdout)
    assert Path(module).is_relative_to(installed.parent), module
    assert names == schema_names()
    # the state and data directories default to the user's XDG directories
    assert state_dir == f"{user['HOME']}/.local/state/ledgerstream"
    assert data_dir == f"{user['HOME']}/.local/share/ledgerstream/faust"

    run([cli, "topics"], cwd=elsewhere, env=user)
    prefix = user["LEDGER_TOPIC_PREFIX"]
    admin = AdminClient(settings.kafka().client_config())
    existing = admin.list_topics(timeout=10).topics
    for spec in topics.ALL:
        assert prefix + spec.name in existing
        if spec.schema is not None:  # the cursor topic holds plain JSON
            # asked by name: GET /subjects lists at most 1000 (Apicurio)
            subject = f"{user['SCHEMA_REGISTRY_URL']}/subjects/{prefix}{spec.name}-value/versions"
            assert requests.get(subject, timeout=10).json() == [1]

    # a component starts from the wheel: the webhook receiver publishes a signed event
    secret = "whsec_" + secrets.token_hex(16)
    port = free_port()
    webhook = subprocess.Popen(
        [cli, "producer", "webhook", "--port", str(port)],
        cwd=elsewhere,
        env={**user, "LEDGER_STRIPE_WEBHOOK_SECRETS": secret},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while not _ready(url):
            assert webhook.poll() is None, webhook.communicate()[0]
            assert time.monotonic() < deadline, "webhook not ready within 60 s"
            time.sleep(0.2)
        event = slice_events(seed=prefix)[0]
        body, signature = signed(event, secret)
        answer = requests.post(
            url + "/webhooks/stripe", data=body, headers={"Stripe-Signature": signature}, timeout=30
        )
        assert answer.status_code == 200, answer.text
    finally:
        webhook.terminate()
        webhook.wait(30)
    topic = prefix + topics.STRIPE_EVENTS.name
    serde = Serde(topic, topics.STRIPE_EVENTS.schema or "")
    (record,) = consume_all(topic)
    assert serde.loads(record.value())["event_id"] == event["id"]


def _ready(url: str) -> bool:
    try:
        return requests.get(url + "/readyz", timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def test_the_installed_worker_without_netsuite_ids_refuses_to_start(
    installed: Path, user: dict[str, str], tmp_path: Path
) -> None:
    refused = subprocess.run(
        [installed / "ledgerstream", "processor", "worker"],
        cwd=tmp_path,
        env=user,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0
    for name in ("SUBSIDIARY_ID", "UNDEPOSITED_FUNDS_ACCOUNT_ID", "PAYMENT_METHOD_ID"):
        assert f"LEDGER_NETSUITE_{name}" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not os.path.exists(Path(user["HOME"]) / ".local" / "share" / "ledgerstream" / "faust")
