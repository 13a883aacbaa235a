// Does net/http's Server.Shutdown drop a request that arrives, after Shutdown began, on a connection the server
// had already accepted? Two servers share a port with SO_REUSEPORT, as Caddy's old and new configs do on a
// reload (docs/caddy.md, "Reloads and new connections"). Run: `go run benchmarks/go_shutdown/main.go` (any Go;
// Debian's golang-go). Go 1.19 answers all five ("HTTP/1.1 200 OK"); Caddy 2.11.7 (Go 1.26.8) closes the same
// requests without a response (benchmarks/bare_reloads.py).
package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"syscall"
	"time"
)

func listen(addr string) net.Listener {
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, 0xf, 1) })
	}}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		panic(err)
	}
	return ln
}

func main() {
	addr := "127.0.0.1:18777"
	old := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "old") })}
	go old.Serve(listen(addr))
	time.Sleep(100 * time.Millisecond)
	var conns []net.Conn
	for i := 0; i < 5; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			panic(err)
		}
		conns = append(conns, c)
	}
	time.Sleep(300 * time.Millisecond) // accepted by the old server, no byte sent: StateNew
	fresh := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "new") })}
	go fresh.Serve(listen(addr))
	go old.Shutdown(context.Background())
	time.Sleep(100 * time.Millisecond)
	for _, c := range conns {
		fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		fmt.Printf("%q %v\n", line, err)
	}
}
