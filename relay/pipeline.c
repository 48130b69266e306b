/*
 * pipeline.c
 *		The events between "fetched" and "acknowledged": per-key order,
 *		retries with backoff, dead letters, the circuit breaker and the ack
 *		of a contiguous prefix.
 *
 * Fetched rows go into a window (a ring of fixed capacity, --max-inflight)
 * in outbox order, with an end-of-batch marker after each fully read batch.
 * Each event also sits in the queue of its partition key.  Events of one key
 * are handed to librdkafka strictly in order (the idempotent producer keeps
 * that order on the partition).  When one fails, it becomes its key's
 * "hold": nothing later of that key is sent until the hold is resolved, and
 * a later event that was already in flight and succeeded is sent again after
 * it (a re-send with the same CloudEvent id, so the last copy of each event
 * is in order).  Other keys flow meanwhile.  The hold is retried after each
 * --retry-backoff-ms delay, then produced to the dead-letter topic and
 * recorded with relay_dead_letter().
 *
 * The window head advances over resolved events (delivered per delivery
 * report, or dead-lettered); the position after the last one popped is
 * acknowledged with relay_ack().  Anything not acknowledged is re-sent by
 * whichever relay resumes, with the same ids: at least once, order kept.
 *
 * A broker outage is not a per-event failure: the event goes back to its
 * queue, no attempt is counted, and the circuit opens (no fetching, no
 * sending) until a metadata probe or a delivery shows the broker is back.
 */
#include "relay.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DLQ_BIT (1ULL << 63)
#define KEY_BUCKETS 65536
#define ACK_INTERVAL_MS 100
#define CIRCUIT_MIN_BACKOFF_MS 500
#define CIRCUIT_MAX_BACKOFF_MS 5000

typedef enum
{
	EV_QUEUED = 0,
	EV_INFLIGHT,
	EV_RETRY_WAIT,
	EV_RECORD,					/* dead letter delivered, to record in the DB */
	EV_DONE
} event_state;

struct keystate;

typedef struct event
{
	uint64_t	seq;
	bool		marker;			/* end of batch `tick` */
	int64_t		tick;
	int64_t		id;
	char	   *topic;
	char	   *key;
	char	   *payload;
	size_t		payload_len;
	double		created_at;
	event_state state;
	bool		dlq;			/* destination is the dead-letter topic now */
	bool		stripped;		/* dead letter sent without its data */
	const char *invalid;		/* why the row is not a CloudEvent, or NULL */
	int			attempts;
	double		first_failure;
	double		last_failure;
	int64_t		retry_at;
	char		error[96];
	struct keystate *ks;
	struct event *kprev;
	struct event *knext;
} event;

typedef struct keystate
{
	char	   *key;			/* NULL: rows without a partition key */
	uint32_t	hash;
	event	   *first;			/* unresolved events of the key, in order */
	event	   *last;
	event	   *next_send;		/* earliest event that may still need sending */
	event	   *hold;			/* failing event that blocks the key */
	int			inflight;
	bool		drain;			/* wait for inflight == 0 before sending */
	struct keystate *hnext;
	struct keystate *held_prev;
	struct keystate *held_next;
	bool		in_held;
} keystate;

static const relay_config *cfg;
static bool leader;
static int64_t epoch;

static event *ring;
static uint64_t ring_cap;
static uint64_t head = 1;		/* seq of the oldest entry in the window */
static uint64_t tail = 1;		/* seq the next entry gets */
static long unresolved;

static keystate **buckets;
static long nkeys;
static keystate *held;
static bool need_pump_all;

/* fetch position: batch cur_tick, rows after cur_after */
static int64_t cur_tick;
static int64_t cur_after;
static bool batch_read;
static int64_t last_tick;

/* popped (resolved) and acknowledged positions */
static int64_t pos_tick, pos_cursor;
static bool pos_done;
static int64_t ack_tick, ack_cursor;
static bool ack_done;
static int64_t last_ack_ms;

static circuit_state circuit = CIRCUIT_CLOSED;
static int64_t circuit_until;
static int	circuit_backoff = CIRCUIT_MIN_BACKOFF_MS;

static void pump(keystate *ks);

void
pipeline_init(const relay_config *c, const char *h)
{
	(void) h;
	cfg = c;
	ring_cap = (uint64_t) c->max_inflight + 2;
	ring = calloc(ring_cap, sizeof(event));
	buckets = calloc(KEY_BUCKETS, sizeof(keystate *));
}

int
pipeline_circuit(void)
{
	return circuit;
}

bool
pipeline_empty(void)
{
	return head == tail;
}

int
pipeline_unresolved(void)
{
	return (int) unresolved;
}

int
pipeline_free_slots(void)
{
	return cfg->max_inflight - (int) (tail - head);
}

static event *
event_at(uint64_t seq)
{
	if (seq < head || seq >= tail)
		return NULL;
	return &ring[seq % ring_cap];
}

/* The CloudEvent id of an event, for log lines (malloc'd, or NULL). */
static char *
event_id_of(const event *e)
{
	ce_fields	f;

	if (ce_scan(e->payload, e->payload_len, &f) != NULL && f.id.p == NULL)
		return NULL;
	return f.id.p ? ce_unescape(f.id) : NULL;
}

/* ----------------------------------------------------------- keys */

static uint32_t
hash_key(const char *k)
{
	uint32_t	h = 2166136261u;

	if (k == NULL)
		return 0;
	for (; *k; k++)
		h = (h ^ (unsigned char) *k) * 16777619u;
	return h;
}

static keystate *
key_get(const char *key)
{
	uint32_t	h = hash_key(key);
	keystate  **b = &buckets[h % KEY_BUCKETS];
	keystate   *ks;

	for (ks = *b; ks; ks = ks->hnext)
		if (ks->hash == h && (key == NULL ? ks->key == NULL : ks->key && strcmp(ks->key, key) == 0))
			return ks;
	ks = calloc(1, sizeof(keystate));
	ks->key = key ? strdup(key) : NULL;
	ks->hash = h;
	ks->hnext = *b;
	*b = ks;
	nkeys++;
	return ks;
}

static void
held_add(keystate *ks)
{
	if (ks->in_held)
		return;
	ks->in_held = true;
	ks->held_prev = NULL;
	ks->held_next = held;
	if (held)
		held->held_prev = ks;
	held = ks;
}

static void
held_remove(keystate *ks)
{
	if (!ks->in_held)
		return;
	if (ks->held_prev)
		ks->held_prev->held_next = ks->held_next;
	else
		held = ks->held_next;
	if (ks->held_next)
		ks->held_next->held_prev = ks->held_prev;
	ks->in_held = false;
}

static void
key_free(keystate *ks)
{
	keystate  **b = &buckets[ks->hash % KEY_BUCKETS];

	while (*b != ks)
		b = &(*b)->hnext;
	*b = ks->hnext;
	held_remove(ks);
	free(ks->key);
	free(ks);
	nkeys--;
}

static void
requeue(event *e)
{
	keystate   *ks = e->ks;

	e->state = EV_QUEUED;
	if (ks->next_send == NULL || e->seq < ks->next_send->seq)
		ks->next_send = e;
	ks->drain = true;
}

/* An event is resolved: out of its key's queue, payload freed.  Returns its
 * key, or NULL when the key had nothing else and was freed. */
static keystate *
resolve(event *e)
{
	keystate   *ks = e->ks;

	e->state = EV_DONE;
	unresolved--;
	if (e->kprev)
		e->kprev->knext = e->knext;
	else
		ks->first = e->knext;
	if (e->knext)
		e->knext->kprev = e->kprev;
	else
		ks->last = e->kprev;
	if (ks->next_send == e)
		ks->next_send = e->knext;
	if (ks->hold == e)
	{
		ks->hold = NULL;
		held_remove(ks);
	}
	free(e->payload);
	e->payload = NULL;
	e->ks = NULL;
	e->kprev = e->knext = NULL;
	if (ks->first == NULL && ks->inflight == 0)
	{
		key_free(ks);
		return NULL;
	}
	return ks;
}

/* ------------------------------------------------------------ circuit */

static void
circuit_open(const char *why)
{
	if (circuit == CIRCUIT_OPEN)
		return;
	circuit = CIRCUIT_OPEN;
	circuit_until = mono_ms() + circuit_backoff;
	atomic_store(&metrics.circuit, CIRCUIT_OPEN);
	log_warn("kafka unavailable, circuit open: not claiming new events", "{s:s, s:i}",
			 "reason", why, "retry_in_ms", circuit_backoff);
}

static void
circuit_close(void)
{
	if (circuit == CIRCUIT_CLOSED)
		return;
	circuit = CIRCUIT_CLOSED;
	circuit_backoff = CIRCUIT_MIN_BACKOFF_MS;
	atomic_store(&metrics.circuit, CIRCUIT_CLOSED);
	need_pump_all = true;
	log_info("kafka available, circuit closed", NULL);
}

void
pipeline_circuit_step(int64_t now)
{
	if (producer_take_outage())
		circuit_open("all brokers down");
	if (circuit != CIRCUIT_OPEN || now < circuit_until)
		return;
	circuit = CIRCUIT_HALF_OPEN;
	atomic_store(&metrics.circuit, CIRCUIT_HALF_OPEN);
	if (producer_probe(500))
		circuit_close();
	else
	{
		circuit = CIRCUIT_OPEN;
		atomic_store(&metrics.circuit, CIRCUIT_OPEN);
		circuit_backoff = circuit_backoff * 2 > CIRCUIT_MAX_BACKOFF_MS ? CIRCUIT_MAX_BACKOFF_MS : circuit_backoff * 2;
		circuit_until = mono_ms() + circuit_backoff;
		log_debug("circuit probe failed", "{s:i}", "retry_in_ms", circuit_backoff);
	}
}

/* ------------------------------------------------------------ sending */

static void on_failure(event *e, int err);

static produce_result
send_event(event *e)
{
	produce_msg m = {0};
	char		dlq_topic[512];
	char	   *stripped = NULL;
	produce_result r;
	int			err = 0;

	m.topic = e->topic;
	m.key = e->key;
	m.value = e->payload;
	m.value_len = e->payload_len;
	m.opaque = e->seq;
	m.binary = cfg->binary;
	if (e->dlq)
	{
		snprintf(dlq_topic, sizeof(dlq_topic), "%s%s", e->topic, cfg->dlq_suffix);
		m.topic = dlq_topic;
		m.opaque |= DLQ_BIT;
		m.invalid = e->invalid != NULL;
		m.dlq_original_topic = e->topic;
		m.dlq_error = e->invalid ? e->invalid : e->error;
		m.dlq_attempts = e->attempts;
		m.dlq_first_failure = e->first_failure;
		m.dlq_last_failure = e->last_failure;
		if (e->stripped && (stripped = ce_without_data(e->payload, e->payload_len, &m.value_len)) != NULL)
			m.value = stripped;
		else if (e->stripped)
			m.value_len = 0;
	}
	r = producer_send(&m, &err);
	free(stripped);
	if (r == PRODUCE_OK)
	{
		e->state = EV_INFLIGHT;
		e->ks->inflight++;
	}
	else if (r == PRODUCE_FAILED)
		on_failure(e, err);
	return r;
}

/* Send what the key may send now, in order. */
static void
pump(keystate *ks)
{
	event	   *e;

	if (!leader || circuit != CIRCUIT_CLOSED)
		return;
	for (;;)
	{
		if (ks->hold)
		{
			e = ks->hold;
			if (e->state == EV_QUEUED && ks->inflight == 0)
			{
				if (send_event(e) == PRODUCE_BACKPRESSURE)
					need_pump_all = true;
			}
			return;
		}
		if (ks->drain)
		{
			if (ks->inflight > 0)
				return;
			ks->drain = false;
		}
		while ((e = ks->next_send) != NULL)
		{
			produce_result r;

			if (e->state != EV_QUEUED)
			{
				ks->next_send = e->knext;
				continue;
			}
			if (e->invalid)
			{
				double		now = wall_now();

				e->dlq = true;
				e->first_failure = e->last_failure = now;
				snprintf(e->error, sizeof(e->error), "invalid cloudevent: %s", e->invalid);
				e->invalid = e->error;
				ks->hold = e;
				held_add(ks);
				ks->next_send = e->knext;
				break;			/* to the hold branch */
			}
			r = send_event(e);
			if (r == PRODUCE_BACKPRESSURE)
			{
				need_pump_all = true;
				return;
			}
			if (r == PRODUCE_FAILED)
				break;			/* on_failure made it the hold, or requeued it */
			ks->next_send = e->knext;
		}
		if (ks->hold == NULL)
			return;
	}
}

/* A per-message failure of e (or an outage, which counts no attempt). */
static void
on_failure(event *e, int err)
{
	keystate   *ks = e->ks;
	double		now = wall_now();

	if (producer_is_outage_error(err))
	{
		requeue(e);
		if (!producer_is_purge_error(err))
			circuit_open(producer_err2str(err));
		return;
	}
	if (e->dlq)
	{
		/* the dead letter itself failed: shed the data if too large, else
		 * try again later; never give up on recording it */
		e->last_failure = now;
		if (err == 10 /* MSG_SIZE_TOO_LARGE */ && !e->stripped)
		{
			e->stripped = true;
			e->state = EV_QUEUED;
		}
		else
		{
			e->state = EV_RETRY_WAIT;
			e->retry_at = mono_ms() + (cfg->retry_count ? cfg->retry_backoff_ms[cfg->retry_count - 1] : 1000);
			log_error("dead letter could not be produced, will retry", "{s:I, s:s}",
					  "outbox_id", (json_int_t) e->id, "error", producer_err2str(err));
		}
		return;
	}
	if (ks->hold && ks->hold != e)
	{
		if (e->seq > ks->hold->seq)
		{
			requeue(e);
			return;
		}
		/* an earlier event failed: it blocks the key, the old hold waits */
		requeue(ks->hold);
		ks->hold = NULL;
	}
	e->attempts++;
	if (e->attempts == 1)
		e->first_failure = now;
	e->last_failure = now;
	snprintf(e->error, sizeof(e->error), "%s", producer_err2str(err));
	ks->hold = e;
	ks->drain = true;
	held_add(ks);
	{
		char	   *id = event_id_of(e);

		if (e->attempts > cfg->retry_count)
		{
			e->dlq = true;
			e->state = EV_QUEUED;
			log_warn("delivery failed, retries exhausted: dead-lettering", "{s:s?, s:I, s:s, s:i, s:s}",
					 "event_id", id, "outbox_id", (json_int_t) e->id, "topic", e->topic,
					 "attempts", e->attempts, "error", e->error);
		}
		else
		{
			int			delay = cfg->retry_backoff_ms[e->attempts - 1];

			e->state = EV_RETRY_WAIT;
			e->retry_at = mono_ms() + delay;
			atomic_fetch_add(&metrics.retries, 1);
			log_warn("delivery failed, will retry", "{s:s?, s:I, s:s, s:i, s:i, s:s}",
					 "event_id", id, "outbox_id", (json_int_t) e->id, "topic", e->topic,
					 "attempt", e->attempts, "retry_in_ms", delay, "error", e->error);
		}
		free(id);
	}
}

/* Delivery report (from producer_poll()). */
void
pipeline_on_delivery(uint64_t opaque, int err)
{
	bool		dlq = (opaque & DLQ_BIT) != 0;
	event	   *e = event_at(opaque & ~DLQ_BIT);
	keystate   *ks;

	if (e == NULL || e->marker || e->state != EV_INFLIGHT || e->dlq != dlq || e->ks == NULL)
		return;					/* from a dropped window, or a stale duplicate */
	ks = e->ks;
	ks->inflight--;
	e->state = EV_QUEUED;
	if (err == 0 && circuit != CIRCUIT_CLOSED)
		circuit_close();
	if (err == 0)
	{
		if (e->dlq)
		{
			e->state = EV_RECORD;	/* recorded by pipeline_step() */
			return;
		}
		if (ks->hold && ks->hold->seq < e->seq)
		{
			requeue(e);			/* went out ahead of a failing earlier one */
			pump(ks);
			return;
		}
		atomic_fetch_add(&metrics.published, 1);
		metrics_observe_latency(wall_now() - e->created_at);
		ks = resolve(e);
	}
	else
		on_failure(e, err);
	if (ks)
		pump(ks);
}

/* ------------------------------------------------------------ window */

static void
window_free_entry(event *e)
{
	free(e->topic);
	free(e->key);
	free(e->payload);
	memset(e, 0, sizeof(*e));
}

void
pipeline_start(int64_t ep, int64_t tick, int64_t cursor, bool done, int64_t last)
{
	leader = true;
	epoch = ep;
	cur_tick = tick;
	cur_after = done ? 0 : cursor;
	batch_read = done;
	last_tick = last;
	pos_tick = ack_tick = tick;
	pos_cursor = ack_cursor = cursor;
	pos_done = ack_done = done;
	last_ack_ms = mono_ms();
	circuit = CIRCUIT_CLOSED;
	circuit_backoff = CIRCUIT_MIN_BACKOFF_MS;
	atomic_store(&metrics.circuit, CIRCUIT_CLOSED);
}

/* Forget every event in memory (lease lost, connection lost, shutdown). */
void
pipeline_drop(void)
{
	if (head != tail)
		producer_purge();
	for (uint64_t s = head; s < tail; s++)
		window_free_entry(&ring[s % ring_cap]);
	head = tail;
	unresolved = 0;
	for (int i = 0; i < KEY_BUCKETS; i++)
		while (buckets[i])
			key_free(buckets[i]);
	held = NULL;
	leader = false;
	need_pump_all = false;
	atomic_store(&metrics.inflight, 0);
}

static event *
window_push(void)
{
	event	   *e = &ring[tail % ring_cap];

	memset(e, 0, sizeof(*e));
	e->seq = tail++;
	return e;
}

int
pipeline_fetch(db_result *dbr, bool *idle)
{
	int			freeslots = pipeline_free_slots();
	int			lim;
	db_row	   *rows = NULL;
	int			n = 0;

	*idle = false;
	*dbr = DB_OK;
	if (!leader || circuit != CIRCUIT_CLOSED || freeslots < 2)
		return 0;
	if (batch_read)
	{
		if (cur_tick < last_tick)
			cur_tick++;
		else
		{
			int64_t		t;

			*dbr = db_tick(cfg->consumer, epoch, &t);
			if (*dbr != DB_OK)
				return -1;
			if (t == 0)
			{
				*idle = true;
				return 0;
			}
			last_tick = cur_tick = t;
		}
		cur_after = 0;
		batch_read = false;
	}
	lim = freeslots - 1 < cfg->batch_size ? freeslots - 1 : cfg->batch_size;
	*dbr = db_fetch(cfg->consumer, cur_tick, cur_after, lim, &rows, &n, &lim);
	if (*dbr != DB_OK)
		return -1;
	/* a full page: have PostgreSQL read the next one while we send these */
	if (n > 0 && n == lim && freeslots - n - 1 >= 1)
		db_prefetch(cfg->consumer, cur_tick, rows[n - 1].id,
					freeslots - n - 1 < cfg->batch_size ? freeslots - n - 1 : cfg->batch_size);
	for (int i = 0; i < n; i++)
	{
		event	   *e = window_push();
		ce_fields	f;
		keystate   *ks;

		e->tick = cur_tick;
		e->id = rows[i].id;
		e->topic = rows[i].topic;
		e->key = rows[i].key;
		e->payload = rows[i].event;
		e->payload_len = rows[i].event_len;
		e->created_at = rows[i].created_at;
		rows[i].topic = rows[i].key = rows[i].event = NULL;
		e->invalid = ce_scan(e->payload, e->payload_len, &f);
		e->state = EV_QUEUED;
		unresolved++;
		ks = key_get(e->key);
		e->ks = ks;
		e->kprev = ks->last;
		if (ks->last)
			ks->last->knext = e;
		else
			ks->first = e;
		ks->last = e;
		if (ks->next_send == NULL)
			ks->next_send = e;
		cur_after = e->id;
		pump(ks);
	}
	db_rows_free(rows, n);
	if (n < lim)
	{
		event	   *m = window_push();

		m->marker = true;
		m->tick = cur_tick;
		m->id = cur_after;
		m->state = EV_DONE;
		batch_read = true;
	}
	atomic_store(&metrics.inflight, unresolved);
	if (n > 0)
		log_debug("fetched", "{s:I, s:i}", "tick", (json_int_t) cur_tick, "count", n);
	return n;
}

/* Retry timers, dead letters to record, keys to pump again. */
db_result
pipeline_step(int64_t now)
{
	keystate   *ks,
			   *next;

	for (ks = held; ks; ks = next)
	{
		event	   *e = ks->hold;

		next = ks->held_next;
		if (e == NULL)
		{
			held_remove(ks);
			continue;
		}
		if (e->state == EV_RECORD)
		{
			char	   *id = event_id_of(e);
			char		dlq_topic[512];
			db_result	r;

			snprintf(dlq_topic, sizeof(dlq_topic), "%s%s", e->topic, cfg->dlq_suffix);
			r = db_dead_letter(cfg->consumer, epoch, e->id, e->topic, dlq_topic, e->key, e->payload,
							   e->invalid ? e->invalid : e->error, e->attempts, e->first_failure);
			if (r != DB_OK)
			{
				free(id);
				return r;
			}
			atomic_fetch_add(&metrics.dead_letters, 1);
			log_alert("event dead-lettered", "{s:s?, s:I, s:s, s:s, s:i, s:s}",
					  "event_id", id, "outbox_id", (json_int_t) e->id, "topic", e->topic,
					  "dlq_topic", dlq_topic, "attempts", e->attempts,
					  "error", e->invalid ? e->invalid : e->error);
			free(id);
			if ((ks = resolve(e)) != NULL)
				pump(ks);
			/* resolve() may have freed a key; restart from the list head */
			next = held;
			continue;
		}
		if (e->state == EV_RETRY_WAIT && now >= e->retry_at)
		{
			e->state = EV_QUEUED;
			pump(ks);
		}
		else if (e->state == EV_QUEUED)
			pump(ks);
	}
	if (need_pump_all && leader && circuit == CIRCUIT_CLOSED)
	{
		need_pump_all = false;
		for (int i = 0; i < KEY_BUCKETS; i++)
			for (ks = buckets[i]; ks; ks = next)
			{
				next = ks->hnext;
				pump(ks);
			}
	}
	atomic_store(&metrics.inflight, unresolved);
	return DB_OK;
}

/* Pop resolved events off the window head; acknowledge the new position
 * (at most every ACK_INTERVAL_MS unless forced or the window is empty). */
db_result
pipeline_ack(int64_t now, bool force)
{
	db_result	r;

	while (head < tail)
	{
		event	   *e = &ring[head % ring_cap];

		if (!e->marker && e->state != EV_DONE)
			break;
		pos_tick = e->tick;
		pos_cursor = e->id;
		pos_done = e->marker;
		window_free_entry(e);
		head++;
	}
	if (!leader || (pos_tick == ack_tick && pos_cursor == ack_cursor && pos_done == ack_done))
		return DB_OK;
	if (!force && head != tail && now - last_ack_ms < ACK_INTERVAL_MS)
		return DB_OK;
	r = db_ack(cfg->consumer, epoch, pos_tick, pos_cursor, pos_done);
	if (r != DB_OK)
		return r;
	ack_tick = pos_tick;
	ack_cursor = pos_cursor;
	ack_done = pos_done;
	last_ack_ms = now;
	log_debug("acked", "{s:I, s:I, s:b}", "tick", (json_int_t) ack_tick,
			  "cursor", (json_int_t) ack_cursor, "batch_done", ack_done);
	return DB_OK;
}

/* Free the window and key table (at exit, after pipeline_drop()). */
void
pipeline_shutdown(void)
{
	for (uint64_t s = head; s < tail; s++)
		window_free_entry(&ring[s % ring_cap]);
	head = tail;
	free(ring);
	free(buckets);
	ring = NULL;
	buckets = NULL;
}
