// Package parley is the Go client of Parley: the generated service
// clients behind one constructor that sets the protocol (Connect, gRPC or
// gRPC-Web) and the bearer token.
//
//	c := parley.New("http://localhost:8080", parley.WithToken("ps_demo_agent_beth"))
//	resp, err := c.Routing.SetPresence(ctx, &parleyv1.SetPresenceRequest{Presence: parleyv1.Presence_PRESENCE_AVAILABLE})
package parley

import (
	"context"
	"net/http"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"

	"github.com/parleyhq/parley/gen/parley/v1/parleyv1connect"
)

// Protocol is the wire protocol a client speaks; parleyd serves all three
// on one port.
type Protocol int

// The protocols parleyd serves.
const (
	Connect Protocol = iota
	GRPC
	GRPCWeb
)

// String names the protocol.
func (p Protocol) String() string {
	switch p {
	case GRPC:
		return "grpc"
	case GRPCWeb:
		return "grpcweb"
	default:
		return "connect"
	}
}

// Client holds one client per Parley service.
type Client struct {
	Session   parleyv1connect.SessionServiceClient
	Messaging parleyv1connect.MessagingServiceClient
	Routing   parleyv1connect.RoutingServiceClient
	Cases     parleyv1connect.CaseServiceClient
	Access    parleyv1connect.AccessServiceClient
	Knowledge parleyv1connect.KnowledgeServiceClient
	Assistant parleyv1connect.AssistantServiceClient
}

type options struct {
	httpClient connecthttp.HTTPClient
	protocol   Protocol
	token      string
}

// Option configures New.
type Option func(*options)

// WithToken sends token as "Authorization: Bearer <token>" on every call.
func WithToken(token string) Option { return func(o *options) { o.token = token } }

// WithProtocol picks the wire protocol (Connect by default).
func WithProtocol(p Protocol) Option { return func(o *options) { o.protocol = p } }

// WithHTTPClient replaces the default HTTP client.
func WithHTTPClient(c connecthttp.HTTPClient) Option { return func(o *options) { o.httpClient = c } }

// DefaultHTTPClient speaks HTTP/2: over TLS for https:// URLs and in
// cleartext (h2c, as parleyd serves it) for http:// URLs, so server
// streams and gRPC work on both.
func DefaultHTTPClient() *http.Client {
	protocols := new(http.Protocols)
	protocols.SetHTTP2(true)
	protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: protocols}}
}

// New returns a client of the Parley server at baseURL.
func New(baseURL string, opts ...Option) *Client {
	o := options{}
	for _, opt := range opts {
		opt(&o)
	}
	if o.httpClient == nil {
		o.httpClient = DefaultHTTPClient()
	}
	var transportOpts []connecthttp.Option
	switch o.protocol {
	case GRPC:
		transportOpts = append(transportOpts, connecthttp.WithGRPC())
	case GRPCWeb:
		transportOpts = append(transportOpts, connecthttp.WithGRPCWeb())
	}
	var interceptors []connect.ClientInterceptor
	if o.token != "" {
		interceptors = append(interceptors, bearer(o.token))
	}
	cc := connect.NewClient(connecthttp.NewTransport(o.httpClient, baseURL, transportOpts...), interceptors...)
	return &Client{
		Session:   parleyv1connect.NewSessionServiceClient(cc),
		Messaging: parleyv1connect.NewMessagingServiceClient(cc),
		Routing:   parleyv1connect.NewRoutingServiceClient(cc),
		Cases:     parleyv1connect.NewCaseServiceClient(cc),
		Access:    parleyv1connect.NewAccessServiceClient(cc),
		Knowledge: parleyv1connect.NewKnowledgeServiceClient(cc),
		Assistant: parleyv1connect.NewAssistantServiceClient(cc),
	}
}

// bearer sets the Authorization header of every call.
func bearer(token string) connect.ClientInterceptor {
	return func(next connect.ClientFunc) connect.ClientFunc {
		return func(ctx context.Context, spec connect.Spec) (connect.ClientStream, error) {
			if info, ok := connect.CallInfoForClientContext(ctx); ok {
				info.RequestHeader().Set("Authorization", "Bearer "+token)
			}
			return next(ctx, spec)
		}
	}
}
