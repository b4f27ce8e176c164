package llm_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/parleyhq/parley/server/internal/assistant/llm"
)

const key = "sk-test-secret-key-123"

// request is what the fake endpoint received.
type request struct {
	Path, Auth  string
	Model       string  `json:"model"`
	Temperature float64 `json:"temperature"`
	MaxTokens   int     `json:"max_tokens"`
	Messages    []struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	} `json:"messages"`
}

// fake serves handle at /v1/chat/completions and returns a client for it
// with the given timeout, and the requests it got.
func fake(t *testing.T, timeout time.Duration, handle http.HandlerFunc) (*llm.Client, *[]request) {
	t.Helper()
	var got []request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rq := request{Path: r.URL.Path, Auth: r.Header.Get("Authorization")}
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s with Content-Type %q, want a JSON POST", r.Method, r.Header.Get("Content-Type"))
		}
		if err := json.NewDecoder(r.Body).Decode(&rq); err != nil {
			t.Errorf("request body: %v", err)
		}
		got = append(got, rq)
		handle(w, r)
	}))
	t.Cleanup(srv.Close)
	c, err := llm.New(llm.Config{BaseURL: srv.URL + "/v1/", Model: "gpt-test", APIKey: key, Timeout: timeout}, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	return c, &got
}

func answer(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, body)
	}
}

var input = llm.SummaryInput{
	Transcript: []llm.Line{
		{Role: llm.RoleCustomer, Text: "I was charged twice for order 4711"},
		{Role: llm.RoleBot, Text: "What amount was charged twice?"},
		{Role: llm.RoleCustomer, Text: "49.90 EUR"},
	},
	Intent:        "billing_dispute",
	Topic:         "Billing dispute",
	Slots:         []llm.Slot{{Name: "order_number", Value: "4711"}, {Name: "amount", Value: "49.90 EUR"}},
	HandoffReason: "the topic hands billing disputes to Billing Support",
}

func TestSummarize(t *testing.T) {
	c, got := fake(t, 0, answer(`{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"  The customer was charged twice.\n"}}]}`))
	summary, err := c.Summarize(context.Background(), input)
	if err != nil {
		t.Fatal(err)
	}
	if summary != "The customer was charged twice." {
		t.Fatalf("summary %q, want the content trimmed", summary)
	}
	if len(*got) != 1 {
		t.Fatalf("%d requests, want 1", len(*got))
	}
	rq := (*got)[0]
	if rq.Path != "/v1/chat/completions" || rq.Auth != "Bearer "+key || rq.Model != "gpt-test" {
		t.Fatalf("request to %s with auth %q for model %q", rq.Path, rq.Auth, rq.Model)
	}
	if rq.Temperature != 0.2 || rq.MaxTokens <= 0 || rq.MaxTokens > 500 {
		t.Fatalf("temperature %v, max_tokens %d", rq.Temperature, rq.MaxTokens)
	}
	if len(rq.Messages) != 2 || rq.Messages[0].Role != "system" || rq.Messages[1].Role != "user" {
		t.Fatalf("messages %+v, want a system and a user message", rq.Messages)
	}
	if !strings.Contains(rq.Messages[0].Content, "2 to 4") || !strings.Contains(rq.Messages[0].Content, "never invent") {
		t.Errorf("system prompt %q does not ask for 2-4 sentences without invented facts", rq.Messages[0].Content)
	}
	user := rq.Messages[1].Content
	for _, want := range []string{
		"customer: I was charged twice for order 4711", "bot: What amount was charged twice?", "customer: 49.90 EUR",
		"billing_dispute", "Billing dispute", "order_number: 4711", "amount: 49.90 EUR", "Billing Support",
	} {
		if !strings.Contains(user, want) {
			t.Errorf("user message lacks %q:\n%s", want, user)
		}
	}
}

func TestNoKeyNoAuthorization(t *testing.T) {
	var auth []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = r.Header.Values("Authorization")
		answer(`{"choices":[{"message":{"content":"ok"}}]}`)(w, r)
	}))
	defer srv.Close()
	c, err := llm.New(llm.Config{BaseURL: srv.URL, Model: "local"}, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Summarize(context.Background(), input); err != nil {
		t.Fatal(err)
	}
	if len(auth) != 0 {
		t.Fatalf("Authorization %q sent without a key", auth)
	}
}

func TestTranscriptIsCappedAndTruncated(t *testing.T) {
	c, got := fake(t, 0, answer(`{"choices":[{"message":{"content":"ok"}}]}`))
	in := llm.SummaryInput{HandoffReason: "asked for a person"}
	for i := range 100 {
		in.Transcript = append(in.Transcript, llm.Line{Role: llm.RoleCustomer, Text: fmt.Sprintf("message-%03d", i)})
	}
	in.Transcript = append(in.Transcript, llm.Line{Role: llm.RoleCustomer, Text: strings.Repeat("x", 5000)})
	if _, err := c.Summarize(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	user := (*got)[0].Messages[1].Content
	if strings.Contains(user, "message-060") || !strings.Contains(user, "message-061") || !strings.Contains(user, "message-099") {
		t.Errorf("prompt does not carry exactly the last %d lines:\n%s", llm.MaxTranscriptLines, user)
	}
	if strings.Contains(user, strings.Repeat("x", llm.MaxLineChars+1)) || !strings.Contains(user, strings.Repeat("x", llm.MaxLineChars-1)+"…") {
		t.Errorf("a long line is not cut to %d characters", llm.MaxLineChars)
	}
}

func TestErrorAnswers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		handle http.HandlerFunc
		want   []string
	}{
		{"server error", func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, `{"error":{"message":"the model is overloaded"}}`, http.StatusInternalServerError)
		}, []string{"500", "the model is overloaded"}},
		{"unauthorized echoing the key", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "invalid key: "+r.Header.Get("Authorization"), http.StatusUnauthorized)
		}, []string{"401", "invalid key"}},
		{"malformed body", answer(`{"choices":[`), []string{"malformed JSON"}},
		{"no choices", answer(`{"choices":[]}`), []string{"no choices"}},
		{"empty content", answer(`{"choices":[{"message":{"content":"  "}}]}`), []string{"empty summary"}},
		{"long error body", func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "start "+strings.Repeat("y", 10000), http.StatusBadGateway)
		}, []string{"502", "start yyy"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := fake(t, 0, tc.handle)
			summary, err := c.Summarize(context.Background(), input)
			if err == nil {
				t.Fatalf("no error; summary %q", summary)
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			if strings.Contains(err.Error(), key) {
				t.Errorf("error %q shows the API key", err)
			}
			if len(err.Error()) > 600 {
				t.Errorf("error is %d bytes long; it should quote an excerpt of the body", len(err.Error()))
			}
		})
	}
}

// block answers only once the request is abandoned, or the test ends.
func block(done <-chan struct{}) http.HandlerFunc {
	return func(_ http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-done:
		}
	}
}

func TestTimeout(t *testing.T) {
	done := make(chan struct{})
	defer close(done) // before the fake server's Close, which waits for handlers
	c, _ := fake(t, 50*time.Millisecond, block(done))
	_, err := c.Summarize(context.Background(), input)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want one matching context.DeadlineExceeded", err)
	}
}

func TestCallerDeadline(t *testing.T) {
	done := make(chan struct{})
	defer close(done)
	c, _ := fake(t, time.Hour, block(done))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := c.Summarize(ctx, input)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want one matching context.DeadlineExceeded", err)
	}
}

func TestNewChecksConfig(t *testing.T) {
	for _, cfg := range []llm.Config{
		{BaseURL: "", Model: "m"},
		{BaseURL: "api.openai.com/v1", Model: "m"},
		{BaseURL: "ftp://example.com", Model: "m"},
		{BaseURL: "https://", Model: "m"},
		{BaseURL: "https://api.example.com/v1", Model: " "},
		{BaseURL: "https://api.example.com/v1", Model: "m", Timeout: -time.Second},
	} {
		if _, err := llm.New(cfg, nil); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	if _, err := llm.New(llm.Config{BaseURL: "http://127.0.0.1:8080/v1", Model: "m"}, nil); err != nil {
		t.Errorf("a plain http base URL: %v", err)
	}
}
