package deletes

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/backfill/backfill/internal/fsync"
	"github.com/backfill/backfill/spool"
)

// The byte layout of a sidecar; FORMAT.md documents it.
const (
	magic      = "BFSPDEL\n"
	version    = 1
	headerSize = 48 // magic, version, flags, first, last, checksum, frames, barrier and entry counts
	crcSize    = 4
	barrierLen = 8
	entryLen   = 32

	segExt = ".seg"
	delExt = ".del"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt marks a sidecar that does not parse, fails its checksum or names another segment.
var ErrCorrupt = errors.New("deletes: corrupt index")

// Key returns the index key of an at:// URI: the first 16 bytes of its SHA-256. A load calls
// it for every create it plans: a URI that fits the stack buffer (any real one does) costs no
// allocation, where converting it to a []byte would allocate every URI over 32 bytes.
func Key(uri string) [16]byte {
	var buf [512]byte
	b := buf[:0]
	if len(uri) <= len(buf) {
		b = append(b, uri...)
	} else {
		b = []byte(uri)
	}
	sum := sha256.Sum256(b)
	return [16]byte(sum[:16])
}

// Entry is one delete op of a segment: the frame holding it and the key of the deleted record.
type Entry struct {
	Seq  int64    // spool seq of the frame holding the delete
	Time int64    // the event's time, unix microseconds (never 0)
	Key  [16]byte // Key(uri) of the deleted record
}

// Index is one segment's sidecar.
type Index struct {
	FirstSeq, LastSeq int64   // the segment's identity, as in spool.SegmentInfo
	Checksum          uint32  // the segment's body checksum, as in spool.SegmentInfo
	Frames            int64   // frames indexed: the segment's Count
	Barriers          []int64 // ascending spool seqs of frames whose body seq is above their spool seq
	Entries           []Entry // in seq order (several entries may share a seq)
}

// Path returns the sidecar path of a segment file: the segment path with ".seg" replaced by
// ".del" (".del" appended to any other name).
func Path(segPath string) string {
	return strings.TrimSuffix(segPath, segExt) + delExt
}

// RemoveTemps removes from segDir the temporary files of sidecars whose writing was cut short
// (fsync.WriteFile's hidden ".<name>.del.tmp*"), and returns how many it removed. Only a
// process that holds the spool's lock may call it: another one's sidecar may be on its way.
func RemoveTemps(segDir string) (int, error) {
	names, err := filepath.Glob(filepath.Join(segDir, ".*"+delExt+".tmp*"))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, name := range names {
		if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return n, fmt.Errorf("remove %s: %w", name, err)
		}
		n++
	}
	return n, nil
}

// indexSize returns the byte size of a sidecar with nb barriers and ne entries.
func indexSize(nb, ne uint32) int64 {
	return headerSize + int64(nb)*barrierLen + int64(ne)*entryLen + crcSize
}

// appendIndex appends the encoding of x to dst.
func appendIndex(dst []byte, x *Index) []byte {
	le := binary.LittleEndian
	start := len(dst)
	dst = append(dst, magic...)
	dst = le.AppendUint16(dst, version)
	dst = le.AppendUint16(dst, 0) // flags
	dst = le.AppendUint64(dst, uint64(x.FirstSeq))
	dst = le.AppendUint64(dst, uint64(x.LastSeq))
	dst = le.AppendUint32(dst, x.Checksum)
	dst = le.AppendUint64(dst, uint64(x.Frames))
	dst = le.AppendUint32(dst, uint32(len(x.Barriers)))
	dst = le.AppendUint32(dst, uint32(len(x.Entries)))
	for _, b := range x.Barriers {
		dst = le.AppendUint64(dst, uint64(b))
	}
	for _, e := range x.Entries {
		dst = le.AppendUint64(dst, uint64(e.Seq))
		dst = le.AppendUint64(dst, uint64(e.Time))
		dst = append(dst, e.Key[:]...)
	}
	return le.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// header is the fixed part of a sidecar.
type header struct {
	first, last int64
	checksum    uint32
	frames      int64
	nb, ne      uint32
}

// parseHeader parses the fixed header in b (at least headerSize bytes) and checks what it can
// alone: magic, version, flags and the identity's own consistency.
func parseHeader(b []byte) (header, string) {
	le := binary.LittleEndian
	h := header{
		first:    int64(le.Uint64(b[12:])),
		last:     int64(le.Uint64(b[20:])),
		checksum: le.Uint32(b[28:]),
		frames:   int64(le.Uint64(b[32:])),
		nb:       le.Uint32(b[40:]),
		ne:       le.Uint32(b[44:]),
	}
	switch {
	case string(b[:8]) != magic:
		return h, fmt.Sprintf("bad magic %q", b[:8])
	case le.Uint16(b[8:]) != version:
		return h, fmt.Sprintf("unsupported version %d", le.Uint16(b[8:]))
	case le.Uint16(b[10:]) != 0:
		return h, fmt.Sprintf("unknown flags %#04x", le.Uint16(b[10:]))
	case h.first < 1 || h.last < h.first:
		return h, fmt.Sprintf("seq range %d-%d", h.first, h.last)
	case h.frames < 1 || uint64(h.frames) > uint64(h.last-h.first)+1:
		return h, fmt.Sprintf("%d frames in seq range %d-%d", h.frames, h.first, h.last)
	case int64(h.nb) > h.frames:
		return h, fmt.Sprintf("%d barriers in %d frames", h.nb, h.frames)
	}
	return h, ""
}

// parseIndex parses a whole sidecar. It allocates only after checking that b is exactly as long
// as the header's counts say, so a hostile file cannot make it allocate more than its own size.
func parseIndex(b []byte) (*Index, string) {
	if len(b) < headerSize+crcSize {
		return nil, fmt.Sprintf("file of %d bytes, shorter than a header and checksum", len(b))
	}
	h, reason := parseHeader(b)
	if reason != "" {
		return nil, reason
	}
	if want := indexSize(h.nb, h.ne); int64(len(b)) != want {
		return nil, fmt.Sprintf("file of %d bytes, %d barriers and %d entries make %d", len(b), h.nb, h.ne, want)
	}
	le := binary.LittleEndian
	body := b[:len(b)-crcSize]
	if got, want := crc32.Checksum(body, castagnoli), le.Uint32(b[len(body):]); got != want {
		return nil, fmt.Sprintf("checksum %08x, want %08x", got, want)
	}
	x := &Index{FirstSeq: h.first, LastSeq: h.last, Checksum: h.checksum, Frames: h.frames}
	p := b[headerSize:]
	if h.nb > 0 {
		x.Barriers = make([]int64, h.nb)
	}
	prev := h.first - 1
	for i := range x.Barriers {
		s := int64(le.Uint64(p))
		p = p[barrierLen:]
		if s <= prev || s > h.last {
			return nil, fmt.Sprintf("barrier %d at seq %d after %d, outside %d-%d or not ascending", i, s, prev, h.first, h.last)
		}
		x.Barriers[i], prev = s, s
	}
	if h.ne > 0 {
		x.Entries = make([]Entry, h.ne)
	}
	prev = h.first
	for i := range x.Entries {
		e := &x.Entries[i]
		e.Seq = int64(le.Uint64(p))
		e.Time = int64(le.Uint64(p[8:]))
		copy(e.Key[:], p[16:entryLen])
		p = p[entryLen:]
		switch {
		case e.Seq < prev || e.Seq > h.last:
			return nil, fmt.Sprintf("entry %d at seq %d after %d, outside %d-%d or out of order", i, e.Seq, prev, h.first, h.last)
		case e.Time == 0:
			return nil, fmt.Sprintf("entry %d at seq %d has time 0", i, e.Seq)
		}
		prev = e.Seq
	}
	return x, ""
}

// Read returns the sidecar of the segment info describes. An absent file gives an error wrapping
// fs.ErrNotExist; a file that does not parse, fails its checksum, or names another segment
// (first/last seq, checksum or frame count differ from info) gives an error wrapping ErrCorrupt
// naming the path.
func Read(info spool.SegmentInfo) (*Index, error) {
	path := Path(info.Path)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read delete index: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read delete index: %w", err)
	}
	// The header says how long the file must be; nothing larger is allocated than that, and
	// only once the file is known to be that long.
	var hb [headerSize]byte
	if st.Size() < headerSize+crcSize {
		return nil, corrupt(path, "file of %d bytes, shorter than a header and checksum", st.Size())
	}
	if _, err := f.ReadAt(hb[:], 0); err != nil {
		return nil, fmt.Errorf("read delete index %s: %w", path, err)
	}
	h, reason := parseHeader(hb[:])
	if reason != "" {
		return nil, corrupt(path, "%s", reason)
	}
	if want := indexSize(h.nb, h.ne); st.Size() != want {
		return nil, corrupt(path, "file of %d bytes, %d barriers and %d entries make %d", st.Size(), h.nb, h.ne, want)
	}
	if h.first != info.FirstSeq || h.last != info.LastSeq || h.checksum != info.Checksum || h.frames != info.Count {
		return nil, corrupt(path, "index of segment %d-%d (checksum %08x, %d frames), want %d-%d (checksum %08x, %d frames)",
			h.first, h.last, h.checksum, h.frames, info.FirstSeq, info.LastSeq, info.Checksum, info.Count)
	}
	b := make([]byte, st.Size())
	if _, err := io.ReadFull(io.NewSectionReader(f, 0, st.Size()), b); err != nil {
		return nil, fmt.Errorf("read delete index %s: %w", path, err)
	}
	x, reason := parseIndex(b)
	if reason != "" {
		return nil, corrupt(path, "%s", reason)
	}
	return x, nil
}

func corrupt(path, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrCorrupt, path, fmt.Sprintf(format, args...))
}

// writeIndex writes x to path atomically (fsync.WriteFile).
func writeIndex(path string, x *Index) error {
	if len(x.Barriers) > math.MaxUint32 || len(x.Entries) > math.MaxUint32 {
		return fmt.Errorf("write delete index %s: %d barriers and %d entries do not fit", path, len(x.Barriers), len(x.Entries))
	}
	b := appendIndex(make([]byte, 0, indexSize(uint32(len(x.Barriers)), uint32(len(x.Entries)))), x)
	if err := fsync.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("write delete index %s: %w", path, err)
	}
	return nil
}
