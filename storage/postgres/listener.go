package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/storage"
)

// ListenerApplicationName is the application_name of the change
// listener's connection; the pool's connections are named "keygate".
const ListenerApplicationName = "keygate-listener"

// Listener timing. A listening connection whose network path dies
// silently sees no error: nothing arrives, which is also what a quiet
// store looks like. So after listenCheckEvery without a notice the
// listener pings, and a ping unanswered within listenPingTimeout counts as
// a failure. A dead connection is thus noticed within about 0.85 s, inside
// the one-second bound on enforcing other nodes' changes: from then on,
// the cache asks the store before serving what notices may have missed
// (cache.Cache.NoticesLost). TCP keepalives would take far longer to
// notice.
const (
	listenCheckEvery  = 250 * time.Millisecond
	listenPingTimeout = 600 * time.Millisecond
	listenMinBackoff  = 50 * time.Millisecond
	listenMaxBackoff  = 2 * time.Second
)

// Listen implements storage.Listener: a dedicated connection LISTENs for
// change notices on the backend's schema and delivers them to hooks until
// ctx ends, reconnecting with backoff whenever the connection fails.
func (b *Backend) Listen(ctx context.Context, hooks storage.ListenHooks) {
	backoff := listenMinBackoff
	for ctx.Err() == nil {
		err := b.listenOnce(ctx, hooks, func() { backoff = listenMinBackoff })
		if ctx.Err() != nil {
			return
		}
		if hooks.Disconnected != nil {
			hooks.Disconnected(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, listenMaxBackoff)
	}
}

// listenOnce connects, listens and delivers notices until the connection
// fails or ctx ends.
func (b *Backend) listenOnce(ctx context.Context, hooks storage.ListenHooks, connected func()) error {
	cfg := b.pool.Config().ConnConfig.Copy()
	// Named apart from the pool's connections, for operators (and tests)
	// looking at pg_stat_activity.
	cfg.RuntimeParams["application_name"] = ListenerApplicationName
	connectCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	conn, err := pgx.ConnectConfig(connectCtx, cfg)
	cancel()
	if err != nil {
		return wrapErr("connecting the change listener", err)
	}
	defer func() {
		// The connection may be dead: do not wait on it to say goodbye.
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), listenPingTimeout)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{NotifyChannel}.Sanitize()); err != nil {
		return wrapErr("listening for changes", err)
	}
	connected()
	if hooks.Connected != nil {
		hooks.Connected()
	}
	for {
		waitCtx, cancel := context.WithTimeout(ctx, listenCheckEvery)
		n, err := conn.WaitForNotification(waitCtx)
		cancel()
		switch {
		case err == nil:
			var msg notice
			if json.Unmarshal([]byte(n.Payload), &msg) == nil && msg.Schema == b.schema && hooks.Notice != nil {
				hooks.Notice(storage.Invalidation{Tokens: msg.Tokens, Keys: msg.Keys, Accounts: msg.Accounts, HashBits: msg.HashBits})
			}
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded):
			// Quiet for a while: make sure the connection is still alive.
			pingCtx, cancel := context.WithTimeout(ctx, listenPingTimeout)
			err := conn.Ping(pingCtx)
			cancel()
			if err != nil {
				return wrapErr("checking the change listener", err)
			}
		default:
			return wrapErr("waiting for changes", err)
		}
	}
}
