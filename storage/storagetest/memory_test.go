package storagetest_test

import (
	"testing"

	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/storagetest"
)

func TestMemoryConformance(t *testing.T) {
	storagetest.Run(t, func(t testing.TB) storage.Backend {
		m := storagetest.NewMemory()
		t.Cleanup(func() { _ = m.Close() })
		return m
	})
}
