/*
 * metrics.c
 *		HTTP /metrics (Prometheus text format) and /healthz, served by
 *		libmicrohttpd on its own thread.  The main loop only updates atomic
 *		counters and gauges; the handler reads them.
 *
 * Many idle or slow clients must not take the health endpoint down.  The
 * daemon uses epoll, not select() (which cannot watch a descriptor above
 * FD_SETSIZE, 1024), the open-files limit is raised to its hard limit at
 * start, connections are capped below it with room left for the relay's
 * own sockets (PostgreSQL, Kafka), each connection gets a small memory
 * pool, and one that sends nothing for HTTP_IDLE_TIMEOUT_S is closed.
 * Deployments should still keep the port private (the NetworkPolicy in
 * deploy/kubernetes, 127.0.0.1 elsewhere).
 */
#include "relay.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

relay_metrics metrics;

#define HTTP_MAX_CONNECTIONS 4096
#define HTTP_FD_RESERVE 512		/* descriptors kept for libpq, librdkafka */
#define HTTP_IDLE_TIMEOUT_S 5
#define HTTP_CONNECTION_MEMORY 8192

static struct MHD_Daemon *daemon_handle;

/*
 * Upper bounds (seconds) of the delivery latency histogram buckets: fine
 * below 25 ms, where a healthy relay delivers (the 0.2.0 target is a p99
 * under 10 ms at 200 writes/s), coarse up to ten seconds.
 */
static const double latency_bounds[] = {0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define N_BOUNDS ((int) (sizeof(latency_bounds) / sizeof(latency_bounds[0])))
_Static_assert(N_BOUNDS <= LATENCY_BUCKETS, "latency_buckets too small");

void
metrics_observe(relay_histogram *h, double seconds)
{
	if (seconds < 0)
		seconds = 0;
	for (int i = 0; i < N_BOUNDS; i++)
		if (seconds <= latency_bounds[i])
		{
			atomic_fetch_add(&h->buckets[i], 1);
			break;
		}
	atomic_fetch_add(&h->count, 1);
	atomic_fetch_add(&h->sum_us, (long) (seconds * 1e6));
}

/* The text of /metrics, appended to a fixed buffer (cut when full). */
typedef struct text_buf
{
	char	   *p;
	size_t		n;
	size_t		cap;
} text_buf;

static void
out(text_buf *b, const char *fmt,...)
{
	va_list		ap;

	if (b->n >= b->cap)
		return;
	va_start(ap, fmt);
	b->n += vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
	va_end(ap);
}

static void
family(text_buf *b, const char *name, const char *type, const char *help)
{
	out(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A metric with one value and no labels. */
static void
scalar(text_buf *b, const char *name, const char *type, const char *help, double value)
{
	family(b, name, type, help);
	out(b, "%s %.15g\n", name, value);
}

/* A histogram of latency_bounds[]: cumulative buckets, sum and count. */
static void
histogram(text_buf *b, const char *name, const char *help, relay_histogram *h)
{
	long		cumulative = 0;

	family(b, name, "histogram", help);
	for (int i = 0; i < N_BOUNDS; i++)
	{
		cumulative += atomic_load(&h->buckets[i]);
		out(b, "%s_bucket{le=\"%g\"} %ld\n", name, latency_bounds[i], cumulative);
	}
	out(b, "%s_bucket{le=\"+Inf\"} %ld\n", name, atomic_load(&h->count));
	out(b, "%s_sum %.6f\n", name, atomic_load(&h->sum_us) / 1e6);
	out(b, "%s_count %ld\n", name, atomic_load(&h->count));
}

/* Per operation of the maintenance list: one family per counter. */
static const struct
{
	const char *name;
	const char *help;
	size_t		field;
}			maint_families[] = {

	{"taskevents_relay_maintenance_runs_total", "Runs of each operation of the maintenance list.",
	offsetof(relay_maint_metrics, runs)},
	{"taskevents_relay_maintenance_done_total", "What each operation did (partitions truncated, reminders fired, ...).",
	offsetof(relay_maint_metrics, done)},
	{"taskevents_relay_maintenance_failed_total", "Items an operation reported as failed (reminders that could not fire).",
	offsetof(relay_maint_metrics, failed)},
	{"taskevents_relay_maintenance_errors_total", "Calls of an operation that raised an error.",
	offsetof(relay_maint_metrics, errors)},
};

/*
 * The metrics with one value and no labels, in the order they are shown:
 * SCALAR(name, type, help, field of relay_metrics).
 */
#define SCALAR(name, type, help, f) \
	{name, type, help, offsetof(relay_metrics, f), _Generic(&metrics.f, atomic_int *: true, default: false)}
static const struct
{
	const char *name;
	const char *type;
	const char *help;
	size_t		field;
	bool		is_int;			/* atomic_int, else atomic_long */
}			scalars[] = {

	SCALAR("taskevents_relay_events_published_total", "counter", "Events delivered to Kafka (per delivery report).", published),
	SCALAR("taskevents_relay_retries_total", "counter", "Failed deliveries scheduled for a retry.", retries),
	SCALAR("taskevents_relay_dead_letters_total", "counter", "Events produced to a dead-letter topic and recorded.", dead_letters),
	SCALAR("taskevents_relay_backlog_events", "gauge", "Committed events not yet acknowledged (sampled every 5 s by the leader).", backlog),
	SCALAR("taskevents_relay_circuit_state", "gauge", "Kafka circuit breaker: 0 closed, 1 open, 2 half-open.", circuit),
	SCALAR("taskevents_relay_leader", "gauge", "1 when this relay holds the lease, 0 on standby.", leader),
	SCALAR("taskevents_relay_inflight_events", "gauge", "Events fetched and not yet resolved.", inflight),
	SCALAR("taskevents_relay_db_up", "gauge", "1 when the PostgreSQL connection is up.", db_up),
	SCALAR("taskevents_relay_wakeup_mode", "gauge", "How the leader learns of new commits: 1 woken by commits (relay_wait), 2 polling, 0 not known yet.", wakeup_mode),
	SCALAR("taskevents_relay_wakeups_total", "counter", "Answers of relay_wait() (a commit that wrote events, or its timeout).", wakeups),
	SCALAR("taskevents_relay_db_calls_total", "counter", "Statements on the main connection (lease, tick, fetch, ack, ...), one transaction each.", db_calls),
	SCALAR("taskevents_relay_lease_renewal_retries_total", "counter", "Lease renewals that failed for a transient reason (deadlock, serialization failure, lock or statement timeout) and were tried again while the lease was still held.", lease_retries),
	SCALAR("taskevents_relay_db_retries_total", "counter", "Ticks, fetches, acks and dead-letter records that failed for a transient reason (deadlock, serialization failure, lock or statement timeout) and were tried again, the window kept.", db_retries),
};

static size_t
render_metrics(char *buf, size_t cap)
{
	text_buf	b = {buf, 0, cap};
	long		oldest = atomic_load(&metrics.oldest_pending_ms);
	int			n_maint = atomic_load(&metrics.n_maint);

	for (size_t i = 0; i < sizeof(scalars) / sizeof(scalars[0]); i++)
	{
		const char *field = (const char *) &metrics + scalars[i].field;

		scalar(&b, scalars[i].name, scalars[i].type, scalars[i].help,
			   scalars[i].is_int ? atomic_load((const atomic_int *) field) :
			   atomic_load((const atomic_long *) field));
	}
	scalar(&b, "taskevents_relay_oldest_pending_age_seconds", "gauge",
		   "Age of the oldest pending event (0 when none).", oldest > 0 ? oldest / 1000.0 : 0.0);
	histogram(&b, "taskevents_relay_delivery_latency_seconds",
			  "Outbox write (statement time) to delivery report.", &metrics.delivery);
	histogram(&b, "taskevents_relay_produce_latency_seconds",
			  "Handed to the Kafka producer to delivery report (the Kafka side of the delivery latency).",
			  &metrics.produce);
	for (size_t f = 0; f < sizeof(maint_families) / sizeof(maint_families[0]); f++)
	{
		family(&b, maint_families[f].name, "counter", maint_families[f].help);
		for (int i = 0; i < n_maint; i++)
			out(&b, "%s{operation=\"%s\"} %ld\n", maint_families[f].name, metrics.maint[i].name,
				atomic_load((atomic_long *) ((char *) &metrics.maint[i] + maint_families[f].field)));
	}
	return b.n < cap ? b.n : cap - 1;
}

static enum MHD_Result
handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
	   const char *version, const char *upload, size_t *upload_size, void **state)
{
	char		buf[16384];
	size_t		len;
	unsigned	status = MHD_HTTP_OK;
	const char *ctype = "text/plain; version=0.0.4; charset=utf-8";
	struct MHD_Response *resp;
	enum MHD_Result ret;

	(void) cls;
	(void) version;
	(void) upload;
	(void) upload_size;
	(void) state;
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
	{
		len = snprintf(buf, sizeof(buf), "method not allowed\n");
		status = MHD_HTTP_METHOD_NOT_ALLOWED;
	}
	else if (strcmp(url, "/metrics") == 0)
		len = render_metrics(buf, sizeof(buf));
	else if (strcmp(url, "/healthz") == 0)
	{
		int			db = atomic_load(&metrics.db_up);
		int			leader = atomic_load(&metrics.leader);
		int			ok = db && (leader || atomic_load(&metrics.standby_ok));

		ctype = "application/json";
		status = ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE;
		len = snprintf(buf, sizeof(buf), "{\"status\":\"%s\",\"db\":%s,\"role\":\"%s\",\"circuit\":%d}\n",
					   ok ? "ok" : "unavailable", db ? "true" : "false",
					   leader ? "leader" : "standby", atomic_load(&metrics.circuit));
	}
	else
	{
		len = snprintf(buf, sizeof(buf), "not found: try /metrics or /healthz\n");
		status = MHD_HTTP_NOT_FOUND;
	}
	resp = MHD_create_response_from_buffer(len, buf, MHD_RESPMEM_MUST_COPY);
	MHD_add_response_header(resp, "Content-Type", ctype);
	ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/*
 * Raise the soft open-files limit to the hard one and return how many HTTP
 * connections fit below it, HTTP_FD_RESERVE kept for everything else.
 */
static unsigned
http_connection_limit(void)
{
	struct rlimit rl;
	rlim_t		avail;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 0;
	if (rl.rlim_cur < rl.rlim_max)
	{
		rlim_t		want = rl.rlim_max;

		if (want == RLIM_INFINITY || want > HTTP_MAX_CONNECTIONS + HTTP_FD_RESERVE)
			want = HTTP_MAX_CONNECTIONS + HTTP_FD_RESERVE;
		if (want > rl.rlim_cur)
		{
			rl.rlim_cur = want;
			if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
				getrlimit(RLIMIT_NOFILE, &rl);
		}
	}
	if (rl.rlim_cur == RLIM_INFINITY)
		return HTTP_MAX_CONNECTIONS;
	avail = rl.rlim_cur > 2 * HTTP_FD_RESERVE ? rl.rlim_cur - HTTP_FD_RESERVE : rl.rlim_cur / 2;
	return avail > HTTP_MAX_CONNECTIONS ? HTTP_MAX_CONNECTIONS : (unsigned) avail;
}

/* Start serving on HOST:PORT (IPv4); "0" or "" turns HTTP off. */
int
metrics_start(const char *addr, char *errbuf, size_t errlen)
{
	struct sockaddr_in sa;
	char		host[256];
	const char *colon;
	long		port;
	unsigned	limit;

	atomic_store(&metrics.oldest_pending_ms, -1);
	if (addr == NULL || addr[0] == '\0' || strcmp(addr, "0") == 0)
		return 0;
	colon = strrchr(addr, ':');
	if (colon == NULL || (size_t) (colon - addr) >= sizeof(host) ||
		(port = strtol(colon + 1, NULL, 10)) <= 0 || port > 65535)
	{
		snprintf(errbuf, errlen, "invalid --metrics-addr \"%s\": expected HOST:PORT or 0", addr);
		return -1;
	}
	memcpy(host, addr, colon - addr);
	host[colon - addr] = '\0';
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t) port);
	if (host[0] == '\0' || strcmp(host, "*") == 0)
		sa.sin_addr.s_addr = htonl(INADDR_ANY);
	else if (strcmp(host, "localhost") == 0)
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	else if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
	{
		snprintf(errbuf, errlen, "invalid --metrics-addr \"%s\": host must be an IPv4 address", addr);
		return -1;
	}
	limit = http_connection_limit();
	if (limit < 16)
	{
		snprintf(errbuf, errlen, "too few open files for the HTTP endpoint (ulimit -n)");
		return -1;
	}
	daemon_handle = MHD_start_daemon(MHD_USE_EPOLL_INTERNAL_THREAD, (uint16_t) port, NULL, NULL,
									 &handle, NULL,
									 MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &sa,
									 MHD_OPTION_CONNECTION_LIMIT, limit,
									 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned) HTTP_IDLE_TIMEOUT_S,
									 MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) HTTP_CONNECTION_MEMORY,
									 MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned) 256,
									 MHD_OPTION_END);
	if (daemon_handle == NULL)
	{
		snprintf(errbuf, errlen, "cannot listen on --metrics-addr %s (address in use?)", addr);
		return -1;
	}
	log_info("http endpoints up", "{s:s, s:i, s:i}", "metrics_addr", addr,
			 "max_connections", (int) limit, "idle_timeout_s", HTTP_IDLE_TIMEOUT_S);
	return 0;
}

void
metrics_stop(void)
{
	if (daemon_handle)
		MHD_stop_daemon(daemon_handle);
	daemon_handle = NULL;
}
