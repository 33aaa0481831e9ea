package pgtest

import (
	"net"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy forwards TCP connections to a PostgreSQL server and can make one
// of them a dead network path: it stops forwarding without closing
// anything, as a dropped NAT entry or a pulled cable does. Nothing
// arrives, nothing fails; only a deadline notices.
type Proxy struct {
	ln     net.Listener
	target string
	dsn    string
	refuse atomic.Bool
	mu     sync.Mutex
	conns  []*proxied
	done   sync.WaitGroup
}

type proxied struct {
	client, server net.Conn
	dead           atomic.Bool
}

// StartProxy starts a proxy in front of the server of dsn (a URL DSN) and
// closes it at tb.Cleanup. It skips tb when dsn is not a URL with a host.
func StartProxy(tb testing.TB, dsn string) *Proxy {
	tb.Helper()
	u, err := url.Parse(dsn)
	if err != nil || u.Host == "" {
		tb.Skip("pgtest: cannot put a proxy in front of a DSN that is not a URL with a host")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &Proxy{ln: ln, target: u.Host}
	u.Host = ln.Addr().String()
	p.dsn = u.String()
	p.done.Go(p.accept)
	tb.Cleanup(p.Close)
	return p
}

// DSN is the connection string through the proxy.
func (p *Proxy) DSN() string { return p.dsn }

func (p *Proxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.refuse.Load() {
			client.Close()
			continue
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		pc := &proxied{client: client, server: server}
		p.mu.Lock()
		p.conns = append(p.conns, pc)
		p.mu.Unlock()
		p.done.Go(func() { pc.pipe(server, client) })
		p.done.Go(func() { pc.pipe(client, server) })
	}
}

// pipe copies src to dst until either side closes; once the connection is
// dead it keeps reading, so the sender never blocks, and forwards nothing.
func (pc *proxied) pipe(dst, src net.Conn) {
	defer pc.client.Close()
	defer pc.server.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !pc.dead.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// ServerPorts returns the local ports of the proxy's connections to the
// server: the client_port of their backends in pg_stat_activity.
func (p *Proxy) ServerPorts() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	var ports []int
	for _, pc := range p.conns {
		ports = append(ports, pc.server.LocalAddr().(*net.TCPAddr).Port)
	}
	return ports
}

// Blackhole stops forwarding, both ways, on the connections whose server
// side has one of these local ports, and leaves them open. It returns how
// many it stopped.
func (p *Proxy) Blackhole(serverPorts ...int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, pc := range p.conns {
		if slices.Contains(serverPorts, pc.server.LocalAddr().(*net.TCPAddr).Port) {
			pc.dead.Store(true)
			n++
		}
	}
	return n
}

// RefuseNew makes the proxy close new connections at once (on) or forward
// them again (off); open connections are left as they are.
func (p *Proxy) RefuseNew(on bool) { p.refuse.Store(on) }

// Close stops the proxy and closes every connection through it.
func (p *Proxy) Close() {
	p.ln.Close()
	p.mu.Lock()
	for _, pc := range p.conns {
		pc.client.Close()
		pc.server.Close()
	}
	p.mu.Unlock()
	p.done.Wait()
}

// ServerPortsOf returns the ServerPorts of p whose backends have this
// application_name, read through dsn (a direct connection).
func (p *Proxy) ServerPortsOf(tb testing.TB, dsn, applicationName string) []int {
	tb.Helper()
	var ports []int
	QueryRow(tb, dsn, `SELECT coalesce(array_agg(client_port ORDER BY backend_start), '{}') FROM pg_stat_activity
		WHERE application_name = $1 AND client_port = ANY($2)`, []any{applicationName, p.ServerPorts()}, &ports)
	return ports
}
