package app

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"buf.build/go/protovalidate"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// nestedType builds message test.Nested { repeated Duration items = 1;
// map<string, Timestamp> stamps = 2; Nested child = 3; string note = 4 },
// the shapes the API does not have yet: lists, maps and recursion.
func nestedType(t *testing.T) protoreflect.MessageDescriptor {
	t.Helper()
	field := func(name string, number int32, label descriptorpb.FieldDescriptorProto_Label, typ descriptorpb.FieldDescriptorProto_Type, typeName string) *descriptorpb.FieldDescriptorProto {
		f := &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(number), Label: label.Enum(), Type: typ.Enum(), JsonName: proto.String(name)}
		if typeName != "" {
			f.TypeName = proto.String(typeName)
		}
		return f
	}
	const (
		optional = descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL
		repeated = descriptorpb.FieldDescriptorProto_LABEL_REPEATED
		message  = descriptorpb.FieldDescriptorProto_TYPE_MESSAGE
		str      = descriptorpb.FieldDescriptorProto_TYPE_STRING
	)
	file := &descriptorpb.FileDescriptorProto{
		Name:       proto.String("test/nested.proto"),
		Package:    proto.String("test"),
		Syntax:     proto.String("proto3"),
		Dependency: []string{"google/protobuf/duration.proto", "google/protobuf/timestamp.proto"},
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: proto.String("Nested"),
			Field: []*descriptorpb.FieldDescriptorProto{
				field("items", 1, repeated, message, ".google.protobuf.Duration"),
				field("stamps", 2, repeated, message, ".test.Nested.StampsEntry"),
				field("child", 3, optional, message, ".test.Nested"),
				field("note", 4, optional, str, ""),
			},
			NestedType: []*descriptorpb.DescriptorProto{{
				Name: proto.String("StampsEntry"),
				Field: []*descriptorpb.FieldDescriptorProto{
					field("key", 1, optional, str, ""),
					field("value", 2, optional, message, ".google.protobuf.Timestamp"),
				},
				Options: &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)},
			}},
		}},
	}
	fd, err := protodesc.NewFile(file, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	return fd.Messages().ByName("Nested")
}

// TestWellFormedFindsEveryDurationAndTimestamp: malformed values in lists,
// map values and nested messages are each reported at their path; good
// ones and messages without such fields pass.
func TestWellFormedFindsEveryDurationAndTimestamp(t *testing.T) {
	md := nestedType(t)
	nested := func(items []*durationpb.Duration, stamps map[string]*timestamppb.Timestamp) *dynamicpb.Message {
		m := dynamicpb.NewMessage(md)
		list := m.Mutable(md.Fields().ByName("items")).List()
		for _, d := range items {
			list.Append(protoreflect.ValueOfMessage(d.ProtoReflect()))
		}
		mp := m.Mutable(md.Fields().ByName("stamps")).Map()
		for k, ts := range stamps {
			mp.Set(protoreflect.ValueOfString(k).MapKey(), protoreflect.ValueOfMessage(ts.ProtoReflect()))
		}
		m.Set(md.Fields().ByName("note"), protoreflect.ValueOfString("x"))
		return m
	}
	good := nested([]*durationpb.Duration{{Seconds: -1, Nanos: -5}, {Seconds: 315_576_000_000}},
		map[string]*timestamppb.Timestamp{"a": {Seconds: 253_402_300_799, Nanos: 999_999_999}})
	outer := nested([]*durationpb.Duration{{Seconds: 1}, {Seconds: 1, Nanos: -1}},
		map[string]*timestamppb.Timestamp{"ok": {Seconds: 5}, "bad": {Seconds: 5, Nanos: -1}})
	inner := nested([]*durationpb.Duration{{Nanos: 1_000_000_000}, {Seconds: -315_576_000_001}}, nil)
	inner.Set(md.Fields().ByName("child"), protoreflect.ValueOfMessage(good))
	outer.Set(md.Fields().ByName("child"), protoreflect.ValueOfMessage(inner))

	v := wellFormed()
	if err := v.Validate(good); err != nil {
		t.Fatalf("well-formed values refused: %v", err)
	}
	if err := v.Validate(&descriptorpb.FileDescriptorProto{Name: proto.String("no durations")}); err != nil {
		t.Fatalf("a message without durations: %v", err)
	}
	var verr *protovalidate.ValidationError
	if err := v.Validate(outer); !errors.As(err, &verr) {
		t.Fatalf("got %v, want a ValidationError", err)
	}
	var got []string
	for _, violation := range verr.ToProto().GetViolations() {
		got = append(got, protovalidate.FieldPathString(violation.GetField())+" "+violation.GetRuleId())
	}
	slices.Sort(got)
	want := []string{
		"child.items[0] duration.well_formed",
		"child.items[1] duration.well_formed",
		"items[1] duration.well_formed",
		`stamps["bad"] timestamp.well_formed`,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("violations\n%v\nwant\n%v", got, want)
	}
}

func TestDurationAndTimestampProblems(t *testing.T) {
	for _, c := range []struct {
		seconds, nanos int64
		ok             bool
	}{
		{0, 0, true}, {10, 5, true}, {-10, -5, true}, {0, -999_999_999, true}, {315_576_000_000, 999_999_999, true},
		{10, -5, false}, {-10, 5, false}, {0, 1_000_000_000, false}, {0, -1_000_000_000, false},
		{315_576_000_001, 0, false}, {-315_576_000_001, 0, false},
	} {
		if ok := durationProblem(c.seconds, c.nanos) == ""; ok != c.ok || ok != ((&durationpb.Duration{Seconds: c.seconds, Nanos: int32(c.nanos)}).CheckValid() == nil) {
			t.Errorf("duration %d s %d ns: well formed %v, want %v (and durationpb agreeing)", c.seconds, c.nanos, ok, c.ok)
		}
	}
	for _, c := range []struct {
		seconds, nanos int64
		ok             bool
	}{
		{0, 0, true}, {-62_135_596_800, 0, true}, {253_402_300_799, 999_999_999, true},
		{0, -1, false}, {0, 1_000_000_000, false}, {-62_135_596_801, 0, false}, {253_402_300_800, 0, false},
	} {
		if ok := timestampProblem(c.seconds, c.nanos) == ""; ok != c.ok || ok != ((&timestamppb.Timestamp{Seconds: c.seconds, Nanos: int32(c.nanos)}).CheckValid() == nil) {
			t.Errorf("timestamp %d s %d ns: well formed %v, want %v (and timestamppb agreeing)", c.seconds, c.nanos, ok, c.ok)
		}
	}
}

// A NUL character is refused in every kind of text field (PostgreSQL
// cannot store one), naming the field.
func TestWellFormedRefusesNUL(t *testing.T) {
	v := wellFormed()
	for name, tc := range map[string]struct {
		msg  proto.Message
		path string
	}{
		"field":     {&parleyv1.StartGuestChatRequest{Name: "A\x00da"}, "name"},
		"map value": {&parleyv1.StartGuestChatRequest{FormFields: map[string]string{"order": "1\x002"}}, `form_fields["order"]`},
		"map key":   {&parleyv1.StartGuestChatRequest{FormFields: map[string]string{"o\x00": "1"}}, "form_fields"},
		"list":      {&parleyv1.ImportArticlesRequest{Articles: []*parleyv1.Article{{Tags: []string{"ok", "b\x00d"}}}}, "articles[0].tags[1]"},
		"nested":    {&parleyv1.ImportArticlesRequest{Articles: []*parleyv1.Article{{Body: "x\x00"}}}, "articles[0].body"},
	} {
		err := v.Validate(tc.msg)
		var verr *protovalidate.ValidationError
		if !errors.As(err, &verr) {
			t.Errorf("%s: err = %v, want a validation error", name, err)
			continue
		}
		found := false
		for _, viol := range verr.Violations {
			got := protovalidate.FieldPathString(viol.Proto.GetField())
			found = found || viol.Proto.GetRuleId() == "string.no_nul" && strings.HasPrefix(got, tc.path)
		}
		if !found {
			t.Errorf("%s: no string.no_nul violation at %s in %v", name, tc.path, err)
		}
	}
	if err := v.Validate(&parleyv1.StartGuestChatRequest{Name: "Ada"}); err != nil {
		var verr *protovalidate.ValidationError
		if errors.As(err, &verr) {
			for _, viol := range verr.Violations {
				if viol.Proto.GetRuleId() == "string.no_nul" {
					t.Fatalf("clean text refused: %v", err)
				}
			}
		}
	}
}
