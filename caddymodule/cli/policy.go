package cli

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/spf13/cobra"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/storage"
)

// policyCommands are "caddy apikey limit|credits|allow-ip".
func policyCommands() []*cobra.Command {
	limit := &cobra.Command{
		Use:   "limit <set|clear>",
		Short: "Sets or removes the rate windows of a key or an account",
		RunE:  groupRunE,
	}
	set := &cobra.Command{
		Use:   "set <key-id> | --account <id|name>  --window <name>=<limit>/<duration> ...",
		Short: "Replaces the rate windows of a key or an account",
		Long: `
Replaces all the rate windows of a key (or, with --account, of an account,
whose windows all its keys share) with those given: --window burst=20/1s
allows 20 requests a second, --window day=10000/24h (or 1d) 10000 a day. A
request needs room in every window of its key and of its account. Durations
are whole seconds, from 1s to 31 days.`,
		Args:              maxArgs(1, "at most one key id"),
		ValidArgsFunction: completeKeys,
		RunE:              run(cmdLimitSet),
	}
	set.Flags().StringArray("window", nil, "A rate window as name=limit/duration (repeatable)")
	targetFlag(set)
	clear := &cobra.Command{
		Use:               "clear <key-id> | --account <id|name>",
		Short:             "Removes all the rate windows of a key or an account",
		Args:              maxArgs(1, "at most one key id"),
		ValidArgsFunction: completeKeys,
		RunE:              run(cmdLimitClear),
	}
	targetFlag(clear)
	limit.AddCommand(set, clear)

	credits := &cobra.Command{
		Use:   "credits <set|clear>",
		Short: "Sets or removes the credit balance of a key",
		RunE:  groupRunE,
	}
	creditsSet := &cobra.Command{
		Use:   "set <key-id> [--remaining <n>] [--refill <amount>/<daily|weekly|monthly>[/<day>] | --no-refill]",
		Short: "Sets a key's credit balance or its refill",
		Long: `
Gives a key credits, or changes them: each request spends some (1, or the
route's cost), and once they are spent the key is refused until a refill.
--remaining sets the balance (credits gateways hold unspent are then void);
--refill puts it back to an amount every day (1000/daily), week
(1000/weekly/mon, or a weekday from 0 Sunday to 6) or month (1000/monthly/1,
the day clamped to the month's end), at 00:00 UTC; --no-refill stops that.
What is not given stays; a key without credits gets --remaining, or the
refill's amount.`,
		Args:              nArgs(1, "one key id"),
		ValidArgsFunction: completeKeys,
		RunE:              run(cmdCreditsSet),
	}
	creditsSet.Flags().Int64("remaining", 0, "The balance")
	creditsSet.Flags().String("refill", "", "Refill as amount/interval[/day]: 1000/daily, 1000/weekly/mon, 1000/monthly/1")
	creditsSet.Flags().Bool("no-refill", false, "Remove the refill")
	creditsClear := &cobra.Command{
		Use:               "clear <key-id>",
		Short:             "Removes a key's credits: it is no longer limited by them",
		Args:              nArgs(1, "one key id"),
		ValidArgsFunction: completeKeys,
		RunE:              run(cmdCreditsClear),
	}
	credits.AddCommand(creditsSet, creditsClear)

	allow := &cobra.Command{
		Use:   "allow-ip <key-id> <cidr>... | --account <id|name> <cidr>... | <key-id> --clear",
		Short: "Sets the addresses a key or an account's keys may be used from",
		Long: `
Replaces the IP allowlist of a key (or, with --account, of an account's
keys) with the CIDR prefixes or addresses given: 10.0.0.0/8 2001:db8::/32
192.0.2.7. Requests from elsewhere (Caddy's client_ip, so trusted_proxies
apply) are refused with 403 ip_not_allowed. --clear removes the list: any
address may use it.`,
		ValidArgsFunction: completeKeys,
		RunE:              run(cmdAllowIP),
	}
	targetFlag(allow)
	allow.Flags().Bool("clear", false, "Remove the allowlist")
	return []*cobra.Command{limit, credits, allow}
}

// targetFlag adds --account to a command that acts on a key or an account.
func targetFlag(cmd *cobra.Command) {
	cmd.Flags().String("account", "", "Act on this account (id or name) instead of a key")
	completeAccountFlag(cmd)
}

// maxArgs wants at most n positional arguments.
func maxArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > n {
			return fail(cmd, usagef("want %s, not %d argument(s); see '%s --help'", what, len(args), cmd.CommandPath()))
		}
		return nil
	}
}

// target is what a policy command acts on: a key, or an account.
type target struct{ key, account string }

// policyTarget reads the target of a policy command: its first argument
// (a key id), or --account; it returns the remaining arguments.
func policyTarget(e *env, args []string) (target, []string, error) {
	account, _ := e.cmd.Flags().GetString("account")
	switch {
	case account != "" && len(args) > 0 && strings.HasPrefix(args[0], storage.KeyIDPrefix):
		return target{}, nil, usagef("give a key id or --account, not both")
	case account != "":
		return target{account: account}, args, nil
	case len(args) == 0:
		return target{}, nil, usagef("give a key id or --account")
	}
	if err := checkKeyID(args[0]); err != nil {
		return target{}, nil, err
	}
	return target{key: args[0]}, args[1:], nil
}

// patch applies a policy change to the target and prints the result.
func (tg target) patch(e *env, limits *[]admin.Limit, ips *[]string) error {
	if tg.account != "" {
		a, err := e.api.UpdateAccount(e.ctx, tg.account, admin.UpdateAccountRequest{Limits: limits, AllowedIPs: ips})
		if err != nil {
			return err
		}
		if e.json {
			return e.printJSON(a)
		}
		return renderAccount(e.out, *a)
	}
	return e.patchKey(tg.key, admin.UpdateKeyRequest{Limits: limits, AllowedIPs: ips})
}

// patchKey applies req to key id and prints it.
func (e *env) patchKey(id string, req admin.UpdateKeyRequest) error {
	k, err := e.api.UpdateKey(e.ctx, id, req)
	if err != nil {
		return err
	}
	return e.printKey(k)
}

// printKey prints k as JSON or as the key's table, its account by name.
func (e *env) printKey(k *admin.Key) error {
	if e.json {
		return e.printJSON(k)
	}
	accounts, err := e.accountNames(k.Account)
	if err != nil {
		return err
	}
	return renderKey(e.out, *k, accounts)
}

func cmdLimitSet(e *env, args []string) error {
	tg, rest, err := policyTarget(e, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("unexpected argument(s); windows are given with --window")
	}
	flags, _ := e.cmd.Flags().GetStringArray("window")
	if len(flags) == 0 {
		return usagef("give at least one --window name=limit/duration (or use 'limit clear')")
	}
	limits := make([]admin.Limit, len(flags))
	for i, f := range flags {
		if limits[i], err = parseWindow(f); err != nil {
			return err
		}
	}
	return tg.patch(e, &limits, nil)
}

func cmdLimitClear(e *env, args []string) error {
	tg, _, err := policyTarget(e, args)
	if err != nil {
		return err
	}
	return tg.patch(e, &[]admin.Limit{}, nil)
}

func cmdAllowIP(e *env, args []string) error {
	tg, cidrs, err := policyTarget(e, args)
	if err != nil {
		return err
	}
	clear, _ := e.cmd.Flags().GetBool("clear")
	switch {
	case clear && len(cidrs) > 0:
		return usagef("--clear takes no prefixes")
	case !clear && len(cidrs) == 0:
		return usagef("give the CIDR prefixes or addresses to allow (or --clear)")
	}
	if cidrs == nil {
		cidrs = []string{}
	}
	return tg.patch(e, nil, &cidrs)
}

func cmdCreditsSet(e *env, args []string) error {
	if err := checkKeyID(args[0]); err != nil {
		return err
	}
	fl := e.cmd.Flags()
	var patch admin.CreditsPatch
	if fl.Changed("remaining") {
		n, _ := fl.GetInt64("remaining")
		patch.Remaining = &n
	}
	noRefill, _ := fl.GetBool("no-refill")
	switch {
	case noRefill && fl.Changed("refill"):
		return usagef("--refill and --no-refill exclude each other")
	case noRefill:
		patch.Refill = admin.NoRefill
	case fl.Changed("refill"):
		v, _ := fl.GetString("refill")
		r, err := parseRefill(v)
		if err != nil {
			return err
		}
		if patch.Refill, err = json.Marshal(r); err != nil {
			return err
		}
	}
	if patch.Remaining == nil && patch.Refill == nil {
		return usagef("nothing to change: give --remaining, --refill or --no-refill")
	}
	raw, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	return e.patchKey(args[0], admin.UpdateKeyRequest{Credits: raw})
}

func cmdCreditsClear(e *env, args []string) error {
	if err := checkKeyID(args[0]); err != nil {
		return err
	}
	return e.patchKey(args[0], admin.UpdateKeyRequest{Credits: admin.Unlimited})
}

// parseWindow reads --window name=limit/duration (Caddy durations: 1d
// works); the API judges the values.
func parseWindow(v string) (admin.Limit, error) {
	name, rest, ok := strings.Cut(v, "=")
	limit, length, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 || name == "" {
		return admin.Limit{}, usagef("--window %q: want name=limit/duration, such as burst=20/1s", v)
	}
	n, err := strconv.ParseInt(limit, 10, 64)
	if err != nil {
		return admin.Limit{}, usagef("--window %q: the limit %q is not a whole number", v, limit)
	}
	d, err := caddy.ParseDuration(length)
	if err != nil || d <= 0 {
		return admin.Limit{}, usagef("--window %q: %q is not a duration such as 1s, 1m, 24h or 1d", v, length)
	}
	return admin.Limit{Name: name, Limit: n, Window: storage.FormatWindowLength(d)}, nil
}

// parseRefill reads --refill amount/interval[/day]; a weekly day may be a
// weekday's name (mon) or number (0 Sunday to 6).
func parseRefill(v string) (admin.Refill, error) {
	parts := strings.Split(v, "/")
	if len(parts) < 2 || len(parts) > 3 {
		return admin.Refill{}, usagef("--refill %q: want amount/interval[/day], such as 1000/monthly/1", v)
	}
	amount, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil {
		return admin.Refill{}, usagef("--refill %q: the amount %q is not a whole number", v, parts[0])
	}
	r := admin.Refill{Amount: amount, Interval: strings.ToLower(parts[1])}
	if len(parts) == 3 {
		day := strings.ToLower(parts[2])
		if i := weekday(day); i >= 0 && r.Interval == storage.RefillWeekly {
			r.Day = i
		} else if r.Day, err = strconv.Atoi(day); err != nil {
			return admin.Refill{}, usagef("--refill %q: the day %q is not a number (or, weekly, a weekday such as mon)", v, parts[2])
		}
	}
	return r, nil
}

var weekdayNames = []string{"sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"}

// weekday returns the number of a weekday named in full or by its first
// three letters, or -1.
func weekday(s string) int {
	for i, name := range weekdayNames {
		if s == name || s == name[:3] {
			return i
		}
	}
	return -1
}

// limitList writes windows for people: burst=20/1s, day=10000/24h.
func limitList(limits []admin.Limit) string {
	if len(limits) == 0 {
		return "none"
	}
	parts := make([]string, len(limits))
	for i, l := range limits {
		parts[i] = fmt.Sprintf("%s=%d/%s", cell(l.Name), l.Limit, cell(l.Window))
	}
	return strings.Join(parts, ", ")
}

// ipList writes an allowlist for people.
func ipList(ips []string) string {
	if len(ips) == 0 {
		return "any"
	}
	return cell(strings.Join(ips, ", "))
}

// creditLine writes a key's credits for people.
func creditLine(c *admin.Credits) string {
	if c == nil {
		return "unlimited"
	}
	s := strconv.FormatInt(c.Remaining, 10) + " left"
	if r := c.Refill; r != nil {
		s += fmt.Sprintf(", back to %d %s", r.Amount, cell(r.Interval))
		switch r.Interval {
		case storage.RefillWeekly:
			if r.Day >= 0 && r.Day < len(weekdayNames) {
				s += " on " + weekdayNames[r.Day]
			}
		case storage.RefillMonthly:
			s += fmt.Sprintf(" on day %d", r.Day)
		}
		if c.NextRefill != nil {
			s += " (next " + formatTime(*c.NextRefill) + ")"
		}
	}
	return s
}

// usageLine writes the current use of windows for people.
func usageLine(windows []admin.WindowUsage) string {
	if len(windows) == 0 {
		return "-"
	}
	parts := make([]string, len(windows))
	for i, w := range windows {
		parts[i] = fmt.Sprintf("%s %d/%d (resets %s)", cell(w.Name), w.Used, w.Limit, formatTime(w.ResetsAt))
	}
	return strings.Join(parts, ", ")
}
