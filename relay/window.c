/*
 * window.c
 *		The fetch window of the pipeline and its acknowledgements.
 *
 * Fetched rows go into a window, a ring of fixed capacity (--max-inflight),
 * in outbox order, with an end-of-batch marker after each fully read
 * batch; keys.c takes each event from there.  The window's head advances
 * over resolved events (delivered, or dead-lettered and recorded) and
 * markers; the position after the last one popped is acknowledged with
 * relay_ack().  Anything not acknowledged is re-sent, with the same ids, by
 * whichever relay resumes: at least once, order kept.
 *
 * Fetching follows the batches the database cuts (README, "Relay
 * protocol"): read batch cur_tick in pages after cur_after; when it is
 * read, move on to the next existing tick, or ask relay_tick() for a new
 * one, with the new batch's first page in the same round trip
 * (db_tick_fetch).  relay_tick() finding nothing is the idle point of the
 * loop: the leader then waits for a commit (wake.c), or polls.
 */
#include "pipeline.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define ACK_INTERVAL_MS 100
#define FETCH_AHEAD_PAGES 2

const relay_config *pipeline_cfg;
bool		pipeline_leader;
int64_t		pipeline_epoch;

static event * ring;
static uint64_t ring_cap;
static uint64_t head = 1;		/* seq of the oldest entry in the window */
static uint64_t tail = 1;		/* seq the next entry gets */
static long unresolved;

/* fetch position: batch cur_tick, rows after cur_after */
static int64_t cur_tick;
static int64_t cur_after;
static bool batch_read;
static int64_t last_tick;

/* popped (resolved) and acknowledged positions */
static int64_t pos_tick,
			pos_cursor;
static bool pos_done;
static int64_t ack_tick,
			ack_cursor;
static bool ack_done;
static int64_t last_ack_ms;

void
pipeline_init(const relay_config *c, const char *holder)
{
	(void) holder;
	pipeline_cfg = c;
	ring_cap = (uint64_t) c->max_inflight + 2;
	ring = calloc(ring_cap, sizeof(event));
	keys_init();
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
	return pipeline_cfg->max_inflight - (int) (tail - head);
}

/* The event at window position seq, or NULL outside the window. */
event *
window_event(uint64_t seq)
{
	if (seq < head || seq >= tail)
		return NULL;
	return &ring[seq % ring_cap];
}

/* Let go of e's row: its page is freed with the last of its rows. */
static void
window_release_row(event * e)
{
	db_page_release(e->page);
	e->page = NULL;
	e->topic = e->key = e->payload = NULL;
}

/* keys.c resolved e: only its position is needed now. */
void
window_resolved(event * e)
{
	e->state = EV_DONE;
	unresolved--;
	window_release_row(e);
}

static void
window_free_entry(event * e)
{
	window_release_row(e);
	memset(e, 0, sizeof(*e));
}

static event *
window_push(void)
{
	event	   *e = &ring[tail % ring_cap];

	memset(e, 0, sizeof(*e));
	e->seq = tail++;
	return e;
}

/* Leader from here: resume at the acknowledged position. */
void
pipeline_start(int64_t ep, int64_t tick, int64_t cursor, bool done, int64_t last)
{
	pipeline_leader = true;
	pipeline_epoch = ep;
	cur_tick = tick;
	cur_after = done ? 0 : cursor;
	batch_read = done;
	last_tick = last;
	pos_tick = ack_tick = tick;
	pos_cursor = ack_cursor = cursor;
	pos_done = ack_done = done;
	last_ack_ms = mono_ms();
	circuit_reset();
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
	keys_clear();
	pipeline_leader = false;
	atomic_store(&metrics.inflight, 0);
}

/*
 * Fetch the next page into the window (when leading, the circuit is closed
 * and there is room).  Returns the number of rows fetched, or -1 with *dbr
 * set on a database problem; *idle is set when relay_tick() found nothing
 * new.
 */
int
pipeline_fetch(db_result *dbr, bool *idle)
{
	const relay_config *cfg = pipeline_cfg;
	int			freeslots = pipeline_free_slots();
	int			lim;
	db_page    *page = NULL;
	db_row	   *rows = NULL;
	int			n = 0;

	*idle = false;
	*dbr = DB_OK;
	if (!pipeline_leader || !circuit_is_closed() || freeslots < 2)
		return 0;

	/*
	 * While the producer's queue is full, fetch only until FETCH_AHEAD_PAGES
	 * pages of events wait to be sent: enough for PostgreSQL to work while
	 * Kafka does, without filling memory with what cannot be sent yet.
	 * (Events waiting behind a key's hold do not fill the producer's queue,
	 * so they never stop other keys from being fetched for long.)
	 */
	if (keys_producer_full() &&
		unresolved - keys_inflight() >= (long) FETCH_AHEAD_PAGES * cfg->batch_size)
		return 0;
	/* one slot stays free for the end-of-batch marker */
	lim = freeslots - 1 < cfg->batch_size ? freeslots - 1 : cfg->batch_size;
	if (batch_read && cur_tick >= last_tick)
	{
		int64_t		t;

		/* a new batch, if anything committed, with its first page */
		*dbr = db_tick_fetch(cfg->consumer, pipeline_epoch, lim, &t, &page, &rows, &n);
		if (*dbr != DB_OK)
			return -1;
		if (t == 0)
		{
			*idle = true;
			return 0;
		}
		if (t > last_tick + 1)
		{
			/*
			 * A tick was cut that this relay has not read: one whose call it
			 * lost with its connection, which its old backend then committed
			 * after this leadership read relay_last_tick(), say. Read the
			 * batches in between first, in order; this page comes again with
			 * its batch.
			 */
			log_warn("ticks were cut that this relay has not read: reading them first",
					 "{s:I, s:I}", "known", (json_int_t) last_tick, "new", (json_int_t) t);
			for (int i = 0; i < n; i++)
				db_page_release(page);
			last_tick = t;
			return 0;
		}
		last_tick = cur_tick = t;
		cur_after = 0;
		batch_read = false;
	}
	else
	{
		if (batch_read)
		{
			cur_tick++;
			cur_after = 0;
			batch_read = false;
		}
		*dbr = db_fetch(cfg->consumer, cur_tick, cur_after, lim, &page, &rows, &n, &lim);
		if (*dbr != DB_OK)
			return -1;
	}
	/* a full page: have PostgreSQL read the next one while we send these */
	if (n > 0 && n == lim && freeslots - n - 1 >= 1)
		db_prefetch(cfg->consumer, cur_tick, rows[n - 1].id,
					freeslots - n - 1 < cfg->batch_size ? freeslots - n - 1 : cfg->batch_size);
	for (int i = 0; i < n; i++)
	{
		event	   *e = window_push();

		e->tick = cur_tick;
		e->id = rows[i].id;
		e->topic = rows[i].topic;
		e->key = rows[i].key;
		e->payload = rows[i].event;
		e->payload_len = rows[i].event_len;
		e->page = page;			/* the row's reference on its page */
		e->created_at = rows[i].created_at;
		/* structured mode needs no attribute: the cheap check (ce_check) */
		e->invalid = ce_check(e->payload, e->payload_len);
		/* fetched -> QUEUED: in the window, and in its key's queue */
		e->state = EV_QUEUED;
		unresolved++;
		cur_after = e->id;
		keys_enqueue(e);
	}
	if (n < lim)
	{
		/* fewer rows than asked for: the batch is read */
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

/* Is the position popped last not yet acknowledged (by a leader)? */
static bool
ack_owed(void)
{
	return pipeline_leader &&
		(pos_tick != ack_tick || pos_cursor != ack_cursor || pos_done != ack_done);
}

/*
 * Pop resolved events and markers off the window head; acknowledge the new
 * position, at most every ACK_INTERVAL_MS unless forced.  Also when the
 * window is empty: at a low rate an ack per event would be a write
 * transaction per event on the connection the next tick needs, so the
 * position of a quiet leader lags its deliveries by at most
 * ACK_INTERVAL_MS (pipeline_ack_due() tells main.c when to wake for it).
 */
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
	atomic_store(&metrics.inflight, unresolved);
	if (!ack_owed())
		return DB_OK;
	if (!force && now - last_ack_ms < ACK_INTERVAL_MS)
		return DB_OK;
	r = db_ack(pipeline_cfg->consumer, pipeline_epoch, pos_tick, pos_cursor, pos_done);
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

/*
 * When the next acknowledgement is due (ms, monotonic): INT64_MAX when the
 * position popped last is acknowledged (or this relay does not lead).
 */
int64_t
pipeline_ack_due(void)
{
	if (!ack_owed())
		return INT64_MAX;
	return last_ack_ms + ACK_INTERVAL_MS;
}

/* Free the window and key table (at exit, after pipeline_drop()). */
void
pipeline_shutdown(void)
{
	for (uint64_t s = head; s < tail; s++)
		window_free_entry(&ring[s % ring_cap]);
	head = tail;
	free(ring);
	ring = NULL;
	keys_shutdown();
}
