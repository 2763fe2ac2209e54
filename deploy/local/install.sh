#!/usr/bin/env bash
# Installs what the e-HAC pipeline needs on a Debian machine, skipping whatever is already there:
#   ClickHouse server + client, Prometheus and Alertmanager with amtool (Debian packages), a JRE
#   and Maven (Debian),
#   Apache Kafka (the broker's jars from Maven Central, resolved by mvn from
#   deploy/local/kafka/pom.xml into $EHAC_TOOLS_DIR/kafka-<version>/libs; about a minute, once),
#   chdb-core (PyPI), the in-process modern ClickHouse the schema tests check against.
#   ZooKeeper (Debian's zookeeper, its jar run by the dev stack) for the replicated ClickHouse.
#   DejaVu Sans (Debian's fonts-dejavu-core): the font `ehac bench surge` draws its PNG plots with.
#   Chromium (Debian), and Node.js with npm if there is none: the gate app's build and tests
#   (web/gate; playwright-core wants Node 20 or later, which the machine image has; Debian 12's
#   own nodejs is 18). Its npm packages are installed by the test command (npm ci, cached in
#   ~/.cache/ehac/npm).
#   oha (crates.io, `cargo install` into $EHAC_TOOLS_DIR/bin; a few minutes, once): the
#   independent load generator the surge bench runs beside ours (BENCHMARKS.md).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd)"
TOOLS="${EHAC_TOOLS_DIR:-$HOME/.cache/ehac/tools}"
sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo

apt_needed=()
command -v clickhouse-server >/dev/null || apt_needed+=(clickhouse-server clickhouse-client)
command -v prometheus >/dev/null || apt_needed+=(prometheus)
# Debian names the server prometheus-alertmanager; the package brings amtool too.
command -v prometheus-alertmanager >/dev/null || apt_needed+=(prometheus-alertmanager)
command -v java >/dev/null || apt_needed+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || apt_needed+=(maven)
[ -f /usr/share/java/zookeeper.jar ] || apt_needed+=(zookeeper)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || apt_needed+=(fonts-dejavu-core)
command -v npm >/dev/null || apt_needed+=(nodejs npm)
# The gate app's browser test drives this one (playwright-core with executablePath): browser
# downloads are neither wanted nor reachable.
[ -x /usr/bin/chromium ] || apt_needed+=(chromium)
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
if ! python3 -c 'import cbor2, cryptography, base45' 2>/dev/null; then
  echo "install.sh: pip install -r tests/python/requirements.txt" >&2
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -r "$here/../../tests/python/requirements.txt"
fi

# schemathesis, in its own virtualenv (many dependencies), for the gateway's contract test.
schemathesis_venv="$HOME/.cache/ehac/schemathesis-venv"
if [ ! -x "$schemathesis_venv/bin/schemathesis" ]; then
  echo "install.sh: schemathesis into $schemathesis_venv" >&2
  python3 -m venv "$schemathesis_venv"
  "$schemathesis_venv/bin/pip" install -q --disable-pip-version-check -r "$here/../../tests/contract/requirements.txt"
fi

if ! python3 -c 'import chdb' 2>/dev/null; then
  echo "install.sh: pip install chdb-core" >&2
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore chdb-core
fi

# oha, pinned (its --latency-correction and JSON output are what the bench reads). Built in a
# throwaway target dir so it does not mix with the project's.
# EHAC_INSTALL_OHA=0 skips it (the test suite: a fresh CI machine would spend minutes
# building it; the bench test then checks the "oha missing" path).
oha_version=1.16.0
if [ "${EHAC_INSTALL_OHA:-1}" = 1 ] && [ "$("$TOOLS/bin/oha" --version 2>/dev/null)" != "oha $oha_version" ]; then
  echo "install.sh: cargo install oha $oha_version into $TOOLS/bin" >&2
  oha_target="$(mktemp -d)"
  CARGO_TARGET_DIR="$oha_target" cargo install oha --version "$oha_version" --locked --quiet --root "$TOOLS"
  rm -rf "$oha_target"
fi
