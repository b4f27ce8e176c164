package session_test

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"

	"connectrpc.com/connect/v2"
	"google.golang.org/protobuf/proto"

	"github.com/parleyhq/parley/clients/go/parley"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/servertest"
)

// updatePreChatFields replaces the settings' pre-chat fields, keeping the
// rest (UpdateSettings replaces every setting).
func updatePreChatFields(t *testing.T, admin *parley.Client, fields []*parleyv1.PreChatField) error {
	t.Helper()
	got, err := admin.Session.GetSettings(context.Background(), &parleyv1.GetSettingsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	set := got.GetSettings()
	set.PreChatFields = fields
	_, err = admin.Session.UpdateSettings(context.Background(), &parleyv1.UpdateSettingsRequest{Settings: set})
	return err
}

// TestPreChatFields: the configured fields are served with the form, and
// StartGuestChat refuses form_fields that break them, leaving nothing
// behind, while keys no field names pass, and a retry is answered as at
// its start.
func TestPreChatFields(t *testing.T) {
	srv := servertest.Start(t)
	ctx := context.Background()
	anon := srv.Client(parley.Connect, "")
	admin := srv.Client(parley.Connect, servertest.AdminToken)

	// The demo's two optional fields.
	form, err := anon.Session.GetPreChatForm(ctx, &parleyv1.GetPreChatFormRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if fs := form.GetFields(); len(fs) != 2 || fs[0].GetName() != "order_number" || fs[0].GetRequired() ||
		fs[1].GetName() != "contact_preference" || len(fs[1].GetOptions()) != 2 {
		t.Fatalf("demo fields: %v", fs)
	}

	fields := []*parleyv1.PreChatField{
		{Name: "order_number", Label: "Order number", Required: true, MaxLength: 10, Hint: "On your receipt"},
		{Name: "contact_preference", Label: "Follow-up", Options: []string{"Chat only", "Email me a copy"}},
		{Name: "notes", Label: "Notes"},
	}
	if err := updatePreChatFields(t, admin, fields); err != nil {
		t.Fatal(err)
	}
	form, err = anon.Session.GetPreChatForm(ctx, &parleyv1.GetPreChatFormRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(form.GetFields()) != 3 || !proto.Equal(form.GetFields()[0], fields[0]) || !proto.Equal(form.GetFields()[1], fields[1]) {
		t.Fatalf("served fields %v, want %v", form.GetFields(), fields)
	}

	before := countInteractions(t, srv)
	for _, tt := range []struct {
		name   string
		values map[string]string
		reason string
		want   string
	}{
		{"required missing", map[string]string{"notes": "hi"}, "FORM_FIELD_REQUIRED", `Order number is required (form_fields["order_number"])`},
		{"required blank", map[string]string{"order_number": " \t"}, "FORM_FIELD_REQUIRED", "Order number is required"},
		{"required invisible", map[string]string{"order_number": "\u200b\ufeff\u180e"}, "FORM_FIELD_REQUIRED", "Order number is required"},
		{"required filler", map[string]string{"order_number": "\u3164\ufe0f\u034f"}, "FORM_FIELD_REQUIRED", "Order number is required"},
		{"too long", map[string]string{"order_number": "12345678901"}, "FORM_FIELD_TOO_LONG", "Order number must be at most 10 characters, not 11"},
		{"default max length", map[string]string{"order_number": "1", "notes": strings.Repeat("é", 501)}, "", `form_fields["notes"]: must be at most 500 characters`},
		{"not an option", map[string]string{"order_number": "1042", "contact_preference": "Fax"}, "FORM_FIELD_NOT_AN_OPTION", "Follow-up must be one of: Chat only, Email me a copy"},
		{"blank choice", map[string]string{"order_number": "1042", "contact_preference": " "}, "FORM_FIELD_NOT_AN_OPTION", `form_fields["contact_preference"]`},
	} {
		req := guestForm("Ada")
		req.FormFields = tt.values
		_, err := anon.Session.StartGuestChat(ctx, req)
		if connect.CodeOf(err) != connect.CodeInvalidArgument || apierr.Reason(err) != cmpOr(tt.reason, "INVALID_FIELD") || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v (reason %q), want InvalidArgument %s containing %q", tt.name, err, apierr.Reason(err), tt.reason, tt.want)
		}
	}
	if n := countInteractions(t, srv); n != before {
		t.Fatalf("%d interactions stored by refused starts", n-before)
	}

	// Valid values, an empty optional one, and a key no field names.
	req := guestForm("Ada")
	req.FormFields = map[string]string{"order_number": "1042", "contact_preference": "Email me a copy", "notes": "", "utm_source": "newsletter"}
	started, err := anon.Session.StartGuestChat(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if got := started.GetConversation().GetInteraction().GetFormFields(); !maps.Equal(got, req.FormFields) {
		t.Fatalf("stored form fields %v, want %v", got, req.FormFields)
	}

	// A new required field does not change the answer to a retry.
	if err := updatePreChatFields(t, admin, append(fields, &parleyv1.PreChatField{Name: "account", Label: "Account", Required: true})); err != nil {
		t.Fatal(err)
	}
	again, err := anon.Session.StartGuestChat(ctx, req)
	if err != nil || again.GetConversation().GetId() != started.GetConversation().GetId() || again.GetGuestToken() != started.GetGuestToken() {
		t.Fatalf("retry: %v, %v", again, err)
	}
	fresh := guestForm("Ada")
	fresh.FormFields = maps.Clone(req.FormFields)
	if _, err := anon.Session.StartGuestChat(ctx, fresh); apierr.Reason(err) != "FORM_FIELD_REQUIRED" || !strings.Contains(err.Error(), "Account is required") {
		t.Fatalf("new start without the new field: %v", err)
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestPreChatFieldsValidation: UpdateSettings refuses a field list with
// duplicate or reserved names, too many fields or bad options, and keeps
// the stored list.
func TestPreChatFieldsValidation(t *testing.T) {
	srv := servertest.Start(t)
	ctx := context.Background()
	admin := srv.Client(parley.Connect, servertest.AdminToken)
	tooMany := make([]*parleyv1.PreChatField, 21)
	for i := range tooMany {
		tooMany[i] = &parleyv1.PreChatField{Name: fmt.Sprintf("f%d", i), Label: "F"}
	}
	for _, tt := range []struct {
		name   string
		fields []*parleyv1.PreChatField
		want   string
	}{
		{"duplicate names", []*parleyv1.PreChatField{{Name: "a", Label: "A"}, {Name: "a", Label: "B"}}, "pre_chat_fields must have unique names"},
		{"reserved name", []*parleyv1.PreChatField{{Name: "issue_type", Label: "Issue"}}, "pre_chat_fields[0].name: name must not be name, email, issue_type or first_message"},
		{"too many", tooMany, "pre_chat_fields: must contain no more than 20 item(s)"},
		{"bad name", []*parleyv1.PreChatField{{Name: "Order", Label: "Order"}}, "pre_chat_fields[0].name: does not match regex pattern"},
		{"empty label", []*parleyv1.PreChatField{{Name: "a"}}, "pre_chat_fields[0].label"},
		{"max length over 500", []*parleyv1.PreChatField{{Name: "a", Label: "A", MaxLength: 501}}, "pre_chat_fields[0].max_length"},
		{"duplicate options", []*parleyv1.PreChatField{{Name: "a", Label: "A", Options: []string{"x", "x"}}}, "pre_chat_fields[0].options: repeated value must contain unique items"},
		{"empty option", []*parleyv1.PreChatField{{Name: "a", Label: "A", Options: []string{""}}}, "pre_chat_fields[0].options[0]"},
		{"blank label", []*parleyv1.PreChatField{{Name: "a", Label: " \u200b"}}, "pre_chat_fields[0] (a): label must show something"},
		{"filler label", []*parleyv1.PreChatField{{Name: "a", Label: "\u3164\u2800"}}, "pre_chat_fields[0] (a): label must show something"},
		{"blank option", []*parleyv1.PreChatField{{Name: "a", Label: "A", Options: []string{"x", "\u00a0"}}}, "pre_chat_fields[0] (a): options[1] must show something"},
		{"option over max length", []*parleyv1.PreChatField{{Name: "a", Label: "A", MaxLength: 2, Options: []string{"abc"}}}, "every option must fit max_length"},
	} {
		err := updatePreChatFields(t, admin, tt.fields)
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want InvalidArgument containing %q", tt.name, err, tt.want)
		}
	}
	got, err := admin.Session.GetSettings(ctx, &parleyv1.GetSettingsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(got.GetSettings().GetPreChatFields()); n != 2 {
		t.Fatalf("%d fields after refused updates, want the demo's 2", n)
	}
	// Twenty fields fit.
	if err := updatePreChatFields(t, admin, tooMany[:20]); err != nil {
		t.Fatal(err)
	}
}
