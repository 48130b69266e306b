/*-------------------------------------------------------------------------
 *
 * previous.c
 *	  C functions the previous version's SQL objects name.
 *
 * A package upgrade replaces the library before ALTER EXTENSION ... UPDATE
 * replaces the SQL objects, and CREATE EXTENSION ... VERSION '0.1.0' needs
 * every C function 0.1.0's install script names.  0.1.0's
 * taskevents.emit_event() and taskevents.reminder_task() are gone in 0.2.0
 * (fire_due_reminders() is C now and does their work itself); their
 * symbols stay, and refuse with 55000 until the update is run.  (Writes
 * through 0.1.0's SQL objects are refused the same way by the outbox
 * layout check, outbox.c.)
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"

#include "taskevents.h"

static void
RefuseOldSql(const char *name)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("taskevents.%s() belongs to pg_taskevents 0.1.0, and the library installed is %s",
					name, TASKEVENTS_VERSION_STRING),
			 errhint("Run ALTER EXTENSION pg_taskevents UPDATE.")));
}

PG_FUNCTION_INFO_V1(emit_event);
Datum
emit_event(PG_FUNCTION_ARGS)
{
	RefuseOldSql("emit_event");
	PG_RETURN_NULL();
}

PG_FUNCTION_INFO_V1(reminder_task);
Datum
reminder_task(PG_FUNCTION_ARGS)
{
	RefuseOldSql("reminder_task");
	PG_RETURN_NULL();
}
