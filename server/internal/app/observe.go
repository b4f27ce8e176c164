package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"strings"
	"time"

	"buf.build/go/protovalidate"
	"connectrpc.com/connect/v2"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/clock"
	"github.com/parleyhq/parley/server/internal/store"
)

// observe logs server-side failures with their hidden cause and turns a
// panicking handler into an Internal error instead of a dropped connection.
// A failure caused by the caller's own deadline or cancellation is answered
// as such (DeadlineExceeded, Canceled) and not logged. It logs procedures
// and codes only: never tokens or message bodies.
//
// Every error leaves it with an ErrorInfo reason: a request that cannot be
// read is refused as such (requestStream), a protovalidate refusal gets
// INVALID_FIELD, and any other error that lacks a reason gets one (see
// withReason). Refusals made before the interceptors run get theirs from
// withRefusals.
func observe(log *slog.Logger) connect.ServerInterceptor {
	return func(next connect.ServerFunc) connect.ServerFunc {
		return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) (err error) {
			defer func() {
				if r := recover(); r != nil {
					log.Error("handler panicked", "procedure", spec.Procedure, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
					err = apierr.Internal(fmt.Errorf("panic: %v", r))
				}
			}()
			err = next(ctx, spec, &requestStream{ServerStream: stream, ctx: ctx, spec: spec})
			if err == nil {
				return nil
			}
			switch connect.CodeOf(err) {
			case connect.CodeInternal, connect.CodeUnknown, connect.CodeDataLoss:
				if ctx.Err() != nil {
					// The caller's deadline or cancellation cut the work short.
					return apierr.CallEnded(ctx)
				}
				var cerr *connect.Error
				cause := err
				if errors.As(err, &cerr) && cerr.Unwrap() != nil {
					cause = cerr.Unwrap()
				}
				if wait, ok := store.IsOverloaded(cause); ok {
					log.Warn("store overloaded", "procedure", spec.Procedure, "cause", cause)
					return apierr.Overloaded(wait)
				}
				if store.IsUnavailable(cause) {
					log.Warn("store unavailable", "procedure", spec.Procedure, "cause", cause)
					return apierr.StoreUnavailable(store.RetryAfter)
				}
				log.Error("rpc failed", "procedure", spec.Procedure, "code", connect.CodeOf(err).String(), "cause", cause)
			}
			return withReason(err)
		}
	}
}

// withReason returns err with a parley.dev ErrorInfo reason: as it is if it
// has one; a protovalidate refusal with INVALID_FIELD; an internal failure
// (or an error that is not a Connect error) hidden behind apierr.Internal;
// any other Connect error with its code as the reason (NOT_FOUND, ...),
// keeping its message, details and cause.
func withReason(err error) error {
	var cerr *connect.Error
	if !errors.As(err, &cerr) {
		return apierr.Internal(err)
	}
	if apierr.Reason(cerr) != "" {
		return err
	}
	switch code := cerr.Code(); code {
	case connect.CodeInternal, connect.CodeUnknown, connect.CodeDataLoss:
		return apierr.Internal(err)
	case connect.CodeInvalidArgument:
		if _, ok := errors.AsType[*protovalidate.ValidationError](err); ok {
			return reasoned(cerr, code, "INVALID_FIELD", cerr.Message())
		}
		return reasoned(cerr, code, "INVALID_ARGUMENT", cerr.Message())
	default:
		return reasoned(cerr, code, strings.ToUpper(code.String()), cerr.Message())
	}
}

// reasoned is cerr with code, reason and message, keeping cerr's details
// and, as the cause, cerr itself.
func reasoned(cerr *connect.Error, code connect.Code, reason, message string) *connect.Error {
	out := apierr.New(code, reason, message).WithCause(cerr)
	for _, d := range cerr.Details() {
		out = out.WithDetail(d)
	}
	return out
}

// requestStream gives the errors of reading the request a reason; they come
// from the transport, before any handler code sees the request:
// REQUEST_TOO_LARGE (over the read limit, compressed or not),
// MALFORMED_REQUEST (a body that does not decode, broken framing, a unary
// call without exactly one message) and REQUEST_READ_FAILED (the body could
// not be read). Each keeps Connect's code, except that broken framing and
// unreadable requests, which Connect reports as Internal and Unknown, are
// the caller's InvalidArgument.
type requestStream struct {
	connect.ServerStream
	ctx  context.Context
	spec connect.Spec
}

func (s *requestStream) Receive(dst any) error {
	err := s.ServerStream.Receive(dst)
	if err == nil || errors.Is(err, io.EOF) {
		return err
	}
	var cerr *connect.Error
	if !errors.As(err, &cerr) || apierr.Reason(cerr) != "" {
		return err
	}
	if s.ctx.Err() != nil {
		return apierr.CallEnded(s.ctx)
	}
	switch code := cerr.Code(); code {
	case connect.CodeResourceExhausted:
		return reasoned(cerr, code, "REQUEST_TOO_LARGE", "the request is too large: "+cerr.Message())
	case connect.CodeInvalidArgument, connect.CodeUnimplemented:
		return reasoned(cerr, code, "MALFORMED_REQUEST", s.malformed(cerr))
	case connect.CodeInternal:
		return reasoned(cerr, connect.CodeInvalidArgument, "MALFORMED_REQUEST", s.malformed(cerr))
	case connect.CodeUnknown:
		// The caller's call ended (handled above) or it sent what cannot
		// be read, such as a Connect GET message that is not base64.
		return reasoned(cerr, connect.CodeInvalidArgument, "REQUEST_READ_FAILED", "the request could not be read: "+cerr.Message())
	}
	return err
}

// malformed words a request that does not decode, naming the message the
// method expects.
func (s *requestStream) malformed(cerr *connect.Error) string {
	if method, ok := s.spec.Schema.(protoreflect.MethodDescriptor); ok {
		return fmt.Sprintf("malformed request (want a %s): %s", method.Input().FullName(), cerr.Message())
	}
	return "malformed request: " + cerr.Message()
}

// streamLimits ends a streaming call's context when the server drains
// (so shutdown is not held up) or when the stream has lived for lifetime
// on clk, minus up to a tenth at random so that clients connected together
// do not all come back at once. Handlers then end with apierr.StreamEnded, whose
// code and message tell the client to resume.
//
// Every write of the stream has a deadline (see writeControl): a client
// that stops reading cannot hold its handler beyond it, and once the stream
// is ending a write blocked on such a client fails within
// endingWriteTimeout, since the cancelled context does not reach it.
func streamLimits(clk clock.Clock, draining context.Context, lifetime time.Duration) connect.ServerInterceptor {
	return func(next connect.ServerFunc) connect.ServerFunc {
		return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) error {
			if spec.StreamType == connect.StreamTypeUnary {
				return next(ctx, spec, stream)
			}
			wc := writeControlFrom(ctx)
			ctx, cancel := context.WithCancelCause(ctx)
			defer cancel(nil)
			end := func(cause error) {
				cancel(cause)
				wc.end()
			}
			stop := context.AfterFunc(draining, func() { end(apierr.ErrDraining) })
			defer stop()
			jitter := time.Duration(rand.Int64N(int64(lifetime)/10 + 1))
			timer := clk.AfterFunc(lifetime-jitter, func() { end(apierr.ErrStreamLifetime) })
			defer timer.Stop()
			err := next(ctx, spec, &deadlineStream{ServerStream: stream, wc: wc})
			wc.last()
			return err
		}
	}
}
