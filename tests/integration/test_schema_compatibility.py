"""Every schema stays BACKWARD compatible with each version of it this repository ever had.

The history comes from git: each committed version of ``schemas/<name>.avsc`` is registered in
order under a fresh subject of the real registry (compatibility BACKWARD), and the working
copy must then be accepted by the registry's own compatibility check. A deliberately broken
change must be refused, which proves the check can fail.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest
from confluent_kafka.schema_registry import Schema

from ledgerstream import topics
from ledgerstream.avro import SCHEMAS, registry, schema_names, schema_text
from ledgerstream.testing.pipeline import Pipeline
from tests import CHECKOUT

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("local_stack")]


def committed_versions(name: str) -> list[str]:
    path = f"schemas/{name}.avsc"
    revs = subprocess.run(
        ["git", "log", "--format=%H", "--reverse", "--", path],
        cwd=CHECKOUT,
        capture_output=True,
        text=True,
        check=True,
    )
    versions = []
    for rev in revs.stdout.split():
        shown = subprocess.run(
            ["git", "show", f"{rev}:{path}"], cwd=CHECKOUT, capture_output=True, text=True
        )
        if shown.returncode == 0:  # absent in a commit that deleted it
            text = json.dumps(json.loads(shown.stdout))
            if not versions or versions[-1] != text:
                versions.append(text)
    return versions


def fresh_subject(name: str) -> str:
    subject = f"compat-{name}-{uuid.uuid4().hex[:8]}-value"
    registry().set_compatibility(subject_name=subject, level="BACKWARD")
    return subject


@pytest.mark.parametrize("name", schema_names())
def test_current_schema_is_backward_compatible_with_its_history(name: str) -> None:
    client = registry()
    subject = fresh_subject(name)
    for text in committed_versions(name):
        client.register_schema(subject, Schema(text, "AVRO"))
    current = Schema(schema_text(name), "AVRO")
    assert client.test_compatibility(subject, current), (
        f"schemas/{name}.avsc is not BACKWARD compatible with a committed version: give new "
        "fields defaults, never remove or retype a field without one"
    )


def test_an_incompatible_change_is_refused() -> None:
    client = registry()
    subject = fresh_subject("broken")
    original = json.loads(SCHEMAS.joinpath("netsuite_backref.avsc").read_text())
    client.register_schema(subject, Schema(json.dumps(original), "AVRO"))
    broken = dict(original)
    broken["fields"] = [
        *original["fields"],
        {"name": "required_without_default", "type": "string", "doc": "x"},
    ]
    assert not client.test_compatibility(subject, Schema(json.dumps(broken), "AVRO"))
    compatible = dict(original)
    compatible["fields"] = [
        *original["fields"],
        {"name": "optional", "type": ["null", "string"], "default": None, "doc": "x"},
    ]
    assert client.test_compatibility(subject, Schema(json.dumps(compatible), "AVRO"))


def test_the_topics_command_registers_every_topics_schema(tmp_path: Path) -> None:
    pipe = Pipeline(tmp_path)
    out = pipe.cli("topics")
    client = registry()
    for spec in topics.ALL:
        if spec.schema is None:
            continue
        subject = f"{pipe.prefix}{spec.name}-value"
        latest = client.get_latest_version(subject)
        assert json.loads(latest.schema.schema_str) == json.loads(schema_text(spec.schema))
        assert f"schema  {subject} (id {latest.schema_id})" in out
