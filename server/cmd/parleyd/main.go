// Command parleyd serves Parley: Connect, gRPC and gRPC-Web on one port
// (HTTP/1.1 and HTTP/2 cleartext), on an embedded SQLite file.
//
// Usage:
//
//	parleyd [-addr localhost:8080] [-db parley.db] [-bootstrap file.yaml] [flags]
//
// Run parleyd -h for every flag.
//
// PARLEY_ADDR and PARLEY_DB set the defaults of -addr and -db.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/parleyhq/parley/server/internal/app"
	"github.com/parleyhq/parley/server/internal/bootstrap"
	"github.com/parleyhq/parley/server/internal/clientaddr"
	"github.com/parleyhq/parley/server/internal/clock"
	"github.com/parleyhq/parley/server/internal/identity"
	"github.com/parleyhq/parley/server/internal/messaging"
	"github.com/parleyhq/parley/server/internal/retention"
	"github.com/parleyhq/parley/server/internal/store"
)

// shutdownGrace bounds how long in-flight calls get to finish on SIGTERM.
const shutdownGrace = 10 * time.Second

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

func run(log *slog.Logger, args []string) error {
	fs := flag.NewFlagSet("parleyd", flag.ContinueOnError)
	addr := fs.String("addr", envOr("PARLEY_ADDR", "localhost:8080"), "listen address (env PARLEY_ADDR)")
	dbPath := fs.String("db", envOr("PARLEY_DB", "parley.db"), "SQLite database file (env PARLEY_DB)")
	bootPath := fs.String("bootstrap", "", "bootstrap YAML applied to a new database (default: the built-in demo)")
	identityPath := fs.String("identity", "", "YAML listing the sites whose JWTs identify customers (default: the built-in demo portal on a database configured from the built-in demo and started without -bootstrap; otherwise none)")
	maxBytes := fs.Int("max-request-bytes", app.DefaultMaxRequestBytes, "largest request message accepted, after decompression")
	heartbeat := fs.Duration("heartbeat", app.DefaultHeartbeat, "how long a stream stays silent before it sends a heartbeat")
	lifetime := fs.Duration("max-stream-lifetime", app.DefaultMaxStreamLifetime, "streams end with Unavailable after this long, and clients resume")
	writeTimeout := fs.Duration("stream-write-timeout", app.DefaultWriteTimeout, "a stream whose client takes no message for this long ends (the client resumes from its cursor)")
	maxStreams := fs.Int("max-streams-per-caller", app.DefaultMaxStreamsPerCaller, "streams one caller (a token's principal, or a client address) may have open at once")
	sendRate := fs.Float64("send-rate", app.DefaultSendRate, "messages and uploads per second each participant may keep up")
	sendBurst := fs.Int("send-burst", app.DefaultSendBurst, "messages and uploads each participant may send at once")
	attachBytes := fs.Int("max-attachment-bytes", app.DefaultMaxAttachmentBytes, "largest attachment accepted")
	attachTypes := fs.String("attachment-types", strings.Join(messaging.DefaultAttachmentTypes, ","), "comma-separated content types attachments may have")
	sync := fs.String("sqlite-synchronous", string(store.SyncNormal), "normal: acknowledged writes survive a crash of parleyd; full: also power loss (one fsync per commit; queued writes share a commit)")
	writeBatch := fs.Int("sqlite-max-batch", 64, "at most this many queued write transactions share one SQLite commit (1: one commit each)")
	writeWait := fs.Duration("sqlite-max-write-wait", 5*time.Second, "a write that waited this long for SQLite's writer is refused with Unavailable and a retry hint")
	trusted := fs.String("trusted-proxies", os.Getenv("PARLEY_TRUSTED_PROXIES"), "comma-separated addresses or CIDR ranges of reverse proxies whose X-Forwarded-For is believed (env PARLEY_TRUSTED_PROXIES); default none")
	origins := fs.String("allowed-origins", os.Getenv("PARLEY_ALLOWED_ORIGINS"), "comma-separated browser origins allowed besides the sites' (env PARLEY_ALLOWED_ORIGINS), such as the portal or the agent workspace")
	convAttachBytes := fs.Int64("max-conversation-attachment-bytes", app.DefaultMaxConversationAttachmentBytes, "largest total size of one conversation's attachments")
	attachRetention := fs.Duration("attachment-retention", retention.DefaultAttachments, "uploads that no message references are deleted after this long")
	tokenRetention := fs.Duration("token-retention", retention.DefaultTokens, "tokens are deleted this long after they expired or were revoked")
	keyRetention := fs.Duration("idempotency-retention", retention.DefaultIdempotency, "request ids of retryable writes are remembered this long; a retry after that is a new write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *sendRate <= 0 || *sendBurst <= 0 || *attachBytes <= 0 || *lifetime <= 0 || *heartbeat <= 0 || *maxBytes <= 0 ||
		*convAttachBytes <= 0 || *attachRetention <= 0 || *tokenRetention <= 0 || *keyRetention <= 0 || *writeTimeout <= 0 || *maxStreams <= 0 {
		return errors.New("-send-rate, -send-burst, -max-attachment-bytes, -max-conversation-attachment-bytes, -max-stream-lifetime, " +
			"-heartbeat, -max-request-bytes, -stream-write-timeout, -max-streams-per-caller and the -*-retention flags must be positive")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *writeBatch <= 0 || *writeWait <= 0 {
		return errors.New("-sqlite-max-batch and -sqlite-max-write-wait must be positive")
	}
	db, err := store.OpenSQLite(ctx, *dbPath, store.Options{
		Synchronous: store.Synchronous(*sync),
		Writer:      store.WriterOptions{MaxBatch: *writeBatch, MaxWait: *writeWait},
	})
	if err != nil {
		return err
	}
	defer db.Close()

	bootName := "built-in demo"
	var boot *bootstrap.File
	if *bootPath == "" {
		boot, err = bootstrap.ParseDemo()
	} else {
		bootName = *bootPath
		var data []byte
		if data, err = os.ReadFile(*bootPath); err != nil {
			return fmt.Errorf("read bootstrap file: %w", err)
		}
		boot, err = bootstrap.Parse(data)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", bootName, err)
	}
	if token := os.Getenv("PARLEY_ADMIN_TOKEN"); token != "" {
		if err := boot.AddAdmin(token, "PARLEY_ADMIN_TOKEN"); err != nil {
			return fmt.Errorf("PARLEY_ADMIN_TOKEN: %w", err)
		}
	}
	res, err := bootstrap.Apply(ctx, db, boot)
	if err != nil {
		return err
	}
	if res.Applied {
		log.Info("new database configured", "db", *dbPath, "bootstrap", bootName)
	} else if *bootPath != "" {
		log.Warn("the database is already configured; -bootstrap applies to a new database only and was ignored", "db", *dbPath)
	}
	if res.GeneratedAdminToken != "" {
		// Printed once, on standard output: the log (standard error) never
		// holds a token, wherever it is collected.
		fmt.Fprintf(os.Stdout, "no admin token was configured, so parleyd made one; it is shown only now:\n\n  %s\n\n"+
			"keep it in a password manager; it can issue other tokens (AccessService) and be revoked\n", res.GeneratedAdminToken)
		log.Info("no admin token was configured: parleyd made one and printed it on standard output, once")
	}
	addresses, err := clientaddr.NewResolver(splitList(*trusted))
	if err != nil {
		return fmt.Errorf("-trusted-proxies: %w", err)
	}

	// The demo portal's secret is public: it is trusted only by a database
	// configured from the built-in demo, started without -bootstrap and
	// without -identity. A database configured from your own bootstrap
	// file never trusts it, with or without the flag on later starts.
	idData, idName := identity.Demo, "built-in demo"
	if !res.Demo || *bootPath != "" {
		idData, idName = nil, "none"
	}
	if *identityPath != "" {
		if idData, err = os.ReadFile(*identityPath); err != nil {
			return fmt.Errorf("read identity file: %w", err)
		}
		idName = *identityPath
	}
	idConfig := &identity.Config{}
	if idData != nil {
		if idConfig, err = identity.ParseConfig(idData); err != nil {
			return fmt.Errorf("%s: %w", idName, err)
		}
	}
	customers, err := identity.NewVerifier(ctx, idConfig, clock.Real{}, log)
	if err != nil {
		return fmt.Errorf("%s: %w", idName, err)
	}

	a := app.New(db, app.Options{
		Customers:           customers,
		Log:                 log,
		MaxRequestBytes:     *maxBytes,
		Heartbeat:           *heartbeat,
		MaxStreamLifetime:   *lifetime,
		WriteTimeout:        *writeTimeout,
		MaxStreamsPerCaller: *maxStreams,
		SendRate:            *sendRate,
		SendBurst:           *sendBurst,
		MaxAttachmentBytes:  *attachBytes,
		AttachmentTypes:     strings.Split(*attachTypes, ","),
		ClientAddresses:     addresses,
		AllowedOrigins:      splitList(*origins),

		MaxConversationAttachmentBytes: *convAttachBytes,
		Retention: retention.Policy{
			Attachments: *attachRetention,
			Tokens:      *tokenRetention,
			Idempotency: *keyRetention,
		},
	})
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{
		Handler:           a.Handler,
		ReadHeaderTimeout: 10 * time.Second,
	}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)

	go a.Run(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()

	fmt.Fprintf(os.Stderr, "parleyd listening on http://%s (Connect, gRPC, gRPC-Web; database %s)\n", lis.Addr(), *dbPath)
	if res.Demo {
		fmt.Fprintf(os.Stderr, "demo tokens (admin and agents) are in server/internal/bootstrap/demo.yaml; try:\n"+
			"  grpcurl -plaintext -H 'Authorization: Bearer ps_demo_admin_token' %s parley.v1.RoutingService/ListQueues\n", lis.Addr())
	}
	switch idName {
	case "built-in demo":
		fmt.Fprintf(os.Stderr, "customer JWTs signed with the public demo secret in server/internal/identity/demo.yaml are accepted; use -identity for a real site\n")
	case "none":
		fmt.Fprintf(os.Stderr, "no -identity file: signed-in customers cannot call until one lists your portal's or site's JWT issuer\n")
	}

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down", "grace", shutdownGrace)
	// Streams would hold Shutdown until its deadline: it ends them first.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := a.Shutdown(shutdownCtx, srv); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}
