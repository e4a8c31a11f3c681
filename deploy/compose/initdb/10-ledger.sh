#!/bin/sh
# Runs once, when the Postgres volume is created: the ledger gets a database and a role of its own, beside Temporal's.
set -eu
ledger_password="$(cat "$LEDGER_PASSWORD_FILE")"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    --set=ledger_password="$ledger_password" <<'SQL'
CREATE ROLE erasure LOGIN PASSWORD :'ledger_password';
CREATE DATABASE ledger OWNER erasure;
SQL
