package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/storage"
)

// Listener timing.
const (
	listenPingEvery  = 10 * time.Second // idle time after which the connection is checked
	listenMinBackoff = 50 * time.Millisecond
	listenMaxBackoff = 2 * time.Second
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
	connectCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	conn, err := pgx.ConnectConfig(connectCtx, cfg)
	cancel()
	if err != nil {
		return wrapErr("connecting the change listener", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{NotifyChannel}.Sanitize()); err != nil {
		return wrapErr("listening for changes", err)
	}
	connected()
	if hooks.Connected != nil {
		hooks.Connected()
	}
	for {
		waitCtx, cancel := context.WithTimeout(ctx, listenPingEvery)
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
			pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
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
