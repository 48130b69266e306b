/*
 * pipeline.h
 *		Internal declarations of the pipeline, the events between "fetched"
 *		and "acknowledged", shared by its four files:
 *
 *		window.c	the fetch window (a ring of --max-inflight events in
 *					outbox order, with end-of-batch markers), fetching pages,
 *					acknowledging the contiguous prefix of resolved events;
 *		keys.c		per-key queues and holds: sending in order, delivery
 *					reports;
 *		retry.c		failures: retries with backoff, dead letters;
 *		circuit.c	the Kafka circuit breaker.
 *
 * The rest of the relay sees only the pipeline_* functions of relay.h.
 *
 * The life of an event (event.state).  Each transition is commented where
 * it happens, with the same names:
 *
 *	fetched			-> QUEUED		window.c: joins the window and its key's queue
 *	QUEUED			-> INFLIGHT		keys.c send_event(): handed to librdkafka
 *	INFLIGHT		-> DONE			delivered: resolved, the window may pop it
 *	INFLIGHT		-> QUEUED		requeued, no attempt counted: a broker outage
 *									or a purge (it becomes its key's hold, unless
 *									an earlier event of the key is), or delivered
 *									ahead of its key's hold (sent again after it)
 *	INFLIGHT		-> RETRY_WAIT	failed: it becomes its key's hold, retried after
 *									the next --retry-backoff-ms delay
 *	RETRY_WAIT		-> QUEUED		its retry time came (retry.c pipeline_step())
 *	INFLIGHT		-> QUEUED+dlq	failed with no retry left: next stop, the
 *									dead-letter topic (still the hold)
 *	QUEUED			-> QUEUED+dlq	not a CloudEvent (invalid): to the dead-letter
 *									topic at once, no attempt
 *	INFLIGHT+dlq	-> RECORD		the dead letter is delivered; to record in the
 *									database with relay_dead_letter()
 *	INFLIGHT+dlq	-> QUEUED+dlq	too large even for the dead-letter topic: sent
 *									again without its data (stripped)
 *	INFLIGHT+dlq	-> RETRY_WAIT	the dead letter failed otherwise: tried again
 *									after the last backoff delay, never given up
 *	RECORD			-> DONE			recorded: resolved
 *
 * A hold blocks its key: nothing later of that key is sent until the hold
 * is resolved.  Keys without a hold flow meanwhile.
 */
#ifndef TASKEVENTS_PIPELINE_H
#define TASKEVENTS_PIPELINE_H

#include "list.h"
#include "relay.h"

#include <stdio.h>

typedef enum
{
	EV_QUEUED = 0,				/* waiting to be handed to librdkafka */
	EV_INFLIGHT,				/* handed over, no delivery report yet */
	EV_RETRY_WAIT,				/* failed; the hold of its key until retry_at */
	EV_RECORD,					/* dead letter delivered, to record in the DB */
	EV_DONE						/* resolved (or a marker, or popped) */
} event_state;

struct keystate;

typedef struct event
{
	uint64_t	seq;			/* position in the window */
	int64_t		tick;
	int64_t		id;				/* outbox id (for a marker: the batch's last) */
	const char *topic;			/* these three point into page */
	const char *key;			/* NULL when the row has no partition key */
	const char *payload;		/* the CloudEvent text */
	size_t		payload_len;
	db_page    *page;			/* the fetched page; released when resolved */
	double		created_at;
	int64_t		sent_us;		/* handed to librdkafka (the last time),
								 * mono_us() */
	struct rlist_node sent_node;	/* keys.c: sent, oldest first */
	event_state state;
	bool		marker;			/* end of batch `tick` (no event) */
	bool		dlq;			/* destination is the dead-letter topic now */
	bool		stripped;		/* dead letter sent without its data */
	int			attempts;
	const char *invalid;		/* why the row is not a CloudEvent, or NULL */
	const char *error;			/* last failure, librdkafka's name, or NULL */
	double		first_failure;
	double		last_failure;
	int64_t		retry_at;
	struct keystate *ks;
	struct event *kprev;		/* the key's queue, in outbox order */
	struct event *knext;
}			event;

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
	struct rlist_node held_node;	/* in the list of keys with a hold */
	struct rlist_node wake_node;	/* in the list of keys to pump */
} keystate;

/*
 * Why e failed, for its dead letter and the log: "invalid cloudevent: ..."
 * for a row that is no CloudEvent, else librdkafka's error name.  The
 * strings e points to are static (a window entry is small: the window
 * holds --max-inflight of them).
 */
static inline const char *
event_failure(const event * e, char *buf, size_t len)
{
	if (e->invalid)
	{
		snprintf(buf, len, "invalid cloudevent: %s", e->invalid);
		return buf;
	}
	return e->error ? e->error : "";
}

/* The state all the files share (window.c owns it). */
extern const relay_config *pipeline_cfg;
extern bool pipeline_leader;	/* holds the lease: may send and fetch */
extern int64_t pipeline_epoch;

/* window.c */
extern event * window_event(uint64_t seq);
extern void window_resolved(event * e);

/* keys.c */
extern void keys_init(void);
extern void keys_enqueue(event * e);
extern void keys_clear(void);
extern void keys_wake_all(void);
extern void keys_pump_waiting(void);
extern bool keys_producer_full(void);
extern long keys_inflight(void);
extern void keys_shutdown(void);
extern void key_pump(keystate *ks);
extern void key_requeue(event * e);
extern keystate *key_resolve(event * e);
extern void key_set_hold(keystate *ks, event * e);
extern keystate *keys_held(void);
extern keystate *keys_held_next(keystate *ks);
extern int64_t keys_oldest_sent_ms(void);
extern void keys_forget_sent(void);

/* retry.c */
extern void retry_on_failure(event * e, delivery_status st, const char *error);

/* circuit.c */
extern bool circuit_is_closed(void);
extern void circuit_open(const char *why);
extern void circuit_close(void);
extern void circuit_reset(void);

#endif							/* TASKEVENTS_PIPELINE_H */
