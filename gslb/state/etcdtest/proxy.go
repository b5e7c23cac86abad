package etcdtest

import (
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// proxy is a loopback TCP forwarder in front of one member's port. It keeps
// its listener for the cluster's whole life, so the address a member
// advertises never changes across Stop and Restart, and no other process
// can take the port in between (the race of picking a port with :0 and
// closing it). It also lets Stop cut the member's connections at once:
// etcd's graceful stop otherwise waits up to its request timeout (5 s and
// more) for every open watch stream.
type proxy struct {
	ln   net.Listener
	done chan struct{} // closed when the accept loop has returned

	mu     sync.Mutex
	target string                // member's real address; "" = member down
	conns  map[net.Conn]struct{} // both ends of every forwarded connection
	closed bool
	wg     sync.WaitGroup // copy goroutines
}

func newProxy() (*proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("proxy listen: %w", err)
	}
	p := &proxy{ln: ln, done: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	go p.accept()
	return p, nil
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

// setTarget points the proxy at a member's real address, or with "" marks
// the member down: current connections are cut and new ones are closed on
// accept, which a client sees much like a refused connection.
func (p *proxy) setTarget(addr string) {
	p.mu.Lock()
	p.target = addr
	p.mu.Unlock()
	if addr == "" {
		p.cut()
	}
}

// cut closes every forwarded connection; the copy goroutines then exit.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
}

// close stops accepting, cuts everything and waits for its goroutines.
func (p *proxy) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	_ = p.ln.Close()
	<-p.done
	p.cut()
	p.wg.Wait()
}

func (p *proxy) accept() {
	defer close(p.done)
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // listener closed
		}
		p.mu.Lock()
		target := p.target
		p.mu.Unlock()
		if target == "" {
			_ = c.Close()
			continue
		}
		// Dial inline: loopback dials to a listening port answer at once,
		// and to a closed one fail at once.
		b, err := net.DialTimeout("tcp", target, time.Second)
		if err != nil {
			_ = c.Close()
			continue
		}
		if !p.track(c, b) {
			continue
		}
		p.wg.Add(2)
		go p.pipe(c, b)
		go p.pipe(b, c)
	}
}

// track registers a forwarded pair, unless the proxy is closing or the
// member went down while the pair was being set up.
func (p *proxy) track(c, b net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.target == "" {
		_ = c.Close()
		_ = b.Close()
		return false
	}
	p.conns[c], p.conns[b] = struct{}{}, struct{}{}
	return true
}

// pipe copies src to dst; when either side ends, both are closed so the
// opposite pipe ends too (gRPC and raft streams do not use half-close).
func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
	_ = dst.Close()
	_ = src.Close()
}
