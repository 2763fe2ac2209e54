"""Checks the Grafana dashboards in a folder offline: each file is JSON with a title and uid of
its own, panels with unique ids and a grid position, a datasource variable of the type every
panel and target uses (Prometheus, or the official ClickHouse plugin), and a query in every
target: PromQL in `expr`, or SQL in `rawSql` using only the ClickHouse plugin's macros (no
/dashboard parameters such as {rounding:UInt32}). Prints one line per problem; exits non-zero
if there is any."""
import json
import os
import re
import sys

KNOWN = {"prometheus": "expr", "grafana-clickhouse-datasource": "rawSql"}
MACROS = {"$__fromTime", "$__toTime", "$__interval_s", "$__timeFilter", "$__timeInterval", "$__dateFilter"}

folder = sys.argv[1]
problems = []
uids = set()
files = sorted(f for f in os.listdir(folder) if f.endswith(".json"))
for name in files:
    where = os.path.join(folder, name)
    try:
        dashboard = json.load(open(where))
    except ValueError as e:
        problems.append(f"{where}: not JSON: {e}")
        continue
    if not dashboard.get("title") or not dashboard.get("uid"):
        problems.append(f"{where}: a dashboard needs a title and a uid")
    if dashboard.get("uid") in uids:
        problems.append(f"{where}: uid {dashboard.get('uid')} is used twice")
    uids.add(dashboard.get("uid"))
    variables = {v.get("name"): v.get("query") for v in dashboard.get("templating", {}).get("list", []) if v.get("type") == "datasource"}
    ids = set()
    for panel in dashboard.get("panels", []):
        label = f"{where}: panel {panel.get('id')} ({panel.get('title')})"
        if panel.get("id") in ids:
            problems.append(f"{label}: id used twice")
        ids.add(panel.get("id"))
        if not all(k in panel.get("gridPos", {}) for k in "xywh"):
            problems.append(f"{label}: no gridPos")
        kind = panel.get("datasource", {}).get("type")
        if kind not in KNOWN:
            problems.append(f"{label}: datasource type {kind!r} is not one of {sorted(KNOWN)}")
            continue
        variable = panel["datasource"].get("uid", "").strip("${}")
        if variables.get(variable) != kind:
            problems.append(f"{label}: datasource ${{{variable}}} is not a {kind} variable of the dashboard")
        if not panel.get("targets"):
            problems.append(f"{label}: no targets")
        for target in panel.get("targets", []):
            if target.get("datasource", {}).get("type") != kind:
                problems.append(f"{label}: target {target.get('refId')} uses another datasource")
            query = target.get(KNOWN[kind], "")
            if not query.strip():
                problems.append(f"{label}: target {target.get('refId')} has no {KNOWN[kind]}")
            if kind == "grafana-clickhouse-datasource":
                unknown = set(re.findall(r"\$__\w+", query)) - MACROS
                if unknown or re.search(r"\{\w+:\w+\}", query):
                    problems.append(f"{label}: SQL with what the ClickHouse plugin does not expand: {sorted(unknown) or query}")
for p in problems:
    print(p)
print(f"{len(files)} dashboard(s), {len(problems)} problem(s)")
sys.exit(1 if problems else 0)
