/*-------------------------------------------------------------------------
 *
 * pg_taskevents.c
 *	  Module entry point: settings and one-time initialisation.
 *
 * Everything that must exist once per backend is set up here: every
 * taskevents.* setting, and the relcache invalidation callbacks that keep
 * the per-table caches (config.c, recurrence.c) honest.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <limits.h>

#include "fmgr.h"
#include "pgtime.h"
#include "utils/guc.h"

#include "taskevents.h"

PG_MODULE_MAGIC;

char	   *taskevents_traceparent = NULL;
int			taskevents_rotation_period = 60;
char	   *taskevents_pubsubname = NULL;
bool		taskevents_discard_undelivered = false;
char	   *taskevents_timezone = NULL;
int			taskevents_reminder_lead = 86400;

void		_PG_init(void);

/*
 * Accept an empty value or a W3C trace context "traceparent" header:
 * version-traceid-parentid-flags, lowercase hex, with the all-zero ids
 * forbidden as the specification says.
 */
static bool
check_traceparent(char **newval, void **extra, GucSource source)
{
	const char *v = *newval;
	static const int lens[] = {2, 32, 16, 2};
	int			part;
	const char *p = v;

	if (v == NULL || v[0] == '\0')
		return true;

	for (part = 0; part < 4; part++)
	{
		int			i;
		bool		allzero = true;

		for (i = 0; i < lens[part]; i++, p++)
		{
			if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
				goto bad;
			if (*p != '0')
				allzero = false;
		}
		if ((part == 1 || part == 2) && allzero)
			goto bad;
		if (part < 3)
		{
			if (*p != '-')
				goto bad;
			p++;
		}
	}
	if (*p != '\0' || strncmp(v, "ff", 2) == 0)
		goto bad;
	return true;

bad:
	GUC_check_errdetail("A traceparent looks like \"00-<32 hex digits>-<16 hex digits>-<2 hex digits>\" in lowercase.");
	return false;
}

/*
 * Accept an empty taskevents.timezone (meaning the session's TimeZone) or a
 * zone name PostgreSQL knows.
 */
static bool
check_schedule_timezone(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	if (pg_tzset(*newval) == NULL)
	{
		GUC_check_errdetail("Time zone \"%s\" is not recognized.", *newval);
		GUC_check_errhint("Use a name from pg_timezone_names, such as \"Europe/Berlin\", or an empty string for the session's TimeZone.");
		return false;
	}
	return true;
}

/*
 * Module load: define the settings and register the cache callbacks.
 *
 * taskevents.timezone and taskevents.reminder_lead are PGC_USERSET: they
 * shape dates the way TimeZone does (which is user-settable too) and grant
 * nothing.  A DBA sets them for everyone with ALTER DATABASE ... SET or
 * ALTER ROLE ... SET; a session that changes them only changes the dates of
 * the tasks it writes itself.  Everything that touches security is
 * PGC_SUSET.
 */
void
_PG_init(void)
{
	DefineCustomStringVariable("taskevents.traceparent",
							   "W3C trace context carried as the traceparent attribute of events written by this session.",
							   "Empty means no traceparent attribute.",
							   &taskevents_traceparent,
							   "",
							   PGC_USERSET,
							   0,
							   check_traceparent, NULL, NULL);

	DefineCustomIntVariable("taskevents.rotation_period",
							"Seconds each outbox partition receives events before the next one takes over.",
							"Smaller values keep the outbox smaller; partitions are truncated once delivered.",
							&taskevents_rotation_period,
							60, 1, 86400,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomStringVariable("taskevents.pubsubname",
							   "Dapr pub/sub component name carried in events (the pubsubname attribute).",
							   "Used by publish() and as the default of attach(pubsubname).",
							   &taskevents_pubsubname,
							   "pubsub",
							   PGC_SUSET,
							   0,
							   NULL, NULL, NULL);

	DefineCustomBoolVariable("taskevents.discard_undelivered",
							 "Lets DROP EXTENSION pg_taskevents discard undelivered events and dead letters.",
							 "Off: the drop is refused while there are any (see removal.c).",
							 &taskevents_discard_undelivered,
							 false,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("taskevents.timezone",
							   "Time zone in which due dates of recurring tasks are computed.",
							   "Empty means the session's TimeZone setting (by default the database's).",
							   &taskevents_timezone,
							   "",
							   PGC_USERSET,
							   0,
							   check_schedule_timezone, NULL, NULL);

	DefineCustomIntVariable("taskevents.reminder_lead",
							"How long before its due date a task's reminder fires.",
							"attach(reminder_lead => ...) overrides it for one table.",
							&taskevents_reminder_lead,
							86400, 1, INT_MAX,
							PGC_USERSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("taskevents");

	InitWakeup();
	InitPendingEvents();
	InitConfigCache();
	InitEnvelopeCache();
	InitRecurrenceCache();
}
