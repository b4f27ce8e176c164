// Package metrics holds parleyd's operational telemetry: a Prometheus
// registry with Parley's collectors (RPCs, streams, the store's writer,
// routing passes, queue lengths, notifier lag) beside the Go runtime and
// process collectors, the handler of the side listener that serves them
// with pprof and the health probes (see Registry.Handler), and the
// optional OpenTelemetry tracing of RPCs (see NewTracing).
//
// Nothing here is global: each Registry is its own prometheus.Registry,
// and the Observe methods are safe on a nil *Registry (metrics off), so
// callers need no checks.
package metrics

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/parleyhq/parley/server/internal/clock"
	"github.com/parleyhq/parley/server/internal/store"
)

// namespace prefixes every Parley metric.
const namespace = "parley"

// Registry is a Prometheus registry with Parley's collectors. Create it
// with New; app.New feeds it (RPCs, the store, routing passes) when
// app.Options.Metrics is set.
type Registry struct {
	prom *prometheus.Registry
	clk  clock.Clock

	rpcs           *prometheus.CounterVec
	rpcDuration    *prometheus.HistogramVec
	streamsOpened  *prometheus.CounterVec
	streamDuration *prometheus.HistogramVec
	streamsOpen    *prometheus.GaugeVec
	writeDuration  prometheus.Histogram
	routingPass    prometheus.Histogram
	notifierLag    prometheus.Histogram

	// db is the store the store collectors read (see WatchStore); nil
	// until one is watched.
	db     atomic.Pointer[store.DB]
	queues *queueCollector
}

// New returns a registry holding the Go runtime and process collectors and
// Parley's, measuring durations on clk (nil means the real clock).
func New(clk clock.Clock) *Registry {
	if clk == nil {
		clk = clock.Real{}
	}
	r := &Registry{
		prom: prometheus.NewRegistry(),
		clk:  clk,
		rpcs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "rpcs_total",
			Help: "RPCs finished (unary and streaming), by procedure and Connect code (ok on success).",
		}, []string{"procedure", "code"}),
		rpcDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "rpc_duration_seconds",
			Help:    "Time to answer a unary RPC, by procedure.",
			Buckets: prometheus.DefBuckets,
		}, []string{"procedure"}),
		streamsOpened: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "streams_opened_total",
			Help: "Streaming RPCs opened, by procedure.",
		}, []string{"procedure"}),
		streamDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "stream_duration_seconds",
			Help:    "How long a streaming RPC stayed open, by procedure.",
			Buckets: []float64{1, 5, 15, 60, 300, 900, 1800, 3600},
		}, []string{"procedure"}),
		streamsOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "streams_open",
			Help: "Streaming RPCs open now, by procedure.",
		}, []string{"procedure"}),
		writeDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "store", Name: "write_transaction_seconds",
			Help:    "Time one write transaction took on the store's writer (fed through ObserveWriteTransaction).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		routingPass: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "routing", Name: "pass_seconds",
			Help:    "Time one routing pass took.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		notifierLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "notifier", Name: "lag_seconds",
			Help:    "Time from a commit to its wake-up reaching this replica's notifier (fed through ObserveNotifierLag).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
	}
	r.queues = newQueueCollector(&r.db, clk)
	r.prom.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		r.rpcs, r.rpcDuration, r.streamsOpened, r.streamDuration, r.streamsOpen,
		r.writeDuration, r.routingPass, r.notifierLag, r.queues,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "store", Name: "write_queue_length",
			Help: "Write transactions waiting for the store's writer.",
		}, func() float64 { return r.fromStore(func(db *store.DB) float64 { return float64(db.Queued()) }) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "store", Name: "commits_total",
			Help: "Commits the store's writer made; queued write transactions may share one (group commit).",
		}, func() float64 { return r.fromStore(func(db *store.DB) float64 { return float64(db.Commits()) }) }),
	)
	return r
}

// WatchStore makes the store collectors (writer queue length, commits,
// queue lengths) read db; before it they report zero and no queues.
func (r *Registry) WatchStore(db *store.DB) {
	r.db.Store(db)
	db.ObserveWrites(r.ObserveWriteTransaction)
}

// fromStore is read(db) for the watched store, or 0 if none is.
func (r *Registry) fromStore(read func(*store.DB) float64) float64 {
	if db := r.db.Load(); db != nil {
		return read(db)
	}
	return 0
}

// metricsHandler serves the registry in the Prometheus exposition format. A
// collector that fails (the queue lengths, when the store does not answer)
// is left out of the scrape and the rest is served.
func (r *Registry) metricsHandler() http.Handler {
	return promhttp.HandlerFor(r.prom, promhttp.HandlerOpts{
		Registry:      r.prom,
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// ObserveRoutingPass records one routing pass that took d; it is the
// routing dispatcher's OnPass hook. It does nothing on a nil Registry.
func (r *Registry) ObserveRoutingPass(d time.Duration) {
	if r != nil {
		r.routingPass.Observe(d.Seconds())
	}
}

// ObserveNotifierLag records the lag of one notification from another
// replica: from its sending (by the sender's clock) to its receipt here.
// The PostgreSQL relay calls it (app.JoinReplicas); on SQLite there is no
// notifier and it stays empty. It does nothing on a nil Registry. Exposed
// as parley_notifier_lag_seconds.
func (r *Registry) ObserveNotifierLag(d time.Duration) {
	if r != nil {
		r.notifierLag.Observe(d.Seconds())
	}
}

// ObserveWriteTransaction records one write transaction that took d, from
// the call to its answer (waits for the writer, a connection or a row
// lock, and retries, included); WatchStore has the store call it. It does
// nothing on a nil Registry. Exposed as
// parley_store_write_transaction_seconds.
func (r *Registry) ObserveWriteTransaction(d time.Duration) {
	if r != nil {
		r.writeDuration.Observe(d.Seconds())
	}
}
