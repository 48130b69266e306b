/*-------------------------------------------------------------------------
 *
 * reminders.c
 *	  Due-date reminders: kept in step with each task, and fired.
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
 * last reminder fired.
 *
 * taskevents.fire_due_reminders() fires the due ones, a table at a time
 * with a few set-based statements (see FireGroup), and falls back to one
 * reminder at a time in subtransactions when something in a table's batch
 * fails, so that one bad row is logged and skipped.  A reminder fires only
 * while its task is not yet due: one whose task's due date has passed by
 * the time it would fire (the relay was down, say) is cancelled with
 * reason "overdue", as the seed's reminder worker never reminded overdue
 * tasks.
 *
 * Every reminder.* payload is built here, by ReminderData(), from the facts
 * of the reminder: the trigger path, the firing and schedule_reminders()
 * all use it.  Bookkeeping statements run as the extension owner and the
 * statements on the task table as the table's owner, through RunAs
 * (util.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"
#include "utils/uuid.h"

#include "taskevents.h"

static SPIPlanPtr SchedulePlan = NULL;
static SPIPlanPtr CancelPlan = NULL;
static SPIPlanPtr DuePlan = NULL;
static SPIPlanPtr SetStatePlan = NULL;
static SPIPlanPtr FailPlan = NULL;
static SPIPlanPtr NotifyPlan = NULL;
static SPIPlanPtr LogPlan = NULL;

/* the table whose reminder_sent_at fire_due_reminders() is setting, if any */
static Oid	SettingReminderSentAt = InvalidOid;

/*
 * The facts of one reminder event; ReminderData() turns them into the
 * event's data.
 */
typedef struct ReminderFacts
{
	int64		reminder_id;
	const char *task_id;
	const char *user_id;
	TimestampTz due_at;
	TimestampTz remind_at;
	const char *reason;			/* reminder.cancelled only */
	bool		fired;			/* reminder.triggered: the three below */
	TimestampTz fired_at;
	int64		notification_id;
	const char *run_id;
} ReminderFacts;

/*
 * The state of one version of a task row that matters for its reminder.
 */
typedef struct ReminderView
{
	char	   *task_id;
	char	   *user_id;
	bool		completed;
	bool		due_null;
	TimestampTz due;
} ReminderView;

/*
 * One due reminder claimed by fire_due_reminders(), and what became of it.
 */
typedef enum DueOutcome
{
	DUE_PENDING,				/* not decided yet */
	DUE_FIRED,
	DUE_CANCELLED,				/* with an event; reason says why */
	DUE_DROPPED,				/* its table was detached: no event */
	DUE_BUSY,					/* its task row is locked: next run */
	DUE_FAILED
} DueOutcome;

typedef struct DueReminder
{
	int64		reminder_id;
	Oid			relid;
	char	   *task_id;
	char	   *user_id;
	TimestampTz due_at;
	TimestampTz remind_at;
	bool		grouped;		/* taken into a table's group */
	/* filled in by FireGroup */
	DueOutcome	outcome;
	const char *reason;
	char	   *title;
	TimestampTz due;			/* the task's due date, else due_at */
	int64		notification_id;
} DueReminder;

/* Counts of one firing run (FireDueReminders). */
typedef struct FireCounts
{
	int			fired;
	int			failed;
	int			busy;
	int			cancelled;
} FireCounts;

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
static Jsonb *
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
static void
EmitReminderEvent(TableConfig *cfg, const char *type, const ReminderFacts *f,
				  const char *partition_key)
{
	EmitScheduleEvent(cfg, type, f->task_id, partition_key, ReminderData(f));
}

static int64
GetInt8(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	return isnull ? 0 : DatumGetInt64(d);
}

static TimestampTz
GetTimestamp(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	return isnull ? 0 : DatumGetTimestampTz(d);
}

static void
ReadView(TableConfig *cfg, TupleDesc desc, HeapTuple tup, ReminderView *v)
{
	Datum		d;

	v->task_id = ColumnText(tup, desc, cfg->id_attnum);
	v->user_id = ColumnText(tup, desc, cfg->user_id_attnum);
	v->completed = ColumnIsTrue(tup, desc, cfg->completed_attnum);
	d = heap_getattr(tup, cfg->due_date_attnum, desc, &v->due_null);
	v->due = v->due_null ? 0 : DatumGetTimestampTz(d);
}

/*
 * Run a kept bookkeeping plan as the extension owner and check its result;
 * the caller is connected to SPI.
 */
static void
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

	if (CancelPlan == NULL)
	{
		Oid			argtypes[2] = {OIDOID, TEXTOID};

		CancelPlan = PrepareAs(TaskeventsOwner(),
							   "UPDATE taskevents.reminders r"
							   "   SET state = 'cancelled', cancelled_at = pg_catalog.now()"
							   " WHERE r.task_table OPERATOR(pg_catalog.=) $1::pg_catalog.regclass"
							   "   AND r.task_id OPERATOR(pg_catalog.=) $2"
							   "   AND r.state OPERATOR(pg_catalog.=) 'scheduled'"
							   " RETURNING r.reminder_id, r.user_id, r.due_at, r.remind_at",
							   2, argtypes, true);
	}
	args[0] = ObjectIdGetDatum(relid);
	args[1] = CStringGetTextDatum(v->task_id);
	RunBookkeeping(CancelPlan, args, NULL, SPI_OK_UPDATE_RETURNING);
	if (SPI_processed == 0)
		return;

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	memset(&f, 0, sizeof(f));
	f.reminder_id = GetInt8(tup, desc, 1);
	f.task_id = v->task_id;
	f.user_id = SPI_getvalue(tup, desc, 2);
	f.due_at = GetTimestamp(tup, desc, 3);
	f.remind_at = GetTimestamp(tup, desc, 4);
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
 * Schedule (or move) the reminder of a task due at v->due in the future,
 * and write reminder.scheduled when anything changed.  Returns whether it
 * did.
 */
static bool
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

	if (SchedulePlan == NULL)
	{
		Oid			argtypes[6] = {OIDOID, TEXTOID, TEXTOID, TIMESTAMPTZOID,
		TIMESTAMPTZOID, TIMESTAMPTZOID};

		/*
		 * $5 is when the reminder fires (never before now), $6 when it
		 * should have fired: a reminder that fired at or after $6 already
		 * covers the new due date.  Every column compared is NOT NULL, so
		 * plain equality says what IS DISTINCT FROM would.
		 */
		SchedulePlan = PrepareAs(TaskeventsOwner(),
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
								 6, argtypes, false);
	}
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
	f.reminder_id = GetInt8(tup, desc, 1);
	f.task_id = v->task_id;
	f.user_id = v->user_id;
	f.due_at = GetTimestamp(tup, desc, 2);
	f.remind_at = GetTimestamp(tup, desc, 3);
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
	TupleDesc	desc = RelationGetDescr(rel);
	Oid			relid = RelationGetRelid(rel);
	TimestampTz now = GetCurrentTransactionStartTimestamp();
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

	if (has_old)
		ReadView(cfg, desc, trigdata->tg_trigtuple, &oldv);
	if (has_new)
		ReadView(cfg, desc, kind == TASK_EVENT_CREATED ? trigdata->tg_trigtuple :
				 trigdata->tg_newtuple, &newv);

	/* only a task that is not completed and has a due date has a reminder */
	old_active = has_old && !oldv.completed && !oldv.due_null;
	new_wanted = has_new && !newv.completed && !newv.due_null && newv.due > now;

	if (has_old && has_new &&
		strcmp(oldv.task_id, newv.task_id) == 0 &&
		(oldv.user_id == NULL) == (newv.user_id == NULL) &&
		(oldv.user_id == NULL || strcmp(oldv.user_id, newv.user_id) == 0) &&
		oldv.completed == newv.completed &&
		oldv.due_null == newv.due_null &&
		(oldv.due_null || oldv.due == newv.due))
		return;					/* nothing a reminder depends on changed */
	if (!old_active && !new_wanted)
		return;

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
 * The qualified name of the equality operator of type typid, for SQL text:
 * OPERATOR(schema.=), whatever the caller's search_path.
 */
static char *
EqualityOperator(Oid typid)
{
	TypeCacheEntry *tce = lookup_type_cache(typid, TYPECACHE_EQ_OPR);
	HeapTuple	tup;
	Form_pg_operator op;
	char	   *result;

	if (!OidIsValid(tce->eq_opr))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("could not identify an equality operator for type %s",
						format_type_be(typid))));
	tup = SearchSysCache1(OPEROID, ObjectIdGetDatum(tce->eq_opr));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for operator %u", tce->eq_opr);
	op = (Form_pg_operator) GETSTRUCT(tup);
	result = psprintf("OPERATOR(%s.%s)",
					  quote_identifier(get_namespace_name(op->oprnamespace)),
					  NameStr(op->oprname));
	ReleaseSysCache(tup);
	return result;
}

/*
 * The statements FireGroup runs on one task table, as its owner.
 */
typedef struct TaskTableSql
{
	Oid			idtype;
	Oid			idarraytype;
	char	   *lock;			/* lockable rows among $1 (id array) */
	char	   *exists;			/* rows among $1, locked or not */
	char	   *set_sent;		/* reminder_sent_at = $2 for $1, or NULL */
	int			title_col;		/* 0: the table has no "title" */
} TaskTableSql;

static void
BuildTaskTableSql(Relation rel, TableConfig *cfg, TaskTableSql *ts)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Form_pg_attribute idatt = TupleDescAttr(desc, cfg->id_attnum - 1);
	char	   *qualname = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
													  RelationGetRelationName(rel));
	const char *id = quote_identifier(NameStr(idatt->attname));
	char	   *eq = EqualityOperator(idatt->atttypid);
	AttrNumber	title = get_attnum(RelationGetRelid(rel), "title");
	char	   *title_expr = "NULL::pg_catalog.text";

	ts->idtype = idatt->atttypid;
	ts->idarraytype = get_array_type(idatt->atttypid);
	if (!OidIsValid(ts->idarraytype))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("key column \"%s\" of \"%s\" has a type without an array type",
						NameStr(idatt->attname), RelationGetRelationName(rel))));
	if (title != InvalidAttrNumber)
		title_expr = psprintf("t.%s", quote_identifier("title"));
	ts->lock = psprintf("SELECT t.%s, t.%s, t.%s, %s FROM ONLY %s t"
						" WHERE t.%s %s ANY ($1) FOR UPDATE OF t SKIP LOCKED",
						id,
						quote_identifier(NameStr(TupleDescAttr(desc, cfg->completed_attnum - 1)->attname)),
						quote_identifier(NameStr(TupleDescAttr(desc, cfg->due_date_attnum - 1)->attname)),
						title_expr, qualname, id, eq);
	ts->exists = psprintf("SELECT t.%s FROM ONLY %s t WHERE t.%s %s ANY ($1)",
						  id, qualname, id, eq);
	ts->set_sent = NULL;
	if (cfg->reminder_sent_at_attnum != InvalidAttrNumber)
		ts->set_sent = psprintf("UPDATE ONLY %s t SET %s = $2 WHERE t.%s %s ANY ($1)",
								qualname,
								quote_identifier(NameStr(TupleDescAttr(desc, cfg->reminder_sent_at_attnum - 1)->attname)),
								id, eq);
}

/*
 * The array of the keys of reminders r[0..n-1] as the key column's type.
 */
static Datum
KeyArray(TaskTableSql *ts, DueReminder **r, int n)
{
	Oid			typinput;
	Oid			typioparam;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	Datum	   *elems = palloc(sizeof(Datum) * n);
	int			i;

	getTypeInputInfo(ts->idtype, &typinput, &typioparam);
	get_typlenbyvalalign(ts->idtype, &typlen, &typbyval, &typalign);
	for (i = 0; i < n; i++)
		elems[i] = OidInputFunctionCall(typinput, r[i]->task_id, typioparam, -1);
	return PointerGetDatum(construct_array(elems, n, ts->idtype, typlen, typbyval, typalign));
}

static DueReminder *
FindByTaskId(DueReminder **r, int n, const char *task_id)
{
	int			i;

	for (i = 0; i < n; i++)
		if (r[i]->outcome == DUE_PENDING && strcmp(r[i]->task_id, task_id) == 0)
			return r[i];
	return NULL;
}

static Datum
TextArray(DueReminder **r, int n, int field)
{
	Datum	   *elems = palloc(sizeof(Datum) * n);
	bool	   *nulls = palloc(sizeof(bool) * n);
	int			dims[1] = {n};
	int			lbs[1] = {1};
	int			i;

	for (i = 0; i < n; i++)
	{
		const char *s = field == 0 ? r[i]->user_id : field == 1 ? r[i]->task_id : r[i]->title;

		nulls[i] = (s == NULL);
		elems[i] = s ? CStringGetTextDatum(s) : (Datum) 0;
	}
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs,
											  TEXTOID, -1, false, TYPALIGN_INT));
}

static Datum
Int8Array(DueReminder **r, int n)
{
	Datum	   *elems = palloc(sizeof(Datum) * n);
	int			i;

	for (i = 0; i < n; i++)
		elems[i] = Int64GetDatum(r[i]->reminder_id);
	return PointerGetDatum(construct_array(elems, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

static Datum
TimestampArray(DueReminder **r, int n)
{
	Datum	   *elems = palloc(sizeof(Datum) * n);
	int			i;

	for (i = 0; i < n; i++)
		elems[i] = TimestampTzGetDatum(r[i]->due);
	return PointerGetDatum(construct_array(elems, n, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/*
 * Set the state of reminders r[0..n-1] whose outcome is outcome: 'fired'
 * or 'cancelled', with the matching timestamp.
 */
static void
SetState(DueReminder **r, int n, DueOutcome outcome)
{
	DueReminder **sel = palloc(sizeof(DueReminder *) * n);
	int			k = 0;
	int			i;
	Datum		args[2];

	for (i = 0; i < n; i++)
		if (r[i]->outcome == outcome ||
			(outcome == DUE_CANCELLED && r[i]->outcome == DUE_DROPPED))
			sel[k++] = r[i];
	if (k == 0)
		return;
	if (SetStatePlan == NULL)
	{
		Oid			argtypes[2] = {INT8ARRAYOID, BOOLOID};

		SetStatePlan = PrepareAs(TaskeventsOwner(),
								 "UPDATE taskevents.reminders m"
								 "   SET state = CASE WHEN $2 THEN 'fired' ELSE 'cancelled' END,"
								 "       fired_at = CASE WHEN $2 THEN pg_catalog.now() ELSE m.fired_at END,"
								 "       cancelled_at = CASE WHEN $2 THEN m.cancelled_at ELSE pg_catalog.now() END"
								 " WHERE m.reminder_id OPERATOR(pg_catalog.=) ANY ($1)",
								 2, argtypes, false);
	}
	args[0] = Int8Array(sel, k);
	args[1] = BoolGetDatum(outcome == DUE_FIRED);
	RunBookkeeping(SetStatePlan, args, NULL, SPI_OK_UPDATE);
}

/*
 * Fire the pending reminders r[0..n-1], all of one task table rel, with a
 * few set-based statements: lock the tasks (a task locked by a writer
 * leaves its reminder for the next run), decide for each reminder, set
 * reminder_sent_at on the table, write the notifications and the log, and
 * mark the reminders.  Events are written by the caller, in firing order,
 * from what this records in r.  An error leaves r undecided for the caller
 * to retry one at a time.
 */
static void
FireGroup(Relation rel, TableConfig *cfg, TaskTableSql *ts, DueReminder **r,
		  int n, const char *run_id, TimestampTz now)
{
	Oid			owner = rel->rd_rel->relowner;
	Oid			argtypes[2];
	Datum		args[6];
	int			ret;
	uint64		i;
	int			j;
	int			nfire = 0;
	DueReminder **fire;

	for (j = 0; j < n; j++)
		r[j]->outcome = DUE_PENDING;

	/* the tasks we can lock, as the table's owner */
	argtypes[0] = ts->idarraytype;
	args[0] = KeyArray(ts, r, n);
	ret = RunSqlAs(owner, ts->lock, 1, argtypes, args, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "locking tasks for their reminders failed: %s",
			 SPI_result_code_string(ret));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *task_id = SPI_getvalue(tup, desc, 1);
		DueReminder *d = FindByTaskId(r, n, task_id);
		bool		isnull;
		Datum		v;

		if (d == NULL)
			continue;
		v = SPI_getbinval(tup, desc, 2, &isnull);
		if (!isnull && DatumGetBool(v))
		{
			d->outcome = DUE_CANCELLED;
			d->reason = "completed";
			continue;
		}
		v = SPI_getbinval(tup, desc, 3, &isnull);
		d->due = isnull ? d->due_at : DatumGetTimestampTz(v);
		if (d->due <= now)
		{
			d->outcome = DUE_CANCELLED;
			d->reason = "overdue";
			continue;
		}
		d->title = SPI_getvalue(tup, desc, 4);
		d->outcome = DUE_FIRED;
	}

	/* the rest: locked by a writer (busy), or gone */
	for (j = 0; j < n; j++)
		if (r[j]->outcome == DUE_PENDING)
			break;
	if (j < n)
	{
		ret = RunSqlAs(owner, ts->exists, 1, argtypes, args, NULL, true, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "reading tasks for their reminders failed: %s",
				 SPI_result_code_string(ret));
		for (i = 0; i < SPI_processed; i++)
		{
			char	   *task_id = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
			DueReminder *d = FindByTaskId(r, n, task_id);

			if (d != NULL)
				d->outcome = DUE_BUSY;
		}
		for (j = 0; j < n; j++)
			if (r[j]->outcome == DUE_PENDING)
			{
				r[j]->outcome = DUE_CANCELLED;
				r[j]->reason = "task_missing";
			}
	}

	fire = palloc(sizeof(DueReminder *) * n);
	for (j = 0; j < n; j++)
		if (r[j]->outcome == DUE_FIRED)
			fire[nfire++] = r[j];

	if (nfire > 0)
	{
		/* reminder_sent_at, as the table's owner (not a task.updated) */
		if (ts->set_sent != NULL)
		{
			argtypes[1] = TIMESTAMPTZOID;
			args[0] = KeyArray(ts, fire, nfire);
			args[1] = TimestampTzGetDatum(now);
			SettingReminderSentAt = RelationGetRelid(rel);
			PG_TRY();
			{
				ret = RunSqlAs(owner, ts->set_sent, 2, argtypes, args, NULL, false, 0);
			}
			PG_FINALLY();
			{
				SettingReminderSentAt = InvalidOid;
			}
			PG_END_TRY();
			if (ret != SPI_OK_UPDATE)
				elog(ERROR, "setting reminder_sent_at failed: %s",
					 SPI_result_code_string(ret));
		}

		/* notifications, then the log, as the extension owner */
		if (NotifyPlan == NULL)
		{
			Oid			types[6] = {OIDOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
			TIMESTAMPTZARRAYOID, INT8ARRAYOID};

			NotifyPlan = PrepareAs(TaskeventsOwner(),
								   "INSERT INTO taskevents.notifications"
								   "       (user_id, task_table, task_id, kind, title, due_date, reminder_id)"
								   " SELECT u.user_id, $1::pg_catalog.regclass, u.task_id, 'reminder', u.title,"
								   "        u.due, u.reminder_id"
								   "   FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3), pg_catalog.unnest($4),"
								   "                   pg_catalog.unnest($5), pg_catalog.unnest($6))"
								   "        WITH ORDINALITY AS u(user_id, task_id, title, due, reminder_id, n)"
								   "  ORDER BY u.n"
								   " RETURNING reminder_id, notification_id",
								   6, types, false);
		}
		args[0] = ObjectIdGetDatum(RelationGetRelid(rel));
		args[1] = TextArray(fire, nfire, 0);
		args[2] = TextArray(fire, nfire, 1);
		args[3] = TextArray(fire, nfire, 2);
		args[4] = TimestampArray(fire, nfire);
		args[5] = Int8Array(fire, nfire);
		RunBookkeeping(NotifyPlan, args, NULL, SPI_OK_INSERT_RETURNING);
		for (i = 0; i < SPI_processed; i++)
		{
			int64		reminder_id = GetInt8(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);

			for (j = 0; j < nfire; j++)
				if (fire[j]->reminder_id == reminder_id)
					fire[j]->notification_id = GetInt8(SPI_tuptable->vals[i],
													   SPI_tuptable->tupdesc, 2);
		}

		if (LogPlan == NULL)
		{
			Oid			types[6] = {OIDOID, TEXTARRAYOID, TEXTARRAYOID,
			TIMESTAMPTZARRAYOID, INT8ARRAYOID, UUIDOID};

			LogPlan = PrepareAs(TaskeventsOwner(),
								"INSERT INTO taskevents.reminder_log"
								"       (reminder_id, task_table, task_id, user_id, due_at, run_id)"
								" SELECT u.reminder_id, $1::pg_catalog.regclass, u.task_id, u.user_id, u.due, $6"
								"   FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3), pg_catalog.unnest($4),"
								"                   pg_catalog.unnest($5))"
								"        WITH ORDINALITY AS u(user_id, task_id, due, reminder_id, n)"
								"  ORDER BY u.n",
								6, types, false);
		}
		args[3] = args[4];
		args[4] = args[5];
		args[5] = DirectFunctionCall1(uuid_in, CStringGetDatum(run_id));
		RunBookkeeping(LogPlan, args, NULL, SPI_OK_INSERT);
	}

	SetState(r, n, DUE_FIRED);
	SetState(r, n, DUE_CANCELLED);
}

/*
 * Mark one reminder failed with its SQLSTATE; logged with the task id and
 * SQLSTATE only (an error message may quote row data).
 */
static void
MarkFailed(DueReminder *d, int sqlerrcode)
{
	Datum		args[2];

	if (FailPlan == NULL)
	{
		Oid			argtypes[2] = {INT8OID, TEXTOID};

		FailPlan = PrepareAs(TaskeventsOwner(),
							 "UPDATE taskevents.reminders m SET state = 'failed', error_sqlstate = $2"
							 " WHERE m.reminder_id OPERATOR(pg_catalog.=) $1",
							 2, argtypes, false);
	}
	args[0] = Int64GetDatum(d->reminder_id);
	args[1] = CStringGetTextDatum(unpack_sql_state(sqlerrcode));
	RunBookkeeping(FailPlan, args, NULL, SPI_OK_UPDATE);
	d->outcome = DUE_FAILED;
	ereport(WARNING,
			(errmsg("taskevents: reminder of task %s in %s failed with SQLSTATE %s, skipped",
					d->task_id,
					quote_qualified_identifier(get_namespace_name(get_rel_namespace(d->relid)),
											   get_rel_name(d->relid)),
					unpack_sql_state(sqlerrcode)),
			 errhint("The reminder is marked failed in taskevents.reminders; changing the task's due date schedules it again.")));
}

/*
 * Run FireGroup in a subtransaction; on an error roll it back, leave the
 * reminders undecided and return the error code (0 on success).
 */
static int
TryFireGroup(Relation rel, TableConfig *cfg, TaskTableSql *ts, DueReminder **r,
			 int n, const char *run_id, TimestampTz now)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	volatile int code = 0;
	int			j;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	PG_TRY();
	{
		FireGroup(rel, cfg, ts, r, n, run_id, now);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
		/* a cancel or a timeout ends the run, as in PL/pgSQL */
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
			ReThrowError(edata);
		code = edata->sqlerrcode;
		FreeErrorData(edata);
		for (j = 0; j < n; j++)
			r[j]->outcome = DUE_PENDING;
	}
	PG_END_TRY();
	return code;
}

/*
 * Fire the reminders due at as_of (at most limit of them, earliest first);
 * see the file header.  Counts go to *counts.  The caller is connected to
 * SPI.
 */
static void
FireDueReminders(TimestampTz as_of, int limit, FireCounts *counts)
{
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	DueReminder *due;
	int			ndue;
	int			i;
	int			start;
	Datum		args[2];
	int			ret;
	pg_uuid_t	run_uuid;
	char	   *run_id;
	Relation	rel = NULL;
	TableConfig *cfg = NULL;

	memset(counts, 0, sizeof(*counts));

	if (DuePlan == NULL)
	{
		Oid			argtypes[2] = {TIMESTAMPTZOID, INT4OID};

		DuePlan = PrepareAs(TaskeventsOwner(),
							"SELECT m.reminder_id, m.task_table::pg_catalog.oid, m.task_id, m.user_id,"
							"       m.due_at, m.remind_at"
							"  FROM taskevents.reminders m"
							" WHERE m.state OPERATOR(pg_catalog.=) 'scheduled'"
							"   AND m.remind_at OPERATOR(pg_catalog.<=) $1"
							" ORDER BY m.remind_at, m.reminder_id"
							" LIMIT $2"
							"   FOR UPDATE OF m SKIP LOCKED",
							2, argtypes, true);
	}
	args[0] = TimestampTzGetDatum(as_of);
	args[1] = Int32GetDatum(limit);
	ret = RunAs(TaskeventsOwner(), DuePlan, args, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading taskevents.reminders failed: %s", SPI_result_code_string(ret));
	ndue = (int) SPI_processed;
	if (ndue == 0)
		return;

	due = palloc0(sizeof(DueReminder) * ndue);
	for (i = 0; i < ndue; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		due[i].reminder_id = GetInt8(tup, desc, 1);
		due[i].relid = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
		due[i].task_id = SPI_getvalue(tup, desc, 3);
		due[i].user_id = SPI_getvalue(tup, desc, 4);
		due[i].due_at = GetTimestamp(tup, desc, 5);
		due[i].remind_at = GetTimestamp(tup, desc, 6);
		due[i].due = due[i].due_at;
	}

	GenerateUuidV7(&run_uuid);
	run_id = DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&run_uuid)));

	/* a table at a time, in the order of each table's first due reminder */
	for (start = 0; start < ndue; start++)
	{
		Oid			relid = due[start].relid;
		DueReminder **group;
		int			n = 0;
		TaskTableSql ts;
		int			code;

		if (due[start].grouped)
			continue;
		group = palloc(sizeof(DueReminder *) * ndue);
		for (i = start; i < ndue; i++)
			if (due[i].relid == relid)
			{
				group[n++] = &due[i];
				due[i].grouped = true;
			}

		rel = try_table_open(relid, AccessShareLock);
		cfg = rel ? LookupTableConfig(rel) : NULL;
		if (cfg == NULL || cfg->due_date_attnum == InvalidAttrNumber)
		{
			/* the table was dropped or detached: nobody is left to remind */
			for (i = 0; i < n; i++)
				group[i]->outcome = DUE_DROPPED;
			SetState(group, n, DUE_CANCELLED);
			if (rel)
				table_close(rel, AccessShareLock);
			continue;
		}

		BuildTaskTableSql(rel, cfg, &ts);
		code = TryFireGroup(rel, cfg, &ts, group, n, run_id, now);
		if (code != 0)
		{
			/* one at a time, so that only the bad ones fail */
			for (i = 0; i < n; i++)
			{
				code = TryFireGroup(rel, cfg, &ts, &group[i], 1, run_id, now);
				if (code != 0)
					MarkFailed(group[i], code);
			}
		}
		table_close(rel, AccessShareLock);
	}
	rel = NULL;

	/* the events, in firing order */
	for (i = 0; i < ndue; i++)
	{
		DueReminder *d = &due[i];
		ReminderFacts f;

		if (d->outcome == DUE_BUSY)
			counts->busy++;
		else if (d->outcome == DUE_FAILED)
			counts->failed++;
		else if (d->outcome == DUE_DROPPED)
			counts->cancelled++;
		if (d->outcome != DUE_FIRED && d->outcome != DUE_CANCELLED)
			continue;

		if (rel == NULL || RelationGetRelid(rel) != d->relid)
		{
			if (rel != NULL)
				table_close(rel, AccessShareLock);
			rel = table_open(d->relid, AccessShareLock);
			cfg = GetTableConfig(rel);
		}
		memset(&f, 0, sizeof(f));
		f.reminder_id = d->reminder_id;
		f.task_id = d->task_id;
		f.user_id = d->user_id;
		f.due_at = d->due_at;
		f.remind_at = d->remind_at;
		if (d->outcome == DUE_FIRED)
		{
			f.due_at = d->due;
			f.fired = true;
			f.fired_at = now;
			f.notification_id = d->notification_id;
			f.run_id = run_id;
			EmitReminderEvent(cfg, "reminder.triggered", &f, d->user_id);
			counts->fired++;
		}
		else
		{
			f.reason = d->reason;
			EmitReminderEvent(cfg, "reminder.cancelled", &f, d->user_id);
			counts->cancelled++;
		}
	}
	if (rel != NULL)
		table_close(rel, AccessShareLock);

	if (counts->fired + counts->failed + counts->busy + counts->cancelled > 0)
		ereport(LOG,
				(errmsg("taskevents: fire_due_reminders: %d fired, %d failed, %d busy, %d cancelled",
						counts->fired, counts->failed, counts->busy, counts->cancelled)));
}

/*
 * taskevents.fire_due_reminders(as_of timestamptz DEFAULT now(),
 *								 batch_limit integer DEFAULT 1000)
 *		RETURNS integer
 *
 * Fire the reminders due at as_of and return how many fired.  Firing ahead
 * of time (as_of later than now()) is for the extension owner and
 * superusers only: a role that may fire reminders (the relay's) must not
 * be able to fire them all early.
 */
PG_FUNCTION_INFO_V1(fire_due_reminders);
Datum
fire_due_reminders(PG_FUNCTION_ARGS)
{
	TimestampTz as_of;
	int			limit;
	FireCounts	counts;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_GETARG_INT32(1) < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("as_of must not be null and batch_limit must be positive")));
	as_of = PG_GETARG_TIMESTAMPTZ(0);
	limit = PG_GETARG_INT32(1);
	if (as_of > GetCurrentTransactionStartTimestamp() &&
		!has_privs_of_role(GetUserId(), TaskeventsOwner()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to fire reminders ahead of time"),
				 errdetail("as_of lies after now(); only the extension owner may fire reminders early."),
				 errhint("Call fire_due_reminders() without as_of.")));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	FireDueReminders(as_of, limit, &counts);
	SPI_finish();
	PG_RETURN_INT32(counts.fired);
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
