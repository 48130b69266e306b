/*
 * main.c
 *		taskevents-relay: startup in a visible order (options → config →
 *		subsystems → "process up" → main loop) and the main loop, which is a
 *		small state machine: disconnected → standby → leader.
 *
 * Signals only set flags; the loop acts on them.  The first SIGTERM (or
 * SIGINT) stops claiming, lets in-flight deliveries finish (at most
 * --shutdown-timeout-ms), acknowledges, releases the lease and exits 0; a
 * second one exits at once.  SIGHUP reloads the reloadable options and keeps
 * the running configuration when the new one is bad.
 */
#include "relay.h"

#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

static volatile sig_atomic_t term_signals = 0;
static volatile sig_atomic_t hup_signal = 0;

static relay_config cfg;
static int	saved_argc;
static char **saved_argv;
static char holder[300];

typedef enum
{
	ROLE_DISCONNECTED,
	ROLE_STANDBY,
	ROLE_LEADER
} relay_role;

static relay_role role = ROLE_DISCONNECTED;
static int64_t epoch;
static int64_t last_epoch;		/* kept across a reconnect: renew if still
								 * ours */
static int64_t lease_ok_at;		/* start of the last successful lease call */
static int64_t next_renew;
static int	renew_retry_ms = 100;	/* after a transient renewal failure */
static int64_t db_retry_at;		/* tick, fetch, ack: not before (0: now) */
static int	db_retry_ms = 100;
static int64_t next_lease_try;
static int64_t reconnect_at;
static int	reconnect_backoff = 100;
static bool draining;
static int64_t last_activity;	/* when the leader last fetched events */
static int64_t drain_deadline;

static void
on_term(int sig)
{
	(void) sig;
	term_signals++;
}

static void
on_hup(int sig)
{
	(void) sig;
	hup_signal = 1;
}

static void
install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = on_hup;
	sigaction(SIGHUP, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
}

/* hostname:pid:random, unique per process run. */
static void
make_holder(void)
{
	char		host[256] = "unknown";
	uint32_t	rnd = 0;

	gethostname(host, sizeof(host) - 1);
	if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
		rnd = (uint32_t) mono_ms() ^ (uint32_t) getpid();
	snprintf(holder, sizeof(holder), "%s:%d:%08x", host, (int) getpid(), rnd);
}

static void
reload(void)
{
	relay_config fresh;
	char		err[512];

	if (config_load(&fresh, saved_argc, saved_argv, err, sizeof(err)) != 0)
	{
		log_error("reload failed, keeping the running configuration", "{s:s}", "error", err);
		config_free(&fresh);
		return;
	}
	config_apply_reload(&cfg, &fresh);
	config_free(&fresh);
	log_set_level(cfg.log_level);
	log_info("configuration reloaded", "{s:s, s:i}", "log_level", log_level_name(cfg.log_level),
			 "poll_interval_ms", cfg.poll_interval_ms);
}

static void
become_standby(const char *why)
{
	if (role == ROLE_LEADER)
		log_warn("leadership lost", "{s:s, s:I}", "reason", why, "epoch", (json_int_t) epoch);
	pipeline_drop();
	wake_close();				/* a leader again fetches before it waits */
	role = db_connected() ? ROLE_STANDBY : ROLE_DISCONNECTED;
	epoch = 0;
	db_retry_at = 0;
	db_retry_ms = renew_retry_ms = 100;
	next_lease_try = mono_ms();
	atomic_store(&metrics.leader, 0);
}

static void
connection_lost(void)
{
	log_error("database connection lost", "{s:s}", "error", db_last_error());
	db_disconnect();
	become_standby("database connection lost");
	role = ROLE_DISCONNECTED;
	reconnect_at = mono_ms() + reconnect_backoff;
}

/* Act on a DB call's result; returns true when the caller may go on. */
static bool
db_check(db_result r, const char *what)
{
	switch (r)
	{
		case DB_OK:
			return true;
		case DB_FENCED:
			last_epoch = 0;
			become_standby("lease epoch fenced (another relay took over)");
			return false;
		case DB_CONN:
			connection_lost();
			return false;
		case DB_TRANSIENT:		/* where the caller does not try again */
		case DB_FAILED:
			log_error("database call failed", "{s:s, s:s}", "call", what, "error", db_last_error());
			become_standby("database call failed");
			next_lease_try = mono_ms() + 1000;
			return false;
	}
	return false;
}

/*
 * The pause before a call is tried again: *ms, which doubles for the next
 * time, up to a second.
 */
static int
retry_pause(int *ms)
{
	int			pause = *ms;

	*ms = pause * 2 > 1000 ? 1000 : pause * 2;
	return pause;
}

/*
 * A tick, fetch, ack or dead-letter record that failed with DB_TRANSIENT
 * moved nothing: the batch, the cursor, the acknowledged position are
 * those of before the call, and the dead letter is still to be recorded.
 * The leader keeps its window and its lease and tries again after
 * retry_pause().  False for every other result, for db_check().
 */
static bool
db_retry_later(db_result r, const char *what, int64_t now)
{
	if (r != DB_TRANSIENT)
		return false;
	log_warn("database call failed, will retry", "{s:s, s:s, s:s, s:i}", "call", what,
			 "sqlstate", db_last_sqlstate(), "error", db_last_error(), "retry_in_ms", db_retry_ms);
	atomic_fetch_add(&metrics.db_retries, 1);
	db_retry_at = now + retry_pause(&db_retry_ms);
	return true;
}

static void
try_connect(int64_t now)
{
	if (now < reconnect_at)
		return;
	if (db_connect(cfg.db))
	{
		role = ROLE_STANDBY;
		reconnect_backoff = 100;
		next_lease_try = now;
		log_info("database connected", NULL);
		return;
	}
	log_warn("database connection failed, will retry", "{s:s, s:i}", "error", db_last_error(),
			 "retry_in_ms", reconnect_backoff);
	reconnect_at = now + reconnect_backoff;
	reconnect_backoff = reconnect_backoff * 2 > 5000 ? 5000 : reconnect_backoff * 2;
}

static void
try_lease(int64_t now)
{
	int64_t		got = 0;
	int64_t		tick,
				cursor,
				last;
	bool		done;

	next_lease_try = now + cfg.standby_poll_ms;
	if (!db_check(db_lease(cfg.consumer, holder, last_epoch, cfg.lease_ttl_ms, &got), "relay_lease"))
		return;
	atomic_store(&metrics.standby_ok, 1);
	if (got == 0)
		return;
	epoch = last_epoch = got;
	if (!db_check(db_position(cfg.consumer, &tick, &cursor, &done), "relay_position") ||
		!db_check(db_last_tick(cfg.consumer, &last), "relay_last_tick"))
		return;
	role = ROLE_LEADER;
	lease_ok_at = now;
	next_renew = now + cfg.lease_ttl_ms / 3;
	pipeline_start(epoch, tick, cursor, done, last);
	atomic_store(&metrics.leader, 1);
	log_info("became leader", "{s:I, s:I, s:I, s:b}", "epoch", (json_int_t) epoch,
			 "tick", (json_int_t) tick, "cursor", (json_int_t) cursor, "batch_done", done);
}

/*
 * Is the leader quiet: waiting for a commit (wake.c) with nothing in
 * flight or left to acknowledge?  Then nothing but a commit, which ends the
 * wait, can give it work.
 */
static bool
leader_quiet(void)
{
	return wake_waiting() && pipeline_unresolved() == 0 && pipeline_ack_due() == INT64_MAX;
}

/* The periodic work of the leader other than moving events. */
static bool
leader_housekeeping(int64_t now)
{
	if (now - lease_ok_at >= cfg.lease_ttl_ms)
	{
		/* paused or starved past the lease: another relay may own it now */
		become_standby("lease expired before it could be renewed");
		return false;
	}
	if (now >= next_renew)
	{
		int64_t		got = 0;
		int64_t		started = mono_ms();
		db_result	r = db_lease(cfg.consumer, holder, epoch, cfg.lease_ttl_ms, &got);

		if (r == DB_TRANSIENT)
		{
			/*
			 * The lease is still ours until lease_ok_at + ttl (the check
			 * above gives it up then), and every ack stays fenced by the
			 * epoch, so try again soon rather than drop the window and lead
			 * again (which re-sends what is in flight).
			 */
			log_warn("lease renewal failed, will retry", "{s:s, s:s, s:I, s:i}",
					 "sqlstate", db_last_sqlstate(), "error", db_last_error(),
					 "lease_left_ms", (json_int_t) (lease_ok_at + cfg.lease_ttl_ms - now),
					 "retry_in_ms", renew_retry_ms);
			atomic_fetch_add(&metrics.lease_retries, 1);
			next_renew = now + retry_pause(&renew_retry_ms);
		}
		else
		{
			if (!db_check(r, "relay_lease"))
				return false;
			if (got != epoch)
			{
				last_epoch = 0;
				become_standby("lease taken by another relay");
				return false;
			}
			renew_retry_ms = 100;
			lease_ok_at = started;
			next_renew = started + cfg.lease_ttl_ms / 3;
		}
	}
	/* the side connection: the maintenance list, the backlog sample */
	db_side_step(&cfg, now, last_activity, leader_quiet());
	return true;
}

/*
 * When the leader next has housekeeping to do (ms, monotonic): how long
 * it may sleep while it waits for a commit.
 */
static int64_t
leader_next_due(void)
{
	int64_t		next = db_side_next_due(&cfg, last_activity, leader_quiet());

	if (next_renew < next)
		next = next_renew;
	if (pipeline_ack_due() < next)
		next = pipeline_ack_due();
	if (db_retry_at > 0 && db_retry_at < next)
		next = db_retry_at;
	return next;
}

/*
 * One turn of the leader: housekeeping, circuit, retries, fetching, acks.
 * Returns true when it did work (poll again at once), false when idle.
 * Sets *finished when --once or a drain is complete.
 */
static bool
leader_turn(int64_t now, bool *finished)
{
	db_result	r;
	bool		idle = false;
	int			n = 0;

	if (!leader_housekeeping(now))
		return false;
	pipeline_circuit_step(now);
	if (db_retry_at > now)
		return false;			/* a call to try again later */
	r = pipeline_step(now);
	if (r != DB_OK)
	{
		/* the event stays to be recorded (EV_RECORD) */
		if (!db_retry_later(r, "relay_dead_letter", now))
			db_check(r, "relay_dead_letter");
		return false;
	}

	/*
	 * Fetch unless a wait for a commit is outstanding (wake.c): the last tick
	 * found nothing and no transaction that wrote events has committed since.
	 * --once and a drain never wait.
	 */
	wake_collect();
	if (!draining && !wake_waiting())
	{
		n = pipeline_fetch(&r, &idle);
		if (n < 0)
		{
			if (!db_retry_later(r, "relay_tick/relay_fetch", now))
				db_check(r, "relay_tick/relay_fetch");
			return false;
		}
		if (n > 0)
			last_activity = now;
		if (idle && !cfg.once)
			wake_arm(cfg.db);
	}
	r = pipeline_ack(now, draining || cfg.once);
	if (r != DB_OK)
	{
		if (!db_retry_later(r, "relay_ack", now))
			db_check(r, "relay_ack");
		return false;
	}
	db_retry_at = 0;
	db_retry_ms = 100;
	if (draining && pipeline_empty())
		*finished = true;
	if (cfg.once && idle && pipeline_empty())
		*finished = true;
	return n > 0;
}

static int64_t idle_us;			/* time spent in idle_wait() */

/*
 * A turn that moved no event waits here; this is the one place to wait.
 * A leader that waits for a commit (wake.c) sleeps on the database
 * sockets and on the producer's report descriptor at once, until
 * relay_wait() answers, a side query finishes, a delivery report is in,
 * or its next housekeeping is due: at most timeout_ms (the poll interval)
 * while deliveries are in flight, so that retries come due on time, and
 * otherwise at most a second, so librdkafka's callbacks are served too.
 * Its CALL stays outstanding across these wake-ups.  (Waiting for the
 * reports alone would leave a commit that arrives meanwhile unseen until
 * the next report: the tail of the commit -> fetch latency.)  Any other
 * wait serves delivery reports for at most timeout_ms (the leader's poll
 * interval, or a standby's).
 */
static void
idle_wait(int timeout_ms)
{
	int64_t		started = mono_us();

	if (role == ROLE_LEADER && wake_waiting() &&
		(pipeline_unresolved() == 0 || producer_report_fd() >= 0))
	{
		struct pollfd fds[3];
		int			nfds = 0;
		int64_t		sleep_ms = leader_next_due() - mono_ms();
		int64_t		cap = pipeline_unresolved() == 0 ? 1000 : timeout_ms;

		memset(fds, 0, sizeof(fds));
		fds[nfds].fd = wake_socket();
		fds[nfds++].events = POLLIN;
		if (db_side_socket() >= 0)
		{
			fds[nfds].fd = db_side_socket();
			fds[nfds++].events = POLLIN;
		}
		if (producer_report_fd() >= 0)
		{
			fds[nfds].fd = producer_report_fd();
			fds[nfds++].events = POLLIN;
		}
		sleep_ms = sleep_ms < 0 ? 0 : sleep_ms > cap ? cap : sleep_ms;
		if (poll(fds, nfds, (int) sleep_ms) > 0 &&
			fds[nfds - 1].fd == producer_report_fd() && (fds[nfds - 1].revents & POLLIN))
			producer_poll_reports();
		else
			producer_poll(0);
	}
	else
		producer_poll(timeout_ms);
	idle_us += mono_us() - started;
}

static int
run(void)
{
	for (;;)
	{
		int64_t		now = mono_ms();
		bool		busy = false;
		bool		finished = false;
		char		errbuf[512];

		if (term_signals >= 2)
		{
			log_warn("second shutdown signal: exiting at once", "{s:i}", "inflight", pipeline_unresolved());
			return 1;
		}
		if (term_signals > 0 && !draining)
		{
			draining = true;
			drain_deadline = now + cfg.shutdown_timeout_ms;
			log_info("shutdown requested: no new events claimed, finishing in-flight deliveries",
					 "{s:i, s:i}", "inflight", pipeline_unresolved(), "timeout_ms", cfg.shutdown_timeout_ms);
		}
		if (hup_signal)
		{
			hup_signal = 0;
			reload();
		}
		if (producer_take_fatal(errbuf, sizeof(errbuf)))
		{
			log_error("kafka producer failed fatally, starting a new one", "{s:s}", "error", errbuf);
			if (role == ROLE_LEADER)
				become_standby("kafka producer fatal error");
			if (producer_restart(&cfg, errbuf, sizeof(errbuf)) != 0)
			{
				log_error("cannot create a new kafka producer", "{s:s}", "error", errbuf);
				return 1;
			}
		}
		producer_poll(0);

		switch (role)
		{
			case ROLE_DISCONNECTED:
				if (draining)
					return 0;
				try_connect(now);
				break;
			case ROLE_STANDBY:
				if (draining)
					return 0;
				if (now >= next_lease_try)
					try_lease(now);
				break;
			case ROLE_LEADER:
				busy = leader_turn(now, &finished);
				break;
		}
		if (draining && role == ROLE_LEADER && (finished || now >= drain_deadline))
		{
			if (!finished)
				log_warn("shutdown timeout: leaving unacknowledged events to the next leader",
						 "{s:i}", "inflight", pipeline_unresolved());
			break;
		}
		if (cfg.once && finished)
		{
			log_info("--once: everything pending is delivered", NULL);
			break;
		}
		if (!busy)
			idle_wait(role == ROLE_LEADER ? cfg.poll_interval_ms : 50);
	}
	if (role == ROLE_LEADER)
	{
		pipeline_ack(mono_ms(), true);
		if (db_release(cfg.consumer, epoch) == DB_OK)
			log_info("lease released", "{s:I}", "epoch", (json_int_t) epoch);
		pipeline_drop();
		atomic_store(&metrics.leader, 0);
	}
	return 0;
}

int
main(int argc, char **argv)
{
	char		err[512];
	char	   *masked;
	int			rc;

	/* 1. options and configuration */
	saved_argc = argc;
	saved_argv = argv;
	if (config_load(&cfg, argc, argv, err, sizeof(err)) != 0)
	{
		secrets_register(&cfg);
		log_error("invalid configuration", "{s:s}", "error", err);
		config_free(&cfg);
		return 2;
	}
	if (cfg.show_help)
	{
		config_print_help();
		config_free(&cfg);
		return 0;
	}
	if (cfg.show_version)
	{
		printf("taskevents-relay %s\n", RELAY_VERSION);
		config_free(&cfg);
		return 0;
	}
	secrets_register(&cfg);
	log_set_level(cfg.log_level);
	install_signals();
	make_holder();

	/* 2. subsystems */
	pipeline_init(&cfg, holder);
	if (producer_init(&cfg, pipeline_on_delivery, err, sizeof(err)) != 0 || metrics_start(cfg.metrics_addr, err, sizeof(err)) != 0)
	{
		log_error("invalid configuration", "{s:s}", "error", err);
		producer_destroy();
		config_free(&cfg);
		return 2;
	}

	/* 3. up */
	masked = conninfo_masked(cfg.db);
	log_info("process up", "{s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:o}",
			 "version", RELAY_VERSION, "consumer", cfg.consumer, "holder", holder,
			 "db", masked, "brokers", cfg.dev_mock_kafka ? "(mock cluster)" : cfg.brokers,
			 "mode", cfg.binary ? "binary" : "structured", "once", cfg.once,
			 "kafka_properties", kafka_props_masked(&cfg));
	free(masked);
	if (cfg.binary)
	{
		/*
		 * Every event the extension writes carries topic and pubsubname for
		 * Dapr, but Dapr cannot route binary-mode records: its routing rules
		 * see no "type" (the attributes are only ce_* headers).
		 */
		log_warn("binary mode: Dapr subscribers cannot route these events; use structured mode for Dapr",
				 "{s:s}", "detail",
				 "in binary mode the record value is only the event's data and its attributes are ce_* headers; "
				 "a Dapr subscription with routing rules on event.type dead-letters every record "
				 "(\"no such key: type\"), and without rules the application gets the data without the attributes");
	}

	/* 4. main loop */
	rc = run();

	producer_destroy();
	metrics_stop();
	db_disconnect();
	db_side_close();
	wake_close();
	pipeline_shutdown();
	log_info("process down", "{s:i, s:I, s:I, s:I, s:I, s:I}", "exit_code", rc,
			 "published", (json_int_t) atomic_load(&metrics.published),
			 "retries", (json_int_t) atomic_load(&metrics.retries),
			 "dead_letters", (json_int_t) atomic_load(&metrics.dead_letters),
			 "db_wait_ms", (json_int_t) (db_wait_us() / 1000),
			 "idle_wait_ms", (json_int_t) (idle_us / 1000));
	config_free(&cfg);
	return rc;
}
