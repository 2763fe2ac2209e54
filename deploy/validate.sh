#!/usr/bin/env bash
# Checks everything under deploy/ that a cluster or a host would run, offline, one line per
# check (PASS/FAIL/SKIP), non-zero exit on any FAIL:
#   - the Helm chart: helm lint --strict and helm template for values-dev/staging/prod (and the
#     HPA, spool-drain and network-policy variants), and values the chart must refuse; the
#     production render carries the shipped Prometheus and Alertmanager files as ConfigMaps;
#   - every rendered manifest and every file in deploy/k8s, strictly against the Kubernetes
#     JSON schemas (PyPI kubernetes-validate) and the CRDs' openAPIV3Schema (Strimzi and
#     Altinity: deploy/k8s/crd-schemas, vendored; KEDA: from its Go module);
#   - the systemd units in deploy/hosts (systemd-analyze verify, where systemd is installed);
#   - deploy/prometheus: promtool check config / check rules / test rules;
#   - deploy/alertmanager: amtool check-config, and every alert rule's severity routed to its
#     receiver (page: the pager, ticket: chat);
#   - deploy/grafana: every dashboard's JSON, datasources and queries (validate_grafana.py).
# Installs what it needs once under ~/.cache/ehac (helm from the Go module proxy, a Python venv
# from PyPI, KEDA's module); later runs take a few seconds.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEPLOY=$ROOT/deploy
CACHE=${EHAC_CACHE_DIR:-$HOME/.cache/ehac}
TOOLS=$CACHE/tools/bin
HELM_VERSION=v3.22.0
KEDA_VERSION=v2.21.0
KUBERNETES_VALIDATE_VERSION=1.37.0
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and a current one.
K8S_VERSIONS="1.27.0 1.33.0"
GO=${GO:-/usr/local/go/bin/go}
export GOPATH=$CACHE/go GOMODCACHE=$CACHE/go/pkg/mod GOFLAGS=-mod=mod
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
failures=0

pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
# check NAME COMMAND...: PASS or FAIL with the command's output indented.
check() {
    local name=$1
    shift
    local out
    if out=$("$@" 2>&1); then
        pass "$name"
    else
        fail "$name"
        printf '%s\n' "$out" | tail -n 30 | sed 's/^/    /'
    fi
}

# --- tools -----------------------------------------------------------------------------------
mkdir -p "$TOOLS"
HELM=$TOOLS/helm
# `go install` leaves helm's own version string short (v3.22): a stamp file says which was built.
if [ ! -x "$HELM" ] || [ "$(cat "$TOOLS/helm.version" 2>/dev/null)" != "$HELM_VERSION" ]; then
    echo "installing helm $HELM_VERSION from the Go module proxy (once, a few minutes)"
    [ -x "$GO" ] || { fail "helm: no Go toolchain at $GO"; exit 1; }
    if ! GOBIN=$TOOLS "$GO" install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" > "$WORK/helm-install.log" 2>&1; then
        tail -n 20 "$WORK/helm-install.log"
        fail "helm: go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
        exit 1
    fi
    echo "$HELM_VERSION" > "$TOOLS/helm.version"
fi
VENV=$CACHE/deploy-venv
if ! "$VENV/bin/python" -c "import kubernetes_validate, sys; sys.exit(kubernetes_validate.__version__ != '$KUBERNETES_VALIDATE_VERSION')" 2>/dev/null; then
    echo "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION into $VENV (once)"
    python3 -m venv "$VENV" && "$VENV/bin/pip" install -q "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
        || { fail "kubernetes-validate: pip install"; exit 1; }
fi
KEDA_DIR=$GOMODCACHE/github.com/kedacore/keda/v2@$KEDA_VERSION
if [ ! -f "$KEDA_DIR/config/crd/bases/keda.sh_scaledobjects.yaml" ]; then
    echo "fetching KEDA $KEDA_VERSION's CRDs from the Go module proxy (once)"
    (cd "$WORK" && "$GO" mod download "github.com/kedacore/keda/v2@$KEDA_VERSION") > "$WORK/keda.log" 2>&1 \
        || { tail -n 5 "$WORK/keda.log"; fail "KEDA CRDs: go mod download github.com/kedacore/keda/v2@$KEDA_VERSION"; }
fi
CRDS=(--crd-schema "$DEPLOY/k8s/crd-schemas" --crd-schema "$KEDA_DIR/config/crd/bases/keda.sh_scaledobjects.yaml")

# --- the chart -------------------------------------------------------------------------------
CHART=$DEPLOY/helm/ehac
# helm's own default cluster version is older than the chart's kubeVersion.
KUBE_VERSION=1.33.0
render() { # render NAME ARGS...: helm template into $WORK/NAME.yaml
    local name=$1
    shift
    "$HELM" template ehac "$CHART" --namespace ehac --kube-version "$KUBE_VERSION" "$@" > "$WORK/$name.yaml"
}
for env in dev staging prod; do
    check "helm lint --strict (values-$env.yaml)" "$HELM" lint --strict --kube-version "$KUBE_VERSION" "$CHART" -f "$CHART/values-$env.yaml"
    check "helm template (values-$env.yaml)" render "$env" -f "$CHART/values-$env.yaml"
done
check "helm template (values-prod.yaml, autoscalingMode=hpa)" render prod-hpa -f "$CHART/values-prod.yaml" --set autoscalingMode=hpa
check "helm template (values-staging.yaml, spool drain Jobs and CronJobs)" \
    sh -c "'$HELM' template ehac '$CHART' --namespace ehac --kube-version $KUBE_VERSION -f '$CHART/values-staging.yaml' --set 'spoolDrain.claims={spool-ehac-gateway-2,spool-ehac-gateway-3}' > '$WORK/drain-jobs.yaml' \
        && '$HELM' template ehac '$CHART' --namespace ehac --kube-version $KUBE_VERSION -f '$CHART/values-staging.yaml' --set 'spoolDrain.claims={spool-ehac-gateway-2}' --set spoolDrain.schedule='*/30 * * * *' > '$WORK/drain-cronjobs.yaml' \
        && grep -q 'kind: Job' '$WORK/drain-jobs.yaml' && grep -q 'kind: CronJob' '$WORK/drain-cronjobs.yaml'"

# What the chart must refuse to render, and the reason it must give.
refuses() { # refuses WHAT EXPECTED_MESSAGE HELM_ARGS...
    local what=$1 expected=$2
    shift 2
    local out
    if out=$("$HELM" template ehac "$CHART" --kube-version "$KUBE_VERSION" "$@" 2>&1); then
        fail "helm template refuses $what (it rendered)"
    elif ! grep -q "$expected" <<< "$out"; then
        fail "helm template refuses $what, but not with \"$expected\":"
        printf '%s\n' "$out" | tail -n 5 | sed 's/^/    /'
    else
        pass "helm template refuses $what"
    fi
}
refuses "enricher.replicas=5 (12 partitions)" "does not divide kafka.partitions" --set enricher.replicas=5
refuses "sink autoscaling up to 8 replicas" "replica count 8 does not divide" -f "$CHART/values-prod.yaml" --set sink.autoscaling.maxReplicas=8
refuses "autoscaling minReplicas above maxReplicas" "is above maxReplicas" --set enricher.autoscaling.enabled=true --set enricher.autoscaling.minReplicas=6 --set enricher.autoscaling.maxReplicas=4
refuses "a gateway grace period shorter than its drain" "must be longer than its drain" --set gateway.terminationGracePeriodSeconds=30
refuses "no client registry Secret" "clientsSecret" --set gateway.clientsSecret=
refuses "no pepper Secret" "pepperSecret" --set enricher.pepperSecret=

# Facts the rendered production manifests must show (not only be well-formed).
facts() {
    local f=$WORK/prod.yaml
    python3 - "$f" "$DEPLOY" <<'PY'
import glob, os, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
def sts(name): return by[("StatefulSet", f"ehac-{name}")]["spec"]
problems = []
gw = sts("gateway")
if [t["metadata"]["name"] for t in gw.get("volumeClaimTemplates", [])] != ["spool"]:
    problems.append("the gateway has no per-pod spool volume")
if gw["persistentVolumeClaimRetentionPolicy"] != {"whenDeleted": "Retain", "whenScaled": "Retain"}:
    problems.append("spool claims are not retained on scale-down")
for name, drain in (("gateway", 20 + 21), ("enricher", 30), ("sink", 15)):
    pod = sts(name)["template"]["spec"]
    c = pod["containers"][0]
    if pod["terminationGracePeriodSeconds"] <= drain:
        problems.append(f"{name}: grace {pod['terminationGracePeriodSeconds']} s is not longer than its drain ({drain} s)")
    if c["readinessProbe"]["httpGet"] != {"path": "/readyz", "port": "admin"} or c["livenessProbe"]["httpGet"] != {"path": "/healthz", "port": "admin"}:
        problems.append(f"{name}: probes are not /readyz and /healthz on the admin port")
    env = {e["name"]: e for e in c["env"]}
    if name != "gateway" and env.get("EHAC_KAFKA_GROUP_INSTANCE_ID", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != "metadata.name":
        problems.append(f"{name}: group.instance.id is not the pod name")
    for e in c["env"]:
        if any(s in e["name"] for s in ("PASSWORD", "PEPPER")) and e["name"] != "EHAC_PEPPER_VERSION" and "value" in e:
            problems.append(f"{name}: {e['name']} has a literal value instead of a Secret reference")
if not any(d["kind"] == "Job" and "pre-install" in d["metadata"].get("annotations", {}).get("helm.sh/hook", "") for d in docs):
    problems.append("no pre-install/pre-upgrade migration Job")
if sorted(d["metadata"]["name"] for d in docs if d["kind"] == "PodDisruptionBudget") != ["ehac-enricher", "ehac-gateway", "ehac-sink"]:
    problems.append("PodDisruptionBudgets missing")
if sorted(d["spec"]["scaleTargetRef"]["name"] for d in docs if d["kind"] == "ScaledObject") != ["ehac-enricher", "ehac-sink"]:
    problems.append("no KEDA ScaledObjects for enricher and sink")
gw_policy = by[("NetworkPolicy", "ehac-gateway")]["spec"]["ingress"]
if [r["ports"][0]["port"] for r in gw_policy] != [8080, 9182]:
    problems.append("gateway network policy: public port then admin port expected")
monitoring = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap" and d["metadata"].get("namespace") == "monitoring"}
def shipped(path): return open(sys.argv[2] + path).read()
if monitoring.get("ehac-alertmanager", {}).get("data", {}).get("alertmanager.yml") != shipped("/alertmanager/alertmanager.yml"):
    problems.append("no ConfigMap ehac-alertmanager in monitoring holding deploy/alertmanager/alertmanager.yml")
prometheus = monitoring.get("ehac-prometheus", {}).get("data", {}).get("prometheus.yml", "")
if prometheus != shipped("/prometheus/prometheus-kubernetes.yml") or "alertmanagers" not in yaml.safe_load(prometheus).get("alerting", {}):
    problems.append("no ConfigMap ehac-prometheus in monitoring holding prometheus-kubernetes.yml with its alerting: alertmanagers")
rules = {os.path.basename(f): open(f).read() for f in glob.glob(sys.argv[2] + "/prometheus/rules/*.yml")}
if monitoring.get("ehac-prometheus-rules", {}).get("data") != rules:
    problems.append("ConfigMap ehac-prometheus-rules does not hold the rule files of deploy/prometheus/rules")
print("\n".join(problems))
sys.exit(1 if problems else 0)
PY
}
check "rendered prod: spool volumes retained, grace > drain, probes, instance ids, secrets by reference, hook, PDBs, ScaledObjects, policies, the shipped Prometheus and Alertmanager configuration" facts

# --- strict schema validation ----------------------------------------------------------------
for version in $K8S_VERSIONS; do
    out=$("$VENV/bin/python" "$DEPLOY/validate_manifests.py" --k8s-version "$version" "${CRDS[@]}" --self-check \
        "$WORK"/dev.yaml "$WORK"/staging.yaml "$WORK"/prod.yaml "$WORK"/prod-hpa.yaml "$WORK"/drain-jobs.yaml "$WORK"/drain-cronjobs.yaml \
        "$DEPLOY"/k8s/kafka/*.yaml "$DEPLOY"/k8s/clickhouse/*.yaml 2>&1)
    status=$?
    printf '%s\n' "$out" | sed "s#$WORK/#rendered #; s#$ROOT/##"
    failures=$((failures + $(grep -c '^FAIL' <<< "$out")))
    [ $status -eq 0 ] || grep -q '^FAIL' <<< "$out" || fail "validate_manifests.py exited $status"
done

# --- plain hosts -----------------------------------------------------------------------------
if command -v systemd-analyze > /dev/null && [ -d /run/systemd/system -o -x /lib/systemd/systemd ]; then
    # verify resolves ExecStart: point it at stand-ins of the binaries the units name.
    mkdir -p "$WORK/units" "$WORK/bin"
    for bin in ehac-gateway ehac-enricher ehac-sink ehac-lagwatch; do
        printf '#!/bin/sh\n' > "$WORK/bin/$bin" && chmod +x "$WORK/bin/$bin"
    done
    for unit in "$DEPLOY"/hosts/systemd/*.service; do
        sed "s#/usr/local/bin/#$WORK/bin/#" "$unit" > "$WORK/units/$(basename "$unit")"
        check "systemd-analyze verify $(basename "$unit")" sh -c "out=\$(systemd-analyze verify '$WORK/units/$(basename "$unit")' 2>&1); printf '%s\n' \"\$out\"; ! printf '%s\n' \"\$out\" | grep -v 'Unit .* not found\|Failed to prepare filename\|ehac.target' | grep -q ."
    done
else
    echo "SKIP systemd-analyze verify: systemd is not installed here"
fi
for unit in "$DEPLOY"/hosts/systemd/*.service; do
    name=$(basename "$unit" .service)
    check "$name.service: KillSignal=SIGTERM, TimeoutStopSec, EnvironmentFile" \
        sh -c "grep -q '^KillSignal=SIGTERM' '$unit' && grep -q '^TimeoutStopSec=' '$unit' && grep -q '^EnvironmentFile=' '$unit'"
done
# Every EHAC_ name in the env files is one the services read.
known=$(cat "$DEPLOY/hosts/env-names.txt")
for env in "$DEPLOY"/hosts/env/*.env; do
    unknown=$(grep -o '^#\? *EHAC_[A-Z_]*' "$env" | tr -d '# ' | sort -u | grep -vxF -f <(printf '%s\n' "$known") || true)
    if [ -z "$unknown" ]; then pass "$(basename "$env"): every variable is one the services read"; else fail "$(basename "$env"): unknown $unknown"; fi
done

for xml in "$DEPLOY"/hosts/clickhouse/*/*.xml*; do
    check "$(basename "$xml"): well-formed XML" python3 -c "import sys, xml.etree.ElementTree as E; E.parse(sys.argv[1])" "$xml"
done

# --- Prometheus ------------------------------------------------------------------------------
PROMTOOL=$(command -v promtool || true)
if [ -z "$PROMTOOL" ]; then
    fail "promtool not found (apt-get install prometheus)"
else
    check "promtool check config prometheus.yml" "$PROMTOOL" check config "$DEPLOY/prometheus/prometheus.yml"
    echo "SKIP promtool check config prometheus-kubernetes.yml: Debian's promtool is built without Kubernetes service discovery"
    check "promtool check rules" "$PROMTOOL" check rules "$DEPLOY"/prometheus/rules/*.yml
    check "promtool test rules" sh -c "cd '$DEPLOY/prometheus' && '$PROMTOOL' test rules tests/*.yml"
fi

# --- Alertmanager ----------------------------------------------------------------------------
AMTOOL=$(command -v amtool || true)
ALERTMANAGER_CONFIG=$DEPLOY/alertmanager/alertmanager.yml
if [ -z "$AMTOOL" ]; then
    fail "amtool not found (apt-get install prometheus-alertmanager)"
else
    check "amtool check-config alertmanager.yml" "$AMTOOL" check-config "$ALERTMANAGER_CONFIG"
    routed() { # routed: each alert (name, severity) of the rules goes to the receiver its severity names
        local alert severity receiver problems=0
        while read -r alert severity; do
            case $severity in
                page) receiver=ehac-pager ;;
                ticket) receiver=ehac-chat ;;
                *) echo "$alert: severity '$severity' is neither page nor ticket"; problems=1; continue ;;
            esac
            "$AMTOOL" config routes test --config.file="$ALERTMANAGER_CONFIG" --verify.receivers="$receiver" \
                alertname="$alert" severity="$severity" > /dev/null 2>&1 || { echo "$alert ($severity) is not routed to $receiver"; problems=1; }
        done < <(awk '/- alert:/ {alert = $3} /severity:/ && alert {print alert, $2; alert = ""}' "$DEPLOY"/prometheus/rules/*.yml)
        return $problems
    }
    check "alertmanager.yml routes every alert: severity page to ehac-pager, ticket to ehac-chat" routed
fi

# --- Grafana -------------------------------------------------------------------------------
check "deploy/grafana: dashboards, datasources, every panel's query" python3 "$DEPLOY/validate_grafana.py" "$DEPLOY/grafana"

if [ "$failures" -eq 0 ]; then
    echo "deploy/validate.sh: all checks passed"
else
    echo "deploy/validate.sh: $failures check(s) failed"
fi
[ "$failures" -eq 0 ]
