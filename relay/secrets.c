/*
 * secrets.c
 *		What must never reach a log line: passwords in the connection
 *		string, secret librdkafka properties, PGPASSWORD.  Every place that
 *		echoes configuration goes through here.
 *
 * Two layers.  What the relay echoes on purpose (the connection string and
 * the -X properties in the "process up" line) is masked by name: any
 * conninfo keyword containing "password" (password, sslpassword), and any
 * librdkafka property whose name contains "password", "secret",
 * "passphrase" or "private.key", or that holds key material or tokens
 * (ssl.key.pem, ssl_key, sasl.oauthbearer.config).  And every value of
 * such a setting, once known, is registered with log.c, which replaces it
 * in any line about to be written: a message that librdkafka or libpq
 * composed around a secret value cannot carry it out either.
 */
#include "relay.h"

#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MASK "********"

static const char *const kafka_secret_parts[] = {"password", "secret", "passphrase", "private.key"};
static const char *const kafka_secret_names[] = {"ssl.key.pem", "ssl_key", "sasl.oauthbearer.config"};

bool
conninfo_key_is_secret(const char *keyword)
{
	return strstr(keyword, "password") != NULL;
}

bool
kafka_prop_is_secret(const char *name)
{
	for (size_t i = 0; i < sizeof(kafka_secret_parts) / sizeof(kafka_secret_parts[0]); i++)
		if (strstr(name, kafka_secret_parts[i]))
			return true;
	for (size_t i = 0; i < sizeof(kafka_secret_names) / sizeof(kafka_secret_names[0]); i++)
		if (strcmp(name, kafka_secret_names[i]) == 0)
			return true;
	return false;
}

/*
 * The connection string as "keyword=value ..." with every secret value
 * replaced, for log lines (malloc'd).  A string libpq cannot parse is not
 * shown at all.
 */
char *
conninfo_masked(const char *conninfo)
{
	PQconninfoOption *opts;
	char	   *err = NULL;
	size_t		cap = 256,
				len = 0;
	char	   *out;

	if (conninfo == NULL || conninfo[0] == '\0')
		return strdup("(from PG* environment)");
	if (!conninfo_is_string(conninfo))
		return strdup(conninfo);	/* a bare database name */
	opts = PQconninfoParse(conninfo, &err);
	if (opts == NULL)
	{
		PQfreemem(err);
		return strdup("(unparsable)");
	}
	out = malloc(cap);
	out[0] = '\0';
	for (PQconninfoOption *o = opts; o->keyword; o++)
	{
		const char *v = o->val;
		size_t		need;

		if (v == NULL)
			continue;
		if (conninfo_key_is_secret(o->keyword))
			v = MASK;
		need = strlen(o->keyword) + strlen(v) + 4;
		if (len + need >= cap)
		{
			cap = (len + need) * 2;
			out = realloc(out, cap);
		}
		len += snprintf(out + len, cap - len, "%s%s=%s", len ? " " : "", o->keyword, v);
	}
	PQconninfoFree(opts);
	return out;
}

/*
 * True when libpq reads the text as a connection string (key=value pairs
 * or a URI) rather than as a bare database name, the same test
 * PQconnectdbParams applies with expand_dbname.
 */
bool
conninfo_is_string(const char *conninfo)
{
	return strchr(conninfo, '=') != NULL ||
		strncmp(conninfo, "postgresql://", 13) == 0 ||
		strncmp(conninfo, "postgres://", 11) == 0;
}

/* Whether a token quoted in a libpq message may be shown: "=" or a keyword. */
static bool
token_is_public(const char *tok, size_t len)
{
	PQconninfoOption *defs;
	bool		ok = false;

	if (len == 1 && tok[0] == '=')
		return true;
	defs = PQconndefaults();
	for (PQconninfoOption *o = defs; o && o->keyword && !ok; o++)
		ok = strlen(o->keyword) == len && strncmp(o->keyword, tok, len) == 0;
	if (defs)
		PQconninfoFree(defs);
	return ok;
}

/*
 * Check that libpq can parse the connection string.  Its message quotes
 * the offending token, which may be a password: a quoted token is shown
 * only when it is "=" or a connection keyword.  Returns 0, or -1 after
 * writing the reason into errbuf.
 */
int
conninfo_check(const char *conninfo, char *errbuf, size_t errlen)
{
	PQconninfoOption *opts;
	char	   *err = NULL;
	char		msg[256];
	size_t		n = 0;
	const char *c;

	if (conninfo == NULL || conninfo[0] == '\0' || !conninfo_is_string(conninfo))
		return 0;
	opts = PQconninfoParse(conninfo, &err);
	if (opts != NULL)
	{
		PQconninfoFree(opts);
		return 0;
	}
	for (c = err ? err : "cannot parse it"; *c && *c != '\n' && n < sizeof(msg) - 8;)
	{
		const char *close = *c == '"' ? strchr(c + 1, '"') : NULL;

		if (close == NULL)
		{
			msg[n++] = *c++;
			continue;
		}
		if (token_is_public(c + 1, close - c - 1) && (size_t) (close - c + 1) < sizeof(msg) - 8 - n)
		{
			memcpy(msg + n, c, close - c + 1);
			n += close - c + 1;
		}
		else
			n += snprintf(msg + n, sizeof(msg) - n, "\"...\"");
		c = close + 1;
	}
	msg[n] = '\0';
	PQfreemem(err);
	snprintf(errbuf, errlen, "invalid --db connection string: %s", msg);
	return -1;
}

/* The -X properties as a JSON object, secret values masked (for "process up"). */
json_t *
kafka_props_masked(const relay_config *cfg)
{
	json_t	   *o = json_object();

	for (int i = 0; i < cfg->n_kafka_props; i++)
	{
		const char *kv = cfg->kafka_props[i];
		const char *eq = strchr(kv, '=');
		char	   *k = strndup(kv, eq - kv);

		json_object_set_new(o, k, json_string(kafka_prop_is_secret(k) ? MASK : eq + 1));
		free(k);
	}
	return o;
}

/*
 * Tell log.c every secret value the configuration holds: conninfo
 * passwords, secret -X properties, PGPASSWORD.  Call before anything that
 * may log them (librdkafka's threads, libpq's messages).
 */
void
secrets_register(const relay_config *cfg)
{
	const char *pw = getenv("PGPASSWORD");

	if (pw)
		log_add_secret(pw);
	for (int i = 0; i < cfg->n_kafka_props; i++)
	{
		const char *kv = cfg->kafka_props[i];
		const char *eq = strchr(kv, '=');
		char	   *k = strndup(kv, eq - kv);

		if (kafka_prop_is_secret(k))
			log_add_secret(eq + 1);
		free(k);
	}
	if (cfg->db && cfg->db[0] != '\0' && conninfo_is_string(cfg->db))
	{
		PQconninfoOption *opts = PQconninfoParse(cfg->db, NULL);

		for (PQconninfoOption *o = opts; o && o->keyword; o++)
			if (o->val && conninfo_key_is_secret(o->keyword))
				log_add_secret(o->val);
		if (opts)
			PQconninfoFree(opts);
	}
}
