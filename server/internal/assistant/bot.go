// Package assistant is Parley's virtual agent at run time: it starts chats
// with the bot where the settings say so, answers each customer message
// exactly once (a durable pending turn that one replica claims, answers
// and clears in one transaction), hands chats to live agents through
// routing with a summary, and serves AssistantService. What the bot says
// is decided by the pure dialog engine (package dialog).
package assistant

import (
	_ "embed"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/server/internal/assistant/dialog"
	"github.com/parleyhq/parley/server/internal/assistant/llm"
	"github.com/parleyhq/parley/server/internal/clock"
	"github.com/parleyhq/parley/server/internal/events"
	"github.com/parleyhq/parley/server/internal/knowledge"
	"github.com/parleyhq/parley/server/internal/routing"
	"github.com/parleyhq/parley/server/internal/store"
)

// defaultConfig is the configuration of an installation whose admin has
// not written one: a greeting, the hand-off phrases and knowledge answers,
// no topics.
//
//go:embed default.yaml
var defaultConfig []byte

// Options configure the Bot.
type Options struct {
	DB         *store.DB
	Hub        *events.Hub
	Clock      clock.Clock
	Dispatcher *routing.Dispatcher
	Knowledge  *knowledge.Base
	// Actions are the Go actions topics may call, by name.
	Actions Actions
	// LLM, when set, writes a generated summary after each hand-off.
	LLM *llm.Client
	// Replica names this process in turn leases.
	Replica string
	Log     *slog.Logger
	// PollEvery is how often the runner looks for turns nobody took (a
	// crashed replica's); 0 means 2 s.
	PollEvery time.Duration
	// Lease is how long a claimed turn stays with its replica; 0 means 15 s
	// (a turn takes milliseconds; an action may take up to 10 s).
	Lease time.Duration
}

// Bot is the virtual agent of one parleyd process.
type Bot struct {
	opts Options
	kick chan struct{}

	mu      sync.Mutex
	version int64
	cfg     *dialog.Config
	// fallback is the parsed defaultConfig.
	fallback *dialog.Config
}

// New returns the Bot; Run starts its turn runner.
func New(opts Options) (*Bot, error) {
	if opts.PollEvery == 0 {
		opts.PollEvery = 2 * time.Second
	}
	if opts.Lease == 0 {
		opts.Lease = 15 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Actions == nil {
		opts.Actions = Actions{}
	}
	fallback, err := dialog.Parse(defaultConfig, opts.Actions.Names())
	if err != nil {
		return nil, fmt.Errorf("parse the default bot configuration: %w", err)
	}
	return &Bot{opts: opts, kick: make(chan struct{}, 1), fallback: fallback}, nil
}

// Kick asks the runner to look for pending turns now. It never blocks.
func (b *Bot) Kick() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// configFor returns the parsed configuration the settings hold, parsing
// it once per version. A stored configuration that no longer parses (an
// action removed from this build) falls back to the default, logged.
func (b *Bot) configFor(set *ent.Setting) *dialog.Config {
	if set.BotConfig == "" {
		return b.fallback
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cfg != nil && b.version == set.BotConfigVersion {
		return b.cfg
	}
	cfg, err := dialog.Parse([]byte(set.BotConfig), b.opts.Actions.Names())
	if err != nil {
		b.opts.Log.Error("the stored bot configuration does not parse; using the default", "version", set.BotConfigVersion, "err", err)
		cfg = b.fallback
	}
	b.cfg, b.version = cfg, set.BotConfigVersion
	return cfg
}
