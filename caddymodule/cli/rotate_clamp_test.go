package cli

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/admin"
)

// TestRotateCommandTellsClampedGrace: when the server clamps a grace that
// outlives the token to its expiry, the command says when it really stops.
func TestRotateCommandTellsClampedGrace(t *testing.T) {
	expiry := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	_, addr := newFakeAdmin(t, func(w http.ResponseWriter, r *http.Request) {
		writeAnswer(w, http.StatusCreated, admin.RotatedToken{
			TokenWithSecret:   admin.TokenWithSecret{Token: admin.Token{ID: "tok_2", Status: "active"}, Secret: "sk-new"},
			OldTokenExpiresAt: expiry,
		})
	})
	out, errOut, err := runCommand(t, addr, "rotate", "key_1", "--token", "tok_1", "--grace", "24h")
	if err != nil {
		t.Fatalf("rotate: %v\n%s", err, errOut)
	}
	if !strings.Contains(out, "until its own expiry") || !strings.Contains(out, "the 24h grace outlives it") {
		t.Errorf("the clamped grace is not told:\n%s", out)
	}
}
