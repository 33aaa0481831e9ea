package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// documentedAdminEndpoint is the document's server for Caddy's admin
// endpoint. The test gateway's admin endpoint listens elsewhere; its
// requests are routed in the document as if sent there.
const documentedAdminEndpoint = "http://localhost:2019/apikeys"

// endpoint says where a call goes: Caddy's admin endpoint or the
// apikey_admin site.
type endpoint int

const (
	onAdmin endpoint = iota
	onSite
)

// apiCall is one request to the API and the status it must get.
type apiCall struct {
	// op is the operationId whose declared responses the answer must
	// match; for a 405, an operation of the same path.
	op           string
	on           endpoint
	key          string // X-API-Key through apikey_admin; "" for none
	method, path string
	// body is sent as JSON, unless it is []byte or string (sent as is,
	// with contentType).
	body        any
	contentType string
	status      int
}

// apiCheck sends calls to a live gateway and validates every answer
// against the OpenAPI document it serves, with kin-openapi.
type apiCheck struct {
	t        *testing.T
	adminURL string // the admin endpoint's /apikeys
	siteURL  string // the apikey_admin site
	doc      *openapi3.T
	router   routers.Router
	ops      map[string]*routers.Route // operationId → its route
	// seen records, per operationId, the statuses validated.
	seen map[string][]int
}

var registerJSONLines sync.Once

// decodeJSONLines decodes a JSON Lines body as the array of its values,
// as OpenAPI 3.2 reads a sequential media type's schema.
func decodeJSONLines(body io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
	values := []any{}
	dec := json.NewDecoder(body)
	for {
		var v any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			return values, nil
		}
		if err != nil {
			return nil, err
		}
		values = append(values, v)
	}
}

// newAPICheck loads the document the gateway serves with kin-openapi,
// validates it and builds its router.
func newAPICheck(t *testing.T, adminURL, siteURL string, raw []byte) *apiCheck {
	t.Helper()
	registerJSONLines.Do(func() { openapi3filter.RegisterBodyDecoder("application/jsonl", decodeJSONLines) })
	doc, err := openapi3.NewLoader().LoadFromData(raw)
	if err != nil {
		t.Fatalf("kin-openapi cannot load the served document: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("kin-openapi rejects the served document: %v", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("kin-openapi cannot route the served document: %v", err)
	}
	c := &apiCheck{t: t, adminURL: adminURL + "/apikeys", siteURL: siteURL, doc: doc, router: router,
		ops: map[string]*routers.Route{}, seen: map[string][]int{}}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			c.ops[op.OperationID] = &routers.Route{Spec: doc, Path: path, PathItem: item, Method: method, Operation: op}
		}
	}
	return c
}

// call sends k, checks its status and validates the answer (and, for a
// success, the request) against the document. It returns the answer.
func (c *apiCheck) call(k apiCall) response {
	t := c.t
	t.Helper()
	want, ok := c.ops[k.op]
	if !ok {
		t.Fatalf("%s %s: the document has no operation %q", k.method, k.path, k.op)
	}
	raw, contentType := c.encode(k)
	base := c.adminURL
	if k.on == onSite {
		base = c.siteURL
	}
	req, err := http.NewRequest(k.method, base+k.path, bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if raw != nil {
		req.Header.Set("Content-Type", contentType)
	}
	if k.key != "" {
		req.Header.Set("X-API-Key", k.key)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", k.method, req.URL, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	r := response{Status: resp.StatusCode, Header: resp.Header, Body: body}
	where := k.method + " " + k.path + map[endpoint]string{onAdmin: " (admin endpoint)", onSite: " (apikey_admin)"}[k.on]
	if r.Status != k.status {
		t.Fatalf("%s: status %d, want %d: %.400s", where, r.Status, k.status, r.Body)
	}

	// Route the request in the document, as sent to its servers.
	method := k.method
	if k.status == http.StatusMethodNotAllowed {
		method = want.Method // a 405 answers for the path: check it against the path's operation
	}
	routeURL := k.path // the site root's server "/": a request as the site sees it
	if k.on == onAdmin {
		routeURL = documentedAdminEndpoint + k.path
	}
	routing, err := http.NewRequest(method, routeURL, bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	routing.Header = req.Header.Clone()
	route, params, err := c.router.FindRoute(routing)
	if err != nil {
		t.Errorf("%s: kin-openapi finds no route: %v", where, err)
		return r
	}
	if route.Operation.OperationID != k.op {
		t.Errorf("%s: routed to %s, want %s", where, route.Operation.OperationID, k.op)
		return r
	}
	input := &openapi3filter.RequestValidationInput{Request: routing, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true}}
	if r.Status < 300 && method == k.method {
		// The server took it: the document must take it too.
		if err := openapi3filter.ValidateRequest(context.Background(), input); err != nil {
			t.Errorf("%s: the document rejects a request the server served: %v", where, err)
		}
	}
	err = openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: input, Status: r.Status, Header: r.Header, Body: io.NopCloser(bytes.NewReader(r.Body)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	})
	if err != nil {
		t.Errorf("%s: the answer does not match the document: %v\n%.600s", where, err, r.Body)
	}
	c.checkFields(where, route, r)
	c.seen[k.op] = append(c.seen[k.op], r.Status)
	return r
}

// encode returns the body of k and its content type.
func (c *apiCheck) encode(k apiCall) ([]byte, string) {
	ct := k.contentType
	if ct == "" {
		ct = "application/json"
	}
	switch b := k.body.(type) {
	case nil:
		return nil, ""
	case []byte:
		return b, ct
	case string:
		return []byte(b), ct
	}
	raw, err := json.Marshal(k.body)
	if err != nil {
		c.t.Fatal(err)
	}
	return raw, "application/json"
}

// checkFields fails on any field of a JSON answer that its schema does not
// declare: a schema is checked to hold what the server sends, no less.
func (c *apiCheck) checkFields(where string, route *routers.Route, r response) {
	ref := route.Operation.Responses.Status(r.Status)
	if ref == nil || ref.Value == nil || len(r.Body) == 0 {
		return
	}
	ct := r.Header.Get("Content-Type")
	media := ref.Value.Content.Get(ct)
	if media == nil || media.Schema == nil {
		return
	}
	var v any
	var err error
	if strings.HasPrefix(ct, "application/jsonl") {
		v, err = decodeJSONLines(bytes.NewReader(r.Body), nil, nil, nil)
	} else {
		err = json.Unmarshal(r.Body, &v)
	}
	if err != nil {
		c.t.Errorf("%s: the body does not decode: %v", where, err)
		return
	}
	var extra []string
	undeclared(media.Schema, v, "", &extra)
	if len(extra) > 0 {
		sort.Strings(extra)
		c.t.Errorf("%s: the answer holds fields its schema does not declare: %v", where, extra)
	}
}

// undeclared appends to out the object members of v that no schema of s
// (following allOf, oneOf and anyOf) declares, unless it is open (declares
// additionalProperties, or no property at all).
func undeclared(s *openapi3.SchemaRef, v any, at string, out *[]string) {
	if s == nil || s.Value == nil {
		return
	}
	var schemas []*openapi3.Schema
	var gather func(*openapi3.Schema)
	gather = func(x *openapi3.Schema) {
		schemas = append(schemas, x)
		for _, list := range []openapi3.SchemaRefs{x.AllOf, x.OneOf, x.AnyOf} {
			for _, sub := range list {
				if sub.Value != nil {
					gather(sub.Value)
				}
			}
		}
	}
	gather(s.Value)
	switch v := v.(type) {
	case map[string]any:
		props := map[string][]*openapi3.SchemaRef{}
		open := false
		for _, x := range schemas {
			for name, p := range x.Properties {
				props[name] = append(props[name], p)
			}
			if ap := x.AdditionalProperties; ap.Schema != nil || (ap.Has != nil && *ap.Has) {
				open = true
			}
		}
		open = open || len(props) == 0
		for name, e := range v {
			ps, ok := props[name]
			if !ok && !open {
				*out = append(*out, at+"."+name)
			}
			for _, p := range ps {
				undeclared(p, e, at+"."+name, out)
			}
		}
	case []any:
		for _, x := range schemas {
			if x.Items == nil {
				continue
			}
			for i, e := range v {
				undeclared(x.Items, e, at+"["+strconv.Itoa(i)+"]", out)
			}
		}
	}
}

// requireCoverage fails unless every operation of the document was seen
// with a success and with an error, and every status it declares was
// produced by some call.
func (c *apiCheck) requireCoverage() {
	t := c.t
	t.Helper()
	var ids []string
	for id := range c.ops {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		seen := c.seen[id]
		success := slices.ContainsFunc(seen, func(s int) bool { return s < 300 })
		failure := slices.ContainsFunc(seen, func(s int) bool { return s >= 400 })
		if !success || !failure {
			t.Errorf("operation %s was not exercised with a success and an error (seen %v)", id, seen)
		}
		var unseen []string
		for code := range c.ops[id].Operation.Responses.Map() {
			if !slices.Contains(seen, atoi(code)) {
				unseen = append(unseen, code)
			}
		}
		sort.Strings(unseen)
		if len(unseen) > 0 {
			t.Errorf("operation %s declares statuses no call produced: %v", id, unseen)
		}
	}
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
