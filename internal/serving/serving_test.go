package serving

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	errJob := errors.New("the job failed")
	cases := []struct {
		name string
		// stop ends the serving: cancel the context, fail a job or close the listener.
		stop    func(cancel context.CancelFunc, ln net.Listener, fail chan<- error)
		wantErr string
	}{
		{"context done", func(cancel context.CancelFunc, _ net.Listener, _ chan<- error) { cancel() }, ""},
		{"job fails", func(_ context.CancelFunc, _ net.Listener, fail chan<- error) { fail <- errJob }, errJob.Error()},
		{"listener fails", func(_ context.CancelFunc, ln net.Listener, _ chan<- error) { ln.Close() }, "serving: "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			inHandler, release := make(chan struct{}), make(chan struct{})
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				close(inHandler)
				<-release
				io.WriteString(w, "finished")
			})}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			fail := make(chan error, 1)
			jobStopped := make(chan struct{})
			drained := make(chan struct{}, 1)
			done := make(chan error, 1)
			go func() {
				done <- Run(ctx, Config{
					Servers: []Server{{HTTP: srv, Listener: ln}},
					Jobs: []func(context.Context) error{func(ctx context.Context) error {
						defer close(jobStopped)
						select {
						case err := <-fail:
							return err
						case <-ctx.Done():
							return nil
						}
					}},
					DrainTimeout: time.Minute,
					OnDrain:      func() { drained <- struct{}{} },
				})
			}()
			// A request in flight when the serving ends.
			body := make(chan string, 1)
			go func() {
				resp, err := http.Get("http://" + ln.Addr().String() + "/")
				if err != nil {
					body <- err.Error()
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				body <- string(b)
			}()
			<-inHandler
			c.stop(cancel, ln, fail)
			select {
			case err := <-done:
				t.Fatalf("Run returned %v with a request in flight", err)
			case <-time.After(50 * time.Millisecond):
			}
			close(release)
			if got := <-body; got != "finished" {
				t.Errorf("request in flight: got %q, want %q", got, "finished")
			}
			err = <-done
			if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
				t.Errorf("Run: got %v, want an error containing %q", err, c.wantErr)
			}
			select {
			case <-jobStopped:
			default:
				t.Error("Run returned before the job stopped")
			}
			if got, want := len(drained) == 1, c.name == "context done"; got != want {
				t.Errorf("OnDrain called: got %v, want %v", got, want)
			}
		})
	}
}
