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

// chunkReader reads the chunks of one segment file in order and decodes the data chunks'
// payloads as the one zstd stream they form. It reuses its buffers, so a reader holds one
// compressed chunk, one raw chunk and the decoder's history (at most maxWindow plus two blocks).
// It must not be copied once it has decoded a chunk: the decoder points at its src.
type chunkReader struct {
	r       io.ReaderAt
	path    string
	dec     *zstd.Decoder
	src     payloadReader
	hdr     [chunkHeaderSize]byte
	stored  []byte
	sum     uint32 // CRC32C of stored
	raw     []byte
	started bool  // dec has been reset onto src for this segment
	lastOff int64 // offset of the last data chunk decoded
}

// payloadReader gives the decoder the payload of one chunk and nothing beyond it. A writer ends
// every chunk on a zstd block boundary, so the decoder never asks for more while it decodes the
// records of a valid chunk; if it does, the chunk is corrupt.
type payloadReader struct {
	b   []byte
	pos int
	end error // returned once b is consumed
}

var errPastChunk = errors.New("zstd block runs past the end of its chunk")

func (p *payloadReader) Read(b []byte) (int, error) {
	if p.pos == len(p.b) {
		return 0, p.end
	}
	n := copy(b, p.b[p.pos:])
	p.pos += n
	return n, nil
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
	c.sum = crc32c(c.stored)
	if c.sum != h.crc {
		return h, chunkBadPayload, fmt.Sprintf("chunk checksum %08x, want %08x", c.sum, h.crc), nil
	}
	return h, chunkOK, "", nil
}

// decode decompresses the data chunk just read, the next piece of the segment's zstd stream,
// and validates its records; the records are then in c.raw. A failure here is corruption
// wherever the chunk sits: its checksum matched.
func (c *chunkReader) decode(off int64, h chunkHeader, prev int64) (segStats, error) {
	c.src = payloadReader{b: c.stored, end: errPastChunk}
	if !c.started {
		if err := c.dec.Reset(&c.src); err != nil {
			return segStats{}, fmt.Errorf("reset zstd decoder: %w", err)
		}
		c.started = true
	}
	c.raw = grow(c.raw, int(h.raw))
	// The chunk's first byte must come from its own payload: a byte the decoder already held
	// means the chunk before decompressed to more than its raw length.
	if _, err := io.ReadFull(c.dec, c.raw[:1]); err != nil {
		return segStats{}, corruptf(c.path, off, "decompress chunk: %v", err)
	}
	if c.src.pos == 0 {
		return segStats{}, corruptf(c.path, c.lastOff, "chunk decompresses to more than its raw length")
	}
	if _, err := io.ReadFull(c.dec, c.raw[1:]); err != nil {
		return segStats{}, corruptf(c.path, off, "decompress chunk: %v", err)
	}
	if left := len(c.stored) - c.src.pos; left > 0 {
		return segStats{}, corruptf(c.path, off, "%d compressed bytes left once the chunk's %d raw bytes are out", left, h.raw)
	}
	c.lastOff = off
	s, reason := checkRecords(c.raw, h, prev)
	if reason != "" {
		return segStats{}, corruptf(c.path, off, "%s", reason)
	}
	return s, nil
}

// endFrame gives the decoder the end block, as the end chunk at off holds it or as recovery
// will write it, and checks that it ends the frame exactly where the last data chunk's records
// end. The decoder is done with the segment afterwards.
func (c *chunkReader) endFrame(off int64) error {
	c.src = payloadReader{b: endBlock[:], end: io.EOF}
	var b [1]byte
	n, err := c.dec.Read(b[:])
	switch {
	case n > 0:
		return corruptf(c.path, c.lastOff, "chunk decompresses to more than its raw length")
	case err != io.EOF || c.src.pos != len(endBlock):
		return corruptf(c.path, off, "the end block does not end the zstd frame: %v", err)
	}
	return nil
}

// checkEnd says why the end chunk just read cannot end a segment of header h whose records
// are s ("" when it can).
func (c *chunkReader) checkEnd(h chunkHeader, hdr segHeader, s segStats) string {
	switch {
	case string(c.stored) != string(endBlock[:]):
		return fmt.Sprintf("end chunk payload %x, want %x", c.stored, endBlock)
	case s.count == 0:
		return "end chunk before any record"
	case h.first != hdr.firstSeq || h.last != s.last:
		return fmt.Sprintf("end chunk says seqs %d-%d, records span %d-%d", h.first, h.last, hdr.firstSeq, s.last)
	}
	return ""
}

// crcChunk returns the body checksum extended by the chunk just read.
func (c *chunkReader) crcChunk(sum uint32) uint32 {
	return extendBodyCRC(sum, c.hdr[:], c.sum, len(c.stored))
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
			if (b[0] != kindData && b[0] != kindTrailer && b[0] != kindEnd) || b[1] != 0 || b[2] != 0 || b[3] != 0 {
				continue
			}
			if _, reason := parseChunkHeader(b[:chunkHeaderSize]); reason == "" {
				return true, nil
			}
		}
	}
	return false, nil
}

// newDecoder returns a streaming decoder that runs on the caller's goroutine and refuses frames
// whose window exceeds maxWindow, so a hostile file cannot make it allocate more.
func newDecoder() (*zstd.Decoder, error) {
	d, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(maxWindow),
		zstd.WithDecoderMaxMemory(maxWindow),
	)
	if err != nil {
		return nil, fmt.Errorf("zstd decoder: %w", err)
	}
	return d, nil
}

// grow returns b resized to n bytes, reallocating only when its capacity is short. A new buffer
// has an eighth more room: a chunk is cut once it reaches its target, so raw lengths spread a
// little above it, and a buffer made to one chunk's exact length was too short for about half
// of the chunks it was recycled for.
func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n, n+n>>3)
	}
	return b[:n]
}
