// Package webapps serves Parley's web apps from the builds embedded in dist/
// (made by clients/web/build.mjs and committed): the demo host page at /
// (on an installation configured from the built-in demo; others get a
// short landing page),
// the messenger loader at /messenger.js, the messenger iframe page at
// /messenger/ and the agent workspace at /workspace/, with their assets.
//
// Every response carries a strict Content-Security-Policy (scripts, styles
// and connections from this origin only, no inline code, no plugins, no
// forms posting elsewhere) and a Referrer-Policy. The messenger page may be
// framed only by the host page it was asked for: /messenger/?site=ID&parent=ORIGIN
// is served when the site exists and ORIGIN is one of its allowed origins
// (or this server's own origin: pages parleyd serves may embed its
// messenger; see SameOrigin), with frame-ancestors ORIGIN; otherwise it is refused with 403
// and a short text saying why. The site is read from the store on every such
// request, so an admin's change applies at once. Every other page may not be
// framed at all.
package webapps

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/schema"
	"github.com/parleyhq/parley/ent/site"
	"github.com/parleyhq/parley/server/internal/store"
)

// DemoSiteName is the display name of the site the demo host page embeds
// the messenger for (the demo bootstrap creates it).
const DemoSiteName = "Demo Shop"

//go:embed dist
var dist embed.FS

// basePolicy is the Content-Security-Policy of every response, without its
// frame-ancestors directive.
const basePolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; " +
	"connect-src 'self'; font-src 'self'; media-src 'self' blob:; form-action 'none'; base-uri 'none'"

// contentTypes are the types of the files served; other files are not.
var contentTypes = map[string]string{
	".html":  "text/html; charset=utf-8",
	".js":    "text/javascript; charset=utf-8",
	".css":   "text/css; charset=utf-8",
	".svg":   "image/svg+xml",
	".png":   "image/png",
	".ico":   "image/x-icon",
	".woff2": "font/woff2",
}

// file is one embedded file, ready to serve.
type file struct {
	body        []byte
	contentType string
	etag        string
}

// Handler serves the web apps. Its zero value is not usable: call New.
type Handler struct {
	db    *store.DB
	log   *slog.Logger
	files map[string]file // by URL path: "/messenger.js", "/messenger/", "/messenger/main.js"
	demo  *template.Template
}

// New returns the handler of the embedded apps; it reads sites from db.
func New(db *store.DB, log *slog.Logger) (*Handler, error) {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		return nil, fmt.Errorf("webapps: open the embedded builds: %w", err)
	}
	return newHandler(db, log, sub)
}

// newHandler serves the builds in files (dist/'s layout).
func newHandler(db *store.DB, log *slog.Logger, files fs.FS) (*Handler, error) {
	h := &Handler{db: db, log: log, files: map[string]file{}}
	err := fs.WalkDir(files, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(files, name)
		if err != nil {
			return err
		}
		ctype, ok := contentTypes[path.Ext(name)]
		if !ok {
			return fmt.Errorf("%s: no content type is known for its extension", name)
		}
		urlPath := "/" + strings.TrimSuffix(name, "index.html")
		sum := sha256.Sum256(body)
		h.files[urlPath] = file{body: body, contentType: ctype, etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:18]) + `"`}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("webapps: read the embedded builds: %w", err)
	}
	if page, ok := h.files["/demo/"]; ok {
		h.demo, err = template.New("demo").Parse(string(page.body))
		if err != nil {
			return nil, fmt.Errorf("webapps: parse the demo page: %w", err)
		}
		delete(h.files, "/demo/")
	}
	return h, nil
}

// ServeHTTP serves the apps' pages and assets (GET and HEAD only).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	header := w.Header()
	header.Set("Referrer-Policy", "same-origin")
	header.Set("Content-Security-Policy", basePolicy+"; frame-ancestors 'none'")
	header.Set("X-Frame-Options", "DENY")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		header.Set("Allow", "GET, HEAD")
		text(w, r, http.StatusMethodNotAllowed, "Only GET and HEAD are served here.")
		return
	}
	p := r.URL.Path
	switch {
	case p == "/":
		h.serveDemo(w, r)
	case p == "/messenger/":
		h.serveMessenger(w, r)
	case p == "/messenger" || p == "/workspace":
		target := p + "/"
		if r.URL.RawQuery != "" {
			target += "?" + r.URL.RawQuery
		}
		http.Redirect(w, r, target, http.StatusMovedPermanently)
	case p == "/messenger.js":
		// Pasted into other sites' pages: any page may load it.
		header.Set("Cross-Origin-Resource-Policy", "cross-origin")
		h.serveFile(w, r, p)
	case p == "/workspace/":
		header.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.serveFile(w, r, p)
	case strings.HasPrefix(p, "/messenger/"), strings.HasPrefix(p, "/workspace/"), strings.HasPrefix(p, "/demo/"):
		header.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.serveFile(w, r, p)
	default:
		text(w, r, http.StatusNotFound, "Not found.")
	}
}

// serveFile serves the embedded file at urlPath, or 404. Names carry no
// content hash, so browsers revalidate every time (cheaply, by ETag).
func (h *Handler) serveFile(w http.ResponseWriter, r *http.Request, urlPath string) {
	f, ok := h.files[urlPath]
	if !ok {
		text(w, r, http.StatusNotFound, "Not found. (An app that is missing here was not built into this parleyd: npm run build:apps in clients/web, then go build.)")
		return
	}
	w.Header().Set("Content-Type", f.contentType)
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("ETag", f.etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
}

// landingPage is / of an installation that is not the demo.
const landingPage = `<!doctype html><html lang="en"><meta charset="utf-8"><title>Parley</title>` +
	`<p>Parley is running. Agents and supervisors sign in to the <a href="/workspace/">workspace</a>.</p></html>` + "\n"

// serveDemo serves the demo host page, which embeds the messenger of the
// demo site through the loader, as a third-party site would; an
// installation not configured from the built-in demo (or without its
// site) gets a short landing page instead.
func (h *Handler) serveDemo(w http.ResponseWriter, r *http.Request) {
	siteID, err := h.demoSite(r.Context())
	if err != nil {
		h.log.Error("the demo page could not read its site", "err", err)
		text(w, r, http.StatusServiceUnavailable, "The demo page is unavailable: the store does not answer. Try again in a moment.")
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if siteID == "" || h.demo == nil {
		http.ServeContent(w, r, "", time.Time{}, strings.NewReader(landingPage))
		return
	}
	var page bytes.Buffer
	data := struct{ SiteID, Origin string }{siteID, serverOrigin(r)}
	if err := h.demo.Execute(&page, data); err != nil {
		h.log.Error("render the demo page", "err", err)
		text(w, r, http.StatusInternalServerError, "The demo page could not be rendered.")
		return
	}
	w.Header().Set("Cross-Origin-Opener-Policy", "same-origin")
	// It embeds the messenger, which this server serves.
	w.Header().Set("Content-Security-Policy", basePolicy+"; frame-src 'self'; frame-ancestors 'none'")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(page.Bytes()))
}

// demoSite returns the id of the site named DemoSiteName (the first made,
// if an admin made more: ids are time-ordered) of an installation
// configured from the built-in demo, or "" if it is not one or there is
// no such site.
func (h *Handler) demoSite(ctx context.Context) (string, error) {
	set, err := h.db.Setting.Get(ctx, schema.SettingsID)
	if ent.IsNotFound(err) || (err == nil && !set.Demo) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the settings: %w", err)
	}
	s, err := h.db.Site.Query().Where(site.DisplayName(DemoSiteName)).Order(ent.Asc(site.FieldID)).First(ctx)
	if ent.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("find the demo site: %w", err)
	}
	return s.ID.String(), nil
}

// serveMessenger serves the messenger page to the host page named by the
// query's parent, if the query's site allows it there.
func (h *Handler) serveMessenger(w http.ResponseWriter, r *http.Request) {
	parent, refusal, err := h.messengerParent(r)
	if err != nil {
		h.log.Error("the messenger page could not read its site", "err", err)
		text(w, r, http.StatusServiceUnavailable, "The chat is unavailable: the store does not answer. Try again in a moment.")
		return
	}
	if refusal != "" {
		// The refusal may show inside the frame that asked for it: it
		// holds nothing of the app, and tells the site's developer why.
		w.Header().Set("Content-Security-Policy", basePolicy+"; frame-ancestors *")
		w.Header().Del("X-Frame-Options")
		w.Header().Set("Cache-Control", "no-store")
		text(w, r, http.StatusForbidden, "This chat cannot be shown here: "+refusal)
		return
	}
	w.Header().Set("Content-Security-Policy", basePolicy+"; frame-ancestors "+parent)
	// X-Frame-Options cannot name one origin; frame-ancestors decides.
	w.Header().Del("X-Frame-Options")
	f, ok := h.files["/messenger/"]
	if !ok {
		text(w, r, http.StatusNotFound, "Not found. (The messenger was not built into this parleyd: npm run build:apps in clients/web, then go build.)")
		return
	}
	w.Header().Set("Content-Type", f.contentType)
	// The answer depends on the query and on the site's configuration
	// now: never reuse it.
	w.Header().Set("Cache-Control", "no-store")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
}

// messengerParent checks the messenger page's query: site must name a
// site and parent must be a plain origin that the site allows, or this
// server's own. It returns the parent origin, or why the page is refused.
func (h *Handler) messengerParent(r *http.Request) (parent, refusal string, err error) {
	q := r.URL.Query()
	siteID, err := uuid.Parse(q.Get("site"))
	if q.Get("site") == "" || err != nil {
		return "", "the page's address must name a site (?site=SITE_ID&parent=ORIGIN); paste the messenger script with its data-site-id.", nil
	}
	parent = q.Get("parent")
	if !isOrigin(parent) {
		return "", fmt.Sprintf("parent %q is not an origin such as https://shop.example.com.", parent), nil
	}
	s, err := h.db.Site.Get(r.Context(), siteID)
	if ent.IsNotFound(err) {
		return "", fmt.Sprintf("site %s does not exist; ask the site's admin for the messenger's site id.", siteID), nil
	}
	if err != nil {
		return "", "", fmt.Errorf("load site %s: %w", siteID, err)
	}
	if !SameOrigin(parent, r) && !slices.Contains(s.AllowedOrigins, parent) {
		return "", fmt.Sprintf("pages from %s may not embed the messenger of site %s; an admin adds the origin to the site's allowed origins (AccessService).", parent, siteID), nil
	}
	return parent, "", nil
}

// isOrigin reports whether s is a serialized http(s) origin: a scheme and a
// host (with a port, perhaps), nothing else, in the canonical spelling
// browsers send (lower case, punycode). It must be, to be put in a header.
func isOrigin(s string) bool {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || s != u.Scheme+"://"+u.Host {
		return false
	}
	for _, c := range u.Host {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.ContainsRune(".-_:[]", c)) {
			return false
		}
	}
	return true
}

// serverOrigin is this server's origin as r addressed it.
func serverOrigin(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// SameOrigin reports whether origin, as a browser sent it (an Origin
// header, or the messenger page's parent), is this server's own origin as
// r addressed it: the same host and scheme. Behind a proxy that terminated
// TLS, r arrives in cleartext for an https origin; then the browser's own
// word that the request is same-origin (Sec-Fetch-Site, which no page can
// set or change) stands for the scheme.
func SameOrigin(origin string, r *http.Request) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host != r.Host || origin != u.Scheme+"://"+u.Host {
		return false
	}
	switch {
	case u.Scheme == "https" && r.TLS != nil, u.Scheme == "http" && r.TLS == nil:
		return true
	case u.Scheme == "https":
		return r.Header.Get("Sec-Fetch-Site") == "same-origin"
	}
	return false
}

// text answers with a short plain-text page (its headers only, to HEAD).
func text(w http.ResponseWriter, r *http.Request, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		fmt.Fprintln(w, msg)
	}
}
