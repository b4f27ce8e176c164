package app

import (
	"fmt"
	"net/http"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"

	"github.com/parleyhq/parley/server/internal/access"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/session"
	"github.com/parleyhq/parley/server/internal/webapps"
)

// defaultPolicy is the Content-Security-Policy of every response that
// does not set its own (the web apps' pages do): nothing may load, run or
// frame it. It covers what no handler of Parley's writes, such as the
// redirects of the router's path cleaning.
const defaultPolicy = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

// browserHeaders tells browsers to take every response's content type as
// sent, and gives it defaultPolicy unless its handler replaces it.
func browserHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Content-Security-Policy", defaultPolicy)
		next.ServeHTTP(w, r)
	})
}

// refuseOrigins refuses, in the request's own protocol, a browser request
// from an origin that may not call Parley. CORS alone leaves that to the
// browser, which may act on a preflight it cached before the origin was
// removed; here the server decides on every request. Requests without an
// Origin (grpcurl, mobile apps, servers) and same-origin requests (pages
// parleyd serves) pass; the latter are marked as such for the services
// (session.WithSameOriginCall).
func refuseOrigins(origins *access.Origins, next http.Handler) http.Handler {
	errors := connecthttp.NewErrorWriter()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin != "" && webapps.SameOrigin(origin, r) {
			// A page parleyd served (the messenger's, served only to
			// host pages its site allows): the services are told, since
			// its Origin is not one of the site's.
			next.ServeHTTP(w, r.WithContext(session.WithSameOriginCall(r.Context())))
			return
		}
		if origin == "" || origins.Allowed(r.Context(), origin) {
			next.ServeHTTP(w, r)
			return
		}
		err := apierr.New(connect.CodePermissionDenied, "ORIGIN_NOT_ALLOWED",
			fmt.Sprintf("browser pages from %s may not call this server; an admin adds the origin to a site (AccessService) or to -allowed-origins", origin))
		if writeErr := errors.Write(w, r, err); writeErr != nil {
			http.Error(w, err.Message(), http.StatusForbidden)
		}
	})
}
