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
#include <limits.h>

#include "access/genam.h"
#include "access/heapam.h"
#include "access/table.h"
#include "access/xact.h"
#include "tcop/utility.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/sequence.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "executor/executor.h"
#include "nodes/execnodes.h"
#include "nodes/makefuncs.h"
#include "nodes/pg_list.h"
#include "port/pg_bswap.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
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

/*
 * outbox.earlier of a row of one event: an empty bytea (one byte in the
 * row; NULL would give every row a null bitmap, 8 bytes with alignment)
 */
static Datum
NoEarlierEvents(void)
{
	static bytea *empty = NULL;

	if (empty == NULL)
	{
		empty = MemoryContextAlloc(TopMemoryContext, VARHDRSZ);
		SET_VARSIZE(empty, VARHDRSZ);
	}
	return PointerGetDatum(empty);
}
static Oid	OutboxSequence = InvalidOid;
static MemoryContext OutboxContext = NULL;

/* The outbox's columns (see extension/sql/00_outbox.sql). */
#define OUTBOX_NATTS		13
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
#define Anum_earlier		13

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
	TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, BYTEAOID
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

/*
 * The record of event f (OUTBOX_EARLIER_LAYOUT's fields): the strings are
 * f's.
 */
static void
RecordFromFacts(const OutboxFacts *f, OutboxRecord *r)
{
	r->event_id = f->event_id;
	r->type = f->type;
	r->type_len = strlen(f->type);
	r->subject = f->subject;
	r->subject_len = f->subject ? strlen(f->subject) : 0;
	r->partition_key = f->partition_key;
	r->partition_key_len = f->partition_key ? strlen(f->partition_key) : 0;
	r->data = f->data;
	r->data_len = f->data_len;
}

static Datum
TextOrNull(const char *s, int len, bool *isnull)
{
	*isnull = (s == NULL);
	return s ? PointerGetDatum(cstring_to_text_with_len(s, len)) : (Datum) 0;
}

/*
 * The columns of the event of record r, in the order of OUTBOX_EVENT_*:
 * event_id (a copy of it in *uuid), type, subject, partition_key, data.
 */
void
OutboxRecordDatums(const OutboxRecord *r, pg_uuid_t *uuid, Datum *values, bool *nulls)
{
	*uuid = r->event_id;
	values[OUTBOX_EVENT_ID] = UUIDPGetDatum(uuid);
	nulls[OUTBOX_EVENT_ID] = false;
	values[OUTBOX_EVENT_TYPE] = TextOrNull(r->type, r->type_len, &nulls[OUTBOX_EVENT_TYPE]);
	values[OUTBOX_EVENT_SUBJECT] = TextOrNull(r->subject, r->subject_len,
											  &nulls[OUTBOX_EVENT_SUBJECT]);
	values[OUTBOX_EVENT_KEY] = TextOrNull(r->partition_key, r->partition_key_len,
										  &nulls[OUTBOX_EVENT_KEY]);
	values[OUTBOX_EVENT_DATA] = TextOrNull(r->data, r->data_len, &nulls[OUTBOX_EVENT_DATA]);
}

/*
 * The id of the next event: the top-level transaction id is assigned
 * first (see "The outbox" in README.md).
 */
static int64
DrawEventId(void)
{
	(void) GetTopFullTransactionId();
	if (!OidIsValid(OutboxSequence))
		ResolveOutbox();
	return nextval_internal(OutboxSequence, false);
}

/*
 * Insert one outbox row in the current transaction: the event of record r,
 * with id and the events before it in earlier (an empty bytea for none).
 *
 * The row goes straight into the partition of slot with heap_insert() and
 * its two index entries with index_insert(), without planning or executing
 * an INSERT and without an executor state: per event that is most of the
 * difference between a cheap trigger and one as costly as PL/pgSQL.
 * Everything an INSERT would have checked holds here: no NULL in a NOT NULL
 * column, the row's slot matches its partition, and the outbox has no
 * triggers, rules, foreign keys, check constraints or expression indexes.
 * No privilege check: this is the extension writing its own table, which
 * is why application roles need no grant.
 */
static void
InsertOutboxRow(int16 slot, int64 id, TimestampTz created_at, int32 envelope,
				const char *topic, const char *traceparent,
				const OutboxRecord *r, Datum earlier)
{
	Relation	rel = OpenPartition(slot);
	OutboxPartitionInfo *part = &Partitions[slot];
	Datum		values[OUTBOX_NATTS];
	bool		isnull[OUTBOX_NATTS];
	Datum		ev[OUTBOX_EVENT_NCOLUMNS];
	bool		evnull[OUTBOX_EVENT_NCOLUMNS];
	pg_uuid_t	uuid;
	HeapTuple	tup;

	OutboxRecordDatums(r, &uuid, ev, evnull);
	memset(isnull, 0, sizeof(isnull));
	values[Anum_txid - 1] = FullTransactionIdGetDatum(GetTopFullTransactionId());
	values[Anum_id - 1] = Int64GetDatum(id);
	values[Anum_created_at - 1] = TimestampTzGetDatum(created_at);
	values[Anum_event_id - 1] = ev[OUTBOX_EVENT_ID];
	values[Anum_envelope - 1] = Int32GetDatum(envelope);
	isnull[Anum_envelope - 1] = (envelope == 0);
	values[Anum_slot - 1] = Int16GetDatum(slot);
	values[Anum_topic - 1] = CStringGetTextDatum(topic);
	values[Anum_partition_key - 1] = ev[OUTBOX_EVENT_KEY];
	isnull[Anum_partition_key - 1] = evnull[OUTBOX_EVENT_KEY];
	values[Anum_type - 1] = ev[OUTBOX_EVENT_TYPE];
	values[Anum_subject - 1] = ev[OUTBOX_EVENT_SUBJECT];
	isnull[Anum_subject - 1] = evnull[OUTBOX_EVENT_SUBJECT];
	values[Anum_traceparent - 1] = CStringGetTextDatum(traceparent);
	values[Anum_data - 1] = ev[OUTBOX_EVENT_DATA];
	values[Anum_earlier - 1] = earlier;

	tup = heap_form_tuple(RelationGetDescr(rel), values, isnull);
	heap_insert(rel, tup, GetCurrentCommandId(true), 0, NULL);
	InsertIndexEntries(part, rel, tup, values, isnull);
	heap_freetuple(tup);
	table_close(rel, NoLock);	/* the lock is kept until commit, as by INSERT */
}

/* The topic column of event f: '' when its envelope has it (_event_topic) */
static inline const char *
StoredTopic(const OutboxFacts *f)
{
	return f->envelope != 0 ? "" : f->topic;
}

/* Insert one event into the outbox in the current transaction, at once. */
void
EnqueueEvent(const OutboxFacts *f)
{
	OutboxRecord r;
	int64		id = DrawEventId();

	RecordFromFacts(f, &r);
	InsertOutboxRow(CurrentSlot(), id, GetCurrentStatementStartTimestamp(), f->envelope,
					StoredTopic(f), f->traceparent ? f->traceparent : "", &r,
					NoEarlierEvents());
	NoteEventWritten();
}

/*
 * The events of a statement, written as few rows.
 *
 * The row trigger does not write its event: BufferEvent() draws the id
 * (after the transaction id, as EnqueueEvent) and appends the event's
 * facts to a pending row, and the pending row is written when the
 * statement is done with its triggers (the ExecutorFinish and
 * ProcessUtility hooks below), when the next event cannot join it, and at
 * the latest before the transaction commits or prepares.  Events join one
 * row while their ids follow each other and they share the transaction,
 * statement time, partition, envelope, topic and traceparent; the row's
 * columns are the last event's, and column "earlier" holds the events
 * before it (OUTBOX_EARLIER_LAYOUT in taskevents.h).  So a bulk statement
 * of one session writes one row, with one entry in each index, for up to
 * PENDING_ROW_BYTES of events instead of one per event; a statement of
 * one row writes the row it always did.
 *
 * A pending row belongs to the subtransaction that buffered its events:
 * it is written only while that subtransaction is the current one, its
 * events are dropped with it when it aborts, and pass to its parent when
 * it commits (a row written inside a subtransaction that then aborts
 * would lose events its parent committed).
 *
 * The partition is opened (and locked) when the row is written, not when
 * its first event is buffered.  A rotation that truncates the partition
 * in between truncates none of these events: they are written into the
 * emptied partition afterwards, and the next rotation's check finds them
 * pending, as it finds any later writer's.
 *
 * Where no hook surrounds the trigger (the statement during which the
 * library was loaded, a logical replication apply worker), BufferDepth is
 * 0 and each event is written at once, as before.
 */
typedef struct PendingRow
{
	SubTransactionId subxid;
	int16		slot;
	int32		envelope;
	TimestampTz created_at;
	int64		last_id;
	int32		nevents;
	int			last_at;		/* where the last event's record starts */
	char	   *topic;
	char	   *traceparent;
	StringInfoData buf;			/* varlena header, count, records */
} PendingRow;

/*
 * Bytes of records in one row: the row stays whole in one page.  A page
 * takes a tuple of 8,160 bytes, and the toaster leaves one alone up to
 * toast_tuple_target (8,160) less its header; the rest of the row (its
 * fixed columns, topic, traceparent, the last event's own columns) is at
 * most a few hundred bytes more than its record.
 */
#define PENDING_ROW_BYTES 7700
#define MAX_PENDING_ROWS 64

static PendingRow PendingRows[MAX_PENDING_ROWS];
static int	NPendingRows = 0;
static MemoryContext PendingContext = NULL;
static int	BufferDepth = 0;
static ExecutorFinish_hook_type prev_ExecutorFinish = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/* Take n bytes at *p of an "earlier" value that ends at end, or fail. */
static inline const char *
TakeEarlier(const char **p, const char *end, int64 n)
{
	return TakeBytes(p, end, n, ERRCODE_DATA_CORRUPTED,
					 "outbox row has a malformed \"earlier\" value");
}

/* A counted string at *p (NULL for the length -1) and its length. */
static const char *
TakeCounted(const char **p, const char *end, int *len, bool nullable)
{
	uint32		w;

	memcpy(&w, TakeEarlier(p, end, 4), 4);
	w = pg_ntoh32(w);
	if (w == (uint32) -1 && nullable)
	{
		*len = 0;
		return NULL;
	}
	*len = (int) w;
	return TakeEarlier(p, end, w > (uint32) INT_MAX ? -1 : (int64) w);
}

/*
 * Read the record at *p (OUTBOX_EARLIER_LAYOUT), which ends before end,
 * into r, whose strings point into the record (not NUL-terminated), and
 * advance *p past it.
 */
void
ReadOutboxRecord(const char **p, const char *end, OutboxRecord *r)
{
	memcpy(r->event_id.data, TakeEarlier(p, end, UUID_LEN), UUID_LEN);
	r->type = TakeCounted(p, end, &r->type_len, false);
	r->subject = TakeCounted(p, end, &r->subject_len, true);
	r->partition_key = TakeCounted(p, end, &r->partition_key_len, true);
	r->data = TakeCounted(p, end, &r->data_len, false);
}

static inline void
AppendCounted(StringInfo buf, const char *s, int len)
{
	uint32		w = pg_hton32(s ? (uint32) len : (uint32) -1);

	appendBinaryStringInfo(buf, (char *) &w, 4);
	if (s)
		appendBinaryStringInfo(buf, s, len);
}

/* The size of record r in OUTBOX_EARLIER_LAYOUT. */
static inline int
RecordSize(const OutboxRecord *r)
{
	return UUID_LEN + 16 + r->type_len + r->subject_len + r->partition_key_len + r->data_len;
}

/* Append record r (OUTBOX_EARLIER_LAYOUT) to buf. */
static void
AppendRecord(StringInfo buf, const OutboxRecord *r)
{
	enlargeStringInfo(buf, RecordSize(r));
	appendBinaryStringInfo(buf, (char *) r->event_id.data, UUID_LEN);
	AppendCounted(buf, r->type, r->type_len);
	AppendCounted(buf, r->subject, r->subject_len);
	AppendCounted(buf, r->partition_key, r->partition_key_len);
	AppendCounted(buf, r->data, r->data_len);
}

/* Write pending row p into its partition. */
static void
WritePendingRow(PendingRow *p)
{
	OutboxRecord last;
	const char *at = p->buf.data + p->last_at;
	Datum		earlier = NoEarlierEvents();

	ReadOutboxRecord(&at, p->buf.data + p->buf.len, &last);
	if (p->nevents > 1)
	{
		uint32		n = pg_hton32((uint32) (p->nevents - 1));

		SET_VARSIZE(p->buf.data, p->last_at);
		memcpy(p->buf.data + VARHDRSZ, &n, 4);
		earlier = PointerGetDatum(p->buf.data);
	}
	InsertOutboxRow(p->slot, p->last_id, p->created_at, p->envelope, p->topic,
					p->traceparent, &last, earlier);
}

/* Forget the top pending row. */
static void
PopPendingRow(void)
{
	PendingRow *p = &PendingRows[--NPendingRows];

	pfree(p->buf.data);
	pfree(p->topic);
	pfree(p->traceparent);
	if (NPendingRows == 0)
		MemoryContextReset(PendingContext);
}

/*
 * Write the pending rows of the current subtransaction (those of its
 * parents wait until it is over).
 */
void
FlushPendingEvents(void)
{
	SubTransactionId cur;

	if (NPendingRows == 0)
		return;
	cur = GetCurrentSubTransactionId();
	while (NPendingRows > 0 && PendingRows[NPendingRows - 1].subxid == cur)
	{
		WritePendingRow(&PendingRows[NPendingRows - 1]);
		PopPendingRow();
	}
}

/*
 * Buffer the event f of a task table's row (see above), or write it at
 * once when no hook will write it at the end of the statement.
 */
void
BufferEvent(const OutboxFacts *f)
{
	SubTransactionId cur = GetCurrentSubTransactionId();
	int16		slot = CurrentSlot();
	TimestampTz ts = GetCurrentStatementStartTimestamp();
	const char *topic = StoredTopic(f);
	const char *tp = f->traceparent ? f->traceparent : "";
	PendingRow *p = NPendingRows > 0 ? &PendingRows[NPendingRows - 1] : NULL;
	OutboxRecord r;
	int64		id;

	if (BufferDepth == 0)
	{
		EnqueueEvent(f);
		return;
	}
	id = DrawEventId();
	NoteEventWritten();
	RecordFromFacts(f, &r);

	if (p != NULL && p->subxid != cur)
		p = NULL;				/* a parent's: it waits */
	else if (p != NULL &&
			 (p->last_id + 1 != id || p->slot != slot || p->envelope != f->envelope ||
			  p->created_at != ts || strcmp(p->topic, topic) != 0 ||
			  strcmp(p->traceparent, tp) != 0 ||
			  p->buf.len + RecordSize(&r) > PENDING_ROW_BYTES))
	{
		WritePendingRow(p);
		PopPendingRow();
		p = NULL;
	}
	if (p == NULL)
	{
		MemoryContext old;

		if (NPendingRows == MAX_PENDING_ROWS)
		{
			/* subtransactions nested this deep: write the event at once */
			InsertOutboxRow(slot, id, ts, f->envelope, topic, tp, &r, NoEarlierEvents());
			return;
		}
		if (PendingContext == NULL)
			PendingContext = AllocSetContextCreate(TopMemoryContext, "taskevents pending events",
												   ALLOCSET_DEFAULT_SIZES);
		old = MemoryContextSwitchTo(PendingContext);
		p = &PendingRows[NPendingRows++];
		p->subxid = cur;
		p->slot = slot;
		p->envelope = f->envelope;
		p->created_at = ts;
		p->nevents = 0;
		p->topic = pstrdup(topic);
		p->traceparent = pstrdup(tp);
		initStringInfo(&p->buf);
		appendBinaryStringInfo(&p->buf, "\0\0\0\0\0\0\0\0", VARHDRSZ + 4);
		MemoryContextSwitchTo(old);
	}
	p->last_id = id;
	p->last_at = p->buf.len;
	p->nevents++;
	AppendRecord(&p->buf, &r);
}

static void
PendingXactCallback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			FlushPendingEvents();
			/* (a subtransaction's would be; failing beats losing them) */
			if (NPendingRows > 0)
				elog(ERROR, "%d rows of pending events are left at commit", NPendingRows);
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			NPendingRows = 0;
			if (PendingContext)
				MemoryContextReset(PendingContext);
			break;
		default:
			break;
	}
}

static void
PendingSubXactCallback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		for (int i = NPendingRows - 1; i >= 0 && PendingRows[i].subxid == mySubid; i--)
			PendingRows[i].subxid = parentSubid;
	}
	else if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		while (NPendingRows > 0 && PendingRows[NPendingRows - 1].subxid == mySubid)
			PopPendingRow();
	}
}

static void
PendingExecutorFinish(QueryDesc *queryDesc)
{
	BufferDepth++;
	PG_TRY();
	{
		if (prev_ExecutorFinish)
			prev_ExecutorFinish(queryDesc);
		else
			standard_ExecutorFinish(queryDesc);
	}
	PG_FINALLY();
	{
		BufferDepth--;
	}
	PG_END_TRY();
	FlushPendingEvents();
}

static void
PendingProcessUtility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					  ProcessUtilityContext context, ParamListInfo params,
					  QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	BufferDepth++;
	PG_TRY();
	{
		if (prev_ProcessUtility)
			prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
									queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		BufferDepth--;
	}
	PG_END_TRY();
	FlushPendingEvents();
}

/* Install the hooks and callbacks of the pending rows; from _PG_init. */
void
InitPendingEvents(void)
{
	prev_ExecutorFinish = ExecutorFinish_hook;
	ExecutorFinish_hook = PendingExecutorFinish;
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = PendingProcessUtility;
	RegisterXactCallback(PendingXactCallback, NULL);
	RegisterSubXactCallback(PendingSubXactCallback, NULL);
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

/*
 * The number of records of an outbox row's "earlier" value, checked; they
 * lie from *records to *end.
 */
int32
OutboxEarlierCount(bytea *earlier, const char **records, const char **end)
{
	const char *p = VARDATA_ANY(earlier);
	uint32		n;

	*end = p + VARSIZE_ANY_EXHDR(earlier);
	*records = p;
	if (p == *end)
		return 0;				/* a row of one event */
	memcpy(&n, TakeEarlier(&p, *end, 4), 4);
	n = pg_ntoh32(n);
	/* each record takes at least UUID_LEN + 16 bytes */
	if (n == 0 || n > (uint32) ((*end - p) / (UUID_LEN + 16)))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("outbox row has a malformed \"earlier\" value")));
	*records = p;
	return (int32) n;
}

/*
 * taskevents._outbox_earlier(earlier bytea) RETURNS integer
 *
 * How many events an outbox row holds before its own: 0 for NULL.
 */
PG_FUNCTION_INFO_V1(outbox_earlier);
Datum
outbox_earlier(PG_FUNCTION_ARGS)
{
	const char *records,
			   *end;

	if (PG_ARGISNULL(0))
		PG_RETURN_INT32(0);
	PG_RETURN_INT32(OutboxEarlierCount(PG_GETARG_BYTEA_PP(0), &records, &end));
}

/*
 * taskevents._outbox_unpack(id bigint, event_id uuid, type text, subject
 * text, partition_key text, data text, earlier bytea) RETURNS TABLE (id
 * bigint, event_id uuid, type text, subject text, partition_key text, data
 * text)
 *
 * The events of an outbox row in id order (see "The events of a
 * statement" above): those of earlier, then the row's own.
 */
PG_FUNCTION_INFO_V1(outbox_unpack);
Datum
outbox_unpack(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		values[6];
	bool		nulls[6];
	int64		id;

	InitMaterializedSRF(fcinfo, 0);
	if (PG_ARGISNULL(0))
		return (Datum) 0;
	id = PG_GETARG_INT64(0);
	if (!PG_ARGISNULL(6))
	{
		const char *p,
				   *end;
		int32		n = OutboxEarlierCount(PG_GETARG_BYTEA_PP(6), &p, &end);

		for (int32 i = 0; i < n; i++)
		{
			OutboxRecord r;
			pg_uuid_t	uuid;

			/* the columns after id are OutboxRecordDatums()' */
			ReadOutboxRecord(&p, end, &r);
			OutboxRecordDatums(&r, &uuid, values + 1, nulls + 1);
			values[0] = Int64GetDatum(id - n + i);
			nulls[0] = false;
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
		if (p != end)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("outbox row has a malformed \"earlier\" value")));
	}
	for (int i = 0; i < 6; i++)
	{
		values[i] = PG_GETARG_DATUM(i);
		nulls[i] = PG_ARGISNULL(i);
	}
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}
