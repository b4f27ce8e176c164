package routing_test

import (
	"slices"
	"testing"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/parleyhq/parley/clients/go/parley"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/servertest"
)

// directory lists every page of c's agent directory for channel, by name.
func (r *rig) directory(c *parley.Client, channel parleyv1.Channel) map[string]*parleyv1.AgentDirectoryEntry {
	r.t.Helper()
	out := map[string]*parleyv1.AgentDirectoryEntry{}
	token := ""
	for {
		resp, err := c.Routing.ListAgentDirectory(r.ctx, &parleyv1.ListAgentDirectoryRequest{Channel: channel, PageToken: token})
		must(r.t, err)
		for _, e := range resp.GetAgents() {
			out[e.GetDisplayName()] = e
		}
		if token = resp.GetNextPageToken(); token == "" {
			return out
		}
	}
}

// wantEntry fails unless the directory lists name with presence and free.
func wantEntry(t *testing.T, dir map[string]*parleyv1.AgentDirectoryEntry, name string, presence parleyv1.Presence, free int32) {
	t.Helper()
	e, ok := dir[name]
	if !ok {
		t.Fatalf("%s is not in the directory", name)
	}
	if e.GetPresence() != presence || e.GetFreeCapacity() != free {
		t.Fatalf("%s: %s with free capacity %d, want %s with %d", name, e.GetPresence(), e.GetFreeCapacity(), presence, free)
	}
}

// TestAgentDirectory: an agent sees every other agent with their presence,
// free capacity and queues, and nothing more; presence and free capacity
// follow SetPresence, offers and accepts, per channel and overall; an
// agent the directory shows with free capacity on a chat's channel can be
// transferred the chat, and one shown without cannot.
func TestAgentDirectory(t *testing.T) {
	r := newRig(t)
	beth := r.srv.Client(parley.Connect, servertest.BethToken)
	fred := r.srv.Client(parley.Connect, servertest.FredToken)
	abel := r.srv.Client(parley.Connect, servertest.AbelToken)
	web := parleyv1.Channel_CHANNEL_WEB_PORTAL
	overall := parleyv1.Channel_CHANNEL_UNSPECIFIED
	available, away, offline := parleyv1.Presence_PRESENCE_AVAILABLE, parleyv1.Presence_PRESENCE_AWAY, parleyv1.Presence_PRESENCE_OFFLINE

	// The directory holds what choosing a transfer target needs, and no
	// skills, tokens, contact details, capacities or load.
	fields := func(md protoreflect.MessageDescriptor) []string {
		var names []string
		for i := range md.Fields().Len() {
			names = append(names, string(md.Fields().Get(i).Name()))
		}
		return names
	}
	if got := fields((&parleyv1.AgentDirectoryEntry{}).ProtoReflect().Descriptor()); !slices.Equal(got, []string{"id", "display_name", "presence", "free_capacity", "queues"}) {
		t.Fatalf("AgentDirectoryEntry has fields %v", got)
	}
	if got := fields((&parleyv1.AgentDirectoryQueue{}).ProtoReflect().Descriptor()); !slices.Equal(got, []string{"id", "display_name"}) {
		t.Fatalf("AgentDirectoryQueue has fields %v", got)
	}

	// Everyone starts offline. Beth sees the two others, not herself, with
	// their queues by name.
	dir := r.directory(beth, overall)
	if len(dir) != 2 {
		t.Fatalf("Beth's directory lists %d agents, want Fred and Abel", len(dir))
	}
	if _, self := dir["Beth Anglin"]; self {
		t.Fatal("Beth's directory lists Beth")
	}
	wantEntry(t, dir, "Fred Luddy", offline, 0)
	wantEntry(t, dir, "Abel Tuter", offline, 0)
	queueNames := func(e *parleyv1.AgentDirectoryEntry) []string {
		var out []string
		for _, q := range e.GetQueues() {
			if _, err := uuid.Parse(q.GetId()); err != nil {
				t.Fatalf("queue id %q", q.GetId())
			}
			out = append(out, q.GetDisplayName())
		}
		return out
	}
	if got := queueNames(dir["Fred Luddy"]); !slices.Equal(got, []string{"Billing Support", "Product Support"}) {
		t.Fatalf("Fred's queues: %v", got)
	}
	if got := queueNames(dir["Abel Tuter"]); !slices.Equal(got, []string{"Order Support", "Product Support"}) {
		t.Fatalf("Abel's queues: %v", got)
	}
	fredID, abelID := dir["Fred Luddy"].GetId(), dir["Abel Tuter"].GetId()

	// Fred may hold one web portal chat at a time (of his three).
	queues, err := r.adm.Routing.ListQueues(r.ctx, &parleyv1.ListQueuesRequest{})
	must(t, err)
	var fredQueues []string
	for _, q := range queues.GetQueues() {
		if q.GetDisplayName() == "Billing Support" || q.GetDisplayName() == "Product Support" {
			fredQueues = append(fredQueues, q.GetId())
		}
	}
	_, err = r.adm.Routing.UpdateAgent(r.ctx, &parleyv1.UpdateAgentRequest{
		AgentId: fredID, DisplayName: "Fred Luddy", Capacity: 3, QueueIds: fredQueues,
		ChannelCapacities: []*parleyv1.ChannelCapacity{{Channel: web, Capacity: 1}},
	})
	must(t, err)

	// Fred becomes available, except on mobile.
	r.presence(fred, available)
	_, err = fred.Routing.SetPresence(r.ctx, &parleyv1.SetPresenceRequest{Presence: away, Channel: parleyv1.Channel_CHANNEL_MOBILE})
	must(t, err)
	wantEntry(t, r.directory(beth, overall), "Fred Luddy", available, 3)
	wantEntry(t, r.directory(beth, web), "Fred Luddy", available, 1)
	wantEntry(t, r.directory(beth, parleyv1.Channel_CHANNEL_MOBILE), "Fred Luddy", away, 0)
	wantEntry(t, r.directory(beth, parleyv1.Channel_CHANNEL_MESSENGER), "Fred Luddy", available, 3)

	// A web portal chat is offered to Fred: the offer holds capacity
	// already, and accepting it keeps it held.
	first, _ := r.chat("billing")
	offerID, to := r.offeredTo(first)
	if to != fredID {
		t.Fatalf("the first chat was offered to %s, want Fred", to)
	}
	wantEntry(t, r.directory(beth, overall), "Fred Luddy", available, 2)
	wantEntry(t, r.directory(beth, web), "Fred Luddy", available, 0)
	r.accept(fred, offerID)
	wantEntry(t, r.directory(beth, overall), "Fred Luddy", available, 2)
	wantEntry(t, r.directory(beth, web), "Fred Luddy", available, 0)
	wantEntry(t, r.directory(beth, parleyv1.Channel_CHANNEL_MESSENGER), "Fred Luddy", available, 2)

	// Beth takes the next chat and looks for someone to transfer it to.
	r.presence(beth, available)
	second, _ := r.chat("billing")
	offerID, _ = r.offeredTo(second)
	r.accept(beth, offerID)
	transfer := func(agentID string) (string, error) {
		resp, err := beth.Routing.TransferConversation(r.ctx, &parleyv1.TransferConversationRequest{
			ConversationId: second, RequestId: uuid.NewString(), Target: &parleyv1.TransferConversationRequest_AgentId{AgentId: agentID},
		})
		return resp.GetOfferId(), err
	}
	// Nobody the directory shows without free capacity on the chat's
	// channel can take it.
	dir = r.directory(beth, web)
	wantEntry(t, dir, "Fred Luddy", available, 0)
	wantEntry(t, dir, "Abel Tuter", offline, 0)
	for _, e := range dir {
		if _, err := transfer(e.GetId()); connect.CodeOf(err) != connect.CodeFailedPrecondition {
			t.Fatalf("transfer to %s, shown with no free capacity: %v, want FailedPrecondition", e.GetDisplayName(), err)
		}
	}
	// Abel comes in; the directory shows him with room, and the transfer
	// to him goes through.
	r.presence(abel, available)
	dir = r.directory(beth, web)
	wantEntry(t, dir, "Abel Tuter", available, 2)
	transferOffer, err := transfer(dir["Abel Tuter"].GetId())
	must(t, err)
	wantEntry(t, r.directory(beth, web), "Abel Tuter", available, 1)
	r.accept(abel, transferOffer)
	if c := r.conversation(second); c.AgentID == nil || c.AgentID.String() != abelID {
		t.Fatalf("after the transfer the chat is with %v, want Abel", c.AgentID)
	}
	dir = r.directory(fred, overall)
	wantEntry(t, dir, "Beth Anglin", available, 3)
	wantEntry(t, dir, "Abel Tuter", available, 1)
	if _, self := dir["Fred Luddy"]; self {
		t.Fatal("Fred's directory lists Fred")
	}
}

// TestAgentDirectoryPagesAndAccess: the directory pages through every
// agent but the caller, once each, by id; bad page sizes and tokens are
// refused; customers and guests may not read it, supervisors and admins
// may (and see every agent).
func TestAgentDirectoryPagesAndAccess(t *testing.T) {
	r := newRig(t)
	for i := range 7 {
		r.agent("Extra "+string(rune('A'+i)), 1)
	}
	beth := r.srv.Client(parley.Connect, servertest.BethToken)
	all, err := beth.Routing.ListAgentDirectory(r.ctx, &parleyv1.ListAgentDirectoryRequest{})
	must(t, err)
	if n := len(all.GetAgents()); n != 9 || all.GetNextPageToken() != "" {
		t.Fatalf("one default page: %d agents, next page %q; want the 9 others and no next page", n, all.GetNextPageToken())
	}
	var want []string
	for _, e := range all.GetAgents() {
		want = append(want, e.GetId())
	}
	if !slices.IsSorted(want) {
		t.Fatalf("not in id order: %v", want)
	}

	var got []string
	token := ""
	for pages := 1; ; pages++ {
		resp, err := beth.Routing.ListAgentDirectory(r.ctx, &parleyv1.ListAgentDirectoryRequest{PageSize: 4, PageToken: token})
		must(t, err)
		if len(resp.GetAgents()) > 4 {
			t.Fatalf("page %d holds %d agents, more than asked", pages, len(resp.GetAgents()))
		}
		for _, e := range resp.GetAgents() {
			got = append(got, e.GetId())
		}
		if token = resp.GetNextPageToken(); token == "" {
			if pages != 3 {
				t.Fatalf("%d pages of 4 for 9 agents", pages)
			}
			break
		}
		if pages == 3 {
			t.Fatal("a next page token after the last page")
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("pages of 4 gave %v, want %v", got, want)
	}

	first, err := beth.Routing.ListAgentDirectory(r.ctx, &parleyv1.ListAgentDirectoryRequest{PageSize: 1})
	must(t, err)
	for name, req := range map[string]*parleyv1.ListAgentDirectoryRequest{
		"negative page size":          {PageSize: -1},
		"made-up page token":          {PageToken: "not-a-token"},
		"token of another channel":    {PageToken: first.GetNextPageToken(), Channel: parleyv1.Channel_CHANNEL_MOBILE},
		"token of another list":       {PageToken: mustListAgentsToken(t, r)},
		"channel that does not exist": {Channel: parleyv1.Channel(42)},
	} {
		if _, err := beth.Routing.ListAgentDirectory(r.ctx, req); connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}

	_, guest := r.chat("billing")
	customer := r.srv.Client(parley.Connect, r.srv.CustomerToken(t, "cust-dir", "Carla", "carla@example.com"))
	for name, c := range map[string]*parley.Client{"guest": guest, "customer": customer} {
		if _, err := c.Routing.ListAgentDirectory(r.ctx, &parleyv1.ListAgentDirectoryRequest{}); connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Errorf("as a %s: %v, want PermissionDenied", name, err)
		}
	}
	if _, err := r.anon.Routing.ListAgentDirectory(r.ctx, &parleyv1.ListAgentDirectoryRequest{}); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("without a token: %v, want Unauthenticated", err)
	}
	sup, err := r.adm.Access.IssueToken(r.ctx, &parleyv1.IssueTokenRequest{Role: parleyv1.StaffRole_STAFF_ROLE_SUPERVISOR, Label: "lead"})
	must(t, err)
	for name, c := range map[string]*parley.Client{"admin": r.adm, "supervisor": r.srv.Client(parley.Connect, sup.GetToken())} {
		resp, err := c.Routing.ListAgentDirectory(r.ctx, &parleyv1.ListAgentDirectoryRequest{})
		must(t, err)
		if n := len(resp.GetAgents()); n != 10 {
			t.Errorf("as %s: %d agents, want all 10", name, n)
		}
	}
}

// mustListAgentsToken returns a next page token of ListAgents.
func mustListAgentsToken(t *testing.T, r *rig) string {
	t.Helper()
	resp, err := r.adm.Routing.ListAgents(r.ctx, &parleyv1.ListAgentsRequest{PageSize: 1})
	must(t, err)
	if resp.GetNextPageToken() == "" {
		t.Fatal("ListAgents returned no next page token")
	}
	return resp.GetNextPageToken()
}
