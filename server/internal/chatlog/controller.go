package chatlog

import (
	"github.com/parleyhq/parley/ent/conversation"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
)

// Reasons a conversation's controller changes, as ControllerChanged
// events record them.
const (
	ReasonStart         = "start"
	ReasonCustomerAsked = "customer_asked"
	ReasonTopic         = "topic"
	ReasonBotFailed     = "bot_failed"
	ReasonNoAnswer      = "no_answer"
	ReasonAccepted      = "accepted"
	ReasonTransfer      = "transfer"
	ReasonAgentLost     = "agent_lost"
	ReasonHandedBack    = "handed_back"
	ReasonClosed        = "closed"
)

// ControllerOf is who answers the customer in a conversation in state s:
// the controller follows the state, so it is never stored apart from it.
func ControllerOf(s conversation.State) parleyv1.Controller {
	switch s {
	case conversation.StateBot:
		return parleyv1.Controller_CONTROLLER_BOT
	case conversation.StateQueued:
		return parleyv1.Controller_CONTROLLER_PENDING_AGENT
	case conversation.StateAssigned:
		return parleyv1.Controller_CONTROLLER_AGENT
	case conversation.StateClosed:
		return parleyv1.Controller_CONTROLLER_CLOSED
	}
	return parleyv1.Controller_CONTROLLER_UNSPECIFIED
}

// ControllerChange is the log entry for a conversation moving from state
// from to state to (from is "" for a new conversation), or nil when the
// controller stays the same (an agent-to-agent transfer, an overflow from
// queue to queue): callers append it with the state change's other events.
func ControllerChange(from, to conversation.State, reason string) *Entry {
	prev, next := ControllerOf(from), ControllerOf(to)
	if from != "" && prev == next {
		return nil
	}
	return &Entry{Sender: System, Payload: &parleyv1.ControllerChanged{Controller: next, Previous: prev, Reason: reason}}
}

// WithControllerChange appends the entry for a controller change to
// entries, if the controller changes.
func WithControllerChange(entries []Entry, from, to conversation.State, reason string) []Entry {
	if e := ControllerChange(from, to, reason); e != nil {
		entries = append(entries, *e)
	}
	return entries
}
