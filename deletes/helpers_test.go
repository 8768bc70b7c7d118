package deletes

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	comatproto "github.com/bluesky-social/indigo/api/atproto"
	"github.com/bluesky-social/indigo/events"

	"github.com/backfill/backfill/decode"
	"github.com/backfill/backfill/relaytest"
	"github.com/backfill/backfill/spool"
)

const testRelay = "relay.test"

// sframe is a frame as the test writes it: under spool seq Seq, whatever its body says.
type sframe struct {
	Seq   int64
	Time  time.Time
	Bytes []byte
}

// relayFrames generates cfg's log and returns its frames under their own seqs, #info excluded
// (fetch never writes those).
func relayFrames(t testing.TB, cfg relaytest.Config) (*relaytest.Relay, []sframe) {
	t.Helper()
	if cfg.StartTime.IsZero() {
		cfg.StartTime = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	}
	r, err := relaytest.New(cfg)
	if err != nil {
		t.Fatalf("relaytest.New: %v", err)
	}
	t.Cleanup(r.Close)
	return r, logFrames(r.Log())
}

func logFrames(log []relaytest.Frame) []sframe {
	var out []sframe
	for _, f := range log {
		if f.Kind == relaytest.KindInfo {
			continue
		}
		out = append(out, sframe{Seq: f.Seq, Time: f.Time, Bytes: f.Bytes})
	}
	return out
}

// writeSpool writes frames through a real spool whose OnSeal is c's (a new Collector when c is
// nil), each added to c before it is appended, unless skip says otherwise. It returns the
// segments sealed, as OnSeal saw them.
func writeSpool(t testing.TB, dir string, opts spool.Options, c *Collector, frames []sframe, skip func(sframe) bool) []spool.SegmentInfo {
	t.Helper()
	if c == nil {
		c = NewCollector()
	}
	var sealed []spool.SegmentInfo
	opts.OnSeal = func(info spool.SegmentInfo) {
		sealed = append(sealed, info)
		c.OnSeal(info)
	}
	sp, err := spool.Open(dir, opts)
	if err != nil {
		t.Fatalf("spool.Open: %v", err)
	}
	w, err := sp.NewWriter(testRelay)
	if err != nil {
		t.Fatalf("NewWriter: %v", err)
	}
	for _, f := range frames {
		if skip == nil || !skip(f) {
			c.Add(f.Seq, f.Bytes)
		}
		if err := w.Append(f.Seq, f.Time, f.Bytes); err != nil {
			t.Fatalf("Append(%d): %v", f.Seq, err)
		}
	}
	if err := sp.Close(); err != nil {
		t.Fatalf("spool Close: %v", err)
	}
	if err := c.Err(); err != nil {
		t.Fatalf("Collector.Err: %v", err)
	}
	return sealed
}

func listSegments(t testing.TB, dir string) []spool.SegmentInfo {
	t.Helper()
	segs, err := spool.ListSegments(dir)
	if err != nil {
		t.Fatalf("ListSegments: %v", err)
	}
	return segs
}

// sha16 is Key computed here, so that a wrong Key fails the comparison with reference.
func sha16(uri string) [16]byte {
	sum := sha256.Sum256([]byte(uri))
	var k [16]byte
	copy(k[:], sum[:])
	return k
}

// reference computes a segment's entries and barriers from its frames with the loader's FULL
// decoder, by the rules of the exactness contract (doc.go).
func reference(t testing.TB, info spool.SegmentInfo) (entries []Entry, barriers []int64) {
	t.Helper()
	dec := decode.NewDecoder(decode.Options{})
	r, err := spool.OpenSegment(info.Path)
	if err != nil {
		t.Fatalf("OpenSegment: %v", err)
	}
	defer r.Close()
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		ev, err := dec.Decode(rec.Frame)
		if err != nil {
			continue
		}
		switch ev.Kind {
		case decode.KindCommit, decode.KindIdentity, decode.KindAccount, decode.KindSync:
			if ev.Seq > rec.Seq {
				barriers = append(barriers, rec.Seq)
			}
		}
		if ev.Kind != decode.KindCommit || ev.Seq != rec.Seq || ev.Time.IsZero() || ev.Time.UnixMicro() == 0 || badRepoDID(ev) {
			continue
		}
		for _, op := range ev.Ops {
			switch op.Collection {
			case decode.CollectionPost, decode.CollectionLike, decode.CollectionRepost, decode.CollectionFollow, decode.CollectionBlock, decode.CollectionProfile:
			default:
				continue
			}
			if (op.Action == decode.ActionDelete || op.Action == decode.ActionUpdate) && op.URI != "" {
				entries = append(entries, Entry{Seq: rec.Seq, Time: ev.Time.UnixMicro(), Key: sha16(op.URI)})
			}
		}
	}
	return entries, barriers
}

// badRepoDID reports a bad repo DID. The full decoder also gives ReasonBadDID to a follow's or
// block's bad subject ("subject: ..."), which says nothing of the repo.
func badRepoDID(ev *decode.Event) bool {
	for _, p := range ev.Problems {
		if p.Reason == decode.ReasonBadDID && !strings.HasPrefix(p.Detail, "subject: ") {
			return true
		}
	}
	return false
}

// mutateCommit returns a copy of a #commit frame with its body changed by fn.
func mutateCommit(t testing.TB, frame []byte, fn func(*comatproto.SyncSubscribeRepos_Commit)) []byte {
	t.Helper()
	br := bytes.NewReader(frame)
	var hdr events.EventHeader
	if err := hdr.UnmarshalCBOR(br); err != nil {
		t.Fatalf("frame header: %v", err)
	}
	var c comatproto.SyncSubscribeRepos_Commit
	if err := c.UnmarshalCBOR(br); err != nil {
		t.Fatalf("commit body: %v", err)
	}
	fn(&c)
	var buf bytes.Buffer
	if err := hdr.MarshalCBOR(&buf); err != nil {
		t.Fatal(err)
	}
	if err := c.MarshalCBOR(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
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

// copySegment copies a sealed segment into a new directory and returns its info there.
func copySegment(t testing.TB, info spool.SegmentInfo) spool.SegmentInfo {
	t.Helper()
	cp := info
	cp.Path = filepath.Join(t.TempDir(), info.Name)
	writeFile(t, cp.Path, readFile(t, info.Path))
	return cp
}

// noTempFiles fails when a sidecar's temporary file was left in dir.
func noTempFiles(t testing.TB, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

func sameEntries(t testing.TB, what string, got, want []Entry) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d entries, want %d", what, len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			t.Errorf("%s: entry %d = %+v, want %+v", what, i, got[i], want[i])
			return
		}
	}
}

func sameSeqs(t testing.TB, what string, got, want []int64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %v, want %v", what, got, want)
		return
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("%s: %v, want %v", what, got, want)
			return
		}
	}
}
