package relaytest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Path is the endpoint the relay serves.
const Path = "/xrpc/com.atproto.sync.subscribeRepos"

// Defaults for zero Config fields.
const (
	DefaultUsers    = 100
	DefaultInterval = 5 * time.Millisecond
)

// Config says what the relay generates and how it serves it.
type Config struct {
	Seed   int64 // everything generated derives from it
	Users  int   // accounts, each with its own repository and key; 0 = DefaultUsers
	Events int   // events in the log at start

	FirstSeq int64 // seq of the first event; 0 = 1
	Gaps     bool  // seqs increase by random gaps (5% of events) instead of by 1

	StartTime time.Time     // time of the first event; zero = Events*Interval before now
	Interval  time.Duration // event i's time is StartTime + i*Interval; 0 = DefaultInterval

	Retention int  // serve only the last Retention events; 0 = all
	Inclusive bool // replay includes the cursor's own event (as the public relay does)
	// NoFutureCursor serves a cursor past the head as indigo's relay does: no FutureCursor
	// error frame, nothing replayed, the live frames from there on.
	NoFutureCursor bool
	// NoOutdatedInfo replays a cursor older than the retained events from the oldest one without
	// the #info OutdatedCursor frame before it, as indigo's relay does.
	NoOutdatedInfo bool

	BadInput   bool // also emit each kind of bad input at a small rate
	Collisions bool // emit duplicate pairs, re-creates and quick create/delete on purpose

	LiveRate float64 // events per second generated and broadcast after New; 0 = none
}

// Frame is one event of the log exactly as the relay sends it.
type Frame struct {
	Seq   int64     // the event's seq (also for frames whose body carries none: #info, garbage)
	Time  time.Time // the event's time, as the frame carries it (milliseconds, UTC)
	Bytes []byte    // the websocket message: header then body; shared, never modify
	Kind  string    // KindCommit, KindIdentity, ...
}

// ConnInfo records one subscription request the relay received.
type ConnInfo struct {
	Cursor *int64    // the cursor query parameter; nil when absent
	Status int       // 101 when upgraded, else the HTTP status the request was refused with
	Fault  FaultKind // the stream fault the connection took (FaultNone if none)
}

// Relay is an in-process relay serving a generated log on 127.0.0.1.
type Relay struct {
	cfg    Config
	faults *Faults
	url    string

	genMu sync.Mutex // serializes generation and publication
	gen   *generator

	mu     sync.Mutex // guards log and notify
	log    []Frame
	notify chan struct{} // closed and replaced on every publication

	connMu   sync.Mutex
	connLog  []ConnInfo
	netConns map[net.Conn]struct{}

	srv       *http.Server
	upgrader  websocket.Upgrader
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// ErrConfig is returned by New for an invalid Config.
var ErrConfig = errors.New("relaytest: invalid config")

// New generates cfg.Events events and starts serving them on 127.0.0.1.
func New(cfg Config) (*Relay, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	r := &Relay{
		cfg:      cfg,
		faults:   &Faults{},
		gen:      newGenerator(cfg),
		notify:   make(chan struct{}),
		netConns: make(map[net.Conn]struct{}),
		upgrader: websocket.Upgrader{
			ReadBufferSize:  4096,
			WriteBufferSize: 4096,
			CheckOrigin:     func(*http.Request) bool { return true },
		},
	}
	frames, err := r.gen.generate(cfg.Events)
	if err != nil {
		return nil, fmt.Errorf("generate log: %w", err)
	}
	r.log = frames

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	r.url = "ws://" + ln.Addr().String()
	r.ctx, r.cancel = context.WithCancel(context.Background())
	mux := http.NewServeMux()
	mux.HandleFunc(Path, r.handle)
	r.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		_ = r.srv.Serve(ln) // returns http.ErrServerClosed on Close
	}()
	if cfg.LiveRate > 0 {
		r.wg.Add(1)
		go r.live(cfg.LiveRate)
	}
	return r, nil
}

// withDefaults checks cfg and fills in its zero fields.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Events < 0 || cfg.Users < 0 || cfg.Retention < 0 || cfg.LiveRate < 0 || cfg.Interval < 0 {
		return cfg, fmt.Errorf("%w: negative Events, Users, Retention, LiveRate or Interval", ErrConfig)
	}
	if cfg.Users == 0 {
		cfg.Users = DefaultUsers
	}
	if cfg.FirstSeq == 0 {
		cfg.FirstSeq = 1
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.StartTime.IsZero() {
		cfg.StartTime = time.Now().Add(-time.Duration(cfg.Events) * cfg.Interval)
	}
	cfg.StartTime = cfg.StartTime.UTC().Truncate(time.Millisecond)
	return cfg, nil
}

// URL returns the relay's address as ws://127.0.0.1:PORT (the endpoint is at Path).
func (r *Relay) URL() string { return r.url }

// Close stops generation, drops every connection and waits for the relay's goroutines.
func (r *Relay) Close() {
	r.closeOnce.Do(func() {
		r.cancel()
		_ = r.srv.Close()
		r.connMu.Lock()
		for c := range r.netConns {
			_ = c.Close()
		}
		r.connMu.Unlock()
		r.wg.Wait()
	})
}

// Log returns every event generated so far, in seq order. The frames are shared: never modify them.
func (r *Relay) Log() []Frame {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.log[:len(r.log):len(r.log)]
}

// Head returns the seq of the newest event (FirstSeq-1 when the log is empty).
func (r *Relay) Head() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.log) == 0 {
		return r.cfg.FirstSeq - 1
	}
	return r.log[len(r.log)-1].Seq
}

// Faults returns the relay's fault injection, which may be changed while it serves.
func (r *Relay) Faults() *Faults { return r.faults }

// Conns returns every subscription request received so far, in arrival order.
func (r *Relay) Conns() []ConnInfo {
	r.connMu.Lock()
	defer r.connMu.Unlock()
	return append([]ConnInfo(nil), r.connLog...)
}

// Config returns the configuration in use, with defaults filled in.
func (r *Relay) Config() Config { return r.cfg }

// DID returns the DID of generated account i (0 <= i < Users).
func (r *Relay) DID(i int) string { return r.gen.users[i].did }

// Append generates n more events now and broadcasts them. It panics if generation fails,
// which only a bug in this package can cause.
func (r *Relay) Append(n int) {
	r.genMu.Lock()
	defer r.genMu.Unlock()
	frames, err := r.gen.generate(n)
	if err != nil {
		panic(fmt.Sprintf("relaytest: generate: %v", err))
	}
	r.publish(frames...)
}

// publish appends frames to the log and wakes every connection. Callers hold genMu.
func (r *Relay) publish(frames ...Frame) {
	if len(frames) == 0 {
		return
	}
	r.mu.Lock()
	r.log = append(r.log, frames...)
	close(r.notify)
	r.notify = make(chan struct{})
	r.mu.Unlock()
}

// live appends events at rate per second until Close.
func (r *Relay) live(rate float64) {
	defer r.wg.Done()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	done := 0
	for {
		select {
		case <-r.ctx.Done():
			return
		case now := <-tick.C:
			due := int(now.Sub(start).Seconds()*rate) - done
			if due > 10_000 {
				due = 10_000
			}
			if due > 0 {
				r.Append(due)
				done += due
			}
		}
	}
}

// index returns the log position of the first event to replay for cursor, and whether events
// the cursor asked for were dropped by retention (OutdatedCursor).
func (r *Relay) index(log []Frame, cursor int64) (start int, outdated bool) {
	start = sort.Search(len(log), func(i int) bool {
		if r.cfg.Inclusive {
			return log[i].Seq >= cursor
		}
		return log[i].Seq > cursor
	})
	if r.cfg.Retention > 0 && len(log) > r.cfg.Retention {
		oldest := len(log) - r.cfg.Retention
		if start < oldest {
			return oldest, true
		}
	}
	return start, false
}
