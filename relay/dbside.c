/*
 * dbside.c
 *		The side connection: the maintenance list and the backlog sample,
 *		run asynchronously so that neither ever holds up delivery on the
 *		main connection (db.c).  One query at a time; db_side_poll()
 *		collects its result without blocking.
 *
 * The maintenance list is the extension's, in the manner of PgQ's
 * maint_operations(): on connecting, the relay asks
 * taskevents.maintenance_operations() which operations exist and how often
 * each should run (outbox rotation, relay state rotation, reminders, inbox
 * pruning, analytics partitions; docs/relay.md shows the list), then runs
 * each when it is due with taskevents.run_maintenance(operation), which
 * returns the operation's counts (done, failed); one that did something
 * runs again at once (see maintenance_result()).  The relay knows no
 * operation by name: a feature that adds one to the list is run without a
 * relay change.  --maintain-interval-ms and --reminders-interval-ms, when
 * set, replace the listed periods (of every operation but the reminders',
 * and of the reminders', as 0.1.0's maintain() and reminders hook did).
 */
#include "relay.h"

#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct maint_op
{
	int			slot;			/* in metrics.maint[] */
	int64_t		period_ms;		/* while events flow */
	int64_t		idle_ms;		/* while none do */
	int64_t		last_run;		/* when it last started (ms, monotonic); 0
								 * never */
	int64_t		hint_at;		/* its next_at (ms, monotonic); -1 none */
	bool		again;			/* did something: run again at once */
	bool		reminders;		/* feature 'reminders' */
	int			repeats;		/* runs in a row that did something */
} maint_op;

#define MAX_REPEATS 100

/*
 * While no event has been fetched since an operation last ran, nothing
 * written can have given it work: its period is stretched IDLE_STRETCH
 * times (at most to IDLE_MAX_MS, never below the listed period), unless
 * the operation said when it next has work (next_at: the next reminder),
 * so an idle relay costs its database little.
 */
#define IDLE_STRETCH 10
#define IDLE_MAX_MS 60000

static PGconn *side;
static db_side_kind side_kind = DB_SIDE_NONE;
static maint_op ops[RELAY_MAX_MAINT_OPS];
static int	n_ops;
static int	running = -1;		/* index in ops[] of the operation in flight */
static int64_t side_started;
static int64_t last_backlog;	/* when the backlog was last sampled */
static int64_t reconnect_at;

static void
side_close(void)
{
	if (side)
		PQfinish(side);
	side = NULL;
	side_kind = DB_SIDE_NONE;
	running = -1;
	n_ops = 0;
}

/* The metrics slot of operation name: existing slots are never renamed. */
static int
metrics_slot(const char *name)
{
	int			n = atomic_load(&metrics.n_maint);

	for (int i = 0; i < n; i++)
		if (strcmp(metrics.maint[i].name, name) == 0)
			return i;
	if (n == RELAY_MAX_MAINT_OPS)
		return -1;
	snprintf(metrics.maint[n].name, sizeof(metrics.maint[n].name), "%s", name);
	atomic_store(&metrics.n_maint, n + 1);	/* after the name: the reader sees
											 * it whole */
	return n;
}

/* Connect and read the maintenance list. */
static bool
side_connect(const relay_config *cfg, int64_t now)
{
	char		err[512];
	PGresult   *res;
	json_t	   *list;

	if (now < reconnect_at)
		return false;
	reconnect_at = now + 1000;
	side = db_open(cfg->db, "taskevents-relay-side", err, sizeof(err));
	if (side == NULL)
	{
		log_warn("side database connection failed", "{s:s}", "error", err);
		return false;
	}
	res = PQexec(side, "SELECT operation, feature, "
				 "(extract(epoch FROM period) OPERATOR(pg_catalog.*) 1000)::pg_catalog.int8 "
				 "FROM taskevents.maintenance_operations()");
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		log_error("cannot read the maintenance list (taskevents.maintenance_operations(), pg_taskevents 0.2.0 or later)",
				  "{s:s}", "error", PQresultErrorMessage(res));
		PQclear(res);
		PQfinish(side);
		side = NULL;
		reconnect_at = now + 30000;
		return false;
	}
	list = json_array();
	n_ops = 0;
	for (int i = 0; i < PQntuples(res) && n_ops < RELAY_MAX_MAINT_OPS; i++)
	{
		maint_op   *op = &ops[n_ops];
		int			slot = metrics_slot(PQgetvalue(res, i, 0));

		if (slot < 0)
			continue;
		op->slot = slot;
		op->reminders = strcmp(PQgetvalue(res, i, 1), "reminders") == 0;
		op->period_ms = strtoll(PQgetvalue(res, i, 2), NULL, 10);
		if (op->reminders && cfg->reminders_interval_ms > 0)
			op->period_ms = cfg->reminders_interval_ms;
		else if (!op->reminders && cfg->maintain_interval_ms > 0)
			op->period_ms = cfg->maintain_interval_ms;
		if (op->period_ms < 10)
			op->period_ms = 10;
		op->idle_ms = op->period_ms * IDLE_STRETCH < IDLE_MAX_MS ? op->period_ms * IDLE_STRETCH : IDLE_MAX_MS;
		if (op->idle_ms < op->period_ms)
			op->idle_ms = op->period_ms;
		op->last_run = 0;
		op->hint_at = -1;
		op->again = false;
		op->repeats = 0;
		json_array_append_new(list, json_pack("{s:s, s:I}", "operation", metrics.maint[slot].name,
											  "period_ms", (json_int_t) op->period_ms));
		n_ops++;
	}
	PQclear(res);
	log_info("maintenance list", "{s:o}", "operations", list);
	return true;
}

/* Send one query; false (and the connection closed) when it cannot. */
static bool
side_send(db_side_kind kind, const char *sql, const char *param)
{
	if (!PQsendQueryParams(side, sql, 1, NULL, &param, NULL, NULL, 0))
	{
		log_warn("side database connection lost", "{s:s}", "error", PQerrorMessage(side));
		side_close();
		return false;
	}
	side_kind = kind;
	side_started = mono_ms();
	return true;
}

/* The backlog counts the outbox: sampled only when /metrics can show it. */
static bool
backlog_sampled(const relay_config *cfg)
{
	return cfg->backlog_interval_ms > 0 && strcmp(cfg->metrics_addr, "0") != 0;
}

/*
 * When the backlog is next sampled: its interval after the last sample,
 * stretched like an idle operation's while the leader is quiet (it waits
 * for a commit with nothing in flight or unacknowledged: the backlog is 0
 * and only a commit, which ends the wait, can change it) and the last
 * sample said so; a sample taken while events were in flight is followed
 * by one at the usual interval, which sees them acknowledged.  Not
 * stretched merely because nothing was fetched lately: during a broker
 * outage the backlog grows and is what an operator watches.
 */
static int64_t
backlog_due_at(const relay_config *cfg, bool quiet)
{
	int64_t		every = cfg->backlog_interval_ms;

	if (quiet && atomic_load(&metrics.backlog) == 0)
		every = every * IDLE_STRETCH < IDLE_MAX_MS ? every * IDLE_STRETCH : IDLE_MAX_MS;
	return last_backlog == 0 ? 0 : last_backlog + every;
}

/*
 * When op is next due: at once after a run that did something; else its
 * period after its last run while events flow (last_activity: when the
 * leader last fetched any), its stretched period while none do, but no
 * later than the next_at it reported (and no sooner than its period).
 */
static int64_t
op_due_at(const maint_op *op, int64_t last_activity)
{
	int64_t		at;

	if (op->again || op->last_run == 0)
		return op->last_run;
	at = op->last_run + (last_activity >= op->last_run ? op->period_ms : op->idle_ms);
	if (op->hint_at >= 0)
	{
		int64_t		hint = op->hint_at > op->last_run + op->period_ms ? op->hint_at : op->last_run + op->period_ms;

		if (hint < at)
			at = hint;
	}
	return at;
}

/*
 * The leader's turn on the side connection: collect what finished, then
 * start the operation that has been due longest (or the backlog sample).
 */
void
db_side_step(const relay_config *cfg, int64_t now, int64_t last_activity, bool quiet)
{
	int			due = -1;
	int64_t		due_at = 0;

	db_side_poll();
	if (side_kind != DB_SIDE_NONE)
		return;
	if (side == NULL && !side_connect(cfg, now))
		return;
	for (int i = 0; i < n_ops; i++)
	{
		int64_t		at = op_due_at(&ops[i], last_activity);

		if (at <= now && (due < 0 || at < due_at))
		{
			due = i;
			due_at = at;
		}
	}
	if (due >= 0)
	{
		running = due;
		ops[due].last_run = now;
		ops[due].again = false;
		side_send(DB_SIDE_MAINTENANCE, "SELECT done, failed, (extract(epoch FROM next_at "
				  "OPERATOR(pg_catalog.-) pg_catalog.clock_timestamp()) OPERATOR(pg_catalog.*) 1000)::pg_catalog.int8 "
				  "FROM taskevents.run_maintenance($1)",
				  metrics.maint[ops[due].slot].name);
		return;
	}
	if (backlog_sampled(cfg) && now >= backlog_due_at(cfg, quiet))
	{
		last_backlog = now;
		side_send(DB_SIDE_BACKLOG, "SELECT pending, extract(epoch FROM pg_catalog.clock_timestamp() "
				  "OPERATOR(pg_catalog.-) oldest_pending)::pg_catalog.float8 "
				  "FROM taskevents.relay_backlog($1)", cfg->consumer);
	}
}

/* When the side connection next has something to start (ms, monotonic). */
int64_t
db_side_next_due(const relay_config *cfg, int64_t last_activity, bool quiet)
{
	int64_t		next = INT64_MAX;

	if (side == NULL)
		return reconnect_at;
	for (int i = 0; i < n_ops; i++)
	{
		int64_t		at = op_due_at(&ops[i], last_activity);

		if (at < next)
			next = at;
	}
	if (backlog_sampled(cfg) && backlog_due_at(cfg, quiet) < next)
		next = backlog_due_at(cfg, quiet);
	return next;
}

/* The side connection's socket while a query is in flight, else -1. */
int
db_side_socket(void)
{
	return side_kind != DB_SIDE_NONE ? PQsocket(side) : -1;
}

static void
maintenance_result(PGresult *res)
{
	maint_op   *op = &ops[running];
	relay_maint_metrics *m = &metrics.maint[op->slot];
	long		done = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	long		failed = strtol(PQgetvalue(res, 0, 1), NULL, 10);
	json_int_t	ms = (json_int_t) (mono_ms() - side_started);

	/*
	 * An operation that did something may have more to do (a burst of due
	 * reminders is fired a batch at a time): run it again at once, as PgQ's
	 * ticker repeats its maintenance operations, up to MAX_REPEATS times in a
	 * row before its period applies again.
	 */
	if (done > 0 && op->repeats < MAX_REPEATS)
	{
		op->repeats++;
		op->again = true;
	}
	else
		op->repeats = 0;
	op->hint_at = PQgetisnull(res, 0, 2) ? -1 : mono_ms() + strtoll(PQgetvalue(res, 0, 2), NULL, 10);
	atomic_fetch_add(&m->runs, 1);
	atomic_fetch_add(&m->done, done);
	atomic_fetch_add(&m->failed, failed);
	if (failed > 0)
		log_warn("maintenance operation reported failures", "{s:s, s:i, s:i, s:I}",
				 "operation", m->name, "done", (int) done, "failed", (int) failed, "took_ms", ms);
	else if (done > 0)
		log_info("maintenance", "{s:s, s:i, s:I}", "operation", m->name, "done", (int) done, "took_ms", ms);
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
		bool		rows = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;

		if (rows && side_kind == DB_SIDE_BACKLOG)
		{
			atomic_store(&metrics.backlog, strtol(PQgetvalue(res, 0, 0), NULL, 10));
			atomic_store(&metrics.oldest_pending_ms, PQgetisnull(res, 0, 1) ? 0 :
						 (long) (strtod(PQgetvalue(res, 0, 1), NULL) * 1000));
		}
		else if (rows && side_kind == DB_SIDE_MAINTENANCE)
			maintenance_result(res);
		else if (PQresultStatus(res) != PGRES_TUPLES_OK)
		{
			if (side_kind == DB_SIDE_MAINTENANCE)
			{
				atomic_fetch_add(&metrics.maint[ops[running].slot].errors, 1);
				log_warn("maintenance operation failed", "{s:s, s:s}", "operation",
						 metrics.maint[ops[running].slot].name, "error", PQresultErrorMessage(res));
			}
			else
				log_warn("relay_backlog() failed", "{s:s}", "error", PQresultErrorMessage(res));
		}
		PQclear(res);
	}
	side_kind = DB_SIDE_NONE;
	running = -1;
}

void
db_side_close(void)
{
	side_close();
}
