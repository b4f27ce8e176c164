package webapps

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/site"
	"github.com/parleyhq/parley/server/internal/bootstrap"
	"github.com/parleyhq/parley/server/internal/store"
	"github.com/parleyhq/parley/server/internal/store/storetest"
)

// builds stands for dist/: what build.mjs writes.
var builds = fstest.MapFS{
	"messenger.js":            {Data: []byte("(()=>{/*loader*/})();")},
	"messenger/index.html":    {Data: []byte("<!doctype html><title>Chat</title><script type=module src=main.js></script>")},
	"messenger/main.js":       {Data: []byte("console.log('messenger')")},
	"messenger/style.css":     {Data: []byte("body{margin:0}")},
	"workspace/index.html":    {Data: []byte("<!doctype html><title>Workspace</title>")},
	"workspace/main.js":       {Data: []byte("console.log('workspace')")},
	"demo/index.html":         {Data: []byte(`<!doctype html>{{if .SiteID}}<script async src="{{.Origin}}/messenger.js" data-site-id="{{.SiteID}}"></script>{{else}}<p>no demo site</p>{{end}}`)},
	"demo/main.js":            {Data: []byte("console.log('demo')")},
	"workspace/icons/a.svg":   {Data: []byte("<svg xmlns='http://www.w3.org/2000/svg'/>")},
	"messenger/fonts/x.woff2": {Data: []byte("wOF2")},
}

type fixture struct {
	t    *testing.T
	db   *store.DB
	h    http.Handler
	shop *ent.Site
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureFrom(t, demoFile(t))
}

// demoFile is the built-in demo bootstrap.
func demoFile(t *testing.T) *bootstrap.File {
	t.Helper()
	f, err := bootstrap.ParseDemo()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// newFixtureFrom serves builds over a store configured from boot, whose
// Demo Shop allows https://shop.example.com and http://localhost:8080.
func newFixtureFrom(t *testing.T, boot *bootstrap.File) *fixture {
	t.Helper()
	db := storetest.Open(t, filepath.Join(t.TempDir(), "parley.db"), store.Options{})
	if _, err := bootstrap.Apply(t.Context(), db, boot, nil); err != nil {
		t.Fatal(err)
	}
	h, err := newHandler(db, slog.New(slog.DiscardHandler), builds)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, db: db, h: h}
	f.write(func(ctx context.Context, tx *ent.Tx) (err error) {
		f.shop, err = tx.Site.Query().Where(site.DisplayName(DemoSiteName)).Only(ctx)
		if err != nil {
			return err
		}
		return tx.Site.UpdateOne(f.shop).SetAllowedOrigins([]string{"https://shop.example.com", "http://localhost:8080"}).Exec(ctx)
	})
	return f
}

// write runs fn in a write transaction, as an admin's RPC would.
func (f *fixture) write(fn func(ctx context.Context, tx *ent.Tx) error) {
	f.t.Helper()
	if err := store.InTx(f.t.Context(), f.db, fn); err != nil {
		f.t.Fatal(err)
	}
}

// do serves method target (host parley.example.com, cleartext) and
// returns the response and its body.
func (f *fixture) do(method, target string) (*http.Response, string) {
	f.t.Helper()
	req := httptest.NewRequestWithContext(f.t.Context(), method, target, nil)
	req.Host = "parley.example.com"
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	resp := rec.Result()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func (f *fixture) messenger(site, parent string) string {
	return "/messenger/?site=" + site + "&parent=" + parent
}

// wantHeaders checks the headers every response carries.
func wantHeaders(t *testing.T, what string, resp *http.Response, frameAncestors string) {
	t.Helper()
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' blob: data:",
		"connect-src 'self'", "form-action 'none'", "base-uri 'none'", "frame-ancestors " + frameAncestors} {
		if !strings.Contains(csp, want) {
			t.Errorf("%s: Content-Security-Policy %q lacks %q", what, csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-") || strings.Count(csp, "frame-ancestors") != 1 {
		t.Errorf("%s: Content-Security-Policy %q", what, csp)
	}
	if got := resp.Header.Get("Referrer-Policy"); got != "same-origin" {
		t.Errorf("%s: Referrer-Policy %q", what, got)
	}
	if resp.Header.Get("Cache-Control") == "" || strings.Contains(resp.Header.Get("Cache-Control"), "max-age") {
		t.Errorf("%s: Cache-Control %q: nothing here has a hashed name", what, resp.Header.Get("Cache-Control"))
	}
}

// TestRoutes: each URL serves its file with its content type and the
// security headers; anything else is 404, and only GET and HEAD are served.
func TestRoutes(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		target, contentType, body, frameAncestors string
		code                                      int
	}{
		{"/messenger.js", "text/javascript; charset=utf-8", "/*loader*/", "'none'", 200},
		{"/messenger/main.js", "text/javascript; charset=utf-8", "messenger", "'none'", 200},
		{"/messenger/style.css", "text/css; charset=utf-8", "margin:0", "'none'", 200},
		{"/messenger/fonts/x.woff2", "font/woff2", "wOF2", "'none'", 200},
		{"/workspace/", "text/html; charset=utf-8", "<title>Workspace", "'none'", 200},
		{"/workspace/?token=x", "text/html; charset=utf-8", "<title>Workspace", "'none'", 200},
		{"/workspace/main.js", "text/javascript; charset=utf-8", "workspace", "'none'", 200},
		{"/workspace/icons/a.svg", "image/svg+xml", "<svg", "'none'", 200},
		{"/demo/main.js", "text/javascript; charset=utf-8", "demo", "'none'", 200},
		{"/", "text/html; charset=utf-8", `data-site-id="` + f.shop.ID.String() + `"`, "'none'", 200},
		{f.messenger(f.shop.ID.String(), "https://shop.example.com"), "text/html; charset=utf-8", "<title>Chat", "https://shop.example.com", 200},
		{"/nope", "text/plain; charset=utf-8", "Not found", "'none'", 404},
		{"/messenger/nope.js", "text/plain; charset=utf-8", "Not found", "'none'", 404},
		{"/messenger/index.html", "text/plain; charset=utf-8", "Not found", "'none'", 404},
		{"/demo/", "text/plain; charset=utf-8", "Not found", "'none'", 404},
		{"/messenger/../demo/main.js", "text/plain; charset=utf-8", "Not found", "'none'", 404},
		{"/workspace/main.js/", "text/plain; charset=utf-8", "Not found", "'none'", 404},
	}
	for _, tt := range tests {
		resp, body := f.do(http.MethodGet, tt.target)
		if resp.StatusCode != tt.code || resp.Header.Get("Content-Type") != tt.contentType || !strings.Contains(body, tt.body) {
			t.Errorf("GET %s: %d %q %q, want %d %q containing %q", tt.target, resp.StatusCode, resp.Header.Get("Content-Type"), body, tt.code, tt.contentType, tt.body)
		}
		wantHeaders(t, "GET "+tt.target, resp, tt.frameAncestors)
		// Only the demo page frames anything: the messenger, from here.
		if framesMessenger := strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-src 'self'"); framesMessenger != (tt.target == "/") {
			t.Errorf("GET %s: CSP %q", tt.target, resp.Header.Get("Content-Security-Policy"))
		}
		if tt.frameAncestors == "'none'" && resp.Header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("GET %s: X-Frame-Options %q", tt.target, resp.Header.Get("X-Frame-Options"))
		}
		// HEAD: the same status and headers, no body.
		head, headBody := f.do(http.MethodHead, tt.target)
		if head.StatusCode != tt.code || head.Header.Get("Content-Type") != tt.contentType || headBody != "" ||
			head.Header.Get("Content-Security-Policy") != resp.Header.Get("Content-Security-Policy") {
			t.Errorf("HEAD %s: %d %v %q", tt.target, head.StatusCode, head.Header, headBody)
		}
	}
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodOptions} {
		resp, _ := f.do(method, "/messenger.js")
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: %d, Allow %q", method, resp.StatusCode, resp.Header.Get("Allow"))
		}
		wantHeaders(t, method, resp, "'none'")
	}
	// Only the loader may be loaded by other sites' pages.
	for target, want := range map[string]string{"/messenger.js": "cross-origin", "/messenger/main.js": "same-origin", "/workspace/main.js": "same-origin"} {
		if resp, _ := f.do(http.MethodGet, target); resp.Header.Get("Cross-Origin-Resource-Policy") != want {
			t.Errorf("%s: Cross-Origin-Resource-Policy %q, want %q", target, resp.Header.Get("Cross-Origin-Resource-Policy"), want)
		}
	}
	// A path without its slash is sent to it, with its query.
	resp, _ := f.do(http.MethodGet, "/messenger?site=a&parent=b")
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/messenger/?site=a&parent=b" {
		t.Errorf("/messenger: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// TestRevalidation: static files carry an ETag and answer a matching
// If-None-Match with 304; the pages that depend on the store are never
// stored.
func TestRevalidation(t *testing.T) {
	f := newFixture(t)
	resp, _ := f.do(http.MethodGet, "/messenger/main.js")
	etag := resp.Header.Get("ETag")
	if etag == "" || resp.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("ETag %q, Cache-Control %q", etag, resp.Header.Get("Cache-Control"))
	}
	req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/messenger/main.js", nil)
	req.Header.Set("If-None-Match", etag)
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotModified {
		t.Errorf("If-None-Match the ETag: %d", rec.Code)
	}
	other, _ := f.do(http.MethodGet, "/workspace/main.js")
	if other.Header.Get("ETag") == etag {
		t.Errorf("two files share the ETag %s", etag)
	}
	for _, target := range []string{"/", f.messenger(f.shop.ID.String(), "https://shop.example.com"), f.messenger("x", "y")} {
		if resp, _ := f.do(http.MethodGet, target); resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("ETag") != "" {
			t.Errorf("%s: Cache-Control %q, ETag %q", target, resp.Header.Get("Cache-Control"), resp.Header.Get("ETag"))
		}
	}
}

// TestMessengerParent: the messenger page is served only for a site that
// exists, to a parent origin the site allows or to this server's own
// origin, framed by exactly that origin; every other request is refused
// with 403, a short reason and nothing of the app. A site's change
// applies to the next request.
func TestMessengerParent(t *testing.T) {
	f := newFixture(t)
	id := f.shop.ID.String()
	allowed := map[string]string{
		"an allowed origin":         "https://shop.example.com",
		"another allowed origin":    "http://localhost:8080",
		"this server's own origin":  "http://parley.example.com",
		"an escaped allowed origin": "https%3A%2F%2Fshop.example.com",
	}
	for name, parent := range allowed {
		resp, body := f.do(http.MethodGet, f.messenger(id, parent))
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, "<title>Chat") {
			t.Errorf("%s: %d %q", name, resp.StatusCode, body)
			continue
		}
		csp := resp.Header.Get("Content-Security-Policy")
		want := strings.ReplaceAll(strings.ReplaceAll(parent, "%3A", ":"), "%2F", "/")
		if !strings.HasSuffix(csp, "; frame-ancestors "+want) || resp.Header.Get("X-Frame-Options") != "" {
			t.Errorf("%s: CSP %q, X-Frame-Options %q", name, csp, resp.Header.Get("X-Frame-Options"))
		}
	}
	refused := map[string]struct{ target, reason string }{
		"no query":                       {"/messenger/", "must name a site"},
		"no parent":                      {"/messenger/?site=" + id, "is not an origin"},
		"a site that is no uuid":         {f.messenger("shop", "https://shop.example.com"), "must name a site"},
		"an unknown site":                {f.messenger("01890a5d-ac96-774b-bcce-b302099a8057", "https://shop.example.com"), "does not exist"},
		"a parent not allowed":           {f.messenger(id, "https://evil.example.com"), "may not embed the messenger of site " + id},
		"an allowed origin's look-alike": {f.messenger(id, "https://shop.example.com.evil.example"), "may not embed"},
		"the server under https":         {f.messenger(id, "https://parley.example.com"), "may not embed"},
		"a parent with a path":           {f.messenger(id, "https://shop.example.com/page"), "is not an origin"},
		"a parent in capitals":           {f.messenger(id, "https://SHOP.example.com"), "is not an origin"},
		"a parent with a trailing slash": {f.messenger(id, "https://shop.example.com/"), "is not an origin"},
		"a parent injecting a directive": {f.messenger(id, "https://shop.example.com%3B%20script-src%20*"), "is not an origin"},
		"a parent injecting a source":    {f.messenger(id, "https://shop.example.com%20https://evil.example.com"), "is not an origin"},
		"a parent of another scheme":     {f.messenger(id, "javascript://shop.example.com"), "is not an origin"},
		"a parent of null":               {f.messenger(id, "null"), "is not an origin"},
		"a parent with credentials":      {f.messenger(id, "https://a@shop.example.com"), "is not an origin"},
		"a parent not in punycode":       {f.messenger(id, "https://sh%C3%B6p.example.com"), "is not an origin"},
	}
	for name, tt := range refused {
		resp, body := f.do(http.MethodGet, tt.target)
		if resp.StatusCode != http.StatusForbidden || !strings.HasPrefix(body, "This chat cannot be shown here: ") || !strings.Contains(body, tt.reason) ||
			strings.Contains(body, "<") || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
			t.Errorf("%s: %d %q %q, want 403 text saying %q", name, resp.StatusCode, resp.Header.Get("Content-Type"), body, tt.reason)
		}
		wantHeaders(t, name, resp, "*")
	}
	// The admin removes an origin: the next page load is refused.
	f.write(func(ctx context.Context, tx *ent.Tx) error {
		return tx.Site.UpdateOneID(f.shop.ID).SetAllowedOrigins([]string{"http://localhost:8080"}).Exec(ctx)
	})
	if resp, _ := f.do(http.MethodGet, f.messenger(id, "https://shop.example.com")); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a removed origin: %d", resp.StatusCode)
	}
	// The admin deletes the site.
	f.write(func(ctx context.Context, tx *ent.Tx) error { return tx.Site.DeleteOneID(f.shop.ID).Exec(ctx) })
	if resp, body := f.do(http.MethodGet, f.messenger(id, "http://localhost:8080")); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "does not exist") {
		t.Errorf("a deleted site: %d %q", resp.StatusCode, body)
	}
}

// TestSameOrigin: an origin is the server's own when its host and scheme
// are the request's; an https origin over a cleartext request (a proxy
// terminated TLS) only when the browser says the request is same-origin.
func TestSameOrigin(t *testing.T) {
	tests := []struct {
		origin, fetchSite string
		tls, want         bool
	}{
		{"http://parley.example.com", "", false, true},
		{"https://parley.example.com", "", true, true},
		{"https://parley.example.com", "same-origin", false, true},
		{"https://parley.example.com", "", false, false},
		{"https://parley.example.com", "same-site", false, false},
		{"https://parley.example.com", "cross-site", false, false},
		{"http://parley.example.com", "same-origin", true, false},
		{"https://shop.example.com", "same-origin", false, false},
		{"http://parley.example.com:8080", "", false, false},
		{"http://parley.example.com/", "", false, false},
		{"http://PARLEY.example.com", "", false, false},
		{"ftp://parley.example.com", "same-origin", false, false},
		{"null", "", false, false},
		{"", "", false, false},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Host = "parley.example.com"
		if tt.fetchSite != "" {
			r.Header.Set("Sec-Fetch-Site", tt.fetchSite)
		}
		if !tt.tls {
			r.TLS = nil
		} else if r.TLS == nil {
			r.TLS = &tls.ConnectionState{}
		}
		if got := SameOrigin(tt.origin, r); got != tt.want {
			t.Errorf("SameOrigin(%q) with Sec-Fetch-Site %q, tls %v: %v", tt.origin, tt.fetchSite, tt.tls, got)
		}
	}
}

// TestDemoPage: the demo page of a demo installation embeds the messenger
// of its first site named DemoSiteName; without one, or on an
// installation not configured from the built-in demo, / is a landing page.
func TestDemoPage(t *testing.T) {
	f := newFixture(t)
	f.write(func(ctx context.Context, tx *ent.Tx) error {
		return tx.Site.Create().SetDisplayName(DemoSiteName).SetAllowedOrigins([]string{}).Exec(ctx)
	})
	_, body := f.do(http.MethodGet, "/")
	if want := `<script async src="http://parley.example.com/messenger.js" data-site-id="` + f.shop.ID.String() + `"></script>`; body != "<!doctype html>"+want {
		t.Errorf("demo page %q, want the first demo site's script %q", body, want)
	}
	f.write(func(ctx context.Context, tx *ent.Tx) error {
		_, err := tx.Site.Delete().Exec(ctx)
		return err
	})
	wantLanding := func(what string, f *fixture) {
		t.Helper()
		resp, body := f.do(http.MethodGet, "/")
		if resp.StatusCode != http.StatusOK || body != landingPage || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
			t.Errorf("%s: %d %q", what, resp.StatusCode, body)
		}
		wantHeaders(t, what, resp, "'none'")
	}
	wantLanding("a demo installation without its site", f)
	// An installation of its own, though it has a Demo Shop.
	own, err := bootstrap.Parse([]byte(strings.ReplaceAll(string(bootstrap.Demo), "ps_demo_", "ps_test_")))
	if err != nil {
		t.Fatal(err)
	}
	wantLanding("an installation of its own", newFixtureFrom(t, own))
}

// TestEmbeddedBuilds: the committed builds load, with the loader and the
// demo page among them, and every embedded file has a content type.
func TestEmbeddedBuilds(t *testing.T) {
	db := storetest.Open(t, filepath.Join(t.TempDir(), "parley.db"), store.Options{})
	h, err := New(db, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := h.files["/messenger.js"]; !ok || h.demo == nil {
		t.Fatalf("the embedded builds lack the loader or the demo page: %d files, demo %v", len(h.files), h.demo != nil)
	}
}

// TestUnknownFileType: a build with a file of a type the handler does not
// know is refused when the handler is made, not served without a type.
func TestUnknownFileType(t *testing.T) {
	_, err := newHandler(nil, slog.New(slog.DiscardHandler), fstest.MapFS{"messenger/notes.txt": {Data: []byte("x")}})
	if err == nil || !strings.Contains(err.Error(), "notes.txt") {
		t.Fatalf("got %v", err)
	}
}
