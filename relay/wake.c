/*
 * wake.c
 *		Woken by commits instead of a clock.  When the leader's last tick
 *		found nothing new, it does not poll relay_tick() again: a connection
 *		of its own sends CALL taskevents.relay_wait(timeout, commits)
 *		(extension/wakeup.c), which the server answers when a transaction
 *		that wrote events commits, or after the timeout.  The leader then
 *		ticks once.  The CALL stays outstanding while the leader renews its
 *		lease and runs the maintenance list on its other connections, so
 *		waiting costs two transactions per WAIT_TIMEOUT_MS, not one per poll.
 *
 * The counter the server returns is passed back into the next wait: a
 * commit between the relay's last tick and its next wait changes it, and
 * that wait returns at once.  So no commit is missed, whatever the timing.
 *
 * Polling every --poll-interval-ms remains the fallback, and the mode is
 * said in the log ("wakeup mode") and in /metrics: when the library is not
 * in shared_preload_libraries (relay_wakeup_mode() says 'poll'), when the
 * relay role may not call relay_wait(), with --once, and for a while after
 * the wait connection fails.
 */
#include "relay.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WAIT_TIMEOUT_MS		60000	/* relay_wait()'s longest wait */
#define RETRY_AFTER_MS		5000	/* poll this long after a failure */

static PGconn *wconn;
static wake_mode mode = WAKE_UNKNOWN;
static bool waiting;			/* a CALL is outstanding */
static char commits[32];		/* the counter last returned; "" = none yet */
static int64_t retry_at;		/* no new connection before this */

static const char *const mode_names[] = {"unknown", "latch", "poll"};

static void
set_mode(wake_mode m, const char *why)
{
	atomic_store(&metrics.wakeup_mode, (int) m);
	if (m != mode)
		log_info("wakeup mode", "{s:s, s:s}", "mode", mode_names[m], "reason", why);
	mode = m;
}

static void
wake_fail(const char *what, const char *error)
{
	log_warn("wakeup connection failed: polling for now", "{s:s, s:s, s:i}",
			 "call", what, "error", error, "retry_in_ms", RETRY_AFTER_MS);
	wake_close();
	retry_at = mono_ms() + RETRY_AFTER_MS;
}

/* Open the wait connection and ask the server which mode it offers. */
static bool
wake_connect(const char *conninfo)
{
	char		err[512];
	PGresult   *res;

	wconn = db_open(conninfo, "taskevents-relay-wait", err, sizeof(err));
	if (wconn == NULL)
	{
		wake_fail("connect", err);
		return false;
	}

	/*
	 * A relay that dies while its CALL waits leaves a backend asleep until
	 * the timeout, holding a connection (and DROP DATABASE): have it check
	 * for a closed client every second (wake_close() cancels the wait).
	 */
	PQclear(PQexec(wconn, "SET client_connection_check_interval = 1000"));
	res = PQexec(wconn, "SELECT taskevents.relay_wakeup_mode(), pg_catalog.has_function_privilege("
				 "'taskevents.relay_wait(pg_catalog.int4, pg_catalog.int8)'::pg_catalog.regprocedure, 'EXECUTE')");
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
	{
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		/* not granted (42501) or not there (42883): poll for good */
		if (state && (strcmp(state, "42501") == 0 || strcmp(state, "42883") == 0))
		{
			set_mode(WAKE_POLL, "relay_wakeup_mode() is not callable by the relay role");
			PQclear(res);
			wake_close();
			return false;
		}
		wake_fail("relay_wakeup_mode", PQresultErrorMessage(res));
		PQclear(res);
		return false;
	}
	if (strcmp(PQgetvalue(res, 0, 1), "t") != 0)
		set_mode(WAKE_POLL, "relay_wait() is not callable by the relay role");
	else if (strcmp(PQgetvalue(res, 0, 0), "latch") == 0)
		set_mode(WAKE_LATCH, "pg_taskevents is in shared_preload_libraries");
	else
		set_mode(WAKE_POLL, "pg_taskevents is not in shared_preload_libraries");
	PQclear(res);
	if (mode != WAKE_LATCH)
		wake_close();
	return mode == WAKE_LATCH;
}

/*
 * The leader's tick found nothing: wait for a commit on the wait
 * connection.  While the wait is outstanding (wake_waiting()) the leader
 * does not tick; when none could be sent, it polls.
 */
void
wake_arm(const char *conninfo)
{
	char		timeout[16];
	const char *params[2];

	if (waiting)
		return;
	if (mode == WAKE_POLL || mono_ms() < retry_at)
		return;
	if (wconn == NULL && !wake_connect(conninfo))
		return;
	snprintf(timeout, sizeof(timeout), "%d", WAIT_TIMEOUT_MS);
	params[0] = timeout;
	params[1] = commits[0] ? commits : NULL;
	if (!PQsendQueryParams(wconn, "CALL taskevents.relay_wait($1::pg_catalog.int4, $2::pg_catalog.int8)",
						   2, NULL, params, NULL, NULL, 0))
	{
		wake_fail("relay_wait", PQerrorMessage(wconn));
		return;
	}
	waiting = true;
}

/* Collect relay_wait()'s answer if it has come; never blocks. */
void
wake_collect(void)
{
	PGresult   *res;
	bool		ok = true;

	if (!waiting)
		return;
	if (!PQconsumeInput(wconn))
	{
		wake_fail("relay_wait", PQerrorMessage(wconn));
		return;
	}
	if (PQisBusy(wconn))
		return;
	while ((res = PQgetResult(wconn)) != NULL)
	{
		if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
		{
			/* woken by a commit, or timed out: either way, tick once */
			snprintf(commits, sizeof(commits), "%s", PQgetvalue(res, 0, 0));
			atomic_fetch_add(&metrics.wakeups, 1);
		}
		else if (PQresultStatus(res) == PGRES_TUPLES_OK)
			set_mode(WAKE_POLL, "relay_wait() returned no counter");
		else
		{
			const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

			if (state && (strcmp(state, "42501") == 0 || strcmp(state, "42883") == 0))
				set_mode(WAKE_POLL, "relay_wait() is not callable by the relay role");
			else
				log_warn("relay_wait() failed", "{s:s}", "error", PQresultErrorMessage(res));
			ok = false;
		}
		PQclear(res);
	}
	waiting = false;
	if (!ok || mode == WAKE_POLL)
	{
		wake_close();
		retry_at = mono_ms() + RETRY_AFTER_MS;
	}
}

bool
wake_waiting(void)
{
	return waiting;
}

/* The wait connection's socket while a wait is outstanding, else -1. */
int
wake_socket(void)
{
	return waiting && wconn ? PQsocket(wconn) : -1;
}

void
wake_close(void)
{
	if (wconn && waiting)
	{
		PGcancel   *c = PQgetCancel(wconn);
		char		err[256];

		if (c)
		{
			PQcancel(c, err, sizeof(err));
			PQfreeCancel(c);
		}
	}
	if (wconn)
		PQfinish(wconn);
	wconn = NULL;
	waiting = false;
}
