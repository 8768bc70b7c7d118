package decode

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	comatproto "github.com/bluesky-social/indigo/api/atproto"
	"github.com/bluesky-social/indigo/api/bsky"
	"github.com/bluesky-social/indigo/events"
	cbg "github.com/whyrusleeping/cbor-gen"
)

// benchFrames returns n realistic frames: commits of real signed repos with a few thousand
// records each (so each CAR slice carries a realistic number of MST nodes), in a mix of
// collections and actions like the public firehose, plus a few identity and account events.
func benchFrames(tb testing.TB, n int) [][]byte {
	tb.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	repos := make([]*testRepo, 4)
	for i := range repos {
		repos[i] = newTestRepo(tb, fmt.Sprintf("did:plc:bench%019d", i), 3000)
	}
	// Paths each repo has created, for deletes.
	created := make([][]string, len(repos))
	texts := []string{
		"gm",
		"Just shipped a new release of our backfill tool, twice as fast as the last one. Notes in the thread below.",
		"Ich habe heute den ganzen Tag im Garten gearbeitet und jetzt tut mir alles weh, aber es hat sich gelohnt 🌱",
		"これはテストの投稿です。日本語のテキストも正しく処理されるべきです。",
	}
	var frames [][]byte
	for len(frames) < n {
		ri := rng.IntN(len(repos))
		r := repos[ri]
		subject := fmt.Sprintf("at://did:plc:subj%020d/app.bsky.feed.post/3l%011d", rng.IntN(1000), rng.IntN(1e9))
		rkey := r.clock.Next().String()
		var op testOp
		switch p := rng.IntN(100); {
		case p < 3:
			frames = append(frames, frameOf(tb, &events.XRPCStreamEvent{RepoIdentity: &comatproto.SyncSubscribeRepos_Identity{Did: r.did, Seq: int64(len(frames)), Time: "2025-03-14T15:09:26.535Z"}}))
			continue
		case p < 5:
			frames = append(frames, frameOf(tb, &events.XRPCStreamEvent{RepoAccount: &comatproto.SyncSubscribeRepos_Account{Did: r.did, Active: true, Seq: int64(len(frames)), Time: "2025-03-14T15:09:26.535Z"}}))
			continue
		case p < 42:
			op = create(nsidLike+"/"+rkey, likeRecord(subject))
		case p < 62:
			post := postRecord(texts[rng.IntN(len(texts))])
			switch q := rng.IntN(10); {
			case q < 3:
				post = richPost(subject, subject)
			case q < 5:
				post.Reply = &bsky.FeedPost_ReplyRef{Parent: likeRecord(subject).Subject, Root: likeRecord(subject).Subject}
			case q < 6:
				post.Embed = &bsky.FeedPost_Embed{EmbedRecord: &bsky.EmbedRecord{Record: likeRecord(subject).Subject}}
			}
			op = create(nsidPost+"/"+rkey, post)
		case p < 72:
			op = create(nsidFollow+"/"+rkey, followRecord(fmt.Sprintf("did:plc:subj%020d", rng.IntN(1000))))
		case p < 80:
			op = create(nsidRepost+"/"+rkey, repostRecord(subject))
		case p < 82:
			op = create(nsidBlock+"/"+rkey, blockRecord(fmt.Sprintf("did:plc:subj%020d", rng.IntN(1000))))
		case p < 83:
			op = update(nsidProfile+"/self", profileRecord("Bench Marker"))
		case p < 90:
			if len(created[ri]) == 0 {
				continue
			}
			k := rng.IntN(len(created[ri]))
			op = remove(created[ri][k])
			created[ri] = append(created[ri][:k], created[ri][k+1:]...)
		default:
			op = create("app.bsky.graph.listitem/"+rkey, &bsky.GraphListitem{LexiconTypeID: "app.bsky.graph.listitem", Subject: "did:plc:ewvi7nxzyoun6zhxrhs64oiz", List: subject, CreatedAt: testCreatedStr})
		}
		if op.action == "create" {
			created[ri] = append(created[ri], op.path)
		}
		msg := r.commit(op)
		msg.Seq = int64(len(frames))
		frames = append(frames, commitFrame(tb, msg))
	}
	return frames
}

var benchSink *Event

func BenchmarkDecode(b *testing.B) {
	frames := benchFrames(b, 500)
	total := 0
	for _, f := range frames {
		total += len(f)
	}
	d := NewDecoder(Options{})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ev, err := d.Decode(frames[i%len(frames)])
		if err != nil {
			b.Fatal(err)
		}
		benchSink = ev
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
	b.ReportMetric(float64(total)/float64(len(frames)), "B/frame")
}

func BenchmarkDecodeByKind(b *testing.B) {
	r := newTestRepo(b, "did:plc:bench0000000000000000000", 3000)
	for _, tc := range []struct {
		name string
		rec  cbg.CBORMarshaler
		nsid string
	}{
		{"like", likeRecord(parentURI), nsidLike},
		{"post", postRecord("a short post of about the usual length, with nothing in it but text"), nsidPost},
		{"richpost", richPost(parentURI, rootURI), nsidPost},
		{"follow", followRecord(otherDID), nsidFollow},
		{"profile", profileRecord("Bench"), nsidProfile},
	} {
		path := tc.nsid + "/" + r.clock.Next().String()
		if tc.nsid == nsidProfile {
			path = tc.nsid + "/self"
		}
		frame := commitFrame(b, r.commit(create(path, tc.rec)))
		b.Run(tc.name, func(b *testing.B) {
			d := NewDecoder(Options{})
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				ev, err := d.Decode(frame)
				if err != nil || len(ev.Problems) != 0 {
					b.Fatal(err, ev.Problems)
				}
				benchSink = ev
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
		})
	}
}

// BenchmarkEnvelope is the reference MEASURED.md compares with: only the header and
// cbor-gen's decoding of the body, no CAR walk and no records.
func BenchmarkEnvelope(b *testing.B) {
	frames := benchFrames(b, 500)
	var commit comatproto.SyncSubscribeRepos_Commit
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f := frames[i%len(frames)]
		r := cborReader{b: f}
		var h Header
		if err := readFrameHeader(&r, &h); err != nil {
			b.Fatal(err)
		}
		if h.Kind == KindCommit {
			if err := commit.UnmarshalCBOR(bytes.NewReader(f[r.off:])); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
}

var headerSink Header

func BenchmarkPeekHeader(b *testing.B) {
	frames := benchFrames(b, 500)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h, err := PeekHeader(frames[i%len(frames)])
		if err != nil {
			b.Fatal(err)
		}
		headerSink = h
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
}
