package firehose

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/backfill/backfill/decode"
	"github.com/backfill/backfill/internal/ctxtime"
)

// Point is one event position on a relay: its seq and event time.
type Point struct {
	Seq  int64
	Time time.Time
}

// Prober opens short connections to read the first event at a cursor: it is how fetch finds
// the relay's head and the start of a --days window without replaying anything.
type Prober struct {
	Endpoint *url.URL
	Dial     DialOptions
	// Wait bounds how long a probe waits for its first event (default 3 s).
	Wait   time.Duration
	Logger *slog.Logger
	Probes int // probes made so far
}

// probeAttempts bounds the connection attempts of one probe: a relay that refuses one for a
// while (429, 503, a reset) gets some seconds, as a fetch's own connection gets forever, before
// the run's planning gives up.
const probeAttempts = 6

// dial connects for a probe, retrying what is not permanent with backoff (Retry-After honoured).
func (p *Prober) dial(ctx context.Context, cursor *int64) (*Conn, error) {
	wait := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		conn, err := Dial(ctx, p.Endpoint, cursor, p.Dial)
		if err == nil {
			return conn, nil
		}
		var de *DialError
		if attempt == probeAttempts || ctx.Err() != nil || (errors.As(err, &de) && de.Permanent()) {
			return nil, err
		}
		d := jitter(wait)
		if de != nil && de.RetryAfter > 0 {
			d = max(d, min(de.RetryAfter, 30*time.Second))
		}
		if p.Logger != nil {
			p.Logger.Warn("relay probe connection failed; retrying", "err", err, "in", d.Round(time.Millisecond))
		}
		if err := ctxtime.Sleep(ctx, d); err != nil {
			return nil, err
		}
		wait *= 2
	}
}

// errNoEvent means the probe connection delivered no event within Wait.
var errNoEvent = errors.New("firehose: no event within the probe wait")

// First returns the first event the relay sends for cursor (nil: the live stream). ok is false
// when none arrived within Wait (a quiet live stream) or the cursor is ahead of the relay
// (FutureCursor). outdated reports an OutdatedCursor info frame before the event.
func (p *Prober) First(ctx context.Context, cursor *int64) (pt Point, ok, outdated bool, err error) {
	wait := p.Wait
	if wait <= 0 {
		wait = 3 * time.Second
	}
	p.Probes++
	conn, err := p.dial(ctx, cursor)
	if err != nil {
		return Point{}, false, false, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	type res struct {
		pt       Point
		ok       bool
		outdated bool
		err      error
	}
	out := make(chan res, 1)
	go func() {
		var buf []byte
		var r res
		for {
			frame, err := conn.ReadFrame(buf, wait)
			if err != nil {
				if errors.Is(err, ErrStalled) {
					err = nil
				}
				r.err = err
				out <- r
				return
			}
			buf = frame
			h, err := decode.PeekHeader(frame)
			if err != nil {
				continue
			}
			if h.Op == -1 {
				if h.ErrorName == "FutureCursor" {
					out <- r
					return
				}
				r.err = fmt.Errorf("relay error frame %q: %s", truncate(h.ErrorName, 64), truncate(h.Message, 200))
				out <- r
				return
			}
			if h.Kind == decode.KindInfo && h.InfoName == "OutdatedCursor" {
				r.outdated = true
			}
			if h.Op == 1 && h.HasSeq {
				r.pt, r.ok = Point{h.Seq, h.Time}, true
				out <- r
				return
			}
		}
	}()
	select {
	case <-ctx.Done():
		conn.Close()
		r := <-out
		if r.ok {
			return r.pt, true, r.outdated, nil
		}
		if parent := context.Cause(ctx); parent != nil && !errors.Is(parent, context.DeadlineExceeded) {
			return Point{}, false, false, parent
		}
		return Point{}, false, r.outdated, nil
	case r := <-out:
		return r.pt, r.ok, r.outdated, r.err
	}
}

// Head returns the relay's newest event as it stands now, read from the live stream. ok is false
// on a quiet relay where no live event arrived within Wait.
func (p *Prober) Head(ctx context.Context) (Point, bool, error) {
	pt, ok, _, err := p.First(ctx, nil)
	return pt, ok, err
}

// Oldest returns the oldest event the relay still holds.
func (p *Prober) Oldest(ctx context.Context) (Point, bool, error) {
	zero := int64(0)
	pt, ok, _, err := p.First(ctx, &zero)
	return pt, ok, err
}

// Window is where a --days fetch starts.
type Window struct {
	// Cursor to connect with: the last event found before the cutoff (0: the oldest held).
	// Frames before the cutoff that still follow it are dropped by Config.MinTime.
	Cursor     int64
	Oldest     Point         // the oldest event the relay holds
	OutOfReach time.Duration // how much of the requested window is older than the oldest held event
	Empty      bool          // the relay holds nothing at or after the cutoff yet
}

// FindStart finds where the events at or after cutoff begin by searching the relay's seq space
// between its oldest event and head (interpolating on event time, alternating with bisection),
// so that a --days fetch replays nothing it would throw away. head.Seq may be zero when unknown.
// Event times are taken as non-decreasing in seq. They are not quite: each is its PDS's clock,
// which the relay passes on, so a block of late-delivered events with old times just after the
// cutoff can move the start past events in the window (README says so; --start-cursor is exact).
func (p *Prober) FindStart(ctx context.Context, cutoff time.Time, head Point) (Window, error) {
	oldest, ok, err := p.Oldest(ctx)
	if err != nil {
		return Window{}, fmt.Errorf("probe oldest event: %w", err)
	}
	if !ok {
		return Window{Empty: true}, nil
	}
	w := Window{Oldest: oldest}
	if !oldest.Time.Before(cutoff) {
		w.OutOfReach = oldest.Time.Sub(cutoff)
		return w, nil // cursor 0: from the oldest
	}
	lo := oldest // an event before the cutoff
	hi := head   // every event at or after hi.Seq is at or after the cutoff; 0: unknown
	if hi.Seq != 0 && hi.Time.Before(cutoff) {
		return Window{Oldest: oldest, Empty: true, Cursor: hi.Seq}, nil
	}
	if hi.Seq == 0 {
		// No head: gallop upwards until an event at or after the cutoff, or the end.
		for step := int64(1024); ; step *= 4 {
			c := lo.Seq + step
			pt, ok, _, err := p.First(ctx, &c)
			if err != nil {
				return Window{}, fmt.Errorf("probe cursor %d: %w", c, err)
			}
			if !ok {
				hi = Point{Seq: c + 1, Time: cutoff} // nothing after c: a bound, not an event
				break
			}
			if !pt.Time.Before(cutoff) {
				hi = pt
				break
			}
			lo = pt
		}
	}
	// hiExact: hi is an event (its time can steer interpolation), not just a bound.
	hiExact := hi.Time != cutoff
	bisect := false
	// Close enough is enough: replaying a few hundred events before the window costs a
	// fraction of a second (MinTime drops them), a probe costs a round trip.
	const enough = 256
	for probes := 0; hi.Seq-lo.Seq > enough && probes < 64; probes++ {
		mid := lo.Seq + (hi.Seq-lo.Seq)/2
		if span := hi.Time.Sub(lo.Time); hiExact && !bisect && span > 0 {
			frac := float64(cutoff.Sub(lo.Time)) / float64(span)
			mid = lo.Seq + int64(frac*float64(hi.Seq-lo.Seq))
		}
		bisect = !bisect // alternate, so a skewed event rate cannot make interpolation crawl
		mid = max(lo.Seq+1, min(mid, hi.Seq-1))
		pt, ok, _, err := p.First(ctx, &mid)
		if err != nil {
			return Window{}, fmt.Errorf("probe cursor %d: %w", mid, err)
		}
		switch {
		case !ok || pt.Seq >= hi.Seq:
			// No event in (mid, hi). mid itself is unseen when the relay is exclusive; calling
			// it a bound can only make the fetch start earlier (MinTime drops what is early),
			// never later, because the answer is always an event we saw before the cutoff.
			hi, hiExact = Point{Seq: mid, Time: hi.Time}, false
		case pt.Seq <= lo.Seq: // a misbehaving relay: make progress anyway
			lo = Point{Seq: lo.Seq + 1, Time: lo.Time}
		case pt.Time.Before(cutoff):
			lo = pt
		default:
			hi, hiExact = pt, true
		}
	}
	w.Cursor = lo.Seq
	return w, nil
}
