#!/usr/bin/env bash
# Run once by the postgres image's entrypoint on an empty data directory:
# install pg_taskevents in $POSTGRES_DB and create the relay's login role with
# exactly the rights it needs (taskevents.grant_relay).  The password comes
# from TASKEVENTS_RELAY_PASSWORD (a Kubernetes Secret, or compose's
# environment); without it the role is created without a password.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v relay_password="${TASKEVENTS_RELAY_PASSWORD:-}" <<'SQL'
CREATE EXTENSION IF NOT EXISTS pg_taskevents;
SELECT CASE WHEN :'relay_password' = '' THEN 'CREATE ROLE relay LOGIN'
            ELSE format('CREATE ROLE relay LOGIN PASSWORD %L', :'relay_password') END \gexec
SELECT taskevents.grant_relay('relay');
SQL
