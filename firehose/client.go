package firehose

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

// Path is the XRPC path of the firehose endpoint.
const Path = "/xrpc/com.atproto.sync.subscribeRepos"

// MaxFrameBytes is the largest frame accepted: the protocol caps frames at 5 MB.
const MaxFrameBytes = 5 << 20

// ErrPermanent marks errors that retrying will not heal (a bad URL, a 4xx answer other than 429).
var ErrPermanent = errors.New("firehose: permanent error")

// Endpoint turns a relay given as a host ("bsky.network"), a base URL ("wss://bsky.network",
// "ws://127.0.0.1:2583", "https://relay.example") or the full subscribeRepos URL into the
// websocket URL of its subscribeRepos endpoint, without a cursor.
func Endpoint(relay string) (*url.URL, error) {
	relay = strings.TrimSpace(relay)
	if relay == "" {
		return nil, fmt.Errorf("%w: empty relay URL", ErrPermanent)
	}
	if !strings.Contains(relay, "://") {
		relay = "wss://" + relay
	}
	u, err := url.Parse(relay)
	if err != nil {
		return nil, fmt.Errorf("%w: relay URL %q: %v", ErrPermanent, relay, err)
	}
	switch u.Scheme {
	case "wss", "ws":
	case "https":
		u.Scheme = "wss"
	case "http":
		u.Scheme = "ws"
	default:
		return nil, fmt.Errorf("%w: relay URL %q: scheme must be wss, ws, https or http", ErrPermanent, relay)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%w: relay URL %q has no host", ErrPermanent, relay)
	}
	path := strings.TrimRight(u.Path, "/")
	switch {
	case path == "" || path == "/xrpc":
		u.Path = Path
	case strings.HasSuffix(path, Path):
		u.Path = path
	default:
		return nil, fmt.Errorf("%w: relay URL %q: path must be empty or %s", ErrPermanent, relay, Path)
	}
	q := u.Query()
	q.Del("cursor")
	u.RawQuery = q.Encode()
	u.Fragment = ""
	return u, nil
}

// Host names a relay for bookkeeping: the endpoint's host, with its port when not the default.
// A cursor means nothing on another relay, so frames are tagged with this.
func Host(endpoint *url.URL) string {
	h := strings.ToLower(endpoint.Hostname())
	p := endpoint.Port()
	if p == "" || (endpoint.Scheme == "wss" && p == "443") || (endpoint.Scheme == "ws" && p == "80") {
		return h
	}
	return net.JoinHostPort(h, p)
}

// DialError is a failed connection attempt, with what the server said when it answered.
type DialError struct {
	URL        string
	Status     int           // HTTP status of the upgrade answer, 0 when there was none
	RetryAfter time.Duration // from a Retry-After header, 0 when absent
	Err        error
}

func (e *DialError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("connect to %s: HTTP %d: %v", e.URL, e.Status, e.Err)
	}
	return fmt.Sprintf("connect to %s: %v", e.URL, e.Err)
}

func (e *DialError) Unwrap() error { return e.Err }

// Permanent reports whether retrying cannot heal the error: a refusal (refused) or an answer
// from something that is not a firehose endpoint (wrongURL).
func (e *DialError) Permanent() bool { return e.refused() || e.wrongURL() }

// refused reports a 4xx but 408 and 429.
func (e *DialError) refused() bool {
	return e.Status >= 400 && e.Status < 500 && e.Status != http.StatusTooManyRequests && e.Status != http.StatusRequestTimeout
}

// wrongURL reports a redirect (not followed: the URL to use is in the message), a 2xx page
// instead of the upgrade, or a server that does not speak TLS on a wss:// URL (a scheme-less URL
// means wss://, a local PDS or relay may want ws://). On a URL that was served before, these
// are the server's moment (maintenance, a CDN) rather than a wrong URL.
func (e *DialError) wrongURL() bool {
	if e.Status >= 200 && e.Status < 400 {
		return true
	}
	var rh tls.RecordHeaderError
	return e.Status == 0 && errors.As(e.Err, &rh)
}

// Conn is one websocket connection to a firehose endpoint. Not safe for concurrent reads.
type Conn struct {
	ws          *websocket.Conn
	readTimeout time.Duration
	done        chan struct{}
}

// DialOptions tune a connection.
type DialOptions struct {
	// ReadTimeout is how long a read may wait for data (pongs included) before the connection
	// counts as stalled. 0 means 60 s.
	ReadTimeout time.Duration
	// PingInterval is how often a ping is sent. 0 means ReadTimeout/3.
	PingInterval time.Duration
	// HandshakeTimeout bounds the HTTP upgrade. 0 means 15 s.
	HandshakeTimeout time.Duration
}

// Dial connects to endpoint, asking for events after cursor when cursor is not nil.
func Dial(ctx context.Context, endpoint *url.URL, cursor *int64, opts DialOptions) (*Conn, error) {
	if opts.ReadTimeout <= 0 {
		opts.ReadTimeout = 60 * time.Second
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = opts.ReadTimeout / 3
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = 15 * time.Second
	}
	u := *endpoint
	if cursor != nil {
		q := u.Query()
		q.Set("cursor", strconv.FormatInt(*cursor, 10))
		u.RawQuery = q.Encode()
	}
	d := websocket.Dialer{
		Proxy:            http.ProxyFromEnvironment,
		HandshakeTimeout: opts.HandshakeTimeout,
		ReadBufferSize:   256 << 10,
		WriteBufferSize:  4 << 10,
	}
	ws, resp, err := d.DialContext(ctx, u.String(), http.Header{"User-Agent": {"backfill"}})
	if err != nil {
		de := &DialError{URL: u.Redacted(), Err: err}
		if resp != nil {
			de.Status = resp.StatusCode
			de.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
			if loc := resp.Header.Get("Location"); loc != "" && resp.StatusCode >= 300 && resp.StatusCode < 400 {
				de.Err = fmt.Errorf("%w: redirected to %s (not followed: give that URL)", err, truncate(loc, 200))
			}
			if resp.Body != nil {
				body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
				resp.Body.Close()
				if msg := strings.TrimSpace(string(body)); msg != "" {
					de.Err = fmt.Errorf("%w: %s", de.Err, msg)
				}
			}
		}
		return nil, de
	}
	ws.SetReadLimit(MaxFrameBytes + 64<<10)
	c := &Conn{ws: ws, readTimeout: opts.ReadTimeout, done: make(chan struct{})}
	ws.SetPongHandler(func(string) error {
		return ws.SetReadDeadline(time.Now().Add(c.readTimeout))
	})
	go c.keepalive(opts.PingInterval)
	return c, nil
}

func (c *Conn) keepalive(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
			// A failed ping is noticed by the reader through its deadline.
			_ = c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(10*time.Second))
		}
	}
}

// ErrStalled is returned by ReadFrame when nothing arrived within the read timeout.
var ErrStalled = errors.New("firehose: connection stalled")

// ErrTextMessage is returned for a text websocket message: the firehose sends binary frames only.
var ErrTextMessage = errors.New("firehose: unexpected text message")

// ReadFrame reads the next binary message into buf (grown as needed) and returns it.
// timeout overrides the connection's read timeout for this call when positive.
func (c *Conn) ReadFrame(buf []byte, timeout time.Duration) ([]byte, error) {
	if timeout <= 0 {
		timeout = c.readTimeout
	}
	if err := c.ws.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return buf[:0], err
	}
	mt, r, err := c.ws.NextReader()
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return buf[:0], ErrStalled
		}
		return buf[:0], err
	}
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return buf[:0], ErrStalled
			}
			return buf[:0], err
		}
	}
	if mt != websocket.BinaryMessage {
		return buf[:0], ErrTextMessage
	}
	return buf, nil
}

// Close closes the connection without waiting for the peer.
func (c *Conn) Close() error {
	select {
	case <-c.done:
	default:
		close(c.done)
	}
	_ = c.ws.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	return c.ws.Close()
}

// parseRetryAfter reads a Retry-After header: seconds or an HTTP date. 0 when absent or bad.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
