package loader

import (
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
			if got := shape(groupSegments(tc.segs, tc.batch, tc.minBytes, len(rampEighths))); got != tc.want {
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
		if got := shape(groupSegments(segs, 100, mb, tc.cut)); got != tc.want {
			t.Errorf("after %d units: groups = %s, want %s", tc.cut, got, tc.want)
		}
	}
}
