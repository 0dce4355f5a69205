#!/usr/bin/env bash
# PostgreSQL for the multi-machine search test: installs Debian's postgresql when apt is
# present, starts a cluster, creates a user and a database, and prints their URL as the last
# line of stdout. Idempotent; needs root or passwordless sudo. Exits non-zero (and prints no
# URL) when PostgreSQL cannot be had; the test then skips with a message.
set -euo pipefail
PGUSER_NAME=archsearch
PGPASS=archsearch
PGDB=archsearch_test

if [ "$(id -u)" = 0 ]; then
  SUDO=""
  as_postgres() { runuser -u postgres -- "$@"; }
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO="sudo -n"
  as_postgres() { sudo -n -u postgres "$@"; }
else
  echo "postgres.sh: needs root or passwordless sudo" >&2
  exit 1
fi

if ! command -v pg_lsclusters >/dev/null 2>&1; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "postgres.sh: no apt-get and no PostgreSQL installed" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -q postgresql >/dev/null 2>&1 \
    || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q postgresql >/dev/null; }
fi

cluster=$(pg_lsclusters -h | head -n 1)
if [ -z "$cluster" ]; then
  version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
  $SUDO pg_createcluster "$version" main >/dev/null
  cluster=$(pg_lsclusters -h | head -n 1)
fi
read -r version name port status _ <<<"$cluster"
if [ "$status" != online ]; then
  $SUDO pg_ctlcluster "$version" "$name" start
fi
for _ in $(seq 30); do
  if as_postgres psql -p "$port" -qAtc "SELECT 1" >/dev/null 2>&1; then break; fi
  sleep 1
done

psql_q() { as_postgres psql -p "$port" -v ON_ERROR_STOP=1 -qAtc "$1"; }
if [ "$(psql_q "SELECT 1 FROM pg_roles WHERE rolname='$PGUSER_NAME'")" != 1 ]; then
  psql_q "CREATE ROLE $PGUSER_NAME LOGIN PASSWORD '$PGPASS'"
fi
if [ "$(psql_q "SELECT 1 FROM pg_database WHERE datname='$PGDB'")" != 1 ]; then
  as_postgres createdb -p "$port" -O "$PGUSER_NAME" "$PGDB"
fi
echo "postgresql://$PGUSER_NAME:$PGPASS@localhost:$port/$PGDB"
