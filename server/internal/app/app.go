// Package app wires Parley's services into one http.Handler that serves
// Connect, gRPC and gRPC-Web, with reflection and health. parleyd and the
// test harness both build the server through it.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	connectcors "connectrpc.com/cors"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect/v2"
	"connectrpc.com/validate"
	"github.com/google/uuid"
	"github.com/rs/cors"

	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/server/internal/access"
	"github.com/parleyhq/parley/server/internal/admin"
	"github.com/parleyhq/parley/server/internal/assistant"
	"github.com/parleyhq/parley/server/internal/assistant/llm"
	"github.com/parleyhq/parley/server/internal/auth"
	"github.com/parleyhq/parley/server/internal/cases"
	"github.com/parleyhq/parley/server/internal/clientaddr"
	"github.com/parleyhq/parley/server/internal/clock"
	"github.com/parleyhq/parley/server/internal/events"
	"github.com/parleyhq/parley/server/internal/identity"
	"github.com/parleyhq/parley/server/internal/knowledge"
	"github.com/parleyhq/parley/server/internal/messaging"
	"github.com/parleyhq/parley/server/internal/metrics"
	"github.com/parleyhq/parley/server/internal/ratelimit"
	"github.com/parleyhq/parley/server/internal/retention"
	"github.com/parleyhq/parley/server/internal/routing"
	"github.com/parleyhq/parley/server/internal/session"
	"github.com/parleyhq/parley/server/internal/store"
	"github.com/parleyhq/parley/server/internal/webapps"
	"github.com/parleyhq/parley/server/internal/workfeed"
)

// Defaults for Options left zero.
const (
	DefaultMaxRequestBytes = 1 << 20
	DefaultSweepInterval   = time.Second
	// DefaultHeartbeat is below the 30-60 s idle timeouts of common proxies
	// and load balancers.
	DefaultHeartbeat = 15 * time.Second
	// DefaultMaxStreamLifetime makes long-lived streams reconnect now and
	// then, so load spreads over replicas and stale connections end.
	DefaultMaxStreamLifetime = 30 * time.Minute
	// DefaultSendRate and DefaultSendBurst: a participant may send 20
	// messages at once, then 2 per second.
	DefaultSendRate  = 2.0
	DefaultSendBurst = 20
	// DefaultMaxAttachmentBytes bounds one attachment (5 MiB).
	DefaultMaxAttachmentBytes = 5 << 20
	// DefaultTypingTTL is how long a typing indicator shows without a refresh.
	DefaultTypingTTL = 6 * time.Second
	// DefaultMaxConversationAttachmentBytes bounds all attachments of one
	// conversation together (50 MiB).
	DefaultMaxConversationAttachmentBytes = 50 << 20
	// DefaultWriteTimeout bounds each write of a stream: a client that
	// stops reading holds its handler no longer.
	DefaultWriteTimeout = 10 * time.Second
	// DefaultMaxStreamsPerCaller bounds the streams one caller has open.
	DefaultMaxStreamsPerCaller = 16
	compressMinBytes           = 1024
	// envelopeSlack is room for an upload request's fields beside its content.
	envelopeSlack = 64 << 10
)

// Options tune the server; the zero value is production's defaults.
type Options struct {
	// Clock is the time source (a fake one in tests).
	Clock clock.Clock
	// Log receives server-side errors; no tokens or message bodies.
	Log *slog.Logger
	// MaxRequestBytes bounds one request message, after decompression.
	MaxRequestBytes int
	// SweepInterval bounds how late an expired offer is noticed.
	SweepInterval time.Duration
	// Heartbeat is how long a server stream stays silent before it sends a
	// heartbeat.
	Heartbeat time.Duration
	// MaxStreamLifetime ends a server stream (with Unavailable, so the
	// client resumes) after it has been open this long.
	MaxStreamLifetime time.Duration
	// WriteTimeout bounds each write of a stream (real time, as the
	// network's): a stream whose client does not take a message within it
	// ends, and the client resumes from its cursor.
	WriteTimeout time.Duration
	// MaxStreamsPerCaller bounds the streams one caller (a principal, or
	// a client address for an anonymous call) has open; the next is
	// refused with ResourceExhausted.
	MaxStreamsPerCaller int
	// SendRate (per second) and SendBurst limit each participant's
	// messages and uploads.
	SendRate  float64
	SendBurst int
	// MaxAttachmentBytes bounds one attachment; UploadAttachment requests
	// may be this much larger than MaxRequestBytes.
	MaxAttachmentBytes int
	// AttachmentTypes is the content-type allowlist of attachments.
	AttachmentTypes []string
	// TypingTTL is how long a typing indicator shows without a refresh.
	TypingTTL time.Duration
	// Customers verifies signed-in customers' JWTs; nil trusts no issuer,
	// so only guests and staff can call.
	Customers *identity.Verifier
	// ClientAddresses tells each request's client address (for the
	// per-address guest limit); nil trusts no proxy, so the TCP peer is
	// the client.
	ClientAddresses *clientaddr.Resolver
	// AllowedOrigins are browser origins allowed to call besides the
	// registered sites' (such as the portal and the agent workspace).
	AllowedOrigins []string
	// MaxConversationAttachmentBytes bounds the attachments of one
	// conversation together.
	MaxConversationAttachmentBytes int64
	// WriteLimits overrides DefaultWriteLimits per class.
	WriteLimits map[WriteClass]ratelimit.Rate
	// Retention says how long records kept only for a while live; zero
	// fields take the retention package's defaults.
	Retention retention.Policy
	// RetentionInterval is how often the retention sweep runs.
	RetentionInterval time.Duration
	// Metrics, when set, counts and times every RPC and stream and reads
	// the store and the routing passes (see package metrics); nil turns
	// metrics off at no cost.
	Metrics *metrics.Registry
	// Tracing, when set, traces every RPC with OpenTelemetry; nil turns
	// tracing off.
	Tracing *metrics.Tracing
	// LLM, when set, writes a generated summary beside the extractive one
	// at each hand-off to a person.
	LLM *llm.Client
	// BotActions are the Go actions the virtual agent's topics may call;
	// nil means the demo's (lookup_order on the demo shop's orders).
	BotActions assistant.Actions
	// NoBotRunner serves calls but answers no bot turns: a replica that
	// leaves them to the others (tests use it to stand for one that died
	// before answering).
	NoBotRunner bool
	// BotLease is how long a replica keeps a bot turn it claimed before
	// another may take it; 0 means 15 s.
	BotLease time.Duration
	// BotPollEvery is how often each replica looks for bot turns that
	// nobody took; 0 means 2 s.
	BotPollEvery time.Duration
}

// withDefaults fills in what opts leaves zero.
func (opts Options) withDefaults() Options {
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	set := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	setDuration := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	set(&opts.MaxRequestBytes, DefaultMaxRequestBytes)
	set(&opts.SendBurst, DefaultSendBurst)
	set(&opts.MaxAttachmentBytes, DefaultMaxAttachmentBytes)
	set(&opts.MaxStreamsPerCaller, DefaultMaxStreamsPerCaller)
	setDuration(&opts.WriteTimeout, DefaultWriteTimeout)
	setDuration(&opts.SweepInterval, DefaultSweepInterval)
	setDuration(&opts.Heartbeat, DefaultHeartbeat)
	setDuration(&opts.MaxStreamLifetime, DefaultMaxStreamLifetime)
	setDuration(&opts.TypingTTL, DefaultTypingTTL)
	setDuration(&opts.RetentionInterval, retention.DefaultInterval)
	setDuration(&opts.Retention.Attachments, retention.DefaultAttachments)
	setDuration(&opts.Retention.Tokens, retention.DefaultTokens)
	setDuration(&opts.Retention.Idempotency, retention.DefaultIdempotency)
	// The guest limits and the retry window decide these two.
	opts.Retention.GuestStarts = session.GuestSessionWindow
	opts.Retention.SealedGuestTokens = session.GuestRetryWindow
	if opts.MaxConversationAttachmentBytes == 0 {
		opts.MaxConversationAttachmentBytes = DefaultMaxConversationAttachmentBytes
	}
	limits := maps.Clone(DefaultWriteLimits)
	maps.Copy(limits, opts.WriteLimits)
	opts.WriteLimits = limits
	if opts.SendRate == 0 {
		opts.SendRate = DefaultSendRate
	}
	if opts.Customers == nil {
		opts.Customers, _ = identity.NewVerifier(context.Background(), &identity.Config{}, opts.Clock, opts.Log) // no issuers: cannot fail
	}
	if opts.ClientAddresses == nil {
		opts.ClientAddresses, _ = clientaddr.NewResolver(nil) // no ranges: cannot fail
	}
	if opts.AttachmentTypes == nil {
		opts.AttachmentTypes = messaging.DefaultAttachmentTypes
	}
	if opts.BotActions == nil {
		opts.BotActions, _ = assistant.DemoActions() // embedded and tested: cannot fail
	}
	return opts
}

// App is a wired Parley server.
type App struct {
	// Handler serves every RPC plus reflection and health, and the web
	// apps.
	Handler http.Handler
	// Server is the Connect server; its Specs list every procedure.
	Server *connect.Server
	// Knowledge is the knowledge base that KnowledgeService serves, which
	// the virtual agent and the agent's context call search.
	Knowledge  *knowledge.Base
	bot        *assistant.Bot
	botRunner  bool
	dispatcher *routing.Dispatcher
	sweep      time.Duration
	retention  *retention.Sweeper
	retainEach time.Duration
	db         *store.DB
	draining   context.Context
	endStreams context.CancelFunc
	streams    *streamCounter
	hub        *events.Hub
	signals    *events.Signals
	origins    *access.Origins
	relay      *events.Relay
	metrics    *metrics.Registry
	log        *slog.Logger
}

// New wires the services over db, and the web apps (package webapps)
// beside them. It panics if the knowledge base's index cannot be prepared
// (SQLite's FTS5 table), which only a store that just failed its own
// migration would cause, or if the embedded web apps cannot be read.
func New(db *store.DB, opts Options) *App {
	opts = opts.withDefaults()
	hub, signals := events.NewHub(), events.NewSignals()
	dispatcher := routing.NewDispatcher(db, hub, opts.Clock, opts.Log)

	// Order matters: tracing and metrics, when on, see every call with
	// the code its caller gets, so they wrap observe, which gives errors
	// their final codes; errors and panics are observed around everything
	// else; streams end when the server drains, and their writes have
	// deadlines; the caller is authenticated before a request byte is
	// read, and then counted against its open streams; requests are
	// validated as they are read.
	draining, endStreams := context.WithCancel(context.Background())
	streams := newStreamCounter(opts.MaxStreamsPerCaller)
	var outer []connect.ServerInterceptor
	if opts.Tracing != nil {
		outer = append(outer, opts.Tracing.Interceptor())
	}
	if opts.Metrics != nil {
		opts.Metrics.WatchStore(db)
		dispatcher.OnPass = opts.Metrics.ObserveRoutingPass
		outer = append(outer, opts.Metrics.Interceptor())
	}
	server := connect.NewServer(append(outer,
		observe(opts.Log),
		streamLimits(opts.Clock, draining, opts.MaxStreamLifetime),
		auth.NewInterceptor(db, opts.Clock, opts.Log, opts.Customers),
		streams.interceptor(),
		writeLimits(db, opts.Clock, opts.Log, opts.WriteLimits),
		validate.NewServerInterceptor(validate.WithValidator(wellFormed())),
	)...)
	kb, err := knowledge.Open(context.Background(), db)
	if err != nil {
		panic(fmt.Sprintf("app: open the knowledge base: %v", err))
	}
	bot, err := assistant.New(assistant.Options{
		DB: db, Hub: hub, Clock: opts.Clock, Dispatcher: dispatcher, Knowledge: kb, Actions: opts.BotActions,
		LLM: opts.LLM, Replica: uuid.NewString(), Log: opts.Log, PollEvery: opts.BotPollEvery, Lease: opts.BotLease,
	})
	if err != nil {
		panic(fmt.Sprintf("app: the virtual agent: %v", err))
	}
	parleyv1connect.RegisterSessionServiceHandler(server, session.NewService(db, hub, opts.Clock, dispatcher, bot))
	logs := messaging.NewService(db, hub, signals, opts.Clock, messaging.Options{
		Log:                opts.Log,
		Heartbeat:          opts.Heartbeat,
		SendRate:           opts.SendRate,
		SendBurst:          opts.SendBurst,
		MaxAttachmentBytes: opts.MaxAttachmentBytes,
		AttachmentTypes:    opts.AttachmentTypes,
		TypingTTL:          opts.TypingTTL,
		BotTurn:            bot.Kick,

		MaxConversationAttachmentBytes: opts.MaxConversationAttachmentBytes,
	})
	parleyv1connect.RegisterMessagingServiceHandler(server, logs)
	routes := routing.NewService(db, hub, opts.Clock, dispatcher, opts.Heartbeat)
	routes.Summarize = bot.SummarizeInTx
	parleyv1connect.RegisterRoutingServiceHandler(server, routingService{
		Service:      routes,
		adminService: admin.NewService(db, hub, dispatcher),
		feed:         workfeed.New(db, hub, opts.Clock, routes, dispatcher, logs, opts.Heartbeat),
	})
	parleyv1connect.RegisterKnowledgeServiceHandler(server, knowledge.NewService(db, kb, opts.Clock))
	parleyv1connect.RegisterAssistantServiceHandler(server, assistant.NewService(bot))
	parleyv1connect.RegisterCaseServiceHandler(server, cases.NewService(db, hub, opts.Clock))
	origins := access.NewOrigins(db, opts.Clock, opts.Log, opts.AllowedOrigins)
	parleyv1connect.RegisterAccessServiceHandler(server, access.NewService(db, hub, opts.Clock, origins))

	healthChecker := grpchealth.NewStaticChecker(
		parleyv1connect.SessionServiceName,
		parleyv1connect.MessagingServiceName,
		parleyv1connect.RoutingServiceName,
		parleyv1connect.CaseServiceName,
		parleyv1connect.AccessServiceName,
		parleyv1connect.KnowledgeServiceName,
		parleyv1connect.AssistantServiceName,
	)
	grpcreflect.Register(server, grpcreflect.WithNamer(grpcreflect.NamerFunc(func() []string {
		return serviceNames(server, grpchealth.HealthV1ServiceName)
	})))

	mux := http.NewServeMux()
	connecthttp.Mount(mux, server,
		connecthttp.WithReadMaxBytes(opts.MaxRequestBytes),
		connecthttp.WithCompressMinBytes(compressMinBytes),
		connecthttp.WithConditionalOptions(func(spec connect.Spec) []connecthttp.Option {
			if spec.Procedure == parleyv1connect.MessagingServiceUploadAttachmentProcedure {
				return []connecthttp.Option{connecthttp.WithReadMaxBytes(max(opts.MaxRequestBytes, opts.MaxAttachmentBytes+envelopeSlack))}
			}
			return nil
		}),
	)
	mux.Handle(grpchealth.NewHandler(healthChecker))
	web, err := webapps.New(db, opts.Log)
	if err != nil {
		panic(fmt.Sprintf("app: the web apps: %v", err))
	}
	mux.Handle("/", web)
	handler := withWriteDeadlines(opts.WriteTimeout, browserHeaders(withCORS(origins, refuseOrigins(origins,
		opts.ClientAddresses.Middleware(withRefusals(server, mux))))))
	return &App{
		Handler: handler, Server: server, dispatcher: dispatcher, sweep: opts.SweepInterval, streams: streams,
		db: db, draining: draining, endStreams: endStreams, hub: hub, signals: signals, origins: origins, metrics: opts.Metrics, log: opts.Log,
		retention: retention.NewSweeper(db, opts.Clock, opts.Log, opts.Retention), retainEach: opts.RetentionInterval,
		Knowledge: kb, bot: bot, botRunner: !opts.NoBotRunner,
	}
}

// routingService is RoutingService: routing's methods, the admin's, and
// the agent's multiplexed stream.
type routingService struct {
	*routing.Service
	*adminService
	feed *workfeed.Feed
}

// adminService names admin.Service apart from routing.Service, so that
// both can be embedded in routingService.
type adminService = admin.Service

var _ parleyv1connect.RoutingServiceHandler = routingService{}

// withCORS answers browsers: origins that Allowed admits get CORS headers
// for Connect, gRPC-Web and Parley's credential headers; any other origin
// gets none, so the browser blocks the call. Credentials travel in headers,
// never cookies, so credentialed CORS stays off.
func withCORS(origins *access.Origins, next http.Handler) http.Handler {
	return cors.New(cors.Options{
		AllowOriginVaryRequestFunc: func(r *http.Request, origin string) (bool, []string) {
			return origins.Allowed(r.Context(), origin), nil
		},
		AllowedMethods: connectcors.AllowedMethods(),
		AllowedHeaders: append(connectcors.AllowedHeaders(), "Authorization", auth.GuestTokenHeader),
		ExposedHeaders: connectcors.ExposedHeaders(),
		MaxAge:         int((2 * time.Hour).Seconds()),
	}).Handler(next)
}

// serviceNames lists the services server serves, plus extra ones mounted
// beside it, for reflection.
func serviceNames(server *connect.Server, extra ...string) []string {
	names := slices.Clone(extra)
	for spec := range server.Specs() {
		name := strings.TrimPrefix(spec.Procedure[:strings.LastIndexByte(spec.Procedure, '/')], "/")
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// Run drives background work (offer assignment and expiry, the retention
// sweep, the virtual agent's turns) until ctx ends.
func (a *App) Run(ctx context.Context) {
	go a.retention.Run(ctx, a.retainEach)
	if a.botRunner {
		go a.bot.Run(ctx)
	}
	a.dispatcher.Run(ctx, a.sweep)
}

// SweepRetention deletes what is past its retention now; tests use it
// after moving a fake clock.
func (a *App) SweepRetention(ctx context.Context) (retention.Result, error) {
	return a.retention.Sweep(ctx)
}

// JoinReplicas connects the app to the other replicas sharing its
// PostgreSQL database (dsn, the URL the store was opened with): wake-ups
// (logs, work, queues, tokens, configuration) and typing and read-cursor
// signals cross between them through LISTEN/NOTIFY (events.Relay), and a
// token revoked or a site changed on another replica drops this one's
// cached copy. It is LISTENing when it returns: call it before serving.
// Close ends it. On SQLite there are no other replicas: do not call it.
func (a *App) JoinReplicas(ctx context.Context, dsn string, opts events.RelayOptions) error {
	if a.relay != nil {
		return errors.New("app: already joined the replicas")
	}
	opts.OnRevocation = auth.NoteRemoteRevocation
	opts.OnConfigChange = a.origins.Invalidate
	if a.metrics != nil {
		opts.ReceiveLag = a.metrics.ObserveNotifierLag
	}
	relay, err := events.NewRelay(ctx, dsn, a.hub, a.signals, opts)
	if err != nil {
		return fmt.Errorf("app: join the replicas: %w", err)
	}
	a.relay = relay
	return nil
}

// Close stops what the app runs beside its handler (the replicas' relay);
// call it once the server has stopped.
func (a *App) Close() {
	if a.relay != nil {
		a.relay.Close()
	}
}

// Drain ends every open and future stream with Unavailable (clients
// resume elsewhere or later) while unary calls run on; a stream blocked
// writing to a client that does not read fails within a second. Call it
// before http.Server.Shutdown, which waits for in-flight requests.
func (a *App) Drain() {
	a.endStreams()
}

// Ready reports why the app should not take new calls, or nil: it is
// draining (see Drain), or its store does not answer a query within ctx.
// It is the readiness probe's check.
func (a *App) Ready(ctx context.Context) error {
	if a.draining.Err() != nil {
		return errors.New("draining: shutting down")
	}
	if err := a.db.Ping(ctx); err != nil {
		// The cause can name the database and its user: it goes to the
		// log, not to the prober.
		a.log.Warn("not ready: the store does not answer", "err", err)
		return errors.New("the store does not answer")
	}
	return nil
}

// Shutdown stops srv, which serves a.Handler, gracefully: it drains the
// streams (see Drain), then waits for in-flight calls until ctx ends
// (http.Server.Shutdown); calls still running then (a client that never
// finished sending its request) have their connections closed.
func (a *App) Shutdown(ctx context.Context, srv *http.Server) error {
	a.Drain()
	if err := srv.Shutdown(ctx); err != nil {
		return errors.Join(fmt.Errorf("shut the HTTP server down: %w", err), srv.Close())
	}
	return nil
}

// OpenStreams reports how many streams are open: their handlers are
// running.
func (a *App) OpenStreams() int {
	return a.streams.Open()
}

// Dispatch makes one routing pass now; tests use it after moving a fake
// clock.
func (a *App) Dispatch(ctx context.Context) error {
	return a.dispatcher.Pass(ctx)
}

// FollowWork streams the calling agent's work and held conversations
// (see package workfeed).
func (r routingService) FollowWork(ctx context.Context, req *parleyv1.FollowWorkRequest, stream parleyv1connect.RoutingServiceFollowWorkServerStream) error {
	return r.feed.FollowWork(ctx, req, stream)
}
