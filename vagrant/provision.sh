#!/usr/bin/env bash
# Vagrant provisioning: the same deploy/provision.sh steps as the images,
# with the worker binary from the synced checkout, then a reboot-free start:
# the storage, modules and host setup units run now instead of at boot.
# Unlike an image, the box keeps running when the worker ends
# (DW_ON_EXIT=none) and gets the credentials from the host's environment.
set -euo pipefail
src=${DW_SOURCE:-/docker-worker}
binary=$src/bin/docker-worker
if [[ ! -x $binary ]]; then
	printf 'vagrant: %s is missing: run make build in the checkout, then vagrant provision\n' "$binary" >&2
	exit 1
fi
export DW_WORKER_BINARY=$binary DW_ON_EXIT=none DW_CAPACITY=${DW_CAPACITY:-2}
"$src/deploy/provision.sh" base
"$src/deploy/provision.sh" app
systemctl daemon-reload
# The kernel changed on the first run (generic kernel, DKMS modules):
# those take effect after `vagrant reload`; the rest starts now.
systemctl start docker-worker-storage.service
systemctl restart docker.service
systemctl start docker-worker-modules.service || echo "vagrant: loopback modules not loaded yet; run vagrant reload"
systemctl start docker-worker-setup.service
if [[ -s /etc/docker-worker/credentials.env ]] && grep -q '^TASKCLUSTER_CLIENT_ID=.' /etc/docker-worker/credentials.env; then
	systemctl restart docker-worker.service
	echo "vagrant: docker-worker started; journalctl -u docker-worker -f shows its log"
else
	echo "vagrant: no TASKCLUSTER_CLIENT_ID given; set it and run vagrant provision to start the worker"
fi
