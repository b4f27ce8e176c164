package auth

import (
	"slices"

	"connectrpc.com/grpcreflect/v2"
	"github.com/parleyhq/parley/gen/parley/v1/parleyv1connect"
)

// Policy says which callers may reach an RPC. Handlers then check the
// resource (which conversation, which offer) for the callers it admits.
type Policy struct {
	// Public RPCs need no token (a presented token is still checked).
	Public bool
	// Roles may call the RPC; ignored when Public.
	Roles []Role
}

// Allows reports whether a caller with role may call.
func (p Policy) Allows(role Role) bool {
	return p.Public || slices.Contains(p.Roles, role)
}

var (
	public = Policy{Public: true}
	// readers may read a conversation; handlers then check which one.
	readers = Policy{Roles: []Role{RoleGuest, RoleCustomer, RoleAgent, RoleSupervisor, RoleAdmin}}
	// parties take part in a conversation (post, type, acknowledge).
	parties   = Policy{Roles: []Role{RoleGuest, RoleCustomer, RoleAgent}}
	customers = Policy{Roles: []Role{RoleCustomer}}
	// requesters are the customer side of a conversation.
	requesters = Policy{Roles: []Role{RoleGuest, RoleCustomer}}
	staff      = Policy{Roles: []Role{RoleAgent, RoleSupervisor, RoleAdmin}}
	overseers  = Policy{Roles: []Role{RoleSupervisor, RoleAdmin}}
	agents     = Policy{Roles: []Role{RoleAgent}}
	admins     = Policy{Roles: []Role{RoleAdmin}}
)

// Policies maps every procedure Parley serves to its policy. A procedure
// missing here is refused for everyone, and a test fails when a registered
// procedure has no entry.
var Policies = map[string]Policy{
	parleyv1connect.SessionServiceGetPreChatFormProcedure:         public,
	parleyv1connect.SessionServiceStartGuestChatProcedure:         public,
	parleyv1connect.SessionServiceStartCustomerChatProcedure:      customers,
	parleyv1connect.SessionServiceClaimGuestConversationProcedure: customers,
	parleyv1connect.SessionServiceListMyConversationsProcedure:    customers,
	parleyv1connect.SessionServiceGetConversationProcedure:        readers,
	parleyv1connect.SessionServiceCloseConversationProcedure:      readers,
	parleyv1connect.SessionServiceLeaveMessageProcedure:           requesters,
	parleyv1connect.SessionServiceGetSettingsProcedure:            admins,
	parleyv1connect.SessionServiceUpdateSettingsProcedure:         admins,

	parleyv1connect.MessagingServiceSendMessageProcedure:      parties,
	parleyv1connect.MessagingServiceSubscribeProcedure:        readers,
	parleyv1connect.MessagingServiceListEventsProcedure:       readers,
	parleyv1connect.MessagingServiceSetTypingProcedure:        parties,
	parleyv1connect.MessagingServiceMarkDeliveredProcedure:    parties,
	parleyv1connect.MessagingServiceMarkReadProcedure:         parties,
	parleyv1connect.MessagingServiceListReadCursorsProcedure:  readers,
	parleyv1connect.MessagingServiceUploadAttachmentProcedure: parties,
	parleyv1connect.MessagingServiceGetAttachmentProcedure:    readers,

	parleyv1connect.RoutingServiceSetPresenceProcedure:               agents,
	parleyv1connect.RoutingServiceWatchWorkProcedure:                 agents,
	parleyv1connect.RoutingServiceFollowWorkProcedure:                agents,
	parleyv1connect.RoutingServiceAcceptOfferProcedure:               agents,
	parleyv1connect.RoutingServiceDeclineOfferProcedure:              agents,
	parleyv1connect.RoutingServiceTransferConversationProcedure:      agents,
	parleyv1connect.RoutingServiceListAssignedConversationsProcedure: agents,
	parleyv1connect.RoutingServiceListQueuedConversationsProcedure:   staff,
	parleyv1connect.RoutingServiceCreateQueueProcedure:               admins,
	parleyv1connect.RoutingServiceListQueuesProcedure:                staff,
	parleyv1connect.RoutingServiceCreateMatchingRuleProcedure:        admins,
	parleyv1connect.RoutingServiceListMatchingRulesProcedure:         admins,
	parleyv1connect.RoutingServiceDeleteMatchingRuleProcedure:        admins,
	parleyv1connect.RoutingServiceCreateAgentProcedure:               admins,
	parleyv1connect.RoutingServiceListAgentsProcedure:                overseers,
	parleyv1connect.RoutingServiceListAgentDirectoryProcedure:        staff,
	parleyv1connect.RoutingServiceUpdateQueueProcedure:               admins,
	parleyv1connect.RoutingServiceUpdateMatchingRuleProcedure:        admins,
	parleyv1connect.RoutingServiceUpdateAgentProcedure:               admins,
	parleyv1connect.RoutingServiceListQueueStatusesProcedure:         overseers,
	parleyv1connect.RoutingServiceWatchQueueStatusesProcedure:        overseers,

	parleyv1connect.CaseServiceCreateCaseForGuestProcedure:            agents,
	parleyv1connect.CaseServiceCreateConsumerAndCaseForGuestProcedure: agents,
	parleyv1connect.CaseServiceGetCaseProcedure:                       staff,
	parleyv1connect.CaseServiceListCasesProcedure:                     staff,
	parleyv1connect.CaseServiceUpdateCaseProcedure:                    Policy{Roles: []Role{RoleAgent, RoleAdmin}},

	parleyv1connect.KnowledgeServiceImportArticlesProcedure:  admins,
	parleyv1connect.KnowledgeServiceSearchKnowledgeProcedure: staff,
	parleyv1connect.KnowledgeServiceGetArticleProcedure:      staff,
	parleyv1connect.KnowledgeServiceListArticlesProcedure:    staff,
	parleyv1connect.KnowledgeServiceDeleteArticleProcedure:   admins,

	parleyv1connect.AssistantServiceGetBotConfigProcedure:           admins,
	parleyv1connect.AssistantServiceUpdateBotConfigProcedure:        admins,
	parleyv1connect.AssistantServiceListTopicsProcedure:             staff,
	parleyv1connect.AssistantServiceGetConversationContextProcedure: staff,
	parleyv1connect.AssistantServiceHandBackToBotProcedure:          agents,

	parleyv1connect.AccessServiceIssueTokenProcedure:  admins,
	parleyv1connect.AccessServiceRevokeTokenProcedure: admins,
	parleyv1connect.AccessServiceListTokensProcedure:  admins,
	parleyv1connect.AccessServiceCreateSiteProcedure:  admins,
	parleyv1connect.AccessServiceUpdateSiteProcedure:  admins,
	parleyv1connect.AccessServiceListSitesProcedure:   admins,

	"/" + grpcreflect.ReflectV1ServiceName + "/ServerReflectionInfo":      public,
	"/" + grpcreflect.ReflectV1AlphaServiceName + "/ServerReflectionInfo": public,
}
