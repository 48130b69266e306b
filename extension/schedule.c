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
 * reminders.c; this file dispatches, defines the settings, and provides
 * taskevents.emit_event() and taskevents.reminder_task() for
 * fire_due_reminders().
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

/* the table whose reminder_sent_at reminder_task() is setting, if any */
static Oid	SettingReminderSentAt = InvalidOid;

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
 * The text form of column attnum of tup (its type's output function), or
 * NULL when the column is not configured or the value is null.
 */
char *
ColumnText(HeapTuple tup, TupleDesc desc, AttrNumber attnum)
{
	bool		isnull;
	Datum		d;
	Oid			typoutput;
	bool		typisvarlena;

	if (attnum == InvalidAttrNumber)
		return NULL;
	d = heap_getattr(tup, attnum, desc, &isnull);
	if (isnull)
		return NULL;
	getTypeOutputInfo(TupleDescAttr(desc, attnum - 1)->atttypid,
					  &typoutput, &typisvarlena);
	return OidOutputFunctionCall(typoutput, d);
}

/*
 * Is boolean column attnum of tup configured, not null and true?
 */
bool
ColumnIsTrue(HeapTuple tup, TupleDesc desc, AttrNumber attnum)
{
	bool		isnull;
	Datum		d;

	if (attnum == InvalidAttrNumber)
		return false;
	d = heap_getattr(tup, attnum, desc, &isnull);
	return !isnull && DatumGetBool(d);
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

/*
 * taskevents.emit_event(task_table regclass, topic text, type text,
 *						 subject text, partition_key text, data jsonb)
 *		RETURNS uuid
 *
 * Write one event about a task of an attached table with that table's
 * source and pubsubname; used by fire_due_reminders() for
 * reminder.triggered.  Not granted to PUBLIC: it lets the caller speak for
 * any attached table.
 */
PG_FUNCTION_INFO_V1(emit_event);
Datum
emit_event(PG_FUNCTION_ARGS)
{
	Relation	rel;
	TableConfig *cfg;
	CloudEventParts parts;
	pg_uuid_t  *id = palloc(sizeof(pg_uuid_t));
	char	   *topic;
	char	   *partition_key;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("task table, topic and type must not be null")));
	topic = text_to_cstring(PG_GETARG_TEXT_PP(1));
	ValidateTopicName(topic);
	partition_key = PG_ARGISNULL(4) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(4));

	rel = table_open(PG_GETARG_OID(0), AccessShareLock);
	cfg = GetTableConfig(rel);

	memset(&parts, 0, sizeof(parts));
	parts.type = text_to_cstring(PG_GETARG_TEXT_PP(2));
	parts.source = cfg->source;
	parts.topic = topic;
	parts.pubsubname = cfg->pubsubname;
	parts.subject = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));
	parts.partitionkey = partition_key;
	parts.data = PG_ARGISNULL(5) ? NULL : PG_GETARG_JSONB_P(5);

	EnqueueEvent(topic, partition_key, BuildCloudEvent(&parts, id));
	table_close(rel, AccessShareLock);

	PG_RETURN_UUID_P(id);
}

/*
 * Prepare a plan kept for the life of the backend.  lookup: a statement
 * that finds rows of a bookkeeping table by key, planned afresh each time
 * (CURSOR_OPT_CUSTOM_PLAN) rather than with a generic plan: a generic plan
 * made while the table looked empty (just created, or vacuumed empty)
 * would keep scanning it sequentially as it grows, until the next ANALYZE.
 * as_owner: parse as the extension owner (the statement is about the
 * extension's tables, which it then runs as the owner too).
 */
SPIPlanPtr
PrepareKept(const char *sql, int nargs, Oid *argtypes, bool lookup, bool as_owner)
{
	SPIPlanPtr	plan;
	Oid			save_userid;
	int			save_sec_context;

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	if (as_owner)
		SetUserIdAndSecContext(TaskeventsOwner(),
							   save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
							   SECURITY_RESTRICTED_OPERATION);
	plan = SPI_prepare_cursor(sql, nargs, argtypes,
							  lookup ? CURSOR_OPT_CUSTOM_PLAN : 0);
	SetUserIdAndSecContext(save_userid, save_sec_context);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	return plan;
}

/*
 * Run reminder_task()'s statement, flagging a reminder_sent_at update for
 * IsReminderBookkeepingUpdate() while it runs.
 */
static int
ExecuteTaskStatement(const char *sql, Oid *argtypes, Datum *args, Oid set_sent_on)
{
	volatile int ret = 0;

	SettingReminderSentAt = set_sent_on;
	PG_TRY();
	{
		ret = SPI_execute_with_args(sql, 2, argtypes, args, NULL, false, 1);
	}
	PG_FINALLY();
	{
		SettingReminderSentAt = InvalidOid;
	}
	PG_END_TRY();
	return ret;
}

/*
 * taskevents.reminder_task(task_table regclass, task_id text,
 *							sent_at timestamptz DEFAULT NULL) RETURNS jsonb
 *
 * For fire_due_reminders(): without sent_at, lock the task row (NOWAIT: a
 * writer holding it makes the reminder wait for the next run) and return it
 * as jsonb, or NULL when it is gone; with sent_at, set the table's
 * reminder_sent_at column (when it has one) and return the row.
 *
 * The statement runs as the table's owner in a security-restricted
 * operation, not as the extension owner fire_due_reminders() runs as: the
 * table's own triggers must not run with the extension owner's rights (the
 * way VACUUM and ANALYZE run a table's index functions as its owner).  Not
 * granted to PUBLIC.
 */
PG_FUNCTION_INFO_V1(reminder_task);
Datum
reminder_task(PG_FUNCTION_ARGS)
{
	Relation	rel;
	TableConfig *cfg;
	TupleDesc	desc;
	Form_pg_attribute idatt;
	char	   *qualname;
	char	   *idtype;
	char	   *sql;
	Oid			argtypes[2] = {TEXTOID, TIMESTAMPTZOID};
	Datum		args[2];
	Oid			save_userid;
	int			save_sec_context;
	int			ret;
	bool		isnull = true;
	Datum		result = (Datum) 0;
	bool		set_sent = PG_NARGS() > 2 && !PG_ARGISNULL(2);

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("task table and task id must not be null")));

	rel = table_open(PG_GETARG_OID(0), AccessShareLock);
	cfg = GetTableConfig(rel);
	desc = RelationGetDescr(rel);
	idatt = TupleDescAttr(desc, cfg->id_attnum - 1);
	qualname = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
										  RelationGetRelationName(rel));
	idtype = format_type_with_typemod(idatt->atttypid, idatt->atttypmod);

	if (set_sent && cfg->reminder_sent_at_attnum != InvalidAttrNumber)
		sql = psprintf("UPDATE %s AS t SET %s = $2 WHERE t.%s OPERATOR(pg_catalog.=) $1::%s"
					   " RETURNING pg_catalog.to_jsonb(t.*)",
					   qualname,
					   quote_identifier(NameStr(TupleDescAttr(desc, cfg->reminder_sent_at_attnum - 1)->attname)),
					   quote_identifier(NameStr(idatt->attname)), idtype);
	else
		sql = psprintf("SELECT pg_catalog.to_jsonb(t.*) FROM %s AS t"
					   " WHERE t.%s OPERATOR(pg_catalog.=) $1::%s FOR UPDATE NOWAIT",
					   qualname, quote_identifier(NameStr(idatt->attname)), idtype);

	args[0] = PointerGetDatum(PG_GETARG_TEXT_PP(1));
	args[1] = set_sent ? PG_GETARG_DATUM(2) : (Datum) 0;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(rel->rd_rel->relowner,
						   save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	ret = ExecuteTaskStatement(sql, argtypes, args,
							   set_sent ? RelationGetRelid(rel) : InvalidOid);
	SetUserIdAndSecContext(save_userid, save_sec_context);
	if (ret != SPI_OK_SELECT && ret != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "reading task for its reminder failed: %s",
			 SPI_result_code_string(ret));
	if (SPI_processed > 0)
	{
		result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull)
			result = SPI_datumTransfer(result, false, -1);
	}
	SPI_finish();
	table_close(rel, AccessShareLock);

	if (isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}

/*
 * Is an UPDATE of relid the one by which fire_due_reminders() records
 * reminder_sent_at?  The row trigger may skip such an UPDATE entirely: it is
 * bookkeeping, not a change of the task, even when an application BEFORE
 * UPDATE trigger also touched another column (say updated_at).
 */
bool
IsReminderBookkeepingUpdate(Oid relid)
{
	return OidIsValid(relid) && relid == SettingReminderSentAt;
}
