#!/bin/sh
# Creates Tidings' own role and database next to Temporal's. The postgres image runs the scripts in
# /docker-entrypoint-initdb.d once, when it initialises an empty data volume; on an existing volume
# create them by hand with the same two statements.
#
# Tidings gets an unprivileged role that owns only its database, so a leaked TIDINGS_DATABASE_URL
# cannot reach Temporal's databases. Tidings creates its tables itself (migrations at start-up).
set -eu

: "${POSTGRES_USER:?POSTGRES_USER is not set}"
: "${POSTGRES_TIDINGS_USER:?POSTGRES_TIDINGS_USER is not set}"
: "${POSTGRES_TIDINGS_DB:?POSTGRES_TIDINGS_DB is not set}"
: "${POSTGRES_TIDINGS_PASSWORD:?POSTGRES_TIDINGS_PASSWORD is not set}"

# psql quotes the values itself (:"name" as an identifier, :'name' as a literal).
psql --no-psqlrc --set=ON_ERROR_STOP=1 --username="$POSTGRES_USER" --dbname=postgres \
    --set=tidings_user="$POSTGRES_TIDINGS_USER" \
    --set=tidings_db="$POSTGRES_TIDINGS_DB" \
    --set=tidings_password="$POSTGRES_TIDINGS_PASSWORD" <<'SQL'
CREATE ROLE :"tidings_user" LOGIN PASSWORD :'tidings_password';
CREATE DATABASE :"tidings_db" OWNER :"tidings_user";
REVOKE ALL ON DATABASE :"tidings_db" FROM PUBLIC;
SQL
