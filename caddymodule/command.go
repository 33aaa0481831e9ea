package caddymodule

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/storage"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "apikey",
		Usage: "<account|create|list|rotate|revoke> [--address <listen>] [--config <path> [--adapter <name>]] [--json] [flags]",
		Short: "Manages Keygate accounts and API keys of a running Caddy",
		Long: `
Manages Keygate accounts, API keys and their tokens through the key-management
API on the admin endpoint of a running Caddy (under /apikeys/).

  caddy apikey account create --name ci-bot --kind service --scopes apps,runs:read [--team infra]
  caddy apikey account list
  caddy apikey create --account ci-bot --name deploy --scopes apps:run [--expires 720h] [--description <text>] [--tag k=v ...]
  caddy apikey list [--account ci-bot] [--tag k=v ...]
  caddy apikey rotate <key-id> [--token <token-id>] [--grace 24h]
  caddy apikey revoke <key-id | token value | ->

The admin endpoint is found like 'caddy stop' finds it: --address if given,
else the admin address of the --config file (adapted with --adapter), else
` + caddy.DefaultAdminListen + `.

Output is a table for people; --json prints the API's JSON answer instead.
'create' and 'rotate' print the new token value once, alone on the last line.`,
		CobraFunc: setupAPIKeyCommand,
	})
}

// setupAPIKeyCommand builds the "caddy apikey" command tree under cmd.
func setupAPIKeyCommand(cmd *cobra.Command) {
	pf := cmd.PersistentFlags()
	pf.String("address", "", "Address of the administration API listener (if --config is not used)")
	pf.StringP("config", "c", "", "Configuration file to read the admin address from (if --address is not used)")
	pf.StringP("adapter", "a", "", "Name of the config adapter to apply (if --config is used)")
	pf.Bool("json", false, "Print the API's JSON answers instead of tables")
	cmd.RunE = groupRunE
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return reportError(c, fmt.Errorf("%w; see '%s --help'", err, c.CommandPath()))
	})

	account := &cobra.Command{
		Use:   "account <create|list>",
		Short: "Manages accounts, which keys belong to",
		RunE:  groupRunE,
	}

	accountCreate := &cobra.Command{
		Use:   "create --name <name> [--kind user|service] [--scopes <s1,s2>] [--team <team>]",
		Short: "Creates an account",
		Long: `
Creates an account. --kind is user or service (the API's default is user);
--scopes is a comma-separated list of what the account's keys may do.`,
		Args: noArgs,
		RunE: runAPIKey(cmdAccountCreate),
	}
	accountCreate.Flags().String("name", "", "Name of the account (unique)")
	accountCreate.Flags().String("kind", "", "Kind of the account: user or service")
	accountCreate.Flags().String("scopes", "", "Comma-separated scopes the account holds")
	accountCreate.Flags().String("team", "", "Team the account belongs to")

	accountList := &cobra.Command{
		Use:   "list",
		Short: "Lists all accounts",
		Args:  noArgs,
		RunE:  runAPIKey(cmdAccountList),
	}
	account.AddCommand(accountCreate, accountList)

	create := &cobra.Command{
		Use:   "create --account <id|name> --name <name> [--scopes <s1,s2>] [--expires <duration|time>] [--description <text>] [--tag k=v ...]",
		Short: "Creates a key and its first token",
		Long: `
Creates a key under an account (given by id or name) and its first token, and
prints the token value once, alone on the last line.

Without --scopes the key inherits its account's scopes, live; with --scopes it
gets the intersection of those and its account's. --expires is a duration from
now (720h, 30d) or an RFC 3339 time; without it the token does not expire.`,
		Args: noArgs,
		RunE: runAPIKey(cmdKeyCreate),
	}
	create.Flags().String("account", "", "Account of the key, by id or name")
	create.Flags().String("name", "", "Name of the key")
	create.Flags().String("scopes", "", "Comma-separated scopes of the key (default: inherit the account's)")
	create.Flags().String("expires", "", "Expiry of the first token: a duration from now (720h) or an RFC 3339 time")
	create.Flags().String("description", "", "Description of the key")
	create.Flags().StringArray("tag", nil, "Tag of the key as key=value (repeatable)")

	list := &cobra.Command{
		Use:   "list [--account <id|name>] [--tag k=v ...]",
		Short: "Lists keys",
		Long: `
Lists keys, all pages of them, optionally only those of one account and those
carrying every given tag. SCOPES are the effective scopes; TOKENS counts the
active tokens.`,
		Args: noArgs,
		RunE: runAPIKey(cmdKeyList),
	}
	list.Flags().String("account", "", "Only keys of this account, by id or name")
	list.Flags().StringArray("tag", nil, "Only keys with this tag, as key=value (repeatable)")

	rotate := &cobra.Command{
		Use:   "rotate <key-id> [--token <token-id>] [--grace <duration>]",
		Short: "Replaces a token of a key with a new one",
		Long: `
Replaces a token of a key with a new token (new id and value, same name and
tags) and prints the new value once, alone on the last line. The old token
stops at once, or after --grace (24h, 1d) so that clients can switch over.

Without --token, the key's only active token is rotated; a key with several
active tokens needs --token.`,
		Args: oneArg("a key id"),
		RunE: runAPIKey(cmdRotate),
	}
	rotate.Flags().String("token", "", "Id of the token to rotate (default: the key's only active token)")
	rotate.Flags().String("grace", "", "How long the old token keeps working (default: it stops now)")

	revoke := &cobra.Command{
		Use:   "revoke <key-id | token value | ->",
		Short: "Deletes a key, or revokes a token by its value",
		Long: `
With a key id (key_…), deletes the key and all its tokens. With a token value,
revokes that token, whichever key and account it belongs to: knowing a leaked
value is enough to stop it. "-" reads the token value from standard input, to
keep it out of the process list and shell history.`,
		Args: oneArg("a key id or a token value"),
		RunE: runAPIKey(cmdRevoke),
	}

	export := &cobra.Command{
		Use:   "export [--output <file>]",
		Short: "Writes every account, key and token hash as JSON Lines",
		Long: `
Writes every account, key and token of the running Caddy's key store as JSON
Lines, to standard output or --output. Tokens are exported as their SHA-256
hashes (their values are never stored), so that "caddy apikey import" on
another store keeps them working: treat the file as sensitive.`,
		Args: noArgs,
		RunE: runAPIKey(cmdExport),
	}
	export.Flags().StringP("output", "o", "", "File to write (default: standard output)")

	importCmd := &cobra.Command{
		Use:   "import <file | ->",
		Short: "Loads an export into the running Caddy's key store",
		Long: `
Loads the JSON Lines written by "caddy apikey export" into the key store of
the running Caddy, record by record. Importing the same file twice changes
nothing; existing records with the same ids are replaced.`,
		Args: oneArg("a file (or - for standard input)"),
		RunE: runAPIKey(cmdImport),
	}

	cmd.AddCommand(account, create, list, rotate, revoke, export, importCmd)
}

// groupRunE serves commands that only group subcommands: alone they print
// their help; with an unknown subcommand they fail.
func groupRunE(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return reportError(cmd, fmt.Errorf("unknown command %q; see '%s --help'", args[0], cmd.CommandPath()))
	}
	return cmd.Help()
}

// noArgs refuses positional arguments.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		// Do not echo them: one might be a token value.
		return reportError(cmd, fmt.Errorf("unexpected argument(s); see '%s --help'", cmd.CommandPath()))
	}
	return nil
}

// oneArg wants exactly one positional argument, described by what.
func oneArg(what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != 1 {
			return reportError(cmd, fmt.Errorf("want one argument, %s, not %d; see '%s --help'", what, len(args), cmd.CommandPath()))
		}
		return nil
	}
}

// reportError prints err as one line on stderr, prefixed with the command
// ("caddy apikey create: …"), keeps cobra from printing it again, and
// returns it so that the process exits with status 1.
func reportError(cmd *cobra.Command, err error) error {
	cmd.SilenceErrors = true
	fmt.Fprintf(cmd.ErrOrStderr(), "%s: %s\n", cmd.CommandPath(), oneLine(err.Error()))
	return err
}

// apikeyCLI is what a subcommand works with: the admin endpoint and how
// to print.
type apikeyCLI struct {
	cmd  *cobra.Command
	addr string
	json bool
	out  io.Writer
	now  func() time.Time
}

// runAPIKey adapts a subcommand to cobra; errors are reported by
// reportError.
func runAPIKey(fn func(c *apikeyCLI, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, err := newAPIKeyCLI(cmd)
		if err == nil {
			err = fn(c, args)
		}
		if err != nil {
			return reportError(cmd, err)
		}
		return nil
	}
}

func newAPIKeyCLI(cmd *cobra.Command) (*apikeyCLI, error) {
	fl := cmd.Flags()
	address, _ := fl.GetString("address")
	configFile, _ := fl.GetString("config")
	adapter, _ := fl.GetString("adapter")
	asJSON, _ := fl.GetBool("json")
	addr, err := caddycmd.DetermineAdminAPIAddress(address, nil, configFile, adapter)
	if err != nil {
		return nil, fmt.Errorf("determining the admin endpoint address: %w", err)
	}
	return &apikeyCLI{cmd: cmd, addr: addr, json: asJSON, out: cmd.OutOrStdout(), now: time.Now}, nil
}

// ---------------------------------------------------------------------
// Subcommands

type accountCreateBody struct {
	Name   string    `json:"name"`
	Kind   string    `json:"kind,omitempty"`
	Team   string    `json:"team,omitempty"`
	Scopes *[]string `json:"scopes,omitempty"`
}

func cmdAccountCreate(c *apikeyCLI, _ []string) error {
	fl := c.cmd.Flags()
	var body accountCreateBody
	body.Name, _ = fl.GetString("name")
	body.Kind, _ = fl.GetString("kind")
	body.Team, _ = fl.GetString("team")
	if body.Name == "" {
		return errors.New("--name is required")
	}
	if fl.Changed("scopes") {
		s, _ := fl.GetString("scopes")
		scopes := splitScopes(s)
		body.Scopes = &scopes
	}
	raw, err := c.call(http.MethodPost, "/accounts", body)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(raw)
	}
	var a admin.Account
	if err := decodeAnswer(raw, &a); err != nil {
		return err
	}
	return renderAccounts(c.out, []admin.Account{a})
}

func cmdAccountList(c *apikeyCLI, _ []string) error {
	items, err := c.listAll("/accounts", nil)
	if err != nil {
		return err
	}
	if c.json {
		return c.printList(items)
	}
	accounts := make([]admin.Account, len(items))
	for i, item := range items {
		if err := decodeAnswer(item, &accounts[i]); err != nil {
			return err
		}
	}
	return renderAccounts(c.out, accounts)
}

type keyCreateBody struct {
	Account     string            `json:"account"`
	Name        string            `json:"name"`
	Description string            `json:"description,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
	Scopes      *[]string         `json:"scopes,omitempty"`
	ExpiresAt   string            `json:"expires_at,omitempty"`
}

func cmdKeyCreate(c *apikeyCLI, _ []string) error {
	fl := c.cmd.Flags()
	var body keyCreateBody
	body.Account, _ = fl.GetString("account")
	body.Name, _ = fl.GetString("name")
	body.Description, _ = fl.GetString("description")
	switch {
	case body.Account == "":
		return errors.New("--account is required")
	case body.Name == "":
		return errors.New("--name is required")
	}
	if fl.Changed("scopes") {
		s, _ := fl.GetString("scopes")
		scopes := splitScopes(s)
		body.Scopes = &scopes
	}
	tags, _ := fl.GetStringArray("tag")
	var err error
	if body.Tags, err = parseTags(tags); err != nil {
		return err
	}
	if exp, _ := fl.GetString("expires"); exp != "" {
		if body.ExpiresAt, err = parseExpires(exp, c.now()); err != nil {
			return err
		}
	}
	raw, err := c.call(http.MethodPost, "/keys", body)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(raw)
	}
	var k admin.KeyWithSecret
	if err := decodeAnswer(raw, &k); err != nil {
		return err
	}
	if k.Secret == "" {
		return errors.New("the answer carries no token value")
	}
	if err := renderKeys(c.out, []admin.Key{k.Key}); err != nil {
		return err
	}
	fmt.Fprintln(c.out)
	if err := renderTokens(c.out, k.Tokens); err != nil {
		return err
	}
	return printSecret(c.out, k.Secret)
}

func cmdKeyList(c *apikeyCLI, _ []string) error {
	fl := c.cmd.Flags()
	q := url.Values{}
	if account, _ := fl.GetString("account"); account != "" {
		q.Set("account", account)
	}
	tags, _ := fl.GetStringArray("tag")
	filters, err := tagFilters(tags)
	if err != nil {
		return err
	}
	q["tag"] = filters
	items, err := c.listAll("/keys", q)
	if err != nil {
		return err
	}
	if c.json {
		return c.printList(items)
	}
	keys := make([]admin.Key, len(items))
	for i, item := range items {
		if err := decodeAnswer(item, &keys[i]); err != nil {
			return err
		}
	}
	return renderKeys(c.out, keys)
}

type rotateBody struct {
	Grace string `json:"grace,omitempty"`
}

func cmdRotate(c *apikeyCLI, args []string) error {
	keyID := args[0]
	if !strings.HasPrefix(keyID, storage.KeyIDPrefix) {
		// Do not echo the argument: it might be a token value.
		return fmt.Errorf("the argument must be a key id (%s…); find it with 'caddy apikey list'", storage.KeyIDPrefix)
	}
	fl := c.cmd.Flags()
	tokenID, _ := fl.GetString("token")
	if tokenID != "" && !strings.HasPrefix(tokenID, storage.TokenIDPrefix) {
		return fmt.Errorf("--token must be a token id (%s…), as listed by 'caddy apikey list --json'", storage.TokenIDPrefix)
	}
	var body rotateBody
	var grace time.Duration
	graceFlag, _ := fl.GetString("grace")
	if graceFlag != "" {
		var err error
		if grace, err = parseGrace(graceFlag); err != nil {
			return err
		}
		body.Grace = grace.String()
	}
	keyPath := "/keys/" + url.PathEscape(keyID)
	if tokenID == "" {
		raw, err := c.call(http.MethodGet, keyPath, nil)
		if err != nil {
			return err
		}
		var k admin.Key
		if err := decodeAnswer(raw, &k); err != nil {
			return err
		}
		if tokenID, err = onlyActiveToken(k); err != nil {
			return err
		}
	}
	now := c.now()
	raw, err := c.call(http.MethodPost, keyPath+"/tokens/"+url.PathEscape(tokenID)+"/rotate", body)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(raw)
	}
	var t admin.RotatedToken
	if err := decodeAnswer(raw, &t); err != nil {
		return err
	}
	if t.Secret == "" {
		return errors.New("the answer carries no token value")
	}
	switch {
	case grace > 0 && !t.OldTokenExpiresAt.IsZero() && t.OldTokenExpiresAt.Before(now.Add(grace).Add(-time.Second)):
		// The server clamped a grace that outlives the token to its expiry.
		fmt.Fprintf(c.out, "Rotated token %s of key %s: it keeps working until its own expiry, %s (the %s grace outlives it).\n\n",
			tokenID, keyID, formatTime(t.OldTokenExpiresAt), strings.TrimSpace(graceFlag))
	case grace > 0:
		fmt.Fprintf(c.out, "Rotated token %s of key %s: it keeps working for %s, until %s.\n\n",
			tokenID, keyID, strings.TrimSpace(graceFlag), formatTime(now.Add(grace)))
	default:
		fmt.Fprintf(c.out, "Rotated token %s of key %s: it no longer works.\n\n", tokenID, keyID)
	}
	if err := renderTokens(c.out, []admin.Token{t.Token}); err != nil {
		return err
	}
	return printSecret(c.out, t.Secret)
}

type revokeBody struct {
	Token string `json:"token"`
}

func cmdRevoke(c *apikeyCLI, args []string) error {
	arg := args[0]
	if strings.HasPrefix(arg, storage.KeyIDPrefix) {
		if _, err := c.call(http.MethodDelete, "/keys/"+url.PathEscape(arg), nil); err != nil {
			return err
		}
		if !c.json {
			fmt.Fprintf(c.out, "Deleted key %s and all its tokens.\n", arg)
		}
		return nil
	}
	token := arg
	if arg == "-" {
		line, err := bufio.NewReader(c.cmd.InOrStdin()).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("reading the token value from standard input: %w", err)
		}
		token = strings.TrimSpace(line)
		if token == "" {
			return errors.New("no token value on standard input")
		}
	}
	if _, err := c.call(http.MethodPost, "/revoke", revokeBody{Token: token}); err != nil {
		return redactError(err, token)
	}
	if !c.json {
		fmt.Fprintf(c.out, "Revoked token %s.\n", storage.Hint(token))
	}
	return nil
}

// ---------------------------------------------------------------------
// Talking to the admin endpoint

// maxAnswerBytes bounds the answers read from the admin endpoint.
const maxAnswerBytes = 64 << 20

// call sends a request to the key-management API on the admin endpoint
// (path is below /apikeys) with body marshalled to JSON unless nil, and
// returns the answer's body. Error answers become *apiAnswerError.
func (c *apikeyCLI) call(method, path string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encoding the request: %w", err)
		}
		rd = bytes.NewReader(raw)
	}
	resp, err := caddycmd.AdminAPIRequest(c.addr, method, adminAPIPrefix+path, nil, rd)
	if err != nil {
		return nil, adminRequestError(c.addr, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return nil, fmt.Errorf("reading the answer of the admin endpoint at %s: %w", c.addr, err)
	}
	return raw, nil
}

// listAll fetches every page of a list, following "next", and returns the
// items as the API sent them.
func (c *apikeyCLI) listAll(path string, q url.Values) ([]json.RawMessage, error) {
	items := []json.RawMessage{}
	q = cloneValues(q)
	seen := map[string]bool{}
	for {
		uri := path
		if enc := q.Encode(); enc != "" {
			uri += "?" + enc
		}
		raw, err := c.call(http.MethodGet, uri, nil)
		if err != nil {
			return nil, err
		}
		var page struct {
			Items []json.RawMessage `json:"items"`
			Next  string            `json:"next"`
		}
		if err := decodeAnswer(raw, &page); err != nil {
			return nil, err
		}
		items = append(items, page.Items...)
		if page.Next == "" {
			return items, nil
		}
		if seen[page.Next] {
			return nil, fmt.Errorf("the admin endpoint returned the page cursor %q twice", page.Next)
		}
		seen[page.Next] = true
		q.Set("after", page.Next)
	}
}

// cloneValues returns a copy of q that may be modified.
func cloneValues(q url.Values) url.Values {
	out := url.Values{}
	for k, v := range q {
		if len(v) > 0 {
			out[k] = slices.Clone(v)
		}
	}
	return out
}

// apiAnswerError is an error answer of the admin endpoint: Keygate's
// {"error": code, "message": …, "field": …}, or Caddy's own {"error": …}.
type apiAnswerError struct {
	Status  int
	Code    string
	Message string
	Field   string
}

// Error reads like "400 invalid_request (field scopes): scope …".
func (e *apiAnswerError) Error() string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(e.Status))
	b.WriteByte(' ')
	if e.Code != "" {
		b.WriteString(e.Code)
	} else {
		b.WriteString(http.StatusText(e.Status))
	}
	if e.Field != "" {
		fmt.Fprintf(&b, " (field %s)", e.Field)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

// parseErrorAnswer reads the body of an error answer.
func parseErrorAnswer(status int, body []byte) *apiAnswerError {
	e := &apiAnswerError{Status: status}
	body = bytes.TrimSpace(body)
	var v struct {
		Error   string `json:"error"`
		Message string `json:"message"`
		Field   string `json:"field"`
	}
	if err := json.Unmarshal(body, &v); err == nil && (v.Error != "" || v.Message != "") {
		e.Code, e.Message, e.Field = v.Error, v.Message, v.Field
		if e.Message == "" {
			// Caddy's own admin errors are {"error": "<message>"}.
			e.Code, e.Message = "", v.Error
		}
	} else {
		e.Message = string(body)
	}
	e.Message = oneLine(e.Message)
	if len(e.Message) > 500 {
		e.Message = e.Message[:500] + "…"
	}
	return e
}

// caddyErrorAnswer is how caddycmd.AdminAPIRequest reports an answer with
// a status of 400 or more.
var caddyErrorAnswer = regexp.MustCompile(`(?s)^caddy responded with error: HTTP (\d{3}): (.*)$`)

// adminRequestError turns an error of caddycmd.AdminAPIRequest into an
// *apiAnswerError when the endpoint answered, or an error saying it could
// not be reached.
func adminRequestError(addr string, err error) error {
	msg := err.Error()
	if m := caddyErrorAnswer.FindStringSubmatch(msg); m != nil {
		status, _ := strconv.Atoi(m[1])
		return parseErrorAnswer(status, []byte(m[2]))
	}
	if rest, ok := strings.CutPrefix(msg, "performing request: "); ok {
		return fmt.Errorf("cannot reach the admin endpoint at %s (is Caddy running? see --address and --config): %s", addr, rest)
	}
	return fmt.Errorf("admin endpoint %s: %w", addr, err)
}

// redactError replaces secret in err's text, so that a token value never
// shows in an error message.
func redactError(err error, secret string) error {
	if secret == "" || !strings.Contains(err.Error(), secret) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), secret, "[REDACTED]"))
}

// decodeAnswer decodes a JSON answer of the admin endpoint into v.
func decodeAnswer(raw []byte, v any) error {
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("decoding the answer of the admin endpoint: %w", err)
	}
	return nil
}

// printJSON prints an answer as indented JSON.
func (c *apikeyCLI) printJSON(raw []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, bytes.TrimSpace(raw), "", "  "); err != nil {
		return fmt.Errorf("the admin endpoint answered invalid JSON: %w", err)
	}
	buf.WriteByte('\n')
	_, err := c.out.Write(buf.Bytes())
	return err
}

// printList prints all the items of a list as one {"items": […]} page.
func (c *apikeyCLI) printList(items []json.RawMessage) error {
	raw, err := json.Marshal(struct {
		Items []json.RawMessage `json:"items"`
	}{items})
	if err != nil {
		return fmt.Errorf("encoding the list: %w", err)
	}
	return c.printJSON(raw)
}

// ---------------------------------------------------------------------
// Flags

// splitScopes reads a comma-separated scope list; blanks are dropped.
// Checking the scopes is the API's job.
func splitScopes(s string) []string {
	scopes := []string{}
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			scopes = append(scopes, part)
		}
	}
	return scopes
}

// parseTags reads --tag k=v flags into a map; nil when there are none.
func parseTags(flags []string) (map[string]string, error) {
	if len(flags) == 0 {
		return nil, nil
	}
	tags := make(map[string]string, len(flags))
	for _, f := range flags {
		k, v, ok := strings.Cut(f, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--tag %q: want key=value", f)
		}
		if prev, dup := tags[k]; dup && prev != v {
			return nil, fmt.Errorf("--tag %q: tag %q is given twice", f, k)
		}
		tags[k] = v
	}
	return tags, nil
}

// tagFilters turns --tag k=v flags into the API's ?tag=k:v filters.
func tagFilters(flags []string) ([]string, error) {
	var out []string
	for _, f := range flags {
		k, v, ok := strings.Cut(f, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--tag %q: want key=value", f)
		}
		out = append(out, k+":"+v)
	}
	return out, nil
}

// parseExpires reads --expires: a duration from now (Caddy syntax: 720h,
// 30d) or an RFC 3339 time. It returns the time in RFC 3339, UTC.
func parseExpires(v string, now time.Time) (string, error) {
	v = strings.TrimSpace(v)
	if d, err := caddy.ParseDuration(v); err == nil {
		if d <= 0 {
			return "", fmt.Errorf("--expires %s: the duration must be positive", v)
		}
		return now.Add(d).UTC().Format(time.RFC3339), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return "", fmt.Errorf("--expires %q: want a duration such as 720h or an RFC 3339 time such as 2030-01-02T15:04:05Z", v)
	}
	return t.UTC().Format(time.RFC3339Nano), nil
}

// parseGrace reads --grace: a non-negative duration (Caddy syntax: 24h, 1d).
func parseGrace(v string) (time.Duration, error) {
	d, err := caddy.ParseDuration(strings.TrimSpace(v))
	if err != nil || d < 0 {
		return 0, fmt.Errorf("--grace %q: want a non-negative duration such as 24h", v)
	}
	return d, nil
}

// onlyActiveToken returns the id of the key's only active token.
func onlyActiveToken(k admin.Key) (string, error) {
	var active []string
	for _, t := range k.Tokens {
		if t.Status == storage.StatusActive {
			active = append(active, t.ID)
		}
	}
	switch len(active) {
	case 1:
		return active[0], nil
	case 0:
		return "", fmt.Errorf("key %s has no active token to rotate", k.ID)
	default:
		return "", fmt.Errorf("key %s has %d active tokens (%s): choose one with --token <token-id>",
			k.ID, len(active), strings.Join(active, ", "))
	}
}

// ---------------------------------------------------------------------
// Output

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

// formatTime prints a time for people: RFC 3339 in UTC, to the second.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Truncate(time.Second).Format(time.RFC3339)
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

// renderKeys prints keys as a table: ID ACCOUNT NAME SCOPES TOKENS
// CREATED, with the effective scopes and the number of active tokens.
func renderKeys(w io.Writer, keys []admin.Key) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tACCOUNT\tNAME\tSCOPES\tTOKENS\tCREATED")
	for _, k := range keys {
		active := 0
		for _, t := range k.Tokens {
			if t.Status == storage.StatusActive {
				active++
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n",
			cell(k.ID), cell(k.Account), cell(k.Name), scopeList(k.EffectiveScopes), active, formatTime(k.CreatedAt))
	}
	return tw.Flush()
}

// renderTokens prints tokens as a table: TOKEN KEY NAME HINT EXPIRES STATUS.
func renderTokens(w io.Writer, tokens []admin.Token) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "TOKEN\tKEY\tNAME\tHINT\tEXPIRES\tSTATUS")
	for _, t := range tokens {
		expires := "never"
		if t.ExpiresAt != nil {
			expires = formatTime(*t.ExpiresAt)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n",
			cell(t.ID), cell(t.Key), cell(t.Name), cell(t.Hint), expires, cell(t.Status))
	}
	return tw.Flush()
}

// printSecret prints a new token value, alone on the last line.
func printSecret(w io.Writer, secret string) error {
	_, err := fmt.Fprintf(w, "\nThe token value, shown only this once:\n%s\n", secret)
	return err
}

// oneLine folds a message onto one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func cmdExport(c *apikeyCLI, _ []string) error {
	out := c.cmd.OutOrStdout()
	if path, _ := c.cmd.Flags().GetString("output"); path != "" {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return fmt.Errorf("creating the export file: %w", err)
		}
		defer f.Close()
		out = f
	}
	resp, err := caddycmd.AdminAPIRequest(c.addr, http.MethodGet, adminAPIPrefix+"/export", nil, nil)
	if err != nil {
		return adminRequestError(c.addr, err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(out, resp.Body); err != nil {
		return fmt.Errorf("writing the export (it is incomplete): %w", err)
	}
	return nil
}

func cmdImport(c *apikeyCLI, args []string) error {
	in := c.cmd.InOrStdin()
	if args[0] != "-" {
		f, err := os.Open(args[0])
		if err != nil {
			return fmt.Errorf("opening the export: %w", err)
		}
		defer f.Close()
		in = f
	}
	resp, err := caddycmd.AdminAPIRequest(c.addr, http.MethodPost, adminAPIPrefix+"/import",
		http.Header{"Content-Type": {"application/jsonl"}}, in)
	if err != nil {
		return adminRequestError(c.addr, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return fmt.Errorf("reading the answer of the admin endpoint at %s: %w", c.addr, err)
	}
	if c.json {
		return c.printJSON(raw)
	}
	var answer struct {
		Imported int `json:"imported"`
	}
	if err := decodeAnswer(raw, &answer); err != nil {
		return err
	}
	_, err = fmt.Fprintf(c.cmd.OutOrStdout(), "imported %d records\n", answer.Imported)
	return err
}
