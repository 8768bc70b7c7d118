package main

import (
	_ "github.com/alecthomas/kong"
	_ "github.com/bluesky-social/indigo/api/atproto"
	_ "github.com/bluesky-social/indigo/api/bsky"
	_ "github.com/bluesky-social/indigo/atproto/atcrypto"
	_ "github.com/bluesky-social/indigo/atproto/atdata"
	_ "github.com/bluesky-social/indigo/atproto/repo"
	_ "github.com/bluesky-social/indigo/atproto/repo/mst"
	_ "github.com/bluesky-social/indigo/atproto/syntax"
	_ "github.com/bluesky-social/indigo/events"
	_ "github.com/bluesky-social/indigo/events/schedulers/sequential"
	_ "github.com/bluesky-social/indigo/lex/util"
	_ "github.com/gorilla/websocket"
	_ "github.com/ipfs/go-cid"
	_ "github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/klauspost/compress/zstd"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "github.com/vbauerster/mpb/v8"
	_ "github.com/whyrusleeping/cbor-gen"
	_ "go.etcd.io/bbolt"
	_ "golang.org/x/sync/errgroup"
	_ "golang.org/x/term"
)

func main() {}
