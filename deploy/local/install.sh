#!/usr/bin/env bash
# Installs what the e-HAC pipeline needs on a Debian machine, skipping whatever is already there.
# By default only what the main job (`ehac demo`, `ehac dev up`) runs:
#   a JRE and Maven (Debian); Apache Kafka (the broker's jars from Maven Central, resolved by mvn
#   from deploy/local/kafka/pom.xml into $EHAC_TOOLS_DIR/kafka-<version>/libs; about a minute,
#   once); ClickHouse 26.9 (PyPI's chdb-core, pinned below, served by the dev stack).
# EHAC_INSTALL_TESTS=1 (deploy/local/test.sh) adds what the tests use:
#   Debian's ClickHouse 18.16 and ZooKeeper (the replicated cluster tests: the only ClickHouse
#   that replicates here); Prometheus, and Alertmanager with amtool (the alerting tests); DejaVu
#   Sans (the bench's plots); Chromium, and Node.js with npm if there is none (the gate app,
#   web/gate: playwright-core wants Node 20 or later, which the machine image has; Debian 12's own
#   nodejs is 18; its npm packages come from the test command's npm ci, cached in
#   ~/.cache/ehac/npm); the Python pass verifier's packages; schemathesis in its own virtualenv
#   (the gateway's contract test).
# EHAC_INSTALL_OHA=1 (deploy/local/bench.sh) adds oha (crates.io, `cargo install` into
#   $EHAC_TOOLS_DIR/bin; a few minutes, once) and the plots' font: the independent load
#   generator the surge bench runs beside ours (BENCHMARKS.md).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd)"
TOOLS="${EHAC_TOOLS_DIR:-$HOME/.cache/ehac/tools}"
sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
tests="${EHAC_INSTALL_TESTS:-0}"
bench="${EHAC_INSTALL_OHA:-0}"
# The ClickHouse every single-server stack runs (crates/ehac-devstack/src/modern.rs names it too).
chdb_core_version=26.9.0

apt_needed=()
command -v java >/dev/null || apt_needed+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || apt_needed+=(maven)
if [ "$tests" = 1 ]; then
  command -v clickhouse-server >/dev/null || apt_needed+=(clickhouse-server clickhouse-client)
  [ -f /usr/share/java/zookeeper.jar ] || apt_needed+=(zookeeper)
  command -v prometheus >/dev/null || apt_needed+=(prometheus)
  # Debian names the server prometheus-alertmanager; the package brings amtool too.
  command -v prometheus-alertmanager >/dev/null || apt_needed+=(prometheus-alertmanager)
  command -v npm >/dev/null || apt_needed+=(nodejs npm)
  # The gate app's browser test drives this one (playwright-core with executablePath): browser
  # downloads are neither wanted nor reachable.
  [ -x /usr/bin/chromium ] || apt_needed+=(chromium)
fi
if [ "$tests" = 1 ] || [ "$bench" = 1 ]; then
  [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || apt_needed+=(fonts-dejavu-core)
fi
if [ ${#apt_needed[@]} -gt 0 ]; then
  echo "install.sh: apt-get install ${apt_needed[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${apt_needed[@]}" >/dev/null
fi

# The pom is the one place the Kafka version is pinned. When this script runs from the copy
# compiled into `ehac` (no pom beside it), EHAC_KAFKA_POM names the pom to use.
pom="${EHAC_KAFKA_POM:-$here/kafka/pom.xml}"
kafka_version=$(sed -n 's#.*<kafka.version>\(.*\)</kafka.version>.*#\1#p' "$pom")
kafka_home="$TOOLS/kafka-$kafka_version"
if [ ! -f "$kafka_home/.complete" ]; then
  echo "install.sh: resolving Apache Kafka $kafka_version from Maven Central into $kafka_home" >&2
  rm -rf "$kafka_home"; mkdir -p "$kafka_home"
  cp "$pom" "$kafka_home/pom.xml"
  (cd "$kafka_home" && mvn -B -q org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory=libs)
  ls "$kafka_home"/libs/kafka_2.13-"$kafka_version".jar >/dev/null
  touch "$kafka_home/.complete"
fi

# The Python pass verifier's test (crates/ehac-gate) imports these.
if [ "$tests" = 1 ] && ! python3 -c 'import cbor2, cryptography, base45' 2>/dev/null; then
  echo "install.sh: pip install -r tests/python/requirements.txt" >&2
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -r "$here/../../tests/python/requirements.txt"
fi

# schemathesis, in its own virtualenv (many dependencies), for the gateway's contract test.
schemathesis_venv="$HOME/.cache/ehac/schemathesis-venv"
if [ "$tests" = 1 ] && [ ! -x "$schemathesis_venv/bin/schemathesis" ]; then
  echo "install.sh: schemathesis into $schemathesis_venv" >&2
  python3 -m venv "$schemathesis_venv"
  "$schemathesis_venv/bin/pip" install -q --disable-pip-version-check -r "$here/../../tests/contract/requirements.txt"
fi

if [ "$(python3 -c 'import importlib.metadata as m; print(m.version("chdb-core"))' 2>/dev/null)" != "$chdb_core_version" ]; then
  echo "install.sh: pip install chdb-core==$chdb_core_version (ClickHouse 26.9)" >&2
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore "chdb-core==$chdb_core_version"
fi

# oha, pinned (its --latency-correction and JSON output are what the bench reads). Built in a
# throwaway target dir so it does not mix with the project's.
# Only for the bench (EHAC_INSTALL_OHA=1): a fresh machine spends minutes building it; the
# test suite's bench test checks the "oha missing" path.
oha_version=1.16.0
if [ "$bench" = 1 ] && [ "$("$TOOLS/bin/oha" --version 2>/dev/null)" != "oha $oha_version" ]; then
  echo "install.sh: cargo install oha $oha_version into $TOOLS/bin" >&2
  oha_target="$(mktemp -d)"
  CARGO_TARGET_DIR="$oha_target" cargo install oha --version "$oha_version" --locked --quiet --root "$TOOLS"
  rm -rf "$oha_target"
fi
