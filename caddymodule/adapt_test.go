package caddymodule

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

var update = flag.Bool("update", false, "rewrite the golden adapt results in testdata")

// TestAdaptGolden adapts Caddyfile.example and every testdata/*.caddyfile
// and compares the JSON with the golden *.json beside it.
func TestAdaptGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	inputs = append(inputs, "../Caddyfile.example")
	for _, in := range inputs {
		golden := filepath.Join("testdata", strings.TrimSuffix(filepath.Base(in), filepath.Ext(in))+".json")
		if filepath.Base(in) == "Caddyfile.example" {
			golden = filepath.Join("testdata", "Caddyfile.example.json")
		}
		t.Run(filepath.Base(in), func(t *testing.T) {
			src, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			if *update {
				out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt(src, nil)
				if err != nil {
					t.Fatalf("adapting: %v", err)
				}
				var pretty bytes.Buffer
				if err := json.Indent(&pretty, out, "", "\t"); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, pretty.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !caddytest.CompareAdapt(t, in, string(src), "caddyfile", string(want)) {
				t.Errorf("adapting %s differs from %s", in, golden)
			}
		})
	}
}

// TestAdaptKeepsSecretsOut checks that runtime placeholders stay
// placeholders in the adapted JSON: `caddy adapt` never writes a secret.
func TestAdaptKeepsSecretsOut(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://u:hunter2@db/x")
	src, err := os.ReadFile("testdata/design_example.caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt(src, nil)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out, []byte("hunter2")) || !bytes.Contains(out, []byte("{env.DATABASE_URL}")) {
		t.Fatalf("adapted config holds the secret or lost the placeholder:\n%s", out)
	}
}
