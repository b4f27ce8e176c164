package cases

import (
	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/servicecase"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// caseStates maps the store's case states to the API's, both ways.
var (
	caseStates = map[servicecase.State]parleyv1.CaseState{
		servicecase.StateNew:        parleyv1.CaseState_CASE_STATE_NEW,
		servicecase.StateInProgress: parleyv1.CaseState_CASE_STATE_IN_PROGRESS,
		servicecase.StateOnHold:     parleyv1.CaseState_CASE_STATE_ON_HOLD,
		servicecase.StateResolved:   parleyv1.CaseState_CASE_STATE_RESOLVED,
		servicecase.StateClosed:     parleyv1.CaseState_CASE_STATE_CLOSED,
	}
	storeStates = func() map[parleyv1.CaseState]servicecase.State {
		out := make(map[parleyv1.CaseState]servicecase.State, len(caseStates))
		for st, api := range caseStates {
			out[api] = st
		}
		return out
	}()
)

// CaseToProto converts a case.
func CaseToProto(c *ent.ServiceCase) *parleyv1.Case {
	return &parleyv1.Case{
		Id:               c.ID.String(),
		Number:           c.Number,
		ShortDescription: c.ShortDescription,
		ConversationId:   c.ConversationID.String(),
		ConsumerId:       uuidString(c.ConsumerID),
		OpenedByAgentId:  uuidString(c.OpenedByAgentID),
		CreateTime:       timestamppb.New(c.CreatedAt),
		State:            caseStates[c.State],
		AssignedAgentId:  uuidString(c.AssignedAgentID),
		UpdateTime:       timestamppb.New(c.UpdatedAt),
	}
}

// ConsumerToProto converts a consumer record; nil stays nil.
func ConsumerToProto(c *ent.Consumer) *parleyv1.Consumer {
	if c == nil {
		return nil
	}
	return &parleyv1.Consumer{Id: c.ID.String(), DisplayName: c.DisplayName, Email: c.Email, CreateTime: timestamppb.New(c.CreatedAt)}
}

// uuidString formats an optional id, "" when unset.
func uuidString(id *uuid.UUID) string {
	if id == nil {
		return ""
	}
	return id.String()
}
