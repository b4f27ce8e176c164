package app

import (
	"fmt"
	"strings"
	"sync"

	validatepb "buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// Bounds of well-formed google.protobuf.Duration and Timestamp values, as
// their documentation states them.
const (
	maxDurationSeconds  = 315_576_000_000 // 10,000 years
	minTimestampSeconds = -62_135_596_800 // 0001-01-01T00:00:00Z
	maxTimestampSeconds = 253_402_300_799 // 9999-12-31T23:59:59Z
	nanosPerSecond      = 1_000_000_000
)

// wellFormed returns the request validator. It refuses every
// google.protobuf.Duration and Timestamp in a request that is not well
// formed (which AsDuration and AsTime would silently normalize or clamp),
// and every text holding a NUL character, wherever they sit, then applies
// the schema's protovalidate rules. A violation names the field (such as
// "policy.max_wait") and the rule "duration.well_formed",
// "timestamp.well_formed" or "string.no_nul", in the same
// ValidationError, and so the same buf.validate.Violations detail, as a
// schema rule's.
func wellFormed() protovalidate.Validator {
	return &wellFormedValidator{next: protovalidate.GlobalValidator}
}

type wellFormedValidator struct {
	next protovalidate.Validator
	// holds caches, per message type, whether a message of the type can
	// hold a Duration or a Timestamp at any depth.
	holds sync.Map // protoreflect.FullName -> bool
}

func (v *wellFormedValidator) Validate(msg proto.Message, options ...protovalidate.ValidationOption) error {
	var violations []*protovalidate.Violation
	v.walk(msg.ProtoReflect(), nil, &violations)
	if len(violations) > 0 {
		// The schema's rules on a malformed value would judge a value
		// the caller did not mean; report the malformation alone.
		return &protovalidate.ValidationError{Violations: violations}
	}
	return v.next.Validate(msg, options...)
}

// walk checks the Durations and Timestamps set in m, whose path is path.
func (v *wellFormedValidator) walk(m protoreflect.Message, path []*validatepb.FieldPathElement, out *[]*protovalidate.Violation) {
	if !v.canHold(m.Descriptor()) {
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, value protoreflect.Value) bool {
		switch {
		case fd.IsMap():
			value.Map().Range(func(key protoreflect.MapKey, item protoreflect.Value) bool {
				at := appendPath(path, mapElement(fd, key))
				if k, ok := key.Interface().(string); ok {
					checkText(fd, k, at, out)
				}
				switch {
				case fd.MapValue().Kind() == protoreflect.StringKind:
					checkText(fd, item.String(), at, out)
				case fd.MapValue().Message() != nil:
					v.check(fd, item.Message(), at, out)
				}
				return true
			})
		case fd.Kind() == protoreflect.StringKind && fd.IsList():
			list := value.List()
			for i := range list.Len() {
				element := fieldElement(fd)
				element.SetIndex(uint64(i))
				checkText(fd, list.Get(i).String(), appendPath(path, element), out)
			}
		case fd.Kind() == protoreflect.StringKind:
			checkText(fd, value.String(), appendPath(path, fieldElement(fd)), out)
		case fd.Message() == nil:
		case fd.IsList():
			list := value.List()
			for i := range list.Len() {
				element := fieldElement(fd)
				element.SetIndex(uint64(i))
				v.check(fd, list.Get(i).Message(), appendPath(path, element), out)
			}
		default:
			v.check(fd, value.Message(), appendPath(path, fieldElement(fd)), out)
		}
		return true
	})
}

// checkText refuses a NUL character in text, the value of field fd at
// path: PostgreSQL's text cannot hold one (SQLite's can, and the stores
// must agree), and no person types one.
func checkText(fd protoreflect.FieldDescriptor, text string, path []*validatepb.FieldPathElement, out *[]*protovalidate.Violation) {
	if !strings.ContainsRune(text, 0) {
		return
	}
	violation := &validatepb.Violation{}
	violation.SetField(validatepb.FieldPath_builder{Elements: path}.Build())
	violation.SetRuleId("string.no_nul")
	violation.SetMessage("must not contain NUL (U+0000) characters")
	*out = append(*out, &protovalidate.Violation{Proto: violation, FieldValue: protoreflect.ValueOfString(text), FieldDescriptor: fd})
}

// check checks m, the value of field fd at path.
func (v *wellFormedValidator) check(fd protoreflect.FieldDescriptor, m protoreflect.Message, path []*validatepb.FieldPathElement, out *[]*protovalidate.Violation) {
	var rule, problem string
	switch m.Descriptor().FullName() {
	case "google.protobuf.Duration":
		rule, problem = "duration.well_formed", durationProblem(secondsAndNanos(m))
	case "google.protobuf.Timestamp":
		rule, problem = "timestamp.well_formed", timestampProblem(secondsAndNanos(m))
	default:
		v.walk(m, path, out)
		return
	}
	if problem == "" {
		return
	}
	violation := &validatepb.Violation{}
	violation.SetField(validatepb.FieldPath_builder{Elements: path}.Build())
	violation.SetRuleId(rule)
	violation.SetMessage(problem)
	*out = append(*out, &protovalidate.Violation{Proto: violation, FieldValue: protoreflect.ValueOfMessage(m), FieldDescriptor: fd})
}

func secondsAndNanos(m protoreflect.Message) (int64, int64) {
	fields := m.Descriptor().Fields()
	return m.Get(fields.ByNumber(1)).Int(), m.Get(fields.ByNumber(2)).Int()
}

// durationProblem says what makes a Duration malformed, or "".
func durationProblem(seconds, nanos int64) string {
	switch {
	case nanos <= -nanosPerSecond || nanos >= nanosPerSecond:
		return fmt.Sprintf("must be a valid duration: nanos (%d) must be within ±999,999,999; carry whole seconds into seconds", nanos)
	case (seconds < 0 && nanos > 0) || (seconds > 0 && nanos < 0):
		return fmt.Sprintf("must be a valid duration: seconds (%d) and nanos (%d) must not have opposite signs", seconds, nanos)
	case seconds < -maxDurationSeconds || seconds > maxDurationSeconds:
		return fmt.Sprintf("must be a valid duration: seconds (%d) must be within ±315,576,000,000 (10,000 years)", seconds)
	}
	return ""
}

// timestampProblem says what makes a Timestamp malformed, or "".
func timestampProblem(seconds, nanos int64) string {
	switch {
	case nanos < 0 || nanos >= nanosPerSecond:
		return fmt.Sprintf("must be a valid timestamp: nanos (%d) must be within 0 to 999,999,999", nanos)
	case seconds < minTimestampSeconds || seconds > maxTimestampSeconds:
		return fmt.Sprintf("must be a valid timestamp: seconds (%d) must fall between 0001-01-01 and 9999-12-31", seconds)
	}
	return ""
}

// canHold tells whether a message of type md can hold a Duration, a
// Timestamp or text at any depth, so that messages that cannot are not
// walked.
func (v *wellFormedValidator) canHold(md protoreflect.MessageDescriptor) bool {
	if holds, ok := v.holds.Load(md.FullName()); ok {
		return holds.(bool)
	}
	seen := map[protoreflect.FullName]bool{}
	var reach func(protoreflect.MessageDescriptor) bool
	reach = func(md protoreflect.MessageDescriptor) bool {
		switch md.FullName() {
		case "google.protobuf.Duration", "google.protobuf.Timestamp":
			return true
		}
		if seen[md.FullName()] {
			return false // already being (or been) searched
		}
		seen[md.FullName()] = true
		fields := md.Fields()
		for i := range fields.Len() {
			fd := fields.Get(i)
			if fd.Kind() == protoreflect.StringKind || fd.IsMap() && fd.MapKey().Kind() == protoreflect.StringKind {
				return true
			}
			if fd.IsMap() {
				fd = fd.MapValue()
			}
			if fd.Kind() == protoreflect.StringKind {
				return true
			}
			if fd.Message() != nil && reach(fd.Message()) {
				return true
			}
		}
		return false
	}
	holds := reach(md)
	v.holds.Store(md.FullName(), holds)
	return holds
}

// fieldElement is the path element of field fd, as protovalidate writes it.
func fieldElement(fd protoreflect.FieldDescriptor) *validatepb.FieldPathElement {
	element := validatepb.FieldPathElement_builder{
		FieldNumber: new(int32(fd.Number())),
		FieldName:   new(string(fd.Name())),
		FieldType:   descriptorpb.FieldDescriptorProto_Type(fd.Kind()).Enum(),
	}.Build()
	if fd.IsExtension() {
		element.SetFieldName(fd.TextName())
	}
	return element
}

// mapElement is the path element of the entry of map field fd at key.
func mapElement(fd protoreflect.FieldDescriptor, key protoreflect.MapKey) *validatepb.FieldPathElement {
	element := fieldElement(fd)
	element.SetKeyType(descriptorpb.FieldDescriptorProto_Type(fd.MapKey().Kind()))
	element.SetValueType(descriptorpb.FieldDescriptorProto_Type(fd.MapValue().Kind()))
	switch k := key.Interface().(type) {
	case bool:
		element.SetBoolKey(k)
	case int32:
		element.SetIntKey(int64(k))
	case int64:
		element.SetIntKey(k)
	case uint32:
		element.SetUintKey(uint64(k))
	case uint64:
		element.SetUintKey(k)
	case string:
		element.SetStringKey(k)
	}
	return element
}

// appendPath returns path with element appended, never sharing the
// appended-to array with another path.
func appendPath(path []*validatepb.FieldPathElement, element *validatepb.FieldPathElement) []*validatepb.FieldPathElement {
	return append(path[:len(path):len(path)], element)
}
