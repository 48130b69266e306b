/*-------------------------------------------------------------------------
 *
 * cloudevent.c
 *	  Build CloudEvents 1.0 envelopes (structured JSON mode) as jsonb.
 *
 * Every event carries specversion, id (a UUIDv7, so ids sort by time and
 * stay stable across relay retries), source, type, time (RFC 3339),
 * datacontenttype, subject, partitionkey, data and, for Dapr subscribers,
 * topic and pubsubname; traceparent is added when the session set
 * taskevents.traceparent.  The envelope is assembled with the server's jsonb
 * API, never by pasting strings.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "port.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"
#include "access/xact.h"

#include "taskevents.h"

/*
 * Fill uuid with a version 7 UUID (RFC 9562): 48 bits of Unix time in
 * milliseconds, then random bits, with the version and variant set.
 */
void
GenerateUuidV7(pg_uuid_t *uuid)
{
	TimestampTz now = GetCurrentTimestamp();
	uint64		unix_ms;

	unix_ms = (uint64) (now / 1000) +
		(uint64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000;

	if (!pg_strong_random(uuid->data + 6, UUID_LEN - 6))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random values")));
	uuid->data[0] = (unix_ms >> 40) & 0xff;
	uuid->data[1] = (unix_ms >> 32) & 0xff;
	uuid->data[2] = (unix_ms >> 24) & 0xff;
	uuid->data[3] = (unix_ms >> 16) & 0xff;
	uuid->data[4] = (unix_ms >> 8) & 0xff;
	uuid->data[5] = unix_ms & 0xff;
	uuid->data[6] = (uuid->data[6] & 0x0f) | 0x70;	/* version 7 */
	uuid->data[8] = (uuid->data[8] & 0x3f) | 0x80;	/* RFC 4122 variant */
}

/*
 * Refuse topic names Kafka would refuse: 1 to 245 characters (room for the
 * "-dlq" suffix of the dead-letter topic) of [A-Za-z0-9._-], and not "." or
 * "..".
 */
void
ValidateTopicName(const char *topic)
{
	size_t		len;
	const char *p;

	if (topic == NULL || topic[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("topic must not be empty")));
	len = strlen(topic);
	if (len > TASKEVENTS_MAX_TOPIC_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("topic name is too long (%zu characters)", len),
				 errdetail("Kafka allows 249 characters and the dead-letter topic appends \"-dlq\", so at most %d are allowed.",
						   TASKEVENTS_MAX_TOPIC_LEN)));
	if (strcmp(topic, ".") == 0 || strcmp(topic, "..") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid topic name \"%s\"", topic)));
	for (p = topic; *p; p++)
	{
		unsigned char c = (unsigned char) *p;

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid topic name \"%s\"", topic),
					 errhint("Kafka topic names use only ASCII letters, digits, \".\", \"_\" and \"-\".")));
	}
}

/* ,"key":"escaped value" */
static void
AppendString(StringInfo buf, const char *key, const char *value)
{
	appendStringInfoChar(buf, ',');
	escape_json(buf, key);
	appendStringInfoChar(buf, ':');
	escape_json(buf, value);
}

/*
 * Build the CloudEvent for parts as JSON text, attributes first in a fixed
 * order, data last.  The event id is written to id_out when that is not
 * NULL.
 *
 * The outbox stores this text as it is (type json), so it is rendered once,
 * here, and the relay reads it without PostgreSQL rendering it again on
 * every read, which is what a jsonb column would cost (see "The outbox" in
 * README.md).  Every string goes through escape_json(); the data is
 * row_to_json() of the row or the text of a jsonb value, so the result is
 * always valid JSON.
 */
text *
BuildCloudEvent(const CloudEventParts *parts, pg_uuid_t *id_out)
{
	StringInfoData buf;
	pg_uuid_t	id;
	char		idbuf[37];
	char		timebuf[MAXDATELEN + 1];
	int			utc = 0;
	static const char hex[] = "0123456789abcdef";
	int			i,
				j;
	text	   *result;

	if (parts->id)
		id = *parts->id;
	else
		GenerateUuidV7(&id);
	for (i = 0, j = 0; i < UUID_LEN; i++)
	{
		if (i == 4 || i == 6 || i == 8 || i == 10)
			idbuf[j++] = '-';
		idbuf[j++] = hex[id.data[i] >> 4];
		idbuf[j++] = hex[id.data[i] & 0x0f];
	}
	idbuf[j] = '\0';
	if (id_out)
		*id_out = id;

	JsonEncodeDateTime(timebuf,
					   TimestampTzGetDatum(GetCurrentStatementStartTimestamp()),
					   TIMESTAMPTZOID, &utc);

	/* room for the varlena header, written in place at the end */
	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, "    ", VARHDRSZ);
	appendStringInfoString(&buf, "{\"specversion\":\"1.0\"");
	AppendString(&buf, "id", idbuf);
	AppendString(&buf, "source", parts->source);
	AppendString(&buf, "type", parts->type);
	if (parts->subject)
		AppendString(&buf, "subject", parts->subject);
	AppendString(&buf, "time", timebuf);
	AppendString(&buf, "datacontenttype", "application/json");
	if (parts->partitionkey)
		AppendString(&buf, "partitionkey", parts->partitionkey);
	AppendString(&buf, "topic", parts->topic);
	if (parts->pubsubname)
		AppendString(&buf, "pubsubname", parts->pubsubname);
	if (taskevents_traceparent && taskevents_traceparent[0] != '\0')
		AppendString(&buf, "traceparent", taskevents_traceparent);

	appendStringInfoString(&buf, ",\"data\":");
	if (parts->data_json)
		appendBinaryStringInfo(&buf, VARDATA_ANY(parts->data_json),
							   VARSIZE_ANY_EXHDR(parts->data_json));
	else if (parts->data)
		(void) JsonbToCString(&buf, &parts->data->root, VARSIZE(parts->data));
	else
		appendStringInfoString(&buf, "null");
	appendStringInfoChar(&buf, '}');

	result = (text *) buf.data;
	SET_VARSIZE(result, buf.len);
	return result;
}
