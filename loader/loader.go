package loader

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	"github.com/backfill/backfill/internal/ctxtime"
	"github.com/jackc/pgx/v5"
)

// ErrLocked is returned by Open (and by Run after a reconnect) when another loader holds the
// database's loader lock.
var ErrLocked = errors.New("loader: another loader holds the database lock")

// ErrRunning is returned by Run when another Run of the same Loader has not returned yet.
var ErrRunning = errors.New("loader: run already in progress")

// lockKey is the pg_advisory_lock key every loader takes ("bfload" in ASCII).
const lockKey int64 = 0x62666c6f6164

// Loader loads spool segments into one PostgreSQL database over one connection.
type Loader struct {
	cfg     Config
	connCfg *pgx.ConnConfig
	secrets []string // passwords to mask in error messages
	lim     limits
	schema  *schemaInfo
	stats   Stats

	mu   sync.Mutex // serialises Run and Close; guards conn
	conn *pgx.Conn  // nil or closed after a lost connection; reopened on demand
	// helper is the second connection, which takes every other unit while head starts go on
	// (head.go); it holds no lock: l.conn does. Writer goroutine only.
	helper       *pgx.Conn
	pre          *headStart   // the head start of the unit being written (writer goroutine only)
	headMu       sync.Mutex   // guards ahead and aheadStopped (the writer and its watcher, head.go)
	ahead        *headStart   // the head start running for the unit after the one being written
	mainPID      uint32       // the server process of l.conn, which holds the loader lock
	aheadStopped bool         // an attempt of the unit being written failed: no head start for the next
	keysMu       sync.RWMutex // guards seen and pending while a head start reads them
	noHead       bool         // no head starts (tests only)
	waitNext     bool         // the writer waits for the next unit before it writes one, for its head start (tests only)
	touchMu      sync.Mutex   // guards touched
	touched      []uint8      // the head starts' table of touch counts (head.go)
	headMin      int          // the fewest creates of a head start (tests lower it)
	// beforeHead, when set (tests only), runs in a head start's goroutine before its COPYs.
	beforeHead func()
	known      didSet // DIDs ensured in users by this run's commits (writer goroutine only)

	rateStart  time.Time // first commit under MaxEventsPerSec (writer goroutine only)
	rateEvents int64     // events committed since rateStart

	// The direct COPY's back-off and outcomes by table, reset at each Run (writer goroutine only).
	directState    [NumTables]directState
	directCounts   [NumTables]directCounts
	seen           seenKeys    // keys the committed units of this loader created
	pending        *pendingSet // pair creates left out, as committed (pending.go); read at each Run
	pendingLog     int         // rows of backfill_pending's log
	pendingStale   bool        // a unit's change went into pending before its COMMIT failed: read it again
	pendingCompact int         // log rows before a rewrite, when not pendingCompact (tests only)
	pendingCounts  struct {    // what committed units did to pending rows (tests read them)
		left, materialized, ended int
	}
	reverse bool         // the next unit COPYs its tables in reverse order
	direct  directPolicy // tests only change it

	minBatchBytes int64 // raw bytes a transaction takes even past BatchSize segments (tests lower it)

	// beforeCommit, when set (tests only), runs inside each transaction just before COMMIT.
	beforeCommit func(ctx context.Context, conn *pgx.Conn) error
}

// Open connects to cfg.DatabaseURL, takes the loader lock, creates missing tables and indexes,
// and checks that every column the loader writes exists.
func Open(ctx context.Context, cfg Config) (*Loader, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	secrets := dsnSecrets(cfg.DatabaseURL)
	connCfg, err := pgx.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("parse database URL %s: %w", RedactDSN(cfg.DatabaseURL), scrub(err, secrets...))
	}
	if connCfg.Password != "" {
		secrets = append(secrets, connCfg.Password)
	}
	if _, ok := connCfg.RuntimeParams["application_name"]; !ok {
		connCfg.RuntimeParams["application_name"] = "backfill-loader"
	}
	// Timestamps are written as UTC wall time into timestamp columns; now() must agree.
	connCfg.RuntimeParams["timezone"] = "UTC"
	l := &Loader{cfg: cfg, connCfg: connCfg, secrets: secrets, minBatchBytes: minBatchBytes, headMin: headMinRows}
	if err := l.connect(ctx); err != nil {
		return nil, err
	}
	info, err := ensureSchema(ctx, l.conn)
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("schema of %s: %w", RedactDSN(cfg.DatabaseURL), scrub(err, l.secrets...))
	}
	l.lim, l.schema = info.lim, info
	return l, nil
}

// Close releases the loader lock and closes the connection; Run must have returned.
func (l *Loader) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// Unlock explicitly: closing the session releases the lock too, but only once the server
		// process has noticed, which a loader opened right after could race with.
		if !l.conn.IsClosed() && l.conn.PgConn().TxStatus() == 'I' {
			_, _ = l.conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", lockKey)
		}
		_ = l.conn.Close(ctx)
		l.conn = nil
	}
	if l.helper != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = l.helper.Close(ctx)
		l.helper = nil
	}
}

// Stats returns the loader's live counters.
func (l *Loader) Stats() *Stats { return &l.stats }

// connect opens the connection, takes the advisory lock and creates the staging tables.
func (l *Loader) connect(ctx context.Context) error {
	conn, err := l.dial(ctx, true)
	if err != nil {
		return err
	}
	l.conn, l.mainPID = conn, conn.PgConn().PID()
	return nil
}

// dial opens a connection with the staging tables, after taking the advisory lock on it when
// lock is set.
func (l *Loader) dial(ctx context.Context, lock bool) (*pgx.Conn, error) {
	dsn := RedactDSN(l.cfg.DatabaseURL)
	conn, err := pgx.ConnectConfig(ctx, l.connCfg.Copy())
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", dsn, scrub(err, l.secrets...))
	}
	fail := func(err error) error {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = conn.Close(cctx)
		return err
	}
	ok := !lock
	// A few tries: the server process of a loader that just exited may not have noticed yet.
	for try := 0; lock; try++ {
		if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", lockKey).Scan(&ok); err != nil {
			return nil, fail(fmt.Errorf("take loader lock on %s: %w", dsn, err))
		}
		if ok || try == 4 {
			break
		}
		if err := ctxtime.Sleep(ctx, 100*time.Millisecond); err != nil {
			return nil, fail(err)
		}
	}
	if !ok {
		holder := "unknown session"
		var pid int32
		var app, addr string
		err := conn.QueryRow(ctx, `
SELECT a.pid, coalesce(a.application_name, ''), coalesce(host(a.client_addr), 'local')
FROM pg_locks k JOIN pg_stat_activity a ON a.pid = k.pid
WHERE k.locktype = 'advisory' AND k.granted AND k.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND k.classid = ($1::bigint >> 32)::oid AND k.objid = ($1::bigint & 4294967295)::oid AND k.objsubid = 1
LIMIT 1`, lockKey).Scan(&pid, &app, &addr)
		if err == nil {
			holder = fmt.Sprintf("pid %d (application %q, client %s)", pid, app, addr)
		}
		return nil, fail(fmt.Errorf("%w: database %s is being loaded by %s", ErrLocked, dsn, holder))
	}
	for _, ddl := range stageDDL {
		if _, err := conn.Exec(ctx, ddl); err != nil {
			return nil, fail(fmt.Errorf("create staging table: %w", err))
		}
	}
	return conn, nil
}

// dsnSecrets returns the passwords a DSN spells out, to mask them in error messages.
func dsnSecrets(dsn string) []string {
	var out []string
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" {
			out = append(out, p, url.QueryEscape(p), url.PathEscape(p))
		}
		for k, vs := range u.Query() {
			if k == "password" || k == "sslpassword" {
				out = append(out, vs...)
			}
		}
	}
	for _, m := range kvPassword.FindAllStringSubmatch(dsn, -1) {
		v := m[2]
		if len(v) >= 2 && v[0] == '\'' {
			v = v[1 : len(v)-1]
		}
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}
