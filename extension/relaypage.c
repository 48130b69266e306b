/*-------------------------------------------------------------------------
 *
 * relaypage.c
 *	  A page of the relay's batch as bytea chunks: relay_fetch_page(), and
 *	  their reader taskevents._relay_page_rows().
 *
 * relay_fetch() returned a page as rows: PL/pgSQL's RETURN QUERY copied
 * every rendered event into a tuplestore before it was sent, and each row
 * went out as its own message of five text columns (bench/relay/README.md:
 * the tuplestore alone was 18 % of the backend's time in a drain).
 * relay_fetch_page() runs the page query with a receiver that renders each
 * row's event straight into the page, and the page goes out in binary
 * chunks (see PAGE_CHUNK below).  A chunk, every integer in network byte
 * order, is a sequence of whole records:
 *
 *		int64	id
 *		int64	created_at (a TimestampTz: microseconds since 2000-01-01 UTC)
 *		uint32	length of topic, then topic and a NUL
 *		int32	length of partition_key (-1: NULL), then it and a NUL
 *		uint32	length of the event, then the event and a NUL
 *
 * The NULs let a reader use the strings where they lie (relay/db.c does).
 * Rows come in ascending id order (the page query's ORDER BY); a row out
 * of order is an error, not a silently reordered page.
 *
 * The queries are those relay_fetch() ran in PL/pgSQL, prepared and run as
 * the extension's owner with search_path pinned (util.c's role context);
 * every operator and function in them, and in _batch_query()'s branches,
 * is qualified.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "nodes/params.h"
#include "port/pg_bswap.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "taskevents.h"

/*
 * The page is built in one buffer kept for the backend's life and handed
 * out in chunks of about PAGE_CHUNK bytes, each record whole in one chunk.
 * A page of a thousand events is over half a megabyte: built in a buffer
 * grown from nothing and sent as one value, it was copied three times
 * more (the result, byteasend(), the message), each copy into memory the
 * C library had just handed back to the kernel, so that the backend took a
 * page fault for every 4 kB of every copy, for every page (a third of
 * its time in a drain; bench/relay/README.md).  Chunks fit in memory that
 * is reused from one to the next.
 *
 * PageBufOwner is the page that is using the buffer, between the first
 * call of relay_fetch_page() and its last; another page built meanwhile
 * (none is, but nothing depends on that) gets a buffer of its own.  The
 * end of the query or of the transaction frees it.
 */
#define PAGE_CHUNK (32 * 1024)

static StringInfo PageBuf = NULL;
static const void *PageBufOwner = NULL;
static bool PageXactCallbackSet = false;

static SPIPlanPtr TicksPlan = NULL;
static SPIPlanPtr PagePlan = NULL;

/*
 * the page query's columns: id, then _event_json()'s nine arguments, then
 * the row's earlier events (outbox.earlier)
 */
#define PAGE_COLUMNS \
	"x.id, x.event_id, x.envelope, x.type, x.subject, x.created_at," \
	" x.topic, x.partition_key, x.traceparent, x.data, x.earlier"
#define PAGE_NCOLUMNS 11

typedef struct PageReceiver
{
	DestReceiver pub;
	StringInfo	buf;
	MemoryContext rowcxt;		/* reset after every row */
	int64		after_id;		/* the page's events have greater ids */
	int64		limit;			/* and there are at most this many */
	int64		last_id;
	int64		rows;			/* events in the page */
	int		   *ends;			/* where each chunk ends in buf */
	int			nchunks;
	int			maxchunks;
	MemoryContext chunkcxt;		/* where ends lives */
} PageReceiver;

/* The chunks of a page between the calls of relay_fetch_page(). */
typedef struct PageChunks
{
	StringInfo	buf;
	int		   *ends;
	int			nchunks;
} PageChunks;

/* End the current chunk of r's page at the end of its buffer. */
static void
EndChunk(PageReceiver *r)
{
	if (r->nchunks == r->maxchunks)
	{
		r->maxchunks = r->maxchunks ? r->maxchunks * 2 : 64;
		r->ends = r->ends ? repalloc(r->ends, r->maxchunks * sizeof(int))
			: MemoryContextAlloc(r->chunkcxt, r->maxchunks * sizeof(int));
	}
	r->ends[r->nchunks++] = r->buf->len;
}

static void
ReleasePageBuf(const void *owner)
{
	if (PageBufOwner != owner)
		return;
	PageBufOwner = NULL;
	/* do not keep a buffer some huge page grew for the backend's life */
	if (PageBuf && PageBuf->maxlen > 8 * 1024 * 1024)
	{
		pfree(PageBuf->data);
		pfree(PageBuf);
		PageBuf = NULL;
	}
}

/* the query that used the buffer is over, whether it finished or not */
static void
PageQueryEnd(Datum arg)
{
	ReleasePageBuf(DatumGetPointer(arg));
}

static void
PageXactEnd(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		PageBufOwner = NULL;
}

static inline void
AppendUint64(StringInfo buf, uint64 v)
{
	v = pg_hton64(v);
	appendBinaryStringInfo(buf, (char *) &v, sizeof(v));
}

/* Add the event of id and args (_event_json()'s arguments) to r's page. */
static void
AddEvent(PageReceiver *r, int64 id, NullableDatum *args)
{
	StringInfo	buf = r->buf;
	const char *topic;
	int			at;

	if (r->rows > 0 && id <= r->last_id)
		elog(ERROR, "relay page rows out of id order: %lld after %lld",
			 (long long) id, (long long) r->last_id);
	r->last_id = id;
	r->rows++;

	AppendUint64(buf, (uint64) id);
	AppendUint64(buf, (uint64) DatumGetTimestampTz(args[4].value));

	/*
	 * The counted topic and key, then the event's length, written once the
	 * event is rendered after it.
	 */
	topic = OutboxEventTopic(args);
	{
		int			toplen = strlen(topic);
		text	   *key = args[6].isnull ? NULL : DatumGetTextPP(args[6].value);
		int			keylen = key ? VARSIZE_ANY_EXHDR(key) : 0;
		uint32		w;

		enlargeStringInfo(buf, 4 + toplen + 1 + 4 + (key ? keylen + 1 : 0) + 4);
		w = pg_hton32((uint32) toplen);
		appendBinaryStringInfo(buf, (char *) &w, 4);
		appendBinaryStringInfo(buf, topic, toplen + 1);
		w = pg_hton32(key ? (uint32) keylen : (uint32) -1);
		appendBinaryStringInfo(buf, (char *) &w, 4);
		if (key)
		{
			appendBinaryStringInfo(buf, VARDATA_ANY(key), keylen);
			appendStringInfoCharMacro(buf, '\0');
		}
		at = buf->len;
		appendBinaryStringInfo(buf, "\0\0\0\0", 4);
		AppendOutboxEvent(buf, args, topic);
		w = pg_hton32((uint32) (buf->len - at - 4));
		memcpy(buf->data + at, &w, 4);
		appendStringInfoCharMacro(buf, '\0');
	}
	if (buf->len - (r->nchunks ? r->ends[r->nchunks - 1] : 0) >= PAGE_CHUNK)
		EndChunk(r);
}

/*
 * Add the events of one row of the page query to the page: those with ids
 * above after_id (a row of a bulk statement's events may have been begun
 * by the page before), up to the page's limit; false when the page is full,
 * which ends the query.
 */
static bool
PageReceive(TupleTableSlot *slot, DestReceiver *self)
{
	PageReceiver *r = (PageReceiver *) self;
	NullableDatum args[PAGE_NCOLUMNS - 2];
	MemoryContext old;
	int64		id;

	slot_getallattrs(slot);
	if (slot->tts_nvalid < PAGE_NCOLUMNS)
		elog(ERROR, "relay page query returned %d columns", slot->tts_nvalid);
	if (slot->tts_isnull[0] || slot->tts_isnull[5] || slot->tts_isnull[9])
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("id, time and data of an outbox row must not be null")));
	id = DatumGetInt64(slot->tts_values[0]);
	for (int i = 0; i < PAGE_NCOLUMNS - 2; i++)
	{
		args[i].value = slot->tts_values[i + 1];
		args[i].isnull = slot->tts_isnull[i + 1];
	}

	old = MemoryContextSwitchTo(r->rowcxt);
	if (!slot->tts_isnull[10])
	{
		NullableDatum eargs[PAGE_NCOLUMNS - 2];
		bytea	   *earlier = DatumGetByteaPP(slot->tts_values[10]);
		const char *p = VARDATA_ANY(earlier);
		const char *end = p + VARSIZE_ANY_EXHDR(earlier);
		int32		n = OutboxEarlierCount(earlier, &p, &end);

		memcpy(eargs, args, sizeof(args));
		for (int32 i = 0; i < n && r->rows < r->limit; i++)
		{
			OutboxRecord rec;
			pg_uuid_t	uuid;
			Datum		ev[OUTBOX_EVENT_NCOLUMNS];
			bool		evnull[OUTBOX_EVENT_NCOLUMNS];
			int64		eid = id - n + i;

			ReadOutboxRecord(&p, end, &rec);
			if (eid <= r->after_id)
				continue;
			/* the event's own columns in _event_json()'s argument order */
			OutboxRecordDatums(&rec, &uuid, ev, evnull);
			eargs[0].value = ev[OUTBOX_EVENT_ID];
			eargs[2].value = ev[OUTBOX_EVENT_TYPE];
			eargs[3].value = ev[OUTBOX_EVENT_SUBJECT];
			eargs[3].isnull = evnull[OUTBOX_EVENT_SUBJECT];
			eargs[6].value = ev[OUTBOX_EVENT_KEY];
			eargs[6].isnull = evnull[OUTBOX_EVENT_KEY];
			eargs[8].value = ev[OUTBOX_EVENT_DATA];
			AddEvent(r, eid, eargs);
		}
	}
	if (r->rows < r->limit && id > r->after_id)
		AddEvent(r, id, args);
	MemoryContextSwitchTo(old);
	MemoryContextReset(r->rowcxt);
	return r->rows < r->limit;
}

static void
PageStartup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
}

static void
PageShutdown(DestReceiver *self)
{
}

static void
PageDestroy(DestReceiver *self)
{
}

/* Run plan (or, with plan NULL, sql) as the extension's owner into r. */
static void
RunPageQuery(SPIPlanPtr plan, const char *sql, Datum *values, PageReceiver *r)
{
	static Oid	types[5] = {INT8OID, INT8OID, PG_SNAPSHOTOID, XID8OID, INT4OID};
	ParamListInfo params = makeParamList(5);
	SPIExecuteOptions opts;
	RoleContext ctx;
	int			ret;

	for (int i = 0; i < 5; i++)
	{
		params->params[i].value = values[i];
		params->params[i].isnull = false;
		params->params[i].pflags = PARAM_FLAG_CONST;
		params->params[i].ptype = types[i];
	}
	memset(&opts, 0, sizeof(opts));
	opts.params = params;
	opts.read_only = false;
	opts.dest = (DestReceiver *) r;
	EnterRoleContext(TaskeventsOwner(), &ctx);
	ret = plan ? SPI_execute_plan_extended(plan, &opts) : SPI_execute_extended(sql, &opts);
	LeaveRoleContext(&ctx);
	/* (SPI says SPI_OK_UTILITY for a SELECT into a DestNone receiver) */
	if (ret < 0)
		elog(ERROR, "relay page query failed: %s", SPI_result_code_string(ret));
}

/*
 * Run the page query of relay_fetch_page()'s arguments into a page; its
 * chunk ends are allocated in cxt.
 */
static PageChunks *
FetchPage(FunctionCallInfo fcinfo, MemoryContext cxt)
{
	PageChunks *pc = MemoryContextAllocZero(cxt, sizeof(PageChunks));
	Datum		tickargs[2];
	Datum		values[5];
	bool		isnull;
	bool		own_buf;
	bool		slow;
	HeapTuple	tup;
	TupleDesc	desc;
	PageReceiver r;
	int			ret;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("consumer and tick_id must not be null")));
	tickargs[0] = PG_GETARG_DATUM(0);
	tickargs[1] = PG_GETARG_DATUM(1);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/*
	 * The batch's bounds: the previous tick and this one.  slow: a
	 * transaction in progress at the previous tick has committed since, so
	 * the page needs the branches of _batch_query() (the common case needs
	 * only the id index: one static statement whose plan is kept).
	 */
	KeepOwnerPlan(&TicksPlan,
				  "SELECT p.last_id, p.snapshot, c.snapshot,"
				  "       pg_catalog.pg_snapshot_xmax(p.snapshot),"
				  "       EXISTS (SELECT 1 FROM pg_catalog.pg_snapshot_xip(p.snapshot) u"
				  "                WHERE pg_catalog.pg_visible_in_snapshot(u, c.snapshot))"
				  "  FROM (SELECT t.last_id, t.snapshot FROM taskevents.relay_ticks t"
				  "         WHERE t.consumer OPERATOR(pg_catalog.=) $1"
				  "           AND t.tick_id OPERATOR(pg_catalog.=) ($2 OPERATOR(pg_catalog.-) 1)"
				  "         LIMIT 1) p,"
				  "       (SELECT t.snapshot FROM taskevents.relay_ticks t"
				  "         WHERE t.consumer OPERATOR(pg_catalog.=) $1"
				  "           AND t.tick_id OPERATOR(pg_catalog.=) $2"
				  "         LIMIT 1) c",
				  2, OIDS(TEXTOID, INT8OID), false);

	/*
	 * read_only false: each statement takes its snapshot after its locks, as
	 * a VOLATILE function's do, so a call that waited for a rotation of the
	 * relay's state reads the moved rows (specs/
	 * relay_state_rotation_race.spec).
	 */
	ret = RunAs(TaskeventsOwner(), TicksPlan, tickargs, NULL, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading taskevents.relay_ticks failed: %s", SPI_result_code_string(ret));
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch %lld of consumer \"%s\" does not exist",
						(long long) PG_GETARG_INT64(1), text_to_cstring(PG_GETARG_TEXT_PP(0)))));
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	values[0] = SPI_getbinval(tup, desc, 1, &isnull);	/* p.last_id */
	values[1] = Int64GetDatum(PG_ARGISNULL(2) ? 0 : PG_GETARG_INT64(2));
	values[2] = SPI_getbinval(tup, desc, 3, &isnull);	/* c.snapshot */
	values[3] = SPI_getbinval(tup, desc, 4, &isnull);	/* xmax of p */
	values[4] = Int32GetDatum(PG_ARGISNULL(3) ? 1000 : PG_GETARG_INT32(3));
	slow = DatumGetBool(SPI_getbinval(tup, desc, 5, &isnull));

	memset(&r, 0, sizeof(r));

	/*
	 * The page's lower bound and limit, for its events: a row of a bulk
	 * statement's events holds several (outbox.earlier), and the query's
	 * LIMIT counts rows.
	 */
	r.after_id = DatumGetInt64(values[1]);
	r.limit = DatumGetInt32(values[4]);
	r.pub.receiveSlot = PageReceive;
	r.pub.rStartup = PageStartup;
	r.pub.rShutdown = PageShutdown;
	r.pub.rDestroy = PageDestroy;
	r.pub.mydest = DestNone;
	r.rowcxt = AllocSetContextCreate(CurrentMemoryContext, "taskevents relay page row",
									 ALLOCSET_DEFAULT_SIZES);
	r.chunkcxt = cxt;
	own_buf = PageBufOwner != NULL;
	if (own_buf)
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);

		r.buf = makeStringInfo();
		MemoryContextSwitchTo(old);
	}
	else
	{
		if (PageBuf == NULL)
		{
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

			PageBuf = makeStringInfo();
			MemoryContextSwitchTo(old);
		}
		if (!PageXactCallbackSet)
		{
			RegisterXactCallback(PageXactEnd, NULL);
			PageXactCallbackSet = true;
		}
		r.buf = PageBuf;
		resetStringInfo(r.buf);
		PageBufOwner = pc;
	}

	PG_TRY();
	{
		if (!slow)
		{
			KeepOwnerPlan(&PagePlan,
						  "SELECT " PAGE_COLUMNS
						  "  FROM taskevents.outbox x"
						  " WHERE x.id OPERATOR(pg_catalog.>) GREATEST($1, $2)"
						  "   AND x.txid OPERATOR(pg_catalog.>=) $4"
						  "   AND pg_catalog.pg_visible_in_snapshot(x.txid, $3)"
						  " ORDER BY x.id LIMIT $5",
						  5, OIDS(INT8OID, INT8OID, PG_SNAPSHOTOID, XID8OID, INT4OID), false);
			RunPageQuery(PagePlan, NULL, values, &r);
		}
		else
		{
			Datum		qargs[2];
			char	   *batch;

			qargs[0] = SPI_getbinval(tup, desc, 2, &isnull);	/* p.snapshot */
			qargs[1] = values[2];
			ret = RunSqlAs(TaskeventsOwner(),
						   "SELECT taskevents._batch_query($1, $2, 'o.*')",
						   2, OIDS(PG_SNAPSHOTOID, PG_SNAPSHOTOID), qargs, NULL, false, 1);
			if (ret != SPI_OK_SELECT || SPI_processed != 1)
				elog(ERROR, "taskevents._batch_query failed: %s", SPI_result_code_string(ret));
			batch = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
			RunPageQuery(NULL,
						 psprintf("SELECT " PAGE_COLUMNS " FROM (%s) x ORDER BY x.id", batch),
						 values, &r);
		}
	}
	PG_CATCH();
	{
		ReleasePageBuf(pc);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (r.buf->len > (r.nchunks ? r.ends[r.nchunks - 1] : 0))
		EndChunk(&r);
	SPI_finish();
	pc->buf = r.buf;
	pc->ends = r.ends;
	pc->nchunks = r.nchunks;
	return pc;
}

/*
 * taskevents.relay_fetch_page(consumer text, tick_id bigint, after_id
 * bigint, lim integer DEFAULT 1000) RETURNS SETOF bytea
 *
 * The next page of batch tick_id: events with id > after_id, in id order,
 * at most lim of them, in chunks of whole records (the layout above); no
 * chunk at all when there is no event.  One value per call: the chunks
 * are made as they are sent.
 */
PG_FUNCTION_INFO_V1(relay_fetch_page);
Datum
relay_fetch_page(PG_FUNCTION_ARGS)
{
	FuncCallContext *funcctx;
	PageChunks *pc;

	if (SRF_IS_FIRSTCALL())
	{
		ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

		funcctx = SRF_FIRSTCALL_INIT();
		pc = FetchPage(fcinfo, funcctx->multi_call_memory_ctx);
		funcctx->user_fctx = pc;
		/* the buffer is free again when the query ends, done or not */
		if (PageBufOwner == pc)
			RegisterExprContextCallback(rsinfo->econtext, PageQueryEnd, PointerGetDatum(pc));
	}
	funcctx = SRF_PERCALL_SETUP();
	pc = funcctx->user_fctx;
	if (funcctx->call_cntr < (uint64) pc->nchunks)
	{
		int			i = funcctx->call_cntr;
		int			start = i == 0 ? 0 : pc->ends[i - 1];
		int			len = pc->ends[i] - start;
		bytea	   *chunk = palloc(VARHDRSZ + len);

		SET_VARSIZE(chunk, VARHDRSZ + len);
		memcpy(VARDATA(chunk), pc->buf->data + start, len);
		SRF_RETURN_NEXT(funcctx, PointerGetDatum(chunk));
	}
	ReleasePageBuf(pc);
	SRF_RETURN_DONE(funcctx);
}

/* Read n bytes at *p of a page that ends at end, or fail. */
static inline const char *
Take(const char **p, const char *end, int64 n)
{
	return TakeBytes(p, end, n, ERRCODE_INVALID_BINARY_REPRESENTATION, "relay page is truncated");
}

static uint64
TakeUint64(const char **p, const char *end)
{
	uint64		v;

	memcpy(&v, Take(p, end, 8), 8);
	return pg_ntoh64(v);
}

static uint32
TakeUint32(const char **p, const char *end)
{
	uint32		v;

	memcpy(&v, Take(p, end, 4), 4);
	return pg_ntoh32(v);
}

/* A counted string and its NUL, as text; NULL for the length -1. */
static Datum
TakeText(const char **p, const char *end, bool *isnull)
{
	uint32		len = TakeUint32(p, end);
	const char *s;

	*isnull = (len == (uint32) -1);
	if (*isnull)
		return (Datum) 0;
	s = Take(p, end, (int64) len + 1);
	if (s[len] != '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("relay page is malformed")));
	return PointerGetDatum(cstring_to_text_with_len(s, len));
}

/*
 * taskevents._relay_page_rows(page bytea) RETURNS TABLE (id bigint, topic
 * text, partition_key text, event text, created_at timestamptz): the rows
 * of a page, in its order.
 */
PG_FUNCTION_INFO_V1(relay_page_rows);
Datum
relay_page_rows(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	bytea	   *page;
	const char *p,
			   *end;

	InitMaterializedSRF(fcinfo, 0);
	if (PG_ARGISNULL(0))
		return (Datum) 0;
	page = PG_GETARG_BYTEA_PP(0);
	p = VARDATA_ANY(page);
	end = p + VARSIZE_ANY_EXHDR(page);
	while (p < end)
	{
		Datum		values[5];
		bool		nulls[5] = {false, false, false, false, false};

		values[0] = Int64GetDatum((int64) TakeUint64(&p, end));
		values[4] = TimestampTzGetDatum((TimestampTz) TakeUint64(&p, end));
		values[1] = TakeText(&p, end, &nulls[1]);
		values[2] = TakeText(&p, end, &nulls[2]);
		values[3] = TakeText(&p, end, &nulls[3]);
		if (nulls[1] || nulls[3])
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
					 errmsg("relay page is malformed")));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
