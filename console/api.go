package console

import (
	"bytes"
	"fmt"
	"io"
	"net/http"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/admin/client"
)

// apiBase is the URL the in-process client calls; no request leaves the
// process (inProcess answers them all).
const apiBase = "http://keygate.console.invalid"

// inProcess is an http.RoundTripper that serves each request with the
// admin API in the same process, as the principal p: the console calls
// the API exactly as apikey_admin serves it (each route's scope, every
// rule of the keystore, the API's validation and its errors), with no
// network hop and no credential on the wire.
type inProcess struct {
	api *admin.Handler
	p   admin.Principal
}

// RoundTrip implements http.RoundTripper.
func (t inProcess) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		defer req.Body.Close()
	}
	rec := &recorder{header: http.Header{}, status: http.StatusOK}
	in := req.Clone(admin.WithPrincipal(req.Context(), t.p))
	in.RequestURI = in.URL.RequestURI()
	t.api.ServeHTTP(rec, in)
	return &http.Response{
		Status: fmt.Sprintf("%d %s", rec.status, http.StatusText(rec.status)), StatusCode: rec.status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: rec.header, Body: io.NopCloser(bytes.NewReader(rec.body.Bytes())),
		ContentLength: int64(rec.body.Len()), Request: req,
	}, nil
}

// recorder collects what the API writes.
type recorder struct {
	header http.Header
	body   bytes.Buffer
	status int
	wrote  bool
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if !r.wrote {
		r.status, r.wrote = status, true
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	r.wrote = true
	return r.body.Write(p)
}

// apiClient returns the typed client of the API acting as p.
func apiClient(api *admin.Handler, p admin.Principal) *client.Client {
	c, err := client.New(apiBase, client.WithHTTPClient(&http.Client{Transport: inProcess{api: api, p: p}}))
	if err != nil {
		panic(err) // apiBase is a constant, valid URL
	}
	return c
}
