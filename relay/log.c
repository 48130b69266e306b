/*
 * log.c
 *		JSON log lines on stderr: one object per line with ts, level, msg and
 *		structured fields (event_id, count, ...).  Never payloads or secrets.
 *
 * librdkafka logs from its own threads through the same function, so the
 * write of a line is serialised with a mutex.  Secret values registered
 * with log_add_secret() (secrets.c does it at start-up, before any other
 * thread runs) are replaced in every line, whoever composed it.
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

#define MAX_SECRETS 32
#define MIN_SECRET_LEN 4

static char *secrets[MAX_SECRETS];	/* as they appear in a JSON line */
static int	nsecrets;

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

int64_t
mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
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

/*
 * Never write s: it is stored as it would appear inside a JSON string of a
 * line (escaped the same way), and replaced wherever it occurs.  Values
 * shorter than MIN_SECRET_LEN are not registered (they would garble every
 * line); the masks by name in secrets.c still apply to them.
 */
void
log_add_secret(const char *s)
{
	json_t	   *j;
	char	   *text;
	size_t		n;

	if (s == NULL || strlen(s) < MIN_SECRET_LEN || nsecrets >= MAX_SECRETS)
		return;
	j = json_string(s);
	text = j ? json_dumps(j, JSON_ENCODE_ANY | JSON_ENSURE_ASCII) : NULL;
	json_decref(j);
	if (text == NULL)
	{
		secrets[nsecrets++] = strdup(s);	/* not UTF-8: as is */
		return;
	}
	n = strlen(text);
	memmove(text, text + 1, n - 2); /* strip the quotes */
	text[n - 2] = '\0';
	for (int i = 0; i < nsecrets; i++)
		if (strcmp(secrets[i], text) == 0)
		{
			free(text);
			return;
		}
	secrets[nsecrets++] = text;
}

/* text with every registered secret replaced by ********; frees text. */
static char *
scrub(char *text)
{
	for (int i = 0; i < nsecrets; i++)
	{
		const char *sec = secrets[i];
		size_t		slen = strlen(sec);
		char	   *hit = strstr(text, sec);
		char	   *out;
		size_t		n = 0;
		const char *from = text;

		if (hit == NULL)
			continue;
		/* at most len / slen hits, each grows the text by at most 8 bytes */
		out = malloc(strlen(text) + 8 * (strlen(text) / slen + 1) + 1);
		for (; hit; hit = strstr(from, sec))
		{
			memcpy(out + n, from, hit - from);
			n += hit - from;
			memcpy(out + n, "********", 8);
			n += 8;
			from = hit + slen;
		}
		strcpy(out + n, from);
		free(text);
		text = out;
	}
	return text;
}

void
log_msg(int level, const char *msg, const char *fmt,...)
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
	if (nsecrets > 0)
		text = scrub(text);
	pthread_mutex_lock(&log_lock);
	fputs(text, stderr);
	fputc('\n', stderr);
	fflush(stderr);
	pthread_mutex_unlock(&log_lock);
	free(text);
}
