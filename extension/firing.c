/*-------------------------------------------------------------------------
 *
 * firing.c
 *	  Fire due reminders: taskevents.fire_due_reminders().
 *
 * A run claims the due reminders (FOR UPDATE SKIP LOCKED, so concurrent
 * runs never fire one twice) and fires them a task table at a time with a
 * few set-based statements (FireGroup, firebatch.c): lock the tasks as the
 * table's owner, decide for each reminder, set reminder_sent_at, write the
 * notifications and the log, mark the reminders.  When something in a
 * table's batch fails, the batch is rolled back and redone one reminder at
 * a time in subtransactions, so that one bad row is reported (a WARNING
 * with the task id and SQLSTATE, never row contents) and skipped.  The
 * events are written last, in firing order.
 *
 * A reminder fires only while its task is not yet due: one whose task's due
 * date has passed by the time it would fire (nothing fired for a while, the
 * relay was down) is cancelled with reason "overdue", as the seed's
 * reminder worker never reminded overdue tasks.  Firing ahead of time is
 * for the extension owner only.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "taskevents.h"

static SPIPlanPtr DuePlan = NULL;
static SPIPlanPtr FailPlan = NULL;

/* Counts of one firing run (FireDueReminders). */
typedef struct FireCounts
{
	int			fired;
	int			failed;
	int			busy;
	int			cancelled;
} FireCounts;

/*
 * Mark one reminder failed with its SQLSTATE; logged with the task id and
 * SQLSTATE only (an error message may quote row data).
 */
static void
MarkFailed(DueReminder *d, int sqlerrcode)
{
	Datum		args[2];

	KeepOwnerPlan(&FailPlan,
				  "UPDATE taskevents.reminders m SET state = 'failed', error_sqlstate = $2"
				  " WHERE m.reminder_id OPERATOR(pg_catalog.=) $1",
				  2, OIDS(INT8OID, TEXTOID), false);
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

	KeepOwnerPlan(&DuePlan,
				  "SELECT m.reminder_id, m.task_table::pg_catalog.oid, m.task_id, m.user_id,"
				  "       m.due_at, m.remind_at"
				  "  FROM taskevents.reminders m"
				  " WHERE m.state OPERATOR(pg_catalog.=) 'scheduled'"
				  "   AND m.remind_at OPERATOR(pg_catalog.<=) $1"
				  " ORDER BY m.remind_at, m.reminder_id"
				  " LIMIT $2"
				  "   FOR UPDATE OF m SKIP LOCKED",
				  2, OIDS(TIMESTAMPTZOID, INT4OID), true);
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

		due[i].reminder_id = SpiGetInt8(tup, desc, 1);
		due[i].relid = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
		due[i].task_id = SPI_getvalue(tup, desc, 3);
		due[i].user_id = SPI_getvalue(tup, desc, 4);
		due[i].due_at = SpiGetTimestamp(tup, desc, 5);
		due[i].remind_at = SpiGetTimestamp(tup, desc, 6);
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
			SetDueState(group, n, DUE_CANCELLED);
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
 * taskevents._maint_fire_reminders(OUT done bigint, OUT failed bigint,
 *								   OUT next_at timestamptz)
 *
 * The maintenance operation fire_reminders: fire what is due now, with the
 * default batch, and report how many fired and how many failed, and when
 * the next scheduled reminder is due (NULL: none), so that a scheduler
 * need not ask every second while nothing is written.
 */
PG_FUNCTION_INFO_V1(maint_fire_reminders);
Datum
maint_fire_reminders(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[3];
	bool		nulls[3] = {false, false, true};
	FireCounts	counts;
	bool		isnull;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	FireDueReminders(GetCurrentTransactionStartTimestamp(), 1000, &counts);
	/* not read-only: it must see what FireDueReminders() just wrote */
	if (RunSqlAs(TaskeventsOwner(),
				 "SELECT pg_catalog.min(m.remind_at) FROM taskevents.reminders m "
				 "WHERE m.state OPERATOR(pg_catalog.=) 'scheduled'::pg_catalog.text",
				 0, NULL, NULL, NULL, false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "reading the next reminder's time failed");
	values[2] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	nulls[2] = isnull;
	SPI_finish();
	values[0] = Int64GetDatum(counts.fired);
	values[1] = Int64GetDatum(counts.failed);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
