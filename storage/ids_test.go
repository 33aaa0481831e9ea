package storage

import (
	"strings"
	"testing"
)

func TestNewIDSortsByTime(t *testing.T) {
	prev := NewID(KeyIDPrefix)
	if len(prev) != len(KeyIDPrefix)+22 || !strings.HasPrefix(prev, KeyIDPrefix) {
		t.Fatalf("bad id %q", prev)
	}
	for range 5000 {
		id := NewID(KeyIDPrefix)
		if id == prev {
			t.Fatalf("duplicate id %q", id)
		}
		if id <= prev {
			t.Fatalf("id %q sorts before earlier %q", id, prev)
		}
		prev = id
	}
}
