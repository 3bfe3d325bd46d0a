#!/usr/bin/env bash
# Prepares this machine for docker-worker's Docker-tier and e2e tests:
# installs the Debian Docker engine, busybox-static, docker-registry,
# apache2-utils (htpasswd) and rabbitmq-server when missing, starts dockerd,
# two loopback-only registries (one open, one with basic authentication) and
# RabbitMQ when they do not answer, builds the busybox test image and pushes
# it to both registries, and builds (once per version, cached in the state
# directory) and starts versitygw, an S3-compatible server, on loopback;
# the same for InfluxDB 1.8 (metrics tests); chromium, node and the npm
# packages of the web page's browser tests (ui/, test/webui).
#
# Idempotent; when everything is already up it only checks and returns.
# Run as root on Debian 12. State (logs, registry config and storage, the
# versitygw binary and its buckets) lives in DW_TEST_STATE (default
# /var/tmp/docker-worker-test).
#
# Addresses the tests expect: the registries named in
# fixtures/busybox/image.env (127.0.0.1:5000 open, 127.0.0.1:5001 with the
# user and password given there), RabbitMQ on 127.0.0.1:5672 (guest/guest),
# versitygw on 127.0.0.1:7070 (access key dwtest, secret dwtest-secret),
# InfluxDB on 127.0.0.1:8086 (no authentication; tests create and drop
# their own databases).
# Docker treats every registry on 127.0.0.0/8 as insecure (plain HTTP) by
# default, so dockerd needs no --insecure-registry flag for either.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
fixture="$here/fixtures/busybox"
state=${DW_TEST_STATE:-/var/tmp/docker-worker-test}
wait_seconds=${DW_TEST_WAIT:-30}

# TEST_IMAGE, TEST_REGISTRY, the TEST_REGISTRY_IMAGE* names and the
# TEST_PRIVATE_* values are defined only there.
# shellcheck source=SCRIPTDIR/fixtures/busybox/image.env
. "$fixture/image.env"
export TEST_IMAGE TEST_REGISTRY TEST_REGISTRY_IMAGE TEST_REGISTRY_IMAGE_E2E \
	TEST_PRIVATE_REGISTRY TEST_PRIVATE_IMAGE TEST_PRIVATE_USER TEST_PRIVATE_PASSWORD

content_label=dev.dockerworker.test.content

say() { printf '%-10s %s\n' "$1:" "$2"; }
die() {
	printf 'setup-env: %s\n' "$*" >&2
	exit 1
}

# wait_for DESCRIPTION LOG COMMAND...: polls COMMAND for up to wait_seconds.
wait_for() {
	local what=$1 log=$2
	shift 2
	local deadline=$((SECONDS + wait_seconds))
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS >= deadline)); then
			printf 'setup-env: %s did not answer within %ss; last lines of %s:\n' \
				"$what" "$wait_seconds" "$log" >&2
			tail -n 20 "$log" >&2 || true
			exit 1
		fi
		sleep 0.2
	done
}

# start_bg LOG COMMAND...: runs COMMAND detached from this shell's session.
start_bg() {
	local log=$1
	shift
	setsid nohup "$@" >>"$log" 2>&1 </dev/null &
}

mkdir -p "$state"

# 1. Packages.
# debootstrap, shellcheck, packer and vagrant: the deploy/ checks and test.
# chromium: the web page's browser tests (test/webui).
packages=(docker.io busybox-static docker-registry apache2-utils curl rabbitmq-server zstd
	debootstrap shellcheck packer vagrant chromium)
missing=()
for p in "${packages[@]}"; do
	if ! dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed'; then
		missing+=("$p")
	fi
done
if ((${#missing[@]} > 0)); then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	say packages "installed ${missing[*]}"
else
	say packages "already installed"
fi

# 2. Docker engine. There is no systemd here: a docker.socket or
# docker.service unit left by apt is never started, so start dockerd directly.
if docker info >/dev/null 2>&1; then
	say dockerd "already up"
else
	start_bg "$state/dockerd.log" dockerd
	wait_for dockerd "$state/dockerd.log" docker info
	say dockerd "started (log $state/dockerd.log)"
fi

# 3. Test image, rebuilt when the Dockerfile or busybox binary changed.
busybox_bin=/bin/busybox
[[ -x $busybox_bin ]] || die "$busybox_bin missing (busybox-static)"
content=$(cat "$fixture/Dockerfile" "$busybox_bin" | sha256sum | cut -d' ' -f1)
have=$(docker image inspect -f "{{index .Config.Labels \"$content_label\"}}" "$TEST_IMAGE" 2>/dev/null || true)
if [[ $have == "$content" ]]; then
	say image "$TEST_IMAGE already built"
else
	ctx=$(mktemp -d)
	trap 'rm -rf "$ctx"' EXIT
	cp "$fixture/Dockerfile" "$ctx/Dockerfile"
	cp "$busybox_bin" "$ctx/busybox"
	# The legacy builder is enough here (and the only one without buildx);
	# its deprecation notice is shown only if the build fails.
	if ! out=$(DOCKER_BUILDKIT=0 docker build -q --label "$content_label=$content" \
		-t "$TEST_IMAGE" "$ctx" 2>&1); then
		printf '%s\n' "$out" >&2
		die "building $TEST_IMAGE failed"
	fi
	rm -rf "$ctx"
	trap - EXIT
	say image "$TEST_IMAGE built"
fi

# 4. Local registry on loopback, with the test image pushed to it.
registry_url="http://$TEST_REGISTRY"
if curl -fsS -o /dev/null --max-time 2 "$registry_url/v2/" 2>/dev/null; then
	say registry "already up on $TEST_REGISTRY"
else
	mkdir -p "$state/registry"
	cat >"$state/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $state/registry
  delete:
    enabled: true
http:
  addr: $TEST_REGISTRY
EOF
	start_bg "$state/registry.log" docker-registry serve "$state/registry.yml"
	wait_for registry "$state/registry.log" curl -fsS -o /dev/null --max-time 2 "$registry_url/v2/"
	say registry "started on $TEST_REGISTRY (log $state/registry.log)"
fi

# The registry copies are current when their manifest names the local
# image's config digest (the image ID). Each test package that removes and
# pulls an image uses its own name, so packages running at once never race.
local_id=$(docker image inspect -f '{{.Id}}' "$TEST_IMAGE")
for ref in "$TEST_REGISTRY_IMAGE" "$TEST_REGISTRY_IMAGE_E2E"; do
	repo_tag=${ref#"$TEST_REGISTRY"/}
	repo=${repo_tag%:*}
	tag=${repo_tag##*:}
	remote_manifest=$(curl -fsS --max-time 5 \
		-H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
		"$registry_url/v2/$repo/manifests/$tag" 2>/dev/null || true)
	if [[ $remote_manifest == *"\"$local_id\""* ]]; then
		say push "$ref already present"
	else
		docker tag "$TEST_IMAGE" "$ref"
		docker push -q "$ref" >/dev/null
		say push "$ref pushed"
	fi
done

# 4b. A second registry on loopback that requires basic authentication
# (htpasswd, bcrypt), with the test image pushed to it. The push logs in
# through a throwaway Docker client configuration, leaving root's alone.
private_url="http://$TEST_PRIVATE_REGISTRY"
private_auth="$TEST_PRIVATE_USER:$TEST_PRIVATE_PASSWORD"
# private_up: the registry answers, refuses anonymous clients and accepts
# the test credentials.
private_up() {
	local anon
	anon=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 2 "$private_url/v2/" 2>/dev/null) || return 1
	[[ $anon == 401 ]] && curl -fsS -o /dev/null --max-time 2 -u "$private_auth" "$private_url/v2/"
}
if private_up; then
	say registry "already up on $TEST_PRIVATE_REGISTRY (basic auth)"
else
	mkdir -p "$state/registry-private"
	htpasswd -Bbc "$state/registry-private.htpasswd" "$TEST_PRIVATE_USER" "$TEST_PRIVATE_PASSWORD" 2>/dev/null
	cat >"$state/registry-private.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $state/registry-private
  delete:
    enabled: true
auth:
  htpasswd:
    realm: docker-worker-test
    path: $state/registry-private.htpasswd
http:
  addr: $TEST_PRIVATE_REGISTRY
EOF
	start_bg "$state/registry-private.log" docker-registry serve "$state/registry-private.yml"
	wait_for "registry $TEST_PRIVATE_REGISTRY" "$state/registry-private.log" private_up
	say registry "started on $TEST_PRIVATE_REGISTRY with basic auth (log $state/registry-private.log)"
fi
repo_tag=${TEST_PRIVATE_IMAGE#"$TEST_PRIVATE_REGISTRY"/}
remote_manifest=$(curl -fsS --max-time 5 -u "$private_auth" \
	-H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
	"$private_url/v2/${repo_tag%:*}/manifests/${repo_tag##*:}" 2>/dev/null || true)
if [[ $remote_manifest == *"\"$local_id\""* ]]; then
	say push "$TEST_PRIVATE_IMAGE already present"
else
	docker_config=$(mktemp -d)
	trap 'rm -rf "$docker_config"' EXIT
	# The login's warning about unencrypted credentials concerns only the
	# throwaway configuration; it is shown only if the login fails.
	if ! out=$(printf '%s\n' "$TEST_PRIVATE_PASSWORD" | DOCKER_CONFIG=$docker_config \
		docker login -u "$TEST_PRIVATE_USER" --password-stdin "$TEST_PRIVATE_REGISTRY" 2>&1); then
		printf '%s\n' "$out" >&2
		die "docker login to $TEST_PRIVATE_REGISTRY failed"
	fi
	docker tag "$TEST_IMAGE" "$TEST_PRIVATE_IMAGE"
	DOCKER_CONFIG=$docker_config docker push -q "$TEST_PRIVATE_IMAGE" >/dev/null
	rm -rf "$docker_config"
	trap - EXIT
	say push "$TEST_PRIVATE_IMAGE pushed"
fi

# 5. RabbitMQ on loopback (Pulse tests). The config pins the AMQP listener,
# the Erlang distribution port and the Erlang port mapper to 127.0.0.1.
rabbit_port=5672
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if port_open "$rabbit_port"; then
	say rabbitmq "already up on 127.0.0.1:$rabbit_port"
else
	mkdir -p /etc/rabbitmq
	printf '%s\n' "listeners.tcp.default = 127.0.0.1:$rabbit_port" >/etc/rabbitmq/rabbitmq.conf
	printf '%s\n' NODE_IP_ADDRESS=127.0.0.1 NODENAME=rabbit@localhost \
		"SERVER_ADDITIONAL_ERL_ARGS='-kernel inet_dist_use_interface {127,0,0,1}'" \
		>/etc/rabbitmq/rabbitmq-env.conf
	ERL_EPMD_ADDRESS=127.0.0.1 rabbitmq-server -detached >>"$state/rabbitmq.log" 2>&1
	wait_seconds=60 wait_for rabbitmq "$state/rabbitmq.log" port_open "$rabbit_port"
	say rabbitmq "started on 127.0.0.1:$rabbit_port (log $state/rabbitmq.log)"
fi

# 6. versitygw (S3-compatible) on loopback: built once per version into the
# state directory (`go install` takes one to two minutes cold), then reused.
versitygw_version=v1.8.0
versitygw_addr=127.0.0.1:7070
versitygw_dir=$state/bin/versitygw-$versitygw_version
if [[ ! -x $versitygw_dir/versitygw ]]; then
	mkdir -p "$versitygw_dir"
	if ! (cd / && GOBIN=$versitygw_dir GOFLAGS=-buildvcs=false \
		go install "github.com/versity/versitygw/cmd/versitygw@$versitygw_version") \
		>>"$state/versitygw-build.log" 2>&1; then
		tail -n 20 "$state/versitygw-build.log" >&2
		die "building versitygw $versitygw_version failed"
	fi
	say versitygw "built $versitygw_version"
fi
if curl -sS -o /dev/null --max-time 2 "http://$versitygw_addr/" 2>/dev/null; then
	say versitygw "already up on $versitygw_addr"
else
	mkdir -p "$state/s3"
	start_bg "$state/versitygw.log" "$versitygw_dir/versitygw" --access dwtest \
		--secret dwtest-secret --port "$versitygw_addr" posix "$state/s3"
	wait_for versitygw "$state/versitygw.log" curl -sS -o /dev/null --max-time 2 "http://$versitygw_addr/"
	say versitygw "started on $versitygw_addr (log $state/versitygw.log)"
fi

# 7. InfluxDB 1.8 (metrics tests) on loopback: built once per version into
# the state directory like versitygw, with usage reporting off, its HTTP API
# on 127.0.0.1:8086 and its RPC port on 127.0.0.1:8088. 1.8 is the first
# release with the v2 compatibility API (/api/v2/write) the worker writes to.
influx_version=v1.8.3
influx_addr=127.0.0.1:8086
influx_dir=$state/bin/influxd-$influx_version
if [[ ! -x $influx_dir/influxd ]]; then
	mkdir -p "$influx_dir"
	if ! (cd / && GOBIN=$influx_dir GOFLAGS=-buildvcs=false \
		go install "github.com/influxdata/influxdb/cmd/influxd@$influx_version") \
		>>"$state/influxd-build.log" 2>&1; then
		tail -n 20 "$state/influxd-build.log" >&2
		die "building influxd $influx_version failed"
	fi
	say influxdb "built $influx_version"
fi
# Tests that start an InfluxDB of their own run $state/bin/influxd.
ln -sfn "influxd-$influx_version/influxd" "$state/bin/influxd"
influx_up() { curl -fsS -o /dev/null --max-time 2 "http://$influx_addr/ping"; }
if influx_up 2>/dev/null; then
	say influxdb "already up on $influx_addr"
else
	mkdir -p "$state/influxdb"
	cat >"$state/influxdb.conf" <<CONF
reporting-disabled = true
bind-address = "127.0.0.1:8088"
[meta]
  dir = "$state/influxdb/meta"
[data]
  dir = "$state/influxdb/data"
  wal-dir = "$state/influxdb/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  bind-address = "$influx_addr"
  log-enabled = false
CONF
	start_bg "$state/influxdb.log" "$influx_dir/influxd" run -config "$state/influxdb.conf"
	wait_for influxdb "$state/influxdb.log" influx_up
	say influxdb "started $influx_version on $influx_addr (log $state/influxdb.log)"
fi

# 9. The web page's browser tests: node and npm (Debian's, when missing),
# the terminal emulator the page embeds (ui/build.sh) and playwright-core
# (test/webui/package-lock.json), which drives the chromium installed above.
if ! command -v npm >/dev/null; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
	say node "installed $(node --version)"
fi
bash "$here/../ui/build.sh"
webui="$here/webui"
if [[ -f "$webui/node_modules/playwright-core/package.json" && "$webui/node_modules/.package-lock.json" -nt "$webui/package-lock.json" ]]; then
	say webui "playwright-core already installed"
else
	(cd "$webui" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >/dev/null)
	say webui "installed playwright-core (browser: $(command -v chromium))"
fi
