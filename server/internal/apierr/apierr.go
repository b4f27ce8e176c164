// Package apierr builds the errors Parley's handlers return: a Connect code,
// a message a person can act on, and an ErrorInfo detail with a stable
// machine-readable reason.
package apierr

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectproto"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Domain is the ErrorInfo domain of every Parley error.
const Domain = "parley.dev"

// New returns a Connect error with code, message and an ErrorInfo detail
// carrying reason (UPPER_SNAKE_CASE, stable across releases).
func New(code connect.Code, reason, message string) *connect.Error {
	err := connect.NewError(code, message)
	if detail, derr := connectproto.NewErrorDetail(&errdetails.ErrorInfo{Reason: reason, Domain: Domain}); derr == nil {
		err = err.WithDetail(detail)
	}
	return err
}

// Internal hides cause from the caller and keeps it for the server's log.
func Internal(cause error) *connect.Error {
	return New(connect.CodeInternal, "INTERNAL", "internal error; the server log has details").WithCause(cause)
}

// WithRetry adds a RetryInfo detail to err: the caller may try again
// after wait.
func WithRetry(err *connect.Error, wait time.Duration) *connect.Error {
	if detail, derr := connectproto.NewErrorDetail(&errdetails.RetryInfo{RetryDelay: durationpb.New(wait)}); derr == nil {
		err = err.WithDetail(detail)
	}
	return err
}

// RetryDelay returns the RetryInfo delay of a Connect error, if it has one.
func RetryDelay(err error) (time.Duration, bool) {
	var cerr *connect.Error
	if !errors.As(err, &cerr) {
		return 0, false
	}
	for _, d := range cerr.Details() {
		if msg, derr := connectproto.UnmarshalErrorDetail(d); derr == nil {
			if info, ok := msg.(*errdetails.RetryInfo); ok {
				return info.GetRetryDelay().AsDuration(), true
			}
		}
	}
	return 0, false
}

// Overloaded is the error for a call the server could not take now because
// its store is overloaded: Unavailable (nothing was done, so any call may be
// retried) with a RetryInfo detail.
func Overloaded(wait time.Duration) *connect.Error {
	return WithRetry(New(connect.CodeUnavailable, "STORE_OVERLOADED",
		fmt.Sprintf("the server is overloaded and did not do this; try again in %s", wait.Round(time.Millisecond))), wait)
}

// StoreUnavailable is the error for a call cut off because the server's
// database could not be reached: Unavailable with a RetryInfo detail. A
// write may or may not have been done: a retry with the same idempotency
// key (request_id, client_message_id) returns its result instead of
// repeating it.
func StoreUnavailable(wait time.Duration) *connect.Error {
	return WithRetry(New(connect.CodeUnavailable, "STORE_UNAVAILABLE",
		fmt.Sprintf("the server could not reach its database; try again in %s (with the same request id, so a write that was done is not repeated)", wait.Round(time.Millisecond))), wait)
}

// Reason returns the ErrorInfo reason of a Connect error, or "".
func Reason(err error) string {
	var cerr *connect.Error
	if !errors.As(err, &cerr) {
		return ""
	}
	for _, d := range cerr.Details() {
		msg, derr := connectproto.UnmarshalErrorDetail(d)
		if info, ok := msg.(*errdetails.ErrorInfo); derr == nil && ok && info.GetDomain() == Domain {
			return info.GetReason()
		}
	}
	return ""
}

// From passes Connect errors through and hides any other error behind
// Internal, so no SQL or internal text reaches a caller.
func From(err error) error {
	var cerr *connect.Error
	if errors.As(err, &cerr) {
		return cerr
	}
	return Internal(err)
}

// CallEnded is the error for a call whose context ended while it ran (the
// caller's deadline passed or the caller went away), so that a store read
// it cut short is not reported as an internal error.
func CallEnded(ctx context.Context) *connect.Error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return New(connect.CodeDeadlineExceeded, "DEADLINE_EXCEEDED", "the call's deadline passed before it finished")
	}
	return New(connect.CodeCanceled, "CANCELED", "the call was canceled before it finished")
}

// Causes of a server stream's end, set on its context by the server.
var (
	// ErrDraining ends streams when the server shuts down.
	ErrDraining = errors.New("the server is shutting down")
	// ErrStreamLifetime ends a stream that reached the maximum lifetime.
	ErrStreamLifetime = errors.New("the stream reached its maximum lifetime")
)

// StreamEnded is the error a server stream returns when its context ends
// before the stream is done, with resume telling the client how to pick up
// where it was: Unavailable (retry at once) when the server drains or the
// stream reached its maximum lifetime, DeadlineExceeded when the caller's
// deadline passed, otherwise Unavailable (the client left).
func StreamEnded(ctx context.Context, resume string) *connect.Error {
	switch cause := context.Cause(ctx); {
	case errors.Is(cause, ErrDraining):
		return New(connect.CodeUnavailable, "SERVER_DRAINING", "the server is shutting down; "+resume)
	case errors.Is(cause, ErrStreamLifetime):
		return New(connect.CodeUnavailable, "STREAM_LIFETIME_REACHED", "the stream reached its maximum lifetime; "+resume)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return New(connect.CodeDeadlineExceeded, "DEADLINE_EXCEEDED", "the call's deadline passed; "+resume)
	}
	return New(connect.CodeUnavailable, "STREAM_INTERRUPTED", "the stream was interrupted; "+resume)
}
