#!/usr/bin/env bash
# A database upgraded from 0.1.0 (ALTER EXTENSION pg_taskevents UPDATE) has
# the same catalog as a fresh install of the current version: the member
# list (\dx+), every table, view, sequence and function definition,
# privileges, initial privileges, config-dump entries, comments
# (test/lib/catalog.sql says exactly what).  On a difference it prints
# a diff: "-" lines are what a fresh install has, "+" lines what the
# upgrade produced; extension/pg_taskevents--0.1.0--0.2.0.sql is what to fix.
#
# The comparison is itself tested: a few deliberate changes to the upgraded
# database (a privilege, a function attribute, a column, a config-dump
# entry, a member) must each show up as a difference.
set -euo pipefail
source "$(dirname "$0")/lib/pg.sh"
source "$(dirname "$0")/lib/upgrade.sh"

CATALOG=$PGTE_ROOT/test/lib/catalog.sql
NEW_VERSION=$(up_current_version)
trap up_cleanup EXIT
up_setup catalog

createdb upgraded
q -d upgraded -c "CREATE EXTENSION pg_taskevents VERSION '$UP_OLD_VERSION'"
up_install_current
q -d upgraded -c "ALTER EXTENSION pg_taskevents UPDATE"
createdb fresh
q -d fresh -c "CREATE EXTENSION pg_taskevents"
for db in fresh upgraded; do
  [ "$(q -d $db -c "SELECT extversion FROM pg_extension WHERE extname = 'pg_taskevents'")" = "$NEW_VERSION" ] \
    || fail "$db: pg_taskevents is not at $NEW_VERSION"
  psql -X -q -d $db -f "$CATALOG" >"$UP_DIR/$db.txt" || fail "catalog query failed on $db"
done
n=$(wc -l <"$UP_DIR/fresh.txt")
[ "$n" -gt 500 ] || fail "the catalog description has only $n lines: the query misses the extension"
if ! diff -u --label "fresh install of $NEW_VERSION" --label "upgraded from $UP_OLD_VERSION" \
     "$UP_DIR/fresh.txt" "$UP_DIR/upgraded.txt" >"$UP_DIR/diff"; then
  echo "The upgrade from $UP_OLD_VERSION to $NEW_VERSION does not produce the catalog of a fresh install:"
  cat "$UP_DIR/diff"
  fail "catalog differs after ALTER EXTENSION UPDATE ($(grep -c '^[-+][^-+]' "$UP_DIR/diff") lines): fix extension/pg_taskevents--$UP_OLD_VERSION--$NEW_VERSION.sql"
fi
pass "upgraded from $UP_OLD_VERSION and fresh $NEW_VERSION install: the same catalog ($n lines: $(cut -d' ' -f1 "$UP_DIR/fresh.txt" | sort | uniq -c | awk '{printf "%s%s %s", sep, $1, $2; sep=", "}'))"

# The comparison can fail: each change below must show up in the diff.
mutate() {
  local what=$1 sql=$2 out
  out=$(psql -X -q -d upgraded -v ON_ERROR_STOP=1 2>&1 <<SQL
BEGIN;
$sql;
\\i $CATALOG
ROLLBACK;
SQL
) || fail "mutation '$what': $out"
  diff -q <(echo "$out") "$UP_DIR/fresh.txt" >/dev/null && fail "the comparison misses: $what"
  [ -z "${SHOW_MUTATIONS:-}" ] || diff <(echo "$out") "$UP_DIR/fresh.txt" | head -6 || true
  return 0
}
# The objects to change are picked from the catalog, so the list keeps
# working while the install script changes.
pick() {   # pick WHAT: one object's name (or "name|extra") for a mutation
  q -d upgraded -c "WITH m AS (SELECT objid FROM pg_depend WHERE refclassid = 'pg_extension'::regclass
                      AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_taskevents') AND deptype = 'e')
    $1 LIMIT 1"
}
table=$(pick "SELECT c.oid::regclass FROM pg_class c JOIN m ON m.objid = c.oid WHERE c.relkind = 'r' AND NOT c.relispartition ORDER BY 1")
secdef=$(pick "SELECT p.oid::regprocedure FROM pg_proc p JOIN m ON m.objid = p.oid WHERE p.prosecdef AND p.proconfig IS NOT NULL ORDER BY 1")
sqlfunc=$(pick "SELECT p.oid FROM pg_proc p JOIN m ON m.objid = p.oid WHERE p.prolang IN (SELECT oid FROM pg_language WHERE lanname IN ('sql', 'plpgsql')) ORDER BY 1")
index=$(pick "SELECT i.indexrelid::regclass FROM pg_index i JOIN m ON m.objid = i.indrelid
              WHERE NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conindid = i.indexrelid) ORDER BY 1")
view=$(pick "SELECT c.oid::regclass FROM pg_class c JOIN m ON m.objid = c.oid WHERE c.relkind = 'v' ORDER BY 1")
dumped=$(q -d upgraded -c "SELECT extconfig[1]::regclass FROM pg_extension WHERE extname = 'pg_taskevents'")   # its condition changes
for v in table secdef sqlfunc index view dumped; do [ -n "${!v}" ] || fail "no object to mutate for $v"; done

mutate "a privilege ($table)" "GRANT SELECT ON $table TO PUBLIC"
mutate "SECURITY DEFINER dropped ($secdef)" "ALTER FUNCTION $secdef SECURITY INVOKER"
mutate "a pinned search_path dropped ($secdef)" "ALTER FUNCTION $secdef RESET ALL"
mutate "a function body ($sqlfunc::regprocedure)" "UPDATE pg_proc SET prosrc = prosrc || ' ' WHERE oid = $sqlfunc"
mutate "a new column ($table)" "ALTER TABLE $table ADD COLUMN te_mutant integer"
mutate "a dropped column ($table)" "ALTER TABLE $table ADD COLUMN te_mutant integer; ALTER TABLE $table DROP COLUMN te_mutant"
mutate "an index ($index)" "DROP INDEX $index"
mutate "a config-dump condition ($dumped)" "UPDATE pg_extension SET extcondition[1] = 'WHERE false' WHERE extname = 'pg_taskevents'"
mutate "a member dropped from the extension ($view)" "ALTER EXTENSION pg_taskevents DROP VIEW $view"
# a row the install script wrote (a settings row), if it writes any
filled=$(sed -n 's/^data \([^:]*\): [1-9][0-9]* row(s)$/\1/p' "$UP_DIR/fresh.txt" | head -1)
[ -z "$filled" ] || mutate "a row the install script wrote ($filled)" "DELETE FROM $filled"
pass "the comparison finds a changed privilege, function attribute, body, column, dropped column, index, config-dump entry, member${filled:+ and a settings row}"
