# shellcheck shell=bash
# shellcheck disable=SC2154 # deploy: the deploy directory, set by provision.sh
# The base image: everything but the worker. Sourced by provision.sh.

# shellcheck source=/dev/null
. /etc/os-release
arch=$(dpkg --print-architecture)

# Packages. The generic kernel carries the V4L2 and ALSA drivers that the
# cloud kernels leave out; DKMS builds v4l2loopback against its headers.
apt_install ca-certificates curl docker.io apparmor lvm2 e2fsprogs kmod systemd util-linux zstd
case $ID in
ubuntu) kernel_pkgs=(linux-generic) ;;
*) kernel_pkgs=("linux-image-$arch" "linux-headers-$arch") ;;
esac
kernel env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	"${kernel_pkgs[@]}" dkms v4l2loopback-dkms
if [[ $ID == debian ]]; then
	# Boot the generic kernel: grub would pick the cloud one (it sorts
	# after), so remove it, even while it runs (allowed without prompts).
	mapfile -t cloud < <(dpkg-query -W -f '${Package} ${Status}\n' 'linux-image-*cloud*' 2>/dev/null |
		awk '/install ok installed/ {print $1}')
	if ((${#cloud[@]} > 0)); then
		kernel env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq "${cloud[@]}"
	fi
fi

# Docker engine: data root on the instance storage (see daemon.json).
put_file "$deploy/files/etc/docker/daemon.json" /etc/docker/daemon.json 0644
put_file "$deploy/files/etc/systemd/system/docker.service.d/10-docker-worker.conf" \
	/etc/systemd/system/docker.service.d/10-docker-worker.conf 0644

# Instance storage, every boot.
put_file "$deploy/lib/common.sh" /usr/local/libexec/docker-worker/common.sh 0644
put_file "$deploy/files/libexec/instance-storage" /usr/local/libexec/docker-worker/instance-storage 0755
put_file "$deploy/files/libexec/host-setup" /usr/local/libexec/docker-worker/host-setup 0755
put_file "$deploy/files/etc/systemd/system/docker-worker-storage.service" \
	/etc/systemd/system/docker-worker-storage.service 0644

# Loopback modules, loaded at boot before the worker.
put_file "$deploy/files/etc/modprobe.d/docker-worker-loopback.conf" \
	/etc/modprobe.d/docker-worker-loopback.conf 0644
put_file "$deploy/files/etc/systemd/system/docker-worker-modules.service" \
	/etc/systemd/system/docker-worker-modules.service 0644
# (steps/app.sh loads them once: the app build runs on the generic kernel.)

# Sysctls.
put_file "$deploy/files/etc/sysctl.d/60-docker-worker.conf" /etc/sysctl.d/60-docker-worker.conf 0644
kernel sysctl -q --system

enable_units docker.service docker-worker-storage.service docker-worker-modules.service
