/*-------------------------------------------------------------------------
 *
 * taskevents.h
 *	  Declarations shared by the pg_taskevents extension's C files.
 *
 * The extension turns row writes on attached task tables into CloudEvents
 * that are inserted into the transactional outbox taskevents.outbox.  The
 * files are split by concern: configuration cache (config.c), CloudEvent
 * construction (cloudevent.c), the outbox insert path (outbox.c), the row
 * trigger (trigger.c) and the recurrence/reminder hooks (schedule.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKEVENTS_H
#define TASKEVENTS_H

#include "postgres.h"

#include "access/htup.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "compat.h"

#define TASKEVENTS_SCHEMA	"taskevents"

/* Maximum Kafka topic length (249) minus room for the "-dlq" suffix. */
#define TASKEVENTS_MAX_TOPIC_LEN	245

/* Settings (pg_taskevents.c) */
extern char *taskevents_traceparent;
extern int	taskevents_rotation_period;
extern char *taskevents_pubsubname;

/* The kinds of events the row trigger emits. */
typedef enum TaskEventKind
{
	TASK_EVENT_NONE = 0,
	TASK_EVENT_CREATED,
	TASK_EVENT_UPDATED,
	TASK_EVENT_COMPLETED,
	TASK_EVENT_DELETED
} TaskEventKind;

/*
 * Cached configuration of one attached table: its registry row plus the
 * attribute numbers of the configured columns (InvalidAttrNumber where a
 * column is not configured).
 */
typedef struct TableConfig
{
	Oid			relid;			/* hash key */
	bool		valid;			/* false once a relcache inval arrived */
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
	/* row_to_json(record): the row as JSON text, in column order */
	FmgrInfo	row_to_json;
} TableConfig;

/* config.c */
extern TableConfig *GetTableConfig(Relation rel);
extern Oid	TaskeventsOwner(void);
extern void InitConfigCache(void);

/* cloudevent.c */
typedef struct CloudEventParts
{
	const char *type;
	const char *source;
	const char *subject;		/* may be NULL */
	const char *partitionkey;	/* may be NULL */
	const char *topic;
	const char *pubsubname;		/* may be NULL */
	Jsonb	   *data;			/* may be NULL */
	text	   *data_json;		/* JSON text, used instead of data when set */
	pg_uuid_t  *id;				/* NULL: generate a UUIDv7 */
} CloudEventParts;

extern text *BuildCloudEvent(const CloudEventParts *parts, pg_uuid_t *id_out);
extern void GenerateUuidV7(pg_uuid_t *uuid);
extern void ValidateTopicName(const char *topic);

/* outbox.c */
extern void EnqueueEvent(const char *topic, const char *partition_key,
						 text *event);

/* schedule.c: recurrence and reminder hooks, called after the row event */
extern void DefineScheduleSettings(void);
extern void ScheduleAfterRowEvent(TableConfig *cfg, TriggerData *trigdata,
								  TaskEventKind kind);

/* ---- schedule.c, recurrence.c, reminders.c ---- */
#include "pgtime.h"

/* The reminders topic (fixed: the brief names it). */
#define TASKEVENTS_REMINDERS_TOPIC	"reminders"

extern char *taskevents_timezone;
extern int	taskevents_reminder_lead;

typedef enum RecurrenceKind
{
	RECURRENCE_DAILY,
	RECURRENCE_WEEKLY,
	RECURRENCE_MONTHLY
} RecurrenceKind;

extern char *ColumnText(HeapTuple tup, TupleDesc desc, AttrNumber attnum);
extern bool ColumnIsTrue(HeapTuple tup, TupleDesc desc, AttrNumber attnum);
extern void EmitScheduleEvent(TableConfig *cfg, const char *type,
							  const char *subject, const char *partition_key,
							  Jsonb *data);
extern bool IsReminderBookkeepingUpdate(Oid relid);
extern SPIPlanPtr PrepareKept(const char *sql, int nargs, Oid *argtypes,
							  bool lookup, bool as_owner);

/* recurrence.c */
extern RecurrenceKind ParseRecurringInterval(const char *value);
extern pg_tz *ScheduleTimeZone(const char *name);
extern bool NextOccurrence(RecurrenceKind kind, pg_tz *tz,
						   TimestampTz due, bool due_null,
						   TimestampTz after, bool after_null,
						   TimestampTz anchor, bool anchor_null,
						   TimestampTz *result);
extern void CheckRecurrence(TableConfig *cfg, Relation rel, HeapTuple row);
extern void SpawnNextInstance(TableConfig *cfg, TriggerData *trigdata);
extern void InitRecurrenceCache(void);

/* reminders.c */
extern void UpdateReminder(TableConfig *cfg, TriggerData *trigdata,
						   TaskEventKind kind);
/* ---- end of schedule.c, recurrence.c, reminders.c ---- */

#endif							/* TASKEVENTS_H */
