package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Flags the bench gives the parleyd it starts. The per-participant send
// limit and the per-caller stream bound protect a real installation from
// one abusive client; here one guest sends at the sweep's rate and one
// token holds many streams, so both are lifted. Every other setting is
// parleyd's default.
var parleydLoadFlags = []string{
	"-max-streams-per-caller", "1000000",
	"-send-rate", "1e9",
	"-send-burst", "1000000000",
}

// startTimeout bounds how long a server child may take to tell its address.
const startTimeout = 2 * time.Minute

// parleydListening finds the address in parleyd's greeting.
var parleydListening = regexp.MustCompile(`parleyd listening on (http://\S+)`)

// bareListeningRE finds the address in serve-bare's greeting.
var bareListeningRE = regexp.MustCompile(regexp.QuoteMeta(bareListening) + `(http://\S+)`)

// server is one target the bench drives: the URL of each replica and, when
// the bench started it, its processes (whose CPU and memory it reads).
type server struct {
	name  string
	urls  []string
	procs []*exec.Cmd
	// admin is the admin token setup uses; empty for the bare server.
	admin string
}

// pids returns the server's process ids; none for a server the bench did
// not start.
func (s *server) pids() []int {
	out := make([]int, len(s.procs))
	for i, p := range s.procs {
		out[i] = p.Process.Pid
	}
	return out
}

// url returns the replica that the i-th client uses (round robin).
func (s *server) url(i int) string { return s.urls[i%len(s.urls)] }

// stop ends the server's processes with SIGTERM, then SIGKILL for one that
// has not exited within the shutdown grace period and some.
func (s *server) stop() error {
	var errs []error
	for _, p := range s.procs {
		_ = p.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range s.procs {
		done := make(chan error, 1)
		go func() { done <- p.Wait() }()
		select {
		case err := <-done:
			var exit *exec.ExitError
			if err != nil && !errors.As(err, &exit) {
				errs = append(errs, fmt.Errorf("wait for %s (pid %d): %w", s.name, p.Process.Pid, err))
			}
		case <-time.After(15 * time.Second):
			_ = p.Process.Kill()
			<-done
			errs = append(errs, fmt.Errorf("%s (pid %d) did not stop within 15 s of SIGTERM and was killed", s.name, p.Process.Pid))
		}
	}
	return errors.Join(errs...)
}

// startBare starts this binary's serve-bare subcommand as a child process.
func startBare(ctx context.Context, log io.Writer) (*server, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find this binary to start serve-bare: %w", err)
	}
	cmd := exec.Command(exe, "serve-bare")
	url, err := startChild(ctx, cmd, bareListeningRE, "bare: ", log)
	if err != nil {
		return nil, fmt.Errorf("start the bare server: %w", err)
	}
	return &server{name: "bare", urls: []string{url}, procs: []*exec.Cmd{cmd}}, nil
}

// buildParleyd builds parleyd into dir with the go command, from the module
// that holds the current directory.
func buildParleyd(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "parleyd")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/parleyhq/parley/server/cmd/parleyd")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build parleyd (run parley-bench inside the Parley repository, or pass -parleyd): %w\n%s", err, out)
	}
	return bin, nil
}

// startParleyd starts replicas parleyd processes from bin on db (a SQLite
// file, or a PostgreSQL URL that every replica shares), one after the
// other, so the first configures a new database alone.
func startParleyd(ctx context.Context, bin, db string, replicas int, log io.Writer) (*server, error) {
	s := &server{name: "parleyd", admin: demoAdminToken}
	if replicas > 1 {
		s.name = fmt.Sprintf("parleyd x%d", replicas)
	}
	for i := range replicas {
		args := append([]string{"-addr", "127.0.0.1:0", "-db", db}, parleydLoadFlags...)
		cmd := exec.Command(bin, args...)
		url, err := startChild(ctx, cmd, parleydListening, "parleyd["+strconv.Itoa(i)+"]: ", log)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("start parleyd replica %d: %w", i, err), s.stop())
		}
		s.urls = append(s.urls, url)
		s.procs = append(s.procs, cmd)
	}
	return s, nil
}

// startChild starts cmd and waits for the line of its standard error that
// listening matches, whose first group is the URL it serves. The child's
// later lines are copied to log, each prefixed.
func startChild(ctx context.Context, cmd *exec.Cmd, listening *regexp.Regexp, prefix string, log io.Writer) (string, error) {
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return "", fmt.Errorf("pipe: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	urls := make(chan string, 1)
	var early []string
	go func() {
		lines := bufio.NewScanner(stderr)
		found := false
		for lines.Scan() {
			line := lines.Text()
			if !found {
				if m := listening.FindStringSubmatch(line); m != nil {
					found = true
					urls <- m[1]
				} else {
					early = append(early, line)
				}
				continue
			}
			fmt.Fprintf(log, "%s%s\n", prefix, line)
		}
		close(urls)
	}()
	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case url, ok := <-urls:
		if ok {
			return url, nil
		}
		_ = cmd.Wait()
		return "", fmt.Errorf("%s ended before listening: %s", cmd.Path, strings.Join(early, "\n"))
	case <-timer.C:
		err = fmt.Errorf("%s did not tell its address within %s", cmd.Path, startTimeout)
	case <-ctx.Done():
		err = ctx.Err()
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return "", err
}
