package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/admin/client"
)

// accountCommand is "caddy apikey account …".
func accountCommand() *cobra.Command {
	account := &cobra.Command{
		Use:   "account <create|list|get|update|disable|enable|delete>",
		Short: "Manages accounts, which keys belong to",
		RunE:  groupRunE,
	}

	create := &cobra.Command{
		Use:   "create --name <name> [--kind user|service] [--scopes <s1,s2>] [--team <team>] [--disabled]",
		Short: "Creates an account",
		Long: `
Creates an account. --kind is user or service (the API's default is user);
--scopes is a comma-separated list of what the account's keys may do.`,
		Args: noArgs,
		RunE: run(cmdAccountCreate),
	}
	create.Flags().String("name", "", "Name of the account (unique)")
	create.Flags().String("kind", "", "Kind of the account: user or service")
	create.Flags().String("scopes", "", "Comma-separated scopes the account holds")
	create.Flags().String("team", "", "Team the account belongs to")
	create.Flags().Bool("disabled", false, "Create the account disabled: its keys do not work")
	completeKinds(create)

	list := &cobra.Command{
		Use:   "list",
		Short: "Lists all accounts",
		Args:  noArgs,
		RunE:  run(cmdAccountList),
	}

	get := &cobra.Command{
		Use:   "get <id|name>",
		Short: "Shows an account and its keys",
		Long: `
Shows an account and its keys; with --json, the account's object with its
keys in "keys".`,
		Args:              nArgs(1, "one account, by id or name"),
		ValidArgsFunction: completeAccounts,
		RunE:              run(cmdAccountGet),
	}

	update := &cobra.Command{
		Use:   "update <id|name> [--name <name>] [--team <team>] [--scopes <s1,s2>]",
		Short: "Changes an account's name, team or scopes",
		Long: `
Changes the fields given; the others stay. --scopes replaces the account's
scopes (--scopes "" leaves it none); keys that inherit them follow at once.`,
		Args:              nArgs(1, "one account, by id or name"),
		ValidArgsFunction: completeAccounts,
		RunE:              run(cmdAccountUpdate),
	}
	update.Flags().String("name", "", "New name of the account (unique)")
	update.Flags().String("team", "", "New team of the account")
	update.Flags().String("scopes", "", "New comma-separated scopes of the account")

	disable := &cobra.Command{
		Use:               "disable <id|name>",
		Short:             "Disables an account: none of its keys works until it is enabled",
		Args:              nArgs(1, "one account, by id or name"),
		ValidArgsFunction: completeAccounts,
		RunE:              run(setDisabled(true)),
	}
	enable := &cobra.Command{
		Use:               "enable <id|name>",
		Short:             "Enables a disabled account",
		Args:              nArgs(1, "one account, by id or name"),
		ValidArgsFunction: completeAccounts,
		RunE:              run(setDisabled(false)),
	}
	del := &cobra.Command{
		Use:               "delete <id|name>",
		Short:             "Deletes an account with all its keys and tokens",
		Args:              nArgs(1, "one account, by id or name"),
		ValidArgsFunction: completeAccounts,
		RunE:              run(cmdAccountDelete),
	}

	account.AddCommand(create, list, get, update, disable, enable, del)
	return account
}

func cmdAccountCreate(e *env, _ []string) error {
	fl := e.cmd.Flags()
	var req admin.CreateAccountRequest
	req.Name, _ = fl.GetString("name")
	req.Kind, _ = fl.GetString("kind")
	req.Team, _ = fl.GetString("team")
	req.Disabled, _ = fl.GetBool("disabled")
	if req.Name == "" {
		return usagef("--name is required")
	}
	if fl.Changed("scopes") {
		s, _ := fl.GetString("scopes")
		req.Scopes = splitScopes(s)
	}
	a, err := e.api.CreateAccount(e.ctx, req)
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(a)
	}
	return renderAccounts(e.out, []admin.Account{*a})
}

func cmdAccountList(e *env, _ []string) error {
	accounts, err := client.Collect(e.api.Accounts(e.ctx))
	if err != nil {
		return err
	}
	if e.json {
		return printList(e, accounts)
	}
	if len(accounts) == 0 {
		_, err := fmt.Fprintln(e.out, "no accounts")
		return err
	}
	return renderAccounts(e.out, accounts)
}

func cmdAccountGet(e *env, args []string) error {
	a, err := e.api.GetAccount(e.ctx, args[0])
	if err != nil {
		return err
	}
	keys, err := client.Collect(e.api.Keys(e.ctx, client.KeyFilter{Account: a.ID}))
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(struct {
			*admin.Account
			Keys []admin.Key `json:"keys"`
		}{a, keys})
	}
	if err := renderAccount(e.out, *a); err != nil {
		return err
	}
	fmt.Fprintln(e.out)
	if len(keys) == 0 {
		_, err := fmt.Fprintln(e.out, "no keys")
		return err
	}
	return renderKeys(e.out, keys, names{a.ID: a.Name})
}

func cmdAccountUpdate(e *env, args []string) error {
	fl := e.cmd.Flags()
	var req admin.UpdateAccountRequest
	if fl.Changed("name") {
		v, _ := fl.GetString("name")
		req.Name = &v
	}
	if fl.Changed("team") {
		v, _ := fl.GetString("team")
		req.Team = &v
	}
	if fl.Changed("scopes") {
		v, _ := fl.GetString("scopes")
		scopes := splitScopes(v)
		req.Scopes = &scopes
	}
	if req == (admin.UpdateAccountRequest{}) {
		return usagef("nothing to change: give --name, --team or --scopes")
	}
	return e.updateAccount(args[0], req)
}

// setDisabled is "account disable" and "account enable".
func setDisabled(disabled bool) func(*env, []string) error {
	return func(e *env, args []string) error {
		return e.updateAccount(args[0], admin.UpdateAccountRequest{Disabled: &disabled})
	}
}

func (e *env) updateAccount(ref string, req admin.UpdateAccountRequest) error {
	a, err := e.api.UpdateAccount(e.ctx, ref, req)
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(a)
	}
	return renderAccounts(e.out, []admin.Account{*a})
}

func cmdAccountDelete(e *env, args []string) error {
	a, err := e.api.GetAccount(e.ctx, args[0])
	if err != nil {
		return err
	}
	keys, err := client.Collect(e.api.Keys(e.ctx, client.KeyFilter{Account: a.ID}))
	if err != nil {
		return err
	}
	if err := e.api.DeleteAccount(e.ctx, a.ID); err != nil {
		return err
	}
	if !e.json {
		fmt.Fprintf(e.out, "Deleted account %s (%s) and its %s.\n", cell(a.Name), a.ID, count(len(keys), "key"))
	}
	return nil
}
