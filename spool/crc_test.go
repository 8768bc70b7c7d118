package spool

import (
	"math/rand/v2"
	"testing"
)

// TestCRC32Combine checks the combined checksum against one pass over the joined bytes, for
// lengths around every power of two up to a chunk's size and for random splits.
func TestCRC32Combine(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 5<<20)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	check := func(a, b []byte) {
		t.Helper()
		want := crc32Update(crc32c(a), b)
		if got := crc32Combine(crc32c(a), crc32c(b), int64(len(b))); got != want {
			t.Fatalf("len(a) %d, len(b) %d: combined %08x, want %08x", len(a), len(b), got, want)
		}
	}
	check(nil, nil)
	check(buf[:7], nil)
	check(nil, buf[:7])
	for k := 0; 1<<k <= len(buf)/2; k++ {
		for _, n := range []int{1<<k - 1, 1 << k, 1<<k + 1} {
			check(buf[:40], buf[40:40+n])
		}
	}
	for range 200 {
		i := rng.IntN(len(buf))
		j := i + rng.IntN(len(buf)-i+1)
		check(buf[:i], buf[i:j])
	}
}
