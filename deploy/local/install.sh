#!/usr/bin/env bash
# Installs what the e-HAC pipeline needs on a Debian machine, skipping whatever is already there:
#   ClickHouse server + client and Prometheus (Debian packages),
#   tansu 0.6, a Kafka-API broker, built with cargo into $EHAC_TOOLS_DIR (10-25 min, once),
#   chdb-core (PyPI), the in-process modern ClickHouse the schema tests check against.
set -euo pipefail
TOOLS="${EHAC_TOOLS_DIR:-$HOME/.cache/ehac/tools}"
sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo

apt_needed=()
command -v clickhouse-server >/dev/null || apt_needed+=(clickhouse-server clickhouse-client)
command -v prometheus >/dev/null || apt_needed+=(prometheus)
if [ ${#apt_needed[@]} -gt 0 ]; then
  echo "install.sh: apt-get install ${apt_needed[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${apt_needed[@]}" >/dev/null
fi

if [ ! -x "$TOOLS/bin/tansu" ] && ! command -v tansu >/dev/null; then
  echo "install.sh: building tansu 0.6 into $TOOLS (10-25 minutes, once per machine)" >&2
  cargo install tansu --version '~0.6' --locked --features libsql,dynostore --root "$TOOLS" --quiet
fi

if ! python3 -c 'import chdb' 2>/dev/null; then
  echo "install.sh: pip install chdb-core" >&2
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore chdb-core
fi
