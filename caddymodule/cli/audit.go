package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/admin/client"
)

// auditCommand is "caddy apikey audit".
func auditCommand() *cobra.Command {
	audit := &cobra.Command{
		Use:   "audit [--since <duration|time>] [--actor <key-id|admin>] [--action <action>] [--target <id>] [--limit <n>]",
		Short: "Lists who created, changed, rotated and revoked what, newest first",
		Long: `
Lists audit events, newest first: all of them, or those since --since (a
duration before now, 24h or 7d, or an RFC 3339 time), by one --actor (a key
id, or "admin" for the admin endpoint), of one --action (key.create,
token.rotate, account.update, …) or on one --target (an account, key or token
id), at most --limit of them. TARGET_NAME and ACTOR_NAME are the names those
objects have now ("-" once deleted).`,
		Args: noArgs,
		RunE: run(cmdAudit),
	}
	fl := audit.Flags()
	fl.String("since", "", "Only events since this time: a duration before now (24h) or an RFC 3339 time")
	fl.String("actor", "", `Only events by this actor: a key id, or "admin"`)
	fl.String("action", "", "Only events of this action, such as key.create")
	fl.String("target", "", "Only events on this account, key or token id")
	fl.Int("limit", 0, "Show at most this many events (default: all)")
	return audit
}

func cmdAudit(e *env, _ []string) error {
	fl := e.cmd.Flags()
	var f client.AuditFilter
	f.Actor, _ = fl.GetString("actor")
	f.Action, _ = fl.GetString("action")
	f.Target, _ = fl.GetString("target")
	limit, _ := fl.GetInt("limit")
	if limit < 0 {
		return usagef("--limit %d: want a positive number", limit)
	}
	var since time.Time
	if v, _ := fl.GetString("since"); v != "" {
		var err error
		if since, err = parseSince(v, e.now()); err != nil {
			return err
		}
	}
	events := []admin.AuditEvent{}
	for ev, err := range e.api.AuditEvents(e.ctx, f) {
		if err != nil {
			return err
		}
		if ev.At.Before(since) || (limit > 0 && len(events) == limit) {
			break // newest first: the rest is older
		}
		events = append(events, ev)
	}
	if e.json {
		return printList(e, events)
	}
	if len(events) == 0 {
		_, err := fmt.Fprintln(e.out, "no audit events")
		return err
	}
	n, err := e.allNames()
	if err != nil {
		return err
	}
	return renderAudit(e.out, events, n)
}

// whoamiCommand is "caddy apikey whoami".
func whoamiCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "whoami",
		Short: "Says who the admin endpoint acts as",
		Long: `
Says who requests to the admin endpoint act as. The endpoint is trusted: it
has no account, key or token, acts with every scope (*), and audit events
name it "admin". Whoever can reach it can do anything, so keep it on
localhost or a unix socket.`,
		Args: noArgs,
		RunE: run(cmdWhoami),
	}
}

func cmdWhoami(e *env, _ []string) error {
	w, err := e.api.Whoami(e.ctx)
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(w)
	}
	if w.Key == nil {
		_, err := fmt.Fprintf(e.out, "The admin endpoint at %s is trusted: it has no account, key or token, acts with every scope (%s), and audit events name it %q.\n",
			e.addr, strings.Join(w.Scopes, ","), "admin")
		return err
	}
	tw := newTable(e.out)
	if w.Account != nil {
		fmt.Fprintf(tw, "Account:\t%s (%s)\n", cell(w.Account.Name), w.Account.ID)
	}
	fmt.Fprintf(tw, "Key:\t%s (%s)\n", cell(w.Key.Name), w.Key.ID)
	if w.Token != nil {
		fmt.Fprintf(tw, "Token:\t%s (%s)\n", cell(w.Token.Hint), w.Token.ID)
	}
	fmt.Fprintf(tw, "Scopes:\t%s\n", scopeList(w.Scopes))
	return tw.Flush()
}
