package spool

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// benchFrames returns a pool of synthetic ~3.5 KB frames (see synthFrame: synthetic, not relay
// data). The pool (about 28 MB) is larger than zstd's default window, so cycling through it
// gives the compressor no repeats that a real stream would not have.
func benchFrames(tb testing.TB) (frames [][]byte, total int) {
	tb.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	frames = make([][]byte, 8192)
	for i := range frames {
		frames[i] = synthFrame(rng, int64(i))
		total += len(frames[i])
	}
	return frames, total
}

// BenchmarkAppend appends synthetic ~3.5 KB frames (see synthFrame: synthetic, not relay data)
// through a Writer with default options at three zstd levels, and reports throughput (MB/s of
// frame bytes, per wall second and per CPU second) and the compression ratio (raw record bytes
// over bytes written to disk, headers and trailers included).
func BenchmarkAppend(b *testing.B) {
	for _, level := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault, zstd.SpeedBetterCompression} {
		b.Run(level.String(), func(b *testing.B) {
			frames, total := benchFrames(b)
			s := openSpool(b, b.TempDir(), Options{Level: level})
			w := newWriter(b, s)
			b.SetBytes(int64(total / len(frames)))
			b.ResetTimer()
			cpu0 := cpuTime()
			for i := range b.N {
				if err := w.Append(int64(i)+1, time.Time{}, frames[i%len(frames)]); err != nil {
					b.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			cpu := cpuTime() - cpu0
			st := w.Stats()
			b.ReportMetric(float64(st.RawBytes)/float64(st.DiskBytes), "ratio")
			b.ReportMetric(float64(st.Frames)/b.Elapsed().Seconds(), "frames/s")
			if cpu > 0 { // wall-clock figures depend on the load of a shared machine; CPU time does not
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
				b.ReportMetric(float64(total)/float64(len(frames))*float64(b.N)/cpu.Seconds()/1e6, "MB/cpu-s")
			}
		})
	}
}

// BenchmarkChunkRatio compares the compression ratio of the same 32 MB synthetic stream cut into
// chunks of several sizes against compressing it as one stream (the best case, MEASURED.md), at
// the default level. The ratio metric is what to read; the time is one pass over the stream.
func BenchmarkChunkRatio(b *testing.B) {
	frames, _ := benchFrames(b)
	var stream []byte
	for i, f := range frames {
		stream = appendRecord(stream, int64(i)+1, 0, f)
	}
	for _, size := range []int{4 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 0} {
		name := "stream"
		if size > 0 {
			name = fmt.Sprintf("chunk=%dKiB", size>>10)
		}
		b.Run(name, func(b *testing.B) {
			var out int
			for range b.N {
				out = 0
				if size == 0 {
					var buf bytes.Buffer
					enc, _ := zstd.NewWriter(&buf, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
					enc.Write(stream)
					enc.Close()
					out = buf.Len()
					continue
				}
				enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false))
				var dst []byte
				for off := 0; off < len(stream); off += size {
					dst = enc.EncodeAll(stream[off:min(off+size, len(stream))], dst[:0])
					out += len(dst) + chunkHeaderSize
				}
				enc.Close()
			}
			b.SetBytes(int64(len(stream)))
			b.ReportMetric(float64(len(stream))/float64(out), "ratio")
		})
	}
}
