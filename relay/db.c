/*
 * db.c
 *		The SQL relay protocol over one libpq connection: lease, position,
 *		tick, fetch, ack, dead letters and maintenance.  Every call is a
 *		prepared statement with parameters, in its own (autocommit, READ
 *		COMMITTED) transaction.  A second, asynchronous connection runs the
 *		backlog sample and the reminders hook (see "side connection").
 *
 * Results are classified for the caller: DB_FENCED for SQLSTATE 55000 (the
 * lease epoch moved on: another relay took over), DB_CONN when the
 * connection is gone, DB_FAILED for anything else.
 */
#include "relay.h"

#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static PGconn *conn;
static char last_error[512];

/* the page fetched ahead, see db_prefetch() */
static bool pf_sent;
static PGresult *pf_res;
static int64_t pf_tick, pf_after;
static int	pf_limit;

typedef struct statement
{
	const char *name;
	const char *sql;
} statement;

static const statement statements[] = {
	{"lease", "SELECT taskevents.relay_lease($1, $2, $3, make_interval(secs => $4::double precision / 1000))"},
	{"release", "SELECT taskevents.relay_release($1, $2)"},
	{"position", "SELECT tick_id, cursor_id, batch_done FROM taskevents.relay_position($1)"},
	{"last_tick", "SELECT taskevents.relay_last_tick($1)"},
	{"tick", "SELECT taskevents.relay_tick($1, $2)"},
	{"fetch", "SELECT id, topic, partition_key, event, extract(epoch FROM created_at)::float8 "
	"FROM taskevents.relay_fetch($1, $2, $3, $4)"},
	{"ack", "SELECT taskevents.relay_ack($1, $2, $3, $4, $5)"},
	{"dead_letter", "SELECT taskevents.relay_dead_letter($1, $2, $3, $4, $5, $6, $7, $8, $9, to_timestamp($10::float8))"},
	{"maintain", "SELECT taskevents.maintain()"},
};

const char *
db_last_error(void)
{
	return last_error;
}

bool
db_connected(void)
{
	return conn != NULL && PQstatus(conn) == CONNECTION_OK;
}

void
db_disconnect(void)
{
	pf_sent = false;
	if (pf_res)
		PQclear(pf_res);
	pf_res = NULL;
	if (conn)
		PQfinish(conn);
	conn = NULL;
	atomic_store(&metrics.db_up, 0);
}

static void
note_error(PGresult *res)
{
	const char *m = res ? PQresultErrorMessage(res) : PQerrorMessage(conn);
	size_t		n;

	snprintf(last_error, sizeof(last_error), "%s", m && *m ? m : "unknown error");
	n = strlen(last_error);
	while (n > 0 && (last_error[n - 1] == '\n' || last_error[n - 1] == ' '))
		last_error[--n] = '\0';
}

/* Connect and prepare every statement. */
bool
db_connect(const char *conninfo)
{
	const char *keys[] = {"dbname", "fallback_application_name", "keepalives_idle", "keepalives_interval", NULL};
	const char *vals[] = {conninfo && *conninfo ? conninfo : NULL, "taskevents-relay", "10", "5", NULL};
	PGresult   *res;

	db_disconnect();
	if (vals[0] == NULL)
	{
		/* no conninfo: libpq's PG* environment; skip the dbname slot */
		keys[0] = "fallback_application_name";
		vals[0] = "taskevents-relay";
		keys[1] = NULL;
	}
	conn = PQconnectdbParams(keys, vals, 1);
	if (PQstatus(conn) != CONNECTION_OK)
	{
		note_error(NULL);
		db_disconnect();
		return false;
	}
	for (size_t i = 0; i < sizeof(statements) / sizeof(statements[0]); i++)
	{
		res = PQprepare(conn, statements[i].name, statements[i].sql, 0, NULL);
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
		{
			note_error(res);
			PQclear(res);
			db_disconnect();
			return false;
		}
		PQclear(res);
	}
	atomic_store(&metrics.db_up, 1);
	return true;
}

/*
 * One relay_fetch() may be sent ahead (db_prefetch) so that PostgreSQL
 * reads the next page while the relay hands the current one to Kafka.  Any
 * other call first collects its result into pf_res, where db_fetch() finds
 * it when asked for the same page.
 */

static void
prefetch_collect(void)
{
	PGresult   *r;

	if (!pf_sent)
		return;
	pf_sent = false;
	while ((r = PQgetResult(conn)) != NULL)
	{
		if (pf_res)
			PQclear(pf_res);
		pf_res = r;
	}
}

static void
prefetch_discard(void)
{
	prefetch_collect();
	if (pf_res)
		PQclear(pf_res);
	pf_res = NULL;
}

/* Classify a failed result (and take it). */
static db_result
failed(PGresult *res)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	bool		fenced = state && strcmp(state, "55000") == 0;

	note_error(res);
	if (PQstatus(conn) != CONNECTION_OK)
	{
		PQclear(res);
		atomic_store(&metrics.db_up, 0);
		return DB_CONN;
	}
	PQclear(res);
	return fenced ? DB_FENCED : DB_FAILED;
}

/* Run a prepared statement; on success *out holds the result. */
static db_result
run(const char *name, int nparams, const char *const *params, PGresult **out)
{
	PGresult   *res;
	ExecStatusType st;
	int64_t		started;

	*out = NULL;
	if (conn == NULL)
	{
		snprintf(last_error, sizeof(last_error), "not connected");
		return DB_CONN;
	}
	prefetch_collect();
	started = mono_ms();
	res = PQexecPrepared(conn, name, nparams, params, NULL, NULL, 0);
	st = PQresultStatus(res);
	if (mono_ms() - started >= 100)
		log_debug("slow database call", "{s:s, s:I}", "call", name, "took_ms", (json_int_t) (mono_ms() - started));
	if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
	{
		*out = res;
		return DB_OK;
	}
	return failed(res);
}

static int64_t
getint(PGresult *res, int row, int col)
{
	return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

db_result
db_lease(const char *consumer, const char *holder, int64_t epoch, int ttl_ms, int64_t *new_epoch)
{
	char		e[32],
				t[32];
	const char *p[4] = {consumer, holder, e, t};
	PGresult   *res;
	db_result	r;

	snprintf(e, sizeof(e), "%lld", (long long) epoch);
	snprintf(t, sizeof(t), "%d", ttl_ms);
	if (epoch <= 0)
		p[2] = NULL;
	r = run("lease", 4, p, &res);
	if (r != DB_OK)
		return r;
	*new_epoch = PQgetisnull(res, 0, 0) ? 0 : getint(res, 0, 0);
	PQclear(res);
	return DB_OK;
}

db_result
db_release(const char *consumer, int64_t epoch)
{
	char		e[32];
	const char *p[2] = {consumer, e};
	PGresult   *res;
	db_result	r;

	snprintf(e, sizeof(e), "%lld", (long long) epoch);
	r = run("release", 2, p, &res);
	if (r == DB_OK)
		PQclear(res);
	return r;
}

db_result
db_position(const char *consumer, int64_t *tick, int64_t *cursor, bool *done)
{
	const char *p[1] = {consumer};
	PGresult   *res;
	db_result	r = run("position", 1, p, &res);

	if (r != DB_OK)
		return r;
	*tick = getint(res, 0, 0);
	*cursor = getint(res, 0, 1);
	*done = strcmp(PQgetvalue(res, 0, 2), "t") == 0;
	PQclear(res);
	return DB_OK;
}

db_result
db_last_tick(const char *consumer, int64_t *tick)
{
	const char *p[1] = {consumer};
	PGresult   *res;
	db_result	r = run("last_tick", 1, p, &res);

	if (r != DB_OK)
		return r;
	*tick = PQgetisnull(res, 0, 0) ? 0 : getint(res, 0, 0);
	PQclear(res);
	return DB_OK;
}

/* *tick = the new tick, or 0 when nothing new committed. */
db_result
db_tick(const char *consumer, int64_t epoch, int64_t *tick)
{
	char		e[32];
	const char *p[2] = {consumer, e};
	PGresult   *res;
	db_result	r;

	snprintf(e, sizeof(e), "%lld", (long long) epoch);
	r = run("tick", 2, p, &res);
	if (r != DB_OK)
		return r;
	*tick = PQgetisnull(res, 0, 0) ? 0 : getint(res, 0, 0);
	PQclear(res);
	return DB_OK;
}

/* Send the fetch of a page ahead; db_fetch() picks it up. */
void
db_prefetch(const char *consumer, int64_t tick, int64_t after, int limit)
{
	char		t[32],
				a[32],
				l[32];
	const char *p[4] = {consumer, t, a, l};

	if (conn == NULL)
		return;
	prefetch_discard();
	snprintf(t, sizeof(t), "%lld", (long long) tick);
	snprintf(a, sizeof(a), "%lld", (long long) after);
	snprintf(l, sizeof(l), "%d", limit);
	if (!PQsendQueryPrepared(conn, "fetch", 4, p, NULL, NULL, 0))
		return;
	pf_sent = true;
	pf_tick = tick;
	pf_after = after;
	pf_limit = limit;
}

/*
 * The page of batch tick after id `after`, at most `limit` rows.  A page
 * fetched ahead is used when it is the same page with a limit no larger;
 * *used_limit says which limit applied (fewer rows = end of the batch).
 */
db_result
db_fetch(const char *consumer, int64_t tick, int64_t after, int limit, db_row **rows, int *nrows,
		 int *used_limit)
{
	char		t[32],
				a[32],
				l[32];
	const char *p[4] = {consumer, t, a, l};
	PGresult   *res;
	db_result	r;
	int			n;

	*rows = NULL;
	*nrows = 0;
	*used_limit = limit;
	if (conn == NULL)
		return DB_CONN;
	prefetch_collect();
	if (pf_res && pf_tick == tick && pf_after == after && pf_limit <= limit)
	{
		res = pf_res;
		pf_res = NULL;
		*used_limit = pf_limit;
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
			return failed(res);
	}
	else
	{
		prefetch_discard();
		snprintf(t, sizeof(t), "%lld", (long long) tick);
		snprintf(a, sizeof(a), "%lld", (long long) after);
		snprintf(l, sizeof(l), "%d", limit);
		r = run("fetch", 4, p, &res);
		if (r != DB_OK)
			return r;
	}
	n = PQntuples(res);
	*rows = n ? calloc(n, sizeof(db_row)) : NULL;
	for (int i = 0; i < n; i++)
	{
		db_row	   *row = &(*rows)[i];

		row->id = getint(res, i, 0);
		row->topic = strdup(PQgetvalue(res, i, 1));
		row->key = PQgetisnull(res, i, 2) ? NULL : strdup(PQgetvalue(res, i, 2));
		row->event_len = PQgetlength(res, i, 3);
		row->event = malloc(row->event_len + 1);
		memcpy(row->event, PQgetvalue(res, i, 3), row->event_len + 1);
		row->created_at = strtod(PQgetvalue(res, i, 4), NULL);
	}
	*nrows = n;
	PQclear(res);
	return DB_OK;
}

void
db_rows_free(db_row *rows, int nrows)
{
	for (int i = 0; i < nrows; i++)
	{
		free(rows[i].topic);
		free(rows[i].key);
		free(rows[i].event);
	}
	free(rows);
}

db_result
db_ack(const char *consumer, int64_t epoch, int64_t tick, int64_t cursor, bool done)
{
	char		e[32],
				t[32],
				c[32];
	const char *p[5] = {consumer, e, t, c, done ? "true" : "false"};
	PGresult   *res;
	db_result	r;

	snprintf(e, sizeof(e), "%lld", (long long) epoch);
	snprintf(t, sizeof(t), "%lld", (long long) tick);
	snprintf(c, sizeof(c), "%lld", (long long) cursor);
	r = run("ack", 5, p, &res);
	if (r == DB_OK)
		PQclear(res);
	return r;
}

db_result
db_dead_letter(const char *consumer, int64_t epoch, int64_t outbox_id, const char *topic,
			   const char *dlq_topic, const char *key, const char *event, const char *reason,
			   int attempts, double first_failed_at)
{
	char		e[32],
				o[32],
				a[32],
				f[64];
	const char *p[10] = {consumer, e, o, topic, dlq_topic, key, event, reason, a, f};
	PGresult   *res;
	db_result	r;

	snprintf(e, sizeof(e), "%lld", (long long) epoch);
	snprintf(o, sizeof(o), "%lld", (long long) outbox_id);
	snprintf(a, sizeof(a), "%d", attempts);
	snprintf(f, sizeof(f), "%.6f", first_failed_at);
	r = run("dead_letter", 10, p, &res);
	if (r == DB_OK)
		PQclear(res);
	return r;
}

db_result
db_maintain(int *truncated)
{
	PGresult   *res;
	db_result	r = run("maintain", 0, NULL, &res);

	if (r != DB_OK)
		return r;
	*truncated = (int) getint(res, 0, 0);
	PQclear(res);
	return DB_OK;
}

/*
 * The side connection: housekeeping whose cost grows with the outbox
 * (relay_backlog() counts it) or is not ours to bound (fire_due_reminders())
 * runs here, asynchronously, so it never holds up delivery on the main
 * connection.  One query at a time; db_side_poll() collects its result.
 */
static PGconn *side;
static db_side_kind side_kind = DB_SIDE_NONE;
static bool side_reminders;
static int64_t side_started;

bool
db_side_busy(void)
{
	return side_kind != DB_SIDE_NONE;
}

static void
side_close(void)
{
	if (side)
		PQfinish(side);
	side = NULL;
	side_kind = DB_SIDE_NONE;
}

static bool
side_connect(const char *conninfo)
{
	const char *keys[] = {"dbname", "fallback_application_name", NULL};
	const char *vals[] = {conninfo, "taskevents-relay-side", NULL};
	PGresult   *res;

	if (conninfo == NULL || conninfo[0] == '\0')
	{
		keys[0] = "fallback_application_name";
		vals[0] = "taskevents-relay-side";
		keys[1] = NULL;
	}
	side = PQconnectdbParams(keys, vals, 1);
	if (PQstatus(side) != CONNECTION_OK)
	{
		log_warn("side database connection failed", "{s:s}", "error", PQerrorMessage(side));
		side_close();
		return false;
	}
	res = PQexec(side, "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_proc p "
				 "JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace "
				 "WHERE n.nspname = 'taskevents' AND p.proname = 'fire_due_reminders' AND p.pronargs = p.pronargdefaults)");
	side_reminders = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
		strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	if (side_reminders)
		log_info("reminders hook on: calling taskevents.fire_due_reminders()", NULL);
	return true;
}

/* Start kind on the side connection; false when it cannot (or need not). */
bool
db_side_begin(const char *conninfo, db_side_kind kind, const char *consumer)
{
	const char *sql;
	const char *params[1] = {consumer};
	int			nparams = 0;

	if (side_kind != DB_SIDE_NONE)
		return false;
	if (side == NULL && !side_connect(conninfo))
		return false;
	if (kind == DB_SIDE_REMINDERS)
	{
		if (!side_reminders)
			return false;
		sql = "SELECT taskevents.fire_due_reminders()";
	}
	else
	{
		sql = "SELECT pending, extract(epoch FROM clock_timestamp() - oldest_pending)::float8 "
			"FROM taskevents.relay_backlog($1)";
		nparams = 1;
	}
	if (!PQsendQueryParams(side, sql, nparams, NULL, params, NULL, NULL, 0))
	{
		side_close();
		return false;
	}
	side_kind = kind;
	side_started = mono_ms();
	return true;
}

/* Collect the side query's result when it is ready; never blocks. */
void
db_side_poll(void)
{
	PGresult   *res;

	if (side_kind == DB_SIDE_NONE)
		return;
	if (!PQconsumeInput(side))
	{
		log_warn("side database connection lost", "{s:s}", "error", PQerrorMessage(side));
		side_close();
		return;
	}
	if (PQisBusy(side))
		return;
	while ((res = PQgetResult(side)) != NULL)
	{
		if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		{
			if (side_kind == DB_SIDE_BACKLOG)
			{
				atomic_store(&metrics.backlog, strtol(PQgetvalue(res, 0, 0), NULL, 10));
				atomic_store(&metrics.oldest_pending_ms, PQgetisnull(res, 0, 1) ? 0 :
							 (long) (strtod(PQgetvalue(res, 0, 1), NULL) * 1000));
				log_debug("backlog sampled", "{s:I, s:I}", "count",
						  (json_int_t) strtoll(PQgetvalue(res, 0, 0), NULL, 10),
						  "took_ms", (json_int_t) (mono_ms() - side_started));
			}
			else if (!PQgetisnull(res, 0, 0) && strtoll(PQgetvalue(res, 0, 0), NULL, 10) > 0)
				log_info("reminders fired", "{s:I}", "count",
						 (json_int_t) strtoll(PQgetvalue(res, 0, 0), NULL, 10));
		}
		else if (PQresultStatus(res) != PGRES_TUPLES_OK)
		{
			const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

			log_warn(side_kind == DB_SIDE_BACKLOG ? "relay_backlog() failed" : "fire_due_reminders() failed",
					 "{s:s}", "error", PQresultErrorMessage(res));
			/* not granted or gone: stop calling it until the next connect */
			if (side_kind == DB_SIDE_REMINDERS && state &&
				(strcmp(state, "42501") == 0 || strcmp(state, "42883") == 0))
				side_reminders = false;
		}
		PQclear(res);
	}
	side_kind = DB_SIDE_NONE;
}

void
db_side_close(void)
{
	side_close();
}
