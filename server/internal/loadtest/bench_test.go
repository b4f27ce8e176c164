package loadtest_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/clients/go/parley"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/server/internal/app"
	"github.com/parleyhq/parley/server/internal/bootstrap"
	"github.com/parleyhq/parley/server/internal/clock"
	"github.com/parleyhq/parley/server/internal/identity"
	"github.com/parleyhq/parley/server/internal/knowledge"
	"github.com/parleyhq/parley/server/internal/servertest"
	"github.com/parleyhq/parley/server/internal/store"
)

// The benchmark's shape.
const (
	benchSenders = 64
	benchReaders = 4
	// readEvery paces each reader: reads measure how long a read waits
	// under the writes, not how much read load the server can take, so
	// they must not eat the CPU the sends are charged with.
	readEvery = 20 * time.Millisecond
)

// Environment of the server child process (this test binary, re-executed).
const (
	// envServe makes the test binary a server: "parley-normal",
	// "parley-full" or "bare".
	envServe = "LOADTEST_SERVE"
	// envDB is the parley server's SQLite file.
	envDB = "LOADTEST_DB"
	// envServerProfile, set by whoever runs the benchmark, makes each
	// parley server child write its CPU profile to this path plus
	// "-normal" or "-full".
	envServerProfile = "LOADTEST_SERVER_CPUPROFILE"
	// listeningPrefix starts the line on which a server child tells its
	// address.
	listeningPrefix = "loadtest server listening on "
)

// TestMain serves instead of testing when the benchmark starts this binary
// as its server child.
func TestMain(m *testing.M) {
	if mode := os.Getenv(envServe); mode != "" {
		if err := serve(mode); err != nil {
			fmt.Fprintln(os.Stderr, "loadtest server:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// BenchmarkWritePath measures the write path under benchSenders
// concurrent senders, each a signed-in customer in its own conversation
// with its own HTTP/2 connection (real TCP, cleartext HTTP/2, Connect
// protocol), while benchReaders readers (each its own connection) alternate
// GetConversation and ListEvents on those conversations, one read every
// readEvery each. Its sub-benchmarks:
//
//   - bare: a bare connect-go unary handler (MessagingService.SendMessage
//     answering from memory), served like Parley (connect.Server mounted
//     with the same read limit and compression threshold, on an h2c
//     http.Server), under the same senders: calls/s and cpu-us/call.
//   - sync=normal, sync=full, sync=full,batch=1 (group commit off): Parley's app (app.New over store.OpenSQLite,
//     as parleyd wires it, demo bootstrap and identity) with SQLite
//     synchronous normal or full: sends/s (acknowledged, so committed),
//     cpu-us/send, read-p99-ms, and ratio-to-bare (sends/s over the bare
//     handler's calls/s, when bare ran in the same invocation).
//   - fsync: write and fsync a small file in a loop in the same temp
//     directory as the databases: fsyncs/s.
//
// Each server is a child process (this test binary, re-executed with
// LOADTEST_SERVE), so its CPU time, read from /proc/<pid>/stat (utime plus
// stime, in clock ticks of 10 ms) before and after the timed loop, is the
// server's alone: the clients' CPU is not in it, though the clients run on
// the same machine and compete for its cores. cpu-us/send is all of the
// server's CPU over the timed loop divided by the sends, so it includes
// serving the readers and the background loops. Parley's per-participant
// send limit is lifted in the child (it would cap each sender at 2 sends/s);
// every other limit is the default. To profile the server, name a file in
// LOADTEST_SERVER_CPUPROFILE: each Parley child writes its CPU profile
// there, suffixed -normal, -full and -full-batch1 (-cpuprofile would
// profile the clients).
//
//	go test -run '^$' -bench BenchmarkWritePath -benchtime 3s ./server/internal/loadtest/
//	LOADTEST_SERVER_CPUPROFILE=/tmp/server.prof go test -run '^$' -bench 'BenchmarkWritePath/sync=normal' -benchtime 5s ./server/internal/loadtest/
//	go tool pprof -top -cum /tmp/server.prof-normal
func BenchmarkWritePath(b *testing.B) {
	var bareCallsPerSecond float64
	b.Run("bare", func(b *testing.B) {
		child := startChild(b, "bare", "")
		clients := make([]*parley.Client, benchSenders)
		for i := range clients {
			clients[i] = parley.New(child.url)
		}
		perSecond, cpuPerCall := drive(b, child, clients, func(ctx context.Context, c *parley.Client, i int) error {
			_, err := c.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{
				ConversationId: uuid.Nil.String(), ClientMessageId: strconv.Itoa(i), Text: "Where is my order?",
			})
			return err
		}, nil)
		b.ReportMetric(perSecond, "calls/s")
		b.ReportMetric(cpuPerCall, "cpu-us/call")
		bareCallsPerSecond = perSecond
	})
	for _, variant := range []struct{ name, mode string }{
		{"sync=normal", "parley-normal"},
		{"sync=full", "parley-full"},
		// Group commit off: one commit (and with full, one fsync) per send.
		{"sync=full,batch=1", "parley-full-batch1"},
	} {
		b.Run(variant.name, func(b *testing.B) {
			child := startChild(b, variant.mode, filepath.Join(b.TempDir(), "parley.db"))
			senders := startCustomers(b, child.url, benchSenders)
			readers := startCustomers(b, child.url, benchReaders)
			var mu sync.Mutex
			var latencies []time.Duration
			perSecond, cpuPerSend := drive(b, child, senders, func(ctx context.Context, s *customer, i int) error {
				_, err := s.client.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{
					ConversationId: s.convID, ClientMessageId: strconv.Itoa(i), Text: "Where is my order?",
				})
				return err
			}, func(ctx context.Context) {
				var wg sync.WaitGroup
				for r, reader := range readers {
					wg.Go(func() {
						mine := readLoop(ctx, b, reader, r)
						mu.Lock()
						latencies = append(latencies, mine...)
						mu.Unlock()
					})
				}
				wg.Wait()
			})
			b.ReportMetric(perSecond, "sends/s")
			b.ReportMetric(cpuPerSend, "cpu-us/send")
			if len(latencies) > 0 {
				slices.Sort(latencies)
				p99 := latencies[(len(latencies)*99)/100]
				b.ReportMetric(float64(p99)/float64(time.Millisecond), "read-p99-ms")
			}
			if bareCallsPerSecond > 0 {
				b.ReportMetric(perSecond/bareCallsPerSecond, "ratio-to-bare")
			}
		})
	}
	b.Run("fsync", func(b *testing.B) {
		f, err := os.Create(filepath.Join(b.TempDir(), "fsync"))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		buf := make([]byte, 128)
		b.ResetTimer()
		for b.Loop() {
			if _, err := f.WriteAt(buf, 0); err != nil {
				b.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "fsyncs/s")
	})
}

// drive runs b.N calls spread over the clients, one goroutine per client,
// with also (if not nil) running until they are done, and returns the
// calls per second and the child's CPU microseconds per call over the
// timed part. A failed call fails the benchmark.
func drive[C any](b *testing.B, child *child, clients []C, call func(ctx context.Context, c C, i int) error, also func(ctx context.Context)) (perSecond, cpuMicrosPerCall float64) {
	b.Helper()
	ctx, stop := context.WithCancel(b.Context())
	defer stop()
	var alsoDone sync.WaitGroup
	var next atomic.Int64
	var failed atomic.Pointer[error]
	b.ResetTimer()
	cpuBefore := child.cpu(b)
	start := time.Now()
	if also != nil {
		alsoDone.Go(func() { also(ctx) })
	}
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) || failed.Load() != nil {
					return
				}
				callCtx, cancel := context.WithTimeout(ctx, callTimeout)
				err := call(callCtx, c, int(i))
				cancel()
				if err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := child.cpu(b) - cpuBefore
	b.StopTimer()
	stop()
	alsoDone.Wait()
	if err := failed.Load(); err != nil {
		b.Fatalf("call failed: %v", *err)
	}
	return float64(b.N) / elapsed.Seconds(), float64(cpu.Microseconds()) / float64(b.N)
}

// readLoop alternates GetConversation and ListEvents on reader's
// conversation until ctx ends, and returns each read's latency.
func readLoop(ctx context.Context, b *testing.B, reader *customer, r int) []time.Duration {
	var out []time.Duration
	pace := time.NewTicker(readEvery)
	defer pace.Stop()
	for i := r; ctx.Err() == nil; i++ {
		select {
		case <-ctx.Done():
			return out
		case <-pace.C:
		}
		callCtx, cancel := context.WithTimeout(ctx, callTimeout)
		start := time.Now()
		var err error
		if i%2 == 0 {
			_, err = reader.client.Session.GetConversation(callCtx, &parleyv1.GetConversationRequest{ConversationId: reader.convID})
		} else {
			_, err = reader.client.Messaging.ListEvents(callCtx, &parleyv1.ListEventsRequest{ConversationId: reader.convID, NewestFirst: true, PageSize: 20})
		}
		took := time.Since(start)
		cancel()
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			b.Errorf("read: %v", err)
			break
		}
		out = append(out, took)
	}
	return out
}

// customer is a signed-in customer with a client (its own connection) and
// its open conversation.
type customer struct {
	client *parley.Client
	convID string
}

// startCustomers starts n customer chats on the server at url, each
// customer with a fresh identity signed like the demo portal.
func startCustomers(b *testing.B, url string, n int) []*customer {
	b.Helper()
	out := make([]*customer, n)
	for i := range out {
		claims := jwt.MapClaims{
			"iss": servertest.DemoIssuer, "aud": servertest.DemoAudience, "sub": uuid.NewString(), "name": fmt.Sprintf("Customer %d", i),
			"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(),
		}
		token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(servertest.DemoSecret))
		if err != nil {
			b.Fatal(err)
		}
		c := parley.New(url, parley.WithToken(token))
		resp, err := c.Session.StartCustomerChat(b.Context(), &parleyv1.StartCustomerChatRequest{RequestId: uuid.NewString(), IssueType: "order"})
		if err != nil {
			b.Fatal(err)
		}
		out[i] = &customer{client: c, convID: resp.GetConversation().GetId()}
	}
	return out
}

// child is a server child process.
type child struct {
	cmd *exec.Cmd
	url string
}

// startChild starts this test binary as a server in mode on db, waits for
// its address and stops it (SIGTERM, so it writes its profile) when b ends.
func startChild(b *testing.B, mode, db string) *child {
	b.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), envServe+"="+mode, envDB+"="+db)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	lines := bufio.NewScanner(stderr)
	for lines.Scan() {
		if addr, ok := strings.CutPrefix(lines.Text(), listeningPrefix); ok {
			go func() { _, _ = io.Copy(os.Stderr, stderr) }()
			return &child{cmd: cmd, url: "http://" + addr}
		}
		fmt.Fprintln(os.Stderr, lines.Text())
	}
	b.Fatalf("server child %s ended before listening: %v", mode, lines.Err())
	return nil
}

// clockTick is the unit of /proc/<pid>/stat's CPU times (USER_HZ, 100 on
// Linux).
const clockTick = 10 * time.Millisecond

// cpu returns the CPU time the child has used so far, user and system,
// from /proc/<pid>/stat.
func (c *child) cpu(b *testing.B) time.Duration {
	b.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.cmd.Process.Pid))
	if err != nil {
		b.Fatalf("read the server's CPU time: %v", err)
	}
	// The command name (field 2) is in parentheses and may hold spaces;
	// utime and stime are fields 14 and 15, the 12th and 13th after it.
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	utime, uerr := strconv.ParseInt(fields[11], 10, 64)
	stime, serr := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(uerr, serr); err != nil {
		b.Fatalf("parse /proc/%d/stat: %v", c.cmd.Process.Pid, err)
	}
	return time.Duration(utime+stime) * clockTick
}

// serve runs the server child in mode until SIGTERM.
func serve(mode string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	var handler http.Handler
	switch mode {
	case "bare":
		server := connect.NewServer()
		parleyv1connect.RegisterMessagingServiceHandler(server, bareMessaging{})
		mux := http.NewServeMux()
		connecthttp.Mount(mux, server, connecthttp.WithReadMaxBytes(app.DefaultMaxRequestBytes), connecthttp.WithCompressMinBytes(1024))
		handler = mux
	case "parley-normal", "parley-full", "parley-full-batch1":
		level, batch1 := strings.CutSuffix(strings.TrimPrefix(mode, "parley-"), "-batch1")
		maxBatch := 0 // the default
		if batch1 {
			maxBatch = 1
		}
		if path := os.Getenv(envServerProfile); path != "" {
			f, err := os.Create(path + "-" + strings.TrimPrefix(mode, "parley-"))
			if err != nil {
				return err
			}
			defer f.Close()
			if err := pprof.StartCPUProfile(f); err != nil {
				return err
			}
			defer pprof.StopCPUProfile()
		}
		a, err := parleyApp(ctx, os.Getenv(envDB), store.Synchronous(level), maxBatch)
		if err != nil {
			return err
		}
		go a.Run(ctx)
		handler = a.Handler
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	fmt.Fprintln(os.Stderr, listeningPrefix+lis.Addr().String())
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// parleyApp wires Parley as parleyd does on a new database with the demo
// bootstrap and identity, the per-participant send limit lifted. Its log
// keeps warnings and errors only.
func parleyApp(ctx context.Context, path string, level store.Synchronous, maxBatch int) (*app.App, error) {
	db, err := store.OpenSQLite(ctx, path, store.Options{Synchronous: level, Writer: store.WriterOptions{MaxBatch: maxBatch}})
	if err != nil {
		return nil, err
	}
	boot, err := bootstrap.ParseDemo()
	if err != nil {
		return nil, err
	}
	kb, err := knowledge.Open(ctx, db)
	if err != nil {
		return nil, err
	}
	if _, err := bootstrap.Apply(ctx, db, boot, kb.ImportMarkdown); err != nil {
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	idc, err := identity.ParseConfig(identity.Demo)
	if err != nil {
		return nil, err
	}
	customers, err := identity.NewVerifier(ctx, idc, clock.Real{}, log)
	if err != nil {
		return nil, err
	}
	return app.New(db, app.Options{Customers: customers, Log: log, SendRate: 1e9, SendBurst: 1 << 30}), nil
}

// bareMessaging answers SendMessage from memory: the floor under Parley's
// SendMessage, connect-go and HTTP/2 alone.
type bareMessaging struct {
	parleyv1connect.UnimplementedMessagingServiceHandler
}

func (bareMessaging) SendMessage(_ context.Context, req *parleyv1.SendMessageRequest) (*parleyv1.SendMessageResponse, error) {
	return &parleyv1.SendMessageResponse{Event: &parleyv1.Event{
		ConversationId: req.GetConversationId(),
		Seq:            1,
		Kind: &parleyv1.Event_MessagePosted{MessagePosted: &parleyv1.MessagePosted{
			Text: req.GetText(), ClientMessageId: req.GetClientMessageId(),
		}},
	}}, nil
}
