package chatlog

import (
	"fmt"

	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/conversation"
	"github.com/parleyhq/parley/ent/event"
	"github.com/parleyhq/parley/ent/interaction"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/auth"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// ChannelToProto converts a stored channel.
func ChannelToProto(c interaction.Channel) parleyv1.Channel {
	switch c {
	case interaction.ChannelWebPortal:
		return parleyv1.Channel_CHANNEL_WEB_PORTAL
	case interaction.ChannelMessenger:
		return parleyv1.Channel_CHANNEL_MESSENGER
	case interaction.ChannelMobile:
		return parleyv1.Channel_CHANNEL_MOBILE
	}
	return parleyv1.Channel_CHANNEL_UNSPECIFIED
}

// ChannelFromProto converts an API channel; unspecified means the web portal.
func ChannelFromProto(c parleyv1.Channel) interaction.Channel {
	switch c {
	case parleyv1.Channel_CHANNEL_MESSENGER:
		return interaction.ChannelMessenger
	case parleyv1.Channel_CHANNEL_MOBILE:
		return interaction.ChannelMobile
	}
	return interaction.ChannelWebPortal
}

// InteractionToProto converts an interaction record.
func InteractionToProto(in *ent.Interaction) *parleyv1.Interaction {
	return &parleyv1.Interaction{
		Id:           in.ID.String(),
		Name:         in.Name,
		Email:        in.Email,
		IssueType:    in.IssueType,
		Channel:      ChannelToProto(in.Channel),
		FirstMessage: in.FirstMessage,
		CreateTime:   timestamppb.New(in.CreatedAt),
		Language:     in.Language,
		FormFields:   in.FormFields,
		Tier:         in.Tier,
		Intent:       in.Intent,
		Slots:        in.Slots,
	}
}

// ToProto converts a conversation; load its interaction edge first.
func ToProto(c *ent.Conversation) *parleyv1.Conversation {
	out := &parleyv1.Conversation{
		Id:         c.ID.String(),
		LastSeq:    c.LastSeq,
		CreateTime: timestamppb.New(c.CreatedAt),
	}
	switch c.State {
	case conversation.StateQueued:
		out.State = parleyv1.ConversationState_CONVERSATION_STATE_QUEUED
	case conversation.StateAssigned:
		out.State = parleyv1.ConversationState_CONVERSATION_STATE_ASSIGNED
	case conversation.StateClosed:
		out.State = parleyv1.ConversationState_CONVERSATION_STATE_CLOSED
	case conversation.StateBot:
		out.State = parleyv1.ConversationState_CONVERSATION_STATE_BOT
	}
	out.Controller = ControllerOf(c.State)
	if in := c.Edges.Interaction; in != nil {
		out.Interaction = InteractionToProto(in)
	}
	if c.QueueID != nil {
		out.QueueId = c.QueueID.String()
	}
	if c.AgentID != nil {
		out.AgentId = c.AgentID.String()
	}
	if c.ClosedAt != nil {
		out.CloseTime = timestamppb.New(*c.ClosedAt)
	}
	if c.ConsumerID != nil {
		out.ConsumerId = c.ConsumerID.String()
	}
	return out
}

// ForCaller converts c for p: ToProto, plus its wrap-up for staff (the
// customer never gets it).
func ForCaller(c *ent.Conversation, p *auth.Principal) *parleyv1.Conversation {
	out := ToProto(c)
	if w := c.WrapUp; w != nil && p.Staff() {
		out.WrapUp = &parleyv1.WrapUp{Code: w.Code, Label: w.Label, Notes: w.Notes, ClosedBy: w.ClosedBy, CreateTime: timestamppb.New(w.Time)}
	}
	return out
}

var roleToProto = map[event.SenderRole]parleyv1.ParticipantRole{
	event.SenderRoleGuest:    parleyv1.ParticipantRole_PARTICIPANT_ROLE_GUEST,
	event.SenderRoleCustomer: parleyv1.ParticipantRole_PARTICIPANT_ROLE_CUSTOMER,
	event.SenderRoleAgent:    parleyv1.ParticipantRole_PARTICIPANT_ROLE_AGENT,
	event.SenderRoleSystem:   parleyv1.ParticipantRole_PARTICIPANT_ROLE_SYSTEM,
	event.SenderRoleBot:      parleyv1.ParticipantRole_PARTICIPANT_ROLE_BOT,
}

// Participant converts a sender.
func (s Sender) Participant() *parleyv1.Participant {
	return &parleyv1.Participant{Role: roleToProto[s.Role], Id: s.ID, DisplayName: s.Name}
}

// EventToProto converts a stored event for viewer (the sender id of the
// participant reading it, "" for staff who are not a participant). A
// message's client_message_id is the sender's idempotency key: only the
// sender sees it.
func EventToProto(ev *ent.Event, viewer string) (*parleyv1.Event, error) {
	out := &parleyv1.Event{
		ConversationId: ev.ConversationID.String(),
		Seq:            ev.Seq,
		CreateTime:     timestamppb.New(ev.CreatedAt),
		Sender:         Sender{Role: ev.SenderRole, ID: ev.SenderID, Name: ev.SenderName}.Participant(),
	}
	if ev.Channel != nil {
		out.Channel = ChannelToProto(interaction.Channel(*ev.Channel))
	}
	var err error
	switch ev.Kind {
	case "message_posted":
		m := &parleyv1.MessagePosted{}
		err = proto.Unmarshal(ev.Payload, m)
		if viewer == "" || viewer != ev.SenderID {
			m.ClientMessageId = ""
		}
		out.Kind = &parleyv1.Event_MessagePosted{MessagePosted: m}
	case "participant_joined":
		m := &parleyv1.ParticipantJoined{}
		err = proto.Unmarshal(ev.Payload, m)
		out.Kind = &parleyv1.Event_ParticipantJoined{ParticipantJoined: m}
	case "participant_left":
		m := &parleyv1.ParticipantLeft{}
		err = proto.Unmarshal(ev.Payload, m)
		out.Kind = &parleyv1.Event_ParticipantLeft{ParticipantLeft: m}
	case "conversation_queued":
		m := &parleyv1.ConversationQueued{}
		err = proto.Unmarshal(ev.Payload, m)
		out.Kind = &parleyv1.Event_ConversationQueued{ConversationQueued: m}
	case "conversation_transferred":
		m := &parleyv1.ConversationTransferred{}
		err = proto.Unmarshal(ev.Payload, m)
		out.Kind = &parleyv1.Event_ConversationTransferred{ConversationTransferred: m}
	case "case_linked":
		m := &parleyv1.CaseLinked{}
		err = proto.Unmarshal(ev.Payload, m)
		out.Kind = &parleyv1.Event_CaseLinked{CaseLinked: m}
	case "conversation_closed":
		m := &parleyv1.ConversationClosed{}
		err = proto.Unmarshal(ev.Payload, m)
		out.Kind = &parleyv1.Event_ConversationClosed{ConversationClosed: m}
	case "wait_exceeded":
		m := &parleyv1.WaitExceeded{}
		err = proto.Unmarshal(ev.Payload, m)
		out.Kind = &parleyv1.Event_WaitExceeded{WaitExceeded: m}
	case "controller_changed":
		m := &parleyv1.ControllerChanged{}
		err = proto.Unmarshal(ev.Payload, m)
		out.Kind = &parleyv1.Event_ControllerChanged{ControllerChanged: m}
	default:
		return nil, fmt.Errorf("conversation: event %d has unknown kind %q", ev.ID, ev.Kind)
	}
	if err != nil {
		return nil, fmt.Errorf("conversation: decode %s event %d: %w", ev.Kind, ev.ID, err)
	}
	return out, nil
}
