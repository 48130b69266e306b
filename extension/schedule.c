/*-------------------------------------------------------------------------
 *
 * schedule.c
 *	  Recurrence and reminder hooks of the row trigger, and their settings.
 *
 * The row trigger calls ScheduleAfterRowEvent() after it has written the
 * row's own event, so that whatever happens here follows that event in the
 * outbox: for a completion, the reminder.cancelled of the completed task,
 * then the next instance of a recurring task (whose own row trigger writes
 * its task.created and reminder.scheduled).  The date rule and the spawning
 * of the next instance live in recurrence.c, reminder bookkeeping in
 * reminders.c; this file dispatches and defines the settings.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "taskevents.h"

char	   *taskevents_timezone = NULL;
int			taskevents_reminder_lead = 86400;

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
 * Define the taskevents.* settings of the scheduling code.  Called from
 * _PG_init before the prefix is reserved.
 *
 * Both are PGC_USERSET: they shape dates the way TimeZone does (which is
 * user-settable too) and grant nothing.  A DBA sets them for everyone with
 * ALTER DATABASE ... SET or ALTER ROLE ... SET; a session that changes them
 * only changes the dates of the tasks it writes itself.
 */
void
DefineScheduleSettings(void)
{
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

	InitRecurrenceCache();
}

/*
 * Write one event about a task of cfg's table on the reminders topic, with
 * the table's source and pubsubname (the envelope of the table's own task.*
 * events).
 */
void
EmitScheduleEvent(TableConfig *cfg, const char *type, const char *subject,
				  const char *partition_key, Jsonb *data)
{
	CloudEventParts parts;

	memset(&parts, 0, sizeof(parts));
	parts.type = type;
	parts.source = cfg->source;
	parts.topic = TASKEVENTS_REMINDERS_TOPIC;
	parts.pubsubname = cfg->pubsubname;
	parts.subject = subject;
	parts.partitionkey = partition_key;
	parts.data = data;
	EnqueueEvent(TASKEVENTS_REMINDERS_TOPIC, partition_key,
				 BuildCloudEvent(&parts, NULL));
}

/*
 * React to one row event of an attached table: refuse a recurring row with
 * an unknown interval, keep its reminder in step, and on completion of a
 * recurring task create the next instance.
 */
void
ScheduleAfterRowEvent(TableConfig *cfg, TriggerData *trigdata,
					  TaskEventKind kind)
{
	Relation	rel = trigdata->tg_relation;

	if (kind == TASK_EVENT_CREATED)
		CheckRecurrence(cfg, rel, trigdata->tg_trigtuple);
	else if (kind == TASK_EVENT_UPDATED || kind == TASK_EVENT_COMPLETED)
		CheckRecurrence(cfg, rel, trigdata->tg_newtuple);

	UpdateReminder(cfg, trigdata, kind);

	if (kind == TASK_EVENT_COMPLETED)
		SpawnNextInstance(cfg, trigdata);
}

