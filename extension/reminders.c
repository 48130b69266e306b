/*-------------------------------------------------------------------------
 *
 * reminders.c
 *	  Keep each task's reminder in step with its due date.
 *
 * taskevents.reminders holds one row per task that ever had a reminder.
 * A task that is not completed and has a due date in the future has a
 * reminder in state 'scheduled' at due - lead (the table's reminder_lead,
 * else taskevents.reminder_lead), or now when that is already past, so it
 * fires at the next firing.  Changing the due date moves it (and writes
 * reminder.scheduled again); clearing the due date, moving it into the
 * past, completing or deleting the task cancels it (reminder.cancelled).
 * A reminder that has fired stays fired when the due date moves, unless the
 * new date needs a new reminder: its due - lead lies after the time the
 * last reminder fired.  firing.c fires them.
 *
 * Every reminder.* payload is built here, by ReminderData(), from the facts
 * of the reminder: the trigger path, the firing and schedule_reminders()
 * all use it.  The bookkeeping statements run as the extension owner
 * through RunAs (util.c); a task's first reminder is inserted without SQL
 * (InsertFirstReminder()).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "taskevents.h"

static SPIPlanPtr SchedulePlan = NULL;
static SPIPlanPtr CancelPlan = NULL;

/* The columns of taskevents.reminders (40_reminders.sql). */
#define REMINDER_NATTS		11
#define Anum_reminder_id	1
#define Anum_task_table		2
#define Anum_task_id		3
#define Anum_user_id		4
#define Anum_due_at			5
#define Anum_remind_at		6
#define Anum_state			7
#define Anum_scheduled_at	8
#define Anum_fired_at		9
#define Anum_cancelled_at	10
#define Anum_error_sqlstate 11

/* the table whose reminder_sent_at fire_due_reminders() is setting, if any */
static Oid	SettingReminderSentAt = InvalidOid;

static void
AddTimestamp(JsonbParseState **state, const char *key, TimestampTz t)
{
	JsonbValue	v;
	char		buf[MAXDATELEN + 1];

	v.type = jbvString;
	v.val.string.val = (char *) key;
	v.val.string.len = strlen(key);
	(void) pushJsonbValue(state, WJB_KEY, &v);
	JsonEncodeDateTime(buf, TimestampTzGetDatum(t), TIMESTAMPTZOID, NULL);
	v.val.string.val = pstrdup(buf);
	v.val.string.len = strlen(buf);
	(void) pushJsonbValue(state, WJB_VALUE, &v);
}

static void
AddString(JsonbParseState **state, const char *key, const char *value)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) key;
	v.val.string.len = strlen(key);
	(void) pushJsonbValue(state, WJB_KEY, &v);
	v.val.string.val = (char *) value;
	v.val.string.len = strlen(value);
	(void) pushJsonbValue(state, WJB_VALUE, &v);
}

static void
AddInt8(JsonbParseState **state, const char *key, int64 value)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) key;
	v.val.string.len = strlen(key);
	(void) pushJsonbValue(state, WJB_KEY, &v);
	v.type = jbvNumeric;
	v.val.numeric = DatumGetNumeric(DirectFunctionCall1(int8_numeric, Int64GetDatum(value)));
	(void) pushJsonbValue(state, WJB_VALUE, &v);
}

/*
 * The data of a reminder.scheduled, reminder.cancelled (reason set) or
 * reminder.triggered (fired set) event: the one place these payloads are
 * built (schemas/reminder.*.schema.json describe them).
 */
Jsonb *
ReminderData(const ReminderFacts *f)
{
	JsonbParseState *state = NULL;
	JsonbValue *result;

	(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	AddInt8(&state, "reminder_id", f->reminder_id);
	AddString(&state, "task_id", f->task_id);
	AddString(&state, "user_id", f->user_id);
	AddTimestamp(&state, "due_date", f->due_at);
	AddTimestamp(&state, "remind_at", f->remind_at);
	if (f->reason)
		AddString(&state, "reason", f->reason);
	if (f->fired)
	{
		AddTimestamp(&state, "fired_at", f->fired_at);
		AddInt8(&state, "notification_id", f->notification_id);
		AddString(&state, "run_id", f->run_id);
	}
	result = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(result);
}

/*
 * Write the reminder event of type about f's task of cfg's table; the
 * partition key is the user the event is about.
 */
void
EmitReminderEvent(TableConfig *cfg, const char *type, const ReminderFacts *f,
				  const char *partition_key)
{
	EmitTableEvent(cfg, TASKEVENTS_REMINDERS_TOPIC, type, f->task_id,
				   partition_key, ReminderData(f));
}

/*
 * The completion and due date of a task row.
 */
static void
ReadDue(TableConfig *cfg, TupleTableSlot *row, ReminderView *v)
{
	Datum		d;

	v->completed = ColumnIsTrue(row, cfg->completed_attnum);
	d = slot_getattr(row, cfg->due_date_attnum, &v->due_null);
	v->due = v->due_null ? 0 : DatumGetTimestampTz(d);
}

/*
 * The key and user id of a task row, as text.
 */
static void
ReadIds(TableConfig *cfg, TupleTableSlot *row, ReminderView *v)
{
	v->task_id = ColumnText(row, cfg->id_attnum);
	v->user_id = ColumnText(row, cfg->user_id_attnum);
}

/*
 * Does column attnum hold the same value (binary equal) in both rows?
 */
static bool
SameColumn(TupleTableSlot *a, TupleTableSlot *b, AttrNumber attnum)
{
	Form_pg_attribute att = TupleDescAttr(a->tts_tupleDescriptor, attnum - 1);
	bool		anull,
				bnull;
	Datum		x = slot_getattr(a, attnum, &anull);
	Datum		y = slot_getattr(b, attnum, &bnull);

	if (anull || bnull)
		return anull == bnull;
	return datumIsEqual(x, y, att->attbyval, att->attlen);
}

/*
 * Run a kept bookkeeping plan as the extension owner and check its result;
 * the caller is connected to SPI.
 */
void
RunBookkeeping(SPIPlanPtr plan, Datum *values, const char *nulls, int expected)
{
	int			ret = RunAs(TaskeventsOwner(), plan, values, nulls, false, 0);

	if (ret != expected)
		elog(ERROR, "updating taskevents.reminders failed: %s",
			 SPI_result_code_string(ret));
}

/*
 * Cancel the scheduled reminder of task v, if there is one, and write
 * reminder.cancelled.
 */
static void
CancelReminder(TableConfig *cfg, Oid relid, ReminderView *v, const char *reason)
{
	Datum		args[2];
	ReminderFacts f;
	HeapTuple	tup;
	TupleDesc	desc;

	KeepOwnerPlan(&CancelPlan,
				  "UPDATE taskevents.reminders r"
				  "   SET state = 'cancelled', cancelled_at = pg_catalog.now()"
				  " WHERE r.task_table OPERATOR(pg_catalog.=) $1::pg_catalog.regclass"
				  "   AND r.task_id OPERATOR(pg_catalog.=) $2"
				  "   AND r.state OPERATOR(pg_catalog.=) 'scheduled'"
				  " RETURNING r.reminder_id, r.user_id, r.due_at, r.remind_at",
				  2, OIDS(OIDOID, TEXTOID), true);
	args[0] = ObjectIdGetDatum(relid);
	args[1] = CStringGetTextDatum(v->task_id);
	RunBookkeeping(CancelPlan, args, NULL, SPI_OK_UPDATE_RETURNING);
	if (SPI_processed == 0)
		return;

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	memset(&f, 0, sizeof(f));
	f.reminder_id = SpiGetInt8(tup, desc, 1);
	f.task_id = v->task_id;
	f.user_id = SPI_getvalue(tup, desc, 2);
	f.due_at = SpiGetTimestamp(tup, desc, 3);
	f.remind_at = SpiGetTimestamp(tup, desc, 4);
	f.reason = reason;
	EmitReminderEvent(cfg, "reminder.cancelled", &f, v->user_id);
}

/*
 * The reminder lead of cfg's table.
 */
static Interval
ReminderLead(TableConfig *cfg)
{
	Interval	lead;

	if (cfg->has_reminder_lead)
		return cfg->reminder_lead;
	memset(&lead, 0, sizeof(lead));
	lead.time = (int64) taskevents_reminder_lead * USECS_PER_SEC;
	return lead;
}

/*
 * Insert the first reminder of task v of relid, remind_at, without SQL, as
 * the outbox and the recurrence claims are written: the reminder most
 * tasks get, when they are inserted with a due date.  Only when the task
 * has no row in taskevents.reminders at all, not even one that a
 * transaction in progress wrote or deleted (a dirty snapshot): otherwise,
 * and when the table is not the one this library knows (another version),
 * it writes nothing and returns false, and the caller's upsert decides.
 * The row is what that upsert would insert; f gets its facts.
 *
 * A transaction that inserts a reminder for the same task after the look
 * (a table without a unique key, two rows with one key inserted at once)
 * is waited for, and if it commits this one fails with 40001
 * (InsertOwnRow()), where the upsert would have updated its row.
 */
static bool
InsertFirstReminder(Oid relid, ReminderView *v, TimestampTz remind_at, ReminderFacts *f)
{
	static const Oid types[REMINDER_NATTS] = {
		INT8OID, REGCLASSOID, TEXTOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID,
		TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TEXTOID
	};
	Oid			nsp = TaskeventsSchema();
	Oid			reloid = get_relname_relid("reminders", nsp);
	Oid			keyidx = get_relname_relid("reminders_task_key", nsp);
	Oid			seq = get_relname_relid("reminders_reminder_id_seq", nsp);
	Relation	rel;
	TupleDesc	desc;
	bool		ok;
	SnapshotData dirty;
	ScanKeyData keys[2];
	SysScanDesc scan;
	Datum		values[REMINDER_NATTS];
	bool		isnull[REMINDER_NATTS];
	HeapTuple	tup;

	if (!OidIsValid(reloid) || !OidIsValid(keyidx) || !OidIsValid(seq) ||
		get_rel_relkind(seq) != RELKIND_SEQUENCE)
		return false;
	rel = table_open(reloid, RowExclusiveLock);
	desc = RelationGetDescr(rel);
	ok = (TableHasLayout(rel, types, REMINDER_NATTS) &&
		  list_member_oid(RelationGetIndexList(rel), keyidx));
	if (ok)
	{
		InitDirtySnapshot(dirty);
		ScanKeyInit(&keys[0], Anum_task_table, BTEqualStrategyNumber, F_OIDEQ,
					ObjectIdGetDatum(relid));
		TextEqualKey(&keys[1], rel, Anum_task_id, v->task_id);
		scan = systable_beginscan(rel, keyidx, true, &dirty, 2, keys);
		ok = !HeapTupleIsValid(systable_getnext(scan));
		systable_endscan(scan);
	}
	if (!ok)
	{
		table_close(rel, NoLock);
		return false;
	}

	memset(isnull, 0, sizeof(isnull));
	values[Anum_reminder_id - 1] = Int64GetDatum(nextval_internal(seq, false));
	values[Anum_task_table - 1] = ObjectIdGetDatum(relid);
	values[Anum_task_id - 1] = CStringGetTextDatum(v->task_id);
	values[Anum_user_id - 1] = CStringGetTextDatum(v->user_id);
	values[Anum_due_at - 1] = TimestampTzGetDatum(v->due);
	values[Anum_remind_at - 1] = TimestampTzGetDatum(remind_at);
	values[Anum_state - 1] = CStringGetTextDatum("scheduled");
	/* the column's default, now() */
	values[Anum_scheduled_at - 1] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	isnull[Anum_fired_at - 1] = isnull[Anum_cancelled_at - 1] = isnull[Anum_error_sqlstate - 1] = true;
	tup = heap_form_tuple(desc, values, isnull);
	InsertOwnRow(rel, tup, "the first reminder of task", v->task_id,
				 "Another transaction scheduled a reminder for a task with the same key at the same time.");
	heap_freetuple(tup);
	table_close(rel, NoLock);	/* the lock is kept until commit */

	memset(f, 0, sizeof(*f));
	f->reminder_id = DatumGetInt64(values[Anum_reminder_id - 1]);
	f->task_id = v->task_id;
	f->user_id = v->user_id;
	f->due_at = v->due;
	f->remind_at = remind_at;
	return true;
}

/*
 * Schedule (or move) the reminder of a task due at v->due in the future,
 * and write reminder.scheduled when anything changed.  Returns whether it
 * did.
 */
bool
ScheduleReminder(TableConfig *cfg, Oid relid, ReminderView *v, TimestampTz now)
{
	Datum		args[6];
	Interval	lead = ReminderLead(cfg);
	TimestampTz wanted;
	ReminderFacts f;
	HeapTuple	tup;
	TupleDesc	desc;

	wanted = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
													 TimestampTzGetDatum(v->due),
													 IntervalPGetDatum(&lead)));

	/* the task's first reminder: no upsert to plan and run */
	if (InsertFirstReminder(relid, v, wanted > now ? wanted : now, &f))
	{
		EmitReminderEvent(cfg, "reminder.scheduled", &f, v->user_id);
		return true;
	}

	/*
	 * $5 is when the reminder fires (never before now), $6 when it should
	 * have fired: a reminder that fired at or after $6 already covers the new
	 * due date.  Every column compared is NOT NULL, so plain equality says
	 * what IS DISTINCT FROM would.
	 */
	KeepOwnerPlan(&SchedulePlan,
				  "INSERT INTO taskevents.reminders AS r"
				  "       (task_table, task_id, user_id, due_at, remind_at)"
				  " VALUES ($1::pg_catalog.regclass, $2, $3, $4, $5)"
				  " ON CONFLICT (task_table, task_id) DO UPDATE"
				  "   SET user_id = excluded.user_id, due_at = excluded.due_at,"
				  "       remind_at = excluded.remind_at, state = 'scheduled',"
				  "       scheduled_at = pg_catalog.now(), cancelled_at = NULL, error_sqlstate = NULL"
				  " WHERE (r.state OPERATOR(pg_catalog.=) 'scheduled'"
				  "        AND NOT (r.due_at OPERATOR(pg_catalog.=) excluded.due_at"
				  "                 AND r.remind_at OPERATOR(pg_catalog.=) excluded.remind_at"
				  "                 AND r.user_id OPERATOR(pg_catalog.=) excluded.user_id))"
				  "    OR (r.state OPERATOR(pg_catalog.<>) 'scheduled'"
				  "        AND (r.fired_at IS NULL OR r.fired_at OPERATOR(pg_catalog.<) $6))"
				  " RETURNING r.reminder_id, r.due_at, r.remind_at",
				  6, OIDS(OIDOID, TEXTOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID),
				  false);
	args[0] = ObjectIdGetDatum(relid);
	args[1] = CStringGetTextDatum(v->task_id);
	args[2] = CStringGetTextDatum(v->user_id);
	args[3] = TimestampTzGetDatum(v->due);
	args[4] = TimestampTzGetDatum(wanted > now ? wanted : now);
	args[5] = TimestampTzGetDatum(wanted);
	RunBookkeeping(SchedulePlan, args, NULL, SPI_OK_INSERT_RETURNING);
	if (SPI_processed == 0)
		return false;

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	memset(&f, 0, sizeof(f));
	f.reminder_id = SpiGetInt8(tup, desc, 1);
	f.task_id = v->task_id;
	f.user_id = v->user_id;
	f.due_at = SpiGetTimestamp(tup, desc, 2);
	f.remind_at = SpiGetTimestamp(tup, desc, 3);
	EmitReminderEvent(cfg, "reminder.scheduled", &f, v->user_id);
	return true;
}

/*
 * Bring the reminder of the row trigdata is about in step with the row.
 * Does nothing (no SPI) unless the key, user, completion or due date
 * changed or the task was inserted or deleted with a due date.
 */
void
UpdateReminder(TableConfig *cfg, TriggerData *trigdata, TaskEventKind kind)
{
	Relation	rel = trigdata->tg_relation;
	Oid			relid = RelationGetRelid(rel);
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	TupleTableSlot *newrow = kind == TASK_EVENT_CREATED ? trigdata->tg_trigslot :
		trigdata->tg_newslot;
	ReminderView oldv,
				newv;
	bool		has_old = false,
				has_new = false;
	bool		old_active,
				new_wanted;

	if (cfg->due_date_attnum == InvalidAttrNumber)
		return;

	if (kind == TASK_EVENT_CREATED)
		has_new = true;
	else if (kind == TASK_EVENT_DELETED)
		has_old = true;
	else
		has_old = has_new = true;

	/*
	 * The cheap facts first (completion, due date): most writes of a task
	 * with no due date, or of a completed one, end here without rendering any
	 * value as text.
	 */
	if (has_old)
		ReadDue(cfg, trigdata->tg_trigslot, &oldv);
	if (has_new)
		ReadDue(cfg, newrow, &newv);

	/* only a task that is not completed and has a due date has a reminder */
	old_active = has_old && !oldv.completed && !oldv.due_null;
	new_wanted = has_new && !newv.completed && !newv.due_null && newv.due > now;
	if (!old_active && !new_wanted)
		return;
	if (has_old && has_new &&
		oldv.completed == newv.completed &&
		oldv.due_null == newv.due_null &&
		(oldv.due_null || oldv.due == newv.due) &&
		SameColumn(trigdata->tg_trigslot, newrow, cfg->id_attnum) &&
		SameColumn(trigdata->tg_trigslot, newrow, cfg->user_id_attnum))
		return;					/* nothing a reminder depends on changed */

	if (has_old)
		ReadIds(cfg, trigdata->tg_trigslot, &oldv);
	if (has_new)
		ReadIds(cfg, newrow, &newv);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	if (old_active && (!new_wanted || strcmp(oldv.task_id, newv.task_id) != 0))
	{
		const char *reason;

		if (!has_new)
			reason = "deleted";
		else if (strcmp(oldv.task_id, newv.task_id) != 0)
			reason = "task_id_changed";
		else if (newv.completed)
			reason = "completed";
		else if (newv.due_null)
			reason = "due_date_cleared";
		else
			reason = "due_date_past";
		CancelReminder(cfg, relid, &oldv, reason);
	}
	if (new_wanted)
		(void) ScheduleReminder(cfg, relid, &newv, now);

	SPI_finish();
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

/*
 * Say that the UPDATE about to run on relid (InvalidOid: none) is the one by
 * which fire_due_reminders() records reminder_sent_at.
 */
void
SetReminderBookkeeping(Oid relid)
{
	SettingReminderSentAt = relid;
}

/*
 * taskevents.schedule_reminders(task_table regclass) RETURNS integer
 *
 * Schedule reminders for the tasks of an attached table that have none yet
 * (not completed, due in the future): for a table that already held tasks
 * when it was attached; from then on the row trigger keeps reminders in
 * step.  Writes reminder.scheduled for each and returns how many.  Running
 * it again schedules nothing twice.  The caller must own the table; the
 * tasks are read as the caller.
 */
PG_FUNCTION_INFO_V1(schedule_reminders);
Datum
schedule_reminders(PG_FUNCTION_ARGS)
{
	Oid			relid;
	Relation	rel;
	TableConfig *cfg;
	TupleDesc	desc;
	char	   *sql;
	int			ret;
	uint64		i;
	int			n = 0;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	SPITupleTable *tasks;
	uint64		ntasks;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("task_table must not be null")));
	relid = PG_GETARG_OID(0);
	rel = table_open(relid, AccessShareLock);
	cfg = LookupTableConfig(rel);
	if (cfg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table %s is not attached",
						quote_identifier(RelationGetRelationName(rel)))));
	if (!has_privs_of_role(GetUserId(), rel->rd_rel->relowner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of table %s", RelationGetRelationName(rel))));
	if (cfg->due_date_attnum == InvalidAttrNumber)
	{
		table_close(rel, AccessShareLock);
		PG_RETURN_INT32(0);
	}
	desc = RelationGetDescr(rel);
	sql = psprintf("SELECT t.%s, t.%s, t.%s, t.%s FROM ONLY %s t WHERE t.%s OPERATOR(pg_catalog.>) $1",
				   quote_identifier(NameStr(TupleDescAttr(desc, cfg->id_attnum - 1)->attname)),
				   quote_identifier(NameStr(TupleDescAttr(desc, cfg->user_id_attnum - 1)->attname)),
				   quote_identifier(NameStr(TupleDescAttr(desc, cfg->completed_attnum - 1)->attname)),
				   quote_identifier(NameStr(TupleDescAttr(desc, cfg->due_date_attnum - 1)->attname)),
				   quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
											  RelationGetRelationName(rel)),
				   quote_identifier(NameStr(TupleDescAttr(desc, cfg->due_date_attnum - 1)->attname)));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	{
		Oid			argtypes[1] = {TIMESTAMPTZOID};
		Datum		args[1] = {TimestampTzGetDatum(now)};

		ret = RunSqlAs(GetUserId(), sql, 1, argtypes, args, NULL, true, 0);
	}
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading %s failed: %s", RelationGetRelationName(rel),
			 SPI_result_code_string(ret));
	tasks = SPI_tuptable;
	ntasks = SPI_processed;
	for (i = 0; i < ntasks; i++)
	{
		HeapTuple	tup = tasks->vals[i];
		ReminderView v;
		bool		isnull;
		Datum		d;

		v.task_id = SPI_getvalue(tup, tasks->tupdesc, 1);
		v.user_id = SPI_getvalue(tup, tasks->tupdesc, 2);
		d = SPI_getbinval(tup, tasks->tupdesc, 3, &isnull);
		v.completed = !isnull && DatumGetBool(d);
		d = SPI_getbinval(tup, tasks->tupdesc, 4, &v.due_null);
		v.due = v.due_null ? 0 : DatumGetTimestampTz(d);
		if (v.completed || v.due_null || v.user_id == NULL || v.task_id == NULL)
			continue;
		if (ScheduleReminder(cfg, relid, &v, now))
			n++;
	}
	SPI_finish();
	table_close(rel, AccessShareLock);
	PG_RETURN_INT32(n);
}

/*
 * taskevents._reminders_topic() RETURNS text
 *
 * The topic of the reminder.* events, for the SQL that needs it.
 */
PG_FUNCTION_INFO_V1(reminders_topic);
Datum
reminders_topic(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(TASKEVENTS_REMINDERS_TOPIC));
}
