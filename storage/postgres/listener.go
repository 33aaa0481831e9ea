package storage

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// ListenHooks receive what a change listener sees.
type ListenHooks struct {
	// Notice is called with every change committed by any node on the
	// store's schema (this node's included).
	Notice func(Invalidation)
	// Connected is called after every (re)connection, once listening:
	// notices sent while the listener was away are lost, so everything
	// cached before must be forgotten.
	Connected func()
	// Disconnected is called when the listening connection fails.
	Disconnected func(error)
}

// Listener timing.
const (
	listenPingEvery  = 10 * time.Second // idle time after which the connection is checked
	listenMinBackoff = 50 * time.Millisecond
	listenMaxBackoff = 2 * time.Second
)

// Listen holds a dedicated connection that LISTENs for change notices and
// delivers them to hooks until ctx ends. It reconnects by itself, with
// backoff, whenever the connection fails. It returns when ctx is done.
func (s *Postgres) Listen(ctx context.Context, hooks ListenHooks) {
	backoff := listenMinBackoff
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, hooks, func() { backoff = listenMinBackoff })
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
func (s *Postgres) listenOnce(ctx context.Context, hooks ListenHooks, connected func()) error {
	cfg := s.pool.Config().ConnConfig.Copy()
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
			if json.Unmarshal([]byte(n.Payload), &msg) == nil && msg.Schema == s.schema && hooks.Notice != nil {
				hooks.Notice(msg.Invalidation)
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
