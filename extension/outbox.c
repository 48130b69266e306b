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
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "taskevents.h"

static SPIPlanPtr InsertPlan = NULL;

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
 * Insert one event into the outbox in the current transaction.
 */
void
EnqueueEvent(const char *topic, const char *partition_key, Jsonb *event)
{
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	Oid			save_userid;
	int			save_sec_context;
	int			ret;

	/* the xid first, then the id (the default of outbox.id) */
	(void) GetTopTransactionId();

	values[0] = Int16GetDatum(CurrentSlot());
	values[1] = TimestampTzGetDatum(GetCurrentStatementStartTimestamp());
	values[2] = CStringGetTextDatum(topic);
	if (partition_key)
		values[3] = CStringGetTextDatum(partition_key);
	else
	{
		values[3] = (Datum) 0;
		nulls[3] = 'n';
	}
	values[4] = JsonbPGetDatum(event);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(TaskeventsOwner(),
						   save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);

	if (InsertPlan == NULL)
	{
		Oid			argtypes[5] = {INT2OID, TIMESTAMPTZOID, TEXTOID, TEXTOID, JSONBOID};
		SPIPlanPtr	plan;

		plan = SPI_prepare("INSERT INTO taskevents.outbox"
						   " (slot, created_at, topic, partition_key, event)"
						   " VALUES ($1, $2, $3, $4, $5)",
						   5, argtypes);
		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		InsertPlan = plan;
	}

	ret = SPI_execute_plan(InsertPlan, values, nulls, false, 0);
	SetUserIdAndSecContext(save_userid, save_sec_context);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "inserting into taskevents.outbox failed: %s",
			 SPI_result_code_string(ret));

	SPI_finish();
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
	Jsonb	   *event;

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
	EnqueueEvent(topic,
				 PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1)),
				 PG_GETARG_JSONB_P(2));
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
