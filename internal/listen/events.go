// Package listen runs the generator as a service fed by docker-distribution's notifications:
// a push to a published repository schedules a regeneration; bursts are debounced, runs never
// overlap, and a request not yet served survives a restart (it is kept in a state file).
package listen

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"strings"

	"github.com/regmirror/regmirror/layout"
)

// Media types of a notification envelope: docker-distribution 2.x (Debian's docker-registry)
// sends v1, distribution 3.x v2; plain JSON is accepted too.
const (
	EventsMediaTypeV1 = "application/vnd.docker.distribution.events.v1+json"
	EventsMediaTypeV2 = "application/vnd.docker.distribution.events.v2+json"
)

// MaxBody bounds a notification body. docker-distribution sends one envelope per event (or a
// small batch); anything larger is refused without being read whole.
const MaxBody = 1 << 20

// Event is the part of a docker-distribution notification event that matters here.
type Event struct {
	ID        string `json:"id"`
	Timestamp string `json:"timestamp"`
	Action    string `json:"action"` // "push", "pull", "mount", "delete"
	Target    struct {
		MediaType  string `json:"mediaType"`
		Digest     string `json:"digest"`
		Repository string `json:"repository"`
		Tag        string `json:"tag"`
	} `json:"target"`
}

// envelope is the body of a notification request.
type envelope struct {
	Events []Event `json:"events"`
}

// manifestTypes are the media types of manifests; a push of anything else (a layer or config
// blob) changes no tag.
var manifestTypes = map[string]bool{
	layout.MediaTypeOCIManifest:         true,
	layout.MediaTypeOCIIndex:            true,
	layout.MediaTypeDockerManifest:      true,
	layout.MediaTypeDockerList:          true,
	layout.MediaTypeDockerSchema1:       true,
	layout.MediaTypeDockerSchema1Signed: true,
}

// acceptedContentType reports whether a request's Content-Type is a notification envelope.
func acceptedContentType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	switch mt {
	case EventsMediaTypeV1, EventsMediaTypeV2, "application/json":
		return true
	}
	return false
}

// ParseEvents decodes a notification body.
func ParseEvents(body []byte) ([]Event, error) {
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, fmt.Errorf("decoding the notification: %w", err)
	}
	if env.Events == nil {
		return nil, errors.New("decoding the notification: no \"events\" array")
	}
	return env.Events, nil
}

// Changes reports whether e can change what the tree publishes: a manifest pushed (with or
// without a tag) or anything deleted. Pulls, mounts and blob pushes change nothing.
func (e Event) Changes() bool {
	switch e.Action {
	case "push":
		return e.Target.Tag != "" || manifestTypes[strings.TrimSpace(e.Target.MediaType)]
	case "delete":
		return true
	}
	return false
}
