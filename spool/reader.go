package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/backfill/backfill/internal/freelist"
	"github.com/klauspost/compress/zstd"
)

const (
	segmentsDir = "segments"
	sealedExt   = ".seg"
	openExt     = ".open"
	tmpExt      = ".tmp"
	nameDigits  = 20
)

// SegmentInfo describes a segment as its header and trailer state it.
type SegmentInfo struct {
	Name      string    // file name, e.g. 00000000000000000042.seg
	Path      string    // path of the file
	Relay     string    // relay host the frames came from
	FirstSeq  int64     // seq of the first frame
	LastSeq   int64     // seq of the last frame
	Count     int64     // frames in the segment
	MinTime   time.Time // earliest known event time (zero when no frame has one)
	MaxTime   time.Time // latest known event time (zero when no frame has one)
	LastTime  time.Time // event time of the frame with LastSeq (zero when unknown)
	RawBytes  int64     // uncompressed record bytes: 24 bytes of record header plus the frame, per frame
	FileBytes int64     // size of the file
	Checksum  uint32    // body checksum from the trailer (CRC32C of all chunk bytes before it)
}

// ID returns a stable identity "relay/first-last/checksum-hex" for bookkeeping elsewhere.
func (i SegmentInfo) ID() string {
	return fmt.Sprintf("%s/%d-%d/%08x", i.Relay, i.FirstSeq, i.LastSeq, i.Checksum)
}

func (i *SegmentInfo) setStats(h segHeader, s segStats) {
	i.Relay = h.relay
	i.FirstSeq, i.LastSeq, i.Count = s.first, s.last, s.count
	i.MinTime, i.MaxTime, i.LastTime = fromMicro(s.minTime), fromMicro(s.maxTime), fromMicro(s.lastTime)
	i.RawBytes = s.raw
	i.Checksum = s.bodyCRC
}

// Record is one frame read back from a segment.
type Record struct {
	Seq   int64     // relay sequence number
	Time  time.Time // event time (zero when unknown)
	Frame []byte    // frame bytes: from Next, valid until the next call; from NextChunk, in the caller's buffer
}

// Reader reads the records of a sealed segment in seq order, decoding its chunks as one zstd
// stream and checking every checksum and, at the end, the end chunk and the trailer against what
// it read.
type Reader struct {
	f       io.Closer
	cr      chunkReader
	own     *readerState // the decoder and buffers OpenSegment took, returned by Close
	info    SegmentInfo
	trailer segStats
	hdr     segHeader
	off     int64 // next chunk
	end     int64 // trailer offset
	got     segStats
	ended   bool // the end chunk has been read
	pos     int  // next record in cr.raw
	left    uint32
	err     error
}

// readerState is what an OpenSegment reader leaves to the next one: its decoder and buffers.
// A load opens its segments one after another, and each new decoder's history and each
// reader's chunk buffers were allocated again (0.2 s of a 1M-event load's 14 s of CPU, most of
// it clearing the memory).
type readerState struct {
	dec         *zstd.Decoder
	stored, raw []byte
}

// readerStates holds the states closed readers left, for the next readers to take. A free list
// rather than a sync.Pool, which drops what it holds at every collection: a load that read one
// segment after another made a new decoder, and its buffers, after each (50 MB of a 1M-event
// load's allocations). It keeps as many states as readers were open at once, up to its size.
var readerStates = freelist.New[*readerState](8)

// keepReaderState offers st to the next reader; a state the free list has no room for is closed.
func keepReaderState(st *readerState) {
	if !readerStates.Put(st) {
		st.dec.Close()
	}
}

// OpenSegment opens a sealed segment file for reading.
func OpenSegment(path string) (*Reader, error) {
	st, _ := readerStates.Get()
	if st == nil {
		dec, err := newDecoder()
		if err != nil {
			return nil, err
		}
		st = &readerState{dec: dec}
	}
	r, err := openSegment(path, st.dec)
	if err != nil {
		keepReaderState(st)
		return nil, err
	}
	r.cr.stored, r.cr.raw = st.stored, st.raw
	r.own = st
	return r, nil
}

func openSegment(path string, dec *zstd.Decoder) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open segment: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open segment: %w", err)
	}
	r, err := newReader(f, st.Size(), path, dec)
	if err != nil {
		f.Close()
		return nil, err
	}
	r.f = f
	return r, nil
}

// newReader reads the header and trailer of the sealed segment in ra, size bytes long.
func newReader(ra io.ReaderAt, size int64, path string, dec *zstd.Decoder) (*Reader, error) {
	h, tr, trOff, err := readSealed(ra, size, path)
	if err != nil {
		return nil, err
	}
	r := &Reader{
		cr:      chunkReader{r: ra, path: path, dec: dec},
		trailer: tr,
		hdr:     h,
		off:     h.size(),
		end:     trOff,
	}
	r.info = SegmentInfo{Name: filepath.Base(path), Path: path, FileBytes: size}
	r.info.setStats(h, tr)
	return r, nil
}

// readSealed reads the header, footer and trailer of a sealed segment without touching its body.
func readSealed(r io.ReaderAt, size int64, path string) (segHeader, segStats, int64, error) {
	h, err := readHeader(r, size, path)
	if err != nil {
		return h, segStats{}, 0, err
	}
	if size < h.size()+trailerChunkSize+footerSize {
		return h, segStats{}, 0, corruptf(path, h.size(), "file of %d bytes has no room for a trailer and footer", size)
	}
	var b [trailerChunkSize + footerSize]byte
	if _, err := r.ReadAt(b[:], size-int64(len(b))); err != nil {
		return h, segStats{}, 0, fmt.Errorf("read trailer of %s: %w", path, err)
	}
	trOff, ok := parseFooter(b[trailerChunkSize:])
	if !ok {
		return h, segStats{}, 0, corruptf(path, size-footerSize, "bad footer magic %q", b[trailerChunkSize+8:])
	}
	if want := size - int64(len(b)); trOff != want {
		return h, segStats{}, 0, corruptf(path, size-footerSize, "footer points at offset %d, trailer is at %d", trOff, want)
	}
	ch, reason := parseChunkHeader(b[:chunkHeaderSize])
	if reason == "" && ch.kind != kindTrailer {
		reason = fmt.Sprintf("chunk kind %d where the trailer belongs", ch.kind)
	}
	if reason != "" {
		return h, segStats{}, 0, corruptf(path, trOff, "%s", reason)
	}
	payload := b[chunkHeaderSize:trailerChunkSize]
	if got := crc32c(payload); got != ch.crc {
		return h, segStats{}, 0, corruptf(path, trOff, "trailer chunk checksum %08x, want %08x", got, ch.crc)
	}
	tr, reason := parseTrailerPayload(payload)
	switch {
	case reason != "":
	case tr.first != h.firstSeq:
		reason = fmt.Sprintf("trailer first seq %d, header says %d", tr.first, h.firstSeq)
	case ch.first != tr.first || ch.last != tr.last:
		reason = fmt.Sprintf("trailer chunk header seq %d-%d, trailer says %d-%d", ch.first, ch.last, tr.first, tr.last)
	case tr.chunks > (trOff-h.size())/(chunkHeaderSize+1):
		reason = fmt.Sprintf("trailer counts %d chunks in a %d-byte body", tr.chunks, trOff-h.size())
	}
	if reason != "" {
		return h, segStats{}, 0, corruptf(path, trOff, "%s", reason)
	}
	return h, tr, trOff, nil
}

// Info returns what the header and trailer say about the segment.
func (r *Reader) Info() SegmentInfo { return r.info }

// Next returns the next record, or io.EOF after the last one once the contents have been checked
// against the trailer. Record.Frame is valid until the next call.
func (r *Reader) Next() (Record, error) {
	if r.err != nil {
		return Record{}, r.err
	}
	if r.left == 0 {
		if err := r.nextChunk(); err != nil {
			r.err = err
			return Record{}, err
		}
	}
	return r.record(), nil
}

// record returns the next record of the chunk in cr.raw. checkRecords has validated every
// record of the chunk, so no bounds can fail here.
func (r *Reader) record() Record {
	raw := r.cr.raw[r.pos:]
	n := int(binary.LittleEndian.Uint32(raw))
	rec := Record{
		Seq:   int64(binary.LittleEndian.Uint64(raw[8:])),
		Time:  fromMicro(int64(binary.LittleEndian.Uint64(raw[16:]))),
		Frame: raw[recordHeaderSize : recordHeaderSize+n : recordHeaderSize+n],
	}
	r.pos += recordHeaderSize + n
	r.left--
	return rec
}

var errMidChunk = errors.New("spool: NextChunk called within a chunk that Next has begun")

// NextChunk returns the records of the next chunk, appended to recs[:0], and the buffer their
// frames are in, which is the caller's from then on: the reader never writes to it again. The
// chunk is decompressed into buf when it fits (a buffer the caller is done with, or nil), else
// into a new one, so that a caller keeping the frames of many chunks copies none of them. After
// the last chunk it returns io.EOF, once the contents have been checked against the trailer. It
// may not be called while records of a chunk that Next began remain.
func (r *Reader) NextChunk(recs []Record, buf []byte) ([]Record, []byte, error) {
	recs = recs[:0]
	if r.err != nil {
		return recs, nil, r.err
	}
	if r.left > 0 {
		return recs, nil, errMidChunk
	}
	r.cr.raw = buf[:0]
	if err := r.nextChunk(); err != nil {
		r.cr.raw = nil
		r.err = err
		return recs, nil, err
	}
	for r.left > 0 {
		recs = append(recs, r.record())
	}
	raw := r.cr.raw
	r.cr.raw = nil
	return recs, raw, nil
}

// nextChunk reads up to the next data chunk and decodes it; at the end of the body it checks the
// end chunk and the trailer against what was read.
func (r *Reader) nextChunk() error {
	for {
		if r.off == r.end {
			if !r.ended {
				return corruptf(r.cr.path, r.end, "no end chunk before the trailer")
			}
			if d := r.got.diff(r.trailer); d != "" {
				return corruptf(r.cr.path, r.end, "%s", d)
			}
			return io.EOF
		}
		h, st, reason, err := r.cr.read(r.off, r.end)
		if err != nil {
			return err
		}
		switch {
		case st != chunkOK:
		case r.ended:
			reason = "chunk after the end chunk"
		case h.kind == kindTrailer:
			reason = "trailer chunk before the end of the body"
		case h.kind == kindEnd:
			reason = r.cr.checkEnd(h, r.hdr, r.got)
		case r.got.count == 0 && h.first != r.hdr.firstSeq:
			reason = fmt.Sprintf("first chunk starts at seq %d, header says %d", h.first, r.hdr.firstSeq)
		}
		if reason != "" {
			return corruptf(r.cr.path, r.off, "%s", reason)
		}
		if h.kind == kindEnd {
			if err := r.cr.endFrame(r.off); err != nil {
				return err
			}
			r.got.bodyCRC = r.cr.crcChunk(r.got.bodyCRC)
			r.off += chunkHeaderSize + int64(h.stored)
			r.ended = true
			continue
		}
		cs, err := r.cr.decode(r.off, h, r.got.last)
		if err != nil {
			return err
		}
		r.got.merge(cs)
		r.got.chunks++
		r.got.bodyCRC = r.cr.crcChunk(r.got.bodyCRC)
		r.off += chunkHeaderSize + int64(h.stored)
		r.pos, r.left = 0, h.count
		return nil
	}
}

// Close releases the file and the decoder; the last Record's Frame is invalid afterwards.
func (r *Reader) Close() error {
	if st := r.own; st != nil {
		// The decoder lets go of this reader's chunk, and is reset onto the next reader's
		// first one; a decoder that met corrupt data is not kept.
		r.own = nil
		if (r.err != nil && r.err != io.EOF) || st.dec.Reset(nil) != nil {
			st.dec.Close()
		} else {
			st.stored, st.raw = r.cr.stored, r.cr.raw
			keepReaderState(st)
		}
		r.cr.dec, r.cr.stored, r.cr.raw = nil, nil, nil
	}
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	if err != nil {
		return fmt.Errorf("close segment %s: %w", r.cr.path, err)
	}
	return nil
}

// ListSegments returns the sealed segments of the spool in dir, ascending by FirstSeq, reading
// only each file's header, footer and trailer. It needs no index and no lock.
func ListSegments(dir string) ([]SegmentInfo, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("list segments: %w", err)
	}
	l, err := listDir(filepath.Join(dir, segmentsDir))
	if err != nil {
		return nil, err
	}
	infos := make([]SegmentInfo, 0, len(l.sealed))
	for _, name := range l.sealed {
		info, err := readInfo(filepath.Join(dir, segmentsDir, name))
		if err != nil {
			return nil, err
		}
		infos = append(infos, info)
	}
	return infos, nil
}

// readInfo reads the header and trailer of the sealed segment at path and checks its name.
func readInfo(path string) (SegmentInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return SegmentInfo{}, fmt.Errorf("read segment info: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return SegmentInfo{}, fmt.Errorf("read segment info: %w", err)
	}
	h, tr, _, err := readSealed(f, st.Size(), path)
	if err != nil {
		return SegmentInfo{}, err
	}
	if err := checkName(path, h); err != nil {
		return SegmentInfo{}, err
	}
	info := SegmentInfo{Name: filepath.Base(path), Path: path, FileBytes: st.Size()}
	info.setStats(h, tr)
	return info, nil
}

// checkName fails when the file name disagrees with the first seq in the header: the index and
// every reader rely on names sorting like seqs.
func checkName(path string, h segHeader) error {
	first, _, ok := parseSegmentName(filepath.Base(path))
	if !ok || first != h.firstSeq {
		return corruptf(path, 12, "header first seq %d does not match the file name", h.firstSeq)
	}
	return nil
}

func segmentName(first int64) string { return fmt.Sprintf("%0*d", nameDigits, first) }

// parseSegmentName parses "<20 digits>.seg" or "<20 digits>.open".
func parseSegmentName(name string) (first int64, ext string, ok bool) {
	ext = filepath.Ext(name)
	if ext != sealedExt && ext != openExt {
		return 0, "", false
	}
	digits := strings.TrimSuffix(name, ext)
	if len(digits) != nameDigits || strings.Trim(digits, "0123456789") != "" {
		return 0, "", false
	}
	first, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || first < 1 {
		return 0, "", false
	}
	return first, ext, true
}

// dirList is the segments directory sorted into kinds, each ascending by name.
type dirList struct {
	sealed []string // well-named .seg files
	open   []string // well-named .open files
	tmp    []string // *.tmp leftovers of an interrupted segment creation
	odd    []string // .seg or .open files with a malformed name
}

func listDir(segDir string) (dirList, error) {
	var l dirList
	entries, err := os.ReadDir(segDir)
	if errors.Is(err, fs.ErrNotExist) {
		return l, nil
	}
	if err != nil {
		return l, fmt.Errorf("list segments: %w", err)
	}
	for _, e := range entries { // ReadDir sorts by name; equal-width names sort like seqs
		name := e.Name()
		if !e.Type().IsRegular() {
			continue
		}
		_, ext, ok := parseSegmentName(name)
		switch {
		case ok && ext == sealedExt:
			l.sealed = append(l.sealed, name)
		case ok && ext == openExt:
			l.open = append(l.open, name)
		case strings.HasSuffix(name, openExt+tmpExt):
			l.tmp = append(l.tmp, name)
		case strings.HasSuffix(name, sealedExt), strings.HasSuffix(name, openExt):
			l.odd = append(l.odd, name)
		}
	}
	return l, nil
}
