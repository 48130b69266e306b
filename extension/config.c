/*-------------------------------------------------------------------------
 *
 * config.c
 *	  Per-table configuration cache for attached task tables.
 *
 * The registry taskevents.attached_tables says, for each attached table,
 * which columns play which role and where its events go.  Reading it with
 * SPI on every row would double the cost of a write, so the row trigger
 * keeps a backend-local copy keyed by relation OID in a memory context under
 * CacheMemoryContext.  A relcache invalidation callback only marks entries
 * stale (attach() and detach() always create or drop a trigger, which sends
 * the invalidation); the next use reloads them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/catcache.h"
#include "utils/syscache.h"

#include "taskevents.h"

static HTAB *ConfigCache = NULL;
static MemoryContext ConfigContext = NULL;
static Oid	CachedOwner = InvalidOid;
static Oid	CachedSchema = InvalidOid;
static SPIPlanPtr RegistryPlan = NULL;
static SPIPlanPtr EnvelopePlan = NULL;

/*
 * Relcache callback: on a full reset, the extension's identity is looked up
 * again too (the extension may have been dropped and created anew).
 */
static void
ResetIdentityOnFullReset(Datum arg, Oid relid)
{
	if (!OidIsValid(relid))
		ResetExtensionIdentity();
}

/*
 * Set up the cache's memory context, hash table and invalidation callback.
 * Called once from _PG_init.
 */
void
InitConfigCache(void)
{
	if (ConfigCache != NULL)
		return;

	if (!CacheMemoryContext)
		CreateCacheMemoryContext();

	ConfigContext = AllocSetContextCreate(CacheMemoryContext,
										  "taskevents table config",
										  ALLOCSET_SMALL_SIZES);
	ConfigCache = CreateRelidCache("taskevents table config", sizeof(TableConfig),
								   ConfigContext);
	CacheRegisterRelcacheCallback(ResetIdentityOnFullReset, (Datum) 0);
}

/*
 * Look up the extension's schema and owner in pg_extension, by the
 * extension's OID: never by the schema's name, which a role that can create
 * schemas could otherwise redirect (a look-alike "taskevents" schema after
 * the real one was renamed).
 */
static void
LoadExtensionIdentity(void)
{
	Oid			extoid = get_extension_oid("pg_taskevents", true);
	Relation	extrel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;

	if (!OidIsValid(extoid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"pg_taskevents\" is not installed in this database"),
				 errhint("Run CREATE EXTENSION pg_taskevents, or drop the taskevents triggers.")));

	extrel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(extoid));
	scan = systable_beginscan(extrel, ExtensionOidIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "could not find tuple for extension %u", extoid);
	CachedSchema = ((Form_pg_extension) GETSTRUCT(tup))->extnamespace;
	CachedOwner = ((Form_pg_extension) GETSTRUCT(tup))->extowner;
	systable_endscan(scan);
	table_close(extrel, AccessShareLock);
}

/*
 * Return the extension owner.  The registry read, the bookkeeping of
 * reminders and recurrence and the outbox insert act as this role, so
 * application roles need no privilege on the extension's tables.
 */
Oid
TaskeventsOwner(void)
{
	if (!OidIsValid(CachedOwner))
		LoadExtensionIdentity();
	return CachedOwner;
}

/*
 * Return the OID of the extension's schema.
 */
Oid
TaskeventsSchema(void)
{
	if (!OidIsValid(CachedSchema))
		LoadExtensionIdentity();
	return CachedSchema;
}

/*
 * Forget the extension's identity, so that the next use looks it up again
 * (the extension was dropped and created again).
 */
void
ResetExtensionIdentity(void)
{
	CachedOwner = InvalidOid;
	CachedSchema = InvalidOid;
}

/*
 * Resolve a configured column name of the attached table to its attribute
 * number, failing with a clear error when it has gone away since attach().
 * A NULL name (column not configured) gives InvalidAttrNumber.
 */
static AttrNumber
ResolveColumn(Relation rel, HeapTuple regtup, TupleDesc regdesc, int col,
			  const char *role)
{
	bool		isnull;
	Datum		d = SPI_getbinval(regtup, regdesc, col, &isnull);
	const char *name;
	AttrNumber	attnum;

	if (isnull)
		return InvalidAttrNumber;
	name = NameStr(*DatumGetName(d));
	attnum = get_attnum(RelationGetRelid(rel), name);
	if (attnum == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" configured as the %s column of \"%s\" does not exist",
						name, role, RelationGetRelationName(rel)),
				 errhint("Run taskevents.attach() again with the current column names.")));
	return attnum;
}

/*
 * Copy a text column of the registry row into the cache context.
 */
static char *
CopyTextColumn(HeapTuple regtup, TupleDesc regdesc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(regtup, regdesc, col, &isnull);

	if (isnull)
		return NULL;
	return MemoryContextStrdup(ConfigContext, TextDatumGetCString(d));
}

/*
 * The names of rel's columns, in order, as a name[] datum: what an envelope
 * records so that events can carry the row's values alone.
 */
static Datum
ColumnNames(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Datum	   *names = palloc(sizeof(Datum) * Max(desc->natts, 1));
	int			n = 0;
	int			i;

	for (i = 0; i < desc->natts; i++)
		if (!TupleDescAttr(desc, i)->attisdropped)
			names[n++] = NameGetDatum(&TupleDescAttr(desc, i)->attname);
	return DatumArray(names, NULL, n, NAMEOID);
}

/*
 * Find the envelopes of rel's events (attach() and the event trigger
 * _track_table_changes() create them) and work out how to render its rows'
 * values.  The caller is connected to SPI.
 */
static void
LoadEnvelopes(Relation rel, TableConfig *entry)
{
	TupleDesc	rdesc = RelationGetDescr(rel);
	Datum		args[9];
	int			ret;
	uint64		i;
	int			pos = 0;
	int			subject_at = 0,
				key_at = 0;
	char		subject_json,
				key_json;
	AttrNumber	a;

	/* where the subject and the partition key are, and how they render */
	for (a = 1; a <= rdesc->natts; a++)
	{
		if (TupleDescAttr(rdesc, a - 1)->attisdropped)
			continue;
		pos++;
		if (a == entry->id_attnum)
			subject_at = pos;
		if (a == entry->user_id_attnum)
			key_at = pos;
	}
	subject_json = JsonDerivable(TupleDescAttr(rdesc, entry->id_attnum - 1)->atttypid);
	key_json = JsonDerivable(TupleDescAttr(rdesc, entry->user_id_attnum - 1)->atttypid);
	if (subject_json == '\0')
		subject_at = 0;
	if (key_json == '\0' || key_at == subject_at)
		key_at = 0;

	/* SQL objects older than the library (0.1.0): no envelopes yet */
	if (!OidIsValid(get_relname_relid("envelopes", TaskeventsSchema())))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the SQL objects of pg_taskevents are older than its library %s",
						TASKEVENTS_VERSION_STRING),
				 errhint("Run ALTER EXTENSION pg_taskevents UPDATE.")));

	KeepOwnerPlan(&EnvelopePlan,
				  "SELECT e.envelope_id, e.type_prefix, e.columns IS NOT NULL"
				  "  FROM taskevents.envelopes e"
				  " WHERE e.source OPERATOR(pg_catalog.=) $1"
				  "   AND e.pubsubname OPERATOR(pg_catalog.=) $2"
				  "   AND ((e.topic OPERATOR(pg_catalog.=) $3"
				  "         AND e.type_prefix OPERATOR(pg_catalog.=) 'task.'"
				  "         AND (e.columns IS NULL"
				  "              OR (e.columns OPERATOR(pg_catalog.=) $4"
				  "                  AND e.subject_at OPERATOR(pg_catalog.=) $5"
				  "                  AND e.subject_json OPERATOR(pg_catalog.=) $6"
				  "                  AND e.key_at OPERATOR(pg_catalog.=) $7"
				  "                  AND e.key_json OPERATOR(pg_catalog.=) $8)))"
				  "        OR (e.topic OPERATOR(pg_catalog.=) $9"
				  "            AND e.type_prefix OPERATOR(pg_catalog.=) 'reminder.'"
				  "            AND e.columns IS NULL))",
				  9, OIDS(TEXTOID, TEXTOID, TEXTOID, NAMEARRAYOID, INT2OID, CHAROID, INT2OID, CHAROID, TEXTOID), false);
	args[0] = CStringGetTextDatum(entry->source);
	args[1] = CStringGetTextDatum(entry->pubsubname);
	args[2] = CStringGetTextDatum(entry->topic);
	args[3] = ColumnNames(rel);
	args[4] = Int16GetDatum(subject_at);
	args[5] = CharGetDatum(subject_at ? subject_json : ' ');
	args[6] = Int16GetDatum(key_at);
	args[7] = CharGetDatum(key_at ? key_json : ' ');
	args[8] = CStringGetTextDatum(TASKEVENTS_REMINDERS_TOPIC);
	ret = RunAs(TaskeventsOwner(), EnvelopePlan, args, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading taskevents.envelopes failed: %s", SPI_result_code_string(ret));

	entry->values_envelope = entry->whole_envelope = entry->reminders_envelope = 0;
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		int32		id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
		char	   *prefix = SPI_getvalue(tup, desc, 2);
		bool		with_columns = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));

		if (strcmp(prefix, "reminder.") == 0)
			entry->reminders_envelope = id;
		else if (with_columns)
			entry->values_envelope = id;
		else
			entry->whole_envelope = id;
	}
	if (entry->whole_envelope == 0 || entry->reminders_envelope == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the envelopes of \"%s\" are missing", RelationGetRelationName(rel)),
				 errhint("Run taskevents.attach() for the table again.")));
	entry->values_skip_subject = subject_at ? entry->id_attnum : 0;
	entry->values_skip_key = key_at ? entry->user_id_attnum : 0;

	FreeRowJsonPlan(entry->rowjson);
	entry->rowjson = MakeRowJsonPlan(RelationGetDescr(rel), ConfigContext);
}

/*
 * Read the registry row of rel (as the extension owner) and fill entry;
 * *attached says whether there was one.
 */
static void
LoadTableConfig(Relation rel, TableConfig *entry, bool *attached)
{
	Datum		arg = ObjectIdGetDatum(RelationGetRelid(rel));
	HeapTuple	regtup;
	TupleDesc	regdesc;
	Oid			typoutput;
	bool		typisvarlena;
	int			ret;
	bool		isnull;
	Datum		d;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	KeepOwnerPlan(&RegistryPlan,
				  "SELECT a.topic, a.source, a.pubsubname, a.id_column, a.user_id_column,"
				  " a.completed_column, a.due_date_column, a.is_recurring_column,"
				  " a.recurring_interval_column, a.reminder_sent_at_column, a.reminder_lead"
				  " FROM taskevents.attached_tables a"
				  " WHERE a.task_table OPERATOR(pg_catalog.=) $1",
				  1, OIDS(REGCLASSOID), false);

	ret = RunAs(TaskeventsOwner(), RegistryPlan, &arg, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading taskevents.attached_tables failed: %s",
			 SPI_result_code_string(ret));
	*attached = (SPI_processed == 1);
	if (!*attached)
	{
		SPI_finish();
		return;
	}
	regtup = SPI_tuptable->vals[0];
	regdesc = SPI_tuptable->tupdesc;

	if (entry->topic)
		pfree(entry->topic);
	if (entry->source)
		pfree(entry->source);
	if (entry->pubsubname)
		pfree(entry->pubsubname);
	entry->topic = CopyTextColumn(regtup, regdesc, 1);
	entry->source = CopyTextColumn(regtup, regdesc, 2);
	entry->pubsubname = CopyTextColumn(regtup, regdesc, 3);
	entry->id_attnum = ResolveColumn(rel, regtup, regdesc, 4, "id");
	entry->user_id_attnum = ResolveColumn(rel, regtup, regdesc, 5, "user id");
	entry->completed_attnum = ResolveColumn(rel, regtup, regdesc, 6, "completed");
	entry->due_date_attnum = ResolveColumn(rel, regtup, regdesc, 7, "due date");
	entry->is_recurring_attnum = ResolveColumn(rel, regtup, regdesc, 8, "is_recurring");
	entry->recurring_interval_attnum = ResolveColumn(rel, regtup, regdesc, 9, "recurring interval");
	entry->reminder_sent_at_attnum = ResolveColumn(rel, regtup, regdesc, 10, "reminder_sent_at");
	d = SPI_getbinval(regtup, regdesc, 11, &isnull);
	entry->has_reminder_lead = !isnull;
	if (!isnull)
		entry->reminder_lead = *DatumGetIntervalP(d);

	/* output functions for the subject and the partition key */
	getTypeOutputInfo(TupleDescAttr(RelationGetDescr(rel), entry->id_attnum - 1)->atttypid,
					  &typoutput, &typisvarlena);
	fmgr_info_cxt(typoutput, &entry->id_out, ConfigContext);
	getTypeOutputInfo(TupleDescAttr(RelationGetDescr(rel), entry->user_id_attnum - 1)->atttypid,
					  &typoutput, &typisvarlena);
	fmgr_info_cxt(typoutput, &entry->user_id_out, ConfigContext);

	/* row_to_json(record) reads the row type from the composite datum */
	fmgr_info_cxt(F_ROW_TO_JSON_RECORD, &entry->row_to_json, ConfigContext);

	LoadEnvelopes(rel, entry);

	if (entry->id_attnum == InvalidAttrNumber ||
		entry->user_id_attnum == InvalidAttrNumber ||
		entry->completed_attnum == InvalidAttrNumber)
		elog(ERROR, "registry row of \"%s\" lacks a required column",
			 RelationGetRelationName(rel));

	SPI_finish();
}

/*
 * Return the (valid) cached configuration of an attached table, loading it
 * on first use and after invalidation; NULL when the table is not attached.
 */
TableConfig *
LookupTableConfig(Relation rel)
{
	Oid			relid = RelationGetRelid(rel);
	TableConfig *entry;
	bool		found;
	bool		attached = true;

	entry = hash_search(ConfigCache, &relid, HASH_ENTER, &found);
	if (!found)
	{
		memset(((char *) entry) + sizeof(Oid), 0, sizeof(TableConfig) - sizeof(Oid));
		entry->cache.valid = false;
	}
	if (!entry->cache.valid)
	{
		/*
		 * Mark valid before loading: an invalidation that arrives while we
		 * read the registry clears the flag again, and is not lost.
		 */
		entry->cache.valid = true;
		PG_TRY();
		{
			LoadTableConfig(rel, entry, &attached);
		}
		PG_CATCH();
		{
			entry->cache.valid = false;
			PG_RE_THROW();
		}
		PG_END_TRY();
		if (!attached)
		{
			entry->cache.valid = false;
			return NULL;
		}
	}
	return entry;
}

/*
 * Return the configuration of an attached table; an error when it is not
 * attached (its triggers were created by hand, or it was detached).
 */
TableConfig *
GetTableConfig(Relation rel)
{
	TableConfig *entry = LookupTableConfig(rel);

	if (entry == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" is not attached to pg_taskevents",
						RelationGetRelationName(rel)),
				 errhint("Use taskevents.attach() to install the triggers; do not create them by hand.")));
	return entry;
}
