package loader

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/backfill/backfill/spool"
)

func TestGroupSegments(t *testing.T) {
	t.Parallel()
	seg := func(relay string, first int64, raw int64) spool.SegmentInfo {
		return spool.SegmentInfo{Relay: relay, FirstSeq: first, LastSeq: first, RawBytes: raw, Count: raw / 10000}
	}
	frames := func(s spool.SegmentInfo, n int64) spool.SegmentInfo { s.Count = n; return s }
	shape := func(jobs []job) string {
		var b strings.Builder
		for _, j := range jobs {
			b.WriteString("[")
			b.WriteString(strings.Repeat("x", len(j.segs)))
			b.WriteString("]")
		}
		return b.String()
	}
	const mb = 1 << 20
	const k = 1000
	cases := []struct {
		name     string
		segs     []spool.SegmentInfo
		batch    int
		minBytes int64
		want     string
	}{
		{"segments of many frames load alone", []spool.SegmentInfo{frames(seg("r", 1, 64*mb), 70*k), frames(seg("r", 2, 64*mb), 70*k), frames(seg("r", 3, 9*mb), 11*k)}, 100, mb, "[x][x][x]"},
		{"small segments group up to the batch size", []spool.SegmentInfo{seg("r", 1, 2*mb), seg("r", 2, 2*mb), seg("r", 3, 2*mb)}, 2, mb, "[xx][x]"},
		{"tiny segments group past the batch size up to the floor", []spool.SegmentInfo{seg("r", 1, mb/4), seg("r", 2, mb/4), seg("r", 3, mb/4), seg("r", 4, mb/4), seg("r", 5, mb/4)}, 1, mb, "[xxxx][x]"},
		{"without a floor batch 1 is one segment each", []spool.SegmentInfo{seg("r", 1, 10), seg("r", 2, 10)}, 1, 0, "[x][x]"},
		{"the frame cap stops a group", []spool.SegmentInfo{frames(seg("r", 1, mb), 50*k), frames(seg("r", 2, mb), 30*k), frames(seg("r", 3, mb), 1)}, 100, mb, "[xx][x]"},
		{"the byte cap stops a group", []spool.SegmentInfo{seg("r", 1, 200*mb), seg("r", 2, 100*mb), seg("r", 3, mb)}, 100, mb, "[x][xx]"},
		{"a segment past the frame cap goes alone", []spool.SegmentInfo{frames(seg("r", 1, mb), 1), frames(seg("r", 2, mb), 200*k), frames(seg("r", 3, mb), 1)}, 100, mb, "[x][x][x]"},
		{"a relay change stops a group", []spool.SegmentInfo{seg("a", 1, 10), seg("b", 2, 10)}, 100, mb, "[x][x]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := shape(groupSegments(tc.segs, tc.batch, tc.minBytes, len(rampEighths), false)); got != tc.want {
				t.Errorf("groups = %s, want %s", got, tc.want)
			}
		})
	}

	// A run's first units are smaller, then grow to the caps: segments of 19k frames go
	// one, one, two, three, then four at a time.
	var segs []spool.SegmentInfo
	for i := range 12 {
		segs = append(segs, frames(seg("r", int64(i+1), 30*mb), 19*k))
	}
	for _, tc := range []struct {
		cut  int
		want string
	}{
		{0, "[x][x][xx][xxx][xxxx][x]"},
		{2, "[xx][xxx][xxxx][xxx]"},
		{len(rampEighths), "[xxxx][xxxx][xxxx]"},
	} {
		if got := shape(groupSegments(segs, 100, mb, tc.cut, false)); got != tc.want {
			t.Errorf("after %d units: groups = %s, want %s", tc.cut, got, tc.want)
		}
	}

	// The run's last units shrink again: one, one, two, then three segments from the end.
	for _, tc := range []struct {
		cut  int
		want string
	}{
		{len(rampEighths), "[xxxx][x][xxx][xx][x][x]"},
		{0, "[x][x][xx][x][xxx][xx][x][x]"},
	} {
		if got := shape(groupSegments(segs, 100, mb, tc.cut, true)); got != tc.want {
			t.Errorf("last listing, after %d units: groups = %s, want %s", tc.cut, got, tc.want)
		}
	}
	if got := shape(groupSegments(segs[:2], 100, mb, 0, true)); got != "[x][x]" {
		t.Errorf("last listing of two segments: groups = %s, want [x][x]", got)
	}
	if got := shape(groupSegments(nil, 100, mb, 0, true)); got != "" {
		t.Errorf("last listing of no segments: groups = %s, want none", got)
	}
}

// TestGroupSegmentsKeepsOrder checks, over random listings, that the jobs hold every segment
// once, in order, one relay each, within the caps unless a segment alone exceeds them.
func TestGroupSegmentsKeepsOrder(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range 5000 {
		var segs []spool.SegmentInfo
		for j := range rng.IntN(30) {
			segs = append(segs, spool.SegmentInfo{Relay: []string{"a", "b"}[rng.IntN(4)/3], FirstSeq: int64(j + 1), LastSeq: int64(j + 1),
				RawBytes: rng.Int64N(unitBytes / 3), Count: rng.Int64N(unitFrames / 2)})
		}
		batch, minBytes, cut, final := 1+rng.IntN(6), rng.Int64N(1<<22), rng.IntN(6), rng.IntN(2) == 0
		jobs := groupSegments(segs, batch, minBytes, cut, final)
		var got []spool.SegmentInfo
		for _, j := range jobs {
			var frames, bytes int64
			for _, s := range j.segs {
				if s.Relay != j.relay {
					t.Fatalf("case %d: a segment of relay %s in a job of %s", i, s.Relay, j.relay)
				}
				frames, bytes = frames+s.Count, bytes+s.RawBytes
			}
			if len(j.segs) == 0 || (len(j.segs) > 1 && (frames > unitFrames || bytes > unitBytes)) {
				t.Fatalf("case %d: job of %d segments, %d frames, %d bytes", i, len(j.segs), frames, bytes)
			}
			got = append(got, j.segs...)
		}
		if !slices.Equal(got, segs) {
			t.Fatalf("case %d (batch %d, min %d, cut %d, final %v): jobs hold %d segments of %d, or out of order", i, batch, minBytes, cut, final, len(got), len(segs))
		}
	}
}
