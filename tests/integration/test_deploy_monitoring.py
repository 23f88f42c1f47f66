"""deploy/grafana and deploy/prometheus: valid files whose every metric is one /metrics serves.

The expressions are parsed (metric names and the label names they match on), and the names
are looked up in a real scrape of a running app that has done some work. ``promtool check
rules`` and the rules' unit tests (``promtool test rules``) run too where Prometheus's tools
are installed (``apt-get install prometheus``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from solo_os import App, Context, Retry, sources
from solo_os import store as store_mod
from tests import helpers

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "solo-os.json"
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULES_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
# Series Prometheus makes itself, and the labels it adds to every scraped series.
PROMETHEUS_SERIES = {"up"}
TARGET_LABELS = {"job", "instance"}
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
             "group_left", "group_right", "inf", "nan"}
_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"


def selectors(expr: str) -> dict[str, set[str]]:
    """Metric names used by a PromQL expression, each with the label names it matches on."""
    found: dict[str, set[str]] = {}
    for name, matchers in re.findall(rf"({_NAME})\s*\{{([^}}]*)\}}", expr):
        found.setdefault(name, set()).update(re.findall(rf"({_NAME})\s*(?:=~|!~|!=|=)", matchers))
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    bare = re.sub(r"\{[^}]*\}", " ", bare)
    bare = re.sub(r"\[[^\]]*\]", " ", bare)
    bare = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", bare)
    for m in re.finditer(_NAME, bare):
        token, rest = m.group(0), bare[m.end():]
        if token.lower() in _KEYWORDS or rest.lstrip().startswith("("):
            continue  # a keyword or a function call
        if m.start() > 0 and (bare[m.start() - 1].isdigit() or bare[m.start() - 1] == "."):
            continue  # a number's exponent or unit
        found.setdefault(token, set())
    for _, grouping in re.findall(r"\b(by|without)\s*\(([^)]*)\)", expr):
        for label in re.findall(_NAME, grouping):
            found.setdefault("", set()).add(label)  # labels grouped on, checked against all
    return found


def test_the_parser_finds_names_and_labels() -> None:
    got = selectors(
        'histogram_quantile(0.95, sum by (handler, le) (rate(a_seconds_bucket{job=~"$job"}[5m])))'
        ' / on(instance) b_total > 1e3 and c'
    )
    assert got == {"a_seconds_bucket": {"job"}, "b_total": set(), "c": set(), "": {"handler", "le"}}


def _app() -> App:
    app = App(service="monitoring-test")
    app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))

    @app.on("billing", "invoice.paid", retry=Retry(max_attempts=2))
    async def charge(event: Any, ctx: Context) -> None:
        if event.get("fail"):
            raise RuntimeError("declined")

    @app.cron("* * * * * *", name="tick", retry=Retry(max_attempts=1))
    async def tick(ctx: Context) -> None:
        ticked.append(ctx.scheduled_at)

    return app


ticked: list[Any] = []


@pytest.fixture(scope="module")
def exposed() -> dict[str, set[str]]:
    """What a running app's /metrics serves: every series name and its label names."""
    import asyncio

    async def scrape(url: str) -> str:
        async with helpers.running(
            _app(), url, roles=("serve", "worker", "scheduler"),
            settings={"SOLO_OS_METRICS_REFRESH_SECONDS": 0.05},
        ) as h:
            await h.post("billing", {"id": "ok"}, key="k1")
            await h.post("billing", {"id": "bad", "fail": True}, key="k2")
            await h.post("billing", {"id": "x"}, key="k3", secret="wrong")

            async def finished() -> bool:
                xs = await h.store.list_executions(store_mod.Filters(handler="charge"))
                return len(xs) == 2 and {x.status for x in xs} == {"succeeded", "dead"} and bool(ticked)

            await helpers.eventually(finished)
            await asyncio.sleep(0.06)
            response = await h.client.get("/metrics")
            assert response.status_code == 200
            return response.text

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/monitoring.db"

        async def migrate_and_scrape() -> str:
            s = store_mod.connect(url)
            await s.migrate()
            await s.close()
            return await scrape(url)

        text = asyncio.run(migrate_and_scrape())
    names: dict[str, set[str]] = {}
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    for family in text_string_to_metric_families(text):
        labels = {k for s in family.samples for k in s.labels}
        for suffix in suffixes.get(family.type, ("",)):
            names.setdefault(family.name + suffix, set()).update(labels)
        for s in family.samples:
            names.setdefault(s.name, set()).update(s.labels)
    assert "solo_os_attempts_total" in names and "solo_os_executions_finished_total" in names
    return names


def _check(expr: str, exposed: dict[str, set[str]], where: str) -> set[str]:
    used = selectors(expr)
    assert used, f"{where}: no metric found in {expr!r}"
    every_label = set().union(*exposed.values()) | TARGET_LABELS | {"le"}
    for name, labels in used.items():
        if name == "":
            assert labels <= every_label, f"{where}: grouped by unknown labels {labels - every_label}"
            continue
        if name in PROMETHEUS_SERIES:
            continue
        assert name in exposed, f"{where}: {name} is not served by /metrics"
        allowed = exposed[name] | TARGET_LABELS
        assert labels <= allowed, f"{where}: {name} has no label(s) {labels - allowed}"
    return {n for n in used if n}


def test_the_alert_rules_are_valid_and_use_only_served_metrics(exposed: dict[str, set[str]]) -> None:
    rules = yaml.safe_load(RULES.read_text())
    used: set[str] = set()
    names = []
    for group in rules["groups"]:
        assert group["name"] and group["rules"]
        for rule in group["rules"]:
            names.append(rule["alert"])
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
            assert rule["labels"]["severity"] in ("critical", "warning")
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]
            if "for" in rule:
                assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["for"]
            used |= _check(rule["expr"], exposed, rule["alert"])
    assert len(names) == len(set(names)) >= 8
    assert len(used - PROMETHEUS_SERIES) >= 8  # the rules cover most of what is served
    # the rules' own unit tests feed only series /metrics serves
    for case in yaml.safe_load(RULES_TESTS.read_text())["tests"]:
        for series in case["input_series"]:
            _check(series["series"], exposed, "alerts_test.yml")
    promtool = shutil.which("promtool")
    if promtool:
        done = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"SUCCESS: {len(names)} rules found" in done.stdout
        # the thresholds, `for` clauses and messages behave as written (alerts_test.yml)
        done = subprocess.run(
            [promtool, "test", "rules", RULES_TESTS.name], cwd=RULES.parent, capture_output=True, text=True
        )
        assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr


def test_the_grafana_dashboard_is_valid_and_uses_only_served_metrics(exposed: dict[str, set[str]]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "solo-os" and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    query = variables["job"]["query"]["query"]
    parsed = re.fullmatch(rf"label_values\(({_NAME}),\s*({_NAME})\)", query)
    assert parsed is not None, query
    metric, label = parsed.groups()
    assert metric in exposed and label in exposed[metric] | TARGET_LABELS
    used: set[str] = set()
    ids = []
    for panel in dashboard["panels"]:
        ids.append(panel["id"])
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used |= _check(target["expr"], exposed, panel["title"])
    assert len(ids) == len(set(ids))
    served = {n for n in exposed if n.startswith("solo_os_")}
    families = {re.sub(r"_(bucket|count|sum)$", "", n) for n in served}
    shown = {re.sub(r"_(bucket|count|sum)$", "", n) for n in used}
    # every metric family /metrics serves has a panel
    assert families - shown == set(), families - shown
