package knowledge_test

import (
	"context"
	"testing"

	"github.com/parleyhq/parley/server/internal/assistant"
	"github.com/parleyhq/parley/server/internal/assistant/dialog"
	"github.com/parleyhq/parley/server/internal/bootstrap"
	"github.com/parleyhq/parley/server/internal/knowledge"
)

// botEnv is the bot's world as the turn runner gives it: public articles
// from base and the demo's actions.
type botEnv struct {
	base    *knowledge.Base
	actions assistant.Actions
}

func (e botEnv) Search(ctx context.Context, text, language string, limit int) ([]dialog.Article, error) {
	results, err := e.base.Search(ctx, knowledge.Query{Text: text, Locale: language, Limit: limit, PublicOnly: true})
	if err != nil {
		return nil, err
	}
	out := make([]dialog.Article, 0, len(results))
	for _, r := range results {
		out = append(out, dialog.Article{ID: r.GetArticleId(), ExternalID: r.GetExternalId(), Title: r.GetTitle(), Snippet: r.GetSnippet()})
	}
	return out, nil
}

func (e botEnv) Call(ctx context.Context, action string, slots map[string]string) (map[string]string, error) {
	return e.actions[action](ctx, slots)
}

// BenchmarkBotTurn10k measures one turn of the demo virtual agent (intent
// matching, then a topic with its lookup action, a knowledge answer or a
// knowledge step) on the demo corpus scaled to 10,000 articles: what a
// customer's message costs before the answer is committed.
func BenchmarkBotTurn10k(b *testing.B) {
	ctx := context.Background()
	base := scaledBase(b, 10000)
	actions, err := assistant.DemoActions()
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := dialog.Parse(bootstrap.DemoBotConfig(), actions.Names())
	if err != nil {
		b.Fatal(err)
	}
	env := botEnv{base: base, actions: actions}
	for _, tc := range []struct{ name, text string }{
		{"topic_and_action", "hi, where is my order 10001?"},
		{"knowledge_answer", "do you ship to Canada and how long does it take"},
		{"topic_from_knowledge", "I forgot my password and can't log in"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				st := &dialog.State{}
				reply, err := cfg.Turn(ctx, env, st, dialog.Input{Text: tc.text})
				if err != nil {
					b.Fatal(err)
				}
				if len(reply.Messages) == 0 {
					b.Fatal("no answer")
				}
			}
		})
	}
}
