package decode

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	comatproto "github.com/bluesky-social/indigo/api/atproto"
	"github.com/bluesky-social/indigo/api/bsky"
	"github.com/bluesky-social/indigo/atproto/atcrypto"
	"github.com/bluesky-social/indigo/atproto/repo"
	"github.com/bluesky-social/indigo/atproto/repo/mst"
	"github.com/bluesky-social/indigo/atproto/syntax"
	"github.com/bluesky-social/indigo/events"
	lexutil "github.com/bluesky-social/indigo/lex/util"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	cbg "github.com/whyrusleeping/cbor-gen"
)

// This file builds frames the way a relay sends them: a real repo (indigo's MST), a signed
// commit, the CAR slice of the blocks the commit changed, and events.XRPCStreamEvent's
// serialization (header CBOR then body CBOR).

// testTime is the event time of test frames.
var testTime = time.Date(2025, 3, 14, 15, 9, 26, 535000000, time.UTC)

// testCreated is the createdAt of test records.
var testCreated = time.Date(2025, 3, 14, 15, 9, 20, 0, time.UTC)

const testCreatedStr = "2025-03-14T15:09:20.000Z"

// cidFor returns the DAG-CBOR CIDv1 (sha2-256) of data.
func cidFor(tb testing.TB, data []byte) cid.Cid {
	tb.Helper()
	c, err := cid.Prefix{Version: 1, Codec: cid.DagCBOR, MhType: 0x12, MhLength: -1}.Sum(data)
	if err != nil {
		tb.Fatalf("cid: %v", err)
	}
	return c
}

// cborOf marshals a cbor-gen value.
func cborOf(tb testing.TB, v cbg.CBORMarshaler) []byte {
	tb.Helper()
	var buf bytes.Buffer
	if err := v.MarshalCBOR(&buf); err != nil {
		tb.Fatalf("marshal %T: %v", v, err)
	}
	return buf.Bytes()
}

// memBlocks is the blockstore mst.Tree.WriteDiffBlocks writes the changed MST nodes into.
type memBlocks struct {
	order []blocks.Block
}

func (m *memBlocks) Put(_ context.Context, b blocks.Block) error {
	m.order = append(m.order, b)
	return nil
}
func (m *memBlocks) PutMany(ctx context.Context, bs []blocks.Block) error {
	m.order = append(m.order, bs...)
	return nil
}
func (m *memBlocks) DeleteBlock(context.Context, cid.Cid) error { return nil }
func (m *memBlocks) Has(_ context.Context, c cid.Cid) (bool, error) {
	_, err := m.Get(context.Background(), c)
	return err == nil, nil
}
func (m *memBlocks) Get(_ context.Context, c cid.Cid) (blocks.Block, error) {
	for _, b := range m.order {
		if b.Cid().Equals(c) {
			return b, nil
		}
	}
	return nil, fmt.Errorf("block %s not found", c)
}
func (m *memBlocks) GetSize(ctx context.Context, c cid.Cid) (int, error) {
	b, err := m.Get(ctx, c)
	if err != nil {
		return 0, err
	}
	return len(b.RawData()), nil
}
func (m *memBlocks) AllKeysChan(context.Context) (<-chan cid.Cid, error) {
	ch := make(chan cid.Cid)
	close(ch)
	return ch, nil
}
func (m *memBlocks) HashOnRead(bool) {}

// testRepo is an account's repo that makes signed commits.
type testRepo struct {
	tb       testing.TB
	did      string
	key      *atcrypto.PrivateKeyK256
	tree     mst.Tree
	clock    *syntax.TIDClock
	rev      string
	prevData *cid.Cid
	seq      int64
}

// newTestRepo returns a repo holding prefill like records, so that its MST has a realistic
// depth and a commit carries a realistic number of MST nodes.
func newTestRepo(tb testing.TB, did string, prefill int) *testRepo {
	tb.Helper()
	key, err := atcrypto.GeneratePrivateKeyK256()
	if err != nil {
		tb.Fatalf("key: %v", err)
	}
	r := &testRepo{tb: tb, did: did, key: key, tree: mst.NewEmptyTree(), clock: syntax.NewTIDClock(1), seq: 1000}
	for i := range prefill {
		data := cborOf(tb, likeRecord(fmt.Sprintf("at://did:plc:aaaaaaaaaaaaaaaaaaaaaaaa/app.bsky.feed.post/3l%011d", i)))
		if _, err := r.tree.Insert([]byte(nsidLike+"/"+r.clock.Next().String()), cidFor(tb, data)); err != nil {
			tb.Fatalf("prefill: %v", err)
		}
	}
	root, err := r.tree.WriteDiffBlocks(context.Background(), &memBlocks{})
	if err != nil {
		tb.Fatalf("prefill blocks: %v", err)
	}
	r.prevData = root
	return r
}

// testOp is one record operation of a test commit.
type testOp struct {
	action string            // create, update or delete
	path   string            // collection/rkey
	record cbg.CBORMarshaler // the record for create and update
	raw    []byte            // or its raw bytes
}

func create(path string, rec cbg.CBORMarshaler) testOp { return testOp{"create", path, rec, nil} }
func update(path string, rec cbg.CBORMarshaler) testOp { return testOp{"update", path, rec, nil} }
func remove(path string) testOp                        { return testOp{"delete", path, nil, nil} }
func createRaw(path string, raw []byte) testOp         { return testOp{"create", path, nil, raw} }

// commit applies ops to the repo and returns the #commit message a relay would send for it.
func (r *testRepo) commit(ops ...testOp) *comatproto.SyncSubscribeRepos_Commit {
	tb := r.tb
	tb.Helper()
	var records []blocks.Block
	var repoOps []*comatproto.SyncSubscribeRepos_RepoOp
	for _, o := range ops {
		rop := &comatproto.SyncSubscribeRepos_RepoOp{Action: o.action, Path: o.path}
		if o.action == "delete" {
			prev, err := r.tree.Remove([]byte(o.path))
			if err != nil {
				tb.Fatalf("remove %s: %v", o.path, err)
			}
			if prev != nil {
				rop.Prev = (*lexutil.LexLink)(prev)
			}
		} else {
			data := o.raw
			if data == nil {
				data = cborOf(tb, o.record)
			}
			c := cidFor(tb, data)
			blk, err := blocks.NewBlockWithCid(data, c)
			if err != nil {
				tb.Fatal(err)
			}
			records = append(records, blk)
			prev, err := r.tree.Insert([]byte(o.path), c)
			if err != nil {
				tb.Fatalf("insert %s: %v", o.path, err)
			}
			rop.Cid = (*lexutil.LexLink)(&c)
			if prev != nil {
				rop.Prev = (*lexutil.LexLink)(prev)
			}
		}
		repoOps = append(repoOps, rop)
	}
	nodes := &memBlocks{}
	root, err := r.tree.WriteDiffBlocks(context.Background(), nodes)
	if err != nil {
		tb.Fatalf("write MST: %v", err)
	}
	since := r.rev
	r.rev = r.clock.Next().String()
	com := repo.Commit{DID: r.did, Version: repo.ATPROTO_REPO_VERSION, Data: *root, Rev: r.rev}
	if err := com.Sign(r.key); err != nil {
		tb.Fatalf("sign: %v", err)
	}
	comData := cborOf(tb, &com)
	comCID := cidFor(tb, comData)
	comBlk, err := blocks.NewBlockWithCid(comData, comCID)
	if err != nil {
		tb.Fatal(err)
	}
	all := append([]blocks.Block{comBlk}, nodes.order...)
	all = append(all, records...)
	r.seq++
	msg := &comatproto.SyncSubscribeRepos_Commit{
		Blobs:    []lexutil.LexLink{},
		Blocks:   carOf(tb, comCID, all),
		Commit:   lexutil.LexLink(comCID),
		Ops:      repoOps,
		PrevData: (*lexutil.LexLink)(r.prevData),
		Repo:     r.did,
		Rev:      r.rev,
		Seq:      r.seq,
		Time:     testTime.Format(syntax.AtprotoDatetimeLayout),
	}
	if since != "" {
		msg.Since = &since
	}
	r.prevData = root
	return msg
}

// carOf writes a CARv1 file: the header {roots: [root], version: 1}, then each block.
func carOf(tb testing.TB, root cid.Cid, blks []blocks.Block) []byte {
	tb.Helper()
	var hdr bytes.Buffer
	cw := cbg.NewCborWriter(&hdr)
	must := func(err error) {
		if err != nil {
			tb.Fatal(err)
		}
	}
	must(cw.WriteMajorTypeHeader(cbg.MajMap, 2))
	must(cw.WriteMajorTypeHeader(cbg.MajTextString, 5))
	_, err := cw.WriteString("roots")
	must(err)
	must(cw.WriteMajorTypeHeader(cbg.MajArray, 1))
	must(cbg.WriteCid(cw, root))
	must(cw.WriteMajorTypeHeader(cbg.MajTextString, 7))
	_, err = cw.WriteString("version")
	must(err)
	must(cw.WriteMajorTypeHeader(cbg.MajUnsignedInt, 1))

	out := binary.AppendUvarint(nil, uint64(hdr.Len()))
	out = append(out, hdr.Bytes()...)
	for _, b := range blks {
		c := b.Cid().Bytes()
		out = binary.AppendUvarint(out, uint64(len(c)+len(b.RawData())))
		out = append(out, c...)
		out = append(out, b.RawData()...)
	}
	return out
}

// frameOf serializes an event exactly as indigo's relay does.
func frameOf(tb testing.TB, evt *events.XRPCStreamEvent) []byte {
	tb.Helper()
	var buf bytes.Buffer
	if err := evt.Serialize(&buf); err != nil {
		tb.Fatalf("serialize: %v", err)
	}
	return buf.Bytes()
}

func commitFrame(tb testing.TB, m *comatproto.SyncSubscribeRepos_Commit) []byte {
	return frameOf(tb, &events.XRPCStreamEvent{RepoCommit: m})
}

// rawFrame builds a frame from a header and a body written by hand.
func rawFrame(tb testing.TB, header *events.EventHeader, body cbg.CBORMarshaler) []byte {
	tb.Helper()
	return append(cborOf(tb, header), cborOf(tb, body)...)
}

// Test records.

func likeRecord(subject string) *bsky.FeedLike {
	return &bsky.FeedLike{
		LexiconTypeID: nsidLike,
		CreatedAt:     testCreatedStr,
		Subject:       &comatproto.RepoStrongRef{Uri: subject, Cid: "bafyreig2fjxi3rptqdgylg7e5hmjl6mcke7rn2b6cugzlqq3i4zu6rq52q"},
	}
}

func repostRecord(subject string) *bsky.FeedRepost {
	return &bsky.FeedRepost{
		LexiconTypeID: nsidRepost,
		CreatedAt:     testCreatedStr,
		Subject:       &comatproto.RepoStrongRef{Uri: subject, Cid: "bafyreig2fjxi3rptqdgylg7e5hmjl6mcke7rn2b6cugzlqq3i4zu6rq52q"},
	}
}

func followRecord(subject string) *bsky.GraphFollow {
	return &bsky.GraphFollow{LexiconTypeID: nsidFollow, CreatedAt: testCreatedStr, Subject: subject}
}

func blockRecord(subject string) *bsky.GraphBlock {
	return &bsky.GraphBlock{LexiconTypeID: nsidBlock, CreatedAt: testCreatedStr, Subject: subject}
}

func postRecord(text string) *bsky.FeedPost {
	return &bsky.FeedPost{LexiconTypeID: nsidPost, CreatedAt: testCreatedStr, Text: text, Langs: []string{"en"}}
}

// testBlobCID is the CID of test images.
var testBlobCID = func() cid.Cid {
	c, err := cid.Prefix{Version: 1, Codec: 0x55, MhType: 0x12, MhLength: -1}.Sum([]byte("image bytes"))
	if err != nil {
		panic(err)
	}
	return c
}()

func testBlob() *lexutil.LexBlob {
	return &lexutil.LexBlob{Ref: lexutil.LexLink(testBlobCID), MimeType: "image/jpeg", Size: 123456}
}

// richPost is a reply with an image embed, facets and tags.
func richPost(parent, root string) *bsky.FeedPost {
	p := postRecord("look at #golang https://go.dev")
	p.Reply = &bsky.FeedPost_ReplyRef{
		Parent: &comatproto.RepoStrongRef{Uri: parent, Cid: "bafyreig2fjxi3rptqdgylg7e5hmjl6mcke7rn2b6cugzlqq3i4zu6rq52q"},
		Root:   &comatproto.RepoStrongRef{Uri: root, Cid: "bafyreig2fjxi3rptqdgylg7e5hmjl6mcke7rn2b6cugzlqq3i4zu6rq52q"},
	}
	p.Embed = &bsky.FeedPost_Embed{EmbedImages: &bsky.EmbedImages{
		LexiconTypeID: "app.bsky.embed.images",
		Images:        []*bsky.EmbedImages_Image{{Alt: "a gopher", Image: testBlob()}},
	}}
	p.Facets = []*bsky.RichtextFacet{
		{
			Index:    &bsky.RichtextFacet_ByteSlice{ByteStart: 8, ByteEnd: 15},
			Features: []*bsky.RichtextFacet_Features_Elem{{RichtextFacet_Tag: &bsky.RichtextFacet_Tag{LexiconTypeID: "app.bsky.richtext.facet#tag", Tag: "golang"}}},
		},
		{
			Index:    &bsky.RichtextFacet_ByteSlice{ByteStart: 16, ByteEnd: 30},
			Features: []*bsky.RichtextFacet_Features_Elem{{RichtextFacet_Link: &bsky.RichtextFacet_Link{LexiconTypeID: "app.bsky.richtext.facet#link", Uri: "https://go.dev"}}},
		},
	}
	p.Tags = []string{"news", "golang"}
	return p
}

func profileRecord(name string) *bsky.ActorProfile {
	desc := "gopher at large"
	pinned := &comatproto.RepoStrongRef{Uri: "at://did:plc:ewvi7nxzyoun6zhxrhs64oiz/app.bsky.feed.post/3lbcdefghij2k", Cid: "bafyreig2fjxi3rptqdgylg7e5hmjl6mcke7rn2b6cugzlqq3i4zu6rq52q"}
	return &bsky.ActorProfile{
		LexiconTypeID: nsidProfile,
		DisplayName:   &name,
		Description:   &desc,
		Avatar:        testBlob(),
		PinnedPost:    pinned,
	}
}
