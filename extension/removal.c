/*-------------------------------------------------------------------------
 *
 * removal.c
 *	  Keep DROP EXTENSION from discarding undelivered events.
 *
 * Dropping the extension drops the outbox and the dead letters with it.
 * Nothing asks: DROP EXTENSION ... CASCADE, or detach() of every table and
 * then a plain DROP EXTENSION, used to discard events that had committed
 * but not reached Kafka, and the dead letters kept for review.  The event
 * trigger taskevents_guard_drop (ddl_command_start, DROP EXTENSION and DROP
 * SCHEMA) runs drop_guard() first: while pending events or dead letters
 * that were not replayed exist, the DROP is refused unless the session set
 * taskevents.discard_undelivered = on, the documented force path.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/event_trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "nodes/parsenodes.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "taskevents.h"

/*
 * Does a DROP statement name this extension, or (with CASCADE) its schema?
 */
static bool
DropsExtension(DropStmt *stmt)
{
	ListCell   *lc;
	char	   *schema;

	if (stmt->removeType == OBJECT_EXTENSION)
	{
		foreach(lc, stmt->objects)
		{
			if (strcmp(strVal(lfirst(lc)), "pg_taskevents") == 0)
				return true;
		}
		return false;
	}
	if (stmt->removeType != OBJECT_SCHEMA || stmt->behavior != DROP_CASCADE)
		return false;
	schema = get_namespace_name(TaskeventsSchema());
	foreach(lc, stmt->objects)
	{
		if (schema != NULL && strcmp(strVal(lfirst(lc)), schema) == 0)
			return true;
	}
	return false;
}

/*
 * Count the undelivered events and the dead letters not replayed, as the
 * extension owner.
 */
static void
CountUndelivered(int64 *pending, int64 *dead)
{
	int			ret;
	bool		isnull;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = RunSqlAs(TaskeventsOwner(),
				   "SELECT (SELECT pg_catalog.count(*) FROM taskevents.pending_events),"
				   "       (SELECT pg_catalog.count(*) FROM taskevents.dead_letters d"
				   "         WHERE d.replayed_at IS NULL)",
				   0, NULL, NULL, NULL, true, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "counting undelivered events failed: %s", SPI_result_code_string(ret));
	*pending = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	*dead = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	SPI_finish();
}

/*
 * taskevents.drop_guard() RETURNS event_trigger
 *
 * See the file header.
 */
PG_FUNCTION_INFO_V1(drop_guard);
Datum
drop_guard(PG_FUNCTION_ARGS)
{
	EventTriggerData *trigdata;
	int64		pending;
	int64		dead;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("taskevents.drop_guard() was not called by the event trigger manager")));
	trigdata = (EventTriggerData *) fcinfo->context;
	if (!IsA(trigdata->parsetree, DropStmt) ||
		!DropsExtension((DropStmt *) trigdata->parsetree) ||
		taskevents_discard_undelivered)
		PG_RETURN_VOID();

	CountUndelivered(&pending, &dead);
	if (pending > 0 || dead > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("cannot drop extension pg_taskevents: " INT64_FORMAT " events are undelivered and " INT64_FORMAT " dead letters are not replayed",
						pending, dead),
				 errdetail("Dropping the extension drops the outbox and the dead letters with them."),
				 errhint("Let the relay deliver the events (taskevents.pending_events) and replay or save the dead letters, or SET taskevents.discard_undelivered = on to drop them anyway.")));
	PG_RETURN_VOID();
}
