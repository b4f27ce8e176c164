package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"

	"connectrpc.com/connect/v2"

	"github.com/parleyhq/parley/server/internal/apierr"
)

// observe logs server-side failures with their hidden cause and turns a
// panicking handler into an Internal error instead of a dropped connection.
// It logs procedures and codes only: never tokens or message bodies.
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

// drainStreams ends a streaming call's context when draining ends, so
// long-lived streams finish (with Unavailable) and shutdown is not held up.
func drainStreams(draining context.Context) connect.ServerInterceptor {
	return func(next connect.ServerFunc) connect.ServerFunc {
		return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) error {
			if spec.StreamType == connect.StreamTypeUnary {
				return next(ctx, spec, stream)
			}
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			stop := context.AfterFunc(draining, cancel)
			defer stop()
			return next(ctx, spec, stream)
		}
	}
}
