/*-------------------------------------------------------------------------
 *
 * outbox.c
 *	  The one path by which events enter taskevents.outbox, and publish().
 *
 * Every event, whether from the row trigger, a reminder, publish() or a
 * dead-letter replay, is inserted here as its facts (OutboxFacts): the
 * events of attached tables with their table's envelope, so that the row
 * holds only what differs from event to event (cloudevent.c renders the
 * CloudEvent when it is read); publish() and replays with the complete
 * event.  The insert goes straight into the heap and the two indexes (see
 * EnqueueEvent), so callers need no privilege on the outbox.  The
 * top-level transaction id is assigned before the row's id is drawn from
 * the sequence; the relay's batching relies on that order (see "The
 * outbox" in README.md).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "access/genam.h"
#include "access/heapam.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/sequence.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "executor/executor.h"
#include "nodes/execnodes.h"
#include "nodes/makefuncs.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"
#include "utils/xid8.h"

#include "taskevents.h"

/*
 * The outbox partitions and their indexes, with the IndexInfo each
 * insertion needs, looked up once per backend (and again when the
 * extension was dropped and created again, or an index was added).
 */
typedef struct OutboxPartitionInfo
{
	Oid			relid;
	List	   *indexes;		/* index OIDs, in RelationGetIndexList order */
	IndexInfo **index_info;
	bool		plain;			/* every index is on plain columns, no
								 * predicate: index_insert() directly */
} OutboxPartitionInfo;

static OutboxPartitionInfo Partitions[3];
static Oid	OutboxSequence = InvalidOid;
static MemoryContext OutboxContext = NULL;

/* The outbox's columns (see extension/sql/00_outbox.sql). */
#define OUTBOX_NATTS		12
#define Anum_txid			1
#define Anum_id				2
#define Anum_created_at		3
#define Anum_event_id		4
#define Anum_envelope		5
#define Anum_slot			6
#define Anum_topic			7
#define Anum_partition_key	8
#define Anum_type			9
#define Anum_subject		10
#define Anum_traceparent	11
#define Anum_data			12

/*
 * The outbox partition written at this statement's time: partitions take
 * turns every taskevents.rotation_period seconds.  This only decides where
 * rows go; the rotate_outbox maintenance operation never truncates a
 * partition that still holds an undelivered row, whatever this returns.
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

/* The types of the outbox's columns, in order. */
static const Oid OutboxTypes[OUTBOX_NATTS] = {
	XID8OID, INT8OID, TIMESTAMPTZOID, UUIDOID, INT4OID, INT2OID,
	TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID
};

/*
 * Look up (and remember) the outbox partitions, their indexes and the
 * sequence.
 */
static void
ResolveOutbox(void)
{
	Oid			nsp;
	int			i;

	ResetExtensionIdentity();
	nsp = TaskeventsSchema();
	if (OutboxContext == NULL)
		OutboxContext = AllocSetContextCreate(TopMemoryContext, "taskevents outbox",
											  ALLOCSET_SMALL_SIZES);
	MemoryContextReset(OutboxContext);
	memset(Partitions, 0, sizeof(Partitions));
	OutboxSequence = InvalidOid;

	for (i = 0; i < 3; i++)
	{
		char		name[NAMEDATALEN];

		snprintf(name, sizeof(name), "outbox_%d", i);
		Partitions[i].relid = get_relname_relid(name, nsp);
		if (!OidIsValid(Partitions[i].relid))
			elog(ERROR, "outbox partition taskevents.%s is missing", name);
	}
	OutboxSequence = get_relname_relid("outbox_id_seq", nsp);
	if (!OidIsValid(OutboxSequence))
		elog(ERROR, "sequence taskevents.outbox_id_seq is missing");
}

/*
 * Remember the indexes of partition rel and how to fill them.
 */
static void
ResolveIndexes(OutboxPartitionInfo *part, Relation rel)
{
	MemoryContext old = MemoryContextSwitchTo(OutboxContext);
	ListCell   *lc;
	int			n = 0;

	part->indexes = RelationGetIndexList(rel);
	part->index_info = palloc(sizeof(IndexInfo *) * Max(list_length(part->indexes), 1));
	part->plain = true;
	foreach(lc, part->indexes)
	{
		Relation	irel = index_open(lfirst_oid(lc), AccessShareLock);
		IndexInfo  *ii = BuildIndexInfo(irel);

		part->index_info[n++] = ii;
		if (ii->ii_Expressions != NIL || ii->ii_Predicate != NIL || ii->ii_Unique)
			part->plain = false;
		index_close(irel, AccessShareLock);
	}
	MemoryContextSwitchTo(old);
}

/*
 * Open the outbox partition of slot, re-resolving the OIDs when the
 * extension was dropped and created again during this backend's life, and
 * check that it has the layout this library writes and the indexes it
 * knows.
 */
static Relation
OpenPartition(int16 slot)
{
	Relation	rel;
	OutboxPartitionInfo *part = &Partitions[slot];
	List	   *indexes;

	if (!OidIsValid(part->relid))
		ResolveOutbox();
	rel = try_table_open(part->relid, RowExclusiveLock);
	if (rel == NULL || RelationGetNamespace(rel) != TaskeventsSchema())
	{
		if (rel != NULL)
			table_close(rel, RowExclusiveLock);
		ResolveOutbox();
		rel = table_open(part->relid, RowExclusiveLock);
	}
	CheckTableLayout(rel, OutboxTypes, OUTBOX_NATTS, "taskevents.outbox");
	indexes = RelationGetIndexList(rel);
	if (part->index_info == NULL || !equal(indexes, part->indexes))
		ResolveIndexes(part, rel);
	list_free(indexes);
	return rel;
}

/*
 * Insert the index entries of tuple tup of partition rel: straight into
 * each index when they are all on plain columns, else through the
 * executor (an index a DBA added with an expression or predicate).
 */
static void
InsertIndexEntries(OutboxPartitionInfo *part, Relation rel, HeapTuple tup,
				   Datum *values, bool *isnull)
{
	ListCell   *lc;
	int			n = 0;

	if (part->plain)
	{
		foreach(lc, part->indexes)
		{
			IndexInfo  *ii = part->index_info[n++];
			Relation	irel = index_open(lfirst_oid(lc), RowExclusiveLock);
			Datum		ivalues[INDEX_MAX_KEYS];
			bool		inulls[INDEX_MAX_KEYS];
			int			k;

			for (k = 0; k < ii->ii_NumIndexAttrs; k++)
			{
				AttrNumber	attnum = ii->ii_IndexAttrNumbers[k];

				ivalues[k] = values[attnum - 1];
				inulls[k] = isnull[attnum - 1];
			}
			index_insert(irel, ivalues, inulls, &tup->t_self, rel, UNIQUE_CHECK_NO,
						 false, ii);
			index_close(irel, NoLock);
		}
	}
	else
	{
		EState	   *estate = CreateExecutorState();
		ResultRelInfo *rri = makeNode(ResultRelInfo);
		TupleTableSlot *slot;

		InitResultRelInfo(rri, rel, 1, NULL, 0);
		ExecOpenIndices(rri, false);
		slot = ExecInitExtraTupleSlot(estate, RelationGetDescr(rel), &TTSOpsHeapTuple);
		ExecStoreHeapTuple(tup, slot, false);
		ExecInsertIndexTuplesCompat(rri, slot, estate, false, false, NULL, NIL);
		ExecCloseIndices(rri);
		ExecDropSingleTupleTableSlot(slot);
		FreeExecutorState(estate);
	}
}

static Datum
TextOrNull(const char *s, bool *isnull)
{
	*isnull = (s == NULL);
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

/*
 * Insert one event into the outbox in the current transaction.
 *
 * The row goes straight into the current partition with heap_insert() and
 * its two index entries with index_insert(), without planning or executing
 * an INSERT and without an executor state: per event that is most of the
 * difference between a cheap trigger and one as costly as PL/pgSQL.
 * Everything an INSERT would have checked holds here: no NULL in a NOT NULL
 * column, the row's slot matches its partition, and the outbox has no
 * triggers, rules, foreign keys, check constraints or expression indexes.
 * The transaction id is assigned before the id is drawn from the sequence
 * (see "The outbox" in README.md).  No privilege check: this is the
 * extension writing its own table, which is why application roles need no
 * grant.
 */
void
EnqueueEvent(const OutboxFacts *f)
{
	int16		slot = CurrentSlot();
	Relation	rel = OpenPartition(slot);
	OutboxPartitionInfo *part = &Partitions[slot];
	Datum		values[OUTBOX_NATTS];
	bool		isnull[OUTBOX_NATTS];
	HeapTuple	tup;

	memset(isnull, 0, sizeof(isnull));
	values[Anum_txid - 1] = FullTransactionIdGetDatum(GetTopFullTransactionId());
	values[Anum_id - 1] = Int64GetDatum(nextval_internal(OutboxSequence, false));
	values[Anum_created_at - 1] = TimestampTzGetDatum(GetCurrentStatementStartTimestamp());
	values[Anum_event_id - 1] = UUIDPGetDatum(&f->event_id);
	values[Anum_envelope - 1] = Int32GetDatum(f->envelope);
	isnull[Anum_envelope - 1] = (f->envelope == 0);
	values[Anum_slot - 1] = Int16GetDatum(slot);
	/* an envelope has the topic (taskevents._event_topic) */
	values[Anum_topic - 1] = CStringGetTextDatum(f->envelope != 0 ? "" : f->topic);
	values[Anum_partition_key - 1] = TextOrNull(f->partition_key, &isnull[Anum_partition_key - 1]);
	values[Anum_type - 1] = CStringGetTextDatum(f->type);
	values[Anum_subject - 1] = TextOrNull(f->subject, &isnull[Anum_subject - 1]);
	values[Anum_traceparent - 1] = CStringGetTextDatum(f->traceparent ? f->traceparent : "");
	values[Anum_data - 1] = PointerGetDatum(cstring_to_text_with_len(f->data, f->data_len));

	tup = heap_form_tuple(RelationGetDescr(rel), values, isnull);
	heap_insert(rel, tup, GetCurrentCommandId(true), 0, NULL);

	InsertIndexEntries(part, rel, tup, values, isnull);
	NoteEventWritten();
	heap_freetuple(tup);
	table_close(rel, NoLock);	/* the lock is kept until commit, as by INSERT */
}

/*
 * Write one event about a task of cfg's table on topic (the table's own or
 * the reminders topic), with the table's envelope for that topic (source,
 * pubsubname) and data as its data: the reminder.* events.
 */
void
EmitTableEvent(TableConfig *cfg, const char *topic, const char *type,
			   const char *subject, const char *partition_key, Jsonb *data)
{
	OutboxFacts f;
	char	   *json = JsonbToCString(NULL, &data->root, VARSIZE(data));
	const char *prefix = strcmp(topic, TASKEVENTS_REMINDERS_TOPIC) == 0 ? "reminder." : "task.";

	if (strncmp(type, prefix, strlen(prefix)) != 0)
		elog(ERROR, "event type \"%s\" does not belong to topic \"%s\"", type, topic);
	memset(&f, 0, sizeof(f));
	GenerateUuidV7(&f.event_id);
	f.envelope = strcmp(topic, TASKEVENTS_REMINDERS_TOPIC) == 0 ?
		cfg->reminders_envelope : cfg->whole_envelope;
	f.topic = topic;
	f.partition_key = partition_key;
	f.type = type + strlen(prefix); /* the envelope has the prefix */
	f.subject = subject;
	f.traceparent = taskevents_traceparent;
	f.data = json;
	f.data_len = strlen(json);
	EnqueueEvent(&f);
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
 * Refuse what only the extension and the relay may write: the extension's
 * own event types (task.*, reminder.*, in any letter case), which consumers
 * act on, and dead-letter topics, which only the relay fills.
 */
static void
RefuseReservedEvent(const char *topic, const char *type)
{
	size_t		len = strlen(topic);

	if (pg_strncasecmp(type, "task.", 5) == 0 ||
		pg_strncasecmp(type, "reminder.", 9) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("event type \"%s\" is reserved for pg_taskevents", type),
				 errdetail("Events of the types task.* and reminder.* are written only by the extension's triggers and reminder functions, so that consumers can act on them."),
				 errhint("Use a type of your own, such as \"com.example.task.archived\".")));
	if (len >= 4 && pg_strcasecmp(topic + len - 4, "-dlq") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("topic \"%s\" is a dead-letter topic", topic),
				 errdetail("Only the relay writes to dead-letter topics (<topic>-dlq).")));
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
	OutboxFacts f;

	ValidateTopicName(topic);
	RefuseReservedEvent(topic, type);
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
	GenerateUuidV7(id);
	parts.id = id;
	parts.time = GetCurrentStatementStartTimestamp();
	parts.type = type;
	parts.topic = topic;
	parts.source = DatabaseSource();
	parts.partitionkey = partition_key;
	parts.subject = (PG_NARGS() > 4 && !PG_ARGISNULL(4)) ?
		text_to_cstring(PG_GETARG_TEXT_PP(4)) : NULL;
	parts.pubsubname = taskevents_pubsubname;
	parts.traceparent = taskevents_traceparent;
	parts.data = PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2);
	event = BuildCloudEvent(&parts);

	/* the event is stored whole: no envelope */
	memset(&f, 0, sizeof(f));
	f.event_id = *id;
	f.topic = topic;
	f.partition_key = partition_key;
	f.type = type;
	f.subject = parts.subject;
	f.traceparent = parts.traceparent;
	f.data = VARDATA(event);
	f.data_len = VARSIZE(event) - VARHDRSZ;
	EnqueueEvent(&f);

	PG_RETURN_UUID_P(id);
}

/*
 * The string member key of a jsonb object, or NULL.
 */
static char *
JsonbStringMember(Jsonb *jb, const char *key)
{
	JsonbValue *v;

	if (!JB_ROOT_IS_OBJECT(jb))
		return NULL;
	v = getKeyJsonValueFromContainer(&jb->root, key, strlen(key), NULL);
	if (v == NULL || v->type != jbvString)
		return NULL;
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/*
 * Parse a UUID in its canonical text form (8-4-4-4-12 hex digits); false
 * for anything else.
 */
static bool
ParseUuid(const char *s, pg_uuid_t *uuid)
{
	int			i;

	if (strlen(s) != 36)
		return false;
	for (i = 0; i < 36; i++)
	{
		bool		dash = (i == 8 || i == 13 || i == 18 || i == 23);

		if (dash ? s[i] != '-' : !isxdigit((unsigned char) s[i]))
			return false;
	}
	*uuid = *DatumGetUUIDP(DirectFunctionCall1(uuid_in, CStringGetDatum(s)));
	return true;
}

/*
 * taskevents._enqueue_event(topic text, partition_key text, event jsonb)
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
		OutboxFacts f;
		char	   *id = JsonbStringMember(ev, "id");
		char	   *json = JsonbToCString(NULL, &ev->root, VARSIZE(ev));

		/* the event is stored whole; the facts are for queries only */
		memset(&f, 0, sizeof(f));
		if (id == NULL || !ParseUuid(id, &f.event_id))
			GenerateUuidV7(&f.event_id);
		f.topic = topic;
		f.partition_key = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
		f.type = JsonbStringMember(ev, "type");
		if (f.type == NULL)
			f.type = "";
		f.subject = JsonbStringMember(ev, "subject");
		f.traceparent = "";
		f.data = json;
		f.data_len = strlen(json);
		EnqueueEvent(&f);
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
