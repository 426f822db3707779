"""The monitoring assets in deploy/ use only metric names that ledgerstream/metrics.py exposes.

promtool is not installed here, so the files are checked as data: the dashboard's panel
expressions, the alert rules and the scrape configuration."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from ledgerstream.metrics import exposed_names
from tests import CHECKOUT

DEPLOY = CHECKOUT / "deploy"
METRIC = re.compile(r"\bledgerstream_[a-z_]+\b")

ALERTS = (
    "LedgerstreamLagGrowing",
    "LedgerstreamDeadLetters",
    "LedgerstreamDepositWaiting",
    "LedgerstreamNetSuiteThrottled",
    "LedgerstreamComponentDown",
    "LedgerstreamDepositsOnSuspense",
)
JOBS = (
    "ledgerstream-webhook",
    "ledgerstream-router",
    "ledgerstream-payouts",
    "ledgerstream-processor",
    "ledgerstream-sink",
    "ledgerstream-metadata",
    "ledgerstream-poller",
)


def dashboard() -> dict[str, Any]:
    return json.loads((DEPLOY / "grafana" / "ledgerstream-dashboard.json").read_text())


def panels(container: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that shows data, also those inside a collapsed row."""
    for panel in container.get("panels", []):
        if panel.get("type") == "row":
            yield from panels(panel)
        else:
            yield panel


def rules() -> dict[str, dict[str, Any]]:
    """The alerting rules of every group, by alert name."""
    doc = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return {
        rule["alert"]: rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule
    }


def unknown(expr: str) -> set[str]:
    """The ledgerstream_ names in a PromQL expression that no metric exposes."""
    return set(METRIC.findall(expr)) - exposed_names()


def test_every_dashboard_expression_uses_only_exposed_metric_names() -> None:
    checked = 0
    for panel in panels(dashboard()):
        for target in panel["targets"]:
            assert METRIC.search(target["expr"]) or "up{" in target["expr"], panel["title"]
            assert unknown(target["expr"]) == set(), panel["title"]
            checked += 1
    assert checked >= 8


def test_the_dashboard_has_at_least_eight_panels_each_described() -> None:
    shown = list(panels(dashboard()))
    assert len(shown) >= 8
    for panel in shown:
        assert panel.get("description"), panel["title"]
        assert panel["targets"], panel["title"]


def test_the_dashboard_has_the_datasource_and_component_variables() -> None:
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    component = variables["component"]
    assert component["definition"] == "label_values(ledgerstream_records_in_total, component)"
    assert unknown(component["definition"]) == set()
    for panel in panels(board):
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


def test_the_six_alerts_exist() -> None:
    assert set(ALERTS) <= set(rules())


@pytest.mark.parametrize("name", ALERTS)
def test_each_alert_has_a_duration_a_severity_and_a_summary(name: str) -> None:
    rule = rules()[name]
    assert rule["for"]
    assert rule["labels"]["severity"] in {"warning", "critical"}
    assert rule["annotations"]["summary"]
    assert rule["annotations"]["description"]


def test_every_alert_expression_uses_only_exposed_metric_names() -> None:
    for name, rule in rules().items():
        assert unknown(rule["expr"]) == set(), name


def test_the_deposit_waiting_threshold_is_written_in_hours() -> None:
    assert "4 * 3600" in rules()["LedgerstreamDepositWaiting"]["expr"]


def test_the_scrape_config_has_one_job_per_component_and_loads_the_alerts() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(JOBS) <= set(jobs)
    for name in JOBS:
        assert jobs[name].get("metrics_path", "/metrics") == "/metrics", name
        assert jobs[name]["static_configs"][0]["targets"], name
    assert "alerts.yml" in config["rule_files"]
