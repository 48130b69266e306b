/*-------------------------------------------------------------------------
 *
 * recurrence.c
 *	  Recurring tasks: the date rule and the next instance.
 *
 * A series is the sequence of local wall-clock times anchor + n intervals
 * (n = ..., -1, 0, 1, ...) in the configured time zone, where the anchor is
 * the due date of the series' first instance: daily and weekly add 1 and 7
 * calendar days, monthly adds n months and clamps the anchor's day of month
 * to the month's last day.  Every occurrence is computed from the anchor,
 * never from the previous occurrence, so nothing drifts: Jan 31, Feb 28
 * (29), Mar 31, Apr 30, May 31; and 09:00 local stays 09:00 across
 * daylight-saving changes.  The anchor of each series is kept in
 * taskevents.recurrence_spawned next to the instance it produced; when the
 * user moves an instance's due date, the moved date starts a new series.
 *
 * On completion of a recurring task SpawnNextInstance() inserts the next
 * instance into the same table with a plan kept per table, as the table's
 * owner, and claims the completed instance in
 * taskevents.recurrence_spawned (one row per completed instance, so
 * complete, un-complete and complete again spawns once).  The claims are
 * read and written in C, without SQL, like the outbox.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "optimizer/optimizer.h"
#include "rewrite/rewriteHandler.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "taskevents.h"

/*
 * How the next instance gets the value of one column of the table.
 */
typedef enum SpawnSource
{
	SPAWN_COPY,					/* copied from the completed instance */
	SPAWN_FALSE,				/* the completed column: false */
	SPAWN_NEXT_DUE				/* the due date column: the next occurrence */
} SpawnSource;

/*
 * The insert of the next instance into one table, kept per table and
 * rebuilt after a relcache invalidation (a column added or dropped).
 */
typedef struct SpawnPlan
{
	RelidCacheEntry cache;		/* relid (the hash key), valid */
	SPIPlanPtr	plan;
	int			nparams;
	AttrNumber *attnums;		/* per parameter: column of the table */
	SpawnSource *sources;		/* per parameter: where the value comes from */
} SpawnPlan;

static HTAB *SpawnPlans = NULL;

/* The columns of taskevents.recurrence_spawned (30_recurrence.sql). */
#define CLAIM_NATTS			6
#define Anum_task_table		1
#define Anum_task_id		2
#define Anum_next_task_id	3
#define Anum_series_anchor	4
#define Anum_next_due		5
#define Anum_spawned_at		6

/*
 * Set up the per-table plan cache.  Called once from _PG_init.
 */
void
InitRecurrenceCache(void)
{
	if (SpawnPlans != NULL)
		return;
	SpawnPlans = CreateRelidCache("taskevents spawn plans", sizeof(SpawnPlan),
								  TopMemoryContext);
}

/*
 * Parse a recurring interval: daily, weekly or monthly, in any letter case
 * ("Weekly" as a UI shows it is accepted), without surrounding spaces.
 */
RecurrenceKind
ParseRecurringInterval(const char *value)
{
	if (pg_strcasecmp(value, "daily") == 0)
		return RECURRENCE_DAILY;
	if (pg_strcasecmp(value, "weekly") == 0)
		return RECURRENCE_WEEKLY;
	if (pg_strcasecmp(value, "monthly") == 0)
		return RECURRENCE_MONTHLY;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown recurring interval \"%s\"", value),
			 errhint("Use daily, weekly or monthly.")));
	return RECURRENCE_DAILY;	/* keep compiler quiet */
}

/*
 * The zone dates are computed in: name when given, else the setting
 * taskevents.timezone, else the session's TimeZone.
 */
pg_tz *
ScheduleTimeZone(const char *name)
{
	pg_tz	   *tz;

	if (name == NULL || name[0] == '\0')
		name = taskevents_timezone;
	if (name == NULL || name[0] == '\0')
		return session_timezone;
	tz = pg_tzset(name);
	if (tz == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("time zone \"%s\" not recognized", name),
				 errhint("Use a name from pg_timezone_names.")));
	return tz;
}

static void
ToLocal(TimestampTz t, pg_tz *tz, struct pg_tm *tm, fsec_t *fsec)
{
	int			tzoff;

	if (timestamp2tm(t, &tzoff, tm, fsec, NULL, tz) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
}

/*
 * The instant of local wall-clock time tm in zone tz.  A time that does not
 * exist (skipped by a spring-forward change) is read with the offset before
 * the change, as PostgreSQL reads such input: 02:30 becomes 03:30.
 */
static TimestampTz
FromLocal(struct pg_tm *tm, fsec_t fsec, pg_tz *tz)
{
	int			tzoff = DetermineTimeZoneOffset(tm, tz);
	TimestampTz result;

	if (tm2timestamp(tm, fsec, &tzoff, &result) != 0 || !IS_VALID_TIMESTAMP(result))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("next occurrence is out of range")));
	return result;
}

/*
 * Occurrence n of the series anchored at local time *anchor.
 */
static TimestampTz
Occurrence(RecurrenceKind kind, const struct pg_tm *anchor, fsec_t fsec,
		   int64 n, pg_tz *tz)
{
	struct pg_tm tm = *anchor;

	if (kind == RECURRENCE_MONTHLY)
	{
		int64		month = (int64) anchor->tm_year * 12 + (anchor->tm_mon - 1) + n;
		int			mday;

		tm.tm_year = (int) (month >= 0 ? month / 12 : -((-month + 11) / 12));
		tm.tm_mon = (int) (month - (int64) tm.tm_year * 12) + 1;
		mday = day_tab[isleap(tm.tm_year) ? 1 : 0][tm.tm_mon - 1];
		tm.tm_mday = Min(anchor->tm_mday, mday);
	}
	else
	{
		int64		step = (kind == RECURRENCE_WEEKLY) ? 7 : 1;
		int64		julian = date2j(anchor->tm_year, anchor->tm_mon, anchor->tm_mday) + n * step;

		if (julian < 0 || julian > INT_MAX)
			ereport(ERROR,
					(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
					 errmsg("next occurrence is out of range")));
		j2date((int) julian, &tm.tm_year, &tm.tm_mon, &tm.tm_mday);
	}
	tm.tm_isdst = -1;
	return FromLocal(&tm, fsec, tz);
}

/*
 * The first occurrence of the series strictly after the later of due and
 * after.  The series is anchored at anchor when given, else at due; with no
 * due date it is anchored at after (one interval after completion).  Returns
 * false (no result) when neither due nor after is given.
 */
bool
NextOccurrence(RecurrenceKind kind, pg_tz *tz,
			   TimestampTz due, bool due_null,
			   TimestampTz after, bool after_null,
			   TimestampTz anchor, bool anchor_null,
			   TimestampTz *result)
{
	TimestampTz ref;
	struct pg_tm atm,
				rtm;
	fsec_t		afsec,
				rfsec;
	int64		n;
	TimestampTz occ;

	if (due_null && after_null)
		return false;
	ref = due_null ? after : (after_null || after < due ? due : after);
	if (anchor_null)
		anchor = due_null ? after : due;

	ToLocal(anchor, tz, &atm, &afsec);
	ToLocal(ref, tz, &rtm, &rfsec);

	/* start just below the answer, then step up: at most a few steps */
	if (kind == RECURRENCE_MONTHLY)
		n = ((int64) rtm.tm_year * 12 + rtm.tm_mon) -
			((int64) atm.tm_year * 12 + atm.tm_mon) - 1;
	else
	{
		int64		step = (kind == RECURRENCE_WEEKLY) ? 7 : 1;
		int64		days = (int64) date2j(rtm.tm_year, rtm.tm_mon, rtm.tm_mday) -
			date2j(atm.tm_year, atm.tm_mon, atm.tm_mday);

		n = (days >= 0 ? days / step : -((-days + step - 1) / step)) - 1;
	}

	for (;;)
	{
		occ = Occurrence(kind, &atm, afsec, n, tz);
		if (occ > ref)
			break;
		n++;
	}
	*result = occ;
	return true;
}

/*
 * taskevents.next_occurrence(due timestamptz, recurring_interval text,
 *							  after timestamptz DEFAULT NULL,
 *							  tz text DEFAULT NULL,
 *							  anchor timestamptz DEFAULT NULL)
 *		RETURNS timestamptz
 *
 * The date rule of recurring tasks (see the file header).  STABLE, not
 * IMMUTABLE: without tz it reads taskevents.timezone and TimeZone.
 */
PG_FUNCTION_INFO_V1(next_occurrence);
Datum
next_occurrence(PG_FUNCTION_ARGS)
{
	RecurrenceKind kind;
	pg_tz	   *tz;
	TimestampTz result;

	if (PG_ARGISNULL(1))
		PG_RETURN_NULL();
	kind = ParseRecurringInterval(text_to_cstring(PG_GETARG_TEXT_PP(1)));
	tz = ScheduleTimeZone(PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3)));

	if (!NextOccurrence(kind, tz,
						PG_ARGISNULL(0) ? 0 : PG_GETARG_TIMESTAMPTZ(0), PG_ARGISNULL(0),
						PG_ARGISNULL(2) ? 0 : PG_GETARG_TIMESTAMPTZ(2), PG_ARGISNULL(2),
						PG_ARGISNULL(4) ? 0 : PG_GETARG_TIMESTAMPTZ(4), PG_ARGISNULL(4),
						&result))
		PG_RETURN_NULL();
	PG_RETURN_TIMESTAMPTZ(result);
}

/*
 * Refuse a recurring row whose interval is missing or unknown.  A row that
 * is not recurring may hold anything in the interval column.
 */
void
CheckRecurrence(TableConfig *cfg, Relation rel, TupleTableSlot *row)
{
	char	   *interval;

	if (!ColumnIsTrue(row, cfg->is_recurring_attnum))
		return;
	interval = ColumnText(row, cfg->recurring_interval_attnum);
	if (interval == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("recurring task in \"%s\" has no recurring interval",
						RelationGetRelationName(rel)),
				 errhint("Use daily, weekly or monthly.")));
	(void) ParseRecurringInterval(interval);
}

/*
 * Does column att get a fresh value in the next instance rather than a
 * copy?  Identity and generated columns always; a column whose default
 * computes something (now(), nextval(), gen_random_uuid(), current_user:
 * anything not immutable) too; and the completion time "<completed>_at"
 * when the table has one.  A constant default ('medium', '{}') is just an
 * initial value, so the completed instance's value is copied.
 */
static bool
TakesFreshValue(Relation rel, Form_pg_attribute att, const char *completed_at)
{
	Node	   *expr;

	if (att->attidentity || att->attgenerated)
		return true;
	if (strcmp(NameStr(att->attname), completed_at) == 0)
		return true;
	if (!att->atthasdef)
		return false;
	expr = build_column_default(rel, att->attnum);
	return expr != NULL && contain_mutable_functions(expr);
}

/*
 * Build the plan that inserts the next instance into rel and returns its
 * key as text.
 */
static void
BuildSpawnPlan(TableConfig *cfg, Relation rel, SpawnPlan *entry)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Form_pg_attribute idatt = TupleDescAttr(desc, cfg->id_attnum - 1);
	StringInfoData cols,
				vals;
	char	   *completed_at;
	Oid		   *argtypes;
	char	   *sql;
	int			i;

	if (!idatt->atthasdef && !idatt->attidentity)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot create the next instance of a recurring task in \"%s\": key column \"%s\" has no default",
						RelationGetRelationName(rel), NameStr(idatt->attname)),
				 errdetail("The next instance is inserted without a key and gets the column's default."),
				 errhint("Give the key column a default, for example GENERATED ALWAYS AS IDENTITY or DEFAULT gen_random_uuid().")));

	if (entry->attnums)
		pfree(entry->attnums);
	if (entry->sources)
		pfree(entry->sources);
	if (entry->plan)
		SPI_freeplan(entry->plan);
	entry->plan = NULL;
	entry->attnums = MemoryContextAlloc(TopMemoryContext, sizeof(AttrNumber) * desc->natts);
	entry->sources = MemoryContextAlloc(TopMemoryContext, sizeof(SpawnSource) * desc->natts);
	entry->nparams = 0;
	argtypes = palloc(sizeof(Oid) * desc->natts);

	completed_at = psprintf("%s_at",
							NameStr(TupleDescAttr(desc, cfg->completed_attnum - 1)->attname));
	initStringInfo(&cols);
	initStringInfo(&vals);
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		SpawnSource source;

		if (att->attisdropped)
			continue;
		if (att->attnum == cfg->completed_attnum)
			source = SPAWN_FALSE;
		else if (att->attnum == cfg->due_date_attnum)
			source = SPAWN_NEXT_DUE;
		else if (att->attnum == cfg->id_attnum ||
				 att->attnum == cfg->reminder_sent_at_attnum)
			continue;
		else if (att->attnum == cfg->user_id_attnum ||
				 att->attnum == cfg->is_recurring_attnum ||
				 att->attnum == cfg->recurring_interval_attnum)
			source = SPAWN_COPY;
		else if (TakesFreshValue(rel, att, completed_at))
			continue;
		else
			source = SPAWN_COPY;

		entry->attnums[entry->nparams] = att->attnum;
		entry->sources[entry->nparams] = source;
		argtypes[entry->nparams] = att->atttypid;
		entry->nparams++;
		appendStringInfo(&cols, "%s%s", cols.len > 0 ? ", " : "",
						 quote_identifier(NameStr(att->attname)));
		appendStringInfo(&vals, "%s$%d", vals.len > 0 ? ", " : "", entry->nparams);
	}

	sql = psprintf("INSERT INTO %s (%s) VALUES (%s) RETURNING %s",
				   quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
											  RelationGetRelationName(rel)),
				   cols.data, vals.data,
				   quote_identifier(NameStr(idatt->attname)));
	entry->plan = PrepareAs(rel->rd_rel->relowner, sql, entry->nparams, argtypes, false);
	entry->cache.valid = true;
}

/*
 * Open taskevents.recurrence_spawned (the claims) and check that it has the
 * layout this library reads and writes (CheckTableLayout()).  The claims
 * are the extension's own table, read and written here without SQL (no
 * plan, no operator, no search_path) and without a privilege check, like
 * the outbox.
 */
static Relation
OpenClaims(LOCKMODE mode)
{
	static const Oid types[CLAIM_NATTS] = {
		REGCLASSOID, TEXTOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID
	};
	Oid			relid = get_relname_relid("recurrence_spawned", TaskeventsSchema());
	Relation	rel;

	if (!OidIsValid(relid))
	{
		/* dropped and created again during this backend's life? */
		ResetExtensionIdentity();
		relid = get_relname_relid("recurrence_spawned", TaskeventsSchema());
		if (!OidIsValid(relid))
			elog(ERROR, "table taskevents.recurrence_spawned is missing");
	}
	rel = table_open(relid, mode);
	CheckTableLayout(rel, types, CLAIM_NATTS, "taskevents.recurrence_spawned");
	return rel;
}

/*
 * The OID of index name of the claims.
 */
static Oid
ClaimIndex(Relation claims, const char *name)
{
	Oid			indexid = get_relname_relid(name, RelationGetNamespace(claims));

	if (!OidIsValid(indexid) || !list_member_oid(RelationGetIndexList(claims), indexid))
		elog(ERROR, "index taskevents.%s of taskevents.recurrence_spawned is missing", name);
	return indexid;
}

/*
 * One read of claims (open) for the completed instance task_id of relid: has
 * it produced its next instance already (complete, un-complete, complete)?
 * And the claim that spawned it with due date due, which holds the series
 * anchor (*anchor_null when there is none: the first instance of a series,
 * or one whose due date the user moved).
 *
 * As a statement of a non-read-only SPI call would, it advances the command
 * counter and takes a fresh snapshot: it must see the claim of a completion
 * this one waited for (the row lock) and that committed.  Each lookup goes
 * to the one index made for it (recurrence_spawned_pkey by task, the
 * partial recurrence_spawned_next_idx by next instance), whatever a planner
 * would have estimated for an empty table; sql/recurrence counts the rows
 * read.
 */
static bool
ReadClaims(Relation claims, Oid relid, const char *task_id, TimestampTz due, bool due_null,
		   TimestampTz *anchor, bool *anchor_null)
{
	TupleDesc	desc = RelationGetDescr(claims);
	Snapshot	snap;
	ScanKeyData keys[2];
	SysScanDesc scan;
	HeapTuple	tup;
	bool		claimed;

	CommandCounterIncrement();
	snap = RegisterSnapshot(GetTransactionSnapshot());

	ScanKeyInit(&keys[0], Anum_task_table, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	TextEqualKey(&keys[1], claims, Anum_task_id, task_id);
	scan = systable_beginscan(claims, ClaimIndex(claims, "recurrence_spawned_pkey"),
							  true, snap, 2, keys);
	claimed = HeapTupleIsValid(systable_getnext(scan));
	systable_endscan(scan);

	*anchor_null = true;
	if (!claimed && !due_null)
	{
		TextEqualKey(&keys[0], claims, Anum_next_task_id, task_id);
		scan = systable_beginscan(claims, ClaimIndex(claims, "recurrence_spawned_next_idx"),
								  true, snap, 1, keys);
		while (*anchor_null && HeapTupleIsValid(tup = systable_getnext(scan)))
		{
			bool		isnull;
			Datum		d = heap_getattr(tup, Anum_task_table, desc, &isnull);

			if (isnull || DatumGetObjectId(d) != relid)
				continue;
			d = heap_getattr(tup, Anum_next_due, desc, &isnull);
			if (isnull || DatumGetTimestampTz(d) != due)
				continue;
			d = heap_getattr(tup, Anum_series_anchor, desc, anchor_null);
			if (!*anchor_null)
				*anchor = DatumGetTimestampTz(d);
		}
		systable_endscan(scan);
	}

	UnregisterSnapshot(snap);
	return claimed;
}

/*
 * Write the claim into claims: completed instance task_id of relid
 * (relname) produced next_id, due at next_due in the series anchored at
 * anchor.
 *
 * Every completion of this instance holds its row lock and found no claim
 * in ReadClaims(), so a conflict means a second row with the same key (a
 * table without a unique key) completed at the same time: the next
 * instance just inserted would be one too many, and the transaction fails
 * with a serialization failure, to be retried (InsertOwnRow()).
 */
static void
WriteClaim(Relation claims, Oid relid, const char *relname, const char *task_id,
		   const char *next_id, TimestampTz anchor, TimestampTz next_due)
{
	Datum		values[CLAIM_NATTS];
	bool		isnull[CLAIM_NATTS];
	HeapTuple	tup;

	memset(isnull, 0, sizeof(isnull));
	values[Anum_task_table - 1] = ObjectIdGetDatum(relid);
	values[Anum_task_id - 1] = CStringGetTextDatum(task_id);
	values[Anum_next_task_id - 1] = CStringGetTextDatum(next_id);
	values[Anum_series_anchor - 1] = TimestampTzGetDatum(anchor);
	values[Anum_next_due - 1] = TimestampTzGetDatum(next_due);
	/* the column's default, now() */
	values[Anum_spawned_at - 1] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	tup = heap_form_tuple(RelationGetDescr(claims), values, isnull);
	InsertOwnRow(claims, tup, "the completion of a recurring task of", relname,
				 "Another transaction completed a task with the same key at the same time.");
	heap_freetuple(tup);
}

/*
 * The completed instance of a recurring task is trigdata's new row: insert
 * its next instance, once.
 */
void
SpawnNextInstance(TableConfig *cfg, TriggerData *trigdata)
{
	Relation	rel = trigdata->tg_relation;
	TupleTableSlot *row = trigdata->tg_newslot;
	Oid			relid = RelationGetRelid(rel);
	char	   *task_id;
	char	   *interval;
	RecurrenceKind kind;
	bool		due_null = true;
	TimestampTz due = 0;
	TimestampTz anchor = 0;
	bool		anchor_null = true;
	TimestampTz next_due = 0;
	SpawnPlan  *entry;
	bool		found;
	Datum	   *values;
	char	   *vnulls;
	int			ret;
	int			i;
	char	   *next_id;
	Relation	claims;

	if (!ColumnIsTrue(row, cfg->is_recurring_attnum))
		return;
	interval = ColumnText(row, cfg->recurring_interval_attnum);
	if (interval == NULL)
		return;					/* refused by CheckRecurrence() already */
	kind = ParseRecurringInterval(interval);
	task_id = ColumnText(row, cfg->id_attnum);
	if (cfg->due_date_attnum != InvalidAttrNumber)
	{
		Datum		d = slot_getattr(row, cfg->due_date_attnum, &due_null);

		if (!due_null)
			due = DatumGetTimestampTz(d);
	}

	/* read and then written (the lock is kept until commit, as by INSERT) */
	claims = OpenClaims(RowExclusiveLock);
	if (ReadClaims(claims, relid, task_id, due, due_null, &anchor, &anchor_null))
	{
		table_close(claims, NoLock);
		return;
	}

	(void) NextOccurrence(kind, ScheduleTimeZone(NULL),
						  due, due_null,
						  GetCurrentTransactionStartTimestamp(), false,
						  anchor, anchor_null, &next_due);
	if (anchor_null)
	{
		anchor = due_null ? next_due : due;
		anchor_null = false;
	}

	/*
	 * The next instance, inserted as the table's owner in a restricted
	 * context: the table's own triggers run with its owner's rights, never
	 * with the extension owner's or the writer's.
	 */
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	entry = hash_search(SpawnPlans, &relid, HASH_ENTER, &found);
	if (!found)
	{
		entry->cache.valid = false;
		entry->plan = NULL;
		entry->attnums = NULL;
		entry->sources = NULL;
	}
	if (!entry->cache.valid)
		BuildSpawnPlan(cfg, rel, entry);

	values = palloc(sizeof(Datum) * Max(entry->nparams, 1));
	vnulls = palloc(Max(entry->nparams, 1));
	for (i = 0; i < entry->nparams; i++)
	{
		bool		isnull = false;

		switch (entry->sources[i])
		{
			case SPAWN_FALSE:
				values[i] = BoolGetDatum(false);
				break;
			case SPAWN_NEXT_DUE:
				values[i] = TimestampTzGetDatum(next_due);
				break;
			case SPAWN_COPY:
				values[i] = slot_getattr(row, entry->attnums[i], &isnull);
				break;
		}
		vnulls[i] = isnull ? 'n' : ' ';
	}

	ret = RunAs(rel->rd_rel->relowner, entry->plan, values, vnulls, false, 0);
	if (ret != SPI_OK_INSERT_RETURNING || SPI_processed != 1)
		elog(ERROR, "inserting the next instance of a recurring task failed: %s",
			 SPI_result_code_string(ret));
	next_id = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

	/* the claim, written once, with the next instance's key */
	WriteClaim(claims, relid, RelationGetRelationName(rel), task_id, next_id, anchor, next_due);
	table_close(claims, NoLock);
	SPI_finish();
}
