package config

import (
	"path/filepath"
	"strings"
	"time"
)

// RegistryCredentials are the credentials of one entry of the registries
// key.
type RegistryCredentials struct {
	Username string `yaml:"username"`
	Password string `yaml:"password"`
}

// CacheConfig controls volume caches.
type CacheConfig struct {
	// VolumeCachePath is the directory holding cache instances
	// (<path>/<name>/<instance>/).
	VolumeCachePath string `yaml:"volumeCachePath"`
	// PurgeRequestInterval (ms) is the least time between two fetches of
	// the worker pool's purge requests (they are fetched after claims);
	// 0 fetches after every claim, as docker-worker did.
	PurgeRequestInterval int `yaml:"purgeRequestInterval"`
}

// CapacityManagementConfig controls claiming under disk pressure.
type CapacityManagementConfig struct {
	// DiskspaceThreshold is the free space (bytes) dockerVolume must have
	// per free slot before the worker claims.
	DiskspaceThreshold int64 `yaml:"diskspaceThreshold"`
}

// GarbageCollectionConfig controls what the worker removes of what it
// created; times in milliseconds.
type GarbageCollectionConfig struct {
	// ImageExpiration: task images unused this long are removed.
	ImageExpiration int `yaml:"imageExpiration"`
	// ContainerExpiration: exited task containers older than this are
	// removed.
	ContainerExpiration int `yaml:"containerExpiration"`
}

// Defaults of the image, cache and disk keys: docker-worker's, except the
// cache path, which docker-worker put under /mnt, and dockerVolume, whose
// default ("") is Docker's own data directory rather than /mnt.
const (
	DefaultRegistry             = "registry.hub.docker.com"
	DefaultPullStallTimeout     = 5 * 60 * 1000
	DefaultVolumeCachePath      = "/var/cache/docker-worker"
	DefaultStateDir             = "/var/lib/docker-worker"
	DefaultPurgeRequestInterval = 60 * 1000
	DefaultDiskspaceThreshold   = 30_000_000_000
	DefaultImageExpiration      = 2 * 60 * 60 * 1000
	DefaultContainerExpiration  = 30 * 60 * 1000
)

func (c *Config) defaultDisk() {
	c.DockerConfig.DefaultRegistry = DefaultRegistry
	c.DockerConfig.PullStallTimeout = DefaultPullStallTimeout
	c.Cache = CacheConfig{VolumeCachePath: DefaultVolumeCachePath, PurgeRequestInterval: DefaultPurgeRequestInterval}
	c.CapacityManagement = CapacityManagementConfig{DiskspaceThreshold: DefaultDiskspaceThreshold}
	c.GarbageCollection = GarbageCollectionConfig{
		ImageExpiration:     DefaultImageExpiration,
		ContainerExpiration: DefaultContainerExpiration,
	}
	c.Registries = map[string]RegistryCredentials{}
	c.StateDir = DefaultStateDir
}

// validateDisk checks the image, cache and disk keys.
func (c *Config) validateDisk(bad func(key, format string, args ...any)) {
	if c.DockerConfig.PullStallTimeout < 1000 {
		bad("dockerConfig.pullStallTimeout", "must be at least 1000 (ms), got %d", c.DockerConfig.PullStallTimeout)
	}
	if p := c.Cache.VolumeCachePath; !filepath.IsAbs(p) {
		bad("cache.volumeCachePath", "must be an absolute path, got %q", p)
	}
	if p := c.StateDir; !filepath.IsAbs(p) {
		bad("stateDir", "must be an absolute path, got %q", p)
	}
	if c.Cache.PurgeRequestInterval < 0 {
		bad("cache.purgeRequestInterval", "must not be negative, got %d", c.Cache.PurgeRequestInterval)
	}
	if p := c.DockerVolume; p != "" && !filepath.IsAbs(p) {
		bad("dockerVolume", "must be an absolute path (or empty for Docker's data directory), got %q", p)
	}
	if c.CapacityManagement.DiskspaceThreshold < 0 {
		bad("capacityManagement.diskspaceThreshold", "must not be negative, got %d", c.CapacityManagement.DiskspaceThreshold)
	}
	if c.GarbageCollection.ImageExpiration < 0 {
		bad("garbageCollection.imageExpiration", "must not be negative, got %d", c.GarbageCollection.ImageExpiration)
	}
	if c.GarbageCollection.ContainerExpiration < 0 {
		bad("garbageCollection.containerExpiration", "must not be negative, got %d", c.GarbageCollection.ContainerExpiration)
	}
	for host, cred := range c.Registries {
		if host == "" || strings.Contains(host, "://") {
			bad("registries."+host, "must be a registry host, optionally with /user (no scheme)")
		}
		if cred.Username == "" {
			bad("registries."+host+".username", "is required")
		}
	}
}

// PullStallTimeoutDuration is DockerConfig.PullStallTimeout as a duration.
func (c *Config) PullStallTimeoutDuration() time.Duration {
	return time.Duration(c.DockerConfig.PullStallTimeout) * time.Millisecond
}
