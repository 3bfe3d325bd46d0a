# shellcheck shell=bash
# shellcheck disable=SC2154 # deploy: the deploy directory, set by provision.sh
# The app image: the worker on top of the base. Sourced by provision.sh.

app_defaults
if ! check_app_vars; then
	die "app: fix the variables above"
fi
[[ -n ${DW_WORKER_BINARY:-} && -x $DW_WORKER_BINARY ]] ||
	die "app: DW_WORKER_BINARY must name the docker-worker binary to install"
[[ -x /usr/local/libexec/docker-worker/host-setup ]] || die "app: run provision.sh base first"

# The app build boots the base image's generic kernel: loading the loopback
# modules once fails the build if DKMS did not build them for it.
kernel modprobe v4l2loopback
kernel modprobe snd-aloop

put_file "$DW_WORKER_BINARY" /usr/local/bin/docker-worker 0755
say "worker $(/usr/local/bin/docker-worker version)"

install -d -m 0755 /etc/docker-worker
put_content "$(render "$deploy/template/config.yml")" /etc/docker-worker/config.yml 0644
put_content "$(render "$deploy/template/docker-worker.service")" \
	/etc/systemd/system/docker-worker.service 0644
put_file "$deploy/files/etc/systemd/system/docker-worker-setup.service" \
	/etc/systemd/system/docker-worker-setup.service 0644

if [[ -n ${DW_CLIENT_ID:-} || -n ${DW_ACCESS_TOKEN:-} ]]; then
	put_content "TASKCLUSTER_CLIENT_ID=${DW_CLIENT_ID:-}
TASKCLUSTER_ACCESS_TOKEN=${DW_ACCESS_TOKEN:-}" /etc/docker-worker/credentials.env 0600
fi

# Chain of trust: a trusted image carries its pool's key; otherwise
# host-setup generates one per instance at first boot.
if [[ -n ${DW_COT_TRUSTED_KEY:-} ]]; then
	put_file "$DW_COT_TRUSTED_KEY" /etc/docker-worker/cot-signing.key 0600
	say "trusted chain-of-trust key, public key $(/usr/local/bin/docker-worker cot pubkey --key /etc/docker-worker/cot-signing.key)"
fi

enable_units docker-worker-setup.service docker-worker.service
