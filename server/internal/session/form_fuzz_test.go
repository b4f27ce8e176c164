package session

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"buf.build/go/protovalidate"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
)

// FuzzPreChatForm feeds arbitrary pre-chat forms to the rules the server
// applies before it writes anything: the protovalidate rules of the schema
// (as the validation interceptor runs them) and the handler's own checks.
// What they accept must be safe for the code after them: ids that parse,
// bounded UTF-8 text, a non-blank name, an address with an @. And the
// fingerprint that tells a retry from a reused request id must not
// confuse two different forms.
func FuzzPreChatForm(f *testing.F) {
	f.Add("6f1c1a4e-8a3b-4d2c-9e5f-0a1b2c3d4e5f", "Ada Lovelace", "ada@example.com", "billing", "I was charged twice.", int32(1), "", 3)
	f.Add("6f1c1a4e-8a3b-4d2c-9e5f-0a1b2c3d4e5f", "   ", "ada@example.com", "billing", "", int32(0), "", 0)
	f.Add("not-a-uuid", "Ada", "ada", "", "", int32(99), "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz", 1)
	f.Add("6F1C1A4E-8A3B-4D2C-9E5F-0A1B2C3D4E5F", "Zoë 🙂", "\"quoted\"@example.com", "order", strings.Repeat("x", 4001), int32(2), "6F1C1A4E-8A3B-4D2C-9E5F-0A1B2C3D4E5F", 2)
	f.Add("6f1c1a4e-8a3b-4d2c-9e5f-0a1b2c3d4e5f", "Ada\x00", "ada@[127.0.0.1]", "billing", "\xff", int32(-1), "", 5)
	v, err := protovalidate.New()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, requestID, name, email, issueType, first string, channel int32, siteID string, split int) {
		req := &parleyv1.StartGuestChatRequest{
			RequestId: requestID, Name: name, Email: email, IssueType: issueType,
			FirstMessage: first, Channel: parleyv1.Channel(channel), SiteId: siteID,
		}
		if _, err := proto.Marshal(req); err != nil {
			return // invalid UTF-8: the server's decoder refuses it before any rule runs
		}
		if v.Validate(req) == nil && checkName(req.GetName()) == nil {
			if _, err := uuid.Parse(requestID); err != nil {
				t.Fatalf("accepted request_id %q: %v", requestID, err)
			}
			if siteID != "" {
				if _, err := uuid.Parse(siteID); err != nil {
					t.Fatalf("accepted site_id %q that the handler cannot parse: %v", siteID, err)
				}
			}
			if n := utf8.RuneCountInString(name); n < 1 || n > 200 || strings.TrimSpace(name) == "" {
				t.Fatalf("accepted name %q", name)
			}
			if !strings.Contains(email, "@") || len(email) > 254 {
				t.Fatalf("accepted email %q", email)
			}
			if _, ok := parleyv1.Channel_name[channel]; !ok {
				t.Fatalf("accepted undefined channel %d", channel)
			}
			if utf8.RuneCountInString(first) > 4000 {
				t.Fatalf("accepted a first message of %d characters", utf8.RuneCountInString(first))
			}
		}
		// Move the boundary between two fields: a different form must get
		// a different fingerprint.
		joined := name + email
		if split < 0 {
			split = -split
		}
		cut := split % (len(joined) + 1)
		other := proto.CloneOf(req)
		other.Name, other.Email = joined[:cut], joined[cut:]
		same := other.GetName() == req.GetName() && other.GetEmail() == req.GetEmail()
		h1, err := guestFingerprint(req)
		if err != nil {
			t.Fatal(err)
		}
		h2, err := guestFingerprint(other)
		if err != nil {
			return // the cut split a character: the server's decoder refuses such a form
		}
		if bytes.Equal(h1, h2) != same {
			t.Fatalf("fingerprints of %q/%q and %q/%q: equal=%v", name, email, other.Name, other.Email, !same)
		}
	})
}
