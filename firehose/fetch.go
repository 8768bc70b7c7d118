package firehose

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/backfill/backfill/decode"
	"github.com/backfill/backfill/internal/ctxtime"
)

// Sink receives the frames a Fetcher keeps, in strictly increasing seq order.
type Sink interface {
	Append(seq int64, t time.Time, frame []byte) error
	Flush() error
}

// ErrFutureCursor is returned when the relay answers that the cursor asked for is ahead of it:
// the spool's frames come from another relay, or the relay's sequence was reset.
var ErrFutureCursor = errors.New("firehose: relay says the cursor is in the future")

// ErrRelayBehind is returned when the relay's sequence is behind the cursor asked for or the
// frames already kept, which a relay that does not answer FutureCursor (indigo's relay streams
// live frames instead) shows by its head, or by the first frame of a connection, being below.
var ErrRelayBehind = errors.New("firehose: the relay's sequence is behind the cursor")

// behindError says that the relay's seq (its head, or a connection's first frame) is below
// after: the seq the spool already holds from it (kept), or the cursor asked for.
func behindError(what string, seq, after int64, kept bool) error {
	if !kept {
		return fmt.Errorf("%w: %s is seq %d, below the cursor %d asked for: %s", ErrRelayBehind, what, seq, after, behindHint(kept))
	}
	return fmt.Errorf("%w: %s is seq %d, below seq %d already kept: %s", ErrRelayBehind, what, seq, after, behindHint(kept))
}

// behindHint says what a relay behind the cursor (kept: below the seq already kept) means.
func behindHint(kept bool) string {
	if !kept {
		return "the relay does not have that position yet (a cursor means nothing on another relay)"
	}
	return "the relay's sequence was reset, or the spool's frames come from another relay (a cursor means nothing on another relay); use a new --spool"
}

// Config says where a fetch starts and when it stops.
type Config struct {
	Endpoint *url.URL
	// Cursor is sent on the first connection; nil asks for the live stream only.
	// Later connections resume from the last kept seq.
	Cursor *int64
	// After is the last seq already kept (from the spool); frames at or below it are duplicates.
	After int64
	// AfterTime is the event time of the frame at After, when known (zero otherwise).
	AfterTime time.Time
	// MinTime: frames before it are before the requested window and not kept, until the first
	// frame at or after it (event times are not strictly ordered; later ones are all kept).
	MinTime time.Time
	// StopSeq: stop once a frame with seq >= StopSeq has been kept (0: no such stop).
	StopSeq int64
	// Head is the relay's newest seq when the run began (0: unknown). Without Follow the fetch
	// stops there, and a replay that goes idle short of it is a stall, not the end.
	Head int64
	// HeadProbe, when set and Head is 0 (and not Follow), reads the head from the live stream
	// while the fetch already runs, so a quiet relay costs no wait before the first frame.
	HeadProbe *Prober
	// StopTime: stop where frames reach it, keeping none at or after it but those an earlier
	// frame follows (a PDS clock running ahead: see untilConfirm).
	StopTime time.Time
	// Follow keeps tailing the live stream; otherwise a replay that goes idle for IdleTimeout
	// (with StopSeq not yet known to be ahead) has caught up and the fetch ends.
	Follow      bool
	IdleTimeout time.Duration // default 5 s
	// FlushInterval bounds how long a kept frame waits in memory before it reaches the file.
	FlushInterval time.Duration // default 1 s
	Dial          DialOptions
	MinBackoff    time.Duration // default 250 ms
	MaxBackoff    time.Duration // default 30 s
	// MaxBytesPerSec caps the receive rate (0: no cap).
	MaxBytesPerSec int64
	Logger         *slog.Logger
}

// Stats are live counters of a fetch, safe to read from other goroutines.
type Stats struct {
	Frames      atomic.Int64 // frames received
	BytesIn     atomic.Int64 // frame bytes received
	Kept        atomic.Int64 // frames handed to the sink
	KeptBytes   atomic.Int64
	Duplicates  atomic.Int64 // a seq equal to the last kept one (inclusive replay, repeats)
	Backwards   atomic.Int64 // a seq below the last kept (or held) one
	BeforeStart atomic.Int64 // frames before MinTime
	Unknown     atomic.Int64 // unknown op or message type
	BadFrames   atomic.Int64 // frames whose header did not parse
	Infos       atomic.Int64 // #info frames
	Gaps        atomic.Int64 // resumed connections whose first event came far later than the last kept one
	ErrorFrames atomic.Int64
	Reconnects  atomic.Int64
	RetryAfters atomic.Int64 // connection attempts answered with a Retry-After that was honoured
	LastSeq     atomic.Int64
	LastTime    atomic.Int64 // unix microseconds of the last kept frame's event time
	StopSeq     atomic.Int64 // the seq the fetch stops at, 0 when unknown
}

// Fetch streams frames from the relay into sink until a stop point, ctx is done, or an error
// that retrying cannot heal. Dropped connections are retried with backoff from the last kept seq.
// It returns nil when a stop point was reached and ctx.Err() when cancelled; the frame in hand
// is always finished and the sink flushed before it returns.
func Fetch(ctx context.Context, cfg Config, sink Sink, st *Stats) error {
	f := &fetcher{cfg: cfg, sink: sink, st: st, last: cfg.After, lastTime: cfg.AfterTime}
	f.defaults()
	st.LastSeq.Store(cfg.After)
	f.start = f.position()
	if cfg.Head > 0 && cfg.Head < f.start {
		return behindError("its head", cfg.Head, f.start, cfg.After > 0)
	}
	f.setHead(cfg.Head)
	if cfg.Head == 0 && cfg.HeadProbe != nil && !cfg.Follow {
		pctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			if pt, ok, err := cfg.HeadProbe.Head(pctx); err == nil && ok {
				if pt.Seq < f.start {
					// Behind the cursor: the head stays unknown, and run's check of a replay
					// gone idle says so (probedBehind).
					f.headBehind.Store(pt.Seq)
					return
				}
				f.setHead(pt.Seq)
				f.cfg.Logger.Info("relay head", "seq", pt.Seq, "time", pt.Time.Format(time.RFC3339))
			}
		}()
	}
	var err error
	if stop := f.stop.Load(); stop > 0 && f.last >= stop {
		f.cfg.Logger.Info("the spool already reaches the stop point", "last_seq", f.last, "stop_seq", stop)
	} else {
		err = f.run(ctx)
	}
	if ferr := sink.Flush(); ferr != nil && err == nil {
		err = ferr
	}
	return err
}

type fetcher struct {
	cfg       Config
	head      atomic.Int64 // the relay's head at the start, 0 while unknown
	stop      atomic.Int64 // the effective stop seq: StopSeq, or the head when earlier
	sink      Sink
	st        *Stats
	last      int64     // last kept seq
	lastTime  time.Time // its event time, when known
	limiter   *limiter
	attempts  int
	connected bool // a connection of this fetch was upgraded
	// The cursor the current connection asked for (0: none), and whether a frame with a seq
	// came on it yet: the first may repeat the cursor (inclusive replay) but not be below it.
	cursor   int64
	fresh    bool
	outdated bool // the connection began with #info OutdatedCursor
	// Frames at or after StopTime not kept yet, on the current connection (see untilConfirm).
	held      []heldFrame
	heldBytes int
	heldPast  int // held frames with a time (at or after StopTime)
	// moved: a frame past the cursor came on this connection (what a repeated cursor event or
	// frames behind it are not): the session makes progress, and a later failure backs off
	// from the start again.
	moved bool
	// before: the last seq dropped as before the window (MinTime); later frames may all be, up
	// to the head, which the fetch has then reached all the same.
	before int64
	// start: the position when the fetch began (the start cursor or the spool's tail), and
	// headBehind: a head the HeadProbe read below it (0: none).
	start      int64
	headBehind atomic.Int64
}

// probedBehind returns ErrRelayBehind when the HeadProbe read the relay's head below where the
// fetch started.
func (f *fetcher) probedBehind() error {
	if head := f.headBehind.Load(); head > 0 {
		return behindError("its head", head, f.start, f.cfg.After > 0)
	}
	return nil
}

// lastSeen returns the last seq kept or held (see untilConfirm).
func (f *fetcher) lastSeen() int64 {
	if n := len(f.held); n > 0 {
		return f.held[n-1].h.Seq
	}
	return f.last
}

// through returns the last seq the fetch has dealt with: kept, held, or before the window.
func (f *fetcher) through() int64 {
	return max(f.lastSeen(), f.before)
}

// position returns where the fetch stands on the relay's sequence: the last seq it has dealt
// with, or, before any, the cursor it started from.
func (f *fetcher) position() int64 {
	if last := f.through(); last > 0 || f.cfg.Cursor == nil {
		return last
	}
	return *f.cfg.Cursor
}

// checkBehind tells a quiet relay that is caught up from one whose sequence is below last, the
// position the fetch stands at, once the probe from last found nothing after it (pt, ok). A
// relay that does not answer FutureCursor (indigo's relay) streams nothing at all after a
// cursor past its head when no event is live, which the idle replay cannot tell from the end
// of the stream: the relay's first frame from the seq before says which. It is last itself
// (an exclusive relay; an inclusive one sent it on the first probe) or a later one: caught up.
// It is nothing, the seq before itself (an inclusive relay without last), or an earlier one:
// the relay's sequence is below last. A relay that said the cursor is older than what it holds
// (OutdatedCursor) is not behind it.
func (f *fetcher) checkBehind(ctx context.Context, p *Prober, last int64, pt Point, ok, outdated bool) error {
	kept := f.last > 0 // the spool, or the database resumed from, holds last
	switch {
	case outdated || last <= 0:
		return nil
	case ok && pt.Seq < last:
		return behindError("the first frame after the cursor", pt.Seq, last, kept)
	case ok:
		return nil // last came again (inclusive replay): it is on the relay
	}
	before := last - 1
	pt, ok, outdated, err := p.First(ctx, &before)
	switch {
	case err != nil:
		// Not known either way: the fetch has reached the end of what the relay streamed.
		f.cfg.Logger.Warn("could not check that the relay's sequence reaches the cursor", "cursor", last, "err", err)
		return nil
	case outdated || (ok && pt.Seq >= last):
		return nil
	case ok && pt.Seq < before:
		return behindError("the first frame after the cursor", pt.Seq, before, kept)
	}
	return fmt.Errorf("%w: the relay has no event at or after seq %d, where the fetch stands (it does not have it yet, or no longer): %s", ErrRelayBehind, last, behindHint(kept))
}

// setHead records the head (0: unknown) and derives the stop seq from it and StopSeq.
func (f *fetcher) setHead(head int64) {
	f.head.Store(head)
	stop := f.cfg.StopSeq
	if !f.cfg.Follow && head > 0 && (stop == 0 || head < stop) {
		stop = head
	}
	f.stop.Store(stop)
	f.st.StopSeq.Store(stop)
}

func (f *fetcher) defaults() {
	c := &f.cfg
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 5 * time.Second
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = time.Second
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 250 * time.Millisecond
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 30 * time.Second
	}
	if c.Dial.ReadTimeout <= 0 {
		c.Dial.ReadTimeout = 60 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxBytesPerSec > 0 {
		f.limiter = newLimiter(c.MaxBytesPerSec)
	}
}

// errDone ends a session because a stop point was reached.
var errDone = errors.New("stop point reached")

// errIdle ends a session whose replay went quiet with no known head to compare against.
var errIdle = errors.New("replay went idle")

// errReconnect ends a session that should be retried at once (after backoff).
type errReconnect struct{ why error }

func (e errReconnect) Error() string { return e.why.Error() }

func (f *fetcher) run(ctx context.Context) error {
	for {
		cursor := f.cfg.Cursor
		if f.last > 0 {
			c := f.last
			cursor = &c
		}
		conn, err := f.connect(ctx, cursor)
		if err != nil {
			return err
		}
		f.cursor, f.fresh, f.outdated, f.moved = 0, true, false, false
		f.dropHeld() // held frames come again after the last kept one
		if cursor != nil {
			f.cursor = *cursor
		}
		err = f.session(ctx, conn)
		conn.Close()
		switch {
		case errors.Is(err, errDone):
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, errIdle):
			// Quiet: caught up, or a stalled connection? A fresh connection from the last kept
			// seq tells them apart: it delivers at once what a stalled one was holding back.
			// With frames held (see untilConfirm), after the last of them.
			p := &Prober{Endpoint: f.cfg.Endpoint, Dial: f.cfg.Dial, Wait: f.cfg.IdleTimeout}
			if err := f.probedBehind(); err != nil {
				return err
			}
			last := f.position()
			pt, ok, outdated, perr := p.First(ctx, &last)
			if perr == nil && (!ok || pt.Seq <= last) {
				if len(f.held) > 0 {
					f.untilReached(" (the stream ended)")
					return nil
				}
				if err := f.checkBehind(ctx, p, last, pt, ok, outdated); err != nil {
					return err
				}
				f.cfg.Logger.Info("replay went idle: caught up with the relay", "last_seq", f.last)
				return nil
			}
			err = errReconnect{fmt.Errorf("replay went idle but the relay has more after seq %d", last)}
			if perr != nil {
				err = errReconnect{perr}
			}
		}
		var re errReconnect
		if !errors.As(err, &re) {
			return err
		}
		f.st.Reconnects.Add(1)
		f.cfg.Logger.Warn("relay connection lost; reconnecting", "err", re.why, "resume_after", f.last)
		if err := ctxtime.Sleep(ctx, f.backoff()); err != nil {
			return err
		}
	}
}

// connect dials until it succeeds, ctx ends, or the error is permanent.
func (f *fetcher) connect(ctx context.Context, cursor *int64) (*Conn, error) {
	for {
		conn, err := Dial(ctx, f.cfg.Endpoint, cursor, f.cfg.Dial)
		if err == nil {
			f.connected = true
			return conn, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var de *DialError
		// Once a connection of this fetch was served, only a refusal is permanent.
		if errors.As(err, &de) && (de.refused() || (!f.connected && de.wrongURL())) {
			return nil, fmt.Errorf("%w: %v (the relay refuses this request; check --relay-url)", ErrPermanent, err)
		}
		wait := f.backoff()
		if de != nil && de.RetryAfter > 0 {
			f.st.RetryAfters.Add(1)
			wait = max(wait, de.RetryAfter)
		}
		f.cfg.Logger.Warn("relay connection failed; retrying", "err", err, "in", wait.Round(time.Millisecond))
		if err := ctxtime.Sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}

// backoff returns the next wait: exponential with full jitter, reset by a productive session.
func (f *fetcher) backoff() time.Duration {
	d := f.cfg.MinBackoff << min(f.attempts, 16)
	if d > f.cfg.MaxBackoff || d <= 0 {
		d = f.cfg.MaxBackoff
	}
	f.attempts++
	return jitter(d)
}

// jitter returns a wait between d/2 and d.
func jitter(d time.Duration) time.Duration { return d/2 + rand.N(d/2+1) }

type readResult struct {
	frame []byte
	err   error
}

// session reads one connection until it ends. Reading runs in its own goroutine so that idle
// detection and periodic flushes do not need read deadlines (which break a gorilla connection).
func (f *fetcher) session(ctx context.Context, conn *Conn) error {
	frames := make(chan readResult, 8)
	free := make(chan []byte, 10)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			var buf []byte
			select {
			case buf = <-free:
			default:
			}
			frame, err := conn.ReadFrame(buf, 0)
			select {
			case frames <- readResult{frame, err}:
			case <-stop:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	go func() {
		select {
		case <-ctx.Done():
			conn.Close() // unblocks the reader; the frame in hand is finished below
		case <-stop:
		}
	}()

	flush := time.NewTicker(f.cfg.FlushInterval)
	defer flush.Stop()
	idle := time.NewTimer(f.cfg.IdleTimeout)
	defer idle.Stop()
	pending := false
	productive := false
	first := true
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-flush.C:
			if pending {
				if err := f.sink.Flush(); err != nil {
					return err
				}
				pending = false
			}
			continue
		case <-idle.C:
			if len(f.held) > 0 && !f.cfg.Follow {
				switch head, last := f.head.Load(), f.through(); {
				case head == 0:
					return errIdle // run asks the relay whether more follows the held frames
				case last < head:
					// Short of the head: a stalled relay, whose next frames may come before
					// StopTime. The held frames come again after the last kept one.
					return errReconnect{fmt.Errorf("no frame for %s while %d short of the relay's head %d", f.cfg.IdleTimeout, head-last, head)}
				}
				// At the head: the stream's end, after frames at or after StopTime.
				f.untilReached(" (the stream went quiet)")
				return errDone
			}
			if !f.cfg.Follow {
				head := f.head.Load()
				if head == 0 {
					return errIdle
				}
				switch pos := f.position(); {
				case pos > head && f.through() == 0:
					// Nothing came after a cursor past the head: the relay does not have it.
					return behindError("its head", head, pos, f.cfg.After > 0)
				case pos >= head:
					return errDone
				default:
					// Replay stopped short of the known head: a stalled relay, not the end.
					return errReconnect{fmt.Errorf("no frame for %s while %d short of the relay's head %d",
						f.cfg.IdleTimeout, head-pos, head)}
				}
			}
			idle.Reset(f.cfg.IdleTimeout)
			continue
		case r := <-frames:
			if r.err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return errReconnect{r.err}
			}
			idle.Reset(f.cfg.IdleTimeout)
			err := f.handle(r.frame, first)
			first = false
			if cap(r.frame) <= 1<<20 {
				select {
				case free <- r.frame[:0]:
				default:
				}
			}
			if err == nil {
				pending = true
				// Only a frame past the cursor makes the session productive: a relay that
				// repeats the cursor's event (inclusive replay) sends a duplicate on every
				// connection, and a connection that then fails at once must back off all the same.
				if !productive && f.moved {
					productive = true
					f.attempts = 0
				}
				if f.limiter != nil {
					if err := f.limiter.wait(ctx, len(r.frame)); err != nil {
						return err
					}
				}
				continue
			}
			return err
		}
	}
}

// handle processes one frame; nil means keep reading. first is true for a connection's first frame.
func (f *fetcher) handle(frame []byte, first bool) error {
	st := f.st
	st.Frames.Add(1)
	st.BytesIn.Add(int64(len(frame)))
	h, err := decode.PeekHeader(frame)
	if err != nil {
		st.BadFrames.Add(1)
		f.cfg.Logger.Debug("frame header did not parse; frame dropped", "err", truncate(err.Error(), 200), "bytes", len(frame))
		return nil
	}
	switch {
	case h.Op == -1:
		st.ErrorFrames.Add(1)
		switch h.ErrorName {
		case "FutureCursor":
			return fmt.Errorf("%w (after seq %d): the relay does not have this position; a cursor means nothing on another relay, or the relay's sequence was reset: use a new --spool", ErrFutureCursor, f.last)
		case "ConsumerTooSlow":
			return errReconnect{fmt.Errorf("relay error frame ConsumerTooSlow: %s", truncate(h.Message, 200))}
		default:
			return errReconnect{fmt.Errorf("relay error frame %q: %s", truncate(h.ErrorName, 64), truncate(h.Message, 200))}
		}
	case h.Op != 1:
		st.Unknown.Add(1)
		f.cfg.Logger.Debug("frame with unknown op ignored", "op", h.Op)
		return nil
	case !h.HasSeq:
		if h.Kind == decode.KindInfo {
			st.Infos.Add(1)
			if h.InfoName == "OutdatedCursor" && first {
				f.outdated = true
				f.cfg.Logger.Warn("relay no longer holds the requested cursor: replay starts at the oldest event it has; older history is out of reach of this relay",
					"after_seq", f.last, "message", truncate(h.Message, 200))
			} else {
				f.cfg.Logger.Debug("relay info", "name", truncate(h.InfoName, 64), "message", truncate(h.Message, 200))
			}
			return nil
		}
		st.Unknown.Add(1)
		f.cfg.Logger.Debug("frame without seq ignored", "type", truncate(h.Type, 64))
		return nil
	}
	if f.fresh && h.Kind != decode.KindUnknown {
		// The first frame of a known type (an unknown type's seq may be anything) after the
		// cursor: a relay replays from after it (or from it, inclusive), never from before.
		f.fresh = false
		if f.cursor > 0 && h.Seq < f.cursor {
			return behindError("the first frame after the cursor", h.Seq, f.cursor, f.cursor <= f.last)
		}
		f.checkResumeGap(h)
	}
	if stop := f.stop.Load(); stop > 0 && h.Seq > stop {
		return errDone // past the stop point (seqs have gaps): keep nothing beyond it
	}
	last := f.lastSeen()
	if h.Seq <= last {
		if h.Seq == last {
			st.Duplicates.Add(1)
			f.cfg.Logger.Debug("repeated seq ignored", "seq", h.Seq)
		} else {
			st.Backwards.Add(1)
			f.cfg.Logger.Warn("seq went backwards; frame ignored", "seq", h.Seq, "last", last)
		}
		return nil
	}
	f.moved = true
	if !f.cfg.MinTime.IsZero() && (h.Time.IsZero() || h.Time.Before(f.cfg.MinTime)) {
		// Before the first frame at or after MinTime, in seq order: before the window, a frame
		// without a time too.
		st.BeforeStart.Add(1)
		f.before = max(f.before, h.Seq)
		return nil
	}
	if !f.cfg.StopTime.IsZero() && (!h.Time.Before(f.cfg.StopTime) || (h.Time.IsZero() && len(f.held) > 0)) {
		// A frame without a time says nothing either way: it waits with the held ones.
		return f.hold(h, frame)
	}
	// A frame before StopTime after held ones: theirs were clocks running ahead, not the end.
	for i := range f.held {
		if err := f.keep(f.held[i].h, f.held[i].frame); err != nil {
			return err
		}
	}
	f.dropHeld()
	return f.keep(h, frame)
}

// resumeGap is the jump in event time between the last kept frame and the first frame of a
// resumed connection past which the relay probably no longer held the cursor: a replay goes on
// from the next event, a second or so later on a busy relay.
const resumeGap = 10 * time.Minute

// checkResumeGap warns when a resumed connection's first frame h is far later than the last
// kept one. A relay answers a cursor older than its replay window with #info OutdatedCursor
// (warned of in handle), or, as indigo's relay does, by replaying from its oldest event without
// a word: the events between are then out of its reach. An event time is its PDS's clock, so
// this is a warning, not a stop.
func (f *fetcher) checkResumeGap(h decode.Header) {
	if f.outdated || f.cursor <= 0 || f.cursor != f.last || h.Seq <= f.last+1 || f.lastTime.IsZero() || h.Time.IsZero() {
		return
	}
	if gap := h.Time.Sub(f.lastTime); gap > resumeGap {
		f.st.Gaps.Add(1)
		f.cfg.Logger.Warn("the relay resumed far later than the last kept event: if its replay window no longer reached the cursor, the events in between are out of reach of this relay",
			"after_seq", f.last, "after_time", f.lastTime.Format(time.RFC3339), "first_seq", h.Seq, "first_time", h.Time.Format(time.RFC3339), "gap", gap.Round(time.Second))
	}
}

// keep hands a frame to the sink.
func (f *fetcher) keep(h decode.Header, frame []byte) error {
	st := f.st
	if h.Kind == decode.KindUnknown {
		st.Unknown.Add(1) // kept: a later version may know it, and the seq stays contiguous
	}
	if err := f.sink.Append(h.Seq, h.Time, frame); err != nil {
		return fmt.Errorf("append frame %d: %w", h.Seq, err)
	}
	f.cfg.MinTime = time.Time{} // in the window: keep everything from here on
	f.last = h.Seq
	if !h.Time.IsZero() {
		f.lastTime = h.Time
	}
	st.Kept.Add(1)
	st.KeptBytes.Add(int64(len(frame)))
	st.LastSeq.Store(h.Seq)
	if !h.Time.IsZero() {
		st.LastTime.Store(h.Time.UnixMicro())
	}
	if stop := f.stop.Load(); stop > 0 && h.Seq >= stop {
		return errDone
	}
	return nil
}

// An event's time is its PDS's clock, which the relay passes on: one event at or after
// StopTime may come from a clock running ahead, amid events still before it. So such frames
// are held back, and kept after all when a frame before StopTime follows them; the fetch stops,
// keeping none of them, once untilConfirm of them came in a row (or untilHeldBytes of frames),
// at the stop seq, or when the stream goes quiet at the relay's head (or with no head known)
// while it holds some; quiet short of the head is a stall, and the fetch reconnects. Frames
// without a time that come while some are held wait with them.
const (
	untilConfirm   = 32
	untilHeldBytes = 16 << 20
)

// heldFrame is a frame at or after StopTime, held back (see untilConfirm).
type heldFrame struct {
	h     decode.Header
	frame []byte
}

// hold holds a frame at or after StopTime back; errDone once the stop is confirmed.
func (f *fetcher) hold(h decode.Header, frame []byte) error {
	f.held = append(f.held, heldFrame{h: h, frame: bytes.Clone(frame)})
	f.heldBytes += len(frame)
	if !h.Time.IsZero() {
		f.heldPast++
	}
	if f.heldPast < untilConfirm && f.heldBytes < untilHeldBytes {
		return nil
	}
	f.untilReached("")
	return errDone
}

// untilReached logs the stop at StopTime and drops the held frames.
func (f *fetcher) untilReached(why string) {
	first := f.held[0].h
	f.cfg.Logger.Info("reached --until time"+why, "seq", first.Seq, "time", first.Time, "frames_at_or_after", len(f.held))
	f.dropHeld()
}

func (f *fetcher) dropHeld() {
	clear(f.held)
	f.held, f.heldBytes, f.heldPast = f.held[:0], 0, 0
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// limiter is a token bucket over bytes with one second of burst.
type limiter struct {
	rate   float64
	tokens float64
	last   time.Time
}

func newLimiter(perSec int64) *limiter {
	return &limiter{rate: float64(perSec), tokens: float64(perSec), last: time.Now()}
}

func (l *limiter) wait(ctx context.Context, n int) error {
	now := time.Now()
	l.tokens = min(l.rate, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	l.last = now
	l.tokens -= float64(n)
	if l.tokens >= 0 {
		return nil
	}
	return ctxtime.Sleep(ctx, time.Duration(-l.tokens/l.rate*float64(time.Second)))
}
