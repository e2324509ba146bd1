"""What dist/ installs: the Grafana dashboard (valid JSON of Grafana's
dashboard model, every query valid PromQL per promtool and naming only
metrics that the exporter serves and docs/metrics.md documents), the
documentation of every exported metric, and the systemd units
(`systemd-analyze verify`, ordering, capabilities, directories).

Run by meson (`meson test dist`, suite unit) with RAVELIN_BUILD set to
the build directory, which holds the configured units."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("RAVELIN_BUILD", REPO / "build"))
if not BUILD.is_absolute():
    BUILD = REPO / BUILD
DASHBOARD = REPO / "dist" / "grafana" / "ravelin.json"
UNITS = ["ravelin-hugepages.service", "ravelin-dataplane.service", "ravelin-iked.service"]
HISTOGRAM_SUFFIX = re.compile(r"_(bucket|sum|count)$")


def exported_metrics() -> set[str]:
    """Metric names the exporter (controlplane/iked/metrics.cc) creates."""
    src = (REPO / "controlplane" / "iked" / "metrics.cc").read_text()
    names = set(re.findall(r'"(ravelin_[a-z0-9_]+)"', src))
    assert len(names) > 20, names
    return names


def documented_metrics() -> set[str]:
    text = (REPO / "docs" / "metrics.md").read_text()
    return set(re.findall(r"^\| `(ravelin_[a-z0-9_]+)` \|", text, re.M))


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def targets(d: dict):
    for p in d["panels"]:
        for t in p.get("targets", []):
            yield p, t


def test_every_exported_metric_is_documented_and_nothing_else():
    exported, documented = exported_metrics(), documented_metrics()
    assert exported - documented == set(), "exported but not in docs/metrics.md"
    assert documented - exported == set(), "documented but not exported"


def test_names_follow_the_conventions():
    for name in exported_metrics():
        assert name.startswith("ravelin_")
        assert not name.endswith("_ms") and "millisecond" not in name, name
    src = (REPO / "controlplane" / "iked" / "metrics.cc").read_text()
    # Every family's type: counters end in _total, gauges do not.
    families = re.findall(r'"(ravelin_[a-z0-9_]+)",\s*(?:"[^"]*"\s*)+,\s*MetricType::(\w+)', src)
    assert len(families) >= 20, families
    for name, kind in families:
        assert name.endswith("_total") == (kind == "Counter"), (name, kind)


def test_dashboard_is_a_grafana_dashboard():
    d = dashboard()
    for key in ("uid", "title", "panels", "schemaVersion", "templating", "time"):
        assert key in d, key
    assert isinstance(d["schemaVersion"], int) and d["schemaVersion"] >= 30
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", d["uid"])
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    occupied: set[tuple[int, int]] = set()
    for p in d["panels"]:
        assert p["type"] in ("row", "stat", "timeseries", "gauge", "table"), p["type"]
        g = p["gridPos"]
        assert g["w"] > 0 and g["h"] > 0 and 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        cells = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & occupied, f"panel '{p['title']}' overlaps another"
        occupied |= cells
        if p["type"] != "row":
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
            assert p["targets"], p["title"]
    for p, t in targets(d):
        assert t["datasource"]["uid"] == "${datasource}"
        assert t["refId"] and t["expr"], p["title"]


def test_dashboard_queries_name_existing_metrics():
    exported, documented = exported_metrics(), documented_metrics()
    used = set()
    for p, t in targets(dashboard()):
        names = re.findall(r"\bravelin_[a-z0-9_]+", t["expr"])
        assert names, (p["title"], t["expr"])
        for n in names:
            base = n if n in exported else HISTOGRAM_SUFFIX.sub("", n)
            assert base in exported, (p["title"], n)
            assert base in documented, (p["title"], n)
            used.add(base)
    # What an operator looks at first (issue 6): every one has a panel.
    for needed in ("ravelin_tunnel_up", "ravelin_tunnel_bytes_total", "ravelin_dataplane_drops_total",
                   "ravelin_ike_sa_rekeys_total", "ravelin_child_sa_rekeys_total",
                   "ravelin_ike_negotiation_failures_total", "ravelin_worker_busy_cycles_total"):
        assert needed in used, needed


def test_dashboard_queries_are_valid_promql(tmp_path):
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing (Debian package prometheus, scripts/install-deps.sh)"
    rules = []
    for i, (p, t) in enumerate(targets(dashboard())):
        expr = t["expr"].replace("$__rate_interval", "1m").replace("$instance", ".*")
        assert "$" not in expr, expr
        rules.append({"record": f"dashboard:panel_{p['id']}_{t['refId']}:{i}", "expr": expr})
    f = tmp_path / "rules.yml"
    f.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))   # JSON is YAML
    r = subprocess.run([promtool, "check", "rules", str(f)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    # And a broken query is refused: the check is real.
    f.write_text(json.dumps({"groups": [{"name": "x", "rules": [{"record": "x:y", "expr": "rate(ravelin_x[1m]"}]}]}))
    assert subprocess.run([promtool, "check", "rules", str(f)], capture_output=True, timeout=60).returncode != 0


# --- systemd units -------------------------------------------------------------------------

def configured_units() -> dict[str, str]:
    out = {}
    for u in UNITS:
        p = BUILD / "dist" / u
        assert p.exists(), f"{p} missing: meson configures it (dist/meson.build)"
        out[u] = p.read_text()
    return out


def unit_keys(text: str) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for line in re.sub(r"\\\n", " ", text).splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            k, v = line.split("=", 1)
            keys.setdefault(k.strip(), []).append(v.strip())
    return keys


def test_units_pass_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze missing (Debian package systemd)"
    units = configured_units()
    bindir = re.search(r"ExecStart=(\S+)/ravelin-dataplane ", units["ravelin-dataplane.service"]).group(1)
    # The programs are not installed here: the units are verified with
    # ExecStart pointing at the build's binaries instead.
    binaries = {"ravelin-dataplane": BUILD / "dataplane" / "ravelin-dataplane",
                "ravelin-iked": BUILD / "controlplane" / "iked" / "ravelin-iked"}
    for b in binaries.values():
        assert os.access(b, os.X_OK), f"{b} not built"
    for u, text in units.items():
        for name, path in binaries.items():
            text = text.replace(f"{bindir}/{name} ", f"{path} ")
        assert bindir + "/" not in text, u
        (tmp_path / u).write_text(text)
    r = subprocess.run([analyze, "verify", *[str(tmp_path / u) for u in UNITS]], capture_output=True,
                       text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0 and not r.stderr.strip(), r.stdout + r.stderr
    # A broken unit is refused: the check is real.
    (tmp_path / "broken.service").write_text("[Service]\nExecStart=relative/path\n")
    r = subprocess.run([analyze, "verify", str(tmp_path / "broken.service")], capture_output=True, text=True,
                       timeout=60, cwd=tmp_path)
    assert r.returncode != 0


def test_units_order_bind_and_bound_capabilities():
    u = {name: unit_keys(text) for name, text in configured_units().items()}
    iked, dp, hp = u["ravelin-iked.service"], u["ravelin-dataplane.service"], u["ravelin-hugepages.service"]
    assert "ravelin-dataplane.service" in iked["After"][0] and iked["BindsTo"] == ["ravelin-dataplane.service"]
    assert iked["PartOf"] == ["ravelin-dataplane.service"]
    assert "ravelin-hugepages.service" in dp["Requires"][0] and "ravelin-hugepages.service" in dp["After"][0]
    assert hp["Type"] == ["oneshot"] and hp["RemainAfterExit"] == ["yes"]
    for s in (iked, dp):
        assert s["Restart"] == ["on-failure"]
        assert s["RuntimeDirectory"] == ["ravelin"] and s["RuntimeDirectoryPreserve"] == ["yes"]
        assert s["ConfigurationDirectory"] == ["ravelin"]
        assert s["NoNewPrivileges"] == ["yes"]
        assert any("/etc/ravelin/" in e and "--check" in e for e in s["ExecStartPre"])
        assert all(e.startswith("/") for e in s["ExecStart"])
    assert set(iked["CapabilityBoundingSet"][0].split()) == {"CAP_NET_BIND_SERVICE", "CAP_NET_ADMIN", "CAP_IPC_LOCK"}
    assert {"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_SYS_ADMIN"} <= set(dp["CapabilityBoundingSet"][0].split())
    assert "CAP_SYS_MODULE" not in dp["CapabilityBoundingSet"][0]
    assert iked["ExecReload"] == ["/bin/kill -HUP $MAINPID"]


def test_example_iked_config_is_accepted(tmp_path):
    iked = BUILD / "controlplane" / "iked" / "ravelin-iked"
    conf = tmp_path / "iked.conf"
    conf.write_text((REPO / "dist" / "etc" / "iked.conf").read_text())
    r = subprocess.run([str(iked), "-c", str(conf), "--check"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok" in r.stdout
