package loader

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/backfill/backfill/decode"
	"github.com/backfill/backfill/spool"
)

// Defaults applied by Open to zero Config fields.
const (
	DefaultService   = "backfill"
	DefaultWorkers   = 4
	DefaultBatchSize = 100
)

// unitFrames and unitBytes cap the frames and raw frame bytes of one transaction when it groups
// several segments; a segment holding more still loads alone, in one transaction. What a unit
// costs the server beyond its rows is per table and per transaction: every unit touches the
// pages of every table and index again, so fewer, larger units write faster (measured in
// alternating runs of a 1M-event load: 12.2-12.7 s with one default segment, about 19k frames,
// per unit, 10.6-12.1 s with 76k; 160k was slower again, 13.4 s; on a later machine 120k and
// 160k were within the noise of 80k), while the decoded units in flight grow with it (about
// 2.5 KB a frame of the test relay's 3.4 KB ones). minBatchBytes is what a transaction takes
// even past BatchSize segments: a transaction costs round trips and an fsync whatever it holds,
// so tiny ones would cripple the load.
const (
	unitFrames    = 80_000
	unitBytes     = 4 * (spool.DefaultSegmentBytes + spool.MaxFrameBytes) // four default segments, each past its size by at most a frame
	minBatchBytes = 1 << 20
)

// Config is what Open needs to connect and what Run needs to load.
type Config struct {
	DatabaseURL string              // PostgreSQL URL or key=value DSN; required
	Service     string              // firehose_cursor.service row; empty means DefaultService
	Workers     int                 // decode goroutines (GOMAXPROCS-1 at most run at once); 0 means DefaultWorkers
	BatchSize   int                 // most segments per transaction (see doc.go); 0 means DefaultBatchSize
	Collections []decode.Collection // collections to write; empty means all
	Since       time.Time           // events before this time are skipped; zero means no lower bound
	Until       time.Time           // events at or after this time are skipped; zero means no upper bound
	Logger      *slog.Logger        // debug lines for skipped input; nil discards them
	Retry       RetryPolicy         // retries of a transaction on transient database errors
	// MaxEventsPerSec caps the committed event rate, so a backfill can run beside a live
	// service; the writer waits after a commit that got ahead of it. 0 means no cap.
	MaxEventsPerSec float64
	// NoDeleteHints writes every create, even those the spool's delete index says a later
	// event deletes (hints.go): for comparisons; the result is the same.
	NoDeleteHints bool
}

// RetryPolicy says how often and how patiently a transaction is retried on transient errors.
type RetryPolicy struct {
	Attempts int           // tries per transaction including the first; 0 means 12, 1 disables retries
	MinDelay time.Duration // backoff before the second try; 0 means 100 ms
	MaxDelay time.Duration // backoff cap; 0 means 10 s
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.Attempts <= 0 {
		p.Attempts = 12
	}
	if p.MinDelay <= 0 {
		p.MinDelay = 100 * time.Millisecond
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = 10 * time.Second
	}
	if p.MaxDelay < p.MinDelay {
		p.MaxDelay = p.MinDelay
	}
	return p
}

func (c Config) withDefaults() (Config, error) {
	if c.DatabaseURL == "" {
		return c, errors.New("loader: config: database URL is required")
	}
	if c.Service == "" {
		c.Service = DefaultService
	}
	if c.Workers < 0 || c.BatchSize < 0 {
		return c, fmt.Errorf("loader: config: workers (%d) and batch size (%d) must not be negative", c.Workers, c.BatchSize)
	}
	if c.Workers == 0 {
		c.Workers = DefaultWorkers
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if !c.Since.IsZero() && !c.Until.IsZero() && !c.Since.Before(c.Until) {
		return c, fmt.Errorf("loader: config: since (%s) must be before until (%s)", c.Since.Format(time.RFC3339), c.Until.Format(time.RFC3339))
	}
	for _, col := range c.Collections {
		if col == decode.CollectionOther || col >= decode.NumCollections {
			return c, fmt.Errorf("loader: config: collection %d is not one load writes", col)
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Retry = c.Retry.withDefaults()
	return c, nil
}

const redacted = "xxxxx"

var (
	kvPassword  = regexp.MustCompile(`((?:^|\s)(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)`)
	urlUserinfo = regexp.MustCompile(`^([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@?#]*:)[^@]*(@)`)
)

// RedactDSN returns dsn with every password (URL userinfo, password and sslpassword query
// parameters, key=value password fields) replaced by xxxxx, for logs and error messages.
func RedactDSN(dsn string) string {
	if strings.Contains(dsn, "://") {
		u, err := url.Parse(dsn)
		if err != nil {
			// Unparseable: mask everything between the first ':' after the scheme and the last '@'.
			return urlUserinfo.ReplaceAllString(kvQueryPassword(dsn), "${1}"+redacted+"${2}")
		}
		if u.User != nil {
			if _, ok := u.User.Password(); ok {
				u.User = url.UserPassword(u.User.Username(), redacted)
			}
		}
		q := u.Query()
		changed := false
		for key := range q {
			if k := strings.ToLower(key); k == "password" || k == "sslpassword" {
				q.Set(key, redacted)
				changed = true
			}
		}
		if changed {
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	return kvPassword.ReplaceAllString(dsn, "${1}"+redacted)
}

var queryPassword = regexp.MustCompile(`((?i:[?&](?:ssl)?password)=)[^&#]*`)

func kvQueryPassword(s string) string {
	return queryPassword.ReplaceAllString(s, "${1}"+redacted)
}

// scrubbedError keeps a cause for errors.Is/As but prints a message with secrets masked.
type scrubbedError struct {
	msg   string
	cause error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.cause }

// scrub masks each non-empty secret in err's message.
func scrub(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	changed := false
	for _, s := range secrets {
		if s != "" && strings.Contains(msg, s) {
			msg = strings.ReplaceAll(msg, s, redacted)
			changed = true
		}
	}
	if !changed {
		return err
	}
	return &scrubbedError{msg: msg, cause: err}
}
