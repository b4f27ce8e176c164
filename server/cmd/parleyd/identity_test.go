package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/clients/go/parley"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/bootstrap"
	"github.com/parleyhq/parley/server/internal/servertest"
)

// demoCustomerJWT signs a customer token with the public demo portal
// secret (server/internal/identity/demo.yaml), choosing its own tier, as
// anyone who reads the repository could.
func demoCustomerJWT(t *testing.T) string {
	t.Helper()
	claims := jwt.MapClaims{
		"iss": "https://portal.example.com", "aud": "parley", "sub": "forged-" + uuid.NewString(),
		"name": "Mallory", "email": "mallory@example.com", "tier": "platinum",
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(),
	}
	signed, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte("parley-demo-portal-secret-do-not-use-in-production"))
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// TestDemoIdentityOnlyWithDemoBootstrap: the demo portal's public JWT
// secret is trusted with the built-in demo configuration only. With a
// bootstrap file of the operator's own, a JWT forged with it is refused,
// also after restarts without the flag.
func TestDemoIdentityOnlyWithDemoBootstrap(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := func(c *parley.Client) error {
		_, err := c.Session.StartCustomerChat(ctx, &parleyv1.StartCustomerChatRequest{RequestId: uuid.NewString(), IssueType: "billing"})
		return err
	}

	demo := startDaemon(t, filepath.Join(t.TempDir(), "demo.db"))
	if err := start(parley.New(demo.url, parley.WithToken(demoCustomerJWT(t)))); err != nil {
		t.Fatalf("the demo installation refused a demo customer: %v", err)
	}

	// A verbatim copy of the demo file is refused: its tokens are public.
	file := filepath.Join(t.TempDir(), "mine.yaml")
	if err := os.WriteFile(file, bootstrap.Demo, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-addr", "127.0.0.1:0", "-db", filepath.Join(t.TempDir(), "copy.db"), "-bootstrap", file).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "demo tokens are public") {
		t.Fatalf("parleyd started with the demo file's public tokens in a bootstrap file of its own (%v):\n%s", err, out)
	}
	if err := os.WriteFile(file, []byte(strings.ReplaceAll(string(bootstrap.Demo), "ps_demo_", "ps_mine_")), 0o600); err != nil {
		t.Fatal(err)
	}
	ownDB := filepath.Join(t.TempDir(), "own.db")
	own := startDaemon(t, ownDB, "-bootstrap", file)
	err = start(parley.New(own.url, parley.WithToken(demoCustomerJWT(t))))
	if connect.CodeOf(err) != connect.CodeUnauthenticated || apierr.Reason(err) != "INVALID_TOKEN" {
		t.Fatalf("a JWT forged with the demo secret against a custom bootstrap got %v, want Unauthenticated INVALID_TOKEN", err)
	}
	// The database remembers how it was configured: restarted without the
	// flag (the file applies once), it still refuses the demo secret.
	own.cmd.Process.Kill()
	own.cmd.Wait()
	again := startDaemon(t, ownDB)
	err = start(parley.New(again.url, parley.WithToken(demoCustomerJWT(t))))
	if connect.CodeOf(err) != connect.CodeUnauthenticated || apierr.Reason(err) != "INVALID_TOKEN" {
		t.Fatalf("after a restart without -bootstrap, a JWT forged with the demo secret got %v, want Unauthenticated INVALID_TOKEN", err)
	}
}

var tokenLine = regexp.MustCompile(`^\s+(ps_\S+)\s*$`)

// TestGeneratedAdminTokenNotInLog: the admin token parleyd makes for a new
// database without one goes to standard output, never to the log on
// standard error, and it works.
func TestGeneratedAdminTokenNotInLog(t *testing.T) {
	dir := t.TempDir()
	var noAdmins bytes.Buffer
	for line := range strings.SplitSeq(string(bootstrap.Demo), "\n") {
		if strings.HasPrefix(line, "admins:") || strings.Contains(line, "ps_demo_admin_token") {
			continue
		}
		noAdmins.WriteString(strings.ReplaceAll(line, "ps_demo_", "ps_mine_") + "\n")
	}
	file := filepath.Join(dir, "boot.yaml")
	if err := os.WriteFile(file, noAdmins.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-addr", "127.0.0.1:0", "-db", filepath.Join(dir, "p.db"), "-bootstrap", file)
	var stdout, stderr servertest.LogBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	var url string
	for url == "" && time.Now().Before(deadline) {
		if m := listening.FindStringSubmatch(stderr.String()); m != nil {
			url = m[1]
		}
		time.Sleep(20 * time.Millisecond) // polling a child process's output
	}
	if url == "" {
		t.Fatalf("parleyd did not start:\n%s", stderr.String())
	}
	var token string
	for line := range strings.SplitSeq(stdout.String(), "\n") {
		if m := tokenLine.FindStringSubmatch(line); m != nil {
			token = m[1]
		}
	}
	if token == "" {
		t.Fatalf("no generated admin token on standard output:\n%s", stdout.String())
	}
	if strings.Contains(stderr.String(), token) {
		t.Fatalf("the generated admin token is in the log (standard error):\n%s", stderr.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := parley.New(url, parley.WithToken(token)).Access.ListTokens(ctx, &parleyv1.ListTokensRequest{}); err != nil {
		t.Fatalf("the generated admin token does not work: %v", err)
	}
}
