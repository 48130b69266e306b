/*
 * producer.c
 *		The librdkafka producer: configuration (defaults, then -X properties
 *		passed straight through with rd_kafka_conf_set and its errstr), the
 *		Kafka record of an event (structured or binary CloudEvents mode, dead
 *		letters with their headers) and delivery reports.  The development
 *		mock cluster is in mock.c.
 *
 * A row counts as delivered only when its delivery report says so: the
 * report callback classifies the error (librdkafka's codes stay in this
 * file) and hands (opaque, status, error name) to the delivery callback
 * given to producer_init(), where the pipeline decides.  Callbacks only
 * record; nothing here exits or blocks.
 */
#include "relay.h"

#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static rd_kafka_t *rk;

/*
 * Delivery reports wake poll(): librdkafka writes a byte to report_pipe
 * when its main queue (where the reports land) goes from empty to not
 * empty, so the main loop can wait for a report and for a commit (wake.c)
 * at once.  -1 when the pipe could not be made: then the loop waits in
 * rd_kafka_poll() as before.
 */
static int	report_pipe[2] = {-1, -1};
static rd_kafka_queue_t *report_queue;

static atomic_int fatal_seen;
static atomic_int outage_seen;

static delivery_cb on_delivery;
static int	message_timeout_ms; /* as configured; 0: none */

static delivery_status classify(rd_kafka_resp_err_t err);

static void
dr_msg_cb(rd_kafka_t *k, const rd_kafka_message_t *m, void *opaque)
{
	(void) k;
	(void) opaque;
	on_delivery((uint64_t) (uintptr_t) m->_private, classify(m->err), rd_kafka_err2name(m->err));
}

/* Runs on librdkafka threads: only flags and log lines. */
static void
error_cb(rd_kafka_t *k, int err, const char *reason, void *opaque)
{
	(void) k;
	(void) opaque;
	if (err == RD_KAFKA_RESP_ERR__FATAL)
	{
		atomic_store(&fatal_seen, 1);
		log_error("kafka fatal error", "{s:s}", "error", reason);
		return;
	}
	if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
		atomic_store(&outage_seen, 1);
	log_warn("kafka error", "{s:s, s:s}", "error", rd_kafka_err2name(err), "reason", reason);
}

void
kafka_log_cb(const rd_kafka_t *k, int level, const char *fac, const char *buf)
{
	int			l = level <= 3 ? LOG_ERROR : level <= 5 ? LOG_WARN : level <= 6 ? LOG_INFO : LOG_DEBUG;

	(void) k;
	log_msg(l, "librdkafka", "{s:s, s:s}", "facility", fac, "detail", buf);
}

/*
 * What an error means for the message: the broker outage and local
 * timeout codes are not the message's fault (the pipeline requeues it and
 * opens the circuit); purges are the relay's own doing.
 */
static delivery_status
classify(rd_kafka_resp_err_t err)
{
	switch (err)
	{
		case RD_KAFKA_RESP_ERR_NO_ERROR:
			return DELIVERED;
		case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
		case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
		case RD_KAFKA_RESP_ERR__DESTROY:
			return DELIVERY_PURGED;
		case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
		case RD_KAFKA_RESP_ERR__TIMED_OUT:
		case RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE:
		case RD_KAFKA_RESP_ERR__TRANSPORT:
		case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
		case RD_KAFKA_RESP_ERR__FATAL:
		case RD_KAFKA_RESP_ERR__RESOLVE:
		case RD_KAFKA_RESP_ERR__FENCED:
		case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
		case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
		case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND:
		case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
		case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
		case RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION:
		case RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE:
			return DELIVERY_OUTAGE;
		case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
			return DELIVERY_TOO_LARGE;
		default:
			return DELIVERY_FAILED;
	}
}

static int
conf_set(rd_kafka_conf_t *conf, const char *k, const char *v, char *errbuf, size_t errlen)
{
	char		errstr[512];

	if (rd_kafka_conf_set(conf, k, v, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
	{
		snprintf(errbuf, errlen, "kafka property %s: %s", k, errstr);
		return -1;
	}
	return 0;
}

/* producer queue bytes per event in flight */
#define QUEUE_BYTES_PER_EVENT 100
#define QUEUE_KBYTES_MAX 65536

/*
 * The producer only has to keep the brokers busy (a few round trips of
 * data); the window holds everything else.  Measured on a 2-core machine
 * draining 200,000 events with --max-inflight 50000, 2-4 MB drained as
 * fast as 1 GB (librdkafka's default) with half the peak memory.
 */
static long
queue_kbytes(int max_inflight)
{
	long		kb = (long) max_inflight * QUEUE_BYTES_PER_EVENT / 1024;

	return kb < 1 ? 1 : kb > QUEUE_KBYTES_MAX ? QUEUE_KBYTES_MAX : kb;
}

/*
 * A message larger than the queue's byte bound would wait for room
 * forever: unless -X set queue.buffering.max.kbytes itself, make the bound
 * hold two of the largest messages the producer accepts (message.max.bytes,
 * which -X may have raised).
 */
static int
fit_queue_to_max_message(rd_kafka_conf_t *conf, const relay_config *cfg, char *errbuf, size_t errlen)
{
	char		v[64];
	size_t		vlen = sizeof(v);
	long		max_msg,
				kb;

	for (int i = 0; i < cfg->n_kafka_props; i++)
		if (strncmp(cfg->kafka_props[i], "queue.buffering.max.kbytes=", 27) == 0)
			return 0;
	if (rd_kafka_conf_get(conf, "message.max.bytes", v, &vlen) != RD_KAFKA_CONF_OK)
		return 0;
	max_msg = strtol(v, NULL, 10);
	vlen = sizeof(v);
	if (rd_kafka_conf_get(conf, "queue.buffering.max.kbytes", v, &vlen) != RD_KAFKA_CONF_OK)
		return 0;
	kb = strtol(v, NULL, 10);
	if (kb * 1024 >= 2 * max_msg)
		return 0;
	snprintf(v, sizeof(v), "%ld", (2 * max_msg + 1023) / 1024);
	return conf_set(conf, "queue.buffering.max.kbytes", v, errbuf, errlen);
}

static int
create_producer(const relay_config *cfg, const char *bootstraps, char *errbuf, size_t errlen)
{
	rd_kafka_conf_t *conf;
	char		errstr[512];
	char		qmax[32],
				qkb[32];

	conf = rd_kafka_conf_new();

	/*
	 * Bounded queues sized from --max-inflight: every message in the producer
	 * is an event of the window (a dead letter replaces its event), so at
	 * most max_inflight of them, and QUEUE_BYTES_PER_EVENT bytes per event
	 * allowed in flight (but room for two of the largest messages, see
	 * fit_queue_to_max_message()).  A full queue is back-pressure: events
	 * wait in the window, and fetching pauses.
	 *
	 * Partitioner FNV-1a: librdkafka's fnv1a matches Sarama's default
	 * NewHashPartitioner, which Dapr's Kafka pub/sub uses, so a user id lands
	 * on the same partition whether the relay or a Dapr publisher wrote it
	 * (test/0620); _random: a NULL key is spread, as in Sarama.
	 *
	 * No linger, and at most two requests in flight per broker: a record goes
	 * out at once unless two requests are in flight, and records that come
	 * meanwhile all go in the next request, so batches grow with the load by
	 * themselves.  Against linger.ms=1 with the idempotent producer's five
	 * requests in flight, a drain sends fewer and larger requests: the relay
	 * and the broker both used less CPU per event, and a lone record waits
	 * for no timer (bench/relay/README.md, 3 Dec afternoon).  One request in
	 * flight saved as much CPU but waited for each response: a higher p99 at
	 * 200 writes/s.
	 */
	snprintf(qmax, sizeof(qmax), "%d", cfg->max_inflight + 64);
	snprintf(qkb, sizeof(qkb), "%ld", queue_kbytes(cfg->max_inflight));
	if (conf_set(conf, "bootstrap.servers", bootstraps, errbuf, errlen) ||
		conf_set(conf, "client.id", "taskevents-relay", errbuf, errlen) ||
		conf_set(conf, "enable.idempotence", "true", errbuf, errlen) ||
		conf_set(conf, "partitioner", "fnv1a_random", errbuf, errlen) ||
		conf_set(conf, "message.timeout.ms", "300000", errbuf, errlen) ||
		conf_set(conf, "linger.ms", "0", errbuf, errlen) ||
		conf_set(conf, "max.in.flight.requests.per.connection", "2", errbuf, errlen) ||
		conf_set(conf, "queue.buffering.max.messages", qmax, errbuf, errlen) ||
		conf_set(conf, "queue.buffering.max.kbytes", qkb, errbuf, errlen) ||
		conf_set(conf, "reconnect.backoff.max.ms", "1000", errbuf, errlen))
	{
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	for (int i = 0; i < cfg->n_kafka_props; i++)
	{
		char	   *kv = strdup(cfg->kafka_props[i]);
		char	   *eq = strchr(kv, '=');
		int			r;

		*eq = '\0';
		r = conf_set(conf, kv, eq + 1, errbuf, errlen);
		free(kv);
		if (r != 0)
		{
			rd_kafka_conf_destroy(conf);
			return -1;
		}
	}
	if (fit_queue_to_max_message(conf, cfg, errbuf, errlen) != 0)
	{
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	{
		char		v[32];
		size_t		vlen = sizeof(v);

		message_timeout_ms = rd_kafka_conf_get(conf, "message.timeout.ms", v, &vlen) == RD_KAFKA_CONF_OK ? atoi(v) : 0;
	}
	rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
	rd_kafka_conf_set_error_cb(conf, error_cb);
	rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (rk == NULL)
	{
		snprintf(errbuf, errlen, "cannot create the Kafka producer: %s", errstr);
		return -1;
	}
	if (report_pipe[0] < 0 && pipe(report_pipe) == 0)
		for (int i = 0; i < 2; i++)
		{
			fcntl(report_pipe[i], F_SETFL, O_NONBLOCK);
			fcntl(report_pipe[i], F_SETFD, FD_CLOEXEC);
		}
	if (report_pipe[0] >= 0)
	{
		report_queue = rd_kafka_queue_get_main(rk);
		rd_kafka_queue_io_event_enable(report_queue, report_pipe[1], "r", 1);
	}
	return 0;
}

/* Before rk is destroyed: stop the queue's writes into report_pipe. */
static void
report_queue_release(void)
{
	if (report_queue)
	{
		rd_kafka_queue_io_event_enable(report_queue, -1, NULL, 0);
		rd_kafka_queue_destroy(report_queue);
		report_queue = NULL;
	}
}

int
producer_init(const relay_config *cfg, delivery_cb cb, char *errbuf, size_t errlen)
{
	const char *bootstraps = cfg->brokers;

	on_delivery = cb;
	if (cfg->dev_mock_kafka && mock_start(cfg, &bootstraps, errbuf, errlen) != 0)
		return -1;
	return create_producer(cfg, bootstraps, errbuf, errlen);
}

/*
 * Topic handles, made on first use and kept: rd_kafka_producev() with a
 * topic name looks the handle up (and takes and drops a reference) for
 * every record, which showed in the drain's profile.  The relay writes to
 * a handful of topics (tasks, reminders, their dead-letter topics).
 */
#define MAX_TOPICS 64

static struct
{
	char	   *name;
	rd_kafka_topic_t *rkt;
}			topics[MAX_TOPICS];
static int	n_topics;

/* Before the producer they belong to is destroyed. */
static void
topics_release(void)
{
	for (int i = 0; i < n_topics; i++)
	{
		rd_kafka_topic_destroy(topics[i].rkt);
		free(topics[i].name);
	}
	n_topics = 0;
}

static rd_kafka_topic_t *
topic_handle(const char *name)
{
	for (int i = 0; i < n_topics; i++)
		if (strcmp(topics[i].name, name) == 0)
			return topics[i].rkt;
	if (n_topics == MAX_TOPICS)
		topics_release();		/* queued records keep their own references */
	topics[n_topics].rkt = rd_kafka_topic_new(rk, name, NULL);
	if (topics[n_topics].rkt == NULL)
		return NULL;
	topics[n_topics].name = strdup(name);
	return topics[n_topics++].rkt;
}

/*
 * After a fatal producer error (the idempotent producer cannot go on), a
 * new producer instance; the caller resumes from the acknowledged position.
 */
int
producer_restart(const relay_config *cfg, char *errbuf, size_t errlen)
{
	const char *bootstraps = mock_bootstraps() ? mock_bootstraps() : cfg->brokers;

	rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
	rd_kafka_poll(rk, 0);
	topics_release();
	report_queue_release();
	rd_kafka_destroy(rk);
	rk = NULL;
	atomic_store(&fatal_seen, 0);
	return create_producer(cfg, bootstraps, errbuf, errlen);
}

static void
add_header(rd_kafka_headers_t *h, const char *name, const char *value)
{
	rd_kafka_header_add(h, name, -1, value, -1);
}

static void
add_ce_header(rd_kafka_headers_t *h, const char *name, ce_span s)
{
	char	   *v = ce_unescape(s);

	rd_kafka_header_add(h, name, -1, v, -1);
	free(v);
}

/*
 * Hand one record to librdkafka.  In binary mode the value is the event's
 * data and its attributes go into ce_* headers; dead letters are always
 * the structured event.
 *
 * librdkafka copies key, value and headers (RD_KAFKA_MSG_F_COPY).  Not
 * copying the value (it points into the fetched page, kept until the
 * record's report) sent corrupt records when a leader stepped down with
 * records queued: test/0520 found invalid CloudEvents in the topic
 * (2 Dec 2026); the page is freed right after rd_kafka_purge(), and
 * librdkafka still read some of those values.
 */
produce_result
producer_send(const produce_msg *m, delivery_status *status, const char **error)
{
	rd_kafka_headers_t *h = rd_kafka_headers_new(m->dlq_original_topic ? 6 : m->binary ? 9 : 1);
	const char *value = m->value;
	size_t		value_len = m->value_len;
	rd_kafka_topic_t *rkt;
	rd_kafka_resp_err_t e;

	if (m->dlq_original_topic)
	{
		char		t1[40],
					t2[40],
					n[16];

		format_rfc3339(m->dlq_first_failure, t1, sizeof(t1));
		format_rfc3339(m->dlq_last_failure, t2, sizeof(t2));
		snprintf(n, sizeof(n), "%d", m->dlq_attempts);
		add_header(h, "content-type", m->invalid ? "application/json" : "application/cloudevents+json; charset=UTF-8");
		add_header(h, "taskevents-original-topic", m->dlq_original_topic);
		add_header(h, "taskevents-error", m->dlq_error ? m->dlq_error : "");
		add_header(h, "taskevents-attempts", n);
		add_header(h, "taskevents-first-failure", t1);
		add_header(h, "taskevents-last-failure", t2);
	}
	else if (m->binary)
	{
		ce_fields	f;

		if (ce_scan(m->value, m->value_len, &f) != NULL)
		{
			rd_kafka_headers_destroy(h);
			*status = DELIVERY_FAILED;
			*error = rd_kafka_err2name(RD_KAFKA_RESP_ERR__BAD_MSG);
			return PRODUCE_FAILED;
		}
		add_header(h, "content-type", "application/json");
		add_ce_header(h, "ce_specversion", f.specversion);
		add_ce_header(h, "ce_id", f.id);
		add_ce_header(h, "ce_source", f.source);
		add_ce_header(h, "ce_type", f.type);
		if (f.has_time)
			add_ce_header(h, "ce_time", f.time);
		if (f.has_subject)
			add_ce_header(h, "ce_subject", f.subject);
		if (f.has_partitionkey)
			add_ce_header(h, "ce_partitionkey", f.partitionkey);
		if (f.has_traceparent)
			add_ce_header(h, "ce_traceparent", f.traceparent);
		value = f.has_data ? f.data.p : NULL;
		value_len = f.has_data ? f.data.len : 0;
	}
	else
		add_header(h, "content-type", "application/cloudevents+json; charset=UTF-8");

	rkt = topic_handle(m->topic);
	if (rkt == NULL)
		e = rd_kafka_last_error();
	else
		e = rd_kafka_producev(rk,
							  RD_KAFKA_V_RKT(rkt),
							  RD_KAFKA_V_KEY(m->key, m->key ? strlen(m->key) : 0),
							  RD_KAFKA_V_VALUE((void *) value, value_len),
							  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
							  RD_KAFKA_V_HEADERS(h),
							  RD_KAFKA_V_OPAQUE((void *) (uintptr_t) m->opaque),
							  RD_KAFKA_V_END);
	if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
		return PRODUCE_OK;
	rd_kafka_headers_destroy(h);
	*status = classify(e);
	*error = rd_kafka_err2name(e);
	if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL)
		return PRODUCE_BACKPRESSURE;
	if (e == RD_KAFKA_RESP_ERR__FATAL)
		atomic_store(&fatal_seen, 1);
	return PRODUCE_FAILED;
}

int
producer_poll(int timeout_ms)
{
	return rd_kafka_poll(rk, timeout_ms);
}

/*
 * After poll() found producer_report_fd() readable: take the wake-up bytes,
 * then serve the reports.  A report queued after the read leaves a byte
 * for the next poll() (at worst one early wake-up); bytes of reports that
 * another producer_poll() served do the same.
 */
void
producer_poll_reports(void)
{
	char		buf[64];

	while (read(report_pipe[0], buf, sizeof(buf)) > 0)
		;
	rd_kafka_poll(rk, 0);
}

/* A descriptor that turns readable when a delivery report is in, or -1. */
int
producer_report_fd(void)
{
	return report_queue ? report_pipe[0] : -1;
}

int
producer_outq_len(void)
{
	return rd_kafka_outq_len(rk);
}

/* Drop everything queued or in flight (lease lost): reports follow with
 * _PURGE_* errors and are ignored by the pipeline. */
void
producer_purge(void)
{
	rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
	rd_kafka_poll(rk, 0);
}

/*
 * Take back every message librdkafka has not put in a request yet (circuit.c
 * does, before any can reach message.timeout.ms).  Their reports
 * (_PURGE_QUEUE) come at the next poll; no poll here, so no report is
 * handled inside the caller.  Returns how many messages the producer held
 * before, those in requests included.
 */
int
producer_purge_queue(void)
{
	int			held = rd_kafka_outq_len(rk);

	rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE);
	return held;
}

/* The producer's message.timeout.ms (0: none), as configured at its start. */
int
producer_message_timeout_ms(void)
{
	return message_timeout_ms;
}

/* Half-open circuit probe: does any broker answer a metadata request? */
bool
producer_probe(int timeout_ms)
{
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, NULL, &md, timeout_ms);
	bool		ok = e == RD_KAFKA_RESP_ERR_NO_ERROR && md != NULL && md->broker_cnt > 0;

	if (md)
		rd_kafka_metadata_destroy(md);
	return ok;
}

bool
producer_take_fatal(char *errbuf, size_t errlen)
{
	if (!atomic_exchange(&fatal_seen, 0))
		return false;
	rd_kafka_fatal_error(rk, errbuf, errlen);
	return true;
}

bool
producer_take_outage(void)
{
	return atomic_exchange(&outage_seen, 0) != 0;
}

int
producer_flush(int timeout_ms)
{
	rd_kafka_flush(rk, timeout_ms);
	return rd_kafka_outq_len(rk);
}

void
producer_destroy(void)
{
	if (rk)
	{
		int			left = producer_flush(0);

		if (left > 0)
			log_warn("kafka messages left undelivered at exit", "{s:i}", "count", left);
		rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
		topics_release();
		report_queue_release();
		rd_kafka_destroy(rk);
		rk = NULL;
	}
	mock_stop();
}
