// Package cli is the "caddy apikey" command: Keygate's accounts, keys and
// tokens managed from the shell, through the key-management API on the
// admin endpoint of a running Caddy (package admin/client). Importing it
// registers the command with Caddy's command line.
package cli

import (
	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:      "apikey",
		Usage:     "<account|create|list|get|update|rotate|revoke|token|limit|credits|allow-ip|audit|whoami|check|export|import|version> [--address <listen>] [--config <path> [--adapter <name>]] [--json] [flags]",
		Short:     "Manages Keygate accounts, API keys and tokens of a running Caddy",
		Long:      long,
		CobraFunc: Setup,
	})
}

var long = `
Manages Keygate accounts, API keys and their tokens through the key-management
API on the admin endpoint of a running Caddy (under /apikeys/).

  caddy apikey account create --name ci-bot --kind service --scopes apps,runs:read [--team infra]
  caddy apikey account list
  caddy apikey account get <id|name>
  caddy apikey account update <id|name> [--name <name>] [--team <team>] [--scopes <s1,s2>]
  caddy apikey account disable|enable|delete <id|name>
  caddy apikey create --account ci-bot --name deploy --scopes apps:run [--expires 720h] [--description <text>] [--tag k=v ...]
  caddy apikey list [--account ci-bot] [--tag k=v ...]
  caddy apikey get <key-id>
  caddy apikey update <key-id> [--name <name>] [--description <text>] [--tag k=v ... | --clear-tags] [--scopes <s1,s2> | --inherit-scopes]
  caddy apikey rotate <key-id> [--token <token-id>] [--grace 24h] [--expires 720h]
  caddy apikey revoke <key-id | token value | ->
  caddy apikey token add <key-id> [--name <name>] [--expires 720h] [--description <text>] [--tag k=v ...]
  caddy apikey token update <key-id> <token-id> [--name <name>] [--expires 720h | --no-expiry] [...]
  caddy apikey token delete <key-id> <token-id>
  caddy apikey limit set <key-id> | --account <id|name> --window burst=20/1s [--window day=10000/24h ...]
  caddy apikey limit clear <key-id> | --account <id|name>
  caddy apikey credits set <key-id> [--remaining 1000] [--refill 1000/monthly/1 | --no-refill]
  caddy apikey credits clear <key-id>
  caddy apikey allow-ip <key-id> | --account <id|name> <cidr>... [--clear]
  caddy apikey audit [--since 24h] [--actor <key-id|admin>] [--action key.create] [--target <id>]
  caddy apikey whoami
  caddy apikey check
  caddy apikey export [--output keys.jsonl]
  caddy apikey import <keys.jsonl | ->
  caddy apikey version

The admin endpoint is found like 'caddy reload' finds it: --address if given,
else the admin address of the --config file (adapted with --adapter), else
` + caddy.DefaultAdminListen + `; a unix socket (unix//path) works too. The endpoint is
trusted: whoever reaches it acts with every scope, and audit events name it
"admin".

Output is a table for people, with names beside ids; --json prints the API's
objects instead. 'create', 'rotate' and 'token add' print the new token value
once, alone on the last line.

Shell completion, for these commands too: 'caddy completion --help'.`

// footer ends the help of every apikey command, instead of the link to
// Caddy's command-line docs that Caddy's own help ends with.
const footer = `
Exit status: 0 done; 1 error (an answer of the API, an unreachable endpoint
or key store, a file); 2 usage error (a flag, an argument); 3 not found.

Full documentation: https://github.com/keygate/keygate#readme
`

// Setup builds the "caddy apikey" command tree under cmd. It is the
// command's caddycmd.Command.CobraFunc.
func Setup(cmd *cobra.Command) {
	pf := cmd.PersistentFlags()
	pf.String("address", "", "Address of the administration API listener (if --config is not used)")
	pf.StringP("config", "c", "", "Configuration file to read the admin address from (if --address is not used)")
	pf.StringP("adapter", "a", "", "Name of the config adapter to apply (if --config is used)")
	pf.Bool("json", false, "Print the API's JSON objects instead of tables")
	cmd.RunE = groupRunE
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fail(c, usagef("%v; see '%s --help'", err, c.CommandPath()))
	})
	// A fresh command's template is cobra's default, without Caddy's footer.
	cmd.SetHelpTemplate((&cobra.Command{}).HelpTemplate() + footer)

	cmd.AddCommand(accountCommand())
	cmd.AddCommand(keyCommands()...)
	cmd.AddCommand(rotateCommand(), tokenCommand(), auditCommand(), whoamiCommand(), checkCommand())
	cmd.AddCommand(policyCommands()...)
	cmd.AddCommand(transferCommands()...)
	cmd.AddCommand(versionCommand())
}
