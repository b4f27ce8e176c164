package cases

import (
	"fmt"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent/agent"
	"github.com/parleyhq/parley/ent/consumer"
	"github.com/parleyhq/parley/ent/conversation"
	"github.com/parleyhq/parley/ent/offer"
	"github.com/parleyhq/parley/ent/predicate"
	"github.com/parleyhq/parley/ent/queue"
	"github.com/parleyhq/parley/ent/servicecase"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/auth"
)

// readable is the one rule for who reads a case, as predicates for the
// case query (none: every case), so GetCase, ListCases and UpdateCase
// apply it in the database alike:
//
//   - supervisors and admins read every case;
//   - an agent reads a case if it may read the case's conversation (it
//     holds or held it, has a pending offer of it, or it waits in one of the
//     agent's queues: chatlog.Authorize's rule for reading), or the case is
//     assigned to it, or the case's consumer has a conversation the agent
//     holds now (so the agent sees a returning customer's cases);
//   - nobody else reads cases.
func readable(p *auth.Principal) ([]predicate.ServiceCase, error) {
	if p == nil {
		return nil, apierr.New(connect.CodeUnauthenticated, "MISSING_TOKEN", "missing credentials")
	}
	switch p.Role {
	case auth.RoleAdmin, auth.RoleSupervisor:
		return nil, nil
	case auth.RoleAgent:
		return []predicate.ServiceCase{agentReads(p.AgentID)}, nil
	}
	return nil, apierr.New(connect.CodePermissionDenied, "CASES_STAFF_ONLY", "only staff read cases")
}

// agentReads is readable's rule for the agent me.
func agentReads(me uuid.UUID) predicate.ServiceCase {
	return servicecase.Or(
		servicecase.AssignedAgentID(me),
		servicecase.HasConversationWith(conversation.Or(
			conversation.AgentID(me),
			conversation.HasOffersWith(offer.AgentID(me), offer.StateIn(offer.StatePending, offer.StateAccepted)),
			conversation.And(
				conversation.StateEQ(conversation.StateQueued),
				conversation.HasQueueWith(queue.HasAgentsWith(agent.ID(me))),
			),
		)),
		servicecase.HasConsumerWith(consumer.HasConversationsWith(
			conversation.AgentID(me),
			conversation.StateEQ(conversation.StateAssigned),
		)),
	)
}

// notFound is the answer for a case that does not exist or that the caller
// may not read: the two are not told apart, so probing ids reveals nothing.
func notFound(id string) error {
	return apierr.New(connect.CodeNotFound, "CASE_NOT_FOUND", fmt.Sprintf("case %s does not exist or is not visible to you", id))
}
