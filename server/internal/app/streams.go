package app

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect/v2"

	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/auth"
	"github.com/parleyhq/parley/server/internal/clientaddr"
)

// endingWriteTimeout bounds each write of a stream the server is ending
// (draining, lifetime reached), the one in flight included, so a reader that
// stalls then does not hold up shutdown for a whole write timeout.
const endingWriteTimeout = time.Second

// writeControl sets the write deadlines of one request's response. A
// stream's writes block while its client does not read (its HTTP/2 window
// or the TCP buffer is full), and no context cancellation reaches a blocked
// write: only a write deadline ends it (net/http resets the HTTP/2 stream or
// fails the HTTP/1.1 connection's write).
type writeControl struct {
	rc      *http.ResponseController
	timeout time.Duration

	mu      sync.Mutex
	writing bool
	ending  bool
}

type writeControlKey struct{}

// withWriteDeadlines gives each request a writeControl with timeout, which
// streams use around every write (see streamLimits).
func withWriteDeadlines(timeout time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wc := &writeControl{rc: http.NewResponseController(w), timeout: timeout}
		if r.ProtoMajor == 1 {
			// An HTTP/1.1 deadline belongs to the connection: clear one a
			// stream left armed for its last write on the previous request.
			_ = wc.rc.SetWriteDeadline(time.Time{}) // not supported: no deadline to clear
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), writeControlKey{}, wc)))
	})
}

// writeControlFrom returns the request's writeControl, or nil.
func writeControlFrom(ctx context.Context) *writeControl {
	wc, _ := ctx.Value(writeControlKey{}).(*writeControl)
	return wc
}

// deadline is when a write starting now must be done.
func (wc *writeControl) deadline() time.Time {
	if wc.ending {
		return time.Now().Add(min(wc.timeout, endingWriteTimeout))
	}
	return time.Now().Add(wc.timeout)
}

// write runs send, a write of the response, under a deadline; after a
// write that succeeded the deadline is cleared, since an HTTP/2 stream is
// reset when its deadline passes even between writes.
func (wc *writeControl) write(send func() error) error {
	if wc == nil {
		return send()
	}
	wc.mu.Lock()
	wc.writing = true
	err := wc.rc.SetWriteDeadline(wc.deadline())
	wc.mu.Unlock()
	if err != nil {
		return apierr.Internal(fmt.Errorf("set stream write deadline: %w", err))
	}
	err = send()
	wc.mu.Lock()
	defer wc.mu.Unlock()
	wc.writing = false
	if err == nil {
		_ = wc.rc.SetWriteDeadline(time.Time{}) // supported: it was just set
	}
	return err
}

// last arms the deadline of the writes connect makes after the handler
// returns (the stream's end and trailers), and leaves it armed.
func (wc *writeControl) last() {
	if wc == nil {
		return
	}
	wc.mu.Lock()
	defer wc.mu.Unlock()
	_ = wc.rc.SetWriteDeadline(wc.deadline()) // supported: streams set it before every write
}

// end tells wc that the server is ending the stream: a write in flight and
// those after it get at most endingWriteTimeout.
func (wc *writeControl) end() {
	if wc == nil {
		return
	}
	wc.mu.Lock()
	defer wc.mu.Unlock()
	wc.ending = true
	if wc.writing {
		_ = wc.rc.SetWriteDeadline(wc.deadline()) // supported: the write in flight set it
	}
}

// deadlineStream writes a stream's headers and messages under wc's
// deadlines.
type deadlineStream struct {
	connect.ServerStream
	wc *writeControl
}

func (s *deadlineStream) SendHeaders() error {
	return s.wc.write(s.ServerStream.SendHeaders)
}

func (s *deadlineStream) Send(msg any) error {
	return s.wc.write(func() error { return s.ServerStream.Send(msg) })
}

// streamCounter counts open streams, in all and per caller, and refuses a
// caller's stream beyond max.
type streamCounter struct {
	max    int
	mu     sync.Mutex
	open   int
	caller map[string]int
}

func newStreamCounter(max int) *streamCounter {
	return &streamCounter{max: max, caller: map[string]int{}}
}

// interceptor counts every stream while its handler runs and refuses
// with ResourceExhausted (reason TOO_MANY_STREAMS) one that would give its
// caller more than max open: the principal, or the client address for an
// anonymous call. It runs after authentication.
func (c *streamCounter) interceptor() connect.ServerInterceptor {
	return func(next connect.ServerFunc) connect.ServerFunc {
		return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) error {
			if spec.StreamType == connect.StreamTypeUnary {
				return next(ctx, spec, stream)
			}
			caller := "address:" + clientaddr.FromContext(ctx)
			if p := auth.FromContext(ctx); p != nil {
				caller = p.Caller()
			}
			if !c.take(caller) {
				return apierr.New(connect.CodeResourceExhausted, "TOO_MANY_STREAMS", fmt.Sprintf(
					"you already have %d streams open, the most one caller may; close one you no longer read before opening another", c.max))
			}
			defer c.release(caller)
			return next(ctx, spec, stream)
		}
	}
}

func (c *streamCounter) take(caller string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.caller[caller] >= c.max {
		return false
	}
	c.caller[caller]++
	c.open++
	return true
}

func (c *streamCounter) release(caller string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.open--
	if c.caller[caller]--; c.caller[caller] == 0 {
		delete(c.caller, caller)
	}
}

// Open reports how many streams are open.
func (c *streamCounter) Open() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.open
}
