package cli

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/admin"
)

// checkCommand is "caddy apikey check".
func checkCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "check",
		Short: "Checks the running Caddy's key store: reachable, how fast, its schema, listener and records",
		Long: `
Asks the running Caddy (its admin endpoint, GET /apikeys/check) about the key
store of its config: which store it is and where (never a password), whether
it answers and the round trip it took, its schema (PostgreSQL) or format
(file) version, for PostgreSQL whether the change listener is connected, and
how many accounts, keys and tokens it holds.

"caddy validate" opens no store, by design, so that a config can be checked
without its database; this is the check that connects. It exits 1 when the
store does not answer (and prints what is known without it).`,
		Args: noArgs,
		RunE: run(cmdCheck),
	}
}

func cmdCheck(e *env, _ []string) error {
	c, err := e.api.Check(e.ctx)
	if err != nil {
		return err
	}
	if e.json {
		err = e.printJSON(c)
	} else {
		err = printCheck(e, c)
	}
	if err != nil {
		return err
	}
	if !c.Reachable {
		return errors.New("the key store is unreachable: " + c.Message)
	}
	return nil
}

// printCheck prints a check as a table of one row per subject.
func printCheck(e *env, c *admin.Check) error {
	tw := newTable(e.out)
	store := cell(c.Store)
	if c.Location != "" {
		store += " (" + cell(c.Location) + ")"
	}
	fmt.Fprintf(tw, "Store\t%s\n", store)
	if c.Reachable {
		fmt.Fprintf(tw, "Reachable\tyes, in %s\n", cell(c.Latency))
	} else {
		fmt.Fprintf(tw, "Reachable\tno: %s\n", cell(c.Message))
	}
	if c.SchemaVersion != 0 || c.LatestSchemaVersion != 0 {
		version := "unknown"
		if c.SchemaVersion != 0 {
			version = strconv.Itoa(c.SchemaVersion)
		}
		fmt.Fprintf(tw, "Schema\tversion %s (this Keygate's latest: %d)\n", version, c.LatestSchemaVersion)
	}
	if l := c.Listener; l != nil {
		state := "disconnected"
		if l.Connected {
			state = "connected"
		}
		if l.Since != nil {
			state += " since " + formatTime(*l.Since)
		}
		fmt.Fprintf(tw, "Listener\t%s\n", state)
	}
	if n := c.Counts; n != nil {
		fmt.Fprintf(tw, "Records\t%s, %s, %s\n", count(int(n.Accounts), "account"), count(int(n.Keys), "key"), count(int(n.Tokens), "token"))
	}
	return tw.Flush()
}
