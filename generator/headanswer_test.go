package generator

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestReadHeadAnswer(t *testing.T) {
	const digest = "sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, c := range []struct {
		name   string
		answer string
		want   headAnswer
		bad    bool
	}{
		{name: "registry's 200", answer: "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nContent-Type: application/vnd.oci.image.index.v1+json\r\nDocker-Content-Digest: " + digest + "\r\nDocker-Distribution-Api-Version: registry/2.0\r\nEtag: \"" + digest + "\"\r\nDate: Wed, 02 Dec 2026 04:00:00 GMT\r\n\r\n",
			want: headAnswer{status: 200, contentLength: 1234, digest: digest}},
		{name: "no reason, names in any case", answer: "HTTP/1.1 200\r\ncontent-length:\t7 \r\ndocker-content-digest:" + digest + "\r\n\r\n",
			want: headAnswer{status: 200, contentLength: 7, digest: digest}},
		{name: "the first digest", answer: "HTTP/1.1 200 OK\r\nDocker-Content-Digest: \r\nDocker-Content-Digest: " + digest + "\r\n\r\n",
			want: headAnswer{status: 200, contentLength: -1}},
		{name: "404", answer: "HTTP/1.1 404 Not Found\r\nContent-Length: 96\r\n\r\n", want: headAnswer{status: 404, contentLength: 96}},
		{name: "connection close", answer: "HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\n\r\n", want: headAnswer{status: 200, contentLength: -1, close: true}},
		{name: "HTTP/1.0 closes", answer: "HTTP/1.0 200 OK\r\n\r\n", want: headAnswer{status: 200, contentLength: -1, close: true}},
		{name: "HTTP/1.0 kept alive", answer: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", want: headAnswer{status: 200, contentLength: -1}},
		{name: "same length twice", answer: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", want: headAnswer{status: 200, contentLength: 5}},
		{name: "interim", answer: "HTTP/1.1 103 Early Hints\r\n\r\n", want: headAnswer{status: 103, contentLength: -1}},
		{name: "lengths differ", answer: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", bad: true},
		{name: "length signed", answer: "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n", bad: true},
		{name: "length empty", answer: "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n", bad: true},
		{name: "transfer encoding", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", bad: true},
		{name: "folded line", answer: "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\n\r\n", bad: true},
		{name: "space before colon", answer: "HTTP/1.1 200 OK\r\nDocker-Content-Digest : " + digest + "\r\n\r\n", bad: true},
		{name: "bare LF", answer: "HTTP/1.1 200 OK\n\n", bad: true},
		{name: "HTTP/2", answer: "HTTP/2 200\r\n\r\n", bad: true},
		{name: "status of two digits", answer: "HTTP/1.1 20 OK\r\n\r\n", bad: true},
		{name: "control byte in a value", answer: "HTTP/1.1 200 OK\r\nX-A: a\x00b\r\n\r\n", bad: true},
		{name: "header unended", answer: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", bad: true},
		{name: "header too large", answer: "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-A: "+strings.Repeat("a", 1000)+"\r\n", 70) + "\r\n", bad: true},
		{name: "nothing", answer: "", bad: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			next := "HTTP/1.1 200 OK\r\n\r\n" // pipelined after it
			if c.bad {
				next = ""
			}
			br := bufio.NewReaderSize(strings.NewReader(c.answer+next), 16<<10)
			got, err := readHeadAnswer(br)
			if c.bad {
				if err == nil {
					t.Errorf("got %+v, want an error", got)
				}
				return
			}
			if err != nil || got != c.want {
				t.Errorf("got %+v (%v), want %+v", got, err, c.want)
			}
			if rest, _ := io.ReadAll(br); string(rest) != next {
				t.Errorf("got %q left, want %q", rest, next)
			}
		})
	}
}

// FuzzReadHeadAnswer: whatever the bytes, an answer readHeadAnswer takes is one
// http.ReadResponse takes as well, with the same status, Content-Length, digest and close,
// and it ends where http.ReadResponse ends it (the next pipelined answer starts there).
func FuzzReadHeadAnswer(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nDocker-Content-Digest: sha256:0123\r\n\r\nHTTP/1.1 404 Not Found\r\n\r\n"))
	f.Add([]byte("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\ncontent-length: 007\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 401 Unauthorized\r\nWww-Authenticate: Bearer realm=\"x\"\r\nConnection: close\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(b), 16<<10)
		got, err := readHeadAnswer(br)
		if err != nil {
			return
		}
		hr := bufio.NewReaderSize(bytes.NewReader(b), 16<<10)
		resp, herr := http.ReadResponse(hr, &http.Request{Method: http.MethodHead})
		if herr != nil {
			t.Fatalf("readHeadAnswer took %q (%+v), http.ReadResponse did not: %v", b, got, herr)
		}
		want := headAnswer{status: resp.StatusCode, contentLength: resp.ContentLength, digest: resp.Header.Get("Docker-Content-Digest"), close: resp.Close}
		if got != want {
			t.Fatalf("from %q: got %+v, want %+v (http.ReadResponse's)", b, got, want)
		}
		rest, _ := io.ReadAll(br)
		hrest, _ := io.ReadAll(hr)
		if !bytes.Equal(rest, hrest) {
			t.Fatalf("from %q: %q left, http.ReadResponse left %q", b, rest, hrest)
		}
	})
}
