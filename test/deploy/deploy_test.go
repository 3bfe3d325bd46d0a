package deploy

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/wiring"
)

// suite is Debian's release the rootfs is built from.
const suite = "bookworm"

// cacheDir holds the rootfs tarball and the apt archives between runs.
func cacheDir() string {
	if d := os.Getenv("DW_DEPLOY_TEST_CACHE"); d != "" {
		return d
	}
	return "/var/cache/docker-worker-test/deploy"
}

// need fails under CI and skips otherwise when a prerequisite is missing.
func need(t *testing.T, ok bool, what string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s (CI is set, so this fails instead of skipping; run test/setup-env.sh)", what)
	}
	t.Skipf("%s; skipping", what)
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// rootfsImage returns a Docker image of a minimal Debian rootfs, building
// the rootfs with debootstrap when the cache does not hold it.
func rootfsImage(t *testing.T) string {
	t.Helper()
	dir := cacheDir()
	if err := os.MkdirAll(filepath.Join(dir, "apt-archives", "partial"), 0o755); err != nil {
		t.Fatal(err)
	}
	tarball := filepath.Join(dir, "rootfs-"+suite+"-minbase.tar")
	if _, err := os.Stat(tarball); err != nil {
		_, lookErr := exec.LookPath("debootstrap")
		need(t, lookErr == nil, "debootstrap is not installed")
		tmp, err := os.MkdirTemp(dir, "rootfs-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(tmp)
		t.Logf("building the %s rootfs with debootstrap (cached in %s)", suite, dir)
		run(t, "debootstrap", "--variant=minbase", suite, tmp, "http://deb.debian.org/debian")
		run(t, "tar", "-C", tmp, "--numeric-owner", "-cf", tarball+".tmp", ".")
		if err := os.Rename(tarball+".tmp", tarball); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(tarball)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	image := "docker-worker-test/deploy-rootfs:" + hex.EncodeToString(h.Sum(nil))[:12]
	if exec.Command("docker", "image", "inspect", image).Run() != nil {
		run(t, "docker", "import", tarball, image)
	}
	return image
}

// box is a running container of the rootfs image with deploy/ mounted.
type box struct {
	t    *testing.T
	name string
}

func startBox(t *testing.T, image, repo, binary string) *box {
	t.Helper()
	suffix := make([]byte, 4)
	if _, err := rand.Read(suffix); err != nil {
		t.Fatal(err)
	}
	name := "dw-deploy-test-" + hex.EncodeToString(suffix)
	// The container stops by itself after 15 minutes; host networking lets
	// it reach the test's instance metadata server on 127.0.0.1.
	run(t, "docker", "run", "-d", "--rm", "--name", name, "--network", "host",
		"-v", filepath.Join(repo, "deploy")+":/deploy:ro",
		"-v", binary+":/dw/docker-worker:ro",
		"-v", filepath.Join(cacheDir(), "apt-archives")+":/var/cache/apt/archives",
		image, "sleep", "900")
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", name).Run() })
	return &box{t: t, name: name}
}

// sh runs a bash script in the box and returns its combined output and exit
// code.
func (b *box) sh(env []string, script string) (string, int) {
	b.t.Helper()
	args := []string{"exec"}
	for _, e := range env {
		args = append(args, "-e", e)
	}
	args = append(args, b.name, "bash", "-euo", "pipefail", "-c", script)
	cmd := exec.Command("docker", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			b.t.Fatalf("docker exec: %v", err)
		}
		code = ee.ExitCode()
	}
	return out.String(), code
}

// ok runs a script that must succeed.
func (b *box) ok(env []string, script string) string {
	b.t.Helper()
	out, code := b.sh(env, script)
	if code != 0 {
		b.t.Fatalf("exit %d from %q:\n%s", code, script, out)
	}
	return out
}

func (b *box) read(path string) string {
	b.t.Helper()
	return b.ok(nil, "cat "+path)
}

func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// imds serves the part of EC2 instance metadata host-setup reads, only to
// callers holding an IMDSv2 token.
func imds(t *testing.T) string {
	const token = "tok-123"
	meta := map[string]string{
		"/latest/meta-data/instance-id":      "i-0abc1234def567890",
		"/latest/meta-data/instance-type":    "m5d.large",
		"/latest/meta-data/placement/region": "us-west-2",
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && r.URL.Path == "/latest/api/token" {
			fmt.Fprint(w, token)
			return
		}
		if r.Header.Get("X-aws-ec2-metadata-token") != token {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		v, ok := meta[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, v)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func mustContain(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, got)
		}
	}
}

func TestProvisionInDebianRootfs(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Debian rootfs and runs the provisioning in Docker")
	}
	need(t, exec.Command("docker", "info").Run() == nil, "the Docker daemon does not answer")
	image := rootfsImage(t)
	repo := repoRoot(t)
	binary := filepath.Join(t.TempDir(), "docker-worker")
	build := exec.Command("go", "build", "-o", binary, "./cmd/docker-worker")
	build.Dir = repo
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	b := startBox(t, image, repo, binary)

	dry := []string{"DW_KERNEL_DRY_RUN=1", "DW_COMMAND_LOG=/tmp/commands.log"}
	app := append([]string{"DW_WORKER_BINARY=/dw/docker-worker", "DW_ROOT_URL=https://tc.example.com",
		"DW_WORKER_TYPE=linux-large", "DW_PROVISIONER_ID=proj-test", "DW_CAPACITY=2"}, dry...)

	// app needs the base, and its variables; every bad one is listed.
	out, code := b.sh(app, "/deploy/provision.sh app")
	if code == 0 || !strings.Contains(out, "run provision.sh base first") {
		t.Errorf("app before base: exit %d:\n%s", code, out)
	}

	b.ok(dry, "/deploy/provision.sh base")
	out, code = b.sh(append(dry, "DW_WORKER_BINARY=/dw/docker-worker", "DW_CAPACITY=zero", "DW_ON_EXIT=reboot"),
		"/deploy/provision.sh app")
	if code == 0 {
		t.Errorf("app without DW_ROOT_URL succeeded:\n%s", out)
	}
	mustContain(t, "app with bad variables", out, "DW_ROOT_URL: required", "DW_WORKER_TYPE: required",
		"DW_CAPACITY: zero is not a positive integer", "DW_ON_EXIT: reboot is not poweroff or none")
	b.ok(app, "/deploy/provision.sh app")

	// A cloud kernel (here an empty package of that name) is removed so
	// that the generic kernel boots.
	b.ok(nil, `mkdir -p /tmp/cloudpkg/DEBIAN && printf '%s\n' 'Package: linux-image-6.1.0-99-cloud-amd64' \
		'Version: 1' 'Architecture: all' 'Maintainer: test <test@example.com>' 'Description: stand-in' \
		>/tmp/cloudpkg/DEBIAN/control && dpkg-deb -b /tmp/cloudpkg /tmp/cloud.deb >/dev/null && dpkg -i /tmp/cloud.deb >/dev/null`)

	// Idempotent: a second run changes, installs and enables nothing.
	b.ok(nil, "rm /tmp/commands.log")
	again := b.ok(dry, "/deploy/provision.sh base") + b.ok(app, "/deploy/provision.sh app")
	for _, word := range []string{"changed ", "installed ", "enabled "} {
		if strings.Contains(again, "provision: "+word) {
			t.Errorf("second run reports %q:\n%s", word, again)
		}
	}
	// The kernel steps were recorded, not run.
	mustContain(t, "kernel commands", b.read("/tmp/commands.log"),
		"env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends linux-image-amd64 linux-headers-amd64 dkms v4l2loopback-dkms\n",
		"env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq linux-image-6.1.0-99-cloud-amd64\n",
		"modprobe v4l2loopback\n", "modprobe snd-aloop\n", "sysctl -q --system\n")

	// Packages the base installs for real.
	b.ok(nil, "dpkg-query -W docker.io lvm2 systemd apparmor curl zstd")

	// Docker's daemon config.
	var daemon map[string]any
	if err := json.Unmarshal([]byte(b.read("/etc/docker/daemon.json")), &daemon); err != nil {
		t.Fatalf("daemon.json: %v", err)
	}
	for k, want := range map[string]any{"data-root": "/mnt/var/lib/docker", "storage-driver": "overlay2",
		"icc": false, "live-restore": false, "log-driver": "local"} {
		if daemon[k] != want {
			t.Errorf("daemon.json %s = %v, want %v", k, daemon[k], want)
		}
	}
	mustContain(t, "docker drop-in", b.read("/etc/systemd/system/docker.service.d/10-docker-worker.conf"),
		"Requires=docker-worker-storage.service", "After=docker-worker-storage.service")
	mustContain(t, "modprobe options", b.read("/etc/modprobe.d/docker-worker-loopback.conf"),
		"options v4l2loopback devices=100", "options snd-aloop enable=1,1,1,1,1,1,1,1 index=0,1,2,3,4,5,6,7")
	mustContain(t, "sysctls", b.read("/etc/sysctl.d/60-docker-worker.conf"), "vm.panic_on_oom = 1")

	// Units: in place, enabled, ordered, and accepted by systemd.
	unit := b.read("/etc/systemd/system/docker-worker.service")
	mustContain(t, "docker-worker.service", unit,
		"Requires=docker.service docker-worker-storage.service docker-worker-setup.service",
		"After=docker.service docker-worker-storage.service docker-worker-setup.service docker-worker-modules.service",
		"ExecStart=/usr/local/bin/docker-worker run --config /etc/docker-worker/config.yml",
		"Restart=on-failure", "RestartPreventExitStatus=2 3 4", "FailureAction=poweroff")
	mustContain(t, "docker-worker-modules.service", b.read("/etc/systemd/system/docker-worker-modules.service"),
		"Before=docker-worker.service", "ExecStart=/usr/sbin/modprobe v4l2loopback")
	units := []string{"docker.service", "docker-worker-storage.service", "docker-worker-modules.service",
		"docker-worker-setup.service", "docker-worker.service"}
	for _, u := range units {
		b.ok(nil, "systemctl is-enabled -q "+u)
	}
	b.ok(nil, "systemd-analyze verify /etc/systemd/system/docker-worker*.service")

	// The config, rendered from the variables.
	cfg := b.read("/etc/docker-worker/config.yml")
	mustContain(t, "config.yml", cfg, `rootUrl: "https://tc.example.com"`, `provisionerId: "proj-test"`,
		`workerType: "linux-large"`, "capacity: 2", "stateDir: /mnt/var/lib/docker-worker",
		"volumeCachePath: /mnt/var/cache/docker-worker", "dockerVolume: /mnt",
		"ed25519SigningKeyLocation: /etc/docker-worker/cot-signing.key")
	if strings.Contains(cfg, "@@") {
		t.Errorf("config.yml has unrendered variables:\n%s", cfg)
	}
	if b.ok(nil, "test -e /etc/docker-worker/cot-signing.key && echo yes || echo no") != "no\n" {
		t.Error("an untrusted app image carries a chain-of-trust key")
	}

	// Instance storage at boot: the instance-store NVMe disks (not the EBS
	// one) become one LVM volume on /mnt, with the worker's directories.
	b.ok(nil, `for d in nvme0n1:"Amazon Elastic Block Store" nvme1n1:"Amazon EC2 NVMe Instance Storage" nvme2n1:"Amazon EC2 NVMe Instance Storage"; do
		mkdir -p /tmp/sys/block/${d%%:*}/device; printf '%s\n' "${d#*:}" >/tmp/sys/block/${d%%:*}/device/model; done`)
	b.ok(append(dry[:1:1], "DW_COMMAND_LOG=/tmp/storage.log", "DW_SYSFS=/tmp/sys"),
		"/usr/local/libexec/docker-worker/instance-storage")
	storage := b.read("/tmp/storage.log")
	mustContain(t, "storage commands", storage,
		"pvcreate -ff -y /dev/nvme1n1 /dev/nvme2n1\n", "vgcreate instance_storage /dev/nvme1n1 /dev/nvme2n1\n",
		"lvcreate -y -l 100%FREE -n all instance_storage\n", "mkfs.ext4 -q -F -E nodiscard /dev/instance_storage/all\n",
		"mount -o defaults,noatime /dev/instance_storage/all /mnt\n")
	if strings.Contains(storage, "nvme0n1") {
		t.Errorf("the EBS disk was used:\n%s", storage)
	}
	b.ok(nil, "test -d /mnt/var/lib/docker -a -d /mnt/docker-tmp -a -d /mnt/var/lib/docker-worker -a -d /mnt/var/cache/docker-worker")
	// Without instance storage only the directories are made.
	out = b.ok(append(dry[:1:1], "DW_SYSFS=/tmp/nothing"), "/usr/local/libexec/docker-worker/instance-storage")
	mustContain(t, "storage without disks", out, "no instance storage")

	// Host setup at boot: identity from instance metadata, a key of its own.
	imdsURL := imds(t)
	out = b.ok([]string{"DW_IMDS_ENDPOINT=" + imdsURL}, "/usr/local/libexec/docker-worker/host-setup")
	mustContain(t, "host-setup", out, "generated the chain-of-trust key")
	mustContain(t, "host.env", b.read("/run/docker-worker/host.env"), "DW_WORKER_ID=i-0abc1234def567890\n",
		"DW_INSTANCE_TYPE=m5d.large\n", "DW_REGION=us-west-2\n")
	if mode := b.ok(nil, "stat -c %a /etc/docker-worker/cot-signing.key"); mode != "600\n" {
		t.Errorf("key mode %q, want 600", mode)
	}
	pub := b.ok(nil, "docker-worker cot pubkey --key /etc/docker-worker/cot-signing.key")
	out = b.ok([]string{"DW_IMDS_ENDPOINT=" + imdsURL}, "/usr/local/libexec/docker-worker/host-setup")
	mustContain(t, "second host-setup", out, "chain-of-trust key /etc/docker-worker/cot-signing.key present")
	if again := b.ok(nil, "docker-worker cot pubkey --key /etc/docker-worker/cot-signing.key"); again != pub {
		t.Errorf("the key changed on the second boot: %q then %q", pub, again)
	}

	// The rendered config passes the worker's own loader, with the host's
	// identity and the credentials from the environment as under systemd.
	hostEnv := map[string]string{"TASKCLUSTER_CLIENT_ID": "worker/example", "TASKCLUSTER_ACCESS_TOKEN": "secret"}
	for _, line := range strings.Split(strings.TrimSpace(b.read("/run/docker-worker/host.env")), "\n") {
		k, v, _ := strings.Cut(line, "=")
		hostEnv[k] = v
	}
	cfgPath := filepath.Join(t.TempDir(), "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	loaded, err := config.Load(cfgPath, func(k string) string { return hostEnv[k] }, wiring.FeatureNames()...)
	if err != nil {
		t.Fatalf("the rendered config does not load:\n%v", err)
	}
	if loaded.WorkerID != "i-0abc1234def567890" || loaded.InstanceType != "m5d.large" || loaded.Region != "us-west-2" ||
		loaded.Capacity != 2 || loaded.StateDir != "/mnt/var/lib/docker-worker" || loaded.DockerVolume != "/mnt" ||
		loaded.Cache.VolumeCachePath != "/mnt/var/cache/docker-worker" || loaded.DockerConfig.AllowPrivileged ||
		!loaded.Shutdown.SpotTermination || loaded.Shutdown.Enabled {
		t.Errorf("loaded config: %+v", loaded)
	}

	// The installed worker validates payloads with the rendered config.
	env := "set -a; . /run/docker-worker/host.env; set +a; "
	b.ok(nil, `printf '{"image":"busybox","command":["true"],"maxRunTime":60}' >/tmp/ok.json
		printf '{"image":"busybox","command":["true"],"maxRunTime":60,"capabilities":{"devices":{"loopbackVideo":true}}}' >/tmp/video.json`)
	mustContain(t, "validate", b.ok(nil, env+"docker-worker validate --config /etc/docker-worker/config.yml /tmp/ok.json"), "valid")
	out, code = b.sh(nil, env+"docker-worker validate --config /etc/docker-worker/config.yml /tmp/video.json")
	// The container has no v4l2loopback devices (the module is a kernel
	// step), so the worker refuses a payload asking for one.
	if code != 1 || !strings.Contains(out, `device "loopbackVideo" is not supported`) {
		t.Errorf("validate of a loopbackVideo payload without the devices: exit %d:\n%s", code, out)
	}

	// A trusted image installs the given key instead.
	b.ok(nil, "rm /etc/docker-worker/cot-signing.key && docker-worker cot keygen --out /tmp/trusted.key >/tmp/trusted.pub")
	out = b.ok(append(app, "DW_COT_TRUSTED_KEY=/tmp/trusted.key", "DW_ON_EXIT=none"), "/deploy/provision.sh app")
	mustContain(t, "trusted app", out, "trusted chain-of-trust key, public key "+strings.TrimSpace(b.read("/tmp/trusted.pub")))
	b.ok(nil, "cmp /tmp/trusted.key /etc/docker-worker/cot-signing.key")
	mustContain(t, "unit with DW_ON_EXIT=none", b.read("/etc/systemd/system/docker-worker.service"), "FailureAction=none")
	out = b.ok([]string{"DW_IMDS_ENDPOINT=" + imdsURL}, "/usr/local/libexec/docker-worker/host-setup")
	mustContain(t, "host-setup on a trusted image", out, "present")
}
