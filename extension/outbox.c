/*-------------------------------------------------------------------------
 *
 * outbox.c
 *	  The one path by which events enter taskevents.outbox, and publish().
 *
 * Every event, whether from the row trigger, publish() or a dead-letter
 * replay, is inserted here with a prepared plan kept for the life of the
 * backend.  The insert runs as the extension owner (the way SECURITY
 * DEFINER would, without its per-call cost), so callers need no privilege
 * on the outbox.  The top-level transaction id is assigned before the row's
 * id is drawn from the sequence; the relay's batching relies on that order
 * (see "The outbox" in README.md).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "commands/sequence.h"
#include "executor/executor.h"
#include "nodes/makefuncs.h"
#include "utils/lsyscache.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"
#include "utils/xid8.h"

#include "taskevents.h"

static Oid	OutboxPartition[3] = {InvalidOid, InvalidOid, InvalidOid};
static Oid	OutboxSequence = InvalidOid;

/*
 * The outbox partition written at this statement's time: partitions take
 * turns every taskevents.rotation_period seconds.  This only decides where
 * rows go; taskevents.maintain() never truncates a partition that still
 * holds an undelivered row, whatever this returns.
 */
static int16
CurrentSlot(void)
{
	TimestampTz ts = GetCurrentStatementStartTimestamp();
	int64		secs = ts / USECS_PER_SEC;

	if (secs < 0)
		secs = -secs;
	return (int16) ((secs / taskevents_rotation_period) % 3);
}

/*
 * Look up (and remember) the OIDs of the outbox partitions and sequence.
 */
static void
ResolveOutbox(void)
{
	Oid			nsp = get_namespace_oid(TASKEVENTS_SCHEMA, false);
	int			i;

	for (i = 0; i < 3; i++)
	{
		char		name[NAMEDATALEN];

		snprintf(name, sizeof(name), "outbox_%d", i);
		OutboxPartition[i] = get_relname_relid(name, nsp);
		if (!OidIsValid(OutboxPartition[i]))
			elog(ERROR, "outbox partition taskevents.%s is missing", name);
	}
	OutboxSequence = get_relname_relid("outbox_id_seq", nsp);
	if (!OidIsValid(OutboxSequence))
		elog(ERROR, "sequence taskevents.outbox_id_seq is missing");
}

/*
 * Open the outbox partition of slot, re-resolving the OIDs when the
 * extension was dropped and re-created during this backend's life.
 */
static Relation
OpenPartition(int16 slot)
{
	Relation	rel;

	if (!OidIsValid(OutboxPartition[slot]) || !OidIsValid(OutboxSequence))
		ResolveOutbox();
	rel = try_table_open(OutboxPartition[slot], RowExclusiveLock);
	if (rel == NULL)
	{
		ResolveOutbox();
		rel = table_open(OutboxPartition[slot], RowExclusiveLock);
	}
	/*
	 * The row is built by hand below, so the table must be exactly what this
	 * library writes: a library of another version than the installed SQL
	 * (a new .so before ALTER EXTENSION ... UPDATE) must refuse, not write a
	 * datum of the wrong type.
	 */
	if (RelationGetDescr(rel)->natts != 7 ||
		TupleDescAttr(RelationGetDescr(rel), 6)->atttypid != JSONOID)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("taskevents.outbox does not have the layout this pg_taskevents library writes"),
				 errhint("The installed library and the extension's SQL objects are from different versions; run ALTER EXTENSION pg_taskevents UPDATE.")));
	return rel;
}

/*
 * Insert one event into the outbox in the current transaction.
 *
 * The row goes straight into the current partition with its indexes
 * maintained, without planning or executing an INSERT statement: per event
 * that is most of the difference between a cheap trigger and one as costly
 * as PL/pgSQL.  Everything the INSERT would have checked holds here: no
 * NULL in a NOT NULL column, the row's slot matches its partition, and the
 * outbox has no triggers, rules, foreign keys or check constraints.  The
 * transaction id is assigned before the id is drawn from the sequence (see
 * "The outbox" in README.md).  No privilege check: this is the extension
 * writing its own table, which is why application roles need no grant.
 */
void
EnqueueEvent(const char *topic, const char *partition_key, text *event)
{
	int16		slot = CurrentSlot();
	Relation	rel = OpenPartition(slot);
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot *tts;

	estate = CreateExecutorState();
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	ExecOpenIndices(rri, false);

	tts = ExecInitExtraTupleSlot(estate, RelationGetDescr(rel), &TTSOpsVirtual);
	ExecClearTuple(tts);
	tts->tts_values[0] = FullTransactionIdGetDatum(GetTopFullTransactionId());
	tts->tts_isnull[0] = false;
	tts->tts_values[1] = Int64GetDatum(nextval_internal(OutboxSequence, false));
	tts->tts_isnull[1] = false;
	tts->tts_values[2] = Int16GetDatum(slot);
	tts->tts_isnull[2] = false;
	tts->tts_values[3] = TimestampTzGetDatum(GetCurrentStatementStartTimestamp());
	tts->tts_isnull[3] = false;
	tts->tts_values[4] = CStringGetTextDatum(topic);
	tts->tts_isnull[4] = false;
	tts->tts_values[5] = partition_key ? CStringGetTextDatum(partition_key) : (Datum) 0;
	tts->tts_isnull[5] = (partition_key == NULL);
	tts->tts_values[6] = PointerGetDatum(event);
	tts->tts_isnull[6] = false;
	ExecStoreVirtualTuple(tts);

	simple_table_tuple_insert(rel, tts);
	ExecInsertIndexTuplesCompat(rri, tts, estate, false, false, NULL, NIL);

	ExecCloseIndices(rri);
	ExecDropSingleTupleTableSlot(tts);
	FreeExecutorState(estate);
	table_close(rel, NoLock);	/* the lock is kept until commit, as by INSERT */
}

/*
 * The source attribute of events that are not tied to a table.
 */
static char *
DatabaseSource(void)
{
	char	   *db = get_database_name(MyDatabaseId);

	return psprintf("/pg_taskevents/%s", db ? db : "unknown");
}

static char *
RequiredText(FunctionCallInfo fcinfo, int argno, const char *what)
{
	char	   *s;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", what)));
	s = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	if (s[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", what)));
	return s;
}

/*
 * taskevents.publish(topic text, type text, data jsonb, partition_key text,
 *					  subject text DEFAULT NULL) RETURNS uuid
 *
 * Write one custom event in the caller's transaction and return its id.
 */
PG_FUNCTION_INFO_V1(publish);
Datum
publish(PG_FUNCTION_ARGS)
{
	CloudEventParts parts;
	char	   *topic = RequiredText(fcinfo, 0, "topic");
	char	   *type = RequiredText(fcinfo, 1, "event type");
	char	   *partition_key = NULL;
	pg_uuid_t  *id = palloc(sizeof(pg_uuid_t));
	text	   *event;

	ValidateTopicName(topic);
	if (!PG_ARGISNULL(3))
	{
		partition_key = text_to_cstring(PG_GETARG_TEXT_PP(3));
		if (partition_key[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("partition key must not be empty"),
					 errhint("Pass NULL for an event without a partition key.")));
	}

	memset(&parts, 0, sizeof(parts));
	parts.type = type;
	parts.topic = topic;
	parts.source = DatabaseSource();
	parts.partitionkey = partition_key;
	parts.subject = (PG_NARGS() > 4 && !PG_ARGISNULL(4)) ?
		text_to_cstring(PG_GETARG_TEXT_PP(4)) : NULL;
	parts.pubsubname = taskevents_pubsubname;
	parts.data = PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2);

	event = BuildCloudEvent(&parts, id);
	EnqueueEvent(topic, partition_key, event);

	PG_RETURN_UUID_P(id);
}

/*
 * taskevents.enqueue_event(topic text, partition_key text, event jsonb)
 *
 * Re-insert a complete, already built event (dead-letter replay).  Not
 * granted to PUBLIC.
 */
PG_FUNCTION_INFO_V1(enqueue_event);
Datum
enqueue_event(PG_FUNCTION_ARGS)
{
	char	   *topic = RequiredText(fcinfo, 0, "topic");

	ValidateTopicName(topic);
	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("event must not be null")));
	{
		Jsonb	   *ev = PG_GETARG_JSONB_P(2);

		EnqueueEvent(topic,
					 PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1)),
					 cstring_to_text(JsonbToCString(NULL, &ev->root, VARSIZE(ev))));
	}
	PG_RETURN_VOID();
}

/*
 * taskevents.current_slot() RETURNS smallint
 *
 * The outbox partition the triggers write to in this statement.
 */
PG_FUNCTION_INFO_V1(current_slot);
Datum
current_slot(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT16(CurrentSlot());
}
