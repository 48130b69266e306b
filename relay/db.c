/*
 * db.c
 *		The SQL relay protocol over one libpq connection: lease, position,
 *		tick, fetch, ack and dead letters.  Every call is a
 *		prepared statement with parameters, in its own (autocommit, READ
 *		COMMITTED) transaction.  dbside.c runs the maintenance list and the
 *		backlog sample on a second connection, wake.c waits for commits on a
 *		third; all are opened by db_open() (dbopen.c), which pins search_path
 *		to pg_catalog, pg_temp.
 *
 * Every function, operator and cast in the statements below is
 * schema-qualified too: nothing the relay sends can be redirected to an
 * object that the relay role's search_path (ALTER ROLE/DATABASE ... SET,
 * PGOPTIONS, the conninfo) puts first.
 *
 * Results are classified for the caller: DB_FENCED for SQLSTATE 55000 (the
 * lease epoch moved on: another relay took over), DB_CONN when the
 * connection is gone, DB_TRANSIENT for an error that passes by itself (a
 * deadlock or serialization failure, class 40; a lock_timeout, 55P03; a
 * cancelled statement, 57014: statement_timeout, pg_cancel_backend()), so
 * that the same call may simply be tried again, DB_FAILED for anything
 * else.
 */
#include "relay.h"

#include <jansson.h>
#include <libpq-fe.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static PGconn *conn;
static char last_error[512];
static char last_sqlstate[6];	/* of the last failed call, "" if none */
static int64_t wait_us;			/* time spent waiting for the main connection */

struct db_page
{
	PGresult   *res;
	int			refs;			/* rows still in use */
	db_row		rows[];
};

/* the page fetched ahead, see db_prefetch() */
static bool pf_sent;
static PGresult *pf_res;
static int64_t pf_tick,
			pf_after;
static int	pf_limit;

typedef struct statement
{
	const char *name;
	const char *sql;
} statement;

/*
 * Parameters of the taskevents functions take their types from the
 * function's signature; casts, operators and functions are qualified.
 * The fetch's page comes as binary chunks (page_rows() reads them), from
 * the function called in the select list: a set-returning function in
 * FROM would collect them in a tuplestore first.
 */
static const statement statements[] = {
	{"lease", "SELECT taskevents.relay_lease($1, $2, $3, "
	"pg_catalog.make_interval(secs => $4::pg_catalog.float8 OPERATOR(pg_catalog./) 1000::pg_catalog.float8))"},
	{"release", "SELECT taskevents.relay_release($1, $2)"},
	{"position", "SELECT tick_id, cursor_id, batch_done FROM taskevents.relay_position($1)"},
	{"last_tick", "SELECT taskevents.relay_last_tick($1)"},

	/*
	 * A new batch and its first page in one round trip: relay_tick()'s row
	 * first (a NULL tick: nothing new), then relay_fetch_page()'s chunks of
	 * that tick, whose row it reads in the same transaction (each of its
	 * statements takes a new snapshot).  The first page is collected in no
	 * tuplestore either: the chunks come from the select list.
	 */
	{"tick", "WITH t AS MATERIALIZED (SELECT taskevents.relay_tick($1, $2) AS tick) "
		"SELECT t.tick, NULL::pg_catalog.bytea FROM t UNION ALL "
		"SELECT NULL, taskevents.relay_fetch_page($1, t.tick, 0::pg_catalog.int8, $3) "
	"FROM t WHERE t.tick IS NOT NULL"},
	{"fetch", "SELECT taskevents.relay_fetch_page($1, $2, $3, $4)"},
	{"ack", "SELECT taskevents.relay_ack($1, $2, $3, $4, $5)"},
	{"dead_letter", "SELECT taskevents.relay_dead_letter($1, $2, $3, $4, $5, $6, $7, $8, $9, "
	"pg_catalog.to_timestamp($10::pg_catalog.float8))"},
};

const char *
db_last_error(void)
{
	return last_error;
}

/* The SQLSTATE of the last failed call ("" when there was none). */
const char *
db_last_sqlstate(void)
{
	return last_sqlstate;
}

/* Microseconds spent waiting for results on the main connection so far. */
int64_t
db_wait_us(void)
{
	return wait_us;
}

bool
db_connected(void)
{
	return conn != NULL && PQstatus(conn) == CONNECTION_OK;
}

/* Forget the page fetched ahead, without reading what is still to come. */
static void
prefetch_drop(void)
{
	pf_sent = false;
	if (pf_res)
		PQclear(pf_res);
	pf_res = NULL;
}

void
db_disconnect(void)
{
	prefetch_drop();
	if (conn)
		PQfinish(conn);
	conn = NULL;
	atomic_store(&metrics.db_up, 0);
}

static void
note_error(PGresult *res)
{
	const char *m = res ? PQresultErrorMessage(res) : PQerrorMessage(conn);
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	size_t		n;

	snprintf(last_sqlstate, sizeof(last_sqlstate), "%s", state ? state : "");
	snprintf(last_error, sizeof(last_error), "%s", m && *m ? m : "unknown error");
	n = strlen(last_error);
	while (n > 0 && (last_error[n - 1] == '\n' || last_error[n - 1] == ' '))
		last_error[--n] = '\0';
}

/*
 * A set-up command's result: taken; on failure the connection is closed and
 * the error kept.
 */
static bool
setup_done(PGresult *res)
{
	bool		ok = PQresultStatus(res) == PGRES_COMMAND_OK;

	if (!ok)
		note_error(res);
	PQclear(res);
	if (!ok)
		db_disconnect();
	return ok;
}

/* Connect and prepare every statement. */
bool
db_connect(const char *conninfo)
{
	db_disconnect();
	conn = db_open(conninfo, "taskevents-relay", last_error, sizeof(last_error));
	if (conn == NULL)
		return false;

	/*
	 * This connection's commits (ticks, acknowledgements, lease renewals,
	 * dead letters) do not wait for the WAL flush: a tick is on the path of
	 * every event, and the flush was most of its time under load.  A crash of
	 * the server can lose the last of them, never an event (those are the
	 * writers' commits) and never out of order: a lost tick is cut again, a
	 * lost acknowledgement re-sends what it covered (at least once, same
	 * ids), and the relay loses its connection, and so its leadership, with
	 * the server.  The side connection keeps the default: fire_reminders
	 * writes events.
	 */
	if (!setup_done(PQexec(conn, "SET synchronous_commit = off")))
		return false;
	for (size_t i = 0; i < sizeof(statements) / sizeof(statements[0]); i++)
		if (!setup_done(PQprepare(conn, statements[i].name, statements[i].sql, 0, NULL)))
			return false;
	atomic_store(&metrics.db_up, 1);
	return true;
}

/*
 * One relay_fetch_page() may be sent ahead (db_prefetch) so that PostgreSQL
 * reads the next page while the relay hands the current one to Kafka.  Any
 * other call first collects its result into pf_res, where db_fetch() finds
 * it when asked for the same page.
 */

static void
prefetch_collect(void)
{
	PGresult   *r;

	int64_t		started;

	if (!pf_sent)
		return;
	pf_sent = false;
	started = mono_us();
	while ((r = PQgetResult(conn)) != NULL)
	{
		if (pf_res)
			PQclear(pf_res);
		pf_res = r;
	}
	wait_us += mono_us() - started;
}

static void
prefetch_discard(void)
{
	prefetch_collect();
	prefetch_drop();
}

/* Classify a failed result (and take it). */
static db_result
failed(PGresult *res)
{
	bool		fenced,
				transient;

	note_error(res);
	fenced = strcmp(last_sqlstate, "55000") == 0;
	transient = strncmp(last_sqlstate, "40", 2) == 0 ||
		strcmp(last_sqlstate, "55P03") == 0 || strcmp(last_sqlstate, "57014") == 0;
	if (PQstatus(conn) != CONNECTION_OK)
	{
		PQclear(res);
		atomic_store(&metrics.db_up, 0);
		return DB_CONN;
	}
	PQclear(res);
	return fenced ? DB_FENCED : transient ? DB_TRANSIENT : DB_FAILED;
}

/*
 * Run a prepared statement, its result in text (format 0) or binary (1);
 * on success *out holds the result.
 */
static db_result
run_format(const char *name, int nparams, const char *const *params, int format,
		   PGresult **out)
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
	started = mono_us();
	atomic_fetch_add(&metrics.db_calls, 1);
	res = PQexecPrepared(conn, name, nparams, params, NULL, NULL, format);
	st = PQresultStatus(res);
	started = mono_us() - started;
	wait_us += started;
	if (started >= 100000)
		log_debug("slow database call", "{s:s, s:I}", "call", name, "took_ms", (json_int_t) (started / 1000));
	if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
	{
		*out = res;
		return DB_OK;
	}
	return failed(res);
}

static db_result
run(const char *name, int nparams, const char *const *params, PGresult **out)
{
	return run_format(name, nparams, params, 0, out);
}

/*
 * Run a prepared statement and read the first ncols columns of its first
 * row into cols (ncols 0: only run it): an integer, a boolean as 1 or 0,
 * NULL as 0.  cols is written only when DB_OK is returned.
 */
static db_result
run_row(const char *name, int nparams, const char *const *params, int64_t *cols, int ncols)
{
	PGresult   *res;
	db_result	r = run(name, nparams, params, &res);

	if (r != DB_OK)
		return r;
	for (int i = 0; i < ncols; i++)
	{
		const char *v = PQgetisnull(res, 0, i) ? "" : PQgetvalue(res, 0, i);

		cols[i] = strcmp(v, "t") == 0 ? 1 : strtoll(v, NULL, 10);
	}
	PQclear(res);
	return DB_OK;
}

db_result
db_lease(const char *consumer, const char *holder, int64_t epoch, int ttl_ms, int64_t *new_epoch)
{
	char		e[32],
				t[32];
	const char *p[4] = {consumer, holder, e, t};

	snprintf(e, sizeof(e), "%lld", (long long) epoch);
	snprintf(t, sizeof(t), "%d", ttl_ms);
	if (epoch <= 0)
		p[2] = NULL;
	return run_row("lease", 4, p, new_epoch, 1);
}

db_result
db_release(const char *consumer, int64_t epoch)
{
	char		e[32];
	const char *p[2] = {consumer, e};

	snprintf(e, sizeof(e), "%lld", (long long) epoch);
	return run_row("release", 2, p, NULL, 0);
}

db_result
db_position(const char *consumer, int64_t *tick, int64_t *cursor, bool *done)
{
	const char *p[1] = {consumer};
	int64_t		v[3];
	db_result	r = run_row("position", 1, p, v, 3);

	if (r == DB_OK)
	{
		*tick = v[0];
		*cursor = v[1];
		*done = v[2] != 0;
	}
	return r;
}

db_result
db_last_tick(const char *consumer, int64_t *tick)
{
	const char *p[1] = {consumer};

	return run_row("last_tick", 1, p, tick, 1);
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
	if (!PQsendQueryPrepared(conn, "fetch", 4, p, NULL, NULL, 1))
		return;
	pf_sent = true;
	pf_tick = tick;
	pf_after = after;
	pf_limit = limit;
}

/* Read a big-endian integer of the page. */
static uint64_t
take_u64(const unsigned char *p)
{
	uint64_t	v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

static uint32_t
take_u32(const unsigned char *p)
{
	return ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16) | ((uint32_t) p[2] << 8) | p[3];
}

/*
 * A counted string of the page at *p (before end): its length word, its
 * bytes and its NUL.  Sets *s (NULL for the length -1 when nullable) and
 * *len; false when it is malformed.
 */
static bool
take_string(const unsigned char **p, const unsigned char *end, bool nullable,
			const char **s, size_t *len)
{
	uint32_t	n;

	if (end - *p < 4)
		return false;
	n = take_u32(*p);
	*p += 4;
	if (n == UINT32_MAX && nullable)
	{
		*s = NULL;
		*len = 0;
		return true;
	}
	if ((uint64_t) (end - *p) < (uint64_t) n + 1 || (*p)[n] != '\0')
		return false;
	*s = (const char *) *p;
	*len = n;
	*p += n + 1;
	return true;
}

/* PostgreSQL's epoch (2000-01-01) in Unix seconds */
#define PG_EPOCH_UNIX 946684800.0

/*
 * The rows of a page from relay_fetch_page(): chunks of whole records
 * (their layout: extension/relaypage.c), one a row in column col from row
 * first on, read in one pass into *page (NULL when there is none); the
 * strings stay where they are in res.  Returns the number of rows, -1 when
 * the page is malformed.
 */
static int
page_rows(PGresult *res, int first, int col, db_page **page)
{
	db_page    *pg = NULL;
	int			n = 0,
				cap = 0;

	*page = NULL;
	if (PQnfields(res) != col + 1 || PQfformat(res, col) != 1)
		return -1;
	for (int c = first; c < PQntuples(res); c++)
	{
		const unsigned char *p = (const unsigned char *) PQgetvalue(res, c, col);
		const unsigned char *end = p + PQgetlength(res, c, col);

		if (PQgetisnull(res, c, col) || p == end)
			goto malformed;
		while (p < end)
		{
			db_row	   *row;
			size_t		len;

			if (n == cap)
			{
				cap = cap ? cap * 2 : 256;
				pg = realloc(pg, offsetof(db_page, rows) + cap * sizeof(db_row));
			}
			row = &pg->rows[n];
			if (end - p < 16)
				goto malformed;
			row->id = (int64_t) take_u64(p);
			row->created_at = (double) (int64_t) take_u64(p + 8) / 1000000.0 + PG_EPOCH_UNIX;
			p += 16;
			if (!take_string(&p, end, false, &row->topic, &len) ||
				!take_string(&p, end, true, &row->key, &len) ||
				!take_string(&p, end, false, &row->event, &row->event_len))
				goto malformed;
			n++;
		}
	}
	*page = pg;
	return n;

malformed:
	free(pg);
	return -1;
}

/*
 * The page in res (see page_rows()) as *page, *rows and *nrows: *page
 * keeps res, with one reference per row; none when it has no row.  Takes
 * res.
 */
static db_result
take_page(PGresult *res, int first, int col, db_page **page, db_row **rows, int *nrows)
{
	db_page    *pg;
	int			n = page_rows(res, first, col, &pg);

	if (n < 0)
	{
		snprintf(last_error, sizeof(last_error), "relay_fetch_page() returned a malformed page");
		PQclear(res);
		return DB_FAILED;
	}
	if (n == 0)
	{
		free(pg);
		PQclear(res);
		return DB_OK;
	}
	pg->res = res;
	pg->refs = n;
	*page = pg;
	*rows = pg->rows;
	*nrows = n;
	return DB_OK;
}

/*
 * The page of batch tick after id `after`, at most `limit` rows.  A page
 * fetched ahead is used when it is the same page with a limit no larger;
 * *used_limit says which limit applied (fewer rows = end of the batch).
 * *rows point into *page, which holds one reference per row (NULL when
 * there is no row).
 */
db_result
db_fetch(const char *consumer, int64_t tick, int64_t after, int limit, db_page **page,
		 db_row **rows, int *nrows, int *used_limit)
{
	char		t[32],
				a[32],
				l[32];
	const char *p[4] = {consumer, t, a, l};
	PGresult   *res;
	db_result	r;

	*page = NULL;
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
		r = run_format("fetch", 4, p, 1, &res);
		if (r != DB_OK)
			return r;
	}
	return take_page(res, 0, 0, page, rows, nrows);
}

/*
 * Cut a new batch and read its first page, at most `limit` rows, in one
 * round trip: *tick = the new tick, or 0 when nothing new committed (then
 * there is no page); the page as db_fetch() gives it.
 */
db_result
db_tick_fetch(const char *consumer, int64_t epoch, int limit, int64_t *tick,
			  db_page **page, db_row **rows, int *nrows)
{
	char		e[32],
				l[32];
	const char *p[3] = {consumer, e, l};
	PGresult   *res;
	db_result	r;

	*tick = 0;
	*page = NULL;
	*rows = NULL;
	*nrows = 0;
	if (conn == NULL)
		return DB_CONN;
	prefetch_discard();			/* a page of an earlier batch, unused */
	snprintf(e, sizeof(e), "%lld", (long long) epoch);
	snprintf(l, sizeof(l), "%d", limit);
	r = run_format("tick", 3, p, 1, &res);
	if (r != DB_OK)
		return r;
	if (PQntuples(res) < 1 || PQnfields(res) != 2 || PQfformat(res, 0) != 1 ||
		(!PQgetisnull(res, 0, 0) && PQgetlength(res, 0, 0) != 8))
	{
		snprintf(last_error, sizeof(last_error), "relay_tick() returned a malformed row");
		PQclear(res);
		return DB_FAILED;
	}
	if (PQgetisnull(res, 0, 0))
	{
		PQclear(res);
		return DB_OK;
	}
	*tick = (int64_t) take_u64((const unsigned char *) PQgetvalue(res, 0, 0));
	return take_page(res, 1, 1, page, rows, nrows);
}

/* One row of the page is done with; the last one frees the page. */
void
db_page_release(db_page *page)
{
	if (page && --page->refs == 0)
	{
		PQclear(page->res);
		free(page);
	}
}

db_result
db_ack(const char *consumer, int64_t epoch, int64_t tick, int64_t cursor, bool done)
{
	char		e[32],
				t[32],
				c[32];
	const char *p[5] = {consumer, e, t, c, done ? "true" : "false"};

	snprintf(e, sizeof(e), "%lld", (long long) epoch);
	snprintf(t, sizeof(t), "%lld", (long long) tick);
	snprintf(c, sizeof(c), "%lld", (long long) cursor);
	return run_row("ack", 5, p, NULL, 0);
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

	snprintf(e, sizeof(e), "%lld", (long long) epoch);
	snprintf(o, sizeof(o), "%lld", (long long) outbox_id);
	snprintf(a, sizeof(a), "%d", attempts);
	snprintf(f, sizeof(f), "%.6f", first_failed_at);
	return run_row("dead_letter", 10, p, NULL, 0);
}
