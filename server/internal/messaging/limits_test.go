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

func TestStreamsEndAtMaxLifetimeWithResumeCode(t *testing.T) {
	const lifetime = 300 * time.Millisecond
	srv := servertest.Start(t, servertest.WithAppOptions(app.Options{MaxStreamLifetime: lifetime}))
	token, convID := startGuest(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, protocol := range []parley.Protocol{parley.Connect, parley.GRPC, parley.GRPCWeb} {
		t.Run(protocol.String(), func(t *testing.T) {
			start := time.Now()
			stream, err := srv.Client(protocol, token).Messaging.Subscribe(ctx, &parleyv1.SubscribeRequest{ConversationId: convID})
			if err != nil {
				t.Fatal(err)
			}
			defer stream.Close()
			var last int64
			for {
				item, err := stream.Receive()
				if err != nil {
					if connect.CodeOf(err) != connect.CodeUnavailable || apierr.Reason(err) != "STREAM_LIFETIME_REACHED" {
						t.Fatalf("stream ended with %v (reason %q)", err, apierr.Reason(err))
					}
					break
				}
				last = max(last, item.GetEvent().GetSeq())
			}
			if lived := time.Since(start); lived < lifetime*9/10 {
				t.Fatalf("stream ended after %s, before its lifetime", lived)
			}
			if last == 0 {
				t.Fatal("the stream replayed nothing before it ended")
			}
		})
	}
	work, err := srv.Client(parley.GRPC, servertest.AbelToken).Routing.WatchWork(ctx, &parleyv1.WatchWorkRequest{})
	if err != nil {
		t.Fatal(err)
	}
	defer work.Close()
	for {
		if _, err = work.Receive(); err != nil {
			break
		}
	}
	if connect.CodeOf(err) != connect.CodeUnavailable || apierr.Reason(err) != "STREAM_LIFETIME_REACHED" {
		t.Fatalf("work stream ended with %v", err)
	}
}
