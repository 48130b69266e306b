/*
 * fetchpages: read batch 1 of consumer "fetchbench" page by page, as the
 * relay does, and print the time it took; the database side of a drain,
 * with no Kafka.  bench/relay/fetch.sh builds and runs it.
 *
 *   fetchpages CONNINFO MODE LIMIT REPEAT
 *     MODE page: relay_fetch_page() in binary, as the relay calls it
 *     MODE rows: relay_fetch() in text, five columns a row (the 0.1.0
 *                relay's call, date_part() included)
 *
 * Prints, for each of REPEAT passes: events, pages, seconds and events/s.
 * Exits 1 when a pass reads no event or a page is malformed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

static double
now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static uint64_t
be(const unsigned char *p, int n)
{
	uint64_t	v = 0;

	for (int i = 0; i < n; i++)
		v = (v << 8) | p[i];
	return v;
}

/* The events of one chunk; their last id in *last.  -1: malformed. */
static long
chunk_events(const unsigned char *p, const unsigned char *end, long long *last)
{
	long		n = 0;

	while (p < end)
	{
		if (end - p < 16)
			return -1;
		*last = (long long) be(p, 8);
		p += 16;
		for (int k = 0; k < 3; k++)
		{
			uint32_t	len;

			if (end - p < 4)
				return -1;
			len = (uint32_t) be(p, 4);
			p += 4;
			if (len == UINT32_MAX && k == 1)
				continue;
			if ((uint64_t) (end - p) < (uint64_t) len + 1)
				return -1;
			p += len + 1;
		}
		n++;
	}
	return n;
}

int
main(int argc, char **argv)
{
	PGconn	   *conn;
	int			page;
	int			limit;
	int			repeat;

	if (argc != 5)
	{
		fprintf(stderr, "usage: fetchpages CONNINFO page|rows LIMIT REPEAT\n");
		return 2;
	}
	page = strcmp(argv[2], "page") == 0;
	limit = atoi(argv[3]);
	repeat = atoi(argv[4]);
	conn = PQconnectdb(argv[1]);
	if (PQstatus(conn) != CONNECTION_OK)
	{
		fprintf(stderr, "fetchpages: %s", PQerrorMessage(conn));
		return 1;
	}
	PQclear(PQprepare(conn, "f", page
					  ? "SELECT taskevents.relay_fetch_page($1, 1, $2, $3)"
					  : "SELECT id, topic, partition_key, event, pg_catalog.date_part('epoch', created_at)"
					  " FROM taskevents.relay_fetch($1, 1, $2, $3)", 0, NULL));
	for (int rep = 0; rep < repeat; rep++)
	{
		long long	after = 0,
					total = 0;
		int			pages = 0;
		double		t0 = now(),
					dt;

		for (;;)
		{
			char		a[32],
						l[32];
			const char *params[3] = {"fetchbench", a, l};
			PGresult   *res;
			long		n = 0;

			snprintf(a, sizeof(a), "%lld", after);
			snprintf(l, sizeof(l), "%d", limit);
			res = PQexecPrepared(conn, "f", 3, params, NULL, NULL, page);
			if (PQresultStatus(res) != PGRES_TUPLES_OK)
			{
				fprintf(stderr, "fetchpages: %s", PQerrorMessage(conn));
				return 1;
			}
			pages++;
			if (page)
				for (int r = 0; r < PQntuples(res); r++)
				{
					const unsigned char *p = (const unsigned char *) PQgetvalue(res, r, 0);
					long		c = chunk_events(p, p + PQgetlength(res, r, 0), &after);

					if (c <= 0)
					{
						fprintf(stderr, "fetchpages: malformed chunk\n");
						return 1;
					}
					n += c;
				}
			else
			{
				n = PQntuples(res);
				for (int r = 0; r < n; r++)
					(void) strtod(PQgetvalue(res, r, 4), NULL);
				if (n > 0)
					after = strtoll(PQgetvalue(res, n - 1, 0), NULL, 10);
			}
			PQclear(res);
			if (n == 0)
				break;
			total += n;
		}
		dt = now() - t0;
		if (total == 0)
		{
			fprintf(stderr, "fetchpages: no event in batch 1 of fetchbench\n");
			return 1;
		}
		printf("%s %d: %lld events in %d pages, %.3f s, %.0f events/s\n",
			   argv[2], limit, total, pages, dt, total / dt);
	}
	PQfinish(conn);
	return 0;
}
