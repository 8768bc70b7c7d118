package loader

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/backfill/backfill/decode"
	"github.com/backfill/backfill/internal/ctxtime"
	"github.com/backfill/backfill/internal/freelist"
	"github.com/backfill/backfill/spool"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"
)

// pollInterval is how often Run lists the spool again while following a producer.
const pollInterval = 500 * time.Millisecond

// segKey is a segment's identity in backfill_segments.
type segKey struct {
	relay       string
	first, last int64
	checksum    uint32
}

func keyOf(s spool.SegmentInfo) segKey {
	return segKey{s.Relay, s.FirstSeq, s.LastSeq, s.Checksum}
}

// job is a unit of work: consecutive segments of one relay loaded in one transaction.
type job struct {
	relay string
	segs  []spool.SegmentInfo
}

// chunk is the frames of one spool chunk (about 1 MiB of them), decoded by one worker.
type chunk struct {
	items  []item
	frames [][]byte
	buf    []byte // the frames' bytes, back to framePool once decoded
	wg     *sync.WaitGroup
}

// framePool recycles the buffers that spool readers decompress chunks into, once their frames
// are decoded: decoded events do not refer to their frame's bytes (TestDecodeDoesNotAliasFrame),
// and a fresh buffer per chunk had the runtime zero about as many bytes as the spool holds. It
// is a free list rather than a sync.Pool, which drops what it holds at every collection: a
// 1M-event load collects about 14 times, and allocated 172 MB of chunk buffers again (a tenth
// of what it allocates, bringing the collections closer together). The reader, the chunks
// queued for the workers and those they decode hold at most about 2+Workers buffers at once.
var framePool = freelist.New[[]byte](16)

// putFrameBuf gives a buffer back; the free list keeps what it has room for.
func putFrameBuf(b []byte) {
	if cap(b) > 0 {
		framePool.Put(b[:0])
	}
}

// Run loads every sealed segment of dir that is not loaded yet, in FirstSeq order. With a
// non-nil follow it keeps listing dir every 500 ms until follow reports the producer finished
// and no unloaded segment remains; with a nil follow it loads what is there and returns.
func (l *Loader) Run(ctx context.Context, dir string, follow func() (finished bool, err error)) (sum Summary, err error) {
	if !l.mu.TryLock() {
		return Summary{}, ErrRunning
	}
	defer l.mu.Unlock()
	start := time.Now()
	sum = newSummary()
	defer func() { sum.Duration = time.Since(start) }()

	// Outside writers may have changed users since the last run.
	l.known = didSet{}
	l.directState = [NumTables]directState{}
	l.directCounts = [NumTables]directCounts{}

	// Bookkeeping as committed: which segments are loaded, and each relay's mark.
	loaded := map[segKey]bool{}
	marks := map[string]mark{}
	awaits := map[string]awaiting{}
	if _, err := l.withRetry(ctx, func(conn *pgx.Conn) error {
		clear(loaded)
		clear(marks)
		clear(awaits)
		if err := readBookkeeping(ctx, conn, loaded, marks, awaits); err != nil {
			return err
		}
		var err error
		l.pending, l.pendingLog, err = readPending(ctx, conn)
		l.pendingStale = false
		return err
	}); err != nil {
		return sum, fmt.Errorf("read load progress: %w", err)
	}
	for _, m := range marks {
		if m.seq > sum.LastSeq {
			sum.LastSeq, sum.LastEventTime = m.seq, m.time
		}
	}
	if sum.LastSeq > l.stats.LastSeq.Load() {
		l.stats.LastSeq.Store(sum.LastSeq)
		if !sum.LastEventTime.IsZero() {
			l.stats.lastTime.Store(sum.LastEventTime.UnixNano())
		}
	}

	g, gctx := errgroup.WithContext(ctx)
	jobs := make(chan job)
	// What the planner holds for the writer (units planned and not taken yet, and the one it
	// reads) weighs at most aheadUnits full units (aheadWeight each).
	ahead := semaphore.NewWeighted(aheadUnits * aheadWeight)
	ready := make(chan *writeUnit, len(rampEighths)+1)
	chunks := make(chan *chunk, l.cfg.Workers)
	// Slots bound the threads that read, decode and plan at once, however many workers: there
	// are GOMAXPROCS-1 of them (at least one), the writer's thread being the other. The decode
	// stage only has to keep ahead of the writer, and on a machine it shares with the
	// database, a stage that takes every core slows the writer's statements and round trips
	// more than it gains (measured on two cores: 5-8% of a load). The writer never waits for a
	// slot (that left the database idle between its transactions): while it has no unit to
	// write, the database has nothing to do either, and the decoders have the writer's thread
	// too; the writer takes that slot back, without waiting, when a unit reaches it (ahead of
	// its full units the writer waited 0.9 s for the first ones, 0.6 s since, in a 1M-event load).
	decoders := max(1, runtime.GOMAXPROCS(0)-1)
	writerSlot := min(1, runtime.GOMAXPROCS(0)-1)
	slots := make(chan struct{}, decoders+writerSlot)
	var decodeTime time.Duration
	var hints *hintWindow
	if !l.cfg.NoDeleteHints {
		hints = newHintWindow(l.cfg)
	}

	relays := map[string]bool{}   // the relays of the spool's segments (the lister's until it ends)
	awaited := maps.Clone(awaits) // as committed before the run, for the planner (the writer updates awaits)
	g.Go(func() error {
		defer close(jobs)
		return l.list(gctx, dir, follow, loaded, marks, relays, hints, jobs, &sum)
	})
	var workers sync.WaitGroup
	for range l.cfg.Workers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			background()
			dec := decode.NewDecoder(decode.Options{Collections: l.cfg.Collections})
			for c := range chunks {
				slots <- struct{}{}
				for i, f := range c.frames {
					ev, err := dec.Decode(f)
					if err == nil && ev == nil {
						err = errors.New("no event")
					}
					c.items[i].ev, c.items[i].err = ev, err
				}
				c.frames = nil
				putFrameBuf(c.buf)
				c.buf = nil
				<-slots
				c.wg.Done()
			}
		}()
	}
	g.Go(func() error {
		background()
		defer close(ready)
		defer func() {
			close(chunks)
			workers.Wait()
		}()
		pl := newPlanner(l.cfg, l.lim)
		pl.hints = hints
		running := maps.Clone(marks) // marks as they will be once every earlier unit commits
		checked := map[string]bool{}
		for j := range jobs {
			if !checked[j.relay] {
				checked[j.relay] = true
				if err := checkAwaits(l.cfg, j.relay, running[j.relay], awaited[j.relay]); err != nil {
					return err
				}
			}
			weight := j.weight()
			if err := ahead.Acquire(gctx, weight); err != nil {
				return err
			}
			t0 := time.Now()
			advanced := make(chan struct{}) // the hint window moves while the unit is read
			go func() {
				defer close(advanced)
				hints.advance(j.segs[len(j.segs)-1].LastSeq)
			}()
			rd, err := l.read(gctx, j, running[j.relay], chunks, slots)
			<-advanced
			if err != nil {
				return err
			}
			select {
			case slots <- struct{}{}:
			case <-gctx.Done():
				return gctx.Err()
			}
			p := pl.plan(rd, running[j.relay])
			<-slots
			running[j.relay] = p.end
			decodeTime += time.Since(t0)
			select {
			case ready <- &writeUnit{relay: j.relay, segs: j.segs, plan: p, weight: weight}:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	committed := maps.Clone(marks) // the writer's, until it ends
	g.Go(func() error {
		held := false            // the writer has its slot, or takes it (taking)
		var taking chan struct{} // closed once the writer has taken its slot
		var next *writeUnit      // taken from ready for its head start while w was written
		end := false             // ready is closed
		var watch *watcher
		defer func() {
			if watch != nil {
				next, _ = watch.stop()
			}
			if next != nil {
				l.dropHead(ctx, next.head)
			}
		}()
		for {
			t0 := time.Now()
			var w *writeUnit
			select {
			case <-gctx.Done():
				return gctx.Err()
			default:
			}
			if next != nil || end {
				w, next = next, nil
			} else {
				select {
				case w = <-ready:
				default:
					// Waiting for the decoders, which have the writer's thread meanwhile.
					if held {
						select {
						case <-taking:
						case <-gctx.Done():
							return gctx.Err()
						}
						<-slots
						held = false
					}
					select {
					case w = <-ready:
					case <-gctx.Done():
						return gctx.Err()
					}
				}
			}
			sum.WaitTime += time.Since(t0)
			if w == nil {
				return nil
			}
			ahead.Release(w.weight)
			if w.head != nil && w.head.settled() && !w.head.usable() {
				// Dropped already (an attempt of the unit before failed): its connection is
				// free again before the next head start plans with it.
				l.dropHead(ctx, w.head)
				w.head = nil
			}
			if !end {
				// The next unit starts ahead once it is planned (tests wait for it), on the
				// connection w's head start does not use, even while that head start still
				// COPYs: the two then run side by side.
				watch = l.watchNext(gctx, w, ready)
				if l.waitNext {
					if err := watch.wait(gctx); err != nil {
						l.dropHead(ctx, w.head)
						return err
					}
				}
			}
			if w.head != nil && !w.head.usable() {
				if !w.head.onMain {
					// w goes the usual way, on the main connection, which the next unit's head
					// start took: that one gives way.
					l.stopAhead(ctx)
				}
				l.dropHead(ctx, w.head)
				w.head = nil
			} else if w.head != nil {
				l.adoptHelper(w.head)
			}
			if !held && writerSlot > 0 {
				// Taken without waiting for it: a decoder gives its slot up within a chunk, and
				// the unit's first statements need no thread of this process but the writer's.
				held, taking = true, make(chan struct{})
				go func(done chan struct{}) {
					defer close(done)
					select {
					case slots <- struct{}{}:
					case <-gctx.Done():
					}
				}(taking)
			}
			t1 := time.Now()
			err := l.write(gctx, w, &sum)
			if watch != nil {
				next, end = watch.stop()
				watch = nil
			}
			if err != nil {
				return err
			}
			sum.WriteTime += time.Since(t1)
			if p := w.plan; p.end.seq > p.start.seq {
				committed[w.relay] = p.end
				if p.awaits > awaits[w.relay].seq {
					awaits[w.relay] = l.awaiting(p.awaits)
				}
			}
		}
	})
	err = g.Wait()
	sum.DecodeTime = decodeTime
	if err != nil && ctx.Err() != nil {
		return sum, fmt.Errorf("load %s: %w", dir, ctx.Err())
	}
	if err != nil {
		return sum, fmt.Errorf("load %s: %w", dir, err)
	}
	for relay := range relays {
		if a := awaits[relay]; a.seq > committed[relay].seq {
			return sum, unreachedError(relay, committed[relay], a)
		}
	}
	return sum, nil
}

// readBookkeeping reads the loaded segments and the relays' marks and awaited deletes.
func readBookkeeping(ctx context.Context, conn *pgx.Conn, loaded map[segKey]bool, marks map[string]mark, awaits map[string]awaiting) error {
	rows, err := conn.Query(ctx, `SELECT relay, first_seq, last_seq, checksum FROM backfill_segments`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var k segKey
		var sum int64
		if err := rows.Scan(&k.relay, &k.first, &k.last, &sum); err != nil {
			rows.Close()
			return err
		}
		k.checksum = uint32(sum)
		loaded[k] = true
	}
	if err := rows.Err(); err != nil {
		return err
	}
	rows, err = conn.Query(ctx, `SELECT relay, seq, event_time, awaits_seq, awaits_since, awaits_until, awaits_collections FROM backfill_loader`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var relay string
		var m mark
		var a awaiting
		var t, since, until *time.Time
		if err := rows.Scan(&relay, &m.seq, &t, &a.seq, &since, &until, &a.collections); err != nil {
			rows.Close()
			return err
		}
		if t != nil {
			m.time = t.UTC()
		}
		if since != nil {
			a.since = since.UTC()
		}
		if until != nil {
			a.until = until.UTC()
		}
		marks[relay], awaits[relay] = m, a
	}
	return rows.Err()
}

// list feeds jobs with the unloaded segments of dir, following the producer when asked.
func (l *Loader) list(ctx context.Context, dir string, follow func() (bool, error), loaded map[segKey]bool, marks map[string]mark, relays map[string]bool, hints *hintWindow, jobs chan<- job, sum *Summary) error {
	queued := map[segKey]bool{}
	cut := 0 // jobs cut so far
	// final: the listing is the run's last (without follow, the only one)
	once := func(final bool) (int, error) {
		segs, err := spool.ListSegments(dir)
		if err != nil {
			return 0, fmt.Errorf("list segments: %w", err)
		}
		var fresh []spool.SegmentInfo
		for _, s := range segs {
			k := keyOf(s)
			if queued[k] {
				continue
			}
			relays[s.Relay] = true
			queued[k] = true
			l.stats.SegmentsTotal.Add(1)
			if loaded[k] || s.LastSeq <= marks[s.Relay].seq {
				// Loaded before, or entirely at or below the mark (a re-fetch with other bounds).
				l.stats.SegmentsSkipped.Add(1)
				l.stats.SegmentsDone.Add(1)
				sum.SegmentsSkipped++
				continue
			}
			fresh = append(fresh, s)
		}
		hints.add(fresh)
		for _, j := range groupSegments(fresh, l.cfg.BatchSize, l.minBatchBytes, cut, final) {
			cut++
			// While the planner reads the job before, j's files come into the page cache.
			prefetch(j.segs)
			select {
			case jobs <- j:
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
		return len(fresh), nil
	}
	if follow == nil {
		_, err := once(true)
		return err
	}
	for {
		finished, err := follow()
		if err != nil {
			return fmt.Errorf("follow producer: %w", err)
		}
		n, err := once(finished)
		if err != nil {
			return err
		}
		if finished && n == 0 {
			return nil
		}
		if n == 0 {
			if err := ctxtime.Sleep(ctx, pollInterval); err != nil {
				return err
			}
		}
	}
}

// aheadWeight is the weight of a full unit (job.weight).
const aheadWeight = 1 << 20

// aheadUnits is how many full units the planner may hold for the writer, the one it reads
// included. With one, it read the next full unit only once the writer took the one before,
// and a unit that read slower than the writer wrote its predecessor (the decoders share the
// cores with the database) left the database idle: 0.1-0.4 s of waits in a 1M-event load
// (two cores), gone with two. The second unit costs its rows' memory: the live heap of that
// load peaked at 200 MB instead of 157, under the 400 MiB GOMEMLIMIT of main.go.
const aheadUnits = 2

// weight is the share of a full unit the job takes, by frames or raw bytes (the larger), in
// units of 1/aheadWeight, at most aheadWeight.
func (j job) weight() int64 {
	var frames, bytes int64
	for _, s := range j.segs {
		frames, bytes = frames+s.Count, bytes+s.RawBytes
	}
	w := max(frames*aheadWeight/unitFrames, bytes*aheadWeight/unitBytes, 1)
	return min(w, aheadWeight)
}

// rampEighths are the caps of a run's first units, in eighths of unitFrames and unitBytes.
// Until the writer has its first unit the database has nothing to do, and the decoders take
// about two thirds of the writer's time for a unit (two cores, 1M-event bench): a first unit of
// one 19k-frame segment instead of four started the database 0.8 s sooner, and units growing by
// at most half of what the writer has in hand keep the decoders, now on one thread, ahead of it.
var rampEighths = [...]int64{1, 2, 4, 6}

// groupSegments cuts segments (ascending FirstSeq) into jobs of consecutive segments of one
// relay. A job takes segments until it has batch of them and at least minBytes raw bytes,
// or until the next would take it past unitFrames frames or unitBytes raw bytes (a larger
// segment goes alone); the caps are smaller for the first jobs of a run (rampEighths), of
// which cut jobs have been cut before. When segs are the last of the run (final), its last
// jobs shrink the same way in reverse (rampDown).
func groupSegments(segs []spool.SegmentInfo, batch int, minBytes int64, cut int, final bool) []job {
	var down []job
	if final {
		segs, down = rampDown(segs, batch, minBytes)
	}
	return append(groupForward(segs, batch, minBytes, cut), down...)
}

// rampCaps returns the frame and byte caps of the n-th job of a ramp (rampEighths), full ones
// past it.
func rampCaps(n int) (frames, bytes int64) {
	if n < len(rampEighths) {
		return unitFrames * rampEighths[n] / 8, unitBytes * rampEighths[n] / 8
	}
	return unitFrames, unitBytes
}

// filling is a job being cut, with its frames and raw bytes.
type filling struct {
	job
	frames, bytes int64
}

// takes reports whether the job can take s, next to its segments, under the caps: it takes any
// first segment, and then only segments of its relay, until it has batch of them and minBytes,
// or s would take it past maxFrames or maxBytes.
func (f *filling) takes(s spool.SegmentInfo, batch int, minBytes, maxFrames, maxBytes int64) bool {
	if len(f.segs) == 0 {
		return true
	}
	full := len(f.segs) >= batch && f.bytes >= minBytes
	return s.Relay == f.relay && !full && f.frames+s.Count <= maxFrames && f.bytes+s.RawBytes <= maxBytes
}

func (f *filling) add(s spool.SegmentInfo) {
	f.relay = s.Relay
	f.segs = append(f.segs, s)
	f.frames += s.Count
	f.bytes += s.RawBytes
}

// rampDown cuts the last jobs of a run off the end of segs under the caps of rampEighths: the
// last job at most an eighth of a full one, the one before it a quarter, then a half and three
// quarters; it returns the segments before them and those jobs in order. The writer has a
// unit in hand and the planner one or two more when the last unit is planned; after that the
// loader's decoding thread has nothing left to do, and the database writes those units with a
// CPU to spare (in a 1M-event load on two cores, a second of the last units' writing with
// about half a CPU idle). Small last units leave it less to do alone, at the cost of a few
// more transactions.
func rampDown(segs []spool.SegmentInfo, batch int, minBytes int64) ([]spool.SegmentInfo, []job) {
	var down []job // last first
	for n := 0; n < len(rampEighths) && len(segs) > 0; n++ {
		maxFrames, maxBytes := rampCaps(n)
		var f filling
		for i := len(segs) - 1; i >= 0 && f.takes(segs[i], batch, minBytes, maxFrames, maxBytes); i-- {
			f.add(segs[i])
		}
		slices.Reverse(f.segs)
		segs = segs[:len(segs)-len(f.segs)]
		down = append(down, f.job)
	}
	slices.Reverse(down)
	return segs, down
}

// groupForward cuts segs as groupSegments does, front to back.
func groupForward(segs []spool.SegmentInfo, batch int, minBytes int64, cut int) []job {
	var out []job
	var f filling
	maxFrames, maxBytes := rampCaps(cut)
	for _, s := range segs {
		if !f.takes(s, batch, minBytes, maxFrames, maxBytes) {
			out = append(out, f.job)
			f = filling{}
			maxFrames, maxBytes = rampCaps(cut + len(out))
		}
		f.add(s)
	}
	if len(f.segs) > 0 {
		out = append(out, f.job)
	}
	return out
}

// readResult is a job's frames, decoded, in seq order.
type readResult struct {
	items  []item
	frames []int64 // per segment: frames read
	unread []int64 // per segment: frames at or below the mark, skipped without decoding
}

// read reads a job's frames and has the workers decode them; frames at or below m are not
// decoded, only counted. It holds a slot while it reads.
func (l *Loader) read(ctx context.Context, j job, m mark, chunks chan<- *chunk, slots chan struct{}) (*readResult, error) {
	rd := &readResult{frames: make([]int64, len(j.segs)), unread: make([]int64, len(j.segs))}
	held := false
	acquire := func() error {
		if held {
			return nil
		}
		select {
		case slots <- struct{}{}:
			held = true
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	release := func() {
		if held {
			<-slots
			held = false
		}
	}
	defer release()
	var all []*chunk
	var wg sync.WaitGroup
	var recs []spool.Record
	// Each chunk of the segment goes to the decoders in the buffer the reader decompressed it
	// into, which framePool then recycles: copied into buffers of the loader's own, frames
	// cost a pass over every byte of the spool (2-3% of a load's CPU).
	send := func(c *chunk) error {
		release()
		wg.Add(1)
		select {
		case chunks <- c:
		case <-ctx.Done():
			wg.Done()
			return ctx.Err()
		}
		all = append(all, c)
		return nil
	}
	for si, s := range j.segs {
		r, err := spool.OpenSegment(s.Path)
		if err != nil {
			return nil, fmt.Errorf("open segment %s: %w", s.Name, err)
		}
		for {
			if err := acquire(); err != nil {
				r.Close()
				return nil, err
			}
			buf, _ := framePool.Get()
			var raw []byte
			recs, raw, err = r.NextChunk(recs, buf)
			if err == io.EOF {
				putFrameBuf(buf)
				break
			}
			if err != nil {
				r.Close()
				return nil, fmt.Errorf("read segment %s: %w", s.Name, err)
			}
			c := &chunk{wg: &wg, items: make([]item, 0, len(recs)), frames: make([][]byte, 0, len(recs)), buf: raw}
			var read int64
			for _, rec := range recs {
				read += int64(len(rec.Frame))
				if rec.Seq > 0 && rec.Seq <= m.seq {
					rd.unread[si]++
					continue
				}
				c.frames = append(c.frames, rec.Frame)
				c.items = append(c.items, item{seq: rec.Seq, seg: si})
			}
			rd.frames[si] += int64(len(recs))
			l.stats.Frames.Add(int64(len(recs)))
			l.stats.BytesRead.Add(read)
			if len(c.items) == 0 {
				putFrameBuf(c.buf)
				continue
			}
			if err := send(c); err != nil {
				r.Close()
				return nil, err
			}
		}
		r.Close()
	}
	release()
	wg.Wait()
	n := 0
	for _, c := range all {
		n += len(c.items)
	}
	rd.items = make([]item, 0, n)
	for _, c := range all {
		rd.items = append(rd.items, c.items...)
	}
	return rd, nil
}

// write commits one unit, retrying transient failures, and adds its outcome to sum and stats.
func (l *Loader) write(ctx context.Context, w *writeUnit, sum *Summary) error {
	var res txResult
	attempts := 0
	safe := false
	try := func(conn *pgx.Conn, h *headStart) error {
		attempts++
		r, done, err := l.attempt(ctx, conn, w, attempts, safe, h)
		if err == nil && !done {
			res = r
		}
		if err != nil {
			// The attempts after this one go the usual way, on the main connection: the head
			// start of the next unit gives way.
			l.stopAhead(ctx)
		}
		var pgErr *pgconn.PgError
		if !safe && errors.As(err, &pgErr) && pgErr.Code == "23505" {
			// Another session inserted a key between an anti-join and its insert.
			safe = true
			return &retrySafeError{err}
		}
		return err
	}
	var err error
	if h := w.head; h.usable() {
		if err = try(nil, h); err == nil {
			var rows int64
			for _, n := range h.rows {
				rows += n
			}
			if rows > 0 {
				sum.AheadRows += rows
				sum.AheadUnits++
			}
		} else {
			if !transient(err) {
				return fmt.Errorf("load segments %s..%s: %w", w.segs[0].Name, w.segs[len(w.segs)-1].Name, err)
			}
			sum.Retries++
			h.mark(false) // rolled back
		}
	}
	if attempts == 0 || err != nil {
		var retries int
		retries, err = l.withRetry(ctx, func(conn *pgx.Conn) error { return try(conn, nil) })
		sum.Retries += retries
	}
	if err != nil {
		return fmt.Errorf("load segments %s..%s: %w", w.segs[0].Name, w.segs[len(w.segs)-1].Name, err)
	}
	if ch := res.pending; ch != nil {
		for i := range ch.added {
			l.pendingCounts.left += len(ch.added[i])
			l.pendingCounts.materialized += len(ch.materialize[i])
			l.pendingCounts.ended += len(ch.ended[i])
		}
	}
	p := w.plan
	sum.Transactions++
	sum.SegmentsLoaded += len(w.segs)
	var reasons = map[decode.Reason]int64{}
	for i := range p.segCounts {
		c := &p.segCounts[i]
		sum.Frames += c.frames
		for k, n := range c.events {
			if n > 0 {
				sum.Events[decode.Kind(k)] += n
				l.stats.Events[k].Add(n)
			}
		}
		for r, n := range c.reasons {
			reasons[r] += n
			if repairedReasons[r] {
				sum.Repaired[r] += n
			} else {
				sum.Skipped[r] += n
			}
		}
	}
	l.stats.addReasons(reasons)
	for t := Table(0); t < NumTables; t++ {
		if res.rows[t].total() > 0 || res.rows[t].Elided > 0 {
			rc := sum.Rows[t]
			rc.add(res.rows[t])
			sum.Rows[t] = rc
			l.stats.Rows[t].Add(res.rows[t].total())
		}
	}
	if p.end.seq > p.start.seq {
		sum.LastSeq, sum.LastEventTime = p.end.seq, p.end.time
		l.stats.LastSeq.Store(p.end.seq)
		if !p.end.time.IsZero() {
			l.stats.lastTime.Store(p.end.time.UnixNano())
		}
	}
	l.stats.SegmentsDone.Add(int64(len(w.segs)))
	l.reverse = !l.reverse
	for _, u := range p.users {
		l.known.add(u.did)
	}
	var unitEvents int64
	for i := range p.segCounts {
		for _, n := range p.segCounts[i].events {
			unitEvents += n
		}
	}
	return l.throttle(ctx, unitEvents)
}

// throttle keeps the committed event rate under Config.MaxEventsPerSec by waiting after a
// commit for as long as the events committed so far are ahead of the allowed rate.
func (l *Loader) throttle(ctx context.Context, events int64) error {
	if l.cfg.MaxEventsPerSec <= 0 {
		return nil
	}
	if l.rateStart.IsZero() {
		l.rateStart = time.Now()
	}
	l.rateEvents += events
	due := time.Duration(float64(l.rateEvents) / l.cfg.MaxEventsPerSec * float64(time.Second))
	wait := due - time.Since(l.rateStart)
	if wait <= 0 {
		return nil
	}
	return ctxtime.Sleep(ctx, wait)
}

// knownCap bounds the DIDs a run remembers as present in users (about 80 bytes each).
const knownCap = 500_000

// didSet remembers DIDs whose users row a committed transaction of this run ensured. Rows in
// users are never deleted by the loader, so for them the ensure is a no-op that can be skipped.
// When full it starts over: frequent DIDs come back at once. Only the writer goroutine uses it.
type didSet struct {
	m map[string]struct{}
	n int
}

func (s *didSet) has(did string) bool {
	_, ok := s.m[did]
	return ok
}

func (s *didSet) add(did string) {
	if s.m == nil || s.n >= knownCap {
		s.m, s.n = make(map[string]struct{}, 1024), 0
	}
	if _, ok := s.m[did]; !ok {
		s.m[did] = struct{}{}
		s.n++
	}
}

// retrySafeError is a unique violation met by an anti-join insert: retried with ON CONFLICT.
type retrySafeError struct{ err error }

func (e *retrySafeError) Error() string { return e.err.Error() }
func (e *retrySafeError) Unwrap() error { return e.err }

// withRetry runs f on a live connection, reconnecting and retrying with jittered exponential
// backoff while errors are transient; it returns how many attempts failed.
func (l *Loader) withRetry(ctx context.Context, f func(conn *pgx.Conn) error) (int, error) {
	pol := l.cfg.Retry
	for attempt := 1; ; attempt++ {
		err := l.ensureConn(ctx)
		if err == nil {
			err = f(l.conn)
		}
		if err == nil {
			return attempt - 1, nil
		}
		if ctx.Err() != nil {
			return attempt - 1, fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		if !transient(err) || attempt >= pol.Attempts {
			return attempt - 1, err
		}
		if l.conn != nil && (l.conn.IsClosed() || l.conn.PgConn().TxStatus() != 'I') {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = l.conn.Close(cctx)
			cancel()
		}
		d := min(pol.MaxDelay, pol.MinDelay<<min(attempt-1, 30))
		d = d/2 + rand.N(d/2+1)
		if serr := ctxtime.Sleep(ctx, d); serr != nil {
			return attempt, fmt.Errorf("%w (%v)", serr, err)
		}
	}
}

// ensureConn reconnects (and retakes the lock) when the connection was lost.
func (l *Loader) ensureConn(ctx context.Context) error {
	if l.conn != nil && !l.conn.IsClosed() {
		return nil
	}
	l.conn = nil
	return l.connect(ctx)
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

func sortedValues[V any](m map[string]*V) []*V {
	out := make([]*V, 0, len(m))
	for _, k := range sortedKeys(m) {
		out = append(out, m[k])
	}
	return out
}
