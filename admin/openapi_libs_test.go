package admin

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/pb33f/libopenapi"
)

// The servers the document must declare, as the issue asked: plain URLs
// that routers and code generators take as they are.
const (
	adminEndpointServer = "http://localhost:2019/apikeys"
	siteRootServer      = "/"
)

// loadKin loads and validates the served document with kin-openapi, as a
// user's tooling would.
func loadKin(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(openAPIDocument)
	if err != nil {
		t.Fatalf("kin-openapi cannot load the document: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("kin-openapi rejects the document: %v", err)
	}
	return doc
}

// TestOpenAPIKinValidates loads and validates the document in
// kin-openapi, and checks its servers are the two plain ones.
func TestOpenAPIKinValidates(t *testing.T) {
	doc := loadKin(t)
	if !doc.IsOpenAPI31OrLater() {
		t.Errorf("kin-openapi reads version %q, want 3.1", doc.OpenAPI)
	}
	var urls []string
	for _, s := range doc.Servers {
		urls = append(urls, s.URL)
		if len(s.Variables) != 0 {
			t.Errorf("server %s has variables %v: routers and generators need plain URLs", s.URL, s.Variables)
		}
		if strings.TrimSpace(s.Description) == "" {
			t.Errorf("server %s has no description", s.URL)
		}
	}
	if strings.Join(urls, " ") != adminEndpointServer+" "+siteRootServer {
		t.Errorf("servers %v, want [%s %s]", urls, adminEndpointServer, siteRootServer)
	}
}

// samplePath fills a route's path parameters with ids of the right kind.
func samplePath(path string) string {
	id := "key_1"
	if strings.HasPrefix(path, "/accounts/") {
		id = "acc_1"
	}
	return strings.NewReplacer("{id}", id, "{tid}", "tok_1").Replace(path)
}

// TestOpenAPIKinRoutes builds both of kin-openapi's routers on the
// document and routes every route the handler serves to its operation:
// on the admin endpoint's server, and on the site root's (a request as
// the site receives it) for the routes apikey_admin serves too.
func TestOpenAPIKinRoutes(t *testing.T) {
	doc := loadKin(t)
	h := newTestHandler(t)
	builders := map[string]func(*openapi3.T) (routers.Router, error){
		"gorillamux": gorillamux.NewRouter,
		"legacy":     func(d *openapi3.T) (routers.Router, error) { return legacy.NewRouter(d) },
	}
	for name, build := range builders {
		router, err := build(doc)
		if err != nil {
			t.Fatalf("%s router: %v", name, err)
		}
		for _, r := range h.Routes() {
			bases := []string{adminEndpointServer}
			if !r.AdminEndpointOnly {
				// As a server sees a request: a path, no scheme or host.
				bases = append(bases, "")
			}
			for _, base := range bases {
				req := httptest.NewRequest(r.Method, base+samplePath(r.Path), nil)
				route, params, err := router.FindRoute(req)
				if err != nil {
					t.Errorf("%s router: %s %s: %v", name, r.Method, req.URL, err)
					continue
				}
				if route.Path != r.Path || route.Method != r.Method || route.Operation == nil {
					t.Errorf("%s router: %s %s found %s %s", name, r.Method, req.URL, route.Method, route.Path)
				}
				if strings.Contains(r.Path, "{id}") && params["id"] == "" {
					t.Errorf("%s router: %s %s: no id parameter in %v", name, r.Method, req.URL, params)
				}
			}
		}
		// A path the document does not have is not found, whatever the server.
		if _, _, err := router.FindRoute(httptest.NewRequest(http.MethodGet, adminEndpointServer+"/nothing", nil)); err == nil {
			t.Errorf("%s router: found a route for /nothing", name)
		}
	}
}

// TestOpenAPILibopenapiBuilds builds the document's model with libopenapi:
// no error, no unresolved or circular reference, and every route there
// with its x-admin-endpoint-only mark.
func TestOpenAPILibopenapiBuilds(t *testing.T) {
	document, err := libopenapi.NewDocument(openAPIDocument)
	if err != nil {
		t.Fatalf("libopenapi cannot read the document: %v", err)
	}
	if v := document.GetVersion(); v != "3.1.0" {
		t.Errorf("libopenapi reads version %q, want 3.1.0", v)
	}
	model, err := document.BuildV3Model()
	if err != nil {
		t.Fatalf("libopenapi cannot build the model: %v", err)
	}
	if errs := model.Index.GetReferenceIndexErrors(); len(errs) > 0 {
		t.Errorf("libopenapi reference errors: %v", errs)
	}
	if errs := model.Index.GetOperationParametersIndexErrors(); len(errs) > 0 {
		t.Errorf("libopenapi parameter errors: %v", errs)
	}
	if c := model.Index.GetCircularReferences(); len(c) > 0 {
		t.Errorf("libopenapi circular references: %d", len(c))
	}
	if errs := model.Index.GetRolodex().GetCaughtErrors(); len(errs) > 0 {
		t.Errorf("libopenapi rolodex errors: %v", errs)
	}
	for _, r := range newTestHandler(t).Routes() {
		item := model.Model.Paths.PathItems.GetOrZero(r.Path)
		if item == nil {
			t.Errorf("libopenapi: no path %s", r.Path)
			continue
		}
		op := item.GetOperations().GetOrZero(strings.ToLower(r.Method))
		if op == nil {
			t.Errorf("libopenapi: no operation %s %s", r.Method, r.Path)
			continue
		}
		mark := op.Extensions.GetOrZero("x-admin-endpoint-only")
		if got := mark != nil && mark.Value == "true"; got != r.AdminEndpointOnly {
			t.Errorf("libopenapi: %s %s x-admin-endpoint-only %v, want %v", r.Method, r.Path, got, r.AdminEndpointOnly)
		}
		if op.Responses.Codes.GetOrZero("405") == nil {
			t.Errorf("libopenapi: %s %s declares no 405", r.Method, r.Path)
		}
	}
}
