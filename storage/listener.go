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
	// Disconnected is called when the listening connection fails, or
	// stops answering, and after every failed attempt to reconnect.
	Disconnected func(error)
}

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
// (Cache.NoticesLost). TCP keepalives would take far longer to notice.
const (
	listenCheckEvery  = 250 * time.Millisecond
	listenPingTimeout = 600 * time.Millisecond
	listenMinBackoff  = 50 * time.Millisecond
	listenMaxBackoff  = 2 * time.Second
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
			if json.Unmarshal([]byte(n.Payload), &msg) == nil && msg.Schema == s.schema && hooks.Notice != nil {
				hooks.Notice(msg.Invalidation)
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
