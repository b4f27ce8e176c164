package metrics

import (
	"context"

	"connectrpc.com/connect/v2"
)

// Interceptor counts every RPC by procedure and Connect code when it
// finishes; it times unary RPCs, and counts streams as they open, keeps
// the open ones in a gauge and times how long they stayed open. Put it
// outside the interceptors that turn errors into the codes the client
// sees, so that it counts those codes.
func (r *Registry) Interceptor() connect.ServerInterceptor {
	return func(next connect.ServerFunc) connect.ServerFunc {
		return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) error {
			start := r.clk.Now()
			if spec.StreamType == connect.StreamTypeUnary {
				err := next(ctx, spec, stream)
				r.rpcDuration.WithLabelValues(spec.Procedure).Observe(r.clk.Now().Sub(start).Seconds())
				r.rpcs.WithLabelValues(spec.Procedure, codeOf(err)).Inc()
				return err
			}
			r.streamsOpened.WithLabelValues(spec.Procedure).Inc()
			open := r.streamsOpen.WithLabelValues(spec.Procedure)
			open.Inc()
			defer open.Dec()
			err := next(ctx, spec, stream)
			r.streamDuration.WithLabelValues(spec.Procedure).Observe(r.clk.Now().Sub(start).Seconds())
			r.rpcs.WithLabelValues(spec.Procedure, codeOf(err)).Inc()
			return err
		}
	}
}

// codeOf is err's Connect code as the code label spells it: "ok" for no
// error, "unknown" for an error that is not a Connect error.
func codeOf(err error) string {
	if err == nil {
		return "ok"
	}
	return connect.CodeOf(err).String()
}
