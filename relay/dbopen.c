/*
 * dbopen.c
 *		Opening the relay's PostgreSQL connections (db.c's main one and
 *		dbside.c's), all with the same session settings.
 *
 * The one setting that matters for safety is search_path: the relay's
 * statements must not resolve an operator, function or type through a
 * schema that someone put first in the relay role's path.  Every
 * connection pins it, and the statements qualify their names as well.
 */
#include "relay.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * A NOTICE or WARNING from the server (a reminder that failed to fire
 * warns, naming the task id and the SQLSTATE) becomes one JSON log line,
 * not libpq's default text on stderr.
 */
static void
notice_receiver(void *arg, const PGresult *res)
{
	const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

	if (sev && strcmp(sev, "WARNING") == 0)
		log_warn("server warning", "{s:s, s:s, s:s}", "connection", (const char *) arg,
				 "sqlstate", state ? state : "", "message", msg ? msg : "");
	else
		log_debug("server notice", "{s:s, s:s, s:s}", "connection", (const char *) arg,
				  "severity", sev ? sev : "", "message", msg ? msg : "");
}

/*
 * Open a connection for the relay: the conninfo (a key=value string or a
 * URI; empty means libpq's PG* environment) with keepalives and a fallback
 * application name it may override, and search_path pinned to pg_catalog,
 * pg_temp.  The pin is appended to the "options" the conninfo (or, when it
 * has none, PGOPTIONS) gives, so those options still apply and the pin
 * comes last and wins, also over ALTER ROLE/DATABASE ... SET search_path.
 * Returns NULL after writing libpq's message into errbuf.
 */
PGconn *
db_open(const char *conninfo, const char *appname, char *errbuf, size_t errlen)
{
	static const char pin[] = "-c search_path=pg_catalog,pg_temp";
	const char *keys[8];
	const char *vals[8];
	const char *user_opts = NULL;
	PQconninfoOption *parsed = NULL;
	char	   *opts;
	int			n = 0;
	PGconn	   *c;

	/* defaults first: a keyword repeated later (in the conninfo) wins */
	keys[n] = "keepalives_idle";
	vals[n++] = "10";
	keys[n] = "keepalives_interval";
	vals[n++] = "5";
	keys[n] = "fallback_application_name";
	vals[n++] = appname;
	if (conninfo && conninfo[0] != '\0')
	{
		keys[n] = "dbname";
		vals[n++] = conninfo;
		/* a bare database name does not parse; libpq takes it as dbname */
		parsed = PQconninfoParse(conninfo, NULL);
		for (PQconninfoOption *o = parsed; o && o->keyword; o++)
			if (strcmp(o->keyword, "options") == 0)
				user_opts = o->val;
	}
	if (user_opts == NULL)
		user_opts = getenv("PGOPTIONS");
	if (user_opts && user_opts[0] != '\0')
	{
		opts = malloc(strlen(user_opts) + sizeof(pin) + 1);
		sprintf(opts, "%s %s", user_opts, pin);
	}
	else
		opts = strdup(pin);
	keys[n] = "options";
	vals[n++] = opts;
	keys[n] = NULL;
	vals[n] = NULL;
	c = PQconnectdbParams(keys, vals, 1);
	free(opts);
	if (parsed)
		PQconninfoFree(parsed);
	if (PQstatus(c) != CONNECTION_OK)
	{
		size_t		len;

		snprintf(errbuf, errlen, "%s", PQerrorMessage(c));
		len = strlen(errbuf);
		while (len > 0 && (errbuf[len - 1] == '\n' || errbuf[len - 1] == ' '))
			errbuf[--len] = '\0';
		PQfinish(c);
		return NULL;
	}
	PQsetNoticeReceiver(c, notice_receiver, (void *) appname);
	return c;
}
