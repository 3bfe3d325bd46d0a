#!/usr/bin/env bash
# Provisions a Debian or Ubuntu host as a docker-worker host. Idempotent:
# running it again changes only what differs. Packer (packer/*.pkr.hcl)
# and Vagrant (vagrant/provision.sh) both call it.
#
#   provision.sh base   packages, Docker engine and its daemon config,
#                       instance storage, loopback modules, sysctls
#   provision.sh app    the worker binary, its config (from DW_* variables,
#                       see lib/vars.sh), systemd units, chain-of-trust key
#
# app needs DW_WORKER_BINARY (the docker-worker binary to install),
# DW_ROOT_URL and DW_WORKER_TYPE; optional: DW_PROVISIONER_ID,
# DW_WORKER_GROUP, DW_CAPACITY, DW_ALLOW_PRIVILEGED, DW_IDLE_SHUTDOWN,
# DW_SPOT_TERMINATION, DW_ON_EXIT (poweroff|none: what happens when the
# worker ends for good), DW_COT_TRUSTED_KEY (a trusted chain-of-trust key
# to install instead of generating one per instance at first boot),
# DW_CLIENT_ID and DW_ACCESS_TOKEN (written to credentials.env; never set
# them for an image). DW_KERNEL_DRY_RUN=1 records kernel commands instead of
# running them (see lib/common.sh).
set -euo pipefail
deploy=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
. "$deploy/lib/common.sh"
# shellcheck source=lib/vars.sh
. "$deploy/lib/vars.sh"

[[ $(id -u) == 0 ]] || die "run as root"
case ${1:-} in
base)
	# shellcheck source=steps/base.sh
	. "$deploy/steps/base.sh"
	;;
app)
	# shellcheck source=steps/app.sh
	. "$deploy/steps/app.sh"
	;;
*)
	printf 'usage: %s base|app\n' "$0" >&2
	exit 2
	;;
esac
say "done ($1)"
