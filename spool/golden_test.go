package spool

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// goldenRecords are the fixed inputs of the golden segment.
func goldenRecords() []rec {
	t0 := time.Date(2024, 1, 2, 3, 4, 5, 678901000, time.UTC)
	seq := make([]byte, 64)
	for i := range seq {
		seq[i] = byte(i)
	}
	return []rec{
		{Seq: 100, Time: t0, Frame: []byte("hello firehose")},
		{Seq: 101, Frame: []byte{}},
		{Seq: 105, Time: t0.Add(time.Second), Frame: []byte("frame three: repeated repeated repeated repeated")},
		{Seq: 106, Time: t0.Add(2 * time.Second), Frame: seq},
		{Seq: 200, Time: t0.Add(time.Second), Frame: []byte("last")},
	}
}

// writeGolden writes the golden segment (three chunks: records are cut at 64 raw bytes) and
// returns its bytes.
func writeGolden(t *testing.T) []byte {
	t.Helper()
	dir := t.TempDir()
	s := openSpool(t, dir, Options{ChunkBytes: 64, Now: newClock().Now})
	w := newWriter(t, s)
	appendAll(t, w, goldenRecords())
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return readFile(t, filepath.Join(dir, "segments", segmentName(100)+".seg"))
}

const (
	goldenWriter = "testdata/golden/tiny.seg" // what today's writer produces; -update rewrites it
	goldenFrozen = "testdata/golden/v2.seg"   // a format version 2 file the reader must always decode; never rewritten
	goldenV1     = "testdata/golden/v1.seg"   // a format version 1 file (independent chunk frames), which readers reject
)

func TestGoldenWriter(t *testing.T) {
	got := writeGolden(t)
	if *update {
		writeFile(t, goldenWriter, got)
		if _, err := os.Stat(goldenFrozen); os.IsNotExist(err) {
			writeFile(t, goldenFrozen, got)
		}
	}
	want := readFile(t, goldenWriter)
	if !bytes.Equal(got, want) {
		t.Errorf("writer output (%d bytes) differs from %s (%d bytes); if the format change is intended, bump the version, document it in docs/FORMAT.md and run go test -run TestGolden -update", len(got), goldenWriter, len(want))
	}
}

func TestGoldenReader(t *testing.T) {
	for _, path := range []string{goldenFrozen, goldenWriter} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			dir := goldenDir(t, path)
			seg := filepath.Join(dir, "segments", segmentName(100)+".seg")
			sameRecords(t, readSegment(t, seg), goldenRecords())
			r, err := OpenSegment(seg)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			checkInfo(t, r.Info(), goldenRecords())
			if n, err := Verify(t.Context(), dir, nil); err != nil || n != 0 {
				t.Errorf("Verify = %d faults, %v", n, err)
			}
		})
	}
}

// TestGoldenV1 checks that a version-1 segment is refused as unsupported rather than misread:
// nothing was deployed with version 1, so readers need not decode it.
func TestGoldenV1(t *testing.T) {
	dir := goldenDir(t, goldenV1)
	seg := filepath.Join(dir, "segments", segmentName(100)+".seg")
	_, err := OpenSegment(seg)
	wantCorrupt(t, err, seg, 8)
	if !strings.Contains(err.Error(), "unsupported format version 1") {
		t.Errorf("OpenSegment(v1) = %v, want it to name version 1", err)
	}
	if n, err := Verify(t.Context(), dir, nil); err != nil || n != 1 {
		t.Errorf("Verify = %d faults, %v; want 1", n, err)
	}
}

// goldenDir returns a spool directory holding a copy of the golden file under its proper name.
func goldenDir(t *testing.T, path string) string {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "segments", segmentName(100)+".seg"), readFile(t, path))
	return dir
}

// TestGoldenLayout decodes the frozen golden file by hand, following docs/FORMAT.md rather than
// the package's own decoders, so the document and the code cannot drift apart.
func TestGoldenLayout(t *testing.T) {
	b := readFile(t, goldenFrozen)
	le := binary.LittleEndian
	crc := func(p []byte) uint32 { return crc32.Checksum(p, crc32.MakeTable(crc32.Castagnoli)) }
	relay := []byte(testRelay)
	created := time.Date(2024, 1, 2, 3, 4, 5, 678901000, time.UTC).UnixMicro()

	hlen := 30 + len(relay) + 4
	check := func(what string, got, want any) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	check("magic", string(b[0:8]), "BFSPSEG\n")
	check("version", le.Uint16(b[8:]), uint16(2))
	check("flags", le.Uint16(b[10:]), uint16(0))
	check("first seq", int64(le.Uint64(b[12:])), int64(100))
	check("created", int64(le.Uint64(b[20:])), created)
	check("relay length", int(le.Uint16(b[28:])), len(relay))
	check("relay", string(b[30:30+len(relay)]), testRelay)
	check("header crc", le.Uint32(b[hlen-4:]), crc(b[:hlen-4]))

	footer := b[len(b)-16:]
	check("footer magic", string(footer[8:]), "BFSPEND\n")
	trOff := int(le.Uint64(footer))
	check("trailer offset", trOff, len(b)-16-40-72)

	// The chunks: data chunks, then the end chunk right before the trailer. Their payloads,
	// concatenated, are one zstd frame.
	type dataChunk struct {
		raw, count  int
		first, last int64
	}
	var (
		data   []dataChunk
		stream []byte
		body   uint32
		ended  bool
	)
	for off := hlen; off < trOff; {
		h := b[off : off+40]
		check("chunk header crc", le.Uint32(h[36:]), crc(h[:36]))
		check("reserved", string(h[1:4]), "\x00\x00\x00")
		stored := int(le.Uint32(h[4:]))
		payload := b[off+40 : off+40+stored]
		check("chunk payload crc", le.Uint32(h[32:]), crc(payload))
		stream = append(stream, payload...)
		body = crc32.Update(body, crc32.MakeTable(crc32.Castagnoli), b[off:off+40+stored])
		first, last := int64(le.Uint64(h[16:])), int64(le.Uint64(h[24:]))
		off += 40 + stored
		if ended {
			t.Fatalf("chunk of kind %d after the end chunk", h[0])
		}
		switch h[0] {
		case 1:
			data = append(data, dataChunk{raw: int(le.Uint32(h[8:])), count: int(le.Uint32(h[12:])), first: first, last: last})
		case 3:
			ended = true
			check("end chunk payload", string(payload), "\x01\x00\x00")
			check("end chunk raw length", le.Uint32(h[8:]), uint32(0))
			check("end chunk record count", le.Uint32(h[12:]), uint32(0))
			check("end chunk seqs", [2]int64{first, last}, [2]int64{100, 200})
			check("end chunk is last", off, trOff)
		default:
			t.Fatalf("chunk kind %d at offset %d", h[0], off)
		}
	}
	if !ended {
		t.Fatal("no end chunk")
	}
	check("data chunks", len(data), 3)
	// Frame header: magic, descriptor 0 (no checksum, no content size, not single segment),
	// window descriptor 0x68 (8 MiB).
	check("zstd frame header", string(stream[:6]), "\x28\xb5\x2f\xfd\x00\x68")
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	plain, err := dec.DecodeAll(stream, nil) // a complete frame: nothing after it, nothing missing
	if err != nil {
		t.Fatalf("zstd: %v", err)
	}

	var records []rec
	for i, c := range data {
		if len(plain) < c.raw {
			t.Fatalf("chunk %d: %d raw bytes, %d left in the stream", i, c.raw, len(plain))
		}
		chunk := plain[:c.raw]
		plain = plain[c.raw:]
		for range c.count {
			n := int(le.Uint32(chunk))
			frame := chunk[24 : 24+n]
			check("frame crc", le.Uint32(chunk[4:]), crc(frame))
			var ts time.Time
			if us := int64(le.Uint64(chunk[16:])); us != 0 {
				ts = time.UnixMicro(us)
			}
			records = append(records, rec{Seq: int64(le.Uint64(chunk[8:])), Time: ts, Frame: frame})
			chunk = chunk[24+n:]
		}
		check("bytes after records", len(chunk), 0)
		check("chunk first seq", c.first, records[len(records)-c.count].Seq)
		check("chunk last seq", c.last, records[len(records)-1].Seq)
	}
	check("bytes after the last chunk's records", len(plain), 0)
	sameRecords(t, records, goldenRecords())

	th := b[trOff : trOff+40]
	check("trailer kind", th[0], byte(2))
	check("trailer stored length", le.Uint32(th[4:]), uint32(72))
	tp := b[trOff+40 : trOff+112]
	check("trailer chunk crc", le.Uint32(th[32:]), crc(tp))
	check("trailer crc", le.Uint32(tp[68:]), crc(tp[:68]))
	v := func(i int) int64 { return int64(le.Uint64(tp[8*i:])) }
	check("trailer count", v(0), int64(5))
	check("trailer first", v(1), int64(100))
	check("trailer last", v(2), int64(200))
	check("trailer min time", v(3), created)
	check("trailer max time", v(4), created+2_000_000)
	check("trailer last time", v(5), created+1_000_000)
	raw := int64(0)
	for _, r := range goldenRecords() {
		raw += 24 + int64(len(r.Frame))
	}
	check("trailer raw bytes", v(6), raw)
	check("trailer chunks", v(7), int64(3))
	check("trailer body crc", le.Uint32(tp[64:]), body)
}
