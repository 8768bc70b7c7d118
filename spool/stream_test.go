package spool

import (
	"bytes"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// TestCompression checks what one zstd stream per segment buys: matches across chunks, and the
// level reaching the encoder.
func TestCompression(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	t.Run("matches across chunks", func(t *testing.T) {
		// A 256 KiB random frame, then 1 MiB of other random frames in 64 KiB chunks, then the
		// first frame again: only a stream that keeps its window across chunks compresses the
		// repeat away.
		big := randBytes(rng, 256<<10)
		recs := []rec{{Seq: 1, Frame: big}}
		for i := range 16 {
			recs = append(recs, rec{Seq: int64(i) + 2, Frame: randBytes(rng, 64<<10)})
		}
		recs = append(recs, rec{Seq: 100, Frame: big})
		dir := t.TempDir()
		s := openSpool(t, dir, Options{ChunkBytes: 64 << 10})
		w := newWriter(t, s)
		appendAll(t, w, recs)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		st := w.Stats()
		if st.Chunks < 18 {
			t.Fatalf("%d chunks, want at least 18", st.Chunks)
		}
		if saved := st.RawBytes - st.DiskBytes; saved < 240<<10 {
			t.Errorf("%d raw bytes took %d on disk: the repeated 256 KiB frame was not matched across chunks", st.RawBytes, st.DiskBytes)
		}
		sameRecords(t, readSpool(t, dir), recs)
	})
	t.Run("level", func(t *testing.T) {
		recs := makeRecords(rng, 1, 300, 6000, newClock().Now())
		size := map[zstd.EncoderLevel]int64{}
		for _, level := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedBetterCompression} {
			dir := t.TempDir()
			s := openSpool(t, dir, Options{Level: level})
			w := newWriter(t, s)
			appendAll(t, w, recs)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			size[level] = w.Stats().DiskBytes
			sameRecords(t, readSpool(t, dir), recs)
		}
		if size[zstd.SpeedBetterCompression] >= size[zstd.SpeedFastest] {
			t.Errorf("better level wrote %d bytes, fastest %d: Options.Level does not reach the encoder", size[zstd.SpeedBetterCompression], size[zstd.SpeedFastest])
		}
	})
}

// sealedFixture returns a sealed segment of several data chunks and the offsets of its chunks
// (data chunks, then the end chunk), its trailer and its path.
func sealedFixture(t *testing.T) (b []byte, chunks []int64, trOff int64, path string) {
	t.Helper()
	path, _ = sealedSegment(t)
	b = readFile(t, path)
	h, err := readHeader(bytes.NewReader(b), int64(len(b)), path)
	if err != nil {
		t.Fatal(err)
	}
	trOff = int64(len(b)) - trailerChunkSize - footerSize
	for off := h.size(); off < trOff; {
		ch, reason := parseChunkHeader(b[off:])
		if reason != "" {
			t.Fatal(reason)
		}
		chunks = append(chunks, off)
		off += chunkHeaderSize + int64(ch.stored)
	}
	if len(chunks) < 4 {
		t.Fatalf("fixture has %d chunks, want at least 4", len(chunks))
	}
	return b, chunks, trOff, path
}

// dropLastRecord rewrites the header of the data chunk at off as if its last record belonged to
// the next chunk: the chunk then decompresses to more than its raw length says.
func dropLastRecord(t *testing.T, b []byte, off int64) []byte {
	t.Helper()
	b = bytes.Clone(b)
	h, _ := parseChunkHeader(b[off:])
	// The stream up to this chunk, ended by the end block, decodes as a whole; its tail is the
	// chunk's records.
	var stream []byte
	hs, _ := readHeader(bytes.NewReader(b), int64(len(b)), "")
	for o := hs.size(); o <= off; {
		ch, _ := parseChunkHeader(b[o:])
		stream = append(stream, b[o+chunkHeaderSize:o+chunkHeaderSize+int64(ch.stored)]...)
		o += chunkHeaderSize + int64(ch.stored)
	}
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	plain, err := dec.DecodeAll(append(stream, endBlock[:]...), nil)
	if err != nil {
		t.Fatal(err)
	}
	raw := plain[len(plain)-int(h.raw):]
	var seqs []int64
	var last int
	for pos := 0; pos < len(raw); {
		last = pos
		seqs = append(seqs, int64(binary.LittleEndian.Uint64(raw[pos+8:])))
		pos += recordHeaderSize + int(binary.LittleEndian.Uint32(raw[pos:]))
	}
	if len(seqs) < 2 {
		t.Fatalf("chunk at %d has %d records, want several", off, len(seqs))
	}
	h.raw, h.count, h.last = uint32(last), h.count-1, seqs[len(seqs)-2]
	h.put(b[off:])
	return b
}

// TestStreamCorrupt covers the faults that only a stream across chunks can have; each is
// corruption at the chunk at fault, in a sealed segment and in an open one.
func TestStreamCorrupt(t *testing.T) {
	orig, chunks, trOff, path := sealedFixture(t)
	end := chunks[len(chunks)-1]
	lastData := chunks[len(chunks)-2]
	readAll := func(b []byte) error {
		r, err := newReader(bytes.NewReader(b), int64(len(b)), path, mustDecoder(t))
		if err != nil {
			return err
		}
		for {
			if _, err := r.Next(); err != nil {
				return err
			}
		}
	}
	for _, tc := range []struct {
		name string
		b    []byte
		off  int64
		open bool // also corrupt as an open segment (cut before its end chunk)
	}{
		{"middle chunk decompresses to more than its raw length", dropLastRecord(t, orig, chunks[1]), chunks[1], true},
		{"last chunk decompresses to more than its raw length", func() []byte {
			b := dropLastRecord(t, orig, lastData)
			dh, _ := parseChunkHeader(b[lastData:])
			eh, _ := parseChunkHeader(b[end:])
			eh.last = dh.last // so that only the stream disagrees
			eh.put(b[end:])
			return b
		}(), lastData, true},
		{"window above 8 MiB", func() []byte {
			b := bytes.Clone(orig)
			p := chunks[0] + chunkHeaderSize
			h, _ := parseChunkHeader(b[chunks[0]:])
			b[p+5] = 0x70 // window descriptor: 16 MiB
			h.crc = crc32c(b[p : p+int64(h.stored)])
			h.put(b[chunks[0]:])
			return b
		}(), chunks[0], true},
		{"no end chunk", func() []byte {
			b := append(bytes.Clone(orig[:end]), orig[trOff:]...)
			return rewriteTrailer(t, fixFooter(b), func(s *segStats) {
				s.bodyCRC = crc32Update(0, orig[chunks[0]:end])
			})
		}(), end, false},
		{"chunk after the end chunk", func() []byte {
			b := append(bytes.Clone(orig[:trOff]), orig[chunks[1]:chunks[2]]...)
			b = fixFooter(append(b, orig[trOff:]...))
			return rewriteTrailer(t, b, func(s *segStats) { s.bodyCRC = crc32Update(0, b[chunks[0]:trOff+chunks[2]-chunks[1]]) })
		}(), trOff, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantCorrupt(t, readAll(tc.b), path, tc.off)
			if !tc.open {
				return
			}
			cut := tc.b[:end]
			_, err := scanOpen(bytes.NewReader(cut), int64(len(cut)), path, mustDecoder(t))
			wantCorrupt(t, err, path, tc.off)
		})
	}
	t.Run("good", func(t *testing.T) {
		if err := readAll(orig); err != io.EOF {
			t.Errorf("reading the fixture: %v", err)
		}
	})
}

// fixFooter points the footer of b at the trailer chunk before it.
func fixFooter(b []byte) []byte {
	binary.LittleEndian.PutUint64(b[len(b)-footerSize:], uint64(len(b)-footerSize-trailerChunkSize))
	return b
}

func mustDecoder(t *testing.T) *zstd.Decoder {
	t.Helper()
	dec, err := newDecoder()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dec.Close)
	return dec
}
