package firehose_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	comatproto "github.com/bluesky-social/indigo/api/atproto"
	"github.com/bluesky-social/indigo/atproto/atdata"
	"github.com/bluesky-social/indigo/events"
	"github.com/gorilla/websocket"

	"github.com/backfill/backfill/firehose"
	"github.com/backfill/backfill/relaytest"
	"github.com/backfill/backfill/spool"
)

func newRelay(t testing.TB, cfg relaytest.Config) *relaytest.Relay {
	t.Helper()
	r, err := relaytest.New(cfg)
	if err != nil {
		t.Fatalf("start test relay: %v", err)
	}
	t.Cleanup(r.Close)
	return r
}

func endpoint(t testing.TB, r *relaytest.Relay) *url.URL {
	t.Helper()
	u, err := firehose.Endpoint(r.URL())
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

type record struct {
	seq   int64
	frame []byte
}

// fetchInto runs Fetch into a fresh spool writer (sealed at the end) and returns the error.
func fetchInto(t testing.TB, dir string, cfg firehose.Config, st *firehose.Stats) error {
	t.Helper()
	sp, err := spool.Open(dir, spool.Options{SegmentBytes: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	w, err := sp.NewWriter(cfg.Endpoint.Host)
	if err != nil {
		t.Fatal(err)
	}
	if tail, err := sp.Tail(); err != nil {
		t.Fatal(err)
	} else if !tail.Empty {
		c := tail.Seq
		cfg.Cursor, cfg.After = &c, c
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff, cfg.MaxBackoff = 10*time.Millisecond, 50*time.Millisecond
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 500 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ferr := firehose.Fetch(ctx, cfg, w, st)
	if err := w.Close(); err != nil {
		t.Fatalf("seal: %v", err)
	}
	return ferr
}

// readAll returns every record of the spool's sealed segments, in order.
func readAll(t testing.TB, dir string) []record {
	t.Helper()
	segs, err := spool.ListSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []record
	for _, s := range segs {
		r, err := spool.OpenSegment(s.Path)
		if err != nil {
			t.Fatal(err)
		}
		for {
			rec, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("read %s: %v", s.Name, err)
			}
			out = append(out, record{rec.Seq, bytes.Clone(rec.Frame)})
		}
		r.Close()
	}
	return out
}

// wantFrames is the log from seq `from` on, without frames that carry no seq of their own
// (#info) — exactly what a spool must hold.
func wantFrames(r *relaytest.Relay, from, to int64) []record {
	var out []record
	for _, f := range r.Log() {
		if f.Seq < from || (to > 0 && f.Seq > to) || f.Kind == relaytest.KindInfo {
			continue
		}
		out = append(out, record{f.Seq, f.Bytes})
	}
	return out
}

func sameRecords(t testing.TB, got, want []record) {
	t.Helper()
	if len(got) != len(want) {
		first := func(rs []record) string {
			if len(rs) == 0 {
				return "none"
			}
			return fmt.Sprintf("%d..%d", rs[0].seq, rs[len(rs)-1].seq)
		}
		t.Fatalf("spool holds %d frames (%s), want %d (%s)", len(got), first(got), len(want), first(want))
	}
	for i := range got {
		if got[i].seq != want[i].seq {
			t.Fatalf("frame %d: seq %d, want %d", i, got[i].seq, want[i].seq)
		}
		if !bytes.Equal(got[i].frame, want[i].frame) {
			t.Fatalf("frame %d (seq %d): bytes differ from what the relay sent", i, got[i].seq)
		}
	}
}

func cursor(v int64) *int64 { return &v }

func TestFetchReplay(t *testing.T) {
	t.Parallel()
	for _, inclusive := range []bool{false, true} {
		t.Run(fmt.Sprintf("inclusive=%v", inclusive), func(t *testing.T) {
			t.Parallel()
			r := newRelay(t, relaytest.Config{Seed: 1, Users: 20, Events: 1500, Inclusive: inclusive, Gaps: true})
			dir := t.TempDir()
			var st firehose.Stats
			err := fetchInto(t, dir, firehose.Config{Endpoint: endpoint(t, r), Cursor: cursor(0), Head: r.Head()}, &st)
			if err != nil {
				t.Fatal(err)
			}
			sameRecords(t, readAll(t, dir), wantFrames(r, 0, 0))
			if got := st.LastSeq.Load(); got != r.Head() {
				t.Errorf("last seq %d, want head %d", got, r.Head())
			}

			// A second fetch continues from the tail: with more events it keeps only the new ones.
			r.Append(200)
			var st2 firehose.Stats
			if err := fetchInto(t, dir, firehose.Config{Endpoint: endpoint(t, r), Head: r.Head()}, &st2); err != nil {
				t.Fatal(err)
			}
			sameRecords(t, readAll(t, dir), wantFrames(r, 0, 0))
			if inclusive && st2.Duplicates.Load() != 1 {
				t.Errorf("inclusive relay: %d duplicates counted, want the cursor event once", st2.Duplicates.Load())
			}
		})
	}
}

func TestFetchFaults(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		fault      relaytest.Fault
		reconnects bool
	}{
		{"drop", relaytest.Fault{Kind: relaytest.FaultDrop, After: 300}, true},
		{"half frame", relaytest.Fault{Kind: relaytest.FaultHalfFrame, After: 300}, true},
		{"stall", relaytest.Fault{Kind: relaytest.FaultStall, After: 300}, true},
		{"consumer too slow", relaytest.Fault{Kind: relaytest.FaultTooSlow, After: 300}, true},
		{"repeat", relaytest.Fault{Kind: relaytest.FaultRepeat, After: 300}, false},
		{"backwards", relaytest.Fault{Kind: relaytest.FaultBackwards, After: 300}, false},
		{"unknown frame", relaytest.Fault{Kind: relaytest.FaultUnknownFrame, After: 300}, false},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRelay(t, relaytest.Config{Seed: int64(10 + i), Users: 10, Events: 800})
			r.Faults().Add(tc.fault)
			dir := t.TempDir()
			var st firehose.Stats
			cfg := firehose.Config{Endpoint: endpoint(t, r), Cursor: cursor(0), Head: r.Head(),
				Dial: firehose.DialOptions{ReadTimeout: time.Second}}
			if err := fetchInto(t, dir, cfg, &st); err != nil {
				t.Fatal(err)
			}
			sameRecords(t, readAll(t, dir), wantFrames(r, 0, 0))
			if got := st.Reconnects.Load() > 0; got != tc.reconnects {
				t.Errorf("reconnected: %v, want %v (reconnects %d)", got, tc.reconnects, st.Reconnects.Load())
			}
			switch tc.fault.Kind {
			case relaytest.FaultRepeat:
				if st.Duplicates.Load() == 0 {
					t.Error("a repeated seq was not counted")
				}
			case relaytest.FaultBackwards:
				if st.Backwards.Load() == 0 {
					t.Error("a backwards seq was not counted")
				}
			case relaytest.FaultUnknownFrame:
				if st.Unknown.Load() == 0 {
					t.Error("unknown frames were not counted")
				}
			}
			// Every reconnect resumed from the last kept seq.
			conns := r.Conns()
			for _, c := range conns[1:] {
				if c.Status == 101 && (c.Cursor == nil || *c.Cursor == 0) {
					t.Errorf("a reconnect asked for cursor %v, want the last kept seq", c.Cursor)
				}
			}
		})
	}
}

func TestFetchRetryAfter(t *testing.T) {
	t.Parallel()
	for _, status := range []int{429, 503} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			t.Parallel()
			r := newRelay(t, relaytest.Config{Seed: 3, Users: 5, Events: 100})
			r.Faults().Reject(status, 2)
			dir := t.TempDir()
			var st firehose.Stats
			if err := fetchInto(t, dir, firehose.Config{Endpoint: endpoint(t, r), Cursor: cursor(0), Head: r.Head()}, &st); err != nil {
				t.Fatal(err)
			}
			sameRecords(t, readAll(t, dir), wantFrames(r, 0, 0))
			// The test relay sends Retry-After with its 429s: both were honoured.
			if want := map[int]int64{429: 2, 503: 0}[status]; st.RetryAfters.Load() != want {
				t.Errorf("%d Retry-After headers honoured, want %d", st.RetryAfters.Load(), want)
			}
			// Two refused, then served. A served connection lost on the way (the machine's
			// load) is reconnected from the last kept seq and counted: nothing else may follow.
			conns := r.Conns()
			served, refused := 0, 0
			for i, c := range conns {
				switch {
				case c.Status == status && i < 2:
					refused++
				case c.Status == 101 && i >= 2:
					served++
				}
			}
			if refused != 2 || served < 1 || served-1 != int(st.Reconnects.Load()) || refused+served != len(conns) {
				t.Errorf("connection attempts %+v (reconnects %d), want two refused with %d, then one served (and one more for each reconnect)", conns, st.Reconnects.Load(), status)
			}
		})
	}
}

func TestFetchPermanentErrors(t *testing.T) {
	t.Parallel()
	t.Run("404", func(t *testing.T) {
		r := newRelay(t, relaytest.Config{Seed: 4, Users: 2, Events: 10})
		r.Faults().Reject(404, 1)
		err := fetchInto(t, t.TempDir(), firehose.Config{Endpoint: endpoint(t, r), Cursor: cursor(0)}, &firehose.Stats{})
		if !errors.Is(err, firehose.ErrPermanent) {
			t.Fatalf("got %v, want a permanent error", err)
		}
	})
	t.Run("future cursor", func(t *testing.T) {
		r := newRelay(t, relaytest.Config{Seed: 4, Users: 2, Events: 10})
		err := fetchInto(t, t.TempDir(), firehose.Config{Endpoint: endpoint(t, r), Cursor: cursor(r.Head() + 1000)}, &firehose.Stats{})
		if !errors.Is(err, firehose.ErrFutureCursor) {
			t.Fatalf("got %v, want ErrFutureCursor", err)
		}
	})
	// Answers that are not an upgrade and that retrying cannot change stop the fetch at once,
	// with what the server said.
	for name, tc := range map[string]struct {
		handler http.HandlerFunc
		scheme  string // of the URL given
		want    string // in the error
	}{
		"redirect": {func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "wss://relay.example/xrpc/com.atproto.sync.subscribeRepos", http.StatusMovedPermanently)
		}, "ws", "redirected to wss://relay.example/"},
		"not a firehose endpoint": {func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, "<html>a web page</html>")
		}, "ws", "a web page"},
		"no TLS on a wss URL": {func(w http.ResponseWriter, r *http.Request) {}, "wss", "TLS"},
	} {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			u, err := firehose.Endpoint(tc.scheme + "://" + srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err = firehose.Fetch(ctx, firehose.Config{Endpoint: u, Cursor: cursor(0), Logger: testLogger(t)}, &sliceSink{}, &firehose.Stats{})
			if !errors.Is(err, firehose.ErrPermanent) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a permanent error saying %q", err, tc.want)
			}
		})
	}
	t.Run("a page once connected", func(t *testing.T) {
		// After a served connection, a page instead of the upgrade is the relay's moment
		// (maintenance, a CDN): retried, and the fetch goes on.
		r := newRelay(t, relaytest.Config{Seed: 19, Users: 5, Events: 100})
		r.Faults().Add(relaytest.Fault{Kind: relaytest.FaultStall, After: 50})
		done := make(chan error, 1)
		var sink sliceSink
		go func() {
			done <- firehose.Fetch(context.Background(), firehose.Config{Endpoint: endpoint(t, r), Cursor: cursor(0), Head: r.Head(), Logger: testLogger(t),
				IdleTimeout: 300 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}, &sink, &firehose.Stats{})
		}()
		for len(r.Conns()) == 0 {
			time.Sleep(time.Millisecond)
		}
		r.Faults().Reject(http.StatusOK, 2)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if len(sink.seqs) != 100 {
			t.Errorf("kept %d frames, want 100", len(sink.seqs))
		}
		if n := len(r.Conns()); n != 4 {
			t.Errorf("%d connection attempts, want 4 (served, two pages, served)", n)
		}
	})
	t.Run("bad urls", func(t *testing.T) {
		for _, u := range []string{"", "ftp://x", "wss://", "wss://host/some/other/path"} {
			if _, err := firehose.Endpoint(u); !errors.Is(err, firehose.ErrPermanent) {
				t.Errorf("Endpoint(%q): got %v, want a permanent error", u, err)
			}
		}
	})
}

func TestEndpoint(t *testing.T) {
	cases := map[string]string{
		"bsky.network":          "wss://bsky.network/xrpc/com.atproto.sync.subscribeRepos",
		"wss://bsky.network":    "wss://bsky.network/xrpc/com.atproto.sync.subscribeRepos",
		"ws://127.0.0.1:2583":   "ws://127.0.0.1:2583/xrpc/com.atproto.sync.subscribeRepos",
		"https://relay.example": "wss://relay.example/xrpc/com.atproto.sync.subscribeRepos",
		"wss://bsky.network/xrpc/com.atproto.sync.subscribeRepos?cursor=5": "wss://bsky.network/xrpc/com.atproto.sync.subscribeRepos",
	}
	for in, want := range cases {
		u, err := firehose.Endpoint(in)
		if err != nil {
			t.Errorf("Endpoint(%q): %v", in, err)
			continue
		}
		if u.String() != want {
			t.Errorf("Endpoint(%q) = %s, want %s", in, u, want)
		}
	}
	u, _ := firehose.Endpoint("wss://BSKY.network:443")
	if got := firehose.Host(u); got != "bsky.network" {
		t.Errorf("Host = %q, want bsky.network", got)
	}
}

func TestFetchOutdatedCursor(t *testing.T) {
	t.Parallel()
	r := newRelay(t, relaytest.Config{Seed: 5, Users: 10, Events: 600, Retention: 200})
	dir := t.TempDir()
	var st firehose.Stats
	if err := fetchInto(t, dir, firehose.Config{Endpoint: endpoint(t, r), Cursor: cursor(1), Head: r.Head()}, &st); err != nil {
		t.Fatal(err)
	}
	log := r.Log()
	oldest := log[len(log)-200].Seq
	sameRecords(t, readAll(t, dir), wantFrames(r, oldest, 0))
	if st.Infos.Load() == 0 {
		t.Error("the OutdatedCursor info frame was not counted")
	}
}

// TestFetchResumeGap resumes after seq 100 of a relay that holds only its last 200 of 600
// events (ten seconds apart): one that says so with #info OutdatedCursor, one that replays from
// its oldest event without a word (as indigo's relay does), which the jump in event time
// betrays (Stats.Gaps, and a warning), and one that still holds the cursor.
func TestFetchResumeGap(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name             string
		cfg              relaytest.Config
		wantGaps, wantOK int64
	}{
		{"outdated cursor info", relaytest.Config{Retention: 200}, 0, 1},
		{"silent", relaytest.Config{Retention: 200, NoOutdatedInfo: true}, 1, 0},
		{"cursor held", relaytest.Config{}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := tc.cfg
			cfg.Seed, cfg.Users, cfg.Events, cfg.Interval = 16, 10, 600, 10*time.Second
			r := newRelay(t, cfg)
			log := r.Log()
			after := log[99]
			var st firehose.Stats
			var sink sliceSink
			err := firehose.Fetch(context.Background(), firehose.Config{Endpoint: endpoint(t, r), Cursor: cursor(after.Seq), After: after.Seq, AfterTime: after.Time,
				Head: r.Head(), Logger: testLogger(t)}, &sink, &st)
			if err != nil {
				t.Fatal(err)
			}
			if got := st.Gaps.Load(); got != tc.wantGaps {
				t.Errorf("%d gaps, want %d", got, tc.wantGaps)
			}
			if got := st.Infos.Load(); got != tc.wantOK {
				t.Errorf("%d info frames, want %d", got, tc.wantOK)
			}
			first := log[100].Seq
			if cfg.Retention > 0 {
				first = log[400].Seq
			}
			if len(sink.seqs) == 0 || sink.seqs[0] != first {
				t.Errorf("first kept seq %v, want %d", sink.seqs[:min(1, len(sink.seqs))], first)
			}
		})
	}
}

func TestFetchStops(t *testing.T) {
	t.Parallel()
	t.Run("until cursor", func(t *testing.T) {
		t.Parallel()
		r := newRelay(t, relaytest.Config{Seed: 6, Users: 10, Events: 500})
		dir := t.TempDir()
		stop := r.Log()[300].Seq
		if err := fetchInto(t, dir, firehose.Config{Endpoint: endpoint(t, r), Cursor: cursor(0), StopSeq: stop, Head: r.Head()}, &firehose.Stats{}); err != nil {
			t.Fatal(err)
		}
		sameRecords(t, readAll(t, dir), wantFrames(r, 0, stop))
	})
	t.Run("until cursor in a gap, then already there", func(t *testing.T) {
		t.Parallel()
		r := newRelay(t, relaytest.Config{Seed: 12, Users: 10, Events: 500, Gaps: true})
		dir := t.TempDir()
		log := r.Log()
		var stop int64
		for i := 1; i < len(log); i++ {
			if log[i].Seq > log[i-1].Seq+1 && i > 200 {
				stop = log[i].Seq - 1 // not an event: the fetch must keep nothing after it
				break
			}
		}
		if stop == 0 {
			t.Fatal("no gap in the log")
		}
		if err := fetchInto(t, dir, firehose.Config{Endpoint: endpoint(t, r), Cursor: cursor(0), StopSeq: stop, Head: r.Head()}, &firehose.Stats{}); err != nil {
			t.Fatal(err)
		}
		sameRecords(t, readAll(t, dir), wantFrames(r, 0, stop))
		before := len(r.Conns())
		kept := wantFrames(r, 0, stop)
		if err := fetchInto(t, dir, firehose.Config{Endpoint: endpoint(t, r), StopSeq: kept[len(kept)-1].seq}, &firehose.Stats{}); err != nil {
			t.Fatal(err)
		}
		if after := len(r.Conns()); after != before {
			t.Errorf("a fetch whose spool already reaches its stop point connected to the relay (%d connections, then %d)", before, after)
		}
		sameRecords(t, readAll(t, dir), wantFrames(r, 0, stop))
	})
	t.Run("until time", func(t *testing.T) {
		t.Parallel()
		r := newRelay(t, relaytest.Config{Seed: 7, Users: 10, Events: 500, Interval: time.Second})
		log := r.Log()
		// The second stop time has fewer events after it than confirm a stop: the stream's end
		// does.
		for _, i := range []int{250, 490} {
			dir := t.TempDir()
			if err := fetchInto(t, dir, firehose.Config{Endpoint: endpoint(t, r), Cursor: cursor(0), StopTime: log[i].Time, Head: r.Head()}, &firehose.Stats{}); err != nil {
				t.Fatal(err)
			}
			sameRecords(t, readAll(t, dir), wantFrames(r, 0, log[i-1].Seq))
		}
	})
	for _, tc := range []struct{ stall, head bool }{{false, true}, {true, true}, {true, false}} {
		// An event whose PDS's clock runs years ahead, amid events before the stop time: kept
		// with them, and the fetch goes on to the real stop, also when the relay stalls right
		// after it, short of its head, known or not (the fetch reconnects).
		stall := tc.stall
		t.Run(fmt.Sprintf("until time with a clock running ahead, stall=%v head=%v", tc.stall, tc.head), func(t *testing.T) {
			t.Parallel()
			r := newRelay(t, relaytest.Config{Seed: 15, Users: 10, Events: 300, Interval: time.Second})
			seq := r.Head() + 1
			var buf bytes.Buffer
			ahead := &events.XRPCStreamEvent{RepoIdentity: &comatproto.SyncSubscribeRepos_Identity{Did: "did:plc:skewed", Seq: seq, Time: "2099-01-01T00:00:00.000Z"}}
			if err := ahead.Serialize(&buf); err != nil {
				t.Fatal(err)
			}
			if got := r.AppendRaw(relaytest.KindIdentity, buf.Bytes()); got != seq {
				t.Fatalf("appended at seq %d, want %d", got, seq)
			}
			r.Append(200)
			if stall {
				r.Faults().Add(relaytest.Fault{Kind: relaytest.FaultStall, After: 301})
			}
			log := r.Log()
			dir := t.TempDir()
			cfg := firehose.Config{Endpoint: endpoint(t, r), Cursor: cursor(0), StopTime: log[400].Time}
			if tc.head {
				cfg.Head = r.Head()
			}
			if err := fetchInto(t, dir, cfg, &firehose.Stats{}); err != nil {
				t.Fatal(err)
			}
			sameRecords(t, readAll(t, dir), wantFrames(r, 0, log[399].Seq))
		})
	}
	t.Run("days window, a frame without a time before it", func(t *testing.T) {
		// A frame whose time is not a text (an unknown type: read, with its seq and no time)
		// before the first frame at or after MinTime is before the window, as the others are.
		t.Parallel()
		r := newRelay(t, relaytest.Config{Seed: 20, Users: 10, Events: 300, Interval: time.Second})
		r.AppendRaw(relaytest.KindFoo, untimedFrame(t, r.Head()+1))
		r.Append(100)
		log := r.Log()
		dir := t.TempDir()
		if err := fetchInto(t, dir, firehose.Config{Endpoint: endpoint(t, r), Cursor: cursor(0), MinTime: log[350].Time, Head: r.Head()}, &firehose.Stats{}); err != nil {
			t.Fatal(err)
		}
		sameRecords(t, readAll(t, dir), wantFrames(r, log[350].Seq, 0))
	})
	t.Run("days window and until time, a clock running ahead, then a drop", func(t *testing.T) {
		// The frame whose clock runs ahead comes before the --days window and is held; the
		// connection drops before anything is kept. The replay from the start is still
		// outside the window until its first frame at or after MinTime.
		t.Parallel()
		r := newRelay(t, relaytest.Config{Seed: 22, Users: 10, Events: 300, Interval: time.Second})
		var buf bytes.Buffer
		ahead := &events.XRPCStreamEvent{RepoIdentity: &comatproto.SyncSubscribeRepos_Identity{Did: "did:plc:skewed", Seq: r.Head() + 1, Time: "2099-01-01T00:00:00.000Z"}}
		if err := ahead.Serialize(&buf); err != nil {
			t.Fatal(err)
		}
		skewed := r.AppendRaw(relaytest.KindIdentity, buf.Bytes())
		r.Append(200)
		r.Faults().Add(relaytest.Fault{Kind: relaytest.FaultDrop, After: 301})
		log := r.Log()
		dir := t.TempDir()
		cfg := firehose.Config{Endpoint: endpoint(t, r), Cursor: cursor(0), MinTime: log[350].Time, StopTime: log[450].Time, Head: r.Head()}
		if err := fetchInto(t, dir, cfg, &firehose.Stats{}); err != nil {
			t.Fatal(err)
		}
		// The held frame is kept once a frame in the window follows it.
		want := append(wantFrames(r, skewed, skewed), wantFrames(r, log[350].Seq, log[449].Seq)...)
		sameRecords(t, readAll(t, dir), want)
	})
	t.Run("head probed, no logger", func(t *testing.T) {
		// Config.Logger is optional: the head probe's goroutine logs through the default.
		t.Parallel()
		r := newRelay(t, relaytest.Config{Seed: 21, Users: 5, Events: 100, LiveRate: 100})
		u := endpoint(t, r)
		var sink sliceSink
		err := firehose.Fetch(context.Background(), firehose.Config{Endpoint: u, Cursor: cursor(0), HeadProbe: &firehose.Prober{Endpoint: u, Wait: 2 * time.Second},
			MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, IdleTimeout: 2 * time.Second}, &sink, &firehose.Stats{})
		if err != nil || len(sink.seqs) < 100 {
			t.Fatalf("got %v with %d frames, want the 100 replayed and more", err, len(sink.seqs))
		}
	})
	t.Run("head while live events arrive", func(t *testing.T) {
		t.Parallel()
		r := newRelay(t, relaytest.Config{Seed: 8, Users: 10, Events: 500, LiveRate: 200})
		head := r.Head()
		dir := t.TempDir()
		if err := fetchInto(t, dir, firehose.Config{Endpoint: endpoint(t, r), Cursor: cursor(0), Head: head, IdleTimeout: time.Minute}, &firehose.Stats{}); err != nil {
			t.Fatal(err)
		}
		sameRecords(t, readAll(t, dir), wantFrames(r, 0, head))
	})
	t.Run("idle quiet relay without head", func(t *testing.T) {
		t.Parallel()
		r := newRelay(t, relaytest.Config{Seed: 9, Users: 10, Events: 300})
		dir := t.TempDir()
		if err := fetchInto(t, dir, firehose.Config{Endpoint: endpoint(t, r), Cursor: cursor(0)}, &firehose.Stats{}); err != nil {
			t.Fatal(err)
		}
		sameRecords(t, readAll(t, dir), wantFrames(r, 0, 0))
	})
	t.Run("cancel", func(t *testing.T) {
		t.Parallel()
		r := newRelay(t, relaytest.Config{Seed: 10, Users: 10, Events: 300, LiveRate: 100})
		dir := t.TempDir()
		sp, err := spool.Open(dir, spool.Options{})
		if err != nil {
			t.Fatal(err)
		}
		w, err := sp.NewWriter("relay")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		defer cancel()
		err = firehose.Fetch(ctx, firehose.Config{Endpoint: endpoint(t, r), Cursor: cursor(0), Follow: true}, w, &firehose.Stats{})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want the context's error", err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		sp.Close()
		got := readAll(t, dir)
		if len(got) <= 300 {
			t.Fatalf("followed %d frames, want the 300 replayed and some live ones", len(got))
		}
		sameRecords(t, got, wantFrames(r, 0, got[len(got)-1].seq))
	})
}

func TestFindStart(t *testing.T) {
	t.Parallel()
	start := time.Now().Add(-100 * time.Hour).Truncate(time.Millisecond)
	r := newRelay(t, relaytest.Config{Seed: 11, Users: 10, Events: 4000, StartTime: start, Interval: 90 * time.Second, Gaps: true})
	log := r.Log()
	headF := log[len(log)-1]
	head := firehose.Point{Seq: headF.Seq, Time: headF.Time}
	for _, tc := range []struct {
		name   string
		cutoff time.Time
	}{
		{"middle", start.Add(50 * time.Hour)},
		{"near the end", start.Add(99 * time.Hour)},
		{"at an event", log[1234].Time},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, withHead := range []bool{true, false} {
				p := &firehose.Prober{Endpoint: endpoint(t, r), Wait: 500 * time.Millisecond, Logger: testLogger(t)}
				h := head
				if !withHead {
					h = firehose.Point{}
				}
				w, err := p.FindStart(context.Background(), tc.cutoff, h)
				if err != nil {
					t.Fatal(err)
				}
				// The cursor must be before the first event at or after the cutoff, and close to it.
				first := -1
				for i, f := range log {
					if !f.Time.Before(tc.cutoff) {
						first = i
						break
					}
				}
				if w.Cursor >= log[first].Seq {
					t.Errorf("head=%v: cursor %d is past the first event in the window (%d)", withHead, w.Cursor, log[first].Seq)
				}
				// Only a few hundred events before the window are replayed at most (the search
				// stops when it is that close).
				if first > 300 && w.Cursor < log[first-300].Seq {
					t.Errorf("head=%v: cursor %d replays from well before the window (its last outside event is %d)", withHead, w.Cursor, log[first-1].Seq)
				}
				if p.Probes > 20 {
					t.Errorf("head=%v: %d probes, want a handful", withHead, p.Probes)
				}
				t.Logf("head=%v: %d probes", withHead, p.Probes)
			}
		})
	}
	t.Run("out of reach", func(t *testing.T) {
		p := &firehose.Prober{Endpoint: endpoint(t, r), Wait: 500 * time.Millisecond}
		w, err := p.FindStart(context.Background(), start.Add(-24*time.Hour), head)
		if err != nil {
			t.Fatal(err)
		}
		if w.Cursor != 0 || w.OutOfReach < 23*time.Hour {
			t.Errorf("got cursor %d, out of reach %s; want 0 and about 24h", w.Cursor, w.OutOfReach)
		}
	})
}

// untimedFrame returns a frame of a type no one knows, with seq and a time that is not a
// text: it is read with its seq and no time.
func untimedFrame(t *testing.T, seq int64) []byte {
	t.Helper()
	var raw []byte
	for _, m := range []map[string]any{{"op": int64(1), "t": "#foo"}, {"seq": seq, "time": int64(5)}} {
		b, err := atdata.MarshalCBOR(m)
		if err != nil {
			t.Fatal(err)
		}
		raw = append(raw, b...)
	}
	return raw
}

// sliceSink keeps the seqs appended to it.
type sliceSink struct{ seqs []int64 }

func (s *sliceSink) Append(seq int64, _ time.Time, _ []byte) error {
	s.seqs = append(s.seqs, seq)
	return nil
}

func (s *sliceSink) Flush() error { return nil }

// TestFetchRelayBehind resumes after seq 1000 from a relay whose sequence only reaches 50 (it
// was reset, or it is another relay) and that, like indigo's relay, answers a cursor past its
// head with live frames instead of FutureCursor: the fetch fails with ErrRelayBehind, keeping
// nothing, whether it follows, knows the head, or learns it while it runs.
func TestFetchRelayBehind(t *testing.T) {
	t.Parallel()
	cases := map[string]func(r *relaytest.Relay, cfg *firehose.Config){
		"follow":     func(r *relaytest.Relay, cfg *firehose.Config) { cfg.Follow = true },
		"head known": func(r *relaytest.Relay, cfg *firehose.Config) { cfg.Head = r.Head() },
		"head probed": func(r *relaytest.Relay, cfg *firehose.Config) {
			cfg.HeadProbe = &firehose.Prober{Endpoint: cfg.Endpoint, Wait: 2 * time.Second}
		},
	}
	// A start cursor past the head, nothing kept: the relay does not have that position yet.
	t.Run("start cursor past the head", func(t *testing.T) {
		t.Parallel()
		r := newRelay(t, relaytest.Config{Seed: 12, Users: 5, Events: 50, LiveRate: 200, NoFutureCursor: true})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		var sink sliceSink
		err := firehose.Fetch(ctx, firehose.Config{Endpoint: endpoint(t, r), Cursor: cursor(1000), Follow: true, Logger: testLogger(t)}, &sink, &firehose.Stats{})
		if !errors.Is(err, firehose.ErrRelayBehind) || len(sink.seqs) != 0 {
			t.Fatalf("got %v and %d frames kept, want ErrRelayBehind and none", err, len(sink.seqs))
		}
	})
	// The first live frame is of an unknown type, whose seq proves nothing: the first known
	// one does.
	t.Run("first frame of an unknown type", func(t *testing.T) {
		t.Parallel()
		r := newRelay(t, relaytest.Config{Seed: 12, Users: 5, Events: 50, NoFutureCursor: true})
		done := make(chan error, 1)
		var sink sliceSink
		go func() {
			done <- firehose.Fetch(context.Background(), firehose.Config{Endpoint: endpoint(t, r), Cursor: cursor(1000), After: 1000, Follow: true, Logger: testLogger(t)}, &sink, &firehose.Stats{})
		}()
		for len(r.Conns()) == 0 {
			time.Sleep(time.Millisecond)
		}
		// The connection streams what the log gains from its request on.
		r.AppendRaw(relaytest.KindFoo, untimedFrame(t, r.Head()+1))
		r.Append(5)
		select {
		case err := <-done:
			if !errors.Is(err, firehose.ErrRelayBehind) || len(sink.seqs) != 0 {
				t.Fatalf("got %v and %d frames kept, want ErrRelayBehind and none", err, len(sink.seqs))
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the fetch went on below the cursor")
		}
	})
	for name, tweak := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := newRelay(t, relaytest.Config{Seed: 12, Users: 5, Events: 50, LiveRate: 200, NoFutureCursor: true})
			cfg := firehose.Config{Endpoint: endpoint(t, r), Cursor: cursor(1000), After: 1000, Logger: testLogger(t),
				MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, IdleTimeout: time.Second}
			tweak(r, &cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var sink sliceSink
			err := firehose.Fetch(ctx, cfg, &sink, &firehose.Stats{})
			if !errors.Is(err, firehose.ErrRelayBehind) {
				t.Fatalf("got %v, want ErrRelayBehind", err)
			}
			if len(sink.seqs) != 0 {
				t.Errorf("kept %d frames (%v...), want none", len(sink.seqs), sink.seqs[0])
			}
		})
	}
}

// TestFetchQuietRelayBehind: a relay like indigo's (no FutureCursor) with no live event
// streams nothing at all after a cursor past its head, which the idle replay alone cannot tell
// from the end of the stream. Fetches that start past the head (nothing kept, or resumed after
// a seq already kept) fail with ErrRelayBehind, on an exclusive and on an inclusive relay;
// fetches from the head itself, or short of it, end as caught up with what follows (and, on an
// inclusive relay, a start cursor's own event, which nothing kept before it covers). Whether
// the head is known at the start or probed (on a quiet relay: not found).
func TestFetchQuietRelayBehind(t *testing.T) {
	t.Parallel()
	for _, inclusive := range []bool{false, true} {
		for _, tc := range []struct {
			name   string
			cursor func(head int64) int64
			after  bool // resumed: the cursor is a seq already kept
			behind bool
			kept   int // frames kept when not behind
		}{
			{"start cursor past the head", func(h int64) int64 { return h + 1000 }, false, true, 0},
			{"resumed past the head", func(h int64) int64 { return h + 1000 }, true, true, 0},
			{"resumed just past the head", func(h int64) int64 { return h + 1 }, true, true, 0},
			{"start cursor at the head", func(h int64) int64 { return h }, false, false, 0},
			{"resumed at the head", func(h int64) int64 { return h }, true, false, 0},
			{"resumed short of the head", func(h int64) int64 { return h - 5 }, true, false, 5},
		} {
			for _, headKnown := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s inclusive=%v head known=%v", tc.name, inclusive, headKnown), func(t *testing.T) {
					t.Parallel()
					r := newRelay(t, relaytest.Config{Seed: 14, Users: 5, Events: 50, NoFutureCursor: true, Inclusive: inclusive})
					c := tc.cursor(r.Head())
					cfg := firehose.Config{Endpoint: endpoint(t, r), Cursor: cursor(c), Logger: testLogger(t),
						IdleTimeout: 500 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}
					if headKnown {
						cfg.Head = r.Head()
					} else {
						cfg.HeadProbe = &firehose.Prober{Endpoint: cfg.Endpoint, Wait: 500 * time.Millisecond}
					}
					if tc.after {
						cfg.After = c
					}
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					defer cancel()
					var sink sliceSink
					err := firehose.Fetch(ctx, cfg, &sink, &firehose.Stats{})
					kept := tc.kept
					if inclusive && !tc.after && !tc.behind {
						kept++
					}
					switch {
					case tc.behind && !errors.Is(err, firehose.ErrRelayBehind):
						t.Fatalf("got %v, want ErrRelayBehind", err)
					case !tc.behind && err != nil:
						t.Fatalf("got %v, want the fetch caught up", err)
					case len(sink.seqs) != kept:
						t.Fatalf("kept %v, want %d frames", sink.seqs, kept)
					}
				})
			}
		}
	}
}

// TestFetchAllBeforeWindow: every frame after the cursor is before the window (event times
// are their PDSes' clocks, and a --days search takes them as growing with seq), up to the
// head. The fetch has reached the head all the same and ends, keeping nothing, whether it
// knows the head or the relay is quiet; it used to reconnect forever, as a stalled replay.
func TestFetchAllBeforeWindow(t *testing.T) {
	t.Parallel()
	for name, headKnown := range map[string]bool{"head known": true, "quiet relay": false} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := newRelay(t, relaytest.Config{Seed: 15, Users: 5, Events: 50})
			cfg := firehose.Config{Endpoint: endpoint(t, r), Cursor: cursor(10), MinTime: time.Now().Add(24 * time.Hour), Logger: testLogger(t),
				IdleTimeout: 500 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}
			if headKnown {
				cfg.Head = r.Head()
			} else {
				cfg.HeadProbe = &firehose.Prober{Endpoint: cfg.Endpoint, Wait: 500 * time.Millisecond}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var sink sliceSink
			var st firehose.Stats
			if err := firehose.Fetch(ctx, cfg, &sink, &st); err != nil {
				t.Fatalf("got %v, want the fetch done", err)
			}
			if len(sink.seqs) != 0 || st.BeforeStart.Load() == 0 {
				t.Fatalf("kept %v, %d before the window; want none kept", sink.seqs, st.BeforeStart.Load())
			}
		})
	}
}

// TestFetchHeldThenBeforeWindow: with --until, a frame whose clock runs ahead of the stop time
// is held; every later frame up to the known head is before the --days window. The fetch has
// reached the head and ends (keeping nothing); it used to reconnect forever.
func TestFetchHeldThenBeforeWindow(t *testing.T) {
	t.Parallel()
	r := newRelay(t, relaytest.Config{Seed: 14, Users: 5, Events: 50, StartTime: time.Now().Add(-10 * 24 * time.Hour)})
	r.AppendRaw(relaytest.KindIdentity, identityFrame(t, r.Head()+1, "2099-01-01T00:00:00.000Z"))
	for range 5 {
		r.AppendRaw(relaytest.KindIdentity, identityFrame(t, r.Head()+1, "2000-01-01T00:00:00.000Z"))
	}
	for _, headKnown := range []bool{true, false} {
		t.Run(fmt.Sprintf("head known=%v", headKnown), func(t *testing.T) {
			t.Parallel()
			cfg := firehose.Config{Endpoint: endpoint(t, r), Cursor: cursor(10), Logger: testLogger(t),
				MinTime: time.Now().Add(-24 * time.Hour), StopTime: time.Now(),
				IdleTimeout: 300 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}
			if headKnown {
				cfg.Head = r.Head()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var sink sliceSink
			var st firehose.Stats
			if err := firehose.Fetch(ctx, cfg, &sink, &st); err != nil {
				t.Fatalf("got %v (kept %v, %d before the window, %d reconnects), want the fetch done", err, sink.seqs, st.BeforeStart.Load(), st.Reconnects.Load())
			}
			if len(sink.seqs) != 0 {
				t.Fatalf("kept %v, want none", sink.seqs)
			}
		})
	}
}

// identityFrame is an #identity frame with seq and time.
func identityFrame(t *testing.T, seq int64, tm string) []byte {
	t.Helper()
	var buf bytes.Buffer
	ev := &events.XRPCStreamEvent{RepoIdentity: &comatproto.SyncSubscribeRepos_Identity{Did: "did:plc:held", Seq: seq, Time: tm}}
	if err := ev.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// fakeRelay serves a websocket that sends frames (its cursor query parameter, "" for none, picks
// them), then nothing.
func fakeRelay(t *testing.T, frames func(cursor string) [][]byte) *url.URL {
	t.Helper()
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		c, err := up.Upgrade(w, req, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for _, f := range frames(req.URL.Query().Get("cursor")) {
			if err := c.WriteMessage(websocket.BinaryMessage, f); err != nil {
				return
			}
		}
		for {
			if _, _, err := c.NextReader(); err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	u, err := firehose.Endpoint("ws://" + srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestFetchProbedHeadBelowCursor: the head probe (the live stream) sees an event below the
// cursor that the fetch's own connection (a cursor past the relay's head, no FutureCursor) does
// not, and the relay is quiet after: ErrRelayBehind, resumed or not (it used to end as done,
// or reconnect forever).
func TestFetchProbedHeadBelowCursor(t *testing.T) {
	t.Parallel()
	live := identityFrame(t, 40, time.Now().UTC().Format("2006-01-02T15:04:05.000Z"))
	for _, resumed := range []bool{true, false} {
		t.Run(fmt.Sprintf("resumed=%v", resumed), func(t *testing.T) {
			t.Parallel()
			u := fakeRelay(t, func(cursor string) [][]byte {
				if cursor == "" {
					return [][]byte{live}
				}
				return nil
			})
			cfg := firehose.Config{Endpoint: u, Cursor: cursor(100), Logger: testLogger(t), IdleTimeout: 500 * time.Millisecond,
				MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, HeadProbe: &firehose.Prober{Endpoint: u, Wait: 2 * time.Second}}
			if resumed {
				cfg.After = 100
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var st firehose.Stats
			if err := firehose.Fetch(ctx, cfg, &sliceSink{}, &st); !errors.Is(err, firehose.ErrRelayBehind) {
				t.Fatalf("got %v (%d reconnects), want ErrRelayBehind", err, st.Reconnects.Load())
			}
		})
	}
}

// TestFetchQuietRelayOutdated: a relay that holds no event any more, resumed from a seq it had.
// Saying OutdatedCursor, it is not behind the cursor: the fetch ends, caught up. Silent, it has
// nothing at or after the seq: ErrRelayBehind (it was reset, or purged).
func TestFetchQuietRelayOutdated(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	info := &events.XRPCStreamEvent{RepoInfo: &comatproto.SyncSubscribeRepos_Info{Name: "OutdatedCursor"}}
	if err := info.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	for _, outdated := range []bool{true, false} {
		t.Run(fmt.Sprintf("outdated=%v", outdated), func(t *testing.T) {
			t.Parallel()
			u := fakeRelay(t, func(cursor string) [][]byte {
				if outdated && cursor != "" {
					return [][]byte{buf.Bytes()}
				}
				return nil
			})
			cfg := firehose.Config{Endpoint: u, Cursor: cursor(100), After: 100, Logger: testLogger(t), IdleTimeout: 300 * time.Millisecond,
				MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err := firehose.Fetch(ctx, cfg, &sliceSink{}, &firehose.Stats{})
			if outdated && err != nil || !outdated && !errors.Is(err, firehose.ErrRelayBehind) {
				t.Fatalf("got %v", err)
			}
		})
	}
}

// TestFetchBackoffAfterRepeat has a relay that repeats the cursor's event (inclusive replay)
// drop each of eight connections right after that event: the duplicate is no progress, so the
// backoff keeps growing (a kept frame resets it). The waits are sleeps of at least half the
// backoff (10, 20, ... 1280 ms), so together they take at least 1.275 s on any machine; a
// backoff reset by each duplicate waits 5-10 ms each time.
func TestFetchBackoffAfterRepeat(t *testing.T) {
	t.Parallel()
	r := newRelay(t, relaytest.Config{Seed: 13, Users: 5, Events: 100, Inclusive: true})
	for range 8 {
		r.Faults().Add(relaytest.Fault{Kind: relaytest.FaultDrop, After: 1})
	}
	var sink sliceSink
	var st firehose.Stats
	t0 := time.Now()
	err := firehose.Fetch(context.Background(), firehose.Config{Endpoint: endpoint(t, r), Cursor: cursor(50), After: 50, Head: r.Head(),
		Logger: testLogger(t), MinBackoff: 10 * time.Millisecond, MaxBackoff: 5 * time.Second}, &sink, &st)
	if err != nil {
		t.Fatal(err)
	}
	if elapsed := time.Since(t0); elapsed < 1275*time.Millisecond {
		t.Errorf("eight failed connections took %s: the backoff did not grow", elapsed)
	}
	if got := st.Reconnects.Load(); got != 8 {
		t.Errorf("%d reconnects, want 8", got)
	}
	if got := st.Duplicates.Load(); got != 9 {
		t.Errorf("%d duplicates, want 9 (the cursor's event on each connection)", got)
	}
	if len(sink.seqs) != 50 || sink.seqs[0] != 51 || sink.seqs[49] != 100 {
		t.Errorf("kept %d frames, want seqs 51-100", len(sink.seqs))
	}
}

// TestProberRetries has the relay refuse a probe's first connections (503, then 429 with its
// Retry-After): the probe retries them, as a fetch's own connection does, and a 4xx that
// retrying cannot heal fails it at once.
func TestProberRetries(t *testing.T) {
	t.Parallel()
	r := newRelay(t, relaytest.Config{Seed: 14, Users: 5, Events: 50})
	p := &firehose.Prober{Endpoint: endpoint(t, r), Wait: 500 * time.Millisecond, Logger: testLogger(t)}
	r.Faults().Reject(503, 2)
	r.Faults().Reject(429, 1)
	pt, ok, err := p.Oldest(context.Background())
	if err != nil || !ok || pt.Seq != r.Log()[0].Seq {
		t.Fatalf("Oldest = %v, %v, %v; want seq %d", pt, ok, err, r.Log()[0].Seq)
	}
	if n := len(r.Conns()); n != 4 {
		t.Errorf("%d connection attempts, want 4 (three refused, one served)", n)
	}
	r.Faults().Reject(403, 1)
	if _, _, err := p.Oldest(context.Background()); err == nil {
		t.Fatal("a 403 did not fail the probe")
	}
	if n := len(r.Conns()); n != 5 {
		t.Errorf("%d connection attempts, want 5 (the 403 not retried)", n)
	}
}
