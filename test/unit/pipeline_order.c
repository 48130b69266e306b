/*
 * pipeline_order.c
 *		The relay's per-key order across a broker outage, driven by hand
 *		through relay/keys.c, relay/retry.c and relay/circuit.c, with the
 *		window and the database stubbed out and librdkafka modelled by a
 *		queue (what it holds, and which of that is already in a request).
 *		Run by test/0108.
 *
 * librdkafka's idempotent producer skips a message whose message.timeout.ms
 * ran out in its queue and delivers the next one of the partition when the
 * broker comes back between the two timeouts ("Message timeout
 * considerations" in its INTRODUCTION.md).  Two cases, both met by test/0530
 * under load with a real broker:
 *
 * 1. The broker goes away with e4 and e5 of one key queued in librdkafka
 *    (message.timeout.ms 3 s, e5 sent 200 ms after e4), and comes back
 *    between their timeouts.  At two thirds of the timeout the relay takes
 *    them back (circuit.c, producer_purge_queue()), so neither can time out
 *    there; they go out again in order when the circuit closes.  Without
 *    that, e4 times out, e5 is delivered, and e5 reaches the topic first
 *    (the failure of 4 Dec's CI run).
 * 2. e2 was already in a request when e1 timed out (the purge cannot take
 *    it back) and is delivered: e2 is sent again after e1, so the last copy
 *    of each is in outbox order.
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

static int64_t clock_ms = 1000;

#define MAX_LOG 64
static uint64_t sent[MAX_LOG];	/* seq of each message handed to the producer */
static int	nsent;
static uint64_t resolved[MAX_LOG];	/* seq of each event resolved, in order */
static int	nresolved;
static uint64_t topic[MAX_LOG]; /* seq of each copy that reached the topic */
static int	ntopic;

/* librdkafka: the messages it holds, in order, whether in a request, and
 * when their message.timeout.ms runs out */
#define MESSAGE_TIMEOUT_MS 3000
static uint64_t held_seq[MAX_LOG];
static bool held_wire[MAX_LOG];
static int64_t held_deadline[MAX_LOG];
static int	nheld;
static int	npurges;
static int64_t purged_at;
static bool broker_up = true;
static int64_t broker_back_at;	/* while down: when it comes back */
static bool outage_flag;

#define NEVENTS 5
static event events[NEVENTS + 1];	/* by seq; 0 unused */

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
bool
log_enabled(int level)
{
	(void) level;
	return false;
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
int64_t
mono_us(void)
{
	return clock_ms * 1000;
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
	held_seq[nheld] = m->opaque;
	held_deadline[nheld] = clock_ms + MESSAGE_TIMEOUT_MS;
	held_wire[nheld++] = false;
	return PRODUCE_OK;
}

/* The reports librdkafka hands over at the next poll. */
static uint64_t report_seq[MAX_LOG];
static delivery_status report_st[MAX_LOG];
static int	nreports;

static void
report(int i, delivery_status st)
{
	report_seq[nreports] = held_seq[i];
	report_st[nreports++] = st;
	if (st == DELIVERED && ntopic < MAX_LOG)
		topic[ntopic++] = held_seq[i];
	memmove(&held_seq[i], &held_seq[i + 1], (nheld - i - 1) * sizeof(held_seq[0]));
	memmove(&held_wire[i], &held_wire[i + 1], (nheld - i - 1) * sizeof(held_wire[0]));
	memmove(&held_deadline[i], &held_deadline[i + 1], (nheld - i - 1) * sizeof(held_deadline[0]));
	nheld--;
}

/* librdkafka's poll: the reports reach the pipeline */
static void
poll_reports(void)
{
	for (int i = 0; i < nreports; i++)
		pipeline_on_delivery(report_seq[i], report_st[i],
							 report_st[i] == DELIVERED ? NULL : "Local: Message timed out");
	nreports = 0;
}

int
producer_purge_queue(void)
{
	int			n = nheld;

	npurges++;
	purged_at = clock_ms;
	for (int i = 0; i < nheld;)
		if (!held_wire[i])
			report(i, DELIVERY_PURGED);
		else
			i++;
	return n;
}
int
producer_message_timeout_ms(void)
{
	return MESSAGE_TIMEOUT_MS;
}
bool
producer_probe(int timeout_ms)
{
	(void) timeout_ms;
	return broker_up;
}
bool
producer_take_outage(void)
{
	bool		o = outage_flag;

	outage_flag = false;
	return o;
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

/*
 * librdkafka's part of a turn: while the broker is down, a queued message
 * whose message.timeout.ms ran out fails (and the idempotent producer skips
 * it); once the broker is back it delivers what it holds, in order.
 */
static void
librdkafka(void)
{
	if (!broker_up)
	{
		for (int i = 0; i < nheld;)
			if (!held_wire[i] && held_deadline[i] <= clock_ms)
				report(i, DELIVERY_OUTAGE);
			else
				i++;
		if (clock_ms >= broker_back_at)
			broker_up = true;
	}
	while (broker_up && nheld > 0)
		report(0, DELIVERED);
}

/* one relay loop turn, 100 ms on, then librdkafka's, then the reports */
static void
turn(void)
{
	clock_ms += 100;
	pipeline_circuit_step(clock_ms);
	pipeline_step(clock_ms);
	librdkafka();
	poll_reports();
}

/* the index of the first copy of seq in the topic, or -1 */
static int
first_in_topic(uint64_t seq)
{
	for (int i = 0; i < ntopic; i++)
		if (topic[i] == seq)
			return i;
	return -1;
}

static void
enqueue(uint64_t s, const char *key)
{
	static const char ce[] = "{\"specversion\":\"1.0\",\"id\":\"x\",\"source\":\"s\",\"type\":\"t\"}";
	event	   *e = &events[s];

	e->seq = s;
	e->id = (int64_t) s;
	e->topic = "tasks";
	e->key = key;
	e->payload = ce;
	e->payload_len = strlen(ce);
	e->state = EV_QUEUED;
	keys_enqueue(e);
}

int
main(void)
{
	static relay_config cfg;
	int64_t		e4_deadline;

	cfg.retry_count = 3;
	cfg.retry_backoff_ms[0] = cfg.retry_backoff_ms[1] = cfg.retry_backoff_ms[2] = 1000;
	cfg.max_inflight = 100;
	pipeline_cfg = &cfg;
	keys_init();

	/* 1. e4, e5 of "cat" queued in librdkafka when the broker goes away */
	enqueue(4, "cat");
	clock_ms += 200;
	enqueue(5, "cat");
	check(nsent == 2 && nheld == 2, "e4, e5 handed to the producer");
	broker_up = false;
	broker_back_at = held_deadline[0] + 100;	/* between e4's and e5's
												 * timeouts */
	outage_flag = true;			/* librdkafka: all brokers down */
	turn();
	check(!circuit_is_closed(), "the outage opened the circuit");
	check(nheld == 2 && npurges == 0, "a short outage leaves the messages with librdkafka");
	e4_deadline = held_deadline[0];
	while (clock_ms < broker_back_at + 2000 && !(events[4].state == EV_DONE && events[5].state == EV_DONE))
		turn();
	print_log();
	check(npurges == 1 && purged_at < e4_deadline,
		  "the relay took back the producer's queue once, before e4's message.timeout.ms");
	check(events[4].attempts == 0 && events[5].attempts == 0, "no attempt counted");
	check(circuit_is_closed(), "the circuit closed once the broker answered");
	check(events[4].state == EV_DONE && events[5].state == EV_DONE, "e4 and e5 delivered");
	check(first_in_topic(4) >= 0 && first_in_topic(5) > first_in_topic(4),
		  "e4 reached the topic before e5 (first copies in outbox order)");

	/*
	 * 2. e1, e2 of "ann" and e3 of "bob": e2 and e3 are already in a request
	 * when e1 times out, so the relay cannot take them back, and the broker
	 * comes back and delivers them.
	 */
	nsent = nresolved = ntopic = 0;
	enqueue(1, "ann");
	enqueue(2, "ann");
	enqueue(3, "bob");
	check(nsent == 3 && sent[0] == 1 && sent[1] == 2 && sent[2] == 3, "e1, e2, e3 handed to the producer in order");
	held_wire[1] = held_wire[2] = true;
	report(0, DELIVERY_OUTAGE);
	poll_reports();
	check(!circuit_is_closed(), "e1's timeout opened the circuit");
	check(events[1].state == EV_QUEUED && events[1].attempts == 0, "e1 requeued, no attempt counted");
	check(nheld == 2, "e2 and e3, in a request, stay with the producer");
	while (nheld > 0)
		report(0, DELIVERED);
	poll_reports();
	check(events[3].state == EV_DONE, "e3 (another key) is done");
	check(events[2].state != EV_DONE, "e2, delivered ahead of e1, is not taken as done");

	/* the relay's next turns send e1 again, then e2 again */
	for (int i = 0; i < 20 && nresolved < 3; i++)
		turn();
	print_log();
	check(nresolved == 3, "every event resolved");
	check(last_sent(1) >= 0 && last_sent(2) > last_sent(1),
		  "the last copy of e2 went out after the last copy of e1");
	check(nresolved == 3 && resolved[0] == 3 && resolved[1] == 1 && resolved[2] == 2,
		  "ann's events resolved in outbox order");
	return failures ? 1 : 0;
}
