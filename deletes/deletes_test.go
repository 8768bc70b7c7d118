package deletes

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	comatproto "github.com/bluesky-social/indigo/api/atproto"
	"github.com/bluesky-social/indigo/api/bsky"

	"github.com/backfill/backfill/decode"
	"github.com/backfill/backfill/relaytest"
	"github.com/backfill/backfill/spool"
)

func TestKey(t *testing.T) {
	uri := "at://did:plc:ewvi7nxzyoun6zhxrhs64oiz/app.bsky.feed.post/3l3qo2vutsw2b"
	got := Key(uri)
	if want := "eae723e71eedb54e3418402ca9be78bc"; hex.EncodeToString(got[:]) != want {
		t.Errorf("Key = %x, want %s", got, want)
	}
	// The first 16 bytes of the SHA-256 on both sides of Key's stack buffer.
	for _, u := range []string{"", strings.Repeat("x", 511), strings.Repeat("x", 512), strings.Repeat("x", 513), strings.Repeat(uri, 40)} {
		sum := sha256.Sum256([]byte(u))
		if got := Key(u); got != [16]byte(sum[:16]) {
			t.Errorf("Key of a %d-byte uri = %x, want %x", len(u), got, sum[:16])
		}
	}
	if n := testing.AllocsPerRun(100, func() { Key(uri) }); n != 0 {
		t.Errorf("Key allocates %v times", n)
	}
}

func TestPath(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/s/segments/00000000000000000042.seg", "/s/segments/00000000000000000042.del"},
		{"00000000000000000001.seg", "00000000000000000001.del"},
		{"/s/segments/x.seg.seg", "/s/segments/x.seg.del"},
		{"/s/other", "/s/other.del"},
	} {
		if got := Path(tc.in); got != tc.want {
			t.Errorf("Path(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// tickClock is an Options.Now that advances a second on every call, so that segments roll by
// age every few dozen frames, the writer sealing before it appends the frame that found the
// segment too old.
type tickClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *tickClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

// TestCollector writes relay frames (bad input and collisions included) through a real spool
// and checks every sidecar against what the full decoder says of the segment's frames.
func TestCollector(t *testing.T) {
	_, frames := relayFrames(t, relaytest.Config{Seed: 11, Users: 20, Events: 3000, Gaps: true, BadInput: true, Collisions: true})
	for _, tc := range []struct {
		name string
		opts func() spool.Options
	}{
		{"size seals", func() spool.Options { return spool.Options{SegmentBytes: 48 << 10} }},
		{"age seals", func() spool.Options {
			c := &tickClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
			return spool.Options{SegmentAge: 90 * time.Second, Now: c.Now}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			sealed := writeSpool(t, dir, tc.opts(), nil, frames, nil)
			segs := listSegments(t, dir)
			if len(segs) < 5 || len(sealed) != len(segs) {
				t.Fatalf("%d segments listed, %d sealed; want the same, at least 5", len(segs), len(sealed))
			}
			var total int
			for i, info := range segs {
				if s := sealed[i]; s.FirstSeq != info.FirstSeq || s.LastSeq != info.LastSeq || s.Checksum != info.Checksum || s.Count != info.Count {
					t.Fatalf("sealed %s, listed %s", s.ID(), info.ID())
				}
				x, err := Read(info)
				if err != nil {
					t.Fatalf("Read(%s): %v", info.Name, err)
				}
				if x.FirstSeq != info.FirstSeq || x.LastSeq != info.LastSeq || x.Checksum != info.Checksum || x.Frames != info.Count {
					t.Errorf("%s: index names %d-%d %08x %d frames", info.ID(), x.FirstSeq, x.LastSeq, x.Checksum, x.Frames)
				}
				entries, barriers := reference(t, info)
				sameEntries(t, info.Name, x.Entries, entries)
				if len(x.Barriers) != 0 || len(barriers) != 0 {
					t.Errorf("%s: barriers %v, reference %v; want none", info.Name, x.Barriers, barriers)
				}
				total += len(x.Entries)

				cp := copySegment(t, info)
				if err := Build(cp); err != nil {
					t.Fatalf("Build(%s): %v", cp.Path, err)
				}
				if got, want := readFile(t, Path(cp.Path)), readFile(t, Path(info.Path)); !bytes.Equal(got, want) {
					t.Errorf("%s: Build wrote %d bytes, the collector %d, and they differ", info.Name, len(got), len(want))
				}
			}
			if total < 50 {
				t.Errorf("%d entries in all; the test needs more deletes to mean anything", total)
			}
			noTempFiles(t, filepath.Join(dir, "segments"))
		})
	}
}

// TestRules checks each condition of the exactness contract on hand-made commits.
func TestRules(t *testing.T) {
	r, _ := relayFrames(t, relaytest.Config{Seed: 5, Users: 3})
	del := func(path string) relaytest.Op { return relaytest.Op{Action: "delete", Path: path} }
	seqOf := func(seq int64, err error) int64 {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return seq
	}
	plain := seqOf(r.AppendCommit(0, del("app.bsky.feed.post/3kaaaaaaaaaa2")))
	mixed := seqOf(r.AppendCommit(1,
		del("app.bsky.feed.like/3kaaaaaaaaab2"),
		del("app.bsky.feed.repost/3kaaaaaaaaac2"),
		del("app.bsky.graph.follow/3kaaaaaaaaad2"),
		del("app.bsky.graph.block/3kaaaaaaaaae2"),
		del("app.bsky.actor.profile/self"),
		del("app.bsky.actor.profile/other"), // no profile: not listed
		del("com.example.thing/3kaaaaaaaaaf2"),
		relaytest.Op{Action: "create", Path: "app.bsky.feed.like/3kaaaaaaaaag2", Record: &bsky.FeedLike{
			CreatedAt: "2025-03-04T05:06:07.000Z",
			Subject:   &comatproto.RepoStrongRef{Uri: "at://did:plc:aaaaaaaaaaaaaaaaaaaaaaaa/app.bsky.feed.post/3kaaaaaaaaah2", Cid: "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"},
		}},
	))
	// A follow whose subject is no DID: the full decoder counts ReasonBadDID, but of the
	// subject, not the repo; the delete beside it is listed.
	subject := seqOf(r.AppendCommit(2,
		del("app.bsky.feed.post/3kaaaaaaaaai2"),
		relaytest.Op{Action: "create", Path: "app.bsky.graph.follow/3kaaaaaaaaaj2", Record: &bsky.GraphFollow{CreatedAt: "2025-03-04T05:06:07.000Z", Subject: "alice"}},
	))
	frames := logFrames(r.Log())
	bySeq := func(seq int64) []byte {
		t.Helper()
		for _, f := range frames {
			if f.Seq == seq {
				return f.Bytes
			}
		}
		t.Fatalf("no frame with seq %d", seq)
		return nil
	}
	base := bySeq(plain)
	next := r.Head()
	mutated := func(fn func(*comatproto.SyncSubscribeRepos_Commit)) int64 {
		next++
		frames = append(frames, sframe{Seq: next, Time: time.Unix(1, 0), Bytes: mutateCommit(t, base, func(c *comatproto.SyncSubscribeRepos_Commit) {
			c.Seq = next
			fn(c)
		})})
		return next
	}
	good := mutated(func(*comatproto.SyncSubscribeRepos_Commit) {})
	badDID := mutated(func(c *comatproto.SyncSubscribeRepos_Commit) { c.Repo = "did:plc:NOT A DID" })
	badTime := mutated(func(c *comatproto.SyncSubscribeRepos_Commit) { c.Time = "yesterday" })
	epoch := mutated(func(c *comatproto.SyncSubscribeRepos_Commit) { c.Time = "1970-01-01T00:00:00.000Z" })
	lower := mutated(func(c *comatproto.SyncSubscribeRepos_Commit) { c.Seq = next - 1 })
	noPath := mutated(func(c *comatproto.SyncSubscribeRepos_Commit) { c.Ops[0].Path = "nopath" })
	update := mutated(func(c *comatproto.SyncSubscribeRepos_Commit) { c.Ops[0].Action = "update" })
	bogus := mutated(func(c *comatproto.SyncSubscribeRepos_Commit) { c.Ops[0].Action = "remove" })
	_ = []int64{badDID, badTime, epoch, lower, noPath, update, bogus}

	dir := t.TempDir()
	writeSpool(t, dir, spool.Options{}, nil, frames, nil)
	segs := listSegments(t, dir)
	if len(segs) != 1 {
		t.Fatalf("%d segments, want 1", len(segs))
	}
	x, err := Read(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := reference(t, segs[0])
	sameEntries(t, "reference", x.Entries, entries)

	// The same, by hand: which frames and how many ops.
	want := map[int64]int{plain: 1, mixed: 5, subject: 1, good: 1, update: 1}
	got := map[int64]int{}
	for _, e := range x.Entries {
		got[e.Seq]++
	}
	for seq, n := range want {
		if got[seq] != n {
			t.Errorf("seq %d: %d entries, want %d", seq, got[seq], n)
		}
	}
	for seq, n := range got {
		if want[seq] == 0 {
			t.Errorf("seq %d: %d entries, want none", seq, n)
		}
	}
	// The subject frame really is the case it claims to be.
	ev, err := decode.NewDecoder(decode.Options{}).Decode(bySeq(subject))
	if err != nil || ev.Seq != subject {
		t.Fatalf("decode seq %d: %v, %v", subject, ev, err)
	}
	var subjectProblem bool
	for _, p := range ev.Problems {
		subjectProblem = subjectProblem || p.Reason == decode.ReasonBadDID
	}
	if !subjectProblem {
		t.Errorf("seq %d: the full decoder found no bad subject DID: %+v", subject, ev.Problems)
	}
	// Keys and times of the plain delete.
	for _, e := range x.Entries {
		if e.Seq == plain {
			ev, err := decode.NewDecoder(decode.Options{}).Decode(bySeq(plain))
			if err != nil {
				t.Fatal(err)
			}
			if uri := "at://" + ev.DID + "/app.bsky.feed.post/3kaaaaaaaaaa2"; e.Key != Key(uri) || e.Time != ev.Time.UnixMicro() {
				t.Errorf("entry %+v, want key of %s and time %d", e, uri, ev.Time.UnixMicro())
			}
		}
	}
}

// TestBarriers stores frames under spool seqs other than their body seqs.
func TestBarriers(t *testing.T) {
	_, all := relayFrames(t, relaytest.Config{Seed: 12, Users: 10, Events: 600, Collisions: true})
	dec := decode.NewDecoder(decode.Options{})
	hasDelete := func(f sframe) bool {
		ev, err := dec.Decode(f.Bytes)
		if err != nil {
			return false
		}
		for _, op := range ev.Ops {
			if op.Action == decode.ActionDelete && op.Collection != decode.CollectionOther {
				return true
			}
		}
		return false
	}
	kindOf := func(f sframe) decode.Kind {
		ev, err := dec.Decode(f.Bytes)
		if err != nil {
			return decode.KindUnknown
		}
		return ev.Kind
	}
	// Pick frames to move: deleting commits (their entries must go) and one non-commit.
	var wantBarriers []int64
	var lowered []int64 // body seq below the spool seq: neither barrier nor entry
	frames := make([]sframe, 0, len(all))
	moved := map[decode.Kind]int{}
	ordinary := 0 // frames at the end of frames that are where the log put them
	for i := 0; i < len(all); i++ {
		f := all[i]
		k := kindOf(f)
		raise := k == decode.KindCommit && hasDelete(f) && moved[k] < 3 ||
			k != decode.KindCommit && k != decode.KindUnknown && moved[k] < 1
		switch {
		case raise && ordinary > 0:
			// Under seq-1, the previous frame left out: the body seq is above the spool seq.
			frames = frames[:len(frames)-1]
			moved[k]++
			frames = append(frames, sframe{Seq: f.Seq - 1, Time: f.Time, Bytes: f.Bytes})
			wantBarriers = append(wantBarriers, f.Seq-1)
			ordinary = 0
		case k == decode.KindCommit && hasDelete(f) && moved[k] >= 3 && len(lowered) < 3 && i+2 < len(all):
			// Under seq+1, the next frame left out: the body seq is below the spool seq.
			frames = append(frames, sframe{Seq: f.Seq + 1, Time: f.Time, Bytes: f.Bytes})
			lowered = append(lowered, f.Seq+1)
			i++
			ordinary = 0
		default:
			frames = append(frames, f)
			ordinary++
		}
	}
	if moved[decode.KindCommit] < 3 || len(moved) < 2 || len(lowered) < 3 {
		t.Fatalf("moved %v, lowered %v: the log lacks the frames this test needs", moved, lowered)
	}
	dir := t.TempDir()
	writeSpool(t, dir, spool.Options{SegmentBytes: 64 << 10}, nil, frames, nil)
	var gotBarriers []int64
	var entries int
	for _, info := range listSegments(t, dir) {
		x, err := Read(info)
		if err != nil {
			t.Fatal(err)
		}
		refEntries, refBarriers := reference(t, info)
		sameEntries(t, info.Name, x.Entries, refEntries)
		sameSeqs(t, info.Name+" barriers against the reference", x.Barriers, refBarriers)
		gotBarriers = append(gotBarriers, x.Barriers...)
		entries += len(x.Entries)
		for _, e := range x.Entries {
			for _, s := range append(append([]int64(nil), wantBarriers...), lowered...) {
				if e.Seq == s {
					t.Errorf("entry at seq %d, whose body seq differs from the spool seq", s)
				}
			}
		}
	}
	sameSeqs(t, "barriers", gotBarriers, wantBarriers)
	if entries == 0 {
		t.Error("no entries at all")
	}
}

// TestRecovery: a segment sealed by recovery after a crash gets no sidecar, and a stale one at
// its path is removed; the segments after it get theirs.
func TestRecovery(t *testing.T) {
	_, frames := relayFrames(t, relaytest.Config{Seed: 13, Users: 10, Events: 900, Collisions: true})
	crashed, rest := frames[:400], frames[400:]

	// A writer that dies after a Sync leaves this open segment.
	dirA := t.TempDir()
	spA, err := spool.Open(dirA, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := spA.NewWriter(testRelay)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range crashed {
		if err := w.Append(f.Seq, f.Time, f.Bytes); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	name := filepath.Base(spoolOpenName(t, dirA))
	openBytes := readFile(t, filepath.Join(dirA, "segments", name))
	spA.Close()

	dir := t.TempDir()
	segDir := filepath.Join(dir, "segments")
	writeFile(t, filepath.Join(segDir, name), openBytes)
	stalePath := Path(filepath.Join(segDir, name[:len(name)-len(".open")]+".seg"))
	stale := appendIndex(nil, &Index{FirstSeq: crashed[0].Seq, LastSeq: crashed[len(crashed)-1].Seq, Checksum: 1, Frames: int64(len(crashed)),
		Entries: []Entry{{Seq: crashed[0].Seq, Time: 1, Key: Key("at://x")}}})
	writeFile(t, stalePath, stale)

	c := NewCollector()
	sealed := writeSpool(t, dir, spool.Options{SegmentBytes: 64 << 10}, c, rest, nil)
	if len(sealed) < 3 || sealed[0].FirstSeq != crashed[0].Seq || sealed[0].Count != int64(len(crashed)) {
		t.Fatalf("sealed %+v, want the recovered segment first and more after it", sealed)
	}
	if _, err := os.Stat(stalePath); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale sidecar %s: %v, want it removed", stalePath, err)
	}
	if _, err := Read(sealed[0]); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Read of the recovered segment: %v, want fs.ErrNotExist", err)
	}
	for _, info := range listSegments(t, dir)[1:] {
		x, err := Read(info)
		if err != nil {
			t.Fatalf("Read(%s): %v", info.Name, err)
		}
		entries, _ := reference(t, info)
		sameEntries(t, info.Name, x.Entries, entries)
	}
	// Build gives the recovered segment its sidecar all the same.
	if err := Build(sealed[0]); err != nil {
		t.Fatal(err)
	}
	x, err := Read(sealed[0])
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := reference(t, sealed[0])
	sameEntries(t, "built", x.Entries, entries)
	if len(entries) == 0 {
		t.Error("the recovered segment has no deletes; the test needs some")
	}
}

// spoolOpenName returns the path of the one open segment in dir.
func spoolOpenName(t testing.TB, dir string) string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "segments", "*.open"))
	if err != nil || len(m) != 1 {
		t.Fatalf("open segments %v, %v; want one", m, err)
	}
	return m[0]
}

// TestMissedFrames: a collector that did not see every frame of a segment writes no sidecar for
// it, and ignores a frame whose seq is not above the last one added (Append refuses it).
func TestMissedFrames(t *testing.T) {
	_, frames := relayFrames(t, relaytest.Config{Seed: 14, Users: 10, Events: 800, Collisions: true})
	missed := frames[300].Seq
	dir := t.TempDir()
	c := NewCollector()
	var once bool
	sealed := writeSpool(t, dir, spool.Options{SegmentBytes: 64 << 10}, c, frames, func(f sframe) bool {
		if f.Seq == frames[500].Seq && !once {
			// A duplicate of an earlier frame, as a caller would offer it before Append refused it.
			once = true
			c.Add(frames[499].Seq, frames[10].Bytes)
		}
		return f.Seq == missed
	})
	var hit int
	for _, info := range sealed {
		x, err := Read(info)
		if info.FirstSeq <= missed && missed <= info.LastSeq {
			hit++
			if !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("segment %s holds the missed frame: Read gives %v, want fs.ErrNotExist", info.ID(), err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("Read(%s): %v", info.Name, err)
		}
		entries, _ := reference(t, info)
		sameEntries(t, info.Name, x.Entries, entries)
	}
	if hit != 1 || len(sealed) < 3 {
		t.Fatalf("%d of %d segments hold the missed frame, want 1 of at least 3", hit, len(sealed))
	}
}

// TestOnSealPending: frames added above the sealed range stay for the next segment, and those
// below it are forgotten.
func TestOnSealPending(t *testing.T) {
	r, _ := relayFrames(t, relaytest.Config{Seed: 15, Users: 2})
	var seqs []int64
	for i := range 4 {
		seq, err := r.AppendCommit(i%2, relaytest.Op{Action: "delete", Path: "app.bsky.feed.post/3kaaaaaaaaa" + string(rune('a'+i)) + "2"})
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, seq)
	}
	frames := logFrames(r.Log())
	dir := t.TempDir()
	c := NewCollector()
	for _, f := range frames {
		c.Add(f.Seq, f.Bytes)
	}
	segPath := func(first int64) string { return filepath.Join(dir, "seg"+string(rune('0'+first))+".seg") }
	// The first two frames, as if sealed alone: the other two stay pending.
	c.OnSeal(spool.SegmentInfo{Path: segPath(1), FirstSeq: seqs[0], LastSeq: seqs[1], Count: 2, Checksum: 7})
	// A segment starting past the third frame: the third is forgotten, the fourth indexed.
	c.OnSeal(spool.SegmentInfo{Path: segPath(2), FirstSeq: seqs[3], LastSeq: seqs[3], Count: 1, Checksum: 8})
	if err := c.Err(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		info spool.SegmentInfo
		want []int64
	}{
		{spool.SegmentInfo{Path: segPath(1), FirstSeq: seqs[0], LastSeq: seqs[1], Count: 2, Checksum: 7}, seqs[:2]},
		{spool.SegmentInfo{Path: segPath(2), FirstSeq: seqs[3], LastSeq: seqs[3], Count: 1, Checksum: 8}, seqs[3:]},
	} {
		x, err := Read(tc.info)
		if err != nil {
			t.Fatal(err)
		}
		var got []int64
		for _, e := range x.Entries {
			got = append(got, e.Seq)
		}
		sameSeqs(t, tc.info.Path, got, tc.want)
	}
	if len(c.ix.entries) != 0 || len(c.runs) != 0 {
		t.Errorf("collector still holds %d entries and runs %v", len(c.ix.entries), c.runs)
	}
}
