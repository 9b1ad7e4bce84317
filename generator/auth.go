package generator

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/docker/cli/cli/config"
	"github.com/google/go-containerregistry/pkg/authn"
)

// DefaultKeychain finds credentials the way podman and docker users expect:
// $REGISTRY_AUTH_FILE first when it is set (containers-auth.json, podman's precedence, which
// go-containerregistry's default keychain only consults when no docker config exists), then
// go-containerregistry's default keychain ($DOCKER_CONFIG or ~/.docker/config.json with its
// credential helpers, then podman's auth.json locations).
func DefaultKeychain() authn.Keychain {
	return authn.NewMultiKeychain(authFileKeychain{}, authn.DefaultKeychain)
}

type authFileKeychain struct{}

func (authFileKeychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	path := os.Getenv("REGISTRY_AUTH_FILE")
	if path == "" {
		return authn.Anonymous, nil
	}
	f, err := os.Open(filepath.Clean(path))
	if err != nil {
		return nil, fmt.Errorf("reading REGISTRY_AUTH_FILE: %w", err)
	}
	defer f.Close()
	cf, err := config.LoadFromReader(f)
	if err != nil {
		return nil, fmt.Errorf("parsing REGISTRY_AUTH_FILE %s: %w", path, err)
	}
	for _, key := range []string{target.String(), target.RegistryStr()} {
		ac, err := cf.GetAuthConfig(key)
		if err != nil {
			return nil, fmt.Errorf("REGISTRY_AUTH_FILE %s: %w", path, err)
		}
		if ac.Username != "" || ac.Password != "" || ac.Auth != "" || ac.IdentityToken != "" || ac.RegistryToken != "" {
			return authn.FromConfig(authn.AuthConfig{
				Username:      ac.Username,
				Password:      ac.Password,
				Auth:          ac.Auth,
				IdentityToken: ac.IdentityToken,
				RegistryToken: ac.RegistryToken,
			}), nil
		}
	}
	return authn.Anonymous, nil
}
