package session

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/interaction"
	"github.com/parleyhq/parley/ent/queue"
	"github.com/parleyhq/parley/ent/schema"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/chatlog"
	"github.com/parleyhq/parley/server/internal/events"
	"github.com/parleyhq/parley/server/internal/store"
	"google.golang.org/protobuf/types/known/durationpb"
)

func issueTypesToProto(its []schema.IssueType) []*parleyv1.IssueType {
	out := make([]*parleyv1.IssueType, len(its))
	for i, it := range its {
		out[i] = &parleyv1.IssueType{Value: it.Value, DisplayName: it.DisplayName}
	}
	return out
}

// IssueTypesFromProto converts the API's issue types for storage.
func IssueTypesFromProto(its []*parleyv1.IssueType) []schema.IssueType {
	out := make([]schema.IssueType, len(its))
	for i, it := range its {
		out[i] = schema.IssueType{Value: it.GetValue(), DisplayName: it.GetDisplayName()}
	}
	return out
}

// PreChatFieldsToProto converts the stored pre-chat fields for the API.
func PreChatFieldsToProto(fs []schema.PreChatField) []*parleyv1.PreChatField {
	out := make([]*parleyv1.PreChatField, len(fs))
	for i, f := range fs {
		out[i] = &parleyv1.PreChatField{
			Name: f.Name, Label: f.Label, Required: f.Required, MaxLength: int32(f.MaxLength),
			Options: slices.Clone(f.Options), Hint: f.Hint,
		}
	}
	return out
}

// PreChatFieldsFromProto converts the API's pre-chat fields for storage.
func PreChatFieldsFromProto(fs []*parleyv1.PreChatField) []schema.PreChatField {
	out := make([]schema.PreChatField, len(fs))
	for i, f := range fs {
		out[i] = schema.PreChatField{
			Name: f.GetName(), Label: f.GetLabel(), Required: f.GetRequired(), MaxLength: int(f.GetMaxLength()),
			Options: slices.Clone(f.GetOptions()), Hint: f.GetHint(),
		}
	}
	return out
}

// WrapUpCodesToProto converts the stored wrap-up codes for the API.
func WrapUpCodesToProto(cs []schema.WrapUpCode) []*parleyv1.WrapUpCode {
	out := make([]*parleyv1.WrapUpCode, len(cs))
	for i, c := range cs {
		out[i] = &parleyv1.WrapUpCode{Code: c.Code, Label: c.Label}
	}
	return out
}

// WrapUpCodesFromProto converts the API's wrap-up codes for storage.
func WrapUpCodesFromProto(cs []*parleyv1.WrapUpCode) []schema.WrapUpCode {
	out := make([]schema.WrapUpCode, len(cs))
	for i, c := range cs {
		out[i] = schema.WrapUpCode{Code: c.GetCode(), Label: c.GetLabel()}
	}
	return out
}

func issueTypeValues(its []schema.IssueType) string {
	vals := make([]string, len(its))
	for i, it := range its {
		vals[i] = it.Value
	}
	return strings.Join(vals, ", ")
}

// GetSettings returns the installation's settings.
func (s *Service) GetSettings(ctx context.Context, _ *parleyv1.GetSettingsRequest) (*parleyv1.GetSettingsResponse, error) {
	set, err := s.db.Setting.Get(ctx, schema.SettingsID)
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("load settings: %w", err))
	}
	out := &parleyv1.Settings{
		MaxGuestSessionsPerHour:              int32(set.MaxGuestSessionsPerHour),
		GuestSessionsRateLimitReachedMessage: set.GuestSessionsRateLimitReachedMessage,
		IssueTypes:                           issueTypesToProto(set.IssueTypes),
		AbandonAfter:                         durationpb.New(time.Duration(set.AbandonAfterSeconds) * time.Second),
		MaxGuestSessionsPerHourPerAddress:    int32(set.MaxGuestSessionsPerHourPerAddress),
		AgentDisconnectGrace:                 durationpb.New(time.Duration(set.AgentGraceSeconds) * time.Second),
		BotChannels:                          botChannelsToProto(set.BotChannels),
		PreChatFields:                        PreChatFieldsToProto(set.PreChatFields),
		WrapUpCodes:                          WrapUpCodesToProto(set.WrapUpCodes),
		WrapUpRequired:                       set.WrapUpRequired,
	}
	if set.DefaultQueueID != nil {
		out.DefaultQueueId = set.DefaultQueueID.String()
	}
	return &parleyv1.GetSettingsResponse{Settings: out}, nil
}

// DefaultAgentGrace is how long a dropped work stream may stay away when
// the settings leave it unset.
const DefaultAgentGrace = time.Minute

// UpdateSettings replaces the installation's settings; they apply to the
// next request.
func (s *Service) UpdateSettings(ctx context.Context, req *parleyv1.UpdateSettingsRequest) (*parleyv1.UpdateSettingsResponse, error) {
	in := req.GetSettings()
	if err := CheckSettings(in); err != nil {
		return nil, err
	}
	var defaultQueue *uuid.UUID
	if id := in.GetDefaultQueueId(); id != "" {
		qid := chatlog.ParseID(id)
		defaultQueue = &qid
	}
	err := store.InTx(ctx, s.db, func(ctx context.Context, tx *ent.Tx) error {
		update := tx.Setting.UpdateOneID(schema.SettingsID).
			SetMaxGuestSessionsPerHour(int(in.GetMaxGuestSessionsPerHour())).
			SetMaxGuestSessionsPerHourPerAddress(int(in.GetMaxGuestSessionsPerHourPerAddress())).
			SetGuestSessionsRateLimitReachedMessage(in.GetGuestSessionsRateLimitReachedMessage()).
			SetIssueTypes(IssueTypesFromProto(in.GetIssueTypes())).
			SetAbandonAfterSeconds(int64(in.GetAbandonAfter().AsDuration().Seconds())).
			SetBotChannels(botChannelsFromProto(in.GetBotChannels())).
			SetPreChatFields(PreChatFieldsFromProto(in.GetPreChatFields())).
			SetWrapUpCodes(WrapUpCodesFromProto(in.GetWrapUpCodes())).
			SetWrapUpRequired(in.GetWrapUpRequired()).
			SetAgentGraceSeconds(int(cmp.Or(in.GetAgentDisconnectGrace().AsDuration(), DefaultAgentGrace).Seconds())).
			ClearDefaultQueueID()
		if defaultQueue != nil {
			exists, err := tx.Queue.Query().Where(queue.ID(*defaultQueue)).Exist(ctx)
			if err != nil {
				return fmt.Errorf("check default queue: %w", err)
			}
			if !exists {
				return apierr.New(connect.CodeNotFound, "QUEUE_NOT_FOUND", fmt.Sprintf("default_queue_id %s names no queue", *defaultQueue))
			}
			update.SetDefaultQueueID(*defaultQueue)
		}
		if err := update.Exec(ctx); err != nil {
			return fmt.Errorf("update settings: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, apierr.From(err)
	}
	s.hub.Notify(events.ConfigKey)
	got, err := s.GetSettings(ctx, &parleyv1.GetSettingsRequest{})
	if err != nil {
		return nil, err
	}
	return &parleyv1.UpdateSettingsResponse{Settings: got.GetSettings()}, nil
}

// botChannelsFromProto stores the bot's channels by name.
func botChannelsFromProto(cs []parleyv1.Channel) []string {
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, string(chatlog.ChannelFromProto(c)))
	}
	return out
}

// botChannelsToProto is botChannelsFromProto's inverse.
func botChannelsToProto(cs []string) []parleyv1.Channel {
	var out []parleyv1.Channel
	for _, c := range cs {
		out = append(out, chatlog.ChannelToProto(interaction.Channel(c)))
	}
	return out
}

// CheckSettings refuses settings the schema's rules let through but that
// cannot work: a pre-chat field's blank label, or a blank option no guest
// could pick (a blank value counts as none); a wrap-up code's blank label,
// or a required wrap-up with no codes to pick. UpdateSettings and the
// bootstrap file both apply it.
func CheckSettings(set *parleyv1.Settings) error {
	for i, f := range set.GetPreChatFields() {
		if blank(f.GetLabel()) {
			return apierr.New(connect.CodeInvalidArgument, "FIELD_LABEL_BLANK",
				fmt.Sprintf("pre_chat_fields[%d] (%s): label must show something, not only spaces or invisible characters", i, f.GetName()))
		}
		for j, o := range f.GetOptions() {
			if blank(o) {
				return apierr.New(connect.CodeInvalidArgument, "FIELD_OPTION_BLANK",
					fmt.Sprintf("pre_chat_fields[%d] (%s): options[%d] must show something, not only spaces or invisible characters", i, f.GetName(), j))
			}
		}
	}
	for i, c := range set.GetWrapUpCodes() {
		if blank(c.GetLabel()) {
			return apierr.New(connect.CodeInvalidArgument, "WRAP_UP_LABEL_BLANK",
				fmt.Sprintf("wrap_up_codes[%d] (%s): label must show something, not only spaces or invisible characters", i, c.GetCode()))
		}
	}
	if set.GetWrapUpRequired() && len(set.GetWrapUpCodes()) == 0 {
		return apierr.New(connect.CodeInvalidArgument, "WRAP_UP_CODES_MISSING",
			"wrap_up_required needs at least one of wrap_up_codes for agents to pick")
	}
	return nil
}
