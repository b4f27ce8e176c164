package session_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/parleyhq/parley/clients/go/parley"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/bootstrap"
	"github.com/parleyhq/parley/server/internal/servertest"
)

func TestAbandonedChatsCloseAutomatically(t *testing.T) {
	srv := servertest.Start(t, servertest.WithFakeClock(t0), servertest.WithBootstrap(func(f *bootstrap.File) {
		f.Settings.AbandonAfter = 10 * time.Minute
	}))
	ctx := context.Background()
	anon := srv.Client(parley.Connect, "")
	admin := srv.Client(parley.Connect, servertest.AdminToken)
	quiet, err := anon.Session.StartGuestChat(ctx, guestForm("Quiet"))
	if err != nil {
		t.Fatal(err)
	}
	chatty, err := anon.Session.StartGuestChat(ctx, guestForm("Chatty"))
	if err != nil {
		t.Fatal(err)
	}
	chattyGuest := srv.Client(parley.Connect, chatty.GetGuestToken())
	state := func(id string) parleyv1.ConversationState {
		t.Helper()
		got, err := admin.Session.GetConversation(ctx, &parleyv1.GetConversationRequest{ConversationId: id})
		if err != nil {
			t.Fatal(err)
		}
		return got.GetConversation().GetState()
	}
	pass := func() {
		t.Helper()
		if err := srv.App.Dispatch(ctx); err != nil {
			t.Fatal(err)
		}
	}

	srv.Clock.Advance(6 * time.Minute)
	if _, err := chattyGuest.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: chatty.GetConversation().GetId(), ClientMessageId: "m1", Text: "still there?"}); err != nil {
		t.Fatal(err)
	}
	srv.Clock.Advance(4 * time.Minute)
	pass()
	if s := state(quiet.GetConversation().GetId()); s == parleyv1.ConversationState_CONVERSATION_STATE_CLOSED {
		t.Fatal("closed at exactly abandon_after; it should close only after it")
	}
	srv.Clock.Advance(time.Second)
	pass()
	if s := state(quiet.GetConversation().GetId()); s != parleyv1.ConversationState_CONVERSATION_STATE_CLOSED {
		t.Fatalf("quiet chat is %v after 10m1s without activity", s)
	}
	if s := state(chatty.GetConversation().GetId()); s == parleyv1.ConversationState_CONVERSATION_STATE_CLOSED {
		t.Fatal("a chat with recent customer activity was closed")
	}
	evs, err := admin.Messaging.ListEvents(ctx, &parleyv1.ListEventsRequest{ConversationId: quiet.GetConversation().GetId(), NewestFirst: true, PageSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	closing := evs.GetEvents()[0]
	if closing.GetSender().GetRole() != parleyv1.ParticipantRole_PARTICIPANT_ROLE_SYSTEM || !strings.HasPrefix(closing.GetConversationClosed().GetReason(), "abandoned") {
		t.Fatalf("last event of the abandoned chat: %v", closing)
	}
	// The abandoned guest's token is revoked with the conversation.
	_, err = srv.Client(parley.Connect, quiet.GetGuestToken()).Session.GetConversation(ctx, &parleyv1.GetConversationRequest{ConversationId: quiet.GetConversation().GetId()})
	if connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("abandoned guest's token: %v", err)
	}
	srv.Clock.Advance(6 * time.Minute)
	pass()
	if s := state(chatty.GetConversation().GetId()); s != parleyv1.ConversationState_CONVERSATION_STATE_CLOSED {
		t.Fatalf("chatty chat is %v 10m1s after its last message", s)
	}

	// Zero turns it off; under a minute is refused.
	settings, err := admin.Session.GetSettings(ctx, &parleyv1.GetSettingsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := settings.GetSettings().GetAbandonAfter().AsDuration(); got != 10*time.Minute {
		t.Fatalf("abandon_after = %s", got)
	}
	s := settings.GetSettings()
	s.AbandonAfter = durationpb.New(30 * time.Second)
	if _, err := admin.Session.UpdateSettings(ctx, &parleyv1.UpdateSettingsRequest{Settings: s}); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("abandon_after 30s: %v", err)
	}
	s.AbandonAfter = nil
	if _, err := admin.Session.UpdateSettings(ctx, &parleyv1.UpdateSettingsRequest{Settings: s}); err != nil {
		t.Fatal(err)
	}
	late, err := anon.Session.StartGuestChat(ctx, guestForm("Late"))
	if err != nil {
		t.Fatal(err)
	}
	srv.Clock.Advance(24 * time.Hour)
	pass()
	if s := state(late.GetConversation().GetId()); s == parleyv1.ConversationState_CONVERSATION_STATE_CLOSED {
		t.Fatal("closed a chat with abandon_after off")
	}
}
