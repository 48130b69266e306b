/*
 * config.c
 *		Configuration from one table of options: built-in defaults, then an
 *		optional config file (--config, "name = value" lines), then
 *		environment variables (TASKEVENTS_*), then command-line flags.
 *
 * -X key=value passes a librdkafka property through unchanged (kcat style);
 * producer.c hands it to rd_kafka_conf_set, whose errstr reports a bad one.
 * SIGHUP builds a fresh configuration the same way and copies only the
 * options marked reloadable; a bad one leaves the running one untouched.
 */
#include "relay.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum
{
	OPT_STRING,
	OPT_INT,
	OPT_BOOL,
	OPT_BACKOFF,
	OPT_LOGLEVEL,
	OPT_KAFKA,
	OPT_FLAG					/* --help, --version: command line only */
} opt_kind;

typedef struct option_def
{
	const char *name;			/* long flag without "--"; also the file key */
	char		shortname;
	const char *env;
	opt_kind	kind;
	size_t		offset;
	const char *defval;
	int			min,
				max;
	bool		reloadable;
	bool		hidden;
	const char *arg;
	const char *help;
} option_def;

#define OFF(f) offsetof(relay_config, f)

static const option_def options[] = {
	{"config", 'c', "TASKEVENTS_CONFIG", OPT_STRING, OFF(config_file), NULL, 0, 0, false, false, "FILE",
	"Config file of \"name = value\" lines (names as the long flags); re-read on SIGHUP."},
	{"db", 'd', "TASKEVENTS_DB", OPT_STRING, OFF(db), "", 0, 0, false, false, "CONNINFO",
	"libpq connection string or URI; empty uses the PG* environment variables."},
	{"brokers", 'b', "TASKEVENTS_BROKERS", OPT_STRING, OFF(brokers), "localhost:9092", 0, 0, false, false, "HOST:PORT,...",
	"Kafka bootstrap servers (librdkafka bootstrap.servers)."},
	{"consumer", 0, "TASKEVENTS_CONSUMER", OPT_STRING, OFF(consumer), "default", 0, 0, false, false, "NAME",
	"Relay consumer name; relays with the same name share one lease (one active, others standby)."},
	{"batch-size", 0, "TASKEVENTS_BATCH_SIZE", OPT_INT, OFF(batch_size), "1000", 1, 100000, false, false, "N",
	"Outbox rows read per relay_fetch_page() call."},
	{"max-inflight", 0, "TASKEVENTS_MAX_INFLIGHT", OPT_INT, OFF(max_inflight), "20000", 2, 10000000, false, false, "N",
	"Most events held in memory (fetched, not yet acknowledged); fetching pauses when full."},
	{"poll-interval-ms", 0, "TASKEVENTS_POLL_INTERVAL_MS", OPT_INT, OFF(poll_interval_ms), "5", 1, 60000, true, false, "MS",
	"Idle poll interval of the leader (relay_tick) when it cannot wait for commits (pg_taskevents not preloaded, --once); also how often it serves delivery reports."},
	{"standby-poll-ms", 0, "TASKEVENTS_STANDBY_POLL_MS", OPT_INT, OFF(standby_poll_ms), "1000", 10, 60000, true, false, "MS",
	"How often a standby tries to take the lease."},
	{"dlq-suffix", 0, "TASKEVENTS_DLQ_SUFFIX", OPT_STRING, OFF(dlq_suffix), "-dlq", 0, 0, false, false, "SUFFIX",
	"Dead-letter topic = event topic + SUFFIX."},
	{"retry-backoff-ms", 0, "TASKEVENTS_RETRY_BACKOFF_MS", OPT_BACKOFF, OFF(retry_backoff_ms), "1000,2000,4000", 0, 3600000, true, false, "MS,MS,...",
	"Delay before each retry of a failed event; their count is the number of retries before the dead-letter topic."},
	{"lease-ttl-ms", 0, "TASKEVENTS_LEASE_TTL_MS", OPT_INT, OFF(lease_ttl_ms), "5000", 300, 600000, false, false, "MS",
	"Lease lifetime; renewed every ttl/3, a standby takes over after it expires."},
	{"shutdown-timeout-ms", 0, "TASKEVENTS_SHUTDOWN_TIMEOUT_MS", OPT_INT, OFF(shutdown_timeout_ms), "10000", 0, 600000, true, false, "MS",
	"On SIGTERM, how long to wait for in-flight deliveries before exiting."},
	{"maintain-interval-ms", 0, "TASKEVENTS_MAINTAIN_INTERVAL_MS", OPT_INT, OFF(maintain_interval_ms), "0", 0, 3600000, true, false, "MS",
	"Run every maintenance operation but the reminders' this often instead of its listed period (0: the list's, see taskevents.maintenance_operations())."},
	{"reminders-interval-ms", 0, "TASKEVENTS_REMINDERS_INTERVAL_MS", OPT_INT, OFF(reminders_interval_ms), "0", 0, 3600000, true, false, "MS",
	"Fire due reminders this often instead of the listed period (0: the list's)."},
	{"backlog-interval-ms", 0, "TASKEVENTS_BACKLOG_INTERVAL_MS", OPT_INT, OFF(backlog_interval_ms), "5000", 0, 3600000, true, false, "MS",
	"How often the leader samples relay_backlog() for the backlog metrics (it counts the outbox; 0 = never)."},
	{"metrics-addr", 0, "TASKEVENTS_METRICS_ADDR", OPT_STRING, OFF(metrics_addr), "127.0.0.1:9187", 0, 0, false, false, "HOST:PORT",
	"Address of the HTTP /metrics and /healthz endpoints; 0 turns them off."},
	{"binary", 0, "TASKEVENTS_BINARY", OPT_BOOL, OFF(binary), "false", 0, 0, false, false, NULL,
	"Binary content mode: value = the event's data, attributes as ce_* headers (Dapr cannot route it)."},
	{"once", 0, "TASKEVENTS_ONCE", OPT_BOOL, OFF(once), "false", 0, 0, false, false, NULL,
	"Deliver everything pending, then exit 0."},
	{"log-level", 0, "TASKEVENTS_LOG_LEVEL", OPT_LOGLEVEL, OFF(log_level), "info", 0, 0, true, false, "LEVEL",
	"debug, info, warn or error."},
	{"dev-mock-kafka", 0, "TASKEVENTS_DEV_MOCK_KAFKA", OPT_BOOL, OFF(dev_mock_kafka), "false", 0, 0, false, false, NULL,
	"Development only: run librdkafka's in-process mock cluster instead of a broker."},
	{"mock-produce-errors", 0, "TASKEVENTS_MOCK_PRODUCE_ERRORS", OPT_STRING, OFF(mock_produce_errors), NULL, 0, 0, false, true, "TOPIC:COUNT:ERR",
	"Tests only, with --dev-mock-kafka: fail the next COUNT produce requests with Kafka error code ERR."},
	{"property", 'X', NULL, OPT_KAFKA, 0, NULL, 0, 0, false, false, "KEY=VALUE",
	"librdkafka property passed through (repeatable), e.g. -X security.protocol=SASL_SSL."},
	{"help", 'h', NULL, OPT_FLAG, OFF(show_help), NULL, 0, 0, false, false, NULL, "Show this help and exit."},
	{"version", 'V', NULL, OPT_FLAG, OFF(show_version), NULL, 0, 0, false, false, NULL, "Show the version and exit."},
};

#define N_OPTIONS ((int) (sizeof(options) / sizeof(options[0])))

static int
parse_int(const char *s, long *out)
{
	char	   *end;

	errno = 0;
	*out = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0')
		return -1;
	return 0;
}

static int
parse_bool(const char *s, bool *out)
{
	if (strcmp(s, "1") == 0 || strcasecmp(s, "true") == 0 || strcasecmp(s, "yes") == 0 || strcasecmp(s, "on") == 0)
		*out = true;
	else if (strcmp(s, "0") == 0 || strcasecmp(s, "false") == 0 || strcasecmp(s, "no") == 0 || strcasecmp(s, "off") == 0)
		*out = false;
	else
		return -1;
	return 0;
}

/* Set one option from its text; the caller names the source in errors. */
static int
set_option(relay_config *cfg, const option_def *o, const char *value, const char *source,
		   char *errbuf, size_t errlen)
{
	void	   *field = (char *) cfg + o->offset;

	switch (o->kind)
	{
		case OPT_STRING:
			free(*(char **) field);
			*(char **) field = value ? strdup(value) : NULL;
			return 0;
		case OPT_INT:
			{
				long		v;

				if (parse_int(value, &v) != 0 || v < o->min || v > o->max)
				{
					snprintf(errbuf, errlen, "invalid value \"%s\" for %s %s: expected an integer from %d to %d",
							 value, source, o->name, o->min, o->max);
					return -1;
				}
				*(int *) field = (int) v;
				return 0;
			}
		case OPT_BOOL:
			if (parse_bool(value, (bool *) field) != 0)
			{
				snprintf(errbuf, errlen, "invalid value \"%s\" for %s %s: expected true or false",
						 value, source, o->name);
				return -1;
			}
			return 0;
		case OPT_LOGLEVEL:
			{
				int			l = log_level_parse(value);

				if (l < 0 || l > LOG_ERROR)
				{
					snprintf(errbuf, errlen, "invalid value \"%s\" for %s %s: expected debug, info, warn or error",
							 value, source, o->name);
					return -1;
				}
				cfg->log_level = l;
				return 0;
			}
		case OPT_BACKOFF:
			{
				char	   *copy = strdup(value);
				char	   *save = NULL;
				int			n = 0;

				for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
				{
					long		v;

					while (isspace((unsigned char) *tok))
						tok++;
					if (n >= RELAY_MAX_BACKOFFS || parse_int(tok, &v) != 0 || v < o->min || v > o->max)
					{
						snprintf(errbuf, errlen, "invalid value \"%s\" for %s %s: expected up to %d comma-separated delays in ms",
								 value, source, o->name, RELAY_MAX_BACKOFFS);
						free(copy);
						return -1;
					}
					cfg->retry_backoff_ms[n++] = (int) v;
				}
				free(copy);
				cfg->retry_count = n;
				return 0;
			}
		case OPT_KAFKA:
			if (value == NULL || strchr(value, '=') == NULL || value[0] == '=')
			{
				/* not echoed: it may be "sasl.password:..." mistyped */
				snprintf(errbuf, errlen, "invalid %s -X (value not shown): expected key=value", source);
				return -1;
			}
			cfg->kafka_props = realloc(cfg->kafka_props, sizeof(char *) * (cfg->n_kafka_props + 1));
			cfg->kafka_props[cfg->n_kafka_props++] = strdup(value);
			return 0;
		case OPT_FLAG:
			*(bool *) field = true;
			return 0;
	}
	return 0;
}

static const option_def *
find_long(const char *name, size_t len)
{
	for (int i = 0; i < N_OPTIONS; i++)
		if (strlen(options[i].name) == len && strncmp(options[i].name, name, len) == 0)
			return &options[i];
	return NULL;
}

static const option_def *
find_short(char c)
{
	for (int i = 0; i < N_OPTIONS; i++)
		if (options[i].shortname == c)
			return &options[i];
	return NULL;
}

static char *
trim(char *s)
{
	char	   *e;

	while (isspace((unsigned char) *s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char) e[-1]))
		*--e = '\0';
	return s;
}

static int
load_file(relay_config *cfg, const char *path, char *errbuf, size_t errlen)
{
	FILE	   *f = fopen(path, "r");
	char		line[4096];
	int			lineno = 0;

	if (f == NULL)
	{
		snprintf(errbuf, errlen, "cannot open config file \"%s\": %s", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f))
	{
		char	   *s = trim(line);
		char	   *eq;
		const option_def *o;
		char		source[300];

		lineno++;
		if (*s == '\0' || *s == '#')
			continue;
		eq = strchr(s, '=');
		if (eq == NULL)
		{
			snprintf(errbuf, errlen, "config file \"%s\" line %d: expected name = value", path, lineno);
			fclose(f);
			return -1;
		}
		*eq = '\0';
		s = trim(s);
		o = find_long(s, strlen(s));
		if (o == NULL || o->kind == OPT_FLAG || o->offset == OFF(config_file))
		{
			snprintf(errbuf, errlen, "config file \"%s\" line %d: unknown option \"%s\"", path, lineno, s);
			fclose(f);
			return -1;
		}
		snprintf(source, sizeof(source), "config file %s:%d", path, lineno);
		if (set_option(cfg, o, trim(eq + 1), source, errbuf, errlen) != 0)
		{
			fclose(f);
			return -1;
		}
	}
	fclose(f);
	return 0;
}

/*
 * TASKEVENTS_KAFKA_SASL_PASSWORD=x is -X sasl.password=x: the rest of the
 * name lowercased, "_" read as ".".  Keeps secrets off the command line.
 */
static int
load_kafka_env(relay_config *cfg, char *errbuf, size_t errlen)
{
	extern char **environ;
	static const char prefix[] = "TASKEVENTS_KAFKA_";

	for (char **e = environ; *e; e++)
	{
		const char *eq = strchr(*e, '=');
		char		kv[4096];
		size_t		n;

		if (strncmp(*e, prefix, sizeof(prefix) - 1) != 0 || eq == NULL)
			continue;
		n = 0;
		for (const char *c = *e + sizeof(prefix) - 1; c < eq && n < sizeof(kv) - 2; c++)
			kv[n++] = *c == '_' ? '.' : tolower((unsigned char) *c);
		snprintf(kv + n, sizeof(kv) - n, "=%s", eq + 1);
		if (set_option(cfg, find_short('X'), kv, "environment variable", errbuf, errlen) != 0)
			return -1;
	}
	return 0;
}

/*
 * Build the whole configuration.  The command line is scanned twice: first
 * only for --config (the file comes before the environment and the flags),
 * then for everything.
 */
int
config_load(relay_config *cfg, int argc, char **argv, char *errbuf, size_t errlen)
{
	memset(cfg, 0, sizeof(*cfg));
	for (int i = 0; i < N_OPTIONS; i++)
		if (options[i].defval != NULL &&
			set_option(cfg, &options[i], options[i].defval, "default", errbuf, errlen) != 0)
			return -1;

	for (int pass = 0; pass < 3; pass++)
	{
		if (pass == 1)
		{
			/* config file, then environment */
			if (cfg->config_file && load_file(cfg, cfg->config_file, errbuf, errlen) != 0)
				return -1;
			for (int i = 0; i < N_OPTIONS; i++)
			{
				const char *v;

				if (options[i].env == NULL || options[i].offset == OFF(config_file))
					continue;
				v = getenv(options[i].env);
				if (v != NULL && set_option(cfg, &options[i], v, "environment variable", errbuf, errlen) != 0)
					return -1;
			}
			if (load_kafka_env(cfg, errbuf, errlen) != 0)
				return -1;
			continue;
		}
		for (int i = 1; i < argc; i++)
		{
			const char *a = argv[i];
			const option_def *o = NULL;
			const char *value = NULL;

			if (strncmp(a, "--", 2) == 0)
			{
				const char *eq = strchr(a + 2, '=');

				o = find_long(a + 2, eq ? (size_t) (eq - a - 2) : strlen(a + 2));
				if (eq)
					value = eq + 1;
			}
			else if (a[0] == '-' && a[1] != '\0')
			{
				o = find_short(a[1]);
				if (o && a[2] != '\0')
					value = a + 2;
			}
			if (o == NULL)
			{
				/*
				 * By name only: "--sasl-pasword=..." or "-Zsecret" must not
				 * echo what follows the name, and a word that is no option
				 * may be a value whose flag was mistyped.
				 */
				if (strncmp(a, "--", 2) == 0)
					snprintf(errbuf, errlen, "unknown option \"--%.*s\" (see --help)",
							 (int) (strchr(a, '=') ? strchr(a, '=') - a - 2 : (long) strlen(a + 2)), a + 2);
				else if (a[0] == '-' && a[1] != '\0')
					snprintf(errbuf, errlen, "unknown option \"-%c\" (see --help)", a[1]);
				else
					snprintf(errbuf, errlen, "unexpected argument #%d, which is not an option (value not shown; see --help)", i);
				return -1;
			}
			if (o->kind == OPT_BOOL || o->kind == OPT_FLAG)
			{
				if (value == NULL)
					value = "true";
			}
			else if (value == NULL)
			{
				if (i + 1 >= argc)
				{
					snprintf(errbuf, errlen, "option --%s needs a value", o->name);
					return -1;
				}
				value = argv[++i];
			}
			if ((pass == 0) != (o->offset == OFF(config_file) && o->kind == OPT_STRING))
				continue;
			if (set_option(cfg, o, value, "option", errbuf, errlen) != 0)
				return -1;
		}
	}

	/* cross-checks */
	if (cfg->consumer == NULL || cfg->consumer[0] == '\0')
	{
		snprintf(errbuf, errlen, "--consumer must not be empty");
		return -1;
	}
	if (!cfg->dev_mock_kafka && (cfg->brokers == NULL || cfg->brokers[0] == '\0'))
	{
		snprintf(errbuf, errlen, "--brokers must not be empty");
		return -1;
	}
	if (cfg->dlq_suffix == NULL || cfg->dlq_suffix[0] == '\0')
	{
		snprintf(errbuf, errlen, "--dlq-suffix must not be empty (dead letters would go back to the event's own topic)");
		return -1;
	}
	if (conninfo_check(cfg->db, errbuf, errlen) != 0)
		return -1;
	if (cfg->mock_produce_errors && !cfg->dev_mock_kafka)
	{
		snprintf(errbuf, errlen, "--mock-produce-errors needs --dev-mock-kafka");
		return -1;
	}
	return 0;
}

/* The dead-letter topic of topic: the one place its name is built. */
void
config_dlq_topic(const relay_config *cfg, const char *topic, char *buf, size_t len)
{
	snprintf(buf, len, "%s%s", topic, cfg->dlq_suffix);
}

/* Copy the reloadable options of a freshly loaded config into the live one. */
void
config_apply_reload(relay_config *live, const relay_config *fresh)
{
	for (int i = 0; i < N_OPTIONS; i++)
	{
		const option_def *o = &options[i];

		if (!o->reloadable)
			continue;
		switch (o->kind)
		{
			case OPT_INT:
				*(int *) ((char *) live + o->offset) = *(const int *) ((const char *) fresh + o->offset);
				break;
			case OPT_LOGLEVEL:
				live->log_level = fresh->log_level;
				break;
			case OPT_BACKOFF:
				memcpy(live->retry_backoff_ms, fresh->retry_backoff_ms, sizeof(live->retry_backoff_ms));
				live->retry_count = fresh->retry_count;
				break;
			default:
				break;
		}
	}
}

void
config_free(relay_config *cfg)
{
	for (int i = 0; i < N_OPTIONS; i++)
		if (options[i].kind == OPT_STRING)
		{
			free(*(char **) ((char *) cfg + options[i].offset));
			*(char **) ((char *) cfg + options[i].offset) = NULL;
		}
	for (int i = 0; i < cfg->n_kafka_props; i++)
		free(cfg->kafka_props[i]);
	free(cfg->kafka_props);
	cfg->kafka_props = NULL;
	cfg->n_kafka_props = 0;
}

void
config_print_help(void)
{
	printf("taskevents-relay %s: deliver the pg_taskevents outbox to Apache Kafka.\n\n"
		   "Usage: taskevents-relay [OPTION]...\n\n"
		   "Every option can also be set by its environment variable or in the --config file\n"
		   "(precedence: flag > environment > file > default).  Options marked [reload] are\n"
		   "re-read on SIGHUP.\n\n", RELAY_VERSION);
	for (int i = 0; i < N_OPTIONS; i++)
	{
		const option_def *o = &options[i];
		char		flag[80];

		if (o->hidden)
			continue;
		if (o->shortname)
			snprintf(flag, sizeof(flag), "-%c, --%s%s%s", o->shortname, o->name, o->arg ? " " : "", o->arg ? o->arg : "");
		else
			snprintf(flag, sizeof(flag), "    --%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
		if (o->kind == OPT_KAFKA)
			snprintf(flag, sizeof(flag), "-X KEY=VALUE");
		printf("  %-36s %s%s\n", flag, o->help, o->reloadable ? " [reload]" : "");
		if (o->env || o->defval)
			printf("  %-36s %s%s%s%s%s\n", "", o->env ? "env " : "", o->env ? o->env : "",
				   o->defval && o->env ? ", " : "", o->defval ? "default: " : "",
				   o->defval ? (o->defval[0] ? o->defval : "\"\"") : "");
	}
	printf("\nlibrdkafka properties also come from TASKEVENTS_KAFKA_* variables: the rest of the\n"
		   "name lowercased with \"_\" as \".\", e.g. TASKEVENTS_KAFKA_SASL_PASSWORD=... is\n"
		   "-X sasl.password=...; in the config file write \"property = key=value\".\n");
	printf("\nProducer defaults (override with -X): enable.idempotence=true,\n"
		   "partitioner=fnv1a_random (Sarama's and so Dapr's default key hashing),\n"
		   "message.timeout.ms=300000, linger.ms=0, max.in.flight.requests.per.connection=2,\n"
		   "queue.buffering.max.messages and queue.buffering.max.kbytes sized from\n"
		   "--max-inflight.\n"
		   "Signals: SIGTERM/SIGINT drain and exit (twice: exit at once), SIGHUP reload.\n");
}
