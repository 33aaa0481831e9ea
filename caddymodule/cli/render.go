package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/admin/client"
	"github.com/keygate/keygate/storage"
)

// printJSON prints v as indented JSON, as the API's objects read.
func (e *env) printJSON(v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encoding the output: %w", err)
	}
	_, err := e.out.Write(buf.Bytes())
	return err
}

// printList prints all the items of a list as one {"items": […]} page.
func printList[T any](e *env, items []T) error {
	return e.printJSON(admin.List[T]{Items: items})
}

// names maps ids to names, for tables that show both.
type names map[string]string

// or returns the name of id, or def when it has none.
func (n names) or(id, def string) string {
	if name := n[id]; name != "" {
		return name
	}
	return def
}

// accountNames returns the names of the accounts ids: one GetAccount for
// one id, else one listing of all the accounts (never one call a row).
func (e *env) accountNames(ids ...string) (names, error) {
	ids = slices.Compact(slices.Sorted(slices.Values(ids)))
	out := names{}
	switch len(ids) {
	case 0:
		return out, nil
	case 1:
		a, err := e.api.GetAccount(e.ctx, ids[0])
		if client.IsNotFound(err) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out[a.ID] = a.Name
		return out, nil
	}
	return e.everyAccountName()
}

// everyAccountName returns the names of all the accounts.
func (e *env) everyAccountName() (names, error) {
	accounts, err := client.Collect(e.api.Accounts(e.ctx))
	if err != nil {
		return nil, err
	}
	out := make(names, len(accounts))
	for _, a := range accounts {
		out[a.ID] = a.Name
	}
	return out, nil
}

// keyAccounts returns the account ids of keys.
func keyAccounts(keys []admin.Key) []string {
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.Account
	}
	return ids
}

// allNames returns the names of every account, key and token (as
// key/token), from one listing of the accounts and one of the keys.
func (e *env) allNames() (names, error) {
	out, err := e.everyAccountName()
	if err != nil {
		return nil, err
	}
	keys, err := client.Collect(e.api.Keys(e.ctx, client.KeyFilter{}))
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		out[k.ID] = k.Name
		for _, t := range k.Tokens {
			out[t.ID] = k.Name + "/" + cell(t.Name)
		}
	}
	return out, nil
}

// newTable returns a tabwriter for aligned columns.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// cell makes a value fit in a table cell: no tabs, newlines or other
// control characters, and "-" when empty.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

// scopeList joins scopes for a table cell.
func scopeList(scopes []string) string {
	return cell(strings.Join(scopes, ","))
}

// tagList joins tags as k=v, sorted, for a table cell.
func tagList(tags map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		parts = append(parts, k+"="+tags[k])
	}
	return cell(strings.Join(parts, " "))
}

// formatTime prints a time for people: RFC 3339 in UTC, to the second.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Truncate(time.Second).Format(time.RFC3339)
}

// count says "1 key", "2 keys".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// renderAccounts prints accounts as a table:
// ID NAME KIND TEAM SCOPES DISABLED.
func renderAccounts(w io.Writer, accounts []admin.Account) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tNAME\tKIND\tTEAM\tSCOPES\tDISABLED")
	for _, a := range accounts {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n",
			cell(a.ID), cell(a.Name), cell(a.Kind), cell(a.Team), scopeList(a.Scopes), yesNo(a.Disabled))
	}
	return tw.Flush()
}

// renderAccount prints one account: its row and its usage policy.
func renderAccount(w io.Writer, a admin.Account) error {
	if err := renderAccounts(w, []admin.Account{a}); err != nil {
		return err
	}
	tw := newTable(w)
	fmt.Fprintln(tw)
	fmt.Fprintf(tw, "Limits:\t%s\n", limitList(a.Limits))
	fmt.Fprintf(tw, "Allowed IPs:\t%s\n", ipList(a.AllowedIPs))
	return tw.Flush()
}

// activeTokens counts the active tokens of k.
func activeTokens(k admin.Key) int {
	n := 0
	for _, t := range k.Tokens {
		if t.Status == storage.StatusActive {
			n++
		}
	}
	return n
}

// renderKeys prints keys as a table: ID ACCOUNT NAME SCOPES TOKENS
// CREATED, with the account's name (its id when it has none in accounts),
// the effective scopes and the number of active tokens.
func renderKeys(w io.Writer, keys []admin.Key, accounts names) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tACCOUNT\tNAME\tSCOPES\tTOKENS\tCREATED")
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n",
			cell(k.ID), cell(accounts.or(k.Account, k.Account)), cell(k.Name), scopeList(k.EffectiveScopes),
			activeTokens(k), formatTime(k.CreatedAt))
	}
	return tw.Flush()
}

// renderKey prints one key: its row, its other fields, and its tokens.
func renderKey(w io.Writer, k admin.Key, accounts names) error {
	if err := renderKeys(w, []admin.Key{k}, accounts); err != nil {
		return err
	}
	scopes := scopeList(k.Scopes) + " (its own)"
	if k.Scopes == nil {
		scopes = scopeList(k.EffectiveScopes) + " (inherited from the account)"
	}
	tw := newTable(w)
	fmt.Fprintln(tw)
	fmt.Fprintf(tw, "Account:\t%s (%s)\n", cell(accounts.or(k.Account, "-")), cell(k.Account))
	fmt.Fprintf(tw, "Description:\t%s\n", cell(k.Description))
	fmt.Fprintf(tw, "Tags:\t%s\n", tagList(k.Tags))
	fmt.Fprintf(tw, "Scopes:\t%s\n", scopes)
	fmt.Fprintf(tw, "Limits:\t%s\n", limitList(k.Limits))
	fmt.Fprintf(tw, "Allowed IPs:\t%s\n", ipList(k.AllowedIPs))
	fmt.Fprintf(tw, "Credits:\t%s\n", creditLine(k.Credits))
	// Usage is shown for the windows there are, the account's too.
	if k.Usage != nil && len(k.Usage.Windows) > 0 {
		fmt.Fprintf(tw, "Usage:\t%s\n", usageLine(k.Usage.Windows))
	}
	if k.Usage != nil && len(k.Usage.AccountWindows) > 0 {
		fmt.Fprintf(tw, "Account usage:\t%s\n", usageLine(k.Usage.AccountWindows))
	}
	fmt.Fprintf(tw, "Created by:\t%s\n", cell(k.CreatedBy))
	fmt.Fprintln(tw)
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(k.Tokens) == 0 {
		_, err := fmt.Fprintln(w, "no tokens")
		return err
	}
	return renderTokens(w, k.Tokens)
}

// renderTokens prints tokens as a table: TOKEN KEY NAME HINT EXPIRES
// LAST_USED STATUS.
func renderTokens(w io.Writer, tokens []admin.Token) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "TOKEN\tKEY\tNAME\tHINT\tEXPIRES\tLAST_USED\tSTATUS")
	for _, t := range tokens {
		expires, used := "never", "never"
		if t.ExpiresAt != nil {
			expires = formatTime(*t.ExpiresAt)
		}
		if t.LastUsedAt != nil {
			used = formatTime(*t.LastUsedAt)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			cell(t.ID), cell(t.Key), cell(t.Name), cell(t.Hint), expires, used, cell(t.Status))
	}
	return tw.Flush()
}

// renderAudit prints audit events as a table: AT ACTION TARGET
// TARGET_NAME ACTOR ACTOR_NAME, with the names objects have now ("-" for
// those gone).
func renderAudit(w io.Writer, events []admin.AuditEvent, n names) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "AT\tACTION\tTARGET\tTARGET_NAME\tACTOR\tACTOR_NAME")
	for _, ev := range events {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", formatTime(ev.At), cell(ev.Action),
			cell(ev.Target), cell(n.or(ev.Target, "")), cell(ev.Actor), cell(n.or(ev.Actor, "")))
	}
	return tw.Flush()
}

// printSecret prints a new token value, alone on the last line.
func printSecret(w io.Writer, secret string) error {
	_, err := fmt.Fprintf(w, "\nThe token value, shown only this once:\n%s\n", secret)
	return err
}
