package relaytest

import (
	"testing"
	"time"
)

// FuzzModelApply feeds arbitrary bytes to the model as a frame: it must never panic, and a
// frame it cannot decode must change nothing but the counters.
func FuzzModelApply(f *testing.F) {
	f.Add([]byte{0xff, 0x00})
	f.Add([]byte{0xa2, 0x61, 't', 0x67, '#', 'c', 'o', 'm', 'm', 'i', 't', 0x62, 'o', 'p', 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		m := NewModel()
		m.Apply(Frame{Seq: 1, Time: time.Unix(0, 0), Bytes: b, Kind: KindCommit})
		if m.Problems["bad_frame"] > 0 && (len(m.Users) != 0 || len(m.Posts) != 0 || len(m.Likes) != 0) {
			t.Errorf("undecodable frame produced rows")
		}
	})
}
