package storage

import (
	"testing"
	"time"
)

// TestRetireAt is the rule both stores apply when a token is rotated out:
// it stops at the end of its grace or at its own expiry, whichever comes
// first.
func TestRetireAt(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	soon, late := now.Add(time.Hour), now.Add(48*time.Hour)
	for _, tt := range []struct {
		name    string
		expires *time.Time
		grace   time.Duration
		want    time.Time
	}{
		{"no expiry", nil, 24 * time.Hour, now.Add(24 * time.Hour)},
		{"expiry after the grace", &late, 24 * time.Hour, now.Add(24 * time.Hour)},
		{"expiry before the grace ends", &soon, 24 * time.Hour, soon},
		{"expiry at the grace's end", &soon, time.Hour, soon},
		{"already expired", &now, time.Hour, now},
	} {
		if got := retireAt(now, tt.expires, tt.grace); !got.Equal(tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}
