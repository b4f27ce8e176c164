// Command parley-bench measures Parley's delivery path from outside,
// through the public API only, beside a bare connect-go fan-out server of
// the same shape driven in the same run, so that every figure stands
// beside its ceiling.
//
// The load: -conversations conversations, each followed by -subscribers
// MessagingService.Subscribe streams (every stream on its own HTTP/2
// connection) and written to by one sender, at fixed total rates of
// -size-byte messages (-rates, each for -duration after a warm-up). Each
// message carries its scheduled send time, its sweep and its sender's
// counter; every subscriber checks what it receives. For each sweep and
// target it reports the offered and achieved rates, deliveries per second,
// end-to-end latency (p50, p99, max), loss, duplicates and order
// violations, and the server's CPU per delivery; and, per target, the
// server's memory per idle stream.
//
// Usage:
//
//	go run ./clients/go/cmd/parley-bench [flags]        # bare and parleyd on SQLite, side by side
//	go run ./clients/go/cmd/parley-bench -target parleyd -db postgres://localhost/bench -replicas 3
//	go run ./clients/go/cmd/parley-bench -target url -url http://localhost:8080
//
// Run it from inside the Parley repository (it builds parleyd with the go
// command), or pass a built parleyd with -parleyd. The subcommand
// serve-bare runs the bare server; the bench starts it itself.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// selfPID is this process, whose CPU the bench reports beside the server's.
var selfPID = os.Getpid()

func main() {
	if len(os.Args) > 1 && os.Args[1] == "serve-bare" {
		if err := serveBare(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "parley-bench serve-bare:", err)
			os.Exit(1)
		}
		return
	}
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "parley-bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, cfg, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "parley-bench:", err)
		os.Exit(1)
	}
	if cfg.json {
		err = rep.writeJSON(os.Stdout)
	} else {
		err = rep.writeTable(os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "parley-bench:", err)
		os.Exit(1)
	}
}

// config is the command line.
type config struct {
	targets       []string // "bare", "parleyd", "url", in the order given
	url           string
	adminToken    string
	db            string
	replicas      int
	parleyd       string
	conversations int
	subscribers   int
	rates         []float64
	duration      time.Duration
	warmup        time.Duration
	drain         time.Duration
	size          int
	idleStreams   int
	json          bool
}

// parseFlags reads the command line, writing usage to out.
func parseFlags(args []string, out io.Writer) (*config, error) {
	cfg := &config{}
	fs := flag.NewFlagSet("parley-bench", flag.ContinueOnError)
	fs.SetOutput(out)
	targets := fs.String("target", "bare,parleyd", "comma-separated targets, run one after the other: bare (a bare connect-go fan-out server, a child process), parleyd (started by the bench), url (a running server at -url; no CPU or memory figures)")
	fs.StringVar(&cfg.url, "url", "", "the running server of -target url")
	fs.StringVar(&cfg.adminToken, "admin-token", demoAdminToken, "an admin token of the -target url server, for setup")
	fs.StringVar(&cfg.db, "db", "", "parleyd's -db: empty for a new SQLite file in a temporary directory, or a PostgreSQL URL (postgres://...) of a new database or one the bench used before")
	fs.IntVar(&cfg.replicas, "replicas", 1, "parleyd processes on one PostgreSQL -db; subscribers and senders are spread over them round robin")
	fs.StringVar(&cfg.parleyd, "parleyd", "", "a built parleyd binary (default: go build one into a temporary directory)")
	fs.IntVar(&cfg.conversations, "conversations", 100, "conversations, each with one sender")
	fs.IntVar(&cfg.subscribers, "subscribers", 10, "Subscribe streams per conversation, each on its own HTTP/2 connection")
	rates := fs.String("rates", "100,250,500,1000,2000,3000", "comma-separated total send rates (messages/s), one sweep each, in this order")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "how long each sweep sends")
	fs.DurationVar(&cfg.warmup, "warmup", 3*time.Second, "a warm-up at the first rate before the sweeps, not reported (0: none)")
	fs.DurationVar(&cfg.drain, "drain", 5*time.Second, "after a sweep, how long subscribers may take to receive every acknowledged message before the rest counts as lost")
	fs.IntVar(&cfg.size, "size", 200, "message size in bytes (the text carries a header of about 30 bytes, padded to this size)")
	fs.IntVar(&cfg.idleStreams, "idle-streams", 2000, "idle streams opened to measure the server's memory per stream (0: skip)")
	fs.BoolVar(&cfg.json, "json", false, "print the results as JSON instead of a table")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for t := range strings.SplitSeq(*targets, ",") {
		t = strings.TrimSpace(t)
		if !slices.Contains([]string{"bare", "parleyd", "url"}, t) {
			return nil, fmt.Errorf("-target: unknown target %q", t)
		}
		cfg.targets = append(cfg.targets, t)
	}
	for r := range strings.SplitSeq(*rates, ",") {
		rate, err := strconv.ParseFloat(strings.TrimSpace(r), 64)
		if err != nil || rate <= 0 {
			return nil, fmt.Errorf("-rates: %q is not a positive rate", r)
		}
		cfg.rates = append(cfg.rates, rate)
	}
	switch {
	case slices.Contains(cfg.targets, "url") && cfg.url == "":
		return nil, errors.New("-target url needs -url")
	case cfg.replicas < 1:
		return nil, errors.New("-replicas must be at least 1")
	case cfg.replicas > 1 && !isPostgres(cfg.db):
		// On SQLite the wake-ups of subscribers are in-process: a second
		// replica's subscribers would learn of new messages only from
		// their heartbeats.
		return nil, errors.New("-replicas above 1 needs a PostgreSQL -db")
	case cfg.conversations < 1 || cfg.subscribers < 1 || cfg.size < 1 || cfg.idleStreams < 0:
		return nil, errors.New("-conversations, -subscribers and -size must be positive, -idle-streams not negative")
	case cfg.duration <= 0 || cfg.warmup < 0 || cfg.drain < 0:
		return nil, errors.New("-duration must be positive, -warmup and -drain not negative")
	}
	return cfg, nil
}

// isPostgres tells whether db names a PostgreSQL database.
func isPostgres(db string) bool {
	return strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://")
}

// run measures every target of cfg in turn, telling its progress on log.
func run(ctx context.Context, cfg *config, log io.Writer) (*report, error) {
	rep := newReport(cfg)
	dir, err := os.MkdirTemp("", "parley-bench")
	if err != nil {
		return nil, fmt.Errorf("make a temporary directory: %w", err)
	}
	defer os.RemoveAll(dir)
	for i, target := range cfg.targets {
		srv, err := startTarget(ctx, cfg, target, dir, i, log)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(log, "%s: %s\n", srv.name, strings.Join(srv.urls, ", "))
		res, err := measure(ctx, cfg, srv, log)
		if stopErr := srv.stop(); err == nil && stopErr != nil {
			err = stopErr
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", srv.name, err)
		}
		rep.Targets = append(rep.Targets, res)
	}
	return rep, nil
}

// startTarget starts the i-th target (or names the running one).
func startTarget(ctx context.Context, cfg *config, target, dir string, i int, log io.Writer) (*server, error) {
	switch target {
	case "bare":
		return startBare(ctx, log)
	case "url":
		return &server{name: "url", urls: []string{strings.TrimSuffix(cfg.url, "/")}, admin: cfg.adminToken}, nil
	}
	bin := cfg.parleyd
	if bin == "" {
		fmt.Fprintln(log, "building parleyd")
		var err error
		if bin, err = buildParleyd(ctx, dir); err != nil {
			return nil, err
		}
		cfg.parleyd = bin // built once for the run
	}
	db := cfg.db
	if db == "" {
		db = fmt.Sprintf("%s/parley-%d.db", dir, i)
	}
	return startParleyd(ctx, bin, db, cfg.replicas, log)
}

// measure sets up srv, measures its memory per idle stream, opens the
// subscribers and runs the warm-up and the sweeps.
func measure(ctx context.Context, cfg *config, srv *server, log io.Writer) (res *targetReport, err error) {
	fmt.Fprintf(log, "%s: setting up %d conversations\n", srv.name, cfg.conversations)
	var fix *fixture
	if srv.admin == "" {
		fix = bareFixture(cfg.conversations, cfg.subscribers)
	} else if fix, err = parleySetup(ctx, srv.url(0), srv.admin, cfg.conversations, cfg.subscribers, log); err != nil {
		return nil, fmt.Errorf("set up: %w", err)
	}
	defer func() {
		cleanupCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if cerr := fix.cleanup(cleanupCtx); cerr != nil {
			err = errors.Join(err, fmt.Errorf("clean up: %w", cerr))
		}
	}()
	res = &targetReport{Target: srv.name, Replicas: len(srv.urls)}
	r := newRunner(srv, fix.convs, cfg.size, len(cfg.rates)+1)
	if len(srv.procs) > 0 && cfg.idleStreams > 0 {
		fmt.Fprintf(log, "%s: opening %d idle streams\n", srv.name, cfg.idleStreams)
		perStream, err := idleRSS(ctx, r, cfg.idleStreams)
		if err != nil {
			return nil, fmt.Errorf("idle streams: %w", err)
		}
		res.IdleStreams, res.IdleRSSPerStreamBytes = cfg.idleStreams, &perStream
	}
	fmt.Fprintf(log, "%s: opening %d x %d subscribers\n", srv.name, cfg.conversations, cfg.subscribers)
	if err := r.open(ctx, cfg.subscribers); err != nil {
		return nil, err
	}
	defer r.close()
	if cfg.warmup > 0 {
		fmt.Fprintf(log, "%s: warming up at %g msg/s for %s\n", srv.name, cfg.rates[0], cfg.warmup)
		if _, err := r.sweep(ctx, 0, cfg.rates[0], cfg.warmup, cfg.drain); err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
	}
	for i, rate := range cfg.rates {
		out, err := r.sweep(ctx, i+1, rate, cfg.duration, cfg.drain)
		if err != nil {
			return nil, fmt.Errorf("sweep at %g msg/s: %w", rate, err)
		}
		sw := newSweepReport(out, len(srv.procs) > 0)
		fmt.Fprintf(log, "%s: %s\n", srv.name, sw.summary())
		res.Sweeps = append(res.Sweeps, sw)
	}
	res.pickBest()
	return res, nil
}

// idleRSS opens k streams that stay idle (each on its own connection,
// spread over the conversations) and returns the growth of the server's
// resident memory, all processes together, divided by k.
func idleRSS(ctx context.Context, r *runner, k int) (float64, error) {
	before, err := sumOver(r.srv.pids(), procRSS)
	if err != nil {
		return 0, err
	}
	subs := make([]*subscriber, k)
	for i := range subs {
		c := r.convs[i%len(r.convs)]
		subs[i] = newSubscriber(r.srv.url(i), c, c.senderToken, 0)
	}
	defer func() {
		for _, s := range subs {
			s.stop()
		}
	}()
	if err := startAll(ctx, r, subs); err != nil {
		return 0, err
	}
	// Let the server finish what opening them started.
	sleepUntil(ctx, time.Now().Add(2*time.Second))
	after, err := sumOver(r.srv.pids(), procRSS)
	if err != nil {
		return 0, err
	}
	return float64(after-before) / float64(k), ctx.Err()
}
