/*-------------------------------------------------------------------------
 *
 * cloudevent.c
 *	  The CloudEvents 1.0 JSON (structured mode) of every event: one writer.
 *
 * Every event carries specversion, id (a UUIDv7, so ids sort by time and
 * stay stable across relay retries), source, type, time (RFC 3339),
 * datacontenttype, subject, partitionkey, data and, for Dapr subscribers,
 * topic and pubsubname; traceparent when the writing session set
 * taskevents.traceparent.  AppendCloudEvent() writes them in a fixed
 * order, every string through EscapeJson() (escape_json()'s output, see
 * util.c), data last.
 *
 * The events of attached tables are stored as facts (outbox.c): the reader
 * renders them with taskevents._event_json(), from the row's columns and
 * its envelope (source, pubsubname and the table's column names, cached
 * per backend); publish() stores the event it renders at once.  Both go
 * through AppendCloudEvent(), so an event reads the same whichever way it
 * was stored.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "port.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/catcache.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"
#include "access/xact.h"

#include "taskevents.h"

/*
 * Random bytes for UUIDs, drawn from pg_strong_random() a buffer at a time
 * (one call costs a system call and OpenSSL's lookups, as much as the rest
 * of an event's id).  The bytes belong to the process that drew them
 * (RandomBufPid): a process forked after the postmaster or a parent filled
 * the buffer must not hand out the same bytes, so it draws its own.
 */
#define RANDOM_BUF_SIZE 1024
static uint8 RandomBuf[RANDOM_BUF_SIZE];
static int	RandomBufUsed = RANDOM_BUF_SIZE;
static int	RandomBufPid = 0;

/*
 * Copy len (at most RANDOM_BUF_SIZE) cryptographically strong random bytes
 * to dst, each byte handed out once.
 */
static void
StrongRandomBytes(uint8 *dst, int len)
{
	Assert(len <= RANDOM_BUF_SIZE);
	if (RandomBufPid != MyProcPid || RandomBufUsed + len > RANDOM_BUF_SIZE)
	{
		RandomBufPid = 0;
		if (!pg_strong_random(RandomBuf, RANDOM_BUF_SIZE))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate random values")));
		RandomBufPid = MyProcPid;
		RandomBufUsed = 0;
	}
	memcpy(dst, RandomBuf + RandomBufUsed, len);
	RandomBufUsed += len;
}

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

	StrongRandomBytes(uuid->data + 6, UUID_LEN - 6);
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

/*
 * An envelope as the reader needs it: the shared attributes, JSON-escaped
 * once, and the JSON-escaped names of the table's columns (none for an
 * envelope whose events carry their data whole).
 */
typedef struct Envelope
{
	int32		envelope_id;	/* hash key */
	char	   *topic;			/* as it is: rows that share it store '' */
	char	   *source_json;
	char	   *pubsubname_json;
	char	   *type_prefix;
	int			ncolumns;
	char	  **column_json;
	int		   *column_json_len;
	int			subject_at;		/* derived values, see taskevents.envelopes */
	char		subject_json;
	int			key_at;
	char		key_json;
} Envelope;

static HTAB *Envelopes = NULL;
static Envelope *LastEnvelope = NULL;	/* the last one looked up: a page's
										 * rows mostly share one */
static MemoryContext EnvelopeContext = NULL;
static Oid	EnvelopesRelid = InvalidOid;
static SPIPlanPtr EnvelopePlan = NULL;

/*
 * Relcache callback: envelopes are never changed, but the table can be
 * dropped with the extension and created again with the same ids.
 */
static void
InvalidateEnvelopes(Datum arg, Oid relid)
{
	if (Envelopes == NULL || (OidIsValid(relid) && relid != EnvelopesRelid))
		return;
	hash_destroy(Envelopes);
	Envelopes = NULL;
	LastEnvelope = NULL;
	MemoryContextReset(EnvelopeContext);
	EnvelopesRelid = InvalidOid;
}

/*
 * Register the envelope cache's invalidation callback; called once from
 * _PG_init.
 */
void
InitEnvelopeCache(void)
{
	if (!CacheMemoryContext)
		CreateCacheMemoryContext();
	EnvelopeContext = AllocSetContextCreate(CacheMemoryContext,
											"taskevents envelopes",
											ALLOCSET_SMALL_SIZES);
	CacheRegisterRelcacheCallback(InvalidateEnvelopes, (Datum) 0);
}

static char *
EscapedCopy(const char *s)
{
	StringInfoData buf;
	char	   *result;

	initStringInfo(&buf);
	EscapeJson(&buf, s);
	result = MemoryContextStrdup(EnvelopeContext, buf.data);
	pfree(buf.data);
	return result;
}

/*
 * The envelope envelope_id, from the cache or read (as the extension owner)
 * from taskevents.envelopes.
 */
static Envelope *
GetEnvelope(int32 envelope_id)
{
	Envelope   *env;
	bool		found;
	Datum		arg = Int32GetDatum(envelope_id);
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;
	int			ret;

	if (LastEnvelope != NULL && LastEnvelope->envelope_id == envelope_id)
		return LastEnvelope;
	if (Envelopes == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(int32);
		ctl.entrysize = sizeof(Envelope);
		ctl.hcxt = EnvelopeContext;
		Envelopes = hash_create("taskevents envelopes", 16, &ctl,
								HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		EnvelopesRelid = get_relname_relid("envelopes", TaskeventsSchema());
	}
	env = hash_search(Envelopes, &envelope_id, HASH_FIND, NULL);
	if (env != NULL)
		return LastEnvelope = env;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	KeepOwnerPlan(&EnvelopePlan,
				  "SELECT e.source, e.pubsubname, e.columns, e.type_prefix,"
				  "       e.subject_at, e.subject_json, e.key_at, e.key_json, e.topic"
				  "  FROM taskevents.envelopes e"
				  " WHERE e.envelope_id OPERATOR(pg_catalog.=) $1",
				  1, OIDS(INT4OID), false);
	ret = RunAs(TaskeventsOwner(), EnvelopePlan, &arg, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading taskevents.envelopes failed: %s", SPI_result_code_string(ret));
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("envelope %d of an outbox row does not exist", envelope_id),
				 errhint("taskevents.envelopes must be restored together with the outbox.")));
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;

	env = hash_search(Envelopes, &envelope_id, HASH_ENTER, &found);
	env->source_json = EscapedCopy(SPI_getvalue(tup, desc, 1));
	env->pubsubname_json = EscapedCopy(SPI_getvalue(tup, desc, 2));
	env->ncolumns = 0;
	env->column_json = NULL;
	env->column_json_len = NULL;
	env->type_prefix = MemoryContextStrdup(EnvelopeContext, SPI_getvalue(tup, desc, 4));
	env->subject_at = DatumGetInt16(SPI_getbinval(tup, desc, 5, &isnull));
	env->subject_json = DatumGetChar(SPI_getbinval(tup, desc, 6, &isnull));
	env->key_at = DatumGetInt16(SPI_getbinval(tup, desc, 7, &isnull));
	env->key_json = DatumGetChar(SPI_getbinval(tup, desc, 8, &isnull));
	env->topic = MemoryContextStrdup(EnvelopeContext, SPI_getvalue(tup, desc, 9));
	d = SPI_getbinval(tup, desc, 3, &isnull);
	if (!isnull)
	{
		Datum	   *names;
		bool	   *nulls;
		int			n,
					i;

		deconstruct_array(DatumGetArrayTypeP(d), NAMEOID, NAMEDATALEN, false,
						  TYPALIGN_CHAR, &names, &nulls, &n);
		env->column_json = MemoryContextAlloc(EnvelopeContext, sizeof(char *) * Max(n, 1));
		env->column_json_len = MemoryContextAlloc(EnvelopeContext, sizeof(int) * Max(n, 1));
		for (i = 0; i < n; i++)
		{
			env->column_json[i] = EscapedCopy(NameStr(*DatumGetName(names[i])));
			env->column_json_len[i] = strlen(env->column_json[i]);
		}
		env->ncolumns = n;
	}
	SPI_finish();
	return env;
}

/*
 * Append a string literal; the members below, with their literal keys
 * (none of which needs escaping):
 * ,"key":"escaped value" and ,"key":<JSON text>.
 */
#define AppendLiteral(buf, lit) \
	AppendBytes((buf), (lit), sizeof(lit) - 1)
#define AppendString(buf, key, value) \
	(AppendLiteral((buf), ",\"" key "\":"), EscapeJson((buf), (value)))
#define AppendJson(buf, key, json) \
	(AppendLiteral((buf), ",\"" key "\":"), appendStringInfoString((buf), (json)))

/*
 * Format a UUID the way uuid_out does, into buf (37 bytes).
 */
static void
FormatUuid(const pg_uuid_t *id, char *buf)
{
	static const char hex[] = "0123456789abcdef";
	int			i,
				j;

	for (i = 0, j = 0; i < UUID_LEN; i++)
	{
		if (i == 4 || i == 6 || i == 8 || i == 10)
			buf[j++] = '-';
		buf[j++] = hex[id->data[i] >> 4];
		buf[j++] = hex[id->data[i] & 0x0f];
	}
	buf[j] = '\0';
}

/*
 * Append the CloudEvent of parts to buf: attributes in a fixed order, data
 * last.  Every string goes through EscapeJson() (or was escaped once when
 * its envelope was read); the data is JSON text, a jsonb value, the row's
 * object rebuilt from its values and the envelope's names, or null, so the
 * result is always valid JSON.
 */
static void
AppendCloudEvent(StringInfo buf, const CloudEventParts *parts)
{
	char		idbuf[37];
	char		timebuf[MAXDATELEN + 1];
	int			utc = 0;

	FormatUuid(parts->id, idbuf);
	JsonEncodeDateTime(timebuf, TimestampTzGetDatum(parts->time), TIMESTAMPTZOID, &utc);

	/* the id and the time are JSON strings as they are */
	AppendLiteral(buf, "{\"specversion\":\"1.0\",\"id\":\"");
	AppendBytes(buf, idbuf, 36);
	appendStringInfoCharMacro(buf, '"');
	if (parts->source_json)
		AppendJson(buf, "source", parts->source_json);
	else
		AppendString(buf, "source", parts->source);
	AppendString(buf, "type", parts->type);
	if (parts->subject)
		AppendString(buf, "subject", parts->subject);
	AppendLiteral(buf, ",\"time\":\"");
	appendStringInfoString(buf, timebuf);
	AppendLiteral(buf, "\",\"datacontenttype\":\"application/json\"");
	if (parts->partitionkey)
		AppendString(buf, "partitionkey", parts->partitionkey);
	AppendString(buf, "topic", parts->topic);
	if (parts->pubsubname_json)
		AppendJson(buf, "pubsubname", parts->pubsubname_json);
	else if (parts->pubsubname)
		AppendString(buf, "pubsubname", parts->pubsubname);
	if (parts->traceparent && parts->traceparent[0] != '\0')
		AppendString(buf, "traceparent", parts->traceparent);

	AppendLiteral(buf, ",\"data\":");
	if (parts->row_names)
	{
		if (!AppendRowObject(buf, parts->row_names, parts->row_name_lens, parts->row_ncolumns,
							 parts->data_text, parts->data_len,
							 &parts->row_subject, &parts->row_key))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("the values of event %s do not match the %d column names of its envelope",
							idbuf, parts->row_ncolumns)));
	}
	else if (parts->data_text)
		appendBinaryStringInfo(buf, parts->data_text, parts->data_len);
	else if (parts->data)
		(void) JsonbToCString(buf, &parts->data->root, VARSIZE(parts->data));
	else
		appendStringInfoString(buf, "null");
	appendStringInfoChar(buf, '}');
}

/*
 * The CloudEvent of parts as a text datum (publish() stores it whole).
 */
text *
BuildCloudEvent(const CloudEventParts *parts)
{
	StringInfoData buf;
	text	   *result;

	/* room for the varlena header, written in place at the end */
	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, "    ", VARHDRSZ);
	AppendCloudEvent(&buf, parts);
	result = (text *) buf.data;
	SET_VARSIZE(result, buf.len);
	return result;
}

/*
 * The topic of an outbox row that stores '' as its own (every event with
 * an envelope: a task's or a reminder's): its envelope's.
 */
static const char *
EnvelopeTopic(const NullableDatum *envelope)
{
	if (envelope->isnull)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("an outbox row without an envelope has an empty topic")));
	return GetEnvelope(DatumGetInt32(envelope->value))->topic;
}

/*
 * The topic of the outbox row whose nine columns are args (see
 * AppendOutboxEvent()): the row's own or, when it stores '' (an event with
 * an envelope), its envelope's.
 */
const char *
OutboxEventTopic(const NullableDatum *args)
{
	if (!args[5].isnull && VARSIZE_ANY_EXHDR(DatumGetTextPP(args[5].value)) > 0)
		return text_to_cstring(DatumGetTextPP(args[5].value));
	return EnvelopeTopic(&args[1]);
}

/*
 * Render into buf the event of the outbox row whose nine columns are args
 * (in _event_json()'s order: event_id, envelope, type, subject,
 * created_at, topic, partition_key, traceparent, data; data not null);
 * topic is its OutboxEventTopic(), which the caller has already.  With no
 * envelope, data is the complete event already.
 */
void
AppendOutboxEvent(StringInfo buf, const NullableDatum *args, const char *topic)
{
	CloudEventParts parts;
	Envelope   *env;
	text	   *data = DatumGetTextPP(args[8].value);

	if (args[1].isnull)
	{
		appendBinaryStringInfo(buf, VARDATA_ANY(data), VARSIZE_ANY_EXHDR(data));
		return;
	}
	if (args[0].isnull || args[2].isnull || args[4].isnull || args[5].isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("event id, type, time and topic of an outbox row must not be null")));

	env = GetEnvelope(DatumGetInt32(args[1].value));
	memset(&parts, 0, sizeof(parts));
	parts.id = DatumGetUUIDP(args[0].value);
	parts.source_json = env->source_json;
	parts.pubsubname_json = env->pubsubname_json;
#define TEXT_ARG(i) text_to_cstring(DatumGetTextPP(args[i].value))
	parts.type = psprintf("%s%s", env->type_prefix, TEXT_ARG(2));
	parts.subject = args[3].isnull ? NULL : TEXT_ARG(3);
	parts.time = DatumGetTimestampTz(args[4].value);
	parts.topic = topic;
	parts.partitionkey = args[6].isnull ? NULL : TEXT_ARG(6);
	parts.traceparent = args[7].isnull ? NULL : TEXT_ARG(7);
#undef TEXT_ARG
	parts.data_text = VARDATA_ANY(data);
	parts.data_len = VARSIZE_ANY_EXHDR(data);
	if (env->column_json)
	{
		parts.row_names = env->column_json;
		parts.row_name_lens = env->column_json_len;
		parts.row_ncolumns = env->ncolumns;
		parts.row_subject.at = env->subject_at;
		parts.row_subject.kind = env->subject_json;
		parts.row_subject.text = parts.subject;
		parts.row_key.at = env->key_at;
		parts.row_key.kind = env->key_json;
		parts.row_key.text = parts.partitionkey;
	}
	AppendCloudEvent(buf, &parts);
}

/*
 * taskevents._event_json(event_id uuid, envelope integer, type text,
 *						  subject text, created_at timestamptz, topic text,
 *						  partition_key text, traceparent text, data text)
 *		RETURNS text
 *
 * The CloudEvent of an outbox row, exactly as consumers receive it: with
 * no envelope, data is the complete event already; otherwise the event is
 * rendered from the row's facts and its envelope.
 */
PG_FUNCTION_INFO_V1(event_json);
Datum
event_json(PG_FUNCTION_ARGS)
{
	StringInfoData buf;
	text	   *result;

	if (PG_ARGISNULL(8))
		PG_RETURN_NULL();
	if (PG_ARGISNULL(1))
		PG_RETURN_TEXT_P(PG_GETARG_TEXT_PP(8));
	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, "    ", VARHDRSZ);
	AppendOutboxEvent(&buf, fcinfo->args, OutboxEventTopic(fcinfo->args));
	result = (text *) buf.data;
	SET_VARSIZE(result, buf.len);
	PG_RETURN_TEXT_P(result);
}

/*
 * taskevents._event_topic(envelope integer, topic text) RETURNS text
 *
 * The topic of an outbox row: its own, or, when it stores '', its
 * envelope's (EnvelopeTopic()).
 */
PG_FUNCTION_INFO_V1(event_topic);
Datum
event_topic(PG_FUNCTION_ARGS)
{
	text	   *topic;

	if (PG_ARGISNULL(1))
		PG_RETURN_NULL();
	topic = PG_GETARG_TEXT_PP(1);
	if (VARSIZE_ANY_EXHDR(topic) > 0)
		PG_RETURN_TEXT_P(topic);
	PG_RETURN_TEXT_P(cstring_to_text(EnvelopeTopic(&fcinfo->args[0])));
}
