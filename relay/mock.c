/*
 * mock.c
 *		--dev-mock-kafka: librdkafka's in-process mock cluster, for
 *		development and for the fault tests (--mock-produce-errors injects
 *		produce errors).  Never a substitute for a broker: events are lost
 *		when the relay exits, and the relay says so loudly.
 */
#include "relay.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static rd_kafka_t *mock_rk;		/* owns the mock cluster */
static rd_kafka_mock_cluster_t *mcluster;

/* --mock-produce-errors TOPIC:COUNT:ERR (TOPIC is informational: the mock
 * cluster fails whole Produce requests). */
static int
mock_push_errors(const char *spec, char *errbuf, size_t errlen)
{
	const char *c1 = strchr(spec, ':');
	const char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
	int			count,
				err;
	rd_kafka_resp_err_t *errs;

	if (c2 == NULL || (count = atoi(c1 + 1)) <= 0 || (err = atoi(c2 + 1)) <= 0)
	{
		snprintf(errbuf, errlen, "invalid --mock-produce-errors \"%s\": expected TOPIC:COUNT:ERR", spec);
		return -1;
	}
	errs = calloc(count, sizeof(*errs));
	for (int i = 0; i < count; i++)
		errs[i] = (rd_kafka_resp_err_t) err;
	rd_kafka_mock_push_request_errors_array(mcluster, 0 /* Produce */ , count, errs);
	free(errs);
	log_warn("mock cluster will fail produce requests", "{s:i, s:s}", "count", count,
			 "error", rd_kafka_err2name(err));
	return 0;
}

/*
 * The mock cluster creates a topic when a producer first asks for it (the
 * producer's allow.auto.create.topics defaults to true), with 4
 * partitions: no topic list here to keep in step with the extension's.
 */
int
mock_start(const relay_config *cfg, const char **bootstraps, char *errbuf, size_t errlen)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char		errstr[512];

	rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
	rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
	mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (mock_rk == NULL)
	{
		snprintf(errbuf, errlen, "cannot start the mock cluster: %s", errstr);
		return -1;
	}
	mcluster = rd_kafka_mock_cluster_new(mock_rk, 1);
	if (mcluster == NULL)
	{
		snprintf(errbuf, errlen, "cannot start the mock cluster");
		return -1;
	}
	*bootstraps = rd_kafka_mock_cluster_bootstraps(mcluster);
	log_warn("DEVELOPMENT MODE: using librdkafka's in-process mock Kafka cluster, NOT FOR PRODUCTION; events are lost when the relay exits",
			 "{s:s}", "bootstrap_servers", *bootstraps);
	if (cfg->mock_produce_errors)
		return mock_push_errors(cfg->mock_produce_errors, errbuf, errlen);
	return 0;
}

/* The mock cluster's bootstrap servers, NULL without --dev-mock-kafka. */
const char *
mock_bootstraps(void)
{
	return mcluster ? rd_kafka_mock_cluster_bootstraps(mcluster) : NULL;
}

void
mock_stop(void)
{
	if (mcluster)
		rd_kafka_mock_cluster_destroy(mcluster);
	mcluster = NULL;
	if (mock_rk)
		rd_kafka_destroy(mock_rk);
	mock_rk = NULL;
}
