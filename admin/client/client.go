// Package client is a typed client of Keygate's key-management API
// (package admin): on Caddy's admin endpoint under /apikeys, or on a site
// served by apikey_admin with a key. Requests and answers are the admin
// package's own types; error answers are *Error, with the HTTP status read
// from the response.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// MaxAnswerBytes bounds the answers the client reads (the export stream
// excepted).
const MaxAnswerBytes = 64 << 20

// Client calls the API at one base URL. It is safe for concurrent use.
type Client struct {
	base   string // without a trailing slash
	http   *http.Client
	header http.Header
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sends the requests with hc instead of
// http.DefaultClient: to dial a unix socket, or to set timeouts.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) { c.http = hc }
}

// WithHeader sends header name: value with every request (Caddy's admin
// endpoint checks Origin, for one).
func WithHeader(name, value string) Option {
	return func(c *Client) { c.header.Set(name, value) }
}

// WithToken authenticates every request with an API key's token, as
// "Authorization: Bearer", for an apikey_admin site.
func WithToken(token string) Option {
	return WithHeader("Authorization", "Bearer "+token)
}

// New returns a client of the API at baseURL: the URL its routes start
// at, such as http://localhost:2019/apikeys for Caddy's admin endpoint.
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("the API's base URL %q must be an absolute http or https URL", baseURL)
	}
	c := &Client{base: strings.TrimSuffix(baseURL, "/"), http: http.DefaultClient, header: http.Header{}}
	for _, opt := range opts {
		opt(c)
	}
	return c, nil
}

// BaseURL returns the URL the API's routes start at.
func (c *Client) BaseURL() string { return c.base }

// send sends a request for path (below the base URL) with query and body,
// and returns the response of a 2xx answer; any other is an *Error.
func (c *Client) send(ctx context.Context, method, path string, query url.Values, contentType string, body io.Reader) (*http.Response, error) {
	resp, err := c.do(ctx, method, path, query, contentType, body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		return nil, readError(resp)
	}
	return resp, nil
}

// do sends a request as send does and returns the response whatever its
// status; only a request that got no answer is an error.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, contentType string, body io.Reader) (*http.Response, error) {
	uri := c.base + path
	if enc := query.Encode(); enc != "" {
		uri += "?" + enc
	}
	req, err := http.NewRequestWithContext(ctx, method, uri, body)
	if err != nil {
		return nil, fmt.Errorf("making the request %s %s: %w", method, path, err)
	}
	for name, values := range c.header {
		req.Header[name] = values
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, &TransportError{URL: c.base, Err: unwrapURLError(err)}
	}
	return resp, nil
}

// call sends in (JSON, unless nil) and decodes a JSON answer into out
// (unless nil).
func (c *Client) call(ctx context.Context, method, path string, query url.Values, in, out any) error {
	var body io.Reader
	contentType := ""
	if in != nil {
		raw, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encoding the request %s %s: %w", method, path, err)
		}
		body, contentType = bytes.NewReader(raw), "application/json"
	}
	resp, err := c.send(ctx, method, path, query, contentType, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, MaxAnswerBytes))
		return nil
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswerBytes))
	if err != nil {
		return fmt.Errorf("reading the answer to %s %s: %w", method, path, err)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("decoding the answer to %s %s: %w", method, path, err)
	}
	return nil
}

// TransportError is a request that got no answer: the API could not be
// reached, or the connection broke.
type TransportError struct {
	URL string
	Err error
}

func (e *TransportError) Error() string { return "cannot reach " + e.URL + ": " + e.Err.Error() }

func (e *TransportError) Unwrap() error { return e.Err }

// unwrapURLError drops net/http's "Get "http://…": " wrapping, which
// repeats the URL and method.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// escape escapes one path segment (an id or a name).
func escape(segment string) string { return url.PathEscape(segment) }
