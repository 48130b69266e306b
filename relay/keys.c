/*
 * keys.c
 *		Per-key order in the pipeline: each partition key's queue of
 *		unresolved events and its hold, sending in order, and the delivery
 *		reports.  Failures, retries and dead letters are retry.c's.
 *
 * Events of one key are handed to librdkafka strictly in outbox order (the
 * idempotent producer keeps that order on the partition).  When one fails,
 * it becomes its key's hold: nothing later of that key is sent until the
 * hold is resolved, and a later event that was already in flight and
 * succeeded is sent again after it (a re-send with the same CloudEvent id,
 * so the last copy of each event is in order).  Other keys flow meanwhile.
 * The states and their transitions are listed in pipeline.h.
 *
 * A key that cannot send now because the producer's queue is full or the
 * circuit is open joins the wake list, and is pumped again, in turn, at
 * the next step once there is room: nothing scans every key.
 */
#include "pipeline.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DLQ_BIT (1ULL << 63)	/* in the opaque: the dead-letter message */
#define KEY_BUCKETS 65536


static keystate **buckets;
static long nkeys;

/* the keys with a hold, the one that took it last first */
static struct rlist_head held = RLIST_STATIC_INIT(held);

/* the keys to pump at the next step, in order */
static struct rlist_head wake = RLIST_STATIC_INIT(wake);

/*
 * The events in librdkafka's hands, in the order they were handed over:
 * the first is the oldest without a report (circuit.c takes the producer's
 * queue back before it reaches message.timeout.ms).
 */
static struct rlist_head sent = RLIST_STATIC_INIT(sent);

static bool producer_full;		/* the last send met a full producer queue */
static long inflight_total;		/* events handed to the producer, no report
								 * yet */

void
keys_init(void)
{
	buckets = calloc(KEY_BUCKETS, sizeof(keystate *));
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

/* Put ks at the end of the wake list, unless it is on it. */
static void
wake_add(keystate *ks)
{
	if (!rlist_member(&ks->wake_node))
		rlist_push_tail(&wake, &ks->wake_node);
}

static void
key_free(keystate *ks)
{
	keystate  **b = &buckets[ks->hash % KEY_BUCKETS];

	while (*b != ks)
		b = &(*b)->hnext;
	*b = ks->hnext;
	rlist_delete(&ks->held_node);
	rlist_delete(&ks->wake_node);
	free(ks->key);
	free(ks);
	nkeys--;
}

/* e (or NULL: nothing) is what blocks ks now; keys with a hold are listed. */
void
key_set_hold(keystate *ks, event * e)
{
	ks->hold = e;
	if (e == NULL)
		rlist_delete(&ks->held_node);
	else if (!rlist_member(&ks->held_node))
		rlist_push_head(&held, &ks->held_node);
}

static keystate *
held_key(struct rlist_node *n)
{
	return n ? rlist_container(keystate, held_node, n) : NULL;
}

/* The first key with a hold, or NULL; keys_held_next() gives the rest. */
keystate *
keys_held(void)
{
	return held_key(rlist_first(&held));
}

/* The key with a hold after ks, or NULL. */
keystate *
keys_held_next(keystate *ks)
{
	return held_key(rlist_next(&held, &ks->held_node));
}

/* A fetched event (QUEUED) joins the end of its key's queue. */
void
keys_enqueue(event * e)
{
	keystate   *ks = key_get(e->key);

	e->ks = ks;
	e->kprev = ks->last;
	if (ks->last)
		ks->last->knext = e;
	else
		ks->first = e;
	ks->last = e;
	if (ks->next_send == NULL)
		ks->next_send = e;
	key_pump(ks);
}

/* Drop every key (the window was dropped). */
void
keys_clear(void)
{
	for (int i = 0; i < KEY_BUCKETS; i++)
		while (buckets[i])
			key_free(buckets[i]);
	rlist_init(&held);
	rlist_init(&wake);
	rlist_init(&sent);			/* the window zeroed the events' nodes */
	producer_full = false;
	inflight_total = 0;
}

/*
 * Free the key table at exit, with the keys still in it: a second shutdown
 * signal exits without dropping the window first.
 */
void
keys_shutdown(void)
{
	if (buckets)
		keys_clear();
	free(buckets);
	buckets = NULL;
}

/* Whether the producer's queue was full at the last send (window.c waits). */
bool
keys_producer_full(void)
{
	return producer_full;
}

/* When the oldest message without a report was handed over (0: none). */
int64_t
keys_oldest_sent_ms(void)
{
	struct rlist_node *n = rlist_first(&sent);

	return n ? rlist_container(event, sent_node, n)->sent_us / 1000 : 0;
}

/*
 * Stop timing what the producer holds now (its queue was just taken back:
 * what is left is in requests, and its reports will come); messages sent
 * from here on are timed afresh.
 */
void
keys_forget_sent(void)
{
	struct rlist_node *n;

	while ((n = rlist_first(&sent)) != NULL)
		rlist_delete(n);
}

/* How many events are in the producer's hands. */
long
keys_inflight(void)
{
	return inflight_total;
}

/* Pump every key at the next step (the circuit closed). */
void
keys_wake_all(void)
{
	for (int i = 0; i < KEY_BUCKETS; i++)
		for (keystate *ks = buckets[i]; ks; ks = ks->hnext)
			wake_add(ks);
}

/* e goes back to QUEUED, to be sent again once its key has nothing in flight. */
void
key_requeue(event * e)
{
	keystate   *ks = e->ks;

	e->state = EV_QUEUED;
	if (ks->next_send == NULL || e->seq < ks->next_send->seq)
		ks->next_send = e;
	ks->drain = true;
}

/*
 * e is resolved (-> DONE): out of its key's queue, and the window may pop
 * it.  Returns its key, or NULL when the key had nothing else and was
 * freed.
 */
keystate *
key_resolve(event * e)
{
	keystate   *ks = e->ks;

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
		key_set_hold(ks, NULL);
	e->ks = NULL;
	e->kprev = e->knext = NULL;
	window_resolved(e);
	if (ks->first == NULL && ks->inflight == 0)
	{
		key_free(ks);
		return NULL;
	}
	return ks;
}

/* ------------------------------------------------------------ sending */

/* Hand e to librdkafka: to its topic, or as a dead letter. */
static produce_result
send_event(event * e)
{
	const relay_config *cfg = pipeline_cfg;
	produce_msg m = {0};
	char		dlq_topic[512];
	char		why[160];
	char	   *stripped = NULL;
	produce_result r;
	delivery_status st = DELIVERY_FAILED;
	const char *error = NULL;

	m.topic = e->topic;
	m.key = e->key;
	m.value = e->payload;
	m.value_len = e->payload_len;
	m.opaque = e->seq;
	m.binary = cfg->binary;
	if (e->dlq)
	{
		config_dlq_topic(cfg, e->topic, dlq_topic, sizeof(dlq_topic));
		m.topic = dlq_topic;
		m.opaque |= DLQ_BIT;
		m.invalid = e->invalid != NULL;
		m.dlq_original_topic = e->topic;
		m.dlq_error = event_failure(e, why, sizeof(why));
		m.dlq_attempts = e->attempts;
		m.dlq_first_failure = e->first_failure;
		m.dlq_last_failure = e->last_failure;
		if (e->stripped && (stripped = ce_without_data(e->payload, e->payload_len, &m.value_len)) != NULL)
			m.value = stripped;
		else if (e->stripped)
			m.value_len = 0;
	}
	r = producer_send(&m, &st, &error);
	free(stripped);
	if (r == PRODUCE_OK)
	{
		/* QUEUED -> INFLIGHT */
		e->state = EV_INFLIGHT;
		e->sent_us = mono_us();
		rlist_push_tail(&sent, &e->sent_node);
		e->ks->inflight++;
		inflight_total++;
	}
	else if (r == PRODUCE_FAILED)
		retry_on_failure(e, st, error);
	return r;
}

/* Send what the key may send now, in order. */
void
key_pump(keystate *ks)
{
	event	   *e;

	if (!pipeline_leader)
		return;
	if (!circuit_is_closed() || producer_full)
	{
		wake_add(ks);			/* when the circuit closes, or there is room */
		return;
	}
	for (;;)
	{
		if (ks->hold)
		{
			/* only the hold may go, and only when nothing else is in flight */
			e = ks->hold;
			if (e->state == EV_QUEUED && ks->inflight == 0)
			{
				if (send_event(e) == PRODUCE_BACKPRESSURE)
				{
					producer_full = true;
					wake_add(ks);
				}
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

				/*
				 * QUEUED -> QUEUED+dlq: not a CloudEvent, no attempt; the
				 * hold
				 */
				e->dlq = true;
				e->first_failure = e->last_failure = now;
				key_set_hold(ks, e);
				ks->next_send = e->knext;
				break;			/* to the hold branch */
			}
			r = send_event(e);
			if (r == PRODUCE_BACKPRESSURE)
			{
				/* still QUEUED: the producer has no room, try again later */
				producer_full = true;
				wake_add(ks);
				return;
			}
			if (r == PRODUCE_FAILED)
				break;			/* retry_on_failure() made it the hold, or
								 * requeued it */
			ks->next_send = e->knext;
		}
		if (ks->hold == NULL)
			return;
	}
}

/*
 * The delivery callback the producer calls (from producer_poll()) for
 * every message handed to it.
 */
void
pipeline_on_delivery(uint64_t opaque, delivery_status st, const char *error)
{
	bool		dlq = (opaque & DLQ_BIT) != 0;
	event	   *e = window_event(opaque & ~DLQ_BIT);
	keystate   *ks;

	if (e == NULL || e->marker || e->state != EV_INFLIGHT || e->dlq != dlq || e->ks == NULL)
		return;					/* from a dropped window, or a stale duplicate */
	producer_full = false;		/* a report: the producer has room again */
	ks = e->ks;
	ks->inflight--;
	inflight_total--;
	rlist_delete(&e->sent_node);
	e->state = EV_QUEUED;		/* each branch below sets where it goes */
	if (st == DELIVERED && !circuit_is_closed())
		circuit_close();
	if (st == DELIVERED)
	{
		if (e->dlq)
		{
			/* INFLIGHT+dlq -> RECORD: recorded by pipeline_step() */
			e->state = EV_RECORD;
			return;
		}
		if (ks->hold && ks->hold->seq < e->seq)
		{
			/* INFLIGHT -> QUEUED: went out ahead of a failing earlier one */
			key_requeue(e);
			key_pump(ks);
			return;
		}
		/* INFLIGHT -> DONE */
		atomic_fetch_add(&metrics.published, 1);
		{
			double		now = wall_now();

			metrics_observe(&metrics.delivery, now - e->created_at);
			metrics_observe(&metrics.produce, (mono_us() - e->sent_us) / 1e6);
		}
		ks = key_resolve(e);
	}
	else
		retry_on_failure(e, st, error);
	if (ks)
		key_pump(ks);
}

/*
 * Pump the keys on the wake list, in order, until the producer is full
 * again (called every step; reports since the last one made room).
 */
void
keys_pump_waiting(void)
{
	struct rlist_node *n;

	if (!pipeline_leader || !circuit_is_closed())
		return;
	producer_full = false;
	/* key_pump() puts a key back only when one of these turned false */
	while ((n = rlist_first(&wake)) != NULL && !producer_full && circuit_is_closed() && pipeline_leader)
	{
		keystate   *ks = rlist_container(keystate, wake_node, n);

		rlist_delete(n);
		key_pump(ks);			/* may join the list again, at its end */
	}
}
