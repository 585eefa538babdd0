"""deploy/: alert rules and dashboard use only metrics that exist; example config and unit hold."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from gateway import config
from gateway.ops.metrics import METRICS, REGISTRY

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "passerelle-alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "passerelle-dashboard.json"
EXAMPLE = DEPLOY / "passerelle.example.toml"

# Series Prometheus itself makes, not our registry.
PROMETHEUS_OWN = {"up"}
_NAME = re.compile(r"\b((?:passerelle|process|python)_[a-z0-9_]+|up)\b")


def exposed_names() -> set[str]:
    names = set(METRICS.sample_names())
    for family in REGISTRY.collect():
        names.add(family.name)
        for sample in family.samples:
            names.add(sample.name)
    return names


def names_in(text: str) -> set[str]:
    """Crude PromQL scan: every identifier that looks like one of our metric names."""
    without_labels = re.sub(r"\{[^}]*\}", "{}", text)  # label values are not metric names
    return set(_NAME.findall(without_labels))


def alert_exprs() -> list[str]:
    return re.findall(r"expr:\s*(\|[\s\S]*?(?=\n\s+(?:for|labels):)|.+)", ALERTS.read_text())


def dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in doc["templating"]["list"] if "definition" in v]
    return exprs


def test_alert_rules_use_only_existing_metrics() -> None:
    exprs = alert_exprs()
    assert len(exprs) >= 6
    used = set().union(*(names_in(e) for e in exprs))
    assert used - exposed_names() - PROMETHEUS_OWN == set()


def test_alert_rules_cover_the_issue() -> None:
    text = ALERTS.read_text()
    for alert in ("QueueStuck", "OldestMessageOverOneHour", "HighBounceRate",
                  "TLSHandshakeFailures", "CertificateExpiresSoon", "DomainListStale"):  # fmt: skip
        assert f"alert: Passerelle{alert}" in text
    assert "> 3600" in text and "30 * 86400" in text and "48 * 3600" in text


def test_dashboard_uses_only_existing_metrics_and_shows_each_family() -> None:
    exprs = dashboard_exprs()
    used = set().union(*(names_in(e) for e in exprs))
    assert used - exposed_names() - PROMETHEUS_OWN == set()
    ours = {n for n in METRICS.family_names() if n.startswith("passerelle_")}
    shown = {n.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count") for n in used}
    assert ours - shown - {"passerelle_build_info"} == set()


def test_the_crude_scanner_sees_wrong_names() -> None:
    found = names_in('rate(passerelle_nope_total{a="passerelle_x"}[5m])')
    assert found == {"passerelle_nope_total"}
    assert "passerelle_nope_total" not in exposed_names()


def test_promtool_checks_the_rules() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not on PATH: apt-get install --no-install-recommends prometheus")
    done = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def _annotations(alert: str, instance: str) -> dict[str, str]:
    """The annotations of ``alert`` as the rules file writes them, for ``instance``."""
    block = ALERTS.read_text().split(f"- alert: {alert}\n", 1)[1].split("- alert:", 1)[0]
    found = dict(re.findall(r'^\s+(summary|description): (".*")$', block, re.M))
    return {k: json.loads(v).replace("{{ $labels.instance }}", instance)
            for k, v in found.items()}


SOP_DOES_ALL = ("0+10x300", "0x300")  # (on sop, on gpg): the sop adapter, sqop does every part
GPG_DOES_ALL = ("0x300", "0+10x300")  # the openpgp adapter: gpg does every part, as it should


@pytest.mark.parametrize(("operation", "sop", "gpg", "other", "fires"), [
    # sqop stopped accepting: gpg does all
    ("opened", "0+10x120 1200x180", "0+1x120 120+10x180", SOP_DOES_ALL, True),
    ("sealed", "0+10x120 1200x180", "0x120 0+10x180", SOP_DOES_ALL, True),  # stopped encrypting
    ("opened", "0+10x300", "0+1x300", SOP_DOES_ALL, False),  # a few refused (SHA-1 signers)
    ("opened", *GPG_DOES_ALL, GPG_DOES_ALL, False),
    ("sealed", *GPG_DOES_ALL, GPG_DOES_ALL, False),
])
@pytest.mark.parametrize("fast", ["sop", "rnp"])
def test_sop_fallback_alert_fires_only_when_sqop_stops_accepting(
        tmp_path: Path, operation: str, sop: str, gpg: str, other: tuple[str, str],
        fires: bool, fast: str) -> None:
    """promtool's own unit test of the rule, on series a gateway would expose (installed by
    .ci/run): the parts ``operation`` counted on the faster tool (sop, or rnp: librnp) and on
    gpg as given, the other operation's as ``other``."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not on PATH: apt-get install --no-install-recommends prometheus")
    counts = {operation: (sop, gpg), "sealed" if operation == "opened" else "opened": other}
    series = [{"series": f'passerelle_legacy_parts_{op}_total'
                         f'{{instance="a",job="passerelle",tool="{tool}"}}',
               "values": values}
              for op, (on_sop, on_gpg) in counts.items()
              for tool, values in ((fast, on_sop), ("gpg", on_gpg))]
    alert = "PasserelleSopFallingBackToGpg"
    expected = [{"exp_labels": {"severity": "warning", "instance": "a"},
                 "exp_annotations": _annotations(alert, "a")}] if fires else []
    test = tmp_path / "test.yml"  # YAML, written as JSON (a subset of it)
    test.write_text(json.dumps({
        "rule_files": [str(ALERTS)], "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": [
            {"eval_time": "100m", "alertname": alert, "exp_alerts": []},
            {"eval_time": "250m", "alertname": alert, "exp_alerts": expected}]}]}))
    done = subprocess.run([promtool, "test", "rules", str(test)], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_example_config_loads_and_documents_every_key_config_reads() -> None:
    settings = config.load(EXAMPLE)
    assert settings.spool_url == ""
    text = EXAMPLE.read_text(encoding="utf-8")
    data = tomllib.loads(text)
    source = (ROOT / "gateway" / "config.py").read_text(encoding="utf-8")
    readers = dict(re.findall(r"(\w+) = top\.table\(\"(\w+)\"\)", source))
    read = re.findall(r"\b(\w+)\.(?:text|number|flag|path|paths|argv|words|count)\(\"(\w+)\"",
                      source)
    assert read, "the scan of gateway/config.py found no keys"
    for reader, key in read:
        section = readers[reader]
        documented = key in data.get(section, {}) or re.search(rf"^# {key} = ", text, re.M)
        assert documented, f"[{section}] {key} is not in the example"
    for section in ("listen", "limits", "routes", "retry", "ops", "logging"):
        assert section in data
    assert data["retry"] == {"initial": 300, "factor": 2, "max": 3600,
                             "delay_warning_after": 4 * 3600, "lifetime": 5 * 86400}  # fmt: skip
    assert data["ops"]["listen"] == "127.0.0.1:9325"


def test_systemd_unit_is_hardened() -> None:
    unit = (DEPLOY / "passerelle.service").read_text()
    for line in ("User=passerelle", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
                 "NoNewPrivileges=yes", "StateDirectory=passerelle", "CapabilityBoundingSet=\n",
                 "ExecReload=/bin/kill -HUP $MAINPID", "Restart=on-failure",
                 "KillSignal=SIGTERM", "TimeoutStopSec=60"):  # fmt: skip
        assert line in unit, line
    assert "AmbientCapabilities=CAP_NET_BIND_SERVICE" in unit  # documented for port 25


def test_containerfile_runs_as_a_user_with_gnupg() -> None:
    text = (DEPLOY / "Containerfile").read_text()
    assert text.startswith("#") and "FROM python:3.11-slim" in text
    assert "gnupg" in text and "\nUSER passerelle\n" in text
    assert re.search(r"apt-get install [^\n]*\bsqop\b", text)  # legacy.adapter = "sop" works
    assert re.search(r"apt-get install [^\n]*\blibrnp0\b", text)  # "auto" is librnp
    assert '"serve", "--config", "/etc/passerelle/passerelle.toml"' in text


def test_operations_guide_names_the_commands() -> None:
    guide = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    for command in ("passerelle config check", "passerelle queue list", "passerelle queue retry",
                    "passerelle quarantine release", "passerelle whitelist import",
                    "systemctl reload passerelle"):  # fmt: skip
        assert command in guide, command
    for alert in re.findall(r"- alert: (\w+)", ALERTS.read_text()):
        assert alert in guide, f"{alert} has no entry in docs/operations.md"
