/*
 * cloudevent.c
 *		Check that an outbox row is a CloudEvent 1.0 in JSON and find its
 *		attributes, without building a document tree.
 *
 * Events the extension writes are valid JSON, but a row written by hand
 * can be anything else; the scanner checks bounds on
 * every step and reports a reason for whatever it does not accept.
 * ce_check() spares the scan for rows shaped exactly like the extension's
 * own events.  A full parse (jansson) is only needed for the rare dead
 * letter that must shed its data.
 */
#include "relay.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

typedef struct scanner
{
	const char *p;
	const char *end;
} scanner;

static void
skip_ws(scanner *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

/* At an opening quote: move past the closing one. */
static bool
skip_string(scanner *s)
{
	s->p++;
	while (s->p < s->end)
	{
		if (*s->p == '\\')
			s->p += 2;
		else if (*s->p == '"')
		{
			s->p++;
			return true;
		}
		else
			s->p++;
	}
	return false;
}

/* Skip any JSON value; returns its first character, or 0 when malformed. */
static char
skip_value(scanner *s)
{
	char		first;
	int			depth = 0;

	skip_ws(s);
	if (s->p >= s->end)
		return 0;
	first = *s->p;
	if (first == '"')
		return skip_string(s) ? first : 0;
	if (first == '{' || first == '[')
	{
		while (s->p < s->end)
		{
			char		c = *s->p;

			if (c == '"')
			{
				if (!skip_string(s))
					return 0;
				continue;
			}
			if (c == '{' || c == '[')
				depth++;
			else if (c == '}' || c == ']')
			{
				depth--;
				if (depth == 0)
				{
					s->p++;
					return first;
				}
			}
			s->p++;
		}
		return 0;
	}
	/* number, true, false, null */
	while (s->p < s->end && *s->p != ',' && *s->p != '}' && *s->p != ']' &&
		   *s->p != ' ' && *s->p != '\n' && *s->p != '\t' && *s->p != '\r')
		s->p++;
	return first;
}

static bool
key_is(ce_span k, const char *name)
{
	size_t		n = strlen(name);

	return k.len == n && memcmp(k.p, name, n) == 0;
}

/* Record a string attribute; its span excludes the quotes. */
static const char *
take_string(char first, ce_span raw, ce_span *out, bool *present, const char *what)
{
	if (first != '"')
		return what;
	out->p = raw.p + 1;
	out->len = raw.len - 2;
	if (present)
		*present = true;
	return NULL;
}

const char *
ce_scan(const char *buf, size_t len, ce_fields *out)
{
	scanner		s = {buf, buf + len};
	bool		has_spec = false,
				has_id = false,
				has_source = false,
				has_type = false;

	memset(out, 0, sizeof(*out));
	skip_ws(&s);
	if (s.p >= s.end || *s.p != '{')
		return "not a JSON object";
	s.p++;
	for (;;)
	{
		ce_span		key,
					val;
		char		first;
		const char *bad = NULL;

		skip_ws(&s);
		if (s.p < s.end && *s.p == '}')
		{
			s.p++;
			break;
		}
		if (s.p >= s.end || *s.p != '"')
			return "malformed JSON";
		key.p = s.p + 1;
		if (!skip_string(&s))
			return "malformed JSON";
		key.len = s.p - key.p - 1;
		skip_ws(&s);
		if (s.p >= s.end || *s.p != ':')
			return "malformed JSON";
		s.p++;
		skip_ws(&s);
		val.p = s.p;
		first = skip_value(&s);
		if (first == 0)
			return "malformed JSON";
		val.len = s.p - val.p;

		if (key_is(key, "specversion"))
			bad = take_string(first, val, &out->specversion, &has_spec, "specversion is not a string");
		else if (key_is(key, "id"))
			bad = take_string(first, val, &out->id, &has_id, "id is not a string");
		else if (key_is(key, "source"))
			bad = take_string(first, val, &out->source, &has_source, "source is not a string");
		else if (key_is(key, "type"))
			bad = take_string(first, val, &out->type, &has_type, "type is not a string");
		else if (key_is(key, "time"))
			bad = take_string(first, val, &out->time, &out->has_time, "time is not a string");
		else if (key_is(key, "subject"))
			bad = take_string(first, val, &out->subject, &out->has_subject, "subject is not a string");
		else if (key_is(key, "partitionkey"))
			bad = take_string(first, val, &out->partitionkey, &out->has_partitionkey, "partitionkey is not a string");
		else if (key_is(key, "traceparent"))
			bad = take_string(first, val, &out->traceparent, &out->has_traceparent, "traceparent is not a string");
		else if (key_is(key, "data"))
		{
			out->data = val;
			out->has_data = true;
		}
		if (bad)
			return bad;

		skip_ws(&s);
		if (s.p < s.end && *s.p == ',')
		{
			s.p++;
			continue;
		}
		if (s.p < s.end && *s.p == '}')
		{
			s.p++;
			break;
		}
		return "malformed JSON";
	}
	skip_ws(&s);
	if (s.p != s.end)
		return "malformed JSON";
	if (!has_spec)
		return "missing specversion";
	if (out->specversion.len != 3 || memcmp(out->specversion.p, "1.0", 3) != 0)
		return "specversion is not \"1.0\"";
	if (!has_id || out->id.len == 0)
		return "missing id";
	if (!has_source || out->source.len == 0)
		return "missing source";
	if (!has_type || out->type.len == 0)
		return "missing type";
	return NULL;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static unsigned
read_u4(const char *p, const char *end, bool *ok)
{
	unsigned	v = 0;

	if (end - p < 4)
	{
		*ok = false;
		return 0;
	}
	for (int i = 0; i < 4; i++)
	{
		int			h = hexval(p[i]);

		if (h < 0)
		{
			*ok = false;
			return 0;
		}
		v = v * 16 + h;
	}
	return v;
}

static size_t
put_utf8(char *o, unsigned cp)
{
	if (cp < 0x80)
	{
		o[0] = cp;
		return 1;
	}
	if (cp < 0x800)
	{
		o[0] = 0xC0 | (cp >> 6);
		o[1] = 0x80 | (cp & 0x3F);
		return 2;
	}
	if (cp < 0x10000)
	{
		o[0] = 0xE0 | (cp >> 12);
		o[1] = 0x80 | ((cp >> 6) & 0x3F);
		o[2] = 0x80 | (cp & 0x3F);
		return 3;
	}
	o[0] = 0xF0 | (cp >> 18);
	o[1] = 0x80 | ((cp >> 12) & 0x3F);
	o[2] = 0x80 | ((cp >> 6) & 0x3F);
	o[3] = 0x80 | (cp & 0x3F);
	return 4;
}

char *
ce_unescape(ce_span s)
{
	char	   *out = malloc(s.len + 1);
	const char *p = s.p,
			   *end = s.p + s.len;
	size_t		n = 0;

	while (p < end)
	{
		if (*p != '\\' || p + 1 >= end)
		{
			out[n++] = *p++;
			continue;
		}
		p++;
		/* \b \f \n \r \t: the character of the same place in "\b\f\n\r\t" */
		if (*p != '\0' && strchr("bfnrt", *p) != NULL)
		{
			out[n++] = "\b\f\n\r\t"[strchr("bfnrt", *p) - "bfnrt"];
			p++;
			continue;
		}
		switch (*p)
		{
			case 'u':
				{
					bool		ok = true;
					unsigned	cp = read_u4(p + 1, end, &ok);

					if (!ok)
					{
						out[n++] = *p++;
						break;
					}
					p += 5;
					if (cp >= 0xD800 && cp < 0xDC00 && end - p >= 6 && p[0] == '\\' && p[1] == 'u')
					{
						unsigned	lo = read_u4(p + 2, end, &ok);

						if (ok && lo >= 0xDC00 && lo < 0xE000)
						{
							cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
							p += 6;
						}
					}
					/* a \uXXXX escape is 6 bytes and becomes at most 4 */
					n += put_utf8(out + n, cp);
					break;
				}
			default:
				out[n++] = *p++;
				break;
		}
	}
	out[n] = '\0';
	return out;
}

char *
ce_without_data(const char *buf, size_t len, size_t *outlen)
{
	json_t	   *doc = json_loadb(buf, len, 0, NULL);
	char	   *text;

	if (doc == NULL || !json_is_object(doc))
	{
		json_decref(doc);
		return NULL;
	}
	json_object_del(doc, "data");
	json_object_set_new(doc, "taskevents_data_omitted", json_true());
	text = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(doc);
	if (text)
		*outlen = strlen(text);
	return text;
}

/*
 * At p, just after an opening quote: the closing quote of a plain,
 * non-empty string (no escape, no control character), or NULL.
 */
static const char *
plain_string_end(const char *p, const char *end)
{
	const char *q = p;

	while (q < end && *q != '"')
	{
		if (*q == '\\' || (unsigned char) *q < 0x20)
			return NULL;
		q++;
	}
	return q < end && q > p ? q : NULL;
}

/* Whether the text at *p starts with lit; if so, move *p past it. */
static bool
take_literal(const char **p, const char *end, const char *lit)
{
	size_t		n = strlen(lit);

	if ((size_t) (end - *p) < n || memcmp(*p, lit, n) != 0)
		return false;
	*p += n;
	return true;
}

/*
 * Whether an outbox row is a valid CloudEvent, for structured mode, where
 * the relay sends the text as it is and needs no attribute: NULL when
 * valid, else the reason.  The extension writes every event starting
 * {"specversion":"1.0","id":"...","source":"...","type":"..." with no
 * whitespace; a row that starts like that, with plain non-empty strings,
 * is accepted without reading the rest: it is taken to be one the
 * extension wrote, valid JSON by construction (only a superuser can write
 * outbox rows by hand).  Anything else gets ce_scan() and its reason.
 */
const char *
ce_check(const char *buf, size_t len)
{
	static const char *const lead[] = {
		"{\"specversion\":\"1.0\",\"id\":\"", "\",\"source\":\"", "\",\"type\":\""
	};
	const char *p = buf,
			   *end = buf + len;
	ce_fields	f;

	for (int i = 0; i < 3; i++)
	{
		if (!take_literal(&p, end, lead[i]) || (p = plain_string_end(p, end)) == NULL)
			return ce_scan(buf, len, &f);
	}
	/* after the type's closing quote: the next member or the end */
	if (end - p >= 2 && (p[1] == ',' || p[1] == '}'))
		return NULL;
	return ce_scan(buf, len, &f);
}
