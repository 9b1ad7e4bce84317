package redirector

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestClientAddr(t *testing.T) {
	trusted := proxies{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8:ff::/48")}
	cases := []struct {
		name    string
		peer    string
		xff     []string
		want    string
		viaPrxy bool
	}{
		{"direct", "192.0.2.1:1234", nil, "192.0.2.1", false},
		{"direct ignores XFF", "192.0.2.1:1234", []string{"8.8.8.8"}, "192.0.2.1", false},
		{"mapped peer", "[::ffff:192.0.2.1]:1234", nil, "192.0.2.1", false},
		{"proxy without XFF", "10.0.0.1:1", nil, "10.0.0.1", true},
		{"proxy", "10.0.0.1:1", []string{"192.0.2.7"}, "192.0.2.7", true},
		{"right-most untrusted", "10.0.0.1:1", []string{"1.1.1.1, 192.0.2.7, 10.0.0.2"}, "192.0.2.7", true},
		{"several headers", "10.0.0.1:1", []string{"1.1.1.1", "192.0.2.7, 10.0.0.2"}, "192.0.2.7", true},
		{"all trusted: left-most", "10.0.0.1:1", []string{"10.0.0.3, 10.0.0.2"}, "10.0.0.3", true},
		{"with port", "10.0.0.1:1", []string{"192.0.2.7:5555"}, "192.0.2.7", true},
		{"ipv6 with port", "[2001:db8:ff::1]:1", []string{"[2001:db8::7]:5555"}, "2001:db8::7", true},
		{"ipv6 bracketed", "[2001:db8:ff::1]:1", []string{"[2001:db8::7]"}, "2001:db8::7", true},
		{"garbage stops the walk", "10.0.0.1:1", []string{"192.0.2.9, garbage, 10.0.0.5"}, "10.0.0.5", true},
		{"garbage right away", "10.0.0.1:1", []string{"unknown"}, "10.0.0.1", true},
		{"empty entries", "10.0.0.1:1", []string{" , ,192.0.2.7,, "}, "192.0.2.7", true},
		{"zone dropped", "10.0.0.1:1", []string{"fe80::1%eth0"}, "fe80::1", true},
		{"no port peer", "192.0.2.1", nil, "192.0.2.1", false},
		{"bad peer", "pipe", nil, "invalid IP", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/v2/", nil)
			r.RemoteAddr = c.peer
			for _, v := range c.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			got, via := clientAddr(nil, r, trusted)
			if got.String() != c.want || via != c.viaPrxy {
				t.Errorf("got %s (proxy %v), want %s (proxy %v)", got, via, c.want, c.viaPrxy)
			}
		})
	}
}

// TestConnContextPeer: the peer address a connection's info holds is the one its requests'
// RemoteAddr parses to: for connections of every address kind, and through a real server.
func TestConnContextPeer(t *testing.T) {
	s := &Server{}
	for _, addr := range []net.Addr{
		&net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 5},
		&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 5},
		&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.1"), Port: 5},
		&net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 5, Zone: "eth0"},
		&net.UnixAddr{Name: "/run/x.sock", Net: "unix"},
	} {
		ci := connOf((&http.Request{}).WithContext(s.ConnContext(context.Background(), fakeConn{remote: addr})))
		if got, want := ci.peer, parsePeer(addr.String()); got != want {
			t.Errorf("%s: got %v, want %v", addr, got, want)
		}
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan [2]netip.Addr, 1)
	srv := &http.Server{ConnContext: s.ConnContext, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- [2]netip.Addr{peerAddr(connOf(r), r), parsePeer(r.RemoteAddr)}
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	resp, err := http.Get("http://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if p := <-got; p[0] != p[1] || !p[0].IsLoopback() {
		t.Errorf("peer from the connection %v, from RemoteAddr %v: want the same loopback address", p[0], p[1])
	}
}

// fakeConn is a net.Conn with only a remote address.
type fakeConn struct {
	net.Conn
	remote net.Addr
}

func (c fakeConn) RemoteAddr() net.Addr { return c.remote }
