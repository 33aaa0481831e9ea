package tests

import (
	apiclient "github.com/keygate/keygate/admin/client"
)

// api returns a typed client of the key-management API on the gateway's
// admin endpoint.
func (g *gateway) api() *apiclient.Client {
	g.t.Helper()
	c, err := apiclient.New(g.AdminURL+"/apikeys", apiclient.WithHTTPClient(client))
	if err != nil {
		g.t.Fatal(err)
	}
	return c
}
