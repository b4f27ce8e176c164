package messaging_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"io"
	"net/http"
	"runtime"
	"testing"
	"time"

	"connectrpc.com/connect/v2"

	"github.com/parleyhq/parley/clients/go/parley"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/app"
	"github.com/parleyhq/parley/server/internal/servertest"
)

// gzipZeros returns n zero bytes, gzipped (about n/1000 bytes).
func gzipZeros(t *testing.T, n int) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	chunk := make([]byte, 1<<20)
	for written := 0; written < n; written += len(chunk) {
		if _, err := zw.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestCompressedRequestInflatingPastLimit sends a small gzip body that
// inflates to 64 MiB, over Connect and gRPC. The server must refuse it
// with ResourceExhausted after reading just past its 1 MiB limit, so the
// process allocates nowhere near 64 MiB.
func TestCompressedRequestInflatingPastLimit(t *testing.T) {
	srv := servertest.Start(t)
	token, _ := startGuest(t, srv)
	const inflated = 64 << 20
	bomb := gzipZeros(t, inflated)
	url := srv.URL + "/parley.v1.MessagingService/SendMessage"
	hc := parley.DefaultHTTPClient()
	before := countEvents(t, srv)

	for _, tc := range []struct {
		name    string
		request func() *http.Request
		code    func(*http.Response, []byte) string
	}{
		{"connect", func() *http.Request {
			r, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(bomb))
			r.Header.Set("Content-Type", "application/proto")
			r.Header.Set("Content-Encoding", "gzip")
			return r
		}, func(_ *http.Response, body []byte) string {
			if bytes.Contains(body, []byte(`"code":"resource_exhausted"`)) {
				return "resource_exhausted"
			}
			return string(body)
		}},
		{"grpc", func() *http.Request {
			frame := make([]byte, 5, 5+len(bomb))
			frame[0] = 1 // compressed
			binary.BigEndian.PutUint32(frame[1:], uint32(len(bomb)))
			r, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(append(frame, bomb...)))
			r.Header.Set("Content-Type", "application/grpc")
			r.Header.Set("Grpc-Encoding", "gzip")
			r.Header.Set("Te", "trailers")
			return r
		}, func(resp *http.Response, _ []byte) string {
			if resp.Trailer.Get("Grpc-Status") == "8" {
				return "resource_exhausted"
			}
			return "grpc-status " + resp.Trailer.Get("Grpc-Status") + ": " + resp.Trailer.Get("Grpc-Message")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.request()
			req.Header.Set("Authorization", "Bearer "+token)
			var m0, m1 runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&m0)
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			runtime.ReadMemStats(&m1)
			if got := tc.code(resp, body); got != "resource_exhausted" {
				t.Fatalf("response: %s", got)
			}
			if grew := m1.TotalAlloc - m0.TotalAlloc; grew > 24<<20 {
				t.Fatalf("refusing a %d MiB bomb allocated %d MiB", inflated>>20, grew>>20)
			}
		})
	}
	if countEvents(t, srv) != before {
		t.Fatal("the refused requests stored events")
	}
}

// TestStreamsEndAtMaxLifetimeWithResumeCode: a stream lives on until its
// lifetime, less up to a tenth, has passed on the server's clock (a fake
// one, advanced by the test), then ends with Unavailable and
// STREAM_LIFETIME_REACHED.
func TestStreamsEndAtMaxLifetimeWithResumeCode(t *testing.T) {
	const lifetime = time.Hour
	srv := servertest.Start(t, servertest.WithFakeClock(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)),
		servertest.WithAppOptions(app.Options{MaxStreamLifetime: lifetime, Heartbeat: 10 * lifetime}))
	token, convID := startGuest(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	guest := srv.Client(parley.Connect, token)
	for _, protocol := range []parley.Protocol{parley.Connect, parley.GRPC, parley.GRPCWeb} {
		t.Run(protocol.String(), func(t *testing.T) {
			stream, err := srv.Client(protocol, token).Messaging.Subscribe(ctx, &parleyv1.SubscribeRequest{ConversationId: convID})
			if err != nil {
				t.Fatal(err)
			}
			defer stream.Close()
			// The lifetime was armed before the stream sent anything.
			var last int64
			for last == 0 {
				item, err := stream.Receive()
				if err != nil {
					t.Fatal(err)
				}
				last = item.GetEvent().GetSeq()
			}
			// Just short of the shortest lifetime, it still delivers.
			srv.Clock.Advance(lifetime*9/10 - time.Millisecond)
			sent, err := guest.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: convID, ClientMessageId: "lifetime-" + protocol.String(), Text: "still there?"})
			if err != nil {
				t.Fatal(err)
			}
			for last < sent.GetEvent().GetSeq() {
				item, err := stream.Receive()
				if err != nil {
					t.Fatalf("the stream ended before its lifetime: %v", err)
				}
				last = max(last, item.GetEvent().GetSeq())
			}
			srv.Clock.Advance(lifetime / 10)
			for {
				if _, err = stream.Receive(); err != nil {
					break
				}
			}
			if connect.CodeOf(err) != connect.CodeUnavailable || apierr.Reason(err) != "STREAM_LIFETIME_REACHED" {
				t.Fatalf("stream ended with %v (reason %q)", err, apierr.Reason(err))
			}
		})
	}
	armed := srv.Clock.Armed()
	work, err := srv.Client(parley.GRPC, servertest.AbelToken).Routing.WatchWork(ctx, &parleyv1.WatchWorkRequest{})
	if err != nil {
		t.Fatal(err)
	}
	defer work.Close()
	if err := srv.Clock.WaitArmed(ctx, armed+1); err != nil { // its lifetime
		t.Fatal(err)
	}
	srv.Clock.Advance(lifetime)
	for {
		if _, err = work.Receive(); err != nil {
			break
		}
	}
	if connect.CodeOf(err) != connect.CodeUnavailable || apierr.Reason(err) != "STREAM_LIFETIME_REACHED" {
		t.Fatalf("work stream ended with %v", err)
	}
}
