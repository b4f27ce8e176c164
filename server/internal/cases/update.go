package cases

import (
	"context"
	"fmt"
	"slices"
	"unicode/utf8"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/agent"
	"github.com/parleyhq/parley/ent/servicecase"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/auth"
	"github.com/parleyhq/parley/server/internal/store"
)

// The update_mask paths UpdateCase accepts.
const (
	pathState            = "state"
	pathShortDescription = "short_description"
	pathAssignedAgentID  = "assigned_agent_id"
)

// maxShortDescription is the longest short description, in characters.
const maxShortDescription = 500

// caseChange is what an UpdateCase request asks for: the fields it sets.
type caseChange struct {
	state       *servicecase.State
	description *string
	// assign is set when the assignee changes; assignee is then the new
	// one, nil to clear.
	assign   bool
	assignee *uuid.UUID
}

// UpdateCase sets the fields of a case that update_mask names, for callers
// who may read the case (readable); a closed case no longer changes. The
// case's update_time moves only when a field changed.
func (s *Service) UpdateCase(ctx context.Context, req *parleyv1.UpdateCaseRequest) (*parleyv1.UpdateCaseResponse, error) {
	visible, err := readable(auth.FromContext(ctx))
	if err != nil {
		return nil, err
	}
	change, err := parseChange(req)
	if err != nil {
		return nil, err
	}
	id := req.GetCase().GetId()
	caseID, err := uuid.Parse(id)
	if err != nil {
		return nil, notFound(id)
	}
	var updated *ent.ServiceCase
	err = store.InTx(ctx, s.db, func(ctx context.Context, tx *ent.Tx) error {
		c, err := tx.ServiceCase.Query().Where(servicecase.ID(caseID)).Where(visible...).Only(ctx)
		if ent.IsNotFound(err) {
			return notFound(id)
		}
		if err != nil {
			return fmt.Errorf("load case %s: %w", id, err)
		}
		if c.State == servicecase.StateClosed {
			return apierr.New(connect.CodeFailedPrecondition, "CASE_CLOSED",
				fmt.Sprintf("case %s is closed: a closed case does not change any more", c.Number))
		}
		if change.assign && change.assignee != nil {
			exists, err := tx.Agent.Query().Where(agent.ID(*change.assignee)).Exist(ctx)
			if err != nil {
				return fmt.Errorf("check agent %s: %w", change.assignee, err)
			}
			if !exists {
				return apierr.New(connect.CodeInvalidArgument, "UNKNOWN_AGENT",
					fmt.Sprintf("assigned_agent_id: there is no agent %s", change.assignee))
			}
		}
		update, changed := change.apply(c, tx.ServiceCase.UpdateOne(c))
		if !changed {
			updated = c
			return nil
		}
		updated, err = update.SetUpdatedAt(s.clk.Now()).Save(ctx)
		if err != nil {
			return fmt.Errorf("update case %s: %w", id, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &parleyv1.UpdateCaseResponse{Case: CaseToProto(updated)}, nil
}

// parseChange reads and checks the fields req's update_mask names: the
// paths first, then the values.
func parseChange(req *parleyv1.UpdateCaseRequest) (caseChange, error) {
	var change caseChange
	paths := req.GetUpdateMask().GetPaths()
	if len(paths) == 0 {
		return change, invalid("INVALID_UPDATE_MASK", fmt.Sprintf("update_mask names no field; name any of %q, %q, %q",
			pathState, pathShortDescription, pathAssignedAgentID))
	}
	for _, path := range paths {
		if path != pathState && path != pathShortDescription && path != pathAssignedAgentID {
			return change, invalid("INVALID_UPDATE_MASK", fmt.Sprintf("update_mask: %q is not a field UpdateCase sets; name any of %q, %q, %q",
				path, pathState, pathShortDescription, pathAssignedAgentID))
		}
	}
	in := req.GetCase()
	if slices.Contains(paths, pathState) {
		st, ok := storeStates[in.GetState()]
		if !ok {
			return change, invalid("INVALID_CASE_STATE", fmt.Sprintf("case.state: %s is not a state a case can take", in.GetState()))
		}
		change.state = &st
	}
	if slices.Contains(paths, pathShortDescription) {
		d := in.GetShortDescription()
		if n := utf8.RuneCountInString(d); n == 0 || n > maxShortDescription {
			return change, invalid("INVALID_SHORT_DESCRIPTION",
				fmt.Sprintf("case.short_description: must be 1 to %d characters, not %d", maxShortDescription, n))
		}
		change.description = &d
	}
	if slices.Contains(paths, pathAssignedAgentID) {
		change.assign = true
		if a := in.GetAssignedAgentId(); a != "" {
			assignee, err := uuid.Parse(a)
			if err != nil {
				return change, invalid("UNKNOWN_AGENT", fmt.Sprintf("case.assigned_agent_id: %q is not an agent id", a))
			}
			change.assignee = &assignee
		}
	}
	return change, nil
}

// apply adds to u the fields of c that change, and tells whether any does.
func (ch caseChange) apply(c *ent.ServiceCase, u *ent.ServiceCaseUpdateOne) (*ent.ServiceCaseUpdateOne, bool) {
	changed := false
	if ch.state != nil && *ch.state != c.State {
		u.SetState(*ch.state)
		changed = true
	}
	if ch.description != nil && *ch.description != c.ShortDescription {
		u.SetShortDescription(*ch.description)
		changed = true
	}
	if ch.assign && !sameID(ch.assignee, c.AssignedAgentID) {
		if ch.assignee == nil {
			u.ClearAssignedAgentID()
		} else {
			u.SetAssignedAgentID(*ch.assignee)
		}
		changed = true
	}
	return u, changed
}

// sameID tells whether two optional ids are equal.
func sameID(a, b *uuid.UUID) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func invalid(reason, message string) error {
	return apierr.New(connect.CodeInvalidArgument, reason, message)
}
