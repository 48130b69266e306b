/*
 * relay.h
 *		Shared declarations of taskevents-relay, the daemon that drains the
 *		pg_taskevents outbox into Apache Kafka.
 *
 * Each concern lives in its own file: config.c (flags, environment, config
 * file), log.c (JSON log lines), db.c (the SQL relay protocol over libpq),
 * producer.c (librdkafka), cloudevent.c (validating and taking apart an
 * event), pipeline.c (in-flight events, per-key order, retries, dead
 * letters, acks), metrics.c (HTTP /metrics and /healthz) and main.c (startup
 * and the main loop).
 */
#ifndef TASKEVENTS_RELAY_H
#define TASKEVENTS_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdatomic.h>

/*
 * RELAY_VERSION comes from pg_taskevents.control through relay/Makefile
 * (-DRELAY_VERSION).  Without it, a file that prints the version does not
 * compile (an undeclared identifier); the others, such as the fuzz target's
 * cloudevent.c, do.
 */
#ifndef RELAY_VERSION
#define RELAY_VERSION relay_version_undefined_build_with_relay_Makefile
#endif
#define RELAY_MAX_BACKOFFS 16

/* ---------------------------------------------------------------- log.c */

typedef enum
{
	LOG_DEBUG = 0,
	LOG_INFO,
	LOG_WARN,
	LOG_ERROR,
	LOG_ALERT
} log_level;

extern void log_set_level(int level);
extern bool log_enabled(int level);
extern int	log_level_parse(const char *name);
extern const char *log_level_name(int level);

/*
 * Write one JSON line: ts, level, msg, then the fields described by fmt (a
 * jansson json_pack format for an object, e.g. "{s:I, s:s}"), or none when
 * fmt is NULL.  Never pass payloads or secrets.
 */
extern void log_msg(int level, const char *msg, const char *fmt, ...);

#define log_debug(...) do { if (log_enabled(LOG_DEBUG)) log_msg(LOG_DEBUG, __VA_ARGS__); } while (0)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_alert(...) log_msg(LOG_ALERT, __VA_ARGS__)

/* Monotonic milliseconds, and wall-clock seconds since the epoch. */
extern int64_t mono_ms(void);
extern double wall_now(void);
extern void format_rfc3339(double t, char *buf, size_t len);

/* ------------------------------------------------------------- config.c */

typedef struct relay_config
{
	char	   *config_file;
	char	   *db;
	char	   *brokers;
	char	   *consumer;
	int			batch_size;
	int			max_inflight;
	int			poll_interval_ms;
	int			standby_poll_ms;
	char	   *dlq_suffix;
	int			retry_backoff_ms[RELAY_MAX_BACKOFFS];
	int			retry_count;
	int			lease_ttl_ms;
	int			shutdown_timeout_ms;
	int			maintain_interval_ms;
	int			reminders_interval_ms;
	int			backlog_interval_ms;
	char	   *metrics_addr;
	bool		binary;
	bool		once;
	int			log_level;
	bool		dev_mock_kafka;
	char	   *mock_produce_errors;
	/* -X key=value librdkafka properties, in order */
	char	  **kafka_props;
	int			n_kafka_props;
	bool		show_help;
	bool		show_version;
} relay_config;

/* Returns 0, or -1 after writing the reason into errbuf. */
extern int	config_load(relay_config *cfg, int argc, char **argv, char *errbuf, size_t errlen);
extern void config_apply_reload(relay_config *live, const relay_config *fresh);
extern void config_free(relay_config *cfg);
extern void config_print_help(void);
extern char *conninfo_masked(const char *conninfo);

/* ----------------------------------------------------------------- db.c */

typedef enum
{
	DB_OK = 0,
	DB_FENCED,					/* SQLSTATE 55000: the lease is no longer ours */
	DB_FAILED,					/* any other error, connection still up */
	DB_CONN						/* the connection is broken */
} db_result;

typedef struct db_row
{
	int64_t		id;
	char	   *topic;
	char	   *key;			/* NULL when the row has no partition key */
	char	   *event;
	size_t		event_len;
	double		created_at;
} db_row;

extern bool db_connect(const char *conninfo);
extern void db_disconnect(void);
extern bool db_connected(void);
extern db_result db_lease(const char *consumer, const char *holder, int64_t epoch,
						  int ttl_ms, int64_t *new_epoch);
extern db_result db_release(const char *consumer, int64_t epoch);
extern db_result db_position(const char *consumer, int64_t *tick, int64_t *cursor, bool *done);
extern db_result db_last_tick(const char *consumer, int64_t *tick);
extern db_result db_tick(const char *consumer, int64_t epoch, int64_t *tick);
extern void db_prefetch(const char *consumer, int64_t tick, int64_t after, int limit);
extern db_result db_fetch(const char *consumer, int64_t tick, int64_t after, int limit,
						  db_row **rows, int *nrows, int *used_limit);
extern void db_rows_free(db_row *rows, int nrows);
extern db_result db_ack(const char *consumer, int64_t epoch, int64_t tick, int64_t cursor, bool done);
extern db_result db_dead_letter(const char *consumer, int64_t epoch, int64_t outbox_id,
								const char *topic, const char *dlq_topic, const char *key,
								const char *event, const char *reason, int attempts,
								double first_failed_at);
extern db_result db_maintain(int *truncated);
extern const char *db_last_error(void);

typedef enum
{
	DB_SIDE_NONE = 0,
	DB_SIDE_BACKLOG,
	DB_SIDE_REMINDERS
} db_side_kind;

extern bool db_side_begin(const char *conninfo, db_side_kind kind, const char *consumer);
extern bool db_side_busy(void);
extern void db_side_poll(void);
extern void db_side_close(void);

/* ------------------------------------------------------------ cloudevent.c */

typedef struct ce_span
{
	const char *p;
	size_t		len;
} ce_span;

typedef struct ce_fields
{
	ce_span		specversion, id, source, type, time, subject, partitionkey,
				traceparent, data;
	bool		has_time, has_subject, has_partitionkey, has_traceparent, has_data;
} ce_fields;

/* Returns NULL when valid, else a short reason (a static string). */
extern const char *ce_scan(const char *buf, size_t len, ce_fields *out);
/* Unescape a JSON string span into a new malloc'd, NUL-terminated string. */
extern char *ce_unescape(ce_span s);
/* The event without its data member (for dead letters too large to send). */
extern char *ce_without_data(const char *buf, size_t len, size_t *outlen);

/* ----------------------------------------------------------- producer.c */

typedef enum
{
	PRODUCE_OK = 0,
	PRODUCE_BACKPRESSURE,		/* local queue full: try again later */
	PRODUCE_FAILED				/* per-message failure; err says why */
} produce_result;

typedef struct produce_msg
{
	const char *topic;
	const char *key;
	const char *value;
	size_t		value_len;
	uint64_t	opaque;
	bool		binary;
	bool		invalid;		/* dead letter of a row that is no CloudEvent */
	/* dead-letter headers; NULL for an ordinary event */
	const char *dlq_original_topic;
	const char *dlq_error;
	int			dlq_attempts;
	double		dlq_first_failure;
	double		dlq_last_failure;
} produce_msg;

extern int	producer_init(const relay_config *cfg, char *errbuf, size_t errlen);
extern produce_result producer_send(const produce_msg *m, int *err);
extern int	producer_poll(int timeout_ms);
extern void producer_purge(void);
extern bool producer_probe(int timeout_ms);
extern bool producer_take_fatal(char *errbuf, size_t errlen);
extern bool producer_take_outage(void);
extern int	producer_flush(int timeout_ms);
extern void producer_destroy(void);
extern bool producer_is_outage_error(int err);
extern bool producer_is_purge_error(int err);
extern int	producer_restart(const relay_config *cfg, char *errbuf, size_t errlen);
extern const char *producer_err2str(int err);
extern int	producer_outq_len(void);

/* Called by producer.c from producer_poll() for every delivery report. */
extern void pipeline_on_delivery(uint64_t opaque, int err);

/* ----------------------------------------------------------- pipeline.c */

typedef enum
{
	CIRCUIT_CLOSED = 0,
	CIRCUIT_OPEN = 1,
	CIRCUIT_HALF_OPEN = 2
} circuit_state;

extern void pipeline_init(const relay_config *cfg, const char *holder);
extern void pipeline_start(int64_t epoch, int64_t tick, int64_t cursor, bool done, int64_t last_tick);
extern void pipeline_drop(void);
extern void pipeline_shutdown(void);
extern int	pipeline_free_slots(void);
extern bool pipeline_empty(void);
extern int	pipeline_unresolved(void);

/* Returns the number of rows fetched (0 when idle), or -1 on a DB problem. */
extern int	pipeline_fetch(db_result *dbr, bool *idle);
extern db_result pipeline_step(int64_t now);
extern db_result pipeline_ack(int64_t now, bool force);
extern void pipeline_circuit_step(int64_t now);
extern int	pipeline_circuit(void);

/* ------------------------------------------------------------ metrics.c */

typedef struct relay_metrics
{
	atomic_long published;
	atomic_long retries;
	atomic_long dead_letters;
	atomic_long backlog;
	atomic_long oldest_pending_ms;	/* age in ms, -1 unknown */
	atomic_int	circuit;
	atomic_int	leader;
	atomic_int	db_up;
	atomic_int	standby_ok;
	atomic_long inflight;
	atomic_long latency_buckets[12];
	atomic_long latency_count;
	atomic_long latency_sum_us;
} relay_metrics;

extern relay_metrics metrics;

extern int	metrics_start(const char *addr, char *errbuf, size_t errlen);
extern void metrics_stop(void);
extern void metrics_observe_latency(double seconds);

#endif							/* TASKEVENTS_RELAY_H */
