package generator

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// headAnswer is what the pipeline takes from an answer to a HEAD: its status, the
// Content-Length it gives (-1: none), its Docker-Content-Digest, and whether it closes the
// connection.
type headAnswer struct {
	status        int // 0: no answer
	contentLength int64
	digest        string
	close         bool
}

// maxHeadAnswer bounds an answer's status line and header, in bytes.
const maxHeadAnswer = 64 << 10

// errHeadAnswer is an answer readHeadAnswer does not take.
var errHeadAnswer = errors.New("HEAD: an answer the pipeline does not read")

// readHeadAnswer reads an answer to a HEAD from br: the status line and the header, which
// end it (an answer to HEAD has no body). It reads only the fields a pipelined answer is taken
// for. http.ReadResponse reads the same, into a map and a string per header, for tens of
// thousands of answers a run: this reads the three fields in place and gives what
// http.ReadResponse gives for them, or an error for anything it does not expect (a version
// other than HTTP/1.0 and 1.1, a line not ending in CRLF, a folded line, a malformed name or
// value, Transfer-Encoding, Content-Length twice with different values, more than
// maxHeadAnswer bytes), and the batch's remaining requests go the ordinary way.
func readHeadAnswer(br *bufio.Reader) (headAnswer, error) {
	a := headAnswer{contentLength: -1}
	read := 0
	line := func() ([]byte, error) {
		l, err := br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				err = errHeadAnswer
			}
			return nil, err
		}
		if read += len(l); read > maxHeadAnswer || len(l) < 2 || l[len(l)-2] != '\r' {
			return nil, errHeadAnswer
		}
		return l[:len(l)-2], nil
	}
	l, err := line()
	if err != nil {
		return a, err
	}
	// HTTP/1.x SSS[ reason]
	if len(l) < 12 || string(l[:7]) != "HTTP/1." || l[7] != '0' && l[7] != '1' || l[8] != ' ' || len(l) > 12 && l[12] != ' ' {
		return a, fmt.Errorf("%w: status line %q", errHeadAnswer, l)
	}
	http10 := l[7] == '0'
	for _, c := range l[9:12] {
		if c < '0' || c > '9' {
			return a, fmt.Errorf("%w: status line %q", errHeadAnswer, l)
		}
		a.status = a.status*10 + int(c-'0')
	}
	if a.status < 100 {
		return a, fmt.Errorf("%w: status line %q", errHeadAnswer, l)
	}
	for _, c := range l[min(len(l), 13):] {
		if !valueByte(c) {
			return a, fmt.Errorf("%w: status line %q", errHeadAnswer, l)
		}
	}
	var closeToken, keepAlive, digestSeen bool
	for {
		if l, err = line(); err != nil {
			return headAnswer{}, err
		}
		if len(l) == 0 {
			break
		}
		colon := bytes.IndexByte(l, ':')
		if colon <= 0 {
			return headAnswer{}, fmt.Errorf("%w: header line %q", errHeadAnswer, l)
		}
		name, value := l[:colon], trimOWS(l[colon+1:])
		for _, c := range name {
			if !tokenByte(c) {
				return headAnswer{}, fmt.Errorf("%w: header line %q", errHeadAnswer, l)
			}
		}
		for _, c := range value {
			if !valueByte(c) {
				return headAnswer{}, fmt.Errorf("%w: header line %q", errHeadAnswer, l)
			}
		}
		switch {
		case equalFold(name, "Content-Length"):
			n, ok := contentLength(value)
			if !ok || a.contentLength >= 0 && a.contentLength != n {
				return headAnswer{}, fmt.Errorf("%w: header line %q", errHeadAnswer, l)
			}
			a.contentLength = n
		case equalFold(name, "Docker-Content-Digest"):
			if !digestSeen { // the first, as Header.Get
				a.digest, digestSeen = string(value), true
			}
		case equalFold(name, "Connection"):
			for tok := range bytes.SplitSeq(value, []byte(",")) {
				tok = trimOWS(tok)
				closeToken = closeToken || equalFold(tok, "close")
				keepAlive = keepAlive || equalFold(tok, "keep-alive")
			}
		case equalFold(name, "Transfer-Encoding"):
			return headAnswer{}, fmt.Errorf("%w: header line %q", errHeadAnswer, l)
		}
	}
	a.close = closeToken || http10 && !keepAlive
	return a, nil
}

// contentLength is the number b holds, as net/http reads a Content-Length.
func contentLength(b []byte) (int64, bool) {
	n, err := strconv.ParseUint(string(b), 10, 63)
	return int64(n), err == nil
}

// tokenByte reports whether c may be in a header's name (RFC 9110 section 5.6.2: tchar).
func tokenByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return c < 0x80 && strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// valueByte reports whether c may be in a header's value: visible, a space or a tab, or
// above ASCII.
func valueByte(c byte) bool { return c == '\t' || c >= ' ' && c != 0x7f }

// trimOWS is b without the spaces and tabs at its ends.
func trimOWS(b []byte) []byte { return bytes.Trim(b, " \t") }

// equalFold reports whether b is s but for the case of ASCII letters.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		if lowerASCII(b[i]) != lowerASCII(s[i]) {
			return false
		}
	}
	return true
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
