package metrics

import (
	"context"
	"fmt"
	"net/http"
	"net/http/pprof"
	"time"
)

// ReadyTimeout bounds one readiness check: a store that does not answer
// within it makes the server not ready.
const ReadyTimeout = time.Second

// Handler is the side listener's handler, for operators only (never mount
// it on the public port):
//
//   - /metrics: the registry, in the Prometheus exposition format;
//   - /debug/pprof/: the net/http/pprof index and profiles;
//   - /livez: 200 while the process serves HTTP at all;
//   - /readyz: 200 when ready returns nil within ReadyTimeout, otherwise
//     503 with ready's error as a one-line plain-text reason.
//
// Importing net/http/pprof also registers its handlers on
// http.DefaultServeMux; parleyd never serves that mux.
func (r *Registry) Handler(ready func(context.Context) error) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", r.metricsHandler())
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/livez", func(w http.ResponseWriter, _ *http.Request) {
		plain(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, req *http.Request) {
		ctx, cancel := context.WithTimeout(req.Context(), ReadyTimeout)
		defer cancel()
		if err := ready(ctx); err != nil {
			plain(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
			return
		}
		plain(w, http.StatusOK, "ok")
	})
	return mux
}

// plain answers with status and a one-line plain-text body.
func plain(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	fmt.Fprintln(w, body)
}
