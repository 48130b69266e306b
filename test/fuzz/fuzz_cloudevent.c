/*
 * fuzz_cloudevent.c
 *		libFuzzer target for the relay's handling of outbox rows
 *		(relay/cloudevent.c): ce_scan() validates a row and finds its
 *		attributes, ce_unescape() turns an attribute into a C string (the
 *		Kafka key, the ce_* headers), ce_without_data() sheds the data of a
 *		dead letter too large to send.
 *
 * Besides memory errors (ASan/UBSan), it checks the contracts the relay
 * relies on: every span lies inside the input, an unescaped string is never
 * longer than its span (ce_unescape allocates len + 1), a valid row has a
 * non-empty id, source and type and specversion "1.0", and what
 * ce_without_data returns is valid JSON without a "data" member.
 *
 * ce_check(), the structured-mode check that accepts rows shaped like the
 * extension's events without reading them whole: it accepts whatever
 * ce_scan accepts, gives ce_scan's reason when it refuses, and what it
 * accepts, if it is JSON at all (the extension's events are; duplicate keys
 * aside), has specversion "1.0" and non-empty string id, source and type.
 */
#include "relay.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "contract broken: %s (%s:%d)\n", #c, __FILE__, __LINE__); abort(); } } while (0)

static void
check_span(const uint8_t *buf, size_t len, ce_span s, bool present)
{
	char	   *u;

	if (!present)
		return;
	CHECK((const uint8_t *) s.p >= buf && (const uint8_t *) s.p + s.len <= buf + len);
	u = ce_unescape(s);
	CHECK(u != NULL);
	CHECK(strlen(u) <= s.len);
	free(u);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ce_fields	f;
	const char *bad = ce_scan((const char *) data, size, &f);

	if (bad == NULL)
	{
		CHECK(f.specversion.len == 3 && memcmp(f.specversion.p, "1.0", 3) == 0);
		CHECK(f.id.len > 0 && f.source.len > 0 && f.type.len > 0);
		check_span(data, size, f.specversion, true);
		check_span(data, size, f.id, true);
		check_span(data, size, f.source, true);
		check_span(data, size, f.type, true);
		check_span(data, size, f.time, f.has_time);
		check_span(data, size, f.subject, f.has_subject);
		check_span(data, size, f.partitionkey, f.has_partitionkey);
		check_span(data, size, f.traceparent, f.has_traceparent);
		if (f.has_data)
			CHECK((const uint8_t *) f.data.p >= data && (const uint8_t *) f.data.p + f.data.len <= data + size);
	}
	else
		CHECK(strlen(bad) > 0);

	{
		const char *quick = ce_check((const char *) data, size);

		CHECK(bad != NULL || quick == NULL);
		CHECK(quick == NULL || quick == bad);
		if (quick == NULL)
		{
			json_t	   *doc = json_loadb((const char *) data, size, JSON_REJECT_DUPLICATES, NULL);

			if (doc && json_is_object(doc))
			{
				const char *attrs[] = {"id", "source", "type"};

				CHECK(json_is_string(json_object_get(doc, "specversion")) &&
					  strcmp(json_string_value(json_object_get(doc, "specversion")), "1.0") == 0);
				for (int i = 0; i < 3; i++)
					CHECK(json_is_string(json_object_get(doc, attrs[i])) &&
						  json_string_length(json_object_get(doc, attrs[i])) > 0);
			}
			json_decref(doc);
		}
	}

	{
		size_t		outlen = 0;
		char	   *shed = ce_without_data((const char *) data, size, &outlen);

		if (shed)
		{
			json_t	   *doc = json_loadb(shed, outlen, 0, NULL);

			CHECK(doc != NULL && json_is_object(doc));
			CHECK(json_object_get(doc, "data") == NULL);
			CHECK(json_is_true(json_object_get(doc, "taskevents_data_omitted")));
			json_decref(doc);
			free(shed);
		}
	}
	return 0;
}
