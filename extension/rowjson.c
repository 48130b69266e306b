/*-------------------------------------------------------------------------
 *
 * rowjson.c
 *	  The data of a task event: a row's values as JSON, without the names.
 *
 * A task event's data is row_to_json(row).  Most of that text is the
 * column names, the same in every event of a table, so the outbox keeps
 * only the values ("v1,v2,...", each rendered exactly as row_to_json
 * renders it) and the envelope of the table keeps the names; the reader
 * (cloudevent.c) puts them back together.  The rendering of each value
 * follows PostgreSQL's datum_to_json() category by category, with the
 * category and output function of every column worked out once per table
 * instead of once per value: booleans and valid JSON numbers bare,
 * date/time types in JSON's ISO format, json/jsonb as they are, arrays and
 * composites through array_to_json()/row_to_json(), types with a cast to
 * json through the cast, everything else quoted.  sql/core_events.sql
 * compares the result with row_to_json() for every kind of column.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_cast.h"
#include "catalog/pg_type.h"
#include "common/jsonapi.h"
#include "parser/parse_coerce.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "pgtime.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "taskevents.h"

/*
 * The categories of PostgreSQL's json_categorize_type().
 */
typedef enum RowJsonCategory
{
	RJ_BOOL,
	RJ_NUMERIC,
	RJ_DATE,
	RJ_TIMESTAMP,
	RJ_TIMESTAMPTZ,
	RJ_JSON,
	RJ_ARRAY,
	RJ_COMPOSITE,
	RJ_CAST,
	RJ_OTHER
} RowJsonCategory;

/*
 * How each column of a table is rendered.
 */
struct RowJsonPlan
{
	int			natts;
	bool	   *skip;			/* dropped column */
	RowJsonCategory *category;
	FmgrInfo   *func;			/* output function, or the cast to json */
	/* arrays whose elements are rendered here (else array_to_json) */
	Oid		   *elemtype;		/* InvalidOid: use array_to_json */
	int16	   *elemlen;
	bool	   *elembyval;
	char	   *elemalign;
	RowJsonCategory *elemcategory;
	FmgrInfo   *elemfunc;
};

static RowJsonCategory
Categorize(Oid typoid, Oid *funcoid)
{
	bool		typisvarlena;

	typoid = getBaseType(typoid);
	*funcoid = InvalidOid;
	switch (typoid)
	{
		case BOOLOID:
			return RJ_BOOL;
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case FLOAT4OID:
		case FLOAT8OID:
		case NUMERICOID:
			getTypeOutputInfo(typoid, funcoid, &typisvarlena);
			return RJ_NUMERIC;
		case DATEOID:
			return RJ_DATE;
		case TIMESTAMPOID:
			return RJ_TIMESTAMP;
		case TIMESTAMPTZOID:
			return RJ_TIMESTAMPTZ;
		case JSONOID:
		case JSONBOID:
			getTypeOutputInfo(typoid, funcoid, &typisvarlena);
			return RJ_JSON;
		default:
			break;
	}
	if (OidIsValid(get_element_type(typoid)) || typoid == ANYARRAYOID ||
		typoid == ANYCOMPATIBLEARRAYOID || typoid == RECORDARRAYOID)
		return RJ_ARRAY;
	if (type_is_rowtype(typoid))
		return RJ_COMPOSITE;
	if (typoid >= FirstNormalObjectId)
	{
		Oid			castfunc;

		if (find_coercion_pathway(JSONOID, typoid, COERCION_EXPLICIT, &castfunc) == COERCION_PATH_FUNC &&
			OidIsValid(castfunc))
		{
			*funcoid = castfunc;
			return RJ_CAST;
		}
	}
	getTypeOutputInfo(typoid, funcoid, &typisvarlena);
	return RJ_OTHER;
}

/*
 * Work out how to render every column of desc, in memory context cxt.
 */
RowJsonPlan *
MakeRowJsonPlan(TupleDesc desc, MemoryContext cxt)
{
	RowJsonPlan *plan = MemoryContextAllocZero(cxt, sizeof(RowJsonPlan));
	int			i;

	plan->natts = desc->natts;
	plan->skip = MemoryContextAllocZero(cxt, sizeof(bool) * Max(desc->natts, 1));
	plan->category = MemoryContextAllocZero(cxt, sizeof(RowJsonCategory) * Max(desc->natts, 1));
	plan->func = MemoryContextAllocZero(cxt, sizeof(FmgrInfo) * Max(desc->natts, 1));
	plan->elemtype = MemoryContextAllocZero(cxt, sizeof(Oid) * Max(desc->natts, 1));
	plan->elemlen = MemoryContextAllocZero(cxt, sizeof(int16) * Max(desc->natts, 1));
	plan->elembyval = MemoryContextAllocZero(cxt, sizeof(bool) * Max(desc->natts, 1));
	plan->elemalign = MemoryContextAllocZero(cxt, sizeof(char) * Max(desc->natts, 1));
	plan->elemcategory = MemoryContextAllocZero(cxt, sizeof(RowJsonCategory) * Max(desc->natts, 1));
	plan->elemfunc = MemoryContextAllocZero(cxt, sizeof(FmgrInfo) * Max(desc->natts, 1));
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		Oid			funcoid;

		plan->skip[i] = att->attisdropped;
		if (att->attisdropped)
			continue;
		plan->category[i] = Categorize(att->atttypid, &funcoid);
		if (OidIsValid(funcoid))
			fmgr_info_cxt(funcoid, &plan->func[i], cxt);
		if (plan->category[i] == RJ_ARRAY)
		{
			/* elements of a simple kind are rendered here, one level deep */
			Oid			elem = get_element_type(getBaseType(att->atttypid));
			RowJsonCategory ec;

			if (!OidIsValid(elem))
				continue;
			ec = Categorize(elem, &funcoid);
			if (ec == RJ_ARRAY || ec == RJ_COMPOSITE || ec == RJ_CAST)
				continue;
			plan->elemtype[i] = elem;
			plan->elemcategory[i] = ec;
			get_typlenbyvalalign(elem, &plan->elemlen[i], &plan->elembyval[i],
								 &plan->elemalign[i]);
			if (OidIsValid(funcoid))
				fmgr_info_cxt(funcoid, &plan->elemfunc[i], cxt);
		}
	}
	return plan;
}

/*
 * Free a plan made by MakeRowJsonPlan.
 */
void
FreeRowJsonPlan(RowJsonPlan *plan)
{
	if (plan == NULL)
		return;
	pfree(plan->skip);
	pfree(plan->category);
	pfree(plan->func);
	pfree(plan->elemtype);
	pfree(plan->elemlen);
	pfree(plan->elembyval);
	pfree(plan->elemalign);
	pfree(plan->elemcategory);
	pfree(plan->elemfunc);
	pfree(plan);
}

/*
 * The JSON of a date, timestamp or timestamptz.  The last one rendered is
 * kept: the rows of a bulk statement often share one (a DEFAULT now(), a
 * date set for all), and its rendering was 7 % of the trigger's time in a
 * 100,000-row INSERT ... SELECT (bench/README.md).  A timestamptz renders
 * in the session's time zone, so that is part of the key (pg_tzset()
 * keeps one pg_tz per zone for the backend's life).
 */
static void
AppendDateTime(StringInfo buf, Datum value, Oid typid)
{
	static Oid	last_typid = InvalidOid;
	static int64 last_value;
	static const pg_tz *last_tz;
	static char last_json[MAXDATELEN + 3];
	static int	last_len;
	int64		v = typid == DATEOID ? (int64) DatumGetDateADT(value) :
		(int64) DatumGetTimestamp(value);

	if (typid != last_typid || v != last_value ||
		(typid == TIMESTAMPTZOID && last_tz != session_timezone))
	{
		char		tmp[MAXDATELEN + 1];

		JsonEncodeDateTime(tmp, value, typid, NULL);
		last_typid = InvalidOid;	/* until the new one is whole */
		last_len = snprintf(last_json, sizeof(last_json), "\"%s\"", tmp);
		last_value = v;
		last_tz = session_timezone;
		last_typid = typid;
	}
	appendBinaryStringInfo(buf, last_json, last_len);
}

/*
 * Append one scalar value of the given category as datum_to_json()
 * renders it (not as an object key).  Arrays, composites and casts are
 * handled by the caller.
 */
static void
AppendScalar(StringInfo buf, RowJsonCategory category, FmgrInfo *func, Datum value)
{
	char	   *s;

	switch (category)
	{
		case RJ_BOOL:
			appendStringInfoString(buf, DatumGetBool(value) ? "true" : "false");
			break;
		case RJ_NUMERIC:
			s = OutputFunctionCall(func, value);
			if (IsValidJsonNumber(s, strlen(s)))
				appendStringInfoString(buf, s);
			else
				EscapeJson(buf, s);
			pfree(s);
			break;
		case RJ_DATE:
			AppendDateTime(buf, value, DATEOID);
			break;
		case RJ_TIMESTAMP:
			AppendDateTime(buf, value, TIMESTAMPOID);
			break;
		case RJ_TIMESTAMPTZ:
			AppendDateTime(buf, value, TIMESTAMPTZOID);
			break;
		case RJ_JSON:
			s = OutputFunctionCall(func, value);
			appendStringInfoString(buf, s);
			pfree(s);
			break;
		default:
			s = OutputFunctionCall(func, value);
			EscapeJson(buf, s);
			pfree(s);
			break;
	}
}

static void
AppendText(StringInfo buf, Datum textdatum)
{
	text	   *t = DatumGetTextPP(textdatum);

	appendBinaryStringInfo(buf, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
}

/*
 * Append a one-dimensional array of simple elements as array_to_json()
 * renders it: "[" elements "]", "[]" when empty.  False for any other
 * array, which the caller leaves to array_to_json().
 */
static bool
AppendSimpleArray(StringInfo buf, RowJsonPlan *plan, int i, Datum value)
{
	ArrayType  *arr = DatumGetArrayTypeP(value);
	Datum	   *elems;
	bool	   *nulls;
	int			n,
				k;

	if (ARR_NDIM(arr) > 1)
		return false;
	deconstruct_array(arr, plan->elemtype[i], plan->elemlen[i], plan->elembyval[i],
					  plan->elemalign[i], &elems, &nulls, &n);
	appendStringInfoChar(buf, '[');
	for (k = 0; k < n; k++)
	{
		if (k > 0)
			appendStringInfoChar(buf, ',');
		if (nulls[k])
			appendStringInfoString(buf, "null");
		else
			AppendScalar(buf, plan->elemcategory[i], &plan->elemfunc[i], elems[k]);
	}
	appendStringInfoChar(buf, ']');
	return true;
}

/*
 * Append one column's value as datum_to_json() renders it (not as an
 * object key).
 */
static void
AppendValue(StringInfo buf, RowJsonPlan *plan, int i, Datum value, bool isnull)
{
	if (isnull)
	{
		appendStringInfoString(buf, "null");
		return;
	}
	switch (plan->category[i])
	{
		case RJ_ARRAY:
			if (!OidIsValid(plan->elemtype[i]) || !AppendSimpleArray(buf, plan, i, value))
				AppendText(buf, DirectFunctionCall1(array_to_json, value));
			break;
		case RJ_COMPOSITE:
			AppendText(buf, DirectFunctionCall1(row_to_json, value));
			break;
		case RJ_CAST:
			AppendText(buf, FunctionCall1(&plan->func[i], value));
			break;
		default:
			AppendScalar(buf, plan->category[i], &plan->func[i], value);
			break;
	}
}

/*
 * Append the values of the row in slot to buf, comma-separated and each
 * exactly as row_to_json() renders it, leaving out the columns skip1 and
 * skip2 (attribute numbers, 0 for none: the subject and partition key the
 * reader derives, see JsonDerivable).  row_to_json(row) is "{"
 * then, for each column, its JSON-escaped name, ":" and its value,
 * comma-separated, then "}".
 */
void
AppendRowValues(StringInfo buf, RowJsonPlan *plan, TupleTableSlot *slot,
				AttrNumber skip1, AttrNumber skip2)
{
	int			i;
	bool		first = true;

	Assert(plan->natts == slot->tts_tupleDescriptor->natts);
	slot_getallattrs(slot);
	for (i = 0; i < plan->natts; i++)
	{
		if (plan->skip[i] || i + 1 == skip1 || i + 1 == skip2)
			continue;
		if (!first)
			appendStringInfoChar(buf, ',');
		first = false;
		AppendValue(buf, plan, i, slot->tts_values[i], slot->tts_isnull[i]);
	}
}

/*
 * How a value of type typid appears in row_to_json(), when that follows
 * from its text (its output function's result): 'n' for the numeric types
 * (bare when IsValidJsonNumber, else a JSON string), 's' for the types
 * rendered as a JSON string of their text, '\0' for any other.
 */
char
JsonDerivable(Oid typid)
{
	Oid			funcoid;

	switch (Categorize(typid, &funcoid))
	{
		case RJ_NUMERIC:
			return 'n';
		case RJ_OTHER:
			return 's';
		default:
			return '\0';
	}
}

/*
 * taskevents._json_derivable(typ regtype) RETURNS "char"
 *
 * JsonDerivable() for SQL (_register_envelopes()); NULL for '\0'.
 */
PG_FUNCTION_INFO_V1(json_derivable);
Datum
json_derivable(PG_FUNCTION_ARGS)
{
	char		c = JsonDerivable(PG_GETARG_OID(0));

	if (c == '\0')
		PG_RETURN_NULL();
	PG_RETURN_CHAR(c);
}

/*
 * Append the JSON of a derived value: its text as JsonDerivable() says.
 */
static void
AppendDerived(StringInfo buf, const DerivedValue *d)
{
	int			len;

	if (d->text == NULL)
		AppendBytes(buf, "null", 4);
	else if (d->kind == 'n' && IsValidJsonNumber(d->text, len = strlen(d->text)))
		AppendBytes(buf, d->text, len);
	else
		EscapeJson(buf, d->text);
}

/*
 * Append the members of the derived columns from column col (0-based) on,
 * as long as the next column is derived; returns the next column.
 */
static int
AppendDerivedColumns(StringInfo buf, char **escaped_names, const int *name_lens,
					 int nnames, int col,
					 const DerivedValue *d1, const DerivedValue *d2)
{
	while (col < nnames && ((d1 && d1->at == col + 1) || (d2 && d2->at == col + 1)))
	{
		if (col > 0)
			appendStringInfoCharMacro(buf, ',');
		AppendBytes(buf, escaped_names[col], name_lens[col]);
		appendStringInfoCharMacro(buf, ':');
		AppendDerived(buf, (d1 && d1->at == col + 1) ? d1 : d2);
		col++;
	}
	return col;
}

/*
 * The end of the value that starts at values[from]: the index of the comma
 * after it (outside strings, at nesting depth zero), or len; -1 when a
 * string in it is not closed.  Strings are skipped with memchr(): they are
 * most of the text.
 */
static int
ValueEnd(const char *values, int from, int len)
{
	int			depth = 0;
	int			i;

	for (i = from; i < len; i++)
	{
		char		c = values[i];

		if (c == '"')
		{
			for (;;)
			{
				const char *q = memchr(values + i + 1, '"', len - i - 1);
				const char *bs;

				if (q == NULL)
					return -1;
				bs = memchr(values + i + 1, '\\', q - (values + i + 1));
				if (bs == NULL)
				{
					i = q - values; /* the closing quote */
					break;
				}
				/* an escape: go on after the character it escapes */
				i = bs - values + 1;
				if (i >= len)
					return -1;
			}
		}
		else if (c == '[' || c == '{')
			depth++;
		else if (c == ']' || c == '}')
			depth--;
		else if (c == ',' && depth == 0)
			return i;
	}
	return len;
}

/*
 * Append the JSON object of column names and values: what row_to_json()
 * makes of a row, from its names (each already JSON-escaped), the text
 * AppendRowValues() wrote and the derived values (column positions 1..n,
 * at 0 when none).  The values are split at the commas between them, that
 * is, outside strings and at nesting depth zero.  Returns false (and
 * appends nothing) when the values do not match the names, so that the
 * caller can report it.
 */
bool
AppendRowObject(StringInfo buf, char **escaped_names, const int *name_lens,
				int nnames, const char *values, int len,
				const DerivedValue *d1, const DerivedValue *d2)
{
	int			start = buf->len;
	int			col;
	int			from = 0;

	appendStringInfoCharMacro(buf, '{');
	/* derived columns take no text from values */
	col = AppendDerivedColumns(buf, escaped_names, name_lens, nnames, 0, d1, d2);
	while (col < nnames && from <= len)
	{
		int			end = ValueEnd(values, from, len);

		if (end < 0)
			break;
		if (col > 0)
			appendStringInfoCharMacro(buf, ',');
		AppendBytes(buf, escaped_names[col], name_lens[col]);
		appendStringInfoCharMacro(buf, ':');
		AppendBytes(buf, values + from, end - from);
		from = end + 1;
		col = AppendDerivedColumns(buf, escaped_names, name_lens, nnames, col + 1, d1, d2);
	}
	if (col != nnames || from < len)
	{
		buf->len = start;
		buf->data[start] = '\0';
		return false;
	}
	appendStringInfoChar(buf, '}');
	return true;
}
