package relaytest

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"time"

	comatproto "github.com/bluesky-social/indigo/api/atproto"
	"github.com/bluesky-social/indigo/api/bsky"
	lexutil "github.com/bluesky-social/indigo/lex/util"
	"github.com/ipfs/go-cid"
	cbg "github.com/whyrusleeping/cbor-gen"
)

var names = strings.Fields("alice bob carol dave erin frank grace heidi ivan judy mallory niaj olivia peggy rupert sybil trent victor walter yuki sora haruto aiko lucas sofia mateo emma noah mia")

var handleDomains = []string{"bsky.social", "bsky.social", "bsky.social", "example.com", "blog.example.org", "test.dev"}

var wordsEN = strings.Fields("the a of and to in is it that was for on with as I you this just really so what today new time people good think know like love see great day year world work first last life post thread sky feed coffee morning night weekend music book game photo cat dog city rain sun open source code release bug fix deploy team news article read write learn garden walk train friends family home art design science space moon")

var wordsOther = []string{
	"こんにちは", "今日は", "ありがとう", "猫", "日本語", "東京", "café", "naïve", "über", "straße", "ação",
	"coração", "niño", "señor", "привет", "мир", "你好", "世界", "안녕하세요", "مرحبا", "שלום",
	"🎉", "😂", "❤️", "👍🏽", "🏳️‍🌈", "🚀", "🦋", "✨", "🇯🇵", "👩‍💻", "Ελλάδα", "Zürich", "São Paulo",
}

var tagWords = strings.Fields("art photography bluesky atproto news tech music gaming books science caturday dogsofbluesky 日本語 café")

var langSets = [][]string{{"en"}, {"en"}, {"en"}, {"ja"}, {"pt"}, {"de"}, {"es"}, {"en", "ja"}, {"fr"}, nil}

// createdAt returns a record's createdAt near t, sometimes in the other forms clients write
// that lenient parsing still accepts.
func (g *generator) createdAt(t time.Time) string {
	ct := t.Add(-time.Duration(g.rng.IntN(3000)) * time.Millisecond).UTC()
	switch r := g.rng.Float64(); {
	case r < 0.90:
		return ct.Format(timeLayout)
	case r < 0.93:
		return ct.Format("2006-01-02T15:04:05Z")
	case r < 0.95:
		return ct.In(time.FixedZone("", 9*3600)).Format("2006-01-02T15:04:05.000-07:00")
	case r < 0.97:
		return ct.Add(time.Duration(g.rng.IntN(1000)) * time.Microsecond).Format("2006-01-02T15:04:05.000000Z")
	case r < 0.98:
		return ct.Format("2006-01-02T15:04:05.000") // no zone: lenient parsing assumes UTC
	case r < 0.99:
		return ct.Format("2006-01-02T15:04:05.000") + "+0000"
	default:
		return ct.Format("2006-01-02T15:04:05.000") + "-00:00"
	}
}

// badCreatedAts do not parse, even leniently.
var badCreatedAts = []string{"not a date", "2024-13-45T25:61:00Z", "yesterday", "2024-02-30T10:00:00.000Z", "2024-05-01 12:00:00", ""}

func (g *generator) words(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(' ')
		}
		if g.rng.Float64() < 0.2 {
			b.WriteString(wordsOther[g.rng.IntN(len(wordsOther))])
		} else {
			b.WriteString(wordsEN[g.rng.IntN(len(wordsEN))])
		}
	}
	return b.String()
}

// text returns post text with its facets (mentions, links, tags) at their byte offsets.
func (g *generator) text() (string, []*bsky.RichtextFacet) {
	var n int
	switch r := g.rng.Float64(); {
	case r < 0.08:
		n = g.rng.IntN(3)
	case r < 0.55:
		n = 4 + g.rng.IntN(12)
	case r < 0.90:
		n = 16 + g.rng.IntN(25)
	default:
		n = 41 + g.rng.IntN(30)
	}
	var b strings.Builder
	var facets []*bsky.RichtextFacet
	facet := func(start int, f *bsky.RichtextFacet_Features_Elem) {
		facets = append(facets, &bsky.RichtextFacet{
			Index:    &bsky.RichtextFacet_ByteSlice{ByteStart: int64(start), ByteEnd: int64(b.Len())},
			Features: []*bsky.RichtextFacet_Features_Elem{f},
		})
	}
	for i := range n {
		if i > 0 {
			if g.rng.Float64() < 0.05 {
				b.WriteString("\n\n")
			} else {
				b.WriteByte(' ')
			}
		}
		start := b.Len()
		switch r := g.rng.Float64(); {
		case r < 0.02:
			u := g.users[g.rng.IntN(len(g.users))]
			b.WriteString("@" + u.handle)
			facet(start, &bsky.RichtextFacet_Features_Elem{RichtextFacet_Mention: &bsky.RichtextFacet_Mention{LexiconTypeID: "app.bsky.richtext.facet#mention", Did: u.did}})
		case r < 0.03:
			uri := fmt.Sprintf("https://%s/%s/%d", handleDomains[g.rng.IntN(len(handleDomains))], wordsEN[g.rng.IntN(len(wordsEN))], g.rng.IntN(100000))
			b.WriteString(uri)
			facet(start, &bsky.RichtextFacet_Features_Elem{RichtextFacet_Link: &bsky.RichtextFacet_Link{LexiconTypeID: "app.bsky.richtext.facet#link", Uri: uri}})
		case r < 0.045:
			tag := tagWords[g.rng.IntN(len(tagWords))]
			b.WriteString("#" + tag)
			facet(start, &bsky.RichtextFacet_Features_Elem{RichtextFacet_Tag: &bsky.RichtextFacet_Tag{LexiconTypeID: "app.bsky.richtext.facet#tag", Tag: tag}})
		default:
			b.WriteString(g.words(1))
		}
	}
	return b.String(), facets
}

// blob returns a blob reference (a raw-codec CID, as uploaded blobs have).
func (g *generator) blob(mime string, maxSize int) *lexutil.LexBlob {
	var b [16]byte
	for i := range b {
		b[i] = byte(g.rng.Uint32())
	}
	return &lexutil.LexBlob{Ref: lexutil.LexLink(cidOf(cid.Raw, b[:])), MimeType: mime, Size: int64(1000 + g.rng.IntN(maxSize))}
}

func (g *generator) images() *bsky.EmbedImages {
	imgs := &bsky.EmbedImages{LexiconTypeID: "app.bsky.embed.images"}
	for range 1 + g.rng.IntN(4) {
		img := &bsky.EmbedImages_Image{Image: g.blob([]string{"image/jpeg", "image/png", "image/webp"}[g.rng.IntN(3)], 900_000)}
		if g.rng.Float64() < 0.6 {
			img.Alt = g.words(3 + g.rng.IntN(15))
		}
		if g.rng.Float64() < 0.8 {
			img.AspectRatio = &bsky.EmbedDefs_AspectRatio{Width: int64(300 + g.rng.IntN(3700)), Height: int64(300 + g.rng.IntN(3700))}
		}
		imgs.Images = append(imgs.Images, img)
	}
	return imgs
}

func strongRef(p postRef) *comatproto.RepoStrongRef {
	return &comatproto.RepoStrongRef{Uri: p.uri, Cid: p.cid}
}

// post returns a new post record and the pool entry it will become.
func (g *generator) post(t time.Time) (*bsky.FeedPost, *postRef) {
	text, facets := g.text()
	p := &bsky.FeedPost{LexiconTypeID: collPost, CreatedAt: g.createdAt(t), Text: text, Facets: facets}
	ref := &postRef{}
	if g.rng.Float64() < 0.3 {
		parent := g.pickPost()
		p.Reply = &bsky.FeedPost_ReplyRef{Parent: strongRef(parent), Root: strongRef(postRef{uri: parent.rootURI, cid: parent.rootCID})}
		ref.rootURI, ref.rootCID = parent.rootURI, parent.rootCID
	}
	switch r := g.rng.Float64(); {
	case r < 0.15:
		p.Embed = &bsky.FeedPost_Embed{EmbedImages: g.images()}
	case r < 0.20:
		ext := &bsky.EmbedExternal_External{
			Uri:         fmt.Sprintf("https://news.example.com/%d/%s", 2020+g.rng.IntN(6), strings.ReplaceAll(g.words(3), " ", "-")),
			Title:       g.words(4 + g.rng.IntN(8)),
			Description: g.words(10 + g.rng.IntN(30)),
		}
		if g.rng.Float64() < 0.6 {
			ext.Thumb = g.blob("image/jpeg", 300_000)
		}
		p.Embed = &bsky.FeedPost_Embed{EmbedExternal: &bsky.EmbedExternal{LexiconTypeID: "app.bsky.embed.external", External: ext}}
	case r < 0.25:
		p.Embed = &bsky.FeedPost_Embed{EmbedRecord: &bsky.EmbedRecord{LexiconTypeID: "app.bsky.embed.record", Record: strongRef(g.pickPost())}}
	case r < 0.27:
		p.Embed = &bsky.FeedPost_Embed{EmbedRecordWithMedia: &bsky.EmbedRecordWithMedia{
			LexiconTypeID: "app.bsky.embed.recordWithMedia",
			Record:        &bsky.EmbedRecord{LexiconTypeID: "app.bsky.embed.record", Record: strongRef(g.pickPost())},
			Media:         &bsky.EmbedRecordWithMedia_Media{EmbedImages: g.images()},
		}}
	}
	p.Langs = langSets[g.rng.IntN(len(langSets))]
	if g.rng.Float64() < 0.05 {
		for range 1 + g.rng.IntN(3) {
			p.Tags = append(p.Tags, tagWords[g.rng.IntN(len(tagWords))])
		}
		for _, f := range facets { // a record tag that repeats a facet tag
			if tag := f.Features[0].RichtextFacet_Tag; tag != nil {
				p.Tags = append(p.Tags, tag.Tag)
				break
			}
		}
	}
	return p, ref
}

// profile returns a profile record for u.
func (g *generator) profile(u *user, t time.Time) *bsky.ActorProfile {
	p := &bsky.ActorProfile{LexiconTypeID: collProfile}
	if g.rng.Float64() < 0.9 {
		dn := strings.ToUpper(u.handle[:1]) + u.handle[1:strings.IndexByte(u.handle, '.')]
		if g.rng.Float64() < 0.4 {
			dn += " " + wordsOther[g.rng.IntN(len(wordsOther))]
		}
		p.DisplayName = &dn
	}
	if g.rng.Float64() < 0.8 {
		d := g.words(5+g.rng.IntN(20)) + "\n" + g.words(3+g.rng.IntN(8))
		p.Description = &d
	}
	if g.rng.Float64() < 0.8 {
		p.Avatar = g.blob("image/jpeg", 1_000_000)
	}
	if g.rng.Float64() < 0.5 {
		p.Banner = g.blob("image/jpeg", 1_000_000)
	}
	if g.rng.Float64() < 0.3 {
		p.PinnedPost = strongRef(g.pickPost())
	}
	if g.rng.Float64() < 0.7 {
		c := g.createdAt(t)
		p.CreatedAt = &c
	}
	return p
}

// recordFor returns a create of a new coll record by u. For likes, subject (when set) is the
// post uri to like.
func (g *generator) recordFor(u *user, coll string, t time.Time, subject string) opSpec {
	op := opSpec{action: "create", coll: coll}
	switch coll {
	case collPost:
		op.rec, op.post = g.post(t)
	case collLike, collRepost:
		ref := g.pickPost()
		for range 3 { // by accident, liking the same post twice is rare
			if !slices.Contains(u.recentLikes, ref.uri) {
				break
			}
			ref = g.pickPost()
		}
		if subject != "" {
			ref = postRef{uri: subject, cid: g.fakeCID().String()}
		}
		if coll == collLike {
			op.rec = &bsky.FeedLike{LexiconTypeID: collLike, CreatedAt: g.createdAt(t), Subject: strongRef(ref)}
			u.recentLikes = appendRecent(u.recentLikes, ref.uri)
		} else {
			op.rec = &bsky.FeedRepost{LexiconTypeID: collRepost, CreatedAt: g.createdAt(t), Subject: strongRef(ref)}
		}
	case collFollow:
		did := g.pickDID(u)
		if g.cfg.Collisions && len(u.recentFollows) > 0 && g.rng.Float64() < 0.05 {
			did = u.recentFollows[g.rng.IntN(len(u.recentFollows))]
		}
		u.recentFollows = appendRecent(u.recentFollows, did)
		op.rec = &bsky.GraphFollow{LexiconTypeID: collFollow, CreatedAt: g.createdAt(t), Subject: did}
	case collBlock:
		op.rec = &bsky.GraphBlock{LexiconTypeID: collBlock, CreatedAt: g.createdAt(t), Subject: g.pickDID(u)}
	case collProfile:
		op.rkey = "self"
		op.rec = g.profile(u, t)
	case collList:
		purpose := "app.bsky.graph.defs#curatelist"
		desc := g.words(6)
		op.rec = &bsky.GraphList{LexiconTypeID: collList, CreatedAt: g.createdAt(t), Name: g.words(2), Purpose: &purpose, Description: &desc}
	default: // collListitem and anything else
		op.coll = collListitem
		list := "at://" + u.did + "/" + collList + "/3jzfcijpj2z2a"
		if len(g.lists) > 0 {
			list = g.lists[g.rng.IntN(len(g.lists))]
		}
		op.rec = &bsky.GraphListitem{LexiconTypeID: collListitem, CreatedAt: g.createdAt(t), List: list, Subject: g.pickDID(u)}
	}
	return op
}

func appendRecent(s []string, v string) []string {
	if len(s) >= 16 {
		copy(s, s[1:])
		s = s[:len(s)-1]
	}
	return append(s, v)
}

// otherOp returns an op in a collection that load does not write.
func (g *generator) otherOp(u *user, t time.Time, avoid map[string]bool) opSpec {
	switch g.rng.IntN(3) {
	case 0:
		if lr, ok := g.pickLive(u, collPost, nil); ok && !avoid[collThreadgate+"/"+lr.rkey] {
			if _, exists := u.liveAt[collThreadgate+"/"+lr.rkey]; !exists {
				return opSpec{action: "create", coll: collThreadgate, rkey: lr.rkey, rec: &bsky.FeedThreadgate{
					LexiconTypeID: collThreadgate,
					CreatedAt:     g.createdAt(t),
					Post:          "at://" + u.did + "/" + lr.path,
					Allow: []*bsky.FeedThreadgate_Allow_Elem{{
						FeedThreadgate_MentionRule: &bsky.FeedThreadgate_MentionRule{LexiconTypeID: "app.bsky.feed.threadgate#mentionRule"},
					}},
				}}
			}
		}
		return g.recordFor(u, collList, t, "")
	case 1:
		return g.recordFor(u, collList, t, "")
	}
	return g.recordFor(u, collListitem, t, "")
}

// Kinds of bad input (BadInput), in the order badEvent numbers them.
const (
	badRecord = iota
	badMissingBlock
	badLikeSubject
	badFollowSubject
	badCreatedAt
	badText
	badGarbage
	badUnknownType
)

// badEvent returns an event carrying one kind of bad input.
func (g *generator) badEvent(kind int) (*pendingFrame, error) {
	switch kind {
	case badGarbage:
		p := g.begin(KindGarbage)
		b := make([]byte, 20+g.rng.IntN(200))
		for i := range b {
			b[i] = byte(g.rng.Uint32())
		}
		b[0] = 0xff // a CBOR "break" outside any indefinite item: never a valid header
		p.bytes = b
		return p, nil
	case badUnknownType:
		u := g.pickUser()
		p := g.begin(KindFoo)
		b, err := encodeFrame(KindFoo, &comatproto.SyncSubscribeRepos_Identity{Did: u.did, Seq: p.seq, Time: formatTime(p.t)}, 160)
		p.bytes = b
		return p, err
	}
	u := g.pickUser()
	if err := g.ensureReady(u); err != nil {
		return nil, err
	}
	p := g.begin(KindCommit)
	var op opSpec
	switch kind {
	case badRecord:
		op = opSpec{action: "create", coll: collPost, raw: g.undecodable(collPost, p.t)}
		if g.rng.IntN(2) == 0 {
			op = opSpec{action: "create", coll: collLike, raw: g.undecodable(collLike, p.t)}
		}
	case badMissingBlock:
		op = g.recordFor(u, []string{collPost, collLike, collFollow}[g.rng.IntN(3)], p.t, "")
		op.omit = true
	case badLikeSubject:
		coll := []string{collLike, collRepost}[g.rng.IntN(2)]
		op = g.recordFor(u, coll, p.t, "")
		garbage := []string{"not a uri", "at://", "https://example.com/post/1", "at://did:plc:/app.bsky.feed.post/x y"}[g.rng.IntN(4)]
		switch r := op.rec.(type) {
		case *bsky.FeedLike:
			r.Subject.Uri = garbage
		case *bsky.FeedRepost:
			r.Subject.Uri = garbage
		}
	case badFollowSubject:
		coll := []string{collFollow, collBlock}[g.rng.IntN(2)]
		op = g.recordFor(u, coll, p.t, "")
		notDID := []string{u.handle, "did:", "alice", "at://" + u.did, "did:plc:UPPER CASE"}[g.rng.IntN(5)]
		switch r := op.rec.(type) {
		case *bsky.GraphFollow:
			r.Subject = notDID
		case *bsky.GraphBlock:
			r.Subject = notDID
		}
	case badCreatedAt:
		op = g.recordFor(u, []string{collPost, collLike, collFollow, collRepost, collBlock}[g.rng.IntN(5)], p.t, "")
		bad := badCreatedAts[g.rng.IntN(len(badCreatedAts))]
		switch r := op.rec.(type) {
		case *bsky.FeedPost:
			r.CreatedAt = bad
		case *bsky.FeedLike:
			r.CreatedAt = bad
		case *bsky.GraphFollow:
			r.CreatedAt = bad
		case *bsky.FeedRepost:
			r.CreatedAt = bad
		case *bsky.GraphBlock:
			r.CreatedAt = bad
		}
	case badText:
		if g.rng.IntN(4) == 0 && !u.hasProfile {
			op = g.recordFor(u, collProfile, p.t, "")
			pr := op.rec.(*bsky.ActorProfile)
			dn := "Nul\x00Name \xff"
			pr.DisplayName = &dn
			d := "desc\x00ription\xc3\x28 ok"
			pr.Description = &d
		} else {
			rec, ref := g.post(p.t)
			rec.Text = "bad\x00text \xff\xfe mixed é \xc3 end\x00"
			rec.Tags = []string{"ok\x00", "ok", "\xffbad"}
			rec.Embed = &bsky.FeedPost_Embed{EmbedExternal: &bsky.EmbedExternal{LexiconTypeID: "app.bsky.embed.external", External: &bsky.EmbedExternal_External{
				Uri: "https://example.com/\x00", Title: "title \xe2\x82", Description: "nul\x00 inside",
			}}}
			op = opSpec{action: "create", coll: collPost, rec: rec, post: ref}
		}
	}
	ops := []opSpec{op}
	if g.rng.IntN(2) == 0 { // the commit's other ops still apply
		ops = append(ops, g.randomOp(u, p.t, map[string]bool{}))
	}
	return p, g.commit(u, ops, p)
}

// undecodable returns record bytes that do not decode as coll's record type.
func (g *generator) undecodable(coll string, t time.Time) []byte {
	var buf bytes.Buffer
	cw := cbg.NewCborWriter(&buf)
	switch {
	case g.rng.IntN(2) == 0: // an array, not a map
		_ = cw.WriteMajorTypeHeader(cbg.MajArray, 3)
		for i := range 3 {
			_ = cw.WriteMajorTypeHeader(cbg.MajUnsignedInt, uint64(i))
		}
	case coll == collPost: // text is an integer
		_ = cw.WriteMajorTypeHeader(cbg.MajMap, 3)
		_ = writeText(cw, "text")
		_ = cw.WriteMajorTypeHeader(cbg.MajUnsignedInt, 42)
		_ = writeText(cw, "$type")
		_ = writeText(cw, coll)
		_ = writeText(cw, "createdAt")
		_ = writeText(cw, formatTime(t))
	default: // subject (a strongRef map) is a string
		_ = cw.WriteMajorTypeHeader(cbg.MajMap, 3)
		_ = writeText(cw, "$type")
		_ = writeText(cw, coll)
		_ = writeText(cw, "subject")
		_ = writeText(cw, "at://did:plc:aaaaaaaaaaaaaaaaaaaaaaaa/app.bsky.feed.post/3k2a")
		_ = writeText(cw, "createdAt")
		_ = writeText(cw, formatTime(t))
	}
	return buf.Bytes()
}
