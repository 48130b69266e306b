/*
 * dbside.c
 *		The side connection: housekeeping whose cost grows with the outbox
 *		(relay_backlog() counts it) or is not ours to bound
 *		(fire_due_reminders()) runs here, asynchronously, so it never holds
 *		up delivery on the main connection (db.c).  One query at a time;
 *		db_side_poll() collects its result without blocking.
 *
 * This is where a maintenance list (each feature's periodic operations
 * with their intervals, run in turn) would plug in: db_side_begin() takes
 * the next due operation, db_side_poll() reports its outcome.
 */
#include "relay.h"

#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
	char		err[512];
	PGresult   *res;

	side = db_open(conninfo, "taskevents-relay-side", err, sizeof(err));
	if (side == NULL)
	{
		log_warn("side database connection failed", "{s:s}", "error", err);
		return false;
	}
	res = PQexec(side, "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_proc p "
				 "JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace "
				 "WHERE n.nspname OPERATOR(pg_catalog.=) 'taskevents'::pg_catalog.name "
				 "AND p.proname OPERATOR(pg_catalog.=) 'fire_due_reminders'::pg_catalog.name "
				 "AND p.pronargs OPERATOR(pg_catalog.=) p.pronargdefaults)");
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
		sql = "SELECT pending, extract(epoch FROM pg_catalog.clock_timestamp() "
			"OPERATOR(pg_catalog.-) oldest_pending)::pg_catalog.float8 "
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
