package relaytest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	comatproto "github.com/bluesky-social/indigo/api/atproto"
	"github.com/bluesky-social/indigo/atproto/repo"
	"github.com/bluesky-social/indigo/atproto/repo/mst"
	lexutil "github.com/bluesky-social/indigo/lex/util"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multihash"
	cbg "github.com/whyrusleeping/cbor-gen"
	secec "gitlab.com/yawning/secp256k1-voi/secec"
)

// signOpts makes compact [R|S] low-S signatures, the form atproto commits carry.
var signOpts = &secec.ECDSAOptions{Hash: crypto.SHA256, Encoding: secec.EncodingCompact}

// block is one CAR block.
type block struct {
	c    cid.Cid
	data []byte
}

// cidOf returns the CIDv1 (sha2-256) of data with the given codec.
func cidOf(codec uint64, data []byte) cid.Cid {
	sum := sha256.Sum256(data)
	mh, err := multihash.Encode(sum[:], multihash.SHA2_256)
	if err != nil {
		panic(fmt.Sprintf("relaytest: multihash: %v", err)) // a 32-byte sha2-256 digest always encodes
	}
	return cid.NewCidV1(codec, mh)
}

// diffStore collects the MST nodes that WriteDiffBlocks writes; it implements the blockstore
// interface the mst package asks for, keeping only what a commit needs.
type diffStore struct {
	blocks []block
	seen   map[cid.Cid]bool
}

func (d *diffStore) Put(_ context.Context, b blocks.Block) error {
	if d.seen[b.Cid()] {
		return nil
	}
	d.seen[b.Cid()] = true
	d.blocks = append(d.blocks, block{c: b.Cid(), data: b.RawData()})
	return nil
}

func (d *diffStore) PutMany(ctx context.Context, bs []blocks.Block) error {
	for _, b := range bs {
		if err := d.Put(ctx, b); err != nil {
			return err
		}
	}
	return nil
}

func (d *diffStore) DeleteBlock(context.Context, cid.Cid) error { return nil }

func (d *diffStore) Has(_ context.Context, c cid.Cid) (bool, error) { return d.seen[c], nil }

func (d *diffStore) Get(context.Context, cid.Cid) (blocks.Block, error) {
	return nil, fmt.Errorf("relaytest: diff store is write-only")
}

func (d *diffStore) GetSize(context.Context, cid.Cid) (int, error) {
	return 0, fmt.Errorf("relaytest: diff store is write-only")
}

func (d *diffStore) AllKeysChan(context.Context) (<-chan cid.Cid, error) {
	return nil, fmt.Errorf("relaytest: diff store is write-only")
}

func (d *diffStore) HashOnRead(bool) {}

// addPath adds the nodes on key's search path in the (clean) tree: for a deleted key they are the
// proof a consumer needs to invert the deletion (the nodes a re-insert would split).
func (d *diffStore) addPath(n *mst.Node, key []byte) error {
	for n != nil {
		if n.CID == nil || !d.seen[*n.CID] {
			nd := n.NodeData()
			data, c, err := nd.Bytes()
			if err != nil {
				return fmt.Errorf("encode MST node: %w", err)
			}
			d.seen[*c] = true
			d.blocks = append(d.blocks, block{c: *c, data: data})
		}
		var next *mst.Node
		for i := range n.Entries {
			e := &n.Entries[i]
			if e.IsValue() {
				if bytes.Compare(e.Key, key) > 0 {
					break
				}
				next = nil
				continue
			}
			if e.IsChild() {
				next = e.Child
			}
		}
		n = next
	}
	return nil
}

// commitJob is everything one #commit or #sync frame needs except the signature, so that the
// expensive part (signing, hashing, CAR and frame assembly) can run on several goroutines while
// the repositories advance on one.
type commitJob struct {
	key    *secec.PrivateKey
	commit repo.Commit
	blocks []block                               // MST nodes then records, after the commit block
	msg    *comatproto.SyncSubscribeRepos_Commit // nil for #sync
	sync   *comatproto.SyncSubscribeRepos_Sync   // nil for #commit
}

// finish signs the commit and returns the frame bytes.
func (j *commitJob) finish() ([]byte, error) {
	unsigned, err := j.commit.UnsignedBytes()
	if err != nil {
		return nil, fmt.Errorf("encode unsigned commit: %w", err)
	}
	digest := sha256.Sum256(unsigned)
	sig, err := j.key.Sign(secec.RFC6979SHA256(), digest[:], signOpts)
	if err != nil {
		return nil, fmt.Errorf("sign commit: %w", err)
	}
	j.commit.Sig = sig
	var cb bytes.Buffer
	if err := j.commit.MarshalCBOR(&cb); err != nil {
		return nil, fmt.Errorf("encode commit: %w", err)
	}
	cc := cidOf(cid.DagCBOR, cb.Bytes())
	car, err := writeCAR(cc, block{c: cc, data: cb.Bytes()}, j.blocks)
	if err != nil {
		return nil, err
	}
	if j.msg != nil {
		j.msg.Commit = lexutil.LexLink(cc)
		j.msg.Blocks = car
		return encodeFrame(KindCommit, j.msg, len(car)+400+120*len(j.msg.Ops))
	}
	j.sync.Blocks = car
	return encodeFrame(KindSync, j.sync, len(car)+160)
}

// writeCAR returns a CAR v1 file whose single root is root, holding first then rest.
func writeCAR(root cid.Cid, first block, rest []block) ([]byte, error) {
	var hdr bytes.Buffer
	cw := cbg.NewCborWriter(&hdr)
	// DAG-CBOR {"roots": [root], "version": 1}; keys in canonical (length-first) order.
	if err := cw.WriteMajorTypeHeader(cbg.MajMap, 2); err != nil {
		return nil, fmt.Errorf("encode CAR header: %w", err)
	}
	if err := writeText(cw, "roots"); err != nil {
		return nil, fmt.Errorf("encode CAR header: %w", err)
	}
	if err := cw.WriteMajorTypeHeader(cbg.MajArray, 1); err != nil {
		return nil, fmt.Errorf("encode CAR header: %w", err)
	}
	if err := cbg.WriteCid(cw, root); err != nil {
		return nil, fmt.Errorf("encode CAR header: %w", err)
	}
	if err := writeText(cw, "version"); err != nil {
		return nil, fmt.Errorf("encode CAR header: %w", err)
	}
	if err := cw.WriteMajorTypeHeader(cbg.MajUnsignedInt, 1); err != nil {
		return nil, fmt.Errorf("encode CAR header: %w", err)
	}
	size := hdr.Len() + 10
	for _, b := range rest {
		size += len(b.data) + 50
	}
	out := make([]byte, 0, size+len(first.data)+50)
	out = binary.AppendUvarint(out, uint64(hdr.Len()))
	out = append(out, hdr.Bytes()...)
	for i := -1; i < len(rest); i++ {
		b := first
		if i >= 0 {
			b = rest[i]
		}
		cb := b.c.Bytes()
		out = binary.AppendUvarint(out, uint64(len(cb)+len(b.data)))
		out = append(out, cb...)
		out = append(out, b.data...)
	}
	return out, nil
}

// writeText writes a CBOR text string.
func writeText(cw *cbg.CborWriter, s string) error {
	if err := cw.WriteMajorTypeHeader(cbg.MajTextString, uint64(len(s))); err != nil {
		return err
	}
	_, err := cw.WriteString(s)
	return err
}
