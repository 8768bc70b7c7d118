package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"time"
)

// The byte layout below is documented in docs/FORMAT.md and pinned by the golden tests.
const (
	headerMagic   = "BFSPSEG\n"
	footerMagic   = "BFSPEND\n"
	formatVersion = 2

	headerFixedSize    = 30 // magic, version, flags, first seq, created, relay length
	headerCRCSize      = 4
	maxRelayLen        = 1024
	chunkHeaderSize    = 40
	recordHeaderSize   = 24
	trailerPayloadSize = 72
	trailerChunkSize   = chunkHeaderSize + trailerPayloadSize
	footerSize         = 16

	kindData    = 1
	kindTrailer = 2
	kindEnd     = 3

	// maxWindow is the largest zstd window a segment's frame may declare: the writer's window
	// at every level, and the bound on a reader's history buffer.
	maxWindow = 8 << 20

	// MaxFrameBytes is the largest frame Append accepts (the relay protocol allows 5 MB).
	MaxFrameBytes = 8 << 20
	// MaxChunkBytes is the largest Options.ChunkBytes.
	MaxChunkBytes = 16 << 20

	// maxChunkRaw bounds the raw length of a chunk: a chunk is cut once it reaches ChunkBytes,
	// so it can exceed ChunkBytes by one record.
	maxChunkRaw = MaxChunkBytes + recordHeaderSize + MaxFrameBytes
	// maxChunkStored bounds the compressed length of a chunk (zstd's worst case expansion is
	// far below 1/128 plus a few bytes).
	maxChunkStored = maxChunkRaw + maxChunkRaw>>7 + 4096
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// endBlock is the payload of the end chunk: an empty raw zstd block with Last_Block set, which
// ends the segment's frame after any block and needs none of the encoder's history.
var endBlock = [...]byte{0x01, 0x00, 0x00}

func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

var (
	// ErrCorrupt marks segment bytes that fail a checksum or contradict the format; it is never a torn tail.
	ErrCorrupt = errors.New("spool: corrupt segment")
	// ErrRelayMismatch marks an attempt to mix frames of two relays in one spool.
	ErrRelayMismatch = errors.New("spool: relay mismatch")
	// ErrOutOfOrder marks an Append whose seq is not above the last appended seq.
	ErrOutOfOrder = errors.New("spool: seq out of order")
	// ErrLocked marks a spool whose index another process holds open.
	ErrLocked = errors.New("spool: locked by another process")
	// ErrBusy marks a second NewWriter while a writer is open.
	ErrBusy = errors.New("spool: writer already open")
	// ErrClosed marks use of a closed Spool or Writer.
	ErrClosed = errors.New("spool: closed")
	// ErrTooLarge marks a frame longer than MaxFrameBytes.
	ErrTooLarge = errors.New("spool: frame too large")
)

// CorruptError locates corrupt bytes in a segment file; it wraps ErrCorrupt.
type CorruptError struct {
	Path   string // segment file
	Offset int64  // byte offset of the header, chunk or footer that failed
	Reason string // what failed
}

// Error names the file, the offset and the reason.
func (e *CorruptError) Error() string {
	return fmt.Sprintf("%v: %s at offset %d: %s", ErrCorrupt, e.Path, e.Offset, e.Reason)
}

// Unwrap returns ErrCorrupt.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

func corruptf(path string, off int64, format string, args ...any) error {
	return &CorruptError{Path: path, Offset: off, Reason: fmt.Sprintf(format, args...)}
}

// segHeader is the fixed header at the start of every segment file.
type segHeader struct {
	firstSeq int64
	created  int64 // unix micro
	relay    string
}

func (h segHeader) size() int64 { return int64(headerFixedSize + len(h.relay) + headerCRCSize) }

func appendHeader(dst []byte, h segHeader) []byte {
	start := len(dst)
	dst = append(dst, headerMagic...)
	dst = binary.LittleEndian.AppendUint16(dst, formatVersion)
	dst = binary.LittleEndian.AppendUint16(dst, 0) // flags
	dst = binary.LittleEndian.AppendUint64(dst, uint64(h.firstSeq))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(h.created))
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(h.relay)))
	dst = append(dst, h.relay...)
	return binary.LittleEndian.AppendUint32(dst, crc32c(dst[start:]))
}

// readHeader reads and checks the header of the segment in r (size bytes long).
func readHeader(r io.ReaderAt, size int64, path string) (segHeader, error) {
	n := int64(headerFixedSize + maxRelayLen + headerCRCSize)
	if size < n {
		n = size
	}
	b := make([]byte, n)
	if _, err := r.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		return segHeader{}, fmt.Errorf("read header of %s: %w", path, err)
	}
	if len(b) < headerFixedSize {
		return segHeader{}, corruptf(path, 0, "file of %d bytes is shorter than a header", size)
	}
	if string(b[:8]) != headerMagic {
		return segHeader{}, corruptf(path, 0, "bad magic %q", b[:8])
	}
	if v := binary.LittleEndian.Uint16(b[8:]); v != formatVersion {
		return segHeader{}, corruptf(path, 8, "unsupported format version %d", v)
	}
	if f := binary.LittleEndian.Uint16(b[10:]); f != 0 {
		return segHeader{}, corruptf(path, 10, "unknown flags %#04x", f)
	}
	rl := int(binary.LittleEndian.Uint16(b[28:]))
	if rl == 0 || rl > maxRelayLen {
		return segHeader{}, corruptf(path, 28, "relay length %d out of range", rl)
	}
	end := headerFixedSize + rl
	if len(b) < end+headerCRCSize {
		return segHeader{}, corruptf(path, 0, "file of %d bytes is shorter than its %d-byte header", size, end+headerCRCSize)
	}
	if got, want := crc32c(b[:end]), binary.LittleEndian.Uint32(b[end:]); got != want {
		return segHeader{}, corruptf(path, 0, "header checksum %08x, want %08x", got, want)
	}
	h := segHeader{
		firstSeq: int64(binary.LittleEndian.Uint64(b[12:])),
		created:  int64(binary.LittleEndian.Uint64(b[20:])),
		relay:    string(b[headerFixedSize:end]),
	}
	if h.firstSeq < 1 {
		return segHeader{}, corruptf(path, 12, "first seq %d is not positive", h.firstSeq)
	}
	return h, nil
}

// chunkHeader precedes every chunk; its last four bytes are a CRC32C of the first 36.
type chunkHeader struct {
	kind   uint8
	stored uint32 // payload bytes that follow the header
	raw    uint32 // bytes the payload adds to the decompressed stream
	count  uint32 // records in the chunk
	first  int64  // seq of the first record (end and trailer chunks: of the segment)
	last   int64  // seq of the last record (end and trailer chunks: of the segment)
	crc    uint32 // CRC32C of the payload
}

func (h chunkHeader) put(b []byte) {
	_ = b[chunkHeaderSize-1]
	b[0] = h.kind
	b[1], b[2], b[3] = 0, 0, 0
	binary.LittleEndian.PutUint32(b[4:], h.stored)
	binary.LittleEndian.PutUint32(b[8:], h.raw)
	binary.LittleEndian.PutUint32(b[12:], h.count)
	binary.LittleEndian.PutUint64(b[16:], uint64(h.first))
	binary.LittleEndian.PutUint64(b[24:], uint64(h.last))
	binary.LittleEndian.PutUint32(b[32:], h.crc)
	binary.LittleEndian.PutUint32(b[36:], crc32c(b[:36]))
}

// parseChunkHeader decodes b and says why it is not a valid chunk header ("" when it is).
func parseChunkHeader(b []byte) (chunkHeader, string) {
	_ = b[chunkHeaderSize-1]
	if b[0] != kindData && b[0] != kindTrailer && b[0] != kindEnd {
		return chunkHeader{}, fmt.Sprintf("unknown chunk kind %d", b[0])
	}
	if b[1] != 0 || b[2] != 0 || b[3] != 0 {
		return chunkHeader{}, "nonzero reserved bytes in chunk header"
	}
	if got, want := crc32c(b[:36]), binary.LittleEndian.Uint32(b[36:]); got != want {
		return chunkHeader{}, fmt.Sprintf("chunk header checksum %08x, want %08x", got, want)
	}
	h := chunkHeader{
		kind:   b[0],
		stored: binary.LittleEndian.Uint32(b[4:]),
		raw:    binary.LittleEndian.Uint32(b[8:]),
		count:  binary.LittleEndian.Uint32(b[12:]),
		first:  int64(binary.LittleEndian.Uint64(b[16:])),
		last:   int64(binary.LittleEndian.Uint64(b[24:])),
		crc:    binary.LittleEndian.Uint32(b[32:]),
	}
	switch h.kind {
	case kindData:
		switch {
		case h.stored == 0 || h.stored > maxChunkStored:
			return h, fmt.Sprintf("compressed length %d out of range", h.stored)
		case h.raw < recordHeaderSize || h.raw > maxChunkRaw:
			return h, fmt.Sprintf("raw length %d out of range", h.raw)
		case h.count == 0 || h.count > h.raw/recordHeaderSize:
			return h, fmt.Sprintf("record count %d out of range for %d raw bytes", h.count, h.raw)
		case h.first < 1 || h.last < h.first || uint64(h.last-h.first) < uint64(h.count-1):
			return h, fmt.Sprintf("seq range %d-%d cannot hold %d records", h.first, h.last, h.count)
		}
	case kindTrailer:
		if h.stored != trailerPayloadSize || h.raw != trailerPayloadSize || h.count != 0 {
			return h, fmt.Sprintf("trailer chunk lengths %d/%d/%d, want %d/%d/0", h.stored, h.raw, h.count, trailerPayloadSize, trailerPayloadSize)
		}
	case kindEnd:
		switch {
		case h.stored != uint32(len(endBlock)) || h.raw != 0 || h.count != 0:
			return h, fmt.Sprintf("end chunk lengths %d/%d/%d, want %d/0/0", h.stored, h.raw, h.count, len(endBlock))
		case h.first < 1 || h.last < h.first:
			return h, fmt.Sprintf("end chunk seq range %d-%d", h.first, h.last)
		}
	}
	return h, ""
}

// segStats summarises the records of a segment; the trailer stores it.
type segStats struct {
	count    int64
	first    int64
	last     int64
	minTime  int64 // unix micro, 0 = no known time
	maxTime  int64
	lastTime int64 // time of the record with seq last
	raw      int64 // uncompressed record bytes (record headers and frames)
	chunks   int64 // data chunks
	bodyCRC  uint32
}

func (s *segStats) addRecord(seq, t int64, n int) {
	if s.count == 0 {
		s.first = seq
	}
	s.count++
	s.last = seq
	s.lastTime = t
	s.raw += int64(n)
	switch {
	case t == 0:
	case s.minTime == 0: // no timed record yet (a known time is never 0)
		s.minTime, s.maxTime = t, t
	default:
		s.minTime = min(s.minTime, t)
		s.maxTime = max(s.maxTime, t)
	}
}

// merge adds the records of c, a chunk that follows s.
func (s *segStats) merge(c segStats) {
	if c.count == 0 {
		return
	}
	if s.count == 0 {
		s.first = c.first
	}
	s.count += c.count
	s.last = c.last
	s.lastTime = c.lastTime
	s.raw += c.raw
	switch {
	case c.minTime == 0:
	case s.minTime == 0:
		s.minTime, s.maxTime = c.minTime, c.maxTime
	default:
		s.minTime = min(s.minTime, c.minTime)
		s.maxTime = max(s.maxTime, c.maxTime)
	}
}

func appendTrailerPayload(dst []byte, s segStats) []byte {
	start := len(dst)
	for _, v := range []int64{s.count, s.first, s.last, s.minTime, s.maxTime, s.lastTime, s.raw, s.chunks} {
		dst = binary.LittleEndian.AppendUint64(dst, uint64(v))
	}
	dst = binary.LittleEndian.AppendUint32(dst, s.bodyCRC)
	return binary.LittleEndian.AppendUint32(dst, crc32c(dst[start:]))
}

func parseTrailerPayload(b []byte) (segStats, string) {
	_ = b[trailerPayloadSize-1]
	if got, want := crc32c(b[:68]), binary.LittleEndian.Uint32(b[68:]); got != want {
		return segStats{}, fmt.Sprintf("trailer checksum %08x, want %08x", got, want)
	}
	v := func(i int) int64 { return int64(binary.LittleEndian.Uint64(b[8*i:])) }
	s := segStats{
		count: v(0), first: v(1), last: v(2), minTime: v(3), maxTime: v(4),
		lastTime: v(5), raw: v(6), chunks: v(7),
		bodyCRC: binary.LittleEndian.Uint32(b[64:]),
	}
	switch {
	case s.count < 1 || s.chunks < 1 || s.chunks > s.count:
		return s, fmt.Sprintf("trailer counts %d records in %d chunks", s.count, s.chunks)
	case s.first < 1 || s.last < s.first || uint64(s.last-s.first) < uint64(s.count-1):
		return s, fmt.Sprintf("trailer seq range %d-%d cannot hold %d records", s.first, s.last, s.count)
	case s.raw < s.count*recordHeaderSize:
		return s, fmt.Sprintf("trailer raw bytes %d too small for %d records", s.raw, s.count)
	case s.minTime > s.maxTime || (s.minTime == 0) != (s.maxTime == 0):
		return s, fmt.Sprintf("trailer time range %d-%d is inconsistent", s.minTime, s.maxTime)
	}
	return s, ""
}

// diff says how the contents (got) disagree with the trailer (want), "" when they agree.
func (s segStats) diff(want segStats) string {
	type field struct {
		name      string
		got, want int64
	}
	for _, f := range []field{
		{"record count", s.count, want.count},
		{"first seq", s.first, want.first},
		{"last seq", s.last, want.last},
		{"min time", s.minTime, want.minTime},
		{"max time", s.maxTime, want.maxTime},
		{"last time", s.lastTime, want.lastTime},
		{"raw bytes", s.raw, want.raw},
		{"chunk count", s.chunks, want.chunks},
		{"body checksum", int64(s.bodyCRC), int64(want.bodyCRC)},
	} {
		if f.got != f.want {
			verb := "%d"
			if f.name == "body checksum" {
				verb = "%08x"
			}
			return fmt.Sprintf("contents have %s "+verb+", trailer says "+verb, f.name, f.got, f.want)
		}
	}
	return ""
}

func appendFooter(dst []byte, trailerOff int64) []byte {
	dst = binary.LittleEndian.AppendUint64(dst, uint64(trailerOff))
	return append(dst, footerMagic...)
}

func parseFooter(b []byte) (int64, bool) {
	_ = b[footerSize-1]
	if string(b[8:16]) != footerMagic {
		return 0, false
	}
	return int64(binary.LittleEndian.Uint64(b)), true
}

// appendRecord appends one record: length, CRC32C of the frame, seq, time, frame.
func appendRecord(dst []byte, seq, t int64, frame []byte) []byte {
	return append(appendRecordHeader(dst, seq, t, frame), frame...)
}

// appendRecordHeader appends the 24 bytes that precede frame in its record.
func appendRecordHeader(dst []byte, seq, t int64, frame []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(frame)))
	dst = binary.LittleEndian.AppendUint32(dst, crc32c(frame))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(seq))
	return binary.LittleEndian.AppendUint64(dst, uint64(t))
}

// checkRecords validates the records of a decompressed chunk against its header and the seq that
// precedes it; it returns their stats or why they are invalid.
func checkRecords(raw []byte, h chunkHeader, prev int64) (segStats, string) {
	var s segStats
	pos := 0
	for i := uint32(0); i < h.count; i++ {
		if len(raw)-pos < recordHeaderSize {
			return s, fmt.Sprintf("record %d at raw offset %d: truncated record header", i, pos)
		}
		n := binary.LittleEndian.Uint32(raw[pos:])
		sum := binary.LittleEndian.Uint32(raw[pos+4:])
		seq := int64(binary.LittleEndian.Uint64(raw[pos+8:]))
		t := int64(binary.LittleEndian.Uint64(raw[pos+16:]))
		if n > MaxFrameBytes || int(n) > len(raw)-pos-recordHeaderSize {
			return s, fmt.Sprintf("record %d at raw offset %d: frame length %d out of range", i, pos, n)
		}
		frame := raw[pos+recordHeaderSize : pos+recordHeaderSize+int(n)]
		if got := crc32c(frame); got != sum {
			return s, fmt.Sprintf("record %d (seq %d) at raw offset %d: frame checksum %08x, want %08x", i, seq, pos, got, sum)
		}
		if seq <= prev {
			return s, fmt.Sprintf("record %d at raw offset %d: seq %d not above %d", i, pos, seq, prev)
		}
		prev = seq
		s.addRecord(seq, t, recordHeaderSize+int(n))
		pos += recordHeaderSize + int(n)
	}
	switch {
	case pos != len(raw):
		return s, fmt.Sprintf("%d bytes after the last of %d records", len(raw)-pos, h.count)
	case s.first != h.first || s.last != h.last:
		return s, fmt.Sprintf("records span seq %d-%d, chunk header says %d-%d", s.first, s.last, h.first, h.last)
	}
	return s, ""
}

func toMicro(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func fromMicro(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}

func crc32Update(sum uint32, b []byte) uint32 { return crc32.Update(sum, castagnoli, b) }

// extendBodyCRC returns the body checksum sum extended by a chunk: its header, then a payload of
// n bytes whose own checksum is payloadSum, combined instead of read again.
func extendBodyCRC(sum uint32, hdr []byte, payloadSum uint32, n int) uint32 {
	return crc32Combine(crc32Update(sum, hdr), payloadSum, int64(n))
}

// crc32Combine returns the CRC32C of a||b from crcA = crc32c(a), crcB = crc32c(b) and len(b),
// without reading b again (zlib's crc32_combine, over the Castagnoli polynomial): a chunk's body
// checksum extends the one before by the payload checksum already computed, instead of a second
// pass over the payload.
func crc32Combine(crcA, crcB uint32, lenB int64) uint32 {
	return crcMulModP(crcXPow8N(lenB), crcA) ^ crcB
}

// crcX2N[k] is x^(2^k) modulo the Castagnoli polynomial, in the reflected bit order of the CRC.
var crcX2N = func() (t [32]uint32) {
	p := uint32(1) << 30 // x^1
	for k := range t {
		t[k] = p
		p = crcMulModP(p, p)
	}
	return t
}()

// crcMulModP returns a(x)*b(x) modulo the polynomial, reflected (x^0 is the top bit).
func crcMulModP(a, b uint32) uint32 {
	var p uint32
	for m := uint32(1) << 31; m != 0; m >>= 1 {
		if a&m != 0 {
			p ^= b
		}
		if b&1 != 0 {
			b = b>>1 ^ crc32.Castagnoli
		} else {
			b >>= 1
		}
	}
	return p
}

// crcXPow8N returns x^(8n) modulo the polynomial: n zero bytes' worth of shifting.
func crcXPow8N(n int64) uint32 {
	p := uint32(1) << 31 // x^0
	for k := 3; n != 0; n, k = n>>1, k+1 {
		if n&1 != 0 {
			p = crcMulModP(crcX2N[k&31], p)
		}
	}
	return p
}
