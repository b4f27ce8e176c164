package app_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/grpcreflect/v2"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/clients/go/parley"
	"github.com/parleyhq/parley/ent/offer"
	"github.com/parleyhq/parley/ent/token"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/server/internal/app"
	"github.com/parleyhq/parley/server/internal/auth"
	"github.com/parleyhq/parley/server/internal/servertest"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

// caller is one kind of caller in the access matrix.
type caller int

const (
	nobody        caller = iota // no token
	guestA                      // the guest of conversation A
	guestB                      // the guest of another conversation
	customer                    // a signed-in customer with a conversation of their own
	otherAgent                  // an agent who never held A (Abel)
	assignedAgent               // the agent holding A (Beth)
	supervisor
	admin
	callerCount
)

var callerNames = [callerCount]string{"nobody", "guest of A", "guest of B", "customer", "unrelated agent", "assigned agent", "supervisor", "admin"}

// world is a server with conversation A (a guest's, held by Beth),
// conversation B (another guest's, waiting) and a customer's conversation,
// and a token for every kind of caller.
type world struct {
	t        *testing.T
	srv      *servertest.Server
	ctx      context.Context
	convA    string
	offerA   string
	attachA  string
	tokens   [callerCount]string
	siteID   string
	ruleID   string
	rule     *parleyv1.MatchingRule
	abel     *parleyv1.Agent
	queueID  string
	fredTok  string
	settings *parleyv1.Settings
}

func newWorld(t *testing.T) *world {
	t.Helper()
	// Short heartbeats make WatchWork answer at once for agents with no work.
	srv := servertest.Start(t, servertest.WithAppOptions(app.Options{Heartbeat: 20 * time.Millisecond}))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	w := &world{t: t, srv: srv, ctx: ctx}
	w.tokens[otherAgent] = servertest.AbelToken
	w.tokens[assignedAgent] = servertest.BethToken
	w.tokens[admin] = servertest.AdminToken
	adm := srv.Client(parley.Connect, servertest.AdminToken)

	var convB string
	w.tokens[guestA], w.convA = w.startGuest("billing")
	w.tokens[guestB], convB = w.startGuest("product")
	_ = convB
	w.tokens[customer] = srv.CustomerToken(t, "cust-1", "Carla", "carla@example.com")
	_, err := srv.Client(parley.Connect, w.tokens[customer]).Session.StartCustomerChat(ctx, &parleyv1.StartCustomerChatRequest{
		RequestId: uuid.NewString(), IssueType: "order",
	})
	must(t, err)
	sup, err := adm.Access.IssueToken(ctx, &parleyv1.IssueTokenRequest{Role: parleyv1.StaffRole_STAFF_ROLE_SUPERVISOR, Label: "matrix"})
	must(t, err)
	w.tokens[supervisor] = sup.GetToken()

	// Beth takes A.
	beth := srv.Client(parley.Connect, servertest.BethToken)
	setPresence(ctx, t, beth, parleyv1.Presence_PRESENCE_AVAILABLE)
	for w.offerA == "" {
		must(t, srv.App.Dispatch(ctx))
		o, err := srv.DB.Offer.Query().Where(offer.ConversationID(uuid.MustParse(w.convA))).First(ctx)
		if err == nil {
			w.offerA = o.ID.String()
		} else if ctx.Err() != nil {
			t.Fatal("no offer for conversation A")
		}
	}
	_, err = beth.Routing.AcceptOffer(ctx, &parleyv1.AcceptOfferRequest{OfferId: w.offerA})
	must(t, err)

	content := []byte("receipt")
	sum := sha256.Sum256(content)
	up, err := srv.Client(parley.Connect, w.tokens[guestA]).Messaging.UploadAttachment(ctx, &parleyv1.UploadAttachmentRequest{
		ConversationId: w.convA, RequestId: uuid.NewString(), Filename: "receipt.txt",
		ContentType: "text/plain", Content: content, Sha256: hex.EncodeToString(sum[:]),
	})
	must(t, err)
	w.attachA = up.GetAttachment().GetId()

	site, err := adm.Access.CreateSite(ctx, &parleyv1.CreateSiteRequest{Site: &parleyv1.Site{
		DisplayName: "Shop", AllowedOrigins: []string{"https://shop.example.com"},
	}})
	must(t, err)
	w.siteID = site.GetSite().GetId()
	rules, err := adm.Routing.ListMatchingRules(ctx, &parleyv1.ListMatchingRulesRequest{})
	must(t, err)
	w.rule = rules.GetRules()[0]
	w.ruleID = w.rule.GetId()
	w.queueID = rules.GetRules()[0].GetQueueId()
	fred, err := srv.DB.Token.Query().Where(token.LabelContains("Fred")).Only(ctx)
	must(t, err)
	w.fredTok = fred.ID.String()
	agents, err := adm.Routing.ListAgents(ctx, &parleyv1.ListAgentsRequest{})
	must(t, err)
	for _, a := range agents.GetAgents() {
		if a.GetDisplayName() == "Abel Tuter" {
			w.abel = a
		}
	}
	set, err := adm.Session.GetSettings(ctx, &parleyv1.GetSettingsRequest{})
	must(t, err)
	w.settings = set.GetSettings()
	return w
}

func (w *world) startGuest(issue string) (string, string) {
	w.t.Helper()
	resp, err := w.srv.Client(parley.Connect, "").Session.StartGuestChat(w.ctx, &parleyv1.StartGuestChatRequest{
		RequestId: uuid.NewString(), Name: "Gus", Email: "gus@example.com", IssueType: issue,
	})
	must(w.t, err)
	return resp.GetGuestToken(), resp.GetConversation().GetId()
}

// caseA has Beth open a case for A and returns its id.
func (w *world) caseA() string {
	w.t.Helper()
	c, err := w.srv.Client(parley.Connect, servertest.BethToken).Cases.CreateCaseForGuest(w.ctx, &parleyv1.CreateCaseForGuestRequest{
		ConversationId: w.convA, RequestId: uuid.NewString(),
	})
	must(w.t, err)
	return c.GetCase().GetId()
}

// matrixArticle is the article the knowledge rows import.
var matrixArticle = &parleyv1.Article{ExternalId: "matrix/article", Title: "Matrix", Body: "An article for the access matrix.", Published: true}

// importArticle imports matrixArticle as the admin (unchanged after the
// first time) and returns its id.
func importArticle(w *world) string {
	resp, err := w.srv.Client(parley.Connect, servertest.AdminToken).Knowledge.ImportArticles(w.ctx,
		&parleyv1.ImportArticlesRequest{Articles: []*parleyv1.Article{matrixArticle}})
	must(w.t, err)
	return resp.GetResults()[0].GetArticleId()
}

// firstOf opens a server stream and reads its first message.
func firstOf[T any](stream interface {
	Receive() (*T, error)
	Close() error
}, err error) error {
	if err != nil {
		return err
	}
	defer stream.Close()
	_, err = stream.Receive()
	return err
}

// rpcCall makes one call of an RPC as the caller c; setup is done first, as
// an admin or an agent, when the call needs a resource made for it.
type rpcCall func(w *world, c *parley.Client) error

// codes reads an expectation string, one letter per caller in the order
// of callerNames: O ok, U Unauthenticated, D PermissionDenied, N NotFound,
// F FailedPrecondition.
func codes(s string) [callerCount]connect.Code {
	letters := map[rune]connect.Code{
		'O': 0, 'U': connect.CodeUnauthenticated, 'D': connect.CodePermissionDenied,
		'N': connect.CodeNotFound, 'F': connect.CodeFailedPrecondition,
	}
	var out [callerCount]connect.Code
	if len(s) != int(callerCount) {
		panic("expectation " + s + " does not name every caller")
	}
	for i, r := range s {
		code, ok := letters[r]
		if !ok {
			panic(fmt.Sprintf("unknown code letter %q", r))
		}
		out[i] = code
	}
	return out
}

// Common expectations.
const (
	everyone      = "OOOOOOOO"
	customersOnly = "UDDODDDD"
	readersOfA    = "UODDDOOO"
	partiesOfA    = "UODDDODD"
	adminsOnly    = "UDDDDDDO"
	agentsOnly    = "UDDDOODD"
	staffOnly     = "UDDDOOOO"
	overseersOnly = "UDDDDDOO"
	holderOfA     = "UDDDDODD"
)

// matrix says, for every RPC, what each kind of caller gets. fresh rows run
// each caller in a new world, because an allowed call changes what the
// next caller would see.
var matrix = map[string]struct {
	want  string
	fresh bool
	call  rpcCall
}{
	parleyv1connect.SessionServiceGetPreChatFormProcedure: {want: everyone, call: func(w *world, c *parley.Client) error {
		_, err := c.Session.GetPreChatForm(w.ctx, &parleyv1.GetPreChatFormRequest{})
		return err
	}},
	parleyv1connect.SessionServiceStartGuestChatProcedure: {want: everyone, call: func(w *world, c *parley.Client) error {
		_, err := c.Session.StartGuestChat(w.ctx, &parleyv1.StartGuestChatRequest{
			RequestId: uuid.NewString(), Name: "New", Email: "new@example.com", IssueType: "order",
		})
		return err
	}},
	parleyv1connect.SessionServiceStartCustomerChatProcedure: {want: customersOnly, call: func(w *world, c *parley.Client) error {
		_, err := c.Session.StartCustomerChat(w.ctx, &parleyv1.StartCustomerChatRequest{RequestId: uuid.NewString(), IssueType: "order"})
		return err
	}},
	parleyv1connect.SessionServiceClaimGuestConversationProcedure: {want: customersOnly, call: func(w *world, c *parley.Client) error {
		ctx, info := connect.NewClientContext(w.ctx)
		info.RequestHeader().Set(auth.GuestTokenHeader, w.tokens[guestA])
		_, err := c.Session.ClaimGuestConversation(ctx, &parleyv1.ClaimGuestConversationRequest{ConversationId: w.convA})
		return err
	}},
	parleyv1connect.SessionServiceListMyConversationsProcedure: {want: customersOnly, call: func(w *world, c *parley.Client) error {
		_, err := c.Session.ListMyConversations(w.ctx, &parleyv1.ListMyConversationsRequest{})
		return err
	}},
	parleyv1connect.SessionServiceGetConversationProcedure: {want: readersOfA, call: func(w *world, c *parley.Client) error {
		_, err := c.Session.GetConversation(w.ctx, &parleyv1.GetConversationRequest{ConversationId: w.convA})
		return err
	}},
	parleyv1connect.SessionServiceCloseConversationProcedure: {want: readersOfA, fresh: true, call: func(w *world, c *parley.Client) error {
		_, err := c.Session.CloseConversation(w.ctx, &parleyv1.CloseConversationRequest{ConversationId: w.convA})
		return err
	}},
	// Only the customer side leaves a message, and only while the chat
	// waits: A is already with Beth.
	parleyv1connect.SessionServiceLeaveMessageProcedure: {want: "UFDDDDDD", call: func(w *world, c *parley.Client) error {
		_, err := c.Session.LeaveMessage(w.ctx, &parleyv1.LeaveMessageRequest{ConversationId: w.convA, RequestId: uuid.NewString(), Text: "call me back"})
		return err
	}},
	parleyv1connect.SessionServiceGetSettingsProcedure: {want: adminsOnly, call: func(w *world, c *parley.Client) error {
		_, err := c.Session.GetSettings(w.ctx, &parleyv1.GetSettingsRequest{})
		return err
	}},
	parleyv1connect.SessionServiceUpdateSettingsProcedure: {want: adminsOnly, call: func(w *world, c *parley.Client) error {
		_, err := c.Session.UpdateSettings(w.ctx, &parleyv1.UpdateSettingsRequest{Settings: w.settings})
		return err
	}},

	parleyv1connect.MessagingServiceSendMessageProcedure: {want: partiesOfA, call: func(w *world, c *parley.Client) error {
		_, err := c.Messaging.SendMessage(w.ctx, &parleyv1.SendMessageRequest{ConversationId: w.convA, ClientMessageId: uuid.NewString(), Text: "hi"})
		return err
	}},
	parleyv1connect.MessagingServiceSubscribeProcedure: {want: readersOfA, call: func(w *world, c *parley.Client) error {
		return firstOf(c.Messaging.Subscribe(w.ctx, &parleyv1.SubscribeRequest{ConversationId: w.convA}))
	}},
	parleyv1connect.MessagingServiceListEventsProcedure: {want: readersOfA, call: func(w *world, c *parley.Client) error {
		_, err := c.Messaging.ListEvents(w.ctx, &parleyv1.ListEventsRequest{ConversationId: w.convA})
		return err
	}},
	parleyv1connect.MessagingServiceSetTypingProcedure: {want: partiesOfA, call: func(w *world, c *parley.Client) error {
		_, err := c.Messaging.SetTyping(w.ctx, &parleyv1.SetTypingRequest{ConversationId: w.convA, Typing: true})
		return err
	}},
	parleyv1connect.MessagingServiceMarkDeliveredProcedure: {want: partiesOfA, call: func(w *world, c *parley.Client) error {
		_, err := c.Messaging.MarkDelivered(w.ctx, &parleyv1.MarkDeliveredRequest{ConversationId: w.convA, RequestId: uuid.NewString(), DeliveredSeq: 1})
		return err
	}},
	parleyv1connect.MessagingServiceMarkReadProcedure: {want: partiesOfA, call: func(w *world, c *parley.Client) error {
		_, err := c.Messaging.MarkRead(w.ctx, &parleyv1.MarkReadRequest{ConversationId: w.convA, RequestId: uuid.NewString(), ReadSeq: 1})
		return err
	}},
	parleyv1connect.MessagingServiceListReadCursorsProcedure: {want: readersOfA, call: func(w *world, c *parley.Client) error {
		_, err := c.Messaging.ListReadCursors(w.ctx, &parleyv1.ListReadCursorsRequest{ConversationId: w.convA})
		return err
	}},
	parleyv1connect.MessagingServiceUploadAttachmentProcedure: {want: partiesOfA, call: func(w *world, c *parley.Client) error {
		content := []byte("notes")
		sum := sha256.Sum256(content)
		_, err := c.Messaging.UploadAttachment(w.ctx, &parleyv1.UploadAttachmentRequest{
			ConversationId: w.convA, RequestId: uuid.NewString(), Filename: "notes.txt",
			ContentType: "text/plain", Content: content, Sha256: hex.EncodeToString(sum[:]),
		})
		return err
	}},
	parleyv1connect.MessagingServiceGetAttachmentProcedure: {want: readersOfA, call: func(w *world, c *parley.Client) error {
		_, err := c.Messaging.GetAttachment(w.ctx, &parleyv1.GetAttachmentRequest{AttachmentId: w.attachA})
		return err
	}},

	parleyv1connect.RoutingServiceSetPresenceProcedure: {want: agentsOnly, call: func(w *world, c *parley.Client) error {
		_, err := c.Routing.SetPresence(w.ctx, &parleyv1.SetPresenceRequest{Presence: parleyv1.Presence_PRESENCE_AWAY})
		return err
	}},
	parleyv1connect.RoutingServiceWatchWorkProcedure: {want: agentsOnly, call: func(w *world, c *parley.Client) error {
		return firstOf(c.Routing.WatchWork(w.ctx, &parleyv1.WatchWorkRequest{}))
	}},
	parleyv1connect.RoutingServiceFollowWorkProcedure: {want: agentsOnly, call: func(w *world, c *parley.Client) error {
		return firstOf(c.Routing.FollowWork(w.ctx, &parleyv1.FollowWorkRequest{}))
	}},
	// An agent sees only its own offers: another agent's is "not found",
	// exactly like one that does not exist. The assigned agent's retry of
	// its accepted offer answers again.
	parleyv1connect.RoutingServiceAcceptOfferProcedure: {want: "UDDDNODD", call: func(w *world, c *parley.Client) error {
		_, err := c.Routing.AcceptOffer(w.ctx, &parleyv1.AcceptOfferRequest{OfferId: w.offerA})
		return err
	}},
	// An accepted offer can no longer be declined.
	parleyv1connect.RoutingServiceDeclineOfferProcedure: {want: "UDDDNFDD", call: func(w *world, c *parley.Client) error {
		_, err := c.Routing.DeclineOffer(w.ctx, &parleyv1.DeclineOfferRequest{OfferId: w.offerA})
		return err
	}},
	parleyv1connect.RoutingServiceTransferConversationProcedure: {want: holderOfA, call: func(w *world, c *parley.Client) error {
		_, err := c.Routing.TransferConversation(w.ctx, &parleyv1.TransferConversationRequest{
			ConversationId: w.convA, RequestId: uuid.NewString(),
			Target: &parleyv1.TransferConversationRequest_QueueId{QueueId: w.queueID},
		})
		return err
	}},
	parleyv1connect.RoutingServiceListAssignedConversationsProcedure: {want: agentsOnly, call: func(w *world, c *parley.Client) error {
		_, err := c.Routing.ListAssignedConversations(w.ctx, &parleyv1.ListAssignedConversationsRequest{})
		return err
	}},
	parleyv1connect.RoutingServiceListQueuedConversationsProcedure: {want: staffOnly, call: func(w *world, c *parley.Client) error {
		_, err := c.Routing.ListQueuedConversations(w.ctx, &parleyv1.ListQueuedConversationsRequest{})
		return err
	}},
	parleyv1connect.RoutingServiceCreateQueueProcedure: {want: adminsOnly, call: func(w *world, c *parley.Client) error {
		_, err := c.Routing.CreateQueue(w.ctx, &parleyv1.CreateQueueRequest{DisplayName: "Q " + uuid.NewString()[:8]})
		return err
	}},
	parleyv1connect.RoutingServiceListQueuesProcedure: {want: staffOnly, call: func(w *world, c *parley.Client) error {
		_, err := c.Routing.ListQueues(w.ctx, &parleyv1.ListQueuesRequest{})
		return err
	}},
	parleyv1connect.RoutingServiceCreateMatchingRuleProcedure: {want: adminsOnly, call: func(w *world, c *parley.Client) error {
		_, err := c.Routing.CreateMatchingRule(w.ctx, &parleyv1.CreateMatchingRuleRequest{
			DisplayName: "Rule", Order: 900, QueueId: w.queueID,
			Condition: &parleyv1.Condition{Kind: &parleyv1.Condition_FieldIn{FieldIn: &parleyv1.FieldIn{Field: "issue_type", Values: []string{"billing"}}}},
		})
		return err
	}},
	parleyv1connect.RoutingServiceListMatchingRulesProcedure: {want: adminsOnly, call: func(w *world, c *parley.Client) error {
		_, err := c.Routing.ListMatchingRules(w.ctx, &parleyv1.ListMatchingRulesRequest{})
		return err
	}},
	parleyv1connect.RoutingServiceDeleteMatchingRuleProcedure: {want: adminsOnly, call: func(w *world, c *parley.Client) error {
		_, err := c.Routing.DeleteMatchingRule(w.ctx, &parleyv1.DeleteMatchingRuleRequest{RuleId: w.ruleID})
		return err
	}},
	parleyv1connect.RoutingServiceCreateAgentProcedure: {want: adminsOnly, call: func(w *world, c *parley.Client) error {
		_, err := c.Routing.CreateAgent(w.ctx, &parleyv1.CreateAgentRequest{DisplayName: "New Agent"})
		return err
	}},
	parleyv1connect.RoutingServiceListAgentsProcedure: {want: overseersOnly, call: func(w *world, c *parley.Client) error {
		_, err := c.Routing.ListAgents(w.ctx, &parleyv1.ListAgentsRequest{})
		return err
	}},
	parleyv1connect.RoutingServiceListAgentDirectoryProcedure: {want: staffOnly, call: func(w *world, c *parley.Client) error {
		_, err := c.Routing.ListAgentDirectory(w.ctx, &parleyv1.ListAgentDirectoryRequest{})
		return err
	}},
	parleyv1connect.RoutingServiceUpdateQueueProcedure: {want: adminsOnly, call: func(w *world, c *parley.Client) error {
		_, err := c.Routing.UpdateQueue(w.ctx, &parleyv1.UpdateQueueRequest{QueueId: w.queueID, DisplayName: "Billing Support",
			Policy: &parleyv1.QueuePolicy{Priority: 5}})
		return err
	}},
	parleyv1connect.RoutingServiceUpdateMatchingRuleProcedure: {want: adminsOnly, call: func(w *world, c *parley.Client) error {
		_, err := c.Routing.UpdateMatchingRule(w.ctx, &parleyv1.UpdateMatchingRuleRequest{RuleId: w.ruleID, DisplayName: "Renamed",
			Order: w.rule.GetOrder(), QueueId: w.rule.GetQueueId(), Condition: w.rule.GetCondition()})
		return err
	}},
	parleyv1connect.RoutingServiceUpdateAgentProcedure: {want: adminsOnly, call: func(w *world, c *parley.Client) error {
		_, err := c.Routing.UpdateAgent(w.ctx, &parleyv1.UpdateAgentRequest{AgentId: w.abel.GetId(), DisplayName: w.abel.GetDisplayName(),
			Capacity: w.abel.GetCapacity(), QueueIds: w.abel.GetQueueIds(), Skills: []string{"french"}})
		return err
	}},
	parleyv1connect.RoutingServiceListQueueStatusesProcedure: {want: overseersOnly, call: func(w *world, c *parley.Client) error {
		_, err := c.Routing.ListQueueStatuses(w.ctx, &parleyv1.ListQueueStatusesRequest{})
		return err
	}},
	parleyv1connect.RoutingServiceWatchQueueStatusesProcedure: {want: overseersOnly, call: func(w *world, c *parley.Client) error {
		return firstOf(c.Routing.WatchQueueStatuses(w.ctx, &parleyv1.WatchQueueStatusesRequest{}))
	}},

	parleyv1connect.CaseServiceCreateCaseForGuestProcedure: {want: holderOfA, call: func(w *world, c *parley.Client) error {
		_, err := c.Cases.CreateCaseForGuest(w.ctx, &parleyv1.CreateCaseForGuestRequest{ConversationId: w.convA, RequestId: uuid.NewString()})
		return err
	}},
	parleyv1connect.CaseServiceCreateConsumerAndCaseForGuestProcedure: {want: holderOfA, call: func(w *world, c *parley.Client) error {
		_, err := c.Cases.CreateConsumerAndCaseForGuest(w.ctx, &parleyv1.CreateConsumerAndCaseForGuestRequest{ConversationId: w.convA, RequestId: uuid.NewString()})
		return err
	}},
	// A case the caller may not see is reported as not found.
	parleyv1connect.CaseServiceGetCaseProcedure: {want: "UDDDNOOO", call: func(w *world, c *parley.Client) error {
		_, err := c.Cases.GetCase(w.ctx, &parleyv1.GetCaseRequest{CaseId: w.caseA()})
		return err
	}},

	// Every member of staff lists the cases it may read (none, for Abel).
	parleyv1connect.CaseServiceListCasesProcedure: {want: staffOnly, call: func(w *world, c *parley.Client) error {
		w.caseA()
		_, err := c.Cases.ListCases(w.ctx, &parleyv1.ListCasesRequest{})
		return err
	}},
	// Supervisors read cases but do not change them.
	parleyv1connect.CaseServiceUpdateCaseProcedure: {want: "UDDDNODO", call: func(w *world, c *parley.Client) error {
		_, err := c.Cases.UpdateCase(w.ctx, &parleyv1.UpdateCaseRequest{
			Case:       &parleyv1.Case{Id: w.caseA(), State: parleyv1.CaseState_CASE_STATE_IN_PROGRESS},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"state"}},
		})
		return err
	}},

	parleyv1connect.AccessServiceIssueTokenProcedure: {want: adminsOnly, call: func(w *world, c *parley.Client) error {
		_, err := c.Access.IssueToken(w.ctx, &parleyv1.IssueTokenRequest{Role: parleyv1.StaffRole_STAFF_ROLE_ADMIN, Label: "second admin"})
		return err
	}},
	parleyv1connect.AccessServiceRevokeTokenProcedure: {want: adminsOnly, call: func(w *world, c *parley.Client) error {
		_, err := c.Access.RevokeToken(w.ctx, &parleyv1.RevokeTokenRequest{TokenId: w.fredTok})
		return err
	}},
	parleyv1connect.AccessServiceListTokensProcedure: {want: adminsOnly, call: func(w *world, c *parley.Client) error {
		_, err := c.Access.ListTokens(w.ctx, &parleyv1.ListTokensRequest{})
		return err
	}},
	parleyv1connect.AccessServiceCreateSiteProcedure: {want: adminsOnly, call: func(w *world, c *parley.Client) error {
		_, err := c.Access.CreateSite(w.ctx, &parleyv1.CreateSiteRequest{Site: &parleyv1.Site{DisplayName: "Blog", AllowedOrigins: []string{"https://blog.example.com"}}})
		return err
	}},
	parleyv1connect.AccessServiceUpdateSiteProcedure: {want: adminsOnly, call: func(w *world, c *parley.Client) error {
		_, err := c.Access.UpdateSite(w.ctx, &parleyv1.UpdateSiteRequest{Site: &parleyv1.Site{
			Id: w.siteID, DisplayName: "Shop", AllowedOrigins: []string{"https://shop.example.com", "https://www.shop.example.com"},
		}})
		return err
	}},
	parleyv1connect.AccessServiceListSitesProcedure: {want: adminsOnly, call: func(w *world, c *parley.Client) error {
		_, err := c.Access.ListSites(w.ctx, &parleyv1.ListSitesRequest{})
		return err
	}},
	parleyv1connect.KnowledgeServiceImportArticlesProcedure: {want: adminsOnly, call: func(w *world, c *parley.Client) error {
		_, err := c.Knowledge.ImportArticles(w.ctx, &parleyv1.ImportArticlesRequest{Articles: []*parleyv1.Article{matrixArticle}})
		return err
	}},
	parleyv1connect.KnowledgeServiceSearchKnowledgeProcedure: {want: staffOnly, call: func(w *world, c *parley.Client) error {
		_, err := c.Knowledge.SearchKnowledge(w.ctx, &parleyv1.SearchKnowledgeRequest{Query: "matrix"})
		return err
	}},
	parleyv1connect.KnowledgeServiceGetArticleProcedure: {want: staffOnly, call: func(w *world, c *parley.Client) error {
		_, err := c.Knowledge.GetArticle(w.ctx, &parleyv1.GetArticleRequest{ArticleId: importArticle(w)})
		return err
	}},
	parleyv1connect.KnowledgeServiceListArticlesProcedure: {want: staffOnly, call: func(w *world, c *parley.Client) error {
		_, err := c.Knowledge.ListArticles(w.ctx, &parleyv1.ListArticlesRequest{})
		return err
	}},
	parleyv1connect.KnowledgeServiceDeleteArticleProcedure: {want: adminsOnly, call: func(w *world, c *parley.Client) error {
		_, err := c.Knowledge.DeleteArticle(w.ctx, &parleyv1.DeleteArticleRequest{ArticleId: importArticle(w)})
		return err
	}},
	parleyv1connect.AssistantServiceGetBotConfigProcedure: {want: adminsOnly, call: func(w *world, c *parley.Client) error {
		_, err := c.Assistant.GetBotConfig(w.ctx, &parleyv1.GetBotConfigRequest{})
		return err
	}},
	parleyv1connect.AssistantServiceUpdateBotConfigProcedure: {want: adminsOnly, call: func(w *world, c *parley.Client) error {
		cur, err := w.srv.Client(parley.Connect, servertest.AdminToken).Assistant.GetBotConfig(w.ctx, &parleyv1.GetBotConfigRequest{})
		must(w.t, err)
		_, err = c.Assistant.UpdateBotConfig(w.ctx, &parleyv1.UpdateBotConfigRequest{Yaml: cur.GetYaml()})
		return err
	}},
	parleyv1connect.AssistantServiceListTopicsProcedure: {want: staffOnly, call: func(w *world, c *parley.Client) error {
		_, err := c.Assistant.ListTopics(w.ctx, &parleyv1.ListTopicsRequest{})
		return err
	}},
	parleyv1connect.AssistantServiceGetConversationContextProcedure: {want: "UDDDDOOO", call: func(w *world, c *parley.Client) error {
		_, err := c.Assistant.GetConversationContext(w.ctx, &parleyv1.GetConversationContextRequest{ConversationId: w.convA})
		return err
	}},
	parleyv1connect.AssistantServiceHandBackToBotProcedure: {want: holderOfA, fresh: true, call: func(w *world, c *parley.Client) error {
		_, err := c.Assistant.HandBackToBot(w.ctx, &parleyv1.HandBackToBotRequest{ConversationId: w.convA})
		return err
	}},
}

// TestAccessMatrix calls every RPC of every service as every kind of
// caller and checks the code each gets. It fails when an RPC is served
// without a row here, so a new RPC cannot ship without saying who may
// call it.
func TestAccessMatrix(t *testing.T) {
	srv := servertest.Start(t)
	reflection := "/" + grpcreflect.ReflectV1ServiceName + "/"
	reflectionAlpha := "/" + grpcreflect.ReflectV1AlphaServiceName + "/"
	for spec := range srv.App.Server.Specs() {
		if strings.HasPrefix(spec.Procedure, reflection) || strings.HasPrefix(spec.Procedure, reflectionAlpha) {
			continue
		}
		if _, ok := matrix[spec.Procedure]; !ok {
			t.Errorf("%s has no row in the access matrix: add one saying what each caller gets", spec.Procedure)
		}
	}
	srv.Stop() // each row calls a world of its own
	for procedure, row := range matrix {
		t.Run(strings.TrimPrefix(procedure, "/parley.v1."), func(t *testing.T) {
			t.Parallel()
			want := codes(row.want)
			var w *world
			for who := range callerCount {
				if w == nil || row.fresh {
					if w != nil {
						// Its database's connections go back before the
						// next world takes its own.
						w.srv.Stop()
					}
					w = newWorld(t)
				}
				err := row.call(w, w.srv.Client(parley.Connect, w.tokens[who]))
				if got := connect.CodeOf(err); err == nil && want[who] != 0 || err != nil && got != want[who] {
					t.Errorf("as %s: got %v, want %s", callerNames[who], err, codeName(want[who]))
				}
			}
		})
	}
}

func codeName(c connect.Code) string {
	if c == 0 {
		return "ok"
	}
	return c.String()
}
