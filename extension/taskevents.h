/*-------------------------------------------------------------------------
 *
 * taskevents.h
 *	  Declarations shared by the pg_taskevents extension's C files.
 *
 * The extension turns row writes on attached task tables into CloudEvents
 * in the transactional outbox taskevents.outbox, and keeps recurring tasks
 * and reminders in the database.  One file per concern, from the bottom up
 * (a file calls only files listed above it):
 *
 *	util.c			column access, SPI result and array helpers, JSON strings,
 *					and RunAs(): the one way to run SQL as another role
 *	config.c		the extension's identity (schema, owner) and the per-table
 *					configuration cache of attached tables
 *	rowjson.c		a row's values as JSON, without the column names
 *	cloudevent.c	the CloudEvent JSON of every event (written by publish(),
 *					rendered from the outbox's facts for readers); UUIDv7 ids
 *	outbox.c		the outbox insert path; publish(), enqueue_event()
 *	recurrence.c	the date rule of recurring tasks and their next instance
 *	reminders.c		reminders kept in step with tasks; every reminder.* payload;
 *					schedule_reminders()
 *	firebatch.c		firing the due reminders of one table, set-based
 *	firing.c		fire_due_reminders(): a run over every due reminder
 *	trigger.c		the row trigger: task.* events, then recurrence and reminders
 *	removal.c		DROP EXTENSION refused while events are undelivered
 *	wakeup.c		a commit that wrote events wakes the waiting relay
 *	previous.c		the C functions only the previous version's SQL names
 *	pg_taskevents.c	module entry: every taskevents.* setting, cache callbacks
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKEVENTS_H
#define TASKEVENTS_H

#include "postgres.h"

#include "access/htup.h"
#include "access/skey.h"
#include "lib/stringinfo.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "pgtime.h"
#include "utils/uuid.h"

/* The library's version (the Makefile passes the .control file's). */
#ifndef TASKEVENTS_VERSION
#define TASKEVENTS_VERSION "unknown"
#endif
#define TASKEVENTS_VERSION_STRING TASKEVENTS_VERSION

#include "compat.h"

/* Maximum Kafka topic length (249) minus room for the "-dlq" suffix. */
#define TASKEVENTS_MAX_TOPIC_LEN	245

/* The topic of every reminder.* event (fixed: the brief names it). */
#define TASKEVENTS_REMINDERS_TOPIC	"reminders"

/* Settings (pg_taskevents.c) */
extern char *taskevents_traceparent;
extern int	taskevents_rotation_period;
extern char *taskevents_pubsubname;
extern bool taskevents_discard_undelivered;
extern char *taskevents_timezone;
extern int	taskevents_reminder_lead;

/* The kinds of events the row trigger emits. */
typedef enum TaskEventKind
{
	TASK_EVENT_NONE = 0,
	TASK_EVENT_CREATED,
	TASK_EVENT_UPDATED,
	TASK_EVENT_COMPLETED,
	TASK_EVENT_DELETED
} TaskEventKind;

/* The first members of every entry of a CreateRelidCache() table. */
typedef struct RelidCacheEntry
{
	Oid			relid;			/* hash key */
	bool		valid;			/* false once a relcache inval arrived */
} RelidCacheEntry;

/*
 * Cached configuration of one attached table: its registry row plus the
 * attribute numbers of the configured columns (InvalidAttrNumber where a
 * column is not configured).
 */
typedef struct TableConfig
{
	RelidCacheEntry cache;		/* relid (the hash key), valid */
	char	   *topic;
	char	   *source;
	char	   *pubsubname;
	AttrNumber	id_attnum;
	AttrNumber	user_id_attnum;
	AttrNumber	completed_attnum;
	AttrNumber	due_date_attnum;
	AttrNumber	is_recurring_attnum;
	AttrNumber	recurring_interval_attnum;
	AttrNumber	reminder_sent_at_attnum;
	bool		has_reminder_lead;	/* per-table override present */
	Interval	reminder_lead;
	/* output functions for the key and the user id */
	FmgrInfo	id_out;
	FmgrInfo	user_id_out;

	/*
	 * The envelopes of its events (taskevents.envelopes): task.* events carry
	 * only the row's values when an envelope holds the table's current column
	 * names (values_envelope), else the whole row (whole_envelope); reminder.*
	 * events use reminders_envelope.
	 */
	int32		values_envelope;	/* 0: none for the current columns */
	AttrNumber	values_skip_subject;	/* columns the values envelope derives */
	AttrNumber	values_skip_key;
	int32		whole_envelope;
	int32		reminders_envelope;
	struct RowJsonPlan *rowjson;	/* how to render the row's values */
	/* row_to_json(record): the whole row as JSON text, in column order */
	FmgrInfo	row_to_json;
} TableConfig;

/* util.c: column access, and SQL run as another role (see its header) */
typedef struct RoleContext
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
} RoleContext;

extern char *ColumnText(TupleTableSlot *slot, AttrNumber attnum);
extern bool ColumnIsTrue(TupleTableSlot *slot, AttrNumber attnum);
extern int64 SpiGetInt8(HeapTuple tup, TupleDesc desc, int col);
extern TimestampTz SpiGetTimestamp(HeapTuple tup, TupleDesc desc, int col);
extern Datum DatumArray(Datum *elems, bool *nulls, int n, Oid elemtype);
extern void EscapeJson(StringInfo buf, const char *str);
extern bool TableHasLayout(Relation rel, const Oid *types, int natts);
extern void CheckTableLayout(Relation rel, const Oid *types, int natts, const char *table);
extern const char *TakeBytes(const char **p, const char *end, int64 n, int sqlerrcode,
							 const char *message);
extern void InsertOwnRow(Relation rel, HeapTuple tup, const char *what, const char *name,
						 const char *detail);
extern void TextEqualKey(ScanKey key, Relation rel, AttrNumber attnum, const char *value);


extern HTAB *CreateRelidCache(const char *name, Size entrysize, MemoryContext cxt);
extern char *QualifiedEqualityOperator(Oid typid);
extern void EnterRoleContext(Oid role, RoleContext *ctx);
extern void LeaveRoleContext(RoleContext *ctx);
extern SPIPlanPtr PrepareAs(Oid role, const char *sql, int nargs, Oid *argtypes,
							bool lookup);

/* the argument types of a statement, as an array: OIDS(INT8OID, TEXTOID) */
#define OIDS(...)	((Oid[]) {__VA_ARGS__})
extern void KeepOwnerPlan(SPIPlanPtr *plan, const char *sql, int nargs,
						  Oid *argtypes, bool lookup);
extern int	RunAs(Oid role, SPIPlanPtr plan, Datum *values, const char *nulls,
				  bool read_only, long count);
extern int	RunSqlAs(Oid role, const char *sql, int nargs, Oid *argtypes,
					 Datum *values, const char *nulls, bool read_only, long count);

/* config.c */
extern TableConfig *GetTableConfig(Relation rel);
extern TableConfig *LookupTableConfig(Relation rel);
extern Oid	TaskeventsOwner(void);
extern Oid	TaskeventsSchema(void);
extern void ResetExtensionIdentity(void);
extern void InitConfigCache(void);

/* rowjson.c */
typedef struct RowJsonPlan RowJsonPlan;

/* A value of a row rendered from its text (the subject, the partition key). */
typedef struct DerivedValue
{
	int			at;				/* its position among the names, 1-based */
	char		kind;			/* 'n' or 's', see JsonDerivable() */
	const char *text;			/* NULL: JSON null */
} DerivedValue;

extern RowJsonPlan *MakeRowJsonPlan(TupleDesc desc, MemoryContext cxt);
extern void FreeRowJsonPlan(RowJsonPlan *plan);
extern void AppendRowValues(StringInfo buf, RowJsonPlan *plan, TupleTableSlot *slot,
							AttrNumber skip1, AttrNumber skip2);
extern char JsonDerivable(Oid typid);
extern bool AppendRowObject(StringInfo buf, char **escaped_names,
							const int *name_lens, int nnames,
							const char *values, int len,
							const DerivedValue *d1, const DerivedValue *d2);

/*
 * Append n bytes to buf: appendBinaryStringInfo() inlined, for the many
 * short pieces of a rendered event (enlargeStringInfo() is called only when
 * they do not fit).
 */
static inline void
AppendBytes(StringInfo buf, const char *data, int n)
{
	if (buf->len + n >= buf->maxlen)
		enlargeStringInfo(buf, n);
	memcpy(buf->data + buf->len, data, n);
	buf->len += n;
	buf->data[buf->len] = '\0';
}

/* cloudevent.c */
typedef struct CloudEventParts
{
	pg_uuid_t  *id;
	TimestampTz time;
	const char *type;
	const char *source;			/* or source_json, already JSON-escaped */
	const char *source_json;
	const char *subject;		/* may be NULL */
	const char *partitionkey;	/* may be NULL */
	const char *topic;
	const char *pubsubname;		/* may be NULL; or pubsubname_json */
	const char *pubsubname_json;
	const char *traceparent;	/* may be NULL or empty: none */
	const char *data_text;		/* JSON text of data, or with row_names the
								 * row's values (rowjson.c) */
	int			data_len;
	char	  **row_names;		/* JSON-escaped column names, or NULL */
	const int  *row_name_lens;	/* their lengths */
	int			row_ncolumns;
	DerivedValue row_subject;	/* the values left out of data_text */
	DerivedValue row_key;
	Jsonb	   *data;			/* used when data_text is NULL; NULL: null */
} CloudEventParts;

extern text *BuildCloudEvent(const CloudEventParts *parts);
extern void AppendOutboxEvent(StringInfo buf, const NullableDatum *args,
							  const char *topic);
extern const char *OutboxEventTopic(const NullableDatum *args);
extern void GenerateUuidV7(pg_uuid_t *uuid);
extern void ValidateTopicName(const char *topic);
extern void InitEnvelopeCache(void);

/* outbox.c */

/*
 * The facts of one event as the outbox stores them (the columns of
 * taskevents.outbox that the writer chooses; txid, id, time and slot are
 * added by EnqueueEvent).
 */
typedef struct OutboxFacts
{
	pg_uuid_t	event_id;
	int32		envelope;		/* 0: data is the complete CloudEvent */
	const char *topic;			/* the envelope's, if it has one: stored as '' */
	const char *partition_key;	/* may be NULL */
	const char *type;			/* without the envelope's type_prefix */
	const char *subject;		/* may be NULL */
	const char *traceparent;	/* may be NULL or empty: none */
	const char *data;			/* JSON text (see outbox.data) */
	int			data_len;
} OutboxFacts;

extern void EnqueueEvent(const OutboxFacts *f);
extern void BufferEvent(const OutboxFacts *f);
extern void FlushPendingEvents(void);
extern void InitPendingEvents(void);

/*
 * OUTBOX_EARLIER_LAYOUT: outbox.earlier, the events of a row before the
 * one its columns hold (ids id - n .. id - 1, in order): a uint32 n, then
 * n records of
 *		16 bytes	event_id
 *		uint32		length of type, then type
 *		uint32		length of subject (-1: NULL), then subject
 *		uint32		length of partition_key (-1: NULL), then it
 *		uint32		length of data, then data
 * every integer in network byte order.  The rest of the columns (txid,
 * created_at, envelope, slot, topic, traceparent) are the same for all.
 */
typedef struct OutboxRecord
{
	pg_uuid_t	event_id;
	const char *type;
	int			type_len;
	const char *subject;		/* NULL: none */
	int			subject_len;
	const char *partition_key;	/* NULL: none */
	int			partition_key_len;
	const char *data;
	int			data_len;
} OutboxRecord;

/* the columns of one event of a row, as OutboxRecordDatums() gives them */
#define OUTBOX_EVENT_ID			0
#define OUTBOX_EVENT_TYPE		1
#define OUTBOX_EVENT_SUBJECT	2
#define OUTBOX_EVENT_KEY		3
#define OUTBOX_EVENT_DATA		4
#define OUTBOX_EVENT_NCOLUMNS	5

extern void ReadOutboxRecord(const char **p, const char *end, OutboxRecord *r);
extern void OutboxRecordDatums(const OutboxRecord *r, pg_uuid_t *uuid, Datum *values,
							   bool *nulls);
extern int32 OutboxEarlierCount(bytea *earlier, const char **records, const char **end);
extern void EmitTableEvent(TableConfig *cfg, const char *topic, const char *type,
						   const char *subject, const char *partition_key,
						   Jsonb *data);

/* wakeup.c */
extern void InitWakeup(void);
extern void NoteEventWritten(void);

/* recurrence.c */
typedef enum RecurrenceKind
{
	RECURRENCE_DAILY,
	RECURRENCE_WEEKLY,
	RECURRENCE_MONTHLY
} RecurrenceKind;

extern RecurrenceKind ParseRecurringInterval(const char *value);
extern pg_tz *ScheduleTimeZone(const char *name);
extern bool NextOccurrence(RecurrenceKind kind, pg_tz *tz,
						   TimestampTz due, bool due_null,
						   TimestampTz after, bool after_null,
						   TimestampTz anchor, bool anchor_null,
						   TimestampTz *result);
extern void CheckRecurrence(TableConfig *cfg, Relation rel, TupleTableSlot *row);
extern void SpawnNextInstance(TableConfig *cfg, TriggerData *trigdata);
extern void InitRecurrenceCache(void);

/* reminders.c */

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

/* The state of one version of a task row that matters for its reminder. */
typedef struct ReminderView
{
	char	   *task_id;
	char	   *user_id;
	bool		completed;
	bool		due_null;
	TimestampTz due;
} ReminderView;

extern Jsonb *ReminderData(const ReminderFacts *f);
extern void EmitReminderEvent(TableConfig *cfg, const char *type,
							  const ReminderFacts *f, const char *partition_key);
extern void RunBookkeeping(SPIPlanPtr plan, Datum *values, const char *nulls,
						   int expected);
extern bool ScheduleReminder(TableConfig *cfg, Oid relid, ReminderView *v,
							 TimestampTz now);
extern void UpdateReminder(TableConfig *cfg, TriggerData *trigdata,
						   TaskEventKind kind);
extern bool IsReminderBookkeepingUpdate(Oid relid);
extern void SetReminderBookkeeping(Oid relid);

/* firebatch.c */
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

/*
 * The statements FireGroup runs on one task table, as its owner.
 */
typedef struct TaskTableSql
{
	Oid			idtype;
	Oid			idarraytype;
	char	   *lock;			/* lockable rows among $1 (id array), with
								 * their ctids */
	char	   *exists;			/* rows among $1, locked or not */
	char	   *set_sent;		/* reminder_sent_at = $2 for the rows at the
								 * ctids $1 (locked), or NULL */
	int			title_col;		/* 0: the table has no "title" */
} TaskTableSql;


extern void BuildTaskTableSql(Relation rel, TableConfig *cfg, TaskTableSql *ts);
extern void FireGroup(Relation rel, TableConfig *cfg, TaskTableSql *ts,
					  DueReminder **r, int n, const char *run_id,
					  TimestampTz now);
extern void SetDueState(DueReminder **r, int n, DueOutcome outcome);

#endif							/* TASKEVENTS_H */
