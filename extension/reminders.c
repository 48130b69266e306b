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
 * last reminder fired.  taskevents.fire_due_reminders() fires them.
 *
 * The SQL runs as the extension owner (application roles have no privilege
 * on taskevents.reminders) with plans kept for the life of the backend.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "taskevents.h"

static SPIPlanPtr SchedulePlan = NULL;
static SPIPlanPtr CancelPlan = NULL;

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
 * Run a kept plan as the extension owner; the caller is connected to SPI.

 * An error needs no cleanup: aborting the (sub)transaction restores the
 * user id.
 */
static void
RunAsOwner(SPIPlanPtr plan, Datum *values, const char *nulls, int expected)
{
	Oid			save_userid;
	int			save_sec_context;
	int			ret;

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(TaskeventsOwner(),
						   save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	ret = SPI_execute_plan(plan, values, nulls, false, 0);
	SetUserIdAndSecContext(save_userid, save_sec_context);
	if (ret != expected)
		elog(ERROR, "updating taskevents.reminders failed: %s",
			 SPI_result_code_string(ret));
}

/*
 * Emit the event whose data is column 1 of each row the last statement
 * returned (at most one).
 */
static void
EmitReturned(TableConfig *cfg, const char *type, const char *task_id,
			 const char *user_id)
{
	bool		isnull;
	Datum		d;

	if (SPI_processed == 0)
		return;
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	EmitScheduleEvent(cfg, type, task_id, user_id,
					  isnull ? NULL : DatumGetJsonbP(d));
}

/*
 * Cancel the scheduled reminder of task_id, if there is one.
 */
static void
CancelReminder(TableConfig *cfg, Oid relid, ReminderView *v, const char *reason)
{
	Datum		args[3];
	char		nulls[3] = {' ', ' ', ' '};

	if (CancelPlan == NULL)
	{
		Oid			argtypes[3] = {OIDOID, TEXTOID, TEXTOID};

		CancelPlan = PrepareKept(
			"UPDATE taskevents.reminders r"
			"   SET state = 'cancelled', cancelled_at = pg_catalog.now()"
			" WHERE r.task_table OPERATOR(pg_catalog.=) $1::pg_catalog.regclass"
			"   AND r.task_id OPERATOR(pg_catalog.=) $2"
			"   AND r.state OPERATOR(pg_catalog.=) 'scheduled'"
			" RETURNING pg_catalog.jsonb_build_object("
			"   'reminder_id', r.reminder_id, 'task_id', r.task_id, 'user_id', r.user_id,"
			"   'due_date', r.due_at, 'remind_at', r.remind_at, 'reason', $3::text)",
			3, argtypes, true, true);
	}
	args[0] = ObjectIdGetDatum(relid);
	args[1] = CStringGetTextDatum(v->task_id);
	args[2] = CStringGetTextDatum(reason);
	RunAsOwner(CancelPlan, args, nulls, SPI_OK_UPDATE_RETURNING);
	EmitReturned(cfg, "reminder.cancelled", v->task_id, v->user_id);
}

/*
 * Schedule (or move) the reminder of a task due at v->due in the future.
 */
static void
ScheduleReminder(TableConfig *cfg, Oid relid, ReminderView *v, TimestampTz now)
{
	Datum		args[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	Interval	lead;
	TimestampTz wanted;

	if (cfg->has_reminder_lead)
		lead = cfg->reminder_lead;
	else
	{
		memset(&lead, 0, sizeof(lead));
		lead.time = (int64) taskevents_reminder_lead * USECS_PER_SEC;
	}
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
		 * covers the new due date.
		 */
		SchedulePlan = PrepareKept(
			"INSERT INTO taskevents.reminders AS r"
			"       (task_table, task_id, user_id, due_at, remind_at)"
			" VALUES ($1::pg_catalog.regclass, $2, $3, $4, $5)"
			" ON CONFLICT (task_table, task_id) DO UPDATE"
			"   SET user_id = excluded.user_id, due_at = excluded.due_at,"
			"       remind_at = excluded.remind_at, state = 'scheduled',"
			"       scheduled_at = pg_catalog.now(), cancelled_at = NULL, error_sqlstate = NULL"
			" WHERE (r.state OPERATOR(pg_catalog.=) 'scheduled'"
			"        AND (r.due_at, r.remind_at, r.user_id) IS DISTINCT FROM"
			"            (excluded.due_at, excluded.remind_at, excluded.user_id))"
			"    OR (r.state OPERATOR(pg_catalog.<>) 'scheduled'"
			"        AND (r.fired_at IS NULL OR r.fired_at OPERATOR(pg_catalog.<) $6))"
			" RETURNING pg_catalog.jsonb_build_object("
			"   'reminder_id', r.reminder_id, 'task_id', r.task_id, 'user_id', r.user_id,"
			"   'due_date', r.due_at, 'remind_at', r.remind_at)",
			6, argtypes, false, true);
	}
	args[0] = ObjectIdGetDatum(relid);
	args[1] = CStringGetTextDatum(v->task_id);
	args[2] = CStringGetTextDatum(v->user_id);
	args[3] = TimestampTzGetDatum(v->due);
	args[4] = TimestampTzGetDatum(wanted > now ? wanted : now);
	args[5] = TimestampTzGetDatum(wanted);
	RunAsOwner(SchedulePlan, args, nulls, SPI_OK_INSERT_RETURNING);
	EmitReturned(cfg, "reminder.scheduled", v->task_id, v->user_id);
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
		ScheduleReminder(cfg, relid, &newv, now);

	SPI_finish();
}
