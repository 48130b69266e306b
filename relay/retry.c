/*
 * retry.c
 *		Failures in the pipeline: retries with backoff, dead letters, and
 *		recording them with relay_dead_letter().
 *
 * A failed event becomes its key's hold (keys.c) and is retried after each
 * --retry-backoff-ms delay; after the last one it is produced to the
 * dead-letter topic (config_dlq_topic()) with headers saying why, and once
 * that is delivered it is recorded in taskevents.dead_letters, raising an
 * alert line and a metric.  A row that is no CloudEvent skips the retries.
 * A broker outage is not a failure of the event: it goes back to its queue
 * and the circuit opens (circuit.c).
 */
#include "pipeline.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

/* The CloudEvent id of an event, for log lines (malloc'd, or NULL). */
static char *
event_id_of(const event * e)
{
	ce_fields	f;

	if (ce_scan(e->payload, e->payload_len, &f) != NULL && f.id.p == NULL)
		return NULL;
	return f.id.p ? ce_unescape(f.id) : NULL;
}

/*
 * A failure of e, from producer_send() or from its delivery report: an
 * outage or purge requeues it; otherwise it becomes (or stays) its key's
 * hold and waits for a retry, or goes to the dead-letter topic.
 */
void
retry_on_failure(event * e, delivery_status st, const char *error)
{
	const relay_config *cfg = pipeline_cfg;
	keystate   *ks = e->ks;
	double		now = wall_now();
	char	   *id;

	if (st == DELIVERY_OUTAGE || st == DELIVERY_PURGED)
	{
		/*
		 * INFLIGHT -> QUEUED: not the event's fault, no attempt counted.  It
		 * holds its key all the same: a later event of the key already in
		 * flight can still be delivered (it was queued later, so its
		 * message.timeout.ms had not run out when the broker came back), and
		 * must then go out again after this one.  Without the hold it was
		 * taken as delivered and this one followed it (test/0530's checker:
		 * "order violations").
		 */
		key_requeue(e);
		if (ks->hold == NULL || e->seq < ks->hold->seq)
		{
			if (ks->hold)
				key_requeue(ks->hold);
			key_set_hold(ks, e);
		}
		if (st == DELIVERY_OUTAGE)
			circuit_open(error);
		return;
	}
	if (e->dlq)
	{
		/*
		 * The dead letter itself failed: shed the data if it is too large
		 * (INFLIGHT+dlq -> QUEUED+dlq), else try again later (-> RETRY_WAIT);
		 * never give up on recording it.
		 */
		e->last_failure = now;
		if (st == DELIVERY_TOO_LARGE && !e->stripped)
		{
			e->stripped = true;
			e->state = EV_QUEUED;
		}
		else
		{
			e->state = EV_RETRY_WAIT;
			e->retry_at = mono_ms() + (cfg->retry_count ? cfg->retry_backoff_ms[cfg->retry_count - 1] : 1000);
			log_error("dead letter could not be produced, will retry", "{s:I, s:s}",
					  "outbox_id", (json_int_t) e->id, "error", error);
		}
		return;
	}
	if (ks->hold && ks->hold != e)
	{
		if (e->seq > ks->hold->seq)
		{
			/* INFLIGHT -> QUEUED: behind the key's hold; sent after it */
			key_requeue(e);
			return;
		}
		/* an earlier event failed: it blocks the key, the old hold waits */
		key_requeue(ks->hold);
	}
	e->attempts++;
	if (e->attempts == 1)
		e->first_failure = now;
	e->last_failure = now;
	e->error = error;
	key_set_hold(ks, e);
	ks->drain = true;
	id = event_id_of(e);
	if (e->attempts > cfg->retry_count)
	{
		/* INFLIGHT -> QUEUED+dlq: no retry left, the dead-letter topic next */
		e->dlq = true;
		e->state = EV_QUEUED;
		log_warn("delivery failed, retries exhausted: dead-lettering", "{s:s?, s:I, s:s, s:i, s:s}",
				 "event_id", id, "outbox_id", (json_int_t) e->id, "topic", e->topic,
				 "attempts", e->attempts, "error", e->error ? e->error : "");
	}
	else
	{
		int			delay = cfg->retry_backoff_ms[e->attempts - 1];

		/* INFLIGHT -> RETRY_WAIT: the key's hold until retry_at */
		e->state = EV_RETRY_WAIT;
		e->retry_at = mono_ms() + delay;
		atomic_fetch_add(&metrics.retries, 1);
		log_warn("delivery failed, will retry", "{s:s?, s:I, s:s, s:i, s:i, s:s}",
				 "event_id", id, "outbox_id", (json_int_t) e->id, "topic", e->topic,
				 "attempt", e->attempts, "retry_in_ms", delay, "error", e->error ? e->error : "");
	}
	free(id);
}

/*
 * Once per loop turn: holds whose retry time came are sent again, dead
 * letters that were delivered are recorded, and keys waiting for room in
 * the producer's queue (or for the circuit to close) are pumped.
 */
db_result
pipeline_step(int64_t now)
{
	const relay_config *cfg = pipeline_cfg;
	keystate   *ks,
			   *next;

	for (ks = keys_held(); ks; ks = next)
	{
		event	   *e = ks->hold;

		next = keys_held_next(ks);
		if (e == NULL)
		{
			key_set_hold(ks, NULL);
			continue;
		}
		if (e->state == EV_RECORD)
		{
			char	   *id = event_id_of(e);
			char		dlq_topic[512];
			char		why[160];
			const char *reason = event_failure(e, why, sizeof(why));
			db_result	r;

			config_dlq_topic(cfg, e->topic, dlq_topic, sizeof(dlq_topic));
			r = db_dead_letter(cfg->consumer, pipeline_epoch, e->id, e->topic, dlq_topic, e->key, e->payload,
							   reason, e->attempts, e->first_failure);
			if (r != DB_OK)
			{
				free(id);
				return r;
			}
			atomic_fetch_add(&metrics.dead_letters, 1);
			log_alert("event dead-lettered", "{s:s?, s:I, s:s, s:s, s:i, s:s}",
					  "event_id", id, "outbox_id", (json_int_t) e->id, "topic", e->topic,
					  "dlq_topic", dlq_topic, "attempts", e->attempts,
					  "error", reason);
			free(id);
			/* RECORD -> DONE */
			if ((ks = key_resolve(e)) != NULL)
				key_pump(ks);
			/* key_resolve() may have freed a key; restart from the list head */
			next = keys_held();
			continue;
		}
		if (e->state == EV_RETRY_WAIT && now >= e->retry_at)
		{
			/* RETRY_WAIT -> QUEUED: its retry time came */
			e->state = EV_QUEUED;
			key_pump(ks);
		}
		else if (e->state == EV_QUEUED)
			key_pump(ks);
	}
	keys_pump_waiting();
	return DB_OK;
}
