/*
 * pipeline_order.c
 *		The relay's per-key order when a broker outage fails an event while
 *		a later event of the same key, already in flight, is delivered: the
 *		delivery order is driven by hand through relay/keys.c and
 *		relay/retry.c, with the producer, the window, the circuit and the
 *		database stubbed out.  Run by test/0108.
 *
 * The case (test/0530 met it once under load): e1 and e2 of one key are in
 * librdkafka's hands; the broker stops; e1's message.timeout.ms runs out
 * (an outage: requeued, no attempt counted); the broker comes back before
 * e2's runs out, and e2 is delivered.  e2 must go out again after e1, so
 * that the last copy of each is in outbox order.
 */
#include "pipeline.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ----------------------------------------------------------- stubs */

const relay_config *pipeline_cfg;
bool		pipeline_leader = true;
int64_t		pipeline_epoch = 1;
relay_metrics metrics;

static bool circuit_closed = true;
static int64_t clock_ms = 1000;

#define MAX_LOG 64
static uint64_t sent[MAX_LOG];	/* seq of each message handed to the producer */
static int	nsent;
static uint64_t resolved[MAX_LOG];	/* seq of each event resolved, in order */
static int	nresolved;

#define NEVENTS 3
static event events[NEVENTS + 1];	/* by seq; 0 unused */

bool
circuit_is_closed(void)
{
	return circuit_closed;
}
void
circuit_open(const char *why)
{
	(void) why;
	circuit_closed = false;
}
void
circuit_close(void)
{
	circuit_closed = true;
}
void
config_dlq_topic(const relay_config *cfg, const char *topic, char *buf, size_t len)
{
	(void) cfg;
	snprintf(buf, len, "%s-dlq", topic);
}
db_result
db_dead_letter(const char *consumer, int64_t epoch, int64_t outbox_id, const char *topic,
			   const char *dlq_topic, const char *key, const char *ev, const char *reason,
			   int attempts, double first_failed_at)
{
	(void) consumer, (void) epoch, (void) outbox_id, (void) topic, (void) dlq_topic;
	(void) key, (void) ev, (void) reason, (void) attempts, (void) first_failed_at;
	return DB_OK;
}
void
log_msg(int level, const char *msg, const char *fmt,...)
{
	(void) level, (void) msg, (void) fmt;
}
void
metrics_observe(relay_histogram *h, double seconds)
{
	(void) h, (void) seconds;
}
int64_t
mono_ms(void)
{
	return clock_ms;
}
double
wall_now(void)
{
	return clock_ms / 1000.0;
}
produce_result
producer_send(const produce_msg *m, delivery_status *status, const char **error)
{
	(void) status, (void) error;
	if (nsent < MAX_LOG)
		sent[nsent++] = m->opaque;
	return PRODUCE_OK;
}
event *
window_event(uint64_t seq)
{
	return seq >= 1 && seq <= NEVENTS ? &events[seq] : NULL;
}
void
window_resolved(event * e)
{
	e->state = EV_DONE;
	if (nresolved < MAX_LOG)
		resolved[nresolved++] = e->seq;
}

/* ------------------------------------------------------------ test */

static int	failures;

static void
check(bool ok, const char *what)
{
	printf("%s: %s\n", ok ? "ok" : "FAIL", what);
	if (!ok)
		failures++;
}

/* the index of the last time seq was sent, or -1 */
static int
last_sent(uint64_t seq)
{
	for (int i = nsent - 1; i >= 0; i--)
		if (sent[i] == seq)
			return i;
	return -1;
}

static void
print_log(void)
{
	printf("  sent:");
	for (int i = 0; i < nsent; i++)
		printf(" e%llu", (unsigned long long) sent[i]);
	printf("\n  resolved:");
	for (int i = 0; i < nresolved; i++)
		printf(" e%llu", (unsigned long long) resolved[i]);
	printf("\n");
}

int
main(void)
{
	static relay_config cfg;
	static const char ce[] = "{\"specversion\":\"1.0\",\"id\":\"x\",\"source\":\"s\",\"type\":\"t\"}";

	cfg.retry_count = 3;
	cfg.retry_backoff_ms[0] = cfg.retry_backoff_ms[1] = cfg.retry_backoff_ms[2] = 1000;
	cfg.max_inflight = 100;
	pipeline_cfg = &cfg;
	keys_init();

	/* e1, e2 of user "ann" and e3 of "bob", fetched in that order: all sent */
	for (uint64_t s = 1; s <= NEVENTS; s++)
	{
		event	   *e = &events[s];

		e->seq = s;
		e->id = (int64_t) s;
		e->topic = "tasks";
		e->key = s == 3 ? "bob" : "ann";
		e->payload = ce;
		e->payload_len = strlen(ce);
		e->state = EV_QUEUED;
		keys_enqueue(e);
	}
	check(nsent == 3 && sent[0] == 1 && sent[1] == 2 && sent[2] == 3, "e1, e2, e3 handed to the producer in order");

	/* the broker stops: e1's delivery times out (an outage) */
	pipeline_on_delivery(1, DELIVERY_OUTAGE, "Local: Message timed out");
	check(!circuit_closed, "the outage opened the circuit");
	check(events[1].state == EV_QUEUED && events[1].attempts == 0, "e1 requeued, no attempt counted");

	/* the broker is back before e2's timeout: e2 and e3 are delivered */
	circuit_close();
	pipeline_on_delivery(2, DELIVERED, NULL);
	pipeline_on_delivery(3, DELIVERED, NULL);
	check(events[3].state == EV_DONE, "e3 (another key) is done");
	check(events[2].state != EV_DONE, "e2, delivered ahead of e1, is not taken as done");

	/* the relay's next steps send e1 again, then e2 again */
	for (int turn = 0; turn < 10 && nresolved < 3; turn++)
	{
		clock_ms += 100;
		pipeline_step(clock_ms);
		for (int i = 0; i < nsent; i++)
		{
			event	   *e = &events[sent[i]];

			if (e->state == EV_INFLIGHT)
				pipeline_on_delivery(e->seq, DELIVERED, NULL);
		}
	}
	print_log();
	check(nresolved == 3, "every event resolved");
	check(last_sent(1) >= 0 && last_sent(2) > last_sent(1),
		  "the last copy of e2 went out after the last copy of e1");
	check(nresolved == 3 && resolved[0] == 3 && resolved[1] == 1 && resolved[2] == 2,
		  "ann's events resolved in outbox order");
	return failures ? 1 : 0;
}
