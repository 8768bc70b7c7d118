package loader

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/backfill/backfill/decode"
	"github.com/backfill/backfill/deletes"
	"github.com/backfill/backfill/spool"
	comatproto "github.com/bluesky-social/indigo/api/atproto"
	"github.com/bluesky-social/indigo/api/bsky"
	"github.com/bluesky-social/indigo/events"
	lexutil "github.com/bluesky-social/indigo/lex/util"
	"github.com/ipfs/go-cid"
	"github.com/jackc/pgx/v5"
	cbg "github.com/whyrusleeping/cbor-gen"
)

// The test database server: PostgreSQL 15 on loopback, user postgres, no password.
const pgServer = "postgres://postgres@127.0.0.1:5432/"

// testDB creates a fresh database for one test, dropped when the test ends, and returns its URL.
func testDB(tb testing.TB) string {
	tb.Helper()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, pgServer+"postgres?sslmode=disable")
	if err != nil {
		tb.Fatalf("PostgreSQL is not reachable at 127.0.0.1:5432 (%v): start it with `pg_ctlcluster 15 main start`", err)
	}
	defer admin.Close(ctx)
	name := fmt.Sprintf("loader_test_%d_%x", os.Getpid(), rand.Uint64())
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("create database: %v", err)
	}
	tb.Cleanup(func() {
		c, err := pgx.Connect(ctx, pgServer+"postgres?sslmode=disable")
		if err != nil {
			tb.Errorf("drop database %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Errorf("drop database %s: %v", name, err)
		}
	})
	return pgServer + name + "?sslmode=disable"
}

// dbConn opens a plain connection to url, closed when the test ends.
func dbConn(tb testing.TB, url string) *pgx.Conn {
	tb.Helper()
	c, err := pgx.Connect(context.Background(), url)
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	tb.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func exec(tb testing.TB, c *pgx.Conn, sql string, args ...any) {
	tb.Helper()
	if _, err := c.Exec(context.Background(), sql, args...); err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
}

// NSIDs of the test records.
const (
	nsPost    = "app.bsky.feed.post"
	nsLike    = "app.bsky.feed.like"
	nsRepost  = "app.bsky.feed.repost"
	nsFollow  = "app.bsky.graph.follow"
	nsBlock   = "app.bsky.graph.block"
	nsProfile = "app.bsky.actor.profile"
	nsOther   = "app.bsky.feed.threadgate"
)

// tOp is a commit op of a test event, described by the values the rows get.
type tOp struct {
	action      string            // create, update or delete
	coll        string            // NSID
	rkey        string            // record key
	subject     string            // like/repost: the post URI; follow/block: the subject DID
	text        string            // post text
	created     string            // record createdAt as written ("" means a valid one derived from the event)
	displayName *string           // profile
	description *string           // profile
	rec         cbg.CBORMarshaler // the whole record, when set: overrides the fields above
	bad         bool              // rec does not decode as the collection's record: the op gives no row
}

func (o tOp) uri(did string) string { return "at://" + did + "/" + o.coll + "/" + o.rkey }

// tEvent is a test firehose event; frame renders it as a relay would send it.
type tEvent struct {
	seq    int64
	time   time.Time // zero: the frame carries an unparseable time
	kind   decode.Kind
	did    string
	ops    []tOp
	handle *string // identity
	active bool    // account
	status *string // account
	bad    bool    // a frame that does not decode
}

const testCreated = "2024-01-02T03:04:05.678Z"

func timeString(t time.Time) string {
	if t.IsZero() {
		return "not a time"
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

func cborBytes(tb testing.TB, v cbg.CBORMarshaler) []byte {
	tb.Helper()
	var buf bytes.Buffer
	if err := v.MarshalCBOR(&buf); err != nil {
		tb.Fatalf("marshal %T: %v", v, err)
	}
	return buf.Bytes()
}

func cidOf(tb testing.TB, data []byte) cid.Cid {
	tb.Helper()
	c, err := cid.Prefix{Version: 1, Codec: cid.DagCBOR, MhType: 0x12, MhLength: -1}.Sum(data)
	if err != nil {
		tb.Fatalf("cid: %v", err)
	}
	return c
}

const someCID = "bafyreig2fjxi3rptqdgylg7e5hmjl6mcke7rn2b6cugzlqq3i4zu6rq52q"

// record returns the record of a create or update op.
func (o tOp) record() cbg.CBORMarshaler {
	if o.rec != nil {
		return o.rec
	}
	created := o.created
	if created == "" {
		created = testCreated
	}
	switch o.coll {
	case nsPost:
		return &bsky.FeedPost{LexiconTypeID: nsPost, CreatedAt: created, Text: o.text}
	case nsLike:
		return &bsky.FeedLike{LexiconTypeID: nsLike, CreatedAt: created, Subject: &comatproto.RepoStrongRef{Uri: o.subject, Cid: someCID}}
	case nsRepost:
		return &bsky.FeedRepost{LexiconTypeID: nsRepost, CreatedAt: created, Subject: &comatproto.RepoStrongRef{Uri: o.subject, Cid: someCID}}
	case nsFollow:
		return &bsky.GraphFollow{LexiconTypeID: nsFollow, CreatedAt: created, Subject: o.subject}
	case nsBlock:
		return &bsky.GraphBlock{LexiconTypeID: nsBlock, CreatedAt: created, Subject: o.subject}
	case nsProfile:
		return &bsky.ActorProfile{LexiconTypeID: nsProfile, DisplayName: o.displayName, Description: o.description}
	}
	return &bsky.FeedThreadgate{LexiconTypeID: nsOther, CreatedAt: created, Post: "at://did:plc:x/app.bsky.feed.post/1"}
}

// carOf writes a CARv1 slice: header {roots: [root], version: 1}, then the blocks.
func carOf(tb testing.TB, root cid.Cid, blocks [][]byte) []byte {
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
	for _, b := range blocks {
		c := cidOf(tb, b).Bytes()
		out = binary.AppendUvarint(out, uint64(len(c)+len(b)))
		out = append(out, c...)
		out = append(out, b...)
	}
	return out
}

// frame renders the event as a relay frame (header CBOR then body CBOR).
func (e tEvent) frame(tb testing.TB) []byte {
	tb.Helper()
	if e.bad {
		// A valid header followed by a body that is not a CBOR map.
		return append(cborBytes(tb, &events.EventHeader{Op: 1, MsgType: "#commit"}), 0x01, 0x02)
	}
	ts := timeString(e.time)
	var evt events.XRPCStreamEvent
	switch e.kind {
	case decode.KindCommit:
		root := cborBytes(tb, &comatproto.RepoStrongRef{Uri: "at://" + e.did, Cid: someCID})
		blocks := [][]byte{root}
		var ops []*comatproto.SyncSubscribeRepos_RepoOp
		for _, o := range e.ops {
			rop := &comatproto.SyncSubscribeRepos_RepoOp{Action: o.action, Path: o.coll + "/" + o.rkey}
			if o.action != "delete" {
				data := cborBytes(tb, o.record())
				c := cidOf(tb, data)
				rop.Cid = (*lexutil.LexLink)(&c)
				blocks = append(blocks, data)
			}
			ops = append(ops, rop)
		}
		rc := cidOf(tb, root)
		evt.RepoCommit = &comatproto.SyncSubscribeRepos_Commit{
			Blobs: []lexutil.LexLink{}, Blocks: carOf(tb, rc, blocks), Commit: lexutil.LexLink(rc),
			Ops: ops, Repo: e.did, Rev: "3l000000000" + fmt.Sprint(e.seq), Seq: e.seq, Time: ts,
		}
	case decode.KindIdentity:
		evt.RepoIdentity = &comatproto.SyncSubscribeRepos_Identity{Did: e.did, Handle: e.handle, Seq: e.seq, Time: ts}
	case decode.KindAccount:
		evt.RepoAccount = &comatproto.SyncSubscribeRepos_Account{Did: e.did, Active: e.active, Status: e.status, Seq: e.seq, Time: ts}
	case decode.KindSync:
		root := cborBytes(tb, &comatproto.RepoStrongRef{Uri: "at://" + e.did, Cid: someCID})
		evt.RepoSync = &comatproto.SyncSubscribeRepos_Sync{Did: e.did, Blocks: carOf(tb, cidOf(tb, root), [][]byte{root}), Rev: "3l0000000001", Seq: e.seq, Time: ts}
	case decode.KindInfo:
		evt.RepoInfo = &comatproto.SyncSubscribeRepos_Info{Name: "OutdatedCursor"}
	default:
		tb.Fatalf("frame: kind %v", e.kind)
	}
	var buf bytes.Buffer
	if err := evt.Serialize(&buf); err != nil {
		tb.Fatalf("serialize: %v", err)
	}
	return buf.Bytes()
}

const testRelay = "relay.test"

// writeSpool writes evs (ascending seq) into a spool at dir, sealing a segment after each
// index in cuts and at the end, with the delete index of each segment, as a fetch does.
func writeSpool(tb testing.TB, dir string, evs []tEvent, cuts ...int) {
	tb.Helper()
	dc := deletes.NewCollector()
	s, err := spool.Open(dir, spool.Options{OnSeal: dc.OnSeal})
	if err != nil {
		tb.Fatalf("open spool: %v", err)
	}
	defer s.Close()
	w, err := s.NewWriter(testRelay)
	if err != nil {
		tb.Fatalf("new writer: %v", err)
	}
	cut := map[int]bool{}
	for _, c := range cuts {
		cut[c] = true
	}
	for i, e := range evs {
		frame := e.frame(tb)
		dc.Add(e.seq, frame)
		if err := w.Append(e.seq, e.time, frame); err != nil {
			tb.Fatalf("append seq %d: %v", e.seq, err)
		}
		if cut[i] {
			if err := w.Seal(); err != nil {
				tb.Fatalf("seal: %v", err)
			}
		}
	}
	if err := w.Close(); err != nil {
		tb.Fatalf("close writer: %v", err)
	}
	if err := dc.Err(); err != nil {
		tb.Fatalf("delete index: %v", err)
	}
}

// openLoader opens a loader, closed when the test ends, that loads in transactions of BatchSize
// segments however small the segments.
func openLoader(tb testing.TB, cfg Config) *Loader {
	tb.Helper()
	l, err := Open(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("open loader: %v", err)
	}
	tb.Cleanup(l.Close)
	l.minBatchBytes = 0
	l.headMin = 1
	return l
}

// load opens a loader, runs it once over dir and closes it. Tests load in transactions of
// BatchSize segments, however small the segments.
func load(tb testing.TB, cfg Config, dir string, tweak ...func(*Loader)) Summary {
	tb.Helper()
	l, err := Open(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("open loader: %v", err)
	}
	defer l.Close()
	l.minBatchBytes = 0
	l.headMin = 1
	for _, f := range tweak {
		f(l)
	}
	sum, err := l.Run(context.Background(), dir, nil)
	if err != nil {
		tb.Fatalf("run: %v", err)
	}
	return sum
}
