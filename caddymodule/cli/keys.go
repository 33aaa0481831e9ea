package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/admin/client"
	"github.com/keygate/keygate/storage"
	tokenfmt "github.com/keygate/keygate/storage/token"
)

// keyCommands are "caddy apikey create|list|get|update|revoke".
func keyCommands() []*cobra.Command {
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
		RunE: run(cmdKeyCreate),
	}
	create.Flags().String("account", "", "Account of the key, by id or name")
	create.Flags().String("scopes", "", "Comma-separated scopes of the key (default: inherit the account's)")
	create.Flags().String("expires", "", "Expiry of the first token: a duration from now (720h) or an RFC 3339 time")
	labelFlags(create.Flags(), "key")
	completeAccountFlag(create)

	list := &cobra.Command{
		Use:   "list [--account <id|name>] [--tag k=v ...]",
		Short: "Lists keys",
		Long: `
Lists keys, all pages of them, optionally only those of one account and those
carrying every given tag. SCOPES are the effective scopes; TOKENS counts the
active tokens.`,
		Args: noArgs,
		RunE: run(cmdKeyList),
	}
	list.Flags().String("account", "", "Only keys of this account, by id or name")
	list.Flags().StringArray("tag", nil, "Only keys with this tag, as key=value (repeatable)")
	completeAccountFlag(list)

	get := &cobra.Command{
		Use:               "get <key-id>",
		Short:             "Shows a key and its tokens",
		Args:              nArgs(1, "one key id"),
		ValidArgsFunction: completeKeys,
		RunE:              run(cmdKeyGet),
	}

	update := &cobra.Command{
		Use:   "update <key-id> [--name <name>] [--description <text>] [--tag k=v ... | --clear-tags] [--scopes <s1,s2> | --inherit-scopes]",
		Short: "Changes a key's name, description, tags or scopes",
		Long: `
Changes the fields given; the others stay. --tag replaces all the key's tags
(--clear-tags removes them); --scopes replaces its scopes (--scopes "" leaves
it none) and --inherit-scopes makes it inherit its account's, live.`,
		Args:              nArgs(1, "one key id"),
		ValidArgsFunction: completeKeys,
		RunE:              run(cmdKeyUpdate),
	}
	labelFlags(update.Flags(), "key")
	update.Flags().Bool("clear-tags", false, "Remove all the key's tags")
	update.Flags().String("scopes", "", "New comma-separated scopes of the key")
	update.Flags().Bool("inherit-scopes", false, "Make the key inherit its account's scopes")

	revoke := &cobra.Command{
		Use:   "revoke <key-id | token value | ->",
		Short: "Deletes a key, or revokes a token by its value",
		Long: `
With a key id (key_…), deletes the key and all its tokens. With a token value,
revokes that token, whichever key and account it belongs to: knowing a leaked
value is enough to stop it. "-" reads the token value from standard input, to
keep it out of the process list and shell history.`,
		Args:              nArgs(1, "one key id or token value"),
		ValidArgsFunction: completeKeys,
		RunE:              run(cmdRevoke),
	}
	return []*cobra.Command{create, list, get, update, revoke}
}

func cmdKeyCreate(e *env, _ []string) error {
	fl := e.cmd.Flags()
	var req admin.CreateKeyRequest
	req.Account, _ = fl.GetString("account")
	req.Name, _ = fl.GetString("name")
	req.Description, _ = fl.GetString("description")
	switch {
	case req.Account == "":
		return usagef("--account is required")
	case req.Name == "":
		return usagef("--name is required")
	}
	if fl.Changed("scopes") {
		s, _ := fl.GetString("scopes")
		req.Scopes = splitScopes(s)
	}
	tags, _ := fl.GetStringArray("tag")
	var err error
	if req.Tags, err = parseTags(tags); err != nil {
		return err
	}
	if exp, _ := fl.GetString("expires"); exp != "" {
		if req.ExpiresAt, err = parseExpires(exp, e.now()); err != nil {
			return err
		}
	}
	k, err := e.api.CreateKey(e.ctx, req)
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(k)
	}
	if k.Secret == "" {
		return errors.New("the answer carries no token value")
	}
	accounts, err := e.accountNames(k.Account)
	if err != nil {
		return err
	}
	if err := renderKeys(e.out, []admin.Key{k.Key}, accounts); err != nil {
		return err
	}
	fmt.Fprintln(e.out)
	if err := renderTokens(e.out, k.Tokens); err != nil {
		return err
	}
	return printSecret(e.out, k.Secret)
}

func cmdKeyList(e *env, _ []string) error {
	fl := e.cmd.Flags()
	var f client.KeyFilter
	f.Account, _ = fl.GetString("account")
	flags, _ := fl.GetStringArray("tag")
	tags, err := parseTags(flags)
	if err != nil {
		return err
	}
	f.Tags = tags
	keys, err := client.Collect(e.api.Keys(e.ctx, f))
	if err != nil {
		return err
	}
	if e.json {
		return printList(e, keys)
	}
	if len(keys) == 0 {
		_, err := fmt.Fprintln(e.out, "no keys")
		return err
	}
	accounts, err := e.accountNames(keyAccounts(keys)...)
	if err != nil {
		return err
	}
	return renderKeys(e.out, keys, accounts)
}

func cmdKeyGet(e *env, args []string) error {
	if err := checkKeyID(args[0]); err != nil {
		return err
	}
	k, err := e.api.GetKey(e.ctx, args[0])
	if err != nil {
		return err
	}
	return e.printKey(k)
}

func cmdKeyUpdate(e *env, args []string) error {
	if err := checkKeyID(args[0]); err != nil {
		return err
	}
	fl := e.cmd.Flags()
	var req admin.UpdateKeyRequest
	var err error
	if req.Name, req.Description, req.Tags, err = labelChanges(fl); err != nil {
		return err
	}
	inherit, _ := fl.GetBool("inherit-scopes")
	switch {
	case inherit && fl.Changed("scopes"):
		return usagef("--scopes and --inherit-scopes exclude each other")
	case inherit:
		req.Scopes = admin.InheritScopes
	case fl.Changed("scopes"):
		s, _ := fl.GetString("scopes")
		if req.Scopes, err = json.Marshal(splitScopes(s)); err != nil {
			return err
		}
	}
	if req.Name == nil && req.Description == nil && req.Tags == nil && req.Scopes == nil {
		return usagef("nothing to change: give --name, --description, --tag, --clear-tags, --scopes or --inherit-scopes")
	}
	k, err := e.api.UpdateKey(e.ctx, args[0], req)
	if err != nil {
		return err
	}
	return e.printKey(k)
}

func cmdRevoke(e *env, args []string) error {
	if strings.HasPrefix(args[0], storage.KeyIDPrefix) {
		if err := e.api.DeleteKey(e.ctx, args[0]); err != nil {
			return err
		}
		if !e.json {
			fmt.Fprintf(e.out, "Deleted key %s and all its tokens.\n", args[0])
		}
		return nil
	}
	token, err := readTokenArg(args[0], e.cmd.InOrStdin())
	if err != nil {
		return err
	}
	if err := e.api.Revoke(e.ctx, token); err != nil {
		return err
	}
	if !e.json {
		fmt.Fprintf(e.out, "Revoked token %s.\n", tokenfmt.Hint(token))
	}
	return nil
}
