package app

import (
	"slices"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	_ "github.com/parleyhq/parley/gen/parley/v1" // registers the API's descriptors
	"github.com/parleyhq/parley/server/internal/auth"
)

// TestEveryWriteIsLimited fails when a procedure that writes (it is not
// NO_SIDE_EFFECTS) can be called by anyone but an admin without a rate
// limit: in writeClasses, or limited by its handler (selfLimited).
func TestEveryWriteIsLimited(t *testing.T) {
	checked := 0
	protoregistry.GlobalFiles.RangeFilesByPackage("parley.v1", func(file protoreflect.FileDescriptor) bool {
		for i := range file.Services().Len() {
			service := file.Services().Get(i)
			for j := range service.Methods().Len() {
				method := service.Methods().Get(j)
				procedure := "/" + string(service.FullName()) + "/" + string(method.Name())
				opts, _ := method.Options().(*descriptorpb.MethodOptions)
				if opts.GetIdempotencyLevel() == descriptorpb.MethodOptions_NO_SIDE_EFFECTS {
					continue
				}
				policy := auth.Policies[procedure]
				if !policy.Public && !slices.ContainsFunc(policy.Roles, func(r auth.Role) bool { return r != auth.RoleAdmin }) {
					continue // admins only
				}
				checked++
				_, classed := writeClasses[procedure]
				if !classed && !selfLimited[procedure] {
					t.Errorf("%s writes and is open to non-admins, but has no rate limit: add it to writeClasses", procedure)
				}
				if classed && selfLimited[procedure] {
					t.Errorf("%s is limited twice", procedure)
				}
			}
		}
		return true
	})
	if checked == 0 {
		t.Fatal("no procedure was checked")
	}
	for procedure := range writeClasses {
		if _, ok := auth.Policies[procedure]; !ok {
			t.Errorf("writeClasses names %s, which is not served", procedure)
		}
	}
}
