package admin

import (
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/keygate/keygate/storage"
)

// jsonFields returns the JSON member names of struct type t, embedded
// structs flattened, as encoding/json writes and reads them.
func jsonFields(t reflect.Type) []string {
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case tag == "-" || (!f.IsExported() && !f.Anonymous):
		case f.Anonymous && tag == "" && f.Type.Kind() == reflect.Struct:
			names = append(names, jsonFields(f.Type)...)
		case tag != "":
			names = append(names, tag)
		default:
			names = append(names, f.Name)
		}
	}
	sort.Strings(names)
	return names
}

// schemaFields returns the property names of a schema and of its allOf
// parts, and whether it refuses other members.
func schemaFields(s *openapi3.Schema) ([]string, bool) {
	var names []string
	closed := s.AdditionalProperties.Has != nil && !*s.AdditionalProperties.Has
	for name := range s.Properties {
		names = append(names, name)
	}
	for _, part := range s.AllOf {
		more, _ := schemaFields(part.Value)
		names = append(names, more...)
	}
	sort.Strings(names)
	return slices.Compact(names), closed
}

// TestOpenAPISchemasMatchTypes checks each schema of the document against
// the Go type the handler encodes or decodes: the same JSON members, no
// more, no fewer; and that every request body refuses unknown members, as
// the handler does.
func TestOpenAPISchemasMatchTypes(t *testing.T) {
	doc := loadKin(t)
	types := map[string]any{
		"Account": Account{}, "Key": Key{}, "Token": Token{}, "KeyWithSecret": KeyWithSecret{},
		"TokenWithSecret": TokenWithSecret{}, "RotatedToken": RotatedToken{}, "AuditEvent": AuditEvent{},
		"Whoami": Whoami{}, "Check": Check{}, "AccountList": List[Account]{}, "KeyList": List[Key]{}, "AuditEventList": List[AuditEvent]{},
		"ImportResult":         ImportResult{},
		"CreateAccountRequest": CreateAccountRequest{}, "UpdateAccountRequest": UpdateAccountRequest{},
		"CreateKeyRequest": CreateKeyRequest{}, "UpdateKeyRequest": UpdateKeyRequest{},
		"CreateTokenRequest": CreateTokenRequest{}, "UpdateTokenRequest": UpdateTokenRequest{},
		"RotateRequest": RotateRequest{}, "RevokeRequest": RevokeRequest{},
		"ExportRecord": storage.ExportRecord{}, "ExportAccount": storage.ExportAccount{},
		"ExportKey": storage.ExportKey{}, "ExportToken": storage.ExportToken{},
		"Limit": Limit{}, "Refill": Refill{}, "Credits": Credits{}, "Usage": Usage{}, "WindowUsage": WindowUsage{},
		"CreditsRequest": CreditsRequest{}, "CreditsPatch": CreditsPatch{},
		"ExportWindow": storage.ExportWindow{}, "ExportCredits": storage.ExportCredits{}, "ExportRefill": storage.ExportRefill{},
	}
	for name, v := range types {
		ref := doc.Components.Schemas[name]
		if ref == nil {
			t.Errorf("the document has no schema %s", name)
			continue
		}
		got, _ := schemaFields(ref.Value)
		if want := jsonFields(reflect.TypeOf(v)); !slices.Equal(got, want) {
			t.Errorf("schema %s has %v, the Go type %T has %v", name, got, v, want)
		}
	}

	// Every JSON and JSON Lines request body is closed, down to the
	// records of an import.
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if op.RequestBody == nil {
				continue
			}
			for ct, media := range op.RequestBody.Value.Content {
				s := media.Schema.Value
				if s.Items != nil {
					s = s.Items.Value
				}
				if _, closed := schemaFields(s); !closed {
					t.Errorf("%s %s: the %s body schema does not set additionalProperties: false", method, path, ct)
				}
			}
		}
	}
	for _, name := range []string{"ExportAccount", "ExportKey", "ExportToken", "ExportWindow", "ExportCredits", "ExportRefill"} {
		if _, closed := schemaFields(doc.Components.Schemas[name].Value); !closed {
			t.Errorf("schema %s does not set additionalProperties: false (import refuses unknown fields)", name)
		}
	}
	// The objects inside request bodies are closed too: the handler
	// refuses unknown members there (limits[0].burst, credits.refill.every).
	for _, name := range []string{"Limit", "Refill", "CreditsRequest", "CreditsPatch"} {
		if _, closed := schemaFields(doc.Components.Schemas[name].Value); !closed {
			t.Errorf("schema %s does not set additionalProperties: false (the handler refuses unknown fields in it)", name)
		}
	}
}
