package cases_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/parleyhq/parley/clients/go/parley"
	"github.com/parleyhq/parley/ent/offer"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/servertest"
)

// desk is a server where Beth takes order chats and Fred product chats
// (Abel, who shares both queues, stays offline).
type desk struct {
	t     *testing.T
	ctx   context.Context
	srv   *servertest.Server
	beth  *parley.Client
	fred  *parley.Client
	admin *parley.Client
}

func newDesk(t *testing.T) *desk {
	t.Helper()
	srv := servertest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	d := &desk{t: t, ctx: ctx, srv: srv,
		beth:  srv.Client(parley.Connect, servertest.BethToken),
		fred:  srv.Client(parley.Connect, servertest.FredToken),
		admin: srv.Client(parley.Connect, servertest.AdminToken),
	}
	for _, a := range []*parley.Client{d.beth, d.fred} {
		if _, err := a.Routing.SetPresence(ctx, &parleyv1.SetPresenceRequest{Presence: parleyv1.Presence_PRESENCE_AVAILABLE}); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// guestChat starts a guest chat about issue ("order" for Beth, "product"
// for Fred) and has agent accept it; it returns the conversation id.
func (d *desk) guestChat(agent *parley.Client, issue string) string {
	d.t.Helper()
	started, err := d.srv.Client(parley.Connect, "").Session.StartGuestChat(d.ctx, &parleyv1.StartGuestChatRequest{
		RequestId: uuid.NewString(), Name: "Ada", Email: "ada@example.com", IssueType: issue,
	})
	if err != nil {
		d.t.Fatal(err)
	}
	id := started.GetConversation().GetId()
	d.accept(agent, id)
	return id
}

// accept dispatches conversation id and has agent accept its offer.
func (d *desk) accept(agent *parley.Client, id string) {
	d.t.Helper()
	if err := d.srv.App.Dispatch(d.ctx); err != nil {
		d.t.Fatal(err)
	}
	o, err := d.srv.DB.Offer.Query().Where(offer.ConversationID(uuid.MustParse(id)), offer.StateEQ(offer.StatePending)).Only(d.ctx)
	if err != nil {
		d.t.Fatalf("no pending offer for %s: %v", id, err)
	}
	if _, err := agent.Routing.AcceptOffer(d.ctx, &parleyv1.AcceptOfferRequest{OfferId: o.ID.String()}); err != nil {
		d.t.Fatal(err)
	}
}

// openCase has agent open a case on conversation id.
func (d *desk) openCase(agent *parley.Client, id, description string) *parleyv1.Case {
	d.t.Helper()
	resp, err := agent.Cases.CreateCaseForGuest(d.ctx, &parleyv1.CreateCaseForGuestRequest{
		ConversationId: id, RequestId: uuid.NewString(), ShortDescription: description,
	})
	if err != nil {
		d.t.Fatal(err)
	}
	return resp.GetCase()
}

// list returns the numbers of the cases a list call returns, and its error.
func list(ctx context.Context, c *parley.Client, req *parleyv1.ListCasesRequest) ([]string, error) {
	resp, err := c.Cases.ListCases(ctx, req)
	var numbers []string
	for _, c := range resp.GetCases() {
		numbers = append(numbers, c.GetNumber())
	}
	return numbers, err
}

func (d *desk) mustList(c *parley.Client, req *parleyv1.ListCasesRequest) []string {
	d.t.Helper()
	numbers, err := list(d.ctx, c, req)
	if err != nil {
		d.t.Fatal(err)
	}
	return numbers
}

func update(ctx context.Context, c *parley.Client, in *parleyv1.Case, paths ...string) (*parleyv1.Case, error) {
	resp, err := c.Cases.UpdateCase(ctx, &parleyv1.UpdateCaseRequest{Case: in, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}})
	return resp.GetCase(), err
}

func TestListCasesFiltersAndAccess(t *testing.T) {
	d := newDesk(t)
	bethConv := d.guestChat(d.beth, "order")
	b1 := d.openCase(d.beth, bethConv, "Parcel lost")
	b2 := d.openCase(d.beth, bethConv, "Refund for the parcel")
	fredConv := d.guestChat(d.fred, "product")
	f1 := d.openCase(d.fred, fredConv, "Blender is noisy")

	if b1.GetState() != parleyv1.CaseState_CASE_STATE_NEW || b1.GetUpdateTime() == nil ||
		!b1.GetUpdateTime().AsTime().Equal(b1.GetCreateTime().AsTime()) || b1.GetAssignedAgentId() != "" {
		t.Fatalf("a new case: %v", b1)
	}

	// Newest first; each agent sees its own conversation's cases, the
	// admin every case.
	if got, want := d.mustList(d.beth, &parleyv1.ListCasesRequest{}), []string{b2.GetNumber(), b1.GetNumber()}; !slices.Equal(got, want) {
		t.Errorf("Beth lists %v, want %v", got, want)
	}
	if got, want := d.mustList(d.fred, &parleyv1.ListCasesRequest{}), []string{f1.GetNumber()}; !slices.Equal(got, want) {
		t.Errorf("Fred lists %v, want %v", got, want)
	}
	all := []string{f1.GetNumber(), b2.GetNumber(), b1.GetNumber()}
	if got := d.mustList(d.admin, &parleyv1.ListCasesRequest{}); !slices.Equal(got, all) {
		t.Errorf("the admin lists %v, want %v", got, all)
	}
	// A filter never widens what an agent sees.
	if got := d.mustList(d.fred, &parleyv1.ListCasesRequest{ConversationId: bethConv}); len(got) != 0 {
		t.Errorf("Fred lists Beth's conversation's cases %v", got)
	}
	if got, want := d.mustList(d.admin, &parleyv1.ListCasesRequest{ConversationId: fredConv}), []string{f1.GetNumber()}; !slices.Equal(got, want) {
		t.Errorf("by conversation: %v, want %v", got, want)
	}
	// Another agent's case is hidden from GetCase and UpdateCase alike.
	if _, err := d.fred.Cases.GetCase(d.ctx, &parleyv1.GetCaseRequest{CaseId: b1.GetId()}); connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("Fred reads Beth's case: %v", err)
	}
	b1.ShortDescription = "Fred was here"
	if _, err := update(d.ctx, d.fred, b1, "short_description"); connect.CodeOf(err) != connect.CodeNotFound || apierr.Reason(err) != "CASE_NOT_FOUND" {
		t.Errorf("Fred updates Beth's case: %v", err)
	}
	if _, err := update(d.ctx, d.fred, &parleyv1.Case{Id: uuid.NewString(), ShortDescription: "x"}, "short_description"); connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("a case that does not exist: %v", err)
	}

	// Assigned to Fred, Beth's case is his to read and list; filters by
	// state and assignee combine with AND.
	fredID := agentID(t, d, "Fred Luddy")
	b1.AssignedAgentId, b1.State = fredID, parleyv1.CaseState_CASE_STATE_IN_PROGRESS
	if _, err := update(d.ctx, d.beth, b1, "assigned_agent_id", "state"); err != nil {
		t.Fatal(err)
	}
	if got, want := d.mustList(d.fred, &parleyv1.ListCasesRequest{}), []string{f1.GetNumber(), b1.GetNumber()}; !slices.Equal(got, want) {
		t.Errorf("Fred lists %v after the assignment, want %v", got, want)
	}
	if _, err := d.fred.Cases.GetCase(d.ctx, &parleyv1.GetCaseRequest{CaseId: b1.GetId()}); err != nil {
		t.Errorf("Fred reads the case assigned to him: %v", err)
	}
	for _, tc := range []struct {
		name string
		req  *parleyv1.ListCasesRequest
		want []string
	}{
		{"assignee", &parleyv1.ListCasesRequest{AssignedAgentId: fredID}, []string{b1.GetNumber()}},
		{"state", &parleyv1.ListCasesRequest{States: []parleyv1.CaseState{parleyv1.CaseState_CASE_STATE_NEW}}, []string{f1.GetNumber(), b2.GetNumber()}},
		{"states", &parleyv1.ListCasesRequest{States: []parleyv1.CaseState{parleyv1.CaseState_CASE_STATE_IN_PROGRESS, parleyv1.CaseState_CASE_STATE_CLOSED}}, []string{b1.GetNumber()}},
		{"conversation and state", &parleyv1.ListCasesRequest{ConversationId: bethConv, States: []parleyv1.CaseState{parleyv1.CaseState_CASE_STATE_NEW}}, []string{b2.GetNumber()}},
		{"assignee and state", &parleyv1.ListCasesRequest{AssignedAgentId: fredID, States: []parleyv1.CaseState{parleyv1.CaseState_CASE_STATE_NEW}}, nil},
	} {
		if got := d.mustList(d.admin, tc.req); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}

	// Refusals.
	for name, req := range map[string]*parleyv1.ListCasesRequest{
		"negative page size": {PageSize: -1},
		"bad consumer id":    {ConsumerId: "nope"},
		"unspecified state":  {States: []parleyv1.CaseState{parleyv1.CaseState_CASE_STATE_UNSPECIFIED}},
		"foreign page token": {PageToken: "bm90IGEgdG9rZW4"},
	} {
		if _, err := list(d.ctx, d.admin, req); connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
	for name, token := range map[string]string{"guest": "", "customer": d.srv.CustomerToken(t, "c-9", "Cy", "")} {
		if _, err := list(d.ctx, d.srv.Client(parley.Connect, token), &parleyv1.ListCasesRequest{}); err == nil {
			t.Errorf("a %s lists cases", name)
		}
	}
}

func agentID(t *testing.T, d *desk, name string) string {
	t.Helper()
	agents, err := d.admin.Routing.ListAgents(d.ctx, &parleyv1.ListAgentsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range agents.GetAgents() {
		if a.GetDisplayName() == name {
			return a.GetId()
		}
	}
	t.Fatalf("no agent %s", name)
	return ""
}

func TestListCasesPages(t *testing.T) {
	d := newDesk(t)
	conv := d.guestChat(d.beth, "order")
	var want []string
	for i := range 7 {
		want = append([]string{d.openCase(d.beth, conv, fmt.Sprintf("case %d", i)).GetNumber()}, want...)
	}
	filter := &parleyv1.ListCasesRequest{ConversationId: conv, PageSize: 3}
	var got []string
	var pages int
	for {
		resp, err := d.beth.Cases.ListCases(d.ctx, filter)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, c := range resp.GetCases() {
			got = append(got, c.GetNumber())
		}
		if resp.GetNextPageToken() == "" {
			break
		}
		if pages == 1 {
			// A token is bound to the filters it was issued for.
			other := &parleyv1.ListCasesRequest{PageSize: 3, PageToken: resp.GetNextPageToken()}
			if _, err := list(d.ctx, d.beth, other); connect.CodeOf(err) != connect.CodeInvalidArgument {
				t.Errorf("a token with other filters: %v", err)
			}
		}
		filter.PageToken = resp.GetNextPageToken()
	}
	if pages != 3 || !slices.Equal(got, want) {
		t.Fatalf("%d pages %v, want 3 pages %v", pages, got, want)
	}
	if got := d.mustList(d.beth, &parleyv1.ListCasesRequest{ConversationId: conv}); !slices.Equal(got, want) {
		t.Errorf("page size 0 (50): %v", got)
	}
}

func TestReturningCustomerCases(t *testing.T) {
	d := newDesk(t)
	customer := d.srv.Client(parley.Connect, d.srv.CustomerToken(t, "cust-7", "Carla", "carla@example.com"))
	start := func(issue string) string {
		resp, err := customer.Session.StartCustomerChat(d.ctx, &parleyv1.StartCustomerChatRequest{RequestId: uuid.NewString(), IssueType: issue})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetConversation().GetId()
	}
	first := start("order")
	d.accept(d.beth, first)
	old := d.openCase(d.beth, first, "Wrong size delivered")
	if old.GetConsumerId() == "" {
		t.Fatalf("a case on a signed-in customer's chat has no consumer: %v", old)
	}
	if _, err := d.beth.Session.CloseConversation(d.ctx, &parleyv1.CloseConversationRequest{ConversationId: first}); err != nil {
		t.Fatal(err)
	}
	byConsumer := &parleyv1.ListCasesRequest{ConsumerId: old.GetConsumerId()}
	if got := d.mustList(d.fred, byConsumer); len(got) != 0 {
		t.Fatalf("Fred lists %v before the customer comes back", got)
	}

	// Carla comes back about a product; Fred, holding her chat, sees her
	// earlier case, with its transcript.
	second := start("product")
	d.accept(d.fred, second)
	if got, want := d.mustList(d.fred, byConsumer), []string{old.GetNumber()}; !slices.Equal(got, want) {
		t.Fatalf("Fred lists %v while holding Carla's chat, want %v", got, want)
	}
	got, err := d.fred.Cases.GetCase(d.ctx, &parleyv1.GetCaseRequest{CaseId: old.GetId()})
	if err != nil {
		t.Fatalf("Fred reads Carla's earlier case: %v", err)
	}
	if got.GetConsumer().GetId() != old.GetConsumerId() {
		t.Errorf("consumer %v, want %s", got.GetConsumer(), old.GetConsumerId())
	}
	// Once the chat is closed, the earlier case is no longer Fred's to see.
	if _, err := d.fred.Session.CloseConversation(d.ctx, &parleyv1.CloseConversationRequest{ConversationId: second}); err != nil {
		t.Fatal(err)
	}
	if got := d.mustList(d.fred, byConsumer); len(got) != 0 {
		t.Errorf("Fred lists %v after closing Carla's chat", got)
	}
	if _, err := d.fred.Cases.GetCase(d.ctx, &parleyv1.GetCaseRequest{CaseId: old.GetId()}); connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("Fred reads Carla's earlier case after closing her chat: %v", err)
	}
}

func TestUpdateCase(t *testing.T) {
	d := newDesk(t)
	conv := d.guestChat(d.beth, "order")
	c := d.openCase(d.beth, conv, "Parcel lost")
	fredID, bethID := agentID(t, d, "Fred Luddy"), agentID(t, d, "Beth Anglin")

	// Each field on its own; update_time moves with every change.
	last := c.GetUpdateTime().AsTime()
	for _, tc := range []struct {
		path string
		set  func(*parleyv1.Case)
		want func(*parleyv1.Case) bool
	}{
		{"state", func(c *parleyv1.Case) { c.State = parleyv1.CaseState_CASE_STATE_ON_HOLD },
			func(c *parleyv1.Case) bool { return c.GetState() == parleyv1.CaseState_CASE_STATE_ON_HOLD }},
		{"short_description", func(c *parleyv1.Case) { c.ShortDescription = "Parcel found, damaged" },
			func(c *parleyv1.Case) bool { return c.GetShortDescription() == "Parcel found, damaged" }},
		{"assigned_agent_id", func(c *parleyv1.Case) { c.AssignedAgentId = bethID },
			func(c *parleyv1.Case) bool { return c.GetAssignedAgentId() == bethID }},
		{"assigned_agent_id", func(c *parleyv1.Case) { c.AssignedAgentId = "" },
			func(c *parleyv1.Case) bool { return c.GetAssignedAgentId() == "" }},
	} {
		// Only the masked field is taken from the request.
		in := &parleyv1.Case{Id: c.GetId(), State: parleyv1.CaseState_CASE_STATE_RESOLVED, ShortDescription: "ignored", AssignedAgentId: fredID}
		tc.set(in)
		before := c
		got, err := update(d.ctx, d.beth, in, tc.path)
		if err != nil {
			t.Fatalf("%s: %v", tc.path, err)
		}
		if !tc.want(got) {
			t.Fatalf("%s not set: %v", tc.path, got)
		}
		for path, same := range map[string]bool{
			"state":             got.GetState() == before.GetState(),
			"short_description": got.GetShortDescription() == before.GetShortDescription(),
			"assigned_agent_id": got.GetAssignedAgentId() == before.GetAssignedAgentId(),
		} {
			if path != tc.path && !same {
				t.Fatalf("updating %s changed %s: %v then %v", tc.path, path, before, got)
			}
		}
		if !got.GetUpdateTime().AsTime().After(last) {
			t.Errorf("%s: update_time %v did not move on from %v", tc.path, got.GetUpdateTime().AsTime(), last)
		}
		last = got.GetUpdateTime().AsTime()
		c = got
	}
	// Setting what is already there changes nothing, update_time included.
	same, err := update(d.ctx, d.beth, &parleyv1.Case{Id: c.GetId(), State: c.GetState(), ShortDescription: c.GetShortDescription()}, "state", "short_description", "assigned_agent_id")
	if err != nil {
		t.Fatal(err)
	}
	if !same.GetUpdateTime().AsTime().Equal(last) {
		t.Errorf("a no-op update moved update_time from %v to %v", last, same.GetUpdateTime().AsTime())
	}
	// GetCase shows what UpdateCase wrote.
	read, err := d.beth.Cases.GetCase(d.ctx, &parleyv1.GetCaseRequest{CaseId: c.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if read.GetCase().GetShortDescription() != "Parcel found, damaged" || read.GetCase().GetState() != parleyv1.CaseState_CASE_STATE_ON_HOLD ||
		!read.GetCase().GetUpdateTime().AsTime().Equal(last) {
		t.Errorf("GetCase after the updates: %v", read.GetCase())
	}

	// Refusals name what is wrong.
	for _, tc := range []struct {
		name  string
		in    *parleyv1.Case
		paths []string
		code  connect.Code
		says  string
	}{
		{"empty mask", &parleyv1.Case{Id: c.GetId()}, nil, connect.CodeInvalidArgument, "names no field"},
		{"unknown path", &parleyv1.Case{Id: c.GetId()}, []string{"state", "number"}, connect.CodeInvalidArgument, `"number"`},
		{"immutable path", &parleyv1.Case{Id: c.GetId()}, []string{"conversation_id"}, connect.CodeInvalidArgument, `"conversation_id"`},
		{"unspecified state", &parleyv1.Case{Id: c.GetId()}, []string{"state"}, connect.CodeInvalidArgument, "state"},
		{"empty description", &parleyv1.Case{Id: c.GetId()}, []string{"short_description"}, connect.CodeInvalidArgument, "short_description"},
		{"long description", &parleyv1.Case{Id: c.GetId(), ShortDescription: strings.Repeat("é", 501)}, []string{"short_description"}, connect.CodeInvalidArgument, "short_description"},
		{"unknown agent", &parleyv1.Case{Id: c.GetId(), AssignedAgentId: uuid.NewString()}, []string{"assigned_agent_id"}, connect.CodeInvalidArgument, "no agent"},
		{"malformed agent", &parleyv1.Case{Id: c.GetId(), AssignedAgentId: "fred"}, []string{"assigned_agent_id"}, connect.CodeInvalidArgument, "not an agent id"},
	} {
		_, err := update(d.ctx, d.beth, tc.in, tc.paths...)
		if connect.CodeOf(err) != tc.code || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v, want %v saying %q", tc.name, err, tc.code, tc.says)
		}
	}
	if _, err := update(d.ctx, d.beth, &parleyv1.Case{Id: c.GetId(), ShortDescription: strings.Repeat("é", 500)}, "short_description"); err != nil {
		t.Errorf("500 characters: %v", err)
	}

	// Closed is final, for the admin too.
	closed, err := update(d.ctx, d.admin, &parleyv1.Case{Id: c.GetId(), State: parleyv1.CaseState_CASE_STATE_CLOSED}, "state")
	if err != nil || closed.GetState() != parleyv1.CaseState_CASE_STATE_CLOSED {
		t.Fatalf("close: %v %v", closed, err)
	}
	for _, who := range []*parley.Client{d.beth, d.admin} {
		for _, path := range []string{"state", "short_description", "assigned_agent_id"} {
			in := &parleyv1.Case{Id: c.GetId(), State: parleyv1.CaseState_CASE_STATE_IN_PROGRESS, ShortDescription: "reopened", AssignedAgentId: fredID}
			if _, err := update(d.ctx, who, in, path); connect.CodeOf(err) != connect.CodeFailedPrecondition || apierr.Reason(err) != "CASE_CLOSED" {
				t.Errorf("changing %s of a closed case: %v", path, err)
			}
		}
	}
	// Supervisors read cases but do not change them.
	sup, err := d.admin.Access.IssueToken(d.ctx, &parleyv1.IssueTokenRequest{Role: parleyv1.StaffRole_STAFF_ROLE_SUPERVISOR, Label: "cases"})
	if err != nil {
		t.Fatal(err)
	}
	supervisor := d.srv.Client(parley.Connect, sup.GetToken())
	if got := d.mustList(supervisor, &parleyv1.ListCasesRequest{}); !slices.Equal(got, []string{c.GetNumber()}) {
		t.Errorf("the supervisor lists %v", got)
	}
	if _, err := update(d.ctx, supervisor, &parleyv1.Case{Id: c.GetId(), ShortDescription: "x"}, "short_description"); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("a supervisor updates: %v", err)
	}
}

// TestConcurrentUpdates races updates of one case against its closing:
// every update lands before the close or is refused after it, and the
// case ends closed with one of the descriptions.
func TestConcurrentUpdates(t *testing.T) {
	d := newDesk(t)
	conv := d.guestChat(d.beth, "order")
	c := d.openCase(d.beth, conv, "Parcel lost")
	const writers = 8
	var wg sync.WaitGroup
	errs := make([]error, writers+1)
	for i := range writers {
		wg.Go(func() {
			_, errs[i] = update(d.ctx, d.beth, &parleyv1.Case{Id: c.GetId(), ShortDescription: fmt.Sprintf("writer %d", i)}, "short_description")
		})
	}
	wg.Go(func() {
		_, errs[writers] = update(d.ctx, d.admin, &parleyv1.Case{Id: c.GetId(), State: parleyv1.CaseState_CASE_STATE_CLOSED}, "state")
	})
	wg.Wait()
	if errs[writers] != nil {
		t.Fatalf("close: %v", errs[writers])
	}
	var landed []string
	for i, err := range errs[:writers] {
		switch {
		case err == nil:
			landed = append(landed, fmt.Sprintf("writer %d", i))
		case apierr.Reason(err) != "CASE_CLOSED":
			t.Errorf("writer %d: %v", i, err)
		}
	}
	got, err := d.admin.Cases.GetCase(d.ctx, &parleyv1.GetCaseRequest{CaseId: c.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	final := got.GetCase()
	if final.GetState() != parleyv1.CaseState_CASE_STATE_CLOSED {
		t.Fatalf("state %v, want closed", final.GetState())
	}
	if len(landed) == 0 && final.GetShortDescription() != "Parcel lost" || len(landed) > 0 && !slices.Contains(landed, final.GetShortDescription()) {
		t.Fatalf("description %q; the writers that landed: %v", final.GetShortDescription(), landed)
	}
}
