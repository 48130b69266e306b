/*
 * circuit.c
 *		The Kafka circuit breaker of the pipeline.
 *
 * A broker outage is not a per-event failure: keys.c puts the event back
 * in its queue with no attempt counted and opens the circuit.  While it is
 * open nothing is fetched or sent.
 *
 * No message may time out inside librdkafka: when the broker comes back
 * between the message.timeout.ms of two messages of one partition, the
 * idempotent producer skips the first and delivers the second (librdkafka's
 * INTRODUCTION.md, "Message timeout considerations"), and a later event of
 * a key would reach the topic first.  So when the oldest message handed to
 * the producer has had no report for two thirds of message.timeout.ms, the
 * circuit opens (if it is not open yet) and the relay takes back what the
 * producer still queues (producer_purge_queue()); keys.c requeues each
 * behind its key's hold, to go out again in order when the circuit closes.
 * A shorter outage leaves the messages with librdkafka, which retries them
 * under the same sequence numbers: the broker drops what it already has,
 * and no duplicate is made.  After a backoff (0.5 s doubling to 5 s)
 * it goes half-open and probes with a metadata request; it closes when a
 * broker answers or any delivery succeeds, and the keys that were kept
 * waiting are sent again.
 */
#include "pipeline.h"

#include <jansson.h>

#define CIRCUIT_MIN_BACKOFF_MS 500
#define CIRCUIT_MAX_BACKOFF_MS 5000

static circuit_state circuit = CIRCUIT_CLOSED;
static int64_t circuit_until;
static int	circuit_backoff = CIRCUIT_MIN_BACKOFF_MS;

static void
circuit_set(circuit_state s)
{
	circuit = s;
	atomic_store(&metrics.circuit, s);
}

int
pipeline_circuit(void)
{
	return circuit;
}

bool
circuit_is_closed(void)
{
	return circuit == CIRCUIT_CLOSED;
}

/* Closed, with the shortest backoff (a new leadership starts here). */
void
circuit_reset(void)
{
	circuit_set(CIRCUIT_CLOSED);
	circuit_backoff = CIRCUIT_MIN_BACKOFF_MS;
}

void
circuit_open(const char *why)
{
	if (circuit == CIRCUIT_OPEN)
		return;
	circuit_set(CIRCUIT_OPEN);
	circuit_until = mono_ms() + circuit_backoff;
	log_warn("kafka unavailable, circuit open: not claiming new events", "{s:s, s:i}",
			 "reason", why, "retry_in_ms", circuit_backoff);
}

/* Kafka answers again: close, and have every waiting key sent. */
void
circuit_close(void)
{
	if (circuit == CIRCUIT_CLOSED)
		return;
	circuit_reset();
	keys_wake_all();
	log_info("kafka available, circuit closed", NULL);
}

/*
 * Once per loop turn: open on an "all brokers down" report; when the
 * backoff of an open circuit has passed, probe (half-open) and close, or
 * stay open with a doubled backoff.
 */
void
pipeline_circuit_step(int64_t now)
{
	int64_t		oldest;
	int			timeout_ms = producer_message_timeout_ms();

	if (producer_take_outage())
		circuit_open("all brokers down");
	if (timeout_ms > 0 && (oldest = keys_oldest_sent_ms()) > 0 && now - oldest >= (int64_t) timeout_ms * 2 / 3)
	{
		int			held;

		circuit_open("no delivery report in time");
		held = producer_purge_queue();
		keys_forget_sent();		/* what is left is in requests: no purge takes
								 * it back */
		log_warn("deliveries outstanding too long: took back the producer's queue", "{s:I, s:i, s:i}",
				 "oldest_ms", (json_int_t) (now - oldest), "producer_queue", held,
				 "message_timeout_ms", timeout_ms);
	}
	if (circuit != CIRCUIT_OPEN || now < circuit_until)
		return;
	circuit_set(CIRCUIT_HALF_OPEN);
	if (producer_probe(500))
		circuit_close();
	else
	{
		circuit_set(CIRCUIT_OPEN);
		circuit_backoff = circuit_backoff * 2 > CIRCUIT_MAX_BACKOFF_MS ? CIRCUIT_MAX_BACKOFF_MS : circuit_backoff * 2;
		circuit_until = mono_ms() + circuit_backoff;
		log_debug("circuit probe failed", "{s:i}", "retry_in_ms", circuit_backoff);
	}
}
