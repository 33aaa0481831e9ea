package admin

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/oapi-codegen/oapi-codegen/v2/pkg/codegen"

	// The generated client's runtime: required here so that go.mod pins
	// it and the module cache holds it for the generated module's build.
	_ "github.com/oapi-codegen/runtime"
)

// TestOpenAPIGeneratesGoClient generates a Go client from the document
// with oapi-codegen, builds and vets it in a module of its own, and runs
// it against the real handler on a file store: it creates, reads, lists,
// rotates, exports and imports, and decodes the documented error bodies.
func TestOpenAPIGeneratesGoClient(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a module: not in -short")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH: cannot build the generated client")
	}
	doc, err := openapi3.NewLoader().LoadFromData(openAPIDocument)
	if err != nil {
		t.Fatal(err)
	}
	code, err := codegen.Generate(doc, codegen.Configuration{
		PackageName: "keygateapi",
		Generate:    codegen.GenerateOptions{Models: true, Client: true},
	})
	if err != nil {
		t.Fatalf("oapi-codegen cannot generate a client: %v", err)
	}

	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	version := func(module string) string {
		cmd := exec.Command(goBin, "list", "-m", "-f", "{{.Version}}", module)
		cmd.Dir = root
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list -m %s: %v", module, err)
		}
		return strings.TrimSpace(string(out))
	}
	dir := t.TempDir()
	goMod := "module keygategen\n\ngo 1.26.0\n\nrequire (\n" +
		"\tgithub.com/keygate/keygate v0.0.0\n" +
		"\tgithub.com/oapi-codegen/runtime " + version("github.com/oapi-codegen/runtime") + "\n" +
		"\tgo.uber.org/zap " + version("go.uber.org/zap") + "\n)\n\n" +
		"replace github.com/keygate/keygate => " + root + "\n"
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"go.mod":            goMod,
		"go.sum":            string(sum),
		"client.gen.go":     code,
		"generated_test.go": generatedClientTest,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Offline: everything comes from this module's go.sum and the module
	// cache that built this test.
	env := append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off")
	for _, args := range [][]string{{"vet", "."}, {"test", "-count=1", "."}} {
		cmd := exec.Command(goBin, args...)
		cmd.Dir, cmd.Env = dir, env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s on the generated client: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// generatedClientTest drives the generated client against the real
// handler, served as Caddy's admin endpoint serves it.
const generatedClientTest = `package keygateapi

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/bolt"
	"github.com/keygate/keygate/storage/token"
)

func ptr[T any](v T) *T { return &v }

func TestGeneratedClient(t *testing.T) {
	b, err := bolt.Open(filepath.Join(t.TempDir(), "keys.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	tokens, err := token.NewFormat("sk")
	if err != nil {
		t.Fatal(err)
	}
	h := admin.New(storage.New(b), tokens, zap.NewNop())
	srv := httptest.NewServer(http.StripPrefix("/apikeys", http.HandlerFunc(h.ServeTrusted)))
	defer srv.Close()
	c, err := NewClientWithResponses(srv.URL + "/apikeys")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	acc, err := c.CreateAccountWithResponse(ctx, CreateAccountJSONRequestBody{Name: "gen", Scopes: &Scopes{"apps"}})
	if err != nil || acc.JSON201 == nil || acc.JSON201.Name != "gen" || acc.JSON201.Kind != AccountKindUser {
		t.Fatalf("createAccount: %v %+v", err, acc)
	}
	dup, err := c.CreateAccountWithResponse(ctx, CreateAccountJSONRequestBody{Name: "gen"})
	if err != nil || dup.JSON409 == nil || dup.JSON409.Error != "conflict" || dup.JSON409.Message == "" {
		t.Fatalf("createAccount again: %v %d %s", err, dup.StatusCode(), dup.Body)
	}
	key, err := c.CreateKeyWithResponse(ctx, CreateKeyJSONRequestBody{Account: &acc.JSON201.Id, Name: "k", Tags: &Tags{"env": "prod"}})
	if err != nil || key.JSON201 == nil || !strings.HasPrefix(key.JSON201.Secret, "sk-") || key.JSON201.Scopes != nil {
		t.Fatalf("createKey: %v %d %s", err, key.StatusCode(), key.Body)
	}
	got, err := c.GetKeyWithResponse(ctx, key.JSON201.Id)
	if err != nil || got.JSON200 == nil || len(got.JSON200.Tokens) != 1 || got.JSON200.Tokens[0].Status != TokenStatusActive {
		t.Fatalf("getKey: %v %d %s", err, got.StatusCode(), got.Body)
	}
	missing, err := c.GetKeyWithResponse(ctx, "key_missing")
	if err != nil || missing.JSON404 == nil || missing.JSON404.Error != "not_found" {
		t.Fatalf("getKey of a missing key: %v %d %s", err, missing.StatusCode(), missing.Body)
	}
	list, err := c.ListKeysWithResponse(ctx, &ListKeysParams{Account: ptr("gen"), Tag: &Tag{"env:prod"}})
	if err != nil || list.JSON200 == nil || len(list.JSON200.Items) != 1 {
		t.Fatalf("listKeys: %v %d %s", err, list.StatusCode(), list.Body)
	}
	bad, err := c.ListKeysWithResponse(ctx, &ListKeysParams{Limit: ptr(0)})
	if err != nil || bad.JSON400 == nil || bad.JSON400.Field == nil || *bad.JSON400.Field != "limit" {
		t.Fatalf("listKeys limit 0: %v %d %s", err, bad.StatusCode(), bad.Body)
	}
	rot, err := c.RotateTokenWithResponse(ctx, key.JSON201.Id, got.JSON200.Tokens[0].Id, RotateTokenJSONRequestBody{Grace: ptr("1h")})
	if err != nil || rot.JSON201 == nil || rot.JSON201.Secret == key.JSON201.Secret {
		t.Fatalf("rotateToken: %v %d %s", err, rot.StatusCode(), rot.Body)
	}
	who, err := c.WhoamiWithResponse(ctx)
	if err != nil || who.JSON200 == nil || who.JSON200.Account != nil || len(who.JSON200.Scopes) != 1 {
		t.Fatalf("whoami: %v %d %s", err, who.StatusCode(), who.Body)
	}
	export, err := c.ExportRecordsWithResponse(ctx)
	if err != nil || export.StatusCode() != 200 || bytes.Count(export.Body, []byte("\n")) != 4 {
		t.Fatalf("exportRecords: %v %d %s", err, export.StatusCode(), export.Body)
	}
	imp, err := c.ImportRecordsWithBodyWithResponse(ctx, "application/jsonl", bytes.NewReader(export.Body))
	if err != nil || imp.JSON200 == nil || imp.JSON200.Unchanged != 4 {
		t.Fatalf("importRecords: %v %d %s", err, imp.StatusCode(), imp.Body)
	}
	badLine, err := c.ImportRecordsWithBodyWithResponse(ctx, "application/jsonl", strings.NewReader("{\n"))
	if err != nil || badLine.JSON400 == nil || badLine.JSON400.Line != 1 || badLine.JSON400.Imported != 0 {
		t.Fatalf("importRecords of a bad line: %v %d %s", err, badLine.StatusCode(), badLine.Body)
	}
}
`
