// Package validate enforces the protovalidate rules written in Parley's
// .proto files on every request message, before a handler sees it.
package validate

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"buf.build/go/protovalidate"
	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectproto"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"

	"github.com/parleyhq/parley/server/internal/apierr"
)

// NewInterceptor returns a server interceptor that validates each request
// message as it is received. A message that breaks a rule fails the RPC
// with InvalidArgument, a message naming every offending field, and a
// google.rpc.BadRequest detail listing them one by one.
func NewInterceptor() (connect.ServerInterceptor, error) {
	v, err := protovalidate.New()
	if err != nil {
		return nil, fmt.Errorf("validate: build validator: %w", err)
	}
	return func(next connect.ServerFunc) connect.ServerFunc {
		return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) error {
			return next(ctx, spec, &validatingStream{ServerStream: stream, v: v})
		}
	}, nil
}

type validatingStream struct {
	connect.ServerStream
	v protovalidate.Validator
}

func (s *validatingStream) Receive(msg any) error {
	if err := s.ServerStream.Receive(msg); err != nil {
		return err
	}
	m, ok := msg.(proto.Message)
	if !ok {
		return nil
	}
	return Check(s.v, m)
}

// Check validates m and converts a rule violation into Parley's
// InvalidArgument error. Other failures (a rule that does not compile) are
// internal errors.
func Check(v protovalidate.Validator, m proto.Message) error {
	err := v.Validate(m)
	if err == nil {
		return nil
	}
	var verr *protovalidate.ValidationError
	if !errors.As(err, &verr) {
		return apierr.Internal(fmt.Errorf("validate %s: %w", m.ProtoReflect().Descriptor().FullName(), err))
	}
	parts := make([]string, 0, len(verr.Violations))
	bad := &errdetails.BadRequest{}
	for _, viol := range verr.Violations {
		field := protovalidate.FieldPathString(viol.Proto.GetField())
		desc := viol.Proto.GetMessage()
		if desc == "" {
			desc = viol.Proto.GetRuleId()
		}
		parts = append(parts, field+": "+desc)
		bad.FieldViolations = append(bad.FieldViolations, &errdetails.BadRequest_FieldViolation{
			Field:       field,
			Description: desc,
			Reason:      viol.Proto.GetRuleId(),
		})
	}
	cerr := apierr.New(connect.CodeInvalidArgument, "INVALID_REQUEST", "invalid request: "+strings.Join(parts, "; "))
	if detail, derr := connectproto.NewErrorDetail(bad); derr == nil {
		cerr = cerr.WithDetail(detail)
	}
	return cerr
}
