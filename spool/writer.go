package spool

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/backfill/backfill/internal/fsync"
	"github.com/klauspost/compress/zstd"
)

// WriterStats are cumulative counters of a Writer since NewWriter.
type WriterStats struct {
	Frames    int64 // frames appended
	RawBytes  int64 // uncompressed record bytes appended (24 bytes of record header plus the frame, per frame)
	DiskBytes int64 // bytes written to segment files: headers, chunks, trailers and footers
	Segments  int64 // segments sealed, including one finished during recovery
	Chunks    int64 // data chunks written
}

// Recovery says what NewWriter found in an open segment left by an earlier writer; a segment
// that keeps a frame is sealed either way, and new frames go to a new segment.
type Recovery struct {
	Path           string // the open segment ("" when there was none)
	Frames         int64  // durable frames kept
	TruncatedBytes int64  // torn-tail bytes cut off the end
	Torn           string // why those bytes were a torn tail
	Sealed         bool   // the segment was complete and only needed its rename
	Removed        bool   // no complete chunk survived, so the file was removed
}

// Writer appends frames to the spool's open segment. Its methods must be called from one
// goroutine, except Stats.
type Writer struct {
	s     *Spool
	relay string
	opts  Options
	enc   *zstd.Encoder // compresses the open segment's records as one stream
	sink  chunkBuf      // the encoder's output since the last chunk was cut

	// The open segment; f is nil between segments.
	f       *os.File
	path    string
	hdr     segHeader
	created time.Time
	off     int64    // file size, where the next chunk goes
	st      segStats // all records of the segment, pending ones included; chunks and bodyCRC count written chunks only

	// Records given to the encoder since the last chunk was cut.
	pendCount uint32
	pendRaw   int
	pendFirst int64
	pendLast  int64
	rec       [recordHeaderSize]byte // record header scratch
	out       []byte                 // end chunk, trailer and footer, reused

	lastSeq  int64
	err      error // sticky: after a failed write the file state is unknown until recovery
	closed   bool
	recovery Recovery

	frames, rawBytes, diskBytes, segments, chunks atomic.Int64
}

// NewWriter returns the spool's only writer for frames of relay, recovering an existing open
// segment first: a torn tail is truncated, what remains is sealed, and new frames go to a new
// segment.
func (s *Spool) NewWriter(relay string) (*Writer, error) {
	if relay == "" || len(relay) > maxRelayLen {
		return nil, fmt.Errorf("new writer: relay of %d bytes, want 1-%d", len(relay), maxRelayLen)
	}
	w, sealed, err := s.newWriter(relay)
	if err != nil {
		return nil, err
	}
	if sealed != nil && s.opts.OnSeal != nil {
		s.opts.OnSeal(*sealed)
	}
	return w, nil
}

func (s *Spool) newWriter(relay string) (*Writer, *SegmentInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return nil, nil, ErrClosed
	case s.writer != nil:
		return nil, nil, ErrBusy
	case s.relay != "" && s.relay != relay:
		return nil, nil, fmt.Errorf("new writer for relay %q: spool %s holds relay %q: %w", relay, s.dir, s.relay, ErrRelayMismatch)
	}
	enc, err := zstd.NewWriter(nil,
		zstd.WithWindowSize(maxWindow), // first, so that no level changes it
		zstd.WithEncoderLevel(s.opts.Level),
		zstd.WithEncoderConcurrency(encoderConcurrency),
		zstd.WithEncoderCRC(false), // every record carries a CRC32C of its frame
	)
	if err != nil {
		return nil, nil, fmt.Errorf("zstd encoder: %w", err)
	}
	w := &Writer{s: s, relay: relay, opts: s.opts, enc: enc}
	if last, ok, err := s.lastSealed(); err != nil {
		enc.Close()
		return nil, nil, err
	} else if ok {
		w.lastSeq = last.LastSeq
	}
	sealed, err := w.recover()
	if err != nil {
		enc.Close()
		return nil, nil, fmt.Errorf("recover open segment: %w", err)
	}
	if s.relay == "" {
		if err := s.setRelay(relay); err != nil {
			w.abandon()
			return nil, nil, err
		}
		s.relay = relay
	}
	s.writer = w
	return w, sealed, nil
}

// encoderConcurrency is the zstd encoder's concurrency: with 2, it compresses a block on its own
// goroutines while Append fills the next one.
const encoderConcurrency = 2

// recover seals or removes the open segment left by an earlier writer. The encoder's history
// of that segment's stream is gone, so nothing more can be appended to it: what survives is
// sealed at once, its frame ended by the end chunk unless its last chunk is already that.
func (w *Writer) recover() (*SegmentInfo, error) {
	l, err := listDir(w.s.segDir)
	if err != nil {
		return nil, err
	}
	for _, name := range l.tmp { // a segment whose creation never completed: it held no record
		if err := os.Remove(filepath.Join(w.s.segDir, name)); err != nil {
			return nil, fmt.Errorf("remove unfinished segment: %w", err)
		}
	}
	switch len(l.open) {
	case 0:
		return nil, nil
	case 1:
	default:
		return nil, fmt.Errorf("%w: %s holds %d open segments %v", ErrCorrupt, w.s.segDir, len(l.open), l.open)
	}
	path := filepath.Join(w.s.segDir, l.open[0])
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open segment: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("open segment: %w", err)
	}
	dec, err := newDecoder()
	if err != nil {
		return nil, err
	}
	sc, err := scanOpen(f, fi.Size(), path, dec)
	dec.Close()
	if err != nil {
		return nil, err
	}
	if sc.hdr.relay != w.relay {
		return nil, fmt.Errorf("open segment %s holds relay %q, writer is for %q: %w", path, sc.hdr.relay, w.relay, ErrRelayMismatch)
	}
	if err := checkName(path, sc.hdr); err != nil {
		return nil, err
	}
	if sc.st.count > 0 && sc.st.first <= w.lastSeq {
		return nil, corruptf(path, sc.hdr.size(), "open segment starts at seq %d, not after the last sealed seq %d", sc.st.first, w.lastSeq)
	}
	w.recovery = Recovery{Path: path, Frames: sc.st.count, TruncatedBytes: sc.size - sc.validEnd, Torn: sc.torn}
	switch {
	case sc.sealed:
		if err := f.Sync(); err != nil {
			return nil, fmt.Errorf("sync segment %s: %w", path, err)
		}
		w.recovery.Sealed, w.recovery.TruncatedBytes = true, 0
		w.lastSeq = sc.st.last
		info, err := w.finishSeal(path, sc.hdr, sc.st, sc.size)
		return &info, err
	case sc.st.count == 0:
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove empty open segment: %w", err)
		}
		w.recovery.Removed = true
		return nil, fsync.Dir(w.s.segDir)
	}
	if sc.validEnd < sc.size {
		if err := f.Truncate(sc.validEnd); err != nil {
			return nil, fmt.Errorf("truncate torn tail of %s: %w", path, err)
		}
	}
	st := sc.st
	w.out = appendSeal(w.out[:0], &st, sc.ended, sc.validEnd)
	if err := writeAll(f, w.out, sc.validEnd); err != nil {
		return nil, fmt.Errorf("seal recovered segment %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("sync segment %s: %w", path, err)
	}
	w.diskBytes.Add(int64(len(w.out)))
	w.lastSeq = st.last
	info, err := w.finishSeal(path, sc.hdr, st, sc.validEnd+int64(len(w.out)))
	return &info, err
}

// Recovered says what NewWriter found in an open segment left by an earlier writer.
func (w *Writer) Recovered() Recovery { return w.recovery }

// LastSeq returns the last appended seq (0 when none), or the last durable one after recovery.
func (w *Writer) LastSeq() int64 { return w.lastSeq }

// Stats returns the writer's counters; it is safe to call from any goroutine.
func (w *Writer) Stats() WriterStats {
	return WriterStats{
		Frames:    w.frames.Load(),
		RawBytes:  w.rawBytes.Load(),
		DiskBytes: w.diskBytes.Load(),
		Segments:  w.segments.Load(),
		Chunks:    w.chunks.Load(),
	}
}

func (w *Writer) usable() error {
	if w.closed {
		return ErrClosed
	}
	return w.err
}

// Append adds a frame with its seq and event time (zero when unknown). The seq must be above
// LastSeq, else ErrOutOfOrder. The frame is copied. Append may cut a chunk or roll the segment.
func (w *Writer) Append(seq int64, t time.Time, frame []byte) error {
	if err := w.usable(); err != nil {
		return err
	}
	if seq <= w.lastSeq {
		return fmt.Errorf("append seq %d after %d: %w", seq, w.lastSeq, ErrOutOfOrder)
	}
	if len(frame) > MaxFrameBytes {
		return fmt.Errorf("append seq %d: frame of %d bytes, limit %d: %w", seq, len(frame), MaxFrameBytes, ErrTooLarge)
	}
	if w.f != nil && w.opts.Now().Sub(w.created) >= w.opts.SegmentAge {
		if err := w.Seal(); err != nil {
			return err
		}
	}
	if w.f == nil {
		if err := w.create(seq); err != nil {
			return err
		}
	}
	us := toMicro(t)
	_, err := w.enc.Write(appendRecordHeader(w.rec[:0], seq, us, frame))
	if err == nil {
		_, err = w.enc.Write(frame)
	}
	if err != nil {
		w.err = fmt.Errorf("compress segment %s: %w", w.path, err)
		return w.err
	}
	if w.pendCount == 0 {
		w.pendFirst = seq
	}
	w.pendCount++
	w.pendLast = seq
	n := recordHeaderSize + len(frame)
	w.pendRaw += n
	w.st.addRecord(seq, us, n)
	w.lastSeq = seq
	w.frames.Add(1)
	w.rawBytes.Add(int64(n))
	if w.pendRaw >= w.opts.ChunkBytes {
		if err := w.Flush(); err != nil {
			return err
		}
	}
	if w.st.raw >= w.opts.SegmentBytes {
		return w.Seal()
	}
	return nil
}

// create starts a new open segment whose first record has seq. The header is written to a
// temporary file, synced and renamed, so an open segment always has a complete header.
func (w *Writer) create(seq int64) error {
	name := segmentName(seq)
	path := filepath.Join(w.s.segDir, name+openExt)
	for _, p := range []string{path, filepath.Join(w.s.segDir, name+sealedExt)} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("create segment: %s already exists", p)
		}
	}
	w.hdr = segHeader{firstSeq: seq, created: toMicro(w.opts.Now()), relay: w.relay}
	w.created = fromMicro(w.hdr.created)
	tmp := path + tmpExt
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("create segment: %w", err)
	}
	hdr := appendHeader(nil, w.hdr)
	err = writeAll(f, hdr, 0)
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = fsync.Dir(w.s.segDir)
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("create segment %s: %w", path, err)
	}
	w.f, w.path, w.off, w.st = f, path, int64(len(hdr)), segStats{}
	w.diskBytes.Add(int64(len(hdr)))
	w.sink.reset()
	w.enc.Reset(&w.sink) // a new frame, with no history
	return nil
}

// Flush cuts the pending records into a chunk and writes it; from then on they survive a process
// kill (not a power loss: see Sync). The chunk's payload is what the encoder emits when it ends
// its current block, so it continues the segment's zstd stream and keeps its window.
func (w *Writer) Flush() error {
	if err := w.usable(); err != nil {
		return err
	}
	if w.pendCount == 0 {
		return nil
	}
	if err := w.enc.Flush(); err != nil {
		w.err = fmt.Errorf("compress segment %s: %w", w.path, err)
		return w.err
	}
	chunk := w.sink.b
	payload := chunk[chunkHeaderSize:]
	sum := crc32c(payload)
	chunkHeader{
		kind: kindData, stored: uint32(len(payload)), raw: uint32(w.pendRaw), count: w.pendCount,
		first: w.pendFirst, last: w.pendLast, crc: sum,
	}.put(chunk)
	if err := w.write(chunk); err != nil {
		return err
	}
	w.st.chunks++
	w.st.bodyCRC = extendBodyCRC(w.st.bodyCRC, chunk[:chunkHeaderSize], sum, len(payload))
	w.chunks.Add(1)
	w.sink.reset()
	w.pendCount, w.pendRaw = 0, 0
	return nil
}

// chunkBuf collects the encoder's output behind room for the chunk header.
type chunkBuf struct{ b []byte }

// Write appends p; the encoder calls it from its own goroutines when its concurrency is above 1,
// but only between two cuts, and Flush waits for them.
func (c *chunkBuf) Write(p []byte) (int, error) {
	c.b = append(c.b, p...)
	return len(p), nil
}

func (c *chunkBuf) reset() {
	if cap(c.b) < chunkHeaderSize {
		c.b = make([]byte, chunkHeaderSize, 64<<10)
	}
	c.b = c.b[:chunkHeaderSize]
}

// appendEndChunk appends the end chunk of a segment whose records span seqs first to last.
func appendEndChunk(dst []byte, first, last int64) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, chunkHeaderSize)...)
	dst = append(dst, endBlock[:]...)
	chunkHeader{
		kind: kindEnd, stored: uint32(len(endBlock)), first: first, last: last, crc: crc32c(endBlock[:]),
	}.put(dst[start:])
	return dst
}

// appendSeal appends to dst what seals a segment whose body so far ends at off: the end chunk
// (unless the body already ends with it), the trailer chunk and the footer. It adds the end
// chunk to st's body checksum.
func appendSeal(dst []byte, st *segStats, ended bool, off int64) []byte {
	start := len(dst)
	if !ended {
		dst = appendEndChunk(dst, st.first, st.last)
		st.bodyCRC = crc32Update(st.bodyCRC, dst[start:])
	}
	return appendSealing(dst, *st, off+int64(len(dst)-start))
}

// appendSealing appends to dst the trailer chunk for st and the footer, for a body ending at trOff.
func appendSealing(dst []byte, st segStats, trOff int64) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, chunkHeaderSize)...)
	dst = appendTrailerPayload(dst, st)
	chunkHeader{
		kind: kindTrailer, stored: trailerPayloadSize, raw: trailerPayloadSize,
		first: st.first, last: st.last, crc: crc32c(dst[start+chunkHeaderSize:]),
	}.put(dst[start:])
	return appendFooter(dst, trOff)
}

func (w *Writer) write(b []byte) error {
	if err := writeAll(w.f, b, w.off); err != nil {
		w.err = fmt.Errorf("write segment %s: %w", w.path, err)
		return w.err
	}
	w.off += int64(len(b))
	w.diskBytes.Add(int64(len(b)))
	return nil
}

func writeAll(f *os.File, b []byte, off int64) error {
	_, err := f.WriteAt(b, off)
	return err
}

// Sync flushes and fsyncs the open segment, so its records survive a power loss.
func (w *Writer) Sync() error {
	if err := w.Flush(); err != nil {
		return err
	}
	if w.f == nil {
		return nil
	}
	if err := w.f.Sync(); err != nil {
		w.err = fmt.Errorf("sync segment %s: %w", w.path, err)
		return w.err
	}
	return nil
}

// Seal seals the open segment now (a no-op when it holds no record): it writes the end chunk
// that ends the segment's zstd frame, the trailer and the footer, fsyncs, renames .open to .seg, fsyncs the directory and indexes the segment. The next
// Append starts a new segment.
func (w *Writer) Seal() error {
	if err := w.usable(); err != nil {
		return err
	}
	if w.f == nil {
		return nil
	}
	if err := w.Flush(); err != nil {
		return err
	}
	w.out = appendSeal(w.out[:0], &w.st, false, w.off)
	if err := w.write(w.out); err != nil {
		return err
	}
	if err := w.f.Sync(); err != nil {
		w.err = fmt.Errorf("sync segment %s: %w", w.path, err)
		return w.err
	}
	if err := w.f.Close(); err != nil {
		w.err = fmt.Errorf("close segment %s: %w", w.path, err)
		return w.err
	}
	path, hdr, st, size := w.path, w.hdr, w.st, w.off
	w.f, w.path, w.st = nil, "", segStats{}
	info, err := w.finishSeal(path, hdr, st, size)
	if err != nil {
		return err
	}
	if w.opts.OnSeal != nil {
		w.opts.OnSeal(info)
	}
	return nil
}

// finishSeal renames a complete open segment to its sealed name, fsyncs the directory and
// indexes it. A failed rename is sticky; a failed index write is not (Open reconciles it).
func (w *Writer) finishSeal(openPath string, h segHeader, st segStats, size int64) (SegmentInfo, error) {
	sealedPath := strings.TrimSuffix(openPath, openExt) + sealedExt
	if err := os.Rename(openPath, sealedPath); err != nil {
		w.err = fmt.Errorf("seal segment: %w", err)
		return SegmentInfo{}, w.err
	}
	if err := fsync.Dir(w.s.segDir); err != nil {
		w.err = err
		return SegmentInfo{}, err
	}
	w.segments.Add(1)
	info := SegmentInfo{Name: filepath.Base(sealedPath), Path: sealedPath, FileBytes: size}
	info.setStats(h, st)
	if err := w.s.putIndex(info); err != nil {
		return info, fmt.Errorf("index sealed segment %s: %w", info.Name, err)
	}
	return info, nil
}

// Close seals the open segment and releases the writer, so the spool can open another.
func (w *Writer) Close() error {
	if w.closed {
		return nil
	}
	err := w.Seal()
	w.abandon()
	w.s.mu.Lock()
	if w.s.writer == w {
		w.s.writer = nil
	}
	w.s.mu.Unlock()
	return err
}

// abandon releases the file and encoder without sealing.
func (w *Writer) abandon() {
	w.closed = true
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
	w.enc.Close()
}
