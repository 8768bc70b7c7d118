package spool

import (
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// openScan is what a torn-tail-tolerant scan of an open segment found.
type openScan struct {
	hdr      segHeader
	st       segStats // records of the complete, valid chunks, with chunk count and body checksum
	validEnd int64    // end of the last valid data or end chunk
	size     int64    // bytes in the file when scanned
	torn     string   // why the bytes after validEnd are a torn tail ("" when there are none)
	ended    bool     // the last valid chunk is the end chunk: the zstd frame is complete
	sealed   bool     // a complete, matching trailer and footer end the file: only the rename is missing
}

// scanOpen reads the open segment in r (size bytes long) without modifying it. An invalid last
// chunk is a torn tail and ends the scan; an invalid chunk followed by a valid chunk header is
// corruption, and so is a chunk whose checksum matches but whose contents do not. Once the
// records are read, it checks that the end block would end the zstd frame right after them,
// as recovery will make it do.
func scanOpen(r io.ReaderAt, size int64, path string, dec *zstd.Decoder) (openScan, error) {
	h, err := readHeader(r, size, path)
	if err != nil {
		return openScan{}, err
	}
	sc := openScan{hdr: h, size: size, validEnd: h.size()}
	cr := chunkReader{r: r, path: path, dec: dec}
	if err := sc.scan(&cr); err != nil {
		return sc, err
	}
	if sc.st.count > 0 && !sc.ended {
		if err := cr.endFrame(cr.lastOff); err != nil {
			return sc, err
		}
	}
	return sc, nil
}

func (sc *openScan) scan(cr *chunkReader) error {
	for off := sc.hdr.size(); off < sc.size; {
		ch, status, reason, err := cr.read(off, sc.size)
		if err != nil {
			return err
		}
		var from int64 // where a valid chunk header would make the bad chunk corruption
		switch status {
		case chunkOK:
			if ch.kind == kindTrailer {
				done, err := sc.checkTrailer(cr, off)
				if done || err != nil {
					return err
				}
				reason, from = "incomplete trailer or footer", off+trailerChunkSize
				break
			}
			switch {
			case sc.ended:
				return corruptf(cr.path, off, "chunk after the end chunk")
			case ch.kind == kindEnd:
				if reason := cr.checkEnd(ch, sc.hdr, sc.st); reason != "" {
					return corruptf(cr.path, off, "%s", reason)
				}
				if err := cr.endFrame(off); err != nil {
					return err
				}
				sc.ended = true
			case sc.st.count == 0 && ch.first != sc.hdr.firstSeq:
				return corruptf(cr.path, off, "first chunk starts at seq %d, header says %d", ch.first, sc.hdr.firstSeq)
			default:
				cs, err := cr.decode(off, ch, sc.st.last)
				if err != nil {
					return err
				}
				sc.st.merge(cs)
				sc.st.chunks++
			}
			sc.st.bodyCRC = cr.crcChunk(sc.st.bodyCRC)
			off += chunkHeaderSize + int64(ch.stored)
			sc.validEnd = off
			continue
		case chunkShort:
			sc.torn = reason
			return nil
		case chunkBadHeader:
			from = off + 1
		case chunkBadPayload:
			from = off + chunkHeaderSize + int64(ch.stored)
		}
		found, err := findHeader(cr.r, from, sc.size)
		if err != nil {
			return fmt.Errorf("scan %s: %w", cr.path, err)
		}
		if found {
			return corruptf(cr.path, off, "%s, and valid chunks follow", reason)
		}
		sc.torn = reason
		return nil
	}
	return nil
}

// checkTrailer handles a valid trailer chunk at off in an open segment: done when a footer that
// points at it ends the file and the trailer matches the chunks before it.
func (sc *openScan) checkTrailer(cr *chunkReader, off int64) (done bool, err error) {
	if sc.size != off+trailerChunkSize+footerSize {
		return false, nil
	}
	var b [footerSize]byte
	if _, err := cr.r.ReadAt(b[:], off+trailerChunkSize); err != nil {
		return false, fmt.Errorf("read footer of %s: %w", cr.path, err)
	}
	if trOff, ok := parseFooter(b[:]); !ok || trOff != off {
		return false, nil
	}
	tr, reason := parseTrailerPayload(cr.stored)
	switch {
	case reason != "":
	case !sc.ended:
		reason = "no end chunk before the trailer"
	default:
		reason = sc.st.diff(tr)
	}
	if reason != "" {
		return true, corruptf(cr.path, off, "%s", reason)
	}
	sc.sealed = true
	return true, nil
}
