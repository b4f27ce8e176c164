package app_test

import (
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/clients/go/parley"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/servertest"
)

// TestMessengerPageCallsAsItsSite: the messenger iframe page, served by
// parleyd, calls from parleyd's own origin; StartGuestChat with a site's id
// takes that origin as the site's (the host page was checked when the
// messenger page was served). Cross-origin calls are still checked
// against the site's allowed origins, whatever else they claim.
func TestMessengerPageCallsAsItsSite(t *testing.T) {
	srv := servertest.Start(t)
	ctx := t.Context()
	adm := srv.Client(parley.Connect, servertest.AdminToken)
	newSite := func(name, origin string) string {
		resp, err := adm.Access.CreateSite(ctx, &parleyv1.CreateSiteRequest{Site: &parleyv1.Site{DisplayName: name, AllowedOrigins: []string{origin}}})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetSite().GetId()
	}
	shop := newSite("Shop", "https://shop.example.com")
	newSite("Other", "https://other.example.com")
	// start calls as a browser page of origin would, with header added.
	start := func(origin string, header http.Header) error {
		c := parley.New(srv.URL, parley.WithHTTPClient(&http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			r.Header.Set("Origin", origin)
			for k, v := range header {
				r.Header[k] = v
			}
			return parley.DefaultHTTPClient().Transport.RoundTrip(r)
		})}))
		_, err := c.Session.StartGuestChat(ctx, &parleyv1.StartGuestChatRequest{
			RequestId: uuid.NewString(), Name: "Ada", Email: "ada@example.com", IssueType: "order", SiteId: shop,
		})
		return err
	}
	if err := start(srv.URL, nil); err != nil {
		t.Fatalf("from parleyd's own origin (the messenger page): %v", err)
	}
	if err := start("https://shop.example.com", nil); err != nil {
		t.Fatalf("from the site's own origin: %v", err)
	}
	// Behind a proxy that terminated TLS: the browser says same-origin.
	if err := start(strings.Replace(srv.URL, "http://", "https://", 1), http.Header{"Sec-Fetch-Site": {"same-origin"}}); err != nil {
		t.Fatalf("from parleyd's own https origin behind a TLS-terminating proxy: %v", err)
	}
	refused := map[string]struct {
		origin string
		header http.Header
	}{
		// Allowed to call (another site's), but not as this site.
		"another site's origin": {"https://other.example.com", nil},
		// The server's host under another scheme is another origin.
		"https on a cleartext server":             {strings.Replace(srv.URL, "http://", "https://", 1), nil},
		"https on a cleartext server, cross-site": {strings.Replace(srv.URL, "http://", "https://", 1), http.Header{"Sec-Fetch-Site": {"cross-site"}}},
		// Headers a page could set say nothing about where it comes from.
		"another site's origin with forwarding headers": {"https://other.example.com", http.Header{
			"X-Forwarded-Host": {strings.TrimPrefix(srv.URL, "http://")}, "Referer": {srv.URL + "/messenger/"}, "Sec-Fetch-Site": {"same-origin"},
		}},
	}
	for name, call := range refused {
		err := start(call.origin, call.header)
		if connect.CodeOf(err) != connect.CodePermissionDenied || apierr.Reason(err) != "ORIGIN_NOT_ALLOWED" {
			t.Errorf("%s: %v, want PermissionDenied ORIGIN_NOT_ALLOWED", name, err)
		}
	}
}

// TestWebAppsMounted: the web apps share the API's port and handler; the
// RPC routes, their refusals and the health check are unchanged.
func TestWebAppsMounted(t *testing.T) {
	srv := servertest.Start(t)
	for path, want := range map[string]int{
		"/":                 http.StatusOK,
		"/messenger.js":     http.StatusOK,
		"/no-such-page":     http.StatusNotFound,
		"/messenger/?site=": http.StatusForbidden,
	} {
		resp, body := rawCall(t, srv, http.MethodGet, path, "", "")
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d: %s", path, resp.StatusCode, want, body)
		}
		if !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: headers %v", path, resp.Header)
		}
	}
	// The demo page embeds the demo site's messenger.
	site, err := srv.Client(parley.Connect, servertest.AdminToken).Access.ListSites(t.Context(), &parleyv1.ListSitesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, body := rawCall(t, srv, http.MethodGet, "/", "", ""); len(site.GetSites()) != 1 ||
		!strings.Contains(string(body), `data-site-id="`+site.GetSites()[0].GetId()+`"`) {
		t.Errorf("the demo page does not embed the demo site's messenger (sites %v):\n%s", site.GetSites(), body)
	}
	resp, body := rawCall(t, srv, http.MethodPost, "/parley.v9.Foo/Bar", "application/json", "{}")
	if got := connectJSONReason(t, body); resp.StatusCode != http.StatusNotImplemented || got != "UNKNOWN_SERVICE" {
		t.Errorf("an unknown service under the catch-all: %d %q", resp.StatusCode, got)
	}
}
