package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/golden and the fuzz seed corpus")

const testRelay = "relay.example.test"

// clock is a settable Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2024, 1, 2, 3, 4, 5, 678901000, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// rec is a record owned by the test (Record.Frame is only borrowed).
type rec struct {
	Seq   int64
	Time  time.Time
	Frame []byte
}

func (r rec) String() string {
	return fmt.Sprintf("seq %d time %s %d bytes", r.Seq, r.Time, len(r.Frame))
}

func openSpool(t testing.TB, dir string, opts Options) *Spool {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newWriter(t testing.TB, s *Spool) *Writer {
	t.Helper()
	w, err := s.NewWriter(testRelay)
	if err != nil {
		t.Fatalf("NewWriter: %v", err)
	}
	return w
}

func appendAll(t testing.TB, w *Writer, recs []rec) {
	t.Helper()
	for _, r := range recs {
		if err := w.Append(r.Seq, r.Time, r.Frame); err != nil {
			t.Fatalf("Append(%d): %v", r.Seq, err)
		}
	}
}

// sealedSegment writes fixtureRecords into one sealed segment of 4 KiB chunks in a new spool
// and returns its path and the records.
func sealedSegment(t testing.TB) (string, []rec) {
	t.Helper()
	s := openSpool(t, t.TempDir(), Options{ChunkBytes: 4096})
	w := newWriter(t, s)
	recs := fixtureRecords(t)
	appendAll(t, w, recs)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	infos, err := s.Segments()
	if err != nil || len(infos) != 1 {
		t.Fatalf("Segments: %d, %v; want one", len(infos), err)
	}
	return infos[0].Path, recs
}

// readSegment reads every record of a sealed segment.
func readSegment(t testing.TB, path string) []rec {
	t.Helper()
	r, err := OpenSegment(path)
	if err != nil {
		t.Fatalf("OpenSegment(%s): %v", path, err)
	}
	defer r.Close()
	var out []rec
	for {
		got, err := r.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("Next in %s after %d records: %v", path, len(out), err)
		}
		out = append(out, rec{got.Seq, got.Time, bytes.Clone(got.Frame)})
	}
}

// readSpool reads every sealed record of the spool in dir, without the index.
func readSpool(t testing.TB, dir string) []rec {
	t.Helper()
	infos, err := ListSegments(dir)
	if err != nil {
		t.Fatalf("ListSegments: %v", err)
	}
	var out []rec
	for _, info := range infos {
		out = append(out, readSegment(t, info.Path)...)
	}
	return out
}

func sameRecords(t testing.TB, got, want []rec) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("got %d records, want %d", len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		g, w := got[i], want[i]
		if g.Seq != w.Seq || !g.Time.Equal(w.Time) || !bytes.Equal(g.Frame, w.Frame) {
			t.Fatalf("record %d: got %v, want %v", i, g, w)
		}
	}
}

// makeRecords returns n records with increasing seqs (gaps included), random sizes up to
// maxSize, and a time on most of them.
func makeRecords(rng *rand.Rand, firstSeq int64, n, maxSize int, start time.Time) []rec {
	out := make([]rec, n)
	seq := firstSeq
	for i := range out {
		var ts time.Time
		if rng.IntN(10) != 0 {
			ts = start.Add(time.Duration(i) * time.Millisecond).Truncate(time.Microsecond)
		}
		out[i] = rec{Seq: seq, Time: ts, Frame: synthFrameSize(rng, rng.IntN(maxSize+1))}
		seq += 1 + int64(rng.IntN(3))
	}
	return out
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func copyDir(t testing.TB, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o644)
	})
	if err != nil {
		t.Fatalf("copy %s to %s: %v", from, to, err)
	}
}

func wantCorrupt(t testing.TB, err error, path string, off int64) {
	t.Helper()
	var ce *CorruptError
	if !errors.Is(err, ErrCorrupt) || !errors.As(err, &ce) {
		t.Fatalf("got error %v, want a CorruptError wrapping ErrCorrupt", err)
	}
	if ce.Path != path || ce.Offset != off {
		t.Errorf("corruption reported at %s offset %d, want %s offset %d (%v)", ce.Path, ce.Offset, path, off, err)
	}
	if msg := err.Error(); !bytes.Contains([]byte(msg), []byte(path)) || !bytes.Contains([]byte(msg), fmt.Appendf(nil, "offset %d", off)) {
		t.Errorf("error text %q does not name %s and offset %d", msg, path, off)
	}
}

// The synthetic frames below only imitate the shape of firehose #commit frames (CBOR-like keys
// and strings, DIDs from a small pool, TIDs with shared prefixes, English-ish text, CIDs of random
// bytes that reappear as CAR block keys, MST-node-like blocks making up most of the frame). They
// are synthetic, not relay data: treat compression ratios measured on them as relative figures.

var (
	synthWords = []string{"the", "a", "post", "today", "just", "bluesky", "really", "think", "love",
		"this", "that", "people", "going", "time", "good", "new", "with", "about", "what", "when",
		"feed", "skeet", "like", "follow", "art", "photo", "music", "game", "night", "morning"}
	synthKeys = []string{"app.bsky.feed.like/", "app.bsky.feed.post/", "app.bsky.graph.follow/",
		"app.bsky.feed.repost/", "app.bsky.actor.profile/"}
	didPool     []string
	didPoolOnce sync.Once
)

const b32 = "234567abcdefghijklmnopqrstuvwxyz"

func synthDIDs() []string {
	didPoolOnce.Do(func() {
		rng := rand.New(rand.NewPCG(7, 7))
		for range 5000 {
			b := []byte("did:plc:")
			for range 24 {
				b = append(b, b32[rng.IntN(32)])
			}
			didPool = append(didPool, string(b))
		}
	})
	return didPool
}

func synthTID(rng *rand.Rand, base int64) []byte {
	v := uint64(base)<<10 | uint64(rng.IntN(1024))
	out := make([]byte, 13)
	for i := 12; i >= 0; i-- {
		out[i] = b32[v&31]
		v >>= 5
	}
	return out
}

func synthCID(rng *rand.Rand) []byte {
	c := []byte{0x01, 0x71, 0x12, 0x20}
	for range 4 {
		c = binary.LittleEndian.AppendUint64(c, rng.Uint64())
	}
	return c
}

// synthFrame returns a synthetic frame of about 3.5 KB.
func synthFrame(rng *rand.Rand, seq int64) []byte {
	dids := synthDIDs()
	did := dids[min(rng.IntN(len(dids)), rng.IntN(len(dids)))] // skewed towards busy repos
	now := int64(1_735_000_000_000_000) + seq*3000
	var b []byte
	b = append(b, "\xa2bopg#commitat\xa1\xacbops\x81\xa3cpathx"...)
	key := synthKeys[rng.IntN(len(synthKeys))]
	tid := synthTID(rng, now)
	b = append(b, key...)
	b = append(b, tid...)
	b = append(b, "ccid\xd8*X%\x00"...)
	recCID := synthCID(rng)
	b = append(b, recCID...)
	b = append(b, "factionfcreatecrevm"...)
	b = append(b, synthTID(rng, now)...)
	b = append(b, "cseq\x1b"...)
	b = binary.BigEndian.AppendUint64(b, uint64(seq))
	b = append(b, "drepox "...)
	b = append(b, did...)
	b = append(b, "dtimex\x182025-11-29T02:34:"...)
	b = fmt.Appendf(b, "%02d.%03dZ", seq%60, seq%1000)
	b = append(b, "eblobs\x80esince\xf6fblocksY"...)
	// CAR: the commit block, the record, and MST nodes along the path.
	commitCID := synthCID(rng)
	b = append(b, "\x3a\xa2eroots\x81\xd8*X%\x00"...)
	b = append(b, commitCID...)
	b = append(b, "gversion\x01"...)
	b = append(b, commitCID...)
	b = append(b, "\xa6cdidx "...)
	b = append(b, did...)
	b = append(b, "crevm"...)
	b = append(b, tid...)
	b = append(b, "csigX@"...)
	for range 8 {
		b = binary.LittleEndian.AppendUint64(b, rng.Uint64())
	}
	nodes := 4 + rng.IntN(3)
	nodeCIDs := make([][]byte, nodes)
	for i := range nodeCIDs {
		nodeCIDs[i] = synthCID(rng)
	}
	b = append(b, "ddata\xd8*X%\x00"...)
	b = append(b, nodeCIDs[0]...)
	b = append(b, "dprev\xf6gversion\x03"...)
	b = append(b, recCID...)
	b = append(b, "\xa4e$typeqapp.bsky.feed.postdtext"...)
	for range 5 + rng.IntN(20) {
		b = append(b, synthWords[rng.IntN(len(synthWords))]...)
		b = append(b, ' ')
	}
	if rng.IntN(2) == 0 { // a reply: at:// URIs of busy repos, text CIDs
		for _, part := range []string{"\xa2droot\xa2ccidx;", "fparent\xa2ccidx;"} {
			b = append(b, "ereply"...)
			b = append(b, part...)
			b = append(b, "bafyrei"...)
			for range 52 {
				b = append(b, b32[rng.IntN(32)])
			}
			b = append(b, "curix"...)
			b = append(b, "at://"...)
			b = append(b, dids[rng.IntN(50)]...)
			b = append(b, "/app.bsky.feed.post/"...)
			b = append(b, synthTID(rng, now-int64(rng.IntN(1<<20)))...)
		}
	}
	if rng.IntN(3) == 0 { // an image embed
		b = append(b, "eembed\xa2e$typeuapp.bsky.embed.imagesfimages\x81\xa3calt`eimage\xa4c$typedblobcref\xd8*X%\x00"...)
		b = append(b, synthCID(rng)...)
		b = append(b, "hmimeTypejimage/jpegdsize\x1a"...)
		b = binary.BigEndian.AppendUint32(b, uint32(rng.IntN(1<<20)))
		b = append(b, "kaspectRatio\xa2fheight\x19\x03\xe8ewidth\x19\x05\xdc"...)
	}
	if rng.IntN(3) == 0 { // a link facet
		b = append(b, "ffacets\x81\xa3e$typewapp.bsky.richtext.facetefindex\xa2gbyteEnd\x18\x2aibyteStart\x0chfeatures\x81\xa2e$typex\x1capp.bsky.richtext.facet#linkcurix\x1ehttps://example.com/articles/"...)
		b = fmt.Appendf(b, "%d", rng.IntN(100000))
	}
	b = append(b, "elangs\x81benicreatedAtx\x18"...)
	b = append(b, "2025-11-29T02:34:56.789Z"...)
	for i := range nodes {
		b = append(b, nodeCIDs[i]...)
		b = append(b, "\xa2ae\x89"...)
		entries := 4 + rng.IntN(6)
		for j := range entries {
			b = append(b, "\xa4akX"...)
			if j == 0 {
				b = append(b, key...)
			}
			b = append(b, synthTID(rng, now-int64(rng.IntN(1<<30)))[4+rng.IntN(4):]...)
			b = append(b, "ap\x18"...)
			b = append(b, byte(rng.IntN(24)))
			b = append(b, "at"...)
			if i+1 < nodes && j == entries/2 {
				b = append(b, "\xd8*X%\x00"...)
				b = append(b, nodeCIDs[i+1]...)
			} else {
				b = append(b, 0xf6)
			}
			b = append(b, "av\xd8*X%\x00"...)
			b = append(b, synthCID(rng)...)
		}
		b = append(b, "al\xf6"...)
	}
	return b
}

// synthFrameSize returns a synthetic frame of exactly n bytes.
func synthFrameSize(rng *rand.Rand, n int) []byte {
	var b []byte
	for len(b) < n {
		b = append(b, synthFrame(rng, int64(len(b)))...)
	}
	return b[:n]
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], rng.Uint64())
		copy(b[i:], w[:])
	}
	return b
}
