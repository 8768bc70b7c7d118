package spool

import (
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// chunkStatus classifies a chunk by its framing alone: header and payload checksums.
type chunkStatus int

const (
	chunkOK         chunkStatus = iota
	chunkBadHeader              // fewer than 40 bytes left, or an invalid chunk header
	chunkShort                  // a valid header whose payload runs past the end
	chunkBadPayload             // a complete payload whose checksum does not match
)

// chunkReader reads the chunks of one segment file into buffers it reuses, so a reader holds
// at most one compressed and one raw chunk.
type chunkReader struct {
	r      io.ReaderAt
	path   string
	dec    *zstd.Decoder
	hdr    [chunkHeaderSize]byte
	stored []byte
	raw    []byte
}

// read reads the chunk at off, which must end at or before end. A framing problem is returned
// as a status and a reason, not as an error; err is reserved for I/O failures.
func (c *chunkReader) read(off, end int64) (h chunkHeader, st chunkStatus, reason string, err error) {
	if end-off < chunkHeaderSize {
		return h, chunkBadHeader, fmt.Sprintf("%d bytes left, less than a chunk header", end-off), nil
	}
	if _, err := c.r.ReadAt(c.hdr[:], off); err != nil {
		return h, 0, "", fmt.Errorf("read chunk header of %s at offset %d: %w", c.path, off, err)
	}
	h, reason = parseChunkHeader(c.hdr[:])
	if reason != "" {
		return h, chunkBadHeader, reason, nil
	}
	// The length is bounded by parseChunkHeader and by the bytes actually present, so a
	// hostile header cannot make us allocate more than the file holds.
	if int64(h.stored) > end-off-chunkHeaderSize {
		return h, chunkShort, fmt.Sprintf("chunk of %d bytes runs past the end at %d", h.stored, end), nil
	}
	c.stored = grow(c.stored, int(h.stored))
	if _, err := c.r.ReadAt(c.stored, off+chunkHeaderSize); err != nil {
		return h, 0, "", fmt.Errorf("read chunk of %s at offset %d: %w", c.path, off, err)
	}
	if got := crc32c(c.stored); got != h.crc {
		return h, chunkBadPayload, fmt.Sprintf("chunk checksum %08x, want %08x", got, h.crc), nil
	}
	return h, chunkOK, "", nil
}

// decode decompresses the data chunk just read and validates its records; the records are then
// in c.raw. A failure here is corruption wherever the chunk sits: its checksum matched.
func (c *chunkReader) decode(off int64, h chunkHeader, prev int64) (segStats, error) {
	c.raw = grow(c.raw, int(h.raw))
	raw, err := c.dec.DecodeAll(c.stored, c.raw[:0])
	if err != nil {
		return segStats{}, corruptf(c.path, off, "decompress chunk: %v", err)
	}
	if len(raw) != int(h.raw) {
		return segStats{}, corruptf(c.path, off, "chunk decompressed to %d bytes, header says %d", len(raw), h.raw)
	}
	c.raw = raw
	s, reason := checkRecords(raw, h, prev)
	if reason != "" {
		return segStats{}, corruptf(c.path, off, "%s", reason)
	}
	return s, nil
}

// crcChunk returns the body checksum extended by the chunk just read.
func (c *chunkReader) crcChunk(sum uint32) uint32 {
	sum = crc32Update(sum, c.hdr[:])
	return crc32Update(sum, c.stored)
}

// findHeader reports whether a valid chunk header starts anywhere in [from, end). It tells a
// torn tail (nothing valid after the bad chunk) from corruption (valid data follows).
func findHeader(r io.ReaderAt, from, end int64) (bool, error) {
	const window = 1 << 20
	if end-from < chunkHeaderSize {
		return false, nil
	}
	buf := make([]byte, 0, min(end-from, window+chunkHeaderSize))
	for pos := from; end-pos >= chunkHeaderSize; pos += window {
		n := min(end-pos, window+chunkHeaderSize-1)
		buf = buf[:n]
		if _, err := r.ReadAt(buf, pos); err != nil && !errors.Is(err, io.EOF) {
			return false, fmt.Errorf("scan for chunk header at offset %d: %w", pos, err)
		}
		for i := 0; i+chunkHeaderSize <= len(buf); i++ {
			b := buf[i:]
			if (b[0] != kindData && b[0] != kindTrailer) || b[1] != 0 || b[2] != 0 || b[3] != 0 {
				continue
			}
			if _, reason := parseChunkHeader(b[:chunkHeaderSize]); reason == "" {
				return true, nil
			}
		}
	}
	return false, nil
}

func newDecoder() (*zstd.Decoder, error) {
	d, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxMemory(maxChunkRaw),
		zstd.WithDecoderMaxWindow(maxChunkRaw),
		zstd.WithDecodeAllCapLimit(true),
	)
	if err != nil {
		return nil, fmt.Errorf("zstd decoder: %w", err)
	}
	return d, nil
}

// grow returns b resized to n bytes, reallocating only when its capacity is short.
func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}
