package dialog

import (
	"context"
	"testing"
)

// BenchmarkTurn measures one turn of the demo bot from a new chat: intent
// matching and the engine's work around a fixed, instant Env (the knowledge
// search and the actions are measured where they are implemented).
func BenchmarkTurn(b *testing.B) {
	c := demoConfig(b)
	env := &fakeEnv{articles: []Article{resetArticle, resetArticle, resetArticle}}
	for _, bc := range []struct{ name, text string }{
		{"topic_with_capture", "Hello, could you please tell me where my order 12345 is? It's been a week."},
		{"knowledge_fallback", "Do you sell gift cards that can be used in your stores in Paris?"},
		{"handoff", "this bot is useless, can I please talk to a real person"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var st State
				env.calls, env.searches = env.calls[:0], env.searches[:0]
				if _, err := c.Turn(context.Background(), env, &st, Input{Text: bc.text}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
