package admin

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"
)

// openAPIMethods are the operation keys of an OpenAPI path item.
var openAPIMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

func newTestHandler(t *testing.T) *Handler {
	t.Helper()
	return New(nil, testTokens, zap.NewNop())
}

// loadOpenAPI parses the document the handler serves.
func loadOpenAPI(t *testing.T) map[string]any {
	t.Helper()
	raw, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatalf("reading openapi.json: %v", err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("openapi.json is not JSON: %v", err)
	}
	return doc
}

func object(t *testing.T, v any, where string) map[string]any {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s: want a JSON object, got %T", where, v)
	}
	return m
}

// TestOpenAPIMatchesRoutes checks that the document lists exactly the
// routes the handler serves, each with the scope it requires.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	h := newTestHandler(t)
	doc := loadOpenAPI(t)
	paths := object(t, doc["paths"], "paths")

	type op struct{ method, path string }
	documented := map[op]map[string]any{}
	for path, item := range paths {
		for key, v := range object(t, item, "paths."+path) {
			if !slices.Contains(openAPIMethods, key) {
				continue // parameters, summary, ...
			}
			documented[op{strings.ToUpper(key), path}] = object(t, v, key+" "+path)
		}
	}

	served := map[op]Route{}
	for _, r := range h.Routes() {
		k := op{r.Method, r.Path}
		if _, dup := served[k]; dup {
			t.Errorf("route %s %s registered twice", r.Method, r.Path)
		}
		served[k] = r
	}
	if len(served) == 0 {
		t.Fatal("the handler lists no routes")
	}

	for k, r := range served {
		operation, ok := documented[k]
		if !ok {
			t.Errorf("route %s %s is not in openapi.json", k.method, k.path)
			continue
		}
		got, ok := operation["x-required-scope"].(string)
		if !ok {
			t.Errorf("%s %s: x-required-scope missing or not a string", k.method, k.path)
		} else if got != r.Scope {
			t.Errorf("%s %s: x-required-scope %q, the route requires %q", k.method, k.path, got, r.Scope)
		}
		if only, _ := operation["x-admin-endpoint-only"].(bool); only != r.AdminEndpointOnly {
			t.Errorf("%s %s: x-admin-endpoint-only %v, the route is served on the admin endpoint only: %v", k.method, k.path, operation["x-admin-endpoint-only"], r.AdminEndpointOnly)
		}
	}
	for k := range documented {
		if _, ok := served[k]; !ok {
			t.Errorf("openapi.json documents %s %s, which the handler does not serve", k.method, k.path)
		}
	}

	// /openapi.json needs no credential at all.
	if sec, ok := documented[op{"GET", "/openapi.json"}]["security"].([]any); !ok || len(sec) != 0 {
		t.Errorf("GET /openapi.json: security = %v, want []", documented[op{"GET", "/openapi.json"}]["security"])
	}
}

// TestOpenAPIOperations checks each operation's shape: unique operation
// ids, declared path parameters, and responses.
func TestOpenAPIOperations(t *testing.T) {
	doc := loadOpenAPI(t)
	components := object(t, doc["components"], "components")
	paramComponents, _ := components["parameters"].(map[string]any)
	ids := map[string]string{}
	placeholder := regexp.MustCompile(`\{([^}]+)\}`)

	// pathParams returns the names of the path parameters in list,
	// following $refs to components.parameters.
	pathParams := func(list any, where string) map[string]bool {
		names := map[string]bool{}
		items, _ := list.([]any)
		for _, p := range items {
			pm := object(t, p, where)
			if ref, ok := pm["$ref"].(string); ok {
				name, found := strings.CutPrefix(ref, "#/components/parameters/")
				if !found || paramComponents[name] == nil {
					t.Errorf("%s: parameter $ref %q does not resolve", where, ref)
					continue
				}
				pm = object(t, paramComponents[name], ref)
			}
			if pm["in"] == "path" {
				names[pm["name"].(string)] = true
				if pm["required"] != true {
					t.Errorf("%s: path parameter %v must be required", where, pm["name"])
				}
			}
		}
		return names
	}

	for path, item := range object(t, doc["paths"], "paths") {
		pi := object(t, item, path)
		shared := pathParams(pi["parameters"], path)
		var want []string
		for _, m := range placeholder.FindAllStringSubmatch(path, -1) {
			want = append(want, m[1])
		}
		for method, v := range pi {
			if !slices.Contains(openAPIMethods, method) {
				continue
			}
			where := strings.ToUpper(method) + " " + path
			operation := object(t, v, where)
			id, _ := operation["operationId"].(string)
			if id == "" {
				t.Errorf("%s: no operationId", where)
			} else if other, dup := ids[id]; dup {
				t.Errorf("%s: operationId %q already used by %s", where, id, other)
			}
			ids[id] = where

			declared := pathParams(operation["parameters"], where)
			for name := range shared {
				declared[name] = true
			}
			for _, name := range want {
				if !declared[name] {
					t.Errorf("%s: path parameter {%s} is not declared", where, name)
				}
			}
			if len(declared) != len(want) {
				t.Errorf("%s: declares path parameters %v, the path has %v", where, declared, want)
			}

			responses, ok := operation["responses"].(map[string]any)
			if !ok || len(responses) == 0 {
				t.Errorf("%s: no responses", where)
				continue
			}
			success := 0
			for code := range responses {
				if strings.HasPrefix(code, "2") {
					success++
				}
			}
			if success != 1 {
				t.Errorf("%s: %d success responses, want 1", where, success)
			}
		}
	}
}

// TestOpenAPIRefsResolve checks that every $ref in the document points at
// something that exists in it.
func TestOpenAPIRefsResolve(t *testing.T) {
	doc := loadOpenAPI(t)
	var refs []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				refs = append(refs, ref)
			}
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(doc)
	if len(refs) == 0 {
		t.Fatal("no $ref at all: the walk is broken")
	}
	for _, ref := range refs {
		pointer, ok := strings.CutPrefix(ref, "#/components/")
		if !ok {
			t.Errorf("$ref %q: want a local #/components/... reference", ref)
			continue
		}
		var node any = doc["components"]
		for _, part := range strings.Split(pointer, "/") {
			part = strings.NewReplacer("~1", "/", "~0", "~").Replace(part)
			m, ok := node.(map[string]any)
			if !ok {
				node = nil
				break
			}
			node = m[part]
		}
		if node == nil {
			t.Errorf("$ref %q does not resolve", ref)
		}
	}
}

// TestServeOpenAPI checks GET /openapi.json through the handler.
func TestServeOpenAPI(t *testing.T) {
	h := newTestHandler(t)
	for _, p := range []*Principal{nil, &Trusted} {
		req := httptest.NewRequest(http.MethodGet, "/openapi.json", nil)
		if p != nil {
			req = req.WithContext(WithPrincipal(req.Context(), *p))
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("GET /openapi.json (principal %v): status %d, body %s", p != nil, rec.Code, rec.Body)
		}
		if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("Content-Type %q, want application/json", ct)
		}
		var doc map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
			t.Fatalf("body is not JSON: %v", err)
		}
		if doc["openapi"] != "3.1.0" {
			t.Errorf(`"openapi" = %v, want "3.1.0"`, doc["openapi"])
		}
		if paths, _ := doc["paths"].(map[string]any); len(paths) == 0 {
			t.Error("served document has no paths")
		}
	}
}
