/*-------------------------------------------------------------------------
 *
 * util.c
 *	  Low-level helpers: reading columns of a row, JSON strings, and
 *	  running SQL as another role.
 *
 * Everything the extension runs in an identity other than the caller's goes
 * through RunAs below: the registry read, the bookkeeping of reminders and
 * recurrence (as the extension owner), and the writes into application
 * tables, the next instance of a recurring task and reminder_sent_at (as
 * the table's owner).  RunAs does what VACUUM and ANALYZE do when they run
 * a table's index expressions as its owner: it switches the user id inside a
 * security-restricted operation (no SET ROLE, no temporary objects, no
 * changes to session state), pins search_path to "pg_catalog, pg_temp" in a
 * GUC nest level of its own, and drops every setting change made inside it
 * (a user trigger's set_config(..., false) included) when it returns.  The
 * statements themselves schema-qualify every function, operator and cast,
 * so they mean the same under any search_path.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/skey.h"
#include "access/stratnum.h"
#include "access/xact.h"
#include "catalog/pg_operator.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/rel.h"
#include "utils/lsyscache.h"
#include "utils/plancache.h"
#include "utils/resowner.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "taskevents.h"

/* The search_path every statement run by RunAs sees. */
#define TASKEVENTS_SAFE_SEARCH_PATH "pg_catalog, pg_temp"

/*
 * The text form of column attnum of the row in slot (its type's output
 * function), or NULL when the column is not configured or the value is
 * null.  The trigger reads its rows through the trigger manager's slots,
 * so each row is deformed once however many columns are read.
 */
char *
ColumnText(TupleTableSlot *slot, AttrNumber attnum)
{
	bool		isnull;
	Datum		d;
	Oid			typoutput;
	bool		typisvarlena;

	if (attnum == InvalidAttrNumber)
		return NULL;
	d = slot_getattr(slot, attnum, &isnull);
	if (isnull)
		return NULL;
	getTypeOutputInfo(TupleDescAttr(slot->tts_tupleDescriptor, attnum - 1)->atttypid,
					  &typoutput, &typisvarlena);
	return OidOutputFunctionCall(typoutput, d);
}

/*
 * Is boolean column attnum of the row in slot configured, not null and
 * true?
 */
bool
ColumnIsTrue(TupleTableSlot *slot, AttrNumber attnum)
{
	bool		isnull;
	Datum		d;

	if (attnum == InvalidAttrNumber)
		return false;
	d = slot_getattr(slot, attnum, &isnull);
	return !isnull && DatumGetBool(d);
}

/*
 * Column col of SPI result row tup as int8 (0 when null).
 */
int64
SpiGetInt8(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	return isnull ? 0 : DatumGetInt64(d);
}

/*
 * Column col of SPI result row tup as timestamptz (0 when null).
 */
TimestampTz
SpiGetTimestamp(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	return isnull ? 0 : DatumGetTimestampTz(d);
}

/*
 * A one-dimensional array of n elements of type elemtype (nulls may be
 * NULL: no null elements), for a set-based statement's parameter.
 */
Datum
DatumArray(Datum *elems, bool *nulls, int n, Oid elemtype)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			dims[1] = {n};
	int			lbs[1] = {1};

	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs,
											  elemtype, typlen, typbyval, typalign));
}

/*
 * An equality key on text column attnum of rel, a table of the extension
 * read by index without SQL, with the column's collation (a B-tree
 * compares text under one).
 */
void
TextEqualKey(ScanKey key, Relation rel, AttrNumber attnum, const char *value)
{
	ScanKeyEntryInitialize(key, 0, attnum, BTEqualStrategyNumber, InvalidOid,
						   TupleDescAttr(RelationGetDescr(rel), attnum - 1)->attcollation,
						   F_TEXTEQ, CStringGetTextDatum(value));
}

/*
 * Are the columns of rel exactly types[0..natts-1]?
 */
bool
TableHasLayout(Relation rel, const Oid *types, int natts)
{
	TupleDesc	desc = RelationGetDescr(rel);
	bool		ok = (desc->natts == natts);

	for (int i = 0; ok && i < natts; i++)
		ok = (TupleDescAttr(desc, i)->atttypid == types[i] &&
			  !TupleDescAttr(desc, i)->attisdropped);
	return ok;
}

/*
 * Refuse rel, a table of the extension that this library reads and writes
 * without SQL (the outbox partitions, the recurrence claims), unless its
 * columns are exactly types[0..natts-1]: a library of another version than
 * the installed SQL objects (a new .so before ALTER EXTENSION ... UPDATE)
 * must refuse, not read or write datums of the wrong type.  table names it
 * in the error.
 */
void
CheckTableLayout(Relation rel, const Oid *types, int natts, const char *table)
{
	if (!TableHasLayout(rel, types, natts))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s does not have the layout this pg_taskevents library writes", table),
				 errhint("The installed library and the extension's SQL objects are from different versions; run ALTER EXTENSION pg_taskevents UPDATE.")));
}

/*
 * Take n bytes at *p of a value that ends at end and advance *p past them,
 * or fail with sqlerrcode and message (a truncated or malformed value:
 * a relay page, an outbox row's "earlier").
 */
const char *
TakeBytes(const char **p, const char *end, int64 n, int sqlerrcode, const char *message)
{
	const char *at = *p;

	if (n < 0 || end - at < n)
		ereport(ERROR,
				(errcode(sqlerrcode),
				 errmsg_internal("%s", message)));
	*p += n;
	return at;
}

/*
 * Insert tup into rel, a table of the extension written without SQL (the
 * recurrence claims, a task's first reminder), with the index entries an
 * INSERT makes, through the executor so that partial indexes stay right,
 * and its unique checks: a conflicting row of a transaction in progress is
 * waited for.  If that row commits, the transaction fails with a
 * serialization failure (40001, to be retried): "could not serialize
 * <what> "<name>"", with detail.  (The message is made only then: this is
 * on the write path.)  Returns the new row's tid in tup->t_self.
 */
void
InsertOwnRow(Relation rel, HeapTuple tup, const char *what, const char *name,
			 const char *detail)
{
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot *slot;
	MemoryContext cxt = CurrentMemoryContext;

	heap_insert(rel, tup, GetCurrentCommandId(true), 0, NULL);

	estate = CreateExecutorState();
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	ExecOpenIndices(rri, false);
	slot = ExecInitExtraTupleSlot(estate, RelationGetDescr(rel), &TTSOpsHeapTuple);
	ExecStoreHeapTuple(tup, slot, false);
	PG_TRY();
	{
		ExecInsertIndexTuplesCompat(rri, slot, estate, false, false, NULL, NIL);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		/* the transaction fails either way: only which error it reports */
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		if (edata->sqlerrcode != ERRCODE_UNIQUE_VIOLATION)
			PG_RE_THROW();
		FlushErrorState();
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not serialize %s \"%s\"", what, name),
				 errdetail_internal("%s", detail),
				 errhint("Retry the transaction.")));
	}
	PG_END_TRY();
	ExecCloseIndices(rri);
	ExecDropSingleTupleTableSlot(slot);
	FreeExecutorState(estate);
}

/*
 * Append str to buf as a JSON string, byte for byte what PostgreSQL's
 * escape_json() appends (to_json(text)): the quotes, \" \\ \b \f \n \r \t,
 * \u00xx (lowercase hex) for the other bytes below 0x20, every other byte as
 * it is.  escape_json() appends one byte at a time; this appends each run of
 * bytes that need no escape at once, which is what most strings are.
 * sql/json_escaping.sql compares the two.
 */
void
EscapeJson(StringInfo buf, const char *str)
{
	static const char hex[] = "0123456789abcdef";
	const char *run = str;
	const char *p;

	appendStringInfoCharMacro(buf, '"');
	for (p = str;; p++)
	{
		unsigned char c = (unsigned char) *p;
		char		esc[6];
		int			esclen = 2;

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		if (p > run)
			AppendBytes(buf, run, p - run);
		if (c == '\0')
			break;
		esc[0] = '\\';
		switch (c)
		{
			case '\b':
				esc[1] = 'b';
				break;
			case '\f':
				esc[1] = 'f';
				break;
			case '\n':
				esc[1] = 'n';
				break;
			case '\r':
				esc[1] = 'r';
				break;
			case '\t':
				esc[1] = 't';
				break;
			case '"':
			case '\\':
				esc[1] = c;
				break;
			default:
				esc[1] = 'u';
				esc[2] = '0';
				esc[3] = '0';
				esc[4] = hex[c >> 4];
				esc[5] = hex[c & 0x0f];
				esclen = 6;
				break;
		}
		AppendBytes(buf, esc, esclen);
		run = p + 1;
	}
	appendStringInfoCharMacro(buf, '"');
}

/*
 * Relcache invalidation callback of a cache made by CreateRelidCache(): mark
 * the entry of the invalidated relation (or every entry, for a full reset)
 * stale.  No catalog access is allowed here.
 */
static void
InvalidateRelidCache(Datum arg, Oid relid)
{
	HTAB	   *cache = (HTAB *) DatumGetPointer(arg);
	HASH_SEQ_STATUS status;
	RelidCacheEntry *entry;

	if (OidIsValid(relid))
	{
		entry = hash_search(cache, &relid, HASH_FIND, NULL);
		if (entry != NULL)
			entry->valid = false;
		return;
	}
	hash_seq_init(&status, cache);
	while ((entry = hash_seq_search(&status)) != NULL)
		entry->valid = false;
}

/*
 * A hash table of per-relation entries, keyed by the relation's OID, in
 * memory context cxt; every entry starts with a RelidCacheEntry, whose
 * valid flag turns false when the relation's relcache entry is invalidated
 * (the user of the cache rebuilds a stale entry before using it).
 */
HTAB *
CreateRelidCache(const char *name, Size entrysize, MemoryContext cxt)
{
	HASHCTL		ctl;
	HTAB	   *cache;

	Assert(entrysize >= sizeof(RelidCacheEntry));
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = entrysize;
	ctl.hcxt = cxt;
	cache = hash_create(name, 16, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	CacheRegisterRelcacheCallback(InvalidateRelidCache, PointerGetDatum(cache));
	return cache;
}

/*
 * The qualified name of the equality operator of type typid, for SQL text:
 * OPERATOR(schema.=), whatever the caller's search_path.
 */
char *
QualifiedEqualityOperator(Oid typid)
{
	TypeCacheEntry *tce = lookup_type_cache(typid, TYPECACHE_EQ_OPR);
	HeapTuple	tup;
	Form_pg_operator op;
	char	   *result;

	if (!OidIsValid(tce->eq_opr))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("could not identify an equality operator for type %s",
						format_type_be(typid))));
	tup = SearchSysCache1(OPEROID, ObjectIdGetDatum(tce->eq_opr));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for operator %u", tce->eq_opr);
	op = (Form_pg_operator) GETSTRUCT(tup);
	result = psprintf("OPERATOR(%s.%s)",
					  quote_identifier(get_namespace_name(op->oprnamespace)),
					  NameStr(op->oprname));
	ReleaseSysCache(tup);
	return result;
}

/*
 * Enter the context in which SQL runs as role: see the file header.  The
 * caller must call LeaveRoleContext() on the normal path; on an error,
 * aborting the (sub)transaction restores the user id and the settings.
 */
void
EnterRoleContext(Oid role, RoleContext *ctx)
{
	GetUserIdAndSecContext(&ctx->save_userid, &ctx->save_sec_context);
	SetUserIdAndSecContext(role,
						   ctx->save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	ctx->save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", TASKEVENTS_SAFE_SEARCH_PATH,
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

/*
 * Leave the context entered by EnterRoleContext(): every setting changed
 * inside it reverts (isCommit = false, as VACUUM does), then the user id
 * and security context are restored.
 */
void
LeaveRoleContext(RoleContext *ctx)
{
	AtEOXact_GUC(false, ctx->save_nestlevel);
	SetUserIdAndSecContext(ctx->save_userid, ctx->save_sec_context);
}

/*
 * Prepare a plan kept for the life of the backend, parsed as role in the
 * context RunAs uses, so that no name in it resolves through the caller's
 * search_path.  The caller is connected to SPI.
 *
 * lookup: a statement that finds rows of a bookkeeping table by key.  Its
 * plan is made once, generic, with sequential scans disabled, and reused:
 * planning it afresh for every row (a custom plan) cost a fifth of the time
 * of completing a recurring task, and a generic plan made while the table
 * looked empty would otherwise be a sequential scan that stays one as the
 * table grows.
 */
SPIPlanPtr
PrepareAs(Oid role, const char *sql, int nargs, Oid *argtypes, bool lookup)
{
	RoleContext ctx;
	SPIPlanPtr	plan;

	EnterRoleContext(role, &ctx);
	plan = SPI_prepare_cursor(sql, nargs, argtypes,
							  lookup ? CURSOR_OPT_GENERIC_PLAN : 0);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	if (lookup)
	{
		CachedPlan *cplan;

		(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		cplan = SPI_plan_get_cached_plan(plan);
		if (cplan != NULL)
			ReleaseCachedPlan(cplan, CurrentResourceOwner);
	}
	LeaveRoleContext(&ctx);
	return plan;
}

/*
 * Make *plan, a statement on the extension's own tables, unless it is made
 * already: prepared as the extension's owner (PrepareAs) on first use and
 * kept for the rest of the backend's life.
 */
void
KeepOwnerPlan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes, bool lookup)
{
	if (*plan == NULL)
		*plan = PrepareAs(TaskeventsOwner(), sql, nargs, argtypes, lookup);
}

/*
 * Execute a plan made by PrepareAs() as role; returns SPI_execute_plan's
 * result.  The caller is connected to SPI.
 */
int
RunAs(Oid role, SPIPlanPtr plan, Datum *values, const char *nulls,
	  bool read_only, long count)
{
	RoleContext ctx;
	int			ret;

	EnterRoleContext(role, &ctx);
	ret = SPI_execute_plan(plan, values, nulls, read_only, count);
	LeaveRoleContext(&ctx);
	return ret;
}

/*
 * Parse and execute a one-off statement as role; returns
 * SPI_execute_with_args' result.  The caller is connected to SPI.
 */
int
RunSqlAs(Oid role, const char *sql, int nargs, Oid *argtypes,
		 Datum *values, const char *nulls, bool read_only, long count)
{
	RoleContext ctx;
	int			ret;

	EnterRoleContext(role, &ctx);
	ret = SPI_execute_with_args(sql, nargs, argtypes, values, nulls,
								read_only, count);
	LeaveRoleContext(&ctx);
	return ret;
}
