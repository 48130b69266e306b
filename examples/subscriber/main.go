// Command subscriber is the reference Dapr pub/sub subscriber for
// pg_taskevents: a small HTTP app that Dapr's sidecar (daprd) delivers the
// relay's CloudEvents to, and that applies each event to PostgreSQL exactly
// once with the extension's process-once inbox.
//
// Routes (declared in deploy/kubernetes/dapr.yaml, the Subscriptions route
// on the CloudEvent type):
//
//	POST /events/tasks      task.created, task.updated, task.completed, task.deleted
//	POST /events/reminders  reminder.scheduled, reminder.triggered, reminder.cancelled
//	POST /events/other      any other type on those topics: acknowledged, not applied
//	GET  /healthz           200 when the database answers, 503 otherwise
//	GET  /livez             200 while the process runs
//
// Applying an event is one transaction: taskevents.receive(event) and, when
// that returns true (first delivery), one row in feed.activity, the user's
// activity feed.  The answer tells Dapr what to do next:
//
//	applied, duplicate, other   200 {"status":"SUCCESS"}  done
//	malformed event             200 {"status":"DROP"}     no retry; Dapr puts it on the deadLetterTopic
//	any other failure           500 {"status":"RETRY"}    Dapr retries (Resiliency), then dead-letters
//
// Logs are JSON lines on stderr with event ids, types, task ids and
// outcomes, never the event's data (titles, descriptions) or credentials.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// maxBody is above the topics' max.message.bytes (1048588): Dapr cannot
// deliver anything larger, so a larger body is not one of our events.
const maxBody = 2 << 20

// insertActivity applies a first delivery: one row of the user's activity
// feed, everything taken from the event as the database parsed it.
const insertActivity = `
INSERT INTO feed.activity (route, source, event_id, type, user_id, task_id, occurred_at, event)
SELECT $2, e->>'source', e->>'id', e->>'type', e->>'partitionkey', e->>'subject',
       (e->>'time')::timestamptz, e
  FROM (SELECT $1::jsonb AS e) AS d`

type config struct {
	listen      string
	probeListen string
	dbTimeout   time.Duration
	maxConns    int
}

func getenv(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func main() {
	var cfg config
	flag.StringVar(&cfg.listen, "listen", getenv("SUBSCRIBER_LISTEN", "127.0.0.1:3000"),
		"address for Dapr's deliveries and /healthz (env SUBSCRIBER_LISTEN); keep it on loopback, only the sidecar should reach it")
	flag.StringVar(&cfg.probeListen, "probe-listen", getenv("SUBSCRIBER_PROBE_LISTEN", ""),
		"optional second address serving only /healthz, for the kubelet (env SUBSCRIBER_PROBE_LISTEN)")
	dbTimeout := flag.String("db-timeout", getenv("SUBSCRIBER_DB_TIMEOUT", "3s"),
		"time limit for applying one delivery; past it the answer is 500 (env SUBSCRIBER_DB_TIMEOUT)")
	flag.IntVar(&cfg.maxConns, "max-conns", 4, "database connections (Dapr delivers one Kafka partition at a time)")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{ReplaceAttr: logAttr}))

	var err error
	if cfg.dbTimeout, err = time.ParseDuration(*dbTimeout); err != nil || cfg.dbTimeout <= 0 {
		log.Error("bad configuration", "setting", "db-timeout")
		os.Exit(2)
	}
	// DATABASE_URL: a libpq connection string or URL without the password;
	// PGPASSWORD (or a password file) supplies it, as for psql.
	pcfg, err := pgxpool.ParseConfig(os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Error("bad configuration", "setting", "DATABASE_URL")
		os.Exit(2)
	}
	pcfg.MaxConns = int32(cfg.maxConns)
	if pcfg.ConnConfig.RuntimeParams["application_name"] == "" {
		pcfg.ConnConfig.RuntimeParams["application_name"] = "taskevents-subscriber"
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		log.Error("bad configuration", "setting", "DATABASE_URL")
		os.Exit(2)
	}
	defer pool.Close()

	app := &subscriber{pool: pool, log: log, dbTimeout: cfg.dbTimeout}
	mux := http.NewServeMux()
	mux.Handle("POST /events/tasks", app.handler("tasks", "task."))
	mux.Handle("POST /events/reminders", app.handler("reminders", "reminder."))
	mux.Handle("POST /events/other", app.handler("other", ""))
	mux.HandleFunc("GET /healthz", app.health)
	mux.HandleFunc("GET /livez", live)

	servers := []*http.Server{{Addr: cfg.listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}}
	if cfg.probeListen != "" {
		probes := http.NewServeMux()
		probes.HandleFunc("GET /healthz", app.health)
		probes.HandleFunc("GET /livez", live)
		servers = append(servers, &http.Server{Addr: cfg.probeListen, Handler: probes, ReadHeaderTimeout: 10 * time.Second})
	}
	errc := make(chan error, len(servers))
	for _, s := range servers {
		ln, err := net.Listen("tcp", s.Addr)
		if err != nil {
			log.Error("cannot listen", "addr", s.Addr, "err", err.Error())
			os.Exit(1)
		}
		go func(s *http.Server) { errc <- s.Serve(ln) }(s)
	}
	log.Info("subscriber up", "listen", cfg.listen, "probe_listen", cfg.probeListen)

	select {
	case <-ctx.Done():
	case err := <-errc:
		log.Error("server stopped", "err", err.Error())
	}
	// SIGTERM: finish the deliveries in progress (Dapr has stopped sending
	// when the pod terminates), then close the pool.
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range servers {
		_ = s.Shutdown(shutdown)
	}
	log.Info("subscriber stopped")
}

// logAttr names the time "ts" in UTC with milliseconds and the level in
// lowercase, like taskevents-relay's log lines.
func logAttr(_ []string, a slog.Attr) slog.Attr {
	switch a.Key {
	case slog.TimeKey:
		return slog.String("ts", a.Value.Time().UTC().Format("2006-01-02T15:04:05.000Z"))
	case slog.LevelKey:
		return slog.String("level", strings.ToLower(a.Value.String()))
	}
	return a
}

type subscriber struct {
	pool      *pgxpool.Pool
	log       *slog.Logger
	dbTimeout time.Duration
}

// envelope is what the handler reads itself; the database reads the rest.
type envelope struct {
	SpecVersion  string  `json:"specversion"`
	ID           string  `json:"id"`
	Source       string  `json:"source"`
	Type         string  `json:"type"`
	Subject      *string `json:"subject"`
	PartitionKey *string `json:"partitionkey"`
	Time         *string `json:"time"`
}

// result is one delivery's outcome: what is logged and answered.
type result struct {
	outcome  string // applied, duplicate, ignored, malformed, failed
	reason   string // for malformed and failed: a fixed word, never event contents
	sqlstate string
}

func (r result) status() (int, string) {
	switch r.outcome {
	case "malformed":
		return http.StatusOK, "DROP"
	case "failed":
		return http.StatusInternalServerError, "RETRY"
	}
	return http.StatusOK, "SUCCESS"
}

// handler serves one route; typePrefix is the family of event types the
// route's Subscription rules send to it ("" for the default route).
func (s *subscriber) handler(route, typePrefix string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		var ev envelope
		body, res := s.read(r, &ev)
		if res.outcome == "" {
			switch {
			case typePrefix == "":
				res = result{outcome: "ignored"}
			case !strings.HasPrefix(ev.Type, typePrefix):
				res = result{outcome: "malformed", reason: "type not for this route"}
			case ev.Subject == nil || ev.PartitionKey == nil || ev.Time == nil:
				res = result{outcome: "malformed", reason: "subject, partitionkey or time missing"}
			default:
				res = s.apply(r.Context(), route, body)
			}
		}
		code, status := res.status()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		fmt.Fprintf(w, "{\"status\":%q}\n", status)

		attrs := []any{"route", route, "event_id", ev.ID, "type", ev.Type, "outcome", res.outcome,
			"http_status", code, "ms", float64(time.Since(start).Microseconds()) / 1000}
		if ev.Subject != nil {
			attrs = append(attrs, "subject", *ev.Subject)
		}
		if res.reason != "" {
			attrs = append(attrs, "reason", res.reason)
		}
		if res.sqlstate != "" {
			attrs = append(attrs, "sqlstate", res.sqlstate)
		}
		level := slog.LevelInfo
		if res.outcome == "malformed" || res.outcome == "failed" {
			level = slog.LevelWarn
		}
		s.log.Log(r.Context(), level, "delivery", attrs...)
	})
}

// read takes the body and checks the envelope: a structured-mode
// CloudEvent 1.0 (the task and reminder routes also need subject,
// partitionkey and time).  A body that fails is malformed: retrying cannot
// fix it.
func (s *subscriber) read(r *http.Request, ev *envelope) ([]byte, result) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, result{outcome: "failed", reason: "reading the request"}
	}
	if len(body) > maxBody {
		return nil, result{outcome: "malformed", reason: "too large"}
	}
	if err := json.Unmarshal(body, ev); err != nil {
		return nil, result{outcome: "malformed", reason: "not a JSON CloudEvent"}
	}
	switch {
	case ev.SpecVersion != "1.0":
		return nil, result{outcome: "malformed", reason: "specversion is not 1.0"}
	case ev.ID == "" || ev.Source == "" || ev.Type == "":
		return nil, result{outcome: "malformed", reason: "id, source or type missing"}
	}
	return body, result{}
}

// apply runs the event's transaction: the inbox mark and the effect commit
// together or not at all, so a failure leaves the event unapplied and
// unmarked, and the retry applies it.
func (s *subscriber) apply(ctx context.Context, route string, body []byte) result {
	ctx, cancel := context.WithTimeout(ctx, s.dbTimeout)
	defer cancel()
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return dbFailure(err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // no-op after Commit

	var first bool
	if err := tx.QueryRow(ctx, "SELECT taskevents.receive($1::jsonb)", body).Scan(&first); err != nil {
		return dbFailure(err)
	}
	if first {
		if _, err := tx.Exec(ctx, insertActivity, body, route); err != nil {
			return dbFailure(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return dbFailure(err)
	}
	if !first {
		return result{outcome: "duplicate"}
	}
	return result{outcome: "applied"}
}

// dbFailure maps an error of the event's transaction to an outcome.  SQLSTATE
// class 22 (data exception: receive() refusing the CloudEvent with 22023,
// a time that is no timestamp, JSON PostgreSQL cannot store) is about the
// event itself: malformed, not retried.  Everything else (connection lost,
// serialization failure, deadlock, timeout, a constraint or trigger of the
// application) may pass on a retry.  Only the SQLSTATE is kept: messages can
// quote the event's contents.
func dbFailure(err error) result {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		if strings.HasPrefix(pgErr.Code, "22") {
			return result{outcome: "malformed", reason: "refused by the database", sqlstate: pgErr.Code}
		}
		return result{outcome: "failed", reason: "database error", sqlstate: pgErr.Code}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return result{outcome: "failed", reason: "timeout"}
	}
	return result{outcome: "failed", reason: "database unavailable"}
}

// health answers 200 while the database answers within 0.8 s (below the
// probe timeout in deploy/kubernetes/subscriber.yaml).  Dapr's app health
// check (dapr.io/enable-app-health-check) calls it and stops delivering
// while it fails, so a database outage holds events in Kafka instead of
// spending their retries and dead-lettering them.
func (s *subscriber) health(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 800*time.Millisecond)
	defer cancel()
	if err := s.pool.Ping(ctx); err != nil {
		http.Error(w, "database unavailable\n", http.StatusServiceUnavailable)
		return
	}
	_, _ = io.WriteString(w, "ok\n")
}

// live answers 200 while the process serves HTTP: the kubelet's liveness
// probe, which must not depend on the database.
func live(w http.ResponseWriter, _ *http.Request) {
	_, _ = io.WriteString(w, "ok\n")
}
