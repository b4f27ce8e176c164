package app_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/clients/go/parley"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/app"
	"github.com/parleyhq/parley/server/internal/bootstrap"
	"github.com/parleyhq/parley/server/internal/clientaddr"
	"github.com/parleyhq/parley/server/internal/servertest"
)

const busyMessage = "We are busy, please try again later."

// fromAddress returns a Parley client whose TCP connections come from
// local, a loopback address of its own (Linux routes all of 127.0.0.0/8 to
// lo), so one test can be several visitors. header is sent on every call.
func fromAddress(srv *servertest.Server, local string, header http.Header) *parley.Client {
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	transport := &http.Transport{Protocols: protocols, DialContext: dialer.DialContext}
	return parley.New(srv.URL, parley.WithHTTPClient(&http.Client{Transport: headerTransport{header, transport}}))
}

// headerTransport adds fixed headers to every request, as a browser, a
// proxy or an attacker would.
type headerTransport struct {
	header http.Header
	next   http.RoundTripper
}

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, vs := range h.header {
		r.Header[k] = vs
	}
	return h.next.RoundTrip(r)
}

// startGuest starts a guest chat with a fresh request id (a rotated guest
// identity) and returns the error's reason, "" on success.
func startGuest(ctx context.Context, t *testing.T, c *parley.Client, siteID string) string {
	t.Helper()
	_, err := c.Session.StartGuestChat(ctx, &parleyv1.StartGuestChatRequest{
		RequestId: uuid.NewString(), Name: "Visitor", Email: "visitor@example.com", IssueType: "billing", SiteId: siteID,
	})
	if err == nil {
		return ""
	}
	var cerr *connect.Error
	if !errors.As(err, &cerr) || cerr.Code() != connect.CodeResourceExhausted {
		t.Fatalf("start guest: %v", err)
	}
	if cerr.Message() != busyMessage {
		t.Errorf("refusal shows %q, want the configured message", cerr.Message())
	}
	return apierr.Reason(err)
}

func limitedServer(t *testing.T, perAddress int32, trustedProxies ...string) *servertest.Server {
	t.Helper()
	resolver, err := clientaddr.NewResolver(trustedProxies)
	if err != nil {
		t.Fatal(err)
	}
	return servertest.Start(t,
		servertest.WithAppOptions(app.Options{ClientAddresses: resolver}),
		servertest.WithBootstrap(func(f *bootstrap.File) {
			f.Settings.MaxGuestSessionsPerHour = 50
			f.Settings.MaxGuestSessionsPerHourPerAddress = perAddress
			f.Settings.GuestSessionsRateLimitReachedMessage = busyMessage
		}))
}

// TestGuestLimitPerAddress: an abuser rotating request ids and spoofing
// X-Forwarded-For from an untrusted peer is limited by its real address,
// while a visitor from another address still gets in.
func TestGuestLimitPerAddress(t *testing.T) {
	srv := limitedServer(t, 3)
	ctx := t.Context()
	for i := range 6 {
		// A new spoofed address and a new guest identity on every try.
		spoof := http.Header{"X-Forwarded-For": {"198.51.100." + string(rune('1'+i))}}
		reason := startGuest(ctx, t, fromAddress(srv, "127.0.0.1", spoof), "")
		if want := map[bool]string{true: "", false: "GUEST_SESSION_LIMIT_ADDRESS"}[i < 3]; reason != want {
			t.Fatalf("try %d from the abuser: reason %q, want %q", i+1, reason, want)
		}
	}
	if reason := startGuest(ctx, t, fromAddress(srv, "127.0.0.2", nil), ""); reason != "" {
		t.Fatalf("another visitor was refused (%s) while the abuser is limited", reason)
	}
	n, err := srv.DB.Interaction.Query().Count(ctx)
	if err != nil || n != 4 {
		t.Fatalf("%d interactions stored, want 4 (%v)", n, err)
	}
}

// TestGuestLimitBehindTrustedProxy: from a trusted proxy, X-Forwarded-For
// names the visitor, so visitors behind one proxy are limited one by one,
// and the proxy itself is not limited as one abuser.
func TestGuestLimitBehindTrustedProxy(t *testing.T) {
	srv := limitedServer(t, 2, "127.0.0.1/32")
	ctx := t.Context()
	abuser := fromAddress(srv, "127.0.0.1", http.Header{"X-Forwarded-For": {"203.0.113.7"}})
	// An attacker prepending addresses cannot escape: the rightmost
	// address not of a trusted proxy is the one counted.
	prepending := fromAddress(srv, "127.0.0.1", http.Header{"X-Forwarded-For": {"10.9.9.9, 203.0.113.7"}})
	for i, c := range []*parley.Client{abuser, prepending, abuser, prepending} {
		want := map[bool]string{true: "", false: "GUEST_SESSION_LIMIT_ADDRESS"}[i < 2]
		if reason := startGuest(ctx, t, c, ""); reason != want {
			t.Fatalf("try %d: reason %q, want %q", i+1, reason, want)
		}
	}
	for _, visitor := range []string{"203.0.113.8", "2001:db8::1"} {
		c := fromAddress(srv, "127.0.0.1", http.Header{"X-Forwarded-For": {visitor}})
		if reason := startGuest(ctx, t, c, ""); reason != "" {
			t.Fatalf("visitor %s behind the proxy was refused: %s", visitor, reason)
		}
	}
	// An IPv6 visitor rotating within its /64 is one visitor.
	c := fromAddress(srv, "127.0.0.1", http.Header{"X-Forwarded-For": {"2001:db8::2"}})
	if reason := startGuest(ctx, t, c, ""); reason != "" {
		t.Fatalf("second address of the /64: %s", reason)
	}
	c = fromAddress(srv, "127.0.0.1", http.Header{"X-Forwarded-For": {"2001:db8::3"}})
	if reason := startGuest(ctx, t, c, ""); reason != "GUEST_SESSION_LIMIT_ADDRESS" {
		t.Fatalf("third address of the /64: reason %q, want the address limit", reason)
	}
}

// TestGuestLimitPerSite: a site's own limit turns its visitors away with
// the configured message without affecting guests of other sites.
func TestGuestLimitPerSite(t *testing.T) {
	srv := limitedServer(t, 0)
	ctx := t.Context()
	adm := srv.Client(parley.Connect, servertest.AdminToken)
	site := func(origin string, limit int32) string {
		resp, err := adm.Access.CreateSite(ctx, &parleyv1.CreateSiteRequest{Site: &parleyv1.Site{
			DisplayName: origin, AllowedOrigins: []string{origin}, MaxGuestSessionsPerHour: limit,
		}})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetSite().GetId()
	}
	busy, calm := site("https://busy.example.com", 2), site("https://calm.example.com", 0)
	for i := range 3 {
		// Each visitor from its own address: the site's limit is what stops the third.
		c := fromAddress(srv, "127.0.0."+string(rune('1'+i)), http.Header{"Origin": {"https://busy.example.com"}})
		want := map[bool]string{true: "", false: "GUEST_SESSION_LIMIT_SITE"}[i < 2]
		if reason := startGuest(ctx, t, c, busy); reason != want {
			t.Fatalf("busy site visitor %d: reason %q, want %q", i+1, reason, want)
		}
	}
	calmClient := fromAddress(srv, "127.0.0.9", http.Header{"Origin": {"https://calm.example.com"}})
	if reason := startGuest(ctx, t, calmClient, calm); reason != "" {
		t.Fatalf("the other site's visitor was refused: %s", reason)
	}
	// The messenger of one site cannot be used from another site's page.
	_, err := fromAddress(srv, "127.0.0.9", http.Header{"Origin": {"https://calm.example.com"}}).Session.StartGuestChat(ctx,
		&parleyv1.StartGuestChatRequest{RequestId: uuid.NewString(), Name: "V", Email: "v@example.com", IssueType: "billing", SiteId: busy})
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("busy site's id from the calm site's origin: %v", err)
	}
}

// preflight sends a CORS preflight for a Connect call from origin.
func preflight(t *testing.T, srv *servertest.Server, origin string) http.Header {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodOptions, srv.URL+parleyv1connect.SessionServiceStartGuestChatProcedure, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Origin", origin)
	req.Header.Set("Access-Control-Request-Method", http.MethodPost)
	// Sorted and lower-case, as the Fetch standard has browsers send it.
	req.Header.Set("Access-Control-Request-Headers", "authorization,connect-protocol-version,connect-timeout-ms,content-type")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.Header
}

// TestCORS: registered sites' origins and the operator's static origins
// get CORS headers that admit Connect's headers and the bearer token; any
// other origin gets none, on preflights and on calls alike.
// fromOrigin returns a client whose calls carry origin as a browser's
// would, keeping each response's headers in *seen.
func fromOrigin(srv *servertest.Server, origin string, seen *http.Header) *parley.Client {
	return parley.New(srv.URL, parley.WithHTTPClient(&http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		r.Header.Set("Origin", origin)
		resp, err := parley.DefaultHTTPClient().Transport.RoundTrip(r)
		if resp != nil {
			*seen = resp.Header
		}
		return resp, err
	})}))
}

func TestCORS(t *testing.T) {
	srv := servertest.Start(t, servertest.WithAppOptions(app.Options{AllowedOrigins: []string{"https://portal.example.com"}}))
	ctx := t.Context()
	adm := srv.Client(parley.Connect, servertest.AdminToken)
	site, err := adm.Access.CreateSite(ctx, &parleyv1.CreateSiteRequest{Site: &parleyv1.Site{
		DisplayName: "Shop", AllowedOrigins: []string{"https://shop.example.com"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, origin := range []string{"https://shop.example.com", "https://portal.example.com"} {
		h := preflight(t, srv, origin)
		if got := h.Get("Access-Control-Allow-Origin"); got != origin {
			t.Errorf("%s: Access-Control-Allow-Origin %q", origin, got)
		}
		allowed := strings.ToLower(h.Get("Access-Control-Allow-Headers"))
		for _, want := range []string{"authorization", "connect-protocol-version", "connect-timeout-ms", "content-type"} {
			if !strings.Contains(allowed, want) {
				t.Errorf("%s: Access-Control-Allow-Headers %q lacks %s", origin, allowed, want)
			}
		}
		if h.Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("%s: credentialed CORS is on; credentials travel in headers only", origin)
		}
	}
	for _, origin := range []string{"https://evil.example.com", "https://shop.example.com.evil.example", "null"} {
		h := preflight(t, srv, origin)
		for name := range h {
			if strings.HasPrefix(name, "Access-Control-") {
				t.Errorf("%s: preflight answered with %s", origin, name)
			}
		}
	}

	// A real call from a disallowed origin is refused by the server itself,
	// not only hidden by the browser (which may act on a cached preflight).
	var seen http.Header
	c := fromOrigin(srv, "https://evil.example.com", &seen)
	_, err = c.Session.GetPreChatForm(ctx, &parleyv1.GetPreChatFormRequest{})
	if connect.CodeOf(err) != connect.CodePermissionDenied || apierr.Reason(err) != "ORIGIN_NOT_ALLOWED" {
		t.Fatalf("a call from a disallowed origin: %v, want PermissionDenied ORIGIN_NOT_ALLOWED", err)
	}
	if got := seen.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("a call from a disallowed origin got Access-Control-Allow-Origin %q", got)
	}

	// A site's new origin is allowed once the admin adds it.
	if _, err := adm.Access.UpdateSite(ctx, &parleyv1.UpdateSiteRequest{Site: &parleyv1.Site{
		Id: site.GetSite().GetId(), DisplayName: "Shop", AllowedOrigins: []string{"https://shop.example.com", "https://www.shop.example.com"},
	}}); err != nil {
		t.Fatal(err)
	}
	if got := preflight(t, srv, "https://www.shop.example.com").Get("Access-Control-Allow-Origin"); got != "https://www.shop.example.com" {
		t.Errorf("added origin: Access-Control-Allow-Origin %q", got)
	}

	// An origin no browser sends (it could never match) is refused with
	// what to write instead, and changes nothing.
	for bad, hint := range map[string]string{
		"https://shop.example.com:443": "write https://shop.example.com",
		"https://shop.example.com.":    "write https://shop.example.com",
		"https://shop..example.com":    "not a host name",
		"https://shop.example.com:0":   "from 1 to 65535",
	} {
		_, err := adm.Access.CreateSite(ctx, &parleyv1.CreateSiteRequest{Site: &parleyv1.Site{DisplayName: "Typo", AllowedOrigins: []string{bad}}})
		wantReason(t, "CreateSite with "+bad, err, connect.CodeInvalidArgument, "ORIGIN_NOT_AS_BROWSERS_SEND")
		if !strings.Contains(err.Error(), hint) || !strings.Contains(err.Error(), "site.allowed_origins[0]") {
			t.Errorf("CreateSite with %s: %v, want it to name the field and say %q", bad, err, hint)
		}
		_, err = adm.Access.UpdateSite(ctx, &parleyv1.UpdateSiteRequest{Site: &parleyv1.Site{
			Id: site.GetSite().GetId(), DisplayName: "Shop", AllowedOrigins: []string{"https://shop.example.com", bad},
		}})
		wantReason(t, "UpdateSite with "+bad, err, connect.CodeInvalidArgument, "ORIGIN_NOT_AS_BROWSERS_SEND")
	}
	sites, err := adm.Access.ListSites(ctx, &parleyv1.ListSitesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sites.GetSites() {
		if s.GetDisplayName() == "Typo" || s.GetId() == site.GetSite().GetId() && len(s.GetAllowedOrigins()) != 2 {
			t.Errorf("a refused site write was stored: %v", s)
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestCustomerJWTsOverTheWire: every kind of bad customer token is
// refused with Unauthenticated by the running server, the same way.
func TestCustomerJWTsOverTheWire(t *testing.T) {
	srv := servertest.Start(t)
	ctx := t.Context()
	now := time.Now()
	sign := func(method jwt.SigningMethod, key any, edit func(jwt.MapClaims)) string {
		c := jwt.MapClaims{"iss": servertest.DemoIssuer, "aud": servertest.DemoAudience, "sub": "cust-9", "exp": now.Add(time.Hour).Unix()}
		if edit != nil {
			edit(c)
		}
		s, err := jwt.NewWithClaims(method, c).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	secret := []byte(servertest.DemoSecret)
	good := sign(jwt.SigningMethodHS256, secret, nil)
	parts := strings.Split(good, ".")
	tests := map[string]string{
		"missing token":    "",
		"wrong key":        sign(jwt.SigningMethodHS256, []byte("not-the-portal-secret-but-32-bytes-long"), nil),
		"expired":          sign(jwt.SigningMethodHS256, secret, func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Hour).Unix() }),
		"wrong audience":   sign(jwt.SigningMethodHS256, secret, func(c jwt.MapClaims) { c["aud"] = "another-app" }),
		"wrong issuer":     sign(jwt.SigningMethodHS256, secret, func(c jwt.MapClaims) { c["iss"] = "https://evil.example.com" }),
		"alg none":         sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, nil),
		"tampered":         parts[0] + "." + strings.Split(sign(jwt.SigningMethodHS256, []byte("x"), func(c jwt.MapClaims) { c["sub"] = "cust-1" }), ".")[1] + "." + parts[2],
		"signature only":   parts[0] + "." + parts[1] + ".",
		"not even a JWT":   "eyJhbGciOiJIUzI1NiJ9.e30",
		"two tokens glued": good + "." + good,
	}
	for name, tok := range tests {
		_, err := srv.Client(parley.Connect, tok).Session.ListMyConversations(ctx, &parleyv1.ListMyConversationsRequest{})
		if connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Errorf("%s: got %v, want Unauthenticated", name, err)
		}
	}
	if _, err := srv.Client(parley.Connect, good).Session.ListMyConversations(ctx, &parleyv1.ListMyConversationsRequest{}); err != nil {
		t.Fatalf("the good token: %v", err)
	}
}

// TestLogsHoldNoSecrets runs calls that succeed, calls that fail
// validation or authentication, and calls that fail inside the server,
// with every kind of credential and distinctive message text, then scans
// the server's log: no token, JWT or message body may appear in it.
func TestLogsHoldNoSecrets(t *testing.T) {
	srv := servertest.Start(t)
	ctx := t.Context()
	const body = "my card number is 4111-1111-1111-1111"
	start, err := srv.Client(parley.Connect, "").Session.StartGuestChat(ctx, &parleyv1.StartGuestChatRequest{
		RequestId: uuid.NewString(), Name: "Secretive Sam", Email: "sam@example.com", IssueType: "billing", FirstMessage: body,
	})
	if err != nil {
		t.Fatal(err)
	}
	guest, conv := start.GetGuestToken(), start.GetConversation().GetId()
	customerJWT := srv.CustomerToken(t, "cust-secret", "Cora", "cora@example.com")
	issued, err := srv.Client(parley.Connect, servertest.AdminToken).Access.IssueToken(ctx, &parleyv1.IssueTokenRequest{
		Role: parleyv1.StaffRole_STAFF_ROLE_SUPERVISOR, Label: "night shift",
	})
	if err != nil {
		t.Fatal(err)
	}
	secrets := []string{guest, customerJWT, issued.GetToken(), servertest.AdminToken, servertest.BethToken, body, "ps_guessed_token_123456"}

	g := srv.Client(parley.Connect, guest)
	calls := []func() error{
		func() error {
			_, err := g.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: conv, ClientMessageId: "m1", Text: body})
			return err
		},
		func() error { // fails validation, carrying the body
			_, err := g.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: "not-a-uuid", ClientMessageId: "m2", Text: body})
			return err
		},
		func() error { // an unknown token
			_, err := srv.Client(parley.GRPC, "ps_guessed_token_123456").Routing.ListAgents(ctx, &parleyv1.ListAgentsRequest{})
			return err
		},
		func() error {
			_, err := srv.Client(parley.Connect, customerJWT).Session.StartCustomerChat(ctx, &parleyv1.StartCustomerChatRequest{
				RequestId: uuid.NewString(), IssueType: "order", FirstMessage: body,
			})
			return err
		},
		func() error { // a supervisor may not post
			_, err := srv.Client(parley.Connect, issued.GetToken()).Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: conv, ClientMessageId: "m3", Text: body})
			return err
		},
	}
	for _, call := range calls {
		_ = call() // outcomes are tested elsewhere; here only the log matters
	}
	// Break the store under the server: calls now fail inside it, which is
	// when causes are logged.
	if err := srv.DB.Close(); err != nil {
		t.Fatal(err)
	}
	for _, call := range calls {
		if err := call(); err == nil {
			t.Fatal("a call succeeded on a closed store")
		}
	}
	log := srv.Log.String()
	if !strings.Contains(log, "rpc failed") {
		t.Fatalf("the failures inside the server were not logged, so the scan proves nothing:\n%s", log)
	}
	for _, secret := range secrets {
		if strings.Contains(log, secret) {
			t.Errorf("the log holds %q", secret)
		}
	}
	// Nor any part of the JWT that would let it be replayed or read.
	for _, part := range strings.Split(customerJWT, ".") {
		if strings.Contains(log, part) {
			t.Errorf("the log holds part of the customer JWT: %q", part)
		}
	}
}
