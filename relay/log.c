/*
 * log.c
 *		JSON log lines on stderr: one object per line with ts, level, msg and
 *		structured fields (event_id, count, ...).  Never payloads or secrets.
 *
 * librdkafka logs from its own threads through the same function, so the
 * write of a line is serialised with a mutex.
 */
#include "relay.h"

#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static atomic_int current_level = LOG_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"debug", "info", "warn", "error", "alert"};

void
log_set_level(int level)
{
	atomic_store(&current_level, level);
}

bool
log_enabled(int level)
{
	return level >= atomic_load(&current_level);
}

/* Parse a level name; -1 when unknown. */
int
log_level_parse(const char *name)
{
	for (int i = 0; i < (int) (sizeof(level_names) / sizeof(level_names[0])); i++)
		if (strcmp(name, level_names[i]) == 0)
			return i;
	if (strcmp(name, "warning") == 0)
		return LOG_WARN;
	return -1;
}

const char *
log_level_name(int level)
{
	if (level < 0 || level > LOG_ALERT)
		return "info";
	return level_names[level];
}

int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double
wall_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* RFC 3339 in UTC with milliseconds, e.g. 2026-01-02T03:04:05.678Z. */
void
format_rfc3339(double t, char *buf, size_t len)
{
	time_t		secs = (time_t) t;
	int			ms = (int) ((t - (double) secs) * 1000.0);
	struct tm	tm;

	if (ms < 0)
		ms = 0;
	if (ms > 999)
		ms = 999;
	gmtime_r(&secs, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
			 tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}

void
log_msg(int level, const char *msg, const char *fmt, ...)
{
	char		ts[40];
	json_t	   *line;
	char	   *text;

	if (!log_enabled(level))
		return;
	format_rfc3339(wall_now(), ts, sizeof(ts));
	line = json_object();
	json_object_set_new(line, "ts", json_string(ts));
	json_object_set_new(line, "level", json_string(log_level_name(level)));
	json_object_set_new(line, "msg", json_string(msg));
	if (fmt != NULL)
	{
		va_list		ap;
		json_error_t jerr;
		json_t	   *fields;

		va_start(ap, fmt);
		fields = json_vpack_ex(&jerr, 0, fmt, ap);
		va_end(ap);
		if (fields != NULL)
		{
			json_object_update(line, fields);
			json_decref(fields);
		}
		else
			json_object_set_new(line, "log_format_error", json_string(jerr.text));
	}
	text = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
	json_decref(line);
	if (text == NULL)
		return;
	pthread_mutex_lock(&log_lock);
	fputs(text, stderr);
	fputc('\n', stderr);
	fflush(stderr);
	pthread_mutex_unlock(&log_lock);
	free(text);
}
