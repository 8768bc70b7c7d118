package relaytest

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/backfill/backfill/decode"
	"github.com/bluesky-social/indigo/api/bsky"
	"github.com/bluesky-social/indigo/atproto/atcrypto"
	"github.com/bluesky-social/indigo/atproto/repo"
	"github.com/ipfs/go-cid"
)

func TestDeterminism(t *testing.T) {
	cfg := Config{Seed: 42, Users: 20, Events: 1500, BadInput: true, Collisions: true, Gaps: true}
	a := newRelay(t, cfg).Log()
	b := newRelay(t, cfg).Log()
	if len(a) != len(b) {
		t.Fatalf("got %d and %d frames from the same seed", len(a), len(b))
	}
	for i := range a {
		if a[i].Seq != b[i].Seq || !a[i].Time.Equal(b[i].Time) || a[i].Kind != b[i].Kind || !bytes.Equal(a[i].Bytes, b[i].Bytes) {
			t.Fatalf("frame %d differs between runs of the same seed (seq %d %s vs seq %d %s)", i, a[i].Seq, a[i].Kind, b[i].Seq, b[i].Kind)
		}
	}
	cfg.Seed = 43
	c := newRelay(t, cfg).Log()
	same := 0
	for i := range min(len(a), len(c)) {
		if bytes.Equal(a[i].Bytes, c[i].Bytes) {
			same++
		}
	}
	if same > len(a)/10 {
		t.Errorf("seeds 42 and 43 share %d of %d frames", same, len(a))
	}
}

func TestSeqsAndTimes(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"consecutive", Config{Seed: 1, Users: 10, Events: 300, FirstSeq: 1000, Interval: 7 * time.Millisecond}},
		{"gaps", Config{Seed: 1, Users: 10, Events: 300, Gaps: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRelay(t, tc.cfg)
			log := r.Log()
			cfg := r.Config()
			if got, want := log[0].Seq, cfg.FirstSeq; got != want {
				t.Errorf("first seq: got %d, want %d", got, want)
			}
			gaps := 0
			for i, f := range log {
				if want := cfg.StartTime.Add(time.Duration(i) * cfg.Interval).Truncate(time.Millisecond); !f.Time.Equal(want) {
					t.Fatalf("frame %d time: got %v, want %v", i, f.Time, want)
				}
				if s := frameSeq(t, f.Bytes); s != -1 && s != f.Seq {
					t.Fatalf("frame %d: body seq %d, Frame.Seq %d", i, s, f.Seq)
				}
				if i == 0 {
					continue
				}
				switch d := f.Seq - log[i-1].Seq; {
				case d < 1:
					t.Fatalf("seq %d follows %d", f.Seq, log[i-1].Seq)
				case d > 1:
					gaps++
				}
			}
			if tc.cfg.Gaps != (gaps > 0) {
				t.Errorf("Gaps %v: got %d gaps", tc.cfg.Gaps, gaps)
			}
			if got, want := r.Head(), log[len(log)-1].Seq; got != want {
				t.Errorf("Head: got %d, want %d", got, want)
			}
		})
	}
}

// logFeatures is what a scan of a log found.
type logFeatures map[string]int

func scanLog(t *testing.T, log []Frame) logFeatures {
	t.Helper()
	seen := logFeatures{}
	created := map[string]int{} // uri -> index of its last create
	deleted := map[string]bool{}
	for i, f := range log {
		seen["kind "+f.Kind]++
		if f.Kind == KindGarbage || f.Kind == KindFoo {
			continue
		}
		evt := decodeFrame(t, f.Bytes)
		switch {
		case evt.RepoIdentity != nil:
			if h := evt.RepoIdentity.Handle; h == nil {
				seen["identity without handle"]++
			} else if *h != strings.ToLower(*h) {
				seen["identity with mixed-case handle"]++
			}
		case evt.RepoAccount != nil:
			if evt.RepoAccount.Status == nil {
				seen["account active"]++
			} else {
				seen["account "+*evt.RepoAccount.Status]++
			}
		case evt.RepoCommit != nil:
			c := evt.RepoCommit
			if len(c.Ops) > 1 {
				seen["multi-op commit"]++
			}
			blocks, err := readCAR(c.Blocks)
			if err != nil {
				t.Fatalf("seq %d: read CAR: %v", f.Seq, err)
			}
			for _, op := range c.Ops {
				coll, _, _ := strings.Cut(op.Path, "/")
				uri := c.Repo + "/" + op.Path
				seen[op.Action+" "+coll]++
				switch op.Action {
				case "create":
					if deleted[uri] {
						seen["re-create after delete"]++
					}
					created[uri] = i
				case "delete":
					if j, ok := created[uri]; ok && i-j <= 5 {
						seen["delete soon after create"]++
					}
					deleted[uri] = true
				}
				if op.Cid == nil || coll != collPost {
					continue
				}
				data, ok := blocks[cid.Cid(*op.Cid)]
				if !ok {
					continue
				}
				var p bsky.FeedPost
				if p.UnmarshalCBOR(bytes.NewReader(data)) != nil {
					continue
				}
				if p.Reply != nil {
					seen["post reply"]++
				}
				if strings.Contains(p.Text, "\x00") || !utf8.ValidString(p.Text) {
					seen["post text NUL or invalid UTF-8"]++
				}
				if len(p.Langs) > 0 {
					seen["post langs"]++
				}
				if len(p.Tags) > 0 {
					seen["post tags"]++
				}
				for _, fc := range p.Facets {
					for _, ft := range fc.Features {
						switch {
						case ft.RichtextFacet_Mention != nil:
							seen["facet mention"]++
						case ft.RichtextFacet_Link != nil:
							seen["facet link"]++
						case ft.RichtextFacet_Tag != nil:
							seen["facet tag"]++
						}
					}
				}
				if e := p.Embed; e != nil {
					switch {
					case e.EmbedImages != nil:
						seen["embed images"]++
					case e.EmbedExternal != nil:
						seen["embed external"]++
					case e.EmbedRecord != nil:
						seen["embed record"]++
					case e.EmbedRecordWithMedia != nil:
						seen["embed recordWithMedia"]++
					}
				}
			}
		}
	}
	return seen
}

func TestLogHasEverything(t *testing.T) {
	log, m := sharedLog(t)
	seen := scanLog(t, log)
	want := []string{
		"kind #commit", "kind #identity", "kind #account", "kind #sync", "kind #info", "kind #foo", "kind garbage",
		"identity without handle", "identity with mixed-case handle", "account active",
		"multi-op commit", "re-create after delete", "delete soon after create",
		"post reply", "post langs", "post tags", "post text NUL or invalid UTF-8",
		"facet mention", "facet link", "facet tag",
		"embed images", "embed external", "embed record", "embed recordWithMedia",
		"update " + collPost, "update " + collProfile, "create " + collProfile,
		"create " + collThreadgate, "create " + collList, "create " + collListitem,
	}
	for _, s := range accountStatuses {
		want = append(want, "account "+s)
	}
	for _, c := range []string{collPost, collLike, collRepost, collFollow, collBlock, collProfile} {
		want = append(want, "delete "+c)
		if c != collProfile {
			want = append(want, "create "+c)
		}
	}
	for _, w := range want {
		if seen[w] == 0 {
			t.Errorf("5,000 events: no %q", w)
		}
	}

	for _, reason := range []decode.Reason{decode.ReasonBadFrame, decode.ReasonUnknownType, decode.ReasonBadRecord, decode.ReasonMissingBlock,
		decode.ReasonBadURI, decode.ReasonBadDID, decode.ReasonBadTime, decode.ReasonOtherCollection} {
		if m.Problems[reason] == 0 {
			t.Errorf("5,000 events: model counted no %s", reason)
		}
	}
	for _, dup := range []string{"pair " + collLike, "pair " + collFollow} {
		if m.ignored[dup] == 0 {
			t.Errorf("5,000 events with Collisions: no create ignored for %s", dup)
		}
	}
	t.Logf("features: %v", seen)
	t.Logf("problems: %v; ignored creates: %v", m.Problems, m.ignored)
}

func TestFrameSizes(t *testing.T) {
	log, _ := sharedLog(t)
	var n, total, mst int
	for _, f := range log {
		if f.Kind != KindCommit {
			continue
		}
		n++
		total += len(f.Bytes)
		mst += commitBreakdown(t, decodeFrame(t, f.Bytes).RepoCommit)
	}
	mean := total / n
	share := float64(mst) / float64(total)
	t.Logf("%d #commit frames: mean %d bytes, MST nodes %.0f%%", n, mean, 100*share)
	if mean < 2500 || mean > 5000 {
		t.Errorf("mean #commit frame: got %d bytes, want 2,500-5,000 (measured on the network: 3.4-3.6 KB)", mean)
	}
	if share < 0.55 || share > 0.85 {
		t.Errorf("MST share of #commit bytes: got %.2f, want 0.55-0.85 (measured: ~0.74)", share)
	}
}

func TestCommitsVerify(t *testing.T) {
	r := newRelay(t, Config{Seed: 11, Users: 30, Events: 2000, Collisions: true})
	ctx := context.Background()
	type state struct{ rev, data string }
	last := map[string]state{}
	checked := 0
	for i, f := range r.Log() {
		evt := decodeFrame(t, f.Bytes)
		var did, rev, data string
		var since *string
		var commit *repo.Commit
		switch {
		case evt.RepoCommit != nil:
			c := evt.RepoCommit
			if i%4 == 0 || len(c.Ops) > 1 {
				if _, err := repo.VerifyCommitMessage(ctx, c); err != nil {
					t.Fatalf("seq %d (%d ops): VerifyCommitMessage: %v", c.Seq, len(c.Ops), err)
				}
				checked++
			}
			var err error
			if commit, _, err = repo.LoadCommitFromCAR(ctx, bytes.NewReader(c.Blocks)); err != nil {
				t.Fatalf("seq %d: load commit: %v", c.Seq, err)
			}
			did, rev, since = c.Repo, c.Rev, c.Since
			if prev, ok := last[did]; ok && (c.PrevData == nil || c.PrevData.String() != prev.data) {
				t.Errorf("seq %d: prevData %v, want the previous commit's data %s", c.Seq, c.PrevData, prev.data)
			}
		case evt.RepoSync != nil:
			var err error
			if commit, _, err = repo.LoadCommitFromCAR(ctx, bytes.NewReader(evt.RepoSync.Blocks)); err != nil {
				t.Fatalf("seq %d: load #sync commit: %v", evt.RepoSync.Seq, err)
			}
			did, rev = evt.RepoSync.Did, evt.RepoSync.Rev
		default:
			continue
		}
		data = commit.Data.String()
		if commit.Rev != rev || commit.DID != did {
			t.Fatalf("seq %d: commit block says %s@%s, event %s@%s", f.Seq, commit.DID, commit.Rev, did, rev)
		}
		if err := commit.VerifySignature(userKey(t, r, did)); err != nil {
			t.Fatalf("seq %d: signature: %v", f.Seq, err)
		}
		if prev, ok := last[did]; ok {
			if rev <= prev.rev {
				t.Errorf("seq %d: rev %s not after %s", f.Seq, rev, prev.rev)
			}
			if since != nil && *since != prev.rev {
				t.Errorf("seq %d: since %s, want %s", f.Seq, *since, prev.rev)
			}
		}
		last[did] = state{rev: rev, data: data}
	}
	t.Logf("VerifyCommitMessage passed on %d commits", checked)
}

// userKey returns the public key of the generated account with did.
func userKey(t *testing.T, r *Relay, did string) atcrypto.PublicKey {
	t.Helper()
	for _, u := range r.gen.users {
		if u.did == did {
			k, err := atcrypto.ParsePrivateBytesK256(u.keyBytes)
			if err != nil {
				t.Fatal(err)
			}
			pub, err := k.PublicKey()
			if err != nil {
				t.Fatal(err)
			}
			return pub
		}
	}
	t.Fatalf("no user %s", did)
	return nil
}

func BenchmarkGenerate(b *testing.B) {
	for b.Loop() {
		r, err := New(Config{Seed: 5, Users: 500, Events: 20000, StartTime: testStart})
		if err != nil {
			b.Fatal(err)
		}
		r.Close()
	}
	b.ReportMetric(float64(20000*b.N)/b.Elapsed().Seconds(), "events/s")
}
