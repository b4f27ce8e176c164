package dialog

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/parleyhq/parley/server/internal/terms"
)

// What the bot waits for (State.Await).
const (
	awaitNothing = ""
	awaitSlot    = "slot"   // the answer to the ask at State.PC
	awaitTopic   = "topic"  // yes or no to "Did you mean State.Suggested?"
	awaitAnswer  = "answer" // yes or no to "Did that answer your question?"
	awaitMore    = "more"   // yes or no to "Anything else I can help with?"
)

// maxArticles is how many shown articles the State remembers.
const maxArticles = 10

// State is the bot's memory of one conversation. The runner stores it as
// JSON between turns; the zero State is a chat that just started.
type State struct {
	// Topic is the topic in progress ("" when idle). It stays set at a
	// hand-off, so the summary knows what was missing.
	Topic string `json:"topic,omitempty"`
	// PC is the next step of Topic's compiled program. A State whose
	// topic or step no longer fits the configuration (it changed between
	// two turns) is taken as idle.
	PC int `json:"pc,omitempty"`
	// Await is what the bot waits for: "" (a fresh message), "slot",
	// "topic" (a yes or no to Suggested) or "answer" (a yes or no to
	// articles shown).
	Await string `json:"await,omitempty"`
	// Attempts counts the invalid answers to the slot being asked.
	Attempts int `json:"attempts,omitempty"`
	// Failures counts consecutive turns where the bot could not help;
	// Missed counts them all, for the summary.
	Failures int `json:"failures,omitempty"`
	Missed   int `json:"missed,omitempty"`
	// Suggested is the topic of a pending "Did you mean", SuggestedText
	// the message it was guessed from.
	Suggested     string `json:"suggested,omitempty"`
	SuggestedText string `json:"suggested_text,omitempty"`
	// Intent is the last recognized topic id.
	Intent string `json:"intent,omitempty"`
	// Slots holds every slot filled so far.
	Slots map[string]string `json:"slots,omitempty"`
	// Results holds the last result of each action called, ActionErrors
	// the error of each action whose last call failed.
	Results      map[string]map[string]string `json:"results,omitempty"`
	ActionErrors map[string]string            `json:"action_errors,omitempty"`
	// Articles are the knowledge articles shown, oldest first, without
	// their snippets.
	Articles []Article `json:"articles,omitempty"`
}

func (st *State) clone() *State {
	c := *st
	c.Slots = maps.Clone(st.Slots)
	c.Results = maps.Clone(st.Results)
	c.ActionErrors = maps.Clone(st.ActionErrors)
	c.Articles = slices.Clone(st.Articles)
	return &c
}

// Input is one customer message.
type Input struct {
	Text string
	// Language is a BCP 47 tag; "" is the configuration's language.
	Language string
}

// Env is what lies outside the engine.
type Env interface {
	// Search returns knowledge articles for text, best first.
	Search(ctx context.Context, text, language string, limit int) ([]Article, error)
	// Call runs a registered Go action with the filled slots; its result is
	// saved into the State.
	Call(ctx context.Context, action string, slots map[string]string) (map[string]string, error)
}

// Article is a knowledge article as the bot shows it.
type Article struct {
	ID         string `json:"id"`
	ExternalID string `json:"external_id,omitempty"`
	Title      string `json:"title"`
	Snippet    string `json:"snippet,omitempty"`
}

// Reply is what one turn decided.
type Reply struct {
	// Messages are the bot messages to post, in order; there is at least
	// one.
	Messages []Message
	// Handoff is set when the chat goes to a person.
	Handoff *Handoff
	// Intent is the recognized topic id once known ("" = none yet).
	Intent string
	// Slots is every slot filled so far.
	Slots map[string]string
}

// Message is one bot message.
type Message struct {
	Text             string
	SuggestedReplies []string
	Articles         []Article
}

// Handoff sends the chat to a person.
type Handoff struct {
	// Reason is ReasonCustomerAsked, ReasonTopic, ReasonBotFailed or
	// ReasonNoAnswer.
	Reason string
	// Queue is a queue's display name; "" routes by the matching rules.
	Queue string
	// Note says why, for the agent.
	Note string
}

// turn is one Turn in progress.
type turn struct {
	c     *Config
	ctx   context.Context
	env   Env
	st    *State
	text  string
	lang  string
	words []string
	reply Reply
}

// Turn answers one customer message. It changes st only when it succeeds.
// It returns an error only when the Env fails because ctx ended: a failing
// action or search otherwise becomes a polite reply or a hand-off.
func (c *Config) Turn(ctx context.Context, env Env, st *State, in Input) (Reply, error) {
	t := &turn{c: c, ctx: ctx, env: env, st: st.clone(), text: in.Text, lang: in.Language, words: normWords(in.Text)}
	if t.lang == "" {
		t.lang = c.lang
	}
	if err := t.run(); err != nil {
		return Reply{}, err
	}
	*st = *t.st
	t.reply.Intent = st.Intent
	t.reply.Slots = maps.Clone(st.Slots)
	if t.reply.Slots == nil {
		t.reply.Slots = map[string]string{}
	}
	return t.reply, nil
}

func (t *turn) run() error {
	if anyIn(t.c.handoff, t.words) {
		t.handoff(ReasonCustomerAsked, "", "The customer asked for a person.")
		return nil
	}
	st := t.st
	if st.Await == awaitTopic || st.Await == awaitAnswer || st.Await == awaitMore {
		// "No, I want to cancel my order" asks afresh.
		if best, _ := t.c.index.match(t.text); best.topic != nil && best.score >= t.c.start {
			st.Await, st.Suggested, st.SuggestedText = awaitNothing, "", ""
			return t.startTopic(best.topic, t.text)
		}
	}
	switch st.Await {
	case awaitSlot:
		return t.answerSlot()
	case awaitTopic:
		id, text := st.Suggested, st.SuggestedText
		st.Await, st.Suggested, st.SuggestedText = awaitNothing, "", ""
		switch {
		case anyIn(t.c.yes, t.words):
			if tp, ok := t.c.byID[id]; ok {
				return t.startTopic(tp, text)
			}
		case anyIn(t.c.no, t.words):
			return t.searchKnowledge(text)
		}
	case awaitMore:
		// "No thanks", "bye", "thank you": the customer is done, which is
		// no failure; "yes" alone asks what else.
		st.Await = awaitNothing
		_, meaningful := t.c.index.match(t.text)
		switch {
		case anyIn(t.c.no, t.words), anyIn(t.c.done, t.words), !meaningful && !anyIn(t.c.yes, t.words):
			t.say(t.c.msg.Glad)
			return nil
		case anyIn(t.c.yes, t.words) && !meaningful:
			t.say(t.c.msg.GoAhead)
			return nil
		}
	case awaitAnswer:
		st.Await = awaitNothing
		switch {
		case anyIn(t.c.yes, t.words):
			st.Failures, st.Await = 0, awaitMore
			t.reply.Messages = append(t.reply.Messages, Message{Text: t.c.msg.Glad + " " + t.c.msg.AnythingElse, SuggestedReplies: t.yesNo()})
			return nil
		case anyIn(t.c.no, t.words):
			t.fail(t.c.msg.NotHelpful)
			return nil
		}
	}
	return t.fresh()
}

// fresh takes a message that answers no question of the bot.
func (t *turn) fresh() error {
	t.st.Await = awaitNothing
	best, meaningful := t.c.index.match(t.text)
	switch {
	case len(t.words) <= 4 && anyIn(t.c.done, t.words) && (best.topic == nil || best.score < t.c.start):
		// "Bye", "all good": nothing to help with, which is no failure
		// (in a short message: a long one says more than goodbye).
		t.say(t.c.msg.Glad)
		return nil
	case !meaningful:
		t.fail(t.c.fallback)
		return nil
	case best.topic != nil && best.score >= t.c.start:
		return t.startTopic(best.topic, t.text)
	case best.topic != nil && best.score >= t.c.suggest:
		t.st.Await, t.st.Suggested, t.st.SuggestedText = awaitTopic, best.topic.info.ID, t.text
		t.reply.Messages = append(t.reply.Messages, Message{
			Text:             placeholder.ReplaceAllLiteralString(t.c.msg.DidYouMean, best.topic.info.Name),
			SuggestedReplies: t.yesNo(),
		})
		return nil
	}
	return t.searchKnowledge(t.text)
}

func (t *turn) yesNo() []string { return []string{t.c.msg.YesLabel, t.c.msg.NoLabel} }

// searchKnowledge answers text from the knowledge base and asks whether
// that helped.
func (t *turn) searchKnowledge(text string) error {
	arts, err := t.env.Search(t.ctx, text, t.lang, t.c.searchLimit)
	if err != nil && t.ctx.Err() != nil {
		return fmt.Errorf("knowledge search: %w", err)
	}
	if err != nil || len(arts) == 0 {
		t.fail(t.c.msg.NoResults)
		return nil
	}
	t.showArticles(arts)
	t.st.Await = awaitAnswer
	t.reply.Messages = append(t.reply.Messages, Message{Text: t.c.msg.DidItHelp, SuggestedReplies: t.yesNo()})
	return nil
}

func (t *turn) showArticles(arts []Article) {
	var b strings.Builder
	b.WriteString(t.c.msg.Found)
	for _, a := range arts {
		b.WriteString("\n• ")
		b.WriteString(a.Title)
		if a.Snippet != "" {
			b.WriteString(": ")
			b.WriteString(a.Snippet)
		}
		if !slices.ContainsFunc(t.st.Articles, func(s Article) bool { return s.ID == a.ID }) {
			t.st.Articles = append(t.st.Articles, Article{ID: a.ID, ExternalID: a.ExternalID, Title: a.Title})
		}
	}
	if over := len(t.st.Articles) - maxArticles; over > 0 {
		t.st.Articles = slices.Delete(t.st.Articles, 0, over)
	}
	t.reply.Messages = append(t.reply.Messages, Message{Text: b.String(), Articles: slices.Clone(arts)})
}

// fail counts a turn where the bot could not help: it says msg, or hands
// off when that makes max_failures in a row.
func (t *turn) fail(msg string) {
	t.st.Failures++
	t.st.Missed++
	if t.st.Failures >= t.c.maxFailures {
		t.handoff(ReasonBotFailed, "", fmt.Sprintf("The bot could not help %d times in a row.", t.st.Failures))
		return
	}
	t.say(msg)
}

func (t *turn) say(text string) {
	t.reply.Messages = append(t.reply.Messages, Message{Text: text})
}

func (t *turn) handoff(reason, queue, note string) {
	t.st.Await, t.st.Suggested, t.st.SuggestedText, t.st.Attempts = awaitNothing, "", "", 0
	t.say(t.c.handoffMessage)
	t.reply.Handoff = &Handoff{Reason: reason, Queue: queue, Note: note}
}

// startTopic starts tp with its slots cleared, then filled from text.
func (t *turn) startTopic(tp *topic, text string) error {
	st := t.st
	st.Topic, st.Intent, st.PC, st.Attempts, st.Failures, st.Await = tp.info.ID, tp.info.ID, 0, 0, 0, awaitNothing
	for name := range tp.slots {
		delete(st.Slots, name)
	}
	t.capture(tp, text, nil, false)
	return t.exec(tp)
}

// capture fills the topic's empty slots that text holds a value for,
// skipping the text already taken (a value found for one slot is not
// another's).
func (t *turn) capture(tp *topic, text string, taken [][2]int, positional bool) {
	for _, s := range tp.order {
		if _, ok := t.st.Slots[s.name]; ok {
			continue
		}
		if v, at, ok := s.extract(t.c, text, taken, positional); ok {
			t.fill(s.name, v)
			if at[1] > at[0] {
				taken = append(taken, at)
			}
		}
	}
}

func (t *turn) fill(name, value string) {
	if t.st.Slots == nil {
		t.st.Slots = map[string]string{}
	}
	t.st.Slots[name] = value
}

// answerSlot takes the answer to the slot being asked.
func (t *turn) answerSlot() error {
	st := t.st
	tp, ok := t.c.byID[st.Topic]
	if !ok || st.PC < 0 || st.PC >= len(tp.prog) || tp.prog[st.PC].op != opAsk {
		// The configuration changed under this conversation.
		st.Topic, st.PC, st.Await = "", 0, awaitNothing
		return t.fresh()
	}
	s := tp.slots[tp.prog[st.PC].slot]
	if v, at, ok := s.extract(t.c, t.text, nil, true); ok {
		t.fill(s.name, v)
		t.capture(tp, t.text, [][2]int{at}, false)
		st.Failures, st.Attempts, st.Await = 0, 0, awaitNothing
		st.PC++
		return t.exec(tp)
	}
	if best, _ := t.c.index.match(t.text); best.topic != nil && best.topic != tp && best.score >= t.c.switchAt {
		return t.startTopic(best.topic, t.text)
	}
	st.Attempts++
	st.Missed++
	if st.Attempts <= s.retries {
		t.ask(s, t.c.msg.Retry+" "+s.prompt)
		return nil
	}
	st.Attempts, st.Await = 0, awaitNothing
	switch s.onFail {
	case "skip":
		st.PC++
		return t.exec(tp)
	case "end":
		t.endTopic()
		return nil
	}
	t.handoff(ReasonBotFailed, "", fmt.Sprintf("No valid %s after %d attempts.", s.name, s.retries+1))
	return nil
}

func (t *turn) ask(s *slot, text string) {
	t.st.Await = awaitSlot
	t.reply.Messages = append(t.reply.Messages, Message{Text: text, SuggestedReplies: slices.Clone(s.choices)})
}

func (t *turn) endTopic() {
	t.st.Topic, t.st.PC, t.st.Await = "", 0, awaitMore
	t.reply.Messages = append(t.reply.Messages, Message{Text: t.c.msg.AnythingElse, SuggestedReplies: t.yesNo()})
}

// exec runs tp's program from State.PC until it asks, hands off or ends.
// Jumps only go forward, so it always ends.
func (t *turn) exec(tp *topic) error {
	st := t.st
	for st.PC < len(tp.prog) {
		in := tp.prog[st.PC]
		switch in.op {
		case opSay:
			t.say(t.expand(in.text))
		case opAsk:
			if _, filled := st.Slots[in.slot]; !filled {
				st.Attempts = 0
				t.ask(tp.slots[in.slot], tp.slots[in.slot].prompt)
				return nil
			}
		case opCall:
			res, err := t.env.Call(t.ctx, in.action, maps.Clone(st.Slots))
			if err != nil {
				if t.ctx.Err() != nil {
					return fmt.Errorf("action %s: %w", in.action, err)
				}
				if st.ActionErrors == nil {
					st.ActionErrors = map[string]string{}
				}
				st.ActionErrors[in.action] = err.Error()
				delete(st.Results, in.action)
				if in.errPC >= 0 {
					st.PC = in.errPC
					continue
				}
				t.say(t.c.msg.ActionFailed)
				t.handoff(ReasonTopic, "", fmt.Sprintf("Action %s failed: %v", in.action, err))
				return nil
			}
			if st.Results == nil {
				st.Results = map[string]map[string]string{}
			}
			st.Results[in.action] = maps.Clone(res)
			delete(st.ActionErrors, in.action)
		case opSearch:
			limit := in.limit
			if limit == 0 {
				limit = t.c.searchLimit
			}
			arts, err := t.env.Search(t.ctx, t.expand(in.text), t.lang, limit)
			if err != nil && t.ctx.Err() != nil {
				return fmt.Errorf("knowledge search: %w", err)
			}
			if err != nil || len(arts) == 0 {
				t.say(t.c.msg.NoResults)
			} else {
				t.showArticles(arts)
			}
		case opBranch:
			if to, ok := in.cases[caseKey(st.Slots[in.slot])]; ok {
				st.PC = to
			} else {
				st.PC = in.def
			}
			continue
		case opJump:
			st.PC = in.target
			continue
		case opHandoff:
			t.handoff(in.reason, in.queue, t.expand(in.text))
			return nil
		case opEnd:
			st.PC = len(tp.prog)
			continue
		}
		st.PC++
	}
	t.endTopic()
	return nil
}

// expand fills a template's placeholders; what is unknown at run time (a
// slot skipped, an action that failed) becomes "".
func (t *turn) expand(tm template) string {
	if len(tm) == 1 && tm[0].name == "" {
		return tm[0].text
	}
	var b strings.Builder
	for _, p := range tm {
		switch {
		case p.name == "":
			b.WriteString(p.text)
		case p.key == "":
			b.WriteString(t.st.Slots[p.name])
		default:
			b.WriteString(t.st.Results[p.name][p.key])
		}
	}
	return b.String()
}

// extract finds the slot's value in text, outside the taken ranges. It
// returns the value and where it was found (an empty range for choices).
// positional lets "2" pick the second choice: only when the slot was
// asked.
func (s *slot) extract(c *Config, text string, taken [][2]int, positional bool) (string, [2]int, bool) {
	if s.re != nil {
		for _, m := range s.re.FindAllStringSubmatchIndex(text, -1) {
			at := [2]int{m[0], m[1]}
			for g := 1; g*2 < len(m); g++ {
				if m[g*2] >= 0 {
					at = [2]int{m[g*2], m[g*2+1]}
					break
				}
			}
			if overlaps(at, taken) {
				continue
			}
			if v := s.norm(text[at[0]:at[1]]); v != "" {
				return v, at, true
			}
		}
		return "", [2]int{}, false
	}
	if positional {
		if n, err := strconv.Atoi(strings.TrimSpace(strings.Trim(text, ".)#"))); err == nil && n >= 1 && n <= len(s.choices) {
			return s.norm(s.choices[n-1]), [2]int{}, true
		}
	}
	got := terms.Analyze(terms.Lang(c.lang), text)
	words := normWords(text)
	for i, key := range s.choiceKey {
		if containsRun(got, key) || containsRun(words, key) {
			return s.norm(s.choices[i]), [2]int{}, true
		}
	}
	return "", [2]int{}, false
}

func overlaps(at [2]int, taken [][2]int) bool {
	for _, r := range taken {
		if at[0] < r[1] && r[0] < at[1] {
			return true
		}
	}
	return false
}

// containsRun reports whether run occurs in list as consecutive items.
func containsRun(list, run []string) bool {
	for i := 0; i+len(run) <= len(list); i++ {
		if slices.Equal(list[i:i+len(run)], run) {
			return true
		}
	}
	return false
}

var nonDigits = regexp.MustCompile(`\D+`)

func (s *slot) norm(v string) string {
	v = strings.TrimFunc(v, unicode.IsSpace)
	switch s.normalize {
	case "upper":
		v = strings.ToUpper(v)
	case "lower":
		v = strings.ToLower(v)
	case "digits":
		v = nonDigits.ReplaceAllString(v, "")
	}
	return v
}

// Captured is what the hand-off summary needs from the bot.
type Captured struct {
	// TopicID and TopicName are the topic in progress, else the last
	// recognized one ("" when none).
	TopicID, TopicName string
	// Slots is every slot filled so far.
	Slots map[string]string
	// Missing are the slots of the topic in progress not filled yet, in
	// declaration order.
	Missing []string
	// Actions are the actions called, by name.
	Actions []ActionResult
	// Articles are the knowledge articles shown.
	Articles []Article
	// Failures counts the turns the bot could not help, in all.
	Failures int
}

// ActionResult is an action's last result or error.
type ActionResult struct {
	Name   string
	Values map[string]string
	Error  string
}

// Captured returns what the bot captured in st for the hand-off summary.
func (c *Config) Captured(st *State) Captured {
	out := Captured{Slots: maps.Clone(st.Slots), Articles: slices.Clone(st.Articles), Failures: st.Missed}
	if out.Slots == nil {
		out.Slots = map[string]string{}
	}
	id := st.Topic
	if id == "" {
		id = st.Intent
	}
	if tp, ok := c.byID[id]; ok {
		out.TopicID, out.TopicName = id, tp.info.Name
		if st.Topic != "" {
			for _, s := range tp.order {
				if _, ok := st.Slots[s.name]; !ok {
					out.Missing = append(out.Missing, s.name)
				}
			}
		}
	}
	names := slices.Sorted(maps.Keys(st.Results))
	for name := range st.ActionErrors {
		if _, ok := st.Results[name]; !ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		out.Actions = append(out.Actions, ActionResult{Name: name, Values: maps.Clone(st.Results[name]), Error: st.ActionErrors[name]})
	}
	return out
}
