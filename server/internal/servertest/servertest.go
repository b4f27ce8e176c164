// Package servertest runs a real Parley server in-process for tests: the
// app's handler behind an httptest server speaking HTTP/1.1 and cleartext
// HTTP/2, on a SQLite file in the test's temp dir (or, when
// PARLEY_TEST_POSTGRES names a PostgreSQL server, a fresh database there;
// see storetest), configured by a bootstrap file (the demo one unless a
// test changes it).
package servertest

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/parleyhq/parley/clients/go/parley"
	"github.com/parleyhq/parley/server/internal/app"
	"github.com/parleyhq/parley/server/internal/bootstrap"
	"github.com/parleyhq/parley/server/internal/clock"
	"github.com/parleyhq/parley/server/internal/events"
	"github.com/parleyhq/parley/server/internal/identity"
	"github.com/parleyhq/parley/server/internal/knowledge"
	"github.com/parleyhq/parley/server/internal/ratelimit"
	"github.com/parleyhq/parley/server/internal/store"
	"github.com/parleyhq/parley/server/internal/store/storetest"
)

// Demo tokens from the demo bootstrap file.
const (
	AdminToken = "ps_demo_admin_token"
	BethToken  = "ps_demo_agent_beth"
	FredToken  = "ps_demo_agent_fred"
	AbelToken  = "ps_demo_agent_abel"
)

// Server is a running in-process Parley.
type Server struct {
	// URL is the server's base URL (http://127.0.0.1:port).
	URL string
	// App is the wired application (Dispatch forces a routing pass).
	App *app.App
	// DB is the server's store, for assertions on what was (not) written.
	DB *store.DB
	// Clock is the fake clock, or nil when the server runs on real time.
	Clock *clock.Fake
	// Log collects the server's log lines.
	Log *LogBuffer
	// HTTP1Requests and HTTP2Requests count requests by HTTP major
	// version, so tests can prove which protocol carried them.
	HTTP1Requests, HTTP2Requests atomic.Int64

	stop func()
	http *httptest.Server
}

// Shutdown stops the server as parleyd does on SIGTERM (App.Shutdown):
// streams end, then in-flight calls finish, until ctx ends. The test's
// cleanup still closes the store.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.App.Shutdown(ctx, s.http.Config)
}

// Stop shuts the server down now, as a crash between requests would
// (nothing is flushed that a commit did not already write); Start another
// with WithDBFile on the same file to restart it.
func (s *Server) Stop() { s.stop() }

type config struct {
	dbFile    string
	clock     *clock.Fake
	bootstrap func(*bootstrap.File)
	opts      app.Options
	store     store.Options
	// unlimited lifts the per-caller write limits.
	unlimited bool
}

// Option configures Start.
type Option func(*config)

// WithFakeClock runs the server on a fake clock starting at start.
func WithFakeClock(start time.Time) Option {
	return func(c *config) { c.clock = clock.NewFake(start) }
}

// WithDBFile keeps the store in path instead of a new temp file, so a
// test can stop a server and start another on the same data.
func WithDBFile(path string) Option {
	return func(c *config) { c.dbFile = path }
}

// WithClock runs the server on an existing fake clock (shared by servers
// that follow each other on one store).
func WithClock(clk *clock.Fake) Option {
	return func(c *config) { c.clock = clk }
}

// WithBootstrap edits the demo bootstrap file before it is applied.
func WithBootstrap(edit func(*bootstrap.File)) Option {
	return func(c *config) { c.bootstrap = edit }
}

// WithAppOptions sets the app's options (the clock is set by WithFakeClock).
func WithAppOptions(opts app.Options) Option {
	return func(c *config) { c.opts = opts }
}

// WithStoreOptions opens the store with opts.
func WithStoreOptions(opts store.Options) Option {
	return func(c *config) { c.store = opts }
}

// WithoutWriteLimits lifts the per-caller write limits (app.WriteLimits),
// for tests that drive routing at machine speed rather than at a person's.
func WithoutWriteLimits() Option {
	return func(c *config) { c.unlimited = true }
}

// fakeClockInterval is the routing and retention interval of a server on a
// fake clock unless the test sets one: longer than any test advances.
const fakeClockInterval = 100 * 365 * 24 * time.Hour

// Start starts a server that stops when the test ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	cfg := config{}
	for _, opt := range opts {
		opt(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if cfg.dbFile == "" {
		cfg.dbFile = filepath.Join(t.TempDir(), "parley.db")
	}
	if cfg.store.MaxConns == 0 {
		cfg.store.MaxConns = storetest.MaxConns
	}
	db, err := store.Open(ctx, storetest.Target(t, cfg.dbFile), cfg.store)
	if err != nil {
		cancel()
		t.Fatalf("open store: %v", err)
	}
	boot, err := bootstrap.ParseDemo()
	if err != nil {
		t.Fatalf("parse demo bootstrap: %v", err)
	}
	if cfg.bootstrap != nil {
		cfg.bootstrap(boot)
	}
	kb, err := knowledge.Open(ctx, db)
	if err != nil {
		t.Fatalf("open the knowledge base: %v", err)
	}
	if _, err := bootstrap.Apply(ctx, db, boot, kb.ImportMarkdown); err != nil {
		t.Fatalf("apply bootstrap: %v", err)
	}

	logs := &LogBuffer{}
	appOpts := cfg.appOptions(ctx, t, slog.New(slog.NewTextHandler(logs, nil)))
	a := app.New(db, appOpts)
	if server := storetest.PostgresURL(); server != "" {
		// One relay per server, as per parleyd replica: servers on one
		// database (WithDBFile) reach each other as replicas do.
		if err := a.JoinReplicas(ctx, storetest.Target(t, cfg.dbFile), events.RelayOptions{Clock: appOpts.Clock, Log: appOpts.Log}); err != nil {
			cancel()
			db.Close()
			t.Fatalf("join replicas: %v", err)
		}
	}
	go a.Run(ctx)

	s := &Server{App: a, DB: db, Clock: cfg.clock, Log: logs}
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 {
			s.HTTP2Requests.Add(1)
		} else {
			s.HTTP1Requests.Add(1)
		}
		a.Handler.ServeHTTP(w, r)
	}))
	ts.Config.Protocols = new(http.Protocols)
	ts.Config.Protocols.SetHTTP1(true)
	ts.Config.Protocols.SetUnencryptedHTTP2(true)
	ts.Start()
	var once sync.Once
	s.stop = func() {
		once.Do(func() {
			a.Drain()
			ts.Close()
			cancel()
			a.Close()
			db.Close()
		})
	}
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	s.URL = ts.URL
	s.http = ts
	return s
}

// appOptions are the app's options for cfg, logging to log.
func (cfg config) appOptions(ctx context.Context, t testing.TB, log *slog.Logger) app.Options {
	t.Helper()
	appOpts := cfg.opts
	appOpts.Log = log
	if cfg.clock != nil {
		appOpts.Clock = cfg.clock
		// Tests on a fake clock make routing passes and retention sweeps
		// with App.Dispatch and App.SweepRetention; advancing the clock
		// fires the background ones only past these intervals.
		if appOpts.SweepInterval == 0 {
			appOpts.SweepInterval = fakeClockInterval
		}
		if appOpts.RetentionInterval == 0 {
			appOpts.RetentionInterval = fakeClockInterval
		}
	}
	if cfg.unlimited {
		appOpts.WriteLimits = map[app.WriteClass]ratelimit.Rate{}
		for class := range app.DefaultWriteLimits {
			appOpts.WriteLimits[class] = ratelimit.Rate{PerSecond: 1e9, Burst: 1e9}
		}
	}
	if appOpts.Customers == nil {
		idc, err := identity.ParseConfig(identity.Demo)
		if err != nil {
			t.Fatalf("parse demo identity: %v", err)
		}
		var clk clock.Clock = clock.Real{}
		if cfg.clock != nil {
			clk = cfg.clock
		}
		if appOpts.Customers, err = identity.NewVerifier(ctx, idc, clk, appOpts.Log); err != nil {
			t.Fatalf("demo identity: %v", err)
		}
	}
	return appOpts
}

// Client returns a client of the server that speaks protocol over
// cleartext HTTP/2 and sends token (none if empty).
func (s *Server) Client(protocol parley.Protocol, token string) *parley.Client {
	opts := []parley.Option{parley.WithProtocol(protocol)}
	if token != "" {
		opts = append(opts, parley.WithToken(token))
	}
	return parley.New(s.URL, opts...)
}

// Demo identity of the demo configuration (server/internal/identity/demo.yaml).
const (
	DemoIssuer   = "https://portal.example.com"
	DemoAudience = "parley"
	DemoSecret   = "parley-demo-portal-secret-do-not-use-in-production"
)

// CustomerToken mints a customer JWT signed like the demo portal would,
// valid for an hour from now (the server's fake clock's now, if it has one).
func (s *Server) CustomerToken(t testing.TB, subject, name, email string) string {
	t.Helper()
	now := time.Now()
	if s.Clock != nil {
		now = s.Clock.Now()
	}
	claims := jwt.MapClaims{
		"iss": DemoIssuer, "aud": DemoAudience, "sub": subject, "name": name, "email": email,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
	signed, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(DemoSecret))
	if err != nil {
		t.Fatal(err)
	}
	return signed
}
