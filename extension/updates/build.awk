# build.awk: build an update script pg_taskevents--A--B.sql from the install
# script of B and the hand-written extension/updates/A--B.sql.
#
#   awk -f extension/updates/build.awk pg_taskevents--B.sql extension/updates/A--B.sql
#
# The hand-written file carries what only an update can do: tables whose
# layout changed (rebuilt with their rows), data, renamed and dropped
# objects.  Two directives in it take text from the install script, so that
# no definition is written twice:
#
#   --@rerunnable
#       every statement of the install script that can run again over an
#       existing database: CREATE FUNCTION / PROCEDURE / VIEW / TRIGGER
#       (as CREATE OR REPLACE), COMMENT ON, GRANT, REVOKE, top-level SELECT
#       (config-dump entries, grants) and INSERT INTO
#       @extschema@.maintenance_registry (so the file empties the registry
#       before this line).  Tables, sequences, indexes, event triggers, DO
#       blocks and other rows are left to the hand-written part.
#
#   --@install-statement TEXT
#       the one statement of the install script that contains TEXT (it is
#       an error if none or several do), as it is: a new table, say.
#
# An upgraded database then has exactly the catalog of a fresh install
# (test/0910 compares them).  Statements start at column 0 and end with ";"
# at the end of a line outside dollar quotes.

function fail(msg) {
	print "build.awk: " msg > "/dev/stderr"
	failed = 1
	exit 1
}

# toggle the dollar-quote state for every $tag$ in the line
function dollar_tags(line,    rest, tag) {
	rest = line
	while (match(rest, /\$[A-Za-z_]*\$/)) {
		tag = substr(rest, RSTART, RLENGTH)
		if (quote == "")
			quote = tag
		else if (quote == tag)
			quote = ""
		rest = substr(rest, RSTART + RLENGTH)
	}
}

BEGIN { n = 0; in_stmt = 0; quote = ""; done_rerunnable = 0 }

# first file: split the install script into statements
FNR == NR {
	if (!in_stmt) {
		if ($0 !~ /^[A-Z]/)
			next
		in_stmt = 1
		n++
		stmt[n] = ""
		rerun[n] = ($0 ~ /^CREATE (FUNCTION|PROCEDURE|VIEW|TRIGGER) / ||
					$0 ~ /^(COMMENT ON|GRANT|REVOKE|SELECT) / ||
					$0 ~ /^INSERT INTO @extschema@\.maintenance_registry /)
	}
	stmt[n] = stmt[n] $0 "\n"
	dollar_tags($0)
	if (quote == "" && $0 ~ /;[ \t]*(--.*)?$/)
		in_stmt = 0
	next
}

FNR == 1 {
	if (in_stmt)
		fail("the install script's last statement does not end")
}

/^--@rerunnable[ \t]*$/ {
	if (done_rerunnable++)
		fail("--@rerunnable appears twice")
	for (i = 1; i <= n; i++) {
		if (!rerun[i])
			continue
		s = stmt[i]
		sub(/^CREATE /, "CREATE OR REPLACE ", s)
		printf "\n%s", s
	}
	next
}

/^--@install-statement / {
	text = $0
	sub(/^--@install-statement /, "", text)
	found = 0
	for (i = 1; i <= n; i++)
		if (index(stmt[i], text) > 0) {
			found++
			which = i
		}
	if (found != 1)
		fail(found " statements of the install script contain \"" text "\" (line " FNR ")")
	printf "%s", stmt[which]
	next
}

{ print }

END {
	if (!failed && !done_rerunnable)
		fail("no --@rerunnable line")
}
