package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/gen/parley/v1/parleyv1connect"
)

// fakeKnowledge records import batches and answers as a server that has
// every article already when known is set.
type fakeKnowledge struct {
	parleyv1connect.UnimplementedKnowledgeServiceHandler
	mu      sync.Mutex
	batches []int
	auth    []string
	known   bool
	// failFrom refuses every batch from this one (1-based) on; 0 never.
	failFrom int
}

func (f *fakeKnowledge) ImportArticles(ctx context.Context, req *parleyv1.ImportArticlesRequest) (*parleyv1.ImportArticlesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.batches = append(f.batches, len(req.GetArticles()))
	if f.failFrom > 0 && len(f.batches) >= f.failFrom {
		return nil, connect.NewError(connect.CodeInvalidArgument, "bad article")
	}
	if info, ok := connect.CallInfoForServerContext(ctx); ok {
		f.auth = append(f.auth, info.RequestHeader().Get("Authorization"))
	}
	n := int32(len(req.GetArticles()))
	if f.known {
		return &parleyv1.ImportArticlesResponse{Unchanged: n}, nil
	}
	return &parleyv1.ImportArticlesResponse{Created: n - 1, Updated: 1}, nil
}

func startFake(t *testing.T, f *fakeKnowledge) string {
	t.Helper()
	server := connect.NewServer()
	parleyv1connect.RegisterKnowledgeServiceHandler(server, f)
	mux := http.NewServeMux()
	connecthttp.Mount(mux, server)
	ts := httptest.NewUnstartedServer(mux)
	ts.Config.Protocols = new(http.Protocols)
	ts.Config.Protocols.SetHTTP1(true)
	ts.Config.Protocols.SetUnencryptedHTTP2(true) // parley's client speaks h2c, as parleyd serves it
	ts.Start()
	t.Cleanup(ts.Close)
	return ts.URL
}

func writeArticles(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	for i := range n {
		body := fmt.Sprintf("---\nexternal_id: gen/a%04d\ntitle: Article %d\ntags: [x]\npublished: true\n---\nBody %d.\n", i, i, i)
		sub := filepath.Join(dir, fmt.Sprintf("part%d", i%3))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("a%04d.md", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestImportArticlesBatches(t *testing.T) {
	fake := &fakeKnowledge{}
	url := startFake(t, fake)
	dir := writeArticles(t, 1203)
	var out, errs bytes.Buffer
	env := func(k string) string { return map[string]string{"PARLEY_TOKEN": "ps_env"}[k] }
	if err := run(context.Background(), []string{"import-articles", "-addr", url, dir}, &out, &errs, env); err != nil {
		t.Fatalf("run: %v (%s)", err, errs.String())
	}
	if fmt.Sprint(fake.batches) != "[500 500 203]" {
		t.Errorf("batches %v; want [500 500 203]", fake.batches)
	}
	if got := strings.TrimSpace(out.String()); got != "1203 articles: 1200 created, 3 updated, 0 unchanged" {
		t.Errorf("output %q", got)
	}
	for _, a := range fake.auth {
		if a != "Bearer ps_env" {
			t.Errorf("Authorization %q; want the PARLEY_TOKEN", a)
		}
	}
	fake.known, fake.auth = true, nil
	out.Reset()
	if err := run(context.Background(), []string{"import-articles", "-addr", url, "-token", "ps_flag", dir}, &out, &errs, env); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(out.String()); got != "1203 articles: 0 created, 0 updated, 1203 unchanged" || fake.auth[0] != "Bearer ps_flag" {
		t.Errorf("output %q, Authorization %q", got, fake.auth[0])
	}
}

func TestImportArticlesRefuses(t *testing.T) {
	fake := &fakeKnowledge{}
	url := startFake(t, fake)
	good := writeArticles(t, 2)
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "broken.md"), []byte("---\ntitle: No id\npublished: true\n---\nBody.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	noenv := func(string) string { return "" }
	for name, tc := range map[string]struct {
		args []string
		says string
	}{
		"no token":      {[]string{"import-articles", "-addr", url, good}, "PARLEY_TOKEN"},
		"no folder":     {[]string{"import-articles", "-addr", url, "-token", "t", filepath.Join(good, "nope")}, "no such file"},
		"bad article":   {[]string{"import-articles", "-addr", url, "-token", "t", bad}, "broken.md: external_id"},
		"no argument":   {[]string{"import-articles", "-token", "t"}, "usage"},
		"no subcommand": {nil, "usage"},
	} {
		t.Run(name, func(t *testing.T) {
			var out, errs bytes.Buffer
			err := run(context.Background(), tc.args, &out, &errs, noenv)
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("got %v; want an error saying %q", err, tc.says)
			}
		})
	}
	if len(fake.batches) != 0 {
		t.Fatalf("refused runs imported %v", fake.batches)
	}
}

func TestImportArticlesStopsAtAFailedBatch(t *testing.T) {
	fake := &fakeKnowledge{failFrom: 2}
	url := startFake(t, fake)
	var out, errs bytes.Buffer
	err := run(context.Background(), []string{"import-articles", "-addr", url, "-token", "t", writeArticles(t, 1100)}, &out, &errs, func(string) string { return "" })
	if err == nil || !strings.Contains(err.Error(), "import articles 501 to 1000 of 1100; articles 1 to 500 were imported: invalid_argument: bad article") {
		t.Fatalf("got %v", err)
	}
	if fmt.Sprint(fake.batches) != "[500 500]" || out.Len() != 0 {
		t.Fatalf("batches %v, output %q", fake.batches, out.String())
	}
}
