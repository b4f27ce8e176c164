// Command parleyd serves Parley: Connect, gRPC and gRPC-Web on one port
// (HTTP/1.1 and HTTP/2 cleartext), on an embedded SQLite file.
//
// Usage:
//
//	parleyd [-addr localhost:8080] [-db parley.db] [-bootstrap file.yaml] [flags]
//
// Run parleyd -h for every flag.
//
// PARLEY_ADDR and PARLEY_DB set the defaults of -addr and -db,
// PARLEY_METRICS_ADDR that of -metrics-addr, and OTEL_EXPORTER_OTLP_ENDPOINT
// that of -otlp-endpoint.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/parleyhq/parley/server/internal/app"
	"github.com/parleyhq/parley/server/internal/assistant/llm"
	"github.com/parleyhq/parley/server/internal/bootstrap"
	"github.com/parleyhq/parley/server/internal/clientaddr"
	"github.com/parleyhq/parley/server/internal/clock"
	"github.com/parleyhq/parley/server/internal/events"
	"github.com/parleyhq/parley/server/internal/identity"
	"github.com/parleyhq/parley/server/internal/knowledge"
	"github.com/parleyhq/parley/server/internal/messaging"
	"github.com/parleyhq/parley/server/internal/metrics"
	"github.com/parleyhq/parley/server/internal/origin"
	"github.com/parleyhq/parley/server/internal/retention"
	"github.com/parleyhq/parley/server/internal/store"
)

// shutdownGrace bounds how long in-flight calls get to finish on SIGTERM.
const shutdownGrace = 10 * time.Second

// tracingFlush bounds how long the spans not yet exported get on exit.
const tracingFlush = 5 * time.Second

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(log, os.Args[1:]); err != nil {
		log.Error("parleyd stopped", "err", err)
		os.Exit(1)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// splitList splits a comma-separated flag, dropping empty items.
func splitList(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// flags are parleyd's command line.
type flags struct {
	addr, dbPath, bootPath, identityPath string
	maxBytes, sendBurst, attachBytes     int
	heartbeat, lifetime, writeTimeout    time.Duration
	maxStreams, writeBatch, pgConns      int
	writeWait                            time.Duration
	sendRate                             float64
	attachTypes, sync, trusted, origins  string
	metricsAddr, otlpEndpoint            string
	llmBaseURL, llmModel                 string
	tlsCert, tlsKey                      string
	llmTimeout                           time.Duration
	convAttachBytes                      int64
	retention                            retention.Policy
}

// parseFlags reads args, refusing limits that are not positive.
func parseFlags(args []string) (*flags, error) {
	f := &flags{}
	fs := flag.NewFlagSet("parleyd", flag.ContinueOnError)
	fs.StringVar(&f.addr, "addr", envOr("PARLEY_ADDR", "localhost:8080"), "listen address (env PARLEY_ADDR)")
	fs.StringVar(&f.dbPath, "db", envOr("PARLEY_DB", "parley.db"), "SQLite database file, or a postgres:// URL for PostgreSQL (several replicas may share one) (env PARLEY_DB)")
	fs.IntVar(&f.pgConns, "pg-max-conns", store.DefaultMaxConns, "PostgreSQL: connections in each of the read and write pools")
	fs.StringVar(&f.bootPath, "bootstrap", "", "bootstrap YAML applied to a new database (default: the built-in demo)")
	fs.StringVar(&f.identityPath, "identity", "", "YAML listing the sites whose JWTs identify customers (default: the built-in demo portal on a database configured from the built-in demo and started without -bootstrap; otherwise none)")
	fs.IntVar(&f.maxBytes, "max-request-bytes", app.DefaultMaxRequestBytes, "largest request message accepted, after decompression")
	fs.DurationVar(&f.heartbeat, "heartbeat", app.DefaultHeartbeat, "how long a stream stays silent before it sends a heartbeat")
	fs.DurationVar(&f.lifetime, "max-stream-lifetime", app.DefaultMaxStreamLifetime, "streams end with Unavailable after this long, and clients resume")
	fs.DurationVar(&f.writeTimeout, "stream-write-timeout", app.DefaultWriteTimeout, "a stream whose client takes no message for this long ends (the client resumes from its cursor)")
	fs.IntVar(&f.maxStreams, "max-streams-per-caller", app.DefaultMaxStreamsPerCaller, "streams one caller (a token's principal, or a client address) may have open at once")
	fs.Float64Var(&f.sendRate, "send-rate", app.DefaultSendRate, "messages and uploads per second each participant may keep up")
	fs.IntVar(&f.sendBurst, "send-burst", app.DefaultSendBurst, "messages and uploads each participant may send at once")
	fs.IntVar(&f.attachBytes, "max-attachment-bytes", app.DefaultMaxAttachmentBytes, "largest attachment accepted")
	fs.StringVar(&f.attachTypes, "attachment-types", strings.Join(messaging.DefaultAttachmentTypes, ","), "comma-separated content types attachments may have")
	fs.StringVar(&f.sync, "sqlite-synchronous", string(store.SyncNormal), "normal: acknowledged writes survive a crash of parleyd; full: also power loss (one fsync per commit; queued writes share a commit)")
	fs.IntVar(&f.writeBatch, "sqlite-max-batch", 64, "at most this many queued write transactions share one SQLite commit (1: one commit each)")
	fs.DurationVar(&f.writeWait, "sqlite-max-write-wait", 5*time.Second, "a write that waited this long for SQLite's writer is refused with Unavailable and a retry hint")
	fs.StringVar(&f.trusted, "trusted-proxies", os.Getenv("PARLEY_TRUSTED_PROXIES"), "comma-separated addresses or CIDR ranges of reverse proxies whose X-Forwarded-For is believed (env PARLEY_TRUSTED_PROXIES); default none")
	fs.StringVar(&f.origins, "allowed-origins", os.Getenv("PARLEY_ALLOWED_ORIGINS"), "comma-separated browser origins allowed besides the sites' (env PARLEY_ALLOWED_ORIGINS), such as the portal or the agent workspace")
	fs.StringVar(&f.metricsAddr, "metrics-addr", os.Getenv("PARLEY_METRICS_ADDR"), "side listen address of /metrics, /debug/pprof/, /livez and /readyz (env PARLEY_METRICS_ADDR); default none: off")
	fs.StringVar(&f.otlpEndpoint, "otlp-endpoint", os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT"), "OTLP/HTTP base URL that RPC traces are sent to, such as http://localhost:4318 (env OTEL_EXPORTER_OTLP_ENDPOINT); default none: tracing off")
	fs.StringVar(&f.tlsCert, "tls-cert", os.Getenv("PARLEY_TLS_CERT"), "PEM certificate (chain) to serve TLS with, so browsers get HTTP/2 (env PARLEY_TLS_CERT); with -tls-key; default none: cleartext HTTP/1.1 and h2c, for a TLS-terminating load balancer or local use")
	fs.StringVar(&f.tlsKey, "tls-key", os.Getenv("PARLEY_TLS_KEY"), "PEM private key of -tls-cert (env PARLEY_TLS_KEY)")
	fs.StringVar(&f.llmBaseURL, "llm-base-url", os.Getenv("PARLEY_LLM_BASE_URL"), "base URL of an OpenAI-compatible chat-completions API, such as https://api.openai.com/v1 or http://localhost:11434/v1 (env PARLEY_LLM_BASE_URL); the virtual agent then adds a generated summary at each hand-off; its key comes from PARLEY_LLM_API_KEY; default none: summaries are extractive only")
	fs.StringVar(&f.llmModel, "llm-model", os.Getenv("PARLEY_LLM_MODEL"), "model for -llm-base-url (env PARLEY_LLM_MODEL)")
	fs.DurationVar(&f.llmTimeout, "llm-timeout", 10*time.Second, "how long a generated summary may take; the chat never waits for it")
	fs.Int64Var(&f.convAttachBytes, "max-conversation-attachment-bytes", app.DefaultMaxConversationAttachmentBytes, "largest total size of one conversation's attachments")
	fs.DurationVar(&f.retention.Attachments, "attachment-retention", retention.DefaultAttachments, "uploads that no message references are deleted after this long")
	fs.DurationVar(&f.retention.Tokens, "token-retention", retention.DefaultTokens, "tokens are deleted this long after they expired or were revoked")
	fs.DurationVar(&f.retention.Idempotency, "idempotency-retention", retention.DefaultIdempotency, "request ids of retryable writes are remembered this long; a retry after that is a new write")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if f.sendRate <= 0 || f.sendBurst <= 0 || f.attachBytes <= 0 || f.lifetime <= 0 || f.heartbeat <= 0 || f.maxBytes <= 0 ||
		f.convAttachBytes <= 0 || f.retention.Attachments <= 0 || f.retention.Tokens <= 0 || f.retention.Idempotency <= 0 ||
		f.writeTimeout <= 0 || f.maxStreams <= 0 || f.writeBatch <= 0 || f.writeWait <= 0 || f.pgConns <= 0 {
		return nil, errors.New("-send-rate, -send-burst, -max-attachment-bytes, -max-conversation-attachment-bytes, -max-stream-lifetime, " +
			"-heartbeat, -max-request-bytes, -stream-write-timeout, -max-streams-per-caller, -sqlite-max-batch, " +
			"-sqlite-max-write-wait, -pg-max-conns and the -*-retention flags must be positive")
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return nil, errors.New("-tls-cert and -tls-key go together: give both to serve TLS, or neither")
	}
	for _, o := range splitList(f.origins) {
		if err := origin.Check(o); err != nil {
			return nil, fmt.Errorf("-allowed-origins: %w", err)
		}
	}
	return f, nil
}

// options are the app's options from the flags.
func (f *flags) options(log *slog.Logger, customers *identity.Verifier, addresses *clientaddr.Resolver) app.Options {
	return app.Options{
		Customers:           customers,
		Log:                 log,
		MaxRequestBytes:     f.maxBytes,
		Heartbeat:           f.heartbeat,
		MaxStreamLifetime:   f.lifetime,
		WriteTimeout:        f.writeTimeout,
		MaxStreamsPerCaller: f.maxStreams,
		SendRate:            f.sendRate,
		SendBurst:           f.sendBurst,
		MaxAttachmentBytes:  f.attachBytes,
		AttachmentTypes:     strings.Split(f.attachTypes, ","),
		ClientAddresses:     addresses,
		AllowedOrigins:      splitList(f.origins),

		MaxConversationAttachmentBytes: f.convAttachBytes,
		Retention:                      f.retention,
	}
}

// run is parleyd: it opens and configures the database, then serves until
// SIGTERM or Ctrl-C.
func run(log *slog.Logger, args []string) error {
	f, err := parseFlags(args)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	db, err := store.Open(ctx, f.dbPath, store.Options{
		Synchronous: store.Synchronous(f.sync),
		Writer:      store.WriterOptions{MaxBatch: f.writeBatch, MaxWait: f.writeWait},
		MaxConns:    f.pgConns,
	})
	if err != nil {
		return err
	}
	defer db.Close()

	boot, bootName, err := loadBootstrap(f.bootPath)
	if err != nil {
		return err
	}
	kb, err := knowledge.Open(ctx, db)
	if err != nil {
		return fmt.Errorf("open the knowledge base: %w", err)
	}
	res, err := bootstrap.Apply(ctx, db, boot, kb.ImportMarkdown)
	if err != nil {
		return err
	}
	reportBootstrap(log, f, bootName, res)
	addresses, err := clientaddr.NewResolver(splitList(f.trusted))
	if err != nil {
		return fmt.Errorf("-trusted-proxies: %w", err)
	}
	customers, idName, err := verifier(ctx, log, f, res.Demo)
	if err != nil {
		return err
	}
	opts := f.options(log, customers, addresses)
	if f.llmBaseURL != "" {
		if opts.LLM, err = llm.New(llm.Config{BaseURL: f.llmBaseURL, Model: f.llmModel, APIKey: os.Getenv("PARLEY_LLM_API_KEY"), Timeout: f.llmTimeout}, nil); err != nil {
			return fmt.Errorf("-llm-base-url: %w", err)
		}
	}
	if f.metricsAddr != "" {
		opts.Metrics = metrics.New(clock.Real{})
	}
	if f.otlpEndpoint != "" {
		if opts.Tracing, err = metrics.NewTracing(ctx, f.otlpEndpoint); err != nil {
			return fmt.Errorf("-otlp-endpoint: %w", err)
		}
		defer flushTraces(log, opts.Tracing)
	}
	return serve(ctx, log, app.New(db, opts), opts.Metrics, f, res.Demo, idName)
}

// flushTraces sends the spans not yet exported, within tracingFlush.
func flushTraces(log *slog.Logger, tracing *metrics.Tracing) {
	ctx, cancel := context.WithTimeout(context.Background(), tracingFlush)
	defer cancel()
	if err := tracing.Shutdown(ctx); err != nil {
		log.Warn("spans were lost on exit", "err", err)
	}
}

// loadBootstrap reads the bootstrap file at path (the built-in demo if
// empty), with PARLEY_ADMIN_TOKEN's admin added, and names it.
func loadBootstrap(path string) (*bootstrap.File, string, error) {
	name := "built-in demo"
	var boot *bootstrap.File
	var err error
	if path == "" {
		boot, err = bootstrap.ParseDemo()
	} else {
		name = path
		var data []byte
		if data, err = os.ReadFile(path); err != nil {
			return nil, "", fmt.Errorf("read bootstrap file: %w", err)
		}
		boot, err = bootstrap.Parse(data)
	}
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", name, err)
	}
	if token := os.Getenv("PARLEY_ADMIN_TOKEN"); token != "" {
		if err := boot.AddAdmin(token, "PARLEY_ADMIN_TOKEN"); err != nil {
			return nil, "", fmt.Errorf("PARLEY_ADMIN_TOKEN: %w", err)
		}
	}
	return boot, name, nil
}

// reportBootstrap logs what applying the bootstrap file did, and prints a
// generated admin token once.
func reportBootstrap(log *slog.Logger, f *flags, bootName string, res bootstrap.Result) {
	if res.Applied {
		log.Info("new database configured", "db", store.Redact(f.dbPath), "bootstrap", bootName)
	} else if f.bootPath != "" {
		log.Warn("the database is already configured; -bootstrap applies to a new database only and was ignored", "db", store.Redact(f.dbPath))
	}
	if res.GeneratedAdminToken != "" {
		// Printed once, on standard output: the log (standard error) never
		// holds a token, wherever it is collected.
		fmt.Fprintf(os.Stdout, "no admin token was configured, so parleyd made one; it is shown only now:\n\n  %s\n\n"+
			"keep it in a password manager; it can issue other tokens (AccessService) and be revoked\n", res.GeneratedAdminToken)
		log.Info("no admin token was configured: parleyd made one and printed it on standard output, once")
	}
}

// verifier returns the verifier of customers' JWTs and names the identity
// file it trusts ("built-in demo", "none" or the -identity path).
//
// The demo portal's secret is public: it is trusted only by a database
// configured from the built-in demo, started without -bootstrap and
// without -identity. A database configured from your own bootstrap file
// never trusts it, with or without the flag on later starts.
func verifier(ctx context.Context, log *slog.Logger, f *flags, demo bool) (*identity.Verifier, string, error) {
	idData, idName := identity.Demo, "built-in demo"
	if !demo || f.bootPath != "" {
		idData, idName = nil, "none"
	}
	if f.identityPath != "" {
		var err error
		if idData, err = os.ReadFile(f.identityPath); err != nil {
			return nil, "", fmt.Errorf("read identity file: %w", err)
		}
		idName = f.identityPath
	}
	idConfig := &identity.Config{}
	if idData != nil {
		var err error
		if idConfig, err = identity.ParseConfig(idData); err != nil {
			return nil, "", fmt.Errorf("%s: %w", idName, err)
		}
	}
	customers, err := identity.NewVerifier(ctx, idConfig, clock.Real{}, log)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", idName, err)
	}
	return customers, idName, nil
}

// serve listens on f.addr and serves a until ctx ends, then drains its
// streams and shuts down within shutdownGrace. With reg, it serves the
// operations endpoints on f.metricsAddr too, until it returns.
func serve(ctx context.Context, log *slog.Logger, a *app.App, reg *metrics.Registry, f *flags, demo bool, idName string) error {
	lis, err := net.Listen("tcp", f.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// serving is whether the public listener serves; /readyz tells.
	var serving atomic.Bool
	if reg != nil {
		stop, err := serveOps(log, reg, f.metricsAddr, func(probe context.Context) error {
			switch {
			case ctx.Err() != nil:
				return errors.New("shutting down")
			case !serving.Load():
				return errors.New("the public listener is not serving")
			}
			return a.Ready(probe)
		})
		if err != nil {
			lis.Close()
			return err
		}
		defer stop()
	}
	srv := &http.Server{
		Handler:           loopbackOnly(lis.Addr(), a.Handler),
		ReadHeaderTimeout: 10 * time.Second,
	}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	scheme := "http"
	if f.tlsCert != "" {
		// Browsers speak HTTP/2 only over TLS (ALPN h2); without it they
		// hold six connections per host, one per open stream.
		cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
		if err != nil {
			lis.Close()
			return fmt.Errorf("-tls-cert, -tls-key: %w", err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		srv.Protocols.SetHTTP2(true)
		scheme = "https"
	} else {
		srv.Protocols.SetUnencryptedHTTP2(true)
	}

	if store.IsPostgres(f.dbPath) {
		if err := a.JoinReplicas(ctx, f.dbPath, events.RelayOptions{Log: log}); err != nil {
			lis.Close()
			return err
		}
	}
	defer a.Close()
	go a.Run(ctx)
	served := make(chan error, 1)
	serving.Store(true)
	go func() {
		var err error
		if srv.TLSConfig != nil {
			err = srv.ServeTLS(lis, "", "") // the certificate is in TLSConfig
		} else {
			err = srv.Serve(lis)
		}
		serving.Store(false)
		served <- err
	}()
	greet(scheme, lis.Addr(), store.Redact(f.dbPath), demo, idName)

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down", "grace", shutdownGrace)
	// Streams would hold Shutdown until its deadline: it ends them first.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := a.Shutdown(shutdownCtx, srv); err != nil {
		log.Warn("calls still running at the end of the grace period were cut off", "err", err)
		if !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
	}
	return nil
}

// serveOps serves reg's side handler (metrics, pprof, /livez, /readyz with
// ready) on addr until stop is called.
func serveOps(log *slog.Logger, reg *metrics.Registry, addr string, ready func(context.Context) error) (stop func(), err error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on -metrics-addr: %w", err)
	}
	srv := &http.Server{Handler: reg.Handler(ready), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
			log.Error("the operations listener stopped", "err", err)
		}
	}()
	fmt.Fprintf(os.Stderr, "parleyd operations on http://%s (/metrics, /debug/pprof/, /livez, /readyz)\n", lis.Addr())
	return func() { srv.Close() }, nil
}

// greet tells the operator, on standard error, where parleyd listens and
// which demo credentials and identity it trusts.
func greet(scheme string, addr net.Addr, dbPath string, demo bool, idName string) {
	fmt.Fprintf(os.Stderr, "parleyd listening on %s://%s (Connect, gRPC, gRPC-Web; database %s)\n", scheme, addr, dbPath)
	fmt.Fprintf(os.Stderr, "open %s://%s/workspace/ for the agent workspace\n", scheme, addr)
	if demo {
		fmt.Fprintf(os.Stderr, "open %s://%s/ for the demo shop with the messenger (agents sign in to the workspace with ps_demo_agent_beth, ps_demo_agent_fred or ps_demo_agent_abel; ps_demo_supervisor sees the queues)\n", scheme, addr)
		fmt.Fprintf(os.Stderr, "demo tokens (admin and agents) are in server/internal/bootstrap/demo.yaml; try:\n"+
			"  grpcurl %s -H 'Authorization: Bearer ps_demo_admin_token' %s parley.v1.RoutingService/ListQueues\n", grpcurlFlag(scheme), addr)
	}
	switch idName {
	case "built-in demo":
		fmt.Fprintf(os.Stderr, "customer JWTs signed with the public demo secret in server/internal/identity/demo.yaml are accepted; use -identity for a real site\n")
	case "none":
		fmt.Fprintf(os.Stderr, "no -identity file: signed-in customers cannot call until one lists your portal's or site's JWT issuer\n")
	}
}

// grpcurlFlag is the grpcurl flag that reaches a server of scheme: TLS
// needs none with a trusted certificate (-insecure for a self-signed one).
func grpcurlFlag(scheme string) string {
	if scheme == "https" {
		return "-insecure"
	}
	return "-plaintext"
}
