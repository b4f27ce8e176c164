package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"time"

	"connectrpc.com/connect/v2"

	"github.com/parleyhq/parley/server/internal/apierr"
)

// observe logs server-side failures with their hidden cause and turns a
// panicking handler into an Internal error instead of a dropped connection.
// A failure caused by the caller's own deadline or cancellation is answered
// as such (DeadlineExceeded, Canceled) and not logged. It logs procedures
// and codes only: never tokens or message bodies.
func observe(log *slog.Logger) connect.ServerInterceptor {
	return func(next connect.ServerFunc) connect.ServerFunc {
		return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) (err error) {
			defer func() {
				if r := recover(); r != nil {
					log.Error("handler panicked", "procedure", spec.Procedure, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
					err = apierr.Internal(fmt.Errorf("panic: %v", r))
				}
			}()
			err = next(ctx, spec, stream)
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
				log.Error("rpc failed", "procedure", spec.Procedure, "code", connect.CodeOf(err).String(), "cause", cause)
			}
			return err
		}
	}
}

// streamLimits ends a streaming call's context when the server drains
// (so shutdown is not held up) or when the stream has lived for lifetime,
// minus up to a tenth at random so that clients connected together do not
// all come back at once. Handlers then end with apierr.StreamEnded, whose
// code and message tell the client to resume.
func streamLimits(draining context.Context, lifetime time.Duration) connect.ServerInterceptor {
	return func(next connect.ServerFunc) connect.ServerFunc {
		return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) error {
			if spec.StreamType == connect.StreamTypeUnary {
				return next(ctx, spec, stream)
			}
			ctx, cancel := context.WithCancelCause(ctx)
			defer cancel(nil)
			stop := context.AfterFunc(draining, func() { cancel(apierr.ErrDraining) })
			defer stop()
			jitter := time.Duration(rand.Int64N(int64(lifetime)/10 + 1))
			timer := time.AfterFunc(lifetime-jitter, func() { cancel(apierr.ErrStreamLifetime) })
			defer timer.Stop()
			return next(ctx, spec, stream)
		}
	}
}
