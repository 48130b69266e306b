/*-------------------------------------------------------------------------
 *
 * trigger.c
 *	  The row trigger that turns task writes into CloudEvents.
 *
 * taskevents.attach() installs task_trigger() as an AFTER INSERT OR UPDATE
 * OR DELETE FOR EACH ROW trigger and as a BEFORE TRUNCATE statement
 * trigger.  Per row it decides the event type (task.created, task.updated,
 * task.completed, task.deleted, or nothing for an UPDATE that changes no
 * column), builds the CloudEvent with the row as data and inserts it into
 * the outbox in the writing transaction, then lets the recurrence and
 * reminder code react (recurrence.c, reminders.c).  Modelled on
 * contrib/tcn.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/htup_details.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "utils/datum.h"
#include "utils/rel.h"

#include "taskevents.h"

/*
 * Are two non-null values of attribute att the same?  Binary equality,
 * after detoasting varlena values so that a value stored compressed or
 * out of line compares equal to the same value stored inline.
 */
static bool
ValuesEqual(Form_pg_attribute att, Datum a, Datum b)
{
	struct varlena *va;
	struct varlena *vb;
	bool		eq;

	if (datumIsEqual(a, b, att->attbyval, att->attlen))
		return true;
	if (att->attlen != -1)
		return false;

	va = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(a));
	vb = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(b));
	eq = VARSIZE_ANY_EXHDR(va) == VARSIZE_ANY_EXHDR(vb) &&
		memcmp(VARDATA_ANY(va), VARDATA_ANY(vb), VARSIZE_ANY_EXHDR(va)) == 0;
	if ((Pointer) va != DatumGetPointer(a))
		pfree(va);
	if ((Pointer) vb != DatumGetPointer(b))
		pfree(vb);
	return eq;
}

/*
 * Did an UPDATE change any column?  The reminder bookkeeping column is not
 * a change of the task: fire_due_reminders() sets it and must not make a
 * task.updated event.
 */
static bool
RowChanged(TupleTableSlot *oldslot, TupleTableSlot *newslot, TableConfig *cfg)
{
	TupleDesc	desc = oldslot->tts_tupleDescriptor;
	int			i;

	slot_getallattrs(oldslot);
	slot_getallattrs(newslot);
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		bool		oldnull = oldslot->tts_isnull[i];

		if (att->attisdropped || att->attnum == cfg->reminder_sent_at_attnum)
			continue;
		if (oldnull != newslot->tts_isnull[i])
			return true;
		if (!oldnull && !ValuesEqual(att, oldslot->tts_values[i], newslot->tts_values[i]))
			return true;
	}
	return false;
}

/*
 * The type of a task event without its envelope's prefix "task.".
 */
static const char *
EventTypeName(TaskEventKind kind)
{
	switch (kind)
	{
		case TASK_EVENT_CREATED:
			return "created";
		case TASK_EVENT_UPDATED:
			return "updated";
		case TASK_EVENT_COMPLETED:
			return "completed";
		case TASK_EVENT_DELETED:
			return "deleted";
		default:
			elog(ERROR, "unexpected task event kind %d", (int) kind);
	}
	return NULL;				/* keep compiler quiet */
}

/*
 * React to one row event of an attached table, after its own event is in
 * the outbox, so that whatever follows comes after it: refuse a recurring
 * row with an unknown interval, keep its reminder in step (a completion
 * writes reminder.cancelled), and on completion of a recurring task create
 * the next instance (whose own row trigger writes its task.created and
 * reminder.scheduled).
 */
static void
AfterRowEvent(TableConfig *cfg, TriggerData *trigdata, TaskEventKind kind)
{
	Relation	rel = trigdata->tg_relation;

	if (kind == TASK_EVENT_CREATED)
		CheckRecurrence(cfg, rel, trigdata->tg_trigslot);
	else if (kind == TASK_EVENT_UPDATED || kind == TASK_EVENT_COMPLETED)
		CheckRecurrence(cfg, rel, trigdata->tg_newslot);

	UpdateReminder(cfg, trigdata, kind);

	if (kind == TASK_EVENT_COMPLETED)
		SpawnNextInstance(cfg, trigdata);
}

/*
 * taskevents.task_trigger(): see the file header.
 */
PG_FUNCTION_INFO_V1(task_trigger);
Datum
task_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	desc;
	TableConfig *cfg;
	TaskEventKind kind;
	HeapTuple	row;
	TupleTableSlot *slot;		/* the row, read through it */
	OutboxFacts f;
	StringInfoData data;
	bool		isnull;
	Datum		d;
	char	   *user_id;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("taskevents.task_trigger() was not called by the trigger manager")));

	rel = trigdata->tg_relation;

	if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot truncate \"%s\": it is attached to pg_taskevents",
						RelationGetRelationName(rel)),
				 errdetail("TRUNCATE removes tasks without task.deleted events, so consumers would silently diverge."),
				 errhint("Use DELETE, or run taskevents.detach() first.")));

	if (!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!TRIGGER_FIRED_AFTER(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("taskevents.task_trigger() must be fired AFTER ... FOR EACH ROW")));
	if (trigdata->tg_trigslot == NULL)
		elog(ERROR, "taskevents.task_trigger() was called without the row's slot");

	desc = RelationGetDescr(rel);
	cfg = GetTableConfig(rel);

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
	{
		kind = TASK_EVENT_CREATED;
		row = trigdata->tg_trigtuple;
		slot = trigdata->tg_trigslot;
	}
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
	{
		kind = TASK_EVENT_DELETED;
		row = trigdata->tg_trigtuple;
		slot = trigdata->tg_trigslot;
	}
	else
	{
		row = trigdata->tg_newtuple;
		slot = trigdata->tg_newslot;
		if (slot == NULL)
			elog(ERROR, "taskevents.task_trigger() was called without the new row's slot");

		/*
		 * fire_due_reminders() setting reminder_sent_at is bookkeeping, not a
		 * change of the task, even when a BEFORE trigger of the app also
		 * touched another column (say updated_at).
		 */
		if (IsReminderBookkeepingUpdate(RelationGetRelid(rel)) ||
			!RowChanged(trigdata->tg_trigslot, slot, cfg))
			return PointerGetDatum(NULL);
		if (!ColumnIsTrue(trigdata->tg_trigslot, cfg->completed_attnum) &&
			ColumnIsTrue(slot, cfg->completed_attnum))
			kind = TASK_EVENT_COMPLETED;
		else
			kind = TASK_EVENT_UPDATED;
	}

	d = slot_getattr(slot, cfg->user_id_attnum, &isnull);
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("user id of a task in \"%s\" must not be null",
						RelationGetRelationName(rel)),
				 errdetail("The user id is the partition key of every event of the task."),
				 errhint("Set column \"%s\", or detach the table.",
						 NameStr(TupleDescAttr(desc, cfg->user_id_attnum - 1)->attname))));
	user_id = OutputFunctionCall(&cfg->user_id_out, d);

	/*
	 * The event's facts.  The data is the row: its values alone when the
	 * table's envelope holds its current column names, else row_to_json() of
	 * it (cloudevent.c renders the same text from either).
	 */
	memset(&f, 0, sizeof(f));
	GenerateUuidV7(&f.event_id);
	f.topic = cfg->topic;
	f.partition_key = user_id;
	f.type = EventTypeName(kind);
	d = slot_getattr(slot, cfg->id_attnum, &isnull);
	f.subject = isnull ? NULL : OutputFunctionCall(&cfg->id_out, d);
	f.traceparent = taskevents_traceparent;
	initStringInfo(&data);
	if (cfg->values_envelope != 0)
	{
		f.envelope = cfg->values_envelope;
		AppendRowValues(&data, cfg->rowjson, slot,
						cfg->values_skip_subject, cfg->values_skip_key);
	}
	else
	{
		text	   *json = DatumGetTextPP(FunctionCall1(&cfg->row_to_json,
														heap_copy_tuple_as_datum(row, desc)));

		f.envelope = cfg->whole_envelope;
		appendBinaryStringInfo(&data, VARDATA_ANY(json), VARSIZE_ANY_EXHDR(json));
	}
	f.data = data.data;
	f.data_len = data.len;
	BufferEvent(&f);
	pfree(data.data);

	AfterRowEvent(cfg, trigdata, kind);

	return PointerGetDatum(NULL);
}
