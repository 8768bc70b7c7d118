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
// chunks of several sizes, at the default level: each chunk its own zstd frame ("frames", format
// version 1), or one stream flushed at every chunk boundary ("flushed", version 2, what the
// writer does), against the whole stream compressed without a flush. The ratio metric is what to
// read; the time is one pass over the stream.
func BenchmarkChunkRatio(b *testing.B) {
	frames, _ := benchFrames(b)
	var stream []byte
	for i, f := range frames {
		stream = appendRecord(stream, int64(i)+1, 0, f)
	}
	opts := []zstd.EOption{zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false)}
	run := func(name string, compress func() int) {
		b.Run(name, func(b *testing.B) {
			var out int
			for range b.N {
				out = compress()
			}
			b.SetBytes(int64(len(stream)))
			b.ReportMetric(float64(len(stream))/float64(out), "ratio")
		})
	}
	run("stream", func() int {
		var buf bytes.Buffer
		enc, _ := zstd.NewWriter(&buf, opts...)
		enc.Write(stream)
		enc.Close()
		return buf.Len()
	})
	for _, size := range []int{4 << 10, 64 << 10, 1 << 20} {
		run(fmt.Sprintf("frames/chunk=%dKiB", size>>10), func() int {
			enc, _ := zstd.NewWriter(nil, opts...)
			defer enc.Close()
			var dst []byte
			out := 0
			for off := 0; off < len(stream); off += size {
				dst = enc.EncodeAll(stream[off:min(off+size, len(stream))], dst[:0])
				out += len(dst) + chunkHeaderSize
			}
			return out
		})
		run(fmt.Sprintf("flushed/chunk=%dKiB", size>>10), func() int {
			var buf bytes.Buffer
			enc, _ := zstd.NewWriter(&buf, opts...)
			out := 0
			for off := 0; off < len(stream); off += size {
				enc.Write(stream[off:min(off+size, len(stream))])
				enc.Flush()
				out += chunkHeaderSize
			}
			return out + buf.Len() + chunkHeaderSize + len(endBlock)
		})
	}
}
