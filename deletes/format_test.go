package deletes

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/backfill/backfill/relaytest"
	"github.com/backfill/backfill/spool"
)

var update = flag.Bool("update", false, "rewrite the fuzz seed corpus from a real sidecar")

// realSidecar writes relay frames through a spool and returns a segment with entries and its
// sidecar's bytes.
func realSidecar(t testing.TB, seed int64, events int) (spool.SegmentInfo, []byte) {
	t.Helper()
	_, frames := relayFrames(t, relaytest.Config{Seed: seed, Users: 5, Events: events, Collisions: true})
	dir := t.TempDir()
	writeSpool(t, dir, spool.Options{SegmentBytes: 16 << 10}, nil, frames, nil)
	for _, info := range listSegments(t, dir) {
		b := readFile(t, Path(info.Path))
		if int64(len(b)) >= indexSize(0, 2) {
			return info, b
		}
	}
	t.Fatal("no segment with two entries")
	return spool.SegmentInfo{}, nil
}

// infoOf returns a SegmentInfo naming the segment a sidecar's header names, at path.
func infoOf(b []byte, segPath string) spool.SegmentInfo {
	info := spool.SegmentInfo{Path: segPath}
	if len(b) >= headerSize {
		le := binary.LittleEndian
		info.FirstSeq = int64(le.Uint64(b[12:]))
		info.LastSeq = int64(le.Uint64(b[20:]))
		info.Checksum = le.Uint32(b[28:])
		info.Count = int64(le.Uint64(b[32:]))
	}
	return info
}

// patch returns a copy of b with p written at off and its checksum made right again.
func patch(b []byte, off int, p ...byte) []byte {
	b = append([]byte(nil), b...)
	copy(b[off:], p)
	return withCRC(b)
}

// withCRC returns b with its last four bytes set to the checksum of the rest.
func withCRC(b []byte) []byte {
	b = append([]byte(nil), b...)
	n := len(b) - crcSize
	binary.LittleEndian.PutUint32(b[n:], crc32.Checksum(b[:n], castagnoli))
	return b
}

func TestRead(t *testing.T) {
	info, valid := realSidecar(t, 21, 300)
	x, err := Read(info)
	if err != nil {
		t.Fatal(err)
	}
	if got := appendIndex(nil, x); string(got) != string(valid) {
		t.Fatal("the sidecar does not round-trip")
	}
	seg := filepath.Join(t.TempDir(), "00000000000000000001.seg")
	at := infoOf(valid, seg)
	put := func(t *testing.T, b []byte) {
		t.Helper()
		writeFile(t, Path(seg), b)
	}
	wantCorrupt := func(t *testing.T, info spool.SegmentInfo, what string) {
		t.Helper()
		_, err := Read(info)
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), Path(seg)) {
			t.Errorf("%s: Read gives %v, want ErrCorrupt naming %s", what, err, Path(seg))
		}
	}

	t.Run("absent", func(t *testing.T) {
		_, err := Read(spool.SegmentInfo{Path: filepath.Join(t.TempDir(), "00000000000000000009.seg")})
		if !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrCorrupt) {
			t.Errorf("Read gives %v, want fs.ErrNotExist", err)
		}
	})
	t.Run("valid copy", func(t *testing.T) {
		put(t, valid)
		if _, err := Read(at); err != nil {
			t.Errorf("Read: %v", err)
		}
	})
	t.Run("truncated", func(t *testing.T) {
		for n := range len(valid) {
			put(t, valid[:n])
			wantCorrupt(t, at, fmt.Sprintf("first %d bytes", n))
		}
	})
	t.Run("trailing bytes", func(t *testing.T) {
		put(t, append(append([]byte(nil), valid...), 0))
		wantCorrupt(t, at, "one byte more")
		put(t, withCRC(append(append([]byte(nil), valid...), 0, 0, 0, 0)))
		wantCorrupt(t, at, "four bytes more, checksummed")
	})
	t.Run("bit flipped", func(t *testing.T) {
		for i := range len(valid) * 8 {
			b := append([]byte(nil), valid...)
			b[i/8] ^= 1 << (i % 8)
			put(t, b)
			wantCorrupt(t, at, fmt.Sprintf("bit %d flipped", i))
			if t.Failed() {
				return
			}
		}
	})
	t.Run("other segment", func(t *testing.T) {
		put(t, valid)
		for name, mod := range map[string]func(*spool.SegmentInfo){
			"first seq": func(i *spool.SegmentInfo) { i.FirstSeq-- },
			"last seq":  func(i *spool.SegmentInfo) { i.LastSeq++ },
			"checksum":  func(i *spool.SegmentInfo) { i.Checksum ^= 1 },
			"count":     func(i *spool.SegmentInfo) { i.Count-- },
		} {
			other := at
			mod(&other)
			wantCorrupt(t, other, name)
		}
	})
	// Checksummed files whose content breaks a rule of FORMAT.md.
	t.Run("rules", func(t *testing.T) {
		base := Index{FirstSeq: 10, LastSeq: 20, Checksum: 5, Frames: 11,
			Barriers: []int64{12, 15},
			Entries:  []Entry{{Seq: 10, Time: 1, Key: Key("a")}, {Seq: 10, Time: 1, Key: Key("b")}, {Seq: 20, Time: -5, Key: Key("c")}}}
		info := infoOf(appendIndex(nil, &base), seg)
		put(t, appendIndex(nil, &base))
		if _, err := Read(info); err != nil {
			t.Fatalf("the base case: %v", err)
		}
		for name, mod := range map[string]func(*Index){
			"barriers not ascending":  func(x *Index) { x.Barriers = []int64{15, 12} },
			"barriers repeated":       func(x *Index) { x.Barriers = []int64{12, 12} },
			"barrier below first":     func(x *Index) { x.Barriers = []int64{9, 12} },
			"barrier above last":      func(x *Index) { x.Barriers = []int64{12, 21} },
			"entries out of order":    func(x *Index) { x.Entries[0], x.Entries[2] = x.Entries[2], x.Entries[0] },
			"entry below first":       func(x *Index) { x.Entries[0].Seq = 9 },
			"entry above last":        func(x *Index) { x.Entries[2].Seq = 21 },
			"entry time 0":            func(x *Index) { x.Entries[1].Time = 0 },
			"more barriers than seqs": func(x *Index) { x.Barriers = []int64{10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 20} },
		} {
			x := base
			x.Barriers = append([]int64(nil), base.Barriers...)
			x.Entries = append([]Entry(nil), base.Entries...)
			mod(&x)
			put(t, appendIndex(nil, &x))
			wantCorrupt(t, info, name)
		}
		for name, b := range map[string][]byte{
			"version 2":               patch(appendIndex(nil, &base), 8, 2, 0),
			"flags":                   patch(appendIndex(nil, &base), 10, 1, 0),
			"magic":                   patch(appendIndex(nil, &base), 0, []byte("BFSPSEG\n")...),
			"frames 0":                appendIndex(nil, &Index{FirstSeq: 10, LastSeq: 20, Frames: 0}),
			"first 0":                 appendIndex(nil, &Index{FirstSeq: 0, LastSeq: 20, Frames: 1}),
			"last below first":        appendIndex(nil, &Index{FirstSeq: 10, LastSeq: 9, Frames: 1}),
			"frames beyond the range": appendIndex(nil, &Index{FirstSeq: 10, LastSeq: 20, Frames: 12}),
		} {
			put(t, b)
			wantCorrupt(t, infoOf(b, seg), name)
		}
	})
}

// FuzzRead feeds arbitrary bytes to Read as a sidecar file, with the SegmentInfo its header
// names: Read never panics, returns ErrCorrupt or an index that encodes back to the same bytes,
// and allocates no more than the file's size justifies.
func FuzzRead(f *testing.F) {
	_, valid := realSidecar(f, 22, 200)
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	seg := filepath.Join(f.TempDir(), "00000000000000000001.seg")
	f.Fuzz(func(t *testing.T, data []byte) {
		checkRead(t, seg, data)
		if len(data) >= crcSize {
			// Past the checksum, to the rules behind it.
			checkRead(t, seg, withCRC(data))
		}
	})
}

// checkRead writes data as the sidecar of seg and reads it with the SegmentInfo its header names.
func checkRead(t *testing.T, seg string, data []byte) {
	if err := os.WriteFile(Path(seg), data, 0o644); err != nil {
		t.Fatal(err)
	}
	info := infoOf(data, seg)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	x, err := Read(info)
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 3*uint64(len(data))+64<<10 {
		t.Errorf("Read of %d bytes allocated %d", len(data), grew)
	}
	_, reason := parseIndex(data)
	if err != nil {
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Read: %v, want ErrCorrupt", err)
		}
		if reason == "" {
			t.Fatalf("Read: %v, but the bytes parse", err)
		}
		return
	}
	if reason != "" {
		t.Fatalf("Read accepts what parseIndex refuses: %s", reason)
	}
	if got := appendIndex(nil, x); string(got) != string(data) {
		t.Fatalf("round trip: %x, want %x", got, data)
	}
}

// TestFuzzSeeds checks the committed FuzzRead corpus: one real sidecar that Read accepts and
// round-trips, and damaged copies of it that Read refuses. -update rewrites it.
func TestFuzzSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzRead")
	if *update {
		_, valid := realSidecar(t, 23, 300)
		flipped := append([]byte(nil), valid...)
		flipped[headerSize+3] ^= 0x10
		hostile := patch(valid, 44, 0xff, 0xff, 0xff, 0x0f)
		for name, b := range map[string][]byte{
			"valid":       valid,
			"truncated":   valid[:len(valid)-5],
			"flipped":     flipped,
			"hostile":     hostile, // claims 2^28-1 entries
			"valid-empty": withCRC(append(append([]byte(nil), valid[:40]...), make([]byte, 12)...)),
		} {
			writeFile(t, filepath.Join(dir, name), fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", b))
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) < 4 {
		t.Fatalf("seed corpus %s: %d files, %v; run go test -run TestFuzzSeeds -update", dir, len(ents), err)
	}
	seg := filepath.Join(t.TempDir(), "00000000000000000001.seg")
	var valid int
	for _, e := range ents {
		b := corpusBytes(t, filepath.Join(dir, e.Name()))
		writeFile(t, Path(seg), b)
		x, err := Read(infoOf(b, seg))
		switch {
		case e.Name() == "valid":
			if err != nil || len(x.Entries) < 2 || string(appendIndex(nil, x)) != string(b) {
				t.Errorf("seed valid: %v; want a sidecar with entries that round-trips", err)
			}
			valid++
		case e.Name() == "valid-empty":
			if err != nil || len(x.Entries) != 0 || string(appendIndex(nil, x)) != string(b) {
				t.Errorf("seed valid-empty: %v; want a sidecar without entries that round-trips", err)
			}
		case !errors.Is(err, ErrCorrupt):
			t.Errorf("seed %s: Read gives %v, want ErrCorrupt", e.Name(), err)
		}
	}
	if valid != 1 {
		t.Error("no seed named valid")
	}
}

// corpusBytes reads a "go test fuzz v1" file holding one []byte.
func corpusBytes(t testing.TB, path string) []byte {
	t.Helper()
	lines := strings.SplitN(strings.TrimSpace(string(readFile(t, path))), "\n", 2)
	if len(lines) != 2 || lines[0] != "go test fuzz v1" || !strings.HasPrefix(lines[1], "[]byte(") || !strings.HasSuffix(lines[1], ")") {
		t.Fatalf("%s is not a go test fuzz v1 file of one []byte", path)
	}
	s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return []byte(s)
}

// TestRemoveTemps: the hidden temporary file of a sidecar write cut short goes; sidecars,
// segments and other files stay.
func TestRemoveTemps(t *testing.T) {
	dir := t.TempDir()
	keep := []string{"00000000000000000001.seg", "00000000000000000001.del", ".00000000000000000001.seg.tmp1", "notes.tmp"}
	gone := []string{".00000000000000000001.del.tmp123", ".00000000000000000042.del.tmp9"}
	for _, name := range append(append([]string{}, keep...), gone...) {
		writeFile(t, filepath.Join(dir, name), []byte("x"))
	}
	n, err := RemoveTemps(dir)
	if err != nil || n != len(gone) {
		t.Fatalf("RemoveTemps = %d, %v; want %d, nil", n, err, len(gone))
	}
	for _, name := range keep {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, name := range gone {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s still there (%v)", name, err)
		}
	}
}
