package spool

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Defaults applied to zero Options fields.
const (
	DefaultSegmentBytes = 64 << 20
	DefaultSegmentAge   = time.Minute
	DefaultChunkBytes   = 1 << 20
)

const indexFile = "index.db"

var (
	metaBucket = []byte("meta")
	segBucket  = []byte("segments")
	relayKey   = []byte("relay")
)

// Options tune a spool; the zero value is the defaults.
type Options struct {
	SegmentBytes int64             // roll to a new segment when raw bytes in the open one reach this; 0 = DefaultSegmentBytes
	SegmentAge   time.Duration     // roll when the open segment is older than this (checked on Append); 0 = DefaultSegmentAge
	ChunkBytes   int               // raw bytes per compressed chunk, at most MaxChunkBytes; 0 = DefaultChunkBytes
	Level        zstd.EncoderLevel // compression level; 0 = zstd.SpeedDefault
	OnSeal       func(SegmentInfo) // called after a segment is sealed and indexed, on the writer's goroutine (may be nil)
	Now          func() time.Time  // clock for segment creation times and ages; nil = time.Now
}

func (o Options) withDefaults() (Options, error) {
	switch {
	case o.SegmentBytes < 0:
		return o, fmt.Errorf("spool options: negative SegmentBytes %d", o.SegmentBytes)
	case o.SegmentAge < 0:
		return o, fmt.Errorf("spool options: negative SegmentAge %s", o.SegmentAge)
	case o.ChunkBytes < 0 || o.ChunkBytes > MaxChunkBytes:
		return o, fmt.Errorf("spool options: ChunkBytes %d outside 0-%d", o.ChunkBytes, MaxChunkBytes)
	case o.Level < 0 || o.Level > zstd.SpeedBestCompression:
		return o, fmt.Errorf("spool options: unknown zstd level %d", o.Level)
	}
	if o.SegmentBytes == 0 {
		o.SegmentBytes = DefaultSegmentBytes
	}
	if o.SegmentAge == 0 {
		o.SegmentAge = DefaultSegmentAge
	}
	if o.ChunkBytes == 0 {
		o.ChunkBytes = DefaultChunkBytes
	}
	if o.Level == 0 {
		o.Level = zstd.SpeedDefault
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o, nil
}

// Spool is a directory of segment files plus the bbolt index that caches what they say.
type Spool struct {
	dir    string
	segDir string
	opts   Options
	db     *bolt.DB
	idxMu  sync.Mutex // orders index writes: Reindex against a concurrent seal

	mu     sync.Mutex
	relay  string
	writer *Writer
	closed bool
}

// Open opens or creates the spool in dir, locks its index (ErrLocked when another process holds
// it for more than a second) and reconciles the index with the segment files.
func Open(dir string, opts Options) (*Spool, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	segDir := filepath.Join(dir, segmentsDir)
	if err := os.MkdirAll(segDir, 0o755); err != nil {
		return nil, fmt.Errorf("open spool: %w", err)
	}
	dbPath := filepath.Join(dir, indexFile)
	db, err := bolt.Open(dbPath, 0o644, &bolt.Options{Timeout: time.Second})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open index %s: %w", dbPath, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("open index %s: %w", dbPath, err)
	}
	s := &Spool{dir: dir, segDir: segDir, opts: opts, db: db}
	if err := s.reconcile(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open spool %s: %w", dir, err)
	}
	return s, nil
}

// Dir returns the spool directory.
func (s *Spool) Dir() string { return s.dir }

// SegmentDir returns the directory that holds the segment files.
func (s *Spool) SegmentDir() string { return s.segDir }

// Relay returns the relay recorded in the spool ("" when empty).
func (s *Spool) Relay() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.relay
}

// Close seals and releases an open writer, then closes the index.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	w := s.writer
	s.mu.Unlock()
	var werr error
	if w != nil {
		werr = w.Close()
	}
	if err := s.db.Close(); err != nil {
		return errors.Join(werr, fmt.Errorf("close index: %w", err))
	}
	return werr
}

func (s *Spool) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// indexEntry is the JSON value of one sealed segment in the index, keyed by big-endian first seq.
type indexEntry struct {
	Name      string `json:"name"`
	Relay     string `json:"relay"`
	FirstSeq  int64  `json:"first_seq"`
	LastSeq   int64  `json:"last_seq"`
	Count     int64  `json:"count"`
	MinTime   int64  `json:"min_time_us"`
	MaxTime   int64  `json:"max_time_us"`
	LastTime  int64  `json:"last_time_us"`
	RawBytes  int64  `json:"raw_bytes"`
	FileBytes int64  `json:"file_bytes"`
	Checksum  uint32 `json:"checksum"`
}

func entryOf(i SegmentInfo) indexEntry {
	return indexEntry{
		Name: i.Name, Relay: i.Relay, FirstSeq: i.FirstSeq, LastSeq: i.LastSeq, Count: i.Count,
		MinTime: toMicro(i.MinTime), MaxTime: toMicro(i.MaxTime), LastTime: toMicro(i.LastTime),
		RawBytes: i.RawBytes, FileBytes: i.FileBytes, Checksum: i.Checksum,
	}
}

func (s *Spool) infoOf(e indexEntry) SegmentInfo {
	return SegmentInfo{
		Name: e.Name, Path: filepath.Join(s.segDir, e.Name), Relay: e.Relay,
		FirstSeq: e.FirstSeq, LastSeq: e.LastSeq, Count: e.Count,
		MinTime: fromMicro(e.MinTime), MaxTime: fromMicro(e.MaxTime), LastTime: fromMicro(e.LastTime),
		RawBytes: e.RawBytes, FileBytes: e.FileBytes, Checksum: e.Checksum,
	}
}

func seqKey(seq int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(seq)) }

func putEntry(b *bolt.Bucket, info SegmentInfo) error {
	v, err := json.Marshal(entryOf(info))
	if err != nil {
		return fmt.Errorf("encode index entry %s: %w", info.Name, err)
	}
	if err := b.Put(seqKey(info.FirstSeq), v); err != nil {
		return fmt.Errorf("index segment %s: %w", info.Name, err)
	}
	return nil
}

func readEntries(b *bolt.Bucket) ([]indexEntry, error) {
	var out []indexEntry
	err := b.ForEach(func(k, v []byte) error {
		var e indexEntry
		if err := json.Unmarshal(v, &e); err != nil {
			return fmt.Errorf("decode index entry %x: %w", k, err)
		}
		out = append(out, e)
		return nil
	})
	return out, err
}

// reconcile indexes sealed files missing from the index, drops entries whose file is gone or has
// changed size, and checks that every segment holds the spool's relay.
func (s *Spool) reconcile() error {
	l, err := listDir(s.segDir)
	if err != nil {
		return err
	}
	sizes := make(map[string]int64, len(l.sealed))
	for _, name := range l.sealed {
		st, err := os.Stat(filepath.Join(s.segDir, name))
		if err != nil {
			return fmt.Errorf("stat segment: %w", err)
		}
		sizes[name] = st.Size()
	}
	s.idxMu.Lock()
	defer s.idxMu.Unlock()
	return s.db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(metaBucket)
		if err != nil {
			return fmt.Errorf("create index bucket: %w", err)
		}
		segs, err := tx.CreateBucketIfNotExists(segBucket)
		if err != nil {
			return fmt.Errorf("create index bucket: %w", err)
		}
		entries, err := readEntries(segs)
		if err != nil {
			return err
		}
		indexed := make(map[string]bool, len(entries))
		for _, e := range entries {
			if size, ok := sizes[e.Name]; ok && size == e.FileBytes {
				indexed[e.Name] = true
				continue
			}
			if err := segs.Delete(seqKey(e.FirstSeq)); err != nil {
				return fmt.Errorf("drop index entry %s: %w", e.Name, err)
			}
		}
		for _, name := range l.sealed {
			if indexed[name] {
				continue
			}
			info, err := readInfo(filepath.Join(s.segDir, name))
			if err != nil {
				return err
			}
			if err := putEntry(segs, info); err != nil {
				return err
			}
		}
		relay, err := s.filesRelay(segs, l)
		if err != nil {
			return err
		}
		if old := string(meta.Get(relayKey)); old != "" && relay != "" && old != relay {
			return fmt.Errorf("index relay %q, segment files say %q: %w", old, relay, ErrRelayMismatch)
		} else if relay == "" {
			relay = old
		}
		s.relay = relay
		if relay == "" {
			return nil
		}
		return meta.Put(relayKey, []byte(relay))
	})
}

// filesRelay returns the relay the indexed segments and the open segment's header agree on ("" when
// there are none), or an error wrapping ErrRelayMismatch naming both relays.
func (s *Spool) filesRelay(segs *bolt.Bucket, l dirList) (string, error) {
	entries, err := readEntries(segs)
	if err != nil {
		return "", err
	}
	relay := ""
	check := func(name, r string) error {
		if relay == "" {
			relay = r
		} else if r != relay {
			return fmt.Errorf("segment %s has relay %q, others have %q: %w", name, r, relay, ErrRelayMismatch)
		}
		return nil
	}
	for _, e := range entries {
		if err := check(e.Name, e.Relay); err != nil {
			return "", err
		}
	}
	for _, name := range l.open {
		h, err := readHeaderFile(filepath.Join(s.segDir, name))
		if err != nil {
			return "", err
		}
		if err := check(name, h.relay); err != nil {
			return "", err
		}
	}
	return relay, nil
}

func readHeaderFile(path string) (segHeader, error) {
	f, err := os.Open(path)
	if err != nil {
		return segHeader{}, fmt.Errorf("read segment header: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return segHeader{}, fmt.Errorf("read segment header: %w", err)
	}
	return readHeader(f, st.Size(), path)
}

// Segments returns the sealed segments from the index, ascending by FirstSeq.
func (s *Spool) Segments() ([]SegmentInfo, error) {
	if s.isClosed() {
		return nil, ErrClosed
	}
	var infos []SegmentInfo
	err := s.db.View(func(tx *bolt.Tx) error {
		entries, err := readEntries(tx.Bucket(segBucket))
		for _, e := range entries {
			infos = append(infos, s.infoOf(e))
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read index: %w", err)
	}
	return infos, nil
}

func (s *Spool) lastSealed() (SegmentInfo, bool, error) {
	var (
		info SegmentInfo
		ok   bool
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		k, v := tx.Bucket(segBucket).Cursor().Last()
		if k == nil {
			return nil
		}
		var e indexEntry
		if err := json.Unmarshal(v, &e); err != nil {
			return fmt.Errorf("decode index entry %x: %w", k, err)
		}
		info, ok = s.infoOf(e), true
		return nil
	})
	if err != nil {
		return info, false, fmt.Errorf("read index: %w", err)
	}
	return info, ok, nil
}

func (s *Spool) putIndex(info SegmentInfo) error {
	s.idxMu.Lock()
	defer s.idxMu.Unlock()
	return s.db.Update(func(tx *bolt.Tx) error { return putEntry(tx.Bucket(segBucket), info) })
}

func (s *Spool) setRelay(relay string) error {
	err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(metaBucket).Put(relayKey, []byte(relay)) })
	if err != nil {
		return fmt.Errorf("record relay: %w", err)
	}
	return nil
}

// Reindex rebuilds the index from the segment files alone and returns the number of segments indexed.
func (s *Spool) Reindex(ctx context.Context) (int, error) {
	if s.isClosed() {
		return 0, ErrClosed
	}
	s.idxMu.Lock()
	defer s.idxMu.Unlock()
	l, err := listDir(s.segDir)
	if err != nil {
		return 0, err
	}
	infos := make([]SegmentInfo, 0, len(l.sealed))
	for _, name := range l.sealed {
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("reindex: %w", err)
		}
		info, err := readInfo(filepath.Join(s.segDir, name))
		if err != nil {
			return 0, fmt.Errorf("reindex: %w", err)
		}
		infos = append(infos, info)
	}
	var relay string
	err = s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(segBucket); err != nil && !errors.Is(err, bolterrors.ErrBucketNotFound) {
			return fmt.Errorf("drop index: %w", err)
		}
		segs, err := tx.CreateBucket(segBucket)
		if err != nil {
			return fmt.Errorf("create index bucket: %w", err)
		}
		for _, info := range infos {
			if err := putEntry(segs, info); err != nil {
				return err
			}
		}
		if relay, err = s.filesRelay(segs, l); err != nil {
			return err
		}
		meta := tx.Bucket(metaBucket)
		if relay == "" { // no segment files: keep what the writer recorded
			relay = string(meta.Get(relayKey))
			return nil
		}
		return meta.Put(relayKey, []byte(relay))
	})
	if err != nil {
		return 0, fmt.Errorf("reindex: %w", err)
	}
	s.mu.Lock()
	s.relay = relay
	s.mu.Unlock()
	return len(infos), nil
}

// Tail describes the last durable frame of a spool.
type Tail struct {
	Seq    int64     // seq of the last durable frame
	Time   time.Time // its event time (zero when unknown)
	Frames int64     // durable frames in the whole spool: sealed segments plus complete chunks of the open one
	Empty  bool      // no durable frame at all
}

// Tail returns the last durable frame: it scans the open segment, if any, without modifying it,
// else it takes the last sealed segment's trailer from the index.
func (s *Spool) Tail() (Tail, error) {
	for attempt := 0; ; attempt++ {
		t, err := s.tail()
		if errors.Is(err, fs.ErrNotExist) && attempt < 5 {
			continue // the open segment was sealed and renamed under us
		}
		return t, err
	}
}

// tail reads the index, then the directory, then the open segment: a segment sealed meanwhile
// shows up as a .seg file the index does not have yet, or as an open file with a trailer, so it
// is counted exactly once.
func (s *Spool) tail() (Tail, error) {
	sealed, err := s.Segments()
	if err != nil {
		return Tail{}, err
	}
	l, err := listDir(s.segDir)
	if err != nil {
		return Tail{}, err
	}
	indexed := make(map[string]bool, len(sealed))
	for _, info := range sealed {
		indexed[info.Name] = true
	}
	for _, name := range l.sealed {
		if !indexed[name] {
			info, err := readInfo(filepath.Join(s.segDir, name))
			if err != nil {
				return Tail{}, err
			}
			sealed = append(sealed, info)
		}
	}
	sort.Slice(sealed, func(i, j int) bool { return sealed[i].FirstSeq < sealed[j].FirstSeq })
	var total int64
	for _, info := range sealed {
		total += info.Count
	}
	switch len(l.open) {
	case 0:
	case 1:
		sc, err := scanOpenFile(filepath.Join(s.segDir, l.open[0]))
		if err != nil {
			return Tail{}, err
		}
		if sc.st.count > 0 {
			return Tail{Seq: sc.st.last, Time: fromMicro(sc.st.lastTime), Frames: total + sc.st.count}, nil
		}
	default:
		return Tail{}, fmt.Errorf("%w: %s holds %d open segments %v", ErrCorrupt, s.segDir, len(l.open), l.open)
	}
	if len(sealed) == 0 {
		return Tail{Empty: true}, nil
	}
	last := sealed[len(sealed)-1]
	return Tail{Seq: last.LastSeq, Time: last.LastTime, Frames: total}, nil
}

// scanOpenFile scans an open segment read-only.
func scanOpenFile(path string) (openScan, error) {
	f, err := os.Open(path)
	if err != nil {
		return openScan{}, fmt.Errorf("scan open segment: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return openScan{}, fmt.Errorf("scan open segment: %w", err)
	}
	dec, err := newDecoder()
	if err != nil {
		return openScan{}, err
	}
	defer dec.Close()
	return scanOpen(f, st.Size(), path, dec)
}
