/*
 * relay.h
 *		Shared declarations of taskevents-relay, the daemon that drains the
 *		pg_taskevents outbox into Apache Kafka.
 *
 * Each concern lives in its own file:
 *
 *	main.c		startup in a visible order, the main loop (disconnected ->
 *				standby -> leader), signals
 *	config.c	options: one table; defaults, config file, environment, flags
 *	secrets.c	what never reaches a log: masks and the secret values
 *	log.c		JSON log lines on stderr, clocks
 *	dbopen.c	opening a connection: search_path pinned, the conninfo's options kept
 *	db.c		the SQL relay protocol on the main libpq connection
 *	dbside.c	the side connection: the maintenance list, backlog sample
 *	wake.c		the wait connection: woken by commits (relay_wait), or polling
 *	cloudevent.c	validating an outbox row, taking a CloudEvent apart
 *	producer.c	librdkafka: configuration, Kafka records, delivery reports
 *	mock.c		--dev-mock-kafka: librdkafka's in-process mock cluster
 *	window.c	pipeline: the fetch window and acknowledgements
 *	keys.c		pipeline: per-key queues, holds, sending, delivery reports
 *	retry.c		pipeline: failures, retries, dead letters
 *	circuit.c	pipeline: the Kafka circuit breaker
 *	pipeline.h	pipeline: declarations its three files share, event states
 *	list.h		a doubly-linked intrusive list (keys.c: held keys, keys to wake)
 *	metrics.c	HTTP /metrics and /healthz
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
extern void log_msg(int level, const char *msg, const char *fmt,...);
extern void log_add_secret(const char *value);

#define log_debug(...) do { if (log_enabled(LOG_DEBUG)) log_msg(LOG_DEBUG, __VA_ARGS__); } while (0)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_alert(...) log_msg(LOG_ALERT, __VA_ARGS__)

/* Monotonic milliseconds (and microseconds), wall-clock seconds since the epoch. */
extern int64_t mono_ms(void);
extern int64_t mono_us(void);
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
	int log_level;
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
extern void config_dlq_topic(const relay_config *cfg, const char *topic, char *buf, size_t len);

/* ------------------------------------------------------------ secrets.c */

extern bool conninfo_key_is_secret(const char *keyword);
extern bool conninfo_is_string(const char *conninfo);
extern int	conninfo_check(const char *conninfo, char *errbuf, size_t errlen);
extern char *conninfo_masked(const char *conninfo);
extern bool kafka_prop_is_secret(const char *name);
extern struct json_t *kafka_props_masked(const relay_config *cfg);
extern void secrets_register(const relay_config *cfg);

/* ----------------------------------------------------------------- db.c */

typedef enum
{
	DB_OK = 0,
	DB_FENCED,					/* SQLSTATE 55000: the lease is no longer ours */
	DB_TRANSIENT,				/* an error that passes (deadlock,
								 * serialization failure, lock or statement
								 * timeout): the same call may be tried again */
	DB_FAILED,					/* any other error, connection still up */
	DB_CONN						/* the connection is broken */
} db_result;

/*
 * A fetched page: the PGresult, kept while any of its rows is in use.  Its
 * rows' strings point into it, so no row is copied; each row holds one
 * reference, dropped with db_page_release() when the row is done with.
 */
typedef struct db_page db_page;

typedef struct db_row
{
	int64_t		id;
	const char *topic;
	const char *key;			/* NULL when the row has no partition key */
	const char *event;			/* NUL-terminated */
	size_t		event_len;
	double		created_at;
} db_row;

/* dbopen.c: a connection with search_path pinned; NULL and errbuf on failure. */
extern struct pg_conn *db_open(const char *conninfo, const char *appname, char *errbuf, size_t errlen);
extern bool db_connect(const char *conninfo);
extern void db_disconnect(void);
extern bool db_connected(void);
extern db_result db_lease(const char *consumer, const char *holder, int64_t epoch,
						  int ttl_ms, int64_t *new_epoch);
extern db_result db_release(const char *consumer, int64_t epoch);
extern db_result db_position(const char *consumer, int64_t *tick, int64_t *cursor, bool *done);
extern db_result db_last_tick(const char *consumer, int64_t *tick);
extern db_result db_tick_fetch(const char *consumer, int64_t epoch, int limit, int64_t *tick,
							   db_page **page, db_row **rows, int *nrows);
extern void db_prefetch(const char *consumer, int64_t tick, int64_t after, int limit);
extern db_result db_fetch(const char *consumer, int64_t tick, int64_t after, int limit,
						  db_page **page, db_row **rows, int *nrows, int *used_limit);
extern void db_page_release(db_page *page);
extern db_result db_ack(const char *consumer, int64_t epoch, int64_t tick, int64_t cursor, bool done);
extern db_result db_dead_letter(const char *consumer, int64_t epoch, int64_t outbox_id,
								const char *topic, const char *dlq_topic, const char *key,
								const char *event, const char *reason, int attempts,
								double first_failed_at);
extern const char *db_last_error(void);
extern const char *db_last_sqlstate(void);
extern int64_t db_wait_us(void);

/* ------------------------------------------------------------- dbside.c */

typedef enum
{
	DB_SIDE_NONE = 0,
	DB_SIDE_BACKLOG,
	DB_SIDE_MAINTENANCE
} db_side_kind;

extern void db_side_step(const relay_config *cfg, int64_t now, int64_t last_activity, bool quiet);
extern int64_t db_side_next_due(const relay_config *cfg, int64_t last_activity, bool quiet);
extern int	db_side_socket(void);
extern void db_side_poll(void);
extern void db_side_close(void);

/* --------------------------------------------------------------- wake.c */

typedef enum
{
	WAKE_UNKNOWN = 0,			/* not asked yet */
	WAKE_LATCH,					/* relay_wait() wakes us on commit */
	WAKE_POLL					/* relay_tick() every --poll-interval-ms */
} wake_mode;

extern void wake_arm(const char *conninfo);
extern void wake_collect(void);
extern bool wake_waiting(void);
extern int	wake_socket(void);
extern void wake_close(void);

/* ------------------------------------------------------------ cloudevent.c */

typedef struct ce_span
{
	const char *p;
	size_t		len;
} ce_span;

typedef struct ce_fields
{
	ce_span		specversion,
				id,
				source,
				type,
				time,
				subject,
				partitionkey,
				traceparent,
				data;
	bool		has_time,
				has_subject,
				has_partitionkey,
				has_traceparent,
				has_data;
} ce_fields;

/* Returns NULL when valid, else a short reason (a static string). */
extern const char *ce_scan(const char *buf, size_t len, ce_fields *out);

/* For structured mode: NULL or a reason; trusts rows shaped like the extension's. */
extern const char *ce_check(const char *buf, size_t len);

/* Unescape a JSON string span into a new malloc'd, NUL-terminated string. */
extern char *ce_unescape(ce_span s);

/* The event without its data member (for dead letters too large to send). */
extern char *ce_without_data(const char *buf, size_t len, size_t *outlen);

/* ----------------------------------------------------------- producer.c */

typedef enum
{
	PRODUCE_OK = 0,
	PRODUCE_BACKPRESSURE,		/* local queue full: try again later */
	PRODUCE_FAILED				/* per-message failure; see the
								 * delivery_status */
} produce_result;

/*
 * What became of a message, as the pipeline needs to know it; librdkafka's
 * error codes stay in producer.c, which classifies them.
 */
typedef enum
{
	DELIVERED = 0,				/* the broker has it */
	DELIVERY_FAILED,			/* this message failed: retry, then
								 * dead-letter */
	DELIVERY_TOO_LARGE,			/* failed for its size (a dead letter sheds
								 * its data) */
	DELIVERY_OUTAGE,			/* no broker took it: not the message's fault */
	DELIVERY_PURGED				/* dropped by the relay itself (lease lost,
								 * restart) */
} delivery_status;

/*
 * Called from producer_poll() once for every message handed to the
 * producer; error is librdkafka's name for the error (a static string).
 */
typedef void (*delivery_cb) (uint64_t opaque, delivery_status status, const char *error);

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

extern int	producer_init(const relay_config *cfg, delivery_cb on_delivery, char *errbuf, size_t errlen);
extern produce_result producer_send(const produce_msg *m, delivery_status *status, const char **error);
extern int	producer_poll(int timeout_ms);
extern int	producer_report_fd(void);
extern void producer_poll_reports(void);
extern void producer_purge(void);
extern int	producer_purge_queue(void);
extern int	producer_message_timeout_ms(void);
extern bool producer_probe(int timeout_ms);
extern bool producer_take_fatal(char *errbuf, size_t errlen);
extern bool producer_take_outage(void);
extern int	producer_flush(int timeout_ms);
extern void producer_destroy(void);
extern int	producer_restart(const relay_config *cfg, char *errbuf, size_t errlen);
extern int	producer_outq_len(void);

/* librdkafka's log lines as the relay's (log_cb of every rd_kafka_t) */
struct rd_kafka_s;
extern void kafka_log_cb(const struct rd_kafka_s *k, int level, const char *fac, const char *buf);

/* --------------------------------------------------------------- mock.c */

extern int	mock_start(const relay_config *cfg, const char **bootstraps, char *errbuf, size_t errlen);
extern const char *mock_bootstraps(void);
extern void mock_stop(void);

/* --------------------------------- window.c, keys.c, retry.c, circuit.c */

/* The pipeline: the events between "fetched" and "acknowledged" (pipeline.h). */

typedef enum
{
	CIRCUIT_CLOSED = 0,
	CIRCUIT_OPEN = 1,
	CIRCUIT_HALF_OPEN = 2
} circuit_state;

/* window.c: the fetch window and acks */
extern void pipeline_init(const relay_config *cfg, const char *holder);
extern void pipeline_start(int64_t epoch, int64_t tick, int64_t cursor, bool done, int64_t last_tick);
extern void pipeline_drop(void);
extern void pipeline_shutdown(void);
extern int	pipeline_free_slots(void);
extern bool pipeline_empty(void);
extern int	pipeline_unresolved(void);

/* Returns the number of rows fetched (0 when idle), or -1 on a DB problem. */
extern int	pipeline_fetch(db_result *dbr, bool *idle);
extern db_result pipeline_ack(int64_t now, bool force);
extern int64_t pipeline_ack_due(void);

/* keys.c: per-key order; the producer's delivery_cb */
extern void pipeline_on_delivery(uint64_t opaque, delivery_status status, const char *error);

/* retry.c: retry timers, dead letters to record */
extern db_result pipeline_step(int64_t now);

/* circuit.c: the Kafka circuit breaker */
extern void pipeline_circuit_step(int64_t now);
extern int	pipeline_circuit(void);

/* ------------------------------------------------------------ metrics.c */

#define RELAY_MAX_MAINT_OPS 16

/* One operation of the maintenance list (dbside.c). */
typedef struct relay_maint_metrics
{
	char		name[64];		/* written once, before n_maint counts it */
	atomic_long runs;
	atomic_long done;
	atomic_long failed;			/* what the operation reported (reminders that
								 * failed) */
	atomic_long errors;			/* calls that raised */
} relay_maint_metrics;

#define LATENCY_BUCKETS 16		/* at least metrics.c's bounds */

typedef struct relay_histogram
{
	atomic_long buckets[LATENCY_BUCKETS];
	atomic_long count;
	atomic_long sum_us;
} relay_histogram;

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
	relay_histogram delivery;	/* outbox write -> delivery report */
	relay_histogram produce;	/* handed to librdkafka -> delivery report */
	atomic_int	wakeup_mode;	/* wake_mode */
	atomic_long wakeups;		/* relay_wait() answers */
	atomic_long db_calls;		/* statements on the main connection */
	atomic_long lease_retries;	/* renewals tried again after a transient
								 * failure */
	atomic_long db_retries;		/* ticks, fetches, acks, dead-letter records
								 * tried again after a transient failure */
	atomic_int	n_maint;
	relay_maint_metrics maint[RELAY_MAX_MAINT_OPS];
} relay_metrics;

extern relay_metrics metrics;

extern int	metrics_start(const char *addr, char *errbuf, size_t errlen);
extern void metrics_stop(void);
extern void metrics_observe(relay_histogram *h, double seconds);

#endif							/* TASKEVENTS_RELAY_H */
