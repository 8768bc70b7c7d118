package relaytest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// readTimeout bounds every read, so a broken relay fails the test instead of hanging it.
const readTimeout = 20 * time.Second

func dial(t *testing.T, r *Relay, cursor *int64) *websocket.Conn {
	t.Helper()
	c, resp, err := tryDial(r, cursor)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial: %v (HTTP %d)", err, status)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func tryDial(r *Relay, cursor *int64) (*websocket.Conn, *http.Response, error) {
	u := r.URL() + Path
	if cursor != nil {
		u += fmt.Sprintf("?cursor=%d", *cursor)
	}
	return websocket.DefaultDialer.Dial(u, nil)
}

// read returns the next binary message.
func read(t *testing.T, c *websocket.Conn) []byte {
	t.Helper()
	b, err := readErr(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return b
}

func readErr(c *websocket.Conn) ([]byte, error) {
	_ = c.SetReadDeadline(time.Now().Add(readTimeout))
	typ, b, err := c.ReadMessage()
	if err != nil {
		return nil, err
	}
	if typ != websocket.BinaryMessage {
		return nil, fmt.Errorf("message type %d, want binary", typ)
	}
	return b, nil
}

// expectFrames reads len(want) messages and compares them with want.
func expectFrames(t *testing.T, c *websocket.Conn, want []Frame) {
	t.Helper()
	for i, f := range want {
		got := read(t, c)
		if !bytes.Equal(got, f.Bytes) {
			t.Fatalf("message %d: got %d bytes, want frame seq %d (%s, %d bytes)", i, len(got), f.Seq, f.Kind, len(f.Bytes))
		}
	}
}

func ptr(v int64) *int64 { return &v }

func TestReplay(t *testing.T) {
	r := newRelay(t, Config{Seed: 9, Users: 20, Events: 2000, Gaps: true, FirstSeq: 500, BadInput: true})
	log := r.Log()
	c := dial(t, r, ptr(0))
	expectFrames(t, c, log)
	// The stream then goes live: appended events follow without a gap.
	r.Append(3)
	expectFrames(t, c, r.Log()[len(log):])
}

func TestCursor(t *testing.T) {
	for _, tc := range []struct {
		name      string
		inclusive bool
	}{{"exclusive", false}, {"inclusive", true}} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRelay(t, Config{Seed: 2, Users: 10, Events: 400, Gaps: true, Inclusive: tc.inclusive})
			log := r.Log()
			k := 250
			start := k + 1
			if tc.inclusive {
				start = k
			}
			c := dial(t, r, ptr(log[k].Seq))
			expectFrames(t, c, log[start:start+20])

			// A cursor that falls in a gap starts at the next event either way.
			for i := 1; i < len(log); i++ {
				if log[i].Seq-log[i-1].Seq > 1 {
					c := dial(t, r, ptr(log[i].Seq-1))
					expectFrames(t, c, log[i:i+5])
					break
				}
			}
			// The head itself: nothing (exclusive) or the head event (inclusive), then live.
			c = dial(t, r, ptr(r.Head()))
			if tc.inclusive {
				expectFrames(t, c, log[len(log)-1:])
			}
			r.Append(1)
			expectFrames(t, c, r.Log()[len(log):])
		})
	}
}

func TestLiveTail(t *testing.T) {
	r := newRelay(t, Config{Seed: 4, Users: 10, Events: 100})
	c := dial(t, r, nil)
	before := len(r.Log())
	r.Append(5)
	log := r.Log()
	expectFrames(t, c, log[before:])
	if got := len(log); got != 105 {
		t.Errorf("log after Append(5): got %d frames, want 105", got)
	}
}

func TestLiveRate(t *testing.T) {
	r := newRelay(t, Config{Seed: 4, Users: 10, Events: 10, LiveRate: 500})
	c := dial(t, r, ptr(0))
	var last int64
	for i := range 40 {
		b := read(t, c)
		seq := frameSeq(t, b)
		if seq == -1 {
			continue // #info events carry no seq
		}
		if i > 0 && seq <= last {
			t.Fatalf("seq %d after %d", seq, last)
		}
		last = seq
	}
	if last <= 10 {
		t.Errorf("40 frames ended at seq %d: nothing generated live", last)
	}
}

func TestOutdatedCursor(t *testing.T) {
	r := newRelay(t, Config{Seed: 6, Users: 10, Events: 300, Retention: 100})
	log := r.Log()
	oldest := len(log) - 100

	t.Run("too old", func(t *testing.T) {
		c := dial(t, r, ptr(5))
		evt := decodeFrame(t, read(t, c))
		if evt.RepoInfo == nil || evt.RepoInfo.Name != "OutdatedCursor" {
			t.Fatalf("first message: got %+v, want #info OutdatedCursor", evt)
		}
		expectFrames(t, c, log[oldest:])
	})
	t.Run("just retained", func(t *testing.T) {
		// Exclusive: a client that saw the newest dropped event has missed nothing.
		c := dial(t, r, ptr(log[oldest-1].Seq))
		expectFrames(t, c, log[oldest:oldest+10])
	})
}

func TestFutureCursor(t *testing.T) {
	r := newRelay(t, Config{Seed: 6, Users: 10, Events: 50})
	c := dial(t, r, ptr(r.Head()+1))
	b := read(t, c)
	if h := header(t, b); h.Op != -1 {
		t.Fatalf("header op: got %d, want -1", h.Op)
	}
	if evt := decodeFrame(t, b); evt.Error == nil || evt.Error.Error != "FutureCursor" {
		t.Fatalf("got %+v, want error frame FutureCursor", evt.Error)
	}
	if _, err := readErr(c); !websocket.IsCloseError(err, websocket.ClosePolicyViolation) {
		t.Errorf("after FutureCursor: got %v, want a close frame", err)
	}
}

func TestFaults(t *testing.T) {
	r := newRelay(t, Config{Seed: 8, Users: 10, Events: 200})
	log := r.Log()
	const after = 10

	// next dials with a fault and returns the connection after the frames before it.
	next := func(t *testing.T, kind FaultKind) *websocket.Conn {
		t.Helper()
		r.Faults().Add(Fault{Kind: kind, After: after})
		c := dial(t, r, ptr(0))
		expectFrames(t, c, log[:after])
		_ = c.SetReadDeadline(time.Now().Add(readTimeout))
		return c
	}

	t.Run("drop", func(t *testing.T) {
		c := next(t, FaultDrop)
		// No message starts, and no close frame comes: gorilla reports 1006 (abnormal closure).
		if _, _, err := c.NextReader(); !websocket.IsCloseError(err, websocket.CloseAbnormalClosure) {
			t.Errorf("got %v, want the connection to end without a close frame", err)
		}
	})
	t.Run("half frame", func(t *testing.T) {
		c := next(t, FaultHalfFrame)
		_, rd, err := c.NextReader()
		if err != nil {
			t.Fatalf("got %v, want the start of a message", err)
		}
		b, err := io.ReadAll(rd)
		if err == nil || len(b) == 0 || len(b) >= len(log[after].Bytes) {
			t.Errorf("got %d of %d bytes and %v, want a torn message", len(b), len(log[after].Bytes), err)
		}
	})
	t.Run("too slow", func(t *testing.T) {
		r.Faults().Add(Fault{Kind: FaultTooSlow, After: after})
		c := dial(t, r, ptr(0))
		expectFrames(t, c, log[:after])
		evt := decodeFrame(t, read(t, c))
		if evt.Error == nil || evt.Error.Error != "ConsumerTooSlow" {
			t.Fatalf("got %+v, want error frame ConsumerTooSlow", evt.Error)
		}
		if _, err := readErr(c); !websocket.IsCloseError(err, websocket.ClosePolicyViolation) {
			t.Errorf("after ConsumerTooSlow: got %v, want a close frame", err)
		}
	})
	t.Run("stall", func(t *testing.T) {
		r.Faults().Add(Fault{Kind: FaultStall, After: after})
		c := dial(t, r, ptr(0))
		expectFrames(t, c, log[:after])
		r.Append(2) // even new events do not come through
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, _, err := c.ReadMessage()
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("stalled stream: got %v, want no message (a read timeout)", err)
		}
	})
	t.Run("repeat", func(t *testing.T) {
		r.Faults().Add(Fault{Kind: FaultRepeat, After: after})
		c := dial(t, r, ptr(0))
		expectFrames(t, c, log[:after])
		expectFrames(t, c, log[after-1:after+5])
	})
	t.Run("backwards", func(t *testing.T) {
		r.Faults().Add(Fault{Kind: FaultBackwards, After: after})
		c := dial(t, r, ptr(0))
		expectFrames(t, c, log[:after])
		b := read(t, c)
		if s, last := frameSeq(t, b), log[after-1].Seq; s == -1 || s >= last {
			t.Fatalf("after seq %d: got seq %d, want a lower one", last, s)
		}
		expectFrames(t, c, log[after:after+5])
	})
	t.Run("unknown frame", func(t *testing.T) {
		r.Faults().Add(Fault{Kind: FaultUnknownFrame, After: after})
		c := dial(t, r, ptr(0))
		expectFrames(t, c, log[:after])
		if h := header(t, read(t, c)); h.Op != 2 {
			t.Errorf("first injected frame: op %d, want 2", h.Op)
		}
		if h := header(t, read(t, c)); h.Op != 1 || h.MsgType != "#bogus" {
			t.Errorf("second injected frame: op %d t %q, want 1 #bogus", h.Op, h.MsgType)
		}
		expectFrames(t, c, log[after:after+5])
	})
	for _, status := range []int{http.StatusTooManyRequests, http.StatusServiceUnavailable} {
		t.Run(fmt.Sprintf("reject %d", status), func(t *testing.T) {
			r.Faults().Reject(status, 2)
			for range 2 {
				_, resp, err := tryDial(r, ptr(0))
				if !errors.Is(err, websocket.ErrBadHandshake) || resp == nil || resp.StatusCode != status {
					t.Fatalf("got %v, want a refused handshake with HTTP %d", err, status)
				}
				if got, want := resp.Header.Get("Retry-After"), map[int]string{429: "1", 503: ""}[status]; got != want {
					t.Errorf("Retry-After: got %q, want %q", got, want)
				}
			}
			c := dial(t, r, ptr(0)) // the third attempt goes through
			expectFrames(t, c, log[:3])
		})
	}
	if s, rej := r.Faults().Pending(); s != 0 || rej != 0 {
		t.Errorf("faults left waiting: %d stream, %d rejects", s, rej)
	}
}

func TestConnsRecorded(t *testing.T) {
	r := newRelay(t, Config{Seed: 1, Users: 5, Events: 20})
	r.Faults().Reject(http.StatusServiceUnavailable, 1)
	if _, _, err := tryDial(r, ptr(3)); err == nil {
		t.Fatal("dial: want the refusal")
	}
	r.Faults().Add(Fault{Kind: FaultDrop, After: 1})
	dial(t, r, ptr(7))
	dial(t, r, nil)
	// The handler records a connection before it answers the handshake: all three are in.
	got := r.Conns()
	if len(got) != 3 {
		t.Fatalf("got %d connections recorded, want 3", len(got))
	}
	want := []struct {
		cursor int64 // -1: none
		status int
		fault  FaultKind
	}{{3, 503, FaultNone}, {7, 101, FaultDrop}, {-1, 101, FaultNone}}
	for i, w := range want {
		cur := int64(-1)
		if got[i].Cursor != nil {
			cur = *got[i].Cursor
		}
		if cur != w.cursor || got[i].Status != w.status || got[i].Fault != w.fault {
			t.Errorf("connection %d: got cursor %d status %d fault %v, want %d %d %v", i, cur, got[i].Status, got[i].Fault, w.cursor, w.status, w.fault)
		}
	}
}

func TestPingPong(t *testing.T) {
	r := newRelay(t, Config{Seed: 1, Users: 5, Events: 500})
	c := dial(t, r, ptr(0))
	pongs := make(chan string, 1)
	c.SetPongHandler(func(data string) error {
		pongs <- data
		return nil
	})
	if err := c.WriteControl(websocket.PingMessage, []byte("hello"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	// Pongs are interleaved with the replay; every frame must still arrive intact.
	expectFrames(t, c, r.Log())
	for range 50 { // the pong goes out before the next frame written once the ping is in
		select {
		case got := <-pongs:
			if got != "hello" {
				t.Errorf("pong: got %q, want %q", got, "hello")
			}
			return
		default:
		}
		r.Append(1)
		read(t, c)
	}
	t.Error("no pong received")
}

func TestBadCursor(t *testing.T) {
	r := newRelay(t, Config{Seed: 1, Users: 5, Events: 5})
	_, resp, err := websocket.DefaultDialer.Dial(r.URL()+Path+"?cursor=abc", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("cursor=abc: got %v, want HTTP 400", err)
	}
}

func TestLargeFrame(t *testing.T) {
	r := newRelay(t, Config{Seed: 1, Users: 3})
	c := dial(t, r, nil)
	p := post(strings.Repeat("long text ✨ ", 9000)) // ~100 KB: the 64-bit websocket length form
	if _, err := r.AppendCommit(0, create(collPost+"/3kaaaaaaaaaa2", p)); err != nil {
		t.Fatal(err)
	}
	log := r.Log()
	if n := len(log[0].Bytes); n <= 0xFFFF {
		t.Fatalf("frame of %d bytes, want > 65535", n)
	}
	expectFrames(t, c, log)
}

func BenchmarkReplay(b *testing.B) {
	r, err := New(Config{Seed: 5, Users: 200, Events: 20000, StartTime: testStart})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	var size int64
	for _, f := range r.Log() {
		size += int64(len(f.Bytes))
	}
	b.SetBytes(size)
	for b.Loop() {
		c, _, err := tryDial(r, ptr(0))
		if err != nil {
			b.Fatal(err)
		}
		for range 20000 {
			if _, _, err := c.ReadMessage(); err != nil {
				b.Fatal(err)
			}
		}
		_ = c.Close()
	}
	b.ReportMetric(float64(20000*b.N)/b.Elapsed().Seconds(), "frames/s")
}
