package app_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	validatepb "buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"buf.build/go/protovalidate"
	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"connectrpc.com/connect/v2/connectproto"
	"connectrpc.com/grpcreflect/v2"
	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/parleyhq/parley/clients/go/parley"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/app"
	"github.com/parleyhq/parley/server/internal/servertest"
)

// wireProtocols are the client options of the three protocols parleyd serves.
var wireProtocols = []struct {
	name string
	opts []connecthttp.Option
}{
	{"connect", nil},
	{"grpc", []connecthttp.Option{connecthttp.WithGRPC()}},
	{"grpcweb", []connecthttp.Option{connecthttp.WithGRPCWeb()}},
}

// rpcClient is a bare Connect client of srv; header, when set, is forced
// onto every HTTP request (after the client set its own headers).
func rpcClient(srv *servertest.Server, header http.Header, opts ...connecthttp.Option) *connect.Client {
	httpClient := parley.DefaultHTTPClient()
	if header != nil {
		httpClient.Transport = headerTransport{header, httpClient.Transport}
	}
	return connect.NewClient(connecthttp.NewTransport(httpClient, srv.URL, opts...))
}

// wantRefusal fails unless err is a Connect error with code and, in
// domain parley.dev, reason.
func wantRefusal(t *testing.T, what string, err error, code connect.Code, reason string) {
	t.Helper()
	if connect.CodeOf(err) != code || apierr.Reason(err) != reason {
		t.Errorf("%s: got %v (reason %q), want %v with reason %s", what, err, apierr.Reason(err), code, reason)
	}
}

// junkCodec sends junk instead of the encoded request.
type junkCodec struct {
	connect.Codec
	junk []byte
}

func (c junkCodec) MarshalWrite(_ context.Context, dst io.Writer, _ any) error {
	_, err := dst.Write(c.junk)
	return err
}

// TestOversizeRequestsCarryAReason: a request over the read limit is
// refused with ResourceExhausted and reason REQUEST_TOO_LARGE on every
// protocol, plain or gzipped (where the decompressed size is what counts),
// and nothing is written.
func TestOversizeRequestsCarryAReason(t *testing.T) {
	srv := servertest.Start(t, servertest.WithAppOptions(app.Options{MaxRequestBytes: 16 << 10}))
	ctx := t.Context()
	big := &parleyv1.StartGuestChatRequest{
		RequestId: uuid.NewString(), Name: "Big", Email: "big@example.com", IssueType: "billing",
		FirstMessage: strings.Repeat("a", 64<<10),
	}
	for _, p := range wireProtocols {
		for _, gzip := range []bool{false, true} {
			opts := p.opts
			if gzip {
				opts = append(opts[:len(opts):len(opts)], connecthttp.WithSendGzip())
			}
			session := parleyv1connect.NewSessionServiceClient(rpcClient(srv, nil, opts...))
			_, err := session.StartGuestChat(ctx, big)
			wantRefusal(t, p.name+map[bool]string{true: " gzipped", false: ""}[gzip], err, connect.CodeResourceExhausted, "REQUEST_TOO_LARGE")
		}
	}
	if n, err := srv.DB.Interaction.Query().Count(ctx); err != nil || n != 0 {
		t.Fatalf("%d interactions stored after oversize requests (%v)", n, err)
	}
}

// TestMalformedRequestsCarryAReason: a body that does not decode (binary
// or JSON, on every protocol) and a unary call without a request message
// are refused with reason MALFORMED_REQUEST.
func TestMalformedRequestsCarryAReason(t *testing.T) {
	srv := servertest.Start(t)
	ctx := t.Context()
	codecs := map[string]connect.Codec{
		"binary": junkCodec{connectproto.NewBinaryCodec(), []byte{0xff, 0xff, 0xff, 0xff}},
		"json":   junkCodec{connectproto.NewJSONCodec(), []byte(`{"siteId": `)},
	}
	for _, p := range wireProtocols {
		for name, codec := range codecs {
			opts := append(p.opts[:len(p.opts):len(p.opts)], connecthttp.WithCodecs(codec))
			session := parleyv1connect.NewSessionServiceClient(rpcClient(srv, nil, opts...))
			_, err := session.GetPreChatForm(ctx, &parleyv1.GetPreChatFormRequest{})
			wantRefusal(t, p.name+" "+name, err, connect.CodeInvalidArgument, "MALFORMED_REQUEST")
		}
	}

	// A unary call whose stream carries no request message (gRPC framing).
	spec := connect.Spec{Procedure: parleyv1connect.SessionServiceGetPreChatFormProcedure, StreamType: connect.StreamTypeClient}
	stream, err := rpcClient(srv, nil, connecthttp.WithGRPC()).CallClientStream(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	err = stream.Receive(&parleyv1.GetPreChatFormResponse{})
	stream.Close()
	wantRefusal(t, "unary call without a message", err, connect.CodeUnimplemented, "MALFORMED_REQUEST")
}

// identityCompressor is a compressor the server does not know by name.
type identityCompressor struct{}

func (identityCompressor) Name() string { return "br" }
func (identityCompressor) Compress(dst io.Writer) (io.WriteCloser, error) {
	return nopWriteCloser{dst}, nil
}
func (identityCompressor) Decompress(src io.Reader) (io.ReadCloser, error) {
	return io.NopCloser(src), nil
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// TestRefusalsBeforeTheHandlerCarryAReason: what the Connect handlers
// refuse before any interceptor runs (an unknown compression, a bad
// timeout or protocol version, a wrong HTTP method or content type)
// carries a reason too, in the request's protocol.
func TestRefusalsBeforeTheHandlerCarryAReason(t *testing.T) {
	srv := servertest.Start(t)
	ctx := t.Context()
	req := &parleyv1.StartGuestChatRequest{RequestId: uuid.NewString(), Name: "V", Email: "v@example.com", IssueType: "billing", FirstMessage: "hello"}
	for _, p := range wireProtocols {
		opts := append(p.opts[:len(p.opts):len(p.opts)],
			connecthttp.WithCompressors(identityCompressor{}), connecthttp.WithSendCompression("br"))
		_, err := parleyv1connect.NewSessionServiceClient(rpcClient(srv, nil, opts...)).StartGuestChat(ctx, req)
		wantRefusal(t, p.name+" unknown compression", err, connect.CodeUnimplemented, "UNSUPPORTED_COMPRESSION")

		timeout := http.Header{"Grpc-Timeout": {"soon"}}
		if p.name == "connect" {
			timeout = http.Header{"Connect-Timeout-Ms": {"soon"}}
		}
		_, err = parleyv1connect.NewSessionServiceClient(rpcClient(srv, timeout, p.opts...)).StartGuestChat(ctx, req)
		wantRefusal(t, p.name+" bad timeout", err, connect.CodeInvalidArgument, "INVALID_TIMEOUT")
	}
	for _, c := range []struct {
		name string
		call func(*connect.Client) error
	}{
		{"unary", func(c *connect.Client) error {
			_, err := parleyv1connect.NewSessionServiceClient(c).StartGuestChat(ctx, req)
			return err
		}},
		{"stream", func(c *connect.Client) error {
			stream, err := parleyv1connect.NewMessagingServiceClient(c).Subscribe(ctx, &parleyv1.SubscribeRequest{ConversationId: uuid.NewString()})
			if err != nil {
				return err
			}
			defer stream.Close()
			for {
				if _, err := stream.Receive(); err != nil {
					return err
				}
			}
		}},
	} {
		err := c.call(rpcClient(srv, http.Header{"Connect-Protocol-Version": {"2"}}))
		wantRefusal(t, "Connect "+c.name+" protocol version 2", err, connect.CodeInvalidArgument, "UNSUPPORTED_PROTOCOL_VERSION")
	}
	if n, err := srv.DB.Interaction.Query().Count(ctx); err != nil || n != 0 {
		t.Fatalf("%d interactions stored after refused requests (%v)", n, err)
	}

	// Plain-HTTP refusals keep their status and headers and gain a
	// Connect error body.
	for _, c := range []struct {
		name, method, path, contentType string
		status                          int
		header                          string
		reason                          string
	}{
		{"PUT", http.MethodPut, parleyv1connect.SessionServiceStartGuestChatProcedure, "application/json", http.StatusMethodNotAllowed, "Allow", "HTTP_METHOD_NOT_ALLOWED"},
		{"GET of a write", http.MethodGet, parleyv1connect.SessionServiceStartGuestChatProcedure + "?connect=v1&encoding=json&message={}", "", http.StatusMethodNotAllowed, "Allow", "HTTP_METHOD_NOT_ALLOWED"},
		{"text/plain", http.MethodPost, parleyv1connect.SessionServiceGetPreChatFormProcedure, "text/plain", http.StatusUnsupportedMediaType, "Accept-Post", "UNSUPPORTED_MEDIA_TYPE"},
		{"GET without encoding", http.MethodGet, parleyv1connect.SessionServiceGetPreChatFormProcedure + "?connect=v1&message={}", "", http.StatusUnsupportedMediaType, "", "UNSUPPORTED_MEDIA_TYPE"},
		{"GET without message", http.MethodGet, parleyv1connect.SessionServiceGetPreChatFormProcedure + "?connect=v1&encoding=json", "", http.StatusBadRequest, "", "MALFORMED_REQUEST"},
	} {
		resp, body := rawCall(t, srv, c.method, c.path, c.contentType, "{}")
		if resp.StatusCode != c.status || (c.header != "" && resp.Header.Get(c.header) == "") {
			t.Errorf("%s: status %d, %s %q; want %d and the header", c.name, resp.StatusCode, c.header, resp.Header.Get(c.header), c.status)
		}
		if got := connectJSONReason(t, body); got != c.reason {
			t.Errorf("%s: reason %q, want %s (body %s)", c.name, got, c.reason, body)
		}
	}
	// A GET of a read still works.
	resp, body := rawCall(t, srv, http.MethodGet, parleyv1connect.SessionServiceGetPreChatFormProcedure+"?connect=v1&encoding=json&message={}", "", "")
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET of GetPreChatForm: %d %s", resp.StatusCode, body)
	}
}

// rawCall sends one HTTP request to srv and returns the response and body.
func rawCall(t *testing.T, srv *servertest.Server, method, path, contentType, body string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if method != http.MethodGet {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := parley.DefaultHTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, data
}

// connectJSONReason returns the parley.dev ErrorInfo reason of a Connect
// unary error body, or "".
func connectJSONReason(t *testing.T, body []byte) string {
	t.Helper()
	var wire struct {
		Details []struct {
			Type  string `json:"type"`
			Value string `json:"value"`
		} `json:"details"`
	}
	if err := json.Unmarshal(body, &wire); err != nil {
		return ""
	}
	for _, d := range wire.Details {
		if d.Type != "google.rpc.ErrorInfo" {
			continue
		}
		raw, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(d.Value, "="))
		if err != nil {
			t.Fatalf("detail value %q: %v", d.Value, err)
		}
		var info errdetails.ErrorInfo
		if err := proto.Unmarshal(raw, &info); err != nil {
			t.Fatal(err)
		}
		if info.GetDomain() == apierr.Domain {
			return info.GetReason()
		}
	}
	return ""
}

// TestUnknownProceduresCarryAReason: a call of a method a served service
// lacks, or of a service the server does not serve, is refused with
// Unimplemented and reason UNKNOWN_METHOD or UNKNOWN_SERVICE on every
// protocol, with or without credentials; other paths still 404.
func TestUnknownProceduresCarryAReason(t *testing.T) {
	srv := servertest.Start(t)
	ctx := t.Context()
	for _, p := range wireProtocols {
		for _, header := range []http.Header{nil, {"Authorization": {"Bearer " + servertest.AdminToken}}} {
			c := rpcClient(srv, header, p.opts...)
			for procedure, reason := range map[string]string{
				"/parley.v1.AccessService/StealEverything": "UNKNOWN_METHOD",
				"/grpc.health.v1.Health/Nope":              "UNKNOWN_METHOD",
				"/parley.v9.NoSuchService/Call":            "UNKNOWN_SERVICE",
			} {
				err := c.CallUnary(ctx, connect.Spec{Procedure: procedure, StreamType: connect.StreamTypeUnary},
					&parleyv1.GetPreChatFormRequest{}, &parleyv1.GetPreChatFormResponse{})
				wantRefusal(t, p.name+" "+procedure, err, connect.CodeUnimplemented, reason)
			}
			stream, err := c.CallServerStream(ctx, connect.Spec{Procedure: "/parley.v1.MessagingService/Nope", StreamType: connect.StreamTypeServer},
				&parleyv1.SubscribeRequest{})
			if err == nil {
				err = stream.Receive(&parleyv1.SubscribeResponse{})
				stream.Close()
			}
			wantRefusal(t, p.name+" unknown streaming method", err, connect.CodeUnimplemented, "UNKNOWN_METHOD")
		}
	}
	if strings.Contains(srv.Log.String(), "no authorization policy") {
		t.Errorf("an unknown method reached the auth interceptor:\n%s", srv.Log.String())
	}
	// Any other request under a served service's path, whatever its HTTP
	// method or shape, gets the reason too (as a Connect error), and so
	// does one under a path shaped like a service's.
	for _, call := range []struct{ method, path, reason string }{
		{http.MethodGet, "/parley.v1.AccessService/", "UNKNOWN_METHOD"},
		{http.MethodPut, "/parley.v1.RoutingService/Nope", "UNKNOWN_METHOD"},
		{http.MethodPost, "/parley.v1.RoutingService/ListQueues/", "UNKNOWN_METHOD"},
		{http.MethodPost, "/parley.v1.RoutingService", "UNKNOWN_METHOD"},
		{http.MethodGet, "/parley.v1.RoutingService/Nope?encoding=json&message=%7B%7D", "UNKNOWN_METHOD"},
		{http.MethodPatch, "/parley.v9.Foo/Bar", "UNKNOWN_SERVICE"},
	} {
		resp, body := rawCall(t, srv, call.method, call.path, "application/json", "{}")
		if got := connectJSONReason(t, body); resp.StatusCode != http.StatusNotImplemented || got != call.reason {
			t.Errorf("%s %s: status %d, reason %q, want 501 %s", call.method, call.path, resp.StatusCode, got, call.reason)
		}
	}
	// A Connect GET whose message is not base64 is the caller's error.
	resp, body := rawCall(t, srv, http.MethodGet, "/parley.v1.SessionService/GetPreChatForm?encoding=proto&base64=1&message=!!!&connect=v1", "", "")
	if got := connectJSONReason(t, body); resp.StatusCode != http.StatusBadRequest || got != "REQUEST_READ_FAILED" {
		t.Errorf("GET with a message that is not base64: status %d, reason %q, want 400 REQUEST_READ_FAILED", resp.StatusCode, got)
	}
	// Not RPCs: left to the mux (the web apps, which serve / and know
	// neither of these).
	for _, path := range []string{"/favicon.ico", "/static/app.js"} {
		if resp, _ := rawCall(t, srv, http.MethodGet, path, "", ""); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", path, resp.StatusCode)
		}
	}
	// Reflection, which the messages point to, lists the services.
	reflection := grpcreflect.NewClient(rpcClient(srv, nil, connecthttp.WithGRPC())).NewStream(ctx)
	services, err := reflection.ListServices()
	reflection.Close()
	if err != nil || !slices.Contains(services, "parley.v1.AccessService") {
		t.Errorf("reflection lists %v (%v)", services, err)
	}
	// The health service, served beside the Connect server, still answers.
	resp, body = rawCall(t, srv, http.MethodPost, "/grpc.health.v1.Health/Check", "application/json", "{}")
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("SERVING")) {
		t.Errorf("health check: %d %s", resp.StatusCode, body)
	}
}

// TestValidationErrorsCarryAReason: a request breaking the schema's rules
// gets InvalidArgument, reason INVALID_FIELD and the Violations detail.
func TestValidationErrorsCarryAReason(t *testing.T) {
	srv := servertest.Start(t)
	_, err := srv.Client(parley.Connect, servertest.AdminToken).Access.IssueToken(t.Context(), &parleyv1.IssueTokenRequest{
		Role: parleyv1.StaffRole_STAFF_ROLE_SUPERVISOR,
	})
	wantRefusal(t, "label missing", err, connect.CodeInvalidArgument, "INVALID_FIELD")
	if got := violations(err); len(got) != 1 || got[0] != "label: string.min_len" {
		t.Errorf("violations %v, want label: string.min_len", got)
	}
}

// violations lists "field: rule id" for each violation in err's
// buf.validate.Violations detail.
func violations(err error) []string {
	var cerr *connect.Error
	if !errors.As(err, &cerr) {
		return nil
	}
	var out []string
	for _, d := range cerr.Details() {
		msg, derr := connectproto.UnmarshalErrorDetail(d)
		if v, ok := msg.(*validatepb.Violations); derr == nil && ok {
			for _, v := range v.GetViolations() {
				out = append(out, protovalidate.FieldPathString(v.GetField())+": "+v.GetRuleId())
			}
		}
	}
	return out
}

// TestInvalidDurationsAreRefused: a google.protobuf.Duration that is not
// well formed (seconds and nanos of different signs, nanos of a second or
// more, beyond 10,000 years) is refused, not normalized, wherever it sits
// in a request; nothing is written.
func TestInvalidDurationsAreRefused(t *testing.T) {
	srv := servertest.Start(t)
	ctx := t.Context()
	admin := srv.Client(parley.Connect, servertest.AdminToken)
	grpcAdmin := srv.Client(parley.GRPC, servertest.AdminToken)
	tokens := func() int {
		n, err := srv.DB.Token.Query().Count(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := tokens()
	for _, ttl := range []*durationpb.Duration{
		{Seconds: 10, Nanos: -5},
		{Seconds: 100, Nanos: -5},
		{Seconds: 100, Nanos: 2e9},
		{Seconds: 100, Nanos: 1e9},
		{Seconds: -100, Nanos: 5},
		{Seconds: 315_576_000_001},
	} {
		for _, c := range []*parley.Client{admin, grpcAdmin} {
			_, err := c.Access.IssueToken(ctx, &parleyv1.IssueTokenRequest{
				Role: parleyv1.StaffRole_STAFF_ROLE_SUPERVISOR, Label: "odd ttl", Ttl: ttl,
			})
			what := "ttl " + ttl.String()
			wantRefusal(t, what, err, connect.CodeInvalidArgument, "INVALID_FIELD")
			if got := violations(err); len(got) != 1 || got[0] != "ttl: duration.well_formed" {
				t.Errorf("%s: violations %v, want ttl: duration.well_formed", what, got)
			}
		}
	}
	if n := tokens(); n != before {
		t.Fatalf("%d tokens written for invalid ttls", n-before)
	}
	// A well-formed ttl is still accepted.
	if _, err := admin.Access.IssueToken(ctx, &parleyv1.IssueTokenRequest{
		Role: parleyv1.StaffRole_STAFF_ROLE_SUPERVISOR, Label: "good ttl", Ttl: &durationpb.Duration{Seconds: 3600, Nanos: 5},
	}); err != nil {
		t.Fatalf("well-formed ttl: %v", err)
	}

	// A nested Duration is checked the same way.
	queues, err := srv.DB.Queue.Query().Count(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = admin.Routing.CreateQueue(ctx, &parleyv1.CreateQueueRequest{
		DisplayName: "Odd queue",
		Policy:      &parleyv1.QueuePolicy{MaxWait: &durationpb.Duration{Seconds: 100, Nanos: 2e9}},
	})
	wantRefusal(t, "policy.max_wait", err, connect.CodeInvalidArgument, "INVALID_FIELD")
	if got := violations(err); len(got) != 1 || got[0] != "policy.max_wait: duration.well_formed" {
		t.Errorf("violations %v, want policy.max_wait: duration.well_formed", got)
	}
	if n, err := srv.DB.Queue.Query().Count(ctx); err != nil || n != queues {
		t.Fatalf("a queue was written with an invalid max_wait (%d, %v)", n-queues, err)
	}
}
