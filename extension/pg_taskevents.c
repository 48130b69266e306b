/*-------------------------------------------------------------------------
 *
 * pg_taskevents.c
 *	  Module entry point: settings and one-time initialisation.
 *
 * Everything that must exist once per backend is set up here: the
 * taskevents.* settings and the relcache invalidation callback that keeps
 * the per-table configuration cache honest.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "fmgr.h"
#include "utils/guc.h"

#include "taskevents.h"

PG_MODULE_MAGIC;

char	   *taskevents_traceparent = NULL;
int			taskevents_rotation_period = 60;
char	   *taskevents_pubsubname = NULL;
bool		taskevents_discard_undelivered = false;

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
 * Module load: define the settings and register the cache callback.
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

	DefineScheduleSettings();

	MarkGUCPrefixReserved("taskevents");

	InitConfigCache();
}
