// Package engine is Parley's routing brain: it matches interactions to
// queues by ordered rules and proposes which available agent gets which
// waiting conversation. It is pure (no store, no transport, no clock of its
// own): callers give it a snapshot and commit its proposals with
// conditional updates, so a stale proposal becomes a no-op.
package engine

import (
	"cmp"
	"maps"
	"slices"
	"time"
)

// Interaction is what routing matches on: interaction field name to value.
type Interaction map[string]string

// Condition is a predicate on interaction fields. Exactly one of its forms
// is set: Field with Values (set membership), All, or Any.
type Condition struct {
	Field  string
	Values []string
	All    []Condition
	Any    []Condition
}

// Matches reports whether the interaction satisfies the condition.
func (c Condition) Matches(in Interaction) bool {
	switch {
	case len(c.All) > 0:
		for _, sub := range c.All {
			if !sub.Matches(in) {
				return false
			}
		}
		return true
	case len(c.Any) > 0:
		for _, sub := range c.Any {
			if sub.Matches(in) {
				return true
			}
		}
		return false
	case c.Field != "":
		v, ok := in[c.Field]
		return ok && slices.Contains(c.Values, v)
	}
	return false
}

// Rule routes matching interactions to a queue.
type Rule struct {
	ID        string
	Order     int32
	QueueID   string
	Condition Condition
}

// Route returns the queue of the first rule, by ascending Order, that the
// interaction matches.
func Route(rules []Rule, in Interaction) (queueID string, ok bool) {
	sorted := slices.SortedFunc(slices.Values(rules), func(a, b Rule) int {
		return cmp.Or(cmp.Compare(a.Order, b.Order), cmp.Compare(a.ID, b.ID))
	})
	for _, r := range sorted {
		if r.Condition.Matches(in) {
			return r.QueueID, true
		}
	}
	return "", false
}

// Strategy is how a queue picks among eligible agents.
type Strategy int

const (
	// MostAvailable picks the agent with the most free capacity on the
	// work's channel, then the one idle longest, then the smallest id.
	MostAvailable Strategy = iota
	// LeastRecentlyAssigned picks the agent idle longest (never assigned
	// first), then the one with the most free capacity, then the smallest id.
	LeastRecentlyAssigned
)

// Queue is a queue's routing configuration.
type Queue struct {
	Strategy Strategy
	// RequiredSkills must all be among an agent's skills.
	RequiredSkills []string
}

// Work is a conversation waiting in a queue with no pending offer.
type Work struct {
	ConversationID string
	QueueID        string
	// Channel is the channel the customer writes from.
	Channel string
	// Priority orders work across queues: higher first.
	Priority int
	// QueuedAt orders work of one priority: first in, first out.
	QueuedAt time.Time
	// Resting holds agents who declined this conversation or let its offer
	// lapse a moment ago: they are not offered it again yet.
	Resting map[string]bool
	// Refused holds agents who declined this conversation or let its offer
	// lapse earlier. They are offered it again only when no other agent can
	// take it.
	Refused map[string]bool
}

// before reports whether a is served before b: higher priority, then
// longer waiting, then smaller id.
func (a Work) before(b Work) int {
	return cmp.Or(cmp.Compare(b.Priority, a.Priority), a.QueuedAt.Compare(b.QueuedAt), cmp.Compare(a.ConversationID, b.ConversationID))
}

// Agent is an agent's routing state.
type Agent struct {
	ID string
	// Capacity bounds the agent's work across all channels (universal
	// capacity); Load counts held conversations, pending offers and
	// wrap-ups.
	Capacity int
	Load     int
	// ChannelCapacity bounds the work on one channel; a channel missing
	// here is bounded by Capacity alone. ChannelLoad counts it.
	ChannelCapacity map[string]int
	ChannelLoad     map[string]int
	// AvailableOn holds the channels on which the agent takes new work.
	AvailableOn map[string]bool
	Skills      map[string]bool
	Queues      map[string]bool
	// LastAssigned is the zero time for an agent never assigned.
	LastAssigned time.Time
}

// Free is how many more conversations on channel the agent can take.
func (a *Agent) Free(channel string) int {
	free := a.Capacity - a.Load
	if limit, ok := a.ChannelCapacity[channel]; ok {
		free = min(free, limit-a.ChannelLoad[channel])
	}
	return free
}

// CanTake reports whether the agent may be offered w of queue q now,
// ignoring w's refusals.
func (a *Agent) CanTake(w Work, q Queue) bool {
	if !a.Queues[w.QueueID] || !a.AvailableOn[w.Channel] || a.Free(w.Channel) <= 0 {
		return false
	}
	for _, skill := range q.RequiredSkills {
		if !a.Skills[skill] {
			return false
		}
	}
	return true
}

func (a *Agent) take(channel string, now time.Time) {
	a.Load++
	if a.ChannelLoad == nil {
		a.ChannelLoad = map[string]int{}
	}
	a.ChannelLoad[channel]++
	a.LastAssigned = now
}

// Decision proposes offering a conversation to an agent.
type Decision struct {
	ConversationID string
	AgentID        string
}

// Order sorts work in the order it is served: highest priority first,
// then first in, first out.
func Order(work []Work) {
	slices.SortFunc(work, Work.before)
}

// Assign proposes offers for waiting work, in Order, each to the best
// eligible agent by its queue's strategy. An agent is eligible when it is
// a member of the queue, available on the work's channel, has every skill
// the queue requires and free capacity on that channel (within its
// universal capacity), and is not resting from refusing the work. An agent
// who refused the work earlier is chosen only when no other agent is
// eligible. Proposals never exceed any agent's free
// capacity; an agent chosen in this pass counts as assigned at now. Work of
// an unknown queue is skipped.
func Assign(queues map[string]Queue, work []Work, agents []Agent, now time.Time) []Decision {
	pool := make([]Agent, len(agents))
	byQueue := map[string][]int{}
	for i, a := range agents {
		pool[i] = a
		pool[i].ChannelLoad = maps.Clone(a.ChannelLoad)
		for q := range a.Queues {
			byQueue[q] = append(byQueue[q], i)
		}
	}
	order := slices.Clone(work)
	Order(order)
	// Free capacity only shrinks during a pass: once no agent of a queue
	// can take work on a channel, later work there is skipped unexamined.
	type queueChannel struct{ queue, channel string }
	exhausted := map[queueChannel]bool{}
	var out []Decision
	for _, w := range order {
		q, ok := queues[w.QueueID]
		key := queueChannel{w.QueueID, w.Channel}
		if !ok || exhausted[key] {
			continue
		}
		best, bestRefused := -1, -1
		someoneFree := false // ignoring who rests from this work
		members := byQueue[w.QueueID]
		for j := 0; j < len(members); j++ {
			i := members[j]
			a := &pool[i]
			if a.Load >= a.Capacity {
				// Full on every channel for the rest of the pass: drop it
				// from the queue's list (ranking does not depend on order).
				members[j] = members[len(members)-1]
				members = members[:len(members)-1]
				j--
				continue
			}
			if !a.CanTake(w, q) {
				continue
			}
			someoneFree = true
			if w.Resting[a.ID] {
				continue
			}
			if w.Refused[a.ID] {
				if bestRefused < 0 || better(q.Strategy, w.Channel, a, &pool[bestRefused]) {
					bestRefused = i
				}
			} else if best < 0 || better(q.Strategy, w.Channel, a, &pool[best]) {
				best = i
			}
		}
		byQueue[w.QueueID] = members
		if best < 0 {
			best = bestRefused
		}
		if best < 0 {
			if !someoneFree {
				exhausted[key] = true
			}
			continue
		}
		pool[best].take(w.Channel, now)
		out = append(out, Decision{ConversationID: w.ConversationID, AgentID: pool[best].ID})
	}
	return out
}

// better reports whether a ranks before b for work on channel.
func better(s Strategy, channel string, a, b *Agent) bool {
	byFree := cmp.Compare(b.Free(channel), a.Free(channel))
	byIdle := a.LastAssigned.Compare(b.LastAssigned)
	var c int
	if s == LeastRecentlyAssigned {
		c = cmp.Or(byIdle, byFree)
	} else {
		c = cmp.Or(byFree, byIdle)
	}
	return cmp.Or(c, cmp.Compare(a.ID, b.ID)) < 0
}
