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
from gateway.ops.metrics import METRICS, REGISTRY, Metrics

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


# Keys of the example whose value is the operator's own (paths, the gateway's key, next hops):
# everything else in the example must be the value the code uses when the key is absent.
SITE_KEYS = {"gateway.state_dir", "mappings.addresses", "mappings.dir", "legacy.gnupg_home",
             "legacy.gateway_fingerprint", "trust.signing_cert", "trust.signing_key",
             "trust.chain", "trust.server_cert", "trust.server_key", "trust.client_cert",
             "trust.client_key", "trust.anchors", "trust.crls", "trust.domain_list",
             "trust.list_signer_cert",
             'routes."medical33.legacy.example"'}  # fmt: skip


def _leaves(data: dict[str, object], prefix: str = "") -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for key, value in data.items():
        if isinstance(value, dict) and prefix + key != "routes":
            out += _leaves(value, f"{prefix}{key}.")  # type: ignore[arg-type]
        else:
            out.append((prefix, key))
    return out


def _without(data: dict[str, object], prefix: str, key: str) -> dict[str, object]:
    copy = json.loads(json.dumps(data))
    table = copy
    for part in [p for p in prefix.split(".") if p]:
        table = table[part]
    del table[key]
    return copy  # type: ignore[no-any-return]


def _comparable(s: config.Settings) -> dict[str, object]:
    return {k: v for k, v in vars(s).items() if k not in ("raw", "source")}


def test_example_config_loads_and_documents_every_key_config_reads() -> None:
    """The example loads with serve's own validation, names every key the code reads (set,
    or commented out as `# key = …`), and every value it sets is the code's default."""
    settings = config.load(EXAMPLE)
    text = EXAMPLE.read_text(encoding="utf-8")
    data = tomllib.loads(text)
    known = config.known_keys()
    assert sum(len(keys) for keys in known.values()) > 40
    for prefix, keys in known.items():
        table: object = data
        for part in [p for p in prefix.split(".") if p]:
            table = table.get(part, {}) if isinstance(table, dict) else {}
        for key in keys:
            documented = (isinstance(table, dict) and key in table) or re.search(
                rf"^# {re.escape(key)} = |^# \[{re.escape(prefix + key)}\]$", text, re.M)
            assert documented, f"[{prefix[:-1]}] {key} is not in the example"
    base = EXAMPLE.parent
    for prefix, key in _leaves(data):
        if prefix in ("routes.", "") and key == "routes":
            continue
        name = f"{prefix}{key}" if prefix != "routes." else f'routes."{key}"'
        if name in SITE_KEYS:
            continue
        default = config.from_dict(_without(data, prefix, key), base=base, source="x")
        assert _comparable(default) == _comparable(settings), (
            f"{name} in the example is not the default")


def test_a_wrong_default_in_the_example_is_caught(tmp_path: Path) -> None:
    """The check above can fail: an example claiming another port is not the default."""
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    data["limits"]["max_recipients"] = 7
    changed = config.from_dict(data, base=EXAMPLE.parent, source="x")
    default = config.from_dict(_without(data, "limits.", "max_recipients"),
                               base=EXAMPLE.parent, source="x")
    assert _comparable(changed) != _comparable(default)


def test_systemd_unit_binds_port_25_and_raises_the_file_limit() -> None:
    unit = (DEPLOY / "passerelle.service").read_text()
    assert "\nAmbientCapabilities=CAP_NET_BIND_SERVICE\n" in unit
    assert "\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\n" in unit
    limit = re.search(r"^LimitNOFILE=(\d+)$", unit, re.M)
    assert limit and int(limit.group(1)) >= 65536


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    """Where systemd-analyze exists (not in every container), the unit passes its verify."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed here")
    unit = tmp_path / "passerelle.service"
    text = (DEPLOY / "passerelle.service").read_text()
    # verify wants the binaries it names to exist: point them at one that does
    unit.write_text(text.replace("/usr/local/bin/passerelle", shutil.which("true") or "/bin/true"))
    done = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True,
                          timeout=60, check=False)
    # it exits 0 even on an unknown key: every line naming the unit is a complaint
    complaints = [line for line in done.stderr.splitlines() if str(unit) in line]
    assert done.returncode == 0 and complaints == [], done.stderr


def test_systemd_analyze_complaints_are_seen(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed here")
    unit = tmp_path / "bad.service"
    unit.write_text(f"[Service]\nExecStart={shutil.which('true')}\nLimitNOFIEL=65536\n")
    done = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert any(str(unit) in line for line in done.stderr.splitlines())


def test_systemd_unit_is_hardened() -> None:
    unit = (DEPLOY / "passerelle.service").read_text()
    for line in ("User=passerelle", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
                 "NoNewPrivileges=yes", "StateDirectory=passerelle",
                 "ExecReload=/bin/kill -HUP $MAINPID", "Restart=on-failure",
                 "KillSignal=SIGTERM", "TimeoutStopSec=60"):  # fmt: skip
        assert line in unit, line


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


def _series(metrics: Metrics, values: str, *, only: str = "passerelle_") -> list[dict[str, str]]:
    """Every sample a scrape of ``metrics`` shows now (``_created`` aside), as promtool input
    series of instance ``a`` whose values follow ``values`` (``{v}`` is the sample's value)."""
    out = []
    for family in metrics.registry.collect():
        for sample in family.samples:
            if not sample.name.startswith(only) or sample.name.endswith("_created"):
                continue
            labels = {"instance": "a", "job": "passerelle", **sample.labels}
            text = ",".join(f'{k}="{v}"' for k, v in labels.items())
            out.append({"series": f"{sample.name}{{{text}}}",
                        "values": values.format(v=sample.value)})
    return out


def _promtool_test(tmp_path: Path, series: list[dict[str, str]], alert: str,
                   checks: list[tuple[str, list[dict[str, object]]]]) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not on PATH: apt-get install --no-install-recommends prometheus")
    test = tmp_path / "test.yml"  # YAML, written as JSON (a subset of it)
    test.write_text(json.dumps({
        "rule_files": [str(ALERTS)], "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": [
            {"eval_time": at, "alertname": alert, "exp_alerts": expected}
            for at, expected in checks]}]}))
    done = subprocess.run([promtool, "test", "rules", str(test)], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("zero_initialised", [True, False])
def test_queue_stuck_fires_after_a_restart_with_the_peers_down(
        tmp_path: Path, zero_initialised: bool) -> None:
    """A gateway just restarted, three messages deferred, every peer down: nothing is ever
    delivered.  Its scrape (taken from a real `Metrics`) is enough for QueueStuck to fire;
    without the zero series (as before: counters born on first use) it could not."""
    fresh = Metrics()
    fresh.set_spool_depth({"deferred": 3})
    fresh.set_oldest_age(600)
    series = _series(fresh, "{v}x90")
    assert any('event="delivered"' in s["series"] for s in series)
    if not zero_initialised:
        series = [s for s in series if not (s["series"].startswith("passerelle_messages_total")
                                            and s["values"].startswith("0.0x"))]
    alert = "PasserelleQueueStuck"
    expected: list[dict[str, object]] = [
        {"exp_labels": {"severity": "critical", "instance": "a"},
         "exp_annotations": _annotations(alert, "a")}]
    _promtool_test(tmp_path, series, alert,
                   [("10m", []), ("60m", expected if zero_initialised else [])])


def test_inbound_tls_failures_alert_can_fire(tmp_path: Path) -> None:
    """Inbound handshake failures (counted with no peer domain) reach the TLS alert: one a
    minute for a quarter of an hour is more than five in 15 minutes."""
    metrics = Metrics()
    metrics.count_tls_failure("", "no_client_certificate", direction="inbound")
    series = [s for s in _series(metrics, "0+{v}x60")
              if s["series"].startswith("passerelle_tls_handshake_failures_total")]
    alert = "PasserelleTLSHandshakeFailures"
    labels = {"direction": "inbound", "peer_domain": "other", "reason": "no_client_certificate"}
    summary = _annotations(alert, "a")
    for key, value in labels.items():
        summary = {k: v.replace(f"{{{{ $labels.{key} }}}}", value) for k, v in summary.items()}
    summary["description"] = summary["description"].replace("{{ $value }}", "15")
    expected: list[dict[str, object]] = [
        {"exp_labels": {"severity": "warning", "instance": "a", **labels},
         "exp_annotations": summary}]
    _promtool_test(tmp_path, series, alert, [("3m", []), ("40m", expected)])


def test_every_known_label_set_exists_at_zero_and_the_process_collector_too() -> None:
    fresh = Metrics()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in fresh.registry.collect() for s in f.samples}
    for event in ("received", "translated", "delivered", "deferred", "bounced"):
        for direction in ("to_trust", "to_legacy"):
            reason = {"received": "ok", "translated": "ok", "delivered": "ok",
                      "deferred": "peer_temporary", "bounced": "peer_permanent"}[event]
            key = ("passerelle_messages_total",
                   (("direction", direction), ("event", event), ("reason", reason)))
            assert samples[key] == 0
    assert samples[("passerelle_smtp_rejections_total",
                    (("code", "550"), ("listener", "trust"),
                     ("reason", "certificate_rejected")))] == 0
    assert samples[("passerelle_spool_messages", (("state", "deferred"),))] == 0
    names = {name for name, _ in samples}
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes",
            "process_open_fds", "python_info"} <= names


@pytest.mark.parametrize("expired", [0, 1])
def test_crl_expired_alert_fires_on_the_gateways_own_series(tmp_path: Path,
                                                            expired: int) -> None:
    """The gauge a gateway exposes (zero from the start, one per CRL past its nextUpdate)
    fires PasserelleCRLExpired at once when a CRL has expired, never when none has."""
    metrics = Metrics()
    series = [s for s in _series(metrics, "{v}x30")
              if s["series"].startswith("passerelle_crl_expired{")]
    assert series and series[0]["values"] == "0.0x30"  # the series exists before it moves
    metrics.set_crl_expired(expired)
    series = [s for s in _series(metrics, "0x10 {v}x20")
              if s["series"].startswith("passerelle_crl_expired{")]
    alert = "PasserelleCRLExpired"
    annotations = _annotations(alert, "a")
    annotations["description"] = annotations["description"].replace("{{ $value }}", "1")
    fired: list[dict[str, object]] = [
        {"exp_labels": {"severity": "critical", "instance": "a"},
         "exp_annotations": annotations}] if expired else []
    _promtool_test(tmp_path, series, alert, [("5m", []), ("20m", fired)])
