#!/usr/bin/env bash
# The PostgreSQL database the tests use (role and database "passerelle_test" on 127.0.0.1):
# starts the local cluster and creates them when missing. Run as root (CI) or a sudoer.
set -euo pipefail
VERSION=${PG_VERSION:-15}
as_postgres() { if [ "$(id -u)" = 0 ]; then su postgres -c "$1"; else sudo -u postgres sh -c "$1"; fi; }
pg_ctlcluster "$VERSION" main start 2>/dev/null || true
for _ in $(seq 1 30); do
    as_postgres "psql -qtAc 'SELECT 1'" >/dev/null 2>&1 && break
    sleep 1
done
if ! as_postgres "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='passerelle'\"" | grep -q 1; then
    as_postgres "psql -qc \"CREATE ROLE passerelle LOGIN PASSWORD 'passerelle'\""
fi
if ! as_postgres "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname='passerelle_test'\"" \
        | grep -q 1; then
    as_postgres "psql -qc 'CREATE DATABASE passerelle_test OWNER passerelle'"
fi
echo "PostgreSQL ready: postgresql://passerelle:…@127.0.0.1:5432/passerelle_test"
