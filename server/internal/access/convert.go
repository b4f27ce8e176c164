package access

import (
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/site"
	"github.com/parleyhq/parley/ent/token"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/auth"
)

var roleFromProto = map[parleyv1.StaffRole]auth.Role{
	parleyv1.StaffRole_STAFF_ROLE_AGENT:      auth.RoleAgent,
	parleyv1.StaffRole_STAFF_ROLE_SUPERVISOR: auth.RoleSupervisor,
	parleyv1.StaffRole_STAFF_ROLE_ADMIN:      auth.RoleAdmin,
}

var roleToProto = map[token.Role]parleyv1.StaffRole{
	token.RoleAgent:      parleyv1.StaffRole_STAFF_ROLE_AGENT,
	token.RoleSupervisor: parleyv1.StaffRole_STAFF_ROLE_SUPERVISOR,
	token.RoleAdmin:      parleyv1.StaffRole_STAFF_ROLE_ADMIN,
}

func tokenToProto(t *ent.Token) *parleyv1.TokenInfo {
	out := &parleyv1.TokenInfo{
		Id:         t.ID.String(),
		Role:       roleToProto[t.Role],
		Label:      t.Label,
		CreateTime: timestamppb.New(t.CreatedAt),
	}
	if t.AgentID != nil {
		out.AgentId = t.AgentID.String()
	}
	if t.ExpiresAt != nil {
		out.ExpireTime = timestamppb.New(*t.ExpiresAt)
	}
	if t.RevokedAt != nil {
		out.RevokeTime = timestamppb.New(*t.RevokedAt)
	}
	return out
}

func siteToProto(s *ent.Site) *parleyv1.Site {
	return &parleyv1.Site{
		Id:                      s.ID.String(),
		DisplayName:             s.DisplayName,
		AllowedOrigins:          s.AllowedOrigins,
		MaxGuestSessionsPerHour: int32(s.MaxGuestSessionsPerHour),
		Bot:                     siteBotToProto[s.Bot],
	}
}

// siteBotToProto converts a site's bot setting.
var siteBotToProto = map[site.Bot]parleyv1.SiteBot{
	site.BotDefault: parleyv1.SiteBot_SITE_BOT_UNSPECIFIED,
	site.BotOn:      parleyv1.SiteBot_SITE_BOT_ON,
	site.BotOff:     parleyv1.SiteBot_SITE_BOT_OFF,
}

// siteBotFromProto is siteBotToProto's inverse.
func siteBotFromProto(b parleyv1.SiteBot) site.Bot {
	switch b {
	case parleyv1.SiteBot_SITE_BOT_ON:
		return site.BotOn
	case parleyv1.SiteBot_SITE_BOT_OFF:
		return site.BotOff
	}
	return site.BotDefault
}
