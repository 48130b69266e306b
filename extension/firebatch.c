/*-------------------------------------------------------------------------
 *
 * firebatch.c
 *	  Fire the due reminders of one task table with set-based statements.
 *
 * FireGroup() is one step of a fire_due_reminders() run (firing.c): for
 * the reminders of one table it locks the tasks as the table's owner (a
 * task locked by a writer leaves its reminder for the next run), decides
 * for each reminder (fire; cancel because the task is gone, completed or
 * already due), sets reminder_sent_at as the table's owner, and writes the
 * notifications and the reminder log and marks the reminders as the
 * extension owner: a handful of statements for the whole batch instead of
 * several per reminder.  The caller runs it in a subtransaction and, when
 * it fails, again one reminder at a time.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "taskevents.h"

static SPIPlanPtr SetStatePlan = NULL;
static SPIPlanPtr NotifyPlan = NULL;
static SPIPlanPtr LogPlan = NULL;

void
BuildTaskTableSql(Relation rel, TableConfig *cfg, TaskTableSql *ts)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Form_pg_attribute idatt = TupleDescAttr(desc, cfg->id_attnum - 1);
	char	   *qualname = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
													  RelationGetRelationName(rel));
	const char *id = quote_identifier(NameStr(idatt->attname));
	char	   *eq = QualifiedEqualityOperator(idatt->atttypid);
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
	ts->lock = psprintf("SELECT t.%s, t.%s, t.%s, %s, t.ctid FROM ONLY %s t"
						" WHERE t.%s %s ANY ($1) FOR UPDATE OF t SKIP LOCKED",
						id,
						quote_identifier(NameStr(TupleDescAttr(desc, cfg->completed_attnum - 1)->attname)),
						quote_identifier(NameStr(TupleDescAttr(desc, cfg->due_date_attnum - 1)->attname)),
						title_expr, qualname, id, eq);
	ts->exists = psprintf("SELECT t.%s FROM ONLY %s t WHERE t.%s %s ANY ($1)",
						  id, qualname, id, eq);

	/*
	 * By the ctids the lock statement returned: a row locked by our
	 * transaction stays where it is, so this is a TID scan instead of a
	 * second search by key.
	 */
	ts->set_sent = NULL;
	if (cfg->reminder_sent_at_attnum != InvalidAttrNumber)
		ts->set_sent = psprintf("UPDATE ONLY %s t SET %s = $2"
								" WHERE t.ctid OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.tid[])",
								qualname,
								quote_identifier(NameStr(TupleDescAttr(desc, cfg->reminder_sent_at_attnum - 1)->attname)));
}

/*
 * The array of the keys of reminders r[0..n-1] as the key column's type.
 */
static Datum
KeyArray(TaskTableSql *ts, DueReminder **r, int n)
{
	Oid			typinput;
	Oid			typioparam;
	Datum	   *elems = palloc(sizeof(Datum) * n);
	int			i;

	getTypeInputInfo(ts->idtype, &typinput, &typioparam);
	for (i = 0; i < n; i++)
		elems[i] = OidInputFunctionCall(typinput, r[i]->task_id, typioparam, -1);
	return DatumArray(elems, NULL, n, ts->idtype);
}

static int
CompareTaskId(const void *a, const void *b)
{
	return strcmp((*(DueReminder *const *) a)->task_id, (*(DueReminder *const *) b)->task_id);
}

static int
CompareReminderId(const void *a, const void *b)
{
	int64		x = (*(DueReminder *const *) a)->reminder_id;
	int64		y = (*(DueReminder *const *) b)->reminder_id;

	return x < y ? -1 : x > y ? 1 : 0;
}

/*
 * A reminder of task task_id among by_task[0..n-1] (sorted by task id), or
 * NULL.
 */
static DueReminder *
FindTask(DueReminder **by_task, int n, const char *task_id)
{
	DueReminder key;
	DueReminder *keyp = &key;
	DueReminder **found;

	key.task_id = (char *) task_id;
	found = bsearch(&keyp, by_task, n, sizeof(DueReminder *), CompareTaskId);
	return found ? *found : NULL;
}

/*
 * The undecided reminder of task task_id among by_task[0..n-1] (sorted by
 * task id), or NULL.
 */
static DueReminder *
FindByTaskId(DueReminder **by_task, int n, const char *task_id)
{
	DueReminder *d = FindTask(by_task, n, task_id);

	return (d != NULL && d->outcome == DUE_PENDING) ? d : NULL;
}

/*
 * The reminder reminder_id among by_id[0..n-1] (sorted by id), or NULL.
 */
static DueReminder *
FindByReminderId(DueReminder **by_id, int n, int64 reminder_id)
{
	DueReminder key;
	DueReminder *keyp = &key;
	DueReminder **found;

	key.reminder_id = reminder_id;
	found = bsearch(&keyp, by_id, n, sizeof(DueReminder *), CompareReminderId);
	return found ? *found : NULL;
}

/* The fields of due reminders that go into arrays for FireGroup. */
typedef enum DueField
{
	DUE_USER_ID,
	DUE_TASK_ID,
	DUE_TITLE,
	DUE_REMINDER_ID,
	DUE_DUE
} DueField;

/*
 * The array of field of reminders r[0..n-1], for a set-based statement.
 */
static Datum
FieldArray(DueReminder **r, int n, DueField field)
{
	Datum	   *elems = palloc(sizeof(Datum) * n);
	bool	   *nulls = palloc0(sizeof(bool) * n);
	int			i;

	for (i = 0; i < n; i++)
	{
		const char *s = NULL;

		switch (field)
		{
			case DUE_REMINDER_ID:
				elems[i] = Int64GetDatum(r[i]->reminder_id);
				continue;
			case DUE_DUE:
				elems[i] = TimestampTzGetDatum(r[i]->due);
				continue;
			case DUE_USER_ID:
				s = r[i]->user_id;
				break;
			case DUE_TASK_ID:
				s = r[i]->task_id;
				break;
			case DUE_TITLE:
				s = r[i]->title;
				break;
		}
		nulls[i] = (s == NULL);
		elems[i] = s ? CStringGetTextDatum(s) : (Datum) 0;
	}
	return DatumArray(elems, nulls, n,
					  field == DUE_REMINDER_ID ? INT8OID :
					  field == DUE_DUE ? TIMESTAMPTZOID : TEXTOID);
}

/*
 * Set the state of reminders r[0..n-1] whose outcome is outcome: 'fired'
 * or 'cancelled', with the matching timestamp.
 */
void
SetDueState(DueReminder **r, int n, DueOutcome outcome)
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
	KeepOwnerPlan(&SetStatePlan,
				  "UPDATE taskevents.reminders m"
				  "   SET state = CASE WHEN $2 THEN 'fired' ELSE 'cancelled' END,"
				  "       fired_at = CASE WHEN $2 THEN pg_catalog.now() ELSE m.fired_at END,"
				  "       cancelled_at = CASE WHEN $2 THEN m.cancelled_at ELSE pg_catalog.now() END"
				  " WHERE m.reminder_id OPERATOR(pg_catalog.=) ANY ($1)",
				  2, OIDS(INT8ARRAYOID, BOOLOID), false);
	args[0] = FieldArray(sel, k, DUE_REMINDER_ID);
	args[1] = BoolGetDatum(outcome == DUE_FIRED);
	RunBookkeeping(SetStatePlan, args, NULL, SPI_OK_UPDATE);
}

/*
 * Set reminder_sent_at of the task rows at the ctids args[0] to args[1] as
 * the table's owner, flagged as bookkeeping for the row trigger while it
 * runs.
 */
static int
SetSentAt(Oid owner, TaskTableSql *ts, Oid relid, Datum *args)
{
	volatile int ret = 0;

	SetReminderBookkeeping(relid);
	PG_TRY();
	{
		ret = RunSqlAs(owner, ts->set_sent, 2, OIDS(TIDARRAYOID, TIMESTAMPTZOID),
					   args, NULL, false, 0);
	}
	PG_FINALLY();
	{
		SetReminderBookkeeping(InvalidOid);
	}
	PG_END_TRY();
	return ret;
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
void
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
	DueReminder **by_task = palloc(sizeof(DueReminder *) * n);
	DueReminder **by_id;
	int			nlocked = 0;
	ItemPointerData *locked_ctid;
	DueReminder **locked_task;

	for (j = 0; j < n; j++)
	{
		r[j]->outcome = DUE_PENDING;
		by_task[j] = r[j];
	}
	qsort(by_task, n, sizeof(DueReminder *), CompareTaskId);

	/* the tasks we can lock, as the table's owner */
	argtypes[0] = ts->idarraytype;
	args[0] = KeyArray(ts, r, n);
	ret = RunSqlAs(owner, ts->lock, 1, argtypes, args, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "locking tasks for their reminders failed: %s",
			 SPI_result_code_string(ret));
	locked_ctid = palloc(sizeof(ItemPointerData) * Max(SPI_processed, 1));
	locked_task = palloc(sizeof(DueReminder *) * Max(SPI_processed, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *task_id = SPI_getvalue(tup, desc, 1);
		DueReminder *d = FindTask(by_task, n, task_id);
		bool		isnull;
		Datum		v;

		if (d == NULL)
			continue;
		/* where the row is, for reminder_sent_at if its reminder fires */
		v = SPI_getbinval(tup, desc, 5, &isnull);
		Assert(!isnull);
		locked_ctid[nlocked] = *(ItemPointer) DatumGetPointer(v);
		locked_task[nlocked++] = d;
		if (d->outcome != DUE_PENDING)
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
			DueReminder *d = FindByTaskId(by_task, n, task_id);

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

	by_id = palloc(sizeof(DueReminder *) * Max(nfire, 1));
	memcpy(by_id, fire, sizeof(DueReminder *) * nfire);
	qsort(by_id, nfire, sizeof(DueReminder *), CompareReminderId);

	if (nfire > 0)
	{
		/*
		 * reminder_sent_at of the locked rows of the fired reminders' tasks,
		 * as the table's owner (not a task.updated)
		 */
		if (ts->set_sent != NULL)
		{
			Datum	   *ctids = palloc(sizeof(Datum) * nlocked);
			int			nctids = 0;

			for (j = 0; j < nlocked; j++)
				if (locked_task[j]->outcome == DUE_FIRED)
					ctids[nctids++] = PointerGetDatum(&locked_ctid[j]);
			args[0] = DatumArray(ctids, NULL, nctids, TIDOID);
			args[1] = TimestampTzGetDatum(now);
			ret = SetSentAt(owner, ts, RelationGetRelid(rel), args);
			if (ret != SPI_OK_UPDATE)
				elog(ERROR, "setting reminder_sent_at failed: %s",
					 SPI_result_code_string(ret));
		}

		/* notifications, then the log, as the extension owner */
		KeepOwnerPlan(&NotifyPlan,
					  "INSERT INTO taskevents.notifications"
					  "       (user_id, task_table, task_id, kind, title, due_date, reminder_id)"
					  " SELECT u.user_id, $1::pg_catalog.regclass, u.task_id, 'reminder', u.title,"
					  "        u.due, u.reminder_id"
					  "   FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3), pg_catalog.unnest($4),"
					  "                   pg_catalog.unnest($5), pg_catalog.unnest($6))"
					  "        WITH ORDINALITY AS u(user_id, task_id, title, due, reminder_id, n)"
					  "  ORDER BY u.n"
					  " RETURNING reminder_id, notification_id",
					  6, OIDS(OIDOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID, INT8ARRAYOID), false);
		args[0] = ObjectIdGetDatum(RelationGetRelid(rel));
		args[1] = FieldArray(fire, nfire, DUE_USER_ID);
		args[2] = FieldArray(fire, nfire, DUE_TASK_ID);
		args[3] = FieldArray(fire, nfire, DUE_TITLE);
		args[4] = FieldArray(fire, nfire, DUE_DUE);
		args[5] = FieldArray(fire, nfire, DUE_REMINDER_ID);
		RunBookkeeping(NotifyPlan, args, NULL, SPI_OK_INSERT_RETURNING);
		for (i = 0; i < SPI_processed; i++)
		{
			int64		reminder_id = SpiGetInt8(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);

			DueReminder *d = FindByReminderId(by_id, nfire, reminder_id);

			if (d != NULL)
				d->notification_id = SpiGetInt8(SPI_tuptable->vals[i],
												SPI_tuptable->tupdesc, 2);
		}

		KeepOwnerPlan(&LogPlan,
					  "INSERT INTO taskevents.reminder_log"
					  "       (reminder_id, task_table, task_id, user_id, due_at, run_id)"
					  " SELECT u.reminder_id, $1::pg_catalog.regclass, u.task_id, u.user_id, u.due, $6"
					  "   FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3), pg_catalog.unnest($4),"
					  "                   pg_catalog.unnest($5))"
					  "        WITH ORDINALITY AS u(user_id, task_id, due, reminder_id, n)"
					  "  ORDER BY u.n",
					  6, OIDS(OIDOID, TEXTARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID, INT8ARRAYOID, UUIDOID), false);
		args[3] = args[4];
		args[4] = args[5];
		args[5] = DirectFunctionCall1(uuid_in, CStringGetDatum(run_id));
		RunBookkeeping(LogPlan, args, NULL, SPI_OK_INSERT);
	}

	SetDueState(r, n, DUE_FIRED);
	SetDueState(r, n, DUE_CANCELLED);
}
