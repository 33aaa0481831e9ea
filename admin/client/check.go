package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/keygate/keygate/admin"
)

// Check asks the running config's store how it is (GET /check, on Caddy's
// admin endpoint only). It returns the check whenever the endpoint
// answered one, also a 503 one: Reachable is false then, with Error and
// Message. An error means no check came back: an unreachable endpoint, or
// an answer that is not a check (*Error), such as the 503 of an endpoint
// whose config has not opened its key store yet.
func (c *Client) Check(ctx context.Context) (*admin.Check, error) {
	resp, err := c.do(ctx, http.MethodGet, "/check", nil, "", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswerBytes))
	if err != nil {
		return nil, fmt.Errorf("reading the answer to GET /check: %w", err)
	}
	var out admin.Check
	switch {
	case resp.StatusCode == http.StatusOK:
		if err := json.Unmarshal(raw, &out); err != nil {
			return nil, fmt.Errorf("decoding the answer to GET /check: %w", err)
		}
		return &out, nil
	case resp.StatusCode == http.StatusServiceUnavailable && json.Unmarshal(raw, &out) == nil && out.Store != "":
		return &out, nil
	}
	resp.Body = io.NopCloser(bytes.NewReader(raw))
	return nil, readError(resp)
}
