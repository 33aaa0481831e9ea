package postgres

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/cache"
	"github.com/keygate/keygate/storage/token"
)

// proxiedNodes are node A, on a fresh schema, and node B, on the same
// schema through a proxy, with B's cache and change listener wired as the
// gateway wires them, and counts of the listener's hooks.
type proxiedNodes struct {
	dsn           string
	a             *storage.Keystore
	b             *Backend
	cacheB        *cache.Cache[*storage.Credential]
	proxy         *pgtest.Proxy
	connected     atomic.Int32
	disconnected  atomic.Int32
	firstListened chan struct{}
}

func startProxiedNodes(t *testing.T) *proxiedNodes {
	t.Helper()
	n := &proxiedNodes{dsn: pgtest.DSN(t), firstListened: make(chan struct{})}
	n.proxy = pgtest.StartProxy(t, n.dsn)
	schema := pgtest.Schema(t, n.dsn)
	ctx := context.Background()
	n.a = storage.New(openTest(t, n.dsn, schema))
	n.b = openTest(t, n.proxy.DSN(), schema)
	n.cacheB = newTestCache(t, storage.New(n.b))

	listenCtx, stop := context.WithCancel(ctx)
	var listening sync.WaitGroup
	t.Cleanup(func() {
		stop()
		listening.Wait()
	})
	var once sync.Once
	n.cacheB.NoticesLost() // until the listener is connected
	listening.Go(func() {
		n.b.Listen(listenCtx, storage.ListenHooks{
			Notice: n.cacheB.Invalidate,
			Connected: func() {
				n.cacheB.NoticesResumed()
				n.connected.Add(1)
				once.Do(func() { close(n.firstListened) })
			},
			Disconnected: func(error) {
				n.cacheB.NoticesLost()
				n.disconnected.Add(1)
			},
		})
	})
	select {
	case <-n.firstListened:
	case <-time.After(10 * time.Second):
		t.Fatal("the listener did not connect")
	}
	return n
}

// listenerPort is the proxied port of node B's listening connection.
func (n *proxiedNodes) listenerPort(t *testing.T) int {
	t.Helper()
	ports := n.proxy.ServerPortsOf(t, n.dsn, ListenerApplicationName)
	if len(ports) != 1 {
		t.Fatalf("node B has %d listening connections through the proxy, want 1", len(ports))
	}
	return ports[0]
}

// waitFor polls cond until it holds, failing after bound.
func waitFor(t *testing.T, bound time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, bound)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestListenerBlackholeRevocation: the path of node B's listening
// connection dies silently (no FIN, no RST: packets just vanish) and node
// A revokes a token B has cached. B must notice the dead listener well
// within the one-second revocation property (the bound here is generous:
// 5s against the ~15s of an idle-time ping), and from the moment it knows,
// it must not serve the revoked token from its cache. The listener then
// reconnects by itself.
func TestListenerBlackholeRevocation(t *testing.T) {
	ctx := context.Background()
	n := startProxiedNodes(t)
	acc := newTestAccount(t, n.a, "a", "apps")
	_, secret := newTestKey(t, n.a, acc.ID, nil)
	_, other := newTestKey(t, n.a, acc.ID, nil)
	for _, s := range []string{secret, other} {
		if _, err := n.cacheB.Verify(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	n.cacheB.Wait()

	// Only the listener's path dies: node B's lookups still reach the
	// store. (Were the store unreachable too, B would serve what it has
	// cached, until ttl, as DESIGN wants of a store outage.)
	if n.proxy.Blackhole(n.listenerPort(t)) != 1 {
		t.Fatal("no connection blackholed")
	}
	disconnectsBefore := n.disconnected.Load()
	if _, err := n.a.RevokeToken(ctx, storage.Trusted, token.Sum(secret)); err != nil {
		t.Fatal(err)
	}
	noticedLate := n.disconnected.Load() == disconnectsBefore

	waitFor(t, 5*time.Second, "node B noticing its dead listener", func() bool { return n.disconnected.Load() > disconnectsBefore })
	if noticedLate {
		// The listener was known dead after the revocation committed:
		// nothing B cached before may be served without asking again.
		if cred, err := n.cacheB.Verify(ctx, secret); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("node B serves a token revoked on node A after noticing its listener is dead: %+v, %v", cred, err)
		}
	}
	waitFor(t, 5*time.Second, "node B refusing the revoked token", func() bool {
		_, err := n.cacheB.Verify(ctx, secret)
		return errors.Is(err, storage.ErrNotFound)
	})
	if _, err := n.cacheB.Verify(ctx, other); err != nil {
		t.Fatalf("a live token on node B while its listener is dead: %v", err)
	}

	// The listener reconnects on a new connection (the proxy forwards new
	// ones), and notices flow again.
	waitFor(t, 15*time.Second, "the listener reconnecting", func() bool { return n.connected.Load() >= 2 })
	if _, err := n.a.RevokeToken(ctx, storage.Trusted, token.Sum(other)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "node B refusing a token revoked after the reconnection", func() bool {
		_, err := n.cacheB.Verify(ctx, other)
		return errors.Is(err, storage.ErrNotFound)
	})
}

// TestListenerTerminatedRevocation: node B's listening backend is killed
// (pg_terminate_backend: a clean close, seen at once) and node A revokes a
// token B has cached, before B's listener is back. B must not serve the
// revoked token once it knows, and must listen again.
func TestListenerTerminatedRevocation(t *testing.T) {
	ctx := context.Background()
	n := startProxiedNodes(t)
	acc := newTestAccount(t, n.a, "a", "apps")
	_, secret := newTestKey(t, n.a, acc.ID, nil)
	if _, err := n.cacheB.Verify(ctx, secret); err != nil {
		t.Fatal(err)
	}
	n.cacheB.Wait()

	var killed bool
	pgtest.QueryRow(t, n.dsn, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE client_port = $1`,
		[]any{n.listenerPort(t)}, &killed)
	if !killed {
		t.Fatal("node B's listening backend was not terminated")
	}
	if _, err := n.a.RevokeToken(ctx, storage.Trusted, token.Sum(secret)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "node B noticing its listener was terminated", func() bool { return n.disconnected.Load() > 0 })
	waitFor(t, 5*time.Second, "node B refusing the revoked token", func() bool {
		_, err := n.cacheB.Verify(ctx, secret)
		return errors.Is(err, storage.ErrNotFound)
	})
	waitFor(t, 10*time.Second, "the listener reconnecting", func() bool { return n.connected.Load() >= 2 })
	if _, err := n.cacheB.Verify(ctx, secret); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("node B after its listener reconnected: %v", err)
	}
}
