// Package dialog is Parley's virtual agent engine: it reads a bot
// configuration (YAML) and answers one customer message at a time. It is
// pure, like the routing engine: a turn takes the conversation's saved
// State and the message, asks its Env for knowledge articles and Go
// actions, and returns what to post and whether to hand off. It imports
// neither the transport nor the store; the turn runner calls it outside any
// transaction and saves the State (as JSON) with the reply.
//
// # Configuration
//
// Keys that are not listed here are errors (typos must not pass silently);
// every error names the topic, slot or step and its line.
//
//	language: en                # default language: triggers are stemmed in it
//	languages:                  # phrase lists per language (en, fr, es stem)
//	  en:
//	    handoff: [agent, human, talk to a person, real person]
//	    "yes": ["yes", yeah, sure]   # quote yes/no: YAML 1.1 would read booleans
//	    "no": ["no", nope]
//	    done: [bye, all good, nothing else]  # the customer needs nothing more
//	greeting: Hi! I'm the virtual assistant.
//	fallback: Sorry, I didn't understand that.
//	handoff_message: Let me get you to a person.
//	messages:                   # optional, these have defaults
//	  anything_else: Anything else I can help with?
//	  did_you_mean: Did you mean {{topic}}?
//	  did_it_help: Did that answer your question?
//	  found: Here is what I found
//	  no_results: I couldn't find anything about that.
//	  not_helpful: Sorry about that. Could you tell me more?  # after a "no"
//	  retry: Sorry, I didn't catch that.
//	  action_failed: Sorry, something went wrong on our side.
//	  glad: Glad I could help!
//	  go_ahead: Sure, what can I help you with?   # a "yes" to anything_else
//	  yes_label: "Yes"          # the suggested replies of yes/no questions
//	  no_label: "No"
//	thresholds:                 # topic scores, 0 < suggest <= start <= switch <= 1
//	  start: 0.5                # starts the best topic
//	  suggest: 0.3              # asks "Did you mean" (below: knowledge search)
//	  switch: 0.75              # leaves a topic mid-slot; default (start+1)/2
//	max_failures: 3             # consecutive failed turns before a hand-off
//	search_limit: 3             # articles shown by a knowledge answer
//	topics:
//	  - id: order_status        # ^[a-z][a-z0-9_]{0,63}$, unique
//	    name: Order status      # shown in "Did you mean ...?"
//	    triggers: [where is my order, track my package]
//	    slots:
//	      - name: order_number  # same syntax as ids
//	        prompt: What is your order number?
//	        pattern: '\b(\d{5,10})\b'  # Go regexp, found anywhere; group 1 if any
//	        # or choices: [damaged, wrong size]  (a word match or "1", "2")
//	        normalize: digits   # upper | lower | digits | trim (always trimmed)
//	        retries: 2          # re-asks after the first invalid answer (default 2)
//	        on_fail: handoff    # handoff (default) | skip | end
//	    steps:
//	      - ask: order_number
//	      - call: lookup_order  # a registered Go action, called with the slots
//	        on_error:           # optional; default: action_failed and a hand-off
//	          - say: I can't find order {{order_number}}.
//	      - say: It is {{lookup_order.status}}.   # {{slot}}, {{action.key}}
//	      - search: reset password               # shows the top article(s)
//	        limit: 1
//	      - branch:
//	          slot: reason
//	          cases: {damaged: [{say: Sorry!}]}
//	          default: [{say: OK.}]
//	      - handoff: {reason: topic, queue: Billing Support, note: "order {{order_number}}"}
//
// # How a turn decides
//
//  1. A request for a person in any configured language hands off at once
//     (reason customer_asked), whatever the bot was doing. Phrases match
//     whole words in order (accents, case and plurals ignored, up to three
//     other words between two phrase words, one typo in words of seven
//     letters or more): "agent" matches "AGENT!!!" and "agents", never
//     "reagent" or "agentic". Any mention counts, even "I am an agent of
//     change": sending someone to a person by mistake costs less than
//     keeping someone who asked for one.
//  2. While a slot is asked, a valid value fills it and the topic goes on;
//     other slots of the topic found in the same message are filled too. A
//     message that is no value but clearly asks for another topic (score
//     >= switch) starts it instead; anything else is an attempt, and after
//     retries re-asks the slot's on_fail applies.
//  3. After "Did you mean X?", yes starts X with the original message and
//     no searches knowledge for it. After a knowledge answer, yes resets the
//     failures and no is a failure. A message that starts a topic by itself
//     ("no, I want to cancel my order"), or is neither yes nor no, is taken
//     afresh.
//  4. Afresh, topics are scored by TF-IDF cosine: >= start starts the best
//     topic (its slots cleared, then filled from the message: progressive
//     capture), >= suggest asks "Did you mean", below that the knowledge
//     base answers and asks whether that helped. Triggers are stemmed in
//     the configuration's language; Input.Language is the knowledge
//     search's language, and hand-off phrases of every language always
//     count.
//
// A failure is a turn where the bot could not help: a message with no
// meaningful word, a knowledge search with no result (or a failing one),
// or a "no" to "Did that answer your question?". Starting a topic, filling
// a slot or a "yes" resets the count; the max_failures-th consecutive
// failure hands off with reason bot_failed instead of replying.
package dialog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Hand-off reasons (Handoff.Reason).
const (
	// ReasonCustomerAsked: the customer asked for a person.
	ReasonCustomerAsked = "customer_asked"
	// ReasonTopic: a topic's handoff step, or a failed action.
	ReasonTopic = "topic"
	// ReasonBotFailed: max_failures turns in a row without help, or a slot
	// that could not be filled (on_fail: handoff).
	ReasonBotFailed = "bot_failed"
	// ReasonNoAnswer: for handoff steps of topics the bot cannot answer
	// itself; the engine does not choose it on its own.
	ReasonNoAnswer = "no_answer"
)

var idPattern = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// placeholder is {{slot}} or {{action.key}}.
var placeholder = regexp.MustCompile(`\{\{\s*([a-z][a-z0-9_]*)(?:\.([A-Za-z0-9_]+))?\s*\}\}`)

type fileYAML struct {
	Language       string                  `yaml:"language"`
	Languages      map[string]languageYAML `yaml:"languages"`
	Greeting       string                  `yaml:"greeting"`
	Fallback       string                  `yaml:"fallback"`
	HandoffMessage string                  `yaml:"handoff_message"`
	Messages       messagesYAML            `yaml:"messages"`
	Thresholds     thresholdsYAML          `yaml:"thresholds"`
	MaxFailures    int                     `yaml:"max_failures"`
	SearchLimit    int                     `yaml:"search_limit"`
	Topics         []topicYAML             `yaml:"topics"`
}

type languageYAML struct {
	Handoff []string `yaml:"handoff"`
	// Done are what a customer who needs nothing more says ("bye").
	Done []string `yaml:"done"`
	Yes  []string `yaml:"yes"`
	No   []string `yaml:"no"`
}

type messagesYAML struct {
	AnythingElse string `yaml:"anything_else"`
	DidYouMean   string `yaml:"did_you_mean"`
	DidItHelp    string `yaml:"did_it_help"`
	Found        string `yaml:"found"`
	NoResults    string `yaml:"no_results"`
	NotHelpful   string `yaml:"not_helpful"`
	Retry        string `yaml:"retry"`
	ActionFailed string `yaml:"action_failed"`
	Glad         string `yaml:"glad"`
	GoAhead      string `yaml:"go_ahead"`
	YesLabel     string `yaml:"yes_label"`
	NoLabel      string `yaml:"no_label"`
}

type thresholdsYAML struct {
	Start   float64 `yaml:"start"`
	Suggest float64 `yaml:"suggest"`
	Switch  float64 `yaml:"switch"`
}

type topicYAML struct {
	ID       string     `yaml:"id"`
	Name     string     `yaml:"name"`
	Triggers []string   `yaml:"triggers"`
	Slots    []slotYAML `yaml:"slots"`
	Steps    []stepYAML `yaml:"steps"`
}

type slotYAML struct {
	Name      string   `yaml:"name"`
	Prompt    string   `yaml:"prompt"`
	Pattern   string   `yaml:"pattern"`
	Choices   []string `yaml:"choices"`
	Normalize string   `yaml:"normalize"`
	Retries   *int     `yaml:"retries"`
	OnFail    string   `yaml:"on_fail"`
}

type stepYAML struct {
	Say     string       `yaml:"say"`
	Ask     string       `yaml:"ask"`
	Call    string       `yaml:"call"`
	OnError []stepYAML   `yaml:"on_error"`
	Search  string       `yaml:"search"`
	Limit   int          `yaml:"limit"`
	Branch  *branchYAML  `yaml:"branch"`
	Handoff *handoffYAML `yaml:"handoff"`
}

type branchYAML struct {
	Slot    string                `yaml:"slot"`
	Cases   map[string][]stepYAML `yaml:"cases"`
	Default []stepYAML            `yaml:"default"`
}

type handoffYAML struct {
	Reason string `yaml:"reason"`
	Queue  string `yaml:"queue"`
	Note   string `yaml:"note"`
}

// Config is a parsed, checked bot configuration with its intent index
// built. It is immutable and safe for concurrent turns.
type Config struct {
	lang           string
	greeting       string
	fallback       string
	handoffMessage string
	msg            messagesYAML
	start, suggest float64
	switchAt       float64 // score that leaves a topic for another mid-slot
	maxFailures    int
	searchLimit    int
	topics         []*topic
	byID           map[string]*topic
	handoff        []phrase
	yes, no        []phrase
	done           []phrase
	index          *index
}

// HandoffQueues lists the queue names the topics' handoff steps name, by
// topic id, so that whoever stores the configuration can check them.
func (c *Config) HandoffQueues() map[string][]string {
	out := map[string][]string{}
	for _, tp := range c.topics {
		for _, in := range tp.prog {
			if in.op == opHandoff && in.queue != "" && !slices.Contains(out[tp.info.ID], in.queue) {
				out[tp.info.ID] = append(out[tp.info.ID], in.queue)
			}
		}
	}
	return out
}

// TopicInfo describes one topic.
type TopicInfo struct {
	ID       string
	Name     string
	Triggers []string
	Slots    []string
}

type topic struct {
	info  TopicInfo
	slots map[string]*slot
	order []*slot // declaration order, for progressive capture
	prog  []instr
}

type slot struct {
	name      string
	prompt    string
	re        *regexp.Regexp
	choices   []string
	choiceKey [][]string // each choice's analyzed terms
	normalize string
	retries   int
	onFail    string
}

type opcode int

const (
	opSay opcode = iota
	opAsk
	opCall
	opSearch
	opBranch
	opJump
	opHandoff
	opEnd
)

// instr is one compiled step. Topics compile to a flat program whose
// jumps only go forward, so a turn always ends, and the State needs only
// the topic and a program counter.
type instr struct {
	op     opcode
	text   template // say text, search query, handoff note
	slot   string   // ask, branch
	action string   // call
	errPC  int      // call: where on_error starts, -1 = default
	limit  int      // search
	cases  map[string]int
	def    int    // branch: default target
	target int    // jump
	reason string // handoff
	queue  string // handoff
}

// Parse reads and checks a bot configuration. actions are the names of the
// Go actions registered in this build; a step calling another name is an
// error.
func Parse(yamlText []byte, actions []string) (*Config, error) {
	var f fileYAML
	dec := yaml.NewDecoder(bytes.NewReader(yamlText))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("bot config: empty")
		}
		return nil, fmt.Errorf("bot config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(yamlText, &doc); err != nil {
		return nil, fmt.Errorf("bot config: %w", err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = root.Content[0]
	}
	c, err := build(&f, root, actions)
	if err != nil {
		return nil, fmt.Errorf("bot config: %w", err)
	}
	return c, nil
}

// lineErr is an error at a line of the YAML text.
func lineErr(n *yaml.Node, format string, args ...any) error {
	line := 0
	if n != nil {
		line = n.Line
	}
	return fmt.Errorf("line %d: %s", line, fmt.Sprintf(format, args...))
}

// child returns the value node of key in mapping n, or nil.
func child(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// item returns the i-th element of sequence n, or n itself when there is
// none (an error then points at the enclosing node).
func item(n *yaml.Node, i int) *yaml.Node {
	if n != nil && n.Kind == yaml.SequenceNode && i < len(n.Content) {
		return n.Content[i]
	}
	return n
}

func orDefault(s, def string) string {
	if strings.TrimSpace(s) == "" {
		return def
	}
	return s
}

func build(f *fileYAML, root *yaml.Node, actions []string) (*Config, error) {
	c := &Config{
		lang:           orDefault(f.Language, "en"),
		greeting:       f.Greeting,
		fallback:       f.Fallback,
		handoffMessage: f.HandoffMessage,
		start:          f.Thresholds.Start,
		suggest:        f.Thresholds.Suggest,
		switchAt:       f.Thresholds.Switch,
		maxFailures:    f.MaxFailures,
		searchLimit:    f.SearchLimit,
		byID:           map[string]*topic{},
	}
	for key, v := range map[string]string{"greeting": c.greeting, "fallback": c.fallback, "handoff_message": c.handoffMessage} {
		if strings.TrimSpace(v) == "" {
			return nil, lineErr(root, "%s is required", key)
		}
	}
	m := f.Messages
	c.msg = messagesYAML{
		AnythingElse: orDefault(m.AnythingElse, "Is there anything else I can help you with?"),
		DidYouMean:   orDefault(m.DidYouMean, "Did you mean {{topic}}?"),
		DidItHelp:    orDefault(m.DidItHelp, "Did that answer your question?"),
		Found:        orDefault(m.Found, "Here is what I found:"),
		NoResults:    orDefault(m.NoResults, "Sorry, I couldn't find anything about that. Could you say it another way?"),
		NotHelpful:   orDefault(m.NotHelpful, "Sorry about that. Could you tell me a bit more?"),
		Retry:        orDefault(m.Retry, "Sorry, I didn't catch that."),
		ActionFailed: orDefault(m.ActionFailed, "Sorry, something went wrong on our side."),
		Glad:         orDefault(m.Glad, "Glad I could help!"),
		GoAhead:      orDefault(m.GoAhead, "Sure, what can I help you with?"),
		YesLabel:     orDefault(m.YesLabel, "Yes"),
		NoLabel:      orDefault(m.NoLabel, "No"),
	}
	for key, text := range map[string]string{
		"anything_else": c.msg.AnythingElse, "did_it_help": c.msg.DidItHelp, "found": c.msg.Found,
		"no_results": c.msg.NoResults, "not_helpful": c.msg.NotHelpful, "retry": c.msg.Retry, "action_failed": c.msg.ActionFailed, "glad": c.msg.Glad,
		"go_ahead": c.msg.GoAhead,
		"greeting": c.greeting, "fallback": c.fallback, "handoff_message": c.handoffMessage,
	} {
		if p := placeholder.FindString(text); p != "" {
			return nil, lineErr(root, "%s: unknown placeholder %s", key, p)
		}
	}
	for _, p := range placeholder.FindAllStringSubmatch(c.msg.DidYouMean, -1) {
		if p[1] != "topic" || p[2] != "" {
			return nil, lineErr(child(root, "messages"), "did_you_mean: unknown placeholder %s (only {{topic}})", p[0])
		}
	}

	if c.start == 0 {
		c.start = 0.5
	}
	if c.suggest == 0 {
		c.suggest = min(0.3, c.start)
	}
	if !(c.suggest > 0 && c.suggest <= c.start && c.start <= 1) {
		return nil, lineErr(child(root, "thresholds"), "thresholds: want 0 < suggest <= start <= 1, have suggest %g, start %g", c.suggest, c.start)
	}
	if c.switchAt == 0 {
		c.switchAt = (c.start + 1) / 2
	}
	if !(c.switchAt >= c.start && c.switchAt <= 1) {
		return nil, lineErr(child(root, "thresholds"), "thresholds: want start <= switch <= 1, have start %g, switch %g", c.start, c.switchAt)
	}
	if c.maxFailures == 0 {
		c.maxFailures = 3
	}
	if c.maxFailures < 1 {
		return nil, lineErr(child(root, "max_failures"), "max_failures must be at least 1, have %d", c.maxFailures)
	}
	if c.searchLimit == 0 {
		c.searchLimit = 3
	}
	if c.searchLimit < 1 || c.searchLimit > 10 {
		return nil, lineErr(child(root, "search_limit"), "search_limit must be 1 to 10, have %d", c.searchLimit)
	}

	langs := child(root, "languages")
	for _, tag := range slices.Sorted(maps.Keys(f.Languages)) {
		l := f.Languages[tag]
		n := child(langs, tag)
		for kind, list := range map[string][]string{"handoff": l.Handoff, "yes": l.Yes, "no": l.No, "done": l.Done} {
			for i, p := range list {
				ph := newPhrase(p, kind == "handoff" || kind == "done")
				if len(ph.words) == 0 {
					return nil, lineErr(item(child(n, kind), i), "languages %s %s: phrase %q has no words", tag, kind, p)
				}
				switch kind {
				case "handoff":
					c.handoff = append(c.handoff, ph)
				case "yes":
					c.yes = append(c.yes, ph)
				case "no":
					c.no = append(c.no, ph)
				case "done":
					c.done = append(c.done, ph)
				}
			}
		}
	}
	if len(c.handoff) == 0 {
		return nil, lineErr(root, "languages: no hand-off phrases: a customer could not ask for a person")
	}
	// The suggested replies must be understood as yes and no.
	for _, l := range []struct {
		key, label string
		into       *[]phrase
	}{{"yes_label", c.msg.YesLabel, &c.yes}, {"no_label", c.msg.NoLabel, &c.no}} {
		p := newPhrase(l.label, false)
		if len(p.words) == 0 {
			return nil, lineErr(child(root, "messages"), "messages %s %q has no words", l.key, l.label)
		}
		*l.into = append(*l.into, p)
	}

	known := map[string]bool{}
	for _, a := range actions {
		known[a] = true
	}
	// No topics is a bot that answers from knowledge and hands off.
	topicsNode := child(root, "topics")
	for i := range f.Topics {
		t, err := c.buildTopic(&f.Topics[i], item(topicsNode, i), known)
		if err != nil {
			return nil, err
		}
		c.topics = append(c.topics, t)
		c.byID[t.info.ID] = t
	}
	c.index = newIndex(c.lang, c.topics)
	return c, nil
}

func (c *Config) buildTopic(ty *topicYAML, n *yaml.Node, actions map[string]bool) (*topic, error) {
	if !idPattern.MatchString(ty.ID) {
		return nil, lineErr(n, "topic id %q: want ^[a-z][a-z0-9_]{0,63}$", ty.ID)
	}
	if _, dup := c.byID[ty.ID]; dup {
		return nil, lineErr(n, "topic %q: duplicate topic id", ty.ID)
	}
	if strings.TrimSpace(ty.Name) == "" {
		return nil, lineErr(n, "topic %q: name is required", ty.ID)
	}
	if len(ty.Triggers) == 0 {
		return nil, lineErr(n, "topic %q: no triggers", ty.ID)
	}
	if len(ty.Steps) == 0 {
		return nil, lineErr(n, "topic %q: no steps", ty.ID)
	}
	t := &topic{
		info:  TopicInfo{ID: ty.ID, Name: ty.Name, Triggers: slices.Clone(ty.Triggers)},
		slots: map[string]*slot{},
	}
	slotsNode := child(n, "slots")
	for i, sy := range ty.Slots {
		s, err := c.buildSlot(ty.ID, sy, item(slotsNode, i))
		if err != nil {
			return nil, err
		}
		if _, dup := t.slots[s.name]; dup {
			return nil, lineErr(item(slotsNode, i), "topic %q slot %q: duplicate slot", ty.ID, s.name)
		}
		t.slots[s.name] = s
		t.order = append(t.order, s)
		t.info.Slots = append(t.info.Slots, s.name)
	}
	b := &compiler{c: c, t: t, actions: actions, called: map[string]bool{}}
	collectCalls(ty.Steps, b.called)
	if err := b.steps(ty.Steps, child(n, "steps"), "steps"); err != nil {
		return nil, err
	}
	return t, nil
}

func (c *Config) buildSlot(topicID string, sy slotYAML, n *yaml.Node) (*slot, error) {
	where := fmt.Sprintf("topic %q slot %q", topicID, sy.Name)
	if !idPattern.MatchString(sy.Name) {
		return nil, lineErr(n, "%s: name: want ^[a-z][a-z0-9_]{0,63}$", where)
	}
	if strings.TrimSpace(sy.Prompt) == "" {
		return nil, lineErr(n, "%s: prompt is required", where)
	}
	if p := placeholder.FindString(sy.Prompt); p != "" {
		return nil, lineErr(child(n, "prompt"), "%s: prompt: unknown placeholder %s", where, p)
	}
	s := &slot{name: sy.Name, prompt: sy.Prompt, normalize: sy.Normalize, retries: 2, onFail: orDefault(sy.OnFail, "handoff")}
	if (sy.Pattern == "") == (len(sy.Choices) == 0) {
		return nil, lineErr(n, "%s: set exactly one of pattern and choices", where)
	}
	if sy.Pattern != "" {
		re, err := regexp.Compile(sy.Pattern)
		if err != nil {
			return nil, lineErr(child(n, "pattern"), "%s: bad pattern: %v", where, err)
		}
		s.re = re
	}
	for i, ch := range sy.Choices {
		key := c.choiceTerms(ch)
		if len(key) == 0 {
			return nil, lineErr(item(child(n, "choices"), i), "%s: choice %q has no words", where, ch)
		}
		s.choices = append(s.choices, ch)
		s.choiceKey = append(s.choiceKey, key)
	}
	switch s.normalize {
	case "", "upper", "lower", "digits", "trim":
	default:
		return nil, lineErr(child(n, "normalize"), "%s: normalize %q: want upper, lower, digits or trim", where, s.normalize)
	}
	if sy.Retries != nil {
		if *sy.Retries < 0 || *sy.Retries > 10 {
			return nil, lineErr(child(n, "retries"), "%s: retries must be 0 to 10, have %d", where, *sy.Retries)
		}
		s.retries = *sy.Retries
	}
	switch s.onFail {
	case "handoff", "skip", "end":
	default:
		return nil, lineErr(child(n, "on_fail"), "%s: on_fail %q: want handoff, skip or end", where, s.onFail)
	}
	return s, nil
}

func collectCalls(steps []stepYAML, into map[string]bool) {
	for _, s := range steps {
		if s.Call != "" {
			into[s.Call] = true
		}
		collectCalls(s.OnError, into)
		if s.Branch != nil {
			for _, cs := range s.Branch.Cases {
				collectCalls(cs, into)
			}
			collectCalls(s.Branch.Default, into)
		}
	}
}

// compiler turns a topic's steps into its flat program.
type compiler struct {
	c       *Config
	t       *topic
	actions map[string]bool
	called  map[string]bool // actions called anywhere in the topic
}

func (b *compiler) emit(in instr) int {
	b.t.prog = append(b.t.prog, in)
	return len(b.t.prog) - 1
}

func (b *compiler) steps(steps []stepYAML, n *yaml.Node, path string) error {
	for i := range steps {
		if err := b.step(&steps[i], item(n, i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
			return err
		}
	}
	return nil
}

var stepKinds = []string{"say", "ask", "call", "search", "branch", "handoff"}

func (b *compiler) step(s *stepYAML, n *yaml.Node, path string) error {
	where := fmt.Sprintf("topic %q %s", b.t.info.ID, path)
	var kinds []string
	for _, k := range stepKinds {
		if child(n, k) != nil {
			kinds = append(kinds, k)
		}
	}
	if len(kinds) != 1 {
		return lineErr(n, "%s: a step has exactly one of %s, have %v", where, strings.Join(stepKinds, ", "), kinds)
	}
	kind := kinds[0]
	if len(s.OnError) > 0 && kind != "call" {
		return lineErr(n, "%s: on_error belongs to a call step", where)
	}
	if s.Limit != 0 && kind != "search" {
		return lineErr(n, "%s: limit belongs to a search step", where)
	}
	switch kind {
	case "say":
		if err := b.checkText(s.Say, child(n, "say"), where); err != nil {
			return err
		}
		b.emit(instr{op: opSay, text: compileTemplate(s.Say)})
	case "ask":
		if _, ok := b.t.slots[s.Ask]; !ok {
			return lineErr(child(n, "ask"), "%s: ask: unknown slot %q", where, s.Ask)
		}
		b.emit(instr{op: opAsk, slot: s.Ask})
	case "call":
		if !b.actions[s.Call] {
			return lineErr(child(n, "call"), "%s: call: unknown action %q (registered: %s)", where, s.Call, strings.Join(slices.Sorted(maps.Keys(b.actions)), ", "))
		}
		at := b.emit(instr{op: opCall, action: s.Call, errPC: -1})
		if len(s.OnError) > 0 {
			jump := b.emit(instr{op: opJump})
			b.t.prog[at].errPC = len(b.t.prog)
			if err := b.steps(s.OnError, child(n, "on_error"), path+".on_error"); err != nil {
				return err
			}
			b.emit(instr{op: opEnd})
			b.t.prog[jump].target = len(b.t.prog)
		}
	case "search":
		if strings.TrimSpace(s.Search) == "" {
			return lineErr(n, "%s: search: empty query", where)
		}
		if s.Limit < 0 || s.Limit > 10 {
			return lineErr(child(n, "limit"), "%s: limit must be 1 to 10, have %d", where, s.Limit)
		}
		if err := b.checkText(s.Search, child(n, "search"), where); err != nil {
			return err
		}
		b.emit(instr{op: opSearch, text: compileTemplate(s.Search), limit: s.Limit})
	case "branch":
		return b.branch(s.Branch, child(n, "branch"), path+".branch", where)
	case "handoff":
		h := handoffYAML{}
		if s.Handoff != nil {
			h = *s.Handoff
		}
		h.Reason = orDefault(h.Reason, ReasonTopic)
		switch h.Reason {
		case ReasonCustomerAsked, ReasonTopic, ReasonBotFailed, ReasonNoAnswer:
		default:
			return lineErr(child(n, "handoff"), "%s: handoff reason %q: want topic, customer_asked, bot_failed or no_answer", where, h.Reason)
		}
		if err := b.checkText(h.Note, child(n, "handoff"), where); err != nil {
			return err
		}
		b.emit(instr{op: opHandoff, reason: h.Reason, queue: strings.TrimSpace(h.Queue), text: compileTemplate(h.Note)})
	}
	return nil
}

func (b *compiler) branch(br *branchYAML, n *yaml.Node, path, where string) error {
	if br == nil || br.Slot == "" {
		return lineErr(n, "%s: branch: slot is required", where)
	}
	s, ok := b.t.slots[br.Slot]
	if !ok {
		return lineErr(child(n, "slot"), "%s: branch: unknown slot %q", where, br.Slot)
	}
	if len(br.Cases) == 0 {
		return lineErr(n, "%s: branch: no cases", where)
	}
	at := b.emit(instr{op: opBranch, slot: br.Slot, cases: map[string]int{}})
	var ends []int
	casesNode := child(n, "cases")
	for _, value := range slices.Sorted(maps.Keys(br.Cases)) {
		key := caseKey(value)
		if s.choices != nil && !slices.ContainsFunc(s.choices, func(ch string) bool { return caseKey(ch) == key }) {
			return lineErr(child(casesNode, value), "%s: branch case %q is not a choice of slot %q", where, value, s.name)
		}
		b.t.prog[at].cases[key] = len(b.t.prog)
		if err := b.steps(br.Cases[value], child(casesNode, value), fmt.Sprintf("%s.cases[%s]", path, value)); err != nil {
			return err
		}
		ends = append(ends, b.emit(instr{op: opJump}))
	}
	b.t.prog[at].def = len(b.t.prog)
	if err := b.steps(br.Default, child(n, "default"), path+".default"); err != nil {
		return err
	}
	for _, j := range ends {
		b.t.prog[j].target = len(b.t.prog)
	}
	return nil
}

// template is a text with placeholders, split once by Parse.
type template []part

// part is literal text, or a placeholder: a slot name, or an action name
// and a key.
type part struct{ text, name, key string }

func compileTemplate(s string) template {
	var tm template
	last := 0
	for _, m := range placeholder.FindAllStringSubmatchIndex(s, -1) {
		if m[0] > last {
			tm = append(tm, part{text: s[last:m[0]]})
		}
		p := part{name: s[m[2]:m[3]]}
		if m[4] >= 0 {
			p.key = s[m[4]:m[5]]
		}
		tm = append(tm, p)
		last = m[1]
	}
	if last < len(s) || len(tm) == 0 {
		tm = append(tm, part{text: s[last:]})
	}
	return tm
}

// checkText reports placeholders that name neither a slot of the topic nor
// an action it calls.
func (b *compiler) checkText(text string, n *yaml.Node, where string) error {
	for _, p := range placeholder.FindAllStringSubmatch(text, -1) {
		if p[2] == "" {
			if _, ok := b.t.slots[p[1]]; !ok {
				return lineErr(n, "%s: unknown placeholder %s: no slot %q in this topic", where, p[0], p[1])
			}
		} else if !b.called[p[1]] {
			return lineErr(n, "%s: unknown placeholder %s: this topic calls no action %q", where, p[0], p[1])
		}
	}
	if strings.Contains(placeholder.ReplaceAllString(text, ""), "{{") {
		return lineErr(n, "%s: malformed placeholder in %q", where, text)
	}
	return nil
}

// Topics returns the configured topics in file order.
func (c *Config) Topics() []TopicInfo {
	out := make([]TopicInfo, len(c.topics))
	for i, t := range c.topics {
		out[i] = t.info.clone()
	}
	return out
}

// Topic returns the topic with the given id.
func (c *Config) Topic(id string) (TopicInfo, bool) {
	t, ok := c.byID[id]
	if !ok {
		return TopicInfo{}, false
	}
	return t.info.clone(), true
}

// Greeting is what the bot says when a chat starts with it.
func (c *Config) Greeting() string { return c.greeting }

// Language is the configuration's default language (a BCP 47 tag).
func (c *Config) Language() string { return c.lang }

func (t TopicInfo) clone() TopicInfo {
	t.Triggers = slices.Clone(t.Triggers)
	t.Slots = slices.Clone(t.Slots)
	return t
}
