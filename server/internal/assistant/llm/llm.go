// Package llm asks an OpenAI-compatible chat-completions endpoint for the
// short summary a live agent reads when the virtual agent hands a chat
// over. It speaks the one endpoint it needs over net/http; the caller runs
// it outside any transaction, and every call ends within its timeout.
package llm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultTimeout bounds a call when Config.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// Limits on what is sent and read.
const (
	// MaxTranscriptLines is how many of the latest transcript lines a
	// prompt carries.
	MaxTranscriptLines = 40
	// MaxLineChars is how many characters of one transcript line a prompt
	// carries.
	MaxLineChars = 500
	// maxResponseBytes is the most of a response body that is read.
	maxResponseBytes = 1 << 20
	// maxErrorExcerpt is how many characters of an error response's body
	// an error quotes.
	maxErrorExcerpt = 200
	// maxTokens bounds the summary's length.
	maxTokens = 300
	// temperature keeps the summary close to the facts.
	temperature = 0.2
)

// systemPrompt tells the model what to write.
const systemPrompt = "You summarize a customer-service chat for the live agent taking it over from a virtual agent. " +
	"Write 2 to 4 plain sentences: what the customer wants, what is known (intent, details captured), " +
	"what was already tried, and why the chat is handed over. Use only facts stated in the input; " +
	"never invent order numbers, amounts, names or outcomes. If something is unknown, say so briefly."

// Config says which endpoint and model to use.
type Config struct {
	// BaseURL is the API root, such as https://api.openai.com/v1; requests
	// go to BaseURL + "/chat/completions".
	BaseURL string
	// Model is the model name sent with each request.
	Model string
	// APIKey, when set, is sent as a bearer token.
	APIKey string
	// Timeout bounds each call; zero means DefaultTimeout.
	Timeout time.Duration
}

// Client calls the chat-completions endpoint of one Config.
type Client struct {
	endpoint string
	// where names the endpoint in errors, without any password the base
	// URL carries.
	where string
	cfg   Config
	http  *http.Client
}

// New checks cfg and returns a client that sends its requests through hc
// (http.DefaultClient when nil).
func New(cfg Config, hc *http.Client) (*Client, error) {
	base, err := url.Parse(cfg.BaseURL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("llm: base URL %q is not an absolute http(s) URL", cfg.BaseURL)
	}
	if strings.TrimSpace(cfg.Model) == "" {
		return nil, errors.New("llm: no model configured")
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("llm: negative timeout %s", cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	endpoint := base.JoinPath("chat", "completions")
	return &Client{endpoint: endpoint.String(), where: endpoint.Redacted(), cfg: cfg, http: hc}, nil
}

// Role says who wrote a transcript line.
type Role string

// The roles of transcript lines.
const (
	RoleCustomer Role = "customer"
	RoleBot      Role = "bot"
)

// Line is one message of the transcript.
type Line struct {
	Role Role
	Text string
}

// Slot is one piece of information the virtual agent captured.
type Slot struct {
	Name  string
	Value string
}

// SummaryInput is what a hand-off summary is made from.
type SummaryInput struct {
	// Transcript holds the chat's customer and bot messages, oldest first;
	// the prompt carries the last MaxTranscriptLines, each cut to
	// MaxLineChars characters.
	Transcript []Line
	// Intent is the recognized intent or topic id, if any.
	Intent string
	// Topic is the topic's human name, if any.
	Topic string
	// Slots are the captured values, in the order they were asked.
	Slots []Slot
	// HandoffReason is why the chat goes to a person.
	HandoffReason string
}

// prompt renders in as the user message.
func (in SummaryInput) prompt() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Hand-off reason: %s\n", orUnknown(in.HandoffReason))
	fmt.Fprintf(&b, "Intent: %s\n", orUnknown(in.Intent))
	if in.Topic != "" {
		fmt.Fprintf(&b, "Topic: %s\n", in.Topic)
	}
	if len(in.Slots) > 0 {
		b.WriteString("Captured details:\n")
		for _, s := range in.Slots {
			fmt.Fprintf(&b, "- %s: %s\n", s.Name, truncate(s.Value, MaxLineChars))
		}
	}
	lines := in.Transcript
	if len(lines) > MaxTranscriptLines {
		fmt.Fprintf(&b, "Transcript (the last %d of %d messages):\n", MaxTranscriptLines, len(lines))
		lines = lines[len(lines)-MaxTranscriptLines:]
	} else {
		b.WriteString("Transcript:\n")
	}
	for _, l := range lines {
		fmt.Fprintf(&b, "%s: %s\n", l.Role, truncate(strings.Join(strings.Fields(l.Text), " "), MaxLineChars))
	}
	return b.String()
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// truncate cuts s to at most n characters, marking a cut with an ellipsis.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// chatRequest and chatResponse are the parts of the chat-completions
// request and response that Summarize uses.
type (
	chatRequest struct {
		Model       string        `json:"model"`
		Messages    []chatMessage `json:"messages"`
		Temperature float64       `json:"temperature"`
		MaxTokens   int           `json:"max_tokens"`
	}
	chatMessage struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	}
	chatResponse struct {
		Choices []struct {
			Message chatMessage `json:"message"`
		} `json:"choices"`
	}
)

// Summarize asks the model for a 2-4 sentence hand-off summary of in and
// returns it trimmed. It gives up after the client's timeout or when ctx
// ends (the error then matches context.DeadlineExceeded or
// context.Canceled); an answer that is not a 2xx with a non-empty choice
// is an error that quotes the status and the start of the body.
func (c *Client) Summarize(ctx context.Context, in SummaryInput) (string, error) {
	body, err := json.Marshal(chatRequest{
		Model: c.cfg.Model,
		Messages: []chatMessage{
			{Role: "system", Content: systemPrompt},
			{Role: "user", Content: in.prompt()},
		},
		Temperature: temperature,
		MaxTokens:   maxTokens,
	})
	if err != nil {
		return "", fmt.Errorf("llm: encode request: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("llm: build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if c.cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.APIKey)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", c.callFailed(ctx, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return "", c.callFailed(ctx, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return "", fmt.Errorf("llm: %s answered %s: %s", c.where, resp.Status, c.excerpt(raw))
	}
	if len(raw) > maxResponseBytes {
		return "", fmt.Errorf("llm: %s answered more than %d bytes", c.where, maxResponseBytes)
	}
	var out chatResponse
	if err := json.Unmarshal(raw, &out); err != nil {
		return "", fmt.Errorf("llm: %s answered malformed JSON (%w): %s", c.where, err, c.excerpt(raw))
	}
	if len(out.Choices) == 0 {
		return "", fmt.Errorf("llm: %s answered no choices", c.where)
	}
	summary := strings.TrimSpace(out.Choices[0].Message.Content)
	if summary == "" {
		return "", fmt.Errorf("llm: %s answered an empty summary", c.where)
	}
	return summary, nil
}

// callFailed wraps the error of a request that got no complete answer,
// making sure that running out of time matches context.DeadlineExceeded
// (net/http can report it as its own timeout error).
func (c *Client) callFailed(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		err = fmt.Errorf("%w (%w)", ctxErr, err)
	}
	return fmt.Errorf("llm: call %s: %w", c.where, err)
}

// excerpt is the start of a response body for an error message, on one
// line, with the API key blanked out should the server echo it.
func (c *Client) excerpt(raw []byte) string {
	s := string(raw)
	if c.cfg.APIKey != "" {
		s = strings.ReplaceAll(s, c.cfg.APIKey, "[redacted]")
	}
	s = strings.Join(strings.Fields(s), " ")
	if s == "" {
		return "(empty body)"
	}
	return truncate(s, maxErrorExcerpt)
}
